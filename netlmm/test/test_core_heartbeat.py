"""The RFC 5847 heartbeat core (netlmm.core.heartbeat), sans IO."""

import random
from ipaddress import IPv6Address

from twisted.trial.unittest import SynchronousTestCase

from netlmm.core.effects import SendMH
from netlmm.core.heartbeat import (
    HeartbeatCore, PeerReachable, PeerRestarted, PeerState, PeerUnreachable,
    PeerUnsupported)
from netlmm.wire import mh

LMA = IPv6Address("2001:db8::1")
OTHER = IPv6Address("2001:db8::2")


def response(sequence, counter=None, unsolicited=False):
    flags = mh.HB_R | (mh.HB_U if unsolicited else 0)
    options = [] if counter is None else [mh.RestartCounter(counter)]
    return mh.Heartbeat(sequence, flags, options)


class HeartbeatCoreTests(SynchronousTestCase):

    def setUp(self):
        self.core = HeartbeatCore(77, interval=10.0, missing=3, rng=random.Random(1))

    def requests(self, effects):
        """The sequence numbers of the Requests among C{effects}."""
        out = []
        for e in effects:
            if type(e) is SendMH:
                self.assertEqual((e.destination, e.message.flags), (LMA, 0))
                out.append(e.message.sequence)
        return out

    def others(self, effects):
        return [e for e in effects if type(e) is not SendMH]

    def test_answersRequests(self):
        """
        A Request from anyone, watched or not, is answered with the same
        sequence number, R set, and this node's Restart Counter.
        """
        self.assertEqual(self.core.receive(mh.Heartbeat(0xFFFFFFFF), OTHER, 0), [
            SendMH(mh.Heartbeat(0xFFFFFFFF, mh.HB_R, [mh.RestartCounter(77)]), OTHER)])
        self.assertEqual(self.core.counters["requestsAnswered"], 1)

    def test_requestsEveryInterval(self):
        """The first Request at once, then one per interval, numbers increasing."""
        [first] = self.requests(self.core.watch(LMA, 0))
        self.assertEqual(self.core.nextTimer(), 10.0)
        self.assertEqual(self.core.handleTimer(5.0), [])
        [second] = self.requests(self.core.handleTimer(10.0))
        self.assertEqual(second, (first + 1) & 0xFFFFFFFF)
        self.assertEqual(self.core.nextTimer(), 20.0)

    def test_zeroIntervalSendsNothing(self):
        """Interval 0: no peer watched, no Request; Requests are still answered."""
        core = HeartbeatCore(5, interval=0)
        self.assertEqual(core.watch(LMA, 0), [])
        self.assertIsNone(core.nextTimer())
        self.assertEqual(len(core.receive(mh.Heartbeat(1), LMA, 0)), 1)

    def test_unreachableAfterMissing(self):
        """
        The third Request in a row left unanswered makes the peer
        unreachable, once; its next Response makes it reachable again.
        """
        self.core.watch(LMA, 0)
        self.assertEqual(self.others(self.core.handleTimer(10)), [])
        self.assertEqual(self.others(self.core.handleTimer(20)), [])
        effects = self.core.handleTimer(30)
        self.assertEqual(self.others(effects), [PeerUnreachable(LMA, 3, False)])
        self.assertEqual(self.core.state(LMA), PeerState.UNREACHABLE)
        self.assertEqual(self.others(self.core.handleTimer(40)), [])
        self.assertEqual(self.others(self.core.handleTimer(50)), [])
        [sequence] = self.requests(self.core.handleTimer(60))
        self.assertEqual(self.core.receive(response(sequence, 1), LMA, 61),
                         [PeerReachable(LMA)])
        self.assertEqual(self.core.state(LMA), PeerState.REACHABLE)
        self.assertEqual(self.core.counters["unreachable"], 1)

    def test_reachableAgain(self):
        """A peer that answered before, then went silent, then answers: both told."""
        [s] = self.requests(self.core.watch(LMA, 0))
        self.core.receive(response(s, 1), LMA, 0.1)
        self.core.handleTimer(10)
        self.core.handleTimer(20)
        self.core.handleTimer(30)
        effects = self.core.handleTimer(40)
        self.assertEqual(self.others(effects), [PeerUnreachable(LMA, 3, True)])
        [s] = self.requests(effects)
        self.assertEqual(self.core.receive(response(s, 1), LMA, 40.1), [PeerReachable(LMA)])

    def test_restartDetected(self):
        """
        A Restart Counter other than the last one: the peer restarted; the
        effect says when the old counter was last heard. The first counter
        is only learnt.
        """
        [s] = self.requests(self.core.watch(LMA, 0))
        self.assertEqual(self.core.receive(response(s, 100), LMA, 1), [])
        [s] = self.requests(self.core.handleTimer(10))
        self.assertEqual(self.core.receive(response(s, 100), LMA, 11), [])
        [s] = self.requests(self.core.handleTimer(20))
        self.assertEqual(self.core.receive(response(s, 200), LMA, 21),
                         [PeerRestarted(LMA, 100, 200, 11)])
        [s] = self.requests(self.core.handleTimer(30))
        self.assertEqual(self.core.receive(response(s, 200), LMA, 31), [])
        self.assertEqual(self.core.counters["restarts"], 1)

    def test_wrongSequenceIgnored(self):
        """
        A Response that does not answer the Request outstanding (another
        number, or a second copy) changes nothing: no restart, no reset of
        the missed count.
        """
        [s] = self.requests(self.core.watch(LMA, 0))
        self.core.receive(response(s, 100), LMA, 1)
        [s] = self.requests(self.core.handleTimer(10))
        self.assertEqual(self.core.receive(response(s + 1, 999), LMA, 11), [])
        self.assertEqual(self.core.receive(response(s - 1, 999), LMA, 11), [])
        self.assertEqual(self.core.receive(response(s, 100), LMA, 11), [])
        self.assertEqual(self.core.receive(response(s, 999), LMA, 11), [])
        self.assertEqual(self.core.counters["ignored"], 3)

    def test_unwatchedResponseIgnored(self):
        """A Response from a peer not watched is ignored."""
        self.assertEqual(self.core.receive(response(1, 5), OTHER, 0), [])
        self.assertEqual(self.core.counters["ignored"], 1)

    def test_unsolicitedAsksAtOnce(self):
        """
        An unsolicited Response is not believed by itself: it makes the core
        send a Request at once (not counted as a miss), whose answer tells
        the restart; a second one within a second asks nothing.
        """
        [s] = self.requests(self.core.watch(LMA, 0))
        self.core.receive(response(s, 100), LMA, 1)
        effects = self.core.receive(response(0, 200, unsolicited=True), LMA, 5)
        [asked] = self.requests(effects)
        self.assertEqual(self.others(effects), [])
        self.assertEqual(self.core.receive(response(0, 300, unsolicited=True), LMA, 5.5),
                         [])
        self.assertEqual(self.core.receive(response(asked, 200), LMA, 5.6),
                         [PeerRestarted(LMA, 100, 200, 1)])
        self.assertEqual(self.core.nextTimer(), 15.0)

    def test_bindingErrorStops(self):
        """
        A Binding Error "unknown MH type" from a watched peer that never
        answered: it has no RFC 5847; no more Requests go to it.
        """
        self.core.watch(LMA, 0)
        be = mh.BindingError(mh.BE_UNKNOWN_MH_TYPE)
        self.assertEqual(self.core.receive(be, LMA, 0.1), [PeerUnsupported(LMA)])
        self.assertEqual(self.core.state(LMA), PeerState.UNSUPPORTED)
        self.assertIsNone(self.core.nextTimer())
        self.assertEqual(self.core.handleTimer(100), [])
        self.assertEqual(self.core.receive(be, LMA, 0.2), [])

    def test_bindingErrorAfterAnswersIgnored(self):
        """
        A peer that answered heartbeats before implements them: a Binding
        Error (about something else, or forged) does not stop them.
        """
        [s] = self.requests(self.core.watch(LMA, 0))
        self.core.receive(response(s, 1), LMA, 0.1)
        self.assertEqual(self.core.receive(mh.BindingError(mh.BE_UNKNOWN_MH_TYPE), LMA, 1),
                         [])
        self.assertEqual(self.core.receive(mh.BindingError(mh.BE_UNKNOWN_HOA), OTHER, 1), [])
        self.assertEqual(self.core.nextTimer(), 10.0)

    def test_announce(self):
        """Unsolicited Responses (U and R, sequence 0, counter) to every watched peer."""
        self.core.watch(LMA, 0)
        self.core.watch(OTHER, 0)
        self.assertEqual(sorted(self.core.announce(0), key=lambda e: e.destination), [
            SendMH(mh.Heartbeat(0, mh.HB_U | mh.HB_R, [mh.RestartCounter(77)]), p)
            for p in (LMA, OTHER)])

    def test_unwatch(self):
        """An unwatched peer gets no more Requests."""
        self.core.watch(LMA, 0)
        self.core.unwatch(LMA)
        self.assertIsNone(self.core.nextTimer())
        self.assertIsNone(self.core.state(LMA))

    def test_badParameters(self):
        """A negative interval or a missing count below 1 is refused, naming it."""
        self.assertRaises(ValueError, HeartbeatCore, 1, interval=-1)
        with self.assertRaises(ValueError) as caught:
            HeartbeatCore(1, missing=0)
        self.assertIn("missing heartbeats allowed", str(caught.exception))

    def test_randomStart(self):
        """Sequence numbers start at a random value (an off-path guess fails)."""
        firsts = {self.requests(HeartbeatCore(1, 10).watch(LMA, 0))[0] for _ in range(8)}
        self.assertGreater(len(firsts), 1)
