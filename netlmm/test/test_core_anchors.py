"""
Tests for L{netlmm.core.anchors}: which LMA anchors a mobile (the static and
hash policies), and the PMIP client core with several LMAs (draft 4.4).
The LMAs are played by hand, as in L{netlmm.test.test_core_pmip}.
"""

import hashlib
import random
from ipaddress import IPv6Address, IPv6Network

from twisted.trial.unittest import SynchronousTestCase

from netlmm.core import pmip
from netlmm.core.anchors import (
    AaaAnchors, Anchor, AnchoredCore, HashAnchors, LeastLoadedAnchors, StaticAnchors, checkAnchors,
)
from netlmm.core.effects import BadRecord, Notify, Persist, SendMH
from netlmm.core.pmip import PmipCore
from netlmm.test.test_core_pmip import MAG1, MAG2, PMIP, roundtrip
from netlmm.wire import mh
from netlmm.wire.control import AddressMode, Detach, Result, Trigger
from netlmm.wire.mh import (
    BA_P, BindingAcknowledgement, BindingUpdate, HomeNetworkPrefix, MobileNodeIdentifier,
    Status,
)

LMA1 = Anchor("lma1", "2001:db8:f1::1", 5436, "2001:db8:e1::1",
              [IPv6Network("2001:db8:1::/48")])
LMA2 = Anchor("lma2", "2001:db8:f2::1", 5436, None,
              [IPv6Network("2001:db8:2::/48"), IPv6Network("2001:db8:22::/48")])
IN1 = IPv6Address("2001:db8:1::10")
IN2 = IPv6Address("2001:db8:2::10")
NOWHERE = IPv6Address("2001:db8:9::10")


def hashed(mnId, anchors):
    """The hash rule written out: SHA-256 mod n over the LMAs sorted by '[addr]:port'."""
    ordered = sorted(anchors, key=lambda a: f"[{a.address}]:{a.port}")
    return ordered[int.from_bytes(hashlib.sha256(mnId).digest(), "big") % len(ordered)]


class PolicyTests(SynchronousTestCase):
    """The built-in anchor policies."""

    def test_staticByPrefix(self):
        """A home inside an LMA's prefixes goes there, whatever the map says."""
        policy = StaticAnchors([LMA1, LMA2], {b"mn": "lma1"})
        self.assertIs(policy.choose(b"mn", IN2), LMA2)
        self.assertIs(policy.choose(b"other", IPv6Address("2001:db8:22::1")), LMA2)
        self.assertIs(policy.choose(b"other", IPv6Network("2001:db8:2:5::/64")), LMA2)
        self.assertIs(policy.choose(b"other", IN1), LMA1)
        # A prefix wider than the LMA's is not inside it.
        self.assertIs(policy.choose(b"other", IPv6Network("2001:db8::/32")), LMA1)

    def test_staticByMapThenDefault(self):
        """Without a home inside a prefix: the map, then the default (first) LMA."""
        policy = StaticAnchors([LMA1, LMA2], {b"mn2": "lma2"})
        self.assertIs(policy.choose(b"mn2", None), LMA2)
        self.assertIs(policy.choose(b"mn2", NOWHERE), LMA2)
        self.assertIs(policy.choose(b"mn9", None), LMA1)
        self.assertIs(StaticAnchors([LMA1, LMA2], default="lma2").choose(b"mn9", None), LMA2)

    def test_hashIsStableAndOrderFree(self):
        """
        The hash places a mobile as SHA-256 mod n over the sorted LMAs: the
        same in every client, whatever the config order; mobiles spread.
        """
        forward = HashAnchors([LMA1, LMA2])
        backward = HashAnchors([LMA2, LMA1])
        seen = set()
        for i in range(64):
            mnId = f"mn{i}@example.net".encode()
            self.assertIs(forward.choose(mnId, None), hashed(mnId, [LMA1, LMA2]))
            self.assertEqual(backward.choose(mnId, None), forward.choose(mnId, None))
            seen.add(forward.choose(mnId, None).name)
        self.assertEqual(seen, {"lma1", "lma2"})
        # The prefix rule and the map come first.
        mnId = next(f"m{i}".encode() for i in range(99)
                    if hashed(f"m{i}".encode(), [LMA1, LMA2]) is LMA1)
        self.assertIs(forward.choose(mnId, IN2), LMA2)
        self.assertIs(HashAnchors([LMA1, LMA2], {mnId: "lma2"}).choose(mnId, None), LMA2)

    def test_leastLoaded(self):
        """
        The LMA with the fewest of the client's mobiles, ties to the first
        listed; the prefix rule and the map still come first.
        """
        core = AnchoredCore([(LMA1, PmipCore(LMA1.address)), (LMA2, PmipCore(LMA2.address))],
                            LeastLoadedAnchors([LMA1, LMA2], {b"pinned": "lma1"}))
        placed = []
        for i in range(5):
            mnId = f"mn{i}".encode()
            core.receiveTrigger(roundtrip(Trigger(i + 1, mnId, MAG1, None,
                                                  AddressMode.LMA_ASSIGNED)), 0)
            placed.append(core.anchorOf(mnId).name)
        self.assertEqual(placed, ["lma1", "lma2", "lma1", "lma2", "lma1"])
        self.assertEqual(core.loads(), {"lma1": 3, "lma2": 2})
        self.assertIs(core.policy.choose(b"pinned", None), LMA1)
        self.assertIs(core.policy.choose(b"new", IN1), LMA1)
        self.assertIs(core.policy.choose(b"new", None), LMA2)

    def test_badInput(self):
        """A map to an unknown LMA, a default that is none of them: refused by name."""
        e = self.assertRaises(ValueError, StaticAnchors, [LMA1, LMA2], {b"mn": "lma3"})
        self.assertEqual(str(e), "MN mn is mapped to LMA 'lma3', which is not one of the "
                                 "LMAs (lma1, lma2)")
        e = self.assertRaises(ValueError, StaticAnchors, [LMA1], default="lma9")
        self.assertEqual(str(e), "the default LMA 'lma9' is not one of the LMAs")

    def test_checkAnchors(self):
        """A name or an address twice, a prefix anchored at two LMAs: refused."""
        checkAnchors([LMA1, LMA2])
        e = self.assertRaises(ValueError, checkAnchors, [LMA1, LMA2._replace(name="lma1")])
        self.assertEqual(str(e), "the LMA name 'lma1' is given twice")
        e = self.assertRaises(ValueError, checkAnchors,
                              [LMA1, LMA2._replace(address=LMA1.address)])
        self.assertEqual(str(e), "LMAs 'lma1' and 'lma2' have the same address "
                                 "2001:db8:f1::1")
        e = self.assertRaises(ValueError, checkAnchors, [LMA1, LMA2._replace(
            prefixes=(IPv6Network("2001:db8:1:8::/64"),))])
        self.assertEqual(str(e), "the prefix 2001:db8:1:8::/64 of LMA 'lma2' overlaps "
                                 "2001:db8:1::/48 of LMA 'lma1': a prefix is anchored "
                                 "at one LMA")
        e = self.assertRaises(ValueError, checkAnchors, [])
        self.assertEqual(str(e), "at least one LMA is needed")


class _Anchored:
    """Helpers: an anchored core with two LMAs played by hand."""

    def setUp(self):
        self.cores = {a.name: PmipCore(a.address, rng=random.Random(3)) for a in (LMA1, LMA2)}
        self.core = AnchoredCore([(LMA1, self.cores["lma1"]), (LMA2, self.cores["lma2"])],
                                 StaticAnchors([LMA1, LMA2], {b"mn2": "lma2"}))

    def trigger(self, mnId, phoa=None, mode=AddressMode.LMA_ASSIGNED, txn=1, mag=MAG1,
                now=0):
        return self.core.receiveTrigger(roundtrip(Trigger(txn, mnId, mag, phoa, mode)), now)

    def pbu(self, effects, lma):
        sends = [e for e in effects if type(e) is SendMH]
        self.assertEqual(len(sends), 1, effects)
        self.assertEqual(sends[0].destination, lma.address)
        self.assertIs(type(sends[0].message), BindingUpdate)
        return sends[0].message

    def ack(self, bu, source, phoa, status=Status.ACCEPTED, now=0):
        options = [HomeNetworkPrefix(phoa, 128), bu.option(MobileNodeIdentifier)]
        ba = BindingAcknowledgement(status, BA_P, bu.sequence, 900 if status < 128 else 0,
                                    [o for o in options if o is not None])
        raw = mh.encodeMessage(ba, source, PMIP)
        return self.core.receiveMH(mh.decodeMessage(raw, source, PMIP), raw, source, now)

    def notification(self, effects, mag=None):
        notes = [e.notification for e in effects
                 if type(e) is Notify and mag in (None, e.mag)]
        self.assertEqual(len(notes), 1, effects)
        self.assertEqual(roundtrip(notes[0]), notes[0])
        return notes[0]


class AnchoredCoreTests(_Anchored, SynchronousTestCase):
    """One PMIP client, two LMAs: each mobile's PBUs go to its LMA only."""

    def test_twoMobilesTwoLmas(self):
        """
        mn1 goes to the default LMA, mn2 (mapped) to lma2; each SUCCESS
        names its LMA's tunnel address, each record its LMA.
        """
        bu1 = self.pbu(self.trigger(b"mn1"), LMA1)
        bu2 = self.pbu(self.trigger(b"mn2", txn=2), LMA2)
        effects = self.ack(bu2, LMA2.address, IN2)
        self.assertEqual(type(effects[0]), Persist)
        self.assertEqual(effects[0].record["lma"], "lma2")
        n = self.notification(effects)
        self.assertEqual((n.result, n.phoa, n.lma), (Result.SUCCESS, IN2, LMA2.address))
        n = self.notification(self.ack(bu1, LMA1.address, IN1))
        # lma1's tunnel address is not its MH address.
        self.assertEqual((n.result, n.phoa, n.lma), (Result.SUCCESS, IN1, LMA1.tunnel))
        self.assertEqual(self.core.anchorOf(b"mn1"), LMA1)
        self.assertEqual(self.core.anchorOf(b"mn2"), LMA2)
        self.assertEqual(self.cores["lma1"].mobile(b"mn1").state, pmip.BOUND)
        self.assertIsNone(self.cores["lma1"].mobile(b"mn2"))
        self.assertEqual(self.core.counters["bound"], 2)
        self.assertEqual(sorted(p.record["lma"] for p in self.core.snapshot()),
                         ["lma1", "lma2"])

    def test_wrongLmaDropped(self):
        """A PBAck from the other LMA, or from no LMA, changes nothing."""
        bu2 = self.pbu(self.trigger(b"mn2"), LMA2)
        self.assertEqual(self.ack(bu2, LMA1.address, IN2), [])
        self.assertEqual(self.ack(bu2, IPv6Address("2001:db8:bad::1"), IN2), [])
        self.assertEqual(self.core.mobile(b"mn2").state, pmip.REGISTERING)
        self.assertEqual(self.notification(self.ack(bu2, LMA2.address, IN2)).result,
                         Result.SUCCESS)

    def test_failureNamesNoLma(self):
        """A refusal carries no LMA address: there is no tunnel to make."""
        bu = self.pbu(self.trigger(b"mn1"), LMA1)
        n = self.notification(self.ack(bu, LMA1.address, IN1,
                                       status=Status.ADMINISTRATIVELY_PROHIBITED))
        self.assertEqual((n.result, n.lma), (Result.PBACK_REJECTED, None))

    def test_homeDecidesAndMobileStays(self):
        """
        A pHoA in lma2's prefix anchors mn1 there; the mobile then stays with
        lma2 when it hands over, though the policy would send it elsewhere.
        """
        bu = self.pbu(self.trigger(b"mn1", IN2, AddressMode.STATIC), LMA2)
        self.notification(self.ack(bu, LMA2.address, IN2))
        handoff = self.pbu(self.trigger(b"mn1", None, AddressMode.STATIC, txn=2, mag=MAG2),
                           LMA2)
        self.assertEqual(handoff.option(mh.AlternateCareOfAddress).address, MAG2)
        n = self.notification(self.ack(handoff, LMA2.address, IN2), mag=MAG2)
        self.assertEqual((n.result, n.lma), (Result.SUCCESS, LMA2.address))

    def test_homeOfAnotherLmasMobile(self):
        """A pHoA another LMA's mobile holds is a conflict, not a second binding."""
        bu = self.pbu(self.trigger(b"mn2", NOWHERE, AddressMode.STATIC), LMA2)
        self.notification(self.ack(bu, LMA2.address, NOWHERE))
        effects = self.trigger(b"mn1", NOWHERE, AddressMode.STATIC, txn=5)
        self.assertEqual([type(e) for e in effects], [Notify])
        self.assertEqual(effects[0].notification.result, Result.ADDRESS_CONFLICT)
        self.assertIsNone(self.core.mobile(b"mn1"))

    def test_timersOfBothLmas(self):
        """Each LMA's PBUs are retransmitted to it; the next timer is the earliest."""
        self.pbu(self.trigger(b"mn1"), LMA1)
        self.pbu(self.trigger(b"mn2", now=0.5), LMA2)
        self.assertEqual(self.core.nextTimer(), 1.0)
        again = self.core.handleTimer(1.0)
        self.assertEqual([(e.destination, e.message.option(MobileNodeIdentifier).identifier)
                          for e in again], [(LMA1.address, b"mn1")])
        self.assertEqual(self.core.nextTimer(), 1.5)
        again = self.core.handleTimer(1.5)
        self.assertEqual([(e.destination, e.message.option(MobileNodeIdentifier).identifier)
                          for e in again], [(LMA2.address, b"mn2")])

    def test_restore(self):
        """
        Records go back to the LMA they name; one without a name (a single
        LMA before) to the first; an unknown name is a bad record.
        """
        for mnId, lma, phoa in ((b"mn1", LMA1, IN1), (b"mn2", LMA2, IN2)):
            bu = self.pbu(self.trigger(mnId), lma)
            self.ack(bu, lma.address, phoa)
        records = [p.record for p in self.core.snapshot()]
        self.setUp()
        self.core.restore(records, 10)
        self.assertEqual(self.core.anchorOf(b"mn1"), LMA1)
        self.assertEqual(self.core.anchorOf(b"mn2"), LMA2)
        self.assertEqual(self.core.mobile(b"mn2").home, IN2)
        self.setUp()
        old = {k: v for k, v in records[1].items() if k != "lma"}
        self.core.restore([old], 10)
        self.assertEqual(self.core.anchorOf(b"mn2"), LMA1)
        self.setUp()
        e = self.assertRaises(BadRecord, self.core.restore,
                              [records[0], dict(records[1], lma="lma7")], 10)
        self.assertEqual(str(e), "record 1: 'lma': 'lma7' is not one of the LMAs "
                                 "(lma1, lma2)")
        broken = dict(records[1])
        del broken["mn"]
        e = self.assertRaises(BadRecord, self.core.restore, [records[0], broken], 10)
        self.assertEqual(e.index, 1)

    def test_refusedByPolicy(self):
        """A policy that chooses no LMA refuses the mobile (not-authorized)."""

        class Nobody(StaticAnchors):
            def byIdentifier(self, mnId):
                return None

        core = AnchoredCore([(LMA1, PmipCore(LMA1.address)), (LMA2, PmipCore(LMA2.address))],
                            Nobody([LMA1, LMA2]))
        effects = core.receiveTrigger(roundtrip(Trigger(4, b"mn1", MAG1, None,
                                                        AddressMode.LMA_ASSIGNED)), 0)
        self.assertEqual([(type(e), e.notification.result) for e in effects],
                         [(Notify, Result.NOT_AUTHORIZED)])
        self.assertEqual(core.unanchored, 1)

    def test_coreMustSendToItsAnchor(self):
        e = self.assertRaises(ValueError, AnchoredCore,
                              [(LMA1, PmipCore(LMA2.address)), (LMA2, PmipCore(LMA2.address))],
                              StaticAnchors([LMA1, LMA2]))
        self.assertIn("the core of LMA 'lma1' sends to 2001:db8:f2::1", str(e))


P1 = IPv6Network("2001:db8:1:1::/64")
P2 = IPv6Network("2001:db8:2:2::/64")


class _Moving(_Anchored):
    """Helpers: mobiles with per-MN prefixes bound at lma1 and moved to lma2."""

    def ackPrefix(self, bu, lma, prefix, status=Status.ACCEPTED, now=0, lifetime=900):
        options = [HomeNetworkPrefix(prefix.network_address, prefix.prefixlen),
                   bu.option(MobileNodeIdentifier)]
        ba = BindingAcknowledgement(status, BA_P, bu.sequence,
                                    lifetime if status < 128 else 0,
                                    [o for o in options if o is not None])
        raw = mh.encodeMessage(ba, lma.address, PMIP)
        return self.core.receiveMH(mh.decodeMessage(raw, lma.address, PMIP), raw,
                                   lma.address, now)

    def bindAtLma1(self):
        bu = self.pbu(self.trigger(b"mn1", mode=AddressMode.PREFIX), LMA1)
        n = self.notification(self.ackPrefix(bu, LMA1, P1))
        self.assertEqual((n.result, n.prefix), (Result.SUCCESS, P1))

    def moveToLma2(self, now=1):
        bu = self.pbu(self.core.move(b"mn1", "lma2", now), LMA2)
        # A new registration: MN-ID, a prefix asked of lma2, the same MAG.
        self.assertEqual(bu.option(MobileNodeIdentifier).identifier, b"mn1")
        self.assertEqual(bu.lifetime > 0, True)
        self.assertEqual(self.core.moves[b"mn1"].state, "MOVING")
        # The old LMA anchors it until the new one accepts.
        self.assertEqual(self.core.anchorOf(b"mn1"), LMA1)
        return bu


class MoveTests(_Moving, SynchronousTestCase):
    """
    Moving a mobile with a per-MN prefix from lma1 to lma2 while it stays at
    its MAG (draft 4.4): the new registration, REANCHORED to the MAG, the
    old binding kept until released, and each way a move ends.
    """

    def test_moveAndRelease(self):
        """
        The new LMA accepts: the MAG hears REANCHORED (new prefix, new LMA),
        the records swap; the old binding is refreshed at lma1 until the
        MAG's Detach naming the old prefix deregisters it.
        """
        self.bindAtLma1()
        bu = self.moveToLma2()
        effects = self.ackPrefix(bu, LMA2, P2, now=1)
        self.assertEqual([type(e) for e in effects], [Persist, Persist, Notify])
        current, old, notify = effects
        self.assertEqual((current.key, current.record["lma"], current.record["prefix"]),
                         (b"mn1", "lma2", P2))
        self.assertEqual((old.key, old.record["lma"], old.record["moved"]),
                         (b"moved-from:lma1:mn1", "lma1", True))
        n = notify.notification
        self.assertEqual(roundtrip(n), n)
        self.assertEqual((n.transaction, n.result, n.prefix, n.lma, notify.mag),
                         (0, Result.REANCHORED, P2, LMA2.address, MAG1))
        self.assertEqual(self.core.anchorOf(b"mn1"), LMA2)
        self.assertEqual(self.core.mobile(b"mn1").home, P2)
        self.assertEqual(self.core.moves[b"mn1"].state, "MOVED")
        # Both LMAs' bindings are refreshed; the old one keeps its own key.
        due = self.core.nextTimer()
        refreshes = [e for e in self.core.handleTimer(due + 1) if type(e) is SendMH]
        self.assertEqual(sorted(str(e.destination) for e in refreshes),
                         sorted([str(LMA1.address), str(LMA2.address)]))
        old = next(e.message for e in refreshes if e.destination == LMA1.address)
        effects = self.ackPrefix(old, LMA1, P1, now=due + 1)
        self.assertEqual([(e.key, e.record["moved"]) for e in effects if type(e) is Persist],
                         [(b"moved-from:lma1:mn1", True)])
        self.assertEqual([e for e in effects if type(e) is Notify], [])
        # The MAG releases the old prefix.
        self.assertEqual(self.core.receiveDetach(roundtrip(
            Detach(77, b"mn1", MAG1, prefix=P1)), due + 2), [])
        dereg = next(e.message for e in self.core.handleTimer(due + 4)
                     if type(e) is SendMH and e.destination == LMA1.address)
        self.assertEqual(dereg.lifetime, 0)
        effects = self.ackPrefix(dereg, LMA1, P1, now=due + 4, lifetime=0)
        self.assertEqual([e for e in effects if type(e) is Persist],
                         [Persist(b"moved-from:lma1:mn1", None)])
        n = self.notification(effects)
        self.assertEqual((n.transaction, n.result, n.prefix), (77, Result.SUCCESS, P1))
        self.assertEqual(self.core.moves, {})
        self.assertIsNone(self.cores["lma1"].mobile(b"mn1"))
        self.assertEqual(self.core.anchorOf(b"mn1"), LMA2)
        self.assertEqual(self.core.moveCounters["released"], 1)

    def test_moveRefused(self):
        """A move that cannot be made says why and changes nothing."""
        self.assertRaises(ValueError, self.core.move, b"mn1", "lma2", 0)
        self.bindAtLma1()
        for name, why in (("lma9", "no LMA is named 'lma9' (the LMAs: lma1, lma2)"),
                          ("lma1", "mn1 is anchored at lma1 already")):
            e = self.assertRaises(ValueError, self.core.move, b"mn1", name, 0)
            self.assertEqual(str(e), why)
        bu = self.pbu(self.trigger(b"mn3", IN1, AddressMode.STATIC, txn=3), LMA1)
        self.notification(self.ack(bu, LMA1.address, IN1))
        e = self.assertRaises(ValueError, self.core.move, b"mn3", "lma2", 0)
        self.assertIn("no per-MN prefix (address mode static)", str(e))
        self.moveToLma2()
        e = self.assertRaises(ValueError, self.core.move, b"mn1", "lma2", 0)
        self.assertIn("is MOVING already (lma1 -> lma2)", str(e))

    def test_newLmaRefuses(self):
        """The new LMA refuses: the mobile stays at the old one, the MAG hears nothing."""
        self.bindAtLma1()
        bu = self.moveToLma2()
        effects = self.ackPrefix(bu, LMA2, P2, status=Status.ADMINISTRATIVELY_PROHIBITED)
        self.assertEqual([e for e in effects if type(e) is Notify], [])
        self.assertEqual([e.key for e in effects if type(e) is Persist], [])
        self.assertEqual(self.core.moves, {})
        self.assertEqual(self.core.anchorOf(b"mn1"), LMA1)
        self.assertEqual(self.core.moveCounters["failed"], 1)

    def test_leftWhileMoving(self):
        """
        The mobile leaves during the registration: its Detach goes to the
        old LMA's core; the new binding, once accepted, is deregistered.
        """
        self.bindAtLma1()
        bu = self.moveToLma2()
        self.assertEqual(self.core.receiveDetach(roundtrip(Detach(9, b"mn1", MAG1)), 1), [])
        effects = self.ackPrefix(bu, LMA2, P2, now=1.5)
        self.assertEqual([e for e in effects if type(e) is Notify], [])
        self.assertEqual(self.core.moves[b"mn1"].state, "ABANDONING")
        sends = self.core.handleTimer(3)
        self.assertEqual(sorted((str(e.destination), e.message.lifetime) for e in sends),
                         sorted([(str(LMA2.address), 0), (str(LMA1.address), 0)]))
        for e in sends:
            lma = LMA1 if e.destination == LMA1.address else LMA2
            effects = self.ackPrefix(e.message, lma, P1 if lma is LMA1 else P2, now=3,
                                     lifetime=0)
            notes = [x.notification for x in effects if type(x) is Notify]
            # Only the MAG's own Detach is answered.
            self.assertEqual([(n.transaction, n.result) for n in notes],
                             [(9, Result.SUCCESS)] if lma is LMA1 else [])
        self.assertEqual(self.core.moves, {})
        self.assertEqual(self.core.mobiles, {})

    def test_leavesAfterMove(self):
        """A plain Detach after the move deregisters both bindings."""
        self.bindAtLma1()
        self.ackPrefix(self.moveToLma2(), LMA2, P2, now=1)
        self.assertEqual(self.core.receiveDetach(roundtrip(Detach(9, b"mn1", MAG1)), 2), [])
        self.assertEqual(self.core.moves[b"mn1"].state, "RELEASING")
        sends = self.core.handleTimer(4)
        self.assertEqual(sorted(str(e.destination) for e in sends),
                         sorted([str(LMA1.address), str(LMA2.address)]))
        for e in sends:
            lma = LMA1 if e.destination == LMA1.address else LMA2
            self.ackPrefix(e.message, lma, P1 if lma is LMA1 else P2, now=4, lifetime=0)
        self.assertEqual(self.core.moves, {})
        self.assertEqual(self.core.mobiles, {})

    def test_lateDetachFromAnotherMag(self):
        """A Detach from a MAG the mobile is not at leaves the old binding alone."""
        self.bindAtLma1()
        self.ackPrefix(self.moveToLma2(), LMA2, P2, now=1)
        n = self.notification(self.core.receiveDetach(roundtrip(Detach(9, b"mn1", MAG2)), 2))
        self.assertEqual(n.result, Result.MOVED)
        self.assertEqual(self.core.moves[b"mn1"].state, "MOVED")

    def test_oldBindingLost(self):
        """The old LMA drops the old binding: the MAG hears binding-lost naming the old prefix."""
        self.bindAtLma1()
        self.ackPrefix(self.moveToLma2(), LMA2, P2, now=1)
        due = self.core.nextTimer()
        refresh = next(e.message for e in self.core.handleTimer(due)
                       if type(e) is SendMH and e.destination == LMA1.address)
        effects = self.ackPrefix(refresh, LMA1, P1, status=Status.NOT_HOME_AGENT_FOR_MN - 1,
                                 now=due)
        n = self.notification(effects)
        self.assertEqual((n.transaction, n.result, n.prefix, n.lma),
                         (0, Result.BINDING_LOST, P1, LMA1.tunnel))
        self.assertEqual(self.core.moves, {})
        self.assertEqual(self.core.anchorOf(b"mn1"), LMA2)

    def test_releaseNoOldHome(self):
        """A Detach releasing a prefix that is no old home of the mobile: unknown-mn."""
        self.bindAtLma1()
        n = self.notification(self.core.receiveDetach(roundtrip(
            Detach(5, b"mn1", MAG1, prefix=P2)), 1))
        self.assertEqual((n.transaction, n.result, n.prefix), (5, Result.UNKNOWN_MN, P2))
        self.assertEqual(self.core.anchorOf(b"mn1"), LMA1)

    def test_restoreMoved(self):
        """After a restart the move is MOVED again: both bindings, each with its key."""
        self.bindAtLma1()
        self.ackPrefix(self.moveToLma2(), LMA2, P2, now=1)
        snapshot = self.core.snapshot()
        self.assertEqual(sorted(p.key for p in snapshot), [b"mn1", b"moved-from:lma1:mn1"])
        self.setUp()
        self.core.restore([p.record for p in snapshot], 2)
        self.assertEqual(self.core.moves[b"mn1"].state, "MOVED")
        self.assertEqual(self.core.moves[b"mn1"].oldHome, P1)
        self.assertEqual(self.core.anchorOf(b"mn1"), LMA2)
        self.setUp()
        e = self.assertRaises(BadRecord, self.core.restore,
                              [dict(p.record, moved="yes") for p in snapshot], 2)
        self.assertIn("'moved': expected true, got 'yes'", str(e))


class DrainTests(_Moving, SynchronousTestCase):
    """Draining an LMA: its mobiles move, the policy places none there, undrain."""

    def bindMany(self, count):
        """C{count} mobiles with per-MN prefixes bound at lma1; their prefixes."""
        prefixes = {}
        for i in range(count):
            mnId = b"m%02d" % i
            bu = self.pbu(self.trigger(mnId, mode=AddressMode.PREFIX, txn=100 + i), LMA1)
            prefixes[mnId] = IPv6Network(f"2001:db8:1:{i + 100:x}::/64")
            self.notification(self.ackPrefix(bu, LMA1, prefixes[mnId]))
        return prefixes

    def test_fiftyMobiles(self):
        """
        50 mobiles at lma1, drained: each is registered at lma2 and keeps its
        lma1 binding (its live sessions' address) until its MAG releases it;
        then all are at lma2 only.
        """
        old = self.bindMany(50)
        effects = self.core.drain("lma1", 10)
        pbus = [e for e in effects if type(e) is SendMH]
        self.assertEqual({e.destination for e in pbus}, {LMA2.address})
        self.assertEqual(len(pbus), 50)
        self.assertEqual(self.core.drainStatus("lma1")[0], "m00 MOVING lma1 -> lma2")
        notes = []
        for i, e in enumerate(pbus):
            mnId = e.message.option(MobileNodeIdentifier).identifier
            new = IPv6Network(f"2001:db8:2:{i + 100:x}::/64")
            notes += [x.notification for x in self.ackPrefix(e.message, LMA2, new, now=11)
                      if type(x) is Notify]
        self.assertEqual({(n.result, n.lma) for n in notes},
                         {(Result.REANCHORED, LMA2.address)})
        self.assertEqual(len(notes), 50)
        self.assertEqual(self.core.loads(), {"lma1": 50, "lma2": 50})
        # Nothing of lma1 is deregistered before the MAG says so.
        due = self.core.nextTimer()
        sent = [e for e in self.core.handleTimer(due) if type(e) is SendMH]
        self.assertTrue(all(e.message.lifetime > 0 for e in sent))
        for mnId, prefix in old.items():
            self.core.receiveDetach(roundtrip(Detach(7, mnId, MAG1, prefix=prefix)), due)
        deregs = [e for e in self.core.handleTimer(due + 2) if type(e) is SendMH
                  and e.destination == LMA1.address and e.message.lifetime == 0]
        self.assertEqual(len(deregs), 50)
        for e in deregs:
            mnId = e.message.option(MobileNodeIdentifier)
            self.ackPrefix(e.message, LMA1, P1, now=due + 2, lifetime=0)
        self.assertEqual(self.core.loads(), {"lma1": 0, "lma2": 50})
        self.assertEqual(self.core.moves, {})
        self.assertEqual(self.core.moveCounters["released"], 50)
        self.assertEqual(self.core.drainStatus("lma1"), [])

    def test_policySkipsDrained(self):
        """A new mobile the policy would place at a drained LMA goes elsewhere; undrain."""
        self.core.drain("lma2", 0)
        bu = self.pbu(self.trigger(b"mn2", mode=AddressMode.PREFIX), LMA1)
        self.assertEqual(self.core.anchorOf(b"mn2"), LMA1)
        self.notification(self.ackPrefix(bu, LMA1, P1))
        self.core.undrain("lma2")
        self.pbu(self.trigger(b"mn4", mode=AddressMode.PREFIX, txn=4), LMA1)
        self.core.policy.mobiles[b"mn5"] = LMA2
        self.pbu(self.trigger(b"mn5", mode=AddressMode.PREFIX, txn=5), LMA2)

    def test_drainRefused(self):
        """Draining the last LMA, or one that does not exist: refused, nothing changed."""
        self.core.drain("lma1", 0)
        e = self.assertRaises(ValueError, self.core.drain, "lma2", 0)
        self.assertEqual(str(e), "lma2 is the last LMA not drained; there is nowhere to "
                                 "move its mobiles")
        e = self.assertRaises(ValueError, self.core.drain, "lma7", 0)
        self.assertIn("no LMA is named 'lma7'", str(e))
        self.assertEqual(self.core.drained, {"lma1"})

    def test_drainKeptAcrossRestart(self):
        """A drain is a record of its own: restored, and deleted by undrain."""
        effects = self.core.drain("lma2", 0)
        self.assertEqual(effects, [Persist(b"drained:lma2", {"drained": "lma2"})])
        self.assertEqual(self.core.drain("lma2", 1), [])
        snapshot = self.core.snapshot()
        self.assertEqual(snapshot, [Persist(b"drained:lma2", {"drained": "lma2"})])
        self.setUp()
        self.core.restore([p.record for p in snapshot], 2)
        self.assertEqual(self.core.drained, {"lma2"})
        self.assertEqual(self.core.undrain("lma2"), [Persist(b"drained:lma2", None)])
        self.assertEqual(self.core.undrain("lma2"), [])
        # A drained LMA no longer configured is forgotten.
        self.setUp()
        self.core.restore([{"drained": "lma9"}], 2)
        self.assertEqual(self.core.drained, set())

    def test_unmovableListed(self):
        """A mobile that cannot move now is listed with the reason; draining again moves it."""
        bu = self.pbu(self.trigger(b"mn1", mode=AddressMode.PREFIX), LMA1)
        self.assertEqual(self.core.drain("lma1", 0),
                         [Persist(b"drained:lma1", {"drained": "lma1"})])
        self.assertEqual(self.core.drainStatus("lma1"),
                         ["mn1 STAYS mn1 is REGISTERING; only a bound mobile moves"])
        self.notification(self.ackPrefix(bu, LMA1, P1))
        self.pbu(self.core.drain("lma1", 1), LMA2)
        self.assertEqual(self.core.drainStatus("lma1"), ["mn1 MOVING lma1 -> lma2"])


class PreferredLmaTests(_Moving, SynchronousTestCase):
    """
    MAG2 (in both domains) prefers lma2 ([pmip.anchor.mags]): a new mobile
    there goes to lma2; one handing over from MAG1 keeps its lma1 prefix
    (handoff at lma1) and is then moved to lma2.
    """

    def setUp(self):
        super().setUp()
        self.core = AnchoredCore([(LMA1, self.cores["lma1"]), (LMA2, self.cores["lma2"])],
                                 StaticAnchors([LMA1, LMA2], {b"mn2": "lma2"}),
                                 mags=[(IPv6Network(f"{MAG2}/128"), "lma2")])

    def test_newMobileAtPreferringMag(self):
        self.pbu(self.trigger(b"mn3", mode=AddressMode.PREFIX, mag=MAG2), LMA2)
        self.pbu(self.trigger(b"mn4", mode=AddressMode.PREFIX, txn=2), LMA1)

    def test_handoverMoves(self):
        self.bindAtLma1()
        handoff = self.pbu(self.trigger(b"mn1", mode=AddressMode.PREFIX, txn=2, mag=MAG2),
                           LMA1)
        effects = self.ackPrefix(handoff, LMA1, P1, now=1)
        # MAG2 hears SUCCESS with the old prefix at lma1 first (MAG1 MOVED)...
        self.assertEqual(self.notification(effects, mag=MAG1).result, Result.MOVED)
        n = self.notification(effects, mag=MAG2)
        self.assertEqual((n.transaction, n.result, n.prefix, n.lma),
                         (2, Result.SUCCESS, P1, LMA1.tunnel))
        # ...while the move to lma2 starts from MAG2.
        register = self.pbu(effects, LMA2)
        self.assertEqual(register.option(mh.AlternateCareOfAddress).address, MAG2)
        self.assertEqual(self.core.moves[b"mn1"].state, "MOVING")
        n = self.notification(self.ackPrefix(register, LMA2, P2, now=2))
        self.assertEqual((n.result, n.prefix, n.lma), (Result.REANCHORED, P2, LMA2.address))
        self.assertEqual(self.core.anchorOf(b"mn1"), LMA2)
        # Back at MAG1 (no preference): the old prefix goes, the mobile stays at lma2.
        effects = self.trigger(b"mn1", mode=AddressMode.PREFIX, txn=3, now=3)
        self.assertEqual(sorted(str(e.destination) for e in effects if type(e) is SendMH),
                         [str(LMA2.address)])
        self.assertEqual(self.core.moves[b"mn1"].state, "RELEASING")

    def test_unknownLma(self):
        e = self.assertRaises(ValueError, AnchoredCore,
                              [(LMA1, PmipCore(LMA1.address)), (LMA2, PmipCore(LMA2.address))],
                              StaticAnchors([LMA1, LMA2]),
                              mags=[(IPv6Network(f"{MAG2}/128"), "lma3")])
        self.assertIn("prefer LMA 'lma3', which is not one of the LMAs", str(e))


class AaaPolicyTests(SynchronousTestCase):
    """The 'aaa' policy: the LMA the AAA server named (RFC 6572), else the default."""

    def test_choose(self):
        named = {b"mn1": LMA2.tunnel, b"mn2": LMA1.tunnel, b"mn3": NOWHERE}
        policy = AaaAnchors([LMA1, LMA2], {b"mn4": "lma2"}, default="lma1")
        policy.lookup = named.get
        self.assertEqual([policy.choose(m, None).name for m in (b"mn1", b"mn2", b"mn3", b"mn4",
                                                                 b"mn5")],
                         ["lma2", "lma1", "lma1", "lma2", "lma1"])
        # A home inside an LMA's prefixes still decides.
        self.assertEqual(policy.choose(b"mn1", IN1).name, "lma1")
        self.assertEqual(policy.unmatched, 2)

    def test_keyFirst(self):
        """A mobile the client does not know: its key (and so AAA's answer) comes first."""
        guard = object()
        core = AnchoredCore([(LMA1, PmipCore(LMA1.address)),
                             (LMA2, PmipCore(LMA2.address, security=guard))],
                            AaaAnchors([LMA1, LMA2]))
        self.assertIs(core.securityFor(b"mn1"), guard)
