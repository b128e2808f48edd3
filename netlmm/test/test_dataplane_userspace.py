"""
The userspace data plane (TUN + raw protocol-41 socket): forwarding logic
and netlink work over fakes (no root), and for real in namespaces (root).
"""

import os
from socket import AF_INET

from twisted.internet import defer, threads
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from netlmm.config import ConfigError, Table
from netlmm.dataplane import _netlink as nl, dataplanes
from netlmm.dataplane.userspace import LinuxSystem, UserspaceDataPlane
from netlmm.interfaces import IDataPlane
from netlmm.lab import timeScale
from netlmm.lab.fakes import FakeNetlink, FakeTunnelSystem, ipv4Packet, ipv6Packet
from netlmm.test.test_dataplane_seg6 import CN_ADDR, HNP, HNP2, LMA, MAG, MAG2, PHOA, \
    PHOA2, V4, V4B, addDualStack, buildDomain, decapsulatesEncapLimit, \
    dualStackThroughTunnel, echoes

P = nl.PROTOCOL
CN = "2001:db8:c::1"
CN4 = "192.0.2.1"


def make(role, fake, reactor, **kw):
    if role == "lma":
        kw.setdefault("address", LMA)
    else:
        kw.setdefault("address", MAG)
        kw.setdefault("accessInterface", "eth1")
    system = FakeTunnelSystem(fake)
    plane = UserspaceDataPlane(role, reactor=reactor, system=system,
                               netlink=lambda: fake, runner=nl.ImmediateRunner(), **kw)
    return plane, system


class LmaTests(SynchronousTestCase):
    def setUp(self):
        self.fake = FakeNetlink()
        self.reactor = MemoryReactor()
        self.plane, self.system = make("lma", self.fake, self.reactor)
        self.successResultOf(self.plane.start())
        self.tun = self.system.tuns[0]
        self.sock = self.system.sockets[0]

    def test_interface(self):
        verifyObject(IDataPlane, self.plane)

    def test_start(self):
        """
        A TUN device up with the MTU, sockets for protocols 41 and 4 on the
        address, three readers.
        """
        link = self.fake.links["netlmm0"]
        self.assertEqual((link["state"], link["mtu"]), ("up", 1460))
        self.assertEqual([(s.address, s.protocol) for s in self.system.sockets],
                         [(self.plane.address, 41), (self.plane.address, 4)])
        self.assertEqual(len(self.reactor.readers), 3)

    def test_prefix(self):
        """A per-MN prefix: every address in it goes to the pCoA, others do not."""
        self.successResultOf(self.plane.addRoute(HNP, MAG))
        [route] = self.fake.findRoutes(str(HNP))
        self.assertEqual(route["oif"], self.fake.links["netlmm0"]["index"])
        inside = [ipv6Packet(CN, HNP[1]), ipv6Packet(CN, HNP[0x1234])]
        for packet in inside:
            self.assertTrue(self.plane.tunnel(packet))
        self.assertFalse(self.plane.tunnel(ipv6Packet(CN, HNP2[1])))
        self.assertEqual(self.sock.sent, [(p, (MAG, 0)) for p in inside])
        # uplink from any address of the prefix, only from its MAG
        self.assertTrue(self.plane.decapsulate(ipv6Packet(HNP[7], CN), MAG))
        self.assertFalse(self.plane.decapsulate(ipv6Packet(HNP[7], CN), MAG2))
        self.successResultOf(self.plane.removeRoute(HNP, MAG))
        self.assertFalse(self.plane.tunnel(ipv6Packet(CN, HNP[1])))
        self.assertEqual(self.fake.findRoutes(str(HNP)), [])

    def test_ipv4(self):
        """
        An IPv4 home: an IPv4 /32 into the TUN; IPv4 packets go out on the
        protocol-4 socket (IPv4-in-IPv6) and come in from it.
        """
        self.successResultOf(self.plane.addRoute(V4, MAG))
        [route] = self.fake.findRoutes(f"{V4}/32")
        self.assertEqual((route["family"], route["oif"]),
                         (AF_INET, self.fake.links["netlmm0"]["index"]))
        down = ipv4Packet(CN4, V4)
        self.tun.incoming.append(down)
        self.plane._readTun()
        sock4 = self.system.sockets[1]
        self.assertEqual((self.sock.sent, sock4.sent), ([], [(down, (MAG, 0))]))
        up = ipv4Packet(V4, CN4)
        sock4.incoming += [(up, MAG), (up, MAG2), (ipv4Packet(V4B, CN4), MAG)]
        self.plane._readSocket(sock4)
        self.assertEqual(self.tun.written, [up])
        self.assertEqual(self.plane.counters["dropped"], 2)

    def test_badPackets(self):
        """Not IPv4 nor IPv6, or too short for its header: dropped and counted."""
        self.plane.addRoute(V4, MAG)
        for bad in (b"", b"\x45" + bytes(10), b"\x44" + bytes(39), b"\x55" + bytes(60)):
            self.assertFalse(self.plane.tunnel(bad))
            self.assertFalse(self.plane.decapsulate(bad, MAG))
        self.assertEqual(self.plane.counters["dropped"], 8)

    def test_addRoute(self):
        self.successResultOf(self.plane.addRoute(PHOA, MAG))
        [route] = self.fake.findRoutes(PHOA)
        self.assertEqual((route["oif"], route["proto"]),
                         (self.fake.links["netlmm0"]["index"], P))

    def test_downlink(self):
        """A packet routed into the TUN for a pHoA goes to its pCoA."""
        self.plane.addRoute(PHOA, MAG)
        packet = ipv6Packet(CN, PHOA)
        self.tun.incoming.append(packet)
        for reader in list(self.reactor.readers):
            reader.doRead()
        self.assertEqual(self.sock.sent, [(packet, (MAG, 0))])
        self.assertEqual(self.plane.counters["tunnelled"], 1)

    def test_downlinkUnknown(self):
        self.tun.incoming += [ipv6Packet(CN, PHOA2), b"\x45" + b"\0" * 39, b"short"]
        self.plane._readTun()
        self.assertEqual(self.sock.sent, [])
        self.assertEqual(self.plane.counters["dropped"], 3)

    def test_uplink(self):
        """A tunnelled packet from the pHoA's MAG is written to the TUN."""
        self.plane.addRoute(PHOA, MAG)
        packet = ipv6Packet(PHOA, CN)
        self.sock.incoming.append((packet, MAG))
        self.plane._readSocket()
        self.assertEqual(self.tun.written, [packet])

    def test_uplinkSpoofed(self):
        """Inner source not bound to the outer source: dropped."""
        self.plane.addRoute(PHOA, MAG)
        self.sock.incoming += [(ipv6Packet(PHOA, CN), MAG2), (ipv6Packet(PHOA2, CN), MAG)]
        self.plane._readSocket()
        self.assertEqual(self.tun.written, [])
        self.assertEqual(self.plane.counters["dropped"], 2)

    def test_moveRoute(self):
        self.plane.addRoute(PHOA, MAG)
        self.successResultOf(self.plane.moveRoute(PHOA, MAG, MAG2))
        self.plane.tunnel(ipv6Packet(CN, PHOA))
        self.assertEqual(self.sock.sent[0][1], (MAG2, 0))
        self.assertEqual(len(self.fake.findRoutes(PHOA)), 1)

    def test_removeRoute(self):
        self.plane.addRoute(PHOA, MAG)
        self.successResultOf(self.plane.removeRoute(PHOA, MAG))
        self.assertEqual(self.fake.findRoutes(PHOA), [])
        self.assertFalse(self.plane.tunnel(ipv6Packet(CN, PHOA)))

    def test_stop(self):
        self.plane.addRoute(PHOA, MAG)
        self.successResultOf(self.plane.stop())
        self.assertFalse(self.reactor.readers)
        self.assertTrue(self.tun.closed and self.sock.closed and self.fake.closed)
        self.assertEqual([r for r in self.fake.routes if r["proto"] == P], [])
        self.assertNotIn("netlmm0", self.fake.links)

    def test_restart(self):
        """Leftover tagged routes and rules are removed at start."""
        self.fake.route("add", dst=f"{PHOA2}/128", oif=2, proto=P)
        self.fake.rule("add", priority=100, src=PHOA2, table=5213, protocol=P)
        self.successResultOf(self.plane.stop())
        again, _ = make("lma", self.fake, self.reactor)
        self.successResultOf(again.start())
        self.assertEqual(self.fake.findRoutes(PHOA2), [])
        self.assertEqual(self.fake.findRules(protocol=P), [])

    def test_tunBusy(self):
        other, _ = make("lma", self.fake, self.reactor)
        f = self.failureResultOf(other.start(), nl.DataPlaneError)
        self.assertIn("lma.dataplane.tun_name", str(f.value))


class MagTests(SynchronousTestCase):
    def setUp(self):
        self.fake = FakeNetlink()
        self.reactor = MemoryReactor()
        self.plane, self.system = make("mag", self.fake, self.reactor)
        self.successResultOf(self.plane.start())
        self.tun = self.system.tuns[0]
        self.sock = self.system.sockets[0]

    def test_tunnelUp(self):
        self.successResultOf(self.plane.tunnelUp("mn", PHOA, LMA))
        [rule] = self.fake.findRules(src=PHOA)
        self.assertEqual((rule["priority"], rule["FRA_TABLE"], rule["FRA_PROTOCOL"],
                          rule["FRA_IIFNAME"]), (100, 5213, P, "eth1"))
        [default] = self.fake.findRoutes("::/0", table=5213)
        self.assertEqual(default["oif"], self.fake.links["netlmm0"]["index"])
        [host] = self.fake.findRoutes(PHOA)
        self.assertEqual(host["oif"], self.fake.links["eth1"]["index"])

    def test_uplink(self):
        self.plane.tunnelUp("mn", PHOA, LMA)
        packet = ipv6Packet(PHOA, CN)
        self.tun.incoming.append(packet)
        self.plane._readTun()
        self.assertEqual(self.sock.sent, [(packet, (LMA, 0))])

    def test_downlink(self):
        self.plane.tunnelUp("mn", PHOA, LMA)
        packet = ipv6Packet(CN, PHOA)
        self.sock.incoming += [(packet, LMA), (packet, MAG2)]
        self.plane._readSocket()
        self.assertEqual(self.tun.written, [packet])
        self.assertEqual(self.plane.counters["dropped"], 1)

    def test_lastUsed(self):
        """
        A watched home's last packet, either way, is remembered (the MAG
        releases an old prefix unused for a while); watching ends with its tunnel.
        """
        from twisted.internet.task import Clock
        self.plane.reactor = clock = Clock()
        clock.advance(100)
        self.plane.tunnelUp("mn", PHOA, LMA)
        self.plane.tunnelUp("mn2", PHOA2, LMA)
        self.assertEqual(self.plane.lastUsed(PHOA), 100)
        clock.advance(5)
        self.tun.incoming.append(ipv6Packet(PHOA, CN))
        self.plane._readTun()
        self.assertEqual(self.plane.lastUsed(PHOA), 105)
        clock.advance(5)
        self.sock.incoming.append((ipv6Packet(CN, PHOA), LMA))
        self.plane._readSocket()
        self.assertEqual(self.plane.lastUsed(PHOA), 110)
        # Another mobile's packets, and dropped ones, do not count.
        clock.advance(5)
        self.tun.incoming.append(ipv6Packet(PHOA2, CN))
        self.sock.incoming.append((ipv6Packet(CN, PHOA), MAG2))
        self.plane._readTun()
        self.plane._readSocket()
        self.assertEqual(self.plane.lastUsed(PHOA), 110)
        self.plane.tunnelDown("mn", PHOA, LMA)
        self.assertEqual(self.plane._watched, {})

    def test_tunnelDown(self):
        self.plane.tunnelUp("mn", PHOA, LMA)
        self.plane.tunnelUp("mn2", PHOA2, LMA)
        self.successResultOf(self.plane.tunnelDown("mn", PHOA, LMA))
        self.assertEqual(self.fake.findRules(src=PHOA), [])
        self.assertEqual(self.fake.findRoutes(PHOA), [])
        self.assertEqual(len(self.fake.findRoutes("::/0", table=5213)), 1)
        self.successResultOf(self.plane.tunnelDown("mn2", PHOA2, LMA))
        self.assertEqual(self.fake.findRoutes("::/0", table=5213), [])
        self.assertIsNone(self.plane.tunnelDown("mn2", PHOA2, LMA))

    def test_dualStack(self):
        """
        A prefix and an IPv4 home: a rule and a default into the TUN per
        family; each family's default goes with its last home.
        """
        self.successResultOf(self.plane.tunnelUp("mn", HNP, LMA))
        self.successResultOf(self.plane.tunnelUp("mn", V4, LMA))
        tun = self.fake.links["netlmm0"]["index"]
        self.assertEqual([r["oif"] for r in self.fake.findRoutes("::/0", table=5213)
                          + self.fake.findRoutes("0.0.0.0/0", table=5213)], [tun, tun])
        [rule4] = self.fake.findRules(family=AF_INET, src=str(V4))
        self.assertEqual((rule4["src_len"], rule4["FRA_TABLE"]), (32, 5213))
        self.assertEqual(self.fake.findRoutes(f"{V4}/32")[0]["oif"],
                         self.fake.links["eth1"]["index"])
        up4, up6 = ipv4Packet(V4, CN4), ipv6Packet(HNP[9], CN)
        self.tun.incoming += [up4, up6]
        self.plane._readTun()
        self.assertEqual((self.sock.sent, self.system.sockets[1].sent),
                         ([(up6, (LMA, 0))], [(up4, (LMA, 0))]))
        self.successResultOf(self.plane.tunnelDown("mn", V4, LMA))
        self.assertEqual(self.fake.findRoutes("0.0.0.0/0", table=5213), [])
        self.assertEqual(self.fake.findRules(family=AF_INET, FRA_PROTOCOL=P), [])
        self.assertEqual(len(self.fake.findRoutes("::/0", table=5213)), 1)

    def test_stop(self):
        self.plane.tunnelUp("mn", PHOA, LMA)
        self.plane.tunnelUp("mn", V4, LMA)
        self.successResultOf(self.plane.stop())
        self.assertEqual([r for r in self.fake.routes if r["proto"] == P], [])
        self.assertEqual([r for r in self.fake.rules if r["FRA_PROTOCOL"] == P], [])
        self.assertTrue(all(s.closed for s in self.system.sockets))


class ConfigTests(SynchronousTestCase):
    def build(self, role, **data):
        data.setdefault("kind", "userspace")
        table = Table(data, f"{role}.dataplane")
        name = table.string("kind", required=True)
        return dataplanes.create(name, table, f"{role}.dataplane.kind", reactor=None,
                                 role=role)

    def test_defaults(self):
        plane = self.build("mag", address=MAG, access_interface="eth1")
        self.assertEqual((plane.tunName, plane.mtu, plane.uplinkTable, plane.uplinkPriority,
                          plane.protocol), ("netlmm0", 1460, 5213, 100, 213))

    def test_errors(self):
        for fragment, role, data in [
                ("lma.dataplane.address: missing", "lma", {}),
                ("mag.dataplane.access_interface: missing", "mag", dict(address=MAG)),
                ("only a MAG", "lma", dict(address=LMA, access_interface="eth1")),
                ("mtu: expected a value from 1280", "lma", dict(address=LMA, mtu=1000)),
                ("tun_name: expected an interface name", "lma",
                 dict(address=LMA, tun_name="x y")),
                ("unknown key", "lma", dict(address=LMA, uplink_table=7))]:
            e = self.assertRaises(ConfigError, self.build, role, **data)
            self.assertIn(fragment, str(e))


class InNetns:
    """L{LinuxSystem} whose descriptors are opened inside a lab namespace."""

    def __init__(self, lab, role):
        self.lab = lab
        self.role = role

    def openTun(self, name):
        return self.lab.inNetns(self.role, LinuxSystem().openTun, name)

    def rawSocket(self, address, protocol=41):
        return self.lab.inNetns(self.role, LinuxSystem().rawSocket, address, protocol)


@defer.inlineCallbacks
def startUserspacePair(test, lab):
    """Userspace LMA and MAG data planes in a L{buildDomain} lab, started; they stop at cleanup."""
    from twisted.internet import reactor
    started = []
    test.addCleanup(lambda: defer.gatherResults([p.stop() for p in started]))
    for role, address, kw in (("lma", LMA, {}), ("mag", MAG, {"accessInterface": "m1"})):
        plane = UserspaceDataPlane(role, address, tunName="nltun0", mtu=1500,
                                   reactor=reactor, system=InNetns(lab, role),
                                   netlink=lab.netlink(role), **kw)
        yield plane.start()
        started.append(plane)
    return list(started)


class UserspaceNetnsTests(TestCase):
    """CN, LMA, MAG and MN namespaces; ping through the daemon's tunnel."""

    timeout = 60 * timeScale()

    @defer.inlineCallbacks
    def test_pingThroughTunnel(self):
        from twisted.internet import reactor
        lab = buildDomain(self, needs=("tun",))
        lma = UserspaceDataPlane("lma", LMA, tunName="nltun0", mtu=1500, reactor=reactor,
                                 system=InNetns(lab, "lma"), netlink=lab.netlink("lma"))
        mag = UserspaceDataPlane("mag", MAG, accessInterface="m1", tunName="nltun0",
                                 mtu=1500, reactor=reactor, system=InNetns(lab, "mag"),
                                 netlink=lab.netlink("mag"))
        started = []
        self.addCleanup(lambda: defer.gatherResults([p.stop() for p in started]))
        yield lma.start()
        started.append(lma)
        yield mag.start()
        started.append(mag)
        yield lma.addRoute(PHOA, MAG)
        yield mag.tunnelUp("mn", PHOA, LMA)

        sh = lambda role, cmd, check=True: threads.deferToThread(lab.sh, role, cmd, check)
        capture = lab.capture("lma", "l0", os.path.abspath(self.mktemp()) + ".pcap")
        yield sh("mn", f"ping -6 -c 3 -i 0.2 -W 2 {CN_ADDR}")
        yield sh("cn", f"ping -6 -c 3 -i 0.2 -W 2 {PHOA}")
        yield sh("mn", f"ping -6 -c 1 -W 2 -s 1452 -M do {CN_ADDR}")
        packets = yield threads.deferToThread(echoes, capture, 14)
        self.assertGreaterEqual(len(packets), 14, packets)
        for line in packets:
            nxt, src, dst, routing = line
            self.assertEqual((nxt, routing), ("41,58", ""), line)
            self.assertIn(src.split(",")[0], (LMA, MAG), line)
        self.assertGreaterEqual(lma.counters["tunnelled"], 4)
        self.assertGreaterEqual(mag.counters["decapsulated"], 4)

        yield lma.removeRoute(PHOA, MAG)
        yield mag.tunnelDown("mn", PHOA, LMA)
        for role in ("lma", "mag"):
            state = (yield sh(role, "ip -6 route show table all proto 213; ip -6 rule")).stdout
            self.assertNotIn(PHOA, state)
        result = yield sh("mn", f"ping -6 -c 1 -W 1 {CN_ADDR}", False)
        self.assertNotEqual(result.returncode, 0)

        started.clear()
        yield lma.stop()
        yield mag.stop()
        for role in ("lma", "mag"):
            links = (yield sh(role, "ip link show; ip -6 rule")).stdout
            self.assertNotIn("nltun0", links)
            self.assertNotIn("proto 213", links)

    @defer.inlineCallbacks
    def test_dualStack(self):
        """A per-MN prefix and an IPv4 home through the daemons' tunnel."""
        lab = buildDomain(self, needs=("tun",))
        addDualStack(lab)
        planes = yield startUserspacePair(self, lab)
        yield dualStackThroughTunnel(self, lab, *planes)

    @defer.inlineCallbacks
    def test_encapsulationLimit(self):
        """A peer's Tunnel Encapsulation Limit option reaches the socket's reader."""
        lab = buildDomain(self, needs=("tun",))
        lma, mag = yield startUserspacePair(self, lab)
        yield lma.addRoute(PHOA, MAG)
        yield mag.tunnelUp("mn", PHOA, LMA)
        yield decapsulatesEncapLimit(self, lab, mag)
        self.assertEqual(mag.counters["decapsulated"], 3)

    @defer.inlineCallbacks
    def test_mixedWithSeg6(self):
        """A seg6 LMA and a userspace MAG understand each other's packets."""
        from twisted.internet import reactor
        from netlmm.dataplane.seg6 import Seg6DataPlane
        lab = buildDomain(self, needs=("tun", "seg6"))
        lma = Seg6DataPlane("lma", "l0", LMA, reactor=reactor, netlink=lab.netlink("lma"))
        mag = UserspaceDataPlane("mag", MAG, accessInterface="m1", tunName="nltun0",
                                 mtu=1500, reactor=reactor, system=InNetns(lab, "mag"),
                                 netlink=lab.netlink("mag"))
        started = []
        self.addCleanup(lambda: defer.gatherResults([p.stop() for p in started]))
        yield lma.start()
        started.append(lma)
        yield mag.start()
        started.append(mag)
        yield lma.addRoute(PHOA, MAG)
        yield mag.tunnelUp("mn", PHOA, LMA)
        sh = lambda role, cmd: threads.deferToThread(lab.sh, role, cmd)
        yield sh("mn", f"ping -6 -c 2 -i 0.2 -W 2 {CN_ADDR}")
        yield sh("cn", f"ping -6 -c 2 -i 0.2 -W 2 {PHOA}")
        self.assertGreaterEqual(mag.counters["decapsulated"], 4)
        self.assertGreaterEqual(mag.counters["tunnelled"], 4)
