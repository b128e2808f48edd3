"""
The RFC 5949 messages between MAGs (Handover Initiate / Acknowledge) and
their options (Context Request, LMA Address): known octets both ways,
truncations refused, broken options kept as MalformedOption, and tshark's
mip6 dissector as the independent reader.
"""

import os
import shutil
import subprocess
import tempfile
import struct
from ipaddress import IPv4Address, IPv6Address

from twisted.trial.unittest import SynchronousTestCase

from netlmm.test.test_wire_mh import _ipv6, _pcap
from netlmm.wire import mh
from netlmm.wire.errors import DecodeError, EncodeError
from netlmm.wire.fho import (
    HACK_F, HACK_P, HI_F, HI_P, HI_U, ContextRequest, HackCode, HandoverAcknowledge,
    HandoverInitiate, HiCode, LmaAddress, decodeMessage,
)

HI = HandoverInitiate(7, HI_P | HI_F, HiCode.REQUEST, [
    mh.MobileNodeIdentifier(b"mn1"), ContextRequest([(22, b"")])])
HI_OCTETS = bytes.fromhex("3b020e000000000730000804016d6e312804000016000100")
HACK = HandoverAcknowledge(7, HACK_P, HackCode.CONTEXT_NOT_AVAILABLE,
                           [LmaAddress("2001:db8::1")])
HACK_OCTETS = bytes.fromhex("3b030f00000000074083010029120100"
                            "20010db8000000000000000000000001")


class KnownValuesTests(SynchronousTestCase):
    def test_encode(self):
        self.assertEqual(mh.encodeMessage(HI), HI_OCTETS)
        self.assertEqual(mh.encodeMessage(HACK), HACK_OCTETS)

    def test_decode(self):
        self.assertEqual(decodeMessage(HI_OCTETS), HI)
        self.assertEqual(decodeMessage(HACK_OCTETS), HACK)
        self.assertTrue(HI.flag(HI_F))
        self.assertFalse(HI.flag(HI_U))
        self.assertFalse(HACK.accepted)

    def test_notRegisteredGlobally(self):
        """The Mobility Header codec of the LMA and PMIP client is left as it was."""
        self.assertIsInstance(mh.decodeMessage(HI_OCTETS), mh.UnknownMessage)
        self.assertNotIn(40, mh.OPTION_TYPES)
        self.assertIsInstance(decodeMessage(mh.encodeMessage(mh.BindingRefreshRequest())),
                              mh.BindingRefreshRequest)

    def test_truncated(self):
        """Every truncated prefix is refused with the codec's own error."""
        for octets in (HI_OCTETS, HACK_OCTETS):
            for n in range(len(octets)):
                self.assertRaises(DecodeError, decodeMessage, octets[:n])

    def test_lmaAddress(self):
        self.assertEqual(LmaAddress("192.0.2.1").body(), b"\x02\x00" + bytes([192, 0, 2, 1]))
        self.assertEqual(LmaAddress.fromBody(b"\x02\x00\xc0\x00\x02\x01").address,
                         IPv4Address("192.0.2.1"))
        self.assertEqual(LmaAddress(IPv6Address("::1")).address, IPv6Address("::1"))
        self.assertRaises(EncodeError, LmaAddress, "not an address")

    def test_malformedOptions(self):
        """A broken Context Request or LMA Address decodes to a MalformedOption."""
        for body, kind in ((b"\x00", 40), (b"\x00\x00\x16", 40), (b"\x00\x00\x16\x03ab", 40),
                           (b"\x01\x00\x00\x00\x00\x01", 41), (b"\x03\x00" + bytes(16), 41)):
            option = bytes((kind, len(body))) + body
            pad = (-(10 + len(option))) % 8
            data = bytearray(b"\x3b\x00\x0e\x00\x00\x00\x00\x01\x20\x00" + option
                             + (b"\x01" + bytes([pad - 2]) + bytes(pad - 2) if pad > 1
                                else b"\x00" * pad))
            data[1] = len(data) // 8 - 1
            message = decodeMessage(bytes(data))
            (broken,) = message.malformed()
            self.assertEqual(broken.type, kind)

    def test_contextRequestTypes(self):
        self.assertEqual(ContextRequest([(22, b""), (41, b"\x01")]).types, (22, 41))
        self.assertEqual(HackCode.name(131), "requested context not available")
        self.assertEqual(HackCode.name(200), "code 200")


class TsharkTests(SynchronousTestCase):
    """Wireshark's mip6 dissector reads a HI and a HAck as we mean them."""

    if shutil.which("tshark") is None:
        skip = "tshark is not installed"

    def test_dissected(self):
        a, b = IPv6Address("2001:db8:ffff::11"), IPv6Address("2001:db8:ffff::12")
        hi = HandoverInitiate(9, HI_P | HI_F | HI_U, HiCode.REQUEST, [
            mh.MobileNodeIdentifier(b"02:00:00:00:aa:01"),
            ContextRequest([(22, b""), (25, b""), (41, b"")]),
            mh.MobileNodeLinkLayerIdentifier(bytes.fromhex("02000000aa01"))])
        hack = HandoverAcknowledge(9, HACK_P | HACK_F, HackCode.CONTEXT_ACCEPTED, [
            mh.MobileNodeIdentifier(b"02:00:00:00:aa:01"),
            mh.HomeNetworkPrefix("2001:db8:1::7", 128), LmaAddress("2001:db8:ffff::1")])
        packets = []
        for message, source, destination in ((hi, a, b), (hack, b, a)):
            packets.append(_ipv6(source, destination,
                                 mh.encodeMessage(message, source, destination)))
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        path = os.path.join(directory, "fho.pcap")
        with open(path, "wb") as f:
            f.write(_pcap(packets))
        fields = ["mip6.mhtype", "mip6.hi.seqnr", "mip6.hi.u_flag", "mip6.hi.code",
                  "mip6.cr.req_type", "mip6.hack.seqnr", "mip6.hack.code",
                  "mip6.nemo.mnp.mnp", "mip6.lmaa.opt_code", "mip6.lmaa.ipv6",
                  "mip6.mnid.identifier", "mip6.mnlli.lli", "_ws.malformed"]
        command = ["tshark", "-n", "-r", path, "-T", "fields", "-E", "separator=|",
                   "-E", "occurrence=a", "-E", "aggregator=,"]
        for field in fields:
            command += ["-e", field]
        out = subprocess.run(command, capture_output=True, text=True, timeout=120)
        rows = [dict(zip(fields, line.split("|"))) for line in out.stdout.splitlines()]
        self.assertEqual(len(rows), 2, out.stderr)
        first, second = rows
        self.assertEqual((first["mip6.mhtype"], first["mip6.hi.seqnr"], first["mip6.hi.u_flag"],
                          first["mip6.hi.code"], first["mip6.cr.req_type"],
                          first["mip6.mnid.identifier"], first["mip6.mnlli.lli"]),
                         ("14", "9", "1", "0", "22,25,41", "02:00:00:00:aa:01",
                          "02000000aa01"))
        self.assertEqual((second["mip6.mhtype"], second["mip6.hack.seqnr"],
                          second["mip6.hack.code"], second["mip6.nemo.mnp.mnp"],
                          second["mip6.lmaa.opt_code"], second["mip6.lmaa.ipv6"]),
                         ("15", "9", "5", "2001:db8:1::7", "1", "2001:db8:ffff::1"))
        for row in rows:
            self.assertEqual(row["_ws.malformed"], "")


class LadderTests(SynchronousTestCase):
    def test_described(self):
        from netlmm.ladder import describe
        self.assertEqual(describe(HI), "HI seq=7 context request MN=mn1")
        ask = HandoverInitiate(8, HI_P | HI_F, HiCode.REQUEST, [mh.MobileNodeIdentifier(b"mn1")])
        self.assertEqual(describe(ask), "HI seq=8 forwarding request MN=mn1")
        hack = HandoverAcknowledge(7, HACK_P, HackCode.CONTEXT_ACCEPTED, [
            mh.MobileNodeIdentifier(b"mn1"), mh.HomeNetworkPrefix("2001:db8:1::7", 128)])
        self.assertEqual(describe(hack), "HAck seq=7 5 (context transfer accepted) MN=mn1 "
                                         "pHoA=2001:db8:1::7")

    def test_pcapTunnel(self):
        """The demo's pcap reader keeps IPv6-in-IPv6 packets (forwarding between MAGs)."""
        import os
        import tempfile
        from netlmm.pcap import readPcap
        inner = _ipv6("2001:db8:c::2", "2001:db8:1::7", b"x" * 8, 17)
        frame = bytes(12) + b"\x86\xdd" + _ipv6("2001:db8:ffff::11", "2001:db8:ffff::12",
                                                  inner, 41)
        header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
        record = struct.pack("<IIII", 1, 0, len(frame), len(frame))
        path = os.path.join(tempfile.mkdtemp(), "t.pcap")
        with open(path, "wb") as f:
            f.write(header + record + frame)
        (p,) = readPcap(path)
        self.assertEqual((p.proto, str(p.dst), p.payload), ("ipip", "2001:db8:ffff::12", inner))


class DualStackContextTests(SynchronousTestCase):
    """
    A dual-stack mobile's context (RFC 5844 options 36, 38, 39 in a HAck):
    tshark's mip6 dissector reads the IPv4 home address, its prefix length,
    the default router and the DHCP support mode as meant.
    """

    if shutil.which("tshark") is None:
        skip = "tshark is not installed"

    def test_dissected(self):
        from ipaddress import IPv4Interface

        from netlmm.core.handover import Context
        a, b = IPv6Address("2001:db8:ffff::11"), IPv6Address("2001:db8:ffff::12")
        context = Context(b"02:00:00:00:aa:01", IPv6Address("2001:db8:1::7"),
                          bytes.fromhex("02000000aa01"), IPv6Address("2001:db8:ffff::1"),
                          IPv4Interface("10.200.0.7/24"), IPv4Address("10.200.0.1"), True)
        hack = HandoverAcknowledge(9, HACK_P, HackCode.CONTEXT_ACCEPTED, context.options())
        data = mh.encodeMessage(hack, b, a)
        self.assertEqual(Context.fromMessage(decodeMessage(data, b, a)), context)
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        path = os.path.join(directory, "fho4.pcap")
        with open(path, "wb") as f:
            f.write(_pcap([_ipv6(b, a, data)]))
        fields = ["mip6.hack.code", "mip6.ipv4ha.preflen", "mip6.ipv4ha.ha",
                  "mip6.ipv4dra.dra", "mip6.ipv4dsm.s_flag", "mip6.lmaa.ipv6",
                  "_ws.malformed"]
        command = ["tshark", "-n", "-r", path, "-T", "fields", "-E", "separator=|"]
        for field in fields:
            command += ["-e", field]
        out = subprocess.run(command, capture_output=True, text=True, timeout=120)
        rows = [line.split("|") for line in out.stdout.splitlines()]
        self.assertEqual(rows, [["5", "24", "10.200.0.7", "10.200.0.1", "1",
                                 "2001:db8:ffff::1", ""]], out.stderr)
