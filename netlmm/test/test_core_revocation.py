"""
RFC 5846 Binding Revocation at the cores: the LMA revokes a binding the
operator ends (L{netlmm.core.lma.LmaCore.revoke}, the BRIs of
L{netlmm.core.revocation.Revocations}), the PMIP client drops it and
answers (L{netlmm.core.pmip.PmipCore}). Every message goes through the
codec; time is the C{now} argument.
"""

from ipaddress import IPv6Address

from twisted.trial.unittest import SynchronousTestCase

from netlmm.core import pmip
from netlmm.core.effects import InvalidInput, Persist, RouteRemove, SendMH
from netlmm.core.lma import BindingState, Event, PeerPolicy
from netlmm.core.revocation import Revocations
from netlmm.test.test_core_lma import MAG1, MN1, MN2, PHOA, PHOA2, PMIP, LmaTestMixin
from netlmm.test.test_core_pmip import LMA, PmipTestMixin
from netlmm.test.test_core_pmip import PHOA as CLIENT_PHOA
from netlmm.wire import mh
from netlmm.wire.control import Result
from netlmm.wire.mh import (
    BindingError, HomeNetworkPrefix, MobileNodeIdentifier, RevocationAcknowledgement,
    RevocationIndication, RevocationStatus, RevocationTrigger)


def wire(message, source, destination):
    """C{message} as its receiver decodes it, with its octets."""
    raw = mh.encodeMessage(message, source, destination)
    return mh.decodeMessage(raw, source, destination), raw


class LmaRevocationTests(LmaTestMixin, SynchronousTestCase):
    """The LMA ends a binding and sends its peer a BRI until a BRA comes."""

    def revoked(self, lma, b, now=10, indicate=True):
        """The effects of revoking C{b}: routes removed, record deleted, then the BRI."""
        effects = lma.revoke(b, indicate, now)
        self.assertEqual(effects[:2], [RouteRemove(PHOA, MAG1), Persist(MN1, None)])
        return effects[2:]

    def test_revoke(self):
        """
        The binding is gone at once; a BRI (administrative reason, P flag,
        the MN-ID and the pHoA) goes to the PMIP client that holds it; the
        other binding stays.
        """
        lma = self.makeLma()
        self.bind(lma)
        self.bind(lma, phoa=PHOA2, mnId=MN2)
        b = lma.bindingFor(MN1)
        [send] = self.revoked(lma, b)
        self.assertIsNone(lma.bindingFor(MN1))
        self.assertIs(b.state, BindingState.ABSENT)
        self.assertEqual(lma.bindingFor(MN2).state, BindingState.REGISTERED)
        self.assertEqual(send.destination, PMIP)
        bri, _ = wire(send.message, IPv6Address("2001:db8:ffff::1"), PMIP)
        self.assertEqual(bri, RevocationIndication(
            RevocationTrigger.ADMINISTRATIVE_REASON, 1, mh.BR_P,
            [MobileNodeIdentifier(MN1), HomeNetworkPrefix(PHOA, 128)]))
        self.assertEqual((lma.counters["revoked"], lma.revocations.counters["sent"]), (1, 1))
        self.assertRaises(InvalidInput, lma.revoke, b, True, 11)

    def test_acknowledged(self):
        """A BRA with the BRI's sequence number ends it: no retransmission."""
        lma = self.makeLma()
        self.bind(lma)
        [send] = self.revoked(lma, lma.bindingFor(MN1))
        self.assertEqual(lma.nextTimer(), 11)
        bra = RevocationAcknowledgement(RevocationStatus.SUCCESS, send.message.sequence)
        self.assertEqual(self.send(lma, bra, 10.5), [])
        self.assertEqual(lma.revocations.outstanding, {})
        self.assertEqual(lma.revocations.counters["acknowledged"], 1)
        self.assertEqual(lma.handleTimer(12), [])

    def test_braMatchesNothing(self):
        """A BRA that answers no BRI (or comes from another peer) is dropped, counted."""
        lma = self.makeLma()
        self.bind(lma)
        [send] = self.revoked(lma, lma.bindingFor(MN1))
        sequence = send.message.sequence
        stranger = IPv6Address("2001:db8:c::2")
        self.assertEqual(self.send(lma, RevocationAcknowledgement(0, sequence), 10,
                                   source=stranger), [])
        self.assertEqual(self.send(lma, RevocationAcknowledgement(0, sequence + 1), 10), [])
        self.assertEqual(lma.counters["unexpected"], 2)
        self.assertEqual(list(lma.revocations.outstanding), [sequence])

    def test_retransmittedThenGivenUp(self):
        """
        Without a BRA the BRI goes again after MINDelayBRIs (1 s), once
        (BRIMaxRetriesNumber), and is given up 1 s later.
        """
        lma = self.makeLma()
        self.bind(lma)
        [send] = self.revoked(lma, lma.bindingFor(MN1))
        self.assertEqual(lma.handleTimer(10.9), [])
        self.assertEqual(lma.handleTimer(11), [send])
        self.assertEqual(lma.nextTimer(), 12)
        self.assertEqual(lma.handleTimer(12), [])
        self.assertEqual(lma.revocations.outstanding, {})
        counters = lma.revocations.counters
        self.assertEqual((counters["retransmitted"], counters["unanswered"]), (1, 1))
        self.assertIsNone(lma.nextTimer())

    def test_refusedStatus(self):
        """A BRA with a refusal (128: the peer has no such binding) ends the BRI too."""
        lma = self.makeLma()
        self.bind(lma)
        [send] = self.revoked(lma, lma.bindingFor(MN1))
        self.send(lma, RevocationAcknowledgement(RevocationStatus.BINDING_DOES_NOT_EXIST,
                                                 send.message.sequence), 10)
        self.assertEqual(lma.revocations.counters["refused"], 1)
        self.assertEqual(lma.revocations.outstanding, {})

    def test_unknownMhType(self):
        """
        A peer that answers with Binding Error status 2 does not know MH type
        16: its BRIs end, it gets no more (L{LmaCore.revokes}); the
        bindings are gone all the same. Another status ends nothing.
        """
        lma = self.makeLma()
        self.bind(lma)
        self.bind(lma, phoa=PHOA2, mnId=MN2)
        self.revoked(lma, lma.bindingFor(MN1))
        self.assertEqual(self.send(lma, BindingError(1), 10), [])
        self.assertEqual(len(lma.revocations.outstanding), 1)
        self.assertEqual(self.send(lma, BindingError(mh.BE_UNKNOWN_MH_TYPE), 10), [])
        self.assertEqual(lma.revocations.outstanding, {})
        self.assertEqual(lma.revocations.counters["unsupported"], 1)
        self.assertFalse(lma.revokes(PMIP))
        effects = lma.revoke(lma.bindingFor(MN2), lma.revokes(PMIP), 11)
        self.assertEqual([type(e) for e in effects], [RouteRemove, Persist])
        self.assertIsNone(lma.bindingFor(MN2))

    def test_policyOff(self):
        """A peer whose policy says revocation = false gets no BRI."""
        lma = self.makeLma(peers=[("2001:db8:c::/64", PeerPolicy(revocation=False))])
        self.bind(lma)
        self.assertFalse(lma.revokes(PMIP))
        self.assertEqual(self.revoked(lma, lma.bindingFor(MN1),
                                      indicate=lma.revokes(PMIP)), [])
        self.assertTrue(self.makeLma().revokes(PMIP))

    def test_deletingSession(self):
        """A session deregistered and kept for a handoff (DELETING) can be revoked too."""
        lma = self.makeLma()
        self.bind(lma)
        b = lma.bindingFor(MN1)
        lma.step(b, Event.DEREGISTER)
        self.assertEqual(len(self.revoked(lma, b)), 1)
        self.assertIsNone(lma.bindingFor(MN1))


class RevocationsTests(SynchronousTestCase):
    """The bookkeeping of outstanding BRIs."""

    def test_sequenceWrapsAndSkipsOutstanding(self):
        r = Revocations()
        r._sequence = 0xFFFE
        first = r.indicate(PMIP, MN1, [], 1, 0).message.sequence
        r._sequence = 0xFFFE
        self.assertEqual((first, r.indicate(PMIP, MN2, [], 1, 0).message.sequence),
                         (0xFFFF, 0))

    def test_bounds(self):
        """A delay that is not positive, a negative number of retries: refused."""
        self.assertRaises(ValueError, Revocations, delay=0)
        self.assertRaises(ValueError, Revocations, retries=-1)

    def test_noRetries(self):
        """With BRIMaxRetriesNumber 0 a BRI is given up after its one delay."""
        r = Revocations(delay=2, retries=0)
        r.indicate(PMIP, MN1, [], 1, 0)
        outstanding = r.outstanding[1]
        self.assertEqual(r.handleTimer(1.9), ([], []))
        self.assertEqual(r.handleTimer(2), ([], [outstanding]))


class PmipRevocationTests(PmipTestMixin, SynchronousTestCase):
    """The PMIP client drops a binding the LMA revoked and tells its MAG."""

    def bri(self, core, options, now=5, sequence=9, source=LMA):
        message, raw = wire(RevocationIndication(
            RevocationTrigger.ADMINISTRATIVE_REASON, sequence, mh.BR_P, options), source,
            PMIP)
        return core.receiveMH(message, raw, source, now)

    def bra(self, effects, status=RevocationStatus.SUCCESS,
            options=(MobileNodeIdentifier(MN1),)):
        """The one BRA at the end of C{effects}: to the LMA, with C{status}."""
        send = effects[-1]
        self.assertIs(type(send), SendMH)
        self.assertEqual(send.destination, LMA)
        self.assertEqual(wire(send.message, PMIP, LMA)[0],
                         RevocationAcknowledgement(status, 9, mh.BR_P, list(options)))
        return effects[:-1]

    def test_revokedByMnId(self):
        """
        A BRI naming the mobile: its record is deleted, the MAG is told the
        binding is lost, the client forgets it, and the BRA says success.
        """
        core = self.makePmip()
        self.register(core)
        self.register(core, transaction=2, mnId=MN2)
        effects = self.bra(self.bri(core, [MobileNodeIdentifier(MN1),
                                           HomeNetworkPrefix(CLIENT_PHOA, 128)]))
        rest = self.afterPersist(effects, deleted=True)
        [notify] = self.notifies(rest)
        self.assertEqual((notify.mag, notify.notification.result, notify.notification.mnId),
                         (MAG1, Result.BINDING_LOST, MN1))
        self.assertIsNone(core.mobile(MN1))
        self.assertEqual(core.mobile(MN2).state, pmip.BOUND)
        self.assertEqual(core.counters["revoked"], 1)

    def test_revokedByHome(self):
        """Without an MN-ID the Home Network Prefix names the mobile."""
        core = self.makePmip()
        self.register(core)
        effects = self.bra(self.bri(core, [HomeNetworkPrefix(CLIENT_PHOA, 128)]), options=())
        self.assertEqual(len(self.notifies(effects)), 1)
        self.assertIsNone(core.mobile(MN1))

    def test_unknownMobile(self):
        """A BRI for a mobile this client does not have: BRA 128, nothing else."""
        core = self.makePmip()
        self.register(core)
        effects = self.bri(core, [MobileNodeIdentifier(MN2)])
        self.assertEqual(self.bra(effects, RevocationStatus.BINDING_DOES_NOT_EXIST,
                                  [MobileNodeIdentifier(MN2)]), [])
        self.assertEqual(core.mobile(MN1).state, pmip.BOUND)

    def test_detachPending(self):
        """
        A mobile the MAG detached (the client waits before deregistering):
        the MAG's Detach is answered done, no binding-lost besides.
        """
        core = self.makePmip()
        self.register(core)
        self.detach(core, 7)
        self.assertEqual(core.mobile(MN1).state, pmip.DETACH_PENDING)
        effects = self.afterPersist(self.bra(self.bri(core, [MobileNodeIdentifier(MN1)])),
                                    deleted=True)
        [notify] = self.notifies(effects)
        self.assertEqual((notify.notification.transaction, notify.notification.result),
                         (7, Result.SUCCESS))
        self.assertIsNone(core.mobile(MN1))

    def test_registeringSuperseded(self):
        """A Trigger still waiting for its PBAck is answered superseded."""
        core = self.makePmip()
        self.onlyPBU(self.trigger(core, 3))
        effects = self.bra(self.bri(core, [MobileNodeIdentifier(MN1)]))
        self.assertEqual([n.notification.result for n in self.notifies(effects)],
                         [Result.SUPERSEDED])
        self.assertIsNone(core.mobile(MN1))

    def test_notFromLma(self):
        """A BRI from another node than the LMA is dropped; the binding stays."""
        core = self.makePmip()
        self.register(core)
        self.assertEqual(self.bri(core, [MobileNodeIdentifier(MN1)],
                                  source=IPv6Address("2001:db8:bad::1")), [])
        self.assertEqual(core.mobile(MN1).state, pmip.BOUND)



class SignedRevocationTests(SynchronousTestCase):
    """
    BRI and BRA through the RFC 4285 layer (L{netlmm.security.guard}): the
    LMA signs its BRI, the PMIP client checks it and signs its BRA, the LMA
    takes only a BRA that echoes a BRI it sent.
    """

    NOW = 1_700_000_000.0

    def setUp(self):
        from netlmm.security import guard
        from netlmm.security.auth import SecurityAssociation
        from netlmm.security.keystore import KeyStore
        self.sa = SecurityAssociation(1000, b"k" * 20, "hmac-sha1-96", MN1)
        other = SecurityAssociation(1001, b"o" * 20, "hmac-sha1-96", MN2)
        keys = KeyStore([self.sa, other])
        self.lma = guard.LmaGuard(keys)
        self.client = guard.PmipGuard(keys)

    def signedBri(self, mnId=MN1, sequence=3, now=NOW):
        bri = RevocationIndication(1, sequence, mh.BR_P, [MobileNodeIdentifier(mnId)])
        signed = self.lma.protectRevocation(bri, mnId, PMIP, now)
        raw = self.lma.octets.take(signed)
        self.assertEqual(raw, mh.encodeMessage(signed))
        return mh.decodeMessage(raw), raw

    def test_roundTrip(self):
        """A signed BRI is accepted once; the signed BRA that echoes it, once."""
        bri, raw = self.signedBri()
        self.assertIs(self.client.acceptRevocation(bri, raw, self.NOW + 1), self.sa)
        bra = self.client.answerRevocation(RevocationAcknowledgement(0, 3), bri, self.sa)
        braRaw = self.client.octets.take(bra)
        bra = mh.decodeMessage(braRaw)
        self.assertIsNone(self.lma.acceptRevocation(bra, braRaw, MN1, PMIP))
        self.assertEqual(self.lma.acceptRevocation(bra, braRaw, MN1, PMIP),
                         "BRA timestamp echoes no BRI sent (replayed BRA?)")
        # The same BRI again is a replay.
        self.assertEqual(self.client.acceptRevocation(bri, raw, self.NOW + 1),
                         "BRI timestamp is not later than the last one accepted (replay)")

    def test_refusedBris(self):
        """Unsigned, tampered, too old, or for a mobile the SA does not cover: dropped."""
        unsigned = RevocationIndication(1, 3, mh.BR_P, [MobileNodeIdentifier(MN1)])
        self.assertEqual(self.client.acceptRevocation(
            unsigned, mh.encodeMessage(unsigned), self.NOW),
            "unauthenticated BRI: no authentication option")
        bri, raw = self.signedBri()
        tampered = raw[:7] + bytes((raw[7] ^ 1,)) + raw[8:]
        self.assertEqual(self.client.acceptRevocation(
            mh.decodeMessage(tampered), tampered, self.NOW),
            "BRI SPI 1000: authenticator is wrong")
        self.assertEqual(self.client.acceptRevocation(bri, raw, self.NOW + 60),
                         "BRI timestamp is -60.000 s from the LMA's clock (window 7 s)")
        # Signed with MN1's SA but naming MN2.
        lie = RevocationIndication(1, 4, mh.BR_P, [MobileNodeIdentifier(MN2)])
        from netlmm.security.guard import _signed
        from netlmm.security.replay import toNtp
        signed = _signed(lie, toNtp(self.NOW), self.sa, None, self.lma.octets)
        lieRaw = self.lma.octets.take(signed)
        self.assertEqual(self.client.acceptRevocation(mh.decodeMessage(lieRaw), lieRaw,
                                                      self.NOW),
                         "BRI signed with SPI 1000 names no mobile of that SA")

    def test_noSa(self):
        """No SA for the mobile at the LMA: no signed BRI."""
        bri = RevocationIndication(1, 3, mh.BR_P, [MobileNodeIdentifier(b"mn9@x")])
        self.assertIsNone(self.lma.protectRevocation(bri, b"mn9@x", PMIP, self.NOW))

    def test_braForAnotherMobile(self):
        """A BRA signed with another mobile's SA is dropped."""
        self.signedBri()
        bra = RevocationAcknowledgement(0, 3, mh.BR_P, [MobileNodeIdentifier(MN2)])
        from netlmm.security.guard import _signed
        signed = _signed(bra, 1, self.lma.keys.bySpi(1001), None, self.client.octets)
        raw = self.client.octets.take(signed)
        self.assertEqual(self.lma.acceptRevocation(mh.decodeMessage(raw), raw, MN1, PMIP),
                         "BRA signed with SPI 1001, which is not for this mobile and client")

    def test_pmipCoreDropsUnsigned(self):
        """A PMIP client with RFC 4285 drops an unsigned BRI: the mobile stays, no BRA."""
        from netlmm.test.test_core_pmip import PmipTestMixin

        class Case(PmipTestMixin, SynchronousTestCase):
            pass
        case = Case()
        core = case.makePmip()
        case.register(core)
        core.security = self.client
        bri = RevocationIndication(1, 3, mh.BR_P, [MobileNodeIdentifier(MN1)])
        raw = mh.encodeMessage(bri, LMA, PMIP)
        self.assertEqual(core.receiveMH(mh.decodeMessage(raw, LMA, PMIP), raw, LMA, 0), [])
        self.assertEqual(core.mobile(MN1).state, pmip.BOUND)
        self.assertEqual(core.counters["revocationsDropped"], 1)
