"""
The MAG daemon: L{MagCore} + strategy + attachment detector + data plane,
and, for IPv4 mobiles (RFC 5844), the DHCPv4 server on the access link.
"""

from functools import partial
from ipaddress import IPv6Address

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import maybeDeferred, gatherResults
from zope.interface import implementer

from netlmm.access import macOfEvent
from netlmm.core.selection import ClientSelector
from netlmm.core.mag import State
from netlmm.core.effects import AddressConflict, Bound, SendControl, TunnelDown, TunnelUp, Unbound
from netlmm.interfaces import IMagControl
from netlmm.service.base import RoleService
from netlmm.transport.channel import Channel
from netlmm.transport.control import ControlFactory
from netlmm.wire.control import Notification, Result, showMnId


class _PmipFacing(ControlFactory):
    """The MAG's connection to one PMIP client."""

    def __init__(self, service, upstream=None):
        super().__init__()
        self.service = service
        self.upstream = upstream

    def connectionMade(self, proto):
        self.service.pmipConnected(proto, self.upstream)

    def connectionLost(self, proto, reason):
        self.service.pmipDisconnected(proto, reason, self.upstream)

    def messageReceived(self, message, proto):
        self.service.controlReceived(message, proto)


class _Upstream:
    """
    One PMIP client as a MAG sees it: its endpoint, the reconnecting
    ClientService, the current connection and what waits for it.
    """

    def __init__(self, service, endpoint):
        self.endpoint = endpoint
        self.factory = _PmipFacing(service, self)
        self.connection = None
        self.client = None
        #: The pending relocation of this client's mobiles after the
        #: connection went (an IDelayedCall), or None.
        self.failover = None

    def describe(self):
        return f"[{self.endpoint[0]}]:{self.endpoint[1]}"


@implementer(IMagControl)
class MagService(RoleService):
    """
    @param pmip: (address, port) of the PMIP client's stream listener, or a
        list of them when the domain has several PMIP clients: each mobile
        then goes to the one L{ClientSelector} chooses from its MN
        identifier (the same on every MAG), one channel per client.
    @param pmipMap: optional mapping MN identifier (bytes) -> (address,
        port) that overrides the hash for the mobiles it names.
    @param strategy: an L{IAddressAssignment}.
    @param detector: an L{IAttachmentDetector}, or None when attachments are
        fed in by code (tests, the demo).
    @param channel: the L{Channel} to the PMIP client (TLS, TCP, SCTP);
        plain TCP when None.
    @param ipv4: the L{netlmm.access.dhcp4.Dhcp4Server} that gives IPv4
        mobiles the home address the LMA assigned (RFC 5844), or None.
    @param failoverAfter: with several PMIP clients, how long (seconds) the
        connection to one may stay lost before its mobiles are moved to the
        next client of L{ClientSelector.ranking} (draft E.1); None: never.

    Each mobile stays with the client it was first sent to (its I{pin})
    for as long as it is attached here: a client that comes back does not
    get its mobiles back, and a client that failed is only avoided for new
    mobiles until it is connected again. L{drainClient} moves a client's
    mobiles at once and keeps new ones away until L{undrainClient}.
    """

    def __init__(self, reactor, core, pmip, strategy, dataplane, detector=None,
                 observer=None, name="MAG", channel=None, pmipMap=None, ipv4=None,
                 handover=None, failoverAfter=5.0):
        super().__init__(reactor, core, observer)
        #: The L{netlmm.service.handover.HandoverService} (context transfer and
        #: forwarding with the neighbour MAGs), or None.
        self.handover = handover
        #: MN identifier -> its link-layer address (text), as the detector reported it.
        self.linkLayers = {}
        # What the metrics read (L{metricFamilies}): Notifications by result,
        # and with metrics on (L{enableMetrics}) a histogram of the time from
        # a mobile's attachment to its binding (a handoff's, at the new MAG).
        self.notificationResults = {}
        self.attachToBound = None
        if handover is not None:
            handover.mag = self
            handover.core.lookup = self.contextFor
            handover.core.attachedSince = self.attachedSince
        self.setName(name)
        clients = list(pmip) if pmip and isinstance(pmip[0], (tuple, list)) else [pmip]
        clients = [(IPv6Address(a), int(p)) for a, p in clients]
        #: The first configured PMIP client (the only one in most domains).
        self.pmip = clients[0]
        self.selector = ClientSelector(clients, pmipMap)
        self.failoverAfter = failoverAfter
        #: MN identifier -> the endpoint of the client that serves it.
        self.pins = {}
        #: Clients new mobiles avoid: failed (until connected again) or drained.
        self.unavailable = set()
        self.drained = set()
        #: How many mobiles were moved to another client (draft E.1).
        self.relocations = 0
        self.strategy = strategy
        self.dataplane = dataplane
        # The core releases an old home unused for a while (anchor move).
        core.lastUsed = getattr(dataplane, "lastUsed", None)
        self.detector = detector
        self.ipv4 = ipv4
        self.channel = channel if channel is not None else Channel("tcp")
        #: (address, port) -> L{_Upstream}, in the configured order.
        self.upstreams = {}
        for c in clients:
            if c in self.upstreams:
                continue
            up = _Upstream(self, c)
            self.channel.prepare(up.factory, reactor, name, "pmip")
            endpoint = self.channel.clientEndpoint(reactor, c[0], c[1],
                                                   expectRole="pmip", timeout=5)
            up.client = ClientService(endpoint, up.factory, backoffPolicy(
                initialDelay=0.5, maxDelay=10.0), clock=reactor)
            self.upstreams[c] = up
        self._first = self.upstreams[self.pmip]

    # The first PMIP client's channel, for code (the demo, tests) that has one.
    @property
    def factory(self):
        return self._first.factory

    @property
    def connection(self):
        return self._first.connection

    def upstreamFor(self, mnId):
        """
        The L{_Upstream} (PMIP client) that serves C{mnId}: its pin, else
        the first available choice (pinned while the mobile is attached).
        """
        endpoint = self.pins.get(mnId)
        if endpoint is None:
            endpoint = (self.selector.choose(mnId, self.unavailable)
                        or self.selector.choose(mnId))
            if self.core.attachment(mnId) is not None:
                self.pins[mnId] = endpoint
        return self.upstreams[endpoint]

    # ------------------------------------------------------------ relocation (E.1)

    def drainClient(self, endpoint):
        """
        Move every mobile of the client at C{endpoint} ((address, port)) to
        its next choice now, and send it no new ones until L{undrainClient}.
        Returns how many mobiles were moved.
        """
        endpoint = self._known(endpoint)
        self.drained.add(endpoint)
        self.unavailable.add(endpoint)
        return self.relocate(endpoint, "drained")

    def undrainClient(self, endpoint):
        """New mobiles may go to the client at C{endpoint} again."""
        endpoint = self._known(endpoint)
        self.drained.discard(endpoint)
        up = self.upstreams[endpoint]
        if up.connection is not None:
            self.unavailable.discard(endpoint)

    def _known(self, endpoint):
        endpoint = (IPv6Address(endpoint[0]), int(endpoint[1]))
        if endpoint not in self.upstreams:
            raise ValueError(f"[{endpoint[0]}]:{endpoint[1]} is not one of this MAG's "
                             "PMIP clients")
        return endpoint

    def relocate(self, endpoint, why):
        """
        Move the mobiles pinned to the client at C{endpoint} to their next
        available client: a bound mobile is triggered there again with the
        homes it has (L{MagCore.relocate}), a pending Trigger or Detach is
        sent there. Mobiles with no other client left stay. Returns how
        many moved.
        """
        moved = 0
        for mnId, pinned in list(self.pins.items()):
            if pinned != endpoint:
                continue
            target = self.selector.choose(mnId, self.unavailable)
            if target is None or target == endpoint:
                continue
            a = self.core.attachment(mnId)
            if a is None:
                del self.pins[mnId]
                continue
            self.pins[mnId] = target
            moved += 1
            if a.transaction is not None:
                self._send(a.request, self.upstreams[target])
            elif a.state is State.BOUND:
                self.feed(self.core.relocate, mnId)
        self.relocations += moved
        self.log.warn("{name}: PMIP client [{address}]:{port} {why}: {n} mobiles moved to "
                      "other PMIP clients", name=self.name, address=endpoint[0],
                      port=endpoint[1], why=why, n=moved)
        return moved

    def _clientFailed(self, up):
        """The connection to C{up} stayed lost for L{failoverAfter} seconds."""
        up.failover = None
        self.unavailable.add(up.endpoint)
        self.relocate(up.endpoint, f"unreachable for {self.failoverAfter:g} s")

    @property
    def address(self):
        return self.core.address

    def startService(self):
        from netlmm.daemon import startupStep
        d = startupStep(f"{self.name}: data plane {getattr(self.dataplane, 'name', '?')!r}",
                        self.dataplane.start)

        def started(_):
            for up in self.upstreams.values():
                up.client.startService()
            RoleService.startService(self)
            self.log.info("{name}: pCoA {address}, PMIP client {pmip} over "
                          "{channel}, LMA {lma}, strategy {strategy}", name=self.name,
                          address=self.core.address,
                          pmip=", ".join(up.describe() for up in self.upstreams.values()),
                          channel=self.channel.describe(),
                          lma=self.core.lmaAddress, strategy=self.strategy.name)
            if not self.channel.tls:
                self.log.warn("{name}: the channel to the PMIP client is not authenticated "
                              "(draft 4.9.4 requires it): use TLS in [mag.tls] on any "
                              "network that is not fully trusted", name=self.name)
            steps = [maybeDeferred(self.strategy.start, self)]
            if self.ipv4 is not None:
                steps.append(maybeDeferred(self.ipv4.start, self))
            if self.handover is not None:
                steps.append(maybeDeferred(self.handover.startService))
                if hasattr(self.detector, "transition"):
                    self.detector.transition = self.handover.leaving
            if self.detector is not None:
                steps.append(maybeDeferred(self.detector.start, self))
            return gatherResults(steps, consumeErrors=True)
        return d.addCallback(started)

    def stopService(self):
        steps = [maybeDeferred(self.strategy.stop)]
        if self.ipv4 is not None:
            steps.append(maybeDeferred(self.ipv4.stop))
        if self.handover is not None and self.handover.running:
            steps.append(maybeDeferred(self.handover.stopService))
        if self.detector is not None:
            steps.append(maybeDeferred(self.detector.stop))
        for up in self.upstreams.values():
            if up.failover is not None:
                up.failover.cancel()
                up.failover = None
            steps.append(up.client.stopService())
        d = gatherResults(steps)

        def stopped(_):
            # The last refusals' summaries, and no timer left behind.
            for up in self.upstreams.values():
                up.factory.stopRefusals()
            return RoleService.stopService(self)
        d.addCallback(stopped)
        d.addCallback(lambda _: self.dataplane.stop())
        return d

    # ------------------------------------------------------------ IMagControl

    def attached(self, event):
        """
        A mobile appeared on the access link. With handover, a mobile whose
        address is not known yet gets its context from its previous MAG
        first (or, when none comes, goes on as without): L{proceed}.
        """
        attach = partial(self.core.attach, linkLayerId=macOfEvent(event))
        if self.feed(attach, event.mnId) is not None:
            return
        if event.linkLayer is not None:
            self.linkLayers[event.mnId] = event.linkLayer
        if self.ipv4 is not None:
            self.ipv4.attached(event)
        if self.handover is not None and self.handover.running and event.phoa is None:
            self.handover.arrived(event)
        else:
            self.strategy.attached(event)

    def proceed(self, event):
        """The attachment goes on to the strategy (after the handover's context, if any)."""
        a = self.core.attachment(event.mnId)
        if a is None or a.state != "ATTACHED":
            return
        self.strategy.attached(event)

    def contextFor(self, mnId):
        """The L{netlmm.core.handover.Context} of a mobile bound here, or None."""
        from netlmm.core.handover import Context
        from netlmm.wire.icmpv6 import macBytes
        a = self.core.attachment(mnId)
        if a is None or a.state != "BOUND" or a.phoa is None:
            return None
        mac = self.linkLayers.get(mnId)
        try:
            mac = macBytes(mac) if isinstance(mac, str) else mac
        except Exception:
            mac = None
        homes = a.homes
        return Context(mnId, a.phoa, mac, a.lma or self.core.lmaAddress, homes.ipv4,
                       homes.ipv4Router, None if homes.ipv4 is None else self.ipv4 is not None)

    def enableMetrics(self):
        """Time each attachment until its binding (for the metrics)."""
        from netlmm.metrics import Histogram
        self.attachToBound = Histogram()

    def metricFamilies(self):
        """The MAG's Prometheus metrics (L{netlmm.metrics}), read at a scrape."""
        from netlmm.metrics import counter, gauge, tally
        from netlmm.wire.control import Result
        yield counter("netlmm_mag_notifications_received",
                      "Notifications received from PMIP clients, by result",
                      {Result.NAMES.get(r, str(r)): n
                       for r, n in self.notificationResults.items()}, "result")
        if self.attachToBound is not None:
            yield self.attachToBound.family(
                "netlmm_mag_attach_to_bound_seconds",
                "Time from a mobile's attachment here to its binding (a handoff's "
                "signalling when it came from another MAG)")
        yield gauge("netlmm_mag_attachments", "Mobiles attached here, by state",
                    tally(self.core.attachments.values(), "state"), "state")
        yield counter("netlmm_mag_relocations", "Mobiles moved to another PMIP client "
                      "(draft E.1: their client failed or was drained)", self.relocations)
        yield gauge("netlmm_mag_pmip_connections",
                    "PMIP clients this MAG is connected to (of those configured)",
                    sum(up.connection is not None for up in self.upstreams.values()))

    def attachedSince(self, mnId):
        """When the mobile attached here (POSIX seconds), or None."""
        a = self.core.attachment(mnId)
        return None if a is None else a.since

    def addressReady(self, mnId, phoa, mode, prefix=None):
        """
        The strategy has the pHoA (or the LMA is to assign it, or to give
        the mobile a prefix of its own: C{prefix} names one already known).
        """
        if self.core.attachment(mnId) is None:
            self.log.warn("{name}: address for {mnId}, which is not attached; ignored",
                          name=self.name, mnId=showMnId(mnId))
            return
        self.feed(partial(self.core.addressReady, prefix=prefix), mnId, phoa, mode)

    def homes(self, mnId):
        """What C{mnId} is bound with here (L{netlmm.core.mag.Homes})."""
        return self.core.homes(mnId)

    def oldHomes(self, mnId):
        """The deprecated homes C{mnId} keeps after an anchor move (L{netlmm.core.mag.OldHome})."""
        return self.core.oldHomes(mnId)

    def detached(self, mnId):
        """A mobile left the access link."""
        if self.handover is not None:
            self.handover.detached(mnId)
        if self.core.attachment(mnId) is None:
            self.log.info("{name}: {mnId} left; nothing is bound for it here",
                          name=self.name, mnId=showMnId(mnId))
            return
        self.feed(self.core.detach, mnId)

    # ------------------------------------------------------------ PMIP side

    def pmipConnected(self, proto, upstream=None):
        up = upstream or self._first
        up.connection = proto
        if up.failover is not None:
            up.failover.cancel()
            up.failover = None
        if up.endpoint not in self.drained:
            # New mobiles may go there again; moved ones stay where they are.
            self.unavailable.discard(up.endpoint)
        self.log.info("{name}: connected to PMIP client {peer}", name=self.name,
                      peer=proto.describe())
        # What waits for this client: the requests made while it was not
        # connected, and those sent on a connection that went before they
        # were answered (a client that restarted lost them; one that did not
        # recognises them and answers once).
        for message in self.core.requests():
            if self.upstreamFor(message.mnId) is up:
                self._send(message, up)

    def pmipDisconnected(self, proto, reason, upstream=None):
        up = upstream or self._first
        if up.connection is proto:
            up.connection = None
            self.log.warn("{name}: lost the PMIP client connection {peer}",
                          name=self.name, peer=up.describe())
            if (self.failoverAfter is not None and len(self.upstreams) > 1
                    and up.failover is None and up.client.running):
                up.failover = self.reactor.callLater(self.failoverAfter,
                                                     self._clientFailed, up)

    def controlReceived(self, message, proto):
        if not any(proto is up.connection for up in self.upstreams.values()):
            # Only a current, authenticated PMIP client connection counts.
            return
        self.observe("received", message, proto.peer)
        pinned = self.pins.get(getattr(message, "mnId", None))
        if pinned is not None and self.upstreams[pinned].connection is not proto:
            # A client this mobile was moved away from (it came back, or
            # answers late): it no longer speaks for the mobile here.
            self.log.info("{name}: {kind} for {mnId} from {peer}, which no longer serves "
                          "it; ignored", name=self.name, kind=type(message).__name__,
                          mnId=showMnId(message.mnId), peer=proto.describe())
            return
        if type(message) is not Notification:
            proto.refused("unexpected message", "{name}: the PMIP client {peer} sent a "
                          "{kind}; only Notifications are for a MAG", name=self.name,
                          kind=type(message).__name__)
            return
        results = self.notificationResults
        results[message.result] = results.get(message.result, 0) + 1
        if message.result == Result.MOVED and message.peerMag is not None and \
                self.handover is not None:
            # The mobile went to that MAG: a neighbour (its HI may follow).
            self.handover.learnNeighbour(message.peerMag)
        self.feed(self.core.receiveNotification, message)

    def _send(self, message, upstream=None):
        up = upstream or self.upstreamFor(message.mnId)
        if up.connection is None:
            # Sent when the connection is made (pmipConnected).
            return
        if up.connection.send(message):
            self.observe("sent", message, up.endpoint)

    def execute(self, effects):
        for e in effects:
            kind = type(e)
            if kind is SendControl:
                self._send(e.message)
            elif kind is TunnelUp:
                self.dataPlaneCall(self.dataplane.tunnelUp, e.mnId, e.phoa, e.lma)
            elif kind is TunnelDown:
                self.dataPlaneCall(self.dataplane.tunnelDown, e.mnId, e.phoa, e.lma)
            elif kind is Bound:
                # (Not a REANCHORED Bound: the mobile was bound already.)
                if self.attachToBound is not None and not self.core.oldHomes(e.mnId):
                    since = self.attachedSince(e.mnId)
                    if since is not None:
                        self.attachToBound.observe(self.reactor.seconds() - since)
                if self.ipv4 is not None:
                    self.ipv4.bound(e.mnId, self.core.homes(e.mnId))
                self.strategy.bound(e.mnId, e.phoa)
                if self.handover is not None:
                    if e.peerMag is not None:
                        # Before 'bound': a mobile whose context came from
                        # nowhere is asked for late (HandoverService.learned).
                        self.handover.learned(e.mnId, e.peerMag)
                    self.handover.bound(e.mnId)
            elif kind is Unbound:
                if self.core.attachment(e.mnId) is None:
                    self.pins.pop(e.mnId, None)
                if self.ipv4 is not None:
                    self.ipv4.unbound(e.mnId)
                self.strategy.unbound(e.mnId, e.phoa, e.reason)
            elif kind is AddressConflict:
                hook = getattr(self.strategy, "addressConflict", None)
                if hook is not None:
                    hook(e.mnId, e.phoa)
                else:
                    self.strategy.unbound(e.mnId, e.phoa, "address-conflict")


