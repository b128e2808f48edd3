"""
The 'rs' attachment detector: Router Solicitation snooping.

A mobile that comes up on a link solicits a router; the Source Link-Layer
Address option of its RS is its L2 identifier. A mobile that starts
duplicate address detection (an NS from ::) before its first RS, having
formed its address from the RA a new port gets at once, is attached then,
by the Ethernet source of that NS. The MN identifier netlmm uses
is that MAC as lower-case text, 'aa:bb:cc:dd:ee:ff' (the bytes of that text
in the Trigger's MN identifier), so that every MAG of the domain names the
mobile the same way and the 'slaac' strategy matches it by MAC.

A mobile detaches when nothing is heard from it (RS, or any ICMPv6 frame:
Neighbor Solicitations for the router's address, DAD, echo) for
C{idle_timeout} seconds, or at once when the bridge port its frames arrived
on goes away (with C{watch_ports}, through L{BridgeWatcher}).
"""

from twisted.internet.defer import maybeDeferred, succeed
from twisted.logger import Logger
from zope.interface import implementer

from netlmm.access import AttachmentEvent
from netlmm.interfaces import IAttachmentDetector
from netlmm.wire.icmpv6 import IPPROTO_ICMPV6, NS, UNSPECIFIED, macText


def mnIdOf(mac):
    """The MN identifier (bytes) of a mobile with MAC C{mac} (6 octets)."""
    return macText(mac).encode("ascii")


@implementer(IAttachmentDetector)
class RsDetector:
    """
    Attachments from Router Solicitations on C{link} (an
    L{netlmm.access.link.AccessLink}); detachments by idle time
    (C{idleTimeout} seconds, None: never) and by bridge port removal.
    """

    name = "rs"
    log = Logger()

    def __init__(self, reactor, link, idleTimeout=300.0, watchPorts=True):
        self.reactor = reactor
        self.link = link
        self.idleTimeout = idleTimeout
        self.watchPorts = watchPorts
        self.mag = None
        #: MN identifier -> the DelayedCall that detaches it when idle (or None).
        self.mobiles = {}
        self.watcher = None

    @classmethod
    def fromConfig(cls, table, reactor, access=None, system=None, **context):
        """
        Options: C{interface} (default and must-match: [mag.access]
        interface; without [mag.access] the MAG only listens and another
        router advertises), C{idle_timeout} seconds (300; 0 never),
        C{watch_ports} (true: a vanished bridge port detaches at once).
        """
        from netlmm.access.link import snoopingOnly
        from netlmm.access.netlink import _interface
        interface = _interface(table, access)
        idle = table.number("idle_timeout", 300, minimum=0, maximum=86400)
        watch = table.boolean("watch_ports", True)
        table.finish()
        link = access if access is not None else snoopingOnly(reactor, interface, system)
        return cls(reactor, link, idleTimeout=idle or None, watchPorts=watch)

    def start(self, mag):
        self.mag = mag
        self.link.solicitationListeners.append(self._solicited)
        self.link.frameListeners.append(self._frame)
        self.link.start()
        self.log.info("rs detector on {interface} (idle timeout {idle})",
                      interface=self.link.config.interface, idle=self.idleTimeout)
        if not self.watchPorts:
            return succeed(None)
        from netlmm.access.netlink import BridgeWatcher
        self.watcher = BridgeWatcher(self.reactor, self.link.system, self.link.config.interface,
                                     portGone=self._portGone,
                                     portUp=lambda port: self.link.newPort())

        def failed(f):
            # Not a bridge: the idle timeout alone detaches.
            self.log.warn("rs detector: not watching ports: {error}", error=f.getErrorMessage())
            self.watcher.stop()
            self.watcher = None
        return maybeDeferred(self.watcher.start).addCallbacks(lambda _: None, failed)

    def stop(self):
        for timer in self.mobiles.values():
            if timer is not None and timer.active():
                timer.cancel()
        self.mobiles = {}
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None
        for listeners, f in ((self.link.solicitationListeners, self._solicited),
                             (self.link.frameListeners, self._frame)):
            if f in listeners:
                listeners.remove(f)
        self.link.stop()
        self.mag = None

    def _solicited(self, mac, source):
        if mac is None:
            return
        mnId = mnIdOf(mac)
        if mnId in self.mobiles:
            self._heard(mnId)
            return
        self._attach(mnId, mac, f"solicited from {source}")

    def _attach(self, mnId, mac, how):
        self.mobiles[mnId] = None
        self._heard(mnId)
        self.log.info("rs detector: {mnId} {how}", mnId=mnId.decode("ascii"), how=how)
        self.mag.attached(AttachmentEvent(mnId, linkLayer=macText(mac)))

    def _frame(self, frame):
        mnId = mnIdOf(frame.sourceMac)
        if mnId in self.mobiles:
            self._heard(mnId)
        elif (frame.source == UNSPECIFIED and frame.nextHeader == IPPROTO_ICMPV6
              and frame.payload[:1] == bytes((NS,))):
            # Duplicate address detection: a mobile configuring an address on
            # this link. Since new ports get an RA at once, that can come
            # before its first RS (which waits for its link-local DAD), and the
            # address's DAD must not end before the MAG can bind or defend it.
            self._attach(mnId, frame.sourceMac, "began DAD")

    def _heard(self, mnId):
        if self.idleTimeout is None:
            return
        timer = self.mobiles.get(mnId)
        if timer is not None and timer.active():
            timer.reset(self.idleTimeout)
        else:
            self.mobiles[mnId] = self.reactor.callLater(self.idleTimeout, self._idle, mnId)

    def _idle(self, mnId):
        self.log.info("rs detector: nothing from {mnId} for {idle} s; detached",
                      mnId=mnId.decode("ascii"), idle=self.idleTimeout)
        self._detach(mnId)

    def _portGone(self, port, macs):
        for mac in macs:
            mnId = mnIdOf(mac)
            if mnId in self.mobiles:
                self.log.info("rs detector: the port of {mnId} went away; detached",
                              mnId=mnId.decode("ascii"))
                self._detach(mnId)

    def _detach(self, mnId):
        timer = self.mobiles.pop(mnId, "absent")
        if timer == "absent":
            return
        if timer is not None and timer.active():
            timer.cancel()
        if self.mag is not None:
            self.mag.detached(mnId)
