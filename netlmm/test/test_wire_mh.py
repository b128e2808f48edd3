"""
Tests for L{netlmm.wire.mh}, the Mobility Header codec.

The known-values table holds octets written out by hand from the layouts in
RFC 6275 (sections 6.1 and 6.2), RFC 4283, RFC 4285, RFC 5213 (section 8)
and RFC 5844 (section 3.3), not produced by the encoder; each entry is
checked in both directions.
Scapy and, when installed, tshark serve as independent decoders.
"""

import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest
from ipaddress import IPv4Address, IPv6Address

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from netlmm.wire import DecodeError, EncodeError
from netlmm.wire import mh
from netlmm.wire.mh import (
    BA_K,
    BA_P,
    BA_R,
    BU_A,
    BU_H,
    BU_K,
    BU_L,
    BU_M,
    BU_P,
    BU_R,
    AccessTechnologyType,
    AlternateCareOfAddress,
    BindingAcknowledgement,
    BindingAuthorizationData,
    BindingError,
    BindingRefreshAdvice,
    BindingRefreshRequest,
    BindingUpdate,
    HandoffIndicator,
    Heartbeat,
    HomeNetworkPrefix,
    IPv4DefaultRouterAddress,
    IPv4DhcpSupportMode,
    IPv4HomeAddressReply,
    IPv4HomeAddressRequest,
    LinkLocalAddress,
    MalformedOption,
    MobileNodeIdentifier,
    MobileNodeLinkLayerIdentifier,
    MobilityMessageAuthentication,
    MobilityMessageReplayProtection,
    RestartCounter,
    RevocationAcknowledgement,
    RevocationIndication,
    RevocationStatus,
    RevocationTrigger,
    Status,
    Timestamp,
    UnknownMessage,
    UnknownOption,
    checksumValid,
    decodeMessage,
    encodeMessage,
)

from netlmm.test.scapytools import MISSING as _SCAPY_SKIP, scapyModule

# Not installed: the scapy tests skip; installed but broken: this import fails.
_scapy6 = scapyModule("scapy.layers.inet6")
_scapyRaw = getattr(scapyModule("scapy.compat"), "raw", None)

_TSHARK = shutil.which("tshark")

EXAMPLES = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def h(text):
    """Octets from hex text; spaces and newlines are for the reader only."""
    return bytes.fromhex("".join(text.split()))


# Addresses as written out in the vectors below.
A1 = "2001:db8::1"
A1_HEX = "20010db8 00000000 00000000 00000001"
A2 = "2001:db8:1::2"
A2_HEX = "20010db8 00010000 00000000 00000002"
MAG = "2001:db8::a"
MAG_HEX = "20010db8 00000000 00000000 0000000a"
LMA = "2001:db8::b"
LL = "fe80::1"
LL_HEX = "fe800000 00000000 00000000 00000001"
ZERO_HEX = "00" * 16
PROXY = BU_A | BU_H | BU_P


# (description, message, Mobility Header octets with checksum zero). The
# first 6 octets are Payload Proto 59 (0x3b), Header Len, MH Type, Reserved,
# Checksum; "|" in the comments marks option boundaries and offsets are from
# the start of the header.
KNOWN = [
    (
        "BRR without options: 8 octets, Header Len 0",
        BindingRefreshRequest(),
        "3b 00 00 00 0000  0000",
    ),
    (
        "BU without options: 12 octets padded to 16 with PadN (2 zero octets)",
        BindingUpdate(1, PROXY, 0x0064),
        "3b 01 05 00 0000  0001 c200 0064  01 02 0000",
    ),
    (
        "PBU: HNP at 12 (8n+4, no padding) | PadN 6 | ACoA at 38 (8n+6)"
        " | MN-ID (no alignment) | PadN 6 to 80 octets",
        BindingUpdate(
            2,
            PROXY,
            0x0096,
            [
                HomeNetworkPrefix(A1),
                AlternateCareOfAddress(A2),
                MobileNodeIdentifier(b"mn1@example.net"),
            ],
        ),
        f"""3b 09 05 00 0000  0002 c200 0096
            16 12 00 80 {A1_HEX}
            01 04 00000000
            03 10 {A2_HEX}
            08 10 01 6d6e3140 6578616d 706c652e 6e6574
            01 04 00000000""",
    ),
    (
        "ACoA after a 2-octet PadN (zero data octets): 12 -> 14 (8n+6)",
        BindingUpdate(3, PROXY, 0, [AlternateCareOfAddress(MAG)]),
        f"3b 03 05 00 0000  0003 c200 0000  01 00  03 10 {MAG_HEX}",
    ),
    (
        "all-zero HNP, prefix length 128: ask the LMA to assign (Appendix A)",
        BindingUpdate(4, PROXY, 0x0096, [HomeNetworkPrefix("::")]),
        f"3b 03 05 00 0000  0004 c200 0096  16 12 00 80 {ZERO_HEX}",
    ),
    (
        "BA with a /64 HNP",
        BindingAcknowledgement(
            0, BA_P, 11, 0x0096, [HomeNetworkPrefix("2001:db8:1::", 64)]
        ),
        "3b 03 06 00 0000  00 20 000b 0096  16 12 00 40"
        " 20010db8 00010000 00000000 00000000",
    ),
    (
        "Pad1 before a 2n option: MN-ID ends at 13, Pad1, BRA at 14,"
        " PadN 6 to 24",
        BindingRefreshRequest([MobileNodeIdentifier(b"ab"), BindingRefreshAdvice(5)]),
        "3b 02 00 00 0000  0000  08 03 01 6162  00  02 02 0005  01 04 00000000",
    ),
    (
        "MN-HA authentication (4n+1): Pad1, option at 13, ends at 32; last,"
        " nothing after it",
        BindingUpdate(
            5, PROXY, 0, [MobilityMessageAuthentication(1, 0x100, bytes(range(12)))]
        ),
        "3b 03 05 00 0000  0005 c200 0000  00"
        "  09 11 01 00000100 00010203 04050607 08090a0b",
    ),
    (
        "authentication must end on 8n: 13 would end at 36, so PadN 5 and"
        " the option at 17 (also 4n+1) ends at 40",
        BindingAcknowledgement(
            0, BA_P, 5, 0x0096, [MobilityMessageAuthentication(2, 0x1000, b"\xaa" * 16)]
        ),
        "3b 04 06 00 0000  00 20 0005 0096  01 03 000000"
        "  09 15 02 00001000 " + "aa" * 16,
    ),
    (
        "Timestamp (8n+2): PadN 6, option at 18, PadN 4 to 32",
        BindingUpdate(6, PROXY, 0, [Timestamp(0x0000655300008000)]),
        "3b 03 05 00 0000  0006 c200 0000  01 04 00000000"
        "  1b 08 0000 6553 0000 8000  01 02 0000",
    ),
    (
        "Binding Authorization Data (8n+2) at 18, PadN 2, replay protection"
        " (8n+2) at 34, PadN 4 to 48",
        BindingAcknowledgement(
            0,
            0,
            7,
            0,
            [
                BindingAuthorizationData(bytes(range(12))),
                MobilityMessageReplayProtection(0x0102030405060708),
            ],
        ),
        "3b 05 06 00 0000  00 00 0007 0000  01 04 00000000"
        "  05 0c 00010203 04050607 08090a0b  01 00"
        "  0a 08 01020304 05060708  01 02 0000",
    ),
    (
        "Handoff Indicator and Access Technology Type (no alignment), a"
        " 6-octet link-layer identifier (2n) after Pad1, Link-local Address"
        " (8n+6) after PadN 2",
        BindingUpdate(
            8,
            PROXY,
            0,
            [
                HandoffIndicator(HandoffIndicator.ATTACHMENT_OVER_NEW_INTERFACE),
                AccessTechnologyType(AccessTechnologyType.WLAN),
                MobileNodeIdentifier(b"xy"),
                MobileNodeLinkLayerIdentifier(h("020000aabbcc")),
                LinkLocalAddress(LL),
            ],
        ),
        f"""3b 06 05 00 0000  0008 c200 0000
            17 02 00 01
            18 02 00 04
            08 03 01 7879
            00
            19 08 0000 020000aabbcc
            01 00
            1a 10 {LL_HEX}""",
    ),
    (
        "8-octet link-layer identifier: 8n+4, so the identifier is 8-aligned",
        BindingUpdate(
            9,
            PROXY,
            0,
            [
                HandoffIndicator(HandoffIndicator.NOT_CHANGED),
                MobileNodeLinkLayerIdentifier(h("0102030405060708")),
            ],
        ),
        "3b 03 05 00 0000  0009 c200 0000  17 02 00 05  01 02 0000"
        "  19 0a 0000 01020304 05060708",
    ),
    (
        "4-octet link-layer identifier: 4n after a 3-octet PadN",
        BindingRefreshRequest(
            [MobileNodeIdentifier(b"ab"), MobileNodeLinkLayerIdentifier(h("deadbeef"))]
        ),
        "3b 02 00 00 0000  0000  08 03 01 6162  01 01 00  19 06 0000 deadbeef",
    ),
    (
        "BA status 135 (sequence out of window) carries the last sequence",
        BindingAcknowledgement(Status.SEQUENCE_OUT_OF_WINDOW, 0, 0x1234, 0),
        "3b 01 06 00 0000  87 00 1234 0000  01 02 0000",
    ),
    (
        "BA with every flag (K R P) and a refresh advice",
        BindingAcknowledgement(
            0, BA_K | BA_R | BA_P, 0xFFFF, 0xFFFF, [BindingRefreshAdvice(0x0102)]
        ),
        "3b 01 06 00 0000  00 e0 ffff ffff  02 02 0102",
    ),
    (
        "BU with every flag A H L K M R P",
        BindingUpdate(
            0xFFFF, BU_A | BU_H | BU_L | BU_K | BU_M | BU_R | BU_P, 0xFFFF
        ),
        "3b 01 05 00 0000  ffff fe00 ffff  01 02 0000",
    ),
    (
        "Binding Error, status 2 (unknown MH type), unspecified home address",
        BindingError(mh.BE_UNKNOWN_MH_TYPE),
        f"3b 02 07 00 0000  02 00 {ZERO_HEX}",
    ),
    (
        "Binding Error, status 1, with a home address",
        BindingError(mh.BE_UNKNOWN_HOA, A1),
        f"3b 02 07 00 0000  01 00 {A1_HEX}",
    ),
    (
        "PBU for an IPv4 mobile (RFC 5844): MN-ID at 12, PadN 3, IPv4 Home"
        " Address Request (4n) at 20 asking for 0.0.0.0, DHCP Support Mode"
        " (no alignment) at 28",
        BindingUpdate(
            11,
            BU_A | BU_P,
            0x0096,
            [
                MobileNodeIdentifier(b"ab"),
                IPv4HomeAddressRequest(),
                IPv4DhcpSupportMode(False),
            ],
        ),
        "3b 03 05 00 0000  000b 8200 0096  08 03 01 6162  01 01 00"
        "  24 06 0000 00000000  27 02 0000",
    ),
    (
        "IPv4 Home Address Request for 198.51.100.7/32: Prefix-len 32 is"
        " the top 6 bits of the first octet (0x80), 10 reserved bits zero",
        BindingUpdate(
            12,
            BU_A | BU_P,
            1,
            [
                HandoffIndicator(HandoffIndicator.NOT_CHANGED),
                IPv4HomeAddressRequest("198.51.100.7", 32),
            ],
        ),
        "3b 02 05 00 0000  000c 8200 0001  17 02 00 05  24 06 8000 c6336407",
    ),
    (
        "PBA with IPv4 Home Address Reply (4n): status 0, Pref-len 24 in the"
        " top 6 bits (0x60); Default-Router Address (4n); DHCP Support Mode"
        " with S set (the last bit)",
        BindingAcknowledgement(
            0,
            BA_P,
            11,
            0x0096,
            [
                IPv4HomeAddressReply(0, "192.0.2.10", 24),
                IPv4DefaultRouterAddress("192.0.2.1"),
                IPv4DhcpSupportMode(True),
            ],
        ),
        "3b 03 06 00 0000  00 20 000b 0096  25 06 00 60 c000020a"
        "  26 06 0000 c0000201  27 02 0001",
    ),
    (
        "PBA status 170 (NOT_AUTHORIZED_FOR_IPV4_MOBILITY_SERVICE) with a"
        " Reply of status 132 (no dynamic assignment), PadN 2 to 24",
        BindingAcknowledgement(
            Status.NOT_AUTHORIZED_FOR_IPV4_MOBILITY_SERVICE,
            BA_P,
            13,
            0,
            [IPv4HomeAddressReply(
                IPv4HomeAddressReply.DYNAMIC_IPV4_HOME_ADDRESS_ASSIGNMENT_NOT_AVAILABLE)],
        ),
        "3b 02 06 00 0000  aa 20 000d 0000  25 06 84 00 00000000  01 02 0000",
    ),
    (
        "an unknown option type (60) is kept as it came",
        BindingUpdate(10, PROXY, 0, [UnknownOption(60, h("00000007"))]),
        "3b 02 05 00 0000  000a c200 0000  3c 04 00000007  01 04 00000000",
    ),
    (
        "an unknown MH type (17) keeps its message data",
        UnknownMessage(17, h("0000 00000001 01020000")),
        "3b 01 11 00 0000  0000 00000001 01020000",
    ),
    (
        "Heartbeat Request (RFC 5847 5.1): flags 0, sequence, PadN 4 to 16",
        Heartbeat(0x01020304),
        "3b 01 0d 00 0000  0000 01020304  01 02 0000",
    ),
    (
        "Heartbeat Response with the Restart Counter (type 28, 4n+2) at 14",
        Heartbeat(0xFFFFFFFF, mh.HB_R, [RestartCounter(7)]),
        "3b 02 0d 00 0000  0001 ffffffff  01 00  1c 04 00000007  01 02 0000",
    ),
    (
        "unsolicited Heartbeat Response: U and R",
        Heartbeat(0, mh.HB_U | mh.HB_R, [RestartCounter(0x80000001)]),
        "3b 02 0d 00 0000  0003 00000000  01 00  1c 04 80000001  01 02 0000",
    ),
    (
        "Binding Revocation Indication (RFC 5846 6.1): type 16, B.R. Type 1, "
        "trigger 1, seq, P, MN-ID at 12, HNP (4n) at 20",
        RevocationIndication(RevocationTrigger.ADMINISTRATIVE_REASON, 7, mh.BR_P, [
            MobileNodeIdentifier(b"mn1@x"),
            HomeNetworkPrefix("2001:db8::1", 128)]),
        "3b 04 10 00 0000  01 01 0007 8000  08 06 01 6d6e314078  16 12 00 80 "
        "20010db8000000000000000000000001",
    ),
    (
        "Binding Revocation Acknowledgement (RFC 5846 6.2): B.R. Type 2, status, "
        "P and G",
        RevocationAcknowledgement(RevocationStatus.BINDING_DOES_NOT_EXIST, 0xFFFF,
                                  mh.BR_P | mh.BR_G),
        "3b 01 10 00 0000  02 80 ffff a000  01 02 0000",
    ),
]


# Well-formed headers laid out differently from what the encoder would
# produce; they must decode to the given message.
DECODE_ONLY = [
    (
        "four Pad1 instead of one PadN",
        "3b 01 05 00 0000  0001 c200 0064  00 00 00 00",
        BindingUpdate(1, PROXY, 0x0064),
    ),
    (
        "PadN with non-zero content is still padding",
        "3b 01 05 00 0000  0001 c200 0064  01 02 ffff",
        BindingUpdate(1, PROXY, 0x0064),
    ),
    (
        "options packed with no alignment padding and a run of Pad1 to the"
        " end (as OPMIP sends them): HNP at 17 instead of 8n+4",
        "3b 04 05 00 0000  0001 8200 000f  08 03 01 6162"
        "  16 12 00 40 20010db8 00010000 00000000 00000000  00 00 00",
        BindingUpdate(
            1, BU_A | BU_P, 0x000F,
            [MobileNodeIdentifier(b"ab"), HomeNetworkPrefix("2001:db8:1::", 64)],
        ),
    ),
    (
        "RFC 5844 reserved bits are ignored on receipt: Request, Reply,"
        " Default-Router and DHCP Support Mode with every reserved bit set",
        "3b 04 06 00 0000  00 20 000b 0096  24 06 63ff c6336407"
        "  25 06 00 63 c000020a  26 06 ffff c0000201  27 02 fffe",
        BindingAcknowledgement(
            0, BA_P, 11, 0x0096,
            [
                IPv4HomeAddressRequest("198.51.100.7", 24),
                IPv4HomeAddressReply(0, "192.0.2.10", 24),
                IPv4DefaultRouterAddress("192.0.2.1"),
                IPv4DhcpSupportMode(False),
            ],
        ),
    ),
    (
        "reserved octet and BU reserved flag bits are carried, not rejected",
        "3b 01 05 ff 0000  0001 c3ff 0064  01 02 0000",
        BindingUpdate(1, 0xC3FF, 0x0064),
    ),
]


# Headers that are not valid: (description, octets, text the DecodeError
# must contain, so each fails for the reason it was written for).
MALFORMED = [
    ("shorter than 8 octets", "3b 00 00 00 0000 00", "at least 8"),
    ("Header Len says 16, 8 given", "3b 01 00 00 0000 0000", "Header Len"),
    (
        "Header Len says 8, 16 given",
        "3b 00 05 00 0000 0001 c200 0064 01020000",
        "Header Len",
    ),
    ("Payload Proto is not 59", "06 00 00 00 0000 0000", "Payload Proto"),
    ("BU fixed part does not fit in 8 octets", "3b 00 05 00 0000 0001", "needs 12"),
    (
        "BE fixed part does not fit in 16 octets",
        "3b 01 07 00 0000 02 00" + "00" * 8,
        "needs 24",
    ),
    (
        "option length runs past the header",
        "3b 01 05 00 0000 0001 c200 0064 08 09 0000",
        "runs past",
    ),
    (
        "option header cut after the type",
        "3b 01 05 00 0000 0001 c200 0064 00 00 00 08",
        "truncated option header",
    ),
]


def malformed(kind, data, reason):
    """The L{MalformedOption} the decoder must give for these octets."""
    return MalformedOption(kind, h(data), reason)


# Known options whose data is not valid (CONTRACTS.md section 3): the message
# still decodes, and the option comes back as a MalformedOption with the
# exact reason. (description, octets, message).
MALFORMED_OPTIONS = [
    (
        "ACoA with 14 octets of data",
        "3b 03 05 00 0000 0003 c200 0000 01 02 0000 03 0e" + "00" * 14,
        BindingUpdate(3, PROXY, 0, [malformed(
            3, "00" * 14, "AlternateCareOfAddress option: length 14, expected 16")]),
    ),
    (
        "BRA with 1 octet of data, then five Pad1",
        "3b 01 00 00 0000 0000 02 01 00 00 00 00 00 00",
        BindingRefreshRequest([malformed(
            2, "00", "BindingRefreshAdvice option: length 1, expected 2")]),
    ),
    (
        "HNP with prefix length 129",
        f"3b 03 05 00 0000 0004 c200 0096 16 12 00 81 {ZERO_HEX}",
        BindingUpdate(4, PROXY, 0x0096, [malformed(
            22, "00 81" + ZERO_HEX, "HomeNetworkPrefix option: prefix length 129")]),
    ),
    (
        "HNP with 17 octets (the prefix cut short)",
        "3b 03 05 00 0000 0004 c200 0096 16 11 00 40" + "00" * 15 + "00",
        BindingUpdate(4, PROXY, 0x0096, [malformed(
            22, "00 40" + "00" * 15, "HomeNetworkPrefix option: length 17, expected 18")]),
    ),
    (
        "MN-ID without an identifier (subtype only)",
        "3b 01 05 00 0000 0001 c200 0064 08 01 01 00",
        BindingUpdate(1, PROXY, 0x0064, [malformed(
            8, "01", "MobileNodeIdentifier option: length 1, expected at least 2")]),
    ),
    (
        "link-layer identifier with no octets",
        "3b 01 05 00 0000 0001 c200 0064 19 02 0000",
        BindingUpdate(1, PROXY, 0x0064, [malformed(
            25, "0000",
            "MobileNodeLinkLayerIdentifier option: length 2, expected at least 3")]),
    ),
    (
        "authentication option without a full SPI",
        "3b 01 05 00 0000 0001 c200 0064 09 02 01 00",
        BindingUpdate(1, PROXY, 0x0064, [malformed(
            9, "0100",
            "MobilityMessageAuthentication option: length 2, expected at least 5")]),
    ),
    (
        "Handoff Indicator with 3 octets",
        "3b 02 05 00 0000 0001 c200 0064 17 03 000000 01 05 0000000000",
        BindingUpdate(1, PROXY, 0x0064, [malformed(
            23, "000000", "HandoffIndicator option: length 3, expected 2")]),
    ),
    (
        "Timestamp with 4 octets",
        "3b 02 05 00 0000 0001 c200 0064 1b 04 00000000 01 04 00000000",
        BindingUpdate(1, PROXY, 0x0064, [malformed(
            27, "00000000", "Timestamp option: length 4, expected 8")]),
    ),
    (
        "IPv4 Home Address Request truncated to 5 octets",
        "3b 02 05 00 0000 0001 8200 0064 24 05 0000 0a0000 01 03 000000",
        BindingUpdate(1, BU_A | BU_P, 0x0064, [malformed(
            36, "0000 0a0000", "IPv4HomeAddressRequest option: length 5, expected 6")]),
    ),
    (
        "IPv4 Home Address Request oversized to 7 octets",
        "3b 02 05 00 0000 0001 8200 0064 24 07 0000 0a000001 ff 01 01 00",
        BindingUpdate(1, BU_A | BU_P, 0x0064, [malformed(
            36, "0000 0a000001 ff", "IPv4HomeAddressRequest option: length 7, expected 6")]),
    ),
    (
        "IPv4 Home Address Request with Prefix-len 33",
        "3b 02 05 00 0000 0001 8200 0064 24 06 8400 0a000001 01 02 0000",
        BindingUpdate(1, BU_A | BU_P, 0x0064, [malformed(
            36, "8400 0a000001", "IPv4HomeAddressRequest option: prefix length 33")]),
    ),
    (
        "IPv4 Home Address Reply with Pref-len 63",
        "3b 02 06 00 0000 00 20 0001 0064 25 06 00 fc c000020a 01 02 0000",
        BindingAcknowledgement(0, BA_P, 1, 0x0064, [malformed(
            37, "00 fc c000020a", "IPv4HomeAddressReply option: prefix length 63")]),
    ),
    (
        "IPv4 Home Address Reply truncated to 4 octets",
        "3b 02 06 00 0000 00 20 0001 0064 25 04 00 60 c000 01 04 00000000",
        BindingAcknowledgement(0, BA_P, 1, 0x0064, [malformed(
            37, "00 60 c000", "IPv4HomeAddressReply option: length 4, expected 6")]),
    ),
    (
        "IPv4 Default-Router Address without its reserved field",
        "3b 02 06 00 0000 00 20 0001 0064 26 04 c0000201 01 04 00000000",
        BindingAcknowledgement(0, BA_P, 1, 0x0064, [malformed(
            38, "c0000201", "IPv4DefaultRouterAddress option: length 4, expected 6")]),
    ),
    (
        "IPv4 DHCP Support Mode with 1 octet",
        "3b 01 06 00 0000 00 20 0001 0064 27 01 01 00",
        BindingAcknowledgement(0, BA_P, 1, 0x0064, [malformed(
            39, "01", "IPv4DhcpSupportMode option: length 1, expected 2")]),
    ),
    (
        "IPv4 DHCP Support Mode with 3 octets",
        "3b 02 06 00 0000 00 20 0001 0064 27 03 000001 01 05 0000000000",
        BindingAcknowledgement(0, BA_P, 1, 0x0064, [malformed(
            39, "000001", "IPv4DhcpSupportMode option: length 3, expected 2")]),
    ),
    (
        "a malformed option keeps its place among valid ones",
        f"3b 09 05 00 0000 0002 c200 0096 16 12 00 80 {A1_HEX}"
        f" 03 0f {A2_HEX[:-2]} 00"
        " 08 10 01 6d6e3140 6578616d 706c652e 6e6574 01 0a" + "00" * 10,
        BindingUpdate(2, PROXY, 0x0096, [
            HomeNetworkPrefix(A1),
            malformed(3, A2_HEX[:-2], "AlternateCareOfAddress option: length 15, expected 16"),
            MobileNodeIdentifier(b"mn1@example.net"),
        ]),
    ),
]


def referenceChecksum(source, destination, header):
    """
    The RFC 8200 8.1 upper-layer checksum written out plainly, to check
    L{netlmm.wire.checksum} against: 16-bit ones-complement sum of the
    pseudo-header (source, destination, 32-bit length, 3 zero octets, next
    header 135) and the header.
    """
    pseudo = (
        IPv6Address(source).packed
        + IPv6Address(destination).packed
        + struct.pack("!I", len(header))
        + b"\x00\x00\x00\x87"
    )
    data = pseudo + header
    if len(data) % 2:
        data += b"\x00"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return (~total) & 0xFFFF


def padding(count):
    """RFC 6275 6.2.1: one Pad1 for one octet, else PadN with count - 2 zeros."""
    if count == 0:
        return b""
    if count == 1:
        return b"\x00"
    return bytes((1, count - 2)) + bytes(count - 2)


def withChecksum(header, checksum):
    return header[:4] + struct.pack("!H", checksum) + header[6:]


def walkOptions(header, start):
    """
    (offset, type, length) of every option, padding included, read straight
    from the octets (a second, deliberately simple reader).
    """
    out = []
    pos = start
    while pos < len(header):
        if header[pos] == 0:
            out.append((pos, 0, 0))
            pos += 1
            continue
        out.append((pos, header[pos], header[pos + 1]))
        pos += 2 + header[pos + 1]
    return out


class KnownValuesTests(SynchronousTestCase):
    """Hand-written octets, checked in both directions."""

    def test_encode(self):
        """Each message encodes to exactly the octets written out for it."""
        for description, message, octets in KNOWN:
            self.assertEqual(
                encodeMessage(message).hex(), h(octets).hex(), description
            )

    def test_decode(self):
        """Each set of octets decodes to exactly the message."""
        for description, message, octets in KNOWN:
            self.assertEqual(decodeMessage(h(octets)), message, description)

    def test_lengthIsMultipleOfEight(self):
        """Header Len is the length in 8-octet units, less the first 8."""
        for description, message, octets in KNOWN:
            data = h(octets)
            self.assertEqual(len(data) % 8, 0, description)
            self.assertEqual(data[1], len(data) // 8 - 1, description)

    def test_alignment(self):
        """
        Every option in the table sits at its xn+y (read from the octets,
        not from the encoder's own bookkeeping).
        """
        for description, message, octets in KNOWN:
            data = h(octets)
            if type(message) is UnknownMessage:
                continue
            known = iter(message.options)
            for offset, kind, length in walkOptions(data, 6 + message.FIXED):
                if kind in (0, 1):
                    continue
                option = next(known)
                self.assertEqual(option.TYPE, kind, description)
                x, y = option.ALIGN
                self.assertEqual(offset % x, y % x, f"{description}: type {kind}")

    def test_decodeOnly(self):
        """Other valid layouts of padding decode to the same message."""
        for description, octets, message in DECODE_ONLY:
            self.assertEqual(decodeMessage(h(octets)), message, description)

    def test_malformed(self):
        """Invalid headers raise DecodeError with a reason."""
        for description, octets, reason in MALFORMED:
            with self.assertRaises(DecodeError, msg=description) as caught:
                decodeMessage(h(octets))
            self.assertIn(reason, str(caught.exception), description)

    def test_malformedOptions(self):
        """
        A known option whose data is invalid decodes to a MalformedOption
        with the exact reason, in its place among the other options; the
        message itself decodes. Re-encoded, its octets come back unchanged.
        """
        for description, octets, message in MALFORMED_OPTIONS:
            decoded = decodeMessage(h(octets))
            self.assertEqual(decoded, message, description)
            bad = decoded.malformed()
            self.assertEqual(len(bad), 1, description)
            self.assertIs(decoded.malformed(bad[0].kind)[0], bad[0], description)
            self.assertEqual(decoded.option(bad[0].kind), None, description)
            again = encodeMessage(decoded)
            self.assertIn(bytes((bad[0].type, len(bad[0].data))) + bad[0].data, again,
                          description)
            self.assertEqual(decodeMessage(again), message, description)

    def test_malformedOfAnotherKind(self):
        """C{malformed(cls)} only names options that should have been C{cls}."""
        message = decodeMessage(h(MALFORMED_OPTIONS[0][1]))
        self.assertEqual(message.malformed(HomeNetworkPrefix), ())
        self.assertEqual(len(message.malformed(AlternateCareOfAddress)), 1)
        self.assertEqual(BindingUpdate(1).malformed(), ())

    def test_flagMasks(self):
        """The flag masks sit where RFC 6275 6.1.7/6.1.8 and RFC 5213 put them."""
        self.assertEqual(
            [BU_A, BU_H, BU_L, BU_K, BU_M, BU_R, BU_P],
            [1 << (15 - i) for i in range(7)],
        )
        self.assertEqual([BA_K, BA_R, BA_P], [0x80, 0x40, 0x20])

    def test_typeNumbers(self):
        """MH and option type numbers match the IANA registry."""
        self.assertEqual(
            [BindingRefreshRequest.MH_TYPE, BindingUpdate.MH_TYPE,
             BindingAcknowledgement.MH_TYPE, BindingError.MH_TYPE, Heartbeat.MH_TYPE,
             RevocationIndication.MH_TYPE, RevocationAcknowledgement.MH_TYPE],
            [0, 5, 6, 7, 13, 16, 16],
        )
        self.assertEqual([RevocationIndication.BR_TYPE, RevocationAcknowledgement.BR_TYPE],
                         [1, 2])
        self.assertEqual([mh.BR_P, mh.BR_V, mh.BR_G], [0x8000, 0x4000, 0x2000])
        self.assertEqual(
            {cls.__name__: number for number, cls in mh.OPTION_TYPES.items()},
            {
                "BindingRefreshAdvice": 2,
                "AlternateCareOfAddress": 3,
                "BindingAuthorizationData": 5,
                "MobileNodeIdentifier": 8,
                "MobilityMessageAuthentication": 9,
                "MobilityMessageReplayProtection": 10,
                "HomeNetworkPrefix": 22,
                "HandoffIndicator": 23,
                "AccessTechnologyType": 24,
                "MobileNodeLinkLayerIdentifier": 25,
                "LinkLocalAddress": 26,
                "Timestamp": 27,
                "IPv4HomeAddressRequest": 36,
                "IPv4HomeAddressReply": 37,
                "IPv4DefaultRouterAddress": 38,
                "IPv4DhcpSupportMode": 39,
                "RestartCounter": 28,
            },
        )

    def test_statusNumbers(self):
        """
        RFC 5213 and RFC 5844 status values as IANA lists them (and
        Wireshark's dissector names them); the IPv4 Home Address Reply's
        own status values of RFC 5844 3.3.2.
        """
        self.assertEqual(
            {name: getattr(Status, name) for name in (
                "PROXY_REG_NOT_ENABLED", "MISSING_ACCESS_TECH_TYPE_OPTION",
                "NOT_AUTHORIZED_FOR_IPV4_MOBILITY_SERVICE",
                "NOT_AUTHORIZED_FOR_IPV4_HOME_ADDRESS",
                "NOT_AUTHORIZED_FOR_IPV6_MOBILITY_SERVICE",
                "MULTIPLE_IPV4_HOME_ADDRESS_ASSIGNMENT_NOT_SUPPORTED")},
            {"PROXY_REG_NOT_ENABLED": 152, "MISSING_ACCESS_TECH_TYPE_OPTION": 162,
             "NOT_AUTHORIZED_FOR_IPV4_MOBILITY_SERVICE": 170,
             "NOT_AUTHORIZED_FOR_IPV4_HOME_ADDRESS": 171,
             "NOT_AUTHORIZED_FOR_IPV6_MOBILITY_SERVICE": 172,
             "MULTIPLE_IPV4_HOME_ADDRESS_ASSIGNMENT_NOT_SUPPORTED": 173},
        )
        r = IPv4HomeAddressReply
        self.assertEqual(
            [r.SUCCESS, r.UNSPECIFIED, r.ADMINISTRATIVELY_PROHIBITED,
             r.INCORRECT_IPV4_HOME_ADDRESS, r.INVALID_IPV4_ADDRESS,
             r.DYNAMIC_IPV4_HOME_ADDRESS_ASSIGNMENT_NOT_AVAILABLE],
            [0, 128, 129, 130, 131, 132],
        )
        self.assertTrue(r(0).accepted)
        self.assertFalse(r(128).accepted)
        self.assertTrue(IPv4HomeAddressRequest().unspecified)
        self.assertFalse(IPv4HomeAddressRequest("10.0.0.1", 32).unspecified)

    def test_helpers(self):
        """Lifetimes are 4-second units; status below 128 is acceptance."""
        self.assertEqual(BindingUpdate(1, lifetime=0xFFFF).lifetimeSeconds, 262140)
        self.assertTrue(BindingUpdate(1).proxy)
        self.assertFalse(BindingUpdate(1, flags=BU_A | BU_H).proxy)
        self.assertTrue(BindingAcknowledgement(1).accepted)
        self.assertFalse(BindingAcknowledgement(128).accepted)
        self.assertEqual(BindingAcknowledgement(0, lifetime=3).lifetimeSeconds, 12)
        self.assertTrue(HomeNetworkPrefix("::").unspecified)
        self.assertEqual(Status.name(153), "NOT_LMA_FOR_THIS_MN")
        self.assertEqual(Status.name(99), "99")
        self.assertEqual(Timestamp.fromSeconds(2.5).value, 0x28000)
        self.assertEqual(Timestamp(0x28000).seconds, 2.5)
        bu = BindingUpdate(1, options=[HomeNetworkPrefix(A1)])
        self.assertEqual(bu.option(HomeNetworkPrefix), HomeNetworkPrefix(A1))
        self.assertIsNone(bu.option(AlternateCareOfAddress))

    def test_equalityByType(self):
        """Options of different types with equal fields are not equal."""
        self.assertNotEqual(HandoffIndicator(1), AccessTechnologyType(1))
        self.assertNotEqual(
            hash(HandoffIndicator(1)), hash(AccessTechnologyType(1))
        )
        self.assertEqual(hash(HandoffIndicator(1)), hash(HandoffIndicator(1)))


class ChecksumTests(SynchronousTestCase):
    """The checksum over the IPv6 pseudo-header (RFC 6275 6.1.1)."""

    source = MAG
    destination = LMA

    def test_knownValue(self):
        """
        The PBU of the table sent from 2001:db8::a to 2001:db8::b has the
        checksum worked out by the plain reference sum (0x8bb1; the same
        value scapy computes, see L{ScapyTests}).
        """
        message, octets = KNOWN[2][1], h(KNOWN[2][2])
        self.assertEqual(referenceChecksum(self.source, self.destination, octets), 0x8BB1)
        data = encodeMessage(message, self.source, self.destination)
        self.assertEqual(data, withChecksum(octets, 0x8BB1))

    def test_everyKnownValue(self):
        """The encoder's checksum matches the reference for every vector."""
        for description, message, octets in KNOWN:
            expected = referenceChecksum(self.source, self.destination, h(octets))
            data = encodeMessage(message, IPv6Address(self.source), self.destination)
            self.assertEqual(data, withChecksum(h(octets), expected), description)
            self.assertTrue(checksumValid(data, self.source, self.destination))
            self.assertEqual(
                decodeMessage(data, self.source, self.destination), message, description
            )

    def test_packedAddresses(self):
        """Source and destination may be given as 16 packed octets."""
        data = encodeMessage(BindingRefreshRequest(), self.source, self.destination)
        self.assertEqual(
            data,
            encodeMessage(
                BindingRefreshRequest(),
                IPv6Address(self.source).packed,
                IPv6Address(self.destination).packed,
            ),
        )

    def test_noAddressesNoChecksum(self):
        """Without addresses the field is left zero for the kernel."""
        data = encodeMessage(BindingRefreshRequest())
        self.assertEqual(data[4:6], b"\x00\x00")

    def test_flippedBit(self):
        """Any single flipped bit is caught by the checksum."""
        data = encodeMessage(KNOWN[2][1], self.source, self.destination)
        for bit in range(len(data) * 8):
            octets = bytearray(data)
            octets[bit // 8] ^= 0x80 >> (bit % 8)
            with self.assertRaises(DecodeError, msg=f"bit {bit}"):
                decodeMessage(bytes(octets), self.source, self.destination)

    def test_wrongAddresses(self):
        """The pseudo-header binds the header to the packet's addresses."""
        data = encodeMessage(KNOWN[2][1], self.source, self.destination)
        with self.assertRaises(DecodeError) as caught:
            decodeMessage(data, self.destination, self.source + "1")
        self.assertIn("checksum", str(caught.exception))
        self.assertFalse(checksumValid(data, self.source, A1))

    def test_notCheckedWithoutAddresses(self):
        """Without addresses (raw socket already checked it) it is not verified."""
        data = withChecksum(h(KNOWN[0][2]), 0x1234)
        self.assertEqual(decodeMessage(data), BindingRefreshRequest())


def _prefixes(data):
    return [data[:i] for i in range(len(data))]


class TruncationTests(SynchronousTestCase):
    """Every cut of a valid message fails with DecodeError and nothing else."""

    def test_everyPrefix(self):
        """Every proper prefix of every vector raises DecodeError."""
        for description, message, octets in KNOWN:
            data = encodeMessage(message, MAG, LMA)
            for prefix in _prefixes(data):
                for addresses in ((), (MAG, LMA)):
                    with self.assertRaises(
                        DecodeError, msg=f"{description}: {len(prefix)} octets"
                    ):
                        decodeMessage(prefix, *addresses)

    def test_everyPrefixWithConsistentHeaderLen(self):
        """
        Cut on an 8-octet boundary with Header Len rewritten to match, so the
        inner parser sees the cut. The outcome is exactly what the layout
        read straight from the octets predicts: a cut inside the fixed part
        or through an option raises DecodeError naming it; a cut between
        options gives the message with the options before the cut.
        """
        for description, message, octets in KNOWN:
            data = h(octets)
            for end in range(8, len(data), 8):
                cut = data[:1] + bytes((end // 8 - 1,)) + data[2:end]
                what = f"{description}: cut at {end}"
                expected = cutOutcome(message, data, end)
                if isinstance(expected, str):
                    with self.assertRaises(DecodeError, msg=what) as caught:
                        decodeMessage(cut)
                    self.assertIn(expected, str(caught.exception), what)
                else:
                    self.assertEqual(decodeMessage(cut), expected, what)

    def test_cutOutcomesCovered(self):
        """The cuts above reach every kind of outcome (the test proves something)."""
        seen = set()
        for description, message, octets in KNOWN:
            data = h(octets)
            for end in range(8, len(data), 8):
                outcome = cutOutcome(message, data, end)
                seen.add(outcome if isinstance(outcome, str) else "message")
        self.assertEqual(seen, {"message", "runs past the header", "needs 12", "needs 24"})


def cutOutcome(message, data, end):
    """
    What decoding C{data} cut to C{end} octets must give: the text of the
    DecodeError, or the message with the options that lie before the cut.
    """
    if type(message) is UnknownMessage:
        return UnknownMessage(message.mhType, data[6:end])
    if end < 6 + message.FIXED:
        return f"needs {6 + message.FIXED}"
    kept = 0
    for offset, kind, length in walkOptions(data, 6 + message.FIXED):
        if offset >= end:
            break
        if kind == 0:
            continue
        if offset + 2 > end:
            return "truncated option header"
        if offset + 2 + length > end:
            return "runs past the header"
        if kind != 1:
            kept += 1
    return message._replace(options=message.options[:kept])


def referenceOutcome(data, addresses=()):
    """
    What L{decodeMessage} must make of C{data}, worked out with a second,
    plain reader of RFC 6275 6.1: the text of the DecodeError, or
    (message class, MH type, the option types in order, padding left out).
    """
    if len(data) < 8:
        return "at least 8"
    if (data[1] + 1) * 8 != len(data):
        return "Header Len"
    if data[0] != 59:
        return "Payload Proto"
    if addresses and referenceChecksum(*addresses, data) != 0:
        return "checksum is wrong"
    cls = mh.MESSAGE_TYPES.get(data[2])
    if cls is None:
        return (UnknownMessage, data[2], ())
    if 6 + cls.FIXED > len(data):
        return f"needs {6 + cls.FIXED}"
    kinds = []
    pos = 6 + cls.FIXED
    while pos < len(data):
        if data[pos] == 0:
            pos += 1
            continue
        if pos + 2 > len(data):
            return "truncated option header"
        if pos + 2 + data[pos + 1] > len(data):
            return "runs past the header"
        if data[pos] != 1:
            kinds.append(data[pos])
        pos += 2 + data[pos + 1]
    return (cls, data[2], tuple(kinds))


# ---------------------------------------------------------------- generated

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
u64 = st.integers(0, (1 << 64) - 1)
addresses = st.binary(min_size=16, max_size=16).map(IPv6Address)
addresses4 = st.binary(min_size=4, max_size=4).map(IPv4Address)

options = st.one_of(
    st.builds(BindingRefreshAdvice, u16),
    st.builds(AlternateCareOfAddress, addresses),
    st.builds(BindingAuthorizationData, st.binary(max_size=40)),
    st.builds(MobileNodeIdentifier, st.binary(min_size=1, max_size=40), u8),
    st.builds(MobilityMessageReplayProtection, u64),
    st.builds(HomeNetworkPrefix, addresses, st.integers(0, 128)),
    st.builds(HandoffIndicator, u8),
    st.builds(AccessTechnologyType, u8),
    st.builds(MobileNodeLinkLayerIdentifier, st.binary(min_size=1, max_size=20)),
    st.builds(LinkLocalAddress, addresses),
    st.builds(Timestamp, u64),
    st.builds(IPv4HomeAddressRequest, addresses4, st.integers(0, 32)),
    st.builds(IPv4HomeAddressReply, u8, addresses4, st.integers(0, 32)),
    st.builds(IPv4DefaultRouterAddress, addresses4),
    st.builds(IPv4DhcpSupportMode, st.booleans()),
    st.builds(RestartCounter, u32),
    st.builds(
        MalformedOption,
        st.just(HomeNetworkPrefix.TYPE),
        st.binary(max_size=17),
        st.just("HomeNetworkPrefix option: too short"),
    ).map(lambda o: o._replace(
        reason=f"HomeNetworkPrefix option: length {len(o.data)}, expected 18")),
    st.builds(
        UnknownOption,
        st.integers(2, 255).filter(lambda t: t not in mh.OPTION_TYPES),
        st.binary(max_size=30),
    ),
)

# The authentication option ends the header on an 8-octet boundary with no
# padding after it, which needs an authenticator of 4k octets.
authentication = st.builds(
    MobilityMessageAuthentication,
    u8,
    u32,
    st.integers(0, 12).flatmap(lambda k: st.binary(min_size=4 * k, max_size=4 * k)),
)


@st.composite
def optionLists(draw):
    found = draw(st.lists(options, max_size=8))
    last = draw(st.none() | authentication)
    return found + ([] if last is None else [last])


bindingUpdates = st.builds(BindingUpdate, u16, u16, u16, optionLists())
bindingAcks = st.builds(BindingAcknowledgement, u8, u8, u16, u16, optionLists())
messages = st.one_of(
    bindingUpdates,
    bindingAcks,
    st.builds(BindingError, u8, addresses, optionLists()),
    st.builds(BindingRefreshRequest, optionLists()),
    st.builds(Heartbeat, u32, st.sampled_from([0, mh.HB_R, mh.HB_U | mh.HB_R]),
              optionLists()),
    *(st.builds(kind, u8, u16, st.sampled_from(
        [0, mh.BR_P, mh.BR_P | mh.BR_G, mh.BR_P | mh.BR_V | mh.BR_G]), optionLists())
      for kind in (RevocationIndication, RevocationAcknowledgement)),
)


@st.composite
def framedHeaders(draw):
    """Random message data behind a header whose Header Len is right."""
    units = draw(st.integers(1, 24))
    mhType = draw(st.sampled_from([0, 5, 6, 7, 13]) | u8)
    body = draw(st.binary(min_size=8 * units - 6, max_size=8 * units - 6))
    return bytes((59, units - 1, mhType, 0)) + body


class GeneratedTests(SynchronousTestCase):
    """Property tests over generated messages and octets."""

    def assertWellFormed(self, message, data):
        """Length, Header Len, alignment and the last-option rule."""
        self.assertEqual(len(data) % 8, 0)
        self.assertEqual(data[1], len(data) // 8 - 1)
        layout = [
            entry for entry in walkOptions(data, 6 + message.FIXED)
            if entry[1] not in (0, 1)
        ]
        self.assertEqual(len(layout), len(message.options))
        for (offset, kind, length), option in zip(layout, message.options):
            self.assertEqual(kind, option.TYPE)
            self.assertEqual(length, len(option.body()))
            x, y = option.ALIGN
            self.assertEqual(offset % x, y % x)
        if message.options and message.options[-1].LAST:
            offset, kind, length = layout[-1]
            self.assertEqual(offset + 2 + length, len(data))

    @EXAMPLES
    @given(bindingUpdates)
    def test_bindingUpdateRoundTrip(self, message):
        """A generated BU survives encode then decode, with and without checksum."""
        data = encodeMessage(message)
        self.assertEqual(decodeMessage(data), message)
        self.assertWellFormed(message, data)
        signed = encodeMessage(message, MAG, LMA)
        self.assertEqual(decodeMessage(signed, MAG, LMA), message)
        self.assertEqual(
            referenceChecksum(MAG, LMA, data), struct.unpack("!H", signed[4:6])[0]
        )

    @EXAMPLES
    @given(bindingAcks)
    def test_bindingAcknowledgementRoundTrip(self, message):
        """A generated BA survives encode then decode."""
        data = encodeMessage(message, LMA, MAG)
        self.assertEqual(decodeMessage(data, LMA, MAG), message)
        self.assertWellFormed(message, data)

    @EXAMPLES
    @given(messages)
    def test_anyMessageRoundTrip(self, message):
        """BE and BRR with random options too."""
        data = encodeMessage(message)
        self.assertEqual(decodeMessage(data), message)
        self.assertWellFormed(message, data)

    def assertOutcome(self, data, addresses=()):
        """
        C{data} decodes exactly as L{referenceOutcome} says: the same
        DecodeError, or a message of that type whose options have those
        types, each the option class, an UnknownOption (unknown type) or a
        MalformedOption (known type, invalid data: its reason says why).
        Returns the message, or None.
        """
        expected = referenceOutcome(data, addresses)
        if isinstance(expected, str):
            with self.assertRaises(DecodeError) as caught:
                decodeMessage(data, *addresses)
            self.assertIn(expected, str(caught.exception))
            return None
        message = decodeMessage(data, *addresses)
        cls, mhType, kinds = expected
        self.assertIs(type(message), cls)
        self.assertEqual(message.MH_TYPE, mhType)
        self.assertEqual(tuple(o.TYPE for o in message.options), kinds)
        for o in message.options:
            known = mh.OPTION_TYPES.get(o.TYPE)
            if known is None:
                self.assertIs(type(o), UnknownOption)
            elif type(o) is MalformedOption:
                with self.assertRaises(DecodeError) as caught:
                    known.fromBody(o.data)
                self.assertEqual(o.reason, str(caught.exception))
            else:
                self.assertIs(type(o), known)
        return message

    @EXAMPLES
    @given(st.binary(max_size=300))
    def test_randomOctets(self, data):
        """Random octets give exactly the outcome the reference reader predicts."""
        self.assertOutcome(data)
        self.assertOutcome(data, (MAG, LMA))

    @EXAMPLES
    @given(framedHeaders())
    def test_randomMessageData(self, data):
        """
        Random message data behind a valid header reaches the option parser:
        the outcome is exactly the reference reader's. A message that decodes
        and can be encoded again decodes to itself.
        """
        message = self.assertOutcome(data)
        if message is None:
            return
        try:
            again = encodeMessage(message)
        except EncodeError:
            # e.g. an authentication option that is not last, received as is
            return
        self.assertEqual(decodeMessage(again), message)

    @EXAMPLES
    @given(st.sampled_from(sorted(mh.OPTION_TYPES)), st.binary(max_size=40))
    def test_knownOptionAnyData(self, kind, body):
        """
        Any data under a known option type decodes to that option or to a
        MalformedOption that re-encodes byte for byte; never an error.
        """
        data = bytes.fromhex("0001 c200 0000") + bytes((kind, len(body))) + body
        data += padding((-len(data) - 6) % 8)
        data = bytes((59, (len(data) + 6) // 8 - 1, 5, 0, 0, 0)) + data
        (option,) = decodeMessage(data).options
        if type(option) is MalformedOption:
            self.assertEqual((option.type, option.data), (kind, body))
            self.assertEqual(encodeMessage(decodeMessage(data)), data)
        else:
            self.assertIs(type(option), mh.OPTION_TYPES[kind])

    @EXAMPLES
    @given(st.integers(2, 255).filter(lambda t: t not in mh.OPTION_TYPES),
           st.binary(max_size=255))
    def test_unknownOptionByteForByte(self, kind, body):
        """
        Octets with an unknown option decode to UnknownOption and encode
        back to the same octets.
        """
        data = bytes.fromhex("0001 c200 0000") + bytes((kind, len(body))) + body
        data += padding((-len(data) - 6) % 8)
        data = bytes((59, (len(data) + 6) // 8 - 1, 5, 0, 0, 0)) + data
        message = decodeMessage(data)
        self.assertEqual(message.options, (UnknownOption(kind, body),))
        self.assertEqual(encodeMessage(message), data)

    @EXAMPLES
    @given(st.integers(0, 255).filter(lambda t: t not in mh.MESSAGE_TYPES),
           st.integers(1, 40).flatmap(lambda n: st.binary(min_size=8 * n - 6,
                                                          max_size=8 * n - 6)))
    def test_unknownMessageByteForByte(self, kind, body):
        """An unknown MH type decodes to UnknownMessage and re-encodes exactly."""
        data = bytes((59, (len(body) + 6) // 8 - 1, kind, 0, 0, 0)) + body
        message = decodeMessage(data)
        self.assertEqual(message, UnknownMessage(kind, body))
        self.assertEqual(encodeMessage(message), data)
        self.assertEqual(message.options, ())


class HeartbeatTests(SynchronousTestCase):
    """RFC 5847 Heartbeat messages: flags, reserved bits, lenient options."""

    def test_flags(self):
        """R marks a Response, U an unsolicited one; a Request has neither."""
        request = Heartbeat(5)
        self.assertEqual((request.response, request.unsolicited), (False, False))
        response = Heartbeat(5, mh.HB_R)
        self.assertEqual((response.response, response.unsolicited), (True, False))
        unsolicited = Heartbeat(5, mh.HB_U | mh.HB_R)
        self.assertEqual((unsolicited.response, unsolicited.unsolicited), (True, True))

    def test_reservedBitsIgnored(self):
        """Reserved bits set by a peer are ignored (RFC 5847 5.1), not kept."""
        data = h("3b 01 0d 00 0000  fffd 0000002a  01 02 0000")
        self.assertEqual(decodeMessage(data), Heartbeat(42, mh.HB_R))

    def test_malformedRestartCounter(self):
        """
        A Restart Counter of the wrong length does not make the Heartbeat
        undecodable: it decodes to a MalformedOption saying why.
        """
        data = h("3b 01 0d 00 0000  0001 00000009  1c 02 0007")
        message = decodeMessage(data)
        self.assertEqual(message.sequence, 9)
        self.assertIsNone(message.option(RestartCounter))
        self.assertEqual(message.malformed(RestartCounter), (MalformedOption(
            28, h("0007"), "RestartCounter option: length 2, expected 4"),))

    def test_truncated(self):
        """A Heartbeat without its whole fixed part is a DecodeError."""
        with self.assertRaises(DecodeError) as caught:
            decodeMessage(h("3b 00 0d 00 0000  0001"))
        self.assertEqual(str(caught.exception), "Heartbeat needs 12 octets, header is 8")


class RevocationTests(SynchronousTestCase):
    """RFC 5846 Binding Revocation messages: two kinds in one MH type."""

    def test_flags(self):
        """P, V and G read as the properties say."""
        bri = RevocationIndication(1, 1, mh.BR_P | mh.BR_V | mh.BR_G)
        self.assertEqual((bri.proxy, bri.ipv4Only, bri.globalRevocation), (True, True, True))
        bra = RevocationAcknowledgement(0, 1, 0)
        self.assertEqual((bra.proxy, bra.ipv4Only, bra.globalRevocation),
                         (False, False, False))

    def test_accepted(self):
        """A BRA status below 128 is a success (RFC 5846 6.2)."""
        self.assertTrue(RevocationAcknowledgement(RevocationStatus.PARTIAL_SUCCESS, 1).accepted)
        self.assertFalse(RevocationAcknowledgement(
            RevocationStatus.BINDING_DOES_NOT_EXIST, 1).accepted)

    def test_reservedBitsIgnored(self):
        """Reserved bits set by a peer are ignored, not kept."""
        message = decodeMessage(h("3b 01 10 00 0000  01 05 0009 9fff  01 02 0000"))
        self.assertEqual(message, RevocationIndication(
            RevocationTrigger.USER_INITIATED_SESSION_TERMINATION, 9, mh.BR_P))

    def test_unknownType(self):
        """A B.R. Type other than 1 and 2 is a DecodeError naming it."""
        for kind in (0, 3, 255):
            with self.assertRaises(DecodeError) as caught:
                decodeMessage(h("3b 01 10 00 0000") + bytes((kind,)) + h("00 0001 8000 01020000"))
            self.assertEqual(str(caught.exception), f"Binding Revocation type {kind}: only 1 "
                             "(Indication) and 2 (Acknowledgement) exist")

    def test_truncated(self):
        """A Binding Revocation without its whole fixed part is a DecodeError."""
        with self.assertRaises(DecodeError) as caught:
            decodeMessage(h("3b 00 10 00 0000  0100"))
        self.assertEqual(str(caught.exception),
                         "BindingRevocation needs 12 octets, header is 8")

    def test_refused(self):
        """Out-of-range fields and flags that do not exist are EncodeErrors."""
        for cls in (RevocationIndication, RevocationAcknowledgement):
            for args in ((256, 1), (-1, 1), (1, 1 << 16), (1, 1, 0x1000), (1, 1, 0, ["x"])):
                self.assertRaises(EncodeError, cls, *args)

    def test_names(self):
        """Trigger and status values have their registry names."""
        self.assertEqual((RevocationTrigger.name(1), RevocationTrigger.name(128),
                          RevocationStatus.name(134), RevocationStatus.name(99)),
                         ("ADMINISTRATIVE_REASON", "PER_PEER_POLICY",
                          "REVOCATION_FUNCTION_NOT_SUPPORTED", "99"))


class UnknownTests(SynchronousTestCase):
    """What netlmm does not understand is kept, not dropped or mangled."""

    def test_unknownOptionAmongKnown(self):
        """An unknown option keeps its place among known ones."""
        message = BindingUpdate(
            7, PROXY, 1,
            [HomeNetworkPrefix(A1), UnknownOption(200, b"\x01\x02\x03"),
             AlternateCareOfAddress(A2)],
        )
        data = encodeMessage(message)
        self.assertEqual(decodeMessage(data), message)
        self.assertEqual(encodeMessage(decodeMessage(data)), data)
        self.assertEqual(UnknownOption(200, b"").TYPE, 200)

    def test_unknownOptionEmpty(self):
        """An unknown option may carry no data."""
        message = BindingRefreshRequest([UnknownOption(99, b"")])
        self.assertEqual(encodeMessage(message), h("3b 01 00 00 0000 0000 63 00 01 04 00000000"))
        self.assertEqual(decodeMessage(encodeMessage(message)), message)

    def test_unknownMessageTypes(self):
        """Every MH type netlmm does not process decodes to UnknownMessage."""
        for kind in set(range(256)) - set(mh.MESSAGE_TYPES):
            data = bytes((59, 0, kind, 0, 0, 0, 0xAB, 0xCD))
            message = decodeMessage(data)
            self.assertEqual(message, UnknownMessage(kind, b"\xab\xcd"))
            self.assertEqual(message.MH_TYPE, kind)
            self.assertEqual(encodeMessage(message), data)


class ConstructorTests(SynchronousTestCase):
    """Out-of-range values are refused when a value is built."""

    def assertRefused(self, build, *args, **kwargs):
        with self.assertRaises(EncodeError, msg=f"{build.__name__}{args}{kwargs}") as caught:
            build(*args, **kwargs)
        self.assertTrue(str(caught.exception))
        return caught.exception

    def test_messages(self):
        for bad in (-1, 0x10000, True, 1.0, "1", None):
            self.assertRefused(BindingUpdate, bad)
            self.assertRefused(BindingUpdate, 1, bad)
            self.assertRefused(BindingUpdate, 1, 0, bad)
            self.assertRefused(BindingAcknowledgement, 0, 0, bad)
            self.assertRefused(BindingAcknowledgement, 0, 0, 0, bad)
        for bad in (-1, 0x100, True):
            self.assertRefused(BindingAcknowledgement, bad)
            self.assertRefused(BindingAcknowledgement, 0, bad)
            self.assertRefused(BindingError, bad)
        self.assertRefused(BindingError, 1, "not an address")
        self.assertRefused(BindingError, 1, "10.0.0.1")
        self.assertRefused(BindingUpdate, 1, options=[b"\x02\x02\x00\x01"])
        self.assertRefused(BindingRefreshRequest, [HandoffIndicator(1), "x"])
        self.assertRefused(Heartbeat, 1 << 32)
        self.assertRefused(Heartbeat, -1)
        self.assertRefused(Heartbeat, 1, 0x0004)
        self.assertRefused(Heartbeat, 1, 0, ["x"])
        self.assertRefused(UnknownMessage, 256, b"")
        self.assertRefused(UnknownMessage, 13, b"\x00" * 2043)
        self.assertRefused(UnknownMessage, 13, "text")
        for known in mh.MESSAGE_TYPES:
            self.assertRefused(UnknownMessage, known, b"\x00\x00")

    def test_options(self):
        self.assertRefused(BindingRefreshAdvice, 0x10000)
        self.assertRefused(AlternateCareOfAddress, "2001:db8::g")
        self.assertRefused(BindingAuthorizationData, b"\x00" * 256)
        self.assertRefused(BindingAuthorizationData, "text")
        self.assertRefused(MobileNodeIdentifier, b"")
        self.assertRefused(MobileNodeIdentifier, b"x" * 255)
        self.assertRefused(MobileNodeIdentifier, b"x", 256)
        self.assertRefused(MobilityMessageAuthentication, 256, 0, b"")
        self.assertRefused(MobilityMessageAuthentication, 1, 1 << 32, b"")
        self.assertRefused(MobilityMessageAuthentication, 1, -1, b"")
        self.assertRefused(MobilityMessageAuthentication, 1, 0, b"x" * 251)
        self.assertRefused(MobilityMessageReplayProtection, 1 << 64)
        self.assertRefused(HomeNetworkPrefix, A1, 129)
        self.assertRefused(HomeNetworkPrefix, A1, -1)
        self.assertRefused(HomeNetworkPrefix, "2001:db8::/64")
        self.assertRefused(HandoffIndicator, 256)
        self.assertRefused(AccessTechnologyType, -1)
        self.assertRefused(MobileNodeLinkLayerIdentifier, b"")
        self.assertRefused(MobileNodeLinkLayerIdentifier, b"x" * 254)
        self.assertRefused(LinkLocalAddress, "fe80::1::2")
        self.assertRefused(Timestamp, -1)
        self.assertRefused(Timestamp, 1 << 64)
        self.assertRefused(IPv4HomeAddressRequest, "2001:db8::1")
        self.assertRefused(IPv4HomeAddressRequest, "10.0.0.1", 33)
        self.assertRefused(IPv4HomeAddressRequest, "10.0.0.1", -1)
        self.assertRefused(IPv4HomeAddressRequest, "10.0.0.0/8")
        self.assertRefused(IPv4HomeAddressReply, 256)
        self.assertRefused(IPv4HomeAddressReply, 0, "10.0.0.1", 40)
        self.assertRefused(IPv4HomeAddressReply, 0, "not an address")
        self.assertRefused(IPv4DefaultRouterAddress, "::1")
        self.assertRefused(IPv4DhcpSupportMode, 1)
        self.assertRefused(IPv4DhcpSupportMode, None)
        self.assertRefused(RestartCounter, -1)
        self.assertRefused(RestartCounter, 1 << 32)
        self.assertRefused(MalformedOption, 200, b"", "unknown type")
        self.assertRefused(MalformedOption, 0, b"", "padding")
        self.assertRefused(MalformedOption, 22, b"x" * 256, "too long")
        self.assertRefused(MalformedOption, 22, b"", None)
        self.assertRefused(UnknownOption, 0, b"")
        self.assertRefused(UnknownOption, 1, b"")
        self.assertRefused(UnknownOption, 256, b"")
        self.assertRefused(UnknownOption, 99, b"x" * 256)
        for known in mh.OPTION_TYPES:
            # It would come back as the known option, not as itself.
            self.assertRefused(UnknownOption, known, b"\x00\x00")

    def test_authenticationMustBeLast(self):
        """RFC 4285: the authentication option ends the message."""
        auth = MobilityMessageAuthentication(1, 256, b"x" * 12)
        error = self.assertRefused(
            BindingUpdate, 1, options=[auth, HomeNetworkPrefix(A1)]
        )
        self.assertIn("last", str(error))
        BindingUpdate(1, options=[HomeNetworkPrefix(A1), auth])

    def test_authenticatorThatCannotEndOnEightOctets(self):
        """
        At 4n+1 the option ends on an 8-octet boundary only when the
        authenticator is a multiple of 4 octets; other lengths are refused
        when encoding instead of looping for ever.
        """
        for size in (1, 2, 3, 5, 13):
            message = BindingUpdate(
                1, options=[MobilityMessageAuthentication(1, 256, b"x" * size)]
            )
            error = self.assertRefused(encodeMessage, message)
            self.assertIn("8-octet boundary", str(error))
        for size in (0, 4, 12, 16, 20):
            data = encodeMessage(
                BindingUpdate(1, options=[MobilityMessageAuthentication(1, 256, b"x" * size)])
            )
            # The option's 7 + size octets are the last of the header.
            self.assertEqual(data[-size - 7:-size - 5], bytes((9, 5 + size)))

    def test_tooLong(self):
        """A header beyond 2048 octets does not fit Header Len."""
        message = BindingUpdate(
            1, options=[BindingAuthorizationData(b"x" * 255)] * 8
        )
        error = self.assertRefused(encodeMessage, message)
        self.assertIn("2048", str(error))
        self.assertRefused(encodeMessage, "not a message")


class WireImportsTests(SynchronousTestCase):
    """netlmm.wire is usable without Twisted (architecture rule 1)."""

    def test_noTwisted(self):
        root = os.path.dirname(os.path.dirname(os.path.abspath(mh.__file__)))
        root = os.path.dirname(root)
        env = dict(os.environ, PYTHONPATH=root)
        code = (
            "import sys\n"
            "import netlmm.wire.mh, netlmm.wire.control\n"
            "bad = sorted(m for m in sys.modules if m == 'twisted' or m.startswith('twisted.'))\n"
            "print(' '.join(bad))\n"
            "sys.exit(1 if bad else 0)\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            cwd=tempfile.gettempdir(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertEqual(
            result.returncode, 0,
            f"netlmm.wire imported: {result.stdout.strip()} {result.stderr.strip()}",
        )


# ---------------------------------------------------------------- scapy


def _scapyOptions(packet):
    """Scapy's options of a parsed Mobility Header, padding left out."""
    return [o for o in packet.options if type(o).__name__ not in ("Pad1", "PadN")]


def _optionOctets(option):
    body = option.body()
    return bytes((option.TYPE, len(body))) + body


class ScapyTests(SynchronousTestCase):
    """
    Scapy's MIPv6 layers (scapy.layers.inet6) as an independent decoder and
    encoder. Scapy does not know the RFC 5213 options (22..27) and shows them
    as MIP6OptUnknown; their octets are compared.
    """

    if _SCAPY_SKIP:
        skip = _SCAPY_SKIP

    source = MAG
    destination = LMA

    def pbu(self):
        return BindingUpdate(
            0xBEEF,
            PROXY,
            0x0096,
            [
                HomeNetworkPrefix(A1),
                AlternateCareOfAddress(A2),
                MobileNodeIdentifier(b"mn1@example.net"),
                BindingRefreshAdvice(30),
                MobileNodeLinkLayerIdentifier(h("020000aabbcc")),
                Timestamp(0x0000655300008000),
                HandoffIndicator(1),
                AccessTechnologyType(3),
                MobilityMessageReplayProtection(0x0102030405060708),
                MobilityMessageAuthentication(1, 0x1234, bytes(range(12))),
            ],
        )

    def scapyChecksum(self, layer, data):
        """The checksum scapy computes for data placed in an IPv6 packet."""
        parsed = layer(withChecksum(data, 0))
        parsed.cksum = None
        packet = _scapy6.IPv6(src=self.source, dst=self.destination) / parsed
        built = _scapyRaw(packet)
        # Scapy rebuilds the header from its parse; it must be ours again.
        self.assertEqual(withChecksum(built[40:], 0), withChecksum(data, 0))
        return struct.unpack("!H", built[44:46])[0]

    def assertOptionsMatch(self, ours, theirs):
        self.assertEqual([o.TYPE for o in ours], [int(o.otype) for o in theirs])
        for mine, other in zip(ours, theirs):
            self.assertEqual(_scapyRaw(other), _optionOctets(mine))
            if type(mine) is AlternateCareOfAddress:
                self.assertEqual(IPv6Address(other.acoa), mine.address)
            elif type(mine) is MobileNodeIdentifier:
                self.assertEqual(int(other.subtype), mine.subtype)
                self.assertEqual(other.id, mine.identifier)
            elif type(mine) is MobilityMessageAuthentication:
                self.assertEqual(int(other.subtype), mine.subtype)
                self.assertEqual(other.mspi, mine.spi)
                self.assertEqual(other.authdata, mine.authenticator)
            elif type(mine) is BindingRefreshAdvice:
                self.assertEqual(other.rinter, mine.interval)
            elif type(mine) is BindingAuthorizationData:
                self.assertEqual(other.authenticator.to_bytes(12, "big"), mine.authenticator)
            elif type(mine) is MobilityMessageReplayProtection:
                self.assertEqual(_scapyRaw(other)[2:], struct.pack("!Q", mine.timestamp))
            else:
                # Scapy has no class for the RFC 5213 options.
                self.assertEqual(type(other).__name__, "MIP6OptUnknown")
                self.assertEqual(other.odata, mine.body())

    def test_bindingUpdate(self):
        """Scapy reads our PBU field for field and agrees on the checksum."""
        message = self.pbu()
        data = encodeMessage(message, self.source, self.destination)
        parsed = _scapy6.MIP6MH_BU(data)
        self.assertEqual(parsed.nh, 59)
        self.assertEqual(parsed.len, len(data) // 8 - 1)
        self.assertEqual(parsed.mhtype, 5)
        self.assertEqual(parsed.seq, message.sequence)
        # Scapy's 7 flag bits are A H L K M R P from the top, then 9 reserved.
        self.assertEqual(int(parsed.flags), message.flags >> 9)
        self.assertEqual(set(str(parsed.flags)), set("AHP"))
        self.assertEqual(parsed.reserved, message.flags & 0x1FF)
        self.assertEqual(parsed.mhtime, message.lifetime)
        self.assertEqual(parsed.cksum, struct.unpack("!H", data[4:6])[0])
        self.assertOptionsMatch(message.options, _scapyOptions(parsed))
        self.assertEqual(self.scapyChecksum(_scapy6.MIP6MH_BU, data), parsed.cksum)

    def test_bindingAcknowledgement(self):
        """Scapy reads our PBAck and agrees on the checksum."""
        message = BindingAcknowledgement(
            Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX,
            BA_P,
            0xBEEF,
            0x0096,
            [
                HomeNetworkPrefix(A1),
                BindingRefreshAdvice(75),
                BindingAuthorizationData(bytes(range(12))),
                MobilityMessageAuthentication(2, 0x100, b"\x55" * 16),
            ],
        )
        data = encodeMessage(message, self.source, self.destination)
        parsed = _scapy6.MIP6MH_BA(data)
        self.assertEqual(parsed.mhtype, 6)
        self.assertEqual(parsed.status, message.status)
        self.assertEqual(int(parsed.flags), message.flags >> 5)
        self.assertEqual(str(parsed.flags), "P")
        self.assertEqual(parsed.seq, message.sequence)
        self.assertEqual(parsed.mhtime, message.lifetime)
        self.assertOptionsMatch(message.options, _scapyOptions(parsed))
        self.assertEqual(
            self.scapyChecksum(_scapy6.MIP6MH_BA, data),
            struct.unpack("!H", data[4:6])[0],
        )

    def test_bindingErrorAndRefreshRequest(self):
        """Scapy reads our BE and BRR and agrees on their checksums."""
        data = encodeMessage(BindingError(2, A1), self.source, self.destination)
        parsed = _scapy6.MIP6MH_BE(data)
        self.assertEqual((parsed.mhtype, parsed.status), (7, 2))
        self.assertEqual(IPv6Address(parsed.ha), IPv6Address(A1))
        self.assertEqual(
            self.scapyChecksum(_scapy6.MIP6MH_BE, data), struct.unpack("!H", data[4:6])[0]
        )
        data = encodeMessage(
            BindingRefreshRequest([BindingRefreshAdvice(9)]), self.source, self.destination
        )
        parsed = _scapy6.MIP6MH_BRR(data)
        self.assertEqual(parsed.mhtype, 0)
        self.assertEqual([o.rinter for o in _scapyOptions(parsed)], [9])
        self.assertEqual(
            self.scapyChecksum(_scapy6.MIP6MH_BRR, data), struct.unpack("!H", data[4:6])[0]
        )

    def test_everyKnownValueChecksum(self):
        """Scapy's in6_chksum agrees with ours on every vector."""
        for description, message, octets in KNOWN:
            data = encodeMessage(message, self.source, self.destination)
            packet = _scapy6.IPv6(src=self.source, dst=self.destination, nh=135)
            expected = _scapy6.in6_chksum(135, packet, withChecksum(data, 0))
            self.assertEqual(struct.unpack("!H", data[4:6])[0], expected, description)

    def scapyBuilt(self, layer):
        """A header built by scapy (its own padding and checksum)."""
        packet = _scapy6.IPv6(src=self.source, dst=self.destination) / layer
        return _scapyRaw(packet)[40:]

    def test_scapyBindingUpdate(self):
        """A BU built by scapy decodes with ours, scapy's checksum verified."""
        data = self.scapyBuilt(
            _scapy6.MIP6MH_BU(
                seq=0x1234,
                flags=0b1100001,  # A H P
                mhtime=0x96,
                options=[
                    _scapy6.MIP6OptUnknown(otype=22, odata=b"\x00\x80" + IPv6Address(A1).packed),
                    _scapy6.MIP6OptAltCoA(acoa=A2),
                    _scapy6.MIP6OptMNID(id=b"mn1@example.net"),
                    _scapy6.MIP6OptBRAdvice(rinter=10),
                    _scapy6.MIP6OptMsgAuth(subtype=1, mspi=300, authdata=b"\x11" * 12),
                ],
            )
        )
        message = decodeMessage(data, self.source, self.destination)
        self.assertEqual(
            message,
            BindingUpdate(
                0x1234,
                PROXY,
                0x96,
                [
                    HomeNetworkPrefix(A1),
                    AlternateCareOfAddress(A2),
                    MobileNodeIdentifier(b"mn1@example.net"),
                    BindingRefreshAdvice(10),
                    MobilityMessageAuthentication(1, 300, b"\x11" * 12),
                ],
            ),
        )

    def test_sameLayoutAsScapy(self):
        """
        For the options scapy knows, its alignment padding gives exactly our
        octets (an independent check of the xn+y rules).
        """
        ours = BindingUpdate(
            7,
            PROXY,
            0x10,
            [
                MobileNodeIdentifier(b"abc"),
                AlternateCareOfAddress(A2),
                BindingRefreshAdvice(3),
                BindingAuthorizationData(bytes(range(12))),
                MobilityMessageReplayProtection(42),
                MobilityMessageAuthentication(1, 0x999, b"\x22" * 12),
            ],
        )
        theirs = self.scapyBuilt(
            _scapy6.MIP6MH_BU(
                seq=7,
                flags=0b1100001,
                mhtime=0x10,
                options=[
                    _scapy6.MIP6OptMNID(id=b"abc"),
                    _scapy6.MIP6OptAltCoA(acoa=A2),
                    _scapy6.MIP6OptBRAdvice(rinter=3),
                    _scapy6.MIP6OptBindingAuthData(
                        olen=12, authenticator=int.from_bytes(bytes(range(12)), "big")
                    ),
                    _scapy6.MIP6OptReplayProtection(),
                    _scapy6.MIP6OptMsgAuth(subtype=1, mspi=0x999, authdata=b"\x22" * 12),
                ],
            )
        )
        data = encodeMessage(ours)
        # Scapy's replay timestamp field takes an NTP float; put ours in its
        # place (same offset, as the layouts must be the same).
        (replay,) = [at for at, kind, _ in walkOptions(data, 12) if kind == 10]
        self.assertEqual(theirs[replay:replay + 2], b"\x0a\x08")
        theirs = theirs[:replay + 2] + struct.pack("!Q", 42) + theirs[replay + 10:]
        self.assertEqual(withChecksum(data, 0).hex(), withChecksum(theirs, 0).hex())

    def test_scapyOtherMessages(self):
        """BA, BE and BRR built by scapy decode with ours."""
        data = self.scapyBuilt(
            _scapy6.MIP6MH_BA(
                status=0, flags=1, seq=0x1234, mhtime=0x96,
                options=[_scapy6.MIP6OptBRAdvice(rinter=75)],
            )
        )
        self.assertEqual(
            decodeMessage(data, self.source, self.destination),
            BindingAcknowledgement(0, BA_P, 0x1234, 0x96, [BindingRefreshAdvice(75)]),
        )
        data = self.scapyBuilt(_scapy6.MIP6MH_BE(status=2, ha=A1))
        self.assertEqual(
            decodeMessage(data, self.source, self.destination), BindingError(2, A1)
        )
        data = self.scapyBuilt(_scapy6.MIP6MH_BRR())
        self.assertEqual(
            decodeMessage(data, self.source, self.destination), BindingRefreshRequest()
        )


# ---------------------------------------------------------------- tshark


def _pcap(packets):
    """A classic pcap file (LINKTYPE_IPV6 = 229) holding raw IPv6 packets."""
    out = [struct.pack("!IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 229)]
    for i, packet in enumerate(packets):
        out.append(struct.pack("!IIII", 1700000000 + i, 0, len(packet), len(packet)))
        out.append(packet)
    return b"".join(out)


def _ipv6(source, destination, payload, nextHeader=135):
    return (
        struct.pack("!IHBB", 6 << 28, len(payload), nextHeader, 64)
        + IPv6Address(source).packed
        + IPv6Address(destination).packed
        + payload
    )


def tsharkRows(case, packets, fields):
    """
    tshark's reading of raw IPv6 C{packets}: one dict of C{fields} per
    packet (several values of a field joined by commas). Fails C{case}
    when tshark fails or reads another number of packets.
    """
    directory = tempfile.mkdtemp()
    case.addCleanup(shutil.rmtree, directory)
    path = os.path.join(directory, "packets.pcap")
    with open(path, "wb") as f:
        f.write(_pcap(packets))
    command = [_TSHARK, "-n", "-r", path, "-T", "fields", "-E", "separator=|",
               "-E", "occurrence=a", "-E", "aggregator=,"]
    for field in fields:
        command += ["-e", field]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    case.assertEqual(result.returncode, 0, result.stderr)
    rows = [dict(zip(fields, line.split("|")))
            for line in result.stdout.splitlines() if line.strip()]
    case.assertEqual(len(rows), len(packets), result.stdout)
    return rows


class TsharkTests(SynchronousTestCase):
    """Wireshark's mip6 dissector reads one PBU and one PBAck like we do."""

    if _TSHARK is None:
        skip = "tshark is not installed"

    FIELDS = [
        "mip6.mhtype",
        "mip6.bu.seqnr",
        "mip6.bu.lifetime",
        "mip6.bu.a_flag",
        "mip6.bu.h_flag",
        "mip6.bu.p_flag",
        "mip6.nemo.mnp.pfl",
        "mip6.nemo.mnp.mnp",
        "mip6.acoa.acoa",
        "mip6.mnid.identifier",
        "mip6.mnlli.lli",
        "mip6.ba.status",
        "mip6.ba.seqnr",
        "mip6.ba.lifetime",
        "mip6.ba.p_flag",
        "mip6.csum",
        "_ws.malformed",
    ]

    def decode(self, messages, fields):
        """
        tshark's reading of C{messages} ((message, source, destination)
        each), one dict of C{fields} per packet.
        """
        return tsharkRows(self, [_ipv6(src, dst, encodeMessage(m, src, dst))
                                 for m, src, dst in messages], fields)

    def test_ipv4Options(self):
        """
        The RFC 5844 options field by field: Prefix-len in the top 6 bits,
        the addresses, the Reply's status, the S flag; no expert warning
        (tshark warns on wrong option lengths).
        """
        fields = ["mip6.mhtype", "mip6.ipv4ha.preflen", "mip6.ipv4ha.ha",
                  "mip6.ipv4aa.sts", "mip6.ipv4dra.dra", "mip6.ipv4dsm.s_flag",
                  "mip6.mnid.identifier", "_ws.expert.message", "_ws.malformed"]
        pbu = BindingUpdate(3, BU_A | BU_P, 10, [
            MobileNodeIdentifier(b"mn1@example.net"),
            IPv4HomeAddressRequest("198.51.100.7", 24),
            IPv4DhcpSupportMode(True),
        ])
        pba = BindingAcknowledgement(0, BA_P, 3, 10, [
            MobileNodeIdentifier(b"mn1@example.net"),
            IPv4HomeAddressReply(IPv4HomeAddressReply.INCORRECT_IPV4_HOME_ADDRESS,
                                 "192.0.2.10", 30),
            IPv4DefaultRouterAddress("192.0.2.1"),
            IPv4DhcpSupportMode(False),
        ])
        bu, ba = self.decode([(pbu, MAG, LMA), (pba, LMA, MAG)], fields)
        self.assertEqual(
            (bu["mip6.mhtype"], bu["mip6.ipv4ha.preflen"], bu["mip6.ipv4ha.ha"],
             bu["mip6.ipv4dsm.s_flag"], bu["mip6.mnid.identifier"]),
            ("5", "24", "198.51.100.7", "1", "mn1@example.net"))
        self.assertEqual(
            (ba["mip6.mhtype"], ba["mip6.ipv4aa.sts"], ba["mip6.ipv4ha.preflen"],
             ba["mip6.ipv4ha.ha"], ba["mip6.ipv4dra.dra"], ba["mip6.ipv4dsm.s_flag"]),
            ("6", "130", "30", "192.0.2.10", "192.0.2.1", "0"))
        for row in (bu, ba):
            self.assertEqual((row["_ws.expert.message"], row["_ws.malformed"]), ("", ""))

    def test_heartbeats(self):
        """
        RFC 5847 Heartbeat Request, Response and unsolicited Response: MH
        type 13, the R and U flags, the 32-bit sequence number, the Restart
        Counter option (type 28) read at its place; no expert warning.
        """
        fields = ["mip6.mhtype", "mip6.hb.u_flag", "mip6.hb.r_flag", "mip6.hb.seqnr",
                  "mip6.rc", "_ws.expert.message", "_ws.malformed"]
        rows = self.decode([
            (Heartbeat(0x89ABCDEF), MAG, LMA),
            (Heartbeat(0x89ABCDEF, mh.HB_R, [RestartCounter(0xFEDCBA98)]), LMA, MAG),
            (Heartbeat(0, mh.HB_U | mh.HB_R, [RestartCounter(3)]), MAG, LMA),
        ], fields)

        def flag(value):
            return {"1": 1, "True": 1, "true": 1, "0": 0, "False": 0, "false": 0}[value]

        self.assertEqual(
            [(r["mip6.mhtype"], flag(r["mip6.hb.u_flag"]), flag(r["mip6.hb.r_flag"]),
              int(r["mip6.hb.seqnr"]), r["mip6.rc"]) for r in rows],
            [("13", 0, 0, 0x89ABCDEF, ""), ("13", 0, 1, 0x89ABCDEF, str(0xFEDCBA98)),
             ("13", 1, 1, 0, "3")])
        for row in rows:
            self.assertEqual((row["_ws.expert.message"], row["_ws.malformed"]), ("", ""))

    def test_bindingRevocation(self):
        """
        RFC 5846 BRI and BRA: MH type 16, B.R. Type, trigger or status,
        sequence number, the P/V/G flags of each kind, and the options; no
        expert warning.
        """
        fields = ["mip6.mhtype", "mip6.bri_br.type", "mip6.bri_r.trigger", "mip6.bri_status",
                  "mip6.bri_seqnr", "mip6.bri_ip", "mip6.bri_iv", "mip6.bri_ig",
                  "mip6.bri_ap", "mip6.bri_ag", "mip6.mnid.identifier",
                  "mip6.nemo.mnp.mnp", "_ws.expert.message", "_ws.malformed"]
        rows = self.decode([
            (RevocationIndication(RevocationTrigger.ADMINISTRATIVE_REASON, 0x1234, mh.BR_P, [
                MobileNodeIdentifier(b"mn1@example.net"),
                HomeNetworkPrefix("2001:db8:1::5", 128)]), LMA, MAG),
            (RevocationAcknowledgement(RevocationStatus.SUCCESS, 0x1234, mh.BR_P | mh.BR_G,
                                       [MobileNodeIdentifier(b"mn1@example.net")]), MAG, LMA),
        ], fields)

        def flag(value):
            return {"1": 1, "True": 1, "true": 1, "0": 0, "False": 0, "false": 0}.get(value, "")

        self.assertEqual(
            [(r["mip6.mhtype"], r["mip6.bri_br.type"], r["mip6.bri_r.trigger"],
              r["mip6.bri_status"], int(r["mip6.bri_seqnr"]), flag(r["mip6.bri_ip"]),
              flag(r["mip6.bri_iv"]), flag(r["mip6.bri_ig"]), flag(r["mip6.bri_ap"]),
              flag(r["mip6.bri_ag"]), r["mip6.mnid.identifier"], r["mip6.nemo.mnp.mnp"])
             for r in rows],
            [("16", "1", "1", "", 0x1234, 1, 0, 0, "", "", "mn1@example.net",
              "2001:db8:1::5"),
             ("16", "2", "", "0", 0x1234, "", "", "", 1, 1, "mn1@example.net", "")])
        for row in rows:
            self.assertEqual((row["_ws.expert.message"], row["_ws.malformed"]), ("", ""))

    def test_malformedIsMalformedForTsharkToo(self):
        """
        What our decoder calls a MalformedOption (a Request of 5 octets),
        tshark flags too, so the reference and we agree on what is broken.
        """
        raw = h(MALFORMED_OPTIONS[9][1])
        self.assertIs(type(decodeMessage(raw).options[0]), MalformedOption)
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        path = os.path.join(directory, "bad.pcap")
        with open(path, "wb") as f:
            f.write(_pcap([_ipv6(MAG, LMA, raw)]))
        result = subprocess.run(
            [_TSHARK, "-n", "-r", path, "-T", "fields", "-e", "_ws.expert.message"],
            capture_output=True, text=True, timeout=120)
        self.assertIn("should be 6", result.stdout)

    def test_pbuAndPback(self):
        pbu = BindingUpdate(
            0x0102, PROXY, 0x0096,
            [
                HomeNetworkPrefix(A1),
                AlternateCareOfAddress(MAG),
                MobileNodeIdentifier(b"mn1@example.net"),
                MobileNodeLinkLayerIdentifier(h("020000aabbcc")),
            ],
        )
        pback = BindingAcknowledgement(
            Status.NOT_LMA_FOR_THIS_MN, BA_P, 0x0102, 0x0040, [HomeNetworkPrefix(A1)]
        )
        first = encodeMessage(pbu, MAG, LMA)
        bu, ba = self.decode([(pbu, MAG, LMA), (pback, LMA, MAG)], self.FIELDS)

        def true(value):
            return value in ("1", "True", "true")

        self.assertEqual(bu["mip6.mhtype"], "5")
        self.assertEqual(int(bu["mip6.bu.seqnr"]), 0x0102)
        self.assertEqual(int(bu["mip6.bu.lifetime"]), 0x0096)
        self.assertTrue(true(bu["mip6.bu.a_flag"]))
        self.assertTrue(true(bu["mip6.bu.h_flag"]))
        self.assertTrue(true(bu["mip6.bu.p_flag"]))
        self.assertEqual(bu["mip6.nemo.mnp.pfl"], "128")
        self.assertEqual(IPv6Address(bu["mip6.nemo.mnp.mnp"]), IPv6Address(A1))
        self.assertEqual(IPv6Address(bu["mip6.acoa.acoa"]), IPv6Address(MAG))
        self.assertEqual(bu["mip6.mnid.identifier"], "mn1@example.net")
        self.assertEqual(bu["mip6.mnlli.lli"].replace(":", ""), "020000aabbcc")
        self.assertEqual(int(bu["mip6.csum"], 0), struct.unpack("!H", first[4:6])[0])
        self.assertEqual(bu["_ws.malformed"], "")

        self.assertEqual(ba["mip6.mhtype"], "6")
        self.assertEqual(int(ba["mip6.ba.status"]), Status.NOT_LMA_FOR_THIS_MN)
        self.assertEqual(int(ba["mip6.ba.seqnr"]), 0x0102)
        self.assertEqual(int(ba["mip6.ba.lifetime"]), 0x0040)
        self.assertTrue(true(ba["mip6.ba.p_flag"]))
        self.assertEqual(IPv6Address(ba["mip6.nemo.mnp.mnp"]), IPv6Address(A1))
        self.assertEqual(ba["_ws.malformed"], "")


if __name__ == "__main__":  # pragma: no cover
    unittest.main()
