"""
The access link without root: RA contents and timing, the rs detector, the
slaac strategy and their config, over a fake system and a memory reactor.
The same code over real namespaces is in test_access_netns.
"""

import os
import socket
import struct
import tempfile
from ipaddress import IPv6Address, IPv6Network

from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from netlmm.access import AttachmentEvent, getDetectors
from netlmm.access.link import AccessConfig, AccessLink
from netlmm.access.rs import RsDetector, mnIdOf
from netlmm.access.system import IPV6_HOPLIMIT, icmp6Filter
from netlmm.assignment import strategies
from netlmm.assignment.slaac import SlaacAssignment
from netlmm.config import ConfigError, Table
from netlmm.interfaces import IAddressAssignment, IAttachmentDetector
from netlmm.lab.fakes import FakeAccessSystem, RecordingMag
from netlmm.wire.control import AddressMode
from netlmm.wire.icmpv6 import (
    NeighborSolicitation, RouterAdvertisement, RouterSolicitation, SourceLinkLayer,
    decodeMessage, encodeFrame, encodeMessage, macText,
)

PREFIX = IPv6Network("2001:db8:1::/64")
OWN_MAC = FakeAccessSystem().mac
MN = bytes.fromhex("02000000aa01")
MN_ADDRESS = IPv6Address("2001:db8:1::ff:fe00:aa01")


def config(**kw):
    values = dict(interface="acc0", prefix=PREFIX, routerLifetime=1800, validLifetime=86400,
                  preferredLifetime=14400, mtu=1460, minInterval=200, maxInterval=600,
                  hopLimit=64, advertise=True)
    values.update(kw)
    return AccessConfig(**values)


def hopLimit(n):
    return [(socket.IPPROTO_IPV6, IPV6_HOPLIMIT, struct.pack("@i", n))]


class AccessLinkTests(SynchronousTestCase):
    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.system = FakeAccessSystem()
        self.link = AccessLink(self.reactor, config(), self.system)
        self.link.start()
        self.icmp = self.system.sockets[0]

    def sentRAs(self):
        return [(decodeMessage(d), a) for d, a in self.icmp.sent]

    def test_periodic(self):
        """An RA at start, then one every 200..600 s, to all nodes."""
        self.reactor.advance(0)
        self.reactor.advance(600)
        self.reactor.advance(600)
        ras = self.sentRAs()
        self.assertEqual(len(ras), 3)
        ra, to = ras[0]
        self.assertEqual(to, ("ff02::1", 0, 0, 7))
        self.assertIsInstance(ra, RouterAdvertisement)
        self.assertEqual(ra.routerLifetime, 1800)
        self.assertEqual(ra.mtu, 1460)
        self.assertEqual(ra.sourceLinkLayer, OWN_MAC)
        (pio,) = ra.prefixes
        self.assertEqual((pio.prefix, pio.flags, pio.validLifetime, pio.preferredLifetime),
                         (PREFIX, 0xC0, 86400, 14400))

    def test_routerIdentity(self):
        """
        With the domain's router identity the access interface gets its MAC
        and link-local address, and RAs and NAs go from that address.
        """
        routerMac = bytes.fromhex("02005e100001")
        system = FakeAccessSystem()
        link = AccessLink(self.reactor, config(routerMac=routerMac,
                                               routerAddress=IPv6Address("fe80::1")), system)
        link.start()
        self.reactor.advance(0)
        link.defend(MN_ADDRESS)
        icmp = system.sockets[0]
        (ra, to), (na, _) = [(decodeMessage(d), a) for d, a in icmp.sent]
        self.assertEqual(system.routerAddress, IPv6Address("fe80::1"))
        self.assertEqual(ra.sourceLinkLayer, routerMac)
        self.assertEqual(to, ("ff02::1", 0, 0, 7))
        pktinfo = IPv6Address("fe80::1").packed + struct.pack("@I", 7)
        self.assertEqual(icmp.ancillary, [[(socket.IPPROTO_IPV6, 50, pktinfo)]] * 2)
        link.stop()

    def test_newPortAdvertises(self):
        """A mobile's new bridge port gets an RA at once, not at the next RS."""
        self.reactor.advance(0)
        before = len(self.icmp.sent)
        self.link.newPort()
        self.assertEqual(len(self.icmp.sent), before + 1)
        ra, to = self.sentRAs()[-1]
        self.assertIsInstance(ra, RouterAdvertisement)
        self.assertEqual(to, ("ff02::1", 0, 0, 7))
        # Twice more within half a second, in case the first came too early.
        self.reactor.advance(0.5)
        self.assertEqual(len(self.icmp.sent), before + 3)
        self.link.stop()
        sent = len(self.icmp.sent)
        self.link.newPort()
        self.reactor.advance(1)
        self.assertEqual(len(self.icmp.sent), sent)

    def test_neighborRetransSet(self):
        """The access interface's ND retransmit time is set at start (200 ms)."""
        calls = []
        system = FakeAccessSystem()
        system.setNeighborRetrans = lambda iface, ms: calls.append((iface, ms))
        AccessLink(MemoryReactorClock(), config(), system).start()
        self.assertEqual(calls, [("acc0", 200)])
        calls.clear()
        AccessLink(MemoryReactorClock(), config(neighborRetrans=0), system).start()
        self.assertEqual(calls, [])

    def test_unicastAnswer(self):
        """An RS gets a unicast RA at once; listeners hear of it with the SLLA."""
        heard = []
        self.link.solicitationListeners.append(lambda mac, src: heard.append((mac, src)))
        rs = encodeMessage(RouterSolicitation([SourceLinkLayer(MN)]))
        self.link._icmpReceived(rs, hopLimit(255), ("fe80::ff:fe00:aa01%acc0", 0, 0, 7))
        self.assertEqual(heard, [(MN, IPv6Address("fe80::ff:fe00:aa01"))])
        self.assertEqual(self.icmp.sent[-1][1], ("fe80::ff:fe00:aa01", 0, 0, 7))

    def test_badSolicitations(self):
        """Hop limit not 255, garbage, SLLA from :: -- dropped without an answer."""
        heard = []
        self.link.solicitationListeners.append(lambda mac, src: heard.append(mac))
        rs = encodeMessage(RouterSolicitation([SourceLinkLayer(MN)]))
        self.link._icmpReceived(rs, hopLimit(64), ("fe80::1%acc0", 0, 0, 7))
        self.link._icmpReceived(rs[:6], hopLimit(255), ("fe80::1%acc0", 0, 0, 7))
        self.link._icmpReceived(rs, hopLimit(255), ("::", 0, 0, 7))
        self.assertEqual((heard, self.icmp.sent), ([], []))

    def test_sendFailureIsLogged(self):
        self.icmp.fail = OSError(99, "Cannot assign requested address")
        self.assertFalse(self.link.advertise(IPv6Address("ff02::1")))
        self.assertEqual(self.link.dropped, 1)

    def test_stop(self):
        """The last user's stop sends a router lifetime of 0 and closes the sockets."""
        self.link.start()
        self.link.stop()
        self.assertFalse(self.icmp.closed)
        self.link.stop()
        ra, _ = self.sentRAs()[-1]
        self.assertEqual(ra.routerLifetime, 0)
        self.assertTrue(all(s.closed for s in self.system.sockets))
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_icmpFilter(self):
        words = struct.unpack("=8I", icmp6Filter(133))
        self.assertEqual(words[133 >> 5], 0xFFFFFFFF & ~(1 << (133 & 31)))
        self.assertEqual(words[0], 0xFFFFFFFF)


class DetectorAndStrategyTests(SynchronousTestCase):
    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.link = AccessLink(self.reactor, config(), FakeAccessSystem())
        self.mag = RecordingMag()
        self.strategy = self.mag.strategy = SlaacAssignment(self.link, PREFIX)
        self.detector = RsDetector(self.reactor, self.link, idleTimeout=30, watchPorts=False)
        self.strategy.start(self.mag)
        self.detector.start(self.mag)
        self.mnId = mnIdOf(MN)

    def frame(self, source, message, mac=MN):
        data = encodeFrame(b"\x33\x33\x00\x00\x00\x01", mac, source, "ff02::1", message)
        self.link._frameReceived(data, [], ("acc0", 0x86DD, 2, 1, mac))

    def solicit(self, mac=MN):
        self.link.solicited(mac, IPv6Address("fe80::ff:fe00:aa01"))

    def test_interfaces(self):
        verifyObject(IAttachmentDetector, self.detector)
        verifyObject(IAddressAssignment, self.strategy)

    def test_attachThenDad(self):
        self.solicit()
        self.solicit()
        self.assertEqual(self.mag.kinds("attached"), [("attached", b"02:00:00:00:aa:01",
                                                       "02:00:00:00:aa:01")])
        self.frame("::", NeighborSolicitation("fe80::ff:fe00:aa01"))   # link-local: ignored
        self.frame("::", NeighborSolicitation("2001:db8:2::1"))        # other prefix: ignored
        self.assertEqual(self.mag.kinds("addressReady"), [])
        self.frame("::", NeighborSolicitation(MN_ADDRESS))
        self.frame("::", NeighborSolicitation(MN_ADDRESS))
        self.assertEqual(self.mag.kinds("addressReady"),
                         [("addressReady", self.mnId, MN_ADDRESS, AddressMode.STATELESS)])
        # A second (privacy) address is not bound.
        self.frame("::", NeighborSolicitation("2001:db8:1::1234"))
        self.assertEqual(len(self.mag.kinds("addressReady")), 1)

    def test_dadBeforeAttach(self):
        self.frame("::", NeighborSolicitation(MN_ADDRESS))
        self.solicit()
        self.assertEqual(self.mag.kinds("addressReady"),
                         [("addressReady", self.mnId, MN_ADDRESS, AddressMode.STATELESS)])

    def test_addressFromTraffic(self):
        """A mobile that skips DAD is learned from a packet sourced from the prefix."""
        self.solicit()
        self.frame("fe80::ff:fe00:aa01", NeighborSolicitation("fe80::1"))
        self.assertEqual(self.mag.kinds("addressReady"), [])
        self.frame(MN_ADDRESS, NeighborSolicitation("fe80::1"))
        self.assertEqual(self.mag.kinds("addressReady"),
                         [("addressReady", self.mnId, MN_ADDRESS, AddressMode.STATELESS)])
        self.assertEqual(self.strategy.learnedBy[MN], "traffic")

    def test_otherMobileNotConfused(self):
        """Another mobile's DAD is that mobile's: it attaches, MN is untouched."""
        self.solicit()
        self.frame("::", NeighborSolicitation("2001:db8:1::99"), mac=b"\x02" * 6)
        other = mnIdOf(b"\x02" * 6)
        self.assertEqual(self.mag.kinds("addressReady"),
                         [("addressReady", other, IPv6Address("2001:db8:1::99"),
                           AddressMode.STATELESS)])

    def test_dadAttachesBeforeAnyRs(self):
        """A mobile's DAD NS attaches it when no RS came first (early RA)."""
        self.frame("::", NeighborSolicitation(MN_ADDRESS))
        self.assertEqual(self.mag.kinds("attached")[0][1], self.mnId)
        self.assertEqual(self.mag.kinds("addressReady"),
                         [("addressReady", self.mnId, MN_ADDRESS, AddressMode.STATELESS)])

    def test_idleDetach(self):
        """Silence for idle_timeout detaches; any frame from the mobile resets the clock."""
        self.solicit()
        self.reactor.advance(20)
        self.frame("fe80::ff:fe00:aa01", NeighborSolicitation("fe80::1"))
        self.reactor.advance(20)
        self.assertEqual(self.mag.kinds("detached"), [])
        self.reactor.advance(11)
        self.assertEqual(self.mag.kinds("detached"), [("detached", self.mnId)])
        # Back again: a new attachment, and the address is reported again.
        self.frame("::", NeighborSolicitation(MN_ADDRESS))
        self.solicit()
        self.assertEqual(len(self.mag.kinds("attached")), 2)
        self.assertEqual(len(self.mag.kinds("addressReady")), 1)

    def test_reattachReportsAgain(self):
        self.solicit()
        self.frame("::", NeighborSolicitation(MN_ADDRESS))
        self.detector._detach(self.mnId)
        self.solicit()
        self.assertEqual(len(self.mag.kinds("addressReady")), 2)

    def test_ownFramesIgnored(self):
        heard = []
        self.link.frameListeners.append(heard.append)
        self.frame("::", NeighborSolicitation(MN_ADDRESS), mac=OWN_MAC)
        data = encodeFrame(b"\x33" * 6, MN, "::", "ff02::1", NeighborSolicitation(MN_ADDRESS))
        self.link._frameReceived(data, [], ("acc0", 0x86DD, 4, 1, MN))     # outgoing
        self.link._frameReceived(b"junk", [], ("acc0", 0x86DD, 2, 1, MN))
        self.assertEqual(heard, [])

    def test_stop(self):
        self.solicit()
        self.detector.stop()
        self.strategy.stop()
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertEqual(self.link.frameListeners, [])


class ConfigTests(SynchronousTestCase):
    def access(self, **kw):
        data = {"interface": "acc0", "prefix": "2001:db8:1::/64"}
        data.update(kw)
        return AccessConfig.fromTable(Table(data, "mag.access"))

    def test_defaults(self):
        c = self.access()
        self.assertEqual((c.mtu, c.routerLifetime, c.validLifetime, c.preferredLifetime,
                          c.maxInterval, c.minInterval, c.hopLimit, c.advertise,
                          c.neighborRetrans),
                         (1460, 1800, 86400, 14400, 600, 198.0, 64, True, 200))

    def test_errorsNameTheKey(self):
        cases = [
            ({"interface": None}, "mag.access.interface"),
            ({"interface": "x" * 16}, "mag.access.interface"),
            ({"prefix": "2001:db8::/48"}, "mag.access.prefix"),
            ({"prefix": "fe80::/64"}, "mag.access.prefix"),
            ({"mtu": 1000}, "mag.access.mtu"),
            ({"ra_interval_max": 10, "ra_interval_min": 9}, "mag.access.ra_interval_min"),
            ({"ra_interval_max": 0.01}, "mag.access.ra_interval_max"),
            ({"ra_interval_max": 100, "router_lifetime": 50}, "mag.access.router_lifetime"),
            ({"valid_lifetime": 10, "preferred_lifetime": 20}, "mag.access.preferred_lifetime"),
            ({"hop_limit": 300}, "mag.access.hop_limit"),
            ({"neighbor_retrans_ms": -1}, "mag.access.neighbor_retrans_ms"),
            ({"bogus": 1}, "mag.access.bogus"),
        ]
        for change, key in cases:
            data = {k: v for k, v in change.items() if v is not None}
            if change.get("interface", "") is None:
                t = Table({"prefix": "2001:db8:1::/64"}, "mag.access")
                e = self.assertRaises(ConfigError, AccessConfig.fromTable, t)
            else:
                e = self.assertRaises(ConfigError, self.access, **data)
            self.assertTrue(str(e).startswith(key), (str(e), key))

    def test_routerIdentity(self):
        """router_mac alone: the link-local address is its modified EUI-64 one."""
        c = self.access(router_mac="02:00:5E:10:00:01")
        self.assertEqual((c.routerMac, c.routerAddress),
                         (bytes.fromhex("02005e100001"), IPv6Address("fe80::5eff:fe10:1")))
        c = self.access(router_mac="02:00:5e:10:00:01", router_address="fe80::1")
        self.assertEqual(c.routerAddress, IPv6Address("fe80::1"))
        self.assertEqual(self.access().routerMac, None)

    def test_routerIdentityErrors(self):
        cases = [
            ({"router_address": "fe80::1"}, "mag.access.router_address: needs router_mac too"),
            ({"router_mac": "02:00:5e"}, "mag.access.router_mac: expected a MAC"),
            ({"router_mac": "03:00:5e:10:00:01"}, "mag.access.router_mac: expected a unicast"),
            ({"router_mac": "02:00:5e:10:00:01", "router_address": "2001:db8::1"},
             "mag.access.router_address: expected a link-local address"),
        ]
        for data, message in cases:
            e = self.assertRaises(ConfigError, self.access, **data)
            self.assertTrue(str(e).startswith(message), (str(e), message))

    def test_registries(self):
        self.assertIn("rs", getDetectors().names())
        self.assertIn("link", getDetectors().names())
        self.assertIn("slaac", strategies.names())

    def writeConfig(self, text):
        fd, path = tempfile.mkstemp(suffix=".toml")
        os.write(fd, text.encode())
        os.close(fd)
        self.addCleanup(os.unlink, path)
        return path

    BASE = """
[mag]
address = "2001:db8:ff::1"
lma_address = "::1"
[mag.dataplane]
kind = "memory"
[mag.tls]
transport = "tcp"
"""

    def test_magConfig(self):
        """The tap builds rs + slaac sharing one access link from [mag.access]."""
        from netlmm.tap.mag import Options
        path = self.writeConfig(self.BASE + """
[mag.access]
interface = "acc0"
prefix = "2001:db8:1::/64"
ra_interval_max = 30
[mag.assignment]
strategy = "slaac"
[mag.attachment]
detector = "rs"
idle_timeout = 60
""")
        o = Options()
        o.parseOptions(["--config", path])
        b = o.built
        self.assertIsInstance(b["detector"], RsDetector)
        self.assertIsInstance(b["strategy"], SlaacAssignment)
        self.assertIs(b["detector"].link, b["strategy"].link)
        self.assertEqual(b["detector"].idleTimeout, 60)

    def test_magConfigErrors(self):
        from netlmm.tap.mag import Options
        cases = [
            ("[mag.assignment]\nstrategy = 'slaac'\n[mag.attachment]\ndetector = 'rs'\n",
             "mag.assignment.interface"),
            ("[mag.assignment]\nstrategy = 'static'\n[mag.attachment]\ndetector = 'rs'\n",
             "mag.attachment.interface"),
            ("[mag.access]\ninterface = 'acc0'\nprefix = '2001:db8:1::/64'\n"
             "[mag.assignment]\nstrategy = 'slaac'\n"
             "[mag.attachment]\ndetector = 'rs'\ninterface = 'acc1'\n",
             "mag.attachment.interface"),
            ("[mag.access]\ninterface = 'acc0'\nprefix = '2001:db8:1::/64'\n"
             "[mag.assignment]\nstrategy = 'slaac'\n"
             "[mag.attachment]\ndetector = 'link'\ndetach_on_ageing = 1\n",
             "mag.attachment.detach_on_ageing"),
            ("[mag.access]\ninterface = 'acc0'\nprefix = '2001:db8:1::/64'\nmtu = 9\n"
             "[mag.assignment]\nstrategy = 'slaac'\n"
             "[mag.attachment]\ndetector = 'rs'\n", "mag.access.mtu"),
        ]
        for extra, key in cases:
            path = self.writeConfig(self.BASE + extra)
            e = self.assertRaises(usage.UsageError, Options().parseOptions, ["--config", path])
            self.assertIn(key, str(e))

    def test_eventMac(self):
        """The strategy matches by the event's link-layer address or a MAC-text MN id."""
        link = AccessLink(MemoryReactorClock(), config(), FakeAccessSystem())
        s = SlaacAssignment(link, PREFIX)
        mag = RecordingMag()
        s.start(mag)
        s.learn(MN, MN_ADDRESS)
        s.attached(AttachmentEvent("mn1@example.net", linkLayer=macText(MN)))
        s.attached(AttachmentEvent("mn2@example.net"))          # no MAC: stays unbound
        self.assertEqual(mag.kinds("addressReady"),
                         [("addressReady", b"mn1@example.net", MN_ADDRESS,
                           AddressMode.STATELESS)])
