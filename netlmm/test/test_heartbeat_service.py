"""
RFC 5847 heartbeats between the PMIP client and the LMA services over
loopback (real sockets, the real reactor): reachability, and the recovery
from a peer that restarted and lost its state.
"""

from ipaddress import IPv6Address

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from netlmm.access import AttachmentEvent
from netlmm.assignment.static import StaticAssignment
from netlmm.core.heartbeat import PeerState
from netlmm.core.lma import LmaCore
from netlmm.core.mag import MagCore
from netlmm.core.pmip import PmipCore
from netlmm.dataplane.memory import MemoryDataPlane
from netlmm.lab.fakes import UDPProbe
from netlmm.lab.wait import until
from netlmm.service.heartbeat import COUNTER_KEY, HeartbeatConfig, restartCounter
from netlmm.service.lma import LmaService
from netlmm.service.mag import MagService
from netlmm.service.pmip import PmipService
from netlmm.store import SqliteStore
from netlmm.wire import mh

LO = IPv6Address("::1")
PHOA = "2001:db8:1::42"
FAST = HeartbeatConfig(interval=0.2, missing=2)


class RestartCounterTests(SynchronousTestCase):
    """The Restart Counter kept in the state store (RFC 5847 3.3)."""

    def test_keptWithTheState(self):
        """A store that brought its counter back keeps it; its record is taken out."""
        entries = [(b"mn1", {"x": 1}), (COUNTER_KEY, {"restartCounter": 41})]
        self.assertEqual(restartCounter(entries, now=5.0), (41, [(b"mn1", {"x": 1})], True))

    def test_newState(self):
        """Without one (no store, a new or lost one): milliseconds of the clock."""
        self.assertEqual(restartCounter([], now=1700000000.5),
                         (1700000000500 & 0xFFFFFFFF, [], False))

    def test_badRecordIgnored(self):
        """A counter record that is not a 32-bit number counts as none."""
        for record in ({"restartCounter": -1}, {"restartCounter": 1 << 32},
                       {"restartCounter": "7"}, None):
            self.assertEqual(restartCounter([(COUNTER_KEY, record)], now=2.0),
                             (2000, [], False))


class HeartbeatServiceTests(TestCase):
    """A PMIP client, an LMA and a MAG on loopback with heartbeats every 0.2 s."""

    timeout = 30

    def lma(self, port=0, store=None):
        service = LmaService(reactor, LmaCore("2001:db8:1::/64", ["::1/128"]), (LO, port),
                             "udp", MemoryDataPlane(), heartbeat=FAST)
        service.store = store
        return service

    @inlineCallbacks
    def domain(self, lmaStore=None):
        """An LMA, a PMIP client and a MAG with mn1 bound; (lma, pmip, mag)."""
        lma = self.lma(store=lmaStore)
        yield lma.startService()
        pmip = PmipService(reactor, PmipCore(LO), (LO, 0), (LO, 0), "udp", lma.port.port,
                           ["::1/128"], heartbeat=FAST)
        yield pmip.startService()
        self.addCleanup(pmip.stopService)
        mag = MagService(reactor, MagCore("2001:db8:ff::1", LO),
                         (LO, pmip.listening.getHost().port), StaticAssignment(),
                         MemoryDataPlane(), name="MAG1")
        yield mag.startService()
        self.addCleanup(mag.stopService)
        yield until(lambda: mag.connection is not None)
        mag.attached(AttachmentEvent(b"mn1", PHOA))
        yield until(lambda: getattr(pmip.core.mobile(b"mn1"), "state", None) == "BOUND",
                    what="mn1 bound")
        return lma, pmip, mag

    @inlineCallbacks
    def test_bothWays(self):
        """
        The PMIP client watches its LMA, the LMA the client holding bindings;
        each answers the other's Requests with its Restart Counter.
        """
        lma, pmip, _ = yield self.domain()
        self.addCleanup(lma.stopService)
        yield until(lambda: pmip.heartbeats.core.state(LO) is PeerState.REACHABLE
                    and lma.heartbeats.core.state(LO) is PeerState.REACHABLE,
                    what="both peers reachable")
        self.assertEqual(pmip.heartbeats.core.peers[LO].counter, lma.restartCounter)
        self.assertEqual(lma.heartbeats.core.peers[LO].counter, pmip.restartCounter)
        self.assertEqual(pmip.core.counters["reregistered"], 0)

    @inlineCallbacks
    def test_lmaLostItsState(self):
        """
        The LMA restarts without its bindings (no store: a new Restart
        Counter): the PMIP client notices by heartbeats and registers mn1
        again, with no Trigger from the MAG; the MAG is told nothing.
        """
        lma, pmip, mag = yield self.domain()
        yield until(lambda: pmip.heartbeats.core.peers[LO].counter is not None,
                    what="the LMA's counter")
        port = lma.port.port
        yield lma.stopService()
        again = self.lma(port)
        yield again.startService()
        self.addCleanup(again.stopService)
        self.assertIsNone(again.core.binding(PHOA))
        yield until(lambda: again.core.binding(PHOA) is not None, 10,
                    "mn1 registered again with the restarted LMA")
        self.assertEqual(again.core.binding(PHOA).pcoa, IPv6Address("2001:db8:ff::1"))
        self.assertEqual(pmip.core.counters["reregistered"], 1)
        self.assertEqual(pmip.heartbeats.core.counters["restarts"], 1)
        self.assertEqual(mag.core.attachment(b"mn1").state, "BOUND")

    @inlineCallbacks
    def test_lmaKeptItsState(self):
        """
        An LMA restarted with its store keeps its Restart Counter: the
        client sees no restart and registers nothing again.
        """
        path = self.mktemp()
        lma, pmip, _ = yield self.domain(SqliteStore(path, "lma-bindings", reactor))
        yield until(lambda: pmip.heartbeats.core.peers[LO].counter is not None,
                    what="the LMA's counter")
        counter = lma.restartCounter
        port = lma.port.port
        yield lma.stopService()
        again = self.lma(port, SqliteStore(path, "lma-bindings", reactor))
        yield again.startService()
        self.addCleanup(again.stopService)
        self.assertEqual(again.restartCounter, counter)
        self.assertIsNotNone(again.core.binding(PHOA))
        answered = pmip.heartbeats.core.counters["responses"]
        yield until(lambda: pmip.heartbeats.core.counters["responses"] > answered + 2,
                    what="heartbeats answered by the restarted LMA")
        self.assertEqual(pmip.heartbeats.core.counters["restarts"], 0)
        self.assertEqual(pmip.core.counters["reregistered"], 0)

    @inlineCallbacks
    def test_clientLostItsState(self):
        """
        The PMIP client restarts without its state (new Restart Counter):
        the LMA releases the binding it had registered before.
        """
        lma, pmip, mag = yield self.domain()
        self.addCleanup(lma.stopService)
        yield until(lambda: lma.heartbeats.core.state(LO) is PeerState.REACHABLE,
                    what="the LMA hearing the client")
        yield mag.stopService()
        yield pmip.stopService()
        self.assertIsNotNone(lma.core.binding(PHOA))
        again = PmipService(reactor, PmipCore(LO), (LO, 0), (LO, 0), "udp",
                            lma.port.port, ["::1/128"], heartbeat=FAST)
        yield again.startService()
        self.addCleanup(again.stopService)
        yield until(lambda: lma.core.binding(PHOA) is None, 10,
                    "the LMA to release the lost binding")
        self.assertEqual(lma.core.counters["released"], 1)
        self.assertEqual(lma.dataplane.routes, {})

    @inlineCallbacks
    def test_silentLma(self):
        """
        An LMA that drops Heartbeats (as one without RFC 5847 may): declared
        unreachable after 2 Requests, nothing else happens, PBUs still go.
        """
        silent = UDPProbe()
        port = reactor.listenUDP(0, silent, interface="::1")
        self.addCleanup(port.stopListening)
        pmip = PmipService(reactor, PmipCore(LO), (LO, 0), (LO, 0), "udp",
                           port.getHost().port, ["::1/128"], heartbeat=FAST)
        yield pmip.startService()
        self.addCleanup(pmip.stopService)
        yield until(lambda: pmip.heartbeats.core.state(LO) is PeerState.UNREACHABLE,
                    what="the silent LMA unreachable")
        kinds = {mh.decodeMessage(d).MH_TYPE for d, _ in silent.received}
        self.assertEqual(kinds, {mh.MH_HEARTBEAT})

    @inlineCallbacks
    def test_heartbeatsOff(self):
        """
        Without a heartbeat config nothing is sent, and a Request from the
        LMA is still answered.
        """
        probe = UDPProbe()
        port = reactor.listenUDP(0, probe, interface="::1")
        self.addCleanup(port.stopListening)
        pmip = PmipService(reactor, PmipCore(LO), (LO, 0), (LO, 0), "udp",
                           port.getHost().port, ["::1/128"])
        yield pmip.startService()
        self.addCleanup(pmip.stopService)
        port.write(mh.encodeMessage(mh.Heartbeat(9), LO, LO), ("::1", pmip.port.port))
        yield until(lambda: probe.received, what="the Heartbeat Response")
        [(data, _)] = probe.received
        self.assertEqual(mh.decodeMessage(data), mh.Heartbeat(
            9, mh.HB_R, [mh.RestartCounter(pmip.restartCounter)]))

    @inlineCallbacks
    def test_peerWithHeartbeatsOff(self):
        """
        A client whose [[lma.peers]] table says heartbeat = false holds
        bindings but gets no Request from the LMA (OPMIP stops receiving
        after one); the client still watches the LMA.
        """
        from netlmm.core.lma import PeerPolicy
        lma = LmaService(reactor, LmaCore("2001:db8:1::/64", [],
                                          peers=[("::1/128", PeerPolicy(heartbeat=False))]),
                         (LO, 0), "udp", MemoryDataPlane(), heartbeat=FAST)
        self.patch(self, "lma", lambda **kw: lma)
        lma, pmip, _ = yield self.domain()
        self.addCleanup(lma.stopService)
        yield until(lambda: pmip.heartbeats.core.state(LO) is PeerState.REACHABLE,
                    what="the LMA reachable from the client")
        # Three of the client's rounds: the LMA's sweep (every 0.2 s) ran too.
        yield until(lambda: pmip.heartbeats.core.counters["responses"] >= 3,
                    what="three heartbeat rounds")
        self.assertEqual(lma.heartbeats.core.counters["requestsSent"], 0)
        self.assertEqual(lma.heartbeats.core.peers, {})
        self.assertTrue(lma.core.bindings)
