"""The MAG daemon: L{MagCore} + strategy + attachment detector + data plane."""

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import maybeDeferred, gatherResults
from zope.interface import implementer

from netlmm.core.effects import Bound, SendControl, TunnelDown, TunnelUp, Unbound
from netlmm.interfaces import IMagControl
from netlmm.service.base import RoleService
from netlmm.transport.channel import Channel
from netlmm.transport.control import ControlFactory
from netlmm.wire.control import Notification


class _PmipFacing(ControlFactory):
    """The MAG's connection to its PMIP client."""

    def __init__(self, service):
        super().__init__()
        self.service = service

    def connectionMade(self, proto):
        self.service.pmipConnected(proto)

    def connectionLost(self, proto, reason):
        self.service.pmipDisconnected(proto, reason)

    def messageReceived(self, message, proto):
        self.service.controlReceived(message, proto)


@implementer(IMagControl)
class MagService(RoleService):
    """
    @param pmip: (address, port) of the PMIP client's stream listener.
    @param strategy: an L{IAddressAssignment}.
    @param detector: an L{IAttachmentDetector}, or None when attachments are
        fed in by code (tests, the demo).
    @param channel: the L{Channel} to the PMIP client (TLS, TCP, SCTP);
        plain TCP when None.
    """

    def __init__(self, reactor, core, pmip, strategy, dataplane, detector=None,
                 observer=None, name="MAG", channel=None):
        super().__init__(reactor, core, observer)
        self.setName(name)
        self.pmip = pmip
        self.strategy = strategy
        self.dataplane = dataplane
        self.detector = detector
        self.channel = channel if channel is not None else Channel("tcp")
        self.factory = _PmipFacing(self)
        self.channel.prepare(self.factory, reactor, name, "pmip")
        self.connection = None
        self._queue = []
        endpoint = self.channel.clientEndpoint(reactor, pmip[0], pmip[1],
                                               expectRole="pmip", timeout=5)
        self.client = ClientService(endpoint, self.factory, backoffPolicy(
            initialDelay=0.5, maxDelay=10.0), clock=reactor)

    @property
    def address(self):
        return self.core.address

    def startService(self):
        d = maybeDeferred(self.dataplane.start)

        def started(_):
            self.client.startService()
            RoleService.startService(self)
            self.log.info("{name}: pCoA {address}, PMIP client [{pmip}]:{port} over "
                          "{channel}, LMA {lma}, strategy {strategy}", name=self.name,
                          address=self.core.address, pmip=self.pmip[0], port=self.pmip[1],
                          channel=self.channel.describe(),
                          lma=self.core.lmaAddress, strategy=self.strategy.name)
            steps = [maybeDeferred(self.strategy.start, self)]
            if self.detector is not None:
                steps.append(maybeDeferred(self.detector.start, self))
            return gatherResults(steps)
        return d.addCallback(started)

    def stopService(self):
        steps = [maybeDeferred(self.strategy.stop)]
        if self.detector is not None:
            steps.append(maybeDeferred(self.detector.stop))
        steps.append(self.client.stopService())
        d = gatherResults(steps)
        d.addCallback(lambda _: RoleService.stopService(self))
        d.addCallback(lambda _: self.dataplane.stop())
        return d

    # ------------------------------------------------------------ IMagControl

    def attached(self, event):
        """A mobile appeared on the access link."""
        if self.feed(self.core.attach, event.mnId) is None:
            self.strategy.attached(event)

    def addressReady(self, mnId, phoa, mode):
        """The strategy has the pHoA (or the LMA is to assign it)."""
        if self.core.attachment(mnId) is None:
            self.log.warn("{name}: address for {mnId}, which is not attached; ignored",
                          name=self.name, mnId=_show(mnId))
            return
        self.feed(self.core.addressReady, mnId, phoa, mode)

    def detached(self, mnId):
        """A mobile left the access link."""
        if self.core.attachment(mnId) is None:
            self.log.info("{name}: {mnId} left; nothing is bound for it here",
                          name=self.name, mnId=_show(mnId))
            return
        self.feed(self.core.detach, mnId)

    # ------------------------------------------------------------ PMIP side

    def pmipConnected(self, proto):
        self.connection = proto
        self.log.info("{name}: connected to PMIP client {peer}", name=self.name,
                      peer=proto.describe())
        queued, self._queue = self._queue, []
        for message in queued:
            self._send(message)

    def pmipDisconnected(self, proto, reason):
        if self.connection is proto:
            self.connection = None
            self.log.warn("{name}: lost the PMIP client connection", name=self.name)

    def controlReceived(self, message, proto):
        if proto is not self.connection:
            # Only the current, authenticated PMIP client connection counts.
            return
        self.observe("received", message, proto.peer)
        if type(message) is not Notification:
            self.log.warn("{name}: the PMIP client sent a {kind}; only Notifications "
                          "are for a MAG", name=self.name, kind=type(message).__name__)
            return
        self.feed(self.core.receiveNotification, message)

    def _send(self, message):
        if self.connection is None:
            self._queue.append(message)
            return
        if self.connection.send(message):
            self.observe("sent", message, self.pmip)

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
                self.strategy.bound(e.mnId, e.phoa)
            elif kind is Unbound:
                self.strategy.unbound(e.mnId, e.phoa, e.reason)


def _show(mnId):
    return mnId.decode("utf-8", "replace")

