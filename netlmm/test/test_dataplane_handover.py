"""
The data planes' handover routes over a fake netlink (no root): the table
that steers a mobile in handover (forward to another MAG, hold, deliver),
its fall-through rule, per-MN prefixes, and each data plane's tunnel to
another MAG.
"""

from ipaddress import IPv6Address, IPv6Network
from socket import AF_INET, AF_INET6

from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase

from netlmm.dataplane import _netlink as nl
from netlmm.dataplane.handover import HANDOVER_TABLE
from netlmm.lab.fakes import FakeNetlink, ipv6Packet
from netlmm.test import test_dataplane_ip6tnl, test_dataplane_seg6, test_dataplane_userspace
from netlmm.test.test_dataplane_seg6 import HNP, LMA, MAG2, PHOA

MAC = bytes.fromhex("02000000aa01")


def handoverRoutes(fake):
    return {(r["family"], r["dst"], r["dst_len"]): r for r in fake.routes
            if r["RTA_TABLE"] == HANDOVER_TABLE}


class Seg6HandoverTests(SynchronousTestCase):
    def setUp(self):
        self.fake = FakeNetlink()
        self.plane = test_dataplane_seg6.make("mag", self.fake)
        self.successResultOf(self.plane.start())
        self.successResultOf(self.plane.handoverStart())

    def test_fallThrough(self):
        """One rule per family at 90 into the table, whose default route throws."""
        routes = handoverRoutes(self.fake)
        self.assertEqual({k: r["type"] for k, r in routes.items()},
                         {(AF_INET6, None, 0): "throw", (AF_INET, None, 0): "throw"})
        for family in (AF_INET6, AF_INET):
            (rule,) = [r for r in self.fake.rules if r["family"] == family
                       and r["FRA_TABLE"] == HANDOVER_TABLE]
            self.assertEqual((rule["priority"], rule["FRA_PROTOCOL"]), (90, nl.PROTOCOL))

    def test_forwardHoldDeliverRestore(self):
        self.successResultOf(self.plane.forward(PHOA, MAG2))
        route = handoverRoutes(self.fake)[(AF_INET6, PHOA, 128)]
        self.assertEqual(route["encap"], {"type": "seg6", "mode": "encap.red", "segs": [MAG2]})
        self.assertEqual(self.plane.handovers, {IPv6Address(PHOA): ("forward",
                                                                    IPv6Address(MAG2))})
        self.successResultOf(self.plane.hold(PHOA, 9))
        self.assertEqual(handoverRoutes(self.fake)[(AF_INET6, PHOA, 128)]["oif"], 9)
        self.successResultOf(self.plane.deliver(PHOA, MAC))
        route = handoverRoutes(self.fake)[(AF_INET6, PHOA, 128)]
        self.assertEqual((route["oif"], route["encap"]), (self.plane._access, None))
        (neighbour,) = self.fake.neighbours
        self.assertEqual((neighbour["dst"], neighbour["lladdr"], neighbour["ifindex"]),
                         (PHOA, "02:00:00:00:aa:01", self.plane._access))
        self.successResultOf(self.plane.restore(PHOA))
        self.assertNotIn((AF_INET6, PHOA, 128), handoverRoutes(self.fake))
        self.assertEqual(self.plane.handovers, {})

    def test_prefix(self):
        """A per-MN prefix is steered as a whole."""
        self.successResultOf(self.plane.forward(HNP, MAG2))
        self.assertIn((AF_INET6, str(HNP.network_address), 64), handoverRoutes(self.fake))
        self.successResultOf(self.plane.restore(str(HNP)))
        self.assertEqual(self.plane.handovers, {})

    def test_stopRemovesEverything(self):
        self.successResultOf(self.plane.forward(PHOA, MAG2))
        self.successResultOf(self.plane.stop())
        self.assertEqual(handoverRoutes(self.fake), {})


class Ip6tnlHandoverTests(SynchronousTestCase):
    def test_deviceToTheNeighbour(self):
        """Accepting from a neighbour makes the device that decapsulates and forwards."""
        fake = FakeNetlink()
        plane = test_dataplane_ip6tnl.make("mag", fake)
        self.successResultOf(plane.start())
        plane.acceptFrom(MAG2)
        (device,) = [link for link in test_dataplane_ip6tnl.tunnels(fake).values()]
        self.assertEqual(device["ip6tnl_remote"], MAG2)
        self.successResultOf(plane.forward(PHOA, MAG2))
        route = handoverRoutes(fake)[(AF_INET6, PHOA, 128)]
        self.assertEqual(route["oif"], fake.link_lookup(ifname=device["ifname"])[0])


class UserspaceHandoverTests(SynchronousTestCase):
    def setUp(self):
        self.fake = FakeNetlink()
        self.plane, self.system = test_dataplane_userspace.make("mag", self.fake,
                                                                MemoryReactor())
        self.successResultOf(self.plane.start())
        self.sock = self.system.sockets[0]

    def test_forwardedThroughTheTun(self):
        """Downlink for a forwarded mobile, read from the TUN device, goes to the new MAG."""
        self.successResultOf(self.plane.forward(PHOA, MAG2))
        self.assertEqual(handoverRoutes(self.fake)[(AF_INET6, PHOA, 128)]["oif"],
                         self.plane._tunIndex)
        self.assertTrue(self.plane.tunnel(ipv6Packet("2001:db8:c::1", PHOA)))
        self.assertEqual(self.sock.sent[-1][1], (MAG2, 0))
        self.successResultOf(self.plane.restore(PHOA))
        self.assertFalse(self.plane.tunnel(ipv6Packet("2001:db8:c::1", PHOA)))

    def test_acceptedFromNeighbour(self):
        """A neighbour's forwarded packets are decapsulated; a stranger's are not."""
        self.successResultOf(self.plane.tunnelUp(b"mn", PHOA, LMA))
        packet = ipv6Packet("2001:db8:c::1", PHOA)
        self.assertFalse(self.plane.decapsulate(packet, MAG2))
        self.plane.acceptFrom(MAG2)
        self.assertTrue(self.plane.decapsulate(packet, MAG2))
        self.assertFalse(self.plane.decapsulate(packet, "2001:db8:9::9"))

    def test_toHold(self):
        """
        With a hold, the downlink of a mobile held here (from its LMA or
        forwarded by a neighbour), and what a neighbour forwards for a mobile
        not served here yet, go into the hold, not to the kernel (whose route
        into the hold comes later: meanwhile it would send them to the link the
        mobile left, or back to the core); a mobile delivered or served here,
        a stranger's packet, the LMA's packet for a mobile not held, are not
        the hold's business.
        """
        taken = []
        self.plane.toHold = taken.append
        tun = self.system.tuns[0]
        self.plane.acceptFrom(MAG2)
        packet = ipv6Packet("2001:db8:c::1", PHOA)
        self.assertTrue(self.plane.decapsulate(packet, MAG2))          # early
        self.successResultOf(self.plane.tunnelUp(b"mn", PHOA, LMA))
        self.assertTrue(self.plane.decapsulate(packet, LMA))           # served here
        self.successResultOf(self.plane.hold(PHOA, 77))
        self.assertTrue(self.plane.decapsulate(packet, MAG2))          # held
        self.assertTrue(self.plane.decapsulate(packet, LMA))           # held
        self.assertEqual((len(taken), tun.written), (3, [packet]))
        self.successResultOf(self.plane.deliver(PHOA, b"\x02" * 6))
        self.assertTrue(self.plane.decapsulate(packet, MAG2))
        self.successResultOf(self.plane.restore(PHOA))
        self.assertTrue(self.plane.decapsulate(packet, MAG2))
        self.assertFalse(self.plane.decapsulate(packet, "2001:db8:9::9"))
        self.assertEqual((len(taken), tun.written), (3, [packet] * 3))

    def test_prefixForwarded(self):
        self.successResultOf(self.plane.forward(HNP, MAG2))
        inside = str(IPv6Network(HNP)[5])
        self.assertTrue(self.plane.tunnel(ipv6Packet("2001:db8:c::1", inside)))
        self.assertEqual(self.sock.sent[-1][1], (MAG2, 0))
