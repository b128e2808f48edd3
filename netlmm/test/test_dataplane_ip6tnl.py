"""
The ip6tnl data plane: every operation over a fake netlink object (no root,
no ip6_tunnel module), and for real in namespaces where the kernel has
ip6tnl (not the build machines' kernel: there `./dev test` runs it under
kernel-lab).
"""

import os
from socket import AF_INET

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from netlmm.config import ConfigError, Table
from netlmm.dataplane import _netlink as nl, dataplanes
from netlmm.dataplane.ip6tnl import IP6_TNL_F_IGN_ENCAP_LIMIT, Ip6tnlDataPlane
from netlmm.lab.fakes import FakeNetlink
from netlmm.interfaces import IDataPlane
from netlmm.lab import timeScale
from netlmm.lab.capture import skipUnlessCapture
from netlmm.test.test_dataplane_seg6 import CN_ADDR, HNP, LMA, MAG, MAG2, PHOA, PHOA2, \
    V4, addDualStack, buildDomain, dualStackThroughTunnel, echoes, startPair

P = nl.PROTOCOL


def make(role, fake, **kw):
    if role == "lma":
        kw.setdefault("address", LMA)
    else:
        kw.setdefault("address", MAG)
        kw.setdefault("accessInterface", "eth1")
    return Ip6tnlDataPlane(role, "eth0", netlink=lambda: fake,
                           runner=nl.ImmediateRunner(), **kw)


def tunnels(fake):
    return {name: link for name, link in fake.links.items() if link["kind"] == "ip6tnl"}


class LmaTests(SynchronousTestCase):
    def setUp(self):
        self.fake = FakeNetlink()
        self.plane = make("lma", self.fake)
        self.successResultOf(self.plane.start())

    def test_interface(self):
        verifyObject(IDataPlane, self.plane)

    def test_addRoute(self):
        """The first pHoA of a MAG makes its device; the route goes into it."""
        self.successResultOf(self.plane.addRoute(PHOA, MAG))
        [(name, link)] = tunnels(self.fake).items()
        self.assertEqual(name, "pmip0")
        self.assertEqual((link["ip6tnl_local"], link["ip6tnl_remote"], link["ip6tnl_proto"],
                          link["ip6tnl_flags"], link["ip6tnl_link"], link["state"]),
                         (LMA, MAG, 0, IP6_TNL_F_IGN_ENCAP_LIMIT,
                          self.fake.links["eth0"]["index"], "up"))
        [route] = self.fake.findRoutes(PHOA)
        self.assertEqual((route["oif"], route["proto"]), (link["index"], P))

    def test_sharedDevice(self):
        self.plane.addRoute(PHOA, MAG)
        self.plane.addRoute(PHOA2, MAG)
        self.assertEqual(list(tunnels(self.fake)), ["pmip0"])
        self.successResultOf(self.plane.removeRoute(PHOA, MAG))
        self.assertEqual(list(tunnels(self.fake)), ["pmip0"])
        self.successResultOf(self.plane.removeRoute(PHOA2, MAG))
        self.assertEqual(tunnels(self.fake), {})
        self.assertEqual(self.fake.findRoutes(PHOA2), [])

    def test_moveRoute(self):
        """Handover: a device to the new MAG, the old one goes when unused."""
        self.plane.addRoute(PHOA, MAG)
        self.successResultOf(self.plane.moveRoute(PHOA, MAG, MAG2))
        [(name, link)] = tunnels(self.fake).items()
        self.assertEqual((name, link["ip6tnl_remote"]), ("pmip1", MAG2))
        [route] = self.fake.findRoutes(PHOA)
        self.assertEqual(route["oif"], link["index"])

    def test_moveKeepsShared(self):
        self.plane.addRoute(PHOA, MAG)
        self.plane.addRoute(PHOA2, MAG)
        self.plane.moveRoute(PHOA, MAG, MAG2)
        self.assertEqual(sorted(tunnels(self.fake)), ["pmip0", "pmip1"])

    def test_addTwiceAndRemoveUnknown(self):
        self.plane.addRoute(PHOA, MAG)
        self.successResultOf(self.plane.addRoute(PHOA, MAG))
        self.assertEqual(len(tunnels(self.fake)), 1)
        self.assertIsNone(self.plane.removeRoute(PHOA2, MAG))

    def test_homes(self):
        """A prefix and an IPv4 address share the MAG's device ('any' mode)."""
        self.successResultOf(self.plane.addRoute(HNP, MAG))
        self.successResultOf(self.plane.addRoute(V4, MAG))
        [(name, link)] = tunnels(self.fake).items()
        [route6] = self.fake.findRoutes(str(HNP))
        [route4] = self.fake.findRoutes(f"{V4}/32")
        self.assertEqual((route6["oif"], route4["oif"], route4["family"], route4["proto"]),
                         (link["index"], link["index"], AF_INET, P))
        self.successResultOf(self.plane.moveRoute(V4, MAG, MAG2))
        self.assertEqual(sorted(tunnels(self.fake)), ["pmip0", "pmip1"])
        self.assertEqual(self.fake.findRoutes(f"{V4}/32")[0]["oif"],
                         self.fake.links["pmip1"]["index"])
        self.successResultOf(self.plane.removeRoute(HNP, MAG))
        self.assertEqual(sorted(tunnels(self.fake)), ["pmip1"])
        self.successResultOf(self.plane.removeRoute(V4, MAG2))
        self.assertEqual((tunnels(self.fake), self.fake.findRoutes(f"{V4}/32")), ({}, []))

    def test_mtu(self):
        plane = make("lma", FakeNetlink(), mtu=1460)
        plane.start()
        plane.addRoute(PHOA, MAG)
        [link] = tunnels(plane._ipr).values()
        self.assertEqual(link["mtu"], 1460)

    def test_stop(self):
        self.plane.addRoute(PHOA, MAG)
        self.plane.addRoute(PHOA2, MAG2)
        self.successResultOf(self.plane.stop())
        self.assertEqual(tunnels(self.fake), {})
        self.assertEqual([r for r in self.fake.routes if r["proto"] == P], [])
        self.assertTrue(self.fake.closed)

    def test_restart(self):
        """Leftover devices with the prefix, routes and rules are removed."""
        self.plane.addRoute(PHOA, MAG)
        self.fake._newLink("pmip7", kind="ip6tnl")
        self.fake._newLink("pmipx", kind="ip6tnl")  # not prefix + number: not ours
        self.fake._newLink("pmip8", kind="veth")  # not a tunnel: not ours
        self.fake.rule("add", priority=100, src=PHOA2, table=5213, protocol=P)
        again = make("lma", self.fake)
        self.successResultOf(again.start())
        self.assertEqual(sorted(tunnels(self.fake)), ["pmipx"])
        self.assertIn("pmip8", self.fake.links)
        self.assertEqual(self.fake.findRules(FRA_PROTOCOL=P), [])
        self.successResultOf(again.addRoute(PHOA, MAG))
        self.assertIn("pmip0", tunnels(self.fake))

    def test_missingInterface(self):
        plane = Ip6tnlDataPlane("lma", "nope0", LMA, netlink=lambda: self.fake,
                                runner=nl.ImmediateRunner())
        f = self.failureResultOf(plane.start(), nl.DataPlaneError)
        self.assertIn("lma.dataplane.interface: no interface named 'nope0'", str(f.value))


class MagTests(SynchronousTestCase):
    def setUp(self):
        self.fake = FakeNetlink()
        self.plane = make("mag", self.fake)
        self.successResultOf(self.plane.start())

    def test_tunnelUp(self):
        self.successResultOf(self.plane.tunnelUp("mn", PHOA, LMA))
        [(name, link)] = tunnels(self.fake).items()
        self.assertEqual((link["ip6tnl_local"], link["ip6tnl_remote"]), (MAG, LMA))
        [default] = self.fake.findRoutes("::/0", table=5213)
        self.assertEqual(default["oif"], link["index"])
        [rule] = self.fake.findRules(src=PHOA)
        self.assertEqual((rule["priority"], rule["FRA_TABLE"], rule["FRA_PROTOCOL"],
                          rule["FRA_IIFNAME"]), (100, 5213, P, "eth1"))
        [host] = self.fake.findRoutes(PHOA)
        self.assertEqual(host["oif"], self.fake.links["eth1"]["index"])

    def test_tunnelDown(self):
        self.plane.tunnelUp("mn", PHOA, LMA)
        self.plane.tunnelUp("mn2", PHOA2, LMA)
        self.successResultOf(self.plane.tunnelDown("mn", PHOA, LMA))
        self.assertEqual(len(tunnels(self.fake)), 1)
        self.assertEqual(self.fake.findRules(src=PHOA), [])
        self.successResultOf(self.plane.tunnelDown("mn2", PHOA2, LMA))
        self.assertEqual(tunnels(self.fake), {})
        self.assertEqual(self.fake.findRoutes("::/0", table=5213), [])
        self.assertEqual([r for r in self.fake.routes if r["proto"] == P], [])
        self.assertEqual(self.fake.findRules(FRA_PROTOCOL=P), [])

    def test_otherLma(self):
        """A pHoA moving to another LMA leaves the first LMA's device."""
        self.plane.tunnelUp("mn", PHOA, LMA)
        self.successResultOf(self.plane.tunnelUp("mn", PHOA, "2001:db8:f::99"))
        [(name, link)] = tunnels(self.fake).items()
        self.assertEqual(link["ip6tnl_remote"], "2001:db8:f::99")
        self.assertEqual(len(self.fake.findRules(src=PHOA)), 1)

    def test_prefixAndIpv4(self):
        """
        A dual-stack mobile: a rule and a default route per family into
        the one device, routes to the prefix and the /32 on the access link;
        each family's default goes with its last home, the device with the last.
        """
        self.successResultOf(self.plane.tunnelUp("mn", HNP, LMA))
        self.successResultOf(self.plane.tunnelUp("mn", V4, LMA))
        [(name, link)] = tunnels(self.fake).items()
        [default6] = self.fake.findRoutes("::/0", table=5213)
        [default4] = self.fake.findRoutes("0.0.0.0/0", table=5213)
        self.assertEqual((default6["oif"], default4["oif"]), (link["index"], link["index"]))
        [rule6] = self.fake.findRules(src=str(HNP.network_address))
        [rule4] = self.fake.findRules(family=AF_INET, src=str(V4))
        self.assertEqual((rule6["src_len"], rule6["FRA_TABLE"], rule4["src_len"],
                          rule4["FRA_TABLE"], rule4["priority"]), (64, 5213, 32, 5213, 100))
        access = self.fake.links["eth1"]["index"]
        self.assertEqual((self.fake.findRoutes(str(HNP))[0]["oif"],
                          self.fake.findRoutes(f"{V4}/32")[0]["oif"]), (access, access))
        self.successResultOf(self.plane.tunnelDown("mn", V4, LMA))
        self.assertEqual(self.fake.findRoutes("0.0.0.0/0", table=5213), [])
        self.assertEqual(self.fake.findRules(family=AF_INET, FRA_PROTOCOL=P), [])
        self.assertEqual(len(self.fake.findRoutes("::/0", table=5213)), 1)
        self.successResultOf(self.plane.tunnelDown("mn", HNP, LMA))
        self.assertEqual(tunnels(self.fake), {})
        self.assertEqual([r for r in self.fake.routes if r["proto"] == P], [])

    def test_stop(self):
        self.plane.tunnelUp("mn", PHOA, LMA)
        self.plane.tunnelUp("mn", V4, LMA)
        self.successResultOf(self.plane.stop())
        self.assertEqual(tunnels(self.fake), {})
        self.assertEqual(self.fake.findRules(FRA_PROTOCOL=P), [])
        self.assertEqual(self.fake.findRules(family=AF_INET, FRA_PROTOCOL=P), [])
        self.assertEqual([r for r in self.fake.routes if r["proto"] == P], [])


class ConfigTests(SynchronousTestCase):
    def build(self, role, **data):
        data.setdefault("kind", "ip6tnl")
        table = Table(data, f"{role}.dataplane")
        name = table.string("kind", required=True)
        return dataplanes.create(name, table, f"{role}.dataplane.kind", reactor=None,
                                 role=role)

    def test_options(self):
        plane = self.build("mag", interface="eth0", address=MAG, access_interface="eth1",
                           tunnel_prefix="t6", mtu=1460)
        self.assertEqual((plane.tunnelPrefix, plane.mtu, plane.uplinkTable),
                         ("t6", 1460, 5213))

    def test_errors(self):
        for fragment, role, data in [
                ("lma.dataplane.interface: missing", "lma", dict(address=LMA)),
                ("mag.dataplane.access_interface: missing", "mag",
                 dict(interface="eth0", address=MAG)),
                ("tunnel_prefix: expected 1 to 10", "lma",
                 dict(interface="eth0", address=LMA, tunnel_prefix="a-b")),
                ("mtu: expected a value from 1280", "lma",
                 dict(interface="eth0", address=LMA, mtu=576)),
                ("uplink_table: table 255 is reserved", "mag",
                 dict(interface="eth0", address=MAG, access_interface="eth1",
                      uplink_table=255))]:
            e = self.assertRaises(ConfigError, self.build, role, **data)
            self.assertIn(fragment, str(e))


class Ip6tnlNetnsTests(TestCase):
    """CN, LMA, MAG and MN namespaces; ping through ip6ip6 devices."""

    timeout = 60 * timeScale()

    @defer.inlineCallbacks
    def test_pingThroughTunnel(self):
        skipUnlessCapture()
        lab = buildDomain(self, needs=("ip6tnl",))
        lma, mag = yield startPair(self, lab, Ip6tnlDataPlane)
        yield lma.addRoute(PHOA, MAG)
        yield mag.tunnelUp("mn", PHOA, LMA)
        details = lab.sh("lma", "ip -d link show pmip0").stdout
        self.assertIn("ip6tnl any", details)
        self.assertIn("encaplimit none", details)

        capture = lab.capture("lma", "l0", os.path.abspath(self.mktemp()) + ".pcap")
        lab.sh("mn", f"ping -6 -c 3 -i 0.2 -W 5 {CN_ADDR}")
        lab.sh("cn", f"ping -6 -c 3 -i 0.2 -W 5 {PHOA}")
        packets = echoes(capture, 12)
        self.assertGreaterEqual(len(packets), 12, packets)
        for nxt, src, dst, routing in packets:
            self.assertEqual((nxt, routing), ("41,58", ""), (nxt, src, dst, routing))

        yield lma.removeRoute(PHOA, MAG)
        yield mag.tunnelDown("mn", PHOA, LMA)
        for role in ("lma", "mag"):
            state = lab.sh(role, "ip -6 route show table all proto 213; ip -6 rule; "
                                 "ip link show").stdout
            self.assertNotIn(PHOA, state)
            self.assertNotIn("pmip0", state)
        yield lma.stop()
        yield mag.stop()

    @defer.inlineCallbacks
    def test_dualStack(self):
        """A per-MN prefix and an IPv4 home through 'any' mode devices."""
        skipUnlessCapture()
        lab = buildDomain(self, needs=("ip6tnl",))
        addDualStack(lab)
        lma, mag = yield startPair(self, lab, Ip6tnlDataPlane)
        yield dualStackThroughTunnel(self, lab, lma, mag)
        yield lma.stop()
        yield mag.stop()
