"""
In-memory stand-ins for the kernel and for a MAG, so that data planes,
access links and strategies run in tests (netlmm's and a plugin author's)
without root, a kernel or threads:

- L{FakeNetlink}: the pyroute2 IPRoute calls the kernel data planes make. It
  keeps routes, rules and links as plain dicts with the keys pyroute2
  messages answer to in C{msg.get(...)}, and raises L{FakeNetlinkError} with
  the errno the kernel would return.
- L{FakeTunnelSystem}: TUN devices and raw protocol-41 sockets (the
  userspace data plane).
- L{FakeAccessSystem}: the access link's sockets (L{netlmm.access.system.System}).
- L{RecordingMag}: an L{IMagControl} that records what detectors and
  strategies report.
- L{UDPProbe}: a UDP peer that records the datagrams it receives.
- L{FakeHostapd}: hostapd's control socket (a real UNIX datagram socket),
  answering the commands the 'hostapd' detector sends and emitting events.
"""

import errno
import os
from ipaddress import IPv4Address, IPv6Address, ip_address
from socket import AF_INET, AF_INET6

from twisted.internet.protocol import DatagramProtocol
from zope.interface import implementer

from netlmm.interfaces import IMagControl


class FakeNetlinkError(OSError):
    """Like pyroute2's NetlinkError: the errno is in C{code}."""

    def __init__(self, code):
        super().__init__(code, os.strerror(code))
        self.code = code


def _prefix(value, family=AF_INET6):
    """(address text or None, length) of a dst/src in either family."""
    if value is None:
        return None, 0
    text = str(value)
    address, _, length = text.partition("/")
    parsed = ip_address(address)
    length = int(length) if length else parsed.max_prefixlen
    if length == 0:
        return None, 0
    return str(parsed), length


def _family(kw, value=None):
    """The address family of a call: its C{family}, else that of C{value}."""
    if kw.get("family"):
        return kw["family"]
    if value is not None and ip_address(str(value).partition("/")[0]).version == 4:
        return AF_INET
    return AF_INET6


class FakeNetlink:
    """
    The subset of pyroute2.IPRoute that netlmm's data planes call. Starts
    with the kernel's three default rules of each family (IPv6 and IPv4)
    and the links in C{links} (name -> index). Routes and rules keep their
    C{family}; dumps return those of the family asked for. Every mutating
    call is appended to C{calls}.
    """

    def __init__(self, links=("lo", "eth0", "eth1")):
        self.links = {}
        for name in links:
            self._newLink(name, kind=None)
        self.routes = []
        self.rules = [
            dict(family=family, priority=priority, FRA_TABLE=table, FRA_PROTOCOL=2)
            for family in (AF_INET6, AF_INET)
            for priority, table in ((None, 255), (32766, 254), (32767, 253))]
        self.addresses = []
        self.calls = []
        self.closed = False

    def _newLink(self, name, kind, **data):
        index = max([l["index"] for l in self.links.values()] + [0]) + 1
        self.links[name] = dict(index=index, ifname=name, kind=kind, state="down",
                                mtu=1500, **data)
        return index

    # ------------------------------------------------------------------ links

    def link_lookup(self, ifname=None, **kw):
        link = self.links.get(ifname)
        return [] if link is None else [link["index"]]

    def _byIndex(self, index):
        for link in self.links.values():
            if link["index"] == index:
                return link
        raise FakeNetlinkError(errno.ENODEV)

    def link(self, command, **kw):
        self.calls.append(("link", command, kw))
        if command == "dump":
            return [dict(l) for l in self.links.values()]
        if command == "add":
            name = kw.pop("ifname")
            if name in self.links:
                raise FakeNetlinkError(errno.EEXIST)
            kind = kw.pop("kind", None)
            self._newLink(name, kind, **kw)
            return None
        if command in ("set", "del"):
            link = self._byIndex(kw.pop("index"))
            if command == "del":
                del self.links[link["ifname"]]
                self.routes = [r for r in self.routes if r.get("oif") != link["index"]]
            else:
                link.update(kw)
            return None
        raise NotImplementedError(command)

    def get_links(self, *args, **kw):
        return self.link("dump")

    def addr(self, command, **kw):
        """
        Addresses as dicts (index, address, prefixlen, family, label); "del"
        matches index, address and prefix length, "dump" filters by family.
        """
        self.calls.append(("addr", command, kw))
        if command == "dump":
            family = kw.get("family")
            return [dict(a) for a in self.addresses if family in (None, a["family"])]
        address = str(kw.get("address"))
        key = dict(index=kw.get("index"), address=address,
                   prefixlen=kw.get("prefixlen", ip_address(address).max_prefixlen))
        same = [a for a in self.addresses
                if {k: a[k] for k in ("index", "address", "prefixlen")} == key]
        if command == "add":
            if same:
                raise FakeNetlinkError(errno.EEXIST)
            self.addresses.append(dict(key, family=_family({}, address),
                                       label=kw.get("label")))
        elif command == "del":
            if not same:
                raise FakeNetlinkError(errno.EADDRNOTAVAIL)
            self.addresses.remove(same[0])
        else:
            raise NotImplementedError(command)

    # ----------------------------------------------------------------- routes

    def route(self, command, **kw):
        family = _family(kw, kw.get("dst"))
        if command == "dump":
            return [dict(r) for r in self.routes if r["family"] == family]
        self.calls.append(("route", command, kw))
        dst, length = _prefix(kw.get("dst"), family)
        table = kw.get("table") or 254
        entry = dict(dst=dst, dst_len=length, RTA_TABLE=table, table=min(table, 252)
                     if table > 255 else table, proto=kw.get("proto") or 3,
                     oif=kw.get("oif"), encap=kw.get("encap"), family=family,
                     type=kw.get("type") or "unicast")
        same = [r for r in self.routes
                if (r["family"], r["dst"], r["dst_len"], r["RTA_TABLE"])
                == (family, dst, length, table)]
        if command == "add":
            if same:
                raise FakeNetlinkError(errno.EEXIST)
            self.routes.append(entry)
        elif command == "replace":
            for r in same:
                self.routes.remove(r)
            self.routes.append(entry)
        elif command == "del":
            if kw.get("proto"):
                same = [r for r in same if r["proto"] == kw["proto"]]
            if not same:
                raise FakeNetlinkError(errno.ESRCH)
            self.routes.remove(same[0])
        else:
            raise NotImplementedError(command)

    def neigh(self, command, **kw):
        """Neighbour entries: C{replace} records one in C{neighbours}."""
        self.calls.append(("neigh", command, kw))
        if command != "replace":
            raise NotImplementedError(command)
        self.neighbours = [n for n in getattr(self, "neighbours", [])
                           if (n["dst"], n["ifindex"]) != (kw["dst"], kw["ifindex"])]
        self.neighbours.append(dict(kw))

    def findRoutes(self, dst=None, table=254, family=None):
        """
        The routes to C{dst} (an address or prefix) in C{table}, of the
        family of C{dst} (IPv6 when C{dst} is None and C{family} too).
        """
        family = family or _family({}, dst)
        d, length = _prefix(dst, family)
        return [r for r in self.routes
                if (r["family"], r["dst"], r["dst_len"], r["RTA_TABLE"])
                == (family, d, length, table)]

    # ------------------------------------------------------------------ rules

    @staticmethod
    def _rule(kw):
        # pyroute2's rule() defaults to IPv4, as `ip rule` does.
        family = _family(kw, kw.get("src") or kw.get("dst")) if (
            kw.get("family") or kw.get("src") or kw.get("dst")) else AF_INET
        rule = dict(family=family, priority=kw.get("priority") or None,
                    FRA_TABLE=kw.get("table"), FRA_PROTOCOL=kw.get("protocol") or 0)
        for key in ("src", "dst"):
            if kw.get(key):
                address = ip_address(kw[key])
                rule[key] = str(address)
                rule[key + "_len"] = kw.get(key + "_len", address.max_prefixlen)
        if kw.get("ip_proto"):
            rule["ip_proto"] = kw["ip_proto"]
        if kw.get("iifname"):
            rule["FRA_IIFNAME"] = kw["iifname"]
        return rule

    def rule(self, command, **kw):
        if command == "dump":
            family = kw.get("family") or AF_INET
            return [dict(r) for r in self.rules if r["family"] == family]
        self.calls.append(("rule", command, kw))
        want = self._rule(kw)
        if command == "add":
            if want in self.rules:
                raise FakeNetlinkError(errno.EEXIST)
            self.rules.append(want)
            self.rules.sort(key=lambda r: r["priority"] or 0)
        elif command == "del":
            for r in self.rules:
                if all(r.get(k) == v for k, v in want.items()
                       if v or k in ("priority", "FRA_TABLE")) and (
                        want["FRA_PROTOCOL"] in (0, r["FRA_PROTOCOL"])):
                    self.rules.remove(r)
                    return
            raise FakeNetlinkError(errno.ENOENT)
        else:
            raise NotImplementedError(command)

    def findRules(self, family=AF_INET6, **kw):
        """The rules of C{family} (IPv6 by default) whose fields include every C{kw} item."""
        return [r for r in self.rules if r["family"] == family
                and all(r.get(k) == v for k, v in kw.items())]

    def close(self):
        self.closed = True


class FakeTun:
    """A TUN device in memory: C{incoming} is read, C{written} collects writes."""

    def __init__(self, name, netlink=None):
        self.name = name
        self.netlink = netlink
        self.incoming = []
        self.written = []
        self.closed = False

    def fileno(self):
        return -1

    def read(self):
        if not self.incoming:
            raise BlockingIOError(errno.EAGAIN, "empty")
        return self.incoming.pop(0)

    def write(self, packet):
        self.written.append(bytes(packet))
        return len(packet)

    def close(self):
        # Like the kernel: a TUN device that is not persistent goes, and its
        # routes with it, when its descriptor is closed.
        if not self.closed and self.netlink is not None:
            link = self.netlink.links.pop(self.name, None)
            if link is not None:
                self.netlink.routes = [r for r in self.netlink.routes
                                       if r.get("oif") != link["index"]]
        self.closed = True


class FakeRawSocket:
    """A raw IPv6 socket in memory (protocol 41 or 4): C{incoming} (inner, source) pairs."""

    def __init__(self, address, protocol=41):
        self.address = address
        self.protocol = protocol
        self.incoming = []
        self.sent = []
        self.closed = False

    def fileno(self):
        return -1

    def recvfrom(self, size):
        if not self.incoming:
            raise BlockingIOError(errno.EAGAIN, "empty")
        packet, source = self.incoming.pop(0)
        return packet, (str(source), 0, 0, 0)

    def sendto(self, packet, address):
        self.sent.append((bytes(packet), address))
        return len(packet)

    def close(self):
        self.closed = True


class FakeTunnelSystem:
    """
    Opens fake TUN devices (which appear as links in C{netlink}, a
    L{FakeNetlink}) and fake raw sockets, for the userspace data plane.
    """

    def __init__(self, netlink):
        self.netlink = netlink
        self.tuns = []
        self.sockets = []

    def openTun(self, name):
        if name in self.netlink.links:
            raise FakeNetlinkError(errno.EBUSY)
        self.netlink._newLink(name, kind="tun")
        tun = FakeTun(name, self.netlink)
        self.tuns.append(tun)
        return tun

    def rawSocket(self, address, protocol=41):
        s = FakeRawSocket(address, protocol)
        self.sockets.append(s)
        return s


def ipv6Packet(source, destination, payload=b"\x80\x00\x00\x00\x00\x01\x00\x01",
               nextHeader=58, hopLimit=64):
    """An IPv6 packet (by default an ICMPv6 echo request, checksum not set)."""
    return (bytes([0x60, 0, 0, 0]) + len(payload).to_bytes(2, "big")
            + bytes([nextHeader, hopLimit]) + IPv6Address(source).packed
            + IPv6Address(destination).packed + payload)


class FakeSocket:
    """A socket that records what is sent (C{sent}) or raises C{fail}."""

    def __init__(self):
        self.sent = []
        self.ancillary = []
        self.closed = False
        self.fail = None

    def fileno(self):
        return 1000

    def send(self, data):
        self.sendto(data, None)

    def sendto(self, data, address):
        if self.fail is not None:
            raise self.fail
        self.sent.append((data, address))

    def sendmsg(self, buffers, ancillary=(), flags=0, address=None):
        """Like sendto; the ancillary data goes to C{ancillary}."""
        self.sendto(b"".join(buffers), address)
        self.ancillary.append(list(ancillary))

    def close(self):
        self.closed = True


class FakeAccessSystem:
    """The L{netlmm.access.system.System} methods, over L{FakeSocket}s."""

    def __init__(self, mac=bytes.fromhex("020000000101"), ifindex=7,
                 linkLocal=IPv6Address("fe80::ff:fe00:101")):
        self.mac = mac
        self.index = ifindex
        #: What linkLocalAddress() answers; None: OSError (no usable one yet).
        self.linkLocal = linkLocal
        self.sockets = []

    def ifindex(self, interface):
        return self.index

    def linkAddress(self, interface):
        return self.mac

    def linkLocalAddress(self, interface, ifindex):
        if self.linkLocal is None:
            raise OSError(101, "Network is unreachable")
        return self.linkLocal

    def setRouterIdentity(self, interface, mac, address):
        self.mac = mac
        self.routerAddress = address
        self.linkLocal = address

    def _socket(self, *args):
        s = FakeSocket()
        self.sockets.append(s)
        return s

    icmpSocket = packetSocket = netlinkSocket = dhcp4ServerSocket = _socket


@implementer(IMagControl)
class RecordingMag:
    """An IMagControl that records every call and passes attachments to its strategy."""

    address = IPv6Address("2001:db8:ffff::1")

    def __init__(self):
        self.calls = []
        self.strategy = None
        #: MN identifier -> the L{netlmm.core.mag.Homes} homes() answers.
        self.bindings = {}

    def attached(self, event):
        self.calls.append(("attached", event.mnId, event.linkLayer))
        if self.strategy is not None:
            self.strategy.attached(event)

    def detached(self, mnId):
        self.calls.append(("detached", mnId))
        if self.strategy is not None:
            self.strategy.unbound(mnId, None, "detached")

    def addressReady(self, mnId, phoa, mode, prefix=None):
        self.calls.append(("addressReady", mnId, phoa, mode) + ((prefix,) if prefix else ()))

    def homes(self, mnId):
        from netlmm.core.mag import NO_HOMES
        return self.bindings.get(mnId, NO_HOMES)

    def kinds(self, kind):
        """The calls of one kind ("attached", "detached", "addressReady")."""
        return [c for c in self.calls if c[0] == kind]


class UDPProbe(DatagramProtocol):
    """A test peer that records the datagrams it receives."""

    def __init__(self):
        self.received = []

    def datagramReceived(self, data, addr):
        self.received.append((data, addr))


def ipv4Packet(source, destination, payload=b"\x08\x00\x00\x00\x00\x01\x00\x01",
               protocol=1, ttl=64):
    """An IPv4 packet (by default an ICMP echo request; no checksums set)."""
    return (bytes([0x45, 0]) + (20 + len(payload)).to_bytes(2, "big") + bytes(4)
            + bytes([ttl, protocol, 0, 0]) + IPv4Address(source).packed
            + IPv4Address(destination).packed + payload)


class FakeHostapd:
    """
    hostapd's control interface as the 'hostapd' detector sees it: a UNIX
    datagram socket at C{path} that answers ATTACH, DETACH, PING, STA-FIRST
    and STA-NEXT like hostapd 2.10, and sends events to attached clients.
    Nothing runs by itself: L{serve} answers what has arrived, so a test
    decides when hostapd speaks (or stays silent).
    """

    def __init__(self, path):
        import socket
        self.path = path
        self.stations = []
        self.clients = []
        self.commands = []
        #: False: read commands but answer nothing (a hung hostapd).
        self.answering = True
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(path)
        self.socket.setblocking(False)

    def serve(self):
        """Answer every command waiting on the socket; returns how many."""
        n = 0
        while True:
            try:
                data, client = self.socket.recvfrom(4096)
            except BlockingIOError:
                return n
            n += 1
            command = data.decode()
            self.commands.append(command)
            if self.answering:
                self._answer(command, client)

    def _answer(self, command, client):
        if command == "ATTACH":
            self.clients.append(client)
            reply = "OK\n"
        elif command == "DETACH":
            if client in self.clients:
                self.clients.remove(client)
            reply = "OK\n"
        elif command == "PING":
            reply = "PONG\n"
        elif command == "STA-FIRST":
            reply = self._station(0)
        elif command.startswith("STA-NEXT "):
            mac = command.split()[1]
            index = self.stations.index(mac) + 1 if mac in self.stations else len(self.stations)
            reply = self._station(index)
        else:
            reply = "UNKNOWN COMMAND\n"
        self.socket.sendto(reply.encode(), client)

    def _station(self, index):
        if index >= len(self.stations):
            return ""
        return f"{self.stations[index]}\nflags=[AUTH][ASSOC][AUTHORIZED]\naid={index + 1}\n"

    def event(self, text, level=3):
        """Send C{<level>text} to every attached client."""
        for client in self.clients:
            self.socket.sendto(f"<{level}>{text}".encode(), client)

    def associate(self, mac):
        """A station associates: AP-STA-CONNECTED."""
        self.stations.append(mac)
        self.event(f"AP-STA-CONNECTED {mac}")

    def disassociate(self, mac):
        """A station leaves: AP-STA-DISCONNECTED."""
        self.stations.remove(mac)
        self.event(f"AP-STA-DISCONNECTED {mac}")

    def close(self):
        """hostapd goes away (its socket file too)."""
        import os
        self.socket.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
