"""
What the per-message path leaves out when nobody needs it: per-binding debug
lines are not built unless debug is logged, and a synchronous data plane
makes no Deferred (issue 12, doc/performance.md).
"""

from ipaddress import IPv6Address

from twisted.internet.defer import Deferred, fail
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from netlmm import daemon
from netlmm.core import lma as lmacore
from netlmm.core import pmip as pmipcore
from netlmm.service import base
from netlmm.service.base import RoleService
from netlmm.test.test_core_pmip import PmipTestMixin
from netlmm.test.test_lma_rfc5213 import (
    MAG1, MAG2, MN1, T0, CapturingLog, Rfc5213Mixin, hnp, pbu,
)
from netlmm.wire.mh import HandoffIndicator

SAME_INTERFACE = HandoffIndicator.HANDOFF_BETWEEN_MAGS_SAME_INTERFACE


class QuietLog(CapturingLog):
    """A core's log that says, as a daemon's RoleLogger does, whether debug is read."""

    def __init__(self, debugging):
        super().__init__()
        self.debugging = debugging

    def debugLines(self):
        return [fmt for level, fmt, kw in self.lines if level == "debug"]


def _unbuildable(*args, **kw):
    raise AssertionError("a debug line's fields were built although debug is off")


class RoleLoggerTests(SynchronousTestCase):
    """L{daemon.RoleLogger.debugging} follows C{--log-level}."""

    def setUp(self):
        self.addCleanup(daemon.setLogLevel, "info")

    def test_followsLevel(self):
        log = daemon.roleLogger("netlmm.lma")
        daemon.setLogLevel("info")
        self.assertFalse(log.debugging)
        daemon.setLogLevel("debug")
        self.assertTrue(log.debugging)
        daemon.setLogLevel("warn")
        self.assertFalse(log.debugging)

    def test_debugEventsReachObserversOnlyWhenAsked(self):
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        log = daemon.roleLogger("netlmm.test")
        daemon.setLogLevel("info")
        log.debug("not kept")
        daemon.setLogLevel("debug")
        log.debug("kept")
        self.assertEqual([e["log_format"] for e in events
                          if e.get("log_level") == LogLevel.debug
                          and e.get("log_namespace") == "netlmm.test"], ["kept"])


class LmaDebugLineTests(Rfc5213Mixin, SynchronousTestCase):
    """The LMA core builds its per-binding lines only for a log that reads debug."""

    def lines(self, debugging):
        lma = self.makeLma()
        self.log = lma._log = QuietLog(debugging)
        self.accepted(lma, pbu())
        prefix = hnp(lma.bindingFor(MN1).homes[0])
        self.accepted(lma, pbu(2, hnps=[prefix], hi=SAME_INTERFACE, timestamp=T0 + 1),
                      now=T0 + 1, source=MAG2)
        self.accepted(lma, pbu(3, hnps=[prefix], lifetime=0, timestamp=T0 + 2),
                      now=T0 + 2, source=MAG2)
        return self.log.debugLines()

    def test_debugOff(self):
        self.patch(lmacore, "_homes", _unbuildable)
        self.assertEqual(self.lines(False), [])

    def test_debugOn(self):
        self.assertEqual(self.lines(True), [
            "new binding {homes} -> {pcoa} for MN {mnId} ({profile})",
            "binding for {homes} moves {old} -> {new}",
            "binding for {homes} deregistered"])


class PmipDebugLineTests(PmipTestMixin, SynchronousTestCase):
    """The PMIP client's "bound" line is built only for a log that reads debug."""

    def test_debugOff(self):
        self.patch(pmipcore, "showMnId", _unbuildable)
        log = QuietLog(False)
        core = self.makePmip(log=log)
        self.register(core)
        self.assertEqual(core.counters["bound"], 1)
        self.assertEqual(log.debugLines(), [])

    def test_debugOn(self):
        log = QuietLog(True)
        self.register(self.makePmip(log=log))
        self.assertEqual(log.debugLines(), ["{mnId} bound: {home} via {pcoa} ({kind})"])


class DataPlaneCallTests(SynchronousTestCase):
    """L{RoleService.dataPlaneCall}: failures logged, no maybeDeferred for a synchronous call."""

    def setUp(self):
        self.service = RoleService(None, None)
        self.service.setName("test")

    def test_synchronous(self):
        calls = []
        self.patch(base, "maybeDeferred", _unbuildable)
        d = self.service.dataPlaneCall(lambda *a: calls.append(a) or "done", MAG1, 1)
        self.assertEqual((self.successResultOf(d), calls), ("done", [(MAG1, 1)]))

    def test_synchronousFailureLogged(self):
        def addRoute(phoa, pcoa):
            raise OSError("no route")
        d = self.service.dataPlaneCall(addRoute, IPv6Address("::1"), MAG1)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)

    def test_deferredFailureLogged(self):
        d = self.service.dataPlaneCall(lambda: fail(OSError("later")))
        self.assertIsInstance(d, Deferred)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.assertIsNone(self.successResultOf(d))


class BatchTests(SynchronousTestCase):
    """A batch of PBUs read at once: the core's timer is re-armed once, at its end."""

    def test_rearmOncePerBatch(self):
        from twisted.internet.task import Clock

        from netlmm.core.lma import AddressPool, LmaCore
        from netlmm.dataplane.memory import MemoryDataPlane
        from netlmm.service.lma import LmaService
        from netlmm.test.test_services import _Datagrams
        from netlmm.test.test_store import pbu as netlmmPbu
        from netlmm.wire import mh
        lo = IPv6Address("::1")
        clock = Clock()
        lma = LmaService(clock, LmaCore("2001:db8:1::/64", ["::1/128"], 3600,
                                        AddressPool("2001:db8:1::100", "2001:db8:1::1ff")),
                         (lo, 0), "udp", MemoryDataPlane())
        lma.running = True
        asked = []
        nextTimer = lma.core.nextTimer
        self.patch(lma.core, "nextTimer", lambda: asked.append(1) or nextTimer())
        datagrams = [mh.encodeMessage(netlmmPbu(1, mnId=b"mn%d" % i), lo, lo)
                     for i in range(3)]
        lma.port.socket = _Datagrams(datagrams, 40000)
        lma.port.doRead()
        self.assertEqual((lma.core.counters["accepted"], len(lma.port.socket.sent)), (3, 3))
        self.assertEqual(len(asked), 1)
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        # Outside a batch, every input re-arms it.
        lma.port._datagram(mh.encodeMessage(netlmmPbu(1, mnId=b"mn9"), lo, lo),
                           ("::1", 40000, 0, 0), lo.packed, 0)
        self.assertEqual(len(asked), 2)

    def test_nestedBatches(self):
        """A batch opened inside another (a transport that delivers at once) ends with it."""
        from twisted.internet.task import Clock

        from netlmm.core.lma import AddressPool, LmaCore
        from netlmm.dataplane.memory import MemoryDataPlane
        from netlmm.service.lma import LmaService
        from netlmm.store import MemoryStore
        from netlmm.test.test_services import _Datagrams
        from netlmm.test.test_store import pbu as netlmmPbu
        from netlmm.wire import mh
        lo = IPv6Address("::1")
        lma = LmaService(Clock(), LmaCore("2001:db8:1::/64", ["::1/128"], 3600,
                                          AddressPool("2001:db8:1::100", "2001:db8:1::1ff")),
                         (lo, 0), "udp", MemoryDataPlane())
        lma.store = store = MemoryStore(automatic=False)
        lma.running = True
        lma.port.socket = _Datagrams([], 40000)
        lma.batch(True)
        lma.batch(True)
        lma.port._datagram(mh.encodeMessage(netlmmPbu(1, mnId=b"mn1"), lo, lo),
                           ("::1", 40000, 0, 0), lo.packed, 0)
        lma.batch(False)
        self.assertIsNone(store._pendingWrite)
        lma.port._datagram(mh.encodeMessage(netlmmPbu(1, mnId=b"mn2"), lo, lo),
                           ("::1", 40000, 0, 0), lo.packed, 0)
        lma.batch(False)
        self.assertEqual(sorted(store._pendingWrite[1]), [b"mn1", b"mn2"])
        store.completeWrite()
        self.assertEqual(len(lma.port.socket.sent), 2)


class ControlBatchTests(SynchronousTestCase):
    """The messages of one read of a control connection are one batch for its owner."""

    def test_oneReadOneBatch(self):
        from netlmm.transport.control import ControlFactory, ControlProtocol
        from netlmm.wire.control import Notification, Result, encodeControl
        calls = []

        class Factory(ControlFactory):
            def messageReceived(self, message, proto):
                calls.append(message.transaction)

            def batch(self, starting):
                calls.append(starting)
        proto = ControlProtocol()
        proto.factory = Factory()
        proto.authenticated = True
        one, two = (encodeControl(Notification(n, Result.SUCCESS)) for n in (1, 2))
        proto.dataReceived(one + two + two[:3])
        self.assertEqual(calls, [True, 1, 2, False])
        proto.dataReceived(two[3:])
        self.assertEqual(calls, [True, 1, 2, False, True, 2, False])
