"""
A MAG's side of handovers with its neighbours (draft Appendix D): the
L{HandoverCore} fed from the MAG and from the neighbours' RFC 5949
messages, which travel as Mobility Headers over UDP (port 5436, as the PMIP
client and the LMA use), authenticated with RFC 4285 keys shared with each
neighbour; and the data plane and the hold that forward, hold and deliver
the mobiles' downlink.

Authentication (L{HandoverGuard}): every HI and HAck carries a Mobility
Message Replay Protection option (an NTP timestamp, RFC 4285 section 6) and
ends with an MN-HA Mobility Message Authentication option whose SA is the
one the key file gives for that neighbour (an C{[[sa]]} entry with
C{client} or C{clients} naming the neighbour). A message from an address
that is not a neighbour, without a valid authenticator, with a timestamp
outside the window or not later than the last one from that neighbour
(replayed), or that does not decode, is refused, counted, logged within
the bounds of a L{netlmm.ratelimit.RefusalLog} per neighbour and reason, and
changes nothing; it gets no answer (an answer to an unauthenticated sender
would serve attackers).

When the mobile's address becomes reachable at the new MAG (it answers the
MAG's Neighbor Solicitations, probed every C{probeInterval} seconds, or
sends from it) the hold goes to it, in order, and the rest of the forwarded
traffic is delivered directly.
"""

from ipaddress import IPv6Address

from twisted.internet.defer import maybeDeferred
from twisted.logger import Logger

from netlmm.access import AttachmentEvent
from netlmm.core.handover import (
    ContextReady, Fallback, Forward, Hold, Refused, Release, SendHandover, StopForward,
)
from netlmm.daemon import StartupError, reasonOf
from netlmm.ratelimit import Refusing
from netlmm.security.auth import AuthenticationError, encodeSigned, locate, verify
from netlmm.security.replay import DEFAULT_WINDOW, ReplayWindow, fromNtp, toNtp
from netlmm.service.base import RoleService
from netlmm.wire import fho, mh
from netlmm.wire.errors import DecodeError
from netlmm.wire.icmpv6 import NA, NeighborAdvertisement

HANDOVER_PORT = 5436


class HandoverGuard:
    """
    RFC 4285 authentication and replay protection of the messages between
    neighbour MAGs, with the per-neighbour SAs of C{keys} (a
    L{netlmm.security.keystore.KeyStore}).
    """

    def __init__(self, keys, window=DEFAULT_WINDOW):
        self.keys = keys
        self.replay = ReplayWindow(window)
        self._lastSent = {}

    def saFor(self, peer):
        """The SA to sign with towards C{peer} (the newest that covers it), or None."""
        for sa in reversed(list(self.keys)):
            if sa.mnId is None and sa.allowsClient(peer):
                return sa
        return None

    def sign(self, message, source, peer, now):
        """C{message} as octets with a timestamp, authenticated for C{peer}."""
        sa = self.saFor(peer)
        if sa is None:
            raise AuthenticationError(f"no key for neighbour {peer}")
        options = tuple(o for o in message.options
                        if type(o) not in (mh.MobilityMessageReplayProtection,
                                           mh.MobilityMessageAuthentication))
        # Strictly later than the last one to this peer, even within one
        # reactor turn: the receiver refuses a timestamp it has seen.
        stamp = max(toNtp(now), self._lastSent.get(peer, 0) + 1)
        self._lastSent[peer] = stamp
        stamped = message._replace(options=options + (
            mh.MobilityMessageReplayProtection(stamp),))
        return encodeSigned(stamped, sa, source, peer)

    def check(self, message, raw, source, now):
        """
        The time C{message} (decoded from C{raw}) was sent, POSIX seconds,
        once it is authentic and fresh; else raise L{AuthenticationError}.
        """
        option, _ = locate(message, raw)
        sa = self.keys.bySpi(option.spi)
        if sa is None or sa.mnId is not None or not sa.allowsClient(source):
            raise AuthenticationError(f"SPI {option.spi} is no key of neighbour {source}")
        verify(message, raw, sa)
        stamp = message.option(mh.MobilityMessageReplayProtection)
        if stamp is None:
            raise AuthenticationError("no replay protection timestamp")
        key = (sa.spi, source)
        problem = self.replay.check(key, stamp.timestamp, now)
        if problem is not None:
            raise AuthenticationError(problem)
        self.replay.accept(key, stamp.timestamp)
        return fromNtp(stamp.timestamp)


class HandoverService(Refusing, RoleService):
    """
    @param core: the L{netlmm.core.handover.HandoverCore}.
    @param guard: the L{HandoverGuard}.
    @param dataplane: the MAG's data plane (forward / hold / deliver /
        restore / acceptFrom, see L{netlmm.dataplane.handover}).
    @param access: the MAG's L{netlmm.access.link.AccessLink} (probes and the
        mobiles' frames), or None.
    @param hold: a L{netlmm.dataplane.handover.BufferDevice}, or None: the
        forwarded downlink is then delivered at once.
    @param accessPoints: BSSID (text) -> neighbour address, for predictive
        handovers (an 802.11v transition to that access point).
    """

    log = Logger()
    refusalPrefix = "handover: "

    def __init__(self, reactor, core, guard, dataplane, access=None, hold=None,
                 port=HANDOVER_PORT, accessPoints=None, probeInterval=0.02, observer=None,
                 transport=None, linger=1.0):
        super().__init__(reactor, core, observer)
        #: Sends the datagrams (an L{netlmm.transport.mh.MHPort} made at start,
        #: or a stand-in with C{sendRaw(data, target)} given here, for tests).
        self.transport = transport
        self.setName("handover")
        self.guard = guard
        self.dataplane = dataplane
        self.access = access
        self.hold = hold
        self.port = port
        self.accessPoints = {k.lower(): IPv6Address(v) for k, v in (accessPoints or {}).items()}
        self.probeInterval = probeInterval
        self.mag = None
        self.mh = None
        #: MN identifier -> the attachment event waiting for its context.
        self._waiting = {}
        #: pHoA -> [mnId, peer, mac or None, reachable, over]
        self._held = {}
        self._probe = None
        #: How long forwarding goes on once the target is bound: what was
        #: already on its way here still reaches the mobile.
        self.linger = linger
        #: pHoA -> the DelayedCall that ends its forwarding.
        self._lingering = {}
        #: The last message sent once a hold's route is in (L{execute}): the
        #: messages that follow go after it.
        self._sending = None
        #: The DelayedCalls that forget released mobiles (L{_drained}).
        self._draining = set()
        #: pHoA -> the IPv4 home address of a dual-stack mobile in handover
        #: (RFC 5844): held, forwarded and released with the pHoA, on a data
        #: plane that carries IPv4 in handover (C{handoverIpv4}).
        self._ipv4 = {}
        #: Peers the PMIP client named that share no key with this MAG (logged once).
        self._keyless = set()
        self.counters = dict(refused=0, released=0, freed=0)

    # ------------------------------------------------------------ lifecycle

    def startService(self):
        from netlmm.transport.mh import MHPort
        if self.transport is None:
            self.mh = MHPort(self.reactor, self._received, self.core.address, self.port,
                             "udp", observer=self._observeWire)
            try:
                self.mh.startListening()
            except OSError as e:
                raise StartupError(f"handover: cannot listen on [{self.core.address}]:"
                                   f"{self.port} (UDP): {reasonOf(e)}") from None
            self.transport = self.mh
        if hasattr(self.dataplane, "handoverStart"):
            self.dataPlaneCall(self.dataplane.handoverStart)
        for peer in self.core.neighbors:
            maybeDeferred(self.dataplane.acceptFrom, peer)
        if self.hold is not None and self.access is not None:
            self.hold.start(self.access.mac, self.core.address)
            if hasattr(self.dataplane, "toHold"):
                self.dataplane.toHold = self.hold.divert
        if self.access is not None:
            self.access.frameListeners.append(self._frame)
        RoleService.startService(self)
        self.log.info("handover: neighbours {peers}, MH over UDP on [{address}]:{port}",
                      peers=", ".join(map(str, self.core.neighbors)) or "none",
                      address=self.core.address, port=self.port)

    def stopService(self):
        if self._probe is not None and self._probe.active():
            self._probe.cancel()
        self._probe = None
        for timer in self._lingering.values():
            if timer.active():
                timer.cancel()
        self._lingering = {}
        for call in self._draining:
            if call.active():
                call.cancel()
        self._draining = set()
        if self.access is not None and self._frame in self.access.frameListeners:
            self.access.frameListeners.remove(self._frame)
        if self.mh is not None:
            self.mh.stopListening()
            self.mh = self.transport = None
        if self.hold is not None:
            if getattr(self.dataplane, "toHold", None) == self.hold.divert:
                self.dataplane.toHold = None
            self.hold.stop()
        self.stopRefusing()
        return RoleService.stopService(self)

    def _observeWire(self, direction, message, peer):
        self.observe(direction, message, peer)

    # ------------------------------------------------------------ from the MAG

    def arrived(self, event):
        """
        A mobile attached without a known address: its context is asked for;
        the MAG's C{proceed(event)} is called with it (or without, on fallback).
        """
        from netlmm.wire.icmpv6 import macBytes
        self._waiting[event.mnId] = event
        try:
            mac = macBytes(event.linkLayer) if isinstance(event.linkLayer, str) \
                else event.linkLayer
        except Exception:
            mac = None
        self.feed(self.core.arrive, event.mnId, mac)

    def leaving(self, mnId, bssid):
        """The mobile accepted a transition to the access point C{bssid}."""
        peer = self.accessPoints.get(bssid.lower())
        if peer is None:
            self.log.info("handover: {mnId} moves to {bssid}, no neighbour of ours",
                          mnId=_show(mnId), bssid=bssid)
            return
        self.feed(self.core.leave, mnId, peer)

    def bound(self, mnId):
        """The mobile is bound through this MAG."""
        self.feed(self.core.bound, mnId)

    def learnNeighbour(self, peer):
        """
        The PMIP client named C{peer} as the other MAG of a handoff: a
        neighbour from now on if this MAG shares a key with it (else logged
        once and left out: its messages could not be authenticated). True
        when it is a neighbour now.
        """
        peer = IPv6Address(peer)
        if peer in self.core.neighbors:
            return True
        if peer == self.core.address:
            return False
        if not any(sa.mnId is None and sa.allowsClient(peer)
                   and sa.allowsClient(self.core.address) for sa in self.guard.keys):
            if peer not in self._keyless:
                self._keyless.add(peer)
                self.log.warn("handover: the PMIP client names {peer} as a neighbour, but no "
                              "key of {keys} is shared with it: not a neighbour", peer=peer,
                              keys="[mag.handover] keys")
            return False
        if self.core.learn(peer):
            maybeDeferred(self.dataplane.acceptFrom, peer)
        return True

    def learned(self, mnId, peer):
        """
        C{mnId}, being bound here, came from the MAG C{peer} (the PMIP
        client says): C{peer} becomes a neighbour (L{learnNeighbour}); if it
        is new, nobody was asked for the mobile's context, so C{peer} is asked
        now for what it holds (L{netlmm.core.handover.HandoverCore.late}).
        """
        known = IPv6Address(peer) in self.core.neighbors
        if self.learnNeighbour(peer) and not known and self.running:
            self.feed(self.core.late, mnId, peer)

    def detached(self, mnId):
        """
        The mobile left this MAG's access link: its downlink is held until
        its new MAG asks for it (called before the MAG forgets the mobile).
        """
        self._waiting.pop(mnId, None)
        for entry in self._held.values():
            if entry[0] == mnId:
                entry[3] = False
        if self.running:
            self.feed(self.core.depart, mnId)

    # ------------------------------------------------------------ from the wire

    def _received(self, message, raw, source, now):
        peer = source[0]
        if type(message) is mh.UnknownMessage and message.mhType in fho.MESSAGE_TYPES:
            try:
                message = fho.decodeMessage(raw)
            except DecodeError as e:
                self._refuse(peer, "malformed", f"malformed "
                             f"{fho.MESSAGE_TYPES[message.mhType].__name__}: {e}")
                return
        if type(message) not in (fho.HandoverInitiate, fho.HandoverAcknowledge):
            self._refuse(peer, "not a HI or HAck", f"unexpected {type(message).__name__}")
            return
        try:
            sentAt = self.guard.check(message, raw, peer, now)
        except AuthenticationError as e:
            self._refuse(peer, "failed authentication", str(e))
            return
        if IPv6Address(peer) not in self.core.neighbors and self._asksForOurs(message):
            # The PMIP client named this MAG to that one, and its MOVED
            # naming that one here is still on its way: authenticated with
            # a key both share, it asks for a mobile this MAG has.
            self.learnNeighbour(peer)
        self.feed(self.core.receive, message, peer, sentAt)

    def _asksForOurs(self, message):
        """True for a HI asking for the context of a mobile this MAG serves or holds."""
        if type(message) is not fho.HandoverInitiate or message.code != fho.HiCode.REQUEST:
            return False
        mnId = message.option(mh.MobileNodeIdentifier)
        return mnId is not None and (self.core.session(mnId.identifier) is not None
                                     or self.core.lookup(mnId.identifier) is not None)

    def _refuse(self, peer, key, detail):
        """
        One refused message from C{peer}: counted, and logged through the
        service's L{netlmm.ratelimit.RefusalLog} (C{key}: a fixed text, what
        the bound counts and its summary names; C{detail}: this message's).
        """
        self.counters["refused"] += 1
        self._refused(peer, key, "refused a message from {peer}: {detail}", detail=detail)

    # ------------------------------------------------------------ effects

    def execute(self, effects):
        now = self.reactor.seconds()
        #: The hold's route, set on the data plane's worker: a message that
        #: follows a Hold (the HAck accepting an offer, the HI asking for
        #: forwarding) waits for it, or what it brings would find no route.
        held = None
        for e in effects:
            kind = type(e)
            if kind is SendHandover:
                wait = held
                if wait is None and self._sending is not None and not self._sending.called:
                    wait = self._sending  # in order: after the messages that wait
                if wait is None:
                    self._send(e.message, e.peer, now)
                else:
                    self._sending = wait.addCallback(self._sendLater, e.message, e.peer)
            elif kind is Forward:
                for home in self._homes(e.mnId, e.phoa):
                    self._forward(home, e.peer)
            elif kind is StopForward:
                for home in self._homes(e.mnId, e.phoa):
                    self._stopForward(home, e.linger, e.peer)
                self._ipv4.pop(e.phoa, None)
            elif kind is Hold:
                for home in self._homes(e.mnId, e.phoa):
                    # (One worker thread: the last route in means all are.)
                    held = self._startHolding(e.mnId, home, e.peer)
                if getattr(self.dataplane, "toHold", None) is not None:
                    held = None  # the hold takes the packets without the route
            elif kind is Release:
                for home in self._homes(e.mnId, e.phoa):
                    self._over(home, e.reason)
                if e.phoa not in self._held:
                    self._ipv4.pop(e.phoa, None)  # (else when the mobile answers)
            elif kind is ContextReady:
                self._contextReady(e.context, e.peer)
            elif kind is Fallback:
                event = self._waiting.pop(e.mnId, None)
                if event is not None and self.mag is not None:
                    self.mag.proceed(event)
            elif kind is Refused:
                self._refuse(e.peer, "refused by the handover rules", e.reason)

    def _homes(self, mnId, phoa):
        """
        The homes an effect about C{phoa} concerns: C{phoa}, and the IPv4
        home address of a dual-stack mobile (from its session's context,
        remembered until its Release) when the data plane carries IPv4.
        """
        if not getattr(self.dataplane, "handoverIpv4", False):
            return (phoa,)
        s = self.core.session(mnId)
        context = s.context if s is not None else None
        if context is not None and context.phoa == phoa:
            if context.ipv4 is not None:
                self._ipv4[phoa] = context.ipv4.ip
            else:
                self._ipv4.pop(phoa, None)
        v4 = self._ipv4.get(phoa)
        return (phoa,) if v4 is None else (phoa, v4)

    def _sendLater(self, result, message, peer):
        if self.running:
            self._send(message, peer, self.reactor.seconds())
        return result

    def _send(self, message, peer, now):
        try:
            data = self.guard.sign(message, self.core.address, peer, now)
        except AuthenticationError as e:
            self.log.warn("handover: not sent to {peer}: {error}", peer=peer, error=e)
            return
        self.transport.sendRaw(data, (str(peer), self.port))
        self.observe("sent", message, peer)

    def _stopForward(self, phoa, linger, peer=None):
        timer = self._lingering.pop(phoa, None)
        if timer is not None and timer.active():
            timer.cancel()
        entry = self._held.get(phoa)
        if entry is not None and entry[1] is None:
            if not linger:
                # Held for a target that never asked for the downlink.
                self._finish(phoa, "timeout")
                return
            # The target is bound before its request for the downlink came:
            # what was held goes there all the same, then as forwarded.
            self._forward(phoa, peer)

        def restore():
            self._lingering.pop(phoa, None)
            if self.hold is not None:
                self.hold.forget(phoa)
            self.dataPlaneCall(self.dataplane.restore, phoa)
        if not linger:
            restore()
            return
        self._lingering[phoa] = self.reactor.callLater(self.linger, restore)

    def _forward(self, phoa, peer):
        timer = self._lingering.pop(phoa, None)
        if timer is not None and timer.active():
            timer.cancel()
        entry = self._held.get(phoa)
        if entry is None or entry[1] is not None or self.hold is None:
            self.dataPlaneCall(self.dataplane.forward, phoa, peer)
            return
        # Held since the mobile left: the hold itself sends what it has, and
        # what still arrives, to the new MAG, in order (the route stays).
        del self._held[phoa]
        count = self.hold.forwardTo(phoa, peer, self.reactor.seconds())
        self.log.info("handover: {count} packets held for {phoa} sent on to {peer}",
                      count=count, phoa=phoa, peer=peer)

    def _contextReady(self, context, peer):
        event = self._waiting.pop(context.mnId, None)
        if self.mag is not None:
            # The uplink goes to the mobile's LMA at once; the binding follows.
            lma = context.lma or self.mag.core.lmaAddress
            self.dataPlaneCall(self.dataplane.tunnelUp, context.mnId, context.phoa, lma)
            if context.ipv4 is not None:
                # A dual-stack mobile (RFC 5844): its IPv4 uplink too, its
                # DHCPv4 lease at once (a renewal at the new MAG is answered
                # before the binding), and its Trigger asks for the same address.
                self.dataPlaneCall(self.dataplane.tunnelUp, context.mnId, context.ipv4.ip, lma)
                self.mag.core.expectIpv4(context.mnId, context.ipv4)
                if self.mag.ipv4 is not None:
                    self.mag.ipv4.bound(context.mnId, context)
            if event is not None:
                self.mag.proceed(AttachmentEvent(event.mnId, context.phoa, event.linkLayer))
        entry = self._held.get(context.phoa)
        if entry is not None:
            entry[3] = True
            self._probeSoon()

    # ------------------------------------------------------------ the hold

    def _startHolding(self, mnId, phoa, peer):
        if peer is not None:
            maybeDeferred(self.dataplane.acceptFrom, peer)
        if self.hold is None:
            return self.dataPlaneCall(self.dataplane.deliver, phoa)
        self.hold.buffer.open(phoa)
        self.hold.forget(phoa)
        # A hold without a peer is for a mobile that left: not here, whatever
        # the MAG core still has (hostapd tells nothing of a roam away).
        here = peer is not None and (mnId in self._waiting or (
            self.mag is not None and self.mag.core.attachment(mnId) is not None))
        self._held[phoa] = [mnId, peer, None, here, False]
        d = self.dataPlaneCall(self.dataplane.hold, phoa, self.hold.index or self.hold.name)
        if here:
            self._probeSoon()
        return d

    def _over(self, phoa, reason):
        entry = self._held.get(phoa)
        if entry is None or reason not in ("bound", "back"):
            self._finish(phoa, reason)
            return
        # Bound (or back) before the mobile answered: keep holding until it
        # does (or the hold's age bound frees it).
        entry[4] = True
        if reason == "back":
            entry[3] = True
            self._probeSoon()
        if entry[2] is not None:
            self._finish(phoa, reason)

    def _finish(self, phoa, reason):
        entry = self._held.pop(phoa, None)
        self._ipv4.pop(phoa, None)
        if entry is not None and entry[2] is None and self.hold is not None:
            self.hold.buffer.free(phoa)
            self.counters["freed"] += 1
            self.log.info("handover: freed the hold of {phoa} ({reason})", phoa=phoa,
                          reason=reason)
        d = self.dataPlaneCall(self.dataplane.restore, phoa)
        if self.hold is not None:
            if entry is not None and entry[2] is not None:
                # Released: what the kernel routes into the hold until its
                # route is gone (a worker-thread turn) still goes to the mobile.
                d.addBoth(self._drained, phoa, entry[2])
            else:
                self.hold.forget(phoa)
        if reason == "timeout" and entry is not None and self.mag is not None:
            a = self.mag.core.attachment(entry[0])
            if a is None or a.state != "BOUND":
                # The early uplink of a handover that did not complete.
                self.dataPlaneCall(self.dataplane.tunnelDown, entry[0], phoa,
                                   self.mag.core.lmaAddress)
                if phoa.version == 4 and self.mag.ipv4 is not None:
                    self.mag.ipv4.unbound(entry[0])

    def _drained(self, result, phoa, mac):
        """The hold's route of a released mobile is gone: forget it once the device is read."""
        def forget():
            self._draining.discard(call)
            if phoa not in self._held and \
                    getattr(self.hold, "released", {}).get(phoa) == ("mac", mac):
                self.hold.forget(phoa)
        call = self.reactor.callLater(self.probeInterval, forget)
        self._draining.add(call)
        return result

    def _probeSoon(self):
        if self._probe is None or not self._probe.active():
            self._probe = self.reactor.callLater(0, self._probeHeld)

    def _probeHeld(self):
        """Ask every held mobile that is here whether it can take its packets."""
        self._probe = None
        pending = False
        for phoa, entry in list(self._held.items()):
            if entry[2] is None and entry[3] and self.access is not None \
                    and phoa.version == 6:
                # (An IPv4 home goes with its pHoA's answer: L{_release}.)
                self.access.solicit(phoa)
                pending = True
        if self.hold is not None:
            self.hold.buffer.expire(self.reactor.seconds())
        if pending:
            self._probe = self.reactor.callLater(self.probeInterval, self._probeHeld)

    def _frame(self, frame):
        """A mobile's ICMPv6 frame on the access link: is a held address reachable?"""
        if not self._held:
            return
        target = None
        if frame.source in self._held:
            target = frame.source
        elif frame.payload[:1] == bytes((NA,)):
            try:
                message = frame.icmp()
            except Exception:
                return
            if isinstance(message, NeighborAdvertisement) and message.target in self._held:
                target = message.target
        if target is None:
            return
        if self._held[target][2] is not None:
            return
        v4 = self._ipv4.get(target)
        self._release(target, frame.sourceMac)
        if v4 is not None and v4 in self._held and self._held[v4][2] is None:
            # The dual-stack mobile answers for its IPv4 home address too.
            self._release(v4, frame.sourceMac)

    def _release(self, target, mac):
        """The mobile holding C{target} is reachable at C{mac}: deliver what is held, in order."""
        entry = self._held[target]
        entry[2] = mac
        count = self.hold.release(target, mac, self.reactor.seconds()) \
            if self.hold is not None else 0
        self.counters["released"] += 1
        self.log.info("handover: {mnId} reachable at {phoa}; {count} held packets "
                      "delivered", mnId=_show(entry[0]), phoa=target, count=count)
        self.dataPlaneCall(self.dataplane.deliver, target, mac)
        if entry[4]:
            self._finish(target, "bound")


def _show(mnId):
    return mnId.decode("utf-8", "replace") if isinstance(mnId, bytes) else str(mnId)


def loadHandoverKeys(path):
    """
    The neighbour keys of C{path} (mode 0600): one C{[[sa]]} table per key,
    with C{spi} (256..4294967295), C{algorithm} ('hmac-sha1-96' or
    'hmac-sha256-128'), C{key} (hex, at least 16 octets) and C{peers}, the
    addresses of the MAGs that share it (this one among them); a
    L{netlmm.security.keystore.KeyStore}. Errors name the file and entry.
    """
    from netlmm.security.auth import ALGORITHMS, SecurityAssociation
    from netlmm.security.keystore import KeyFileError, KeyStore, readKeyDocument
    document = readKeyDocument(path)
    if set(document) - {"sa"} or not isinstance(document.get("sa", []), list):
        raise KeyFileError(f"{path}: expected [[sa]] tables only")
    store = KeyStore()
    for i, entry in enumerate(document.get("sa", [])):
        where = f"{path}: sa[{i}]"
        if not isinstance(entry, dict):
            raise KeyFileError(f"{where}: expected a table")
        extra = set(entry) - {"spi", "algorithm", "key", "peers"}
        if extra:
            raise KeyFileError(f"{where}.{sorted(extra)[0]}: unknown key")
        peers = entry.get("peers")
        if not isinstance(peers, list) or len(peers) < 2 or \
                not all(isinstance(p, str) for p in peers):
            raise KeyFileError(f"{where}.peers: expected the addresses of the MAGs that "
                               "share the key (at least two)")
        algorithm = entry.get("algorithm", "hmac-sha256-128")
        if algorithm not in ALGORITHMS:
            raise KeyFileError(f"{where}.algorithm: expected one of {', '.join(ALGORITHMS)}")
        try:
            key = bytes.fromhex(entry.get("key"))
            store.add(SecurityAssociation(entry.get("spi"), key, algorithm,
                                          clients=[f"{IPv6Address(p)}/128" for p in peers]))
        except (TypeError, ValueError) as e:
            raise KeyFileError(f"{where}: {e}") from None
    return store


def writeHandoverKeys(path, associations):
    """Write neighbour keys (L{loadHandoverKeys}' format) with mode 0600."""
    import os
    lines = ["# netlmm MAG-to-MAG keys (RFC 4285 MN-HA over RFC 5949). Keep mode 0600.\n"]
    for sa in associations:
        peers = ", ".join(f'"{c.network_address}"' for c in sa.clients)
        lines.append(f'\n[[sa]]\nspi = {sa.spi}\nalgorithm = "{sa.algorithm}"\n'
                     f'key = "{sa.key.hex()}"\npeers = [{peers}]\n')
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write("".join(lines))


def fromConfig(magTable, reactor, address, dataplane, access, configDir=None):
    """
    The L{HandoverService} that C{[mag.handover]} describes, or None without
    that table. C{address}: the MAG's address; errors name the key.
    """
    import os

    from netlmm.config import ConfigError
    from netlmm.core.handover import HandoverCore
    from netlmm.dataplane.handover import BufferDevice, PacketBuffer
    from netlmm.security.keystore import KeyFileError
    from netlmm.wire.errors import EncodeError
    from netlmm.wire.icmpv6 import macBytes, macText
    if "handover" not in magTable.data:
        magTable._get("handover", None, False)
        return None
    t = magTable.table("handover")
    # Empty (or left out): the neighbours are those the PMIP client names.
    value = t._get("neighbors", [], False)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{t._key('neighbors')}: expected a list of the "
                          f"neighbour MAGs' addresses, got {value!r}")
    neighbors = []
    for v in value:
        try:
            n = IPv6Address(v)
        except ValueError:
            raise ConfigError(f"{t._key('neighbors')}: {v!r} is not an IPv6 address") \
                from None
        if n == address or n in neighbors:
            raise ConfigError(f"{t._key('neighbors')}: {v} is this MAG or listed twice")
        neighbors.append(n)
    keysPath = t.path("keys", required=True) if hasattr(t, "path") \
        else t.string("keys", required=True)
    if configDir and not os.path.isabs(keysPath):
        keysPath = os.path.join(configDir, keysPath)
    try:
        keys = loadHandoverKeys(keysPath)
    except KeyFileError as e:
        raise ConfigError(f"{t._key('keys')}: {e}") from None
    for n in neighbors:
        if not any(sa.allowsClient(n) and sa.allowsClient(address) for sa in keys):
            raise ConfigError(f"{t._key('keys')}: {keysPath} has no key this MAG shares "
                              f"with neighbour {n} (an [[sa]] whose peers name both)")
    port = t.number("port", HANDOVER_PORT, minimum=1, maximum=65535, integer=True)
    contextTimeout = t.number("context_timeout", 0.5, minimum=0.01, maximum=10)
    forwardTimeout = t.number("forward_timeout", 10, minimum=0.1, maximum=600)
    prepareTimeout = t.number("prepare_timeout", 3, minimum=0.1, maximum=600)
    window = t.number("replay_window", DEFAULT_WINDOW, minimum=0.1, maximum=300)
    probe = t.number("probe_interval", 0.02, minimum=0.005, maximum=5)
    hold = None
    if t.boolean("buffer", True):
        if access is None:
            raise ConfigError(f"{t._key('buffer')}: holding a mobile's packets needs the "
                              "access link ([mag.access]); set buffer = false without it")
        buffer = PacketBuffer(
            maxPackets=t.number("buffer_packets", 2048, minimum=1, maximum=1 << 20,
                                integer=True),
            maxBytes=t.number("buffer_bytes", 4 << 20, minimum=1500, maximum=1 << 30,
                              integer=True),
            maxAge=t.number("buffer_time", 3.0, minimum=0.01, maximum=60),
            policy=t.string("buffer_policy", "drop-new", choices=PacketBuffer.POLICIES))
        hold = BufferDevice(reactor, buffer, access.config.interface,
                            name=t.string("buffer_device", "nlbuf0"))
    points = {}
    if "access_points" in t.data:
        ap = t.table("access_points")
        for bssid in list(ap.data):
            try:
                key = macText(macBytes(bssid))
            except (EncodeError, ValueError):
                raise ConfigError(f"{ap._key(bssid)}: expected a BSSID (a MAC) as key") \
                    from None
            peer = ap.address(bssid, required=True)
            if peer not in neighbors:
                raise ConfigError(f"{ap._key(bssid)}: {peer} is not one of the neighbors")
            points[key] = peer
        ap.finish()
    else:
        t._get("access_points", None, False)
    t.finish()
    from twisted.logger import Logger
    core = HandoverCore(address, neighbors, contextTimeout=contextTimeout,
                        forwardTimeout=forwardTimeout, prepareTimeout=prepareTimeout,
                        log=Logger(namespace="netlmm.handover"))
    return HandoverService(reactor, core, HandoverGuard(keys, window), dataplane, access, hold,
                           port=port, accessPoints=points, probeInterval=probe)
