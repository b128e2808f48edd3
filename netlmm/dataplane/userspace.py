"""
The portable data plane: a TUN device and raw IPv6 sockets for protocols 41
(IPv6-in-IPv6) and 4 (IPv4-in-IPv6, RFC 5844) in the daemon, for kernels
with neither seg6 nor ip6tnl.

The kernel routes the mobiles' packets into the TUN device (LMA: a route per
home, a pHoA, a per-MN prefix or an IPv4 home address; MAG: a source rule
per home to a table whose default route of that family is the TUN); the
daemon reads them and sends them with C{sendto(inner, (peer, 0))} on the raw
socket of the inner packet's version, which puts the outer IPv6 header (next
header 41 or 4) on them. C{recvfrom} on those sockets returns the inner
packet of a tunnelled packet addressed to the node (after any extension
headers, such as a peer's Tunnel Encapsulation Limit option); the daemon
checks it against its bindings and writes it to the TUN device, from where
the kernel forwards it (LMA: to the correspondent; MAG: by the route on the
access interface).

The descriptors are non-blocking and read by the reactor (IReadDescriptor),
so forwarding is event-driven. Slower than the kernel data planes: every
packet crosses into user space and back.
"""

import errno
import fcntl
import os
import socket
import struct
import time
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from socket import AF_INET, AF_INET6

from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from zope.interface import implementer

from netlmm.dataplane import _netlink as nl
from netlmm.dataplane.handover import HandoverRoutes
from netlmm.interfaces import IDataPlane

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IPPROTO_IPV6 = 41
IPPROTO_IPIP = 4

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

    def rawSocket(self, address, protocol=IPPROTO_IPV6):
        """A non-blocking raw IPv6 socket for C{protocol} (41 or 4) bound to C{address}."""
        s = socket.socket(AF_INET6, socket.SOCK_RAW, protocol)
        try:
            s.bind((str(address), 0))
            s.setblocking(False)
            # Bursts (a handover's held packets forwarded at once) must not
            # overflow the socket between two reads.
            from netlmm.dataplane.handover import bigBuffers
            bigBuffers(s)
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


def _inHomes(homes, address):
    """The value of C{homes} (home -> value) whose home is or holds C{address}, or None."""
    value = homes.get(address)
    if value is not None or not homes:
        return value
    for home, value in homes.items():
        if isinstance(home, IPv6Network) and address.version == 6 and address in home:
            return value
    return None


def _addresses(packet):
    """(source, destination) of an IPv6 or IPv4 packet, or None if it is neither."""
    if not packet:
        return None
    version = packet[0] >> 4
    if version == 6 and len(packet) >= 40:
        return IPv6Address(packet[8:24]), IPv6Address(packet[24:40])
    if version == 4 and len(packet) >= 20 and packet[0] & 0x0F >= 5:
        return IPv4Address(packet[12:16]), IPv4Address(packet[16:20])
    return None


class Homes:
    """
    home -> tunnel peer, looked up by an address: an exact pHoA or IPv4
    home address first, then the per-MN prefix that holds the address
    (one dictionary probe per prefix length in use).
    """

    def __init__(self):
        self.peers = {}
        self._prefixLengths = {}

    def __setitem__(self, h, peer):
        if isinstance(h, IPv6Network) and h not in self.peers:
            self._prefixLengths[h.prefixlen] = self._prefixLengths.get(h.prefixlen, 0) + 1
        self.peers[h] = peer

    def pop(self, h, default=None):
        peer = self.peers.pop(h, None)
        if peer is None:
            return default
        if isinstance(h, IPv6Network):
            n = self._prefixLengths[h.prefixlen] - 1
            if n:
                self._prefixLengths[h.prefixlen] = n
            else:
                del self._prefixLengths[h.prefixlen]
        return peer

    def get(self, h, default=None):
        return self.peers.get(h, default)

    def clear(self):
        self.peers.clear()
        self._prefixLengths.clear()

    def __len__(self):
        return len(self.peers)

    def __iter__(self):
        return iter(self.peers)

    def __eq__(self, other):
        return self.peers == (other.peers if isinstance(other, Homes) else other)

    def items(self):
        return self.peers.items()

    def lookup(self, address):
        """The peer of the home that holds C{address}, or None."""
        peer = self.peers.get(address)
        if peer is not None or address.version == 4:
            return peer
        value = int(address)
        for length in self._prefixLengths:
            mask = ((1 << length) - 1) << (128 - length)
            peer = self.peers.get(IPv6Network((value & mask, length)))
            if peer is not None:
                return peer
        return None

    def count(self, family):
        """How many homes of C{family} there are."""
        version = 4 if family == AF_INET else 6
        return sum(1 for h in self.peers if h.version == version)


@implementer(IDataPlane)
class UserspaceDataPlane(HandoverRoutes, nl.NetlinkWork):
    """
    IPv6-in-IPv6 through the daemon (see the module docstring).

    @param system: opens the TUN device and the raw sockets (L{LinuxSystem}).
    @param netlink: makes the IPRoute-like object for routes and rules.
    """

    name = "userspace"
    log = Logger()
    #: A dual-stack mobile's IPv4 home address is held and forwarded in a
    #: handover like its pHoA (L{netlmm.service.handover}); the kernel data
    #: planes carry only the IPv6 homes there so far.
    handoverIpv4 = True

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
        #: LMA: home -> pCoA; MAG: home -> LMA (a L{Homes}).
        self.peers = Homes()
        self.counters = dict(tunnelled=0, decapsulated=0, dropped=0, errors=0)
        self.tun = self.socket = self.socket4 = None
        self._readers = []
        self._tunIndex = self._access = None
        #: Handover: pHoA -> the MAG its downlink is forwarded to; neighbour
        #: MAGs whose tunnelled packets are accepted.
        self._forwards = {}
        self._accepted = set()
        #: Handover: takes the IPv6 downlink of a mobile held here, and what a
        #: neighbour MAG forwards for one not served yet (the hold's
        #: L{netlmm.dataplane.handover.BufferDevice.divert}), or None.
        self.toHold = None
        #: Homes whose use is watched (L{lastUsed}): home -> when a packet
        #: of it last went through the tunnel.
        self._watched = {}

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
        """MAG: home -> LMA (the same mapping as C{peers})."""
        return self.peers

    @property
    def routes(self):
        """LMA: home -> pCoA (the same mapping as C{peers})."""
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
        sockets = []
        for protocol in (IPPROTO_IPV6, IPPROTO_IPIP):
            try:
                sockets.append(self.system.rawSocket(self.address, protocol))
            except OSError as e:
                for s in sockets:
                    s.close()
                tun.close()
                raise nl.DataPlaneError(
                    f"{self.role}.dataplane.address: cannot open a raw protocol-{protocol} "
                    f"socket on {self.address}: {e.strerror or e}") from None
        index = nl.ifindex(ipr, tun.name, f"{self.role}.dataplane.tun_name")
        ipr.link("set", index=index, mtu=self.mtu, state="up")
        self._tunIndex = index
        return tun, sockets[0], sockets[1]

    def _startReading(self, opened):
        self.tun, self.socket, self.socket4 = opened
        self._readers = [_Reader(self.tun, self._readTun, "netlmm-tun"),
                         _Reader(self.socket, lambda: self._readSocket(self.socket),
                                 "netlmm-ip6ip6"),
                         _Reader(self.socket4, lambda: self._readSocket(self.socket4),
                                 "netlmm-ip4ip6")]
        for reader in self._readers:
            self.reactor.addReader(reader)

    def stop(self):
        """Stop reading, close the device (its routes go with it), drop rules."""
        for reader in self._readers:
            self.reactor.removeReader(reader)
        self._readers = []
        tun, sockets = self.tun, (self.socket, self.socket4)
        self.tun = self.socket = self.socket4 = None
        self.peers.clear()

        def stop(ipr):
            nl.removeOwn(ipr, self.protocol)
            for sock in sockets:
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
        # LMA: the mobile is the destination; MAG: the mobile is the source,
        # or the destination of a mobile forwarded to another MAG (handover).
        peer = self.peers.lookup(destination if self.role == "lma" else source)
        if self._forwards:
            peer = _inHomes(self._forwards, destination) or peer
        if peer is None:
            self.counters["dropped"] += 1
            return False
        sock = self.socket if source.version == 6 else self.socket4
        try:
            sock.sendto(packet, (str(peer), 0))
        except OSError as e:
            self._error(f"send to {peer}", e)
            return False
        self.counters["tunnelled"] += 1
        if self._watched:
            self._used(destination if self.role == "lma" else source)
        return True

    def _readSocket(self, sock=None):
        """Tunnelled packets for this node: check, decapsulate, hand to the kernel."""
        sock = self.socket if sock is None else sock
        for _ in range(BURST):
            try:
                packet, source = sock.recvfrom(MAX_PACKET)
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
        peer = self.peers.lookup(mobile)
        outer = IPv6Address(outerSource.split("%")[0])
        if self.toHold is not None:
            how = _inHomes(self._handover(), mobile)
            neighbour = peer != outer and outer in self._accepted
            if (how is not None and how[0] == "hold" and (neighbour or peer == outer)) or (
                    how is None and peer is None and neighbour):
                # Straight into the hold, not through the kernel: its route
                # comes a worker-thread turn later, and meanwhile the packet
                # would go to the link the mobile left, or (forwarded early)
                # back to the core and round through the LMA.
                self.toHold(inner)
                self.counters["decapsulated"] += 1
                return True
        if peer != outer and (outer in self._accepted
                              or _inHomes(self._handover(), mobile) is not None):
            # A neighbour MAG forwarding a mobile in handover, or the LMA
            # still sending a mobile that left (held or forwarded here).
            peer = outer
        if peer is None or peer != outer:
            self.counters["dropped"] += 1
            return False
        try:
            self.tun.write(inner)
        except OSError as e:
            self._error("write to TUN", e)
            return False
        self.counters["decapsulated"] += 1
        if self._watched:
            self._used(mobile)
        return True

    def lastUsed(self, phoa):
        """
        When (the reactor's seconds) a packet from or to the home C{phoa}
        last went through the tunnel: the MAG releases a deprecated home
        unused for a while (an anchor move, draft 4.4). The first call
        starts watching the home and answers its own time; watching ends
        with the home's tunnel.
        """
        h = nl.home(phoa, self.name)
        last = self._watched.get(h)
        if last is None:
            last = self._watched[h] = self._now()
        return last

    def _used(self, address):
        for home in self._watched:
            if address == home or (isinstance(home, IPv6Network) and address.version == 6
                                   and address in home):
                self._watched[home] = self._now()
                return

    def _now(self):
        return getattr(self.reactor, "seconds", time.time)()

    def _error(self, what, e):
        self.counters["errors"] += 1
        if e.errno not in (errno.EAGAIN, errno.ENOBUFS):
            self.log.warn("userspace: {what} failed: {error}", what=what, error=e)

    # ------------------------------------------------------------ handover

    def _forwardRoute(self, ipr, peer):
        """Into the TUN device, whose reader sends it to C{peer} (L{tunnel})."""
        return dict(oif=self._tunIndex)

    def _forwarding(self, phoa, peer):
        if peer is None:
            self._forwards.pop(phoa, None)
        else:
            self._forwards[phoa] = peer

    def acceptFrom(self, peer):
        """Decapsulate what the MAG C{peer} forwards here."""
        self._accepted.add(IPv6Address(peer))

    def refuseFrom(self, peer):
        self._accepted.discard(IPv6Address(peer))

    # ----------------------------------------------------------------- LMA

    def addRoute(self, phoa, pcoa):
        """Route home C{phoa} into the TUN device; its packets go to C{pcoa}."""
        h = nl.home(phoa, self.name)
        self.peers[h] = IPv6Address(pcoa)
        return self._do(self._tunRoute, h)

    def moveRoute(self, phoa, old, new):
        """Only the peer changes; the route into the TUN device stays."""
        h = nl.home(phoa, self.name)
        self.peers[h] = IPv6Address(new)
        return self._do(self._tunRoute, h)

    def removeRoute(self, phoa, pcoa):
        """Stop tunnelling C{phoa}."""
        h = nl.home(phoa, self.name)
        self.peers.pop(h)
        return self._do(self._deleteRoute, h)

    def _tunRoute(self, ipr, h):
        ipr.route("replace", family=nl.family(h), dst=nl.destination(h),
                  oif=self._tunIndex, proto=self.protocol)

    def _deleteRoute(self, ipr, h):
        nl.ignoreMissing(ipr.route, "del", family=nl.family(h), dst=nl.destination(h),
                         table=254, proto=self.protocol)

    # ----------------------------------------------------------------- MAG

    def tunnelUp(self, mnId, phoa, lma):
        """What C{phoa} sends goes into the TUN device; deliver to it on access."""
        h = nl.home(phoa, self.name)
        self.peers[h] = IPv6Address(lma)
        return self._do(self._tunnelUp, h)

    def _tunnelUp(self, ipr, h):
        f = nl.family(h)
        ipr.route("replace", family=f, dst=nl.anyDestination(f), table=self.uplinkTable,
                  oif=self._tunIndex, proto=self.protocol)
        nl.addRule(ipr, **self._uplinkRule(h, self.uplinkTable))
        ipr.route("replace", family=f, dst=nl.destination(h), oif=self._access,
                  proto=self.protocol)

    def tunnelDown(self, mnId, phoa, lma):
        """Stop carrying C{phoa}'s traffic."""
        h = nl.home(phoa, self.name)
        self._watched.pop(h, None)
        if self.peers.pop(h) is None:
            return None
        last = not self.peers.count(nl.family(h))
        return self._do(self._tunnelDown, h, last)

    def _tunnelDown(self, ipr, h, last):
        f = nl.family(h)
        nl.ignoreMissing(ipr.rule, "del", **self._uplinkRule(h, self.uplinkTable))
        self._deleteRoute(ipr, h)
        if last:
            nl.ignoreMissing(ipr.route, "del", family=f, dst=nl.anyDestination(f),
                             table=self.uplinkTable, proto=self.protocol)
