"""
Per-MN prefixes (draft E.3) and IPv4 mobiles (draft E.2, RFC 5844) end to
end (root): the namespace domain of L{netlmm.lab.domain.NetnsDomain} with the
real daemons (the best data plane this kernel has), stock Linux mobiles
configuring by SLAAC from the MAG's unicast RAs, and a stock `dhclient -4`
(isc-dhcp-client) for IPv4. Everything is removed in cleanup, also when a
test fails.
"""

import os
from ipaddress import IPv4Address, IPv4Network, IPv6Network

from twisted.trial.unittest import SynchronousTestCase

from netlmm.lab import timeScale
from netlmm.lab.domain import CN_ADDRESS, CN_IPV4, LMA_ADDRESS, MAG_ADDRESSES, NetnsDomain
from netlmm.lab.netns import Mobile, skipUnlessTools, which

PREFIX_POOL = IPv6Network("2001:db8:100::/48")
IPV4_POOL = "10.20.0.0/24"
ROUTER4 = IPv4Address("10.20.0.1")
LMA_PREFIXES = f"""[lma.prefixes]
pool = "{PREFIX_POOL}"
length = 64
"""
LMA_IPV4 = f"""[lma.ipv4]
pool = "{IPV4_POOL}"
router = "{ROUTER4}"
"""
MN2_MAC = "02:00:00:00:aa:02"


class PerMnPrefixTests(SynchronousTestCase):
    """Two mobiles on one shared access link, each with a /64 of its own."""

    def setUp(self):
        self.domain = NetnsDomain(self.mktemp(), assignment='strategy = "prefix"',
                                  sharedPrefix=False, lmaExtra=LMA_PREFIXES, testCase=self)
        self.domain.start()
        self.t = self.domain.topology

    def prefixOf(self, mobile):
        address = mobile.address()
        return None if address is None else IPv6Network((address, 64), strict=False)

    def test_twoMobilesOneLink(self):
        d, t = self.domain, self.t
        t.mobile("mn2")
        mn2 = Mobile(t, "mn2", MN2_MAC)
        a = d.attach("mag1")
        mn2.attach("mag1")
        d.waitFor(lambda: mn2.address() is not None, "the second mobile's address")
        b = mn2.address()
        pa, pb = self.prefixOf(t.mn), self.prefixOf(mn2)
        # Each has a /64 of its own from the LMA's pool, and only that.
        self.assertNotEqual(pa, pb)
        for p, m in ((pa, t.mn), (pb, mn2)):
            self.assertTrue(p.subnet_of(PREFIX_POOL), p)
            self.assertEqual({IPv6Network((x, 64), strict=False) for x in m.addresses()}, {p})
        routes = t.exec("mn", "ip", "-6", "route", "show").stdout
        self.assertIn(str(pa), routes)
        self.assertNotIn(str(pb), routes)
        for node, address in (("mn", a), ("mn2", b)):
            d.waitFor(lambda node=node: d.ping(node, CN_ADDRESS, 1).returncode == 0,
                      f"{node} -> CN", 10)
            self.assertEqual(d.ping("cn", address).returncode, 0)

        # Mobile to mobile goes through the LMA: the echoes cross the tunnel
        # link of MAG1 in both directions; on the access link nobody asks for
        # the other's address (no address resolution between them).
        tunnel = t.capture("lma", "m1", os.path.abspath(self.mktemp()) + ".pcap")
        access = t.capture("mag1", "acc0", os.path.abspath(self.mktemp()) + ".pcap")
        self.assertEqual(d.ping("mn", b, 3).returncode, 0)
        # (not an ICMPv6 error quoting the echo: a redirect the LMA may send)
        echo = (f"icmpv6.type == 128 and ipv6.src == {a} and ipv6.dst == {b} "
                "and not icmpv6.type == 137 and not icmpv6.type < 128")
        tunnel.stop(6, echo)
        access.stop()
        outer = sorted(tuple(f.split(",")[0] for f in row)
                       for row in tunnel.fields(echo, "ipv6.nxt", "ipv6.src", "ipv6.dst"))
        # Each request crosses twice: MAG1 -> LMA, then LMA -> MAG1.
        self.assertEqual(outer, [("41", LMA_ADDRESS, MAG_ADDRESSES[0])] * 3
                         + [("41", MAG_ADDRESSES[0], LMA_ADDRESS)] * 3)
        asked = access.fields(f"icmpv6.type == 135 and icmpv6.nd.ns.target_address == {b}", "eth.src")
        self.assertNotIn((self.t.mn.mac,), asked)

        # Several addresses in the prefix all work.
        extra = pa[0xbeef]
        t.exec("mn", "ip", "-6", "addr", "add", f"{extra}/64", "dev", "eth0", "nodad")
        self.assertEqual(t.exec("mn", "ping", "-6", "-c", "2", "-I", str(extra), CN_ADDRESS,
                                check=False).returncode, 0)
        self.assertEqual(d.ping("cn", extra).returncode, 0)

    def test_handoffKeepsThePrefix(self):
        d, t = self.domain, self.t
        a = d.attach("mag1")
        d.waitFor(lambda: d.ping("mn", CN_ADDRESS, 1).returncode == 0, "MN -> CN", 10)
        result = d.handoff("mag2")
        self.assertEqual(t.mn.address(), a)
        self.assertEqual(d.ping("cn", a).returncode, 0)
        self.assertLess(result["interruption"], 5 * timeScale(), result)


class Ipv4MobileTests(SynchronousTestCase):
    """A stock `dhclient -4` gets the LMA's IPv4 address, reaches the CN, keeps it."""

    def setUp(self):
        skipUnlessTools(("dhclient", "isc-dhcp-client"))
        self.domain = NetnsDomain(self.mktemp(), assignment='strategy = "prefix"',
                                  sharedPrefix=False, lmaExtra=LMA_PREFIXES + LMA_IPV4,
                                  magExtra="[mag.ipv4]\n", testCase=self)
        self.domain.start()
        self.t = self.domain.topology
        self.dhclient = None
        self.lease = self.domain.path("dhclient4.leases")

    def startDhclient(self):
        n = len(self.t.processes)
        self.dhclient = self.t.start("mn", [which("dhclient"), "-4", "-d", "-v", "-lf",
                                            self.lease, "-pf", self.domain.path(f"dhc{n}.pid"),
                                            "eth0"], self.domain.path(f"dhclient4-{n}.log"))

    def ipv4(self):
        out = self.t.exec("mn", "ip", "-4", "-o", "addr", "show", "dev", "eth0",
                          check=False).stdout.split()
        return IPv4Address(out[out.index("inet") + 1].split("/")[0]) if "inet" in out else None

    def routes(self):
        return self.t.exec("mn", "ip", "-4", "route", "show", check=False).stdout

    def test_dhclientAndHandoff(self):
        d, t = self.domain, self.t
        d.attach("mag1")
        self.startDhclient()
        # dhclient-script sets the address first, then the routes.
        d.waitFor(lambda: f"default via {ROUTER4} dev eth0" in self.routes(),
                  "dhclient's default route through the LMA's router address", 20)
        address = self.ipv4()
        self.assertIn(address, IPv4Network(IPV4_POOL))
        d.waitFor(lambda: d.ping("mn", CN_IPV4, 1).returncode == 0, "MN -> CN over IPv4", 10)
        self.assertEqual(d.ping("cn", address).returncode, 0)
        # IPv4-in-IPv6 between LMA and MAG1.
        cap = t.capture("lma", "m1", os.path.abspath(self.mktemp()) + ".pcap")
        self.assertEqual(d.ping("mn", CN_IPV4, 2).returncode, 0)
        cap.stop(4, "icmp")
        self.assertEqual(set(cap.fields("icmp", "ipv6.nxt", "ip.src")),
                         {("4", str(address)), ("4", CN_IPV4)})

        # Handoff: the link goes, comes up at MAG2; dhclient starts again
        # with its lease (INIT-REBOOT) and keeps the address.
        t.stop(self.dhclient)
        t.mn.detach()
        d.attach("mag2")
        self.startDhclient()
        d.waitFor(lambda: d.ping("mn", CN_IPV4, 1).returncode == 0,
                  "MN -> CN over IPv4 through MAG2", 20)
        self.assertEqual(self.ipv4(), address)
        self.assertEqual(d.ping("cn", address).returncode, 0)
        self.assertIn(f"DHCPACK {address}", d.log("mag2"))
