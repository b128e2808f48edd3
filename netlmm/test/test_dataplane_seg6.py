"""
The seg6 data plane: its netlink work over a fake (no root), its config
validation, and for real in network namespaces (root) with packets checked on
the wire.
"""

import os
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from socket import AF_INET, AF_INET6

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase, TestCase

from netlmm.config import ConfigError, Table
from netlmm.dataplane import _netlink as nl, dataplanes
from netlmm.dataplane.seg6 import Seg6DataPlane
from netlmm.lab.fakes import FakeNetlink
from netlmm.interfaces import IDataPlane
from netlmm.lab import Lab, timeScale
from netlmm.lab.capture import ECHO
from zope.interface.verify import verifyObject

LMA, MAG, MAG2 = "2001:db8:f::1", "2001:db8:f::2", "2001:db8:f::3"
PHOA, PHOA2 = "2001:db8:a::10", "2001:db8:a::11"
HNP, HNP2 = IPv6Network("2001:db8:1:1::/64"), IPv6Network("2001:db8:1:2::/64")
V4, V4B = IPv4Address("10.20.0.5"), IPv4Address("10.20.0.6")
P = nl.PROTOCOL


def make(role, fake, **kw):
    if role == "lma":
        kw.setdefault("address", LMA)
    else:
        kw.setdefault("address", MAG)
        kw.setdefault("accessInterface", "eth1")
    return Seg6DataPlane(role, "eth0", netlink=lambda: fake,
                         runner=nl.ImmediateRunner(), **kw)


def ours(fake):
    return ([r for r in fake.routes if r["proto"] == P],
            [r for r in fake.rules if r["FRA_PROTOCOL"] == P])


class ReducedEncapTests(SynchronousTestCase):
    """pyroute2 must encode 'encap.red' as 3, not fall back to 'encap' (1)."""

    def test_modeTable(self):
        nl.supportReducedEncap()
        from pyroute2.netlink.rtnl.rtmsg import rtmsg_base
        header = rtmsg_base.seg6_encap_info.ipv6_sr_hdr
        self.assertEqual(header.encapmodes["encap.red"], 3)
        self.assertEqual(header.r_encapmodes[3], "encap.red")

    def test_encoded(self):
        """A route message with mode 'encap.red' carries encapmode 3."""
        nl.supportReducedEncap()
        from socket import AF_INET6
        from pyroute2.netlink.rtnl.rtmsg import rtmsg
        msg = rtmsg()
        msg["family"] = AF_INET6
        msg["dst_len"] = 128
        msg["attrs"] = [("RTA_DST", PHOA), ("RTA_ENCAP_TYPE", 5),
                        ("RTA_ENCAP", {"attrs": [("SEG6_IPTUNNEL_SRH", {
                            "mode": "encap.red", "segs": [MAG]})]})]
        msg.encode()
        back = rtmsg(msg.data)
        back.decode()
        srh = back.get_attr("RTA_ENCAP").get_attr("SEG6_IPTUNNEL_SRH")
        self.assertEqual((srh["encapmode"], srh["segs"]), (3, [MAG]))


class LmaTests(SynchronousTestCase):
    """The LMA: decapsulation at start, one host route per pHoA."""

    def setUp(self):
        self.fake = FakeNetlink()
        self.plane = make("lma", self.fake)
        self.successResultOf(self.plane.start())

    def test_interface(self):
        verifyObject(IDataPlane, self.plane)
        self.assertEqual(self.plane.name, "seg6")

    def test_start(self):
        """
        Local table at 50; decap rules at 10: IPv6-in-IPv6 to End.DT6 in
        5214, IPv4-in-IPv6 to End.DX4 (next hop from the inner packet) in 5215.
        """
        self.assertEqual(self.fake.findRules(priority=None, FRA_TABLE=255), [])
        self.assertEqual(len(self.fake.findRules(priority=50, FRA_TABLE=255,
                                                 FRA_PROTOCOL=P)), 1)
        rules = self.fake.findRules(priority=10)
        self.assertEqual(sorted((r["dst"], r["dst_len"], r["ip_proto"], r["FRA_TABLE"],
                                 r["FRA_PROTOCOL"]) for r in rules),
                         [(LMA, 128, 4, 5215, P), (LMA, 128, 41, 5214, P)])
        [route] = self.fake.findRoutes(LMA, table=5214)
        self.assertEqual(route["encap"], {"type": "seg6local", "action": "End.DT6",
                                          "table": 254})
        self.assertEqual(route["oif"], self.fake.links["eth0"]["index"])
        self.assertEqual(route["proto"], P)
        [route4] = self.fake.findRoutes(LMA, table=5215)
        self.assertEqual(route4["encap"], {"type": "seg6local", "action": "End.DX4",
                                           "nh4": "0.0.0.0"})
        self.assertEqual((route4["oif"], route4["proto"]),
                         (self.fake.links["eth0"]["index"], P))
        # No IPv4 policy routing is touched.
        self.assertEqual(self.fake.findRules(family=AF_INET, FRA_PROTOCOL=P), [])

    def test_addPrefix(self):
        """A per-MN prefix (E.3) is routed whole into the tunnel."""
        self.successResultOf(self.plane.addRoute(HNP, MAG))
        [route] = self.fake.findRoutes(str(HNP))
        self.assertEqual((route["encap"], route["proto"]),
                         ({"type": "seg6", "mode": "encap.red", "segs": [MAG]}, P))
        self.assertEqual(self.plane.routes, {HNP: IPv6Address(MAG)})
        self.successResultOf(self.plane.moveRoute(HNP, MAG, MAG2))
        [route] = self.fake.findRoutes(str(HNP))
        self.assertEqual(route["encap"]["segs"], [MAG2])
        self.successResultOf(self.plane.removeRoute(HNP, MAG2))
        self.assertEqual(self.fake.findRoutes(str(HNP)), [])

    def test_addIpv4(self):
        """An IPv4 home address (RFC 5844) gets an IPv4 /32 route, IPv4-in-IPv6."""
        self.successResultOf(self.plane.addRoute(V4, MAG))
        [route] = self.fake.findRoutes(f"{V4}/32")
        self.assertEqual((route["family"], route["encap"], route["oif"], route["proto"]),
                         (AF_INET, {"type": "seg6", "mode": "encap.red", "segs": [MAG]},
                          self.fake.links["eth0"]["index"], P))
        self.assertEqual(self.fake.findRoutes(f"{V4}/32", family=AF_INET6), [])
        self.successResultOf(self.plane.moveRoute(V4, MAG, MAG2))
        self.assertEqual(self.fake.findRoutes(f"{V4}/32")[0]["encap"]["segs"], [MAG2])
        self.successResultOf(self.plane.removeRoute(V4, MAG2))
        self.assertEqual(self.fake.findRoutes(f"{V4}/32"), [])

    def test_homeKinds(self):
        """Text is parsed; what is not a home is refused naming the data plane."""
        self.successResultOf(self.plane.addRoute("2001:db8:1:3::/64", MAG))
        self.assertIn(IPv6Network("2001:db8:1:3::/64"), self.plane.routes)
        for bad in ("10.0.0.0/24", IPv4Network("10.0.0.0/24"), "nonsense", 7):
            e = self.assertRaises(nl.DataPlaneError, self.plane.addRoute, bad, MAG)
            self.assertIn("seg6 data plane", str(e))
        self.assertEqual(len(self.plane.routes), 1)

    def test_stopRemovesIpv4(self):
        """IPv4 routes are tagged and removed like the IPv6 ones."""
        self.plane.addRoute(V4, MAG)
        self.successResultOf(self.plane.stop())
        self.assertEqual([r for r in self.fake.routes if r["proto"] == P], [])

    def test_addRoute(self):
        self.successResultOf(self.plane.addRoute(PHOA, MAG))
        [route] = self.fake.findRoutes(PHOA)
        self.assertEqual(route["encap"], {"type": "seg6", "mode": "encap.red",
                                          "segs": [MAG]})
        self.assertEqual(route["proto"], P)

    def test_moveRoute(self):
        self.plane.addRoute(PHOA, MAG)
        self.successResultOf(self.plane.moveRoute(PHOA, MAG, MAG2))
        [route] = self.fake.findRoutes(PHOA)
        self.assertEqual(route["encap"]["segs"], [MAG2])
        self.assertEqual(self.fake.calls[-1][:2], ("route", "replace"))

    def test_removeRoute(self):
        self.plane.addRoute(PHOA, MAG)
        self.successResultOf(self.plane.removeRoute(PHOA, MAG))
        self.assertEqual(self.fake.findRoutes(PHOA), [])
        self.assertEqual(self.plane.routes, {})

    def test_removeMissing(self):
        """Removing a route already gone is not an error."""
        self.successResultOf(self.plane.removeRoute(PHOA, MAG))

    def test_stop(self):
        """Everything tagged goes; the local rule is back at 0."""
        self.plane.addRoute(PHOA, MAG)
        self.plane.addRoute(PHOA2, MAG2)
        self.successResultOf(self.plane.stop())
        self.assertEqual(ours(self.fake), ([], []))
        self.assertEqual(len(self.fake.findRules(priority=None, FRA_TABLE=255)), 1)
        self.assertTrue(self.fake.closed)

    def test_restart(self):
        """A new daemon over the leftovers of a killed one starts cleanly."""
        self.plane.addRoute(PHOA, MAG)
        again = make("lma", self.fake)
        self.successResultOf(again.start())
        self.assertEqual(self.fake.findRoutes(PHOA), [])
        routes, rules = ours(self.fake)
        self.assertEqual(len(routes), 2)
        self.assertEqual(sorted(r["priority"] for r in rules), [10, 10, 50])
        self.assertEqual(len(self.fake.findRules(FRA_TABLE=255)), 1)

    def test_restartAfterCrashBetweenRules(self):
        """Leftovers with the local rule still at 0 are reconciled too."""
        self.successResultOf(self.plane.stop())
        self.fake.rules.append(dict(family=AF_INET6, priority=10, FRA_TABLE=5214,
                                    FRA_PROTOCOL=P, dst=LMA, dst_len=128, ip_proto=41))
        again = make("lma", self.fake)
        self.successResultOf(again.start())
        self.assertEqual(len(self.fake.findRules(priority=10, ip_proto=41)), 1)

    def test_missingInterface(self):
        plane = Seg6DataPlane("lma", "nope0", LMA, netlink=lambda: self.fake,
                              runner=nl.ImmediateRunner())
        f = self.failureResultOf(plane.start(), nl.DataPlaneError)
        self.assertIn("'nope0'", str(f.value))
        self.assertIn("lma.dataplane.interface", str(f.value))

    def test_otherProtocolUntouched(self):
        """Routes and rules of others stay at start and stop."""
        self.fake.route("add", dst="2001:db8:99::/64", oif=2, proto=4)
        self.fake.rule("add", family=AF_INET6, priority=1000, table=100, protocol=4)
        again = make("lma", self.fake)
        self.successResultOf(again.start())
        self.successResultOf(again.stop())
        self.assertEqual(len(self.fake.findRoutes("2001:db8:99::/64")), 1)
        self.assertEqual(len(self.fake.findRules(priority=1000)), 1)


class MagTests(SynchronousTestCase):
    """The MAG: uplink by source rule, downlink decap to the access side."""

    def setUp(self):
        self.fake = FakeNetlink()
        self.plane = make("mag", self.fake)
        self.successResultOf(self.plane.start())

    def test_start(self):
        [route] = self.fake.findRoutes(MAG, table=5214)
        self.assertEqual(route["encap"], {"type": "seg6local", "action": "End.DX6",
                                          "nh6": "::"})
        self.assertEqual(route["oif"], self.fake.links["eth1"]["index"])
        self.assertEqual(len(self.fake.findRules(priority=10, dst=MAG, ip_proto=41)), 1)
        [route4] = self.fake.findRoutes(MAG, table=5215)
        self.assertEqual((route4["encap"], route4["oif"]),
                         ({"type": "seg6local", "action": "End.DX4", "nh4": "0.0.0.0"},
                          self.fake.links["eth1"]["index"]))
        self.assertEqual(len(self.fake.findRules(priority=10, dst=MAG, ip_proto=4,
                                                 FRA_TABLE=5215)), 1)

    def test_tunnelUpPrefix(self):
        """Uplink from the whole prefix; the prefix is on the access link."""
        self.successResultOf(self.plane.tunnelUp("mn1", HNP, LMA))
        [rule] = self.fake.findRules(priority=100)
        self.assertEqual((rule["src"], rule["src_len"], rule["FRA_TABLE"]),
                         (str(HNP.network_address), 64, 5213))
        [host] = self.fake.findRoutes(str(HNP))
        self.assertEqual(host["oif"], self.fake.links["eth1"]["index"])
        self.successResultOf(self.plane.tunnelDown("mn1", HNP, LMA))
        self.assertEqual((self.fake.findRules(priority=100),
                          self.fake.findRoutes(str(HNP)),
                          self.fake.findRoutes("::/0", table=5213)), ([], [], []))

    def test_tunnelUpIpv4(self):
        """
        An IPv4 home: an IPv4 source rule into the same uplink table, whose
        IPv4 default route encapsulates to the LMA, and a /32 on the access link.
        """
        self.successResultOf(self.plane.tunnelUp("mn1", HNP, LMA))
        self.successResultOf(self.plane.tunnelUp("mn1", V4, LMA))
        [rule4] = self.fake.findRules(family=AF_INET, priority=100)
        self.assertEqual((rule4["src"], rule4["src_len"], rule4["FRA_TABLE"],
                          rule4["FRA_PROTOCOL"]), (str(V4), 32, 5213, P))
        [default4] = self.fake.findRoutes("0.0.0.0/0", table=5213)
        self.assertEqual((default4["family"], default4["encap"], default4["oif"]),
                         (AF_INET, {"type": "seg6", "mode": "encap.red", "segs": [LMA]},
                          self.fake.links["eth0"]["index"]))
        [host4] = self.fake.findRoutes(f"{V4}/32")
        self.assertEqual(host4["oif"], self.fake.links["eth1"]["index"])
        # The IPv6 side is untouched by the IPv4 home, and the other way round.
        self.assertEqual(len(self.fake.findRoutes("::/0", table=5213)), 1)
        self.successResultOf(self.plane.tunnelDown("mn1", V4, LMA))
        self.assertEqual((self.fake.findRules(family=AF_INET, priority=100),
                          self.fake.findRoutes("0.0.0.0/0", table=5213),
                          self.fake.findRoutes(f"{V4}/32")), ([], [], []))
        self.assertEqual(len(self.fake.findRoutes("::/0", table=5213)), 1)
        self.successResultOf(self.plane.tunnelDown("mn1", HNP, LMA))
        self.assertEqual(self.fake.findRoutes("::/0", table=5213), [])
        self.assertEqual(self.plane._uplinks, {})

    def test_ipv4Only(self):
        """An IPv4-only mobile: no IPv6 default route in the uplink table."""
        self.successResultOf(self.plane.tunnelUp("mn1", V4, LMA))
        self.successResultOf(self.plane.tunnelUp("mn2", V4B, LMA))
        self.assertEqual(self.fake.findRoutes("::/0", table=5213), [])
        self.assertEqual(len(self.fake.findRoutes("0.0.0.0/0", table=5213)), 1)
        self.successResultOf(self.plane.tunnelDown("mn1", V4, LMA))
        self.assertEqual(len(self.fake.findRoutes("0.0.0.0/0", table=5213)), 1)
        self.successResultOf(self.plane.tunnelDown("mn2", V4B, LMA))
        self.assertEqual(self.fake.findRoutes("0.0.0.0/0", table=5213), [])

    def test_tunnelUp(self):
        self.successResultOf(self.plane.tunnelUp("mn1", PHOA, LMA))
        [rule] = self.fake.findRules(priority=100)
        # Only what comes from the access link goes up: what the MAG
        # decapsulates for one of its mobiles (from another) must not.
        self.assertEqual((rule["src"], rule["src_len"], rule["FRA_TABLE"],
                          rule["FRA_PROTOCOL"], rule["FRA_IIFNAME"]),
                         (PHOA, 128, 5213, P, "eth1"))
        [default] = self.fake.findRoutes("::/0", table=5213)
        self.assertEqual(default["encap"], {"type": "seg6", "mode": "encap.red",
                                            "segs": [LMA]})
        [host] = self.fake.findRoutes(PHOA)
        self.assertEqual(host["oif"], self.fake.links["eth1"]["index"])
        self.assertIsNone(host["encap"])

    def test_twoMobiles(self):
        """Two pHoAs share the LMA's table; it goes with the last one."""
        self.plane.tunnelUp("mn1", PHOA, LMA)
        self.plane.tunnelUp("mn2", PHOA2, LMA)
        self.assertEqual(len(self.fake.findRoutes("::/0", table=5213)), 1)
        self.successResultOf(self.plane.tunnelDown("mn1", PHOA, LMA))
        self.assertEqual(len(self.fake.findRoutes("::/0", table=5213)), 1)
        self.assertEqual(len(self.fake.findRules(priority=100)), 1)
        self.successResultOf(self.plane.tunnelDown("mn2", PHOA2, LMA))
        self.assertEqual(self.fake.findRoutes("::/0", table=5213), [])
        self.assertEqual(self.fake.findRules(priority=100), [])
        self.assertEqual(self.fake.findRoutes(PHOA) + self.fake.findRoutes(PHOA2), [])

    def test_twoLmas(self):
        """A second LMA gets its own uplink table."""
        self.plane.tunnelUp("mn1", PHOA, LMA)
        self.plane.tunnelUp("mn2", PHOA2, "2001:db8:f::99")
        [rule] = self.fake.findRules(src=PHOA2)
        self.assertEqual(rule["FRA_TABLE"], 5216)  # 5214 and 5215 decapsulate

    def test_tunnelUpTwice(self):
        self.plane.tunnelUp("mn1", PHOA, LMA)
        self.successResultOf(self.plane.tunnelUp("mn1", PHOA, LMA))
        self.assertEqual(len(self.fake.findRules(priority=100)), 1)

    def test_tunnelDownUnknown(self):
        self.assertIsNone(self.plane.tunnelDown("mn1", PHOA, LMA))

    def test_stop(self):
        self.plane.tunnelUp("mn1", PHOA, LMA)
        self.successResultOf(self.plane.stop())
        self.assertEqual(ours(self.fake), ([], []))
        self.assertEqual(len(self.fake.findRules(priority=None, FRA_TABLE=255)), 1)

    def test_restart(self):
        self.plane.tunnelUp("mn1", PHOA, LMA)
        again = make("mag", self.fake)
        self.successResultOf(again.start())
        self.assertEqual(self.fake.findRules(priority=100), [])
        self.assertEqual(self.fake.findRoutes(PHOA), [])
        self.successResultOf(again.tunnelUp("mn1", PHOA, LMA))
        self.assertEqual(len(self.fake.findRules(priority=100)), 1)

    def test_missingAccess(self):
        plane = make("mag", self.fake, accessInterface="wlan9")
        f = self.failureResultOf(plane.start(), nl.DataPlaneError)
        self.assertIn("mag.dataplane.access_interface", str(f.value))


class ConfigTests(SynchronousTestCase):
    """[lma.dataplane] / [mag.dataplane] with kind = 'seg6'."""

    def build(self, role, **data):
        data.setdefault("kind", "seg6")
        table = Table(data, f"{role}.dataplane")
        name = table.string("kind", required=True)
        return dataplanes.create(name, table, f"{role}.dataplane.kind", reactor=None,
                                 role=role)

    def test_registered(self):
        self.assertIn("seg6", dataplanes.names())

    def test_lma(self):
        plane = self.build("lma", interface="eth0", address=LMA)
        self.assertEqual((plane.role, plane.interface, str(plane.address),
                          plane.decapTable, plane.decap4Table, plane.decapPriority,
                          plane.localPriority, plane.protocol),
                         ("lma", "eth0", LMA, 5214, 5215, 10, 50, 213))
        plane = self.build("lma", interface="eth0", address=LMA, decap_table=700)
        self.assertEqual((plane.decapTable, plane.decap4Table), (700, 701))

    def test_mag(self):
        plane = self.build("mag", interface="eth0", address=MAG, access_interface="eth1",
                           uplink_table=300, uplink_priority=200, protocol=99)
        self.assertEqual((plane.accessInterface, plane.uplinkTable, plane.uplinkPriority,
                          plane.protocol), ("eth1", 300, 200, 99))

    def assertError(self, fragment, role, **data):
        e = self.assertRaises(ConfigError, self.build, role, **data)
        self.assertIn(fragment, str(e))
        return e

    def test_errors(self):
        self.assertError("lma.dataplane.interface: missing", "lma", address=LMA)
        self.assertError("lma.dataplane.address: missing", "lma", interface="eth0")
        self.assertError("mag.dataplane.access_interface: missing", "mag",
                         interface="eth0", address=MAG)
        self.assertError("only a MAG", "lma", interface="eth0", address=LMA,
                         access_interface="eth1")
        self.assertError("interface name", "lma", interface="eth0/x", address=LMA)
        self.assertError("interface name", "lma", interface="a" * 16, address=LMA)
        self.assertError("IPv6 address", "lma", interface="eth0", address="10.0.0.1")
        self.assertError("reserved", "lma", interface="eth0", address=LMA, decap_table=254)
        self.assertError("decap_priority: must be lower", "lma", interface="eth0",
                         address=LMA, decap_priority=60)
        self.assertError("uplink_priority: must be higher", "mag", interface="eth0",
                         address=MAG, access_interface="eth1", uplink_priority=20)
        self.assertError("uplink_table: must differ from decap_table", "mag",
                         interface="eth0", address=MAG, access_interface="eth1",
                         uplink_table=5214)
        self.assertError("uplink_table: must differ from decap4_table", "mag",
                         interface="eth0", address=MAG, access_interface="eth1",
                         uplink_table=5215)
        self.assertError("decap4_table: must differ from decap_table", "lma",
                         interface="eth0", address=LMA, decap4_table=5214)
        self.assertError("decap4_table: table 254 is reserved", "lma",
                         interface="eth0", address=LMA, decap4_table=254)
        self.assertError("protocol: expected a value from 5", "lma", interface="eth0",
                         address=LMA, protocol=2)
        self.assertError("unknown key", "lma", interface="eth0", address=LMA,
                         uplink_table=5)
        self.assertError("decap_table: expected an integer", "lma", interface="eth0",
                         address=LMA, decap_table="x")


# ------------------------------------------------------------------ for real


CN_ADDR, LMA_CN = "2001:db8:c::1", "2001:db8:c::2"


def buildDomain(test, needs=()):
    """
    Four namespaces: CN -- LMA ==(l0/m0, MTU 1600)== MAG -- MN, with the MN
    holding PHOA and routing by the MAG's link-local fe80::1; the test skips
    unless the kernel has C{needs}. Returns the lab.
    """
    lab = Lab(test, needs=needs)
    for role in ("cn", "lma", "mag", "mn"):
        lab.add(role, router=role in ("lma", "mag"))
    lab.link("cn", "c0", "lma", "l1")
    lab.link("lma", "l0", "mag", "m0", mtu=1600)
    lab.link("mag", "m1", "mn", "n0")
    lab.sh("cn", f"ip addr add {CN_ADDR}/64 dev c0 nodad && "
                 f"ip -6 route add default via {LMA_CN}")
    lab.sh("lma", f"ip addr add {LMA_CN}/64 dev l1 nodad && "
                  f"ip addr add {LMA}/64 dev l0 nodad")
    lab.sh("mag", f"ip addr add {MAG}/64 dev m0 nodad && "
                  "ip addr add fe80::1/64 dev m1 nodad")
    lab.sh("mn", f"ip addr add {PHOA}/64 dev n0 nodad && "
                 "ip -6 route add default via fe80::1 dev n0")
    return lab


def echoes(capture, expect):
    """Stop C{capture} after C{expect} echoes; (next headers, src, dst, routing type) each."""
    capture.stop(expect, ECHO)
    return capture.fields(ECHO, "ipv6.nxt", "ipv6.src", "ipv6.dst", "ipv6.routing.type")


CN4, LMA4, ROUTER4 = "192.0.2.1", "192.0.2.2", "10.20.0.1"
MN_ADDRESSES = (HNP[5], HNP[0xbeef])
#: tshark display filter: ICMP and ICMPv6 echo requests and replies.
ECHO46 = "icmp.type == 0 or icmp.type == 8 or " + ECHO


def addDualStack(lab):
    """
    On a L{buildDomain} lab: IPv4 between CN and LMA (the LMA is the IPv4
    gateway), IPv4 forwarding at LMA and MAG, and on the mobile the IPv4
    home address V4 (router ROUTER4, which the MAG holds on the access link)
    and two addresses of its per-MN prefix HNP.
    """
    lab.sh("cn", f"ip addr add {CN4}/24 dev c0 && ip route add default via {LMA4}")
    lab.sh("lma", f"ip addr add {LMA4}/24 dev l1 && sysctl -qw net.ipv4.ip_forward=1")
    lab.sh("mag", f"ip addr add {ROUTER4}/32 dev m1 && sysctl -qw net.ipv4.ip_forward=1")
    lab.sh("mn", f"ip addr add {V4}/32 dev n0 && ip route add {ROUTER4} dev n0 && "
                 f"ip route add default via {ROUTER4} && "
                 + " && ".join(f"ip addr add {a}/64 dev n0 nodad" for a in MN_ADDRESSES))


def startPair(test, lab, kind):
    """
    An LMA and a MAG data plane of class C{kind} in a L{buildDomain} lab,
    started (a Deferred firing with both); their runners stop at cleanup.
    """
    from twisted.internet import reactor
    lma = kind("lma", "l0", LMA, reactor=reactor, netlink=lab.netlink("lma"))
    mag = kind("mag", "m0", MAG, accessInterface="m1", reactor=reactor,
               netlink=lab.netlink("mag"))
    test.addCleanup(lambda: mag.runner.stop())
    test.addCleanup(lambda: lma.runner.stop())
    d = lma.start()
    d.addCallback(lambda _: mag.start())
    return d.addCallback(lambda _: (lma, mag))


@defer.inlineCallbacks
def dualStackThroughTunnel(test, lab, lma, mag):
    """
    With the data planes C{lma} and C{mag} started in an L{addDualStack}
    lab: bind HNP and V4, check that each address of the prefix and the
    IPv4 address reach the CN both ways, IPv6-in-IPv6 and IPv4-in-IPv6 on
    the LMA-MAG link, then unbind and check that nothing is left or passes.
    """
    from twisted.internet import threads
    sh = lambda role, cmd, check=True: threads.deferToThread(lab.sh, role, cmd, check)
    for home in (HNP, V4):
        yield lma.addRoute(home, MAG)
        yield mag.tunnelUp("mn", home, LMA)
    capture = lab.capture("lma", "l0", os.path.abspath(test.mktemp()) + ".pcap")
    for address in MN_ADDRESSES:
        yield sh("mn", f"ping -6 -c 2 -i 0.2 -W 5 -I {address} {CN_ADDR}")
        yield sh("cn", f"ping -6 -c 2 -i 0.2 -W 5 {address}")
    yield sh("mn", f"ping -4 -c 2 -i 0.2 -W 5 {CN4}")
    yield sh("cn", f"ping -4 -c 2 -i 0.2 -W 5 {V4}")
    yield sh("mn", f"ping -4 -c 1 -W 5 -s 1472 -M do {CN4}")
    yield threads.deferToThread(capture.stop, 26, ECHO46)
    # Per echo: the IPv6 next headers and the IPv4 protocol: ("41,58", "")
    # for ICMPv6 in IPv6-in-IPv6, ("4", "1") for ICMP in IPv4-in-IPv6.
    packets = capture.fields(ECHO46, "ipv6.nxt", "ip.proto")
    test.assertEqual(sorted(set(packets)), [("4", "1"), ("41,58", "")], packets)
    test.assertEqual(packets.count(("4", "1")), 10, packets)
    test.assertEqual(packets.count(("41,58", "")), 16, packets)
    for home in (HNP, V4):
        yield lma.removeRoute(home, MAG)
        yield mag.tunnelDown("mn", home, LMA)
    for role in ("lma", "mag"):
        state = (yield sh(role, "ip route show table all proto 213; ip rule; "
                                "ip -6 route show table all proto 213")).stdout
        test.assertNotIn(str(V4), state)
        test.assertNotIn(str(HNP.network_address), state)
    result = yield sh("mn", f"ping -4 -c 1 -W 1 {CN4}", False)
    test.assertNotEqual(result.returncode, 0)


#: Sent from the LMA's namespace: an echo request from the CN to PHOA,
#: tunnelled to the MAG with a Tunnel Encapsulation Limit option (RFC 2473
#: 4.1.1: option type 4, length 1, limit 4, then a PadN) in a Destination
#: Options header, as ip6tnl peers with the kernel's default encaplimit send.
_SEND_WITH_TEL = """
import sys
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, HBHOptUnknown, PadN, ICMPv6EchoRequest
from scapy.sendrecv import send
lma, mag, cn, phoa = sys.argv[1:]
outer = IPv6(src=lma, dst=mag) / IPv6ExtHdrDestOpt(
    options=[HBHOptUnknown(otype=4, optlen=1, optdata=b"\\x04"), PadN(optdata=b"\\x00")])
inner = IPv6(src=cn, dst=phoa, hlim=63) / ICMPv6EchoRequest(id=0x7e1, seq=1)
wire = bytes(outer / inner)
assert wire[6] == 60 and wire[40] == 41 and wire[42:45] == bytes((4, 1, 4)), wire.hex()
send(outer / inner, verbose=False, count=3, inter=0.2)
"""


@defer.inlineCallbacks
def decapsulatesEncapLimit(test, lab, mag):
    """
    C{mag} (a started MAG data plane in a L{buildDomain} lab, PHOA bound)
    takes IPv6-in-IPv6 with a Tunnel Encapsulation Limit option: the inner
    echo reaches the mobile, whose replies go back through the LMA to the CN.
    """
    import sys
    from twisted.internet import threads
    replies = "icmpv6.type == 129 and icmpv6.echo.identifier == 0x7e1"
    capture = lab.capture("cn", "c0", os.path.abspath(test.mktemp()) + ".pcap")
    # scapy's import alone takes half a minute under kernel-lab's emulated CPU.
    yield threads.deferToThread(lab.sh, "lma", f"{sys.executable} -c '{_SEND_WITH_TEL}' "
                                f"{LMA} {MAG} {CN_ADDR} {PHOA}", timeout=240)
    yield threads.deferToThread(capture.stop, 3, replies)
    test.assertEqual(capture.fields(replies, "ipv6.src", "ipv6.dst"), [(PHOA, CN_ADDR)] * 3)


class Seg6NetnsTests(TestCase):
    """CN, LMA, MAG and MN namespaces; ping through the seg6 tunnel."""

    timeout = 60 * timeScale()

    @defer.inlineCallbacks
    def test_pingThroughTunnel(self):
        lab = buildDomain(self, needs=("seg6",))
        lma, mag = yield startPair(self, lab, Seg6DataPlane)

        # Without the binding nothing reaches the CN.
        self.assertNotEqual(
            lab.sh("mn", f"ping -6 -c 1 -W 1 {CN_ADDR}", check=False).returncode, 0)

        yield lma.addRoute(PHOA, MAG)
        yield mag.tunnelUp("mn", PHOA, LMA)
        routes = lab.sh("lma", "ip -6 route show proto 213").stdout
        self.assertIn("encap seg6 mode encap.red segs 1 [ 2001:db8:f::2 ]", routes)

        path = os.path.abspath(self.mktemp()) + ".pcap"
        capture = lab.capture("lma", "l0", path)
        lab.sh("mn", f"ping -6 -c 3 -i 0.2 -W 2 {CN_ADDR}")
        lab.sh("cn", f"ping -6 -c 3 -i 0.2 -W 2 {PHOA}")
        # a full-size inner packet fits the 1600-octet transport link
        lab.sh("mn", f"ping -6 -c 1 -W 2 -s 1452 -M do {CN_ADDR}")
        packets = echoes(capture, 14)
        self.assertGreaterEqual(len(packets), 14, packets)
        for line in packets:
            nxt, src, dst, routing = line
            # outer next header 41 (IPv6), inner 58 (ICMPv6): no routing header
            self.assertEqual(nxt, "41,58", line)
            self.assertEqual(routing, "", line)
            self.assertIn(src.split(",")[0], (LMA, MAG), line)
            self.assertIn(dst.split(",")[0], (LMA, MAG), line)

        yield lma.removeRoute(PHOA, MAG)
        yield mag.tunnelDown("mn", PHOA, LMA)
        self.assertEqual(lab.sh("lma", "ip -6 route show proto 213 table all").stdout
                         .count("2001:db8:a::10"), 0)
        magState = lab.sh("mag", "ip -6 route show table all proto 213; ip -6 rule").stdout
        self.assertNotIn(PHOA, magState)
        self.assertNotEqual(
            lab.sh("mn", f"ping -6 -c 1 -W 1 {CN_ADDR}", check=False).returncode, 0)

        yield lma.stop()
        yield mag.stop()
        for role in ("lma", "mag"):
            self.assertEqual(lab.sh(role, "ip -6 route show table all proto 213").stdout, "")
            rules = lab.sh(role, "ip -6 rule").stdout
            self.assertNotIn("proto 213", rules)
            self.assertIn("0:\tfrom all lookup local", rules)

    @defer.inlineCallbacks
    def test_dualStack(self):
        """A per-MN prefix and an IPv4 home through seg6 (End.DX4, IPv4 encap)."""
        lab = buildDomain(self, needs=("seg6",))
        addDualStack(lab)
        lma, mag = yield startPair(self, lab, Seg6DataPlane)
        yield dualStackThroughTunnel(self, lab, lma, mag)
        yield lma.stop()
        yield mag.stop()

    @defer.inlineCallbacks
    def test_encapsulationLimit(self):
        """A peer's Tunnel Encapsulation Limit option does not stop End.DX6."""
        lab = buildDomain(self, needs=("seg6",))
        lma, mag = yield startPair(self, lab, Seg6DataPlane)
        yield lma.addRoute(PHOA, MAG)
        yield mag.tunnelUp("mn", PHOA, LMA)
        yield decapsulatesEncapLimit(self, lab, mag)
        yield lma.stop()
        yield mag.stop()

    @defer.inlineCallbacks
    def test_restartOverLeftovers(self):
        """A data plane killed without stop() leaves state; the next one cleans it."""
        from twisted.internet import reactor
        lab = Lab(self, needs=("seg6",))
        lab.add("lma", router=True)
        lab.add("mag")
        lab.link("lma", "l0", "mag", "m0", mtu=1600)
        lab.addr("lma", "l0", f"{LMA}/64")
        first = Seg6DataPlane("lma", "l0", LMA, reactor=reactor, netlink=lab.netlink("lma"))
        self.addCleanup(lambda: first.runner.stop())
        yield first.start()
        yield first.addRoute(PHOA, MAG)
        first.runner.stop()  # "killed": nothing removed

        second = Seg6DataPlane("lma", "l0", LMA, reactor=reactor, netlink=lab.netlink("lma"))
        self.addCleanup(lambda: second.runner.stop())
        yield second.start()
        state = lab.sh("lma", "ip -6 route show table all proto 213").stdout
        self.assertNotIn(PHOA, state)
        self.assertIn("End.DT6", state)
        rules = lab.sh("lma", "ip -6 rule").stdout
        self.assertEqual(rules.count("lookup local"), 1, rules)
        self.assertEqual(rules.count("ipproto ipv6"), 1, rules)
        yield second.addRoute(PHOA, MAG)
        yield second.stop()
        self.assertEqual(lab.sh("lma", "ip -6 route show table all proto 213").stdout, "")
