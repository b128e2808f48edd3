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
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Network

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
    encodedLength,
    mnIdProblem,
    peekLength,
    transactionOf,
    withContainer,
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
MAC_HEX = "020000aabbcc"
PREFIX_HEX = "40 20010db8 00010000 00000000 00000000"  # 2001:db8:1::/64
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
        Trigger(7, b"02-00-00-aa-bb-cc", MAG, None, AddressMode.LMA_ASSIGNED),
        f"""01 30 2000 00000007
            01 11 30322d30302d30302d61612d62622d6363
            06 10 {MAG_HEX}
            04 01 03""",
    ),
    (
        "Trigger, per-MN prefix mode asking for a prefix (E.3): no IP address",
        Trigger(0x10, b"mn1", MAG, mode=AddressMode.PREFIX),
        f"""01 22 2000 00000010
            01 03 {MN1_HEX}
            06 10 {MAG_HEX}
            04 01 05""",
    ),
    (
        "Trigger, prefix mode naming its prefix, asking for IPv4, with the"
        " link-layer identifier and access technology (802.11)",
        Trigger(0x11, b"mn1", MAG, None, AddressMode.PREFIX,
                prefix=IPv6Network("2001:db8:1::/64"),
                ipv4=IPv4Interface("0.0.0.0/0"),
                linkLayerId=bytes.fromhex(MAC_HEX), accessTechnology=4),
        f"""01 47 2000 00000011
            01 03 {MN1_HEX}
            06 10 {MAG_HEX}
            04 01 05
            07 11 {PREFIX_HEX}
            08 05 00 00000000
            0a 06 {MAC_HEX}
            0b 01 04""",
    ),
    (
        "Trigger, stateful, naming the IPv4 address the mobile has",
        Trigger(0x12, b"mn1", MAG, A1, AddressMode.STATEFUL,
                ipv4=IPv4Interface("192.0.2.7/24")),
        f"""01 3b 2000 00000012
            01 03 {MN1_HEX}
            06 10 {MAG_HEX}
            02 10 {A1_HEX}
            04 01 01
            08 05 18 c0000207""",
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
        "Detach with the link-layer identifier",
        Detach(12, b"mn1", MAG, linkLayerId=bytes.fromhex(MAC_HEX)),
        f"03 27 2000 0000000c  01 03 {MN1_HEX}  06 10 {MAG_HEX}  0a 06 {MAC_HEX}",
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
        "Notification: success with a prefix, an IPv4 address and router, PBAck",
        Notification(0x13, Result.SUCCESS, b"mn1", None, h(PBACK_HEX),
                     prefix=IPv6Network("2001:db8:1::/64"),
                     ipv4=IPv4Interface("10.0.0.5/24"),
                     ipv4Router=IPv4Address("10.0.0.1")),
        f"""02 42 2000 00000013
            05 01 00
            01 03 {MN1_HEX}
            07 11 {PREFIX_HEX}
            08 05 18 0a000005
            09 04 0a000001
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
        "Detach releasing an old prefix (after an anchor move)",
        Detach(13, b"mn1", MAG, prefix=IPv6Network("2001:db8:1::/64")),
        f"03 32 2000 0000000d  01 03 {MN1_HEX}  06 10 {MAG_HEX}  07 11 {PREFIX_HEX}",
    ),
    (
        "unsolicited Notification: re-anchored at another LMA with a new prefix",
        Notification(0, Result.REANCHORED, b"mn1", prefix=IPv6Network("2001:db8:1::/64"),
                     lma=A1),
        f"02 35 2000 00000000  05 01 0c  01 03 {MN1_HEX}  07 11 {PREFIX_HEX}  0c 10 {A1_HEX}",
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
        "the longest MN identifier, 64 octets, and link-layer identifier, 32",
        "01 81 2000 00000001  01 40" + "6d" * 64 + f" 06 10 {MAG_HEX}  04 01 05"
        "  0a 20" + "ab" * 32,
        Trigger(1, b"m" * 64, MAG, mode=AddressMode.PREFIX, linkLayerId=b"\xab" * 32),
    ),
    (
        "an MN identifier in UTF-8 beyond ASCII",
        "02 12 2000 00000005  05 01 06  01 05 6dc3a9c3a9",
        Notification(5, Result.MOVED, "m\u00e9\u00e9".encode()),
    ),
    (
        "the smallest container: an 8-octet Mobility Header",
        "02 15 2000 00000005  05 01 01  03 08 3b00060000000000",
        Notification(5, Result.PBACK_REJECTED, pback=h("3b00060000000000")),
    ),
]


# (description, octets, text the DecodeError must contain).
MALFORMED = [
    ("shorter than the header", "01 07 2000 000000",
     "message is 7 octets; the header alone is 8"),
    ("Length larger than the message", "02 0c 2000 00000005 05 01 05",
     "Length field says 12 octets but 11 were given"),
    ("Length smaller than the message", "02 0a 2000 00000005 05 01 05",
     "Length field says 10 octets but 11 were given"),
    ("version 0", "02 0b 0000 00000005 05 01 05", "version 0 is not supported (only 1)"),
    ("version 2", "02 0b 4000 00000005 05 01 05", "version 2"),
    ("version 7", "02 0b e000 00000005 05 01 05", "version 7"),
    ("message type 0", "00 0b 2000 00000005 05 01 05", "unknown message type 0"),
    ("message type 6", "06 0b 2000 00000005 05 01 05", "unknown message type 6"),
    ("Notification without result", f"02 0d 2000 00000005 01 03 {MN1_HEX}",
     "Notification without the result option"),
    ("Notification with an empty L2-ID", "02 0d 2000 00000005 05 01 00 01 00",
     "Notification: MN identifier <0 octets: > is 0 octets; 1..64 are allowed"),
    (
        "Trigger without L2-ID",
        f"01 1d 2000 00000001 06 10 {MAG_HEX} 04 01 01",
        "Trigger without the L2-ID (MN identifier) option",
    ),
    (
        "Trigger with an empty L2-ID",
        f"01 1f 2000 00000001 01 00 06 10 {MAG_HEX} 04 01 01",
        "Trigger: MN identifier <0 octets: > is 0 octets",
    ),
    (
        "Trigger without MAG address",
        f"01 10 2000 00000001 01 03 {MN1_HEX} 04 01 01",
        "Trigger without the MAG address option",
    ),
    (
        "Trigger without address mode",
        f"01 1f 2000 00000001 01 03 {MN1_HEX} 06 10 {MAG_HEX}",
        "Trigger without the address-mode option",
    ),
    ("Detach without MAG address", f"03 0d 2000 00000001 01 03 {MN1_HEX}",
     "Detach without the MAG address option"),
    (
        "an option twice",
        f"02 14 2000 00000005 05 01 05 01 03 {MN1_HEX} 01 02 6d6e",
        "option 1 appears twice",
    ),
    (
        "IP address of 15 octets",
        "02 1c 2000 00000005 05 01 05 02 0f" + "00" * 15,
        "option 2 (IP address (pHoA)): 15 octets, expected 16",
    ),
    (
        "MAG address of 17 octets",
        f"03 20 2000 00000001 01 03 {MN1_HEX} 06 11 {MAG_HEX} 00",
        "option 6 (MAG address): 17 octets, expected 16",
    ),
    ("result of 2 octets", "02 0c 2000 00000005 05 02 0005",
     "option 5 (result): 2 octets, expected 1"),
    (
        "address mode of 0 octets",
        f"01 21 2000 00000001 01 03 {MN1_HEX} 06 10 {MAG_HEX} 04 00",
        "option 4 (address-mode): 0 octets, expected 1",
    ),
    ("option runs past the end", "02 0d 2000 00000005 05 01 05 03 05",
     "option 3 at offset 11: length 5 runs past the message by 5"),
    ("option header cut", "02 0c 2000 00000005 05 01 05 03",
     "option at offset 11: truncated option header"),
    (
        "a 16-octet container with 15 octets left: one past the end",
        "02 1c 2000 0000000b 05 01 01 03 10" + "00" * 15,
        "option 3 at offset 11: length 16 runs past the message by 1",
    ),
    (
        "a 15-octet container: not a Mobility Header",
        "02 1c 2000 0000000b 05 01 01 03 0f" + "00" * 15,
        "container of 15 octets is not a Mobility Header",
    ),
    ("an empty container", "02 0d 2000 00000005 05 01 01 03 00",
     "container of 0 octets is not a Mobility Header"),
    (
        "address mode 0",
        f"01 22 2000 00000001 01 03 {MN1_HEX} 06 10 {MAG_HEX} 04 01 00",
        "Trigger: address mode 0 is not defined (1..5)",
    ),
    (
        "address mode 6",
        f"01 22 2000 00000001 01 03 {MN1_HEX} 06 10 {MAG_HEX} 04 01 06",
        "Trigger: address mode 6 is not defined (1..5)",
    ),
    (
        "address mode 255",
        f"01 22 2000 00000001 01 03 {MN1_HEX} 06 10 {MAG_HEX} 04 01 ff",
        "address mode 255 is not defined",
    ),
    (
        "prefix mode with a pHoA",
        f"01 34 2000 00000001 01 03 {MN1_HEX} 06 10 {MAG_HEX} 02 10 {A1_HEX} 04 01 05",
        "address mode prefix carries no pHoA",
    ),
    (
        "a prefix in stateful mode",
        f"01 35 2000 00000001 01 03 {MN1_HEX} 06 10 {MAG_HEX} 04 01 01 07 11 {PREFIX_HEX}",
        "address mode stateful carries no home network prefix",
    ),
    (
        "prefix length 129",
        f"01 35 2000 00000001 01 03 {MN1_HEX} 06 10 {MAG_HEX} 04 01 05 07 11 81"
        + "00" * 16,
        "option 7 (home network prefix): prefix length 129 (at most 128)",
    ),
    (
        "a prefix with host bits set",
        f"01 35 2000 00000001 01 03 {MN1_HEX} 06 10 {MAG_HEX} 04 01 05 07 11 40"
        "20010db8 00010000 00000000 00000001",
        "has host bits set",
    ),
    (
        "a prefix option of 16 octets",
        f"01 34 2000 00000001 01 03 {MN1_HEX} 06 10 {MAG_HEX} 04 01 05 07 10"
        + "00" * 16,
        "option 7 (home network prefix): 16 octets, expected 17",
    ),
    (
        "IPv4 prefix length 33",
        f"01 29 2000 00000001 01 03 {MN1_HEX} 06 10 {MAG_HEX} 04 01 05 08 05 21 0a000001",
        "option 8 (IPv4 home address): prefix length 33 (at most 32)",
    ),
    (
        "IPv4 option of 4 octets",
        f"01 28 2000 00000001 01 03 {MN1_HEX} 06 10 {MAG_HEX} 04 01 05 08 04 0a000001",
        "option 8 (IPv4 home address): 4 octets, expected 5",
    ),
    (
        "IPv4 default router of 5 octets",
        "02 12 2000 00000005 05 01 00 09 05 0a00000100",
        "option 9 (IPv4 default router): 5 octets, expected 4",
    ),
    (
        "IPv4 default router in a Trigger",
        f"01 28 2000 00000001 01 03 {MN1_HEX} 06 10 {MAG_HEX} 04 01 05 09 04 0a000001",
        "option 9 (IPv4 default router) does not belong in a Trigger",
    ),
    (
        "a container in a Trigger",
        f"01 34 2000 00000001 01 03 {MN1_HEX} 06 10 {MAG_HEX} 04 01 05 03 10 {PBACK_HEX}",
        "option 3 (container) does not belong in a Trigger",
    ),
    (
        "a result in a Detach",
        f"03 22 2000 00000001 01 03 {MN1_HEX} 06 10 {MAG_HEX} 05 01 00",
        "option 5 (result) does not belong in a Detach",
    ),
    (
        "a link-layer identifier of 33 octets",
        f"03 42 2000 00000001 01 03 {MN1_HEX} 06 10 {MAG_HEX} 0a 21" + "ab" * 33,
        "link-layer identifier must be 1..32 octets long, not 33",
    ),
    (
        "an empty link-layer identifier",
        f"03 21 2000 00000001 01 03 {MN1_HEX} 06 10 {MAG_HEX} 0a 00",
        "link-layer identifier must be 1..32 octets long, not 0",
    ),
    (
        "access technology 0 (reserved)",
        f"01 25 2000 00000001 01 03 {MN1_HEX} 06 10 {MAG_HEX} 04 01 05 0b 01 00",
        "access technology type 0 is reserved",
    ),
    (
        "access technology of 2 octets",
        f"01 26 2000 00000001 01 03 {MN1_HEX} 06 10 {MAG_HEX} 04 01 05 0b 02 0004",
        "option 11 (access technology type): 2 octets, expected 1",
    ),
    (
        "an MN identifier of 65 octets",
        "03 5d 2000 00000001 01 41" + "6d" * 65 + f" 06 10 {MAG_HEX}",
        "Detach: MN identifier <65 octets: " + "6d" * 64 + "...> is 65 octets; "
        "1..64 are allowed",
    ),
    (
        "an MN identifier with a NUL octet",
        f"03 1f 2000 00000001 01 03 6d006e 06 10 {MAG_HEX}",
        "MN identifier <3 octets: 6d006e> has control character U+0000 at character 1",
    ),
    (
        "an MN identifier with an escape character",
        f"03 1f 2000 00000001 01 03 1b5b41 06 10 {MAG_HEX}",
        "has control character U+001B at character 0",
    ),
    (
        "an MN identifier that is not UTF-8",
        f"03 1f 2000 00000001 01 03 6dff31 06 10 {MAG_HEX}",
        "MN identifier <3 octets: 6dff31> is not valid UTF-8 (octet 1)",
    ),
    (
        "a Conflict Detection Request without its pHoA",
        f"04 0d 2000 00000001 01 03 {MN1_HEX}",
        "Conflict Detection Request without the IP address (pHoA) option",
    ),
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
        self.assertEqual(sorted(Result.NAMES), list(range(13)))


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


def _boundaries(data):
    """The offsets where the options of C{data} start (walked by hand here)."""
    pos, starts = 8, []
    while pos < len(data):
        starts.append(pos)
        pos += 2 + data[pos + 1]
    return starts


class TruncationTests(SynchronousTestCase):
    """Every cut of a valid message fails with exactly the expected error."""

    def test_everyPrefix(self):
        for description, message, octets in KNOWN:
            data = h(octets)
            for end in range(len(data)):
                with self.assertRaises(DecodeError, msg=f"{description}: {end}") as e:
                    decodeControl(data[:end])
                if end < 8:
                    expected = f"message is {end} octets; the header alone is 8"
                else:
                    expected = f"Length field says {len(data)} octets but {end} were given"
                self.assertEqual(str(e.exception), expected, f"{description}: {end}")

    def test_everyPrefixWithLengthRewritten(self):
        """
        With Length rewritten to match the cut, the option parser sees it.
        A cut inside an option header or body is refused naming it; a cut
        between options gives the message with the options before the cut,
        or, when a required one is gone, an error naming the first missing.
        """
        for description, message, octets in KNOWN:
            data = h(octets)
            starts = _boundaries(data)
            required = {type(message).REQUIRED[i]: i for i in range(len(type(message).REQUIRED))}
            for end in range(8, len(data)):
                cut = data[:1] + bytes((end,)) + data[2:end]
                where = f"{description}: cut at {end}"
                inside = [p for p in starts if p < end < p + 2 + data[p + 1]]
                if inside:
                    p = inside[0]
                    if end == p + 1:
                        expected = f"option at offset {p}: truncated option header"
                    else:
                        expected = (f"option {data[p]} at offset {p}: length {data[p + 1]} "
                                    f"runs past the message by {p + 2 + data[p + 1] - end}")
                    with self.assertRaises(DecodeError, msg=where) as e:
                        decodeControl(cut)
                    self.assertEqual(str(e.exception), expected, where)
                    continue
                kept = {data[p] for p in starts if p < end}
                missing = sorted((i, t) for t, i in required.items() if t not in kept)
                if missing:
                    with self.assertRaises(DecodeError, msg=where) as e:
                        decodeControl(cut)
                    self.assertIn(" without the ", str(e.exception), where)
                    self.assertIn(control._OPTIONS[missing[0][1]].name, str(e.exception))
                    continue
                # The encoder writes the known options in canonical order,
                # so what is left must encode back to exactly the cut.
                self.assertEqual(encodeControl(decodeControl(cut)), cut, where)

# ---------------------------------------------------------------- generated

u8 = st.integers(0, 0xFF)
u32 = st.integers(0, 0xFFFFFFFF)
addresses = st.binary(min_size=16, max_size=16).map(IPv6Address)
#: Legal MN identifiers: 1..64 octets of UTF-8 text without control characters.
identifiers = st.text(
    st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=64
).map(lambda t: t.encode("utf-8")).filter(lambda b: len(b) <= 64)
prefixes = st.builds(
    lambda a, n: IPv6Network((a, n), strict=False), addresses, st.integers(0, 128))
ipv4s = st.builds(lambda a, n: IPv4Interface((a, n)),
                  st.binary(min_size=4, max_size=4).map(IPv4Address), st.integers(0, 32))
ipv4Addresses = st.binary(min_size=4, max_size=4).map(IPv4Address)
linkLayerIds = st.binary(min_size=1, max_size=32)
containers = st.integers(1, 30).flatmap(lambda n: st.binary(min_size=8 * n, max_size=8 * n))
extras = st.lists(
    st.builds(ExtraOption, st.integers(14, 255), st.binary(max_size=40)), max_size=3
)
modes = st.sampled_from(sorted(AddressMode.NAMES))


@st.composite
def triggers(draw):
    """Legal Triggers: a pHoA except in the prefix mode, a prefix only there."""
    mode = draw(modes)
    prefixMode = mode == AddressMode.PREFIX
    return Trigger(
        draw(u32), draw(identifiers), draw(addresses),
        None if prefixMode else draw(st.none() | addresses), mode, draw(extras),
        prefix=draw(st.none() | prefixes) if prefixMode else None,
        ipv4=draw(st.none() | ipv4s), linkLayerId=draw(st.none() | linkLayerIds),
        accessTechnology=draw(st.none() | st.integers(1, 255)))


controlMessages = st.one_of(
    triggers(),
    st.builds(Detach, u32, identifiers, addresses, st.none() | addresses, extras,
              st.none() | linkLayerIds),
    st.builds(
        Notification,
        u32,
        u8,
        st.none() | identifiers,
        st.none() | addresses,
        st.none() | containers,
        extras,
        st.none() | prefixes,
        st.none() | ipv4s,
        st.none() | ipv4Addresses,
        st.none() | addresses,
        st.none() | addresses,
    ),
)


@st.composite
def framedMessages(draw):
    """Random options behind a valid version-1 header of the right Length."""
    kind = draw(st.sampled_from([1, 2, 3, 4, 5]))
    body = draw(st.binary(max_size=247))
    return struct.pack("!BBHI", kind, 8 + len(body), 0x2000, draw(u32)) + body


def _size(message):
    """The encoded size, counted from the fields (not by the encoder)."""
    size = 8 + sum(2 + len(e.data) for e in message.extra)

    def optional(value, octets):
        return 0 if value is None else 2 + octets

    if isinstance(message, Notification):
        size += 3
        size += optional(message.mnId, len(message.mnId or b""))
        size += optional(message.pback, len(message.pback or b""))
        size += optional(message.ipv4Router, 4)
        size += optional(message.lma, 16)
        size += optional(message.peerMag, 16)
    else:
        size += 2 + len(message.mnId)
        size += 18 if isinstance(message, (Trigger, Detach)) else 0
    size += optional(message.phoa, 16)
    size += optional(getattr(message, "prefix", None), 17)
    size += optional(getattr(message, "ipv4", None), 5)
    ll = getattr(message, "linkLayerId", None)
    size += optional(ll, len(ll or b""))
    if isinstance(message, Trigger):
        size += 3 + optional(message.accessTechnology, 1)
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
        self.assertEqual(encodedLength(message), size)
        try:
            data = encodeControl(message)
        except EncodeError as e:
            self.assertGreater(size, 255)
            self.assertIn(f"would be {size} octets", str(e))
            self.assertIn("255", str(e))
            return
        self.assertLessEqual(size, 255)
        self.assertEqual(len(data), size)
        self.assertEqual(peekLength(data), len(data))
        self.assertEqual(decodeControl(data), message)

    @EXAMPLES
    @given(st.binary(max_size=300))
    def test_randomOctets(self, data):
        """
        Random octets give a message or DecodeError, nothing else, and the
        header's faults are the ones reported, in the order they are checked.
        """
        try:
            message = decodeControl(data)
        except DecodeError as e:
            error = str(e)
        else:
            self.assertEqual(decodeControl(encodeControl(message)), message)
            return
        if len(data) < 8:
            self.assertIn("the header alone is 8", error)
        elif data[1] != len(data):
            self.assertIn(f"Length field says {data[1]} octets", error)
        elif data[2] >> 5 != 1:
            self.assertIn(f"version {data[2] >> 5} is not supported", error)
        elif data[0] not in (1, 2, 3, 4, 5):
            self.assertEqual(error, f"unknown message type {data[0]}")

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
    """Out-of-range values are refused with EncodeError naming the field."""

    def assertRefused(self, build, *args, reason, **kwargs):
        with self.assertRaises(EncodeError, msg=f"{build.__name__}{args}{kwargs}") as caught:
            build(*args, **kwargs)
        self.assertIn(reason, str(caught.exception))
        return caught.exception

    def test_trigger(self):
        refused = self.assertRefused
        refused(Trigger, -1, b"mn", MAG, reason="transaction number must be")
        refused(Trigger, 1 << 32, b"mn", MAG, reason="transaction number must be")
        refused(Trigger, True, b"mn", MAG, reason="transaction number must be")
        refused(Trigger, 1, b"", MAG, reason="is 0 octets; 1..64 are allowed")
        refused(Trigger, 1, b"x" * 65, MAG, reason="is 65 octets; 1..64 are allowed")
        refused(Trigger, 1, "mn", MAG, reason="MN identifier 'mn' must be bytes, not str")
        refused(Trigger, 1, b"m\x00n", MAG, reason="control character U+0000")
        refused(Trigger, 1, b"m\xc2\x85", MAG, reason="control character U+0085")
        refused(Trigger, 1, b"\xc3", MAG, reason="is not valid UTF-8 (octet 0)")
        refused(Trigger, 1, b"mn", "10.0.0.1", reason="MAG address must be an IPv6 address")
        refused(Trigger, 1, b"mn", MAG, "not an address", reason="pHoA must be")
        refused(Trigger, 1, b"mn", MAG, None, 256, reason="address mode must be")
        refused(Trigger, 1, b"mn", MAG, None, -1, reason="address mode must be")
        refused(Trigger, 1, b"mn", MAG, None, 0, reason="address mode 0 is not defined")
        refused(Trigger, 1, b"mn", MAG, None, 6, reason="address mode 6 is not defined")
        refused(Trigger, 1, b"mn", MAG, None, 1, [b"\x07\x00"], reason="not an ExtraOption")
        refused(Trigger, 1, b"mn", MAG, A1, AddressMode.PREFIX,
                reason="address mode prefix carries no pHoA")
        refused(Trigger, 1, b"mn", MAG, None, AddressMode.LMA_ASSIGNED,
                prefix="2001:db8::/64", reason="address mode lma-assigned carries no")
        refused(Trigger, 1, b"mn", MAG, None, AddressMode.PREFIX, prefix="2001:db8::1/64",
                reason="home network prefix must be an IPv6 prefix without host bits")
        refused(Trigger, 1, b"mn", MAG, ipv4="10.0.0.1/33",
                reason="IPv4 home address must be an IPv4 address/length")
        refused(Trigger, 1, b"mn", MAG, ipv4="2001:db8::1", reason="IPv4 home address")
        refused(Trigger, 1, b"mn", MAG, linkLayerId=b"", reason="1..32 octets long, not 0")
        refused(Trigger, 1, b"mn", MAG, linkLayerId=b"x" * 33,
                reason="link-layer identifier must be 1..32 octets long, not 33")
        refused(Trigger, 1, b"mn", MAG, accessTechnology=0,
                reason="access technology type 0 is reserved")
        refused(Trigger, 1, b"mn", MAG, accessTechnology=256,
                reason="access technology type must be an integer 0..255")

    def test_largestLegal(self):
        """The largest legal value of every variable field is accepted."""
        trigger = Trigger(1, "\u00e9".encode() * 32, MAG, None, AddressMode.PREFIX,
                          prefix="::/0", ipv4="255.255.255.255/32",
                          linkLayerId=b"\xff" * 32, accessTechnology=255)
        self.assertEqual(decodeControl(encodeControl(trigger)), trigger)
        self.assertEqual(len(trigger.mnId), 64)

    def test_detach(self):
        refused = self.assertRefused
        refused(Detach, 1 << 32, b"mn", MAG, reason="transaction number")
        refused(Detach, 1, b"", MAG, reason="is 0 octets")
        refused(Detach, 1, b"mn", None, reason="MAG address must be an IPv6 address")
        refused(Detach, 1, b"mn", MAG, "::1::2", reason="pHoA must be")
        refused(Detach, 1, b"mn", MAG, linkLayerId="aa", reason="must be bytes")

    def test_notification(self):
        refused = self.assertRefused
        refused(Notification, 1, 256, reason="result must be")
        refused(Notification, 1, -1, reason="result must be")
        refused(Notification, -1, 0, reason="transaction number")
        refused(Notification, 1, 0, b"", reason="is 0 octets")
        refused(Notification, 1, 0, None, "bad", reason="pHoA must be")
        refused(Notification, 1, 0, None, None, b"x" * 256,
                reason="container must be 0..255 octets long, not 256")
        refused(Notification, 1, 0, None, None, b"x" * 15,
                reason="container of 15 octets is not a Mobility Header")
        refused(Notification, 1, 0, None, None, "text", reason="container must be bytes")
        refused(Notification, 1, 0, ipv4Router="10.0.0.1/24",
                reason="IPv4 default router must be an IPv4 address")
        refused(Notification, 1, 0, prefix="2001:db8::/129", reason="home network prefix")

    def test_extraOption(self):
        refused = self.assertRefused
        refused(ExtraOption, 256, b"", reason="option type must be")
        refused(ExtraOption, -1, b"", reason="option type must be")
        refused(ExtraOption, 99, b"x" * 256, reason="option data must be 0..255")
        refused(ExtraOption, 99, "text", reason="option data must be bytes")
        for known in range(1, 14):
            # It would decode as the known option, not as an extra one.
            refused(ExtraOption, known, b"\x00",
                    reason=f"option type {known} is a known option")
        ExtraOption(0, b"")
        ExtraOption(99, b"x" * 255)

    def test_tooLong(self):
        """
        The 8-bit Length allows 255 octets: 255 is sent, 256 refused with
        an error that says so.
        """
        fits = Notification(1, 0, pback=b"x" * 240, extra=[ExtraOption(99, b"")])
        self.assertEqual(len(encodeControl(fits)), 255)  # 8 + 3 + 242 + 2
        error = self.assertRefused(
            encodeControl, Notification(1, 0, pback=b"x" * 240,
                                        extra=[ExtraOption(99, b"y")]),
            reason="Notification would be 256 octets; the 8-bit Length field "
                   "allows at most 255")
        error = self.assertRefused(
            encodeControl,
            Trigger(1, b"x" * 64, MAG, A1, 1, [ExtraOption(99, b"y" * 150)]),
            reason="Trigger would be 265 octets")
        self.assertIn("255", str(error))

    def test_notAMessage(self):
        self.assertRefused(encodeControl, b"\x01\x08\x20\x00\x00\x00\x00\x01",
                           reason="not a control message")
        self.assertRefused(encodeControl, ExtraOption(99, b""),
                           reason="not a control message")


class LimitTests(SynchronousTestCase):
    """The length limits of doc/protocol.md 3.5, decided in one place."""

    def test_limits(self):
        self.assertEqual((control.MAX_MN_ID, control.MAX_LINK_LAYER_ID), (64, 32))

    def test_mnIdProblem(self):
        self.assertIsNone(mnIdProblem(b"m" * 64))
        self.assertIsNone(mnIdProblem("m\u00e9\u4e2d".encode()))
        self.assertEqual(mnIdProblem(b"m" * 65), "is 65 octets; 1..64 are allowed")
        self.assertEqual(mnIdProblem(b""), "is 0 octets; 1..64 are allowed")
        self.assertEqual(mnIdProblem(b"a\x00"), "has control character U+0000 at character 1")
        self.assertEqual(mnIdProblem(b"a\x7f"), "has control character U+007F at character 1")
        self.assertEqual(mnIdProblem(b"\n"), "has control character U+000A at character 0")
        self.assertEqual(mnIdProblem(b"ab\xff"), "is not valid UTF-8 (octet 2)")
        self.assertEqual(mnIdProblem("mn"), "must be bytes, not str")

    def test_showMnId(self):
        self.assertEqual(control.showMnId(b"mn1"), "mn1")
        self.assertEqual(control.showMnId(b"a\x00"), "<2 octets: 6100>")
        self.assertEqual(control.showMnId(b"x" * 70), "<70 octets: " + "78" * 64 + "...>")

    def test_largestTrigger(self):
        """Every field at its largest still fits in a Trigger, with room left."""
        trigger = Trigger(1, b"m" * 64, MAG, None, AddressMode.PREFIX,
                          prefix="2001:db8::/64", ipv4="10.0.0.1/32",
                          linkLayerId=b"x" * 32, accessTechnology=4)
        self.assertEqual(len(encodeControl(trigger)), 8 + 66 + 18 + 3 + 19 + 7 + 34 + 3)

    def test_withContainer(self):
        """
        The container goes in when the whole Notification fits in 255
        octets, and is left out (nothing else changes) when it would not.
        """
        base = Notification(7, Result.SUCCESS, b"m" * 64, A1)  # 8 + 3 + 66 + 18 = 95
        self.assertEqual(encodedLength(base), 95)
        fits = withContainer(base, b"\x3b" * 152)  # 95 + 2 + 152 = 249
        self.assertEqual(fits.pback, b"\x3b" * 152)
        self.assertEqual(len(encodeControl(fits)), 249)
        self.assertIs(withContainer(base, b"\x3b" * 160), base)  # 257
        exact = withContainer(base._replace(extra=(ExtraOption(99, b"1234"),)),
                              b"\x3b" * 152)  # 255
        self.assertEqual(len(encodeControl(exact)), 255)
        with self.assertRaises(EncodeError):
            withContainer(Notification(7, 0), b"\x3b" * 15)


class LmaAddressTests(SynchronousTestCase):
    """
    The LMA address option (type 12, draft 4.4): the PMIP client with
    several LMAs names in a Notification the LMA that anchors the mobile.
    """

    LMA = IPv6Address("2001:db8:ff::2")

    def test_encoding(self):
        """Type 12, length 16, the address; after the IPv4 router, before the container."""
        n = Notification(9, Result.SUCCESS, b"mn1", A1, pback=b"\x3b" * 8, lma=self.LMA)
        wire = encodeControl(n)
        option = bytes((12, 16)) + self.LMA.packed
        self.assertIn(option, wire)
        self.assertEqual(wire.index(option), 8 + 3 + 5 + 18)
        self.assertEqual(wire[-10:], bytes((3, 8)) + b"\x3b" * 8)
        self.assertEqual(decodeControl(wire), n)
        self.assertIsNone(decodeControl(encodeControl(n._replace(lma=None))).lma)

    def test_badOption(self):
        """A short LMA address, or one in a Trigger, makes the message undecodable."""
        body = bytes((5, 1, 0)) + bytes((12, 15)) + self.LMA.packed[:15]
        data = bytes((2, 8 + len(body))) + bytes((0x20, 0)) + (1).to_bytes(4, "big") + body
        with self.assertRaises(DecodeError) as e:
            decodeControl(data)
        self.assertEqual(str(e.exception),
                         "option 12 (LMA address): 15 octets, expected 16")
        trigger = encodeControl(Trigger(1, b"mn1", MAG, A1))
        wrong = bytes((trigger[0], len(trigger) + 18)) + trigger[2:] + bytes((12, 16)) \
            + self.LMA.packed
        with self.assertRaises(DecodeError) as e:
            decodeControl(wrong)
        self.assertEqual(str(e.exception),
                         "option 12 (LMA address) does not belong in a Trigger")

    def test_withLma(self):
        """
        withLma keeps the container while the Notification fits in 255
        octets, and leaves it out (the anchor matters more) when not.
        """
        from netlmm.wire.control import withLma
        base = Notification(7, Result.SUCCESS, b"m" * 64, A1)  # 95 octets
        kept = withLma(withContainer(base, b"\x3b" * 136), self.LMA)  # 95+138+18 = 251
        self.assertEqual(kept.lma, self.LMA)
        self.assertEqual(kept.pback, b"\x3b" * 136)
        self.assertEqual(len(encodeControl(kept)), 251)
        dropped = withLma(withContainer(base, b"\x3b" * 152), self.LMA)  # 267 with it
        self.assertEqual(dropped, base._replace(lma=self.LMA))
        self.assertEqual(len(encodeControl(dropped)), 95 + 18)

