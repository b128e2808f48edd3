"""
Per-MN prefixes (draft E.3) without root: the access link's RAs to one
mobile, and the 'prefix' strategy, over a fake system and a memory reactor.
The same with Linux mobiles in namespaces is in test_prefix_netns.
"""

from ipaddress import IPv6Address, IPv6Network

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from netlmm.access import AttachmentEvent
from netlmm.access.link import AccessConfig, AccessLink
from netlmm.assignment import strategies
from netlmm.assignment.prefix import PrefixAssignment
from netlmm.config import ConfigError, Table
from netlmm.core.mag import Homes
from netlmm.interfaces import IAddressAssignment
from netlmm.lab.fakes import FakeAccessSystem, RecordingMag
from netlmm.test.test_access import config
from netlmm.wire.control import AddressMode
from netlmm.wire.icmpv6 import (
    ALL_NODES, PIO_AUTONOMOUS, PIO_ONLINK, RouterAdvertisement, decodeFrame, macText,
)

OWN_MAC = FakeAccessSystem().mac
OWN_LL = FakeAccessSystem().linkLocal
MAC_A = bytes.fromhex("02000000aa01")
MAC_B = bytes.fromhex("02000000bb01")
HNP_A = IPv6Network("2001:db8:1:a::/64")
HNP_B = IPv6Network("2001:db8:1:b::/64")


def perMnConfig(**kw):
    """An access link's config without a shared prefix."""
    return config(**dict(dict(prefix=None), **kw))


def frames(system):
    """The frames sent on the access link's packet socket, decoded: (frame, RA)."""
    packet = system.sockets[1]
    out = []
    for data, address in packet.sent:
        frame = decodeFrame(data)
        out.append((frame, frame.icmp(), address))
    return out


class PerMnAccessLinkTests(SynchronousTestCase):
    """An access link without a shared prefix sends RAs to single mobiles only."""

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.system = FakeAccessSystem()
        self.link = AccessLink(self.reactor, perMnConfig(), self.system)
        self.link.start()
        self.icmp = self.system.sockets[0]

    def test_nothingToAll(self):
        """No periodic RA, no answer to an RS, no RA for a new port, none at stop."""
        self.reactor.advance(0)
        self.reactor.advance(3600)
        self.link.solicited(MAC_A, IPv6Address("fe80::1"))
        self.link.newPort()
        self.reactor.advance(1)
        self.link.stop()
        self.assertEqual((self.icmp.sent, self.system.sockets[1].sent), ([], []))
        self.assertFalse(self.link.shared)

    def test_advertiseTo(self):
        """
        The RA goes in a frame to the mobile's MAC alone (RFC 6085), from the
        MAG's link-local to all-nodes, with its prefix (L and A flags), the
        MTU and the MAG's MAC.
        """
        self.assertTrue(self.link.advertiseTo(MAC_A, [HNP_A]))
        [(frame, ra, address)] = frames(self.system)
        self.assertEqual(address, ("acc0", 0))
        self.assertEqual((frame.destinationMac, frame.sourceMac, frame.source,
                          frame.destination, frame.hopLimit),
                         (MAC_A, OWN_MAC, OWN_LL, ALL_NODES, 255))
        self.assertIsInstance(ra, RouterAdvertisement)
        self.assertEqual((ra.routerLifetime, ra.mtu, ra.sourceLinkLayer),
                         (1800, 1460, OWN_MAC))
        [pio] = ra.prefixes
        self.assertEqual((pio.prefix, pio.flags, pio.validLifetime, pio.preferredLifetime),
                         (HNP_A, PIO_ONLINK | PIO_AUTONOMOUS, 86400, 14400))

    def test_withdraw(self):
        """Router lifetime and preferred lifetime can be set to 0 (withdraw, deprecate)."""
        self.link.advertiseTo(MAC_A, [HNP_A], routerLifetime=0, preferred=0)
        [(_, ra, _)] = frames(self.system)
        self.assertEqual((ra.routerLifetime, ra.prefixes[0].preferredLifetime,
                          ra.prefixes[0].validLifetime), (0, 0, 86400))

    def test_configuredLinkLocal(self):
        """A configured link_local is the source (the same on every MAG)."""
        link = AccessLink(self.reactor, perMnConfig(linkLocal=IPv6Address("fe80::1")),
                          FakeAccessSystem(linkLocal=None))
        link.start()
        self.assertTrue(link.advertiseTo(MAC_A, [HNP_A]))
        self.assertEqual(frames(link.system)[0][0].source, IPv6Address("fe80::1"))

    def test_noLinkLocalYet(self):
        """Without a usable link-local the RA cannot go; it is counted, asked again later."""
        self.system.linkLocal = None
        self.assertFalse(self.link.advertiseTo(MAC_A, [HNP_A]))
        self.assertEqual(self.link.dropped, 1)
        self.system.linkLocal = OWN_LL
        self.assertTrue(self.link.advertiseTo(MAC_A, [HNP_A]))

    def test_sendFails(self):
        self.system.sockets[1].fail = OSError(100, "Network is down")
        self.assertFalse(self.link.advertiseTo(MAC_A, [HNP_A]))
        self.assertEqual(self.link.dropped, 1)

    def test_config(self):
        """[mag.access] without prefix is per-MN; link_local must be link-local."""
        c = AccessConfig.fromTable(Table({"interface": "acc0"}, "mag.access"))
        self.assertEqual((c.prefix, c.linkLocal), (None, None))
        c = AccessConfig.fromTable(Table({"interface": "acc0", "link_local": "fe80::1"},
                                         "mag.access"))
        self.assertEqual(c.linkLocal, IPv6Address("fe80::1"))
        e = self.assertRaises(ConfigError, AccessConfig.fromTable,
                              Table({"interface": "acc0", "link_local": "2001:db8::1"},
                                    "mag.access"))
        self.assertEqual(str(e), "mag.access.link_local: expected a link-local address "
                                 "(fe80::/10) configured on acc0, got 2001:db8::1")


class PrefixStrategyTests(SynchronousTestCase):

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.system = FakeAccessSystem()
        self.link = AccessLink(self.reactor, perMnConfig(minInterval=100, maxInterval=100),
                               self.system)
        self.strategy = PrefixAssignment(self.reactor, self.link)
        self.mag = RecordingMag()
        self.mag.strategy = self.strategy
        self.strategy.start(self.mag)

    def attach(self, mac=MAC_A, mnId=None):
        mnId = mnId or macText(mac).encode()
        self.mag.attached(AttachmentEvent(mnId, linkLayer=macText(mac)))
        return mnId

    def bind(self, mnId, prefix):
        self.mag.bindings[mnId] = Homes(None, prefix, None, None)
        self.strategy.bound(mnId, None)

    def sentTo(self):
        """(destination MAC, the prefixes of the RA) of every frame sent."""
        return [(f.destinationMac, [p.prefix for p in ra.prefixes])
                for f, ra, _ in frames(self.system)]

    def test_interface(self):
        verifyObject(IAddressAssignment, self.strategy)
        self.assertEqual(self.strategy.name, "prefix")

    def test_attachTriggersPrefixMode(self):
        mnId = self.attach()
        self.assertEqual(self.mag.kinds("addressReady"),
                         [("addressReady", mnId, None, AddressMode.PREFIX)])
        self.assertEqual(self.sentTo(), [])

    def test_configuredPrefix(self):
        """A prefix configured for the mobile goes in its Trigger."""
        self.strategy.configured[b"mn1@example.net"] = HNP_B
        self.mag.attached(AttachmentEvent(b"mn1@example.net", linkLayer=macText(MAC_B)))
        self.assertEqual(self.mag.kinds("addressReady"),
                         [("addressReady", b"mn1@example.net", None, AddressMode.PREFIX,
                           HNP_B)])

    def test_noMac(self):
        """A mobile whose MAC is unknown cannot be sent its RAs: no Trigger."""
        self.mag.attached(AttachmentEvent(b"mn1@example.net"))
        self.assertEqual(self.mag.kinds("addressReady"), [])

    def test_boundAdvertisesToItAlone(self):
        """Two mobiles: each gets RAs with its own prefix, to its own MAC."""
        a, b = self.attach(MAC_A), self.attach(MAC_B)
        self.bind(a, HNP_A)
        self.bind(b, HNP_B)
        self.assertEqual(self.sentTo(), [(MAC_A, [HNP_A]), (MAC_B, [HNP_B])])
        # Again after 0.5 and 2 s, then periodically (every 100 s here).
        self.reactor.advance(0.5)
        self.reactor.advance(1.5)
        self.assertEqual(len(self.sentTo()), 6)
        self.reactor.advance(98)
        self.assertEqual(self.sentTo()[6:], [(MAC_A, [HNP_A]), (MAC_B, [HNP_B])])
        # Never the other's prefix, never to the other's MAC.
        self.assertEqual({(mac, tuple(p)) for mac, p in self.sentTo()},
                         {(MAC_A, (HNP_A,)), (MAC_B, (HNP_B,))})
        self.assertEqual(self.strategy.advertised, 8)

    def test_oldPrefixDeprecated(self):
        """
        After an anchor move the RA carries the new prefix and, deprecated
        (preferred 0), the old one with the valid lifetime it has left.
        """
        from netlmm.core.mag import OldHome
        a = self.attach(MAC_A)
        self.mag.oldHomes = lambda mnId: [OldHome(HNP_A, None, 0, 600)] if mnId == a else []
        self.reactor.advance(100)
        self.bind(a, HNP_B)
        [(_, ra, _)] = frames(self.system)
        self.assertEqual([(p.prefix, p.validLifetime, p.preferredLifetime)
                          for p in ra.prefixes], [(HNP_B, 86400, 14400), (HNP_A, 500, 0)])

    def test_solicitations(self):
        """A bound mobile's RS is answered at once; an unbound one's is not."""
        a = self.attach(MAC_A)
        self.attach(MAC_B)
        self.link.solicited(MAC_B, IPv6Address("fe80::b"))
        self.assertEqual(self.sentTo(), [])
        self.bind(a, HNP_A)
        self.link.solicited(MAC_A, IPv6Address("fe80::a"))
        self.link.solicited(bytes.fromhex("02000000cc01"), IPv6Address("fe80::c"))
        self.assertEqual(self.sentTo(), [(MAC_A, [HNP_A])] * 2)

    def test_unboundStillHere(self):
        """Bound elsewhere or lost while still on the link: prefix deprecated, router gone."""
        a = self.attach()
        self.bind(a, HNP_A)
        self.strategy.unbound(a, None, "moved")
        ra = frames(self.system)[-1][1]
        self.assertEqual((ra.routerLifetime, ra.prefixes[0].preferredLifetime), (0, 0))
        self.reactor.advance(200)
        self.assertEqual(len(frames(self.system)), 2)

    def test_detachedSendsNothing(self):
        a = self.attach()
        self.bind(a, HNP_A)
        self.mag.detached(a)
        self.reactor.advance(200)
        self.assertEqual(len(frames(self.system)), 1)

    def test_boundWithoutPrefix(self):
        """A binding without a prefix (the LMA gave none): nothing to advertise."""
        a = self.attach()
        self.strategy.bound(a, IPv6Address("2001:db8:1::5"))
        self.reactor.advance(200)
        self.assertEqual(frames(self.system), [])

    def test_stop(self):
        """Stopping withdraws the router from every bound mobile."""
        a, b = self.attach(MAC_A), self.attach(MAC_B)
        self.bind(a, HNP_A)
        self.bind(b, HNP_B)
        self.strategy.stop()
        last = frames(self.system)[-2:]
        self.assertEqual([(f.destinationMac, ra.routerLifetime) for f, ra, _ in last],
                         [(MAC_A, 0), (MAC_B, 0)])
        self.assertEqual(self.reactor.getDelayedCalls(), [])


class PrefixConfigTests(SynchronousTestCase):

    def build(self, access, options=None):
        link = None if access is None else AccessLink(
            MemoryReactorClock(), AccessConfig.fromTable(Table(access, "mag.access")),
            FakeAccessSystem())
        table = Table(dict({"strategy": "prefix"}, **(options or {})), "mag.assignment")
        table.string("strategy", required=True)
        return strategies.create("prefix", table, "mag.assignment.strategy",
                                 reactor=MemoryReactorClock(), access=link)

    def test_registered(self):
        self.assertIn("prefix", strategies.names())
        self.assertIsInstance(self.build({"interface": "acc0"}), PrefixAssignment)

    def test_prefixes(self):
        s = self.build({"interface": "acc0"},
                       {"prefixes": {"mn1@example.net": "2001:db8:1:5::/64"}})
        self.assertEqual(s.configured, {b"mn1@example.net": IPv6Network("2001:db8:1:5::/64")})
        for value, text in (("2001:db8:1::/56", "mag.assignment.prefixes.mn1: SLAAC on "
                                                  "Ethernet needs a /64"),
                            ("nope", "mag.assignment.prefixes.mn1: ")):
            e = self.assertRaises(ConfigError, self.build, {"interface": "acc0"},
                                  {"prefixes": {"mn1": value}})
            self.assertIn(text, str(e))
        e = self.assertRaises(ConfigError, self.build, {"interface": "acc0"},
                              {"prefixes": {"m" * 65: "2001:db8:1:5::/64"}})
        self.assertEqual(str(e), f"mag.assignment.prefixes: the MN identifier {'m' * 65!r} "
                                 "is 65 octets; 1..64 are allowed")

    def test_errors(self):
        for access, text in [
                (None, "mag.assignment.strategy: 'prefix' sends each mobile its own Router "
                       "Advertisements; it needs [mag.access]"),
                ({"interface": "acc0", "prefix": "2001:db8:1::/64"},
                 "mag.access.prefix: the 'prefix' strategy gives each mobile a prefix of its "
                 "own; leave out the shared prefix (it would be advertised to all)"),
                ({"interface": "acc0", "advertise": False},
                 "mag.access.advertise: the 'prefix' strategy advertises each mobile's "
                 "prefix; it cannot be false")]:
            e = self.assertRaises(ConfigError, self.build, access)
            self.assertEqual(str(e), text)

    def test_othersNeedTheSharedPrefix(self):
        """slaac learns addresses in the shared prefix: refused without one."""
        link = AccessLink(MemoryReactorClock(),
                          AccessConfig.fromTable(Table({"interface": "acc0"}, "mag.access")),
                          FakeAccessSystem())
        table = Table({"strategy": "slaac"}, "mag.assignment")
        table.string("strategy", required=True)
        e = self.assertRaises(ConfigError, strategies.create, "slaac", table,
                              "mag.assignment.strategy", reactor=None, access=link)
        self.assertEqual(str(e), "mag.access.prefix: the 'slaac' strategy learns addresses "
                                 "in the shared prefix the MAG advertises; it is required")



class ReanchorServiceTests(SynchronousTestCase):
    """
    The MAG service after REANCHORED (draft 4.4): both prefixes in the data
    plane, each to its LMA; the RA carries the new prefix and the deprecated
    old one; the attach-to-bound histogram counts the attachment once; the
    old prefix released when the data plane saw it unused.
    """

    def test_reanchored(self):
        from netlmm.core.mag import MagCore
        from netlmm.dataplane.memory import MemoryDataPlane
        from netlmm.service.mag import MagService
        from netlmm.wire.control import Notification, Result
        lma1, lma2 = IPv6Address("2001:db8:ff::99"), IPv6Address("2001:db8:fe::99")
        reactor = MemoryReactorClock()
        system = FakeAccessSystem()
        link = AccessLink(reactor, perMnConfig(), system)
        plane = MemoryDataPlane()
        used = {}
        plane.lastUsed = lambda home: used.setdefault(home, reactor.seconds())
        core = MagCore("2001:db8:ff::1", lma1, oldLifetime=600, idleRelease=30)
        mag = MagService(reactor, core, ("::1", 1), PrefixAssignment(reactor, link), plane)
        mag.enableMetrics()
        mag.strategy.start(mag)
        self.addCleanup(mag.strategy.stop)
        mnId = macText(MAC_A).encode()
        mag.attached(AttachmentEvent(mnId, linkLayer=macText(MAC_A)))
        [trigger] = mag.core.requests()
        mag.feed(mag.core.receiveNotification, Notification(
            trigger.transaction, Result.SUCCESS, mnId, prefix=HNP_A))
        reactor.advance(10)
        del system.sockets[1].sent[:]
        mag.feed(mag.core.receiveNotification, Notification(
            0, Result.REANCHORED, mnId, prefix=HNP_B, lma=lma2))
        self.assertEqual(plane.tunnels, {HNP_A: lma1, HNP_B: lma2})
        [(frame, ra, _)] = frames(system)
        self.assertEqual([(p.prefix, p.validLifetime, p.preferredLifetime)
                          for p in ra.prefixes], [(HNP_B, 86400, 14400), (HNP_A, 600, 0)])
        self.assertEqual(frame.destinationMac, MAC_A)
        self.assertEqual(sum(mag.attachToBound.counts), 1)
        # Unused since the move: released 30 s later (tunnel down, Detach).
        self.assertEqual(mag.core.nextTimer(), 40)
        reactor.advance(30)
        mag.feed(mag.core.handleTimer)
        self.assertEqual(plane.tunnels, {HNP_B: lma2})
        [detach] = mag.core.requests()
        self.assertEqual((type(detach).__name__, detach.prefix), ("Detach", HNP_A))
