"""
The portable data plane: a TUN device and a raw IPv6 protocol-41 socket in
the daemon, for kernels with neither seg6 nor ip6tnl.

The kernel routes the mobiles' packets into the TUN device (LMA: a route per
pHoA; MAG: a source rule per pHoA to a table whose default route is the
TUN); the daemon reads them and sends them with C{sendto(inner, (peer, 0))}
on the raw socket, which puts the outer IPv6 header (next header 41) on them.
C{recvfrom} on that socket returns the inner packet of a tunnelled packet
addressed to the node; the daemon checks it against its bindings and writes
it to the TUN device, from where the kernel forwards it (LMA: to the
correspondent; MAG: by the host route on the access interface).

Both descriptors are non-blocking and read by the reactor (IReadDescriptor),
so forwarding is event-driven. Slower than the kernel data planes: every
packet crosses into user space and back.
"""

import errno
import fcntl
import os
import socket
import struct
from ipaddress import IPv6Address
from socket import AF_INET6

from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from zope.interface import implementer

from netlmm.dataplane import _netlink as nl
from netlmm.interfaces import IDataPlane

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IPPROTO_IPV6 = 41

#: Most packets read in one doRead, so one busy descriptor cannot starve others.
BURST = 64
#: Largest packet read from either descriptor.
MAX_PACKET = 65575


class TunDevice:
    """A non-blocking TUN device (IFF_TUN | IFF_NO_PI): whole IPv6 packets."""

    def __init__(self, fd, name):
        self.fd = fd
        self.name = name

    def fileno(self):
        return self.fd

    def read(self):
        return os.read(self.fd, MAX_PACKET)

    def write(self, packet):
        return os.write(self.fd, packet)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class LinuxSystem:
    """
    How the userspace data plane reaches the kernel, injected so that tests
    can substitute a fake or open the descriptors in another namespace.
    """

    def openTun(self, name):
        """A new TUN device called C{name}."""
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            ifr = struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI)
            result = fcntl.ioctl(fd, TUNSETIFF, ifr)
        except OSError:
            os.close(fd)
            raise
        actual = result[:16].rstrip(b"\0").decode()
        return TunDevice(fd, actual)

    def rawSocket(self, address):
        """A non-blocking raw protocol-41 socket bound to C{address}."""
        s = socket.socket(AF_INET6, socket.SOCK_RAW, IPPROTO_IPV6)
        try:
            s.bind((str(address), 0))
            s.setblocking(False)
        except OSError:
            s.close()
            raise
        return s


@implementer(IReadDescriptor)
class _Reader:
    """Calls C{handler()} when C{source} is readable."""

    def __init__(self, source, handler, label):
        self.source = source
        self.handler = handler
        self.label = label

    def fileno(self):
        fd = self.source.fileno()
        return -1 if fd is None else fd

    def doRead(self):
        return self.handler()

    def connectionLost(self, reason):
        pass

    def logPrefix(self):
        return self.label


def _addresses(packet):
    """(source, destination) of an IPv6 packet, or None if it is not one."""
    if len(packet) < 40 or packet[0] >> 4 != 6:
        return None
    return IPv6Address(packet[8:24]), IPv6Address(packet[24:40])


@implementer(IDataPlane)
class UserspaceDataPlane(nl.NetlinkWork):
    """
    IPv6-in-IPv6 through the daemon (see the module docstring).

    @param system: opens the TUN device and the raw socket (L{LinuxSystem}).
    @param netlink: makes the IPRoute-like object for routes and rules.
    """

    name = "userspace"
    log = Logger()

    def __init__(self, role, address, accessInterface=None, tunName="netlmm0",
                 mtu=1460, uplinkTable=5213, uplinkPriority=100,
                 protocol=nl.PROTOCOL, reactor=None, system=None,
                 netlink=nl.defaultNetlink, runner=None):
        super().__init__(reactor, netlink, runner)
        if role == "mag" and accessInterface is None:
            raise ValueError("a MAG data plane needs an access interface")
        self.role = role
        self.reactor = reactor
        self.address = IPv6Address(address)
        self.accessInterface = accessInterface
        self.tunName = tunName
        self.mtu = mtu
        self.uplinkTable = uplinkTable
        self.uplinkPriority = uplinkPriority
        self.protocol = protocol
        self.system = system if system is not None else LinuxSystem()
        #: LMA: pHoA -> pCoA; MAG: pHoA -> LMA.
        self.peers = {}
        self.counters = dict(tunnelled=0, decapsulated=0, dropped=0, errors=0)
        self.tun = self.socket = None
        self._readers = []
        self._tunIndex = self._access = None

    @classmethod
    def fromConfig(cls, table, reactor=None, role=None, **context):
        """Build from the [lma.dataplane] / [mag.dataplane] table."""
        o = nl.readEndpointOptions(table, role, cls.name, interface=False)
        o["tunName"] = nl.interfaceName(table, "tun_name", required=False) or "netlmm0"
        o["mtu"] = table.number("mtu", 1460, minimum=1280, maximum=65535, integer=True)
        nl.readUplinkOptions(table, o)
        o["protocol"] = nl.routeProtocol(table)
        table.finish()
        return cls(reactor=reactor, **o)

    # ---------------------------------------------------------------- life

    @property
    def tunnels(self):
        """MAG: pHoA -> LMA (the same dict as C{peers})."""
        return self.peers

    @property
    def routes(self):
        """LMA: pHoA -> pCoA (the same dict as C{peers})."""
        return self.peers

    def start(self):
        """Open the TUN device and the socket, clean leftovers, start reading."""
        self.runner.start()
        d = self._do(self._start)
        d.addCallback(self._startReading)
        return d

    def _start(self, ipr):
        if self.role == "mag":
            self._access = nl.ifindex(ipr, self.accessInterface,
                                      "mag.dataplane.access_interface")
        removed = nl.removeOwn(ipr, self.protocol, self.log)
        if removed:
            self.log.info("userspace: removed {count} routes and rules left by an "
                          "earlier run", count=removed)
        try:
            tun = self.system.openTun(self.tunName)
        except OSError as e:
            raise nl.DataPlaneError(
                f"{self.role}.dataplane.tun_name: cannot create TUN device "
                f"{self.tunName!r}: {e.strerror or e}") from None
        try:
            sock = self.system.rawSocket(self.address)
        except OSError as e:
            tun.close()
            raise nl.DataPlaneError(
                f"{self.role}.dataplane.address: cannot open a raw protocol-41 socket "
                f"on {self.address}: {e.strerror or e}") from None
        index = nl.ifindex(ipr, tun.name, f"{self.role}.dataplane.tun_name")
        ipr.link("set", index=index, mtu=self.mtu, state="up")
        self._tunIndex = index
        return tun, sock

    def _startReading(self, opened):
        self.tun, self.socket = opened
        self._readers = [_Reader(self.tun, self._readTun, "netlmm-tun"),
                         _Reader(self.socket, self._readSocket, "netlmm-ip6ip6")]
        for reader in self._readers:
            self.reactor.addReader(reader)

    def stop(self):
        """Stop reading, close the device (its routes go with it), drop rules."""
        for reader in self._readers:
            self.reactor.removeReader(reader)
        self._readers = []
        tun, sock = self.tun, self.socket
        self.tun = self.socket = None
        self.peers.clear()

        def stop(ipr):
            nl.removeOwn(ipr, self.protocol)
            if sock is not None:
                sock.close()
            if tun is not None:
                tun.close()
        return self._finish(self._do(stop))

    # ------------------------------------------------------------- packets

    def _readTun(self):
        """Packets the kernel routed into the tunnel: encapsulate and send."""
        for _ in range(BURST):
            try:
                packet = self.tun.read()
            except BlockingIOError:
                return
            except OSError as e:
                self._error("read from TUN", e)
                return
            self.tunnel(packet)

    def tunnel(self, packet):
        """Send one inner packet to its tunnel peer; False if dropped."""
        addresses = _addresses(packet)
        if addresses is None:
            self.counters["dropped"] += 1
            return False
        source, destination = addresses
        # LMA: the mobile is the destination; MAG: the mobile is the source.
        peer = self.peers.get(destination if self.role == "lma" else source)
        if peer is None:
            self.counters["dropped"] += 1
            return False
        try:
            self.socket.sendto(packet, (str(peer), 0))
        except OSError as e:
            self._error(f"send to {peer}", e)
            return False
        self.counters["tunnelled"] += 1
        return True

    def _readSocket(self):
        """Tunnelled packets for this node: check, decapsulate, hand to the kernel."""
        for _ in range(BURST):
            try:
                packet, source = self.socket.recvfrom(MAX_PACKET)
            except BlockingIOError:
                return
            except OSError as e:
                self._error("receive from the tunnel", e)
                return
            self.decapsulate(packet, source[0])

    def decapsulate(self, inner, outerSource):
        """
        Write C{inner} to the TUN device if C{outerSource} is the tunnel peer
        of the mobile it belongs to; False if dropped (spoofed or unknown).
        """
        addresses = _addresses(inner)
        if addresses is None:
            self.counters["dropped"] += 1
            return False
        source, destination = addresses
        mobile = source if self.role == "lma" else destination
        peer = self.peers.get(mobile)
        if peer is None or peer != IPv6Address(outerSource.split("%")[0]):
            self.counters["dropped"] += 1
            return False
        try:
            self.tun.write(inner)
        except OSError as e:
            self._error("write to TUN", e)
            return False
        self.counters["decapsulated"] += 1
        return True

    def _error(self, what, e):
        self.counters["errors"] += 1
        if e.errno not in (errno.EAGAIN, errno.ENOBUFS):
            self.log.warn("userspace: {what} failed: {error}", what=what, error=e)

    # ----------------------------------------------------------------- LMA

    def addRoute(self, phoa, pcoa):
        """Route C{phoa} into the TUN device; its packets go to C{pcoa}."""
        self.peers[IPv6Address(phoa)] = IPv6Address(pcoa)
        return self._do(self._tunRoute, str(phoa))

    def moveRoute(self, phoa, old, new):
        """Only the peer changes; the route into the TUN device stays."""
        self.peers[IPv6Address(phoa)] = IPv6Address(new)
        return self._do(self._tunRoute, str(phoa))

    def removeRoute(self, phoa, pcoa):
        """Stop tunnelling C{phoa}."""
        self.peers.pop(IPv6Address(phoa), None)
        return self._do(self._deleteRoute, str(phoa))

    def _tunRoute(self, ipr, phoa):
        ipr.route("replace", family=AF_INET6, dst=f"{phoa}/128", oif=self._tunIndex,
                  proto=self.protocol)

    def _deleteRoute(self, ipr, phoa):
        nl.ignoreMissing(ipr.route, "del", family=AF_INET6, dst=f"{phoa}/128",
                         table=254, proto=self.protocol)

    # ----------------------------------------------------------------- MAG

    def tunnelUp(self, mnId, phoa, lma):
        """What C{phoa} sends goes into the TUN device; deliver to it on access."""
        phoa = IPv6Address(phoa)
        self.peers[phoa] = IPv6Address(lma)
        return self._do(self._tunnelUp, str(phoa))

    def _tunnelUp(self, ipr, phoa):
        ipr.route("replace", family=AF_INET6, dst="::/0", table=self.uplinkTable,
                  oif=self._tunIndex, proto=self.protocol)
        nl.addRule(ipr, priority=self.uplinkPriority, src=phoa, src_len=128,
                   table=self.uplinkTable, protocol=self.protocol)
        ipr.route("replace", family=AF_INET6, dst=f"{phoa}/128", oif=self._access,
                  proto=self.protocol)

    def tunnelDown(self, mnId, phoa, lma):
        """Stop carrying C{phoa}'s traffic."""
        phoa = IPv6Address(phoa)
        if self.peers.pop(phoa, None) is None:
            return None
        last = not self.peers
        return self._do(self._tunnelDown, str(phoa), last)

    def _tunnelDown(self, ipr, phoa, last):
        nl.ignoreMissing(ipr.rule, "del", family=AF_INET6, priority=self.uplinkPriority,
                         src=phoa, src_len=128, table=self.uplinkTable,
                         protocol=self.protocol)
        self._deleteRoute(ipr, phoa)
        if last:
            nl.ignoreMissing(ipr.route, "del", family=AF_INET6, dst="::/0",
                             table=self.uplinkTable, proto=self.protocol)
