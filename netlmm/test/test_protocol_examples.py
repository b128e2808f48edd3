"""
The annotated examples of doc/protocol.md (1.5, 1.6) are true: their octets
are what the encoder makes of the messages they describe, tshark reads them
without complaint, and an LMA configured as the page says answers each PBU
with exactly the PBA shown.
"""

import os
import re
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from netlmm.core.effects import SendMH
from netlmm.core.lma import AddressPool, LmaCore, PrefixPool
from netlmm.test.test_wire_mh import _TSHARK, _ipv6, tsharkRows
from netlmm.wire import mh

MAG = IPv6Address("2001:db8:a::1")
PMIP = IPv6Address("2001:db8:c::1")
LMA = IPv6Address("2001:db8:ffff::1")
STAMP = mh.Timestamp.fromSeconds(1767225600.5)
MN = mh.MobileNodeIdentifier(b"mn1@example.net")
LLID = mh.MobileNodeLinkLayerIdentifier(bytes.fromhex("020000aabb01"))
P64 = mh.HomeNetworkPrefix("2001:db8:100::", 64)

#: What each example block of the page is (RFC 5213 PBU and PBA, 1.5; the
#: netlmm dialect with a per-mobile prefix, 1.6).
MESSAGES = {
    "rfc5213-pbu": mh.BindingUpdate(42, mh.BU_A | mh.BU_P, 15, [
        MN, mh.HomeNetworkPrefix("::", 0), mh.HandoffIndicator(1),
        mh.AccessTechnologyType(4), LLID, STAMP, mh.IPv4HomeAddressRequest()]),
    "rfc5213-pba": mh.BindingAcknowledgement(0, mh.BA_P, 42, 15, [
        mh.BindingRefreshAdvice(11), MN, P64, mh.HandoffIndicator(1),
        mh.AccessTechnologyType(4), LLID, STAMP,
        mh.IPv4HomeAddressReply(0, "192.0.2.2", 24),
        mh.IPv4DefaultRouterAddress("192.0.2.1"), mh.IPv4DhcpSupportMode(True)]),
    "netlmm-pbu": mh.BindingUpdate(7, mh.BU_A | mh.BU_H | mh.BU_P, 150, [
        mh.HomeNetworkPrefix("::", 64), mh.AlternateCareOfAddress("2001:db8:ff::1"),
        mh.MobileNodeIdentifier(b"mn1")]),
    "netlmm-pba": mh.BindingAcknowledgement(0, mh.BA_P, 7, 150, [
        mh.BindingRefreshAdvice(112), P64, mh.MobileNodeIdentifier(b"mn1")]),
}


def protocolPage():
    """doc/protocol.md of the source tree, found from the working directory up."""
    env = os.environ.get("NETLMM_SOURCE")
    starts = [Path(env)] if env else []
    starts += [Path.cwd(), *Path.cwd().parents]
    for start in starts:
        candidate = start / "doc" / "protocol.md"
        if candidate.exists():
            return candidate.read_text()
    raise SkipTest("doc/protocol.md not found: run the tests from the source tree")


def examples(text):
    """
    {name: octets} of the page's blocks: each starts after a line
    '<!-- example: NAME -->', one line per field or option, the octets in
    hex before '|', the annotation after it.
    """
    found = {}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"<!-- example: ([\w-]+) -->", line)
        if not m:
            continue
        octets = bytearray()
        for body in lines[i + 1:]:
            if not body.startswith("    "):
                break
            hexPart = body.split("|", 1)[0].split()
            octets += bytes(int(h, 16) for h in hexPart)
        found[m.group(1)] = bytes(octets)
    return found


class ProtocolExampleTests(SynchronousTestCase):

    def setUp(self):
        self.blocks = examples(protocolPage())

    def test_everyExampleIsThere(self):
        """Section 1's blocks; section 2's ('pmip-...') are test_pmip_wire's."""
        self.assertEqual(sorted(n for n in self.blocks if not n.startswith("pmip-")),
                         sorted(MESSAGES))

    def test_octets(self):
        """Each block is exactly the encoder's octets of its message, and back."""
        for name, message in MESSAGES.items():
            self.assertEqual(self.blocks[name].hex(" "), mh.encodeMessage(message).hex(" "),
                             name)
            self.assertEqual(mh.decodeMessage(self.blocks[name]), message, name)

    def answer(self, lma, name, source, now):
        (send,) = lma.receive(mh.decodeMessage(self.blocks[name]), source, now)[-1:]
        self.assertIs(type(send), SendMH)
        self.assertEqual(send.destination, source)
        return send.message

    def test_rfc5213Answer(self):
        """The LMA of 1.5 answers the example PBU with the example PBA."""
        router = IPv4Address("192.0.2.1")
        lma = LmaCore("2001:db8:1::/64", ["2001:db8:a::/48"],
                      prefixPool=PrefixPool("2001:db8:100::/48"),
                      ipv4Pool=AddressPool("192.0.2.1", "192.0.2.254", exclude=[router]),
                      ipv4Router=router, ipv4PrefixLength=24, ipv4DhcpServer=True)
        ba = self.answer(lma, "rfc5213-pbu", MAG, STAMP.seconds)
        self.assertEqual(mh.encodeMessage(ba), self.blocks["rfc5213-pba"])

    def test_netlmmAnswer(self):
        """The LMA of 1.6 answers the example PBU with the example PBA."""
        lma = LmaCore("2001:db8:1::/64", ["2001:db8:c::/64"],
                      prefixPool=PrefixPool("2001:db8:100::/48"))
        ba = self.answer(lma, "netlmm-pbu", PMIP, 0)
        self.assertEqual(mh.encodeMessage(ba), self.blocks["netlmm-pba"])

    def test_tshark(self):
        """tshark reads the four examples with no warning, the fields as annotated."""
        if _TSHARK is None:
            raise SkipTest("tshark is not installed")
        names = ["rfc5213-pbu", "rfc5213-pba", "netlmm-pbu", "netlmm-pba"]
        packets = []
        for name in names:
            src, dst = (MAG, LMA) if name.endswith("pbu") else (LMA, MAG)
            packets.append(_ipv6(src, dst, mh.encodeMessage(mh.decodeMessage(
                self.blocks[name]), src, dst)))
        fields = ["mip6.mhtype", "mip6.nemo.mnp.pfl", "mip6.nemo.mnp.mnp", "mip6.hi",
                  "mip6.att", "mip6.ipv4ha.ha", "mip6.ipv4dra.dra", "mip6.mnid.identifier",
                  "_ws.expert.message", "_ws.malformed"]
        rows = tsharkRows(self, packets, fields)
        self.assertEqual([(r["mip6.mhtype"], r["mip6.nemo.mnp.pfl"], r["mip6.hi"],
                           r["mip6.att"], r["mip6.ipv4ha.ha"], r["mip6.ipv4dra.dra"],
                           r["mip6.mnid.identifier"]) for r in rows], [
            ("5", "0", "1", "4", "0.0.0.0", "", "mn1@example.net"),
            ("6", "64", "1", "4", "192.0.2.2", "192.0.2.1", "mn1@example.net"),
            ("5", "64", "", "", "", "", "mn1"),
            ("6", "64", "", "", "", "", "mn1"),
        ])
        self.assertEqual(IPv6Address(rows[1]["mip6.nemo.mnp.mnp"]),
                         IPv6Address("2001:db8:100::"))
        for r in rows:
            self.assertEqual((r["_ws.expert.message"], r["_ws.malformed"]), ("", ""))
