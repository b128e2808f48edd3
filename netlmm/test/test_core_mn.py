"""
Tests for L{netlmm.core.mn}, the mobile node's home registration (RFC 6275
section 11) as `netlmm mn` runs it, with fake time; and the mobile core
against the GMA core, message by message through the codec.
"""

from ipaddress import IPv6Address

from twisted.trial.unittest import SynchronousTestCase

from netlmm.core.effects import (
    HomeTunnel, InvalidInput, Persist, RouteAdd, RouteMove, RouteRemove, SendToHomeAgent,
    SendToMobile)
from netlmm.core.gma import GmaCore
from netlmm.core.mn import (
    INITIAL_BINDACK_TIMEOUT_FIRST_REG, MAX_BINDACK_TIMEOUT, MobileCore, MobileEvent,
    MobileState)
from netlmm.wire import mh
from netlmm.wire.mh import BindingAcknowledgement, BindingRefreshAdvice, Status

HOME_PREFIX = "2001:db8:100::/64"
HOA = IPv6Address("2001:db8:100::10")
GMA = IPv6Address("2001:db8:ff::1")
COA1 = IPv6Address("2001:db8:1::10")
COA2 = IPv6Address("2001:db8:2::10")
MN1 = b"mn1@example.net"


def ba(sequence, status=Status.ACCEPTED, lifetime=75, options=()):
    return BindingAcknowledgement(status, 0, sequence, lifetime, options)


class MobileCoreTests(SynchronousTestCase):

    def setUp(self):
        self.core = MobileCore(MN1, HOA, GMA, lifetime=300, homePrefix=HOME_PREFIX,
                               sequence=100)

    def sent(self, effects):
        """The one Binding Update among C{effects}, checked and encoded."""
        (send,) = [e for e in effects if type(e) is SendToHomeAgent]
        self.assertEqual((send.homeAgent, send.home), (GMA, HOA))
        mh.encodeMessage(send.message, HOA, GMA)
        return send

    def test_register(self):
        """
        A care-of address: the tunnel from it, and a BU with A and H flags,
        the next sequence number, the lifetime and the MN Identifier, from
        that address with the home address in its option.
        """
        effects = self.core.careOf(COA1, 0.0)
        self.assertEqual(effects[0], HomeTunnel(HOA, GMA, COA1))
        send = self.sent(effects)
        self.assertEqual(send.careOf, COA1)
        self.assertEqual(send.message, mh.BindingUpdate(
            101, mh.BU_A | mh.BU_H, 75, [mh.MobileNodeIdentifier(MN1)]))
        self.assertIs(self.core.state, MobileState.REGISTERING)
        self.assertEqual(self.core.nextTimer(), INITIAL_BINDACK_TIMEOUT_FIRST_REG)

    def test_retransmissions(self):
        """
        No answer: the BU goes again with a new sequence number, the wait
        doubling from 1.5 s up to 32 s and staying there (RFC 6275 11.8).
        """
        self.core.careOf(COA1, 0.0)
        now, waits, seqs = 0.0, [], []
        for _ in range(8):
            deadline = self.core.nextTimer()
            waits.append(deadline - now)
            now = deadline
            seqs.append(self.sent(self.core.handleTimer(now)).message.sequence)
        self.assertEqual(waits, [1.5, 3.0, 6.0, 12.0, 24.0, 32.0, 32.0, 32.0])
        self.assertEqual(seqs, list(range(102, 110)))
        self.assertEqual(self.core.counters["retransmissions"], 8)
        # The answer to any of them is taken.
        self.assertEqual(self.core.receive(ba(104), GMA, now), [])
        self.assertIs(self.core.state, MobileState.BOUND)

    def test_boundAndRefresh(self):
        """
        An accepted BA binds; the refresh goes at the advised interval (or
        3/4 of the granted lifetime), with a 1 s first wait.
        """
        self.core.careOf(COA1, 0.0)
        self.core.receive(ba(101, lifetime=75), GMA, 0.5)
        self.assertIs(self.core.state, MobileState.BOUND)
        self.assertEqual((self.core.bound, self.core.expiry), (COA1, 300.5))
        self.assertEqual(self.core.nextTimer(), 0.5 + 225)
        send = self.sent(self.core.handleTimer(225.5))
        self.assertEqual(send.message.sequence, 102)
        self.assertEqual(self.core.nextTimer(), 226.5)
        self.core.receive(ba(102, options=[BindingRefreshAdvice(10)]), GMA, 226.0)
        self.assertEqual(self.core.nextTimer(), 266.0)

    def test_refreshRequest(self):
        """
        A Binding Refresh Request from the home agent, while bound: a
        refresh at once (RFC 6275 11.7.4); from elsewhere or unbound: nothing.
        """
        self.core.careOf(COA1, 0.0)
        self.assertEqual(self.core.receive(mh.BindingRefreshRequest(), GMA, 0.05), [])
        self.core.receive(ba(101), GMA, 0.1)
        self.assertEqual(self.core.receive(mh.BindingRefreshRequest(), COA2, 1.0), [])
        send = self.sent(self.core.receive(mh.BindingRefreshRequest(), GMA, 1.0))
        self.assertEqual((send.message.sequence, send.message.lifetime), (102, 75))
        self.assertEqual(self.core.nextTimer(), 2.0)
        self.assertEqual(self.core.counters["stale"], 2)

    def test_move(self):
        """A new care-of address: the tunnel moves and a BU goes at once."""
        self.core.careOf(COA1, 0.0)
        self.core.receive(ba(101), GMA, 0.1)
        effects = self.core.careOf(COA2, 10.0)
        self.assertEqual(effects[0], HomeTunnel(HOA, GMA, COA2))
        self.assertEqual(self.sent(effects).careOf, COA2)
        self.assertEqual(self.core.nextTimer(), 11.0)
        self.assertEqual(self.core.movedAt, 10.0)
        # The BA of the old registration no longer counts.
        self.assertEqual(self.core.receive(ba(101), GMA, 10.1), [])
        self.assertEqual(self.core.counters["stale"], 1)
        self.core.receive(ba(102), GMA, 10.2)
        self.assertEqual((self.core.bound, self.core.acceptedAt), (COA2, 10.2))

    def test_sameAddressAgain(self):
        self.core.careOf(COA1, 0.0)
        self.assertEqual(self.core.careOf(COA1, 1.0), [])

    def test_foreignAnswersIgnored(self):
        """A BA from elsewhere or for a sequence never sent changes nothing."""
        self.core.careOf(COA1, 0.0)
        self.assertEqual(self.core.receive(ba(101), COA2, 0.1), [])
        self.assertEqual(self.core.receive(ba(99), GMA, 0.1), [])
        self.assertEqual(self.core.receive(mh.BindingError(1), GMA, 0.1), [])
        self.assertIs(self.core.state, MobileState.REGISTERING)

    def test_sequenceResync(self):
        """
        135 carries the home agent's last accepted number, which this mobile
        never sent: the next BU goes at once, after it (RFC 6275 11.7.3), at
        most 3 times in a row.
        """
        self.core.careOf(COA1, 0.0)
        for n in range(3):
            effects = self.core.receive(ba(5000 + n, Status.SEQUENCE_OUT_OF_WINDOW), GMA, 0.1)
            self.assertEqual(self.sent(effects).message.sequence, 5001 + n)
        self.assertEqual(self.core.receive(ba(6000, Status.SEQUENCE_OUT_OF_WINDOW), GMA, 0.2),
                         [])
        self.assertEqual(self.core.counters["resyncs"], 4)
        self.assertEqual(self.sent(self.core.handleTimer(10.0)).message.sequence, 6001)

    def test_noAnswerWhenNotWaiting(self):
        """Once bound, a late BA (even a 135) changes nothing."""
        self.core.careOf(COA1, 0.0)
        self.core.receive(ba(101), GMA, 0.1)
        self.assertEqual(self.core.receive(ba(3, Status.SEQUENCE_OUT_OF_WINDOW), GMA, 0.2), [])
        self.assertIs(self.core.state, MobileState.BOUND)

    def test_refused(self):
        """A refusal: no retransmission storm, a retry after 32 s."""
        self.core.careOf(COA1, 0.0)
        self.assertEqual(self.core.receive(ba(101, Status.NOT_HOME_AGENT_FOR_MN), GMA, 0.1),
                         [])
        self.assertIs(self.core.state, MobileState.REFUSED)
        self.assertEqual(self.core.nextTimer(), 0.1 + MAX_BINDACK_TIMEOUT)
        send = self.sent(self.core.handleTimer(32.1))
        self.assertEqual(send.message.lifetime, 75)
        self.assertIs(self.core.state, MobileState.REGISTERING)

    def test_stopDeregisters(self):
        """Stop: a BU with lifetime 0; its BA takes the tunnel down."""
        self.core.careOf(COA1, 0.0)
        self.core.receive(ba(101), GMA, 0.1)
        send = self.sent(self.core.stop(5.0))
        self.assertEqual((send.careOf, send.message.lifetime), (COA1, 0))
        self.assertFalse(self.core.done)
        self.assertEqual(self.core.receive(ba(102, lifetime=0), GMA, 5.1),
                         [HomeTunnel(HOA, GMA, None)])
        self.assertTrue(self.core.done)
        self.assertIsNone(self.core.nextTimer())

    def test_stopGivesUp(self):
        """An unanswered deregistration is given up after 3 attempts."""
        self.core.careOf(COA1, 0.0)
        self.core.receive(ba(101), GMA, 0.1)
        self.core.stop(1.0)
        self.sent(self.core.handleTimer(2.0))
        self.sent(self.core.handleTimer(4.0))
        self.assertEqual(self.core.handleTimer(8.0), [HomeTunnel(HOA, GMA, None)])
        self.assertTrue(self.core.done)

    def test_stopUnregistered(self):
        """Stopping without a care-of address sends nothing."""
        self.assertEqual(self.core.stop(0.0), [])
        self.assertTrue(self.core.done)

    def test_home(self):
        """
        A care-of address in the home prefix: deregistration from the home
        address, no Home Address option (RFC 6275 11.5.5), tunnel down; a
        new foreign address registers again.
        """
        self.core.careOf(COA1, 0.0)
        self.core.receive(ba(101), GMA, 0.1)
        send = self.sent(self.core.careOf(IPv6Address("2001:db8:100::55"), 5.0))
        self.assertEqual((send.careOf, send.message.lifetime), (None, 0))
        self.assertEqual(self.core.receive(ba(102, lifetime=0), GMA, 5.1),
                         [HomeTunnel(HOA, GMA, None)])
        self.assertIs(self.core.state, MobileState.HOME)
        effects = self.core.careOf(COA2, 9.0)
        self.assertEqual(effects[0], HomeTunnel(HOA, GMA, COA2))

    def test_lostAddress(self):
        """No care-of address: wait, send nothing, keep the tunnel."""
        self.core.careOf(COA1, 0.0)
        self.assertEqual(self.core.careOf(None, 0.5), [])
        self.assertIs(self.core.state, MobileState.IDLE)
        self.assertIsNone(self.core.nextTimer())

    def test_invalidEvent(self):
        with self.assertRaises(InvalidInput):
            self.core.step(MobileEvent.ACCEPTED)
        self.assertIs(self.core.state, MobileState.IDLE)


class MobileAndGmaTests(SynchronousTestCase):
    """The two cores talk through the codec: register, move, deregister."""

    def test_endToEnd(self):
        gma = GmaCore(HOME_PREFIX, {MN1: [HOA]}, maxLifetime=3600)
        mn = MobileCore(MN1, HOA, GMA, lifetime=600, sequence=7)
        routes = []

        def exchange(effects, now):
            for e in effects:
                if type(e) is not SendToHomeAgent:
                    continue
                source = e.careOf or e.home
                raw = mh.encodeMessage(e.message, e.home, GMA)
                answers = gma.receive(mh.decodeMessage(raw, e.home, GMA), source,
                                      None if e.careOf is None else e.home, None, now)
                for a in answers:
                    if type(a) is SendToMobile:
                        back = mh.decodeMessage(mh.encodeMessage(a.message, GMA, HOA),
                                                GMA, HOA)
                        mn.receive(back, GMA, now)
                    elif type(a) is not Persist:
                        routes.append(a)

        exchange(mn.careOf(COA1, 0.0), 0.0)
        self.assertIs(mn.state, MobileState.BOUND)
        exchange(mn.careOf(COA2, 5.0), 5.0)
        self.assertEqual(gma.binding(HOA).careOf, COA2)
        exchange(mn.handleTimer(mn.nextTimer()), mn.nextTimer())
        exchange(mn.stop(500.0), 500.0)
        self.assertTrue(mn.done)
        self.assertEqual(routes, [RouteAdd(HOA, COA1), RouteMove(HOA, COA1, COA2),
                                  RouteRemove(HOA, COA2)])
        self.assertEqual(gma.bindings, {})
