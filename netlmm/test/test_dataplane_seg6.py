"""
The seg6 data plane: its netlink work over a fake (no root), its config
validation, and for real in network namespaces (root) with packets checked on
the wire.
"""

import os

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
        """Local table at 50, decap rule at 10, End.DT6 route in 5214."""
        self.assertEqual(self.fake.findRules(priority=None, FRA_TABLE=255), [])
        self.assertEqual(len(self.fake.findRules(priority=50, FRA_TABLE=255,
                                                 FRA_PROTOCOL=P)), 1)
        [rule] = self.fake.findRules(priority=10)
        self.assertEqual((rule["dst"], rule["dst_len"], rule["ip_proto"],
                          rule["FRA_TABLE"], rule["FRA_PROTOCOL"]),
                         (LMA, 128, 41, 5214, P))
        [route] = self.fake.findRoutes(LMA, table=5214)
        self.assertEqual(route["encap"], {"type": "seg6local", "action": "End.DT6",
                                          "table": 254})
        self.assertEqual(route["oif"], self.fake.links["eth0"]["index"])
        self.assertEqual(route["proto"], P)

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
        self.assertEqual(len(routes), 1)
        self.assertEqual(sorted(r["priority"] for r in rules), [10, 50])
        self.assertEqual(len(self.fake.findRules(FRA_TABLE=255)), 1)

    def test_restartAfterCrashBetweenRules(self):
        """Leftovers with the local rule still at 0 are reconciled too."""
        self.successResultOf(self.plane.stop())
        self.fake.rules.append(dict(priority=10, FRA_TABLE=5214, FRA_PROTOCOL=P,
                                    dst=LMA, dst_len=128, ip_proto=41))
        again = make("lma", self.fake)
        self.successResultOf(again.start())
        self.assertEqual(len(self.fake.findRules(priority=10)), 1)

    def test_missingInterface(self):
        plane = Seg6DataPlane("lma", "nope0", LMA, netlink=lambda: self.fake,
                              runner=nl.ImmediateRunner())
        f = self.failureResultOf(plane.start(), nl.DataPlaneError)
        self.assertIn("'nope0'", str(f.value))
        self.assertIn("lma.dataplane.interface", str(f.value))

    def test_otherProtocolUntouched(self):
        """Routes and rules of others stay at start and stop."""
        self.fake.route("add", dst="2001:db8:99::/64", oif=2, proto=4)
        self.fake.rule("add", priority=1000, table=100, protocol=4)
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

    def test_tunnelUp(self):
        self.successResultOf(self.plane.tunnelUp("mn1", PHOA, LMA))
        [rule] = self.fake.findRules(priority=100)
        self.assertEqual((rule["src"], rule["src_len"], rule["FRA_TABLE"],
                          rule["FRA_PROTOCOL"]), (PHOA, 128, 5213, P))
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
        self.assertEqual(rule["FRA_TABLE"], 5215)  # 5214 is the decap table

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
                          plane.decapTable, plane.decapPriority, plane.localPriority,
                          plane.protocol), ("lma", "eth0", LMA, 5214, 10, 50, 213))

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
        self.assertError("must differ", "mag", interface="eth0", address=MAG,
                         access_interface="eth1", uplink_table=5214)
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


class Seg6NetnsTests(TestCase):
    """CN, LMA, MAG and MN namespaces; ping through the seg6 tunnel."""

    timeout = 60 * timeScale()

    @defer.inlineCallbacks
    def test_pingThroughTunnel(self):
        from twisted.internet import reactor
        lab = buildDomain(self, needs=("seg6",))
        lma = Seg6DataPlane("lma", "l0", LMA, reactor=reactor, netlink=lab.netlink("lma"))
        mag = Seg6DataPlane("mag", "m0", MAG, accessInterface="m1", reactor=reactor,
                            netlink=lab.netlink("mag"))
        self.addCleanup(lambda: mag.runner.stop())
        self.addCleanup(lambda: lma.runner.stop())
        yield lma.start()
        yield mag.start()

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
