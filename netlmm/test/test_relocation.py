"""
PMIP client relocation (draft E.1): a MAG moves the mobiles of a PMIP client
that failed or is drained to the next client, which registers the same homes.
"""

import hashlib
import time
from ipaddress import IPv6Address, IPv6Network

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from netlmm.access import AttachmentEvent
from netlmm.core import mag as magcore
from netlmm.core.effects import InvalidInput, SendControl
from netlmm.core.mag import MagCore
from netlmm.core.selection import ClientSelector, endpointText
from netlmm.wire.control import AddressMode, Notification, Result, Trigger

LMA = IPv6Address("2001:db8:a::1")
MAG1 = IPv6Address("2001:db8:ff::1")
MN1 = b"mn1@example.net"
PHOA = IPv6Address("2001:db8:1::100")
MAC = bytes.fromhex("020000000001")
CLIENTS = [(IPv6Address("2001:db8:b::2"), 5437), (IPv6Address("2001:db8:b::3"), 5437),
           (IPv6Address("2001:db8:b::4"), 5437)]


class RankingTests(SynchronousTestCase):
    """The order in which every MAG tries the PMIP clients for a mobile."""

    def test_firstIsTheChoice(self):
        s = ClientSelector(CLIENTS)
        for i in range(50):
            mnId = f"mn{i}".encode()
            ranking = s.ranking(mnId)
            self.assertEqual(ranking[0], s.choose(mnId))
            self.assertEqual(sorted(ranking), sorted(CLIENTS))

    def test_definition(self):
        """After the choice: the others by SHA-256(MNID, 0, '[a]:p'), highest first."""
        s = ClientSelector(CLIENTS)
        first = s.choose(MN1)
        rest = sorted((c for c in CLIENTS if c != first), reverse=True,
                      key=lambda c: hashlib.sha256(
                          MN1 + b"\0" + endpointText(c).encode()).digest())
        self.assertEqual(s.ranking(MN1), [first] + rest)

    def test_independentOfOrder(self):
        a, b = ClientSelector(CLIENTS), ClientSelector(CLIENTS[::-1])
        for i in range(50):
            mnId = f"mn{i}".encode()
            self.assertEqual(a.ranking(mnId), b.ranking(mnId))
            self.assertEqual(a.choose(mnId, {CLIENTS[0]}), b.choose(mnId, {CLIENTS[0]}))

    def test_excluded(self):
        """choose() skips excluded clients in ranking order; None when all are."""
        s = ClientSelector(CLIENTS)
        ranking = s.ranking(MN1)
        self.assertEqual(s.choose(MN1, {ranking[0]}), ranking[1])
        self.assertEqual(s.choose(MN1, {ranking[0], ranking[1]}), ranking[2])
        self.assertIsNone(s.choose(MN1, set(CLIENTS)))
        self.assertEqual(s.choose(MN1, {ranking[1]}), ranking[0])

    def test_spreadOnFailure(self):
        """One client's mobiles go to both others, not all to one."""
        s = ClientSelector(CLIENTS)
        failed = CLIENTS[0]
        counts = {}
        for i in range(300):
            mnId = f"mn{i}".encode()
            if s.choose(mnId) == failed:
                target = s.choose(mnId, {failed})
                counts[target] = counts.get(target, 0) + 1
        self.assertEqual(set(counts), set(CLIENTS[1:]))
        self.assertTrue(all(n > 20 for n in counts.values()), counts)


class MagCoreRelocateTests(SynchronousTestCase):
    """L{MagCore.relocate}: the Trigger a new PMIP client needs."""

    def bound(self, mode=AddressMode.STATIC, phoa=PHOA, prefix=None):
        core = MagCore(MAG1, LMA, ipv4=False)
        core.attach(MN1, 0, linkLayerId=MAC)
        [send] = core.addressReady(MN1, phoa, mode, 0, prefix=None)
        core.receiveNotification(Notification(
            send.message.transaction, Result.SUCCESS, MN1,
            phoa=None if mode == AddressMode.PREFIX else PHOA, prefix=prefix), 1)
        return core

    def test_sameHomes(self):
        core = self.bound()
        [send] = core.relocate(MN1, 2)
        t = send.message
        self.assertIsInstance(send, SendControl)
        self.assertEqual((type(t), t.mnId, t.phoa, t.mode, t.linkLayerId, t.magAddress),
                         (Trigger, MN1, PHOA, AddressMode.STATIC, MAC, MAG1))
        a = core.attachment(MN1)
        self.assertEqual(a.state, magcore.TRIGGERED)
        # The tunnel stays while the new client answers.
        self.assertEqual(a.tunnels, (PHOA,))

    def test_lmaAssignedKeepsItsAddress(self):
        """An LMA-assigned pHoA is named, not asked for again."""
        core = self.bound(AddressMode.LMA_ASSIGNED, phoa=None)
        [send] = core.relocate(MN1, 2)
        self.assertEqual((send.message.phoa, send.message.mode),
                         (PHOA, AddressMode.LMA_ASSIGNED))

    def test_prefix(self):
        prefix = IPv6Network("2001:db8:100:1::/64")
        core = self.bound(AddressMode.PREFIX, phoa=None, prefix=prefix)
        [send] = core.relocate(MN1, 2)
        self.assertEqual((send.message.phoa, send.message.prefix), (None, prefix))

    def test_onlyBound(self):
        core = MagCore(MAG1, LMA)
        self.assertRaises(InvalidInput, core.relocate, MN1, 0)
        core.attach(MN1, 0)
        self.assertRaises(InvalidInput, core.relocate, MN1, 0)
        self.assertEqual(core.attachment(MN1).state, magcore.ATTACHED)


def metric(service, name):
    """The value of C{service}'s metric family C{name} (one sample, no labels)."""
    for family in service.metricFamilies():
        if family.name == name:
            [sample] = family.samples
            return sample.value
    raise KeyError(name)


def _mobiles(n):
    return [(f"mn{i}@example.net".encode(), IPv6Address(f"2001:db8:1::{i + 0x100:x}"))
            for i in range(n)]


class FailoverServiceTests(TestCase):
    """A MAG, two PMIP clients and an LMA over loopback."""

    timeout = 30

    @inlineCallbacks
    def domain(self, failoverAfter=0.3):
        from netlmm.assignment.static import StaticAssignment
        from netlmm.core.lma import LmaCore
        from netlmm.core.pmip import PmipCore
        from netlmm.dataplane.memory import MemoryDataPlane
        from netlmm.lab.wait import until
        from netlmm.service.lma import LmaService
        from netlmm.service.mag import MagService
        from netlmm.service.pmip import PmipService
        LO = IPv6Address("::1")
        self.lma = LmaService(reactor, LmaCore("2001:db8:1::/64", ["::1/128"]), (LO, 0),
                              "udp", MemoryDataPlane())
        yield self.lma.startService()
        self.addCleanup(self.lma.stopService)
        self.pmips = []
        for i in range(2):
            p = PmipService(reactor, PmipCore(LO), (LO, 0), (LO, 0), "udp",
                            self.lma.port.port, ["::1/128"], name=f"PMIP{i + 1}")
            yield p.startService()
            self.addCleanup(lambda p=p: p.running and p.stopService())
            self.pmips.append(p)
        self.ports = [(LO, p.listening.getHost().port) for p in self.pmips]
        self.mag = MagService(reactor, MagCore(MAG1, LO), self.ports, StaticAssignment(),
                              MemoryDataPlane(), name="MAG1", failoverAfter=failoverAfter)
        yield self.mag.startService()
        self.addCleanup(self.mag.stopService)
        yield until(lambda: all(up.connection for up in self.mag.upstreams.values()),
                    what="the MAG's channels")

    @inlineCallbacks
    def bindAll(self, mobiles):
        from netlmm.lab.wait import until
        for mnId, phoa in mobiles:
            self.mag.attached(AttachmentEvent(mnId, str(phoa)))
        yield until(lambda: all(self.mag.core.attachment(m).state is magcore.BOUND
                                for m, _ in mobiles), what="every mobile bound")

    def holder(self, mnId):
        """The index of the PMIP client whose cache has C{mnId} bound."""
        held = [i for i, p in enumerate(self.pmips)
                if p.running and getattr(p.core.mobile(mnId), "state", None) == "BOUND"]
        return held[0] if len(held) == 1 else held

    @inlineCallbacks
    def test_lostClient(self):
        """
        PMIP1 goes: after failoverAfter its mobiles are registered through
        PMIP2 with the same addresses; PMIP2's own mobiles are untouched.
        """
        from netlmm.lab.wait import until
        yield self.domain()
        mobiles = _mobiles(20)
        yield self.bindAll(mobiles)
        first = {m for m, _ in mobiles if self.holder(m) == 0}
        self.assertTrue(0 < len(first) < len(mobiles), first)
        stopped = time.monotonic()
        yield self.pmips[0].stopService()
        yield until(lambda: all(self.holder(m) == 1 and self.mag.core.attachment(m).state
                                is magcore.BOUND for m, _ in mobiles), 10,
                    "every mobile bound through PMIP2")
        self.assertGreaterEqual(time.monotonic() - stopped, 0.3)
        self.assertEqual(self.mag.relocations, len(first))
        self.assertEqual(metric(self.mag, "netlmm_mag_relocations"), len(first))
        for mnId, phoa in mobiles:
            a = self.mag.core.attachment(mnId)
            self.assertEqual((a.state, a.phoa), (magcore.BOUND, phoa))
            self.assertEqual(self.lma.core.binding(phoa).mnId, mnId)
            self.assertEqual(self.mag.pins[mnId], self.ports[1])
        self.assertEqual(self.mag.invalidInputs, 0)

    @inlineCallbacks
    def test_backSoonEnough(self):
        """A client back within failoverAfter keeps its mobiles."""
        from netlmm.lab.wait import until
        yield self.domain(failoverAfter=30)
        mobiles = _mobiles(6)
        yield self.bindAll(mobiles)
        up = self.mag.upstreams[self.ports[0]]
        up.connection.transport.loseConnection()
        yield until(lambda: up.failover is not None, what="the failover timer")
        yield until(lambda: up.connection is not None, 10, "the reconnection")
        self.assertIsNone(up.failover)
        self.assertEqual(self.mag.relocations, 0)

    @inlineCallbacks
    def test_drain(self):
        """
        drainClient moves a live client's mobiles at once; new mobiles avoid
        it until undrained; a Notification from it about a moved mobile is
        ignored.
        """
        from netlmm.lab.wait import until
        yield self.domain(failoverAfter=None)
        mobiles = _mobiles(10)
        yield self.bindAll(mobiles)
        first = [m for m, _ in mobiles if self.mag.pins[m] == self.ports[0]]
        moved = self.mag.drainClient(self.ports[0])
        self.assertEqual(moved, len(first))
        yield until(lambda: all(self.mag.core.attachment(m).state is magcore.BOUND
                                and self.pmips[1].core.mobile(m) is not None
                                for m, _ in mobiles), what="the drain")
        later = [(m, p) for m, p in _mobiles(30)[10:]
                 if self.mag.selector.choose(m) == self.ports[0]][:2]
        yield self.bindAll(later)
        for m, _ in later:
            self.assertEqual(self.mag.pins[m], self.ports[1])
        # The drained client's word on a moved mobile no longer counts.
        mnId = first[0]
        conn = self.mag.upstreams[self.ports[0]].connection
        self.mag.controlReceived(Notification(0, Result.BINDING_LOST, mnId), conn)
        self.assertEqual(self.mag.core.attachment(mnId).state, magcore.BOUND)
        self.mag.undrainClient(self.ports[0])
        self.assertNotIn(self.ports[0], self.mag.unavailable)
        self.assertRaises(ValueError, self.mag.drainClient, (IPv6Address("::2"), 1))


    @inlineCallbacks
    def test_drainClient(self):
        """`netlmm ctl drain` on a PMIP client: its MAGs move its mobiles away."""
        from netlmm.lab.wait import until
        yield self.domain(failoverAfter=0.3)
        mobiles = _mobiles(8)
        yield self.bindAll(mobiles)
        first = {m for m, _ in mobiles if self.holder(m) == 0}
        self.assertTrue(first)
        [reply] = self.pmips[0].command(["drain"])
        self.assertEqual(reply, "ok drained: 1 MAG channels closed; MAGs move this "
                                "client's mobiles to other clients")
        yield until(lambda: all(self.pmips[1].core.mobile(m) is not None
                                and self.mag.core.attachment(m).state is magcore.BOUND
                                for m in first), 10, "the mobiles at PMIP2")
        self.assertEqual(self.mag.relocations, len(first))
        self.assertIsNone(self.mag.upstreams[self.ports[0]].connection)
        self.assertEqual(self.pmips[0].command(["drain"])[0][:10], "ok drained")
        self.assertEqual(self.pmips[0].command(["undrain"]), ["ok undrained"])
        yield until(lambda: self.mag.upstreams[self.ports[0]].connection is not None, 15,
                    "the MAG back at PMIP1")
        # Moved mobiles stay where they are.
        for m in first:
            self.assertEqual(self.mag.pins[m], self.ports[1])

class OperatorTests(SynchronousTestCase):
    """`mag-ctl drain` and `[mag] pmip_failover`."""

    def test_drainCommand(self):
        from twisted.internet.task import Clock
        from netlmm.access.control import ControlDetector

        class Mag:
            def __init__(self):
                self.calls = []

            def drainClient(self, endpoint):
                self.calls.append(("drain", endpoint))
                return 3

            def undrainClient(self, endpoint):
                self.calls.append(("undrain", endpoint))
        detector = ControlDetector(Clock(), "/nonexistent")
        detector.mag = Mag()
        self.assertEqual(detector.command(["drain", "[2001:db8:b::2]:5437"]),
                         ["ok drained [2001:db8:b::2]:5437, 3 mobiles moved"])
        self.assertEqual(detector.command(["undrain", "[2001:db8:b::2]:5437"]),
                         ["ok undrained [2001:db8:b::2]:5437"])
        endpoint = (IPv6Address("2001:db8:b::2"), 5437)
        self.assertEqual(detector.mag.calls, [("drain", endpoint), ("undrain", endpoint)])
        with self.assertRaises(ValueError) as cm:
            detector.command(["drain", "2001:db8:b::2"])
        self.assertIn("expected '[IPv6 address]:port'", str(cm.exception))
        self.assertEqual(len(detector.mag.calls), 2)

    def test_config(self):
        from pathlib import Path
        from twisted.python import usage
        from netlmm.tap import mag as magTap
        text = '''[mag]
address = "2001:db8:ff::1"
lma_address = "::1"
pmip_clients = ["[::1]:5437", "[::1]:5447"]
%s
[mag.assignment]
strategy = "static"
[mag.attachment]
detector = "control"
socket = "x.sock"
[mag.dataplane]
kind = "memory"
[mag.tls]
transport = "tcp"
'''
        path = Path(self.mktemp())
        path.write_text(text % "")
        o = magTap.Options()
        o.parseOptions(["--config", str(path)])
        self.assertEqual(o.built["failoverAfter"], 5.0)
        path.write_text(text % "pmip_failover = 0.5")
        o = magTap.Options()
        o.parseOptions(["--config", str(path)])
        self.assertEqual(o.built["failoverAfter"], 0.5)
        path.write_text(text % "pmip_failover = -1")
        with self.assertRaises(usage.UsageError) as cm:
            magTap.Options().parseOptions(["--config", str(path)])
        self.assertIn("mag.pmip_failover", str(cm.exception))


CLIENT_A = IPv6Address("2001:db8:b::2")
CLIENT_B = IPv6Address("2001:db8:b::3")
HOME_PREFIX = "2001:db8:1::/64"


def netlmmPbu(seq, mnId=MN1, phoa=PHOA, mag=MAG1, lifetime=100, now=None):
    """A netlmm-dialect PBU (with the replay option when C{now} is given)."""
    from netlmm.wire import mh
    options = [mh.HomeNetworkPrefix(phoa), mh.AlternateCareOfAddress(mag)]
    if mnId is not None:
        options.append(mh.MobileNodeIdentifier(mnId))
    return mh.BindingUpdate(seq, mh.BU_A | mh.BU_H | mh.BU_P, lifetime // 4, options)


class LmaTakeoverCoreTests(SynchronousTestCase):
    """L{LmaCore}: a PBU for a binding another PMIP client holds (draft E.1)."""

    def setUp(self):
        from netlmm.core.lma import LmaCore
        self.asked = []
        self.authorized = set()

        def mayRelocate(mnId, client):
            self.asked.append((mnId, client))
            return (mnId, client) in self.authorized
        self.core = LmaCore(HOME_PREFIX, ["2001:db8:b::/64"])
        self.core.mayRelocate = mayRelocate
        self.status(self.core.receive(netlmmPbu(100), CLIENT_A, 0))

    def status(self, effects):
        [send] = [e for e in effects if type(e).__name__ == "SendMH"]
        return send.message.status

    def snapshot(self):
        b = self.core.binding(PHOA)
        return (b.client, b.sequence, b.pcoa, b.expiry, b.state)

    def test_refusedUnlessAuthorized(self):
        """129, nothing changed; the authority was asked about this client."""
        before = self.snapshot()
        self.assertEqual(self.status(self.core.receive(
            netlmmPbu(7, mag="2001:db8:ff::2"), CLIENT_B, 1)), 129)
        self.assertEqual(self.snapshot(), before)
        self.assertEqual(self.asked, [(MN1, CLIENT_B)])
        self.assertEqual(self.core.counters["relocationsRefused"], 1)

    def test_noAuthority(self):
        """Without an authority (mayRelocate None) no client takes a binding over."""
        self.core.mayRelocate = None
        before = self.snapshot()
        self.assertEqual(self.status(self.core.receive(netlmmPbu(7), CLIENT_B, 1)), 129)
        self.assertEqual(self.snapshot(), before)

    def test_mustNameTheMobile(self):
        """A PBU without the MN identifier from another client: 129, authority not asked."""
        self.authorized.add((MN1, CLIENT_B))
        before = self.snapshot()
        self.assertEqual(self.status(self.core.receive(
            netlmmPbu(7, mnId=None), CLIENT_B, 1)), 129)
        self.assertEqual(self.snapshot(), before)
        self.assertEqual(self.asked, [])

    def test_authorizedTakesOver(self):
        """
        The new client's own sequence number (lower than the old client's)
        is accepted; the old client's next PBU is then a takeover too and
        refused when it is not authorized, even with a greater number.
        """
        self.authorized.add((MN1, CLIENT_B))
        self.assertEqual(self.status(self.core.receive(netlmmPbu(7), CLIENT_B, 1)), 0)
        b = self.core.binding(PHOA)
        self.assertEqual((b.client, b.sequence, b.mnId), (CLIENT_B, 7, MN1))
        self.assertEqual(self.core.counters["relocated"], 1)
        # The old client comes back with a stale refresh (it would pass the
        # sequence check: 101 > 100).
        before = self.snapshot()
        self.assertEqual(self.status(self.core.receive(netlmmPbu(101), CLIENT_A, 2)), 129)
        self.assertEqual(self.snapshot(), before)
        # Its deregistration deletes nothing either.
        self.assertEqual(self.status(self.core.receive(
            netlmmPbu(102, lifetime=0), CLIENT_A, 2)), 129)
        self.assertEqual(self.snapshot(), before)
        # The holder refreshes as usual, without asking the authority again.
        asked = len(self.asked)
        self.assertEqual(self.status(self.core.receive(netlmmPbu(8), CLIENT_B, 3)), 0)
        self.assertEqual(len(self.asked), asked)

    def test_backWithAnOldNumber(self):
        """A client that held the binding before must still go forward from its number."""
        self.authorized |= {(MN1, CLIENT_B), (MN1, CLIENT_A)}
        self.assertEqual(self.status(self.core.receive(netlmmPbu(7), CLIENT_B, 1)), 0)
        self.assertEqual(self.status(self.core.receive(netlmmPbu(99), CLIENT_A, 2)), 135)
        self.assertEqual(self.core.binding(PHOA).client, CLIENT_B)
        self.assertEqual(self.status(self.core.receive(netlmmPbu(101), CLIENT_A, 2)), 0)
        self.assertEqual(self.core.binding(PHOA).client, CLIENT_A)


class LmaTakeoverServiceTests(SynchronousTestCase):
    """L{LmaService.mayRelocate}: which SA authorizes a takeover."""

    def service(self, associations, relocation="authorized"):
        from twisted.internet.task import Clock
        from netlmm.core.lma import LmaCore
        from netlmm.dataplane.memory import MemoryDataPlane
        from netlmm.security.guard import LmaGuard
        from netlmm.security.keystore import KeyStore
        from netlmm.service.lma import LmaService
        self.clock = Clock()
        self.clock.advance(1000)
        keys = KeyStore(associations)
        lma = LmaService(self.clock, LmaCore(HOME_PREFIX, ["2001:db8:b::/64"]),
                         (IPv6Address("::1"), 0), "udp", MemoryDataPlane(),
                         security=LmaGuard(keys) if associations else None,
                         relocation=relocation)
        self.sent = []
        lma.port.send = lambda message, *a, **kw: self.sent.append(message)
        self.keys = keys
        return lma

    def send(self, lma, client, seq, mnId=MN1):
        from netlmm.security.guard import PmipGuard
        from netlmm.wire import mh
        bu = netlmmPbu(seq, mnId)
        raw = None
        if len(self.keys):
            from netlmm.security.keystore import KeyStore
            # The client's own key store: the SAs it was given.
            own = KeyStore([sa for sa in self.keys if sa.allowsClient(client)])
            pmip = PmipGuard(own, client=client)
            bu = pmip.protect(bu, mnId, self.clock.seconds())
            raw = pmip.octets.take(bu)
        else:
            raw = mh.encodeMessage(bu)
        lma._received(mh.decodeMessage(raw), raw, (client, 5436), self.clock.seconds())
        self.clock.advance(1)
        return self.sent[-1].status

    def test_perMobileSaOfTheClient(self):
        """Each client has a per-MN SA good for it only: the takeover is authorized."""
        from netlmm.security.auth import SecurityAssociation
        key = b"k" * 20
        lma = self.service([SecurityAssociation(1000, key, mnId=MN1, clients=["2001:db8:b::2"]),
                            SecurityAssociation(1001, key, mnId=MN1, clients=["2001:db8:b::3"])])
        self.assertEqual(self.send(lma, CLIENT_A, 100), 0)
        self.assertEqual(self.send(lma, CLIENT_B, 7), 0)
        self.assertEqual(lma.core.binding(PHOA).client, CLIENT_B)
        self.assertEqual(metric(lma, "netlmm_lma_relocations"), 1)
        self.assertEqual(metric(lma, "netlmm_lma_relocations_refused"), 0)

    def test_clientSaForAnyMobile(self):
        """
        A per-client SA that covers every mobile authenticates the PBU but
        does not name the mobile: the takeover is refused (129).
        """
        from netlmm.security.auth import SecurityAssociation
        key = b"k" * 20
        lma = self.service([SecurityAssociation(1000, key, clients=["2001:db8:b::2"]),
                            SecurityAssociation(1001, key, clients=["2001:db8:b::3"])])
        self.assertEqual(self.send(lma, CLIENT_A, 100), 0)
        self.assertEqual(self.send(lma, CLIENT_B, 7), 129)
        self.assertEqual(lma.core.binding(PHOA).client, CLIENT_A)
        self.assertEqual(metric(lma, "netlmm_lma_relocations_refused"), 1)

    def test_withoutSecurity(self):
        """Unauthenticated PBUs authorize nothing, unless relocation = 'any'."""
        lma = self.service([])
        self.assertEqual(self.send(lma, CLIENT_A, 100), 0)
        self.assertEqual(self.send(lma, CLIENT_B, 7), 129)
        lma = self.service([], relocation="any")
        self.assertEqual(self.send(lma, CLIENT_A, 100), 0)
        self.assertEqual(self.send(lma, CLIENT_B, 7), 0)
        lma = self.service([], relocation="never")
        self.assertRaises(ValueError, self.service, [], relocation="sometimes")


PER_CLIENT_USERS = """
"mn1@example.net" NAS-IPv6-Address == 2001:db8:b::2, Auth-Type := Accept
\t3GPP2-MN-HA-SPI = 1000,
\t3GPP2-MN-HA-Shared-Key = "0123456789abcdef0123"

"mn1@example.net" NAS-IPv6-Address == 2001:db8:b::3, Auth-Type := Accept
\t3GPP2-MN-HA-SPI = 1001,
\t3GPP2-MN-HA-Shared-Key = "fedcba9876543210fedcba98"

"mn2@example.net" NAS-IPv6-Address == 2001:db8:b::2, Auth-Type := Accept
\t3GPP2-MN-HA-SPI = 2000,
\t3GPP2-MN-HA-Shared-Key = "abcdefabcdefabcdefabcdef"

DEFAULT Auth-Type := Reject
"""


class AaaRelocationTests(TestCase):
    """
    FreeRADIUS authorizes each PMIP client for each mobile (NAS-IPv6-Address):
    the LMA lets client B take mn1 over from client A, and refuses B for
    mn2, which the server authorizes for A only.
    """

    timeout = 30

    def setUp(self):
        from netlmm.test import test_radius
        if test_radius.FREERADIUS is None:
            from twisted.trial.unittest import SkipTest
            raise SkipTest("freeradius is not installed (apt-get install freeradius)")

        class Server(test_radius.FreeRadius):
            def setUsers(self, spi, key):
                import os
                with open(os.path.join(self.dir, "users"), "w") as f:
                    f.write(PER_CLIENT_USERS)
        import os
        self.server = Server(os.path.abspath(self.mktemp()))
        self.addCleanup(self.server.stop)
        self.server.start()
        self.secret = test_radius.SECRET

    def keys(self, nasAddress=None):
        from netlmm.security.radius import AaaKeys, RadiusKeyClient
        client = RadiusKeyClient(reactor, [("::1", self.server.port)], self.secret,
                                 0.3, 2, nasAddress=nasAddress)
        client.start()
        self.addCleanup(client.stop)
        return AaaKeys(client)

    @inlineCallbacks
    def lmaService(self):
        from netlmm.core.lma import LmaCore
        from netlmm.dataplane.memory import MemoryDataPlane
        from netlmm.security.guard import LmaGuard
        from netlmm.service.lma import LmaService
        self.lmaKeys = self.keys()
        lma = LmaService(reactor, LmaCore(HOME_PREFIX, ["2001:db8:b::/64"]),
                         (IPv6Address("::1"), 0), "udp", MemoryDataPlane(),
                         security=LmaGuard(self.lmaKeys))
        yield lma.startService()
        self.addCleanup(lma.stopService)
        # PBAcks to the clients' (unreachable) addresses are collected instead.
        self.answers = []
        lma.port.send = lambda message, *a, **kw: self.answers.append(message)
        return lma

    @inlineCallbacks
    def pbu(self, lma, client, keys, seq, mnId, phoa, sa=None):
        """Client C{client} signs a PBU with its key for C{mnId}; the LMA's answer."""
        from netlmm.lab.wait import until
        from netlmm.security.guard import PmipGuard
        from netlmm.security.keystore import KeyStore
        from netlmm.wire import mh
        if sa is None:
            sa = yield keys.fetch(mnId)
        guard = PmipGuard(KeyStore([sa]), client=client)
        bu = guard.protect(netlmmPbu(seq, mnId, phoa), mnId, time.time())
        raw = guard.octets.take(bu)
        answered = len(self.answers)
        lma._received(mh.decodeMessage(raw), raw, (client, 5436), time.time())
        yield until(lambda: len(self.answers) > answered, 5, "the PBAck")
        return self.answers[-1].status

    @inlineCallbacks
    def test_authorizedClientTakesOver(self):
        lma = yield self.lmaService()
        keysA, keysB = self.keys(CLIENT_A), self.keys(CLIENT_B)
        status = yield self.pbu(lma, CLIENT_A, keysA, 100, MN1, PHOA)
        self.assertEqual(status, 0)
        # B's own key for mn1 (another SPI): the LMA asks AAA about B and mn1.
        status = yield self.pbu(lma, CLIENT_B, keysB, 7, MN1, PHOA)
        self.assertEqual(status, 0)
        b = lma.core.binding(PHOA)
        self.assertEqual((b.client, b.sequence), (CLIENT_B, 7))
        self.assertEqual(self.lmaKeys.client.counters["accepts"], 2)
        sa = self.lmaKeys.bySpi(1001)
        self.assertTrue(sa.allowsClient(CLIENT_B))
        self.assertFalse(sa.allowsClient(CLIENT_A))

    @inlineCallbacks
    def test_unauthorizedClientRefused(self):
        """
        B cannot get a key for mn2 from AAA; signing with a key of its own
        making, it is refused by the LMA after AAA rejects (B, mn2): 129,
        the binding unchanged.
        """
        from netlmm.security.auth import SecurityAssociation
        from netlmm.security.radius import KeyRejected
        lma = yield self.lmaService()
        keysA, keysB = self.keys(CLIENT_A), self.keys(CLIENT_B)
        phoa2 = IPv6Address("2001:db8:1::200")
        status = yield self.pbu(lma, CLIENT_A, keysA, 100, b"mn2@example.net", phoa2)
        self.assertEqual(status, 0)
        yield self.assertFailure(keysB.fetch(b"mn2@example.net"), KeyRejected)
        b = lma.core.binding(phoa2)
        before = (b.client, b.sequence, b.pcoa, b.expiry)
        forged = SecurityAssociation(2001, b"x" * 20, mnId=b"mn2@example.net")
        status = yield self.pbu(lma, CLIENT_B, keysB, 7, b"mn2@example.net", phoa2, forged)
        self.assertEqual(status, 129)
        b = lma.core.binding(phoa2)
        self.assertEqual((b.client, b.sequence, b.pcoa, b.expiry), before)
        self.assertEqual(self.lmaKeys.client.counters["rejects"], 1)


class RestoredClientTests(SynchronousTestCase):
    """
    A PMIP client restarted from its store asks its peers before refreshing
    a restored binding (Appendix B request; HELD_HERE): a mobile a MAG moved
    to a peer meanwhile is forgotten without a PBU.
    """

    PEER_A, PEER_B = "[2001:db8:b::2]:5438", "[2001:db8:b::3]:5438"

    def setUp(self):
        from netlmm.core.lma import LmaCore
        self.lma = LmaCore(HOME_PREFIX, ["2001:db8:b::/64"])
        self.lma.mayRelocate = lambda mnId, client: True
        self.pbus = []

    def client(self, peers):
        from netlmm.core.pmip import PmipCore
        return PmipCore(LMA, peers=peers, peerTimeout=1.0)

    def converse(self, core, effects, source, now):
        """Deliver PBUs to the LMA and its PBAcks back; the other effects."""
        from netlmm.wire import mh
        rest = []
        effects = list(effects)
        while effects:
            e = effects.pop(0)
            if type(e).__name__ != "SendMH":
                rest.append(e)
                continue
            self.pbus.append((source, e.message))
            raw = mh.encodeMessage(e.message)
            for answer in self.lma.receive(mh.decodeMessage(raw), source, now):
                if type(answer).__name__ != "SendMH":
                    continue
                data = mh.encodeMessage(answer.message)
                effects.extend(core.receiveMH(mh.decodeMessage(data), data, LMA, now))
        return rest

    def bind(self, core, source, transaction, now):
        self.converse(core, core.receiveTrigger(
            Trigger(transaction, MN1, MAG1, PHOA, AddressMode.STATIC), now), source, now)
        self.assertEqual(core.mobile(MN1).state, "BOUND")

    def records(self, core):
        return [e.record for e in core.snapshot()]

    def test_heldByPeer(self):
        from netlmm.core.effects import AskPeers, Persist
        from netlmm.wire.control import Conflict
        a = self.client([self.PEER_B])
        self.bind(a, CLIENT_A, 1, 0)
        saved = self.records(a)
        # A dies; its MAG moves the mobile to B.
        b = self.client([self.PEER_A])
        self.bind(b, CLIENT_B, 2, 10)
        self.assertEqual(self.lma.binding(PHOA).client, CLIENT_B)
        # A restarts from its store: nothing at once, then a question to B.
        again = self.client([self.PEER_B])
        self.assertEqual(again.restore(saved, 20), [])
        self.assertEqual(again.nextTimer(), 21)
        [ask] = again.handleTimer(21)
        self.assertIsInstance(ask, AskPeers)
        self.assertEqual((ask.request.mnId, ask.request.phoa), (MN1, PHOA))
        answer = b.answerConflict(ask.request)
        self.assertEqual(answer.result, Conflict.HELD_HERE)
        effects = again.receiveConflictResponse(self.PEER_B, answer, 21.01)
        self.assertEqual(effects, [Persist(MN1, None)])
        self.assertIsNone(again.mobile(MN1))
        self.assertEqual(again.nextTimer(), None)
        # No PBU from A after its restart; B still holds the binding.
        self.assertEqual([s for s, _ in self.pbus], [CLIENT_A, CLIENT_B])
        self.assertEqual(self.lma.binding(PHOA).client, CLIENT_B)
        self.assertEqual(again.conflictCounters["held"], 1)

    def test_notHeldRefreshes(self):
        """A peer without the mobile (or an older one) says no-conflict: refresh."""
        from netlmm.wire.control import Conflict, ConflictResponse
        a = self.client([self.PEER_B])
        self.bind(a, CLIENT_A, 1, 0)
        again = self.client([self.PEER_B])
        again.restore(self.records(a), 20)
        [ask] = again.handleTimer(21)
        answer = ConflictResponse(ask.request.transaction, Conflict.NO_CONFLICT, MN1, PHOA)
        rest = self.converse(again, again.receiveConflictResponse(self.PEER_B, answer, 21.1),
                             CLIENT_A, 21.1)
        self.assertEqual(len(self.pbus), 2)
        self.assertEqual(again.mobile(MN1).state, "BOUND")
        self.assertFalse(again.mobile(MN1).restored)
        self.assertEqual([type(e).__name__ for e in rest], ["Persist"])

    def test_silentPeerRefreshes(self):
        """No answer within peerTimeout: the binding is refreshed anyway."""
        a = self.client([self.PEER_B])
        self.bind(a, CLIENT_A, 1, 0)
        again = self.client([self.PEER_B])
        again.restore(self.records(a), 20)
        again.handleTimer(21)
        self.assertEqual(again.nextTimer(), 22)
        self.converse(again, again.handleTimer(22), CLIENT_A, 22)
        self.assertEqual(len(self.pbus), 2)
        self.assertEqual(again.mobile(MN1).state, "BOUND")

    def test_triggerWhileAsking(self):
        """The MAG triggers during the check: handled as usual, nothing answered for the check."""
        a = self.client([self.PEER_B])
        self.bind(a, CLIENT_A, 1, 0)
        again = self.client([self.PEER_B])
        again.restore(self.records(a), 20)
        again.handleTimer(21)
        rest = self.converse(again, again.receiveTrigger(
            Trigger(5, MN1, MAG1, PHOA, AddressMode.STATIC), 21.1), CLIENT_A, 21.1)
        notes = [e.notification for e in rest if type(e).__name__ == "Notify"]
        self.assertEqual([(n.transaction, n.result) for n in notes], [(5, Result.SUCCESS)])
        self.assertIsNone(again.mobile(MN1).check)

    def test_withoutPeers(self):
        """No peers: restored bindings are refreshed at once, as before."""
        a = self.client(())
        self.bind(a, CLIENT_A, 1, 0)
        again = self.client(())
        again.restore(self.records(a), 20)
        self.assertEqual(again.nextTimer(), 20)
        self.converse(again, again.handleTimer(20), CLIENT_A, 20)
        self.assertEqual(len(self.pbus), 2)

