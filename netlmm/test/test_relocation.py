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
