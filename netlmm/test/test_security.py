"""
RFC 4285 authentication, replay protection, key files and the guards.

The test vectors are computed here with the hmac module over Mobility
Headers assembled octet by octet, not with netlmm's own helpers.
"""

import hashlib
import hmac
import os
import struct
from ipaddress import IPv6Address

from twisted.trial.unittest import SynchronousTestCase

from netlmm.security import auth, guard, keystore, replay
from netlmm.security.auth import SecurityAssociation
from netlmm.wire import mh
from netlmm.wire.mh import Status


def A(text):
    return IPv6Address(text).packed


KEY1 = bytes(range(1, 21))
KEY2 = bytes(range(1, 33))
TS = 0xE9F1A2B300000000
PHOA = "2001:db8:1::100"
MAG = "2001:db8:ff::1"
MN = b"mn1@example.net"
SA1 = SecurityAssociation(1000, KEY1, "hmac-sha1-96", MN)
SA2 = SecurityAssociation(1000, KEY2, "hmac-sha256-128", MN)


def handPbu(tail):
    """A PBU (seq 1, A|H|P, 3600 s) up to and including the replay option."""
    return (bytes([59, 10 if len(tail) == 19 else 11, 5, 0, 0, 0])
            + struct.pack("!HHH", 1, 0xC200, 900)
            + bytes([22, 18, 0, 128]) + A(PHOA)          # HNP at 12 (8n+4)
            + bytes([1, 4, 0, 0, 0, 0])                  # PadN 4
            + bytes([3, 16]) + A(MAG)                    # ACoA at 38 (8n+6)
            + bytes([1, 0])                              # PadN 0
            + bytes([10, 8]) + struct.pack("!Q", TS))    # replay at 58 (8n+2)


def pbu():
    return mh.BindingUpdate(1, mh.BU_A | mh.BU_H | mh.BU_P, 900, [
        mh.HomeNetworkPrefix(PHOA), mh.AlternateCareOfAddress(MAG),
        mh.MobilityMessageReplayProtection(TS)])


class VectorTests(SynchronousTestCase):
    """Authenticators against an independent HMAC over hand-built octets."""

    def test_sha1KnownAnswer(self):
        """HMAC-SHA1-96 over CoA | HoA | MH data (checksum zero, through SPI)."""
        mhData = (handPbu(b"x" * 19) + b"\x00"                  # Pad1: auth at 69 (4n+1)
                  + bytes([9, 17, 1]) + struct.pack("!I", 1000))
        expected = hmac.new(KEY1, A(MAG) + A(PHOA) + mhData, hashlib.sha1).digest()[:12]
        # Computed once with the hmac module and written down.
        self.assertEqual(expected.hex(), "13424bb8f6c4e4ca9b3381bc")
        data = auth.encodeSigned(pbu(), SA1)
        self.assertEqual(data, mhData + expected)
        self.assertEqual(len(data), 88)
        # sign() gives the message whose plain encoding is the same octets.
        self.assertEqual(mh.encodeMessage(auth.sign(pbu(), SA1)), data)
        auth.verify(mh.decodeMessage(data), data, SA1)

    def test_sha256(self):
        """HMAC-SHA-256 truncated to 128 bits, option at 73 (4n+1)."""
        mhData = (handPbu(b"x" * 23) + bytes([1, 3, 0, 0, 0])
                  + bytes([9, 21, 1]) + struct.pack("!I", 1000))
        expected = hmac.new(KEY2, A(MAG) + A(PHOA) + mhData,
                            hashlib.sha256).digest()[:16]
        data = auth.encodeSigned(pbu(), SA2)
        self.assertEqual(data, mhData + expected)
        self.assertEqual(len(data), 96)
        auth.verify(mh.decodeMessage(data), data, SA2)

    def test_checksumExcluded(self):
        """The checksum does not enter the authenticator, and is filled in."""
        data = auth.encodeSigned(pbu(), SA1, IPv6Address("::1"), IPv6Address("::2"))
        self.assertNotEqual(data[4:6], b"\x00\x00")
        message = mh.decodeMessage(data, IPv6Address("::1"), IPv6Address("::2"))
        auth.verify(message, data, SA1)

    def test_deregistrationAndAssignment(self):
        """Care-of :: without ACoA, home :: for an assignment request."""
        bu = mh.BindingUpdate(7, mh.BU_A | mh.BU_H | mh.BU_P, 0, [
            mh.HomeNetworkPrefix("::"), mh.MobileNodeIdentifier(MN)])
        data = auth.encodeSigned(bu, SA1)
        end = len(data) - 12
        expected = hmac.new(KEY1, bytes(32) + data[:end], hashlib.sha1).digest()[:12]
        self.assertEqual(data[end:], expected)

    def test_everyBitMatters(self):
        """Any flipped bit outside the checksum fails verification."""
        data = auth.encodeSigned(pbu(), SA1)
        for i in range(len(data)):
            if i in (4, 5):
                continue
            bad = bytearray(data)
            bad[i] ^= 0x01
            try:
                message = mh.decodeMessage(bytes(bad))
            except mh.DecodeError:
                continue
            self.assertRaises(auth.AuthenticationError, auth.verify, message,
                              bytes(bad), SA1)

    def test_wrongKeyAndMissing(self):
        data = auth.encodeSigned(pbu(), SA1)
        other = SecurityAssociation(1000, KEY2, "hmac-sha1-96", MN)
        self.assertRaises(auth.AuthenticationError, auth.verify,
                          mh.decodeMessage(data), data, other)
        plain = mh.encodeMessage(pbu())
        with self.assertRaises(auth.AuthenticationError) as cm:
            auth.verify(mh.decodeMessage(plain), plain, SA1)
        self.assertIn("no authentication option", str(cm.exception))

    def test_notLast(self):
        """An option after the authentication option is refused."""
        signed = auth.sign(pbu(), SA1)
        opts = signed.options
        # Bypass the constructor's check to build what an attacker might send.
        data = bytearray(mh.encodeMessage(signed))
        # Append a PadN-free unknown option after, fixing Header Len.
        data += bytes([200, 6]) + bytes(6)
        data[1] += 1
        message = mh.decodeMessage(bytes(data))
        self.assertIs(type(message.options[-1]), mh.UnknownOption)
        self.assertRaises(auth.AuthenticationError, auth.verify, message,
                          bytes(data), SA1)
        self.assertEqual(type(opts[-1]), mh.MobilityMessageAuthentication)

    def test_paddingAfter(self):
        """Padding after the authentication option is refused."""
        data = bytearray(auth.encodeSigned(pbu(), SA1))
        data += bytes([1, 6]) + bytes(6)
        data[1] += 1
        message = mh.decodeMessage(bytes(data))
        self.assertRaises(auth.AuthenticationError, auth.verify, message,
                          bytes(data), SA1)

    def test_longKeysAndBothAlgorithms(self):
        """
        Keys longer than the hash's block are hashed first (RFC 2104), and
        each key gets its own prepared state: all as the hmac module has it.
        """
        mhData = bytes(range(64)) * 2
        coa, hoa = A(MAG), A(PHOA)
        for algorithm, constructor, size in (("hmac-sha1-96", hashlib.sha1, 12),
                                             ("hmac-sha256-128", hashlib.sha256, 16)):
            for length in (16, 20, 64, 65, 100, 200):
                key = bytes((7 * i + length) & 0xFF for i in range(length))
                sa = SecurityAssociation(1000 + length, key, algorithm, MN)
                want = hmac.new(key, coa + hoa + mhData, constructor).digest()[:size]
                self.assertEqual(auth.authenticator(sa, coa, hoa, mhData), want)
                # Addresses as IPv6Address or text give the same.
                self.assertEqual(auth.authenticator(sa, IPv6Address(MAG), PHOA, mhData),
                                 want)

    def test_signedInOneEncoding(self):
        """
        signEncoded encodes once; its octets are the signed message's
        encoding, and encodeSigned adds the checksum to those octets.
        """
        calls = []
        encode = mh.encodeMessage

        def counting(*args, **kw):
            calls.append(args[0])
            return encode(*args, **kw)
        self.patch(mh, "encodeMessage", counting)
        signed, data = auth.signEncoded(pbu(), SA2)
        self.assertEqual(len(calls), 1)
        self.assertEqual(encode(signed), data)
        auth.verify(mh.decodeMessage(data), data, SA2)
        lo, other = IPv6Address("::1"), IPv6Address("::2")
        self.assertEqual(auth.withChecksum(data, lo, other), encode(signed, lo, other))
        self.assertRaises(TypeError, auth.signEncoded, mh.UnknownMessage(200, bytes(2)),
                          SA1)

    def test_signedOctetsByIdentity(self):
        """The octets are handed over once, for that very message object."""
        kept = auth.SignedOctets(size=2)
        signed, data = auth.signEncoded(pbu(), SA1)
        equal = auth.sign(pbu(), SA1)
        self.assertEqual(signed, equal)
        kept.keep(signed, data)
        self.assertIsNone(kept.take(equal))
        self.assertEqual(kept.take(signed), data)
        self.assertIsNone(kept.take(signed))
        # Bounded: the oldest goes first.
        messages = [auth.signEncoded(pbu(), SA1) for _ in range(3)]
        for message, octets in messages:
            kept.keep(message, octets)
        self.assertIsNone(kept.take(messages[0][0]))
        self.assertEqual(kept.take(messages[2][0]), messages[2][1])

    def test_reservedSpi(self):
        self.assertRaises(ValueError, SecurityAssociation, 255, KEY1)
        self.assertRaises(ValueError, SecurityAssociation, 1000, b"short")
        self.assertRaises(ValueError, SecurityAssociation, 1000, KEY1, "md5")
        self.assertNotIn(KEY1.hex(), repr(SA1))


class ReplayTests(SynchronousTestCase):

    def test_ntp(self):
        self.assertEqual(replay.toNtp(0), 2208988800 << 32)
        self.assertEqual(replay.toNtp(1.5), (2208988801 << 32) + (1 << 31))
        self.assertAlmostEqual(replay.fromNtp(replay.toNtp(1700000000.25)), 1700000000.25)

    def test_window(self):
        w = replay.ReplayWindow(7)
        now = 1700000000.0
        self.assertIsNone(w.check(1000, replay.toNtp(now + 6.9), now))
        self.assertIsNotNone(w.check(1000, replay.toNtp(now + 7.1), now))
        self.assertIsNotNone(w.check(1000, replay.toNtp(now - 7.1), now))
        w.accept(1000, replay.toNtp(now))
        self.assertIn("replay", w.check(1000, replay.toNtp(now), now))
        self.assertIsNone(w.check(1001, replay.toNtp(now), now))
        self.assertIsNone(w.check(1000, replay.toNtp(now + 0.001), now))

    def test_remembersTheLatest(self):
        """
        After two accepted timestamps, both are replays: the window keeps
        the latest, not the first.
        """
        w = replay.ReplayWindow(7)
        now = 1700000000.0
        first, second = replay.toNtp(now), replay.toNtp(now + 1)
        w.accept(1000, first)
        self.assertIsNone(w.check(1000, second, now + 1))
        w.accept(1000, second)
        for ts in (first, second, replay.toNtp(now + 0.5)):
            self.assertEqual(w.check(1000, ts, now + 1),
                             "timestamp is not later than the last one accepted (replay)")
        self.assertIsNone(w.check(1000, replay.toNtp(now + 1.001), now + 1))


class KeyFileTests(SynchronousTestCase):

    def write(self, text, mode=0o600):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    GOOD = '''
[[sa]]
spi = 1000
key = "000102030405060708090a0b0c0d0e0f10111213"
mn = "mn1@example.net"

[[sa]]
spi = 1001
algorithm = "hmac-sha256-128"
key = "000102030405060708090a0b0c0d0e0f000102030405060708090a0b0c0d0e0f"
mn = "mn1@example.net"
clients = ["::1"]

[[sa]]
spi = 2000
key = "ffeeddccbbaa99887766554433221100ffeeddcc"
client = "2001:db8::10"
mobiles = ["mn2@example.net"]
'''

    def test_load(self):
        store = keystore.loadKeyFile(self.write(self.GOOD))
        self.assertEqual(len(store), 3)
        # Rollover: the last SA listed for a mobile is used for sending.
        self.assertEqual(store.forMobile(MN).spi, 1001)
        self.assertEqual(store.bySpi(1000).algorithm, "hmac-sha1-96")
        self.assertEqual(store.forMobile(b"mn2@example.net").spi, 2000)
        self.assertIsNone(store.forMobile(b"mn3@example.net"))
        sa = store.bySpi(2000)
        self.assertTrue(sa.allowsClient(IPv6Address("2001:db8::10")))
        self.assertFalse(sa.allowsClient(IPv6Address("2001:db8::11")))
        self.assertFalse(sa.allowsMobile(b"mn3@example.net"))

    def test_worldReadableRefused(self):
        path = self.write(self.GOOD, 0o644)
        with self.assertRaises(keystore.KeyFileError) as cm:
            keystore.loadKeyFile(path)
        self.assertIn(path, str(cm.exception))
        self.assertIn("0644", str(cm.exception))

    def test_groupReadableRefused(self):
        with self.assertRaises(keystore.KeyFileError) as cm:
            keystore.loadKeyFile(self.write(self.GOOD, 0o640))
        self.assertIn("0640", str(cm.exception))

    def test_errorsNameTheEntry(self):
        cases = [
            ('[[sa]]\nspi = 5\nkey = "00"\nmn = "x"\n', "sa[0]"),
            ('[[sa]]\nspi = 1000\nkey = "zz"\nmn = "x"\n', "sa[0].key"),
            ('[[sa]]\nspi = 1000\nkey = "000102030405060708090a0b0c0d0e0f"\n', "exactly one"),
            ('[[sa]]\nspi = 1000\nkey = "000102030405060708090a0b0c0d0e0f"\nmn = "x"\n'
             '[[sa]]\nspi = 1000\nkey = "000102030405060708090a0b0c0d0e0f"\nmn = "y"\n',
             "appears twice"),
            ('[[sa]]\nspi = 1000\nkey = "000102030405060708090a0b0c0d0e0f"\nmn = "x"\n'
             'algorithm = "md5"\n', "sa[0].algorithm"),
            ('[[sa]]\nspi = 1000\nkey = "000102030405060708090a0b0c0d0e0f"\nmn = "x"\n'
             'colour = 1\n', "sa[0].colour"),
        ]
        for text, fragment in cases:
            with self.assertRaises(keystore.KeyFileError) as cm:
                keystore.loadKeyFile(self.write(text))
            self.assertIn(fragment, str(cm.exception))

    def test_writeRoundTrip(self):
        path = self.mktemp()
        keystore.writeKeyFile(path, [SA1, SecurityAssociation(
            2000, KEY2, "hmac-sha256-128", None, ["::1"], [MN])])
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        store = keystore.loadKeyFile(path)
        self.assertEqual(store.bySpi(1000), SA1)
        self.assertEqual(store.bySpi(2000).mobiles, frozenset([MN]))


NOW = 1700000000.0
CLIENT = IPv6Address("::1")


class GuardTests(SynchronousTestCase):
    """PmipGuard and LmaGuard against each other and against attackers."""

    def setUp(self):
        self.keys = keystore.KeyStore([SA1, SecurityAssociation(
            1001, KEY2, "hmac-sha256-128", b"mn2@example.net")])
        self.pmip = guard.PmipGuard(self.keys)
        self.lma = guard.LmaGuard(self.keys)

    def bu(self, mnId=MN, seq=1):
        return mh.BindingUpdate(seq, mh.BU_A | mh.BU_H | mh.BU_P, 900, [
            mh.HomeNetworkPrefix("::"), mh.AlternateCareOfAddress(MAG),
            mh.MobileNodeIdentifier(mnId)])

    def wire(self, message):
        data = mh.encodeMessage(message)
        return mh.decodeMessage(data), data

    def test_roundTrip(self):
        signed = self.pmip.protect(self.bu(), MN, NOW)
        message, raw = self.wire(signed)
        v = self.lma.check(message, raw, CLIENT, NOW + 0.2)
        self.assertTrue(v.ok, v.reason)
        self.assertEqual(v.sa, SA1)
        ba = mh.BindingAcknowledgement(0, mh.BA_P, 1, 900,
                                       [mh.HomeNetworkPrefix(PHOA), mh.MobileNodeIdentifier(MN)])
        answer, rawAnswer = self.wire(self.lma.answer(ba, v, NOW + 0.2))
        self.assertIsNone(self.pmip.accept(answer, rawAnswer, MN, NOW + 0.3))
        # The same PBAck a second time is a replay.
        self.assertIn("echoes no PBU", self.pmip.accept(answer, rawAnswer, MN, NOW + 0.4))

    def test_octetsForTheTransport(self):
        """
        What each guard signs waits in its C{octets} for the transport: the
        signed message's encoding, made once.
        """
        calls = []
        encode = mh.encodeMessage

        def counting(*args, **kw):
            calls.append(args[0])
            return encode(*args, **kw)
        self.patch(mh, "encodeMessage", counting)
        signed = self.pmip.protect(self.bu(), MN, NOW)
        self.assertEqual(len(calls), 1)
        data = self.pmip.octets.take(signed)
        self.assertEqual(data, encode(signed))
        v = self.lma.check(mh.decodeMessage(data), data, CLIENT, NOW)
        self.assertTrue(v.ok, v.reason)
        ba = mh.BindingAcknowledgement(0, mh.BA_P, 1, 900, [mh.MobileNodeIdentifier(MN)])
        answer = self.lma.answer(ba, v, NOW)
        self.assertEqual(len(calls), 2)
        self.assertEqual(self.lma.octets.take(answer), encode(answer))
        rejection = self.lma.rejection(self.bu(), v._replace(status=129), NOW)
        self.assertEqual(self.lma.octets.take(rejection), encode(rejection))

    def test_clientCheckRemembered(self):
        """
        Whether a PMIP client may use an SA is remembered per SA and address,
        and asked again of an SA that replaced it (a reloaded key file).
        """
        sa = SecurityAssociation(3000, KEY1, "hmac-sha1-96", None, ["2001:db8::10"], [MN])
        keys = keystore.KeyStore([sa])
        pmip, lma = guard.PmipGuard(keys), guard.LmaGuard(keys)
        inside = IPv6Address("2001:db8::10")
        message, raw = self.wire(pmip.protect(self.bu(), MN, NOW))
        self.assertTrue(lma.check(message, raw, inside, NOW).ok)
        keys.remove(3000)
        keys.add(SecurityAssociation(3000, KEY1, "hmac-sha1-96", None, ["2001:db8::11"],
                                     [MN]))
        message, raw = self.wire(pmip.protect(self.bu(), MN, NOW + 1))
        self.assertEqual(lma.check(message, raw, inside, NOW + 1).status, 129)

    def test_nothingKeptOnceAnswered(self):
        """
        A PMIP client remembers a PBU's timestamp only until it is answered
        (nothing per bound mobile), the 16 newest of a mobile at most.
        """
        message, raw = self.wire(self.pmip.protect(self.bu(), MN, NOW))
        v = self.lma.check(message, raw, CLIENT, NOW)
        ba = mh.BindingAcknowledgement(0, mh.BA_P, 1, 900, [mh.MobileNodeIdentifier(MN)])
        self.assertIsNone(self.pmip.accept(*self.wire(self.lma.answer(ba, v, NOW)), MN, NOW))
        self.assertEqual(self.pmip._sent, {})
        signed = [self.pmip.protect(self.bu(seq=s), MN, NOW + s) for s in range(20)]
        self.assertEqual(len(self.pmip._sent[MN]), 16)
        # An answer to one of the four oldest is no longer taken.
        old, _ = self.wire(signed[3])
        v = self.lma.check(old, mh.encodeMessage(signed[3]), CLIENT, NOW + 3)
        self.assertIn("echoes no PBU", self.pmip.accept(
            *self.wire(self.lma.answer(ba, v, NOW + 3)), MN, NOW + 3))
        self.assertEqual(len(self.pmip._sent[MN]), 16)

    def test_replayedPbu(self):
        message, raw = self.wire(self.pmip.protect(self.bu(), MN, NOW))
        self.assertTrue(self.lma.check(message, raw, CLIENT, NOW).ok)
        v = self.lma.check(message, raw, CLIENT, NOW + 1)
        self.assertEqual(v.status, Status.MIPV6_ID_MISMATCH)
        late = self.lma.check(message, raw, CLIENT, NOW + 8)
        self.assertEqual(late.status, Status.MIPV6_ID_MISMATCH)
        # The 144 answer carries the LMA's clock, signed; the client resyncs.
        answer, rawAnswer = self.wire(self.lma.rejection(message, v, NOW + 50))
        self.assertEqual(self.pmip.accept(answer, rawAnswer, MN, NOW + 1), guard.RESYNC)
        self.assertAlmostEqual(self.pmip.offset, 49, places=3)

    def rejection144(self, lmaTime):
        """An authentic 144 from the LMA, carrying C{lmaTime} (POSIX seconds)."""
        message, raw = self.wire(self.pmip.protect(self.bu(), MN, NOW))
        v = self.lma.check(message, raw, CLIENT, NOW)
        v = v._replace(status=Status.MIPV6_ID_MISMATCH)
        return self.wire(self.lma.rejection(message, v, lmaTime))

    def test_offsetBounded(self):
        """
        An authentic 144 may set the clock offset only within maxOffset
        (60 s by default), either way; beyond it the PBAck is dropped and
        the offset stays.
        """
        self.assertEqual(self.pmip.maxOffset, 60)
        far = self.rejection144(NOW + 61)
        self.assertEqual(self.pmip.accept(*far, MN, NOW),
                         "144: the LMA's clock is +61.000 s from ours, beyond "
                         "max_clock_offset (60 s); synchronise the clocks")
        self.assertEqual(self.pmip.offset, 0)
        behind = self.rejection144(NOW - 59)
        self.assertEqual(self.pmip.accept(*behind, MN, NOW), guard.RESYNC)
        self.assertAlmostEqual(self.pmip.offset, -59, places=3)
        self.assertEqual(self.pmip.counters["dropped"], 1)
        self.assertEqual(self.pmip.counters["resyncs"], 1)
        wide = guard.PmipGuard(self.keys, maxOffset=3600)
        self.assertEqual(wide.accept(*far, MN, NOW), guard.RESYNC)
        self.assertAlmostEqual(wide.offset, 61, places=3)
        self.assertRaises(ValueError, guard.PmipGuard, self.keys, maxOffset=0)

    def test_replayed144(self):
        """
        A 144 whose LMA time is not later than the last one followed is a
        replay: dropped, so a captured 144 cannot pull the clock back.
        """
        first = self.rejection144(NOW + 30)
        self.assertEqual(self.pmip.accept(*first, MN, NOW), guard.RESYNC)
        older = self.rejection144(NOW + 10)
        for replayed in (first, older):
            self.assertIn("not later than one already followed",
                          self.pmip.accept(*replayed, MN, NOW + 5))
        self.assertAlmostEqual(self.pmip.offset, 30, places=3)
        later = self.rejection144(NOW + 40)
        self.assertEqual(self.pmip.accept(*later, MN, NOW + 5), guard.RESYNC)
        self.assertAlmostEqual(self.pmip.offset, 35, places=3)

    def test_missingReplay(self):
        bu = auth.sign(self.bu(), SA1)
        message, raw = self.wire(bu)
        self.assertEqual(self.lma.check(message, raw, CLIENT, NOW).status,
                         Status.MIPV6_MESG_ID_REQD)

    def test_unsigned(self):
        message, raw = self.wire(self.bu())
        v = self.lma.check(message, raw, CLIENT, NOW)
        self.assertEqual(v.status, Status.MIPV6_AUTH_FAIL)
        self.assertIsNone(v.sa)
        # The rejection cannot be signed, and a PMIP client drops it.
        answer, rawAnswer = self.wire(self.lma.rejection(message, v, NOW))
        self.assertIsNone(answer.option(mh.MobilityMessageAuthentication))
        self.assertIn("unauthenticated", self.pmip.accept(answer, rawAnswer, MN, NOW))

    def test_unknownSpi(self):
        sa = SecurityAssociation(4242, KEY1, "hmac-sha1-96", MN)
        bu = auth.sign(self.bu()._replace(options=self.bu().options + (
            mh.MobilityMessageReplayProtection(replay.toNtp(NOW)),)), sa)
        message, raw = self.wire(bu)
        v = self.lma.check(message, raw, CLIENT, NOW)
        self.assertEqual((v.status, v.reason), (146, "unknown SPI 4242"))

    def test_misKeyed(self):
        """Right SPI, wrong key."""
        sa = SecurityAssociation(1000, KEY2, "hmac-sha1-96", MN)
        bu = auth.sign(self.bu()._replace(options=self.bu().options + (
            mh.MobilityMessageReplayProtection(replay.toNtp(NOW)),)), sa)
        message, raw = self.wire(bu)
        self.assertEqual(self.lma.check(message, raw, CLIENT, NOW).status, 146)

    def test_otherMobilesKey(self):
        """mn2's SA cannot move mn1: 129."""
        signed = self.pmip.protect(self.bu(), b"mn2@example.net", NOW)
        message, raw = self.wire(signed)
        v = self.lma.check(message, raw, CLIENT, NOW)
        self.assertEqual(v.status, Status.ADMINISTRATIVELY_PROHIBITED)
        self.assertEqual(self.lma.counters["unauthorized"], 1)

    def test_boundPhoaNeedsItsMobilesKey(self):
        bu = mh.BindingUpdate(2, mh.BU_A | mh.BU_H | mh.BU_P, 900, [
            mh.HomeNetworkPrefix(PHOA), mh.AlternateCareOfAddress(MAG)])
        message, raw = self.wire(self.pmip.protect(bu, b"mn2@example.net", NOW))
        v = self.lma.check(message, raw, CLIENT, NOW, lambda phoa: MN)
        self.assertEqual(v.status, 129)

    def test_clientNotAllowed(self):
        keys = keystore.KeyStore([SecurityAssociation(
            3000, KEY1, "hmac-sha1-96", None, ["2001:db8::10"], [MN])])
        pmip, lma = guard.PmipGuard(keys), guard.LmaGuard(keys)
        message, raw = self.wire(pmip.protect(self.bu(), MN, NOW))
        self.assertTrue(lma.check(message, raw, IPv6Address("2001:db8::10"), NOW).ok)
        message, raw = self.wire(pmip.protect(self.bu(), MN, NOW + 1))
        self.assertEqual(lma.check(message, raw, IPv6Address("2001:db8::11"),
                                   NOW + 1).status, 129)
        # Per-client SA that does not cover the mobile.
        self.assertIsNone(pmip.protect(self.bu(b"mn9"), b"mn9", NOW))

    def test_forgedPback(self):
        message, raw = self.wire(self.pmip.protect(self.bu(), MN, NOW))
        v = self.lma.check(message, raw, CLIENT, NOW)
        ba = mh.BindingAcknowledgement(0, mh.BA_P, 1, 900, [mh.MobileNodeIdentifier(MN)])
        data = bytearray(mh.encodeMessage(self.lma.answer(ba, v, NOW)))
        data[7] ^= 0x01      # flags
        self.assertIn("authenticator is wrong",
                      self.pmip.accept(mh.decodeMessage(bytes(data)), bytes(data), MN, NOW))
        # Signed by the right SA but for another mobile.
        self.assertIn("not", self.pmip.accept(
            *self.wire(self.lma.answer(ba, v, NOW)), b"mn2@example.net", NOW))


class SecurityConfigTests(SynchronousTestCase):
    """[lma.security] / [pmip.security] validation."""

    BASE = '''[lma]
home_prefix = "2001:db8:1::/64"
allowed_clients = ["::1"]
[lma.dataplane]
kind = "memory"
'''

    def parse(self, extra):
        from twisted.python import usage
        from netlmm.tap import lma as lmaTap
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(self.BASE + extra)
        o = lmaTap.Options()
        try:
            o.parseOptions(["--config", path])
        except usage.UsageError as e:
            return str(e)
        return o.built["security"]

    def test_defaultNone(self):
        self.assertIsNone(self.parse(""))

    def test_needsKeys(self):
        self.assertIn("lma.security.keys: missing", self.parse(
            '[lma.security]\nmode = "rfc4285"\n'))

    def test_keysWithModeNone(self):
        self.assertIn("lma.security.mode", self.parse(
            '[lma.security]\nmode = "none"\nkeys = "k.toml"\n'))

    def test_badMode(self):
        self.assertIn("expected one of 'none', 'rfc4285'", self.parse(
            '[lma.security]\nmode = "ipsec"\n'))

    def test_radius(self):
        secret = self.mktemp()
        with open(secret, "w") as f:
            f.write("s3cret\n")
        os.chmod(secret, 0o600)
        built = self.parse('[lma.security]\nmode = "rfc4285"\n[lma.security.radius]\n'
                           'servers = ["[::1]:1812", "[::1]:1813"]\n'
                           f'secret_file = "{os.path.abspath(secret)}"\ntimeout = 0.5\n')
        self.assertEqual(built["radius"]["secret"], b"s3cret")
        self.assertEqual([p for _, p in built["radius"]["servers"]], [1812, 1813])
        os.chmod(secret, 0o644)
        self.assertIn("mode 0644", self.parse(
            '[lma.security]\nmode = "rfc4285"\n[lma.security.radius]\n'
            f'servers = ["[::1]:1812"]\nsecret_file = "{os.path.abspath(secret)}"\n'))
        self.assertIn("secret or secret_file", self.parse(
            '[lma.security]\nmode = "rfc4285"\n[lma.security.radius]\n'
            'servers = ["[::1]:1812"]\n'))

    def parsePmip(self, main="", security=""):
        from twisted.python import usage
        from netlmm.tap import pmip as pmipTap
        keys = os.path.abspath(self.mktemp())
        keystore.writeKeyFile(keys, [SA1])
        path = self.mktemp()
        with open(path, "w") as f:
            f.write('[pmip]\nlma = "[::1]:5436"\nallowed_mags = ["::1"]\n' + main
                    + '[pmip.tls]\ntransport = "tcp"\n'
                    + f'[pmip.security]\nmode = "rfc4285"\nkeys = "{keys}"\n' + security)
        o = pmipTap.Options()
        try:
            o.parseOptions(["--config", path])
        except usage.UsageError as e:
            return str(e)
        return o.built

    def test_pmipClockOffset(self):
        """
        The PMIP client's bound is max_clock_offset (60 s by default), for
        RFC 4285's 144 and RFC 5213's 156 alike; replay_window, the LMA's,
        is refused at a PMIP client with the reason.
        """
        self.assertEqual(self.parsePmip()["core"]["maxOffset"], 60)
        built = self.parsePmip("max_clock_offset = 300\n")
        self.assertEqual(built["core"]["maxOffset"], 300)
        self.assertNotIn("window", built["security"])
        self.assertIn("pmip.max_clock_offset", self.parsePmip("max_clock_offset = 0\n"))
        self.assertIn("pmip.security.replay_window: only the LMA checks PBU timestamps",
                      self.parsePmip(security="replay_window = 7\n"))
        self.assertIn("pmip.security.max_clock_offset: unknown key",
                      self.parsePmip(security="max_clock_offset = 7\n"))
