"""
The limits walk of L{netlmm.test.test_limits}, continued through the LMA's
PBU handler (L{netlmm.service.lma.LmaService}), in both dialects: each
field of a Proxy Binding Update with its largest legal value (handled as
usual) and its smallest illegal one (the exact answer asserted). The PBUs
enter as octets, the way the MH socket hands them over; trial fails any
test in which an exception was logged, so none escapes unnoticed.
"""

from ipaddress import IPv6Address

from twisted.internet.task import Clock
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from netlmm.dataplane.memory import MemoryDataPlane
from netlmm.service.lma import LmaService
from netlmm.test.test_core_lma import PMIP, LmaTestMixin
from netlmm.test.test_core_lma import pbu as npbu
from netlmm.test.test_lma_rfc5213 import (
    MAG1, P0, T0, Rfc5213Mixin, hnp, pbu,
)
from netlmm.wire import mh
from netlmm.wire.mh import (
    IPv4HomeAddressRequest, MobileNodeIdentifier, Status,
)

LMA = IPv6Address("2001:db8:ffff::1")


class FakePort:
    """Stands in for the LMA's MH socket: records what it sends."""

    def __init__(self):
        self.sent = []

    def send(self, message, destination, port=None, octets=None):
        self.sent.append((message, destination))


class LmaPbuTests(Rfc5213Mixin, SynchronousTestCase):
    """PBUs at the LMA service, RFC 5213 profile (an ALL_ZERO prefix, HI, ATT)."""

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(T0)
        self.lma = self.makeLma()
        self.service = LmaService(self.clock, self.lma, ("::1", 0), "udp",
                                  MemoryDataPlane())
        self.service.port = FakePort()

    def answer(self, octets, source=MAG1):
        """Feed C{octets} as the MH socket does; the one PBA sent back."""
        before = len(self.service.port.sent)
        self.service._received(mh.decodeMessage(octets), octets,
                               (source, 5436), self.clock.seconds())
        sent = self.service.port.sent[before:]
        self.assertEqual(len(sent), 1, sent)
        self.assertIs(type(sent[0][0]), mh.BindingAcknowledgement)
        self.assertEqual(sent[0][1], source)
        return sent[0][0]

    def raw(self, message):
        # Without addresses: no checksum, so that single octets can be patched.
        return mh.encodeMessage(message)

    def patched(self, message, optionType, at, value):
        """C{message}'s octets with octet C{at} of option C{optionType}'s body set."""
        raw = bytearray(self.raw(message))
        start = 12  # the MH header (6) and the BU's fixed part (6)
        while True:
            kind = raw[start]
            if kind == 0:
                start += 1
                continue
            if kind == optionType:
                raw[start + 2 + at] = value
                return bytes(raw)
            start += 2 + raw[start + 1]

    def assertStatus(self, octets, status):
        before = self.state(self.lma)
        ba = self.answer(octets)
        self.assertEqual(ba.status, status, Status.name(ba.status))
        self.assertEqual(ba.lifetime, 0)
        self.assertEqual(self.state(self.lma), before)
        return ba

    def assertAccepted(self, octets):
        ba = self.answer(octets)
        self.assertEqual(ba.status, Status.ACCEPTED, Status.name(ba.status))
        return ba

    def test_mnId(self):
        """254 octets (the option's most) is bound; an empty one is missing."""
        ba = self.assertAccepted(self.raw(pbu(mnId=b"m" * 254)))
        self.assertEqual(ba.option(MobileNodeIdentifier).identifier, b"m" * 254)
        message = pbu(mnId=None, extra=[mh.MalformedOption(8, b"\x01", "length 1")])
        self.assertStatus(self.raw(message), Status.MISSING_MN_IDENTIFIER_OPTION)

    def test_prefixLength(self):
        """A named /64 from the pool is bound; /128 is not ours; 129 is missing."""
        self.assertAccepted(self.raw(pbu(hnps=[hnp(P0)])))
        self.setUp()
        self.assertStatus(self.raw(pbu(hnps=[mh.HomeNetworkPrefix(P0.network_address, 128)])),
                          Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX)
        self.setUp()
        self.assertStatus(self.patched(pbu(hnps=[hnp(P0)]), 22, 1, 129),
                          Status.MISSING_HOME_NETWORK_PREFIX_OPTION)

    def test_lifetime(self):
        """0xFFFF units is granted as the LMA's most (3600 s: 900 units)."""
        ba = self.assertAccepted(self.raw(pbu(lifetime=0xFFFF)))
        self.assertEqual(ba.lifetime, 900)

    def test_sequenceWrap(self):
        """For a sequence-ordered MAG, 0 follows 0xFFFF; 0xFFFF again is old."""
        from netlmm.test.test_lma_rfc5213 import SEQMAG
        for sequence in (0xFFFF, 0):
            ba = self.answer(self.raw(pbu(sequence, timestamp=None)), SEQMAG)
            self.assertEqual((ba.status, ba.sequence), (Status.ACCEPTED, sequence))
        ba = self.answer(self.raw(pbu(0xFFFF, timestamp=None)), SEQMAG)
        # RFC 6275 9.5.1: the answer carries the last accepted sequence number.
        self.assertEqual((ba.status, ba.sequence, ba.lifetime),
                         (Status.SEQUENCE_OUT_OF_WINDOW, 0, 0))

    def test_timestamp(self):
        """Now is accepted; the largest timestamp (far future) is refused."""
        self.assertAccepted(self.raw(pbu(timestamp=T0)))
        self.setUp()
        message = pbu(timestamp=None, extra=[mh.Timestamp(0xFFFFFFFFFFFFFFFF)])
        ba = self.assertStatus(self.raw(message), Status.TIMESTAMP_MISMATCH)
        self.assertIsNotNone(ba.option(mh.Timestamp))

    def test_handoffIndicator(self):
        """HI 255 (not defined) is handled; a truncated HI is missing."""
        self.assertAccepted(self.raw(pbu(hi=255)))
        self.setUp()
        message = pbu(hi=None, extra=[mh.MalformedOption(23, b"\x00", "length 1")])
        self.assertStatus(self.raw(message), Status.MISSING_HANDOFF_INDICATOR_OPTION)

    def test_accessTechnology(self):
        """ATT 255 is handled; a truncated ATT is missing."""
        self.assertAccepted(self.raw(pbu(att=255)))
        self.setUp()
        message = pbu(att=None, extra=[mh.MalformedOption(24, b"\x00", "length 1")])
        self.assertStatus(self.raw(message), Status.MISSING_ACCESS_TECH_TYPE_OPTION)

    def test_ipv4Request(self):
        """
        Prefix length 32 is answered with an address; 33 makes the option
        malformed: refused with 171, the reply saying 131, no address taken.
        """
        ba = self.assertAccepted(self.raw(pbu(v4=[IPv4HomeAddressRequest("0.0.0.0", 32)])))
        self.assertEqual(ba.option(mh.IPv4HomeAddressReply).status, 0)
        self.setUp()
        raw = self.patched(pbu(v4=[IPv4HomeAddressRequest("0.0.0.0", 32)]), 36, 0, 33 << 2)
        self.assertIs(type(mh.decodeMessage(raw).options[-1]), mh.MalformedOption)
        ba = self.assertStatus(raw, Status.NOT_AUTHORIZED_FOR_IPV4_HOME_ADDRESS)
        self.assertEqual(ba.option(mh.IPv4HomeAddressReply).status, 131)

    def test_alternateCareOfAddress(self):
        """A proxy CoA is taken; a truncated one is refused UNSPECIFIED."""
        self.assertAccepted(self.raw(pbu(acoa="2001:db8:a::99")))
        self.setUp()
        message = pbu(extra=[mh.MalformedOption(3, b"\x20\x01", "length 2")])
        self.assertStatus(self.raw(message), Status.UNSPECIFIED)

    def test_truncatedOption(self):
        """An option running past the end of the message: a DecodeError, never handled."""
        self.assertTruncatedRefused(pbu())

    def assertTruncatedRefused(self, message):
        """C{message} with an MN-ID option claiming 64 octets and 6 there."""
        raw = bytearray(self.raw(message) + b"\x08\x40" + bytes(6))
        raw[1] += 1
        self.assertRaises(mh.DecodeError, mh.decodeMessage, bytes(raw))


class NetlmmPbuTests(LmaPbuTests):
    """The same walk in the netlmm dialect (pHoA /128, ACoA, MN-ID; no HI or ATT)."""

    def setUp(self):
        from netlmm.core.lma import AddressPool
        self.clock = Clock()
        self.clock.advance(T0)
        self.lma = LmaTestMixin.makeLma(
            self, AddressPool("2001:db8:1::100", "2001:db8:1::1ff"))
        self.service = LmaService(self.clock, self.lma, ("::1", 0), "udp",
                                  MemoryDataPlane())
        self.service.port = FakePort()

    def answer(self, octets, source=PMIP):
        return LmaPbuTests.answer(self, octets, source)

    def test_mnId(self):
        ba = self.assertAccepted(self.raw(npbu(1, mnId=b"m" * 254)))
        self.assertEqual(ba.option(MobileNodeIdentifier).identifier, b"m" * 254)
        self.setUp()
        message = npbu(1, mnId=None)
        message = message._replace(options=message.options + (
            mh.MalformedOption(8, b"\x01", "length 1"),))
        self.assertStatus(self.raw(message), Status.MISSING_MN_IDENTIFIER_OPTION)

    def test_prefixLength(self):
        """/128 (and ::/128, asking for one) is bound; /127 is refused; 129 missing."""
        self.assertAccepted(self.raw(npbu(1)))
        self.setUp()
        self.assertAccepted(self.raw(npbu(1, phoa=None)))
        self.setUp()
        self.assertStatus(self.raw(npbu(1, prefixLength=127)),
                          Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX)
        self.setUp()
        self.assertStatus(self.patched(npbu(1), 22, 1, 129),
                          Status.MISSING_HOME_NETWORK_PREFIX_OPTION)

    def test_lifetime(self):
        ba = self.assertAccepted(self.raw(npbu(1, lifetime=0xFFFF)))
        self.assertEqual(ba.lifetime, 900)

    def test_sequenceWrap(self):
        for sequence in (0xFFFF, 0):
            ba = self.answer(self.raw(npbu(sequence)))
            self.assertEqual((ba.status, ba.sequence), (Status.ACCEPTED, sequence))
        ba = self.answer(self.raw(npbu(0xFFFF)))
        self.assertEqual((ba.status, ba.sequence, ba.lifetime),
                         (Status.SEQUENCE_OUT_OF_WINDOW, 0, 0))

    def test_alternateCareOfAddress(self):
        message = npbu(1, mag=None)
        message = message._replace(options=message.options + (
            mh.MalformedOption(3, b"\x20\x01", "length 2"),))
        self.assertStatus(self.raw(message), Status.UNSPECIFIED)

    def test_truncatedOption(self):
        self.assertTruncatedRefused(npbu(1))

    def notInDialect(self):
        raise SkipTest("the netlmm dialect has no Timestamp, HI, ATT or IPv4 request")
    test_timestamp = test_handoffIndicator = test_accessTechnology = notInDialect
    test_ipv4Request = notInDialect


class HandoverTests(SynchronousTestCase):
    """
    HIs and HAcks at the handover service (RFC 5949), signed by the
    neighbour as L{netlmm.test.test_handover_service} sets the two MAGs up:
    each field's largest legal value and smallest illegal one.
    """

    def setUp(self):
        from netlmm.test.test_handover_service import MAG1, MAG2, MN, ServiceTests
        self.MAG1, self.MAG2, self.MN = MAG1, MAG2, MN
        ServiceTests.setUp(self)

    def feed(self, message=None, raw=None):
        """C{message}, signed by MAG2, into MAG1's handler; what MAG1 sent back."""
        from netlmm.wire import fho
        now = self.clock.seconds()
        if raw is None:
            raw = self.mag2.guard.sign(message, self.MAG2, self.MAG1, now)
        before = self.mag1.counters["refused"]
        self.mag1._received(mh.decodeMessage(raw), raw, (self.MAG2, 5436), now)
        sent = [fho.decodeMessage(data) for data, _ in self.mag1.transport.sent]
        self.mag1.transport.sent = []
        return self.mag1.counters["refused"] - before, sent

    def hi(self, sequence=1, code=0, mnId=None):
        from netlmm.wire import fho
        if mnId == b"":
            mnIdOption = mh.MalformedOption(8, b"\x01", "length 1")
        else:
            mnIdOption = mh.MobileNodeIdentifier(self.MN if mnId is None else mnId)
        return fho.HandoverInitiate(sequence, None, code, [
            mnIdOption, fho.ContextRequest([(22, b"")])])

    def test_sequenceAndCode(self):
        """
        Sequence 0xFFFF with code 0 (a request) gets the context; code 4,
        the smallest not defined, is answered NOT_ACCEPTED and counted.
        """
        from netlmm.wire.fho import HackCode
        refused, [hack] = self.feed(self.hi(0xFFFF))
        self.assertEqual((refused, hack.code, hack.sequence),
                         (0, HackCode.CONTEXT_ACCEPTED, 0xFFFF))
        refused, [hack] = self.feed(self.hi(2, code=4))
        self.assertEqual((refused, hack.code, hack.sequence), (1, HackCode.NOT_ACCEPTED, 2))
        refused, [hack] = self.feed(self.hi(3, code=255))
        self.assertEqual((refused, hack.code), (1, HackCode.NOT_ACCEPTED))

    def test_mnId(self):
        """254 octets: an unknown mobile (131); an empty MN-ID: NOT_ACCEPTED, none echoed."""
        from netlmm.wire.fho import HackCode
        refused, [hack] = self.feed(self.hi(mnId=b"m" * 254))
        self.assertEqual((refused, hack.code), (1, HackCode.CONTEXT_NOT_AVAILABLE))
        self.assertEqual(hack.option(mh.MobileNodeIdentifier).identifier, b"m" * 254)
        refused, [hack] = self.feed(self.hi(mnId=b""))
        self.assertEqual((refused, hack.code), (1, HackCode.NOT_ACCEPTED))
        self.assertIsNone(hack.option(mh.MobileNodeIdentifier))

    def test_unsolicitedHack(self):
        """A HAck with code 255 answering no HI: refused, counted, not answered."""
        from netlmm.wire.fho import HandoverAcknowledge
        self.assertEqual(self.feed(HandoverAcknowledge(1, None, 255, [
            mh.MobileNodeIdentifier(self.MN)])), (1, []))

    def test_truncated(self):
        """An 8-octet HI (its fixed part cut short): refused as malformed."""
        raw = bytes((59, 0, 14, 0, 0, 0, 0, 1))
        self.assertEqual(type(mh.decodeMessage(raw)), mh.UnknownMessage)
        self.assertEqual(self.feed(raw=raw), (1, []))


class GmaBuTests(SynchronousTestCase):
    """
    Binding Updates at the GMA service, signed as `netlmm mn` signs them
    (the fixture of L{netlmm.test.test_gma_service}).
    """

    def setUp(self):
        from netlmm.test.test_gma_service import GmaServiceTests
        GmaServiceTests.setUp(self)
        self.deliver = lambda bu, raw: GmaServiceTests.deliver(self, bu, raw)[0]

    def test_lifetime(self):
        """0xFFFF units is granted as the GMA's most (900 units)."""
        from netlmm.test.test_gma_service import COA1
        ba = self.deliver(*self.mobile.bu(COA1, lifetime=0xFFFF))
        self.assertEqual((ba.status, ba.lifetime), (Status.ACCEPTED, 900))

    def test_sequenceWrap(self):
        """0 follows 0xFFFF; 0xFFFF again is answered with the last accepted, 0."""
        from netlmm.test.test_gma_service import COA1
        for sequence in (0xFFFF, 0):
            ba = self.deliver(*self.mobile.bu(COA1, sequence=sequence))
            self.assertEqual((ba.status, ba.sequence), (Status.ACCEPTED, sequence))
            self.clock.advance(1)
        ba = self.deliver(*self.mobile.bu(COA1, sequence=0xFFFF))
        self.assertEqual((ba.status, ba.sequence, ba.lifetime),
                         (Status.SEQUENCE_OUT_OF_WINDOW, 0, 0))

    def test_mnIdUnsigned(self):
        """An unsigned BU with a 254-octet or an empty MN-ID: MIPV6_AUTH_FAIL, no route."""
        for option in (MobileNodeIdentifier(b"m" * 254),
                       mh.MalformedOption(8, b"\x01", "length 1")):
            raw = mh.encodeMessage(mh.BindingUpdate(1, mh.BU_A | mh.BU_H, 75, [option]))
            ba = self.deliver(mh.decodeMessage(raw), raw)
            self.assertEqual((ba.status, ba.lifetime), (Status.MIPV6_AUTH_FAIL, 0))
            self.assertEqual(self.dataplane.routes, {})


class MobileBaTests(SynchronousTestCase):
    """
    Binding Acknowledgements at `netlmm mn`'s handler, signed by the GMA's
    guard (the fixture of L{netlmm.test.test_mobile}).
    """

    def setUp(self):
        from netlmm.test.test_mobile import COA1, MobileServiceTests
        MobileServiceTests.setUp(self)
        self.addCleanup(self.service.stopService)
        self.watcher.changed(COA1)

    def answer(self, status, lifetime, sign=True):
        """Answer the BU in flight with C{status} and C{lifetime}."""
        [(bu, homeAgent, careOf, home)] = self.port.sent
        self.port.sent = []
        raw = mh.encodeMessage(bu, home, homeAgent)
        now = self.clock.seconds()
        verdict = self.gmaGuard.check(mh.decodeMessage(raw, home, homeAgent), raw,
                                      careOf, now, coaHoa=(careOf, home))
        self.assertTrue(verdict.ok, verdict.reason)
        ba = mh.BindingAcknowledgement(status, 0, bu.sequence, lifetime)
        if sign:
            ba = self.gmaGuard.answer(ba, verdict, now, (careOf, home))
        raw = mh.encodeMessage(ba, homeAgent, home)
        self.port.handler(mh.decodeMessage(raw), raw, homeAgent, home, careOf, now)

    def test_lifetime(self):
        """The longest lifetime, 0xFFFF units, binds."""
        from netlmm.core.mn import MobileState
        self.answer(Status.ACCEPTED, 0xFFFF)
        self.assertIs(self.core.state, MobileState.BOUND)

    def test_status255(self):
        """Status 255, the largest refusal: REFUSED, nothing dropped, no exception."""
        from netlmm.core.mn import MobileState
        self.answer(255, 0)
        self.assertIs(self.core.state, MobileState.REFUSED)
        self.assertEqual(self.service.dropped, 0)

    def test_unsigned(self):
        """An unsigned BA is dropped and counted."""
        from netlmm.core.mn import MobileState
        self.answer(Status.ACCEPTED, 0xFFFF, sign=False)
        self.assertIs(self.core.state, MobileState.REGISTERING)
        self.assertEqual(self.service.dropped, 1)
