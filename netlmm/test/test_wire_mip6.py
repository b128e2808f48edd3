"""
Tests for L{netlmm.wire.mip6}: the Home Address destination option and the
type 2 routing header (RFC 6275 6.3, 6.4) around a mobile's Binding Update
and its home agent's Binding Acknowledgement. Checked against octets written
out by hand, against scapy (which computes the Mobility Header checksum
with the home address, as RFC 6275 asks) and against tshark.
"""

import os
import shutil
import struct
import subprocess
import tempfile
from ipaddress import IPv6Address

from twisted.trial.unittest import SynchronousTestCase

from netlmm.wire import DecodeError, mh, mip6
from netlmm.wire.mh import BindingAcknowledgement, BindingUpdate, MobileNodeIdentifier

try:
    from scapy.compat import raw as scapyRaw
    from scapy.layers import inet6 as scapy6
except ImportError as e:  # pragma: no cover - depends on the environment
    scapy6 = None
    SCAPY_SKIP = f"scapy is not importable ({e})"
else:
    SCAPY_SKIP = None

TSHARK = shutil.which("tshark")

HOA = IPv6Address("2001:db8:100::10")
COA = IPv6Address("2001:db8:1::10")
GMA = IPv6Address("2001:db8:ff::1")
HOA_HEX = "20010db8010000000000000000000010"


def h(text):
    return bytes.fromhex("".join(text.split()))


def registration():
    """The BU packet of a mobile at COA for HOA, and the GMA's BA packet."""
    bu = BindingUpdate(7, mh.BU_A | mh.BU_H, 75, [MobileNodeIdentifier(b"mn1@example.net")])
    ba = BindingAcknowledgement(0, 0, 7, 75, [mh.BindingRefreshAdvice(56)])
    buPacket = mip6.packet(COA, GMA, mh.encodeMessage(bu, HOA, GMA), mh.IPPROTO_MH,
                           home=HOA)
    baPacket = mip6.packet(GMA, COA, mh.encodeMessage(ba, GMA, HOA), mh.IPPROTO_MH,
                           route=HOA)
    return bu, ba, buPacket, baPacket


class HeaderTests(SynchronousTestCase):

    def test_destinationOptions(self):
        """Next header, length 2 (24 octets), PadN 4, the option at 8n+6."""
        self.assertEqual(mip6.destinationOptions(HOA, 135),
                         h("87 02 01 02 0000 c9 10" + HOA_HEX))
        self.assertEqual(mip6.homeAddressOf(mip6.destinationOptions(HOA)), HOA)

    def test_homeAddressAmongOtherOptions(self):
        """Pad1, PadN and unknown options around the Home Address option."""
        header = h("3b 02 00 00 1e 00 c9 10" + HOA_HEX)
        self.assertEqual(mip6.homeAddressOf(header), HOA)
        self.assertIsNone(mip6.homeAddressOf(h("3b 00 01 04 00000000")))

    def test_badDestinationOptions(self):
        """Each broken header raises DecodeError saying what is wrong."""
        cases = [
            (h("3b 00 01 02 0000"), "Destination Options header of 6 octets"),
            (h("3b 02 01 04 00000000"), "says 24 octets, 8 there"),
            (h("3b 02 01 02 0000 c9 0c" + HOA_HEX), "Home Address option of 12 octets"),
            (h("3b 00 01 03 000000 c9"), "cut off"),
            (h("3b 00 01 02 0000 c9 10"), "runs past the header"),
            (h("3b 05 01 02 0000 c9 10" + HOA_HEX + "01 02 0000 c9 10" + HOA_HEX + "00 00"),
             "two Home Address options"),
        ]
        for header, reason in cases:
            with self.assertRaisesRegex(DecodeError, reason):
                mip6.homeAddressOf(header)

    def test_routingHeader2(self):
        """Type 2, Hdr Ext Len 2, Segments Left 1, reserved, the home address."""
        header = mip6.routingHeader2(HOA, 135)
        self.assertEqual(header, h("87 02 02 01 00000000" + HOA_HEX))
        self.assertEqual(mip6.routingHeader2Address(header), HOA)

    def test_badRoutingHeader(self):
        cases = [
            (h("87 02 02 01 00000000"), "routing header of 8 octets"),
            (h("87 02 00 01 00000000" + HOA_HEX), "type 0, expected 2"),
            (h("87 04 02 01 00000000" + HOA_HEX), "Hdr Ext Len 4"),
        ]
        for header, reason in cases:
            with self.assertRaisesRegex(DecodeError, reason):
                mip6.routingHeader2Address(header)

    def test_packetLayout(self):
        """The fixed header chains to the extension header, then to MH."""
        _, _, buPacket, baPacket = registration()
        self.assertEqual(buPacket[6], mip6.IPPROTO_DSTOPTS)
        self.assertEqual(buPacket[40], mh.IPPROTO_MH)
        self.assertEqual(struct.unpack("!H", buPacket[4:6])[0], len(buPacket) - 40)
        self.assertEqual(baPacket[6], mip6.IPPROTO_ROUTING)
        self.assertEqual(baPacket[40], mh.IPPROTO_MH)


class ScapyTests(SynchronousTestCase):
    """scapy builds the same packets, checksum over the home address included."""

    if SCAPY_SKIP:
        skip = SCAPY_SKIP

    def scapyChecksum(self, layers, mhBytes):
        zeroed = mhBytes[:4] + b"\0\0" + mhBytes[6:]
        kind = {5: scapy6.MIP6MH_BU, 6: scapy6.MIP6MH_BA}[mhBytes[2]]
        body = kind(zeroed)
        body.cksum = None
        return scapyRaw(layers / body)

    def test_bindingUpdate(self):
        _, _, buPacket, _ = registration()
        built = self.scapyChecksum(
            scapy6.IPv6(src=str(COA), dst=str(GMA))
            / scapy6.IPv6ExtHdrDestOpt(options=[scapy6.HAO(hoa=str(HOA))]),
            buPacket[64:])
        self.assertEqual(built, buPacket)

    def test_bindingAcknowledgement(self):
        _, _, _, baPacket = registration()
        built = self.scapyChecksum(
            scapy6.IPv6(src=str(GMA), dst=str(COA))
            / scapy6.IPv6ExtHdrRouting(type=2, segleft=1, addresses=[str(HOA)]),
            baPacket[64:])
        self.assertEqual(built, baPacket)

    def test_scapyHomeAddress(self):
        """What scapy puts in the option, we read back."""
        header = scapyRaw(scapy6.IPv6ExtHdrDestOpt(nh=135, options=[scapy6.HAO(hoa=str(HOA))]))
        self.assertEqual(mip6.homeAddressOf(header), HOA)


class TsharkTests(SynchronousTestCase):
    """Wireshark reads the headers and the messages inside them."""

    if TSHARK is None:
        skip = "tshark is not installed"

    def test_registration(self):
        _, _, buPacket, baPacket = registration()
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        path = os.path.join(directory, "mip6.pcap")
        with open(path, "wb") as f:
            f.write(struct.pack("!IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 229))
            for i, p in enumerate((buPacket, baPacket)):
                f.write(struct.pack("!IIII", 1700000000 + i, 0, len(p), len(p)) + p)
        fields = ["ipv6.src", "ipv6.dst", "ipv6.opt.mipv6.home_address",
                  "ipv6.routing.type", "ipv6.routing.segleft",
                  "ipv6.routing.mipv6.home_address", "mip6.mhtype", "mip6.bu.seqnr",
                  "mip6.bu.a_flag", "mip6.bu.h_flag", "mip6.bu.p_flag",
                  "mip6.mnid.identifier", "mip6.ba.status", "mip6.ba.seqnr",
                  "mip6.ba.lifetime", "_ws.malformed", "_ws.expert.message"]
        command = [TSHARK, "-n", "-r", path, "-T", "fields", "-E", "separator=|"]
        for field in fields:
            command += ["-e", field]
        out = subprocess.run(command, capture_output=True, text=True, timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr)
        bu, ba = [dict(zip(fields, line.split("|"))) for line in out.stdout.splitlines()]
        self.assertEqual(
            (bu["ipv6.src"], bu["ipv6.opt.mipv6.home_address"], bu["mip6.mhtype"],
             bu["mip6.bu.seqnr"], bu["mip6.mnid.identifier"]),
            (str(COA), str(HOA), "5", "7", "mn1@example.net"))
        self.assertEqual([bu[f] in ("1", "True") for f in
                          ("mip6.bu.a_flag", "mip6.bu.h_flag", "mip6.bu.p_flag")],
                         [True, True, False])
        self.assertEqual(
            (ba["ipv6.dst"], ba["ipv6.routing.type"], ba["ipv6.routing.segleft"],
             ba["ipv6.routing.mipv6.home_address"], ba["mip6.mhtype"],
             ba["mip6.ba.status"], ba["mip6.ba.seqnr"], ba["mip6.ba.lifetime"]),
            (str(COA), "2", "1", str(HOA), "6", "0", "7", "75"))
        for row in (bu, ba):
            self.assertEqual((row["_ws.malformed"], row["_ws.expert.message"]), ("", ""))
