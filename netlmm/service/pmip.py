"""The PMIP client daemon: MAG-facing stream server + L{PmipCore} + MH socket."""

from ipaddress import IPv6Network

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import maybeDeferred, succeed

from twisted.logger import LogLevel

from netlmm.core.effects import AskPeers, Notify, SendMH
from netlmm.ratelimit import RefusalLog
from netlmm.service.base import RoleService
from netlmm.transport.channel import Channel
from netlmm.transport.control import ControlFactory
from netlmm.transport.mh import MHPort
from netlmm.wire import mh
from netlmm.wire.control import (
    ConflictRequest, ConflictResponse, Detach, Notification, Result, Trigger, showMnId,
)


class _MagFacing(ControlFactory):
    """Accepts MAG connections for a L{PmipService}."""

    def __init__(self, service):
        super().__init__()
        self.service = service

    def connectionMade(self, proto):
        self.service.magConnected(proto)

    def connectionLost(self, proto, reason):
        self.service.magDisconnected(proto)

    def messageReceived(self, message, proto):
        self.service.controlReceived(message, proto)

    def batch(self, starting):
        # The Triggers of one read: one commit, one timer re-arm, one write.
        self.service.batch(starting)


class _PeerFacing(ControlFactory):
    """Conflict detection with the other PMIP clients (Appendix B), both ways."""

    side = "PMIP client"
    expected = "PMIP client (peer)"

    def __init__(self, service, peer=None):
        super().__init__()
        self.service = service
        #: The configured peer this outgoing connection goes to; None for
        #: the listener that answers the peers.
        self.peer = peer

    def connectionMade(self, proto):
        self.service.peerConnected(proto, self.peer)

    def connectionLost(self, proto, reason):
        self.service.peerDisconnected(proto, self.peer)

    def messageReceived(self, message, proto):
        self.service.peerMessage(message, proto, self.peer)


class PmipService(RoleService):
    """
    @param listen: (address, port) where MAGs connect (TCP).
    @param mhBind: (address, port) of the Mobility Header socket towards the LMA.
    @param lmaPort: the LMA's MH port (UDP).
    @param allowedMags: networks MAG connections may come from.
    @param channel: the L{Channel} MAGs connect over (TLS, TCP, SCTP);
        plain TCP when None.
    @param peers: the other PMIP clients' conflict-detection listeners,
        (address, port) pairs; the core's C{peers} must be their
        '[address]:port' texts (L{peerKey}).
    @param peerListen: (address, port) where this client answers its peers'
        Conflict Detection Requests (plain TCP), or None.
    @param allowedPeers: networks peer connections may come from (the
        peers' addresses when None).
    @param lmaPorts: LMA address -> its MH port, when the core has several
        LMAs (L{netlmm.core.anchors.AnchoredCore}); C{lmaPort} otherwise.
    @param limits: the listeners' bounds (L{LIMITS} for the keys; the
        defaults for those not given).
    """

    #: The bounds of the MAG and peer listeners: connections at once, from
    #: one address, seconds for a TLS handshake, seconds a connection may be
    #: quiet when its peer has a newer one up or it stalled mid-message.
    LIMITS = {"maxConnections": 256, "maxPerPeer": 8, "handshakeTimeout": 10.0,
              "idleTimeout": 60.0}

    def __init__(self, reactor, core, listen, mhBind, transport, lmaPort,
                 allowedMags, observer=None, name="PMIP client", channel=None,
                 peers=(), peerListen=None, allowedPeers=None, lmaPorts=None,
                 limits=None, heartbeat=None, heartbeatLmas=None):
        super().__init__(reactor, core, observer)
        # None: answer the peers' Heartbeats, send none.
        self.heartbeatConfig = heartbeat
        #: LMA addresses heartbeats go to (None: every LMA).
        self.heartbeatLmas = heartbeatLmas
        #: L{netlmm.service.heartbeat.Heartbeats}, made at start.
        self.heartbeats = None
        self.setName(name)
        self.listen = listen
        self.lmaPort = lmaPort
        self.lmaPorts = dict(lmaPorts or {core.lmaAddress: lmaPort})
        self.allowedMags = tuple(IPv6Network(n) for n in allowedMags)
        self.port = MHPort(reactor, self._mhReceived, mhBind[0], mhBind[1], transport,
                           observer=self.observe if observer else None)
        # Notifications made by one batch of PBAcks go to each MAG in one
        # write (one TLS record), and their records in one commit: see batch.
        self.port.onBatch = self.batch
        self._batching = False
        self._held = []
        # What the metrics read (L{metricFamilies}); counting is all the
        # per-message paths do for them.
        self.triggers = 0
        self.notificationResults = {}
        self.pbackStatus = {}
        #: A L{netlmm.metrics.Histogram} of Trigger -> Notification seconds
        #: once metrics are on (L{enableMetrics}); the Triggers it waits for
        #: are in C{_triggered}, (connection, transaction) -> when received.
        self.triggerLatency = None
        self._triggered = {}
        self.channel = channel if channel is not None else Channel("tcp")
        self.limits = dict(self.LIMITS, **(limits or {}))
        self.connectionLog = RefusalLog(self.log, reactor, level=LogLevel.info)
        self.factory = _MagFacing(self)
        self.channel.prepare(self.factory, reactor, "PMIP client", "mag")
        self.factory.limit(self.allowedMags, **self.limits)
        self.listening = None
        #: True while drained (L{drain}): MAGs are neither served nor admitted.
        self.draining = False
        self._mags = {}
        self.connections = set()
        self.peerListen = peerListen
        self.peerListening = None
        if allowedPeers is None:
            allowedPeers = [IPv6Network(f"{a}/128") for a, _ in peers]
        self.allowedPeers = tuple(IPv6Network(n) for n in allowedPeers)
        self.peerServer = _PeerFacing(self)
        self.peerServer.clock = reactor
        self.peerServer.limit(self.allowedPeers, **self.limits)
        #: '[address]:port' -> (ClientService, factory) towards each peer.
        self.peerClients = {}
        self._peerFactories = []
        #: '[address]:port' -> the current connection to that peer.
        self.peerConnections = {}
        self.peerAnswering = set()
        for address, port in peers:
            key = peerKey((address, port))
            factory = _PeerFacing(self, key)
            factory.clock = reactor
            self._peerFactories.append(factory)
            endpoint = Channel("tcp").clientEndpoint(reactor, address, port, timeout=5)
            self.peerClients[key] = ClientService(endpoint, factory, backoffPolicy(
                initialDelay=0.5, maxDelay=10.0), clock=reactor)

    def _listenForMags(self):
        """Open the MAG channel's listener; a Deferred firing with the port."""
        # Again after undrain: on the port bound first (listen port 0 in tests).
        number = self.listen[1] or getattr(self, "_magPort", 0)
        d = self.channel.listen(self.reactor, self.listen[0], number, self.factory,
                                expectRole="mag")

        def listening(port):
            self.listening = port
            self._magPort = port.getHost().port
            return port
        return d.addCallback(listening)

    def drain(self):
        """
        Take this client out of service (draft E.1): close every MAG channel
        and stop listening for MAGs, so that each MAG moves this client's
        mobiles to another client once its C{pmip_failover} has passed. The
        bindings are refreshed meanwhile; each one another client takes over
        is refused here at its next refresh (129) and forgotten. Returns how
        many MAG channels were closed.
        """
        closed = len(self.connections)
        if not self.draining:
            self.draining = True
            if self.listening is not None:
                port, self.listening = self.listening, None
                port.stopListening()
            for proto in list(self.connections):
                proto.transport.loseConnection()
            self.log.warn("PMIP client: drained: {n} MAG channels closed, no MAG admitted "
                          "until undrained", n=closed)
        return closed

    def undrain(self):
        """Serve MAGs again after L{drain}: a Deferred firing when listening."""
        if not self.draining:
            return succeed(None)
        self.draining = False

        def failed(f):
            self.log.failure("PMIP client: cannot listen for MAGs again", f)
        d = self._listenForMags().addErrback(failed)
        d.addCallback(lambda _: self.log.info("PMIP client: undrained; MAGs may connect"))
        return d

    def startService(self):
        self.restoreState()
        self.port.startListening()
        self._startHeartbeats()
        d = self._listenForMags()

        def listening(port):
            self.log.info("PMIP client: MAGs connect to [{address}]:{port}; PBUs go "
                          "to {lmas} over {kind}; MAG channel: {channel}",
                          address=self.listen[0], port=port.getHost().port,
                          lmas=", ".join(f"[{a}]:{p}" for a, p in self.lmaPorts.items()),
                          kind=self.port.kind, channel=self.channel.describe())
            if not self.channel.tls:
                self.log.warn("PMIP client: the MAG channel is not authenticated "
                              "(draft 4.9.4 requires it): use [pmip.tls] on any "
                              "network that is not fully trusted")
            RoleService.startService(self)
            for client in self.peerClients.values():
                client.startService()
            if self.peerListen is None:
                return None
            return Channel("tcp").listen(self.reactor, self.peerListen[0],
                                         self.peerListen[1], self.peerServer
                                         ).addCallbacks(peerListening, cannotListenPeers)

        def cannotListen(f):
            self.port.stopListening()
            from netlmm.daemon import StartupError, describeFailure
            raise StartupError(f"PMIP client: MAG channel ({self.channel.transport}): "
                               f"{describeFailure(f)}")

        def cannotListenPeers(f):
            from netlmm.daemon import StartupError, describeFailure
            raise StartupError(f"PMIP client: peer channel (peer_listen): "
                               f"{describeFailure(f)}")

        def peerListening(port):
            self.peerListening = port
            self.log.info("PMIP client: peers ask for conflict detection at "
                          "[{address}]:{port}; asking {peers}",
                          address=self.peerListen[0], port=port.getHost().port,
                          peers=", ".join(self.peerClients) or "none")
        d.addCallbacks(listening, cannotListen)
        return d

    def _startHeartbeats(self):
        from netlmm.service.heartbeat import HeartbeatConfig, Heartbeats
        config = self.heartbeatConfig or HeartbeatConfig(interval=0)
        self.heartbeats = Heartbeats.fromConfig(
            self.reactor, config, self.restartCounter, self._sendHeartbeat,
            self._lmaEvent, role="PMIP client")
        lmas = self.lmaPorts if self.heartbeatLmas is None else self.heartbeatLmas
        self.heartbeats.start(lmas)

    def _sendHeartbeat(self, message, destination, port):
        self.port.send(message, destination,
                       port or self.lmaPorts.get(destination, self.lmaPort))

    def _lmaEvent(self, event):
        from netlmm.core.heartbeat import PeerRestarted
        if type(event) is PeerRestarted:
            # RFC 5847 3.3: the LMA lost the bindings; register them again.
            self.feed(self.core.reregister, event.peer)

    def stopService(self):
        if self.heartbeats is not None:
            self.heartbeats.stop()
        self.port.stopListening()
        self.connectionLog.stop()
        for proto in list(self.connections) + list(self.peerAnswering):
            proto.transport.loseConnection()
        d = maybeDeferred(RoleService.stopService, self)
        if self.listening is not None:
            d.addCallback(lambda _: self.listening.stopListening())
        for client in self.peerClients.values():
            d.addCallback(lambda _, c=client: c.stopService())
        if self.peerListening is not None:
            d.addCallback(lambda _: self.peerListening.stopListening())

        def stopped(result):
            # The last refusals' summaries, and no timer left behind.
            for factory in [self.factory, self.peerServer] + self._peerFactories:
                factory.stopRefusals()
            return result
        return d.addCallback(stopped)

    # ------------------------------------------------------------ peers (Appendix B)

    def peerConnected(self, proto, peer):
        if peer is not None:
            self.peerConnections[peer] = proto
            self.log.info("PMIP client: connected to peer {peer}", peer=peer)
            return
        # The listener admitted only allowed_peers (ControlFactory.admit).
        self.peerAnswering.add(proto)

    def peerDisconnected(self, proto, peer):
        if peer is not None:
            if self.peerConnections.get(peer) is proto:
                del self.peerConnections[peer]
                self.log.warn("PMIP client: lost the connection to peer {peer}", peer=peer)
            return
        self.peerAnswering.discard(proto)

    def peerMessage(self, message, proto, peer):
        kind = type(message)
        if peer is None and kind is ConflictRequest and proto in self.peerAnswering:
            self.observe("received", message, proto.peer)
            response = self.core.answerConflict(message, self.reactor.seconds())
            if proto.send(response):
                self.observe("sent", response, proto.peer)
        elif peer is not None and kind is ConflictResponse \
                and self.peerConnections.get(peer) is proto:
            self.observe("received", message, proto.peer)
            self.feed(self.core.receiveConflictResponse, peer, message)
        else:
            proto.refused("unexpected message", "PMIP client: unexpected {kind} on a peer "
                          "connection {peer}; dropped", kind=kind.__name__)

    def _askPeers(self, effect):
        request = effect.request
        for peer in effect.peers:
            proto = self.peerConnections.get(peer)
            if proto is not None and proto.send(request):
                self.observe("sent", request, proto.peer)
                continue
            self.log.warn("PMIP client: peer {peer} is not connected; it cannot "
                          "check {phoa}", peer=peer, phoa=request.phoa)
            self.reactor.callLater(0, self.feed, self.core.peerFailed,
                                   request.transaction, peer)

    # ------------------------------------------------------------ MAG side

    def magConnected(self, proto):
        if self.draining:
            # Accepted just before the listener closed.
            proto.transport.loseConnection()
            return
        # The listener admitted only allowed_mags (ControlFactory.admit), before TLS.
        self.connections.add(proto)
        # Bounded too: a peer that connects again and again is not a log line each time.
        self.connectionLog.refused(proto.peer[0], "connections",
                                   "PMIP client: MAG connected from {peer}",
                                   peer=proto.describe())

    def magDisconnected(self, proto):
        self.connections.discard(proto)
        for mag, p in list(self._mags.items()):
            if p is proto:
                del self._mags[mag]

    def controlReceived(self, message, proto):
        if proto not in self.connections:
            return
        self.observe("received", message, proto.peer)
        kind = type(message)
        if kind is Trigger:
            self.triggers += 1
            if self.triggerLatency is not None:
                triggered = self._triggered
                if len(triggered) >= _MAX_TIMED:
                    # Triggers never answered (their MAG left): start afresh.
                    triggered.clear()
                triggered[(proto, message.transaction)] = self.reactor.seconds()
            self._mags[message.magAddress] = proto
            if not self._mayProtect(message, proto):
                return
            problem = self.feed(self.core.receiveTrigger, message)
        elif kind is Detach:
            self._mags[message.magAddress] = proto
            problem = self.feed(self.core.receiveDetach, message)
        else:
            proto.refused("unexpected message", "PMIP client: {peer} sent a {kind}; only "
                          "Trigger and Detach are for a PMIP client", kind=kind.__name__)
            return
        if problem is not None:
            self._sendTo(proto, Notification(message.transaction, Result.MALFORMED,
                                             message.mnId), message.magAddress)

    def _mayProtect(self, trigger, proto, asked=()):
        """
        With security on, a mobile needs an SA before its first PBU; a
        Trigger for a mobile without one is answered 'not-authorized'. With
        keys from AAA (Appendix C) the key is fetched first when none is
        cached or it has expired, and the Trigger is processed once it came.
        With several LMAs the keys are those of the mobile's LMA; under the
        'aaa' anchor policy that LMA is known once the [pmip.security] key
        came, and the check is made again with its keys (C{asked}: the key
        stores asked already, not asked twice for one Trigger).
        """
        security = self.core.security
        if hasattr(self.core, "securityFor"):
            # Several LMAs: the one that anchors the mobile may not sign.
            security = self.core.securityFor(trigger.mnId, trigger.phoa or trigger.prefix)
        if security is None:
            return True
        keys = security.keys
        if (hasattr(keys, "fetch") and not keys.fresh(trigger.mnId)
                and all(keys is not k for k in asked)):
            asked += (keys,)
            d = keys.fetch(trigger.mnId)
            d.addCallbacks(lambda sa: self._keyArrived(trigger, proto, sa, asked),
                           lambda f: self._keyFailed(trigger, proto, f))
            return False
        if security.hasKey(trigger.mnId):
            return True
        self._refuseTrigger(trigger, proto)
        return False

    def _keyArrived(self, trigger, proto, sa, asked=()):
        self.log.info("PMIP client: AAA gave SPI {spi} for MN {mnId}", spi=sa.spi,
                      mnId=showMnId(trigger.mnId))
        if proto not in self.connections or not self.running:
            return
        if not self._mayProtect(trigger, proto, asked):
            return
        problem = self.feed(self.core.receiveTrigger, trigger)
        if problem is not None:
            self._sendTo(proto, Notification(trigger.transaction, Result.MALFORMED,
                                             trigger.mnId), trigger.magAddress)

    def _keyFailed(self, trigger, proto, failure):
        self.log.warn("PMIP client: no key from AAA for MN {mnId}: {error}",
                      mnId=showMnId(trigger.mnId),
                      error=failure.getErrorMessage())
        if proto in self.connections:
            self._refuseTrigger(trigger, proto)

    def _refuseTrigger(self, trigger, proto):
        proto.refused("no security association", "PMIP client: no security association "
                      "for MN {mnId}; Trigger {txn} from {peer} refused",
                      mnId=showMnId(trigger.mnId), txn=trigger.transaction)
        self._sendTo(proto, Notification(trigger.transaction, Result.NOT_AUTHORIZED,
                                         trigger.mnId), trigger.magAddress)
        return False

    def holdWrites(self):
        """
        Around each batch of datagrams the MH socket reads at once (and the
        Notifications released by one commit): the MAG connections written
        to meanwhile hold their messages and write them together at the end.
        """
        self._batching = True

    def flushWrites(self):
        self._batching = False
        held, self._held = self._held, []
        for proto in held:
            proto.flush()

    def _sendTo(self, proto, notification, peer):
        if self._batching and proto not in self._held and hasattr(proto, "hold"):
            proto.hold()
            self._held.append(proto)
        # The core carries the container only when it fits (withContainer),
        # so every Notification it makes encodes; the transport logs one
        # that would not.
        if not proto.send(notification):
            return
        results = self.notificationResults
        results[notification.result] = results.get(notification.result, 0) + 1
        if self.triggerLatency is not None:
            started = self._triggered.pop((proto, notification.transaction), None)
            if started is not None:
                self.triggerLatency.observe(self.reactor.seconds() - started)
        self.observe("sent", notification, peer)

    # ------------------------------------------------------------ LMA side

    def _mhReceived(self, message, raw, source, now):
        kind = type(message)
        if kind is mh.Heartbeat:
            if self.heartbeats is not None:
                self.heartbeats.received(message, source[0], source[1])
            return
        if kind is mh.BindingError and self.heartbeats is not None:
            self.heartbeats.received(message, source[0], source[1])
        if kind is mh.BindingAcknowledgement:
            statuses = self.pbackStatus
            statuses[message.status] = statuses.get(message.status, 0) + 1
        security = self._securityAt(source[0])
        if security is None:
            self.feed(self.core.receiveMH, message, raw, source[0])
            return
        verified = security.counters["verified"]
        dropped = self.core.unauthenticated
        self.feed(self.core.receiveMH, message, raw, source[0])
        if security.counters["verified"] > verified:
            self.observe("verified", message, source)
        elif self.core.unauthenticated > dropped:
            self.port.refusals.refused(source[0], "PBAck not authentic",
                                       "PMIP client: PBAck seq {seq} from [{source}]:{port} "
                                       "failed authentication; dropped", seq=message.sequence,
                                       source=source[0], port=source[1])

    def _securityAt(self, address):
        """
        The security layer that signs PBUs to the LMA at C{address} and
        checks its PBAcks (with several LMAs, each may have keys of its own).
        """
        at = getattr(self.core, "securityAt", None)
        return self.core.security if at is None else at(address)

    def execute(self, effects):
        for e in effects:
            kind = type(e)
            if kind is SendMH:
                # A signed PBU goes as the security layer encoded it.
                signed = getattr(self._securityAt(e.destination), "octets", None)
                octets = None if signed is None else signed.take(e.message)
                port = self.lmaPorts.get(e.destination, self.lmaPort)
                if octets is None:
                    self.port.send(e.message, e.destination, port)
                else:
                    self.port.send(e.message, e.destination, port, octets=octets)
            elif kind is AskPeers:
                self._askPeers(e)
            elif kind is Notify:
                proto = self._mags.get(e.mag)
                if proto is None:
                    self.log.warn("PMIP client: MAG {mag} is not connected; "
                                  "Notification {result} for transaction {txn} dropped",
                                  mag=e.mag, result=Result.NAMES.get(e.notification.result),
                                  txn=e.notification.transaction)
                    continue
                self._sendTo(proto, e.notification, e.mag)


    def command(self, words):
        """
        A command from the local control socket (L{netlmm.ctl}): C{list},
        C{show KEY} or C{deregister KEY}, KEY an MN identifier, a home
        address (or one inside a mobile's prefix) or a pCoA (its MAG's
        address); C{drain} and
        C{undrain} alone (this client, L{drain}); with several LMAs C{move
        MNID LMA} (anchor the mobile at that LMA, draft 4.4), C{drain LMA} /
        C{undrain LMA} (that LMA) and C{lmas} (each LMA, its mobiles, drained
        or not).
        """
        if words in (["drain"], ["undrain"]):
            if words[0] == "drain":
                closed = self.drain()
                return [f"ok drained: {closed} MAG channels closed; MAGs move this "
                        "client's mobiles to other clients"]
            self.undrain()
            return ["ok undrained"]
        from netlmm.ctl import addressOrNone, bindingCommand
        from netlmm.wire.control import showMnId
        if words and words[0] in _ANCHOR_COMMANDS:
            if not hasattr(self.core, "move"):
                raise ValueError("this PMIP client has one LMA; there is none to move to")
            return getattr(self, "_" + words[0])(words[1:])
        mobiles = self.core.mobiles

        def find(key):
            address = addressOrNone(key)
            if address is None:
                m = mobiles.get(key.encode("utf-8"))
                return [] if m is None else [m]
            return sorted((m for m in mobiles.values() if _names(m, address)),
                          key=lambda m: m.mnId)

        def homes(m):
            return [str(h) for h in (m.home, m.ipv4) if h is not None]

        def row(m):
            return f"{showMnId(m.mnId)} {m.state} {m.pcoa or '-'} {','.join(homes(m)) or '-'}"

        def detail(m):
            now = self.reactor.seconds()
            expires = "-" if m.expiry is None else f"{max(0, m.expiry - now):.0f}"
            lines = [f"mn-id {showMnId(m.mnId)}", f"state {m.state}",
                     f"homes {' '.join(homes(m)) or '-'}", f"pcoa {m.pcoa or '-'}",
                     f"mag {m.mag or '-'}", f"sequence {m.sequence}",
                     f"lifetime {m.lifetime}", f"expires-in {expires}"]
            anchorOf = getattr(self.core, "anchorOf", None)
            if anchorOf is not None:
                # Several LMAs: which anchors it, and a move under way.
                lines.append(f"lma {anchorOf(m.mnId).name}")
                move = self.core.moves.get(m.mnId)
                if move is not None:
                    lines += [f"move {move.state} {move.old[0].name} -> {move.new[0].name}",
                              f"old-home {move.oldHome}"]
            return lines

        def deregister(m):
            error = self.feed(self.core.deregister, m.mnId)
            if error is not None:
                raise ValueError(f"cannot deregister {showMnId(m.mnId)} in state {m.state}")
            return f"deregistering {showMnId(m.mnId)}"
        return bindingCommand(words, mobiles.values, len(mobiles), find, row, detail,
                              deregister)

    def _move(self, args):
        """C{move MNID LMA}: 'ok 0' once the registration with the new LMA is under way."""
        if len(args) != 2:
            raise ValueError("expected 'move MNID LMA'")
        self._anchorInput(self.core.move, args[0].encode("utf-8"), args[1])
        return ["ok 0"]

    def _drain(self, args):
        """
        C{drain LMA}: 'ok N', then a row per mobile the LMA still holds (its
        move under way, or why it stays).
        """
        if len(args) != 1:
            raise ValueError("expected 'drain LMA'")
        self._anchorInput(self.core.drain, args[0])
        rows = self.core.drainStatus(args[0])
        return [f"ok {len(rows)}"] + rows

    def _undrain(self, args):
        """C{undrain LMA}: the LMA takes new mobiles again."""
        if len(args) != 1:
            raise ValueError("expected 'undrain LMA'")
        self._anchorInput(self.core.undrain, args[0])
        return ["ok 0"]

    def _lmas(self, args):
        """C{lmas}: 'ok N', then 'NAME [ADDRESS]:PORT MOBILES drained|serving' per LMA."""
        if args:
            raise ValueError("expected 'lmas'")
        loads = self.core.loads()
        rows = [f"{a.name} [{a.address}]:{a.port} {loads[a.name]} "
                + ("drained" if a.name in self.core.drained else "serving")
                for a in self.core.anchors]
        return [f"ok {len(rows)}"] + rows

    def _anchorInput(self, method, *args):
        """Feed an operator's anchor command to the core; its refusal as ValueError."""
        problem = self.feed(method, *args)
        if problem is not None:
            raise ValueError(str(problem))

    def enableMetrics(self):
        """Time each Trigger until its Notification (for the metrics)."""
        from netlmm.metrics import Histogram
        self.triggerLatency = Histogram()

    def metricFamilies(self):
        """The PMIP client's Prometheus metrics (L{netlmm.metrics}), read at a scrape."""
        from netlmm.metrics import counter, gauge, snake, tally
        yield counter("netlmm_pmip_triggers_received", "Triggers received from MAGs",
                      self.triggers)
        yield counter("netlmm_pmip_notifications_sent",
                      "Notifications sent to MAGs, by result",
                      {Result.NAMES.get(r, str(r)): n
                       for r, n in self.notificationResults.items()}, "result")
        if self.triggerLatency is not None:
            yield self.triggerLatency.family(
                "netlmm_pmip_trigger_notification_seconds",
                "Time from a Trigger's arrival to its Notification's sending")
        yield counter("netlmm_pmip_pbas_received",
                      "Proxy Binding Acknowledgements received, by status",
                      {mh.Status.name(s): n for s, n in self.pbackStatus.items()},
                      "status")
        securities = getattr(self.core, "securities", None)
        if securities is None:
            securities = [] if self.core.security is None else [self.core.security]
        if securities:
            # One count over all LMAs' keys.
            c = {k: sum(s.counters[k] for s in securities)
                 for k in ("noKey", "dropped", "signed")}
            yield counter("netlmm_pmip_auth_refusals",
                          "Triggers refused for want of a key (no_key) and PBAcks "
                          "dropped by RFC 4285 authentication (dropped), by reason",
                          {snake(k): c[k] for k in ("noKey", "dropped")}, "reason")
            yield counter("netlmm_pmip_pbus_signed", "PBUs signed (RFC 4285)",
                          c["signed"])
        yield gauge("netlmm_pmip_mobiles",
                    "Mobiles in the PMIP client's cache, by state",
                    tally(self.core.mobiles.values(), "state"), "state")
        moves = getattr(self.core, "moveCounters", None)
        if moves is not None:
            yield counter("netlmm_pmip_anchor_moves",
                          "Moves of mobiles to another LMA (draft 4.4), by outcome: started, "
                          "moved, failed, abandoned, released (old binding deregistered), "
                          "lost (old binding dropped by its LMA)", dict(moves), "event")
            yield gauge("netlmm_pmip_lma_mobiles", "Mobiles anchored at each LMA",
                        self.core.loads(), "lma")
        yield gauge("netlmm_pmip_mag_connections", "MAG connections open",
                    len(self.connections))
        yield gauge("netlmm_pmip_peer_connections",
                    "Connections to peer PMIP clients open (conflict detection)",
                    len(self.peerConnections))
        yield from self.storeMetricFamilies("netlmm_pmip")
        yield counter("netlmm_pmip_reregistered",
                      "Bindings registered again because their LMA restarted (RFC 5847)",
                      self.core.counters["reregistered"])
        counters = self.core.counters
        yield counter("netlmm_pmip_revocations",
                      "RFC 5846 Binding Revocation Indications from the LMA, by outcome: "
                      "revoked (the mobile dropped), dropped (not authentic)",
                      {"revoked": counters["revoked"],
                       "dropped": counters["revocationsDropped"]}, "outcome")
        if self.heartbeats is not None:
            yield from self.heartbeats.metricFamilies("netlmm_pmip")
        yield from self.port.metricFamilies("netlmm_pmip")


def _names(m, address):
    """True when C{address} is mobile C{m}'s home, in its prefix, or its pCoA."""
    home = m.home
    if home == address or m.ipv4 == address or m.pcoa == address:
        return True
    return isinstance(home, IPv6Network) and address.version == 6 and address in home


#: Triggers timed at once, at most (L{PmipService.enableMetrics}).
_MAX_TIMED = 65536


#: The control socket's commands on anchors (a PMIP client with several LMAs).
_ANCHOR_COMMANDS = ("move", "drain", "undrain", "lmas")


def peerKey(endpoint):
    """(address, port) -> '[address]:port', how the core names a peer."""
    from netlmm.core.selection import endpointText
    return endpointText(endpoint)
