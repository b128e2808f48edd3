"""
Link events from the kernel (rtnetlink, decoded with pyroute2) on the MAG's
access bridge, and the 'link' attachment detector built on them.

The access link is a Linux bridge (e.g. 'acc0'); each mobile's link is a
port of it (a veth, an access point's VLAN, a tap). L{BridgeWatcher} follows
the bridge's ports and its forwarding database (FDB): the bridge learns a
mobile's MAC on the port its first frame (RS, DAD NS) arrives on, and flushes
the entry when the port goes away. One non-blocking netlink socket carries
both the initial dumps and the events, read by the reactor: nothing blocks.
"""

import socket

from pyroute2.netlink import NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR
from pyroute2.netlink.rtnl import (
    RTM_DELLINK, RTM_DELNEIGH, RTM_GETLINK, RTM_GETNEIGH, RTM_NEWLINK, RTM_NEWNEIGH,
)
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.marshal import MarshalRtnl
from pyroute2.netlink.rtnl.ndmsg import ndmsg
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from netlmm.access import AttachmentEvent
from netlmm.interfaces import IAttachmentDetector
from netlmm.wire.icmpv6 import macBytes, macText

NUD_PERMANENT = 0x80
RTMGRP_LINK = 0x1
RTMGRP_NEIGH = 0x4
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000


class RtnetlinkWatcher:
    """
    One non-blocking rtnetlink socket, subscribed to C{groups} and read by
    the reactor: it dumps what the subclass needs (C{_dumps}, one request
    at a time, since the kernel answers EBUSY otherwise), then follows the
    events. L{start} fires with the watcher when the dumps are in (or fails
    with L{_failure}). Subclasses implement L{handle} for their messages.
    """

    log = Logger()
    groups = RTMGRP_LINK
    label = "netlink"

    def __init__(self, reactor, system):
        self.reactor = reactor
        self.system = system
        self._marshal = MarshalRtnl()
        self._reader = None
        self._dumps = []
        self._seq = 0
        self._ready = None

    def _dumpRequests(self):
        """The dump requests to send at start, in order (callables)."""
        return [self._linkDump]

    def start(self):
        """Open the socket and run the dumps; fires when they are all in."""
        from netlmm.access.system import SocketReader
        sock = self.system.netlinkSocket(self.groups)
        self._reader = SocketReader(self.reactor, sock, self._datagram, self.label)
        self._reader.startReading()
        self._ready = Deferred()
        self._dumps = self._dumpRequests()
        self._nextDump()
        return self._ready

    def stop(self):
        """Close the socket."""
        if self._reader is not None:
            self._reader.stop()
            self._reader = None

    def _request(self, msg, kind):
        self._seq += 1
        msg["header"]["type"] = kind
        msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_DUMP
        msg["header"]["seq"] = self._seq
        msg.encode()
        self._reader.socket.send(msg.data)

    def _linkDump(self):
        m = ifinfmsg()
        m["family"] = socket.AF_UNSPEC
        self._request(m, RTM_GETLINK)

    def _nextDump(self):
        if self._dumps:
            self._dumps.pop(0)()
            return
        if self._ready is not None:
            d, self._ready = self._ready, None
            failure = self._failure()
            if failure is not None:
                d.errback(failure)
            else:
                d.callback(self)

    def _failure(self):
        """None when the dumps found what is needed, else the exception."""
        return None

    def _datagram(self, data, ancillary, address):
        for msg in self._marshal.parse(data):
            self.handle(msg)

    def handle(self, msg):
        """One decoded rtnetlink message (event or dump part)."""
        raise NotImplementedError


class BridgeWatcher(RtnetlinkWatcher):
    """
    Follows bridge C{interface}'s ports and learned MACs. Calls
    C{learned(mac, port)} when a unicast MAC is learned on a port (or moves
    to another), C{forgotten(mac, port)} when its FDB entry goes (port
    removed, ageing), and C{portGone(port, macs)} when a port is removed,
    leaves the bridge or loses its carrier. MACs are 6 octets, ports
    ifindexes.
    """

    groups = RTMGRP_LINK | RTMGRP_NEIGH

    def __init__(self, reactor, system, interface, learned=None, forgotten=None,
                 portGone=None, portUp=None):
        super().__init__(reactor, system)
        self.interface = interface
        self.label = f"netlink({interface})"
        self.learned = learned or (lambda mac, port: None)
        self.forgotten = forgotten or (lambda mac, port: None)
        self.portGone = portGone or (lambda port, macs: None)
        self.portUp = portUp or (lambda port: None)
        self.bridge = None
        self.isBridge = False
        #: ifindex -> name of the bridge's ports that are up.
        self.ports = {}
        #: MAC -> port it was learned on.
        self.fdb = {}

    def _dumpRequests(self):
        return [self._linkDump, self._fdbDump]

    def _failure(self):
        if self.bridge is None:
            return RuntimeError(f"access interface {self.interface!r} does not exist")
        if not self.isBridge:
            return RuntimeError(f"access interface {self.interface!r} is not a bridge")
        return None

    def _fdbDump(self):
        m = ndmsg()
        m["family"] = socket.AF_BRIDGE
        self._request(m, RTM_GETNEIGH)

    def handle(self, msg):
        """One decoded rtnetlink message (event or dump part)."""
        kind = msg["header"]["type"]
        if kind == NLMSG_DONE:
            self._nextDump()
        elif kind == NLMSG_ERROR:
            self.log.warn("netlink error {error} on {interface}", error=msg["header"].get("error"),
                          interface=self.interface)
            self._nextDump()
        elif kind in (RTM_NEWLINK, RTM_DELLINK):
            self._link(msg, kind == RTM_DELLINK)
        elif kind in (RTM_NEWNEIGH, RTM_DELNEIGH) and msg["family"] == socket.AF_BRIDGE:
            self._neigh(msg, kind == RTM_DELNEIGH)

    def _link(self, msg, deleted):
        index = msg["index"]
        name = msg.get_attr("IFLA_IFNAME")
        if name == self.interface and msg["family"] == socket.AF_UNSPEC:
            if deleted:
                self._dropAll()
                self.bridge = None
                return
            self.bridge = index
            info = msg.get_attr("IFLA_LINKINFO")
            self.isBridge = bool(info) and info.get_attr("IFLA_INFO_KIND") == "bridge"
            if not msg["flags"] & IFF_UP:
                self._dropAll()
            return
        if self.bridge is None or index == self.bridge:
            return
        # Bridge-family messages about ports omit details; the generic ones carry them.
        member = not deleted and msg.get_attr("IFLA_MASTER") == self.bridge
        up = bool(msg["flags"] & IFF_LOWER_UP) and bool(msg["flags"] & IFF_UP)
        if member and up:
            if index not in self.ports:
                self.ports[index] = name
                self.log.debug("{interface}: port {port} up", interface=self.interface, port=name)
                if self._ready is None:
                    # Not during the initial dump: only ports that come up now.
                    self.portUp(index)
        elif index in self.ports and msg["family"] == socket.AF_UNSPEC or deleted:
            self._portGone(index)

    def _portGone(self, index):
        name = self.ports.pop(index, None)
        macs = sorted(m for m, p in self.fdb.items() if p == index)
        for m in macs:
            del self.fdb[m]
        if name is not None or macs:
            self.portGone(index, macs)

    def _dropAll(self):
        for index in sorted(set(self.ports) | set(self.fdb.values())):
            self._portGone(index)

    def _neigh(self, msg, deleted):
        if self.bridge is None or msg.get_attr("NDA_MASTER") != self.bridge:
            return
        if msg["state"] & NUD_PERMANENT:
            return
        text = msg.get_attr("NDA_LLADDR")
        try:
            mac = macBytes(text)
        except ValueError:
            return
        if mac[0] & 1:
            return
        port = msg["ifindex"]
        if deleted:
            if self.fdb.get(mac) == port:
                del self.fdb[mac]
                self.forgotten(mac, port)
            return
        if self.fdb.get(mac) != port:
            self.fdb[mac] = port
            self.learned(mac, port)


@implementer(IAttachmentDetector)
class LinkDetector:
    """
    The 'link' detector: a mobile attaches when the access bridge learns its
    MAC on a port, and detaches when that port goes down or away (its FDB
    entry is flushed), or when the entry ages out of the bridge. The MN
    identifier is the MAC as text, 'aa:bb:cc:dd:ee:ff'.
    """

    name = "link"
    log = Logger()

    def __init__(self, reactor, interface, system=None, detachOnAgeing=True, access=None):
        from netlmm.access.system import System
        self.reactor = reactor
        self.interface = interface
        #: The access link, when this MAG advertises: new ports get an RA at once.
        self.access = access
        self.system = system or System()
        self.detachOnAgeing = detachOnAgeing
        self.mag = None
        self.mobiles = {}
        self.watcher = None

    @classmethod
    def fromConfig(cls, table, reactor, access=None, system=None, **context):
        """Options: C{interface} (default: [mag.access] interface), C{detach_on_ageing}."""
        interface = _interface(table, access)
        ageing = table.boolean("detach_on_ageing", True)
        table.finish()
        return cls(reactor, interface, system=system or (access.system if access else None),
                   detachOnAgeing=ageing, access=access)

    def start(self, mag):
        self.mag = mag
        self.watcher = BridgeWatcher(self.reactor, self.system, self.interface,
                                     learned=self._learned, forgotten=self._forgotten,
                                     portGone=self._portGone, portUp=self._portUp)
        self.log.info("link detector: watching the ports of bridge {interface}",
                      interface=self.interface)
        return self.watcher.start()

    def _portUp(self, port):
        if self.access is not None:
            self.access.newPort()

    def stop(self):
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None
        self.mag = None

    def _learned(self, mac, port):
        text = macText(mac)
        moved = text in self.mobiles
        self.mobiles[text] = port
        if not moved:
            self.mag.attached(AttachmentEvent(text, linkLayer=text))

    def _forgotten(self, mac, port):
        if self.detachOnAgeing:
            self._detach(macText(mac))

    def _portGone(self, port, macs):
        for mac in macs:
            self._detach(macText(mac))

    def _detach(self, text):
        if self.mobiles.pop(text, None) is not None and self.mag is not None:
            self.mag.detached(text.encode("ascii"))


def _interface(table, access):
    """The detector's C{interface}, defaulting to (and agreeing with) [mag.access]."""
    from netlmm.config import ConfigError
    default = access.config.interface if access is not None else None
    interface = table.string("interface", default, required=default is None)
    if access is not None and interface != access.config.interface:
        raise ConfigError(f"{table.where}.interface: {interface!r} differs from "
                          f"[mag.access] interface {access.config.interface!r}")
    if not interface or len(interface) > 15 or "/" in interface:
        raise ConfigError(f"{table.where}.interface: expected an interface name "
                          f"(1..15 characters), got {interface!r}")
    return interface
