"""
Tests for `netlmm mn`'s parts without root (L{netlmm.mobile}): the care-of
address chosen from rtnetlink address events, and the mobile service with a
fake signalling port and tunnel, fake time, RFC 4285 on, talking to a real
GMA core; and the config of L{netlmm.tap.mn}.
"""

import os
import socket
import tempfile
from ipaddress import IPv6Address

from pyroute2.netlink import NLMSG_DONE
from pyroute2.netlink.rtnl import RTM_DELADDR, RTM_NEWADDR, RTM_NEWLINK
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from netlmm.core.effects import SendToMobile
from netlmm.core.gma import GmaCore
from netlmm.core.mn import MobileCore, MobileState
from netlmm.lab.fakes import FakeAccessSystem
from netlmm.mobile import (
    IFA_F_DEPRECATED, IFA_F_HOMEADDRESS, IFA_F_TENTATIVE, AddressWatcher, MobileService)
from netlmm.security.auth import SecurityAssociation
from netlmm.security.guard import LmaGuard, PmipGuard
from netlmm.security.keystore import KeyStore
from netlmm.tap import mn as tap
from netlmm.wire import mh

HOA = IPv6Address("2001:db8:100::10")
GMA = IPv6Address("2001:db8:ff::1")
COA1 = IPv6Address("2001:db8:1::10")
COA2 = IPv6Address("2001:db8:2::10")
MN1 = b"mn1@example.net"
SA = SecurityAssociation(4000, b"m" * 20, mnId=MN1)


def link(index, name):
    m = ifinfmsg()
    m["header"]["type"] = RTM_NEWLINK
    m["family"] = socket.AF_UNSPEC
    m["index"] = index
    m["attrs"] = [("IFLA_IFNAME", name)]
    return m


def address(index, text, flags=0, scope=0, deleted=False):
    m = ifaddrmsg()
    m["header"]["type"] = RTM_DELADDR if deleted else RTM_NEWADDR
    m["family"] = socket.AF_INET6
    m["index"] = index
    m["scope"] = scope
    m["flags"] = 0
    m["attrs"] = [("IFA_ADDRESS", str(text)), ("IFA_FLAGS", flags)]
    return m


def done():
    m = ifinfmsg()
    m["header"]["type"] = NLMSG_DONE
    return m


class AddressWatcherTests(SynchronousTestCase):

    def setUp(self):
        self.changes = []
        self.watcher = AddressWatcher(MemoryReactorClock(), self.changes.append, exclude=("mip6tnl0",),
                                      system=FakeAccessSystem())
        self.ready = []
        self.watcher.start().addCallback(self.ready.append)
        for msg in (link(1, "lo"), link(2, "eth0"), link(3, "mip6tnl0"), done(),
                    address(2, "2001:db8:1::10"), address(1, "::1", scope=254), done()):
            self.watcher.handle(msg)

    def test_dumpGivesTheAddress(self):
        """After the dumps: the global address of eth0, announced once."""
        self.assertEqual(self.ready, [self.watcher])
        self.assertEqual(self.changes, [COA1])

    def test_newestWins(self):
        """A new address (make-before-break): it; the old gone: unchanged."""
        self.watcher.handle(address(2, COA2))
        self.watcher.handle(address(2, COA1, deleted=True))
        self.assertEqual(self.changes, [COA1, COA2])

    def test_fallsBackAndLoses(self):
        self.watcher.handle(address(2, COA2))
        self.watcher.handle(address(2, COA2, deleted=True))
        self.watcher.handle(address(2, COA1, deleted=True))
        self.assertEqual(self.changes, [COA1, COA2, COA1, None])

    def test_unusableIgnored(self):
        """Tentative, deprecated, home addresses, the tunnel's, link-local: not care-of."""
        for msg in (address(2, COA2, IFA_F_TENTATIVE), address(2, "2001:db8:3::1",
                    IFA_F_DEPRECATED), address(3, "2001:db8:4::1"),
                    address(2, HOA, IFA_F_HOMEADDRESS), address(2, "fe80::1", scope=253)):
            self.watcher.handle(msg)
        self.assertEqual(self.changes, [COA1])
        # The tentative one becomes usable when DAD is done.
        self.watcher.handle(address(2, COA2))
        self.assertEqual(self.changes, [COA1, COA2])

    def test_interfaceGone(self):
        from pyroute2.netlink.rtnl import RTM_DELLINK
        m = link(2, "eth0")
        m["header"]["type"] = RTM_DELLINK
        self.watcher.handle(m)
        self.assertEqual(self.changes, [COA1, None])

    def test_onlyConfiguredInterfaces(self):
        changes = []
        w = AddressWatcher(MemoryReactorClock(), changes.append, interfaces=("eth1",),
                           system=FakeAccessSystem())
        w.start()
        for msg in (link(2, "eth0"), link(4, "eth1"), done(), address(2, COA1), done(),
                    address(4, COA2)):
            w.handle(msg)
        self.assertEqual(changes, [COA2])


class FakePort:
    def __init__(self):
        self.sent = []
        self.handler = None
        self.listening = False

    def startListening(self):
        self.listening = True

    def stopListening(self):
        self.listening = False

    def sendToHomeAgent(self, message, homeAgent, careOf, home, octets=None):
        # What the security layer signed goes as it encoded it, once.
        if octets is not None and octets != mh.encodeMessage(message):
            raise AssertionError(f"signed octets are not {message!r}")
        self.sent.append((message, homeAgent, careOf, home))


class FakeWatcher:
    changed = None

    def start(self):
        self.started = True

    def stop(self):
        self.started = False


class FakeTunnel:
    def __init__(self):
        self.calls = []

    def start(self):
        self.calls.append("start")

    def stop(self):
        self.calls.append("stop")

    def set(self, home, homeAgent, careOf):
        self.calls.append((home, homeAgent, careOf))


class MobileServiceTests(SynchronousTestCase):
    """The mobile service against a real GMA core and LMA guard, by hand."""

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.port, self.watcher, self.tunnel = FakePort(), FakeWatcher(), FakeTunnel()
        self.core = MobileCore(MN1, HOA, GMA, lifetime=300, sequence=10)
        self.service = MobileService(self.clock, self.core, self.port, self.watcher,
                                     self.tunnel, security=PmipGuard(KeyStore([SA])))
        self.service.startService()
        self.gma = GmaCore("2001:db8:100::/64", {MN1: [HOA]})
        self.gmaGuard = LmaGuard(KeyStore([SA]))

    def gmaAnswers(self, forge=False):
        """Hand each BU sent to the GMA core (through its guard), and its BA back."""
        sent, self.port.sent = self.port.sent, []
        for message, homeAgent, careOf, home in sent:
            raw = mh.encodeMessage(message, home, homeAgent)
            bu = mh.decodeMessage(raw, home, homeAgent)
            source = careOf or home
            verdict = self.gmaGuard.check(bu, raw, source, self.clock.seconds(),
                                          coaHoa=(source, home))
            self.assertTrue(verdict.ok, verdict.reason)
            for e in self.gma.receive(bu, source, home if careOf else None, MN1,
                                      self.clock.seconds()):
                if type(e) is not SendToMobile:
                    continue
                ba = self.gmaGuard.answer(e.message, verdict, self.clock.seconds(),
                                          (e.careOf, e.home or e.careOf))
                if forge:
                    ba = ba._replace(status=mh.Status.NOT_HOME_AGENT_FOR_MN)
                raw = mh.encodeMessage(ba, homeAgent, home)
                self.port.handler(mh.decodeMessage(raw), raw, homeAgent, e.home,
                                  e.careOf, self.clock.seconds())

    def test_registerSignedAndVerified(self):
        """
        A care-of address: tunnel, a signed BU, the GMA's signed BA binds, and
        the binding is logged with the time since the address appeared (the
        labs wait for that line).
        """
        from twisted.logger import capturedLogs
        self.watcher.changed(COA1)
        self.assertEqual(self.tunnel.calls, ["start", (HOA, GMA, COA1)])
        ((bu, homeAgent, careOf, home),) = self.port.sent
        self.assertIsNotNone(bu.option(mh.MobilityMessageAuthentication))
        self.assertEqual((homeAgent, careOf, home), (GMA, COA1, HOA))
        self.clock.advance(0.25)
        with capturedLogs() as events:
            self.gmaAnswers()
        self.assertIs(self.core.state, MobileState.BOUND)
        self.assertEqual(self.gma.binding(HOA).careOf, COA1)
        (bound,) = [e for e in events if "bound" in e.get("log_format", "")]
        self.assertEqual((bound["careOf"], bound["ms"]), (COA1, 250.0))

    def test_forgedAnswerDropped(self):
        """A BA whose authenticator does not verify is dropped; retransmission goes on."""
        self.watcher.changed(COA1)
        self.gmaAnswers(forge=True)
        self.assertIs(self.core.state, MobileState.REGISTERING)
        self.assertEqual(self.service.dropped, 1)
        self.clock.advance(1.5)
        self.assertEqual(len(self.port.sent), 1)

    def test_forgedAnswersBounded(self):
        """A flood of unauthenticated BAs: each dropped and counted, 3 logged, one summary."""
        from netlmm.test.test_floods import Lines
        self.watcher.changed(COA1)
        lines = Lines(self)
        ba = mh.BindingAcknowledgement(0, 0, 1, 75)
        raw = mh.encodeMessage(ba, GMA, HOA)
        for _ in range(200):
            self.port.handler(mh.decodeMessage(raw), raw, GMA, HOA, COA1, self.clock.seconds())
        self.assertEqual(self.service.dropped, 200)
        self.assertIs(self.core.state, MobileState.REGISTERING)
        self.assertEqual(len(lines.texts(f"MN: BA from {GMA} dropped: ")), 3)
        self.clock.advance(60)
        self.assertEqual(lines.texts("more like this"),
                         [f"197 more like this from {GMA} suppressed in the last 60 s: "
                          "BA dropped"])

    def test_stopDeregistersFirst(self):
        """Stop: a deregistration, and the service stops once it is answered."""
        self.watcher.changed(COA1)
        self.gmaAnswers()
        done = []
        self.service.stopService().addCallback(done.append)
        self.assertEqual(done, [])
        ((bu, _, _, _),) = self.port.sent
        self.assertEqual(bu.lifetime, 0)
        self.gmaAnswers()
        self.clock.advance(0)
        self.assertEqual(len(done), 1)
        self.assertIsNone(self.gma.binding(HOA))
        self.assertEqual(self.tunnel.calls[-2:], [(HOA, GMA, None), "stop"])
        self.assertFalse(self.port.listening)


class TapTests(SynchronousTestCase):

    BASE = """
[mn]
id = "mn1@example.net"
home_address = "2001:db8:100::10"
home_agent = "2001:db8:ff::1"
"""

    def options(self, text):
        directory = tempfile.mkdtemp()
        path = os.path.join(directory, "mn.toml")
        with open(path, "w") as f:
            f.write(text)
        o = tap.Options()
        o.parseOptions(["--config", path])
        return o

    def test_example(self):
        from netlmm.test.test_daemons import examples
        os.chmod(examples() / "keys.toml", 0o600)
        o = tap.Options()
        o.parseOptions(["--config", str(examples() / "mn.toml")])
        self.assertEqual(o.built["core"]["mnId"], MN1)
        self.assertEqual(o.built["tunnel"]["name"], "mip6tnl0")

    def test_defaults(self):
        b = self.options(self.BASE).built
        self.assertEqual((b["core"]["lifetime"], b["interfaces"], b["security"]),
                         (300, [], None))

    def test_errorsNameTheKey(self):
        cases = [
            (self.BASE.replace('id = "mn1@example.net"\n', ""), "mn.id: missing"),
            (self.BASE + 'home_prefix = "2001:db8:200::/64"\n', "mn.home_prefix: .* does not hold"),
            (self.BASE + 'lifetime = 2\n', "mn.lifetime"),
            (self.BASE + 'interfaces = "eth0"\n', "mn.interfaces: expected a list"),
            (self.BASE + 'tunnel = "a/b"\n', "mn.tunnel"),
            (self.BASE.replace('"mn1@example.net"', '""'), "mn.id"),
        ]
        for text, error in cases:
            with self.assertRaisesRegex(usage.UsageError, error):
                self.options(text)


class HomeTunnelTests(SynchronousTestCase):
    """The mobile's ip6ip6 device over a fake netlink (the real one: test_gma_netns)."""

    def setUp(self):
        from netlmm.dataplane import _netlink as nl
        from netlmm.lab.fakes import FakeNetlink
        from netlmm.mobile import HomeTunnel
        self.fake = FakeNetlink()
        self.tunnel = HomeTunnel(netlink=lambda: self.fake, runner=nl.ImmediateRunner())
        self.successResultOf(self.tunnel.start())

    def test_upMoveDown(self):
        """
        Up: an ip6ip6 device from the care-of address to the GMA holding the
        home address (home, nodad), a default route in its table and a rule
        from the home address; a move changes only the local end.
        """
        from netlmm.mobile import IFA_F_NODAD
        self.successResultOf(self.tunnel.set(HOA, GMA, COA1))
        device = self.fake.links["mip6tnl0"]
        self.assertEqual((device["kind"], device["ip6tnl_local"], device["ip6tnl_remote"],
                          device["ip6tnl_proto"], device["state"], device["mtu"]),
                         ("ip6tnl", str(COA1), str(GMA), 41, "up", 1400))
        self.assertEqual([(a["index"], a["address"], a["prefixlen"])
                          for a in self.fake.addresses], [(device["index"], str(HOA), 128)])
        (add,) = [c for c in self.fake.calls if c[0] == "addr"]
        self.assertEqual(add[2]["flags"], IFA_F_HOMEADDRESS | IFA_F_NODAD)
        (route,) = self.fake.findRoutes("::/0", table=5216)
        self.assertEqual(route["oif"], device["index"])
        (rule,) = [r for r in self.fake.findRules() if r.get("FRA_PROTOCOL") == 213]
        self.assertEqual((rule["priority"], rule["FRA_TABLE"]), (100, 5216))
        self.successResultOf(self.tunnel.set(HOA, GMA, COA2))
        self.assertEqual(self.fake.links["mip6tnl0"]["ip6tnl_local"], str(COA2))
        self.assertEqual(self.fake.links["mip6tnl0"]["index"], device["index"])
        self.successResultOf(self.tunnel.set(HOA, GMA, None))
        self.assertNotIn("mip6tnl0", self.fake.links)
        self.assertEqual([r for r in self.fake.findRules() if r.get("FRA_PROTOCOL") == 213], [])
