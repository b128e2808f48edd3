"""The PMIP client daemon: MAG-facing stream server + L{PmipCore} + MH socket."""

from ipaddress import IPv6Network

from twisted.internet.defer import maybeDeferred

from netlmm.core.effects import Notify, SendMH
from netlmm.service.base import RoleService
from netlmm.transport.channel import Channel
from netlmm.transport.control import ControlFactory
from netlmm.transport.mh import MHPort
from netlmm.wire.control import Detach, Notification, Result, Trigger


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


class PmipService(RoleService):
    """
    @param listen: (address, port) where MAGs connect (TCP).
    @param mhBind: (address, port) of the Mobility Header socket towards the LMA.
    @param lmaPort: the LMA's MH port (UDP).
    @param allowedMags: networks MAG connections may come from.
    @param channel: the L{Channel} MAGs connect over (TLS, TCP, SCTP);
        plain TCP when None.
    """

    def __init__(self, reactor, core, listen, mhBind, transport, lmaPort,
                 allowedMags, observer=None, name="PMIP client", channel=None):
        super().__init__(reactor, core, observer)
        self.setName(name)
        self.listen = listen
        self.lmaPort = lmaPort
        self.allowedMags = tuple(IPv6Network(n) for n in allowedMags)
        self.port = MHPort(reactor, self._mhReceived, mhBind[0], mhBind[1], transport,
                           observer=self.observe if observer else None)
        self.channel = channel if channel is not None else Channel("tcp")
        self.factory = _MagFacing(self)
        self.channel.prepare(self.factory, reactor, "PMIP client", "mag")
        self.listening = None
        self._mags = {}
        self.connections = set()

    def startService(self):
        self.restoreState()
        self.port.startListening()
        d = self.channel.listen(self.reactor, self.listen[0], self.listen[1],
                                self.factory, expectRole="mag")

        def listening(port):
            self.listening = port
            self.log.info("PMIP client: MAGs connect to [{address}]:{port}; PBUs go "
                          "to [{lma}]:{lmaPort} over {kind}; MAG channel: {channel}",
                          address=self.listen[0], port=port.getHost().port,
                          lma=self.core.lmaAddress, lmaPort=self.lmaPort,
                          kind=self.port.kind, channel=self.channel.describe())
            if not self.channel.tls:
                self.log.warn("PMIP client: the MAG channel is not authenticated "
                              "(draft 4.9.4 requires it): use [pmip.tls] on any "
                              "network that is not fully trusted")
            RoleService.startService(self)
        d.addCallback(listening)
        d.addErrback(self._cannotListen)
        return d

    def _cannotListen(self, failure):
        self.port.stopListening()
        return failure

    def stopService(self):
        self.port.stopListening()
        for proto in list(self.connections):
            proto.transport.loseConnection()
        d = maybeDeferred(RoleService.stopService, self)
        if self.listening is not None:
            d.addCallback(lambda _: self.listening.stopListening())
        return d

    # ------------------------------------------------------------ MAG side

    def magConnected(self, proto):
        address = proto.peer[0]
        if not any(address in n for n in self.allowedMags):
            self.log.warn("PMIP client: refused MAG connection from {peer}: "
                          "not in allowed_mags", peer=proto.describe())
            proto.transport.loseConnection()
            return
        self.connections.add(proto)
        self.log.info("PMIP client: MAG connected from {peer}", peer=proto.describe())

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
            self._mags[message.magAddress] = proto
            if not self._mayProtect(message, proto):
                return
            problem = self.feed(self.core.receiveTrigger, message)
        elif kind is Detach:
            self._mags[message.magAddress] = proto
            problem = self.feed(self.core.receiveDetach, message)
        else:
            self.log.warn("PMIP client: a MAG sent a {kind}; only Trigger and "
                          "Detach are for a PMIP client", kind=kind.__name__)
            return
        if problem is not None:
            self._sendTo(proto, Notification(message.transaction, Result.MALFORMED,
                                             message.mnId), message.magAddress)

    def _mayProtect(self, trigger, proto):
        """
        With security on, a mobile needs an SA before its first PBU; a
        Trigger for a mobile without one is answered 'not-authorized'. With
        keys from AAA (Appendix C) the key is fetched first when none is
        cached or it has expired, and the Trigger is processed once it came.
        """
        security = self.core.security
        if security is None:
            return True
        keys = security.keys
        if hasattr(keys, "fetch") and not keys.fresh(trigger.mnId):
            d = keys.fetch(trigger.mnId)
            d.addCallbacks(lambda sa: self._keyArrived(trigger, proto, sa),
                           lambda f: self._keyFailed(trigger, proto, f))
            return False
        if security.hasKey(trigger.mnId):
            return True
        self._refuseTrigger(trigger, proto)
        return False

    def _keyArrived(self, trigger, proto, sa):
        self.log.info("PMIP client: AAA gave SPI {spi} for MN {mnId}", spi=sa.spi,
                      mnId=trigger.mnId.decode("utf-8", "replace"))
        if proto not in self.connections or not self.running:
            return
        problem = self.feed(self.core.receiveTrigger, trigger)
        if problem is not None:
            self._sendTo(proto, Notification(trigger.transaction, Result.MALFORMED,
                                             trigger.mnId), trigger.magAddress)

    def _keyFailed(self, trigger, proto, failure):
        self.log.warn("PMIP client: no key from AAA for MN {mnId}: {error}",
                      mnId=trigger.mnId.decode("utf-8", "replace"),
                      error=failure.getErrorMessage())
        if proto in self.connections:
            self._refuseTrigger(trigger, proto)

    def _refuseTrigger(self, trigger, proto):
        self.log.warn("PMIP client: no security association for MN {mnId}; "
                      "Trigger {txn} from {peer} refused",
                      mnId=trigger.mnId.decode("utf-8", "replace"),
                      txn=trigger.transaction, peer=proto.describe())
        self._sendTo(proto, Notification(trigger.transaction, Result.NOT_AUTHORIZED,
                                         trigger.mnId), trigger.magAddress)
        return False

    def _sendTo(self, proto, notification, peer):
        n = notification
        if not proto.send(n) and n.pback is not None:
            # The 8-bit Length cannot hold this PBAck (long MN identifiers):
            # the result and pHoA still tell the MAG what it must know.
            self.log.warn("PMIP client: Notification {txn} too long with its "
                          "container; sent without the PBAck", txn=n.transaction)
            n = Notification(n.transaction, n.result, n.mnId, n.phoa, None, n.extra)
            if not proto.send(n):
                return
        self.observe("sent", n, peer)

    # ------------------------------------------------------------ LMA side

    def _mhReceived(self, message, raw, source, now):
        security = self.core.security
        if security is None:
            self.feed(self.core.receiveMH, message, raw, source[0])
            return
        verified = security.counters["verified"]
        dropped = self.core.unauthenticated
        self.feed(self.core.receiveMH, message, raw, source[0])
        if security.counters["verified"] > verified:
            self.observe("verified", message, source)
        elif self.core.unauthenticated > dropped:
            self.log.warn("PMIP client: PBAck seq {seq} from [{source}]:{port} failed "
                          "authentication; dropped", seq=message.sequence,
                          source=source[0], port=source[1])

    def execute(self, effects):
        for e in effects:
            kind = type(e)
            if kind is SendMH:
                self.port.send(e.message, e.destination, self.lmaPort)
            elif kind is Notify:
                proto = self._mags.get(e.mag)
                if proto is None:
                    self.log.warn("PMIP client: MAG {mag} is not connected; "
                                  "Notification {result} for transaction {txn} dropped",
                                  mag=e.mag, result=Result.NAMES.get(e.notification.result),
                                  txn=e.notification.transaction)
                    continue
                self._sendTo(proto, e.notification, e.mag)
