"""
Tests for the GMA daemon: L{netlmm.service.gma} over a fake signalling port
and the memory data plane with fake time (RFC 4285 on), L{netlmm.tap.gma}'s
config checking and --help, and L{netlmm.transport.mip6}'s reading of the
kernel's ancillary data.
"""

import os
import socket
import tempfile
from ipaddress import IPv6Address

from twisted.internet.task import Clock
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from netlmm.core.gma import GmaCore
from netlmm.dataplane.memory import MemoryDataPlane
from netlmm.security import auth
from netlmm.security.auth import SecurityAssociation
from netlmm.security.guard import LmaGuard, PmipGuard
from netlmm.security.keystore import KeyStore
from netlmm.security.replay import toNtp
from netlmm.service.gma import GmaService
from netlmm.tap import gma as tap
from netlmm.transport.mip6 import MIP6Port, Xfrm
from netlmm.wire import mh, mip6
from netlmm.wire.mh import Status

HOA = IPv6Address("2001:db8:100::10")
HOA2 = IPv6Address("2001:db8:100::20")
GMA = IPv6Address("2001:db8:ff::1")
COA1 = IPv6Address("2001:db8:1::10")
COA2 = IPv6Address("2001:db8:2::10")
STRAY = IPv6Address("2001:db8:bad::10")
MN1 = b"mn1@example.net"
MN2 = b"mn2@example.net"
SA1 = SecurityAssociation(3000, b"k" * 20, mnId=MN1)
SA2 = SecurityAssociation(3001, b"j" * 20, mnId=MN2)


class FakePort:
    """What the service needs of a L{MIP6Port}: sends are recorded."""

    address = GMA

    def __init__(self):
        self.sent = []
        self.handler = None
        self.listening = False

    def startListening(self):
        self.listening = True

    def stopListening(self):
        self.listening = False

    def sendToMobile(self, message, careOf, home, octets=None):
        # What the security layer signed goes as it encoded it, once.
        if octets is not None and octets != mh.encodeMessage(message):
            raise AssertionError(f"signed octets are not {message!r}")
        self.sent.append((message, careOf, home))


class Mobile:
    """Signs Binding Updates as `netlmm mn` does (PmipGuard, packet addresses)."""

    def __init__(self, clock, sa=SA1, mnId=MN1, home=HOA):
        self.clock = clock
        self.guard = PmipGuard(KeyStore([sa]))
        self.mnId = mnId
        self.home = home
        self.sequence = 0

    def bu(self, careOf, lifetime=75, sequence=None):
        if sequence is None:
            self.sequence += 1
            sequence = self.sequence
        message = mh.BindingUpdate(sequence, mh.BU_A | mh.BU_H, lifetime,
                                   [mh.MobileNodeIdentifier(self.mnId)])
        signed = self.guard.protect(message, self.mnId, self.clock.seconds(),
                                    (careOf, self.home))
        raw = mh.encodeMessage(signed, self.home, GMA)
        return mh.decodeMessage(raw), raw


class GmaServiceTests(SynchronousTestCase):

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.core = GmaCore("2001:db8:100::/64", {MN1: [HOA], MN2: [HOA2]},
                            careOfNetworks=["2001:db8:1::/64", "2001:db8:2::/64"])
        self.port = FakePort()
        self.dataplane = MemoryDataPlane()
        self.service = GmaService(self.clock, self.core, self.port, self.dataplane,
                                  security=LmaGuard(KeyStore([SA1, SA2])))
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.mobile = Mobile(self.clock)

    def deliver(self, bu, raw, careOf=COA1, home=HOA):
        self.port.sent.clear()
        self.port.handler(bu, raw, careOf, home, GMA, self.clock.seconds())
        (answer,) = self.port.sent
        return answer

    def assertSigned(self, answer, sa=SA1):
        message, careOf, home = answer
        raw = mh.encodeMessage(message, GMA, home or careOf)
        auth.verify(message, raw, sa, (careOf, home or careOf))
        self.assertIsNotNone(message.option(mh.MobilityMessageReplayProtection))

    def test_registerAndMove(self):
        """
        A signed BU binds the home address: the route is in the data plane,
        the BA goes to the care-of address with the home address for its
        routing header, signed with the mobile's SA; a move re-routes.
        """
        message, careOf, home = answer = self.deliver(*self.mobile.bu(COA1))
        self.assertEqual((message.status, careOf, home), (Status.ACCEPTED, COA1, HOA))
        self.assertSigned(answer)
        self.assertEqual(self.dataplane.routes, {HOA: COA1})
        self.clock.advance(1)
        message, careOf, _ = self.deliver(*self.mobile.bu(COA2), careOf=COA2)
        self.assertEqual((message.status, careOf), (Status.ACCEPTED, COA2))
        self.assertEqual(self.dataplane.routes, {HOA: COA2})
        self.assertEqual(self.service.bindingTable()[1].split()[:3],
                         [str(HOA), MN1.decode(), str(COA2)])

    def test_expiryRemovesRoute(self):
        self.deliver(*self.mobile.bu(COA1, lifetime=2))
        self.clock.advance(8)
        self.assertEqual(self.dataplane.routes, {})

    def assertRefusedOnce(self, answer, status, routes=None):
        message, _, _ = answer
        self.assertEqual(message.status, status)
        self.assertEqual(self.dataplane.routes, routes or {})
        self.assertEqual(self.service.refusals, 1)

    def test_unauthenticated(self):
        """A BU without authentication: 146, unsigned, nothing bound."""
        bu = mh.BindingUpdate(1, mh.BU_A | mh.BU_H, 75, [mh.MobileNodeIdentifier(MN1)])
        raw = mh.encodeMessage(bu)
        answer = self.deliver(bu, raw)
        self.assertRefusedOnce(answer, Status.MIPV6_AUTH_FAIL)
        self.assertIsNone(answer[0].option(mh.MobilityMessageAuthentication))

    def test_forgedCareOf(self):
        """
        A BU signed for one care-of address arriving from another (the
        authenticator covers the care-of address): 146.
        """
        answer = self.deliver(*self.mobile.bu(COA1), careOf=COA2)
        self.assertRefusedOnce(answer, Status.MIPV6_AUTH_FAIL)

    def test_replayed(self):
        """The same BU twice: the second one is refused 144, signed, nothing changes."""
        bu, raw = self.mobile.bu(COA1)
        self.deliver(bu, raw)
        self.dataplane.routes[HOA] = COA1
        self.clock.advance(1)
        answer = self.deliver(bu, raw)
        self.assertRefusedOnce(answer, Status.MIPV6_ID_MISMATCH, {HOA: COA1})
        self.assertSigned(answer)

    def assertBindingKept(self, answer, status):
        """Refused with C{status}, signed or not, and HOA still bound at COA1."""
        self.assertEqual(answer[0].status, status)
        self.assertEqual(self.dataplane.routes, {HOA: COA1})
        self.assertEqual(self.service.bindingTable()[1].split()[:3],
                         [str(HOA), MN1.decode(), str(COA1)])
        self.assertEqual(self.service.refusals, 1)

    def bound(self):
        """The mobile bound at COA1, one second ago."""
        self.assertEqual(self.deliver(*self.mobile.bu(COA1))[0].status, Status.ACCEPTED)
        self.clock.advance(1)

    def test_unauthenticatedCannotMove(self):
        """
        An unsigned BU for a bound home address from another care-of address
        (a hijack of the home address, issue 10 bad input): 146, the binding
        stays where its mobile put it.
        """
        self.bound()
        bu = mh.BindingUpdate(9, mh.BU_A | mh.BU_H, 75, [mh.MobileNodeIdentifier(MN1)])
        answer = self.deliver(bu, mh.encodeMessage(bu), careOf=COA2)
        self.assertBindingKept(answer, Status.MIPV6_AUTH_FAIL)

    def test_replayedMoveRefused(self):
        """
        A BU the mobile sent from COA2 earlier, replayed after it moved back
        to COA1 (an attacker's way to pull its traffic): 144, still at COA1.
        """
        old = self.mobile.bu(COA2)
        self.deliver(*old, careOf=COA2)
        self.clock.advance(1)
        self.bound()
        self.service.refusals = 0
        self.assertBindingKept(self.deliver(*old, careOf=COA2), Status.MIPV6_ID_MISMATCH)

    def test_careOfOutsideCannotMove(self):
        """A signed BU from a care-of address outside every domain: 129, still at COA1."""
        self.bound()
        answer = self.deliver(*self.mobile.bu(STRAY), careOf=STRAY)
        self.assertBindingKept(answer, Status.ADMINISTRATIVELY_PROHIBITED)
        self.assertSigned(answer)

    def test_otherHomeCannotMove(self):
        """MN2's signed BU naming MN1's home address: 133, MN1 still at COA1."""
        self.bound()
        mobile = Mobile(self.clock, sa=SA2, mnId=MN2, home=HOA)
        answer = self.deliver(*mobile.bu(COA2), careOf=COA2)
        self.assertBindingKept(answer, Status.NOT_HOME_AGENT_FOR_MN)

    def test_otherMobilesSa(self):
        """MN2's key for MN1's identity: 129."""
        mobile = Mobile(self.clock, sa=SA2._replace(mnId=MN1), mnId=MN1)
        self.assertRefusedOnce(self.deliver(*mobile.bu(COA1)),
                               Status.ADMINISTRATIVELY_PROHIBITED)

    def test_homeNotServed(self):
        """A home address of another mobile: 133, signed, logged once."""
        mobile = Mobile(self.clock, home=HOA2)
        answer = self.deliver(*mobile.bu(COA1), home=HOA2)
        self.assertRefusedOnce(answer, Status.NOT_HOME_AGENT_FOR_MN)
        self.assertSigned(answer)
        outside = IPv6Address("2001:db8:200::1")
        self.clock.advance(1)
        mobile = Mobile(self.clock, home=outside)
        self.service.refusals = 0
        self.assertRefusedOnce(self.deliver(*mobile.bu(COA1), home=outside),
                               Status.NOT_HOME_SUBNET)

    def test_careOfOutside(self):
        """A care-of address outside every allowed network: 129."""
        answer = self.deliver(*self.mobile.bu(STRAY), careOf=STRAY)
        self.assertRefusedOnce(answer, Status.ADMINISTRATIVELY_PROHIBITED)
        self.assertSigned(answer)

    def test_refusalsBounded(self):
        """
        A flood of unauthenticated BUs from one care-of address: each is
        answered (146) and counted, 3 are logged, then one summary a minute.
        """
        from netlmm.test.test_floods import Lines
        lines = Lines(self)
        bu = mh.BindingUpdate(1, mh.BU_A | mh.BU_H, 75, [mh.MobileNodeIdentifier(MN1)])
        raw = mh.encodeMessage(bu)
        for _ in range(500):
            self.assertEqual(self.deliver(bu, raw)[0].status, Status.MIPV6_AUTH_FAIL)
        self.assertEqual(self.service.refusals, 500)
        self.assertEqual(len(lines.texts("GMA: BU seq 1 for")), 3)
        self.clock.advance(60)
        self.assertEqual(lines.texts("more like this"),
                         [f"497 more like this from {COA1} suppressed in the last 60 s: "
                          "MIPV6_AUTH_FAIL"])
        self.assertEqual(len(lines), 4)

    def test_dataPlaneFailureNamed(self):
        """A data plane that cannot start stops the GMA with one line naming it."""
        from twisted.internet import defer
        from netlmm.daemon import StartupError
        from netlmm.test.test_startup import NetlinkError
        self.service.stopService()
        dataplane = MemoryDataPlane()
        dataplane.start = lambda: defer.fail(NetlinkError(95, "Operation not supported"))
        service = GmaService(self.clock, self.core, FakePort(), dataplane)
        failure = self.failureResultOf(service.startService(), StartupError)
        self.assertEqual(str(failure.value), "GMA: data plane 'memory': the kernel refused a "
                         "netlink request: operation not supported")

    def test_stopRemovesRoutes(self):
        self.deliver(*self.mobile.bu(COA1))
        self.service.stopService()
        self.assertFalse(self.port.listening)
        self.assertEqual(self.dataplane.routes, {})


class PortTests(SynchronousTestCase):
    """L{MIP6Port} reads the kernel's swapped addresses back as on the wire."""

    def setUp(self):
        self.got = []
        self.port = MIP6Port(Clock(), lambda *a: self.got.append(a[:5]), GMA)

    def test_bindingUpdateWithHomeAddressOption(self):
        """The source is the home address, the option holds the care-of address."""
        raw = mh.encodeMessage(mh.BindingUpdate(1, mh.BU_A | mh.BU_H, 1), HOA, GMA)
        self.port.datagram(raw, [(socket.IPPROTO_IPV6, socket.IPV6_DSTOPTS,
                                  mip6.destinationOptions(COA1, 135)),
                                 (socket.IPPROTO_IPV6, socket.IPV6_PKTINFO,
                                  GMA.packed + b"\0" * 4)], str(HOA), 0.0)
        ((message, data, careOf, home, destination),) = self.got
        self.assertEqual((careOf, home, destination), (COA1, HOA, GMA))

    def test_acknowledgementThroughRoutingHeader(self):
        """
        At the mobile: addressed to the home address, the care-of address in
        the routing header; the checksum is checked over the home address.
        """
        port = MIP6Port(Clock(), lambda *a: self.got.append(a[:5]), mobile=True)
        ba = mh.BindingAcknowledgement(0, 0, 1, 1)
        ancillary = [(socket.IPPROTO_IPV6, socket.IPV6_RTHDR, mip6.routingHeader2(COA1, 135)),
                     (socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, HOA.packed + b"\0" * 4)]
        port.datagram(mh.encodeMessage(ba, GMA, HOA), ancillary, str(GMA), 0.0)
        ((message, data, source, home, destination),) = self.got
        self.assertEqual((message, source, home, destination), (ba, GMA, HOA, COA1))
        port.datagram(mh.encodeMessage(ba, GMA, COA1), ancillary, str(GMA), 0.0)
        self.assertEqual((len(self.got), port.counters["malformed"]), (1, 1))

    def test_signedOctetsSentAsTheyAre(self):
        """
        Octets signed already go out as they are: to the mobile untouched
        (the kernel fills the checksum), to the home agent with the checksum
        over the home address, as an encoding would have them.
        """
        sent = []

        class Socket:
            def sendmsg(self, buffers, ancillary, flags, address):
                sent.append(b"".join(buffers))
        bu = mh.BindingUpdate(1, mh.BU_A | mh.BU_H, 1)
        octets = mh.encodeMessage(bu)
        self.port.socket = Socket()
        self.port.sendToMobile(bu, COA1, HOA, octets=octets)
        self.port.sendToHomeAgent(bu, GMA, COA1, HOA, octets=octets)
        self.assertEqual(sent, [octets, mh.encodeMessage(bu, HOA, GMA)])

    def test_malformedDropped(self):
        self.port.datagram(b"\x3b\x01\x05", [], str(HOA), 0.0)
        self.assertEqual((self.got, self.port.counters["malformed"]), ([], 1))

    def test_malformedFloodBounded(self):
        """13,000 malformed datagrams from one source: 3 lines, then one summary."""
        from netlmm.test.test_floods import Lines
        lines = Lines(self)
        for _ in range(13000):
            self.port.datagram(b"\x3b\x01\x05", [], str(HOA), 0.0)
        self.assertEqual(self.port.counters["malformed"], 13000)
        self.assertEqual(len(lines.texts(f"malformed Mobility Header from {HOA}: ")), 3)
        self.port.reactor.advance(60)
        self.assertEqual(lines.texts("more like this"),
                         [f"12997 more like this from {HOA} suppressed in the last 60 s: "
                          "malformed Mobility Header"])
        self.assertEqual(len(lines), 4)


class XfrmTests(SynchronousTestCase):

    def test_installRemove(self):
        """Leftovers are deleted first; a refusal undoes what was added."""
        calls = []

        def run(argv, check=True):
            calls.append((argv[2], argv[1]))
            if check and argv[1] == "policy":
                from netlmm.transport.mip6 import XfrmError
                raise XfrmError("no")
        x = Xfrm(run)
        from netlmm.transport.mip6 import XfrmError
        with self.assertRaises(XfrmError):
            x.install(Xfrm.homeAgentCommands())
        self.assertEqual(calls, [("delete", "state"), ("delete", "policy"),
                                 ("add", "state"), ("add", "policy"), ("delete", "state")])

    def test_mobileCommands(self):
        (state, _), (policy, _) = Xfrm.mobileCommands(HOA)
        self.assertIn("route2", state)
        self.assertIn(f"{HOA}/128", policy)


class TapTests(SynchronousTestCase):

    def options(self, text):
        directory = tempfile.mkdtemp()
        path = os.path.join(directory, "gma.toml")
        with open(path, "w") as f:
            f.write(text)
        o = tap.Options()
        o.parseOptions(["--config", path])
        return o

    BASE = """
[gma]
address = "2001:db8:ff::1"
home_prefix = "2001:db8:100::/64"
[gma.mobiles]
"mn1@example.net" = "2001:db8:100::10"
[gma.dataplane]
kind = "memory"
"""

    def test_example(self):
        """The shipped example config is valid."""
        from netlmm.test.test_daemons import examples
        os.chmod(examples() / "keys.toml", 0o600)
        o = tap.Options()
        o.parseOptions(["--config", str(examples() / "gma.toml")])
        core = o.built["core"]
        self.assertEqual(core["mobiles"][b"mn2@example.net"],
                         [IPv6Address("2001:db8:100::20"), IPv6Address("2001:db8:100::21")])
        self.assertEqual(o.built["security"]["keys"].forMobile(b"mn1@example.net").spi, 1000)
        [service] = tap.makeService(o).ordered
        self.assertEqual(service.core.homePrefix.compressed, "2001:db8:100::/64")

    def test_help(self):
        text = tap.Options().getUsage()
        for key in ("address", "home_prefix", "care_of_networks", "[gma.mobiles]",
                    "[gma.security]", "[gma.dataplane]", "state_file"):
            self.assertIn(key, text)

    def test_stateFile(self):
        """
        state_file (relative to the config file) is the GMA's store: its
        bindings are loaded in makeService; a bad record stops the start
        with one line naming the file and the record.
        """
        from twisted.internet import reactor

        from netlmm.core.effects import Persist
        from netlmm.store import SqliteStore
        o = self.options(self.BASE.replace("[gma.mobiles]",
                                           'state_file = "gma-state.db"\n[gma.mobiles]'))
        path = os.path.join(o.configDir, "gma-state.db")
        home = IPv6Address("2001:db8:100::10")
        record = {"home": str(home), "mn": b"mn1@example.net".hex(),
                  "careOf": "2001:db8:1::99", "sequence": 5, "lifetime": 3600,
                  "expiry": reactor.seconds() + 3000}
        store = SqliteStore(path, "gma-bindings", reactor)
        store.load()
        store.rewrite([Persist(home.packed, record)])
        store._release()
        [service] = tap.makeService(o).ordered
        self.addCleanup(service.store._release)
        self.assertEqual(service.core.binding(home).sequence, 5)
        store = SqliteStore(path, "gma-bindings", reactor)
        store.load()
        store.rewrite([Persist(home.packed, dict(record, careOf="zzz"))])
        store._release()
        with self.assertRaises(SystemExit) as e:
            tap.makeService(o)
        self.assertEqual(str(e.exception),
                         f"netlmm-gma cannot start: {path}: bad record "
                         "'2001:db8:100::10': 'careOf': 'zzz' is not an IPv6 address")

    def test_errorsNameTheKey(self):
        cases = [
            (self.BASE.replace('address = "2001:db8:ff::1"\n', ""), "gma.address: missing"),
            (self.BASE.replace('"2001:db8:100::10"', '"2001:db8:200::10"'),
             "is outside the home_prefix"),
            (self.BASE.replace('"2001:db8:100::10"', '42'), "expected a home address"),
            (self.BASE + '[gma.mobiles2]\n', "mobiles2: unknown key"),
            (self.BASE.replace("[gma.mobiles]", 'care_of_networks = ["2001:db8:100::/48"]\n'
                               "[gma.mobiles]"), "gma.care_of_networks: 2001:db8:100::/48 "
                                                 "overlaps"),
            (self.BASE.replace('"mn1@example.net" = "2001:db8:100::10"\n', ""),
             "gma.mobiles: no mobiles"),
            (self.BASE + '[gma.security]\nmode = "rfc4285"\n[gma.security.radius]\n'
                         'servers = ["[::1]:1812"]\n', "gma.security.radius: keys from AAA"),
        ]
        for text, error in cases:
            with self.assertRaisesRegex(usage.UsageError, error.replace("[", r"\[")):
                self.options(text)
