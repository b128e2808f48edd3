"""
RFC 5847 heartbeats between the daemons as shipped (twistd, the shipped
configs with RFC 4285 and state files; ports and the heartbeat interval
changed): the LMA killed with SIGKILL and started again, with its state
database (nothing to recover) or without it (every binding registered again
by the PMIP client, with no MAG involved).
"""

import os
import time
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from netlmm.access import AttachmentEvent
from netlmm.core.mag import MagCore
from netlmm.dataplane.memory import MemoryDataPlane
from netlmm.lab.wait import until
from netlmm.service.mag import MagService
from netlmm.test import test_crash
from netlmm.test.test_crash import LO, Strategy, shippedConfigs, stored

MOBILES = [b"hb%d@example.net" % i for i in range(5)]


class HeartbeatDaemonTests(TestCase):
    """An LMA and a PMIP client daemon, heartbeats every 0.3 s, one MAG in this process."""

    timeout = 120

    # The daemons are run as test_crash runs them (not importing its
    # TestCase, which trial would run here too).
    _kill = test_crash.KillTests
    start, logText, started, kill, stopAll = (
        _kill.start, _kill.logText, _kill.started, _kill.kill, _kill.stopAll)

    @inlineCallbacks
    def setUp(self):
        self.dir = Path(self.mktemp()).resolve()

        def faster(role, text):
            shipped = f"[{role}.heartbeat]\ninterval = 60\nmissing = 3\n"
            self.assertIn(shipped, text)
            return text.replace(shipped, f"[{role}.heartbeat]\ninterval = 0.3\nmissing = 2\n")
        _, pmipPort = shippedConfigs(self, self.dir, faster)
        self.lmaState = str(self.dir / "lma-state.db")
        self.procs = {}
        self.logs = {}
        self.addCleanup(self.stopAll)
        self.start("lma")
        yield self.started("lma", "LMA listening", 0)
        self.start("pmip")
        yield self.started("pmip", "MAGs connect to", 0)
        self.mag = MagService(reactor, MagCore("2001:db8:ff::1", LO), (LO, pmipPort),
                              Strategy(), MemoryDataPlane(), name="MAG1")
        yield self.mag.startService()
        self.addCleanup(self.mag.stopService)
        yield until(lambda: self.mag.connection is not None, 20, "the MAG's connection")
        for m in MOBILES:
            self.mag.attached(AttachmentEvent(m, None))
        yield until(lambda: all(getattr(self.mag.core.attachment(m), "state", None)
                                == "BOUND" for m in MOBILES), 30, "the mobiles bound")
        self.assertEqual(set(stored(self.lmaState)), set(MOBILES))

    @inlineCallbacks
    def waitLog(self, role, text, after=0, timeout=30):
        deadline = time.monotonic() + timeout
        while text not in self.logText(role)[after:]:
            if time.monotonic() > deadline:
                self.fail(f"no {text!r} in the {role} log:\n{self.logText(role)[after:]}")
            yield deferLater(reactor, 0.05, lambda: None)

    @inlineCallbacks
    def test_lmaKilledKeepsItsState(self):
        """
        The LMA killed with SIGKILL: the PMIP client finds it unreachable;
        started again with its state database, it answers with the same
        Restart Counter, and nothing is registered again.
        """
        self.kill("lma")
        yield self.waitLog("pmip", "is unreachable: 2 heartbeats in a row unanswered")
        mark = len(self.logText("pmip"))
        self.start("lma")
        yield self.started("lma", "restored 5 of 5 entries", 0)
        yield self.waitLog("pmip", "answers heartbeats again", mark)
        self.assertNotIn("restarted", self.logText("pmip"))
        self.assertEqual(set(stored(self.lmaState)), set(MOBILES))

    @inlineCallbacks
    def test_lmaLostItsState(self):
        """
        The LMA killed and started again without its state database (a new
        Restart Counter): the PMIP client registers every binding again at
        once, with no Trigger; the MAG's mobiles stay bound.
        """
        self.kill("lma")
        os.remove(self.lmaState)
        mark = len(self.logText("pmip"))
        self.start("lma")
        yield self.started("lma", "LMA listening", 0)
        yield self.waitLog("pmip", "restarted and lost its state", mark)
        yield self.waitLog("pmip", "registering its 5 bindings again", mark)
        yield until(lambda: os.path.exists(self.lmaState)
                    and set(stored(self.lmaState)) == set(MOBILES), 30,
                    "every binding registered again")
        self.assertTrue(all(self.mag.core.attachment(m).state == "BOUND" for m in MOBILES))
