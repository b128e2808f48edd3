"""
Tests for L{netlmm.core.lma}, the Local Mobility Anchor core (draft sections
4.1, 4.2, 4.8 and Appendix A), and for L{netlmm.core.sequence}.

Every Proxy Binding Update is put through the Mobility Header codec before the
core sees it, and every answer the core gives is encoded, so the tests only
use messages that can exist on the wire. Time is the C{now} argument.
"""

import json
from ipaddress import IPv6Address

from twisted.trial.unittest import SynchronousTestCase

from netlmm.core.effects import BadRecord, Persist, RouteAdd, RouteMove, RouteRemove, SendMH
from netlmm.core.lma import AddressPool, LmaCore
from netlmm.core.sequence import seqGreater
from netlmm.wire import mh
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
    UnknownMessage,
)

LMA = IPv6Address("2001:db8:ffff::1")
PMIP = IPv6Address("2001:db8:c::1")
STRANGER = IPv6Address("2001:db8:bad::1")
MAG1 = IPv6Address("2001:db8:a::1")
MAG2 = IPv6Address("2001:db8:b::1")
HOME = "2001:db8:1::/64"
PHOA = IPv6Address("2001:db8:1::10")
PHOA2 = IPv6Address("2001:db8:1::11")
POOL_FIRST = IPv6Address("2001:db8:1::100")
ZERO = IPv6Address("::")
MN1 = b"mn1@example.net"
MN2 = b"mn2@example.net"
FLAGS = BU_A | BU_H | BU_P
#: One hour, in the 4-second units of the Lifetime field.
HOUR = 900


def pbu(sequence, phoa=PHOA, mnId=MN1, mag=MAG1, lifetime=HOUR, flags=FLAGS,
        hnp=True, prefixLength=128):
    """A Proxy Binding Update as the PMIP client builds it."""
    options = []
    if hnp:
        options.append(HomeNetworkPrefix(ZERO if phoa is None else phoa, prefixLength))
    if mag is not None:
        options.append(AlternateCareOfAddress(mag))
    if mnId is not None:
        options.append(MobileNodeIdentifier(mnId))
    return BindingUpdate(sequence, flags, lifetime, options)


class LmaTestMixin:
    """Helpers shared by the LMA test cases."""

    def makeLma(self, pool=None, maxLifetime=3600, **kw):
        return LmaCore(HOME, ["2001:db8:c::/64"], maxLifetime=maxLifetime,
                       pool=pool, **kw)

    def send(self, lma, message, now, source=PMIP):
        """
        Put C{message} through the codec to C{lma} and return its effects,
        checking that every message it answers with encodes and decodes.
        """
        raw = mh.encodeMessage(message, source, LMA)
        effects = lma.receive(mh.decodeMessage(raw, source, LMA), source, now)
        for e in effects:
            if type(e) is SendMH:
                back = mh.encodeMessage(e.message, LMA, e.destination)
                self.assertEqual(mh.decodeMessage(back, LMA, e.destination), e.message)
        return effects

    def onlyBA(self, effects, destination=PMIP):
        """The one Binding Acknowledgement in C{effects}, sent to C{destination}."""
        sends = [e for e in effects if type(e) is SendMH]
        self.assertEqual(len(sends), 1, effects)
        self.assertEqual(sends[0].destination, destination)
        ba = sends[0].message
        self.assertIs(type(ba), BindingAcknowledgement)
        return ba

    def assertRejected(self, effects, status, sequence=None):
        """C{effects} are only a BA with C{status}; no data-plane change."""
        self.assertEqual([e for e in effects if type(e) is not SendMH], [])
        ba = self.onlyBA(effects)
        self.assertEqual(ba.status, status, Status.name(ba.status))
        self.assertFalse(ba.accepted)
        self.assertEqual(ba.lifetime, 0)
        self.assertIsNone(ba.option(BindingRefreshAdvice))
        if sequence is not None:
            self.assertEqual(ba.sequence, sequence)
        return ba

    def bind(self, lma, sequence=100, phoa=PHOA, mnId=MN1, mag=MAG1, now=0,
             lifetime=HOUR):
        effects = self.send(lma, pbu(sequence, phoa, mnId, mag, lifetime), now)
        ba = self.onlyBA(effects)
        self.assertEqual(ba.status, Status.ACCEPTED)
        return ba


class SequenceTests(SynchronousTestCase):
    """L{seqGreater} compares modulo 2**16 (RFC 6275 9.5.1)."""

    def test_ordinary(self):
        self.assertTrue(seqGreater(1, 0))
        self.assertTrue(seqGreater(500, 499))
        self.assertFalse(seqGreater(499, 500))

    def test_equalIsNotGreater(self):
        for n in (0, 1, 0x7FFF, 0x8000, 0xFFFF):
            self.assertFalse(seqGreater(n, n))

    def test_wraparound(self):
        self.assertTrue(seqGreater(0, 0xFFFF))
        self.assertTrue(seqGreater(5, 0xFFF0))
        self.assertFalse(seqGreater(0xFFFF, 0))
        self.assertFalse(seqGreater(0xFFF0, 5))

    def test_halfWindow(self):
        """
        The last accepted number and the 32768 before it are not greater;
        the 32767 after it are.
        """
        for last in (0, 1, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF):
            self.assertTrue(seqGreater((last + 1) & 0xFFFF, last))
            self.assertTrue(seqGreater((last + 0x7FFF) & 0xFFFF, last))
            self.assertFalse(seqGreater((last + 0x8000) & 0xFFFF, last))
            self.assertFalse(seqGreater((last - 0x8000) & 0xFFFF, last))
            self.assertFalse(seqGreater((last - 1) & 0xFFFF, last))


class AddressPoolTests(SynchronousTestCase):
    """L{AddressPool} hands out the lowest free address."""

    def test_allocateInOrderAndExhaust(self):
        pool = AddressPool("2001:db8:1::100", "2001:db8:1::102")
        self.assertEqual(pool.size, 3)
        got = [pool.allocate() for _ in range(3)]
        self.assertEqual(got, [IPv6Address("2001:db8:1::100"),
                               IPv6Address("2001:db8:1::101"),
                               IPv6Address("2001:db8:1::102")])
        self.assertIsNone(pool.allocate())
        self.assertEqual(pool.inUse, 3)

    def test_releaseReuses(self):
        pool = AddressPool("2001:db8:1::100", "2001:db8:1::102")
        a, b, c = pool.allocate(), pool.allocate(), pool.allocate()
        pool.release(b)
        pool.release(a)
        self.assertEqual(pool.allocate(), a)
        self.assertEqual(pool.allocate(), b)
        self.assertIsNone(pool.allocate())

    def test_reserveSkips(self):
        pool = AddressPool("2001:db8:1::100", "2001:db8:1::102")
        pool.reserve(IPv6Address("2001:db8:1::100"))
        self.assertEqual(pool.allocate(), IPv6Address("2001:db8:1::101"))
        self.assertIn(IPv6Address("2001:db8:1::102"), pool)
        self.assertNotIn(IPv6Address("2001:db8:1::103"), pool)

    def test_empty(self):
        self.assertRaises(ValueError, AddressPool, "2001:db8:1::2", "2001:db8:1::1")

    def test_largePoolKeepsABitPerAddress(self):
        """
        Addresses taken across a large pool (a /64) are kept as bits in
        blocks made as they are needed and dropped once empty; a double
        reservation is refused and a release of a free address changes
        nothing.
        """
        pool = AddressPool("2001:db8:1::", "2001:db8:1::ffff:ffff:ffff:ffff")
        first = [pool.allocate() for _ in range(1500)]
        self.assertEqual(first[-1], IPv6Address("2001:db8:1::5db"))
        far = IPv6Address("2001:db8:1::ffff:ffff:ffff:fffe")
        self.assertTrue(pool.reserve(far))
        self.assertFalse(pool.reserve(far))
        self.assertTrue(pool.taken(far))
        self.assertFalse(pool.taken(far + 1))
        self.assertEqual(pool.inUse, 1501)
        self.assertEqual(len(pool._slots._blocks), 4)
        for a in first[:512]:
            pool.release(a)
        pool.release(first[0])
        self.assertEqual(pool.inUse, 989)
        self.assertEqual(len(pool._slots._blocks), 3)
        self.assertEqual(pool.allocate(), first[0])
        pool.release(far)
        self.assertEqual(len(pool._slots._blocks), 3)
        self.assertEqual(pool.allocate(), first[1])


class InitialRegistrationTests(LmaTestMixin, SynchronousTestCase):
    """Section 4.1 steps 4-5: the first PBU for a mobile."""

    def test_staticPhoa(self):
        """
        A PBU with the pHoA, the MN identifier and the MAG's address creates
        a binding, adds the route and is acknowledged with the PBU's number.
        """
        lma = self.makeLma()
        effects = self.send(lma, pbu(100), now=10)
        self.assertEqual(effects[0], RouteAdd(PHOA, MAG1))
        ba = self.onlyBA(effects)
        self.assertEqual(ba.status, Status.ACCEPTED)
        self.assertEqual(ba.sequence, 100)
        self.assertEqual(ba.flags, BA_P)
        self.assertEqual(ba.lifetime, HOUR)
        self.assertEqual(ba.option(HomeNetworkPrefix), HomeNetworkPrefix(PHOA, 128))
        self.assertEqual(ba.option(MobileNodeIdentifier), MobileNodeIdentifier(MN1))
        b = lma.binding(PHOA)
        self.assertEqual((b.phoa, b.mnId, b.pcoa, b.sequence, b.lifetime, b.expiry,
                          b.client),
                         (PHOA, MN1, MAG1, 100, 3600, 3610, PMIP))
        self.assertIs(lma.bindingFor(MN1), b)
        self.assertEqual(lma.nextTimer(), 3610)

    def test_needsMnId(self):
        """A pHoA that is not bound cannot be registered without the MN identifier."""
        lma = self.makeLma()
        ba = self.assertRejected(self.send(lma, pbu(100, mnId=None), 0),
                                 Status.MISSING_MN_IDENTIFIER_OPTION, 100)
        self.assertEqual(ba.option(HomeNetworkPrefix), HomeNetworkPrefix(PHOA, 128))
        self.assertEqual(lma.bindings, {})
        self.assertIsNone(lma.nextTimer())

    def test_assignmentNeedsMnId(self):
        """An assignment request (all-zero prefix) without MN identifier: 160."""
        lma = self.makeLma(pool=AddressPool(POOL_FIRST, "2001:db8:1::1ff"))
        ba = self.assertRejected(self.send(lma, pbu(100, phoa=None, mnId=None), 0),
                                 Status.MISSING_MN_IDENTIFIER_OPTION)
        self.assertIsNone(ba.option(HomeNetworkPrefix))
        self.assertEqual(lma.pool.inUse, 0)

    def test_missingAlternateCareOfAddress(self):
        lma = self.makeLma()
        self.assertRejected(self.send(lma, pbu(100, mag=None), 0), Status.UNSPECIFIED)
        self.assertEqual(lma.bindings, {})

    def test_staticPhoaInsidePoolIsReserved(self):
        """A pHoA bound by other means that falls in the pool is not handed out."""
        pool = AddressPool(POOL_FIRST, "2001:db8:1::101")
        lma = self.makeLma(pool=pool)
        self.bind(lma, phoa=POOL_FIRST)
        ba = self.bind(lma, phoa=None, mnId=MN2)
        self.assertEqual(ba.option(HomeNetworkPrefix).prefix,
                         IPv6Address("2001:db8:1::101"))
        # Deregistering the static one gives its address back to the pool.
        self.send(lma, pbu(101, phoa=POOL_FIRST, mnId=None, mag=None, lifetime=0), 1)
        self.assertEqual(pool.inUse, 1)


class AssignmentTests(LmaTestMixin, SynchronousTestCase):
    """Appendix A: the LMA assigns the pHoA and returns it in the PBAck."""

    def test_assigned(self):
        lma = self.makeLma(pool=AddressPool(POOL_FIRST, "2001:db8:1::1ff"))
        effects = self.send(lma, pbu(7, phoa=None), now=0)
        self.assertEqual(effects[0], RouteAdd(POOL_FIRST, MAG1))
        ba = self.onlyBA(effects)
        self.assertEqual(ba.status, Status.ACCEPTED)
        self.assertEqual(ba.sequence, 7)
        self.assertEqual(ba.option(HomeNetworkPrefix), HomeNetworkPrefix(POOL_FIRST, 128))
        self.assertEqual(ba.option(MobileNodeIdentifier), MobileNodeIdentifier(MN1))
        self.assertEqual(lma.bindingFor(MN1).phoa, POOL_FIRST)
        self.assertEqual(lma.pool.inUse, 1)

        ba2 = self.bind(lma, sequence=9, phoa=None, mnId=MN2)
        self.assertEqual(ba2.option(HomeNetworkPrefix).prefix,
                         IPv6Address("2001:db8:1::101"))

    def test_sameMnAsksAgain(self):
        """
        An assignment request from a mobile that already has a binding
        (a retransmitted PBU whose PBAck was lost) gets the same pHoA.
        """
        lma = self.makeLma(pool=AddressPool(POOL_FIRST, "2001:db8:1::1ff"))
        self.bind(lma, sequence=7, phoa=None)
        effects = self.send(lma, pbu(8, phoa=None), now=1)
        self.assertEqual([type(e) for e in effects], [Persist, SendMH])
        ba = self.onlyBA(effects)
        self.assertEqual((ba.status, ba.sequence), (Status.ACCEPTED, 8))
        self.assertEqual(ba.option(HomeNetworkPrefix).prefix, POOL_FIRST)
        self.assertEqual(len(lma.bindings), 1)
        self.assertEqual(lma.pool.inUse, 1)

    def test_poolExhausted(self):
        lma = self.makeLma(pool=AddressPool(POOL_FIRST, POOL_FIRST))
        self.bind(lma, phoa=None)
        self.assertRejected(self.send(lma, pbu(1, phoa=None, mnId=MN2), 0),
                            Status.INSUFFICIENT_RESOURCES, 1)
        self.assertIsNone(lma.bindingFor(MN2))

    def test_noPool(self):
        lma = self.makeLma(pool=None)
        self.assertRejected(self.send(lma, pbu(1, phoa=None), 0),
                            Status.ADMINISTRATIVELY_PROHIBITED, 1)
        self.assertEqual(lma.bindings, {})


class HandoffTests(LmaTestMixin, SynchronousTestCase):
    """Section 4.2: the PBU for a moved mobile names only the pHoA."""

    def test_moveWithoutMnId(self):
        lma = self.makeLma()
        self.bind(lma, sequence=100)
        effects = self.send(lma, pbu(101, mnId=None, mag=MAG2), now=50)
        self.assertEqual(effects[0], RouteMove(PHOA, MAG1, MAG2))
        ba = self.onlyBA(effects)
        self.assertEqual((ba.status, ba.sequence, ba.lifetime), (Status.ACCEPTED, 101, HOUR))
        self.assertIsNone(ba.option(MobileNodeIdentifier))
        self.assertEqual(ba.option(HomeNetworkPrefix).prefix, PHOA)
        b = lma.binding(PHOA)
        self.assertEqual((b.pcoa, b.sequence, b.mnId, b.expiry), (MAG2, 101, MN1, 3650))

    def test_moveByMnId(self):
        """An assignment request from a bound mobile at a new MAG moves it."""
        lma = self.makeLma(pool=AddressPool(POOL_FIRST, "2001:db8:1::1ff"))
        self.bind(lma, phoa=None)
        effects = self.send(lma, pbu(101, phoa=None, mag=MAG2), now=1)
        self.assertEqual(effects[0], RouteMove(POOL_FIRST, MAG1, MAG2))
        self.assertEqual(self.onlyBA(effects).status, Status.ACCEPTED)

    def test_sameMagIsNoMove(self):
        lma = self.makeLma()
        self.bind(lma, sequence=100)
        effects = self.send(lma, pbu(101, mnId=None), now=1)
        self.assertEqual([type(e) for e in effects], [Persist, SendMH])
        self.assertEqual(self.onlyBA(effects).status, Status.ACCEPTED)

    def test_boundToAnotherMn(self):
        """A pHoA bound to one mobile cannot be claimed for another: 134."""
        lma = self.makeLma()
        self.bind(lma, sequence=100)
        self.assertRejected(self.send(lma, pbu(500, mnId=MN2, mag=MAG2), 0),
                            Status.DAD_FAILED, 500)
        b = lma.binding(PHOA)
        self.assertEqual((b.mnId, b.pcoa, b.sequence), (MN1, MAG1, 100))

    def test_mnBoundToAnotherPhoa(self):
        """A mobile bound to one pHoA cannot bind a second: 159."""
        lma = self.makeLma()
        self.bind(lma, sequence=100)
        self.assertRejected(self.send(lma, pbu(101, phoa=PHOA2), 0),
                            Status.BCE_PBU_PREFIX_SET_DO_NOT_MATCH, 101)
        self.assertIsNone(lma.binding(PHOA2))
        self.assertEqual(lma.bindingFor(MN1).phoa, PHOA)


class SequenceNumberTests(LmaTestMixin, SynchronousTestCase):
    """RFC 6275 9.5.1: a PBU must carry a number greater than the last one."""

    def test_notGreater(self):
        """
        A PBU whose number is not greater gets 135 with the last accepted
        number and changes nothing.
        """
        lma = self.makeLma()
        self.bind(lma, sequence=100)
        for seq in (100, 99, (100 - 0x8000) & 0xFFFF, (100 + 0x8000) & 0xFFFF):
            effects = self.send(lma, pbu(seq, mnId=None, mag=MAG2), now=5)
            self.assertEqual([e for e in effects if type(e) is not SendMH], [])
            ba = self.onlyBA(effects)
            self.assertEqual(ba.status, Status.SEQUENCE_OUT_OF_WINDOW)
            self.assertEqual(ba.sequence, 100)
            self.assertEqual(ba.option(HomeNetworkPrefix).prefix, PHOA)
        b = lma.binding(PHOA)
        self.assertEqual((b.pcoa, b.sequence, b.expiry), (MAG1, 100, 3600))

    def test_135EchoesMnId(self):
        """The PMIP client matches a 135 answer by the MN identifier it sent."""
        lma = self.makeLma()
        self.bind(lma, sequence=100)
        ba = self.onlyBA(self.send(lma, pbu(50), now=5))
        self.assertEqual((ba.status, ba.sequence), (Status.SEQUENCE_OUT_OF_WINDOW, 100))
        self.assertEqual(ba.option(MobileNodeIdentifier), MobileNodeIdentifier(MN1))

    def test_wraparound(self):
        """After 65535 comes 0; from there 65535 is old."""
        lma = self.makeLma()
        self.bind(lma, sequence=0xFFFE)
        self.bind(lma, sequence=0xFFFF)
        ba = self.bind(lma, sequence=0, mnId=None, mag=MAG2)
        self.assertEqual(ba.sequence, 0)
        self.assertEqual(lma.binding(PHOA).pcoa, MAG2)
        ba = self.onlyBA(self.send(lma, pbu(0xFFFF, mnId=None), now=1))
        self.assertEqual((ba.status, ba.sequence), (Status.SEQUENCE_OUT_OF_WINDOW, 0))
        self.bind(lma, sequence=0x7FFF, mnId=None)
        self.assertEqual(lma.binding(PHOA).sequence, 0x7FFF)


class LifetimeTests(LmaTestMixin, SynchronousTestCase):
    """Granted lifetimes, refresh advice and deregistration."""

    def test_capped(self):
        """
        A lifetime above C{maxLifetime} is cut to it; the BA advises a
        refresh interval shorter than the lifetime.
        """
        lma = self.makeLma(maxLifetime=400)
        effects = self.send(lma, pbu(1, lifetime=mh.MAX_LIFETIME_UNITS), now=0)
        ba = self.onlyBA(effects)
        self.assertEqual(ba.lifetime, 100)
        self.assertEqual(ba.lifetimeSeconds, 400)
        bra = ba.option(BindingRefreshAdvice)
        self.assertIsNotNone(bra)
        self.assertTrue(0 < bra.interval < ba.lifetime, bra)
        self.assertEqual(lma.binding(PHOA).lifetime, 400)
        self.assertEqual(lma.nextTimer(), 400)

    def test_shorterThanMaxIsGranted(self):
        lma = self.makeLma(maxLifetime=3600)
        ba = self.bind(lma, lifetime=10)
        self.assertEqual(ba.lifetime, 10)
        bra = ba.option(BindingRefreshAdvice)
        self.assertTrue(0 < bra.interval < 10, bra)
        self.assertEqual(lma.nextTimer(), 40)

    def test_refreshAdviceOnEveryAcceptance(self):
        """Handoffs and refreshes carry the advice too."""
        lma = self.makeLma(maxLifetime=400)
        self.bind(lma, sequence=1)
        ba = self.bind(lma, sequence=2, mnId=None, mag=MAG2, now=10)
        self.assertEqual(ba.lifetime, 100)
        self.assertTrue(0 < ba.option(BindingRefreshAdvice).interval < 100)

    def test_badMaxLifetime(self):
        self.assertRaises(ValueError, LmaCore, HOME, [], maxLifetime=3)
        self.assertRaises(ValueError, LmaCore, HOME, [], maxLifetime=262144)

    def test_deregister(self):
        """Lifetime 0 removes the binding and the route."""
        lma = self.makeLma()
        self.bind(lma, sequence=100, now=0)
        effects = self.send(lma, pbu(101, mnId=None, mag=None, lifetime=0), now=5)
        self.assertEqual(effects[0], RouteRemove(PHOA, MAG1))
        ba = self.onlyBA(effects)
        self.assertEqual((ba.status, ba.sequence, ba.lifetime), (Status.ACCEPTED, 101, 0))
        self.assertIsNone(ba.option(BindingRefreshAdvice))
        self.assertEqual(lma.bindings, {})
        self.assertIsNone(lma.bindingFor(MN1))
        self.assertIsNone(lma.nextTimer())
        self.assertEqual(lma.handleTimer(10000), [])

    def test_deregisterOldSequence(self):
        """A deregistration is checked for order like any PBU."""
        lma = self.makeLma()
        self.bind(lma, sequence=100)
        ba = self.onlyBA(self.send(lma, pbu(100, mnId=None, mag=None, lifetime=0), 1))
        self.assertEqual((ba.status, ba.sequence), (Status.SEQUENCE_OUT_OF_WINDOW, 100))
        self.assertIsNotNone(lma.binding(PHOA))

    def test_deregisterReturnsAssignedAddress(self):
        lma = self.makeLma(pool=AddressPool(POOL_FIRST, POOL_FIRST))
        self.bind(lma, sequence=1, phoa=None)
        effects = self.send(lma, pbu(2, phoa=POOL_FIRST, mnId=None, mag=None, lifetime=0), 1)
        self.assertEqual(effects[0], RouteRemove(POOL_FIRST, MAG1))
        self.assertEqual(lma.pool.inUse, 0)
        ba = self.bind(lma, sequence=5, phoa=None, mnId=MN2)
        self.assertEqual(ba.option(HomeNetworkPrefix).prefix, POOL_FIRST)

    def test_deregisterUnknown(self):
        """Deregistering a pHoA or a mobile that is not bound: 133."""
        lma = self.makeLma(pool=AddressPool(POOL_FIRST, POOL_FIRST))
        self.assertRejected(self.send(lma, pbu(3, mag=None, lifetime=0), 0),
                            Status.NOT_HOME_AGENT_FOR_MN, 3)
        self.assertRejected(self.send(lma, pbu(4, phoa=None, lifetime=0), 0),
                            Status.NOT_HOME_AGENT_FOR_MN, 4)
        self.assertEqual(lma.pool.inUse, 0)


class ValidationTests(LmaTestMixin, SynchronousTestCase):
    """PBUs the LMA refuses before looking at its binding cache."""

    def test_unauthorizedClient(self):
        lma = self.makeLma()
        effects = self.send(lma, pbu(1), 0, source=STRANGER)
        ba = self.onlyBA(effects, destination=STRANGER)
        self.assertEqual(ba.status, Status.ADMINISTRATIVELY_PROHIBITED)
        self.assertEqual(len(effects), 1)
        self.assertEqual(lma.bindings, {})

    def test_unauthorizedCannotMoveBinding(self):
        lma = self.makeLma()
        self.bind(lma, sequence=1)
        effects = self.send(lma, pbu(2, mnId=None, mag=MAG2), 1, source=STRANGER)
        self.assertEqual(self.onlyBA(effects, STRANGER).status,
                         Status.ADMINISTRATIVELY_PROHIBITED)
        self.assertEqual(lma.binding(PHOA).pcoa, MAG1)

    def test_outsideHomePrefix(self):
        lma = self.makeLma()
        self.assertRejected(self.send(lma, pbu(1, phoa="2001:db8:2::1"), 0),
                            Status.NOT_HOME_SUBNET, 1)
        self.assertEqual(lma.bindings, {})

    def test_prefixLengthNot128(self):
        lma = self.makeLma()
        self.assertRejected(self.send(lma, pbu(1, prefixLength=64), 0),
                            Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX, 1)

    def test_missingHomeNetworkPrefix(self):
        lma = self.makeLma()
        self.assertRejected(self.send(lma, pbu(1, hnp=False), 0),
                            Status.MISSING_HOME_NETWORK_PREFIX_OPTION, 1)
        self.assertEqual(lma.bindings, {})

    def test_malformedHomeNetworkPrefix(self):
        """
        A PBU whose HNP option is malformed (prefix length 129) still
        reaches the LMA (it decodes, with a MalformedOption) and is answered
        158 like a missing one; nothing is bound.
        """
        lma = self.makeLma()
        raw = bytearray(mh.encodeMessage(pbu(1)))
        assert raw[12:14] == b"\x16\x12"
        raw[15] = 129
        message = mh.decodeMessage(bytes(raw))
        self.assertEqual(len(message.malformed(HomeNetworkPrefix)), 1)
        effects = lma.receive(message, PMIP, 0)
        self.assertRejected(effects, Status.MISSING_HOME_NETWORK_PREFIX_OPTION, 1)
        self.assertEqual(lma.bindings, {})

    def test_noProxyFlag(self):
        """
        A Binding Update without the P flag is a plain MIPv6 home
        registration, which this LMA does not serve: 131, no P in the answer.
        """
        lma = self.makeLma()
        ba = self.assertRejected(self.send(lma, pbu(1, flags=BU_A | BU_H), 0),
                                 Status.HOME_REGISTRATION_NOT_SUPPORTED, 1)
        self.assertEqual(ba.flags, 0)
        self.assertEqual(lma.bindings, {})

    def test_noHFlagIsRfc5213(self):
        """
        A PBU without the H flag is an RFC 5213 PBU (RFC 5213 6.9.1.5 asks
        only for A and P): it is not refused for the H flag but held to RFC
        5213, here for its missing Handoff Indicator (161).
        """
        lma = self.makeLma()
        ba = self.assertRejected(self.send(lma, pbu(1, flags=BU_A | BU_P), 0),
                                 Status.MISSING_HANDOFF_INDICATOR_OPTION, 1)
        self.assertEqual(ba.flags, BA_P)
        self.assertEqual(lma.bindings, {})

    def test_unknownMHType(self):
        """An unknown MH type is answered with a Binding Error, status 2."""
        lma = self.makeLma()
        effects = self.send(lma, UnknownMessage(42, b"\x00\x00"), 0)
        self.assertEqual(len(effects), 1)
        self.assertEqual(effects[0].destination, PMIP)
        be = effects[0].message
        self.assertIs(type(be), BindingError)
        self.assertEqual(be.status, mh.BE_UNKNOWN_MH_TYPE)
        self.assertEqual(be.status, 2)
        self.assertEqual(lma.counters["bindingErrors"], 1)

    def test_revocationIndication(self):
        """
        A Binding Revocation Indication (RFC 5846, from a MAG) is not taken
        by the LMA: Binding Error status 2, as before MH type 16 decoded.
        """
        lma = self.makeLma()
        effects = self.send(lma, mh.RevocationIndication(1, 5), 0)
        self.assertEqual([(type(e.message), e.message.status, e.destination) for e in effects],
                         [(BindingError, mh.BE_UNKNOWN_MH_TYPE, PMIP)])

    def test_notForLma(self):
        """A BA sent to the LMA is dropped."""
        lma = self.makeLma()
        self.assertEqual(self.send(lma, BindingAcknowledgement(0, 0, 1, 1), 0), [])
        self.assertEqual(lma.counters["unexpected"], 1)


class ExpiryTests(LmaTestMixin, SynchronousTestCase):
    """Bindings end when their lifetime runs out."""

    def test_expiry(self):
        pool = AddressPool(POOL_FIRST, POOL_FIRST)
        lma = self.makeLma(pool=pool, maxLifetime=400)
        self.bind(lma, sequence=1, phoa=None, now=100)
        self.assertEqual(lma.nextTimer(), 500)
        self.assertEqual(lma.handleTimer(499.9), [])
        self.assertIsNotNone(lma.bindingFor(MN1))
        self.assertEqual(lma.handleTimer(500), [RouteRemove(POOL_FIRST, MAG1),
                                                Persist(MN1, None)])
        self.assertEqual(lma.bindings, {})
        self.assertIsNone(lma.bindingFor(MN1))
        self.assertIsNone(lma.nextTimer())
        self.assertEqual(lma.counters["expired"], 1)
        self.assertEqual(pool.inUse, 0)
        # The address is free again.
        ba = self.bind(lma, sequence=1, phoa=None, mnId=MN2, now=600)
        self.assertEqual(ba.option(HomeNetworkPrefix).prefix, POOL_FIRST)

    def test_refreshMovesExpiry(self):
        """A refreshed binding outlives its first expiry time."""
        lma = self.makeLma(maxLifetime=400)
        self.bind(lma, sequence=1, now=0)
        self.bind(lma, sequence=2, mnId=None, now=300)
        self.assertEqual(lma.nextTimer(), 700)
        self.assertEqual(lma.handleTimer(400), [])
        self.assertIsNotNone(lma.binding(PHOA))
        self.assertEqual(lma.handleTimer(699), [])
        self.assertEqual(lma.handleTimer(700), [RouteRemove(PHOA, MAG1), Persist(MN1, None)])
        self.assertIsNone(lma.binding(PHOA))

    def test_handoffMovesExpiryAndRoute(self):
        lma = self.makeLma(maxLifetime=400)
        self.bind(lma, sequence=1, now=0)
        self.bind(lma, sequence=2, mnId=None, mag=MAG2, now=100)
        self.assertEqual(lma.handleTimer(400), [])
        self.assertEqual(lma.handleTimer(500), [RouteRemove(PHOA, MAG2), Persist(MN1, None)])

    def test_reboundAfterDeregistration(self):
        """
        The heap entry of a deregistered binding does not expire a new
        binding of the same pHoA.
        """
        lma = self.makeLma(maxLifetime=400)
        self.bind(lma, sequence=1, now=0)
        self.send(lma, pbu(2, mnId=None, mag=None, lifetime=0), now=10)
        self.bind(lma, sequence=3, now=20)
        self.assertEqual(lma.nextTimer(), 420)
        self.assertEqual(lma.handleTimer(400), [])
        self.assertEqual(lma.handleTimer(420), [RouteRemove(PHOA, MAG1), Persist(MN1, None)])

    def test_severalExpireTogether(self):
        lma = self.makeLma(maxLifetime=400)
        self.bind(lma, sequence=1, now=0)
        self.bind(lma, sequence=1, phoa=PHOA2, mnId=MN2, mag=MAG2, now=10)
        self.assertEqual(lma.handleTimer(1000),
                         [RouteRemove(PHOA, MAG1), Persist(MN1, None),
                          RouteRemove(PHOA2, MAG2), Persist(MN2, None)])
        self.assertEqual(lma.bindings, {})


class PersistenceTests(LmaTestMixin, SynchronousTestCase):
    """
    Every accepted change is kept (L{Persist}) before its PBAck, and
    L{LmaCore.restore} takes the records back.
    """

    def stored(self, effects):
        """The Persist effects' records as a store gives them back (JSON)."""
        return [(e.key, None if e.record is None
                 else json.loads(json.dumps(e.record, default=str)))
                for e in effects if type(e) is Persist]

    def test_newBindingKept(self):
        lma = self.makeLma(pool=AddressPool(POOL_FIRST, "2001:db8:1::1ff"))
        effects = self.send(lma, pbu(7, phoa=None), now=10)
        self.assertEqual([type(e) for e in effects], [RouteAdd, Persist, SendMH])
        self.assertEqual(self.stored(effects), [(MN1, {
            "phoa": "2001:db8:1::100", "homes": ["2001:db8:1::100"], "ipv4": None,
            "mn": MN1.hex(), "pcoa": "2001:db8:a::1", "sequence": 7, "lifetime": 3600,
            "expiry": 3610, "client": "2001:db8:c::1", "profile": "netlmm",
            "state": "REGISTERED", "timestamp": None, "att": None, "llid": None,
            "lla": None})])

    def test_handoffKept(self):
        lma = self.makeLma()
        self.bind(lma, sequence=100)
        effects = self.send(lma, pbu(101, mnId=None, mag=MAG2), now=50)
        self.assertEqual([type(e) for e in effects], [RouteMove, Persist, SendMH])
        record = self.stored(effects)[0][1]
        self.assertEqual((record["pcoa"], record["sequence"], record["expiry"]),
                         ("2001:db8:b::1", 101, 3650))

    def test_deregistrationDeletes(self):
        lma = self.makeLma()
        self.bind(lma, sequence=100)
        effects = self.send(lma, pbu(101, mnId=None, mag=None, lifetime=0), now=5)
        self.assertEqual(effects[:2], [RouteRemove(PHOA, MAG1), Persist(MN1, None)])
        self.assertEqual(self.onlyBA(effects).status, Status.ACCEPTED)

    def test_refusalsKeepNothing(self):
        """A refused PBU and a 135 answer change nothing, so keep nothing."""
        lma = self.makeLma()
        self.bind(lma, sequence=100)
        for message in (pbu(100, mnId=None), pbu(101, mnId=MN2), pbu(5, phoa=PHOA2, mag=None)):
            effects = self.send(lma, message, now=1)
            self.assertEqual([type(e) for e in effects], [SendMH])

    def test_snapshotIsWhatChangesKept(self):
        lma = self.makeLma()
        effects = self.send(lma, pbu(1), now=0)
        self.assertEqual(lma.snapshot(), [e for e in effects if type(e) is Persist])

    def test_restore(self):
        """
        Unexpired bindings come back with sequence, lifetime, expiry, client
        and pool address; their routes are put back; expired ones stay out,
        and their records are deleted.
        """
        old = self.makeLma(pool=AddressPool(POOL_FIRST, "2001:db8:1::1ff"), maxLifetime=400)
        kept = self.stored(self.send(old, pbu(7, phoa=None), now=0))
        kept += self.stored(self.send(old, pbu(9, mnId=MN2, mag=MAG2), now=100))
        lma = self.makeLma(pool=AddressPool(POOL_FIRST, "2001:db8:1::1ff"))
        effects = lma.restore([r for _, r in kept], now=450)
        self.assertEqual(effects, [Persist(MN1, None), RouteAdd(PHOA, MAG2)])
        self.assertIsNone(lma.bindingFor(MN1))
        b = lma.bindingFor(MN2)
        self.assertEqual((b.phoa, b.pcoa, b.sequence, b.lifetime, b.expiry, b.client),
                         (PHOA, MAG2, 9, 400, 500, PMIP))
        self.assertEqual(lma.pool.inUse, 0)
        self.assertEqual(lma.nextTimer(), 500)
        lma = self.makeLma(pool=AddressPool(POOL_FIRST, "2001:db8:1::1ff"))
        self.assertEqual(lma.restore([r for _, r in kept], now=50),
                         [RouteAdd(POOL_FIRST, MAG1), RouteAdd(PHOA, MAG2)])
        self.assertEqual(lma.pool.inUse, 1)
        self.assertEqual(str(lma.pool.allocate()), "2001:db8:1::101")

    def test_restoreBadRecords(self):
        """
        A bad record raises L{BadRecord} with its index and the field at
        fault; nothing after it is loaded.
        """
        good = self.stored(self.send(self.makeLma(), pbu(1), now=0))[0][1]
        old = {k: v for k, v in good.items() if k not in ("homes", "profile", "state")}
        cases = [
            ({**old, "phoa": "zzz"},
             "'phoa': 'zzz' is not an IPv6 address"),
            ({**good, "homes": ["zzz"]},
             "'homes': 'zzz' is not an IPv6 address or prefix"),
            ({**good, "homes": "2001:db8:1::1"},
             "'homes': '2001:db8:1::1' is not a list of homes"),
            ({**good, "homes": [], "ipv4": None},
             "a session with neither homes nor an IPv4 address"),
            ({**good, "profile": "mip6"}, "'profile': 'mip6' is not a valid Profile"),
            ({**good, "state": "ABSENT"}, "'state': ABSENT is not a kept state"),
            ({**good, "ipv4": "192.0.2.300/24"},
             "'ipv4': '192.0.2.300/24' is not an IPv4 address/length"),
            ({**good, "att": 256}, "'att': 256 is not an integer 0..255"),
            ({k: v for k, v in good.items() if k != "pcoa"}, "'pcoa' is missing"),
            ({**good, "mn": "6x"}, "'mn': non-hexadecimal number found in "
                                   "fromhex() arg at position 1"),
            ({**good, "mn": ""}, "'mn': '' is not a hex MN identifier"),
            ({**good, "sequence": 65536}, "'sequence': 65536 is not a sequence "
                                          "number (0..65535)"),
            ({**good, "sequence": "7"}, "'sequence': '7' is not a sequence number "
                                        "(0..65535)"),
            ({**good, "expiry": float("nan")}, "'expiry': nan is not a time in seconds"),
            ({**good, "lifetime": -4}, "'lifetime': -4 is not a time in seconds"),
            ([1, 2], "not a record but list"),
        ]
        for record, reason in cases:
            lma = self.makeLma()
            e = self.assertRaises(BadRecord, lma.restore, [good, record], 0)
            self.assertEqual((e.index, e.reason), (1, reason))
            self.assertEqual(str(e), f"record 1: {reason}")
