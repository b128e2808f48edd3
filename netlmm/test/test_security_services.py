"""
RFC 4285 in the running daemons: an LMA service and a PMIP client service on
loopback sockets, attacked with forged, replayed, truncated and mis-keyed
PBUs and PBAcks. None of them may change a binding or stop a daemon.
"""

from ipaddress import IPv6Address

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from netlmm import demo
from netlmm.access import AttachmentEvent
from netlmm.core.lma import AddressPool, LmaCore
from netlmm.dataplane.memory import MemoryDataPlane
from netlmm.security import auth, replay
from netlmm.security.auth import SecurityAssociation
from netlmm.security.guard import LmaGuard
from netlmm.security.keystore import KeyStore
from netlmm.service.lma import LmaService
from netlmm.lab.fakes import UDPProbe
from netlmm.lab.wait import until
from netlmm.transport.mh import MHPort
from netlmm.wire import mh
from netlmm.wire.checksum import mhChecksum

LO = IPv6Address("::1")
MN = b"mn1@example.net"
KEY = bytes(range(20))
SA = SecurityAssociation(1000, KEY, "hmac-sha1-96", MN)
SA2 = SecurityAssociation(1001, bytes(range(100, 132)), "hmac-sha256-128",
                          b"mn2@example.net")


def pbu(seq, phoa="::", mag="2001:db8:ff::1", mnId=MN, lifetime=100, ts=None):
    options = [mh.HomeNetworkPrefix(phoa), mh.AlternateCareOfAddress(mag)]
    if mnId is not None:
        options.append(mh.MobileNodeIdentifier(mnId))
    if ts is not None:
        options.append(mh.MobilityMessageReplayProtection(ts))
    return mh.BindingUpdate(seq, lifetime=lifetime, options=options)


class LmaSecurityTests(TestCase):
    """PBUs thrown at an LMA that requires RFC 4285 authentication."""

    timeout = 20

    @inlineCallbacks
    def setUp(self):
        self.plane = MemoryDataPlane()
        self.guard = LmaGuard(KeyStore([SA, SA2]))
        self.lma = LmaService(
            reactor, LmaCore("2001:db8:1::/64", ["::1/128"], 3600,
                             AddressPool("2001:db8:1::100", "2001:db8:1::1ff")),
            (LO, 0), "udp", self.plane, security=self.guard)
        yield self.lma.startService()
        self.probe = UDPProbe()
        self.peer = reactor.listenUDP(0, self.probe, interface="::1")
        self.addCleanup(self.peer.stopListening)
        self.addCleanup(self.lma.stopService)

    def send(self, data):
        port = self.peer.getHost().port
        del port
        self.peer.write(data, ("::1", self.lma.port.port))

    def signed(self, message, sa=SA, ts=None):
        """Octets of C{message} with a fresh replay option and C{sa}'s signature."""
        if ts is None:
            ts = replay.toNtp(reactor.seconds())
        if message.option(mh.MobilityMessageReplayProtection) is None and ts is not False:
            message = message._replace(options=message.options + (
                mh.MobilityMessageReplayProtection(ts),))
        return auth.encodeSigned(message, sa, LO, LO)

    def plain(self, message):
        return mh.encodeMessage(message, LO, LO)

    @inlineCallbacks
    def answer(self, n=1):
        yield until(lambda: len(self.probe.received) >= n, what="the PBAck")
        data = self.probe.received[n - 1][0]
        return mh.decodeMessage(data), data

    def assertUnchanged(self):
        self.assertEqual(self.lma.core.bindings, {})
        self.assertEqual(self.plane.routes, {})
        self.assertTrue(self.lma.running)

    @inlineCallbacks
    def test_goodPbuSignedAnswer(self):
        data = self.signed(pbu(1))
        self.send(data)
        ba, raw = yield self.answer()
        self.assertEqual(ba.status, 0)
        auth.verify(ba, raw, SA)
        # The answer echoes the PBU's timestamp.
        sent = mh.decodeMessage(data).option(mh.MobilityMessageReplayProtection)
        self.assertEqual(ba.option(mh.MobilityMessageReplayProtection), sent)
        self.assertIsNotNone(self.lma.core.bindingFor(MN))

    @inlineCallbacks
    def test_answerEncodedOnce(self):
        """The signed PBAck is encoded once: the transport sends the signed octets."""
        encoded = []
        encode = mh.encodeMessage

        def counting(message, *args):
            encoded.append(type(message))
            return encode(message, *args)
        self.patch(mh, "encodeMessage", counting)
        self.send(self.signed(pbu(1)))
        ba, raw = yield self.answer()
        self.assertEqual(ba.status, 0)
        auth.verify(ba, raw, SA)
        self.assertTrue(mh.checksumValid(raw, LO, LO))
        self.assertEqual(encoded.count(mh.BindingAcknowledgement), 1)

    @inlineCallbacks
    def test_unsigned(self):
        self.send(self.plain(pbu(1)))
        ba, raw = yield self.answer()
        self.assertEqual(ba.status, mh.Status.MIPV6_AUTH_FAIL)
        self.assertIsNone(ba.option(mh.MobilityMessageAuthentication))
        self.assertEqual(self.guard.counters["authFailed"], 1)
        self.assertUnchanged()

    @inlineCallbacks
    def test_forged(self):
        """A flipped bit in the pCoA, checksum recomputed: 146."""
        data = bytearray(self.signed(pbu(1)))
        message = mh.decodeMessage(bytes(data))
        start = bytes(data).find(message.option(mh.AlternateCareOfAddress).address.packed)
        data[start + 15] ^= 0x01
        data[4:6] = b"\x00\x00"
        checksum = mhChecksum(LO.packed, LO.packed, bytes(data))
        data[4:6] = checksum.to_bytes(2, "big")
        self.send(bytes(data))
        ba, _ = yield self.answer()
        self.assertEqual(ba.status, 146)
        self.assertUnchanged()

    @inlineCallbacks
    def test_misKeyed(self):
        """The right SPI with the wrong key: 146."""
        wrong = SecurityAssociation(1000, bytes(20), "hmac-sha1-96", MN)
        self.send(self.signed(pbu(1), wrong))
        ba, _ = yield self.answer()
        self.assertEqual(ba.status, 146)
        self.assertUnchanged()

    @inlineCallbacks
    def test_unknownSpi(self):
        other = SecurityAssociation(7777, KEY, "hmac-sha1-96", MN)
        self.send(self.signed(pbu(1), other))
        ba, _ = yield self.answer()
        self.assertEqual(ba.status, 146)
        self.assertUnchanged()

    @inlineCallbacks
    def test_otherMobilesKey(self):
        """mn2's valid SA used for mn1: 129, signed with mn2's SA."""
        self.send(self.signed(pbu(1), SA2))
        ba, raw = yield self.answer()
        self.assertEqual(ba.status, mh.Status.ADMINISTRATIVELY_PROHIBITED)
        auth.verify(ba, raw, SA2)
        self.assertUnchanged()

    @inlineCallbacks
    def test_noReplayOption(self):
        self.send(self.signed(pbu(1), ts=False))
        ba, _ = yield self.answer()
        self.assertEqual(ba.status, mh.Status.MIPV6_MESG_ID_REQD)
        self.assertUnchanged()

    @inlineCallbacks
    def test_staleTimestamp(self):
        """Outside the 7 s window: 144, with the LMA's time in the answer."""
        self.send(self.signed(pbu(1), ts=replay.toNtp(reactor.seconds() - 60)))
        ba, raw = yield self.answer()
        self.assertEqual(ba.status, mh.Status.MIPV6_ID_MISMATCH)
        auth.verify(ba, raw, SA)
        their = replay.fromNtp(ba.option(mh.MobilityMessageReplayProtection).timestamp)
        self.assertLess(abs(their - reactor.seconds()), 2)
        self.assertUnchanged()

    @inlineCallbacks
    def test_replayAfterDeregistration(self):
        """
        A captured registration played again after the mobile deregistered
        is refused (144), so the binding does not come back.
        """
        register = self.signed(pbu(1))
        self.send(register)
        ba, _ = yield self.answer(1)
        self.assertEqual(ba.status, 0)
        phoa = self.lma.core.bindingFor(MN).phoa
        self.send(self.signed(pbu(2, phoa=str(phoa), mnId=None, lifetime=0)))
        ba, _ = yield self.answer(2)
        self.assertEqual(ba.status, 0)
        self.assertIsNone(self.lma.core.bindingFor(MN))
        self.send(register)
        ba, _ = yield self.answer(3)
        self.assertEqual(ba.status, mh.Status.MIPV6_ID_MISMATCH)
        self.assertUnchanged()
        self.assertEqual(self.guard.counters["replayed"], 1)

    @inlineCallbacks
    def test_replayOfTheSecondPbu(self):
        """
        After a registration and a refresh, the refresh played again is
        refused 144 (the window remembers the latest timestamp, not only the
        first) and the binding stays as the refresh left it.
        """
        now = reactor.seconds()
        self.send(self.signed(pbu(1), ts=replay.toNtp(now)))
        ba, _ = yield self.answer(1)
        self.assertEqual(ba.status, 0)
        phoa = str(self.lma.core.bindingFor(MN).phoa)
        refresh = self.signed(pbu(2, phoa=phoa, mnId=None, lifetime=200),
                              ts=replay.toNtp(now + 0.5))
        self.send(refresh)
        ba, _ = yield self.answer(2)
        self.assertEqual(ba.status, 0)
        self.send(refresh)
        ba, _ = yield self.answer(3)
        self.assertEqual(ba.status, mh.Status.MIPV6_ID_MISMATCH)
        self.assertEqual(self.guard.counters["replayed"], 1)
        self.assertEqual(self.lma.core.bindingFor(MN).sequence, 2)

    @inlineCallbacks
    def test_truncated(self):
        """Every truncation of a signed PBU is dropped or refused; nothing binds."""
        data = self.signed(pbu(1))
        for n in range(len(data) - 1, 0, -8):
            cut = bytearray(data[:n])
            if len(cut) >= 8:
                cut[1] = max(0, len(cut) // 8 - 1)
            self.send(bytes(cut))
        yield deferLater(reactor, 0.2, lambda: None)
        for data, _ in self.probe.received:
            self.assertGreaterEqual(mh.decodeMessage(data).status, 128)
        self.assertUnchanged()

    @inlineCallbacks
    def test_sha256Mobile(self):
        self.send(self.signed(pbu(1, mnId=b"mn2@example.net"), SA2))
        ba, raw = yield self.answer()
        self.assertEqual(ba.status, 0)
        auth.verify(ba, raw, SA2)
        self.assertEqual(len(ba.option(mh.MobilityMessageAuthentication).authenticator), 16)


class PmipSecurityTests(TestCase):
    """A secured domain on loopback, and an attacker that answers for the LMA."""

    timeout = 30

    @inlineCallbacks
    def setUp(self):
        self.domain = demo.Domain(reactor, detachDelay=0.05, tls=False)
        yield self.domain.start()
        self.addCleanup(self.domain.stop)

    @inlineCallbacks
    def test_boundWithAuthentication(self):
        d = self.domain
        d.mags[0].attached(AttachmentEvent(MN))
        yield until(lambda: d.lma.core.bindingFor(MN) is not None
                    and d.pmip.core.mobile(MN) is not None
                    and d.pmip.core.mobile(MN).state == "BOUND", what="binding")
        self.assertEqual(d.lma.security.counters["verified"], 1)
        self.assertEqual(d.pmip.core.security.counters["verified"], 1)

    @inlineCallbacks
    def test_forgedPbackDropped(self):
        """
        Stop the LMA, then answer the PMIP client's PBUs with forged and
        unsigned PBAcks from the LMA's own address and port: each is dropped
        and counted; the PBU keeps being retransmitted and no Notification
        of success reaches the MAG.
        """
        d = self.domain
        lmaPort = d.lma.port.port
        d.lma.port.stopListening()
        fake = MHPort(reactor, lambda *a: None, LO, lmaPort, "udp")
        received = []
        fake.handler = lambda message, raw, source, now: received.append((message, source))
        fake.startListening()
        self.addCleanup(fake.stopListening)
        d.mags[0].attached(AttachmentEvent(MN))
        yield until(lambda: received, what="the first PBU")
        bu, source = received[0]
        ts = bu.option(mh.MobilityMessageReplayProtection).timestamp
        answer = mh.BindingAcknowledgement(0, mh.BA_P, bu.sequence, 900, [
            mh.HomeNetworkPrefix("2001:db8:1::100"), mh.MobileNodeIdentifier(MN),
            mh.MobilityMessageReplayProtection(ts)])
        attacker = SecurityAssociation(1000, bytes(20), "hmac-sha1-96", MN)
        # Unsigned, then signed with a wrong key, then a bit flipped.
        fake.send(answer, source[0], source[1])
        fake.sendRaw(auth.encodeSigned(answer, attacker, LO, LO), ("::1", source[1]))
        good = bytearray(auth.encodeSigned(answer, d.keys.bySpi(1000), LO, LO))
        good[7] ^= 1      # a reserved flag bit
        good[4:6] = b"\x00\x00"
        good[4:6] = mhChecksum(LO.packed, LO.packed, bytes(good)).to_bytes(2, "big")
        fake.sendRaw(bytes(good), ("::1", source[1]))
        yield until(lambda: d.pmip.core.unauthenticated >= 3, what="three drops")
        m = d.pmip.core.mobile(MN)
        self.assertEqual(m.state, "REGISTERING")
        self.assertEqual(d.pmip.core.security.counters["dropped"], 3)
        # The retransmission goes on (1 s initial timeout).
        yield until(lambda: len(received) >= 2, timeout=3, what="a retransmission")
        self.assertTrue(d.pmip.running)

    @inlineCallbacks
    def test_replayedPbackDropped(self):
        """
        A genuine PBAck played again is dropped, even when it matches the
        sequence number of the PBU now pending: only its replay option,
        which echoes an answered timestamp, gives it away.
        """
        d = self.domain
        captured = []
        original = d.pmip._mhReceived

        def tap(message, raw, source, now):
            captured.append((message, raw))
            return original(message, raw, source, now)
        d.pmip.port.handler = tap
        d.mags[0].attached(AttachmentEvent(MN))
        yield until(lambda: d.pmip.core.mobile(MN) is not None
                    and d.pmip.core.mobile(MN).state == "BOUND", what="binding")
        ack, raw = captured[0]
        # The LMA goes quiet, and the next PBU reuses the captured ack's number.
        d.lma.port.handler = lambda *args: None
        m = d.pmip.core.mobile(MN)
        m.sequence = (ack.sequence - 1) & 0xFFFF
        d.mags[1].attached(AttachmentEvent(MN))
        yield until(lambda: m.state == "HANDING_OVER", what="the handoff PBU")
        self.assertEqual(m.pending.sequences, [ack.sequence])
        before = (d.pmip.core.unauthenticated, d.pmip.core.security.counters["dropped"])
        d.pmip.port._datagram(raw, ("::1", d.lma.port.port), LO.packed, reactor.seconds())
        self.assertEqual((d.pmip.core.unauthenticated,
                          d.pmip.core.security.counters["dropped"]),
                         (before[0] + 1, before[1] + 1))
        self.assertEqual((m.state, m.pcoa), ("HANDING_OVER", demo.MAG_ADDRESSES[0]))

    @inlineCallbacks
    def test_mobileWithoutKeyRefused(self):
        """A Trigger for a mobile without an SA: 'not-authorized', no PBU."""
        d = self.domain
        d.mags[0].attached(AttachmentEvent(b"stranger@example.net"))
        yield deferLater(reactor, 0.3, lambda: None)
        self.assertIsNone(d.pmip.core.mobile(b"stranger@example.net"))
        self.assertEqual(d.lma.core.counters["pbu"], 0)


class PerPeerSecurityTests(TestCase):
    """
    RFC 4285 is switched per peer: a standard MAG set to security = 'none'
    is served unsigned while the LMA authenticates everyone else.
    """

    timeout = 20

    @inlineCallbacks
    def test_unsignedPeer(self):
        from netlmm.core.lma import Ordering, PeerPolicy, PrefixPool
        plane = MemoryDataPlane()
        guard = LmaGuard(KeyStore([SA]))
        core = LmaCore("2001:db8:1::/64", [], 3600, prefixPool=PrefixPool("2001:db8:100::/48"),
                       peers=[("::1/128", PeerPolicy(ordering=Ordering.SEQUENCE,
                                                     rfc4285=False))])
        lma = LmaService(reactor, core, (LO, 0), "udp", plane, security=guard)
        yield lma.startService()
        self.addCleanup(lma.stopService)
        probe = UDPProbe()
        peer = reactor.listenUDP(0, probe, interface="::1")
        self.addCleanup(peer.stopListening)
        standard = mh.BindingUpdate(1, mh.BU_A | mh.BU_P, 10, [
            mh.MobileNodeIdentifier(MN), mh.HomeNetworkPrefix("::", 0),
            mh.HandoffIndicator(4), mh.AccessTechnologyType(3)])
        peer.write(mh.encodeMessage(standard, LO, LO), ("::1", lma.port.port))
        yield until(lambda: probe.received, what="the PBA")
        ba = mh.decodeMessage(probe.received[0][0])
        self.assertEqual(ba.status, 0)
        self.assertIsNone(ba.option(mh.MobilityMessageAuthentication))
        self.assertEqual(guard.counters["authFailed"], 0)
        self.assertEqual(len(plane.routes), 1)

