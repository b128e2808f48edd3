"""The LMA daemon: Mobility Header socket + L{LmaCore} + data plane."""

from twisted.internet.defer import maybeDeferred
from twisted.internet.task import LoopingCall

from netlmm.core.effects import RouteAdd, RouteMove, RouteRemove, SendMH
from netlmm.core.lma import DEFAULT_POLICY
from netlmm.ratelimit import Refusing, TokenBucket
from netlmm.service.base import RoleService
from netlmm.transport.mh import MHPort
from netlmm.wire import mh
from netlmm.wire.control import showMnId

#: The values of L{LmaService}'s C{relocation}.
RELOCATION = ("authorized", "any", "never")

#: Binding Errors (RFC 6275 9.3.3: rate limited as ICMPv6 errors are, RFC
#: 4443 2.4 (f)): a burst of 10, then 10 a second.
BE_RATE, BE_BURST = 10.0, 10


class LmaService(Refusing, RoleService):
    """
    Answers Proxy Binding Updates on C{listen} = (address, port) over
    C{transport} ("udp" or "raw") and drives C{dataplane}.

    @param security: None, or a L{netlmm.security.guard.LmaGuard} that checks
        the PBUs of every peer whose policy asks for RFC 4285 (all of them
        unless a peer is set to C{security = "none"}) before the core sees
        them, and signs the answers.
    @param statsInterval: seconds between the lines that sum up the binding
        events (new, moved, deregistered, ...: the core logs each one at
        debug level only); 0 for none.
    @param relocation: which PMIP client may take over a mobile's netlmm
        binding from the one that holds it (draft E.1, L{mayRelocate}):
        C{"authorized"} (one whose PBU an SA for that very mobile
        authenticated: with keys from AAA, the SA the AAA server gave that
        client), C{"any"} (any allowed client: trusted networks, labs) or
        C{"never"}.
    """

    refusalPrefix = "LMA: "

    def __init__(self, reactor, core, listen, transport, dataplane, observer=None,
                 name="LMA", security=None, statsInterval=300.0,
                 relocation="authorized", heartbeat=None):
        super().__init__(reactor, core, observer)
        # None: answer the peers' Heartbeats, send none.
        self.heartbeatConfig = heartbeat
        #: L{netlmm.service.heartbeat.Heartbeats}, made at start.
        self.heartbeats = None
        # Client address -> the UDP port its accepted PBUs came from (where
        # the heartbeats to it go).
        self._clientPorts = {}
        self._sweep = None
        self.setName(name)
        self.dataplane = dataplane
        self.security = security
        self.port = MHPort(reactor, self._received, listen[0], listen[1], transport,
                           observer=self.observe if observer else None)
        # The PBAcks of one batch of PBUs read at once wait for one commit.
        self.port.onBatch = self.batch
        #: PBAcks sent, by status (the metrics' netlmm_lma_pbas_sent_total).
        self.pbaStatus = {}
        #: PBUs met while the state store could not write: refused with
        #: 130 (new attachments) or left unanswered (delayed).
        self.storeCounters = {"refused": 0, "delayed": 0}
        #: Binding Errors sent; those the bucket refuses are counted in
        #: C{bindingErrors.refused} and not sent.
        self.bindingErrors = TokenBucket(BE_RATE, BE_BURST)
        self.statsInterval = statsInterval
        self._stats = None
        self._lastCounters = dict(core.counters)
        # The core reports its refusals here, so that every refusal is
        # logged by one method.
        core.refused = self._refused
        if relocation not in RELOCATION:
            raise ValueError(f"relocation must be one of {', '.join(RELOCATION)}, "
                             f"not {relocation!r}")
        self.relocation = relocation
        core.mayRelocate = self.mayRelocate

    def mayRelocate(self, mnId, client):
        """
        True when PMIP client C{client} may take over C{mnId}'s binding
        (asked by the core while it handles that client's PBU). With
        "authorized": the PBU was authenticated (RFC 4285) with an SA that
        names this mobile: a per-MN SA, which the guard has checked is good
        for this client (from AAA: the one the AAA server issued to this
        client for this mobile), or a per-client SA listing the mobile.
        """
        if self.relocation != "authorized":
            return self.relocation == "any"
        verdict = self.context[1] if self.context is not None else None
        sa = None if verdict is None else verdict.sa
        return sa is not None and (sa.mnId == mnId or mnId in sa.mobiles)

    def _signed(self, source):
        """True when PBUs from C{source} must carry RFC 4285 authentication."""
        if self.security is None:
            return False
        policy = self.core.policyFor(source)
        return policy is None or policy.rfc4285 is not False

    def startService(self):
        from netlmm.daemon import startupStep
        d = startupStep(f"LMA: data plane {getattr(self.dataplane, 'name', '?')!r}",
                        self.dataplane.start)

        def listen(_):
            self.restoreState()
            self.port.startListening()
            self._startHeartbeats()
            self.log.info("LMA listening for Mobility Headers over {kind} on "
                          "[{address}]:{port}, home prefix {prefix}",
                          kind=self.port.kind, address=self.port.address,
                          port=self.port.port, prefix=self.core.homePrefix)
            RoleService.startService(self)
            if self.statsInterval:
                self._stats = LoopingCall(self.logStatistics)
                self._stats.clock = self.reactor
                self._stats.start(self.statsInterval, now=False)
        return d.addCallback(listen)

    def _startHeartbeats(self):
        from netlmm.service.heartbeat import HeartbeatConfig, Heartbeats
        config = self.heartbeatConfig or HeartbeatConfig(interval=0)
        self.heartbeats = Heartbeats.fromConfig(
            self.reactor, config, self.restartCounter, self._sendHeartbeat,
            self._peerEvent, role="LMA")
        self.heartbeats.start(self._clients())
        if config.interval:
            self._sweep = LoopingCall(self._watchClients)
            self._sweep.clock = self.reactor
            self._sweep.start(config.interval, now=False)

    def _clients(self):
        """
        The PMIP clients and MAGs that hold bindings here, but those whose
        [[lma.peers]] table turns heartbeats off.
        """
        clients = {b.client for b in self.core.bindings.values()}
        return {c for c in clients if (self.core.policyFor(c) or DEFAULT_POLICY).heartbeat}

    def _watchClients(self):
        """Heartbeats go to the clients that hold bindings, and only to them."""
        clients = self._clients()
        for peer in list(self.heartbeats.core.peers):
            if peer not in clients:
                self.heartbeats.unwatch(peer)
                self._clientPorts.pop(peer, None)
        for peer in clients:
            self.heartbeats.watch(peer)

    def _sendHeartbeat(self, message, destination, port):
        self.port.send(message, destination, port or self._clientPorts.get(destination))

    def _peerEvent(self, event):
        from netlmm.core.heartbeat import PeerRestarted
        if type(event) is PeerRestarted:
            # The client lost what it registered before its restart.
            self.feed(self.core.releaseClient, event.peer, event.lastHeard)

    def stopService(self):
        if self.heartbeats is not None:
            self.heartbeats.stop()
        if self._sweep is not None and self._sweep.running:
            self._sweep.stop()
        self.port.stopListening()
        if self._stats is not None and self._stats.running:
            self._stats.stop()
        self.logStatistics()
        self.stopRefusing()
        d = maybeDeferred(RoleService.stopService, self)
        return d.addCallback(lambda _: self.dataplane.stop())

    def logStatistics(self):
        """
        One line with the binding events since the last one (the core logs
        each at debug level only), when there were any.
        """
        counters = self.core.counters
        delta = {k: v - self._lastCounters.get(k, 0) for k, v in counters.items()}
        delta["bindingErrorsNotSent"] = self.bindingErrors.refused - self._lastCounters.get(
            "bindingErrorsNotSent", 0)
        if not any(delta.values()):
            return
        self._lastCounters = dict(counters, bindingErrorsNotSent=self.bindingErrors.refused)
        self.log.info("LMA: {bindings} bindings; since the last report {pbu} PBUs: {new} "
                      "new, {moved} moved, {deregistered} deregistered, {rejected} "
                      "rejected, {retransmissions} retransmissions; {expired} expired; "
                      "{bindingErrors} Binding Errors ({bindingErrorsNotSent} not sent: "
                      "rate limit)", bindings=len(self.core.bindings), **{
                          k: delta.get(k, 0) for k in (
                              "pbu", "new", "moved", "deregistered", "rejected",
                              "retransmissions", "expired", "bindingErrors",
                              "bindingErrorsNotSent")})

    def _received(self, message, raw, source, now, fetched=False):
        kind = type(message)
        if kind is mh.Heartbeat or kind is mh.BindingError:
            heartbeats = self.heartbeats
            if heartbeats is not None:
                if source[1] and source[0] in heartbeats.core.peers:
                    # A watched client that restarted may use another port.
                    self._clientPorts[source[0]] = source[1]
                heartbeats.received(message, source[0], source[1])
            if kind is mh.BindingError and self.core.revocations.outstanding:
                # It may refuse a Binding Revocation Indication.
                self.feed(self.core.receive, message, source[0])
            return
        if kind is mh.RevocationAcknowledgement and self._signed(source[0]):
            o = self.core.revocations.outstanding.get(message.sequence)
            if o is not None and o.peer == source[0]:
                why = self.security.acceptRevocation(message, raw, o.mnId, source[0])
                if why is not None:
                    self._refused(source[0], "BRA not authentic",
                                  "BRA seq {seq} from [{peer}]:{port} dropped: {why}",
                                  seq=message.sequence, port=source[1], why=why)
                    return
        signed = kind is mh.BindingUpdate and self._signed(source[0])
        if not fetched and signed and self._mustFetch(message, raw, source):
            return
        # What execute() needs to answer this PBU: its source port and, with
        # security, the verdict whose SA signs the PBAck.
        verdict = None
        if signed:
            verdict = self.security.check(message, raw, source[0], now, self._mobileOf)
            if not verdict.ok:
                self._refuse(message, source, verdict, now)
                return
            self.observe("verified", message, source)
        self.context = (source, verdict)
        try:
            store = self.store
            if store is not None and not store.available and type(message) is \
                    mh.BindingUpdate:
                self._storeUnavailable(message, source, now)
            else:
                self.feed(self.core.receive, message, source[0])
        finally:
            self.context = None

    def _storeUnavailable(self, bu, source, now):
        """
        A PBU while the state store cannot write (Redis away or frozen):
        nothing it asks may be acknowledged, so nothing changes. A new
        attachment is refused at once with 130 (insufficient resources:
        RFC 6275 6.1.8, the MAG may try again later); a PBU for a session
        the LMA has (a refresh, handoff or deregistration) is not answered:
        its sender retransmits, and the binding it had stays as stored.
        """
        if self.core.knows(bu):
            self.storeCounters["delayed"] += 1
            self._refused(source[0], "state store unavailable",
                          "PBU seq {seq} from [{peer}]:{port} not answered: the state "
                          "store cannot write ({location})", seq=bu.sequence,
                          port=source[1], location=self.store.location)
            return
        self.storeCounters["refused"] += 1
        self.execute(self.core.refuse(
            bu, source[0], mh.Status.INSUFFICIENT_RESOURCES,
            f"the state store cannot write ({self.store.location})", now))

    def _mustFetch(self, bu, raw, source):
        """
        With keys from AAA (Appendix C): a PBU whose SPI is not cached is held
        while the mobile's key is fetched, then checked. True when held.
        """
        keys = self.security.keys
        if not hasattr(keys, "fetch"):
            return False
        option = bu.option(mh.MobilityMessageAuthentication)
        if option is None or keys.bySpi(option.spi) is not None:
            return False
        mnIdOpt = bu.option(mh.MobileNodeIdentifier)
        mnId = mnIdOpt.identifier if mnIdOpt is not None else None
        if mnId is None:
            hnp = bu.option(mh.HomeNetworkPrefix)
            if hnp is not None and not hnp.unspecified:
                mnId = self._mobileOf(hnp.prefix)
        if mnId is None:
            return False
        self._fetchThenCheck(bu, raw, source, mnId)
        return True

    def _fetchThenCheck(self, bu, raw, source, mnId):
        from netlmm.security.radius import KeyRejected
        from netlmm.wire.mh import Status

        def arrived(sa):
            self.log.info("LMA: AAA gave SPI {spi} for MN {mnId}", spi=sa.spi,
                          mnId=mnId.decode("utf-8", "replace"))
            if self.running:
                self._received(bu, raw, source, self.reactor.seconds(), fetched=True)

        def failed(f):
            status = (Status.ADMINISTRATIVELY_PROHIBITED if f.check(KeyRejected)
                      else Status.MIPV6_AUTH_FAIL)
            self.security.counters["unauthorized" if status == 129 else "authFailed"] += 1
            from netlmm.security.guard import Verdict
            if self.running:
                self._refuse(bu, source, Verdict(status, f"no key from AAA: "
                                                 f"{f.getErrorMessage()}", None,
                                                 None, mnId), self.reactor.seconds())
        # AAA says whether this PMIP client is authorized for the mobile:
        # the key it gives is for this client only (Appendix C, E.1).
        self.security.keys.fetch(mnId, source[0]).addCallbacks(arrived, failed)

    def _mobileOf(self, phoa):
        b = self.core.binding(phoa)
        return None if b is None else b.mnId

    def _refuse(self, bu, source, verdict, now):
        """Answer a PBU that failed security checks; nothing else changes."""
        self._refused(source[0], mh.Status.name(verdict.status),
                      "PBU seq {seq} from [{peer}]:{port} refused with {status}: {why}",
                      seq=bu.sequence, port=source[1],
                      status=mh.Status.name(verdict.status), why=verdict.reason)
        ba = self.security.rejection(bu, verdict, now)
        self.pbaStatus[ba.status] = self.pbaStatus.get(ba.status, 0) + 1
        self.port.send(ba, source[0], source[1] or None, octets=self.security.octets.take(ba))

    def execute(self, effects):
        for e in effects:
            kind = type(e)
            if kind is SendMH:
                port = verdict = None
                if self.context is not None:
                    replyTo, verdict = self.context
                    if replyTo[0] is e.destination or replyTo[0] == e.destination:
                        port = replyTo[1]
                else:
                    # Not an answer (a Binding Revocation Indication): to the
                    # port the client's accepted PBUs came from.
                    port = self._clientPorts.get(e.destination)
                message = e.message
                if type(message) is mh.BindingError and not self.bindingErrors.take(
                        self.reactor.seconds()):
                    continue
                if type(message) is mh.BindingAcknowledgement:
                    statuses = self.pbaStatus
                    statuses[message.status] = statuses.get(message.status, 0) + 1
                    if port and message.status < 128:
                        # Where the heartbeats to this client go.
                        self._clientPorts[e.destination] = port
                if type(message) is mh.RevocationIndication and self._signed(e.destination):
                    message = self._signedRevocation(message, e.destination)
                    if message is not None:
                        self.port.send(message, e.destination, port,
                                       octets=self.security.octets.take(message))
                elif verdict is not None and type(message) is mh.BindingAcknowledgement:
                    # Signed in one encoding: sent as the security layer encoded it.
                    message = self.security.answer(message, verdict, self.reactor.seconds())
                    self.port.send(message, e.destination, port,
                                   octets=self.security.octets.take(message))
                else:
                    self.port.send(message, e.destination, port)
            elif kind is RouteAdd:
                self.dataPlaneCall(self.dataplane.addRoute, e.phoa, e.pcoa)
            elif kind is RouteMove:
                self.dataPlaneCall(self.dataplane.moveRoute, e.phoa, e.old, e.new)
            elif kind is RouteRemove:
                self.dataPlaneCall(self.dataplane.removeRoute, e.phoa, e.pcoa)

    def _signedRevocation(self, bri, client):
        """C{bri} signed for C{client} (RFC 4285), or None (logged) when no SA is at hand."""
        mnId = bri.option(mh.MobileNodeIdentifier).identifier
        signed = self.security.protectRevocation(bri, mnId, client, self.reactor.seconds())
        if signed is None:
            self.log.warn("LMA: no RFC 4285 SA for {mnId} and {client} any more; BRI seq "
                          "{seq} not sent", mnId=showMnId(mnId), client=client,
                          seq=bri.sequence)
        return signed

    def metricFamilies(self):
        """The LMA's Prometheus metrics (L{netlmm.metrics}), read at a scrape."""
        from netlmm.metrics import counter, gauge, tally, snake
        core = self.core
        yield counter("netlmm_lma_pbus_received",
                      "Proxy Binding Updates that passed authentication and reached "
                      "the binding cache", core.counters["pbu"])
        yield counter("netlmm_lma_pbas_sent",
                      "Proxy Binding Acknowledgements sent, by status (RFC 6475 "
                      "pmip6BindingRegCounters count the refusals per status)",
                      {mh.Status.name(s): n for s, n in self.pbaStatus.items()}, "status")
        yield counter("netlmm_lma_initial_binding_registrations",
                      "PBUs that created a binding (RFC 6475 "
                      "pmip6InitialBindingRegistrations)", core.counters["created"])
        for key, name, what in (("moved", "handoffs", "bindings moved to another pCoA"),
                                ("deregistered", "deregistrations",
                                 "bindings deregistered by their MAG"),
                                ("expired", "expirations", "bindings expired"),
                                ("relocated", "relocations", "bindings taken over by "
                                 "another PMIP client (draft E.1)"),
                                ("relocationsRefused", "relocations_refused",
                                 "takeovers refused: client not authorized for the mobile"),
                                ("bindingErrors", "binding_errors",
                                 "Binding Error messages sent")):
            yield counter(f"netlmm_lma_{name}", what.capitalize(), core.counters[key])
        if self.security is not None:
            refused = {snake(k): n for k, n in self.security.counters.items()
                       if k != "verified"}
            yield counter("netlmm_lma_auth_refusals",
                          "PBUs refused by RFC 4285 authentication, by reason",
                          refused, "reason")
            yield counter("netlmm_lma_auth_verified",
                          "PBUs whose RFC 4285 authentication verified",
                          self.security.counters["verified"])
        if self.store is not None:
            yield counter("netlmm_lma_pbus_store_unavailable",
                          "PBUs met while the state store could not write: refused "
                          "(130, new attachments) or delayed (not answered)",
                          self.storeCounters, "outcome")
        yield gauge("netlmm_lma_bindings",
                    "Binding cache entries (mobility sessions) by state (RFC 6475 "
                    "pmip6BindingCacheTable)",
                    tally(core.bindings.values(), "state", lambda s: s.value), "state")
        yield from self.storeMetricFamilies("netlmm_lma")
        yield counter("netlmm_lma_revocations",
                      "Bindings the operator ended (netlmm ctl deregister), and the "
                      "RFC 5846 Binding Revocation Indications sent for them, by "
                      "outcome", dict(self.core.revocations.counters,
                                      revoked=core.counters["revoked"]), "outcome")
        yield counter("netlmm_lma_released",
                      "Bindings released because their client restarted (RFC 5847)",
                      core.counters["released"])
        if self.heartbeats is not None:
            yield from self.heartbeats.metricFamilies("netlmm_lma")
        yield from self.port.metricFamilies("netlmm_lma")

    def command(self, words):
        """
        A command from the local control socket (L{netlmm.ctl}): C{list},
        C{show KEY} or C{deregister KEY}, KEY an MN identifier, a home
        address (an address inside a per-mobile prefix too) or a pCoA;
        C{deregister} ends the binding and revokes it at its peer (RFC 5846,
        L{LmaCore.revoke}).
        """
        from netlmm.ctl import addressOrNone, bindingCommand
        core = self.core

        def find(key):
            address = addressOrNone(key)
            if address is None:
                return core.sessionsOf(key.encode("utf-8"))
            b = core.binding(address)
            if b is not None:
                return [b]
            return sorted((b for b in core.bindings.values() if b.pcoa == address),
                          key=lambda b: b.mnId)

        def homes(b):
            return [str(h) for h in b.homes] + ([str(b.ipv4)] if b.ipv4 is not None else [])

        def row(b):
            return f"{showMnId(b.mnId)} {b.state.value} {b.pcoa} {','.join(homes(b)) or '-'}"

        def detail(b):
            now = self.reactor.seconds()
            return [f"mn-id {showMnId(b.mnId)}", f"state {b.state.value}",
                    f"homes {' '.join(homes(b)) or '-'}", f"pcoa {b.pcoa}",
                    f"client {b.client}", f"profile {b.profile.value}",
                    f"sequence {b.sequence}", f"lifetime {b.lifetime}",
                    f"expires-in {max(0, b.expiry - now):.0f}"]

        def deregister(b):
            why = self._unrevocable(b)
            error = self.feed(core.revoke, b, why is None)
            if error is not None:
                raise ValueError(f"cannot deregister {showMnId(b.mnId)}: {error}")
            if why is None:
                return (f"deregistered {showMnId(b.mnId)}; Binding Revocation Indication "
                        f"sent to {b.client}")
            return (f"deregistered {showMnId(b.mnId)}; {b.client} not told ({why}): its "
                    "binding there ends with its lifetime")
        return bindingCommand(words, core.bindings.values, len(core.bindings), find, row,
                              detail, deregister)

    def _unrevocable(self, b):
        """
        Why binding C{b} the operator ends is not revoked at its client
        with a BRI, or None when it is.
        """
        if not self.core.revokes(b.client):
            return "revocation off for it"
        if self._signed(b.client) and self.security.keys.forMobile(b.mnId, b.client) is None:
            return "no RFC 4285 SA at hand to sign a BRI"
        return None

    def bindingTable(self, now=None):
        """The binding cache as text lines, one binding a line."""
        now = self.reactor.seconds() if now is None else now
        return formatBindings(self.core, now)


def formatBindings(core, now):
    """
    Lines describing an L{LmaCore}'s binding cache, one mobility session a
    line: its homes (pHoAs, prefixes, IPv4 address), where they are routed
    and in which dialect the session was registered.
    """
    rows = [("MN identifier", "homes", "pCoA", "profile", "state", "seq", "lifetime",
             "expires in")]
    for b in sorted(core.bindings.values(), key=lambda b: (b.mnId, b.key)):
        homes = [str(h) for h in b.homes]
        if b.ipv4 is not None:
            homes.append(str(b.ipv4))
        rows.append((showMnId(b.mnId), " ".join(homes) or "-",
                     str(b.pcoa), b.profile.value, b.state.value, str(b.sequence),
                     f"{b.lifetime} s", f"{max(0, b.expiry - now):.0f} s"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    if len(rows) == 1:
        lines.append("(empty)")
    return lines
