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
import shutil
import subprocess
from ipaddress import IPv6Address, IPv6Network

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from netlmm.access.link import AccessConfig, AccessLink
from netlmm.access.netlink import LinkDetector
from netlmm.access.rs import RsDetector
from netlmm.access.system import System
from netlmm.assignment.slaac import SlaacAssignment
from netlmm.interfaces import IMagControl
from netlmm.wire.control import AddressMode

PREFIX = IPv6Network("2001:db8:77::/64")
MN_MAC = "02:00:00:00:bb:01"


def _skipReason():
    if os.geteuid() != 0:
        return "needs root for network namespaces (CI runs these tests as root)"
    if shutil.which("ip") is None:
        return "iproute2 ('ip') is not installed"
    try:
        import pyroute2  # noqa: F401
    except ImportError as e:
        return f"pyroute2 is not importable ({e})"
    return None


def eui64(prefix, mac):
    """The EUI-64 SLAAC address of C{mac} in the /64 C{prefix}."""
    octets = bytes(int(x, 16) for x in mac.split(":"))
    iid = bytes([octets[0] ^ 2]) + octets[1:3] + b"\xff\xfe" + octets[3:]
    return IPv6Address(int(prefix.network_address) | int.from_bytes(iid, "big"))


@implementer(IMagControl)
class RecordingMag:
    """An IMagControl that records every call and passes attachments to its strategy."""

    address = IPv6Address("2001:db8:ffff::1")

    def __init__(self):
        self.calls = []
        self.strategy = None

    def attached(self, event):
        self.calls.append(("attached", event.mnId, event.linkLayer))
        if self.strategy is not None:
            self.strategy.attached(event)

    def detached(self, mnId):
        self.calls.append(("detached", mnId))
        if self.strategy is not None:
            self.strategy.unbound(mnId, None, "detached")

    def addressReady(self, mnId, phoa, mode):
        self.calls.append(("addressReady", mnId, phoa, mode))

    def kinds(self, kind):
        return [c for c in self.calls if c[0] == kind]


def run(*args, check=True):
    p = subprocess.run(list(args), capture_output=True, text=True, timeout=20)
    if check and p.returncode:
        raise AssertionError(f"{' '.join(args)}: exit {p.returncode}: {p.stderr.strip()}")
    return p


class Lab:
    """Namespaces mag1, mag2 (bridge acc0 each) and mn; removed by L{destroy}."""

    def __init__(self, testCase):
        self.prefix = f"nla{os.getpid()}"
        self.namespaces = []
        self.links = 0
        self.mnAt = None
        testCase.addCleanup(self.destroy)

    def ns(self, node):
        return f"{self.prefix}-{node}"

    def exec(self, node, *args, check=True):
        return run("ip", "netns", "exec", self.ns(node), *args, check=check)

    def add(self, node, *sysctls):
        run("ip", "netns", "add", self.ns(node))
        self.namespaces.append(self.ns(node))
        self.exec(node, "ip", "link", "set", "lo", "up")
        for s in sysctls:
            self.exec(node, "sysctl", "-qw", s)

    def build(self):
        for i, mag in enumerate(("mag1", "mag2")):
            self.add(mag, "net.ipv6.conf.default.accept_dad=0",
                     "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.all.forwarding=1")
            self.exec(mag, "ip", "link", "add", "acc0", "type", "bridge")
            self.exec(mag, "ip", "link", "set", "acc0", "address", f"02:00:00:00:0{i + 1}:01",
                      "up")
        self.add("mn", "net.ipv6.conf.default.accept_ra=1", "net.ipv6.conf.default.autoconf=1",
                 "net.ipv6.conf.default.addr_gen_mode=0",
                 "net.ipv6.conf.default.router_solicitation_delay=0",
                 "net.ipv6.conf.default.router_solicitation_interval=1",
                 "net.ipv6.conf.default.dad_transmits=1")
        return self

    def attachMn(self, mag):
        self.links += 1
        tmp = f"{self.prefix}t{self.links}"[:15]
        peer = f"{self.prefix}p{self.links}"[:15]
        port = f"mn{self.links}"
        run("ip", "link", "add", tmp, "type", "veth", "peer", "name", peer)
        run("ip", "link", "set", tmp, "netns", self.ns("mn"))
        run("ip", "link", "set", peer, "netns", self.ns(mag))
        self.exec(mag, "ip", "link", "set", peer, "name", port)
        self.exec(mag, "ip", "link", "set", port, "master", "acc0", "up")
        self.exec("mn", "ip", "link", "set", tmp, "name", "eth0")
        self.exec("mn", "ip", "link", "set", "eth0", "address", MN_MAC)
        self.exec("mn", "ip", "link", "set", "eth0", "up")
        self.mnAt = (mag, port)

    def detachMn(self):
        mag, port = self.mnAt
        self.mnAt = None
        self.exec(mag, "ip", "link", "del", port)

    def mnGlobal(self):
        out = self.exec("mn", "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope",
                        "global", check=False).stdout
        found = []
        for line in out.splitlines():
            words = line.split()
            if "inet6" in words and "tentative" not in words:
                found.append(IPv6Address(words[words.index("inet6") + 1].split("/")[0]))
        return found

    def destroy(self):
        for name in reversed(self.namespaces):
            run("ip", "netns", "del", name, check=False)
        self.namespaces = []


@inlineCallbacks
def waitFor(predicate, timeout, what):
    """Poll C{predicate} every 50 ms; fail after C{timeout} seconds."""
    deadline = reactor.seconds() + timeout
    while not predicate():
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        yield deferLater(reactor, 0.05, lambda: None)


def accessConfig(**kw):
    values = dict(interface="acc0", prefix=PREFIX, routerLifetime=1800, validLifetime=86400,
                  preferredLifetime=14400, mtu=1460, minInterval=10, maxInterval=30,
                  hopLimit=64, advertise=True)
    values.update(kw)
    return AccessConfig(**values)


class AccessLinkTests(TestCase):
    """A real host attaches, configures by SLAAC, and hands over."""

    skip = _skipReason()
    timeout = 30

    def setUp(self):
        self.lab = Lab(self).build()

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

        self.lab.attachMn("mag1")
        yield waitFor(lambda: mag1.kinds("addressReady"), 15, "addressReady at MAG1")
        self.assertEqual(mag1.kinds("attached"), [("attached", mnId, MN_MAC)])
        self.assertEqual(mag1.kinds("addressReady"),
                         [("addressReady", mnId, expected, AddressMode.STATELESS)])
        yield waitFor(lambda: expected in self.lab.mnGlobal(), 5, "the host's address")
        self.assertEqual(self.lab.mnGlobal(), [expected])
        # The host took the MTU and the MAG as its default router.
        mtu = self.lab.exec("mn", "cat", "/proc/sys/net/ipv6/conf/eth0/mtu").stdout.strip()
        self.assertEqual(mtu, "1460")
        routes = self.lab.exec("mn", "ip", "-6", "route", "show", "default").stdout
        self.assertIn("fe80::", routes)

        self.lab.detachMn()
        self.lab.attachMn("mag2")
        yield waitFor(lambda: mag1.kinds("detached"), 5, "detach at MAG1")
        yield waitFor(lambda: mag2.kinds("addressReady"), 15, "addressReady at MAG2")
        self.assertEqual(mag1.kinds("detached"), [("detached", mnId)])
        self.assertEqual(mag2.kinds("attached"), [("attached", mnId, MN_MAC)])
        self.assertEqual(mag2.kinds("addressReady"),
                         [("addressReady", mnId, expected, AddressMode.STATELESS)])
        yield waitFor(lambda: expected in self.lab.mnGlobal(), 5, "the host's address")
        self.assertEqual(self.lab.mnGlobal(), [expected])
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
        self.lab.attachMn("mag1")
        yield waitFor(lambda: mag.kinds("attached"), 10, "attach")
        self.assertEqual(mag.kinds("attached"), [("attached", MN_MAC.encode(), MN_MAC)])
        self.lab.detachMn()
        yield waitFor(lambda: mag.kinds("detached"), 5, "detach")
        self.assertEqual(mag.kinds("detached"), [("detached", MN_MAC.encode())])

    @inlineCallbacks
    def test_linkDetectorNotABridge(self):
        """Pointing the link detector at an interface that is not a bridge fails its start."""
        detector = LinkDetector(reactor, "lo", System(netns=self.lab.ns("mag1")))
        yield self.assertFailure(detector.start(RecordingMag()), RuntimeError)
        detector.stop()
