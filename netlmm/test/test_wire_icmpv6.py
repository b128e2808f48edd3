"""The Neighbor Discovery codec: known values, truncation, scapy as a second opinion."""

import subprocess
import sys
from ipaddress import IPv6Address, IPv6Network

from twisted.trial.unittest import SynchronousTestCase

from netlmm.wire import icmpv6
from netlmm.wire.errors import DecodeError, EncodeError
from netlmm.wire.icmpv6 import (
    MtuOption, NeighborAdvertisement, NeighborSolicitation, PrefixInformation,
    RouterAdvertisement, RouterSolicitation, SourceLinkLayer, TargetLinkLayer, UnknownOption,
    decodeFrame, decodeMessage, encodeFrame, encodeMessage, macBytes, macText,
)

from netlmm.test.scapytools import MISSING as _SCAPY_SKIP, scapyModule

# Not installed: the scapy tests skip; installed but broken: this import fails.
_scapy6 = scapyModule("scapy.layers.inet6")
_Ether = getattr(scapyModule("scapy.layers.l2"), "Ether", None)

MAC = bytes.fromhex("020000000a01")
PREFIX = IPv6Network("2001:db8:1::/64")

#: (message, bytes with the checksum field zero)
KNOWN = [
    (RouterSolicitation(), bytes.fromhex("85000000" "00000000")),
    (RouterSolicitation([SourceLinkLayer(MAC)]),
     bytes.fromhex("85000000" "00000000" "0101020000000a01")),
    (RouterAdvertisement(64, 0, 1800, 0, 0, [SourceLinkLayer(MAC), MtuOption(1460),
                                             PrefixInformation(PREFIX, 0xC0, 86400, 14400)]),
     bytes.fromhex("86000000" "40000708" "00000000" "00000000"
                   "0101020000000a01"
                   "05010000000005b4"
                   "0304" "40c0" "00015180" "00003840" "00000000"
                   "20010db8000100000000000000000000")),
    (NeighborSolicitation("2001:db8:1::200:ff:fe00:a01"),
     bytes.fromhex("87000000" "00000000" "20010db8000100000200" "00fffe000a01")),
    (NeighborAdvertisement(0xE0, "fe80::1", [TargetLinkLayer(MAC)]),
     bytes.fromhex("88000000" "e0000000" "fe800000000000000000000000000001"
                   "0201020000000a01")),
    (RouterSolicitation([UnknownOption(200, bytes(6))]),
     bytes.fromhex("85000000" "00000000" "c801000000000000")),
]


class KnownValuesTests(SynchronousTestCase):
    def test_encode(self):
        for message, data in KNOWN:
            self.assertEqual(encodeMessage(message), data, message)

    def test_decode(self):
        for message, data in KNOWN:
            self.assertEqual(decodeMessage(data), message)

    def test_checksumRoundTrip(self):
        src, dst = "fe80::1", "ff02::1"
        for message, _ in KNOWN:
            data = encodeMessage(message, src, dst)
            self.assertEqual(decodeMessage(data, src, dst), message)
            broken = bytearray(data)
            broken[-1] ^= 1
            self.assertRaises(DecodeError, decodeMessage, bytes(broken), src, dst)

    def test_accessors(self):
        ra = KNOWN[2][0]
        self.assertEqual(ra.mtu, 1460)
        self.assertEqual(ra.sourceLinkLayer, MAC)
        self.assertEqual(ra.prefixes[0].prefix, PREFIX)
        self.assertIsNone(RouterSolicitation().sourceLinkLayer)

    def test_mac(self):
        self.assertEqual(macText(MAC), "02:00:00:00:0a:01")
        self.assertEqual(macBytes("02:00:00:00:0A:01"), MAC)
        for bad in ("02:00:00:00:0a", "zz:00:00:00:0a:01", "020000000a01", None):
            self.assertRaises(EncodeError, macBytes, bad)

    def test_solicitedNode(self):
        self.assertEqual(icmpv6.solicitedNode("2001:db8::200:ff:fe00:a01"),
                         IPv6Address("ff02::1:ff00:a01"))

    def test_prefixHostBitsIgnored(self):
        data = bytearray(KNOWN[2][1])
        data[-1] = 7
        self.assertEqual(decodeMessage(bytes(data)).prefixes[0].prefix, PREFIX)


class TruncationTests(SynchronousTestCase):
    def test_everyPrefix(self):
        """Every truncation that cuts into a fixed part or an option is the codec's own error."""
        for message, data in KNOWN:
            fixed = {icmpv6.RS: 8, icmpv6.RA: 16, icmpv6.NS: 24, icmpv6.NA: 24}[message.type]
            for n in range(len(data)):
                if n >= fixed and (n - fixed) % 8 == 0:
                    continue  # whole options only: a shorter but valid message
                self.assertRaises(DecodeError, decodeMessage, data[:n])

    def test_malformed(self):
        cases = [
            bytes.fromhex("85010000" "00000000"),                       # code 1
            bytes.fromhex("80000000" "00000000"),                       # echo request
            bytes.fromhex("85000000" "00000000" "0100000000000000"),    # zero length
            bytes.fromhex("85000000" "00000000" "0102" + "00" * 14),    # LLA of 14
            bytes.fromhex("85000000" "00000000" "0502" + "00" * 14),    # MTU of 16
        ]
        for data in cases:
            self.assertRaises(DecodeError, decodeMessage, data)
        pio = bytearray(KNOWN[2][1])
        pio[34] = 129                                                   # prefix length 129
        self.assertRaises(DecodeError, decodeMessage, bytes(pio))
        pio = bytearray(KNOWN[2][1])
        pio[36:40] = (0).to_bytes(4, "big")                             # valid < preferred
        self.assertRaises(DecodeError, decodeMessage, bytes(pio))

    def test_frames(self):
        frame = encodeFrame(b"\x33\x33\xff\x00\x0a\x01", MAC, "::", "ff02::1:ff00:a01",
                            NeighborSolicitation("2001:db8:1::200:ff:fe00:a01"))
        for n in range(54):
            self.assertRaises(DecodeError, decodeFrame, frame[:n])
        self.assertRaises(DecodeError, decodeFrame, frame[:-1])
        self.assertRaises(DecodeError, decodeFrame, frame[:12] + b"\x08\x00" + frame[14:])
        self.assertRaises(DecodeError, decodeFrame, frame[:14] + b"\x45" + frame[15:])


class ConstructorTests(SynchronousTestCase):
    def test_ranges(self):
        self.assertRaises(EncodeError, RouterAdvertisement, routerLifetime=70000)
        self.assertRaises(EncodeError, RouterAdvertisement, hopLimit=256)
        self.assertRaises(EncodeError, MtuOption, -1)
        self.assertRaises(EncodeError, PrefixInformation, PREFIX, 0xC0, 10, 20)
        self.assertRaises(EncodeError, SourceLinkLayer, b"\x00" * 5)
        self.assertRaises(EncodeError, UnknownOption, 9, b"\x00" * 5)
        self.assertRaises(EncodeError, NeighborAdvertisement, 0x01, "fe80::1")
        self.assertRaises(EncodeError, RouterSolicitation, ["not an option"])


class ScapyTests(SynchronousTestCase):
    """scapy as an independent encoder and decoder of the same packets."""

    skip = _SCAPY_SKIP
    src, dst = "fe80::200:ff:fe00:a01", "ff02::2"

    def scapyIcmp(self, layer):
        """The ICMPv6 bytes of C{layer} (with scapy's checksum) between src and dst."""
        packet = _scapy6.IPv6(bytes(_scapy6.IPv6(src=self.src, dst=self.dst) / layer))
        return bytes(packet.payload)

    def test_routerSolicitation(self):
        ours = encodeMessage(RouterSolicitation([SourceLinkLayer(MAC)]), self.src, self.dst)
        theirs = self.scapyIcmp(_scapy6.ICMPv6ND_RS() / _scapy6.ICMPv6NDOptSrcLLAddr(
            lladdr=macText(MAC)))
        self.assertEqual(ours, theirs)

    def test_routerAdvertisement(self):
        ra = RouterAdvertisement(64, 0, 1800, 0, 0, [
            SourceLinkLayer(MAC), MtuOption(1460), PrefixInformation(PREFIX, 0xC0, 86400, 14400)])
        theirs = self.scapyIcmp(
            _scapy6.ICMPv6ND_RA(chlim=64, M=0, O=0, prf=0, routerlifetime=1800, reachabletime=0,
                                retranstimer=0)
            / _scapy6.ICMPv6NDOptSrcLLAddr(lladdr=macText(MAC))
            / _scapy6.ICMPv6NDOptMTU(mtu=1460)
            / _scapy6.ICMPv6NDOptPrefixInfo(prefixlen=64, L=1, A=1, validlifetime=86400,
                                           preferredlifetime=14400, prefix=str(PREFIX[0])))
        self.assertEqual(encodeMessage(ra, self.src, self.dst), theirs)
        self.assertEqual(decodeMessage(theirs, self.src, self.dst), ra)

    def test_dadNeighborSolicitationFrame(self):
        target = "2001:db8:1::200:ff:fe00:a01"
        theirs = bytes(_Ether(src=macText(MAC), dst="33:33:ff:00:0a:01")
                       / _scapy6.IPv6(src="::", dst="ff02::1:ff00:a01", hlim=255)
                       / _scapy6.ICMPv6ND_NS(tgt=target))
        frame = decodeFrame(theirs)
        self.assertEqual(frame.sourceMac, MAC)
        self.assertEqual(frame.source, IPv6Address("::"))
        self.assertEqual(frame.icmp(), NeighborSolicitation(target))
        ours = encodeFrame(b"\x33\x33\xff\x00\x0a\x01", MAC, "::", "ff02::1:ff00:a01",
                           NeighborSolicitation(target))
        self.assertEqual(ours, theirs)

    def test_neighborAdvertisement(self):
        na = NeighborAdvertisement(0xE0, "fe80::1", [TargetLinkLayer(MAC)])
        theirs = self.scapyIcmp(_scapy6.ICMPv6ND_NA(R=1, S=1, O=1, tgt="fe80::1")
                                / _scapy6.ICMPv6NDOptDstLLAddr(lladdr=macText(MAC)))
        self.assertEqual(encodeMessage(na, self.src, self.dst), theirs)


class WireImportsTests(SynchronousTestCase):
    def test_noTwisted(self):
        """The codec imports nothing from Twisted."""
        code = ("import sys; import netlmm.wire.icmpv6; "
                "print([m for m in sys.modules if m.split('.')[0] == 'twisted'])")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True).stdout.strip()
        self.assertEqual(out, "[]")
