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
