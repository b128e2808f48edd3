"""Bounded refusal logging and the token bucket (netlmm.ratelimit)."""

from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from netlmm import ratelimit
from netlmm.ratelimit import RefusalLog, TokenBucket


class RefusalLogTests(SynchronousTestCase):

    def setUp(self):
        self.events = []
        self.clock = Clock()
        self.log = Logger(namespace="test", observer=self.events.append)

    def texts(self):
        return [formatEvent(e) for e in self.events]

    def refusals(self, **kw):
        return RefusalLog(self.log, self.clock, **kw)

    def test_firstFewThenSummary(self):
        """The first `burst` lines per peer and reason, then one summary per interval."""
        r = self.refusals(burst=3, interval=60)
        for i in range(100):
            r.refused("2001:db8::1", "malformed", "bad datagram {i} from {peer}", i=i)
        self.assertEqual(self.texts(), [f"bad datagram {i} from 2001:db8::1" for i in range(3)])
        self.clock.advance(60)
        self.assertEqual(self.texts()[3:], [
            "97 more like this from 2001:db8::1 suppressed in the last 60 s: malformed"])
        self.assertEqual(r.counters["malformed"], 100)
        self.assertTrue(all(e["log_level"] == LogLevel.warn for e in self.events))
        # A new interval starts afresh.
        r.refused("2001:db8::1", "malformed", "bad datagram {i} from {peer}", i=100)
        self.assertEqual(self.texts()[-1], "bad datagram 100 from 2001:db8::1")

    def test_perPeerAndReason(self):
        """Another peer, or another reason, has its own first lines."""
        r = self.refusals(burst=1)
        for peer, reason in (("a", "x"), ("a", "x"), ("a", "y"), ("b", "x")):
            r.refused(peer, reason, "{peer} {reason}")
        self.assertEqual(self.texts(), ["a x", "a y", "b x"])

    def test_totalBoundsSpoofedSources(self):
        """A new source for every datagram still gets at most `total` lines an interval."""
        r = self.refusals(burst=3, total=30)
        for i in range(13000):
            r.refused(f"2001:db8::{i:x}", "malformed", "from {peer}")
        self.assertEqual(len(self.events), 30)
        self.clock.advance(60)
        summaries = self.texts()[30:]
        # The first 30 peers were logged and have nothing suppressed; the
        # others (12970) are summed up in one line.
        self.assertEqual(summaries, ["12970 more refusals from further peers suppressed in "
                                     "the last 60 s: malformed"])
        self.assertEqual(r.lines, 31)

    def test_pairsBounded(self):
        """Memory: at most `total` (peer, reason) pairs remembered; the rest counted."""
        r = self.refusals(burst=2, total=10)
        for i in range(1000):
            r.refused(i, "x", "{peer}")
            r.refused(i, "y", "{peer}")
        self.assertEqual(len(r._seen), 10)
        self.clock.advance(60)
        self.assertEqual(self.texts()[10:], [
            "995 more refusals from further peers suppressed in the last 60 s: x",
            "995 more refusals from further peers suppressed in the last 60 s: y"])

    def test_summaries(self):
        """One summary line per remembered pair with something suppressed."""
        r = self.refusals(burst=1, total=2)
        for i in range(5):
            for _ in range(4):
                r.refused(i, "x", "{peer}")
        self.clock.advance(60)
        self.assertEqual(self.texts(), [
            "0", "1",
            "3 more like this from 0 suppressed in the last 60 s: x",
            "3 more like this from 1 suppressed in the last 60 s: x",
            "12 more refusals from further peers suppressed in the last 60 s: x"])

    def test_noClock(self):
        """Without a clock the summary comes with the next refusal after the interval."""
        now = [1000.0]
        self.patch(ratelimit.time, "monotonic", lambda: now[0])
        r = RefusalLog(self.log, None, burst=1, interval=60)
        r.refused("p", "x", "first")
        r.refused("p", "x", "second")
        self.assertEqual(self.texts(), ["first"])
        now[0] += 61
        r.refused("p", "x", "third")
        self.assertEqual(self.texts()[1:], ["1 more like this from p suppressed in the last "
                                            "60 s: x", "third"])

    def test_noTimerAfterStop(self):
        """After stop, refusals are still bounded, but no timer is left behind."""
        r = self.refusals(burst=1)
        r.stop()
        for _ in range(5):
            r.refused("p", "x", "late")
        self.assertEqual(self.texts(), ["late"])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        r.stop()
        self.assertEqual(self.texts()[-1], "4 more like this from p suppressed in the last "
                                           "0 s: x")
        r.start()
        r.refused("p", "x", "again")
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)

    def test_stopFlushes(self):
        r = self.refusals(burst=1)
        r.refused("p", "x", "a")
        r.refused("p", "x", "b")
        r.stop()
        self.assertEqual(self.texts()[-1], "1 more like this from p suppressed in the last "
                                           "0 s: x")
        self.assertEqual(self.clock.getDelayedCalls(), [])


class TokenBucketTests(SynchronousTestCase):

    def test_burstThenRate(self):
        """`burst` at once, then `rate` per second."""
        b = TokenBucket(rate=10, burst=10)
        self.assertEqual(sum(b.take(0.0) for _ in range(1000)), 10)
        self.assertEqual(b.refused, 990)
        self.assertEqual(sum(b.take(1.0) for _ in range(1000)), 10)
        self.assertEqual(sum(b.take(1.05) for _ in range(10)), 0)
        self.assertTrue(b.take(1.1))

    def test_clockBackwards(self):
        """A clock that goes back does not mint tokens."""
        b = TokenBucket(rate=1, burst=1)
        self.assertTrue(b.take(100.0))
        self.assertFalse(b.take(50.0))
        self.assertFalse(b.take(100.5))
        self.assertTrue(b.take(101.0))

    def test_invalid(self):
        with self.assertRaises(ValueError):
            TokenBucket(0, 1)
        with self.assertRaises(ValueError):
            TokenBucket(1, 0)
