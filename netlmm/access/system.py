"""
The access link's sockets, and the few system calls that make them: a raw
ICMPv6 socket for Router Solicitations and Advertisements, an AF_PACKET
socket that sees the mobiles' ND frames (the DAD Neighbor Solicitation is
not delivered to raw ICMPv6 sockets), and an rtnetlink socket for link and
bridge FDB events. All are non-blocking and read by the reactor through
L{SocketReader}; nothing here blocks.

L{System} is the injected object (twisted.pair.tuntap style): tests of the
detectors and strategies use a fake with the same methods.
"""

import contextlib
import ctypes
import socket
import struct

from twisted.internet import abstract
from twisted.logger import Logger
from twisted.python import failure
from zope.interface import implementer
from twisted.internet.interfaces import IReadDescriptor

from netlmm.wire.icmpv6 import ETH_P_IPV6, RS

SOL_SOCKET = socket.SOL_SOCKET
SO_BINDTODEVICE = 25
SO_ATTACH_FILTER = 26
IPPROTO_ICMPV6 = socket.IPPROTO_ICMPV6
ICMP6_FILTER = 1
IPV6_RECVPKTINFO = 49
IPV6_PKTINFO = 50
IPV6_RECVHOPLIMIT = 51
IPV6_HOPLIMIT = 52
IPV6_MULTICAST_HOPS = socket.IPV6_MULTICAST_HOPS
IPV6_UNICAST_HOPS = socket.IPV6_UNICAST_HOPS
IPV6_JOIN_GROUP = socket.IPV6_JOIN_GROUP
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_ALLMULTI = 2
PACKET_OUTGOING = 4
NETLINK_ROUTE = 0
RTMGRP_LINK = 0x1
RTMGRP_NEIGH = 0x4


@contextlib.contextmanager
def inNamespace(netns):
    """
    Run the body in network namespace C{netns} (a name under /run/netns), or
    where we are when C{netns} is None. Sockets made in the body stay in that
    namespace. setns() moves only the calling thread, which is why this is
    used around socket creation and nothing else.
    """
    if netns is None:
        yield
        return
    from pyroute2 import netns as _netns
    _netns.pushns(netns)
    try:
        yield
    finally:
        _netns.popns()


def icmp6Filter(*types):
    """struct icmp6_filter passing only C{types} (a set bit blocks a type)."""
    words = [0xFFFFFFFF] * 8
    for t in types:
        words[t >> 5] &= ~(1 << (t & 31)) & 0xFFFFFFFF
    return struct.pack("=8I", *words)


def _bpfIcmpv6():
    """A classic BPF program passing only Ethernet frames with IPv6 + ICMPv6."""
    # (code, jt, jf, k)
    program = [
        (0x28, 0, 0, 12),          # ldh [12]          ethertype
        (0x15, 0, 3, ETH_P_IPV6),  # jeq #0x86dd ? next : drop
        (0x30, 0, 0, 20),          # ldb [20]          IPv6 next header
        (0x15, 0, 1, 58),          # jeq #58 ? accept : drop
        (0x06, 0, 0, 0x40000),     # ret #262144       accept
        (0x06, 0, 0, 0),           # ret #0            drop
    ]
    return b"".join(struct.pack("=HBBI", *insn) for insn in program), len(program)


def attachIcmpv6Filter(sock):
    """Let only ICMPv6 frames reach C{sock} (AF_PACKET): data traffic stays in the kernel."""
    code, count = _bpfIcmpv6()
    buf = ctypes.create_string_buffer(code)
    prog = struct.pack("HL", count, ctypes.addressof(buf))
    sock.setsockopt(SOL_SOCKET, SO_ATTACH_FILTER, prog)
    # The kernel copied the program; the buffer may go now.


class System:
    """The real system calls; tests inject a fake with the same methods."""

    def __init__(self, netns=None):
        #: The namespace the sockets are made in (tests); None: our own.
        self.netns = netns

    def ifindex(self, interface):
        """The index of C{interface} (in C{netns}); OSError if there is none."""
        with inNamespace(self.netns):
            return socket.if_nametoindex(interface)

    def setNeighborRetrans(self, interface, milliseconds):
        """Set C{interface}'s IPv6 neighbor-discovery retransmit time."""
        with inNamespace(self.netns):
            with open(f"/proc/sys/net/ipv6/neigh/{interface}/retrans_time_ms", "w") as f:
                f.write(str(int(milliseconds)))

    def linkLocalAddress(self, interface, ifindex):
        """
        C{interface}'s link-local address (IPv6Address), as the kernel picks
        it as the source towards all-nodes there; OSError while it has none
        usable (absent, or tentative).
        """
        from ipaddress import IPv6Address
        with inNamespace(self.netns):
            s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        try:
            # connect() only selects a source address; nothing is sent.
            s.connect(("ff02::1", 9, 0, ifindex))
            address = IPv6Address(s.getsockname()[0].split("%")[0])
        finally:
            s.close()
        if not address.is_link_local:
            raise OSError(f"no link-local address on {interface} (the source would be "
                          f"{address})")
        return address

    def setRouterIdentity(self, interface, mac, address):
        """
        Give C{interface} the domain's router MAC (6 octets) and link-local
        C{address}, and drop its other link-local addresses, so that ND from
        this MAG names the one router the mobiles know on every MAG.
        """
        import subprocess
        from netlmm.wire.icmpv6 import macText
        prefix = ["ip"] + (["-n", self.netns] if self.netns else [])

        def ip(*argv, check=True):
            p = subprocess.run(prefix + list(argv), capture_output=True, text=True,
                               timeout=10)
            if check and p.returncode:
                raise OSError(0, f"ip {' '.join(argv)}: {p.stderr.strip()}")
            return p.stdout
        with inNamespace(self.netns):
            path = f"/proc/sys/net/ipv6/conf/{interface}/addr_gen_mode"
            try:
                # No more kernel-made link-local addresses on this interface.
                with open(path, "w") as f:
                    f.write("1")
            except OSError:
                pass
        if self.linkAddress(interface) != mac:
            ip("link", "set", "dev", interface, "address", macText(mac))
        wanted = f"{address}/64"
        for line in ip("-6", "-o", "addr", "show", "dev", interface, "scope", "link").splitlines():
            words = line.split()
            if "inet6" in words:
                have = words[words.index("inet6") + 1]
                if have != wanted:
                    ip("-6", "addr", "del", have, "dev", interface, check=False)
        ip("-6", "addr", "replace", wanted, "dev", interface, "nodad")

    def linkAddress(self, interface):
        """C{interface}'s MAC address (6 octets), read with an AF_PACKET socket."""
        with inNamespace(self.netns):
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            s.bind((interface, 0))
            return s.getsockname()[4][:6]
        finally:
            s.close()

    def icmpSocket(self, interface, types=(RS,)):
        """
        A raw ICMPv6 socket on C{interface} receiving only C{types}, with
        packet info and hop limits, joined to all-routers, sending with hop
        limit 255 as ND requires.
        """
        with inNamespace(self.netns):
            s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, IPPROTO_ICMPV6)
        try:
            s.setsockopt(IPPROTO_ICMPV6, ICMP6_FILTER, icmp6Filter(*types))
            s.setsockopt(SOL_SOCKET, SO_BINDTODEVICE, interface.encode() + b"\0")
            s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
            s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
            s.setsockopt(socket.IPPROTO_IPV6, IPV6_MULTICAST_HOPS, 255)
            s.setsockopt(socket.IPPROTO_IPV6, IPV6_UNICAST_HOPS, 255)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            index = self.ifindex(interface)
            mreq = socket.inet_pton(socket.AF_INET6, "ff02::2") + struct.pack("@I", index)
            s.setsockopt(socket.IPPROTO_IPV6, IPV6_JOIN_GROUP, mreq)
            s.setblocking(False)
        except BaseException:
            s.close()
            raise
        return s

    def packetSocket(self, interface):
        """An AF_PACKET socket on C{interface} seeing the IPv6 ICMPv6 frames that reach it."""
        with inNamespace(self.netns):
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IPV6))
        try:
            attachIcmpv6Filter(s)
            s.bind((interface, ETH_P_IPV6))
            index = self.ifindex(interface)
            # struct packet_mreq: ifindex, type, alen, address[8]
            s.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP,
                         struct.pack("=iHH8s", index, PACKET_MR_ALLMULTI, 0, b""))
            s.setblocking(False)
        except BaseException:
            s.close()
            raise
        return s

    def dhcp4ServerSocket(self, interface, port=67):
        """
        A non-blocking UDP socket on 0.0.0.0:C{port} bound to C{interface},
        so it sees the broadcasts of DHCPv4 clients that have no address yet
        (and the unicast renewals to an address of the MAG).
        """
        with inNamespace(self.netns):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.setsockopt(SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(SOL_SOCKET, socket.SO_BROADCAST, 1)
            s.setsockopt(SOL_SOCKET, SO_BINDTODEVICE, interface.encode() + b"\0")
            s.bind(("0.0.0.0", port))
            s.setblocking(False)
        except BaseException:
            s.close()
            raise
        return s

    def netlinkSocket(self, groups=RTMGRP_LINK | RTMGRP_NEIGH):
        """An rtnetlink socket subscribed to C{groups} (link and neighbour/FDB events)."""
        with inNamespace(self.netns):
            s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        try:
            s.setsockopt(SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            s.bind((0, groups))
            s.setblocking(False)
        except BaseException:
            s.close()
            raise
        return s


@implementer(IReadDescriptor)
class SocketReader(abstract.FileDescriptor):
    """
    Reads a non-blocking datagram socket from the reactor and hands every
    datagram to C{handler(data, ancillary, address)}; a handler that raises
    is logged and the reading goes on.
    """

    log = Logger()

    def __init__(self, reactor, sock, handler, name, ancillary=False, maxSize=65536):
        super().__init__(reactor=reactor)
        self.socket = sock
        self.handler = handler
        self.name = name
        self.ancillary = ancillary
        self.maxSize = maxSize
        self.connected = 1

    def fileno(self):
        return self.socket.fileno() if self.socket is not None else -1

    def logPrefix(self):
        return self.name

    def doRead(self):
        # A bounded batch per wake-up keeps one busy socket from starving the reactor.
        for _ in range(64):
            if self.socket is None:
                # A handler stopped this reader.
                return
            try:
                if self.ancillary:
                    data, anc, _flags, address = self.socket.recvmsg(self.maxSize, 1024)
                else:
                    data, address = self.socket.recvfrom(self.maxSize)
                    anc = []
            except BlockingIOError:
                return
            except OSError as e:
                self.log.warn("{name}: read failed: {error}", name=self.name, error=e)
                return
            try:
                self.handler(data, anc, address)
            except Exception:
                self.log.failure("{name}: handler failed", failure.Failure(), name=self.name)

    def stop(self):
        """Stop reading and close the socket."""
        self.stopReading()
        if self.socket is not None:
            self.socket.close()
            self.socket = None
        self.connected = 0

    def connectionLost(self, reason):
        self.stop()


def ancillaryInfo(ancillary):
    """(destination address text, ifindex, hop limit) from recvmsg ancillary data."""
    destination = ifindex = hopLimit = None
    for level, kind, data in ancillary:
        if level == socket.IPPROTO_IPV6 and kind == IPV6_PKTINFO and len(data) >= 20:
            destination = socket.inet_ntop(socket.AF_INET6, data[:16])
            ifindex = struct.unpack_from("@I", data, 16)[0]
        elif level == socket.IPPROTO_IPV6 and kind == IPV6_HOPLIMIT and len(data) >= 4:
            hopLimit = struct.unpack_from("@i", data)[0]
    return destination, ifindex, hopLimit
