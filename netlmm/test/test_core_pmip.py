"""
Tests for L{netlmm.core.pmip}, the PMIP client core (draft sections 4.1,
4.2, 4.7 and Appendix A).

The LMA is played by hand: each test builds the PBAck it wants, encodes it
and hands the decoded message and its bytes to the core. Time is the C{now}
argument; nothing here reads a clock.
"""

import json
import random
from ipaddress import IPv6Address

from twisted.trial.unittest import SynchronousTestCase

from netlmm.core import pmip
from netlmm.core.effects import BadRecord, InvalidInput, Notify, Persist, SendMH
from netlmm.core.pmip import PmipCore
from netlmm.wire import control, mh
from netlmm.wire.control import AddressMode, Detach, Notification, Result, Trigger
from netlmm.wire.mh import (
    BA_P,
    BU_A,
    BU_H,
    BU_P,
    AlternateCareOfAddress,
    BindingAcknowledgement,
    BindingError,
    BindingRefreshAdvice,
    BindingUpdate,
    HomeNetworkPrefix,
    MobileNodeIdentifier,
    Status,
)

LMA = IPv6Address("2001:db8:ffff::1")
PMIP = IPv6Address("2001:db8:c::1")
STRANGER = IPv6Address("2001:db8:bad::1")
MAG1 = IPv6Address("2001:db8:a::1")
MAG2 = IPv6Address("2001:db8:b::1")
MAG3 = IPv6Address("2001:db8:d::1")
PHOA = IPv6Address("2001:db8:1::100")
OTHER = IPv6Address("2001:db8:1::200")
ZERO = IPv6Address("::")
MN1 = b"mn1@example.net"
MN2 = b"mn2@example.net"
HOUR = 900


def roundtrip(message):
    """The control message as the other end decodes it."""
    return control.decodeControl(control.encodeControl(message))


class PmipTestMixin:
    """Helpers: a PMIP client and a hand-played LMA."""

    def makePmip(self, **kw):
        kw.setdefault("rng", random.Random(4))
        return PmipCore(LMA, **kw)

    def trigger(self, core, transaction, mag=MAG1, phoa=None, mnId=MN1,
                mode=AddressMode.LMA_ASSIGNED, now=0):
        t = roundtrip(Trigger(transaction, mnId, mag, phoa, mode))
        return core.receiveTrigger(t, now)

    def detach(self, core, transaction, mag=MAG1, phoa=None, mnId=MN1, now=0):
        return core.receiveDetach(roundtrip(Detach(transaction, mnId, mag, phoa)), now)

    def onlyPBU(self, effects):
        """The one PBU in C{effects}; it goes to the LMA and encodes."""
        sends = [e for e in effects if type(e) is SendMH]
        self.assertEqual(len(sends), 1, effects)
        self.assertEqual(sends[0].destination, LMA)
        bu = sends[0].message
        self.assertIs(type(bu), BindingUpdate)
        raw = mh.encodeMessage(bu, PMIP, LMA)
        self.assertEqual(mh.decodeMessage(raw, PMIP, LMA), bu)
        return bu

    def notifies(self, effects):
        """C{effects} that are Notifications, checked to survive the codec."""
        out = [e for e in effects if type(e) is Notify]
        for e in out:
            self.assertEqual(roundtrip(e.notification), e.notification)
        return out

    def afterPersist(self, effects, mnId=MN1, deleted=False):
        """
        C{effects} start with the L{Persist} of C{mnId}'s record (its
        deletion when C{deleted}); the effects after it.
        """
        self.assertIs(type(effects[0]), Persist, effects)
        self.assertEqual(effects[0].key, mnId)
        if deleted:
            self.assertIsNone(effects[0].record)
        else:
            self.assertEqual(effects[0].record["mn"], mnId.hex())
        return effects[1:]

    def ack(self, core, bu, status=Status.ACCEPTED, phoa=PHOA, lifetime=HOUR,
            bra=None, sequence=None, mnId=None, now=0, source=LMA):
        """
        Answer C{bu} as the LMA would; returns (effects, raw PBAck). The
        LMA echoes the MN identifier option when the PBU carried one.
        """
        options = []
        if bra is None and lifetime and status < 128:
            bra = lifetime * 3 // 4
        if bra:
            options.append(BindingRefreshAdvice(bra))
        if phoa is not None:
            options.append(HomeNetworkPrefix(phoa, 128))
        mnIdOpt = bu.option(MobileNodeIdentifier) if mnId is None else MobileNodeIdentifier(mnId)
        if mnIdOpt is not None:
            options.append(mnIdOpt)
        ba = BindingAcknowledgement(
            status, BA_P, bu.sequence if sequence is None else sequence,
            lifetime if status < 128 else 0, options)
        raw = mh.encodeMessage(ba, source, PMIP)
        message = mh.decodeMessage(raw, source, PMIP)
        return core.receiveMH(message, raw, source, now), raw

    def register(self, core, transaction=1, mag=MAG1, mnId=MN1, now=0, **kw):
        """Trigger and acknowledge an initial attachment; returns the PBU."""
        bu = self.onlyPBU(self.trigger(core, transaction, mag=mag, mnId=mnId, now=now))
        effects, raw = self.ack(core, bu, now=now, **kw)
        self.assertEqual(self.notifies(effects)[0].notification.result, Result.SUCCESS)
        self.assertEqual(core.mobile(mnId).state, pmip.BOUND)
        return bu


class TriggerTests(PmipTestMixin, SynchronousTestCase):
    """Section 4.7: a Trigger for a mobile the client does not know."""

    def test_newMobileLmaAssigned(self):
        """
        The PBU has A, H and P set, an all-zero Home Network Prefix, the
        MAG as Alternate CoA and the MN identifier.
        """
        core = self.makePmip(lifetime=3600)
        effects = self.trigger(core, 17)
        self.assertEqual(len(effects), 1)
        bu = self.onlyPBU(effects)
        self.assertEqual(bu.flags, BU_A | BU_H | BU_P)
        self.assertEqual(bu.flags, 0xC200)
        self.assertEqual(bu.option(HomeNetworkPrefix), HomeNetworkPrefix(ZERO, 128))
        self.assertTrue(bu.option(HomeNetworkPrefix).unspecified)
        self.assertEqual(bu.option(AlternateCareOfAddress), AlternateCareOfAddress(MAG1))
        self.assertEqual(bu.option(MobileNodeIdentifier), MobileNodeIdentifier(MN1))
        self.assertEqual(bu.lifetime, HOUR)
        m = core.mobile(MN1)
        self.assertEqual(m.state, pmip.REGISTERING)
        self.assertEqual(m.sequence, bu.sequence)
        self.assertIsNone(m.phoa)
        self.assertIsNone(m.pcoa)
        self.assertEqual(m.mag, MAG1)

    def test_newMobileWithPhoa(self):
        """A pHoA acquired by DHCP is the Home Network Prefix of the PBU."""
        core = self.makePmip()
        bu = self.onlyPBU(self.trigger(core, 1, phoa=PHOA, mode=AddressMode.STATEFUL))
        self.assertEqual(bu.option(HomeNetworkPrefix), HomeNetworkPrefix(PHOA, 128))
        self.assertEqual(bu.option(MobileNodeIdentifier), MobileNodeIdentifier(MN1))

    def test_success(self):
        """
        A successful PBAck becomes a SUCCESS Notification to the triggering
        MAG with the trigger's transaction number, the assigned pHoA and
        the PBAck's bytes as received.
        """
        core = self.makePmip()
        bu = self.onlyPBU(self.trigger(core, 17))
        effects, raw = self.ack(core, bu, now=0.5)
        effects = self.afterPersist(effects)
        self.assertEqual(effects, [Notify(Notification(17, Result.SUCCESS, MN1, PHOA, raw), MAG1)])
        self.notifies(effects)
        self.assertEqual(mh.decodeMessage(effects[0].notification.pback).status, 0)
        m = core.mobile(MN1)
        self.assertEqual((m.state, m.phoa, m.pcoa, m.mag, m.pending),
                         (pmip.BOUND, PHOA, MAG1, MAG1, None))
        self.assertEqual(m.lifetime, 3600)
        self.assertEqual(m.expiry, 3600.5)

    def test_successWithoutAssignedPhoa(self):
        """
        A PBAck that accepts an assignment request but assigns nothing cannot
        be used: the MAG hears pback-unusable, and what the LMA bound is
        deregistered at once, naming the mobile; its answer ends the entry.
        Nothing was kept, so nothing is deleted.
        """
        core = self.makePmip()
        bu = self.onlyPBU(self.trigger(core, 3))
        effects, raw = self.ack(core, bu, phoa=None)
        self.assertEqual(self.notifies(effects),
                         [Notify(Notification(3, Result.PBACK_UNUSABLE, MN1, None, raw),
                                 MAG1)])
        self.assertNotIn(Persist, [type(e) for e in effects])
        dereg = self.onlyPBU(effects)
        self.assertEqual(dereg.lifetime, 0)
        self.assertEqual(dereg.option(MobileNodeIdentifier).identifier, MN1)
        self.assertEqual(dereg.option(HomeNetworkPrefix), HomeNetworkPrefix(ZERO, 128))
        self.assertEqual(core.mobile(MN1).state, pmip.DEREGISTERING)
        self.assertEqual(core.counters["unusable"], 1)
        effects, raw = self.ack(core, dereg, phoa=None, lifetime=0)
        self.assertEqual(effects, [])
        self.assertIsNone(core.mobile(MN1))

    def test_phoaMismatch(self):
        """A known MN with another pHoA is an error reported to the MAG."""
        core = self.makePmip()
        self.register(core)
        seq = core.mobile(MN1).sequence
        effects = self.trigger(core, 9, mag=MAG2, phoa=OTHER, mode=AddressMode.STATIC)
        self.assertEqual(effects, [Notify(Notification(9, Result.PHOA_MISMATCH, MN1, PHOA),
                                          MAG2)])
        m = core.mobile(MN1)
        self.assertEqual((m.state, m.pcoa, m.mag, m.sequence), (pmip.BOUND, MAG1, MAG1, seq))

    def test_addressConflict(self):
        """A pHoA another mobile holds is refused."""
        core = self.makePmip()
        self.register(core)
        effects = self.trigger(core, 4, mag=MAG2, mnId=MN2, phoa=PHOA,
                               mode=AddressMode.STATELESS)
        self.assertEqual(effects, [Notify(Notification(4, Result.ADDRESS_CONFLICT, MN2, PHOA),
                                          MAG2)])
        self.assertIsNone(core.mobile(MN2))

    def test_pbackFromNonLmaDropped(self):
        core = self.makePmip()
        bu = self.onlyPBU(self.trigger(core, 1))
        effects, _ = self.ack(core, bu, source=STRANGER)
        self.assertEqual(effects, [])
        self.assertEqual(core.mobile(MN1).state, pmip.REGISTERING)
        effects, raw = self.ack(core, bu)
        self.assertEqual(self.afterPersist(effects)[0].notification.result, Result.SUCCESS)

    def test_pbackForUnknownSequenceDropped(self):
        core = self.makePmip()
        bu = self.onlyPBU(self.trigger(core, 1))
        effects, _ = self.ack(core, bu, sequence=(bu.sequence + 5) & 0xFFFF)
        self.assertEqual(effects, [])
        self.assertEqual(core.mobile(MN1).state, pmip.REGISTERING)

    def test_otherMessagesDropped(self):
        core = self.makePmip()
        self.onlyPBU(self.trigger(core, 1))
        self.assertEqual(core.receiveMH(BindingError(2), b"", LMA, 0), [])
        self.assertEqual(core.receiveMH(BindingUpdate(1), b"", LMA, 0), [])
        self.assertEqual(core.mobile(MN1).state, pmip.REGISTERING)

    def test_rejectedInitialAttach(self):
        """A PBAck of 128 or more: PBACK_REJECTED with the PBAck, entry forgotten."""
        core = self.makePmip()
        bu = self.onlyPBU(self.trigger(core, 5))
        effects, raw = self.ack(core, bu, status=Status.INSUFFICIENT_RESOURCES, phoa=None)
        self.assertEqual(effects, [Notify(Notification(5, Result.PBACK_REJECTED, MN1,
                                                       None, raw), MAG1)])
        self.assertEqual(mh.decodeMessage(effects[0].notification.pback).status, 130)
        self.assertIsNone(core.mobile(MN1))
        self.assertIsNone(core.nextTimer())
        # The mobile can try again from scratch.
        bu = self.onlyPBU(self.trigger(core, 6))
        self.assertIsNotNone(bu.option(MobileNodeIdentifier))

    def test_retriggerSupersedes(self):
        """A second Trigger before the PBAck answers the first SUPERSEDED."""
        core = self.makePmip()
        bu1 = self.onlyPBU(self.trigger(core, 1))
        effects = self.trigger(core, 2, now=0.2)
        self.assertEqual(self.notifies(effects),
                         [Notify(Notification(1, Result.SUPERSEDED, MN1), MAG1)])
        bu2 = self.onlyPBU(effects)
        self.assertEqual(bu2.sequence, (bu1.sequence + 1) & 0xFFFF)
        effects, raw = self.ack(core, bu2)
        self.assertEqual(self.afterPersist(effects),
                         [Notify(Notification(2, Result.SUCCESS, MN1, PHOA, raw), MAG1)])

    def test_badConfiguration(self):
        self.assertRaises(ValueError, PmipCore, LMA, lifetime=3)
        self.assertRaises(ValueError, PmipCore, LMA, initialTimeout=0)
        self.assertRaises(ValueError, PmipCore, LMA, initialTimeout=4, maxTimeout=2)
        self.assertRaises(ValueError, PmipCore, LMA, refreshRatio=1)
        self.assertRaises(ValueError, PmipCore, LMA, detachDelay=-1)


class HandoffTests(PmipTestMixin, SynchronousTestCase):
    """Section 4.2: a Trigger from another MAG for a bound mobile."""

    def test_handoff(self):
        core = self.makePmip()
        first = self.register(core, transaction=1)
        effects = self.trigger(core, 40, mag=MAG2, phoa=PHOA, mode=AddressMode.STATIC,
                               now=10)
        bu = self.onlyPBU(effects)
        self.assertEqual(len(effects), 1)
        self.assertEqual(bu.sequence, (first.sequence + 1) & 0xFFFF)
        self.assertEqual(bu.flags, BU_A | BU_H | BU_P)
        self.assertEqual(bu.option(HomeNetworkPrefix), HomeNetworkPrefix(PHOA, 128))
        self.assertEqual(bu.option(AlternateCareOfAddress), AlternateCareOfAddress(MAG2))
        self.assertIsNone(bu.option(MobileNodeIdentifier))
        self.assertEqual(core.mobile(MN1).state, pmip.HANDING_OVER)

        effects, raw = self.ack(core, bu, now=10.1)
        # Each MAG is told the other: its neighbour for context transfer.
        self.assertEqual(self.notifies(effects), [
            Notify(Notification(40, Result.SUCCESS, MN1, PHOA, raw, peerMag=MAG1), MAG2),
            Notify(Notification(0, Result.MOVED, MN1, PHOA, peerMag=MAG2), MAG1),
        ])
        m = core.mobile(MN1)
        self.assertEqual((m.state, m.pcoa, m.mag), (pmip.BOUND, MAG2, MAG2))

    def test_handoffWithoutPhoaInTrigger(self):
        """A MAG that lets the LMA assign may trigger again without a pHoA."""
        core = self.makePmip()
        self.register(core)
        bu = self.onlyPBU(self.trigger(core, 2, mag=MAG2, now=5))
        self.assertEqual(bu.option(HomeNetworkPrefix).prefix, PHOA)
        self.assertIsNone(bu.option(MobileNodeIdentifier))

    def test_reattachSameMag(self):
        """A Trigger from the bound MAG re-registers without a MOVED."""
        core = self.makePmip()
        self.register(core)
        bu = self.onlyPBU(self.trigger(core, 2, now=5))
        effects, raw = self.ack(core, bu, now=5)
        self.assertEqual(self.afterPersist(effects),
                         [Notify(Notification(2, Result.SUCCESS, MN1, PHOA, raw), MAG1)])

    def test_failedHandoffOldBindingStands(self):
        """A rejected handoff leaves the mobile bound at the old MAG."""
        core = self.makePmip()
        self.register(core)
        bu = self.onlyPBU(self.trigger(core, 2, mag=MAG2, now=5))
        effects, raw = self.ack(core, bu, status=Status.ADMINISTRATIVELY_PROHIBITED, now=5)
        self.assertEqual(effects, [Notify(Notification(2, Result.PBACK_REJECTED, MN1, PHOA,
                                                       raw), MAG2)])
        m = core.mobile(MN1)
        self.assertEqual((m.state, m.pcoa, m.mag, m.pending), (pmip.BOUND, MAG1, MAG1, None))
        # The old MAG is still the mobile's MAG: its Detach is taken.
        self.assertEqual(self.detach(core, 3, now=6), [])
        self.assertEqual(core.mobile(MN1).state, pmip.DETACH_PENDING)

    def test_handoffGivenUpOldBindingStands(self):
        core = self.makePmip()
        self.register(core)
        self.onlyPBU(self.trigger(core, 2, mag=MAG2, now=100))
        effects = []
        while core.mobile(MN1).pending is not None:
            effects = core.handleTimer(core.nextTimer())
        self.assertEqual(effects, [Notify(Notification(2, Result.LMA_UNREACHABLE, MN1, PHOA),
                                          MAG2)])
        m = core.mobile(MN1)
        self.assertEqual((m.state, m.pcoa, m.mag), (pmip.BOUND, MAG1, MAG1))
        self.assertIsNotNone(core.nextTimer())


class RetransmissionTests(PmipTestMixin, SynchronousTestCase):
    """RFC 6275 11.8: 1 s, doubling up to 32 s, then give up."""

    def test_schedule(self):
        core = self.makePmip()
        bu = self.onlyPBU(self.trigger(core, 8, now=0))
        sequences = [bu.sequence]
        self.assertEqual(core.nextTimer(), 1)
        self.assertEqual(core.handleTimer(0.999), [])
        sentAt = [0]
        for when in (1, 3, 7, 15, 31):
            self.assertEqual(core.nextTimer(), when)
            effects = core.handleTimer(when)
            again = self.onlyPBU(effects)
            self.assertEqual(len(effects), 1)
            sequences.append(again.sequence)
            sentAt.append(when)
            # The same PBU but for the number.
            self.assertEqual(again._replace(sequence=bu.sequence), bu)
        self.assertEqual([b - a for a, b in zip(sentAt, sentAt[1:])], [1, 2, 4, 8, 16])
        self.assertEqual(sequences,
                         [(bu.sequence + i) & 0xFFFF for i in range(6)])
        self.assertEqual(core.nextTimer(), 63)
        self.assertEqual(core.handleTimer(62.9), [])
        effects = core.handleTimer(63)
        self.assertEqual(effects, [Notify(Notification(8, Result.LMA_UNREACHABLE, MN1), MAG1)])
        self.assertIsNone(core.mobile(MN1))
        self.assertIsNone(core.nextTimer())

    def test_lateAckForEarlierCopy(self):
        """The PBAck of an earlier copy completes the registration."""
        core = self.makePmip()
        bu = self.onlyPBU(self.trigger(core, 8, now=0))
        self.onlyPBU(core.handleTimer(1))
        self.onlyPBU(core.handleTimer(3))
        effects, raw = self.ack(core, bu, now=3.5)
        self.assertEqual(self.afterPersist(effects)[0].notification.result, Result.SUCCESS)
        self.assertIsNone(core.mobile(MN1).pending)
        # No retransmission is due any more; the next timer is the refresh.
        self.assertEqual(core.nextTimer(), 3.5 + 675 * 4)

    def test_sequenceWraps(self):
        core = self.makePmip(rng=random.Random())
        core._rng.randrange = lambda n: 0xFFFE
        bu = self.onlyPBU(self.trigger(core, 1))
        self.assertEqual(bu.sequence, 0xFFFF)
        self.assertEqual(self.onlyPBU(core.handleTimer(1)).sequence, 0)
        self.assertEqual(self.onlyPBU(core.handleTimer(3)).sequence, 1)


class ResyncTests(PmipTestMixin, SynchronousTestCase):
    """A 135 answer carries the LMA's last accepted number."""

    def test_resync(self):
        core = self.makePmip()
        bu = self.onlyPBU(self.trigger(core, 1, phoa=PHOA, mode=AddressMode.STATIC, now=0))
        later = (bu.sequence + 1000) & 0xFFFF
        effects, _ = self.ack(core, bu, status=Status.SEQUENCE_OUT_OF_WINDOW,
                              sequence=later, now=0.1)
        again = self.onlyPBU(effects)
        self.assertEqual(len(effects), 1)
        self.assertEqual(again.sequence, (later + 1) & 0xFFFF)
        self.assertEqual(again._replace(sequence=bu.sequence), bu)
        self.assertEqual(core.nextTimer(), 1.1)
        effects, raw = self.ack(core, again, now=0.2)
        self.assertEqual(self.afterPersist(effects),
                         [Notify(Notification(1, Result.SUCCESS, MN1, PHOA, raw), MAG1)])

    def test_resyncGivesUp(self):
        """After a few 135 answers in a row the PBU counts as rejected."""
        core = self.makePmip()
        bu = self.onlyPBU(self.trigger(core, 1))
        for _ in range(3):
            effects, _ = self.ack(core, bu, status=Status.SEQUENCE_OUT_OF_WINDOW,
                                  sequence=0x1234)
            bu = self.onlyPBU(effects)
        effects, raw = self.ack(core, bu, status=Status.SEQUENCE_OUT_OF_WINDOW,
                                sequence=0x1234)
        self.assertEqual(effects, [Notify(Notification(1, Result.PBACK_REJECTED, MN1,
                                                       None, raw), MAG1)])
        self.assertIsNone(core.mobile(MN1))


class RefreshTests(PmipTestMixin, SynchronousTestCase):
    """The binding is refreshed before the granted lifetime ends."""

    def test_refreshAtAdvice(self):
        core = self.makePmip(lifetime=3600)
        self.register(core, now=10, lifetime=HOUR, bra=600)
        self.assertEqual(core.nextTimer(), 10 + 2400)
        self.assertEqual(core.handleTimer(2409), [])
        effects = core.handleTimer(2410)
        bu = self.onlyPBU(effects)
        self.assertEqual(len(effects), 1)
        self.assertEqual(bu.lifetime, HOUR)
        self.assertEqual(bu.option(HomeNetworkPrefix).prefix, PHOA)
        self.assertEqual(bu.option(AlternateCareOfAddress).address, MAG1)
        self.assertIsNone(bu.option(MobileNodeIdentifier))
        self.assertEqual(core.mobile(MN1).state, pmip.REFRESHING)
        effects, raw = self.ack(core, bu, lifetime=HOUR, bra=600, now=2410.2)
        # The new expiry is kept; nobody is notified of a refresh.
        self.assertEqual(self.afterPersist(effects), [])
        self.assertEqual(effects[0].record["expiry"], 2410.2 + 3600)
        m = core.mobile(MN1)
        self.assertEqual(m.state, pmip.BOUND)
        self.assertEqual(core.nextTimer(), 2410.2 + 2400)

    def test_refreshByRatioWithoutAdvice(self):
        """Without advice the refresh comes at refreshRatio of the granted lifetime."""
        core = self.makePmip(lifetime=3600, refreshRatio=0.8)
        bu = self.onlyPBU(self.trigger(core, 1))
        self.ack(core, bu, lifetime=100, bra=0)
        self.assertEqual(core.nextTimer(), 320)

    def test_refreshWithinGrantedLifetime(self):
        """A lifetime shorter than asked for is refreshed before it ends."""
        core = self.makePmip(lifetime=3600)
        self.register(core, lifetime=100)
        due = core.nextTimer()
        self.assertTrue(0 < due < 400, due)
        self.assertIsNotNone(self.onlyPBU(core.handleTimer(due)))

    def test_refreshGivenUpLosesBinding(self):
        core = self.makePmip()
        self.register(core, lifetime=100)
        effects = core.handleTimer(core.nextTimer())
        self.onlyPBU(effects)
        while core.mobile(MN1) is not None:
            effects = core.handleTimer(core.nextTimer())
        self.assertEqual(self.afterPersist(effects, deleted=True),
                         [Notify(Notification(0, Result.BINDING_LOST, MN1, PHOA), MAG1)])


class DetachTests(PmipTestMixin, SynchronousTestCase):
    """Detach: deregistration after C{detachDelay} unless the mobile reappears."""

    def test_detachDeregisters(self):
        core = self.makePmip(detachDelay=1.5)
        first = self.register(core, now=0)
        self.assertEqual(self.detach(core, 70, phoa=PHOA, now=100), [])
        m = core.mobile(MN1)
        self.assertEqual(m.state, pmip.DETACH_PENDING)
        self.assertEqual(core.nextTimer(), 101.5)
        self.assertEqual(core.handleTimer(101.4), [])
        effects = core.handleTimer(101.5)
        bu = self.onlyPBU(effects)
        self.assertEqual(bu.lifetime, 0)
        self.assertEqual(bu.sequence, (first.sequence + 1) & 0xFFFF)
        self.assertEqual(bu.option(HomeNetworkPrefix).prefix, PHOA)
        self.assertIsNone(bu.option(AlternateCareOfAddress))
        # The mobile named: its home may be another mobile's by the time the
        # LMA reads this (ReassignedHomeTests).
        self.assertEqual(bu.option(MobileNodeIdentifier).identifier, MN1)
        self.assertEqual(m.state, pmip.DEREGISTERING)
        effects, raw = self.ack(core, bu, lifetime=0, now=101.6)
        self.assertEqual(self.afterPersist(effects, deleted=True),
                         [Notify(Notification(70, Result.SUCCESS, MN1, PHOA, raw), MAG1)])
        self.assertIsNone(core.mobile(MN1))
        self.assertIsNone(core.nextTimer())

    def test_triggerElsewhereCancelsDetach(self):
        """
        A Trigger from another MAG within C{detachDelay} answers the Detach
        MOVED and hands off instead of deregistering.
        """
        core = self.makePmip(detachDelay=1.5)
        self.register(core, now=0)
        self.detach(core, 70, now=100)
        effects = self.trigger(core, 5, mag=MAG2, phoa=PHOA, mode=AddressMode.STATIC,
                               now=101)
        self.assertEqual(self.notifies(effects),
                         [Notify(Notification(70, Result.MOVED, MN1, PHOA), MAG1)])
        bu = self.onlyPBU(effects)
        self.assertEqual(bu.lifetime, HOUR)
        self.assertEqual(bu.option(AlternateCareOfAddress).address, MAG2)
        self.assertEqual(core.mobile(MN1).state, pmip.HANDING_OVER)
        # When the Detach's delay would have run out, nothing is deregistered.
        self.assertEqual(core.handleTimer(101.5), [])
        self.assertEqual(core.nextTimer(), 102)
        effects, raw = self.ack(core, bu, now=101.6)
        self.assertEqual(self.afterPersist(effects)[0],
                         Notify(Notification(5, Result.SUCCESS, MN1, PHOA, raw,
                                             peerMag=MAG1), MAG2))
        self.assertEqual(core.mobile(MN1).state, pmip.BOUND)
        self.assertEqual(core.mobile(MN1).pcoa, MAG2)
        self.assertGreater(core.nextTimer(), 1000)

    def test_triggerSameMagSupersedesDetach(self):
        """
        A pending Detach overtaken by a Trigger from the same MAG is answered
        SUPERSEDED (MOVED would say the mobile is bound elsewhere), and the
        binding is refreshed there instead of deregistered.
        """
        core = self.makePmip(detachDelay=1.5)
        self.register(core, now=0)
        self.detach(core, 70, now=100)
        effects = self.trigger(core, 6, mag=MAG1, phoa=PHOA, mode=AddressMode.STATIC,
                               now=100.5)
        self.assertEqual(self.notifies(effects),
                         [Notify(Notification(70, Result.SUPERSEDED, MN1, PHOA), MAG1)])
        bu = self.onlyPBU(effects)
        self.assertEqual((bu.lifetime, bu.option(AlternateCareOfAddress).address),
                         (HOUR, MAG1))
        effects, raw = self.ack(core, bu, now=100.6)
        self.assertEqual(self.notifies(effects),
                         [Notify(Notification(6, Result.SUCCESS, MN1, PHOA, raw), MAG1)])

    def test_detachFromOtherMag(self):
        """A MAG the mobile has left is answered MOVED at once."""
        core = self.makePmip()
        self.register(core)
        effects = self.detach(core, 33, mag=MAG2, now=5)
        self.assertEqual(effects, [Notify(Notification(33, Result.MOVED, MN1, PHOA), MAG2)])
        self.notifies(effects)
        m = core.mobile(MN1)
        self.assertEqual((m.state, m.detachAt), (pmip.BOUND, None))

    def test_detachUnknown(self):
        """
        A Detach for a mobile the client does not know is answered
        unknown-mn at once; a deregistration naming the mobile goes to the
        LMA in case it holds a binding this client lost, and nothing waits
        for its answer.
        """
        core = self.makePmip()
        effects = self.detach(core, 33)
        self.assertEqual(self.notifies(effects),
                         [Notify(Notification(33, Result.UNKNOWN_MN, MN1), MAG1)])
        bu = self.onlyPBU(effects)
        self.assertEqual(bu.lifetime, 0)
        self.assertTrue(bu.option(HomeNetworkPrefix).unspecified)
        self.assertEqual(bu.option(MobileNodeIdentifier), MobileNodeIdentifier(MN1))
        self.assertIsNone(bu.option(AlternateCareOfAddress))
        effects, _ = self.ack(core, bu, status=Status.NOT_HOME_AGENT_FOR_MN, phoa=None,
                              lifetime=0)
        self.assertEqual(effects, [])
        self.assertIsNone(core.mobile(MN1))
        self.assertIsNone(core.nextTimer())

    def test_detachUnknownDeregistersWhatTheLmaHolds(self):
        """With the pHoA in the Detach, the PBU names it; 135 resynchronises, then done."""
        core = self.makePmip()
        bu = self.onlyPBU(self.detach(core, 33, phoa=PHOA))
        self.assertEqual(bu.option(HomeNetworkPrefix).prefix, PHOA)
        later = (bu.sequence + 100) & 0xFFFF
        effects, _ = self.ack(core, bu, status=Status.SEQUENCE_OUT_OF_WINDOW,
                              sequence=later, lifetime=0)
        again = self.onlyPBU(effects)
        self.assertEqual(again.sequence, (later + 1) & 0xFFFF)
        effects, _ = self.ack(core, again, lifetime=0)
        self.assertEqual(effects, [])
        self.assertEqual(core.mobiles, {})

    def test_repeatedTriggerAndDetach(self):
        """
        A MAG that reconnects sends its unanswered Trigger or Detach again:
        the repeat changes nothing, and the answer comes once.
        """
        core = self.makePmip()
        bu = self.onlyPBU(self.trigger(core, 5))
        self.assertEqual(self.trigger(core, 5), [])
        self.assertEqual(core.mobile(MN1).pending.sequences, [bu.sequence])
        effects, raw = self.ack(core, bu)
        self.assertEqual(self.notifies(effects),
                         [Notify(Notification(5, Result.SUCCESS, MN1, PHOA, raw), MAG1)])
        self.assertEqual(self.detach(core, 6, phoa=PHOA, now=1), [])
        self.assertEqual(self.detach(core, 6, phoa=PHOA, now=1.2), [])
        self.assertEqual(core.mobile(MN1).state, pmip.DETACH_PENDING)
        self.assertEqual(core.nextTimer(), 2.5)

    def test_detachBeforeAnyBinding(self):
        """
        A mobile that leaves before its first PBAck is still deregistered,
        naming the mobile, since the PBU may have reached the LMA; the LMA's
        133 (nothing bound) counts as done.
        """
        core = self.makePmip(detachDelay=1.5)
        self.onlyPBU(self.trigger(core, 1))
        effects = self.detach(core, 2, now=0.5)
        self.assertEqual(effects, [Notify(Notification(1, Result.SUPERSEDED, MN1), MAG1)])
        self.assertEqual(core.mobile(MN1).state, pmip.DETACH_PENDING)
        self.assertEqual(core.nextTimer(), 2.0)
        dereg = self.onlyPBU(core.handleTimer(2.0))
        self.assertEqual(dereg.lifetime, 0)
        self.assertEqual(dereg.option(HomeNetworkPrefix).prefix, ZERO)
        self.assertEqual(dereg.option(MobileNodeIdentifier).identifier, MN1)
        effects, raw = self.ack(core, dereg, status=Status.NOT_HOME_AGENT_FOR_MN,
                                phoa=None, now=2.1)
        self.assertEqual([e.notification.result for e in self.notifies(effects)],
                         [Result.SUCCESS])
        self.assertIsNone(core.mobile(MN1))
        self.assertIsNone(core.nextTimer())

    def test_lostBindingReregisters(self):
        """
        A handoff PBU answered 160 (the LMA lost the binding: it restarted)
        is sent again with the MN identifier, and the handoff completes.
        """
        core = self.makePmip()
        self.register(core)
        bu = self.onlyPBU(self.trigger(core, 2, mag=MAG2, now=10))
        self.assertIsNone(bu.option(MobileNodeIdentifier))
        effects, raw = self.ack(core, bu, status=Status.MISSING_MN_IDENTIFIER_OPTION,
                                now=10.1)
        again = self.onlyPBU(effects)
        self.assertEqual(again.option(MobileNodeIdentifier).identifier, MN1)
        self.assertEqual(again.option(HomeNetworkPrefix).prefix, PHOA)
        effects, raw = self.ack(core, again, now=10.2)
        self.assertIn(Result.SUCCESS, [e.notification.result for e in self.notifies(effects)])
        self.assertEqual(core.mobile(MN1).pcoa, MAG2)

    def test_secondDetachInvalid(self):
        core = self.makePmip()
        self.register(core)
        self.detach(core, 2, now=1)
        exc = self.assertRaises(InvalidInput, self.detach, core, 3, now=1.1)
        self.assertEqual(exc.state, pmip.DETACH_PENDING)
        m = core.mobile(MN1)
        self.assertEqual((m.state, m.detach), (pmip.DETACH_PENDING, (2, MAG1)))
        self.assertEqual(core.nextTimer(), 2.5)

    def test_detachWhileDeregisteringInvalid(self):
        core = self.makePmip()
        self.register(core)
        self.detach(core, 2, now=1)
        self.onlyPBU(core.handleTimer(2.5))
        self.assertRaises(InvalidInput, self.detach, core, 3, now=2.6)
        self.assertEqual(core.mobile(MN1).state, pmip.DEREGISTERING)

    def test_triggerWhileDeregistering(self):
        """
        A Trigger after the deregistration went out registers afresh, with
        the MN identifier, since the LMA may have dropped the binding.
        """
        core = self.makePmip()
        self.register(core)
        self.detach(core, 2, now=1)
        dereg = self.onlyPBU(core.handleTimer(2.5))
        effects = self.trigger(core, 9, mag=MAG2, now=2.6)
        self.assertEqual(self.notifies(effects),
                         [Notify(Notification(2, Result.MOVED, MN1, PHOA), MAG1)])
        bu = self.onlyPBU(effects)
        self.assertEqual(bu.sequence, (dereg.sequence + 1) & 0xFFFF)
        self.assertEqual(bu.option(MobileNodeIdentifier), MobileNodeIdentifier(MN1))
        self.assertEqual(bu.option(HomeNetworkPrefix).prefix, PHOA)
        self.assertEqual(core.mobile(MN1).state, pmip.REGISTERING)
        # The late answer to the deregistration is not taken for this PBU.
        self.assertEqual(self.ack(core, dereg, lifetime=0, now=2.7)[0], [])

    def test_transitionTable(self):
        """Only the documented inputs are accepted in each state."""
        for (state, what), nextState in pmip.TRANSITIONS.items():
            self.assertIn(state, (None, pmip.REGISTERING, pmip.BOUND, pmip.HANDING_OVER,
                                  pmip.REFRESHING, pmip.DETACH_PENDING,
                                  pmip.DEREGISTERING, pmip.AWAITING_PEERS))
        core = self.makePmip()
        for state, event in ((pmip.DEREGISTERING, pmip.Event.DETACH),
                             (None, pmip.Event.DETACH),
                             (pmip.REGISTERING, pmip.Event.REFRESH),
                             (pmip.BOUND, pmip.Event.ATTACH)):
            m = pmip.Mobile(MN1, 1)
            m.state = state
            exc = self.assertRaises(InvalidInput, core._step, m, event)
            self.assertEqual((exc.what, exc.state, m.state), (str(event), state, state))
        m = pmip.Mobile(MN1, 1)
        self.assertEqual(core._step(m, pmip.Event.ATTACH), pmip.REGISTERING)
        self.assertIs(m.state, pmip.State.REGISTERING)
        self.assertEqual(str(m.state), "REGISTERING")


class OperatorTests(PmipTestMixin, SynchronousTestCase):
    """`netlmm ctl deregister` and the re-registration with a restarted LMA."""

    def test_deregisterBound(self):
        """
        A bound mobile: a PBU with lifetime 0 at once, its MAG told
        binding-lost; the PBAck ends it (nothing more for the MAG).
        """
        core = self.makePmip()
        self.register(core, now=0)
        effects = core.deregister(MN1, 10)
        self.assertEqual(self.notifies(effects),
                         [Notify(Notification(0, Result.BINDING_LOST, MN1, PHOA), MAG1)])
        bu = self.onlyPBU(effects)
        self.assertEqual((bu.lifetime, bu.option(HomeNetworkPrefix).prefix), (0, PHOA))
        self.assertEqual(core.mobile(MN1).state, pmip.DEREGISTERING)
        effects, raw = self.ack(core, bu, lifetime=0, now=10.1)
        self.assertEqual(self.afterPersist(effects, deleted=True), [])
        self.assertIsNone(core.mobile(MN1))
        self.assertEqual(core.counters["deregistered"], 1)

    def test_deregisterDetached(self):
        """
        A mobile its MAG already detached is deregistered now, not after the
        detach delay; the MAG's Detach is answered when the LMA has.
        """
        core = self.makePmip(detachDelay=30)
        self.register(core, now=0)
        self.detach(core, 70, phoa=PHOA, now=100)
        effects = core.deregister(MN1, 101)
        self.assertEqual(self.notifies(effects), [])
        bu = self.onlyPBU(effects)
        effects, raw = self.ack(core, bu, lifetime=0, now=101.1)
        self.assertEqual(self.afterPersist(effects, deleted=True),
                         [Notify(Notification(70, Result.SUCCESS, MN1, PHOA, raw), MAG1)])

    def test_deregisterRefused(self):
        """Unknown: KeyError; already deregistering: InvalidInput, nothing changes."""
        core = self.makePmip()
        self.assertRaises(KeyError, core.deregister, MN1, 0)
        self.register(core, now=0)
        core.deregister(MN1, 1)
        self.assertRaises(InvalidInput, core.deregister, MN1, 2)
        self.assertEqual(core.mobile(MN1).state, pmip.DEREGISTERING)

    def test_reregister(self):
        """
        The LMA restarted without its bindings: every bound mobile is
        refreshed at once (spread at REREGISTER_RATE); another LMA's
        restart changes nothing.
        """
        core = self.makePmip()
        self.register(core, now=0)
        self.register(core, transaction=2, mnId=b"mn2", now=0, phoa=OTHER)
        self.assertEqual(core.reregister(IPv6Address("2001:db8:9::9"), 50), [])
        self.assertGreater(core.nextTimer(), 50)
        self.assertEqual(core.reregister(LMA, 50), [])
        self.assertEqual(core.counters["reregistered"], 2)
        self.assertEqual(core.nextTimer(), 50)
        effects = core.handleTimer(50 + 1 / pmip.REREGISTER_RATE)
        self.assertEqual(len([e for e in effects if type(e) is SendMH]), 2)
        self.assertEqual({m.state for m in core.mobiles.values()}, {pmip.REFRESHING})


class _Log:
    """Collects what a core says (its C{log=})."""

    def __init__(self):
        self.lines = []

    def info(self, fmt, **kw):
        self.lines.append(fmt.format(**kw))


class PersistenceTests(PmipTestMixin, SynchronousTestCase):
    """
    Every acknowledged change is kept (L{Persist}) before the Notification
    that acknowledges it, and L{PmipCore.restore} takes the records back.
    """

    def stored(self, effects):
        return [(e.key, None if e.record is None
                 else json.loads(json.dumps(e.record, default=str)))
                for e in effects if type(e) is Persist]

    def test_bindingKept(self):
        core = self.makePmip()
        bu = self.onlyPBU(self.trigger(core, 1, now=2))
        effects, raw = self.ack(core, bu, now=2.5)
        self.assertEqual([type(e) for e in effects], [Persist, Notify])
        self.assertEqual(self.stored(effects), [(MN1, {
            "mn": MN1.hex(), "phoa": str(PHOA), "pcoa": str(MAG1), "mag": str(MAG1),
            "sequence": bu.sequence, "lifetime": 3600, "expiry": 3602.5,
            "mode": AddressMode.LMA_ASSIGNED})])

    def test_handoffKeptBeforeBothNotifications(self):
        core = self.makePmip()
        self.register(core)
        bu = self.onlyPBU(self.trigger(core, 2, mag=MAG2, phoa=PHOA,
                                       mode=AddressMode.STATIC, now=5))
        effects, raw = self.ack(core, bu, now=5)
        self.assertEqual([type(e) for e in effects], [Persist, Notify, Notify])
        self.assertEqual(self.stored(effects)[0][1]["pcoa"], str(MAG2))

    def test_nothingKeptForFailures(self):
        """A refused attachment was never kept; a failed handoff keeps the old record."""
        core = self.makePmip()
        bu = self.onlyPBU(self.trigger(core, 1))
        effects, _ = self.ack(core, bu, status=Status.INSUFFICIENT_RESOURCES, phoa=None)
        self.assertEqual([type(e) for e in effects], [Notify])
        self.register(core)
        bu = self.onlyPBU(self.trigger(core, 2, mag=MAG2))
        effects, _ = self.ack(core, bu, status=Status.ADMINISTRATIVELY_PROHIBITED)
        self.assertEqual([type(e) for e in effects], [Notify])

    def test_restore(self):
        """
        An unexpired record comes back BOUND at its MAG and is refreshed at
        once; an expired one is left out, and its record deleted.
        """
        old = self.makePmip()
        kept = self.stored(self.ack(old, self.onlyPBU(self.trigger(old, 1)))[0])
        self.assertEqual(len(kept), 1)
        core = self.makePmip()
        self.assertEqual(core.restore([kept[0][1]], now=3700), [Persist(MN1, None)])
        self.assertEqual(core.mobiles, {})
        self.assertEqual(core.restore([kept[0][1]], now=100), [])
        m = core.mobile(MN1)
        self.assertEqual((m.state, m.phoa, m.pcoa, m.mag, m.expiry),
                         (pmip.BOUND, PHOA, MAG1, MAG1, 3600))
        self.assertEqual(core.nextTimer(), 100)
        bu = self.onlyPBU(core.handleTimer(100))
        self.assertEqual(bu.option(AlternateCareOfAddress).address, MAG1)
        # Its record is deleted when it goes.
        self.detach(core, 9, now=101)
        bu = self.onlyPBU(core.handleTimer(103))
        effects, _ = self.ack(core, bu, lifetime=0, now=103)
        self.assertEqual(self.stored(effects), [(MN1, None)])

    def test_recordOfEarlierReleaseRestored(self):
        """A record as the release before compact mobiles wrote it comes back BOUND."""
        core = self.makePmip()
        record = json.loads(
            '{"mn":"6d6e304062656e6368","pcoa":"2001:db8:ff:0:0:0:0:1",'
            '"mag":"2001:db8:ff:0:0:0:0:1","sequence":20372,"lifetime":3600,'
            '"expiry":3700.5,"mode":3,"phoa":"2001:db8:1:0:0:0:0:100"}')
        self.assertEqual(core.restore([record], 100), [])
        m = core.mobile(b"mn0@bench")
        self.assertEqual((m.state, m.phoa, m.pcoa, m.mag, m.sequence, m.lifetime, m.expiry,
                          m.mode),
                         (pmip.BOUND, IPv6Address("2001:db8:1::100"),
                          IPv6Address("2001:db8:ff::1"), IPv6Address("2001:db8:ff::1"),
                          20372, 3600, 3700.5, AddressMode.LMA_ASSIGNED))

    def test_magAddressesShared(self):
        """
        Mobiles at one MAG share one object for its address, whether they
        came by Triggers (each decoded afresh) or from the store: a million
        mobiles must not each keep a copy.
        """
        core = self.makePmip()
        self.register(core, 1, mnId=MN1)
        self.register(core, 2, mnId=MN2)
        one, two = core.mobile(MN1), core.mobile(MN2)
        self.assertIs(one.mag, two.mag)
        self.assertIs(one.pcoa, two.pcoa)
        records = [p.record for p in core.snapshot()]
        records = [{k: (str(v) if k in ("pcoa", "mag") else v) for k, v in r.items()}
                   for r in records]
        restored = self.makePmip()
        restored.restore(records, 10)
        one, two = restored.mobile(MN1), restored.mobile(MN2)
        self.assertEqual(one.mag, MAG1)
        self.assertIs(one.mag, two.mag)
        self.assertIs(one.pcoa, two.pcoa)

    def restarted(self, effects):
        """A new client restored from the last record that C{effects} kept."""
        [(_, record)] = self.stored(effects)[-1:]
        core = self.makePmip()
        core.restore([record], 10)
        return core

    def assertDeregisters(self, core, transaction, mag):
        """C{mag}'s Detach sent again deregisters the mobile at the LMA."""
        self.assertEqual(self.detach(core, transaction, mag=mag, now=10), [])
        bu = self.onlyPBU(core.handleTimer(core.nextTimer()))
        self.assertEqual(bu.lifetime, 0)

    def test_movedKeptBeforeTheStaleMagForgets(self):
        """
        The serving MAG's Detach answered MOVED while another MAG's request
        is in hand: the record names that other MAG first, so that its
        Detach, sent again after a restart, still deregisters the mobile
        (without it the restored client answered MOVED too and the binding
        was left at the LMA with no MAG: found by the kill -9 test).
        """
        core = self.makePmip()
        self.register(core)
        self.onlyPBU(self.trigger(core, 2, mag=MAG2, phoa=PHOA, mode=AddressMode.STATIC))
        effects = self.detach(core, 3, mag=MAG2)
        self.assertEqual([e.notification.result for e in self.notifies(effects)],
                         [Result.SUPERSEDED])
        effects = self.detach(core, 4, mag=MAG1)
        self.assertEqual([type(e) for e in effects], [Persist, Notify])
        self.assertEqual((effects[1].notification.result, effects[1].mag),
                         (Result.MOVED, MAG1))
        self.assertEqual(self.stored(effects)[0][1]["mag"], str(MAG2))
        self.assertDeregisters(self.restarted(effects), 3, MAG2)
        # Told once: the next stale Detach writes nothing.
        self.assertEqual([type(e) for e in self.detach(core, 5, mag=MAG1)], [Notify])

    def test_movedKeptBeforeTheSupersededDetachIsAnswered(self):
        """
        The serving MAG's Detach still waiting when another MAG triggers:
        the record names the new MAG before the old one is told MOVED.
        """
        core = self.makePmip()
        self.register(core)
        self.assertEqual(self.detach(core, 2, mag=MAG1), [])
        effects = self.trigger(core, 3, mag=MAG2, phoa=PHOA, mode=AddressMode.STATIC)
        kinds = [type(e) for e in effects]
        self.assertEqual(kinds[:2], [Persist, Notify], effects)
        self.assertEqual((effects[1].notification.result, effects[1].mag),
                         (Result.MOVED, MAG1))
        self.onlyPBU(effects)
        self.detach(core, 4, mag=MAG2)
        self.assertDeregisters(self.restarted(effects), 4, MAG2)

    def test_restoreRecordWithoutMag(self):
        """A record of an earlier release: the current MAG is the bound one."""
        core = self.makePmip()
        core.restore([{"mn": MN1.hex(), "phoa": str(PHOA), "pcoa": str(MAG1),
                       "sequence": 3, "lifetime": 3600, "expiry": 3600}], 0)
        self.assertEqual(core.mobile(MN1).mag, MAG1)

    def test_restoredMobileNamedUntilAcknowledged(self):
        """
        The PBUs of a restored mobile carry its MN identifier until one is
        acknowledged: the LMA may have given the pHoA to another mobile
        while this client was down, and must be able to tell.
        """
        core = self.makePmip()
        core.restore([{"mn": MN1.hex(), "phoa": str(PHOA), "pcoa": str(MAG1),
                       "sequence": 3, "lifetime": 3600, "expiry": 3600}], 0)
        bu = self.onlyPBU(core.handleTimer(0))
        self.assertEqual(bu.option(MobileNodeIdentifier), MobileNodeIdentifier(MN1))
        self.ack(core, bu)
        bu = self.onlyPBU(core.handleTimer(core.nextTimer()))
        self.assertIsNone(bu.option(MobileNodeIdentifier))

    def test_restoreBadRecord(self):
        core = self.makePmip()
        good = {"mn": MN1.hex(), "phoa": str(PHOA), "pcoa": str(MAG1),
                "sequence": 3, "lifetime": 3600, "expiry": 3600}
        e = self.assertRaises(BadRecord, core.restore,
                              [good, {**good, "mn": MN2.hex(), "pcoa": 5}], 0)
        self.assertEqual(str(e), "record 1: 'pcoa': 5 is not an IPv6 address")
        e = self.assertRaises(BadRecord, core.restore, [{**good, "mag": "mag1"}], 0)
        self.assertEqual(str(e), "record 0: 'mag': 'mag1' is not an IPv6 address")

    def test_detachOfUnknownMobileSaysSo(self):
        """
        A Detach for a mobile the client does not know (it lost its state)
        is answered unknown-mn and logged.
        """
        log = _Log()
        core = self.makePmip(log=log)
        effects = self.detach(core, 4, now=0)
        self.assertEqual(self.notifies(effects),
                         [Notify(Notification(4, Result.UNKNOWN_MN, MN1), MAG1)])
        self.assertEqual(log.lines, [
            "Detach 4 from 2001:db8:a::1 for mn1@example.net, which this client does "
            "not know: answered unknown-mn; deregistering what the LMA may hold for it"])


class ReassignedHomeTests(PmipTestMixin, SynchronousTestCase):
    """A PMIP client and an LMA core together, the LMA's answers as it makes them."""

    def setUp(self):
        from netlmm.core.lma import LmaCore
        from netlmm.core.pools import AddressPool
        self.lma = LmaCore("2001:db8:1::/64", [f"{PMIP}/128"], 3600,
                           AddressPool("2001:db8:1::100", "2001:db8:1::1ff"))
        self.pmip = self.makePmip()
        self.now = 0

    def toLma(self, effects):
        """The PBUs among C{effects}, to the LMA; the PBAcks it answers."""
        answers = []
        for e in effects:
            if type(e) is SendMH:
                answers += [a.message for a in self.lma.receive(e.message, PMIP, self.now)
                            if type(a) is SendMH]
        return answers

    def toPmip(self, answers):
        effects = []
        for ba in answers:
            effects += self.pmip.receiveMH(ba, mh.encodeMessage(ba, LMA, PMIP), LMA, self.now)
        return effects

    def until(self, when):
        """The client's timers up to C{when}; their effects."""
        effects = []
        while (due := self.pmip.nextTimer()) is not None and due <= when:
            self.now = due
            effects += self.pmip.handleTimer(due)
        self.now = when
        return effects

    def test_lateDeregistrationLeavesTheNewOwner(self):
        """
        A deregistration the LMA carried out but whose PBAck was lost (or the
        LMA was killed before sending it), sent again after the LMA gave the
        address to another mobile: it names its mobile, so the LMA refuses
        it instead of ending the other mobile's binding (or refusing it with
        a 135 the client matches to the other mobile, and retrying for ever),
        and the client takes that answer for the deregistration done.
        """
        self.toPmip(self.toLma(self.trigger(self.pmip, 1, mnId=MN1)))
        home = self.lma.bindingFor(MN1).phoa
        self.toLma(self.detach(self.pmip, 2, mnId=MN1) + self.until(5))
        self.assertIsNone(self.lma.bindingFor(MN1))
        self.toPmip(self.toLma(self.trigger(self.pmip, 3, mag=MAG2, mnId=MN2, now=5)))
        self.assertEqual((self.lma.bindingFor(MN2).phoa, self.lma.bindingFor(MN2).pcoa),
                         (home, MAG2))
        effects = self.toPmip(self.toLma(self.until(60)))
        self.assertEqual((self.lma.bindingFor(MN2).phoa, self.lma.bindingFor(MN2).pcoa),
                         (home, MAG2))
        self.assertEqual([(n.notification.transaction, n.notification.result, n.mag)
                          for n in self.notifies(effects)], [(2, Result.SUCCESS, MAG1)])
        self.assertNotIn(MN1, self.pmip.mobiles)
        self.assertEqual(self.pmip.mobiles[MN2].home, home)
