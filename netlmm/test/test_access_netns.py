"""
The access link for real (root): MAG namespaces with an access bridge
'acc0', a host namespace running the stock Linux IPv6 stack (accept_ra,
SLAAC with EUI-64 addresses, DAD on) attached by a veth whose MAG end is a
port of the bridge, and a handoff that moves that veth, same MAC, to the
other MAG's bridge. The detectors and the slaac strategy run in this process
with their sockets opened inside the MAG namespaces; a fake MAG records what
they report. Every namespace is created here (names carry the pid) and
removed in cleanup, also when a test fails. Traffic stays inside them.
"""

import os
from ipaddress import IPv6Network

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from netlmm.access.link import AccessConfig, AccessLink
from netlmm.access.netlink import LinkDetector
from netlmm.access.rs import RsDetector
from netlmm.access.system import System
from netlmm.assignment.slaac import SlaacAssignment
from netlmm.lab import Lab, eui64, timeScale
from netlmm.lab.netns import Mobile
from netlmm.lab.fakes import RecordingMag
from netlmm.lab.wait import until
from netlmm.wire.control import AddressMode

PREFIX = IPv6Network("2001:db8:77::/64")
MN_MAC = "02:00:00:00:bb:01"


def buildLab(test):
    """Namespaces mag1, mag2 (an access bridge acc0 each) and a mobile, mn."""
    lab = Lab(test)
    for i, mag in enumerate(("mag1", "mag2")):
        lab.add(mag, router=True)
        lab.bridge(mag, "acc0", f"02:00:00:00:0{i + 1}:01")
    lab.mobile("mn")
    return lab


def accessConfig(**kw):
    values = dict(interface="acc0", prefix=PREFIX, routerLifetime=1800, validLifetime=86400,
                  preferredLifetime=14400, mtu=1460, minInterval=10, maxInterval=30,
                  hopLimit=64, advertise=True)
    values.update(kw)
    return AccessConfig(**values)


class AccessLinkTests(TestCase):
    """A real host attaches, configures by SLAAC, and hands over."""

    timeout = 30 * timeScale()

    def setUp(self):
        self.lab = buildLab(self)
        self.mn = Mobile(self.lab, "mn", MN_MAC)

    def magSide(self, node):
        """An access link + rs detector + slaac strategy in C{node}, reporting to a fake MAG."""
        system = System(netns=self.lab.ns(node))
        link = AccessLink(reactor, accessConfig(), system)
        mag = RecordingMag()
        mag.strategy = SlaacAssignment(link, PREFIX)
        detector = RsDetector(reactor, link, idleTimeout=60)
        mag.strategy.start(mag)
        self.addCleanup(mag.strategy.stop)
        d = detector.start(mag)
        self.addCleanup(detector.stop)
        return mag, link, d

    @inlineCallbacks
    def test_attachSlaacAndHandoff(self):
        """
        RS -> attach (MN id = MAC), unicast RA -> the host's SLAAC address,
        its DAD -> addressReady with that address; the handoff detaches at
        MAG1 and attaches at MAG2 with the same address.
        """
        mag1, link1, d1 = self.magSide("mag1")
        mag2, link2, d2 = self.magSide("mag2")
        yield d1
        yield d2
        mnId = MN_MAC.encode()
        expected = eui64(PREFIX, MN_MAC)

        self.mn.attach("mag1")
        yield until(lambda: mag1.kinds("addressReady"), 15, "addressReady at MAG1")
        self.assertEqual(mag1.kinds("attached"), [("attached", mnId, MN_MAC)])
        self.assertEqual(mag1.kinds("addressReady"),
                         [("addressReady", mnId, expected, AddressMode.STATELESS)])
        yield until(lambda: expected in self.mn.addresses(), 5, "the host's address",
                    interval=0.05)
        self.assertEqual(self.mn.addresses(), [expected])
        # The host took the MTU and the MAG as its default router.
        mtu = self.lab.exec("mn", "cat", "/proc/sys/net/ipv6/conf/eth0/mtu").stdout.strip()
        self.assertEqual(mtu, "1460")
        routes = self.lab.exec("mn", "ip", "-6", "route", "show", "default").stdout
        self.assertIn("fe80::", routes)

        self.mn.detach()
        self.mn.attach("mag2")
        yield until(lambda: mag1.kinds("detached"), 5, "detach at MAG1")
        yield until(lambda: mag2.kinds("addressReady"), 15, "addressReady at MAG2")
        self.assertEqual(mag1.kinds("detached"), [("detached", mnId)])
        self.assertEqual(mag2.kinds("attached"), [("attached", mnId, MN_MAC)])
        self.assertEqual(mag2.kinds("addressReady"),
                         [("addressReady", mnId, expected, AddressMode.STATELESS)])
        yield until(lambda: expected in self.mn.addresses(), 5, "the host's address",
                    interval=0.05)
        self.assertEqual(self.mn.addresses(), [expected])
        self.assertEqual(len(mag1.kinds("attached")), 1)
        # The host's interface is new at MAG2, so Linux did DAD there again.
        self.assertEqual(mag2.strategy.learnedBy, {bytes.fromhex(MN_MAC.replace(":", "")): "dad"})

    @inlineCallbacks
    def test_linkDetector(self):
        """The bridge learning the host's MAC attaches it; the port vanishing detaches it."""
        system = System(netns=self.lab.ns("mag1"))
        mag = RecordingMag()
        detector = LinkDetector(reactor, "acc0", system)
        yield detector.start(mag)
        self.addCleanup(detector.stop)
        self.mn.attach("mag1")
        yield until(lambda: mag.kinds("attached"), 10, "attach")
        self.assertEqual(mag.kinds("attached"), [("attached", MN_MAC.encode(), MN_MAC)])
        self.mn.detach()
        yield until(lambda: mag.kinds("detached"), 5, "detach")
        self.assertEqual(mag.kinds("detached"), [("detached", MN_MAC.encode())])

    @inlineCallbacks
    def test_linkDetectorNotABridge(self):
        """Pointing the link detector at an interface that is not a bridge fails its start."""
        detector = LinkDetector(reactor, "lo", System(netns=self.lab.ns("mag1")))
        yield self.assertFailure(detector.start(RecordingMag()), RuntimeError)
        detector.stop()


class PerMnPrefixTests(TestCase):
    """
    Two real hosts on one access bridge, each sent its own prefix by the
    'prefix' strategy's RAs to its MAC alone (the MAG's binding is played by
    the fake MAG): each configures addresses in its own prefix only.
    """

    timeout = 30 * timeScale()

    @inlineCallbacks
    def test_eachItsOwnPrefix(self):
        from netlmm.assignment.prefix import PrefixAssignment
        from netlmm.core.mag import Homes
        lab = Lab(self)
        lab.add("mag1", router=True)
        lab.bridge("mag1", "acc0", "02:00:00:00:01:01")
        macs = {"mna": "02:00:00:00:aa:01", "mnb": "02:00:00:00:bb:01"}
        prefixes = {"mna": IPv6Network("2001:db8:1:a::/64"),
                    "mnb": IPv6Network("2001:db8:1:b::/64")}
        mobiles = {}
        for node, mac in macs.items():
            lab.mobile(node)
            mobiles[node] = Mobile(lab, node, mac)
        system = System(netns=lab.ns("mag1"))
        link = AccessLink(reactor, accessConfig(prefix=None), system)
        mag = RecordingMag()
        mag.strategy = PrefixAssignment(reactor, link)
        detector = RsDetector(reactor, link, idleTimeout=60)
        mag.strategy.start(mag)
        self.addCleanup(mag.strategy.stop)
        yield detector.start(mag)
        self.addCleanup(detector.stop)
        for node in macs:
            mobiles[node].attach("mag1")
        yield until(lambda: len(mag.kinds("addressReady")) == 2, 15, "both triggers")
        self.assertEqual(sorted(mag.kinds("addressReady")), sorted(
            ("addressReady", mac.encode(), None, AddressMode.PREFIX) for mac in macs.values()))
        for node, mac in macs.items():
            mag.bindings[mac.encode()] = Homes(None, prefixes[node], None, None)
            mag.strategy.bound(mac.encode(), None)
        for node, mac in macs.items():
            expected = eui64(prefixes[node], mac)
            yield until(lambda: expected in mobiles[node].addresses(), 10,
                        f"{node}'s address in its own prefix", interval=0.05)
        # Some more RAs go by (RS answers, the repeats at 0.5 s and 2 s).
        yield until(lambda: mag.strategy.advertised >= 6, 5, "the repeated RAs")
        for node, mac in macs.items():
            self.assertEqual(mobiles[node].addresses(), [eui64(prefixes[node], mac)])
            # Its prefix is on-link for it alone; the other's is not.
            routes = lab.exec(node, "ip", "-6", "route", "show").stdout
            other = [p for n, p in prefixes.items() if n != node][0]
            self.assertIn(str(prefixes[node]), routes)
            self.assertNotIn(str(other), routes)
            self.assertIn("default via fe80::", routes)


class Dhcp4Tests(TestCase):
    """
    A real `dhclient -4` (isc-dhcp-client, with Debian's dhclient-script) on
    a host attached to the MAG's bridge gets the IPv4 home address the MAG's
    binding names, a /32 with its router, and reaches that router.
    """

    timeout = 60 * timeScale()

    @inlineCallbacks
    def test_dhclient(self):
        from ipaddress import IPv4Address, IPv4Interface
        from netlmm.access.dhcp4 import Dhcp4Server, RouterAddresses
        from netlmm.core.mag import Homes
        from netlmm.lab.netns import skipUnlessTools, which
        skipUnlessTools(("dhclient", "isc-dhcp-client"))
        lab = buildLab(self)
        mn = Mobile(lab, "mn", MN_MAC)
        system = System(netns=lab.ns("mag1"))
        link = AccessLink(reactor, accessConfig(prefix=None), system)
        routers = RouterAddresses("acc0", reactor, netlink=lab.netlink("mag1"))
        server = Dhcp4Server(reactor, link, leaseTime=600, routers=routers)
        ipv4, router = IPv4Interface("10.20.0.5/24"), IPv4Address("10.20.0.1")

        class Mag(RecordingMag):
            def attached(self, event):
                RecordingMag.attached(self, event)
                server.attached(event)
                server.bound(event.mnId, Homes(None, None, ipv4, router))
        mag = Mag()
        yield server.start(mag)
        self.addCleanup(server.stop)
        detector = RsDetector(reactor, link, idleTimeout=60)
        yield detector.start(mag)
        self.addCleanup(detector.stop)
        mn.attach("mag1")
        yield until(lambda: mag.kinds("attached"), 15, "the attachment")
        work = os.path.abspath(self.mktemp())
        os.makedirs(work)
        log = os.path.join(work, "dhclient.log")
        lab.start("mn", [which("dhclient"), "-4", "-d", "-v", "-lf",
                         os.path.join(work, "leases"), "-pf", os.path.join(work, "pid"),
                         "eth0"], log)

        def addresses():
            return lab.exec("mn", "ip", "-4", "-o", "addr", "show", "dev", "eth0").stdout

        def routed():
            return "default via" in lab.exec("mn", "ip", "-4", "route", "show").stdout
        try:
            # dhclient-script adds the address, then the routes: wait for both.
            yield until(lambda: "10.20.0.5/32" in addresses() and routed(), 20 * timeScale(),
                        "dhclient's address and default route", interval=0.2)
        except AssertionError as e:
            with open(log) as f:
                raise AssertionError(f"{e}; dhclient said:\n{f.read()}") from None

        def routes():
            return lab.exec("mn", "ip", "-4", "route", "show").stdout
        # dhclient-script adds the address first, the routes a moment later.
        yield until(lambda: "default via 10.20.0.1 dev eth0" in routes(), 10 * timeScale(),
                    "dhclient's default route", interval=0.2)
        self.assertIn("10.20.0.1 dev eth0", routes())
        self.assertEqual(server.counters["offers"], 1)
        self.assertGreaterEqual(server.counters["acks"], 1)
        # The MAG holds the router address and answers for it on the link.
        self.assertIn("10.20.0.1/32", lab.exec("mag1", "ip", "-4", "addr", "show",
                                               "dev", "acc0").stdout)
        # With the route the data plane installs for an IPv4 home, the MAG
        # answers the mobile's ping of its router.
        lab.exec("mag1", "ip", "route", "add", "10.20.0.5/32", "dev", "acc0")
        self.assertEqual(lab.exec("mn", "ping", "-c", "1", "-W", "2", "10.20.0.1",
                                  check=False).returncode, 0)
        mtu = lab.exec("mn", "cat", "/sys/class/net/eth0/mtu").stdout.strip()
        self.assertEqual(mtu, "1460")
