"""
Tests for L{netlmm.wire.control}, the MAG <-> PMIP client protocol of
draft-singh-netlmm-protocol-02 section 4.9 with the option numbers netlmm
assigns (doc/protocol.md).

The known-values table holds octets written out by hand from the layout
(8-octet header: Type, Length, Ver in the top 3 bits of the third octet,
Reserved, Transaction Number; then Type/Len/data options), not produced by
the encoder; each entry is checked in both directions.
"""

import struct
from ipaddress import IPv6Address

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from netlmm.wire import DecodeError, EncodeError
from netlmm.wire import control
from netlmm.wire.control import (
    AddressMode,
    Detach,
    ExtraOption,
    Notification,
    Result,
    Trigger,
    decodeControl,
    encodeControl,
    peekLength,
    transactionOf,
)

EXAMPLES = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def h(text):
    """Octets from hex text; spaces and newlines are for the reader only."""
    return bytes.fromhex("".join(text.split()))


A1 = "2001:db8::1"
A1_HEX = "20010db8 00000000 00000000 00000001"
MAG = "2001:db8::a"
MAG_HEX = "20010db8 00000000 00000000 0000000a"
MN1_HEX = "6d6e31"  # b"mn1"
# A PBAck exactly as an LMA sent it (checksum 0x1234 included): the
# container carries it untouched.
PBACK_HEX = "3b 01 06 00 1234  00 20 0102 0096  01 02 0000"


# (description, message, octets). Header: Type, Length, 0x20 0x00 (Ver 1 in
# the top 3 bits, Reserved zero), Transaction Number.
KNOWN = [
    (
        "Trigger: L2-ID, MAG address, pHoA, address mode stateful",
        Trigger(0x01020304, b"mn1", MAG, A1, AddressMode.STATEFUL),
        f"""01 34 2000 01020304
            01 03 {MN1_HEX}
            06 10 {MAG_HEX}
            02 10 {A1_HEX}
            04 01 01""",
    ),
    (
        "Trigger without pHoA: the LMA assigns it (Appendix A)",
        Trigger(7, bytes.fromhex("020000aabbcc"), MAG, None, AddressMode.LMA_ASSIGNED),
        f"""01 25 2000 00000007
            01 06 020000aabbcc
            06 10 {MAG_HEX}
            04 01 03""",
    ),
    (
        "Trigger, stateless, with an option this version does not know",
        Trigger(8, b"mn1", MAG, A1, AddressMode.STATELESS, [ExtraOption(200, b"\xde\xad")]),
        f"""01 38 2000 00000008
            01 03 {MN1_HEX}
            06 10 {MAG_HEX}
            02 10 {A1_HEX}
            04 01 02
            c8 02 dead""",
    ),
    (
        "Trigger, static address, largest transaction number",
        Trigger(0xFFFFFFFF, b"m", MAG, A1, AddressMode.STATIC),
        f"""01 32 2000 ffffffff
            01 01 6d
            06 10 {MAG_HEX}
            02 10 {A1_HEX}
            04 01 04""",
    ),
    (
        "Detach with pHoA",
        Detach(9, b"mn1", MAG, A1),
        f"""03 31 2000 00000009
            01 03 {MN1_HEX}
            06 10 {MAG_HEX}
            02 10 {A1_HEX}""",
    ),
    (
        "Detach without pHoA",
        Detach(10, b"mn1", MAG),
        f"03 1f 2000 0000000a  01 03 {MN1_HEX}  06 10 {MAG_HEX}",
    ),
    (
        "Notification: success, with the PBAck in the container",
        Notification(0x01020304, Result.SUCCESS, b"mn1", A1, h(PBACK_HEX)),
        f"""02 34 2000 01020304
            05 01 00
            01 03 {MN1_HEX}
            02 10 {A1_HEX}
            03 10 {PBACK_HEX}""",
    ),
    (
        "Notification: PBAck rejected, container only",
        Notification(11, Result.PBACK_REJECTED, pback=h(PBACK_HEX)),
        f"02 1d 2000 0000000b  05 01 01  03 10 {PBACK_HEX}",
    ),
    (
        "unsolicited Notification to the old MAG: transaction 0, MOVED",
        Notification(0, Result.MOVED, b"mn1"),
        f"02 10 2000 00000000  05 01 06  01 03 {MN1_HEX}",
    ),
    (
        "unsolicited Notification: binding lost",
        Notification(0, Result.BINDING_LOST, b"mn1", A1),
        f"02 22 2000 00000000  05 01 0a  01 03 {MN1_HEX}  02 10 {A1_HEX}",
    ),
    (
        "Notification with nothing but a result",
        Notification(5, Result.MALFORMED),
        "02 0b 2000 00000005  05 01 05",
    ),
]


# Valid messages laid out differently from what the encoder produces.
DECODE_ONLY = [
    (
        "options in another order",
        f"01 34 2000 01020304  04 01 01  02 10 {A1_HEX}  06 10 {MAG_HEX}  01 03 {MN1_HEX}",
        Trigger(0x01020304, b"mn1", MAG, A1, AddressMode.STATEFUL),
    ),
    (
        "Reserved bits set: ignored on receipt (draft 4.9.1)",
        f"02 10 3fff 00000000  05 01 06  01 03 {MN1_HEX}",
        Notification(0, Result.MOVED, b"mn1"),
    ),
    (
        "an unknown option in a Notification is kept",
        "02 0f 2000 00000005  05 01 05  63 02 0102",
        Notification(5, Result.MALFORMED, extra=[ExtraOption(99, b"\x01\x02")]),
    ),
    (
        "an empty container",
        "02 0d 2000 00000005  05 01 01  03 00",
        Notification(5, Result.PBACK_REJECTED, pback=b""),
    ),
]


# (description, octets, text the DecodeError must contain).
MALFORMED = [
    ("shorter than the header", "01 07 2000 000000", "the header alone"),
    ("Length larger than the message", "02 0c 2000 00000005 05 01 05", "Length field"),
    ("Length smaller than the message", "02 0a 2000 00000005 05 01 05", "Length field"),
    ("version 0", "02 0b 0000 00000005 05 01 05", "version 0"),
    ("version 2", "02 0b 4000 00000005 05 01 05", "version 2"),
    ("version 7", "02 0b e000 00000005 05 01 05", "version 7"),
    ("message type 0", "00 0b 2000 00000005 05 01 05", "unknown message type 0"),
    ("message type 6", "06 0b 2000 00000005 05 01 05", "unknown message type 6"),
    ("Notification without result", f"02 0d 2000 00000005 01 03 {MN1_HEX}", "result"),
    ("Notification with an empty L2-ID", "02 0d 2000 00000005 05 01 00 01 00", "L2-ID"),
    (
        "Trigger without L2-ID",
        f"01 1d 2000 00000001 06 10 {MAG_HEX} 04 01 01",
        "L2-ID",
    ),
    (
        "Trigger with an empty L2-ID",
        f"01 1f 2000 00000001 01 00 06 10 {MAG_HEX} 04 01 01",
        "L2-ID",
    ),
    (
        "Trigger without MAG address",
        f"01 10 2000 00000001 01 03 {MN1_HEX} 04 01 01",
        "MAG address",
    ),
    (
        "Trigger without address mode",
        f"01 1f 2000 00000001 01 03 {MN1_HEX} 06 10 {MAG_HEX}",
        "address-mode",
    ),
    ("Detach without MAG address", f"03 0d 2000 00000001 01 03 {MN1_HEX}", "MAG address"),
    (
        "an option twice",
        f"02 14 2000 00000005 05 01 05 01 03 {MN1_HEX} 01 02 6d6e",
        "twice",
    ),
    (
        "IP address of 15 octets",
        "02 1c 2000 00000005 05 01 05 02 0f" + "00" * 15,
        "expected 16",
    ),
    (
        "MAG address of 17 octets",
        f"03 20 2000 00000001 01 03 {MN1_HEX} 06 11 {MAG_HEX} 00",
        "expected 16",
    ),
    ("result of 2 octets", "02 0c 2000 00000005 05 02 0005", "expected 1"),
    (
        "address mode of 0 octets",
        f"01 21 2000 00000001 01 03 {MN1_HEX} 06 10 {MAG_HEX} 04 00",
        "expected 1",
    ),
    ("option runs past the end", "02 0d 2000 00000005 05 01 05 03 05", "runs past"),
    ("option header cut", "02 0c 2000 00000005 05 01 05 03", "truncated option header"),
]


class KnownValuesTests(SynchronousTestCase):
    """Hand-written octets, checked in both directions."""

    def test_encode(self):
        for description, message, octets in KNOWN:
            self.assertEqual(encodeControl(message).hex(), h(octets).hex(), description)

    def test_decode(self):
        for description, message, octets in KNOWN:
            self.assertEqual(decodeControl(h(octets)), message, description)

    def test_header(self):
        """Length counts the whole message; Ver 1 sits in the top 3 bits."""
        for description, message, octets in KNOWN:
            data = h(octets)
            self.assertEqual(data[1], len(data), description)
            self.assertEqual(data[2] >> 5, 1, description)
            self.assertEqual(data[2] & 0x1F, 0, description)
            self.assertEqual(data[3], 0, description)
            self.assertEqual(struct.unpack("!I", data[4:8])[0], message.transaction)

    def test_decodeOnly(self):
        for description, octets, message in DECODE_ONLY:
            self.assertEqual(decodeControl(h(octets)), message, description)

    def test_malformed(self):
        for description, octets, reason in MALFORMED:
            with self.assertRaises(DecodeError, msg=description) as caught:
                decodeControl(h(octets))
            self.assertIn(reason, str(caught.exception), description)

    def test_numbers(self):
        """The numbers doc/protocol.md documents."""
        self.assertEqual(
            (control.TRIGGER, control.NOTIFICATION, control.DETACH), (1, 2, 3)
        )
        self.assertEqual(
            (
                control.OPT_L2_ID,
                control.OPT_IP_ADDRESS,
                control.OPT_CONTAINER,
                control.OPT_ADDRESS_MODE,
                control.OPT_RESULT,
                control.OPT_MAG_ADDRESS,
            ),
            (1, 2, 3, 4, 5, 6),
        )
        self.assertEqual(
            (
                AddressMode.STATEFUL,
                AddressMode.STATELESS,
                AddressMode.LMA_ASSIGNED,
                AddressMode.STATIC,
            ),
            (1, 2, 3, 4),
        )
        self.assertEqual(control.VERSION, 1)
        self.assertEqual(control.HEADER, 8)
        self.assertEqual(control.MAX_LENGTH, 255)
        for code, name in Result.NAMES.items():
            self.assertEqual(getattr(Result, name.upper().replace("-", "_")), code)
        self.assertEqual(sorted(Result.NAMES), list(range(11)))


class FramingTests(SynchronousTestCase):
    """Messages on a byte stream are framed by their Length field."""

    def test_splitStream(self):
        messages = [message for _, message, _ in KNOWN]
        stream = b"".join(encodeControl(m) for m in messages)
        found = []
        while stream:
            length = peekLength(stream)
            found.append(decodeControl(stream[:length]))
            stream = stream[length:]
        self.assertEqual(found, messages)

    def test_peekLength(self):
        self.assertEqual(peekLength(b"\x02\x0b"), 11)
        self.assertEqual(peekLength(h("02 0b 2000 00000005 05 01 05")), 11)
        for short in range(8):
            with self.assertRaises(DecodeError):
                peekLength(bytes((2, short)))

    def test_transactionOf(self):
        self.assertEqual(transactionOf(h(KNOWN[0][2])), 0x01020304)
        self.assertEqual(transactionOf(h("02 0b 2000 00000005")), 5)
        self.assertIsNone(transactionOf(b"\x01\x02\x20\x00\x00\x00\x00"))


class TruncationTests(SynchronousTestCase):
    """Every cut of a valid message fails with DecodeError and nothing else."""

    def test_everyPrefix(self):
        for description, message, octets in KNOWN:
            data = h(octets)
            for end in range(len(data)):
                with self.assertRaises(DecodeError, msg=f"{description}: {end}"):
                    decodeControl(data[:end])

    def test_everyPrefixWithLengthRewritten(self):
        """
        With Length rewritten to match the cut, the option parser sees it:
        the result is DecodeError, or a message when the cut falls between
        options and what is left is complete.
        """
        for description, message, octets in KNOWN:
            data = h(octets)
            for end in range(8, len(data)):
                cut = data[:1] + bytes((end,)) + data[2:end]
                try:
                    decodeControl(cut)
                except DecodeError:
                    pass


# ---------------------------------------------------------------- generated

u8 = st.integers(0, 0xFF)
u32 = st.integers(0, 0xFFFFFFFF)
addresses = st.binary(min_size=16, max_size=16).map(IPv6Address)
identifiers = st.binary(min_size=1, max_size=64)
extras = st.lists(
    st.builds(ExtraOption, st.integers(7, 255), st.binary(max_size=40)), max_size=3
)

controlMessages = st.one_of(
    st.builds(Trigger, u32, identifiers, addresses, st.none() | addresses, u8, extras),
    st.builds(Detach, u32, identifiers, addresses, st.none() | addresses, extras),
    st.builds(
        Notification,
        u32,
        u8,
        st.none() | identifiers,
        st.none() | addresses,
        st.none() | st.binary(max_size=120),
        extras,
    ),
)


@st.composite
def framedMessages(draw):
    """Random options behind a valid version-1 header of the right Length."""
    kind = draw(st.sampled_from([1, 2, 3]))
    body = draw(st.binary(max_size=247))
    return struct.pack("!BBHI", kind, 8 + len(body), 0x2000, draw(u32)) + body


def _size(message):
    """The encoded size, counted from the fields (not by the encoder)."""
    size = 8 + sum(2 + len(e.data) for e in message.extra)
    if isinstance(message, Notification):
        size += 3
        size += 0 if message.mnId is None else 2 + len(message.mnId)
        size += 0 if message.phoa is None else 18
        size += 0 if message.pback is None else 2 + len(message.pback)
    else:
        size += 2 + len(message.mnId) + 18 + (0 if message.phoa is None else 18)
        size += 3 if isinstance(message, Trigger) else 0
    return size


class GeneratedTests(SynchronousTestCase):
    @EXAMPLES
    @given(controlMessages)
    def test_roundTrip(self, message):
        """
        A message encodes, decodes to itself and frames by Length; one that
        would pass 255 octets is refused with a clear error.
        """
        size = _size(message)
        try:
            data = encodeControl(message)
        except EncodeError as e:
            self.assertGreater(size, 255)
            self.assertIn("255", str(e))
            return
        self.assertLessEqual(size, 255)
        self.assertEqual(len(data), size)
        self.assertEqual(peekLength(data), len(data))
        self.assertEqual(decodeControl(data), message)

    @EXAMPLES
    @given(st.binary(max_size=300))
    def test_randomOctets(self, data):
        """Random octets give a message or DecodeError, nothing else."""
        try:
            decodeControl(data)
        except DecodeError:
            pass

    @EXAMPLES
    @given(framedMessages())
    def test_randomOptions(self, data):
        """
        Random options behind a valid header give a message or DecodeError;
        a message that decodes encodes again to a message that decodes to it.
        """
        try:
            message = decodeControl(data)
        except DecodeError:
            return
        self.assertEqual(decodeControl(encodeControl(message)), message)


class ConstructorTests(SynchronousTestCase):
    """Out-of-range values are refused with EncodeError."""

    def assertRefused(self, build, *args, **kwargs):
        with self.assertRaises(EncodeError, msg=f"{build.__name__}{args}{kwargs}") as caught:
            build(*args, **kwargs)
        self.assertTrue(str(caught.exception))
        return caught.exception

    def test_trigger(self):
        self.assertRefused(Trigger, -1, b"mn", MAG)
        self.assertRefused(Trigger, 1 << 32, b"mn", MAG)
        self.assertRefused(Trigger, True, b"mn", MAG)
        self.assertRefused(Trigger, 1, b"", MAG)
        self.assertRefused(Trigger, 1, b"x" * 254, MAG)
        self.assertRefused(Trigger, 1, "mn", MAG)
        self.assertRefused(Trigger, 1, b"mn", "10.0.0.1")
        self.assertRefused(Trigger, 1, b"mn", MAG, "not an address")
        self.assertRefused(Trigger, 1, b"mn", MAG, None, 256)
        self.assertRefused(Trigger, 1, b"mn", MAG, None, -1)
        self.assertRefused(Trigger, 1, b"mn", MAG, None, 1, [b"\x07\x00"])

    def test_detach(self):
        self.assertRefused(Detach, 1 << 32, b"mn", MAG)
        self.assertRefused(Detach, 1, b"", MAG)
        self.assertRefused(Detach, 1, b"mn", None)
        self.assertRefused(Detach, 1, b"mn", MAG, "::1::2")

    def test_notification(self):
        self.assertRefused(Notification, 1, 256)
        self.assertRefused(Notification, 1, -1)
        self.assertRefused(Notification, -1, 0)
        self.assertRefused(Notification, 1, 0, b"")
        self.assertRefused(Notification, 1, 0, None, "bad")
        self.assertRefused(Notification, 1, 0, None, None, b"x" * 256)
        self.assertRefused(Notification, 1, 0, None, None, "text")

    def test_extraOption(self):
        self.assertRefused(ExtraOption, 256, b"")
        self.assertRefused(ExtraOption, -1, b"")
        self.assertRefused(ExtraOption, 7, b"x" * 256)
        self.assertRefused(ExtraOption, 7, "text")
        for known in range(1, 7):
            # It would decode as the known option, not as an extra one.
            self.assertRefused(ExtraOption, known, b"\x00")
        ExtraOption(0, b"")
        ExtraOption(7, b"x" * 255)

    def test_tooLong(self):
        """
        The 8-bit Length allows 255 octets: 255 is sent, 256 refused with
        an error that says so.
        """
        fits = Notification(1, 0, pback=b"x" * 242)  # 8 + 3 + 2 + 242
        self.assertEqual(len(encodeControl(fits)), 255)
        error = self.assertRefused(
            encodeControl, Notification(1, 0, pback=b"x" * 243)
        )
        self.assertIn("256", str(error))
        self.assertIn("255", str(error))
        error = self.assertRefused(
            encodeControl,
            Trigger(1, b"x" * 200, MAG, A1, 1, [ExtraOption(9, b"y" * 40)]),
        )
        self.assertIn("255", str(error))

    def test_notAMessage(self):
        self.assertRefused(encodeControl, b"\x01\x08\x20\x00\x00\x00\x00\x01")
        self.assertRefused(encodeControl, ExtraOption(9, b""))
