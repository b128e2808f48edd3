"""
The DHCPv4 codec: known values, every truncation, bad option bodies, and
scapy and tshark as independent encoders and decoders.
"""

import os
import shutil
import struct
import subprocess
from ipaddress import IPv4Address

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from netlmm.wire import dhcp4
from netlmm.wire.dhcp4 import Message, Option, addresses, decode, encode, messageType, \
    seconds, subnetMask
from netlmm.wire.errors import DecodeError, EncodeError

try:
    from scapy.layers import dhcp as _scapy
    _SCAPY_SKIP = None
except ModuleNotFoundError as e:  # pragma: no cover - depends on the environment
    if not (e.name or "").startswith("scapy"):
        raise
    _scapy = None
    _SCAPY_SKIP = f"scapy is not installed ({e}); cannot cross-check"

MAC = bytes.fromhex("02000000aa01")
XID = 0x3903F326

DISCOVER = Message(dhcp4.BOOTREQUEST, XID, MAC, flags=dhcp4.BROADCAST, options=[
    messageType(dhcp4.DISCOVER),
    Option(dhcp4.PARAMETER_LIST, bytes((1, 3, 6, 26))),
    addresses(dhcp4.REQUESTED_ADDRESS, "10.20.0.5")])

#: The same Discover, written out by hand from RFC 2131 section 2 and RFC 2132.
DISCOVER_BYTES = (
    bytes((1, 1, 6, 0)) + struct.pack("!IHH", XID, 0, 0x8000)
    + bytes(16) + MAC + bytes(10) + bytes(64) + bytes(128)
    + bytes((99, 130, 83, 99))
    + bytes((53, 1, 1)) + bytes((55, 4, 1, 3, 6, 26)) + bytes((50, 4, 10, 20, 0, 5))
    + bytes((255,)))

ACK = Message(dhcp4.BOOTREPLY, XID, MAC, yiaddr="10.20.0.5", options=[
    messageType(dhcp4.ACK), addresses(dhcp4.SERVER_ID, "10.20.0.1"),
    seconds(dhcp4.LEASE_TIME, 3600), seconds(dhcp4.RENEWAL_TIME, 1800),
    seconds(dhcp4.REBINDING_TIME, 3150), subnetMask(24),
    addresses(dhcp4.ROUTER, "10.20.0.1")])


class KnownValueTests(SynchronousTestCase):

    def test_discover(self):
        """Encoding adds End and pads to the 300 octets of BOOTP (RFC 1542)."""
        wire = encode(DISCOVER)
        self.assertEqual(wire, DISCOVER_BYTES + bytes(300 - len(DISCOVER_BYTES)))
        self.assertEqual(decode(DISCOVER_BYTES), DISCOVER)
        self.assertEqual(decode(wire), DISCOVER)
        m = decode(DISCOVER_BYTES)
        self.assertEqual((m.type, m.name, m.broadcast, m.clientId),
                         (dhcp4.DISCOVER, "DHCPDISCOVER", True, b"\x01" + MAC))
        self.assertEqual(m.address(dhcp4.REQUESTED_ADDRESS), IPv4Address("10.20.0.5"))

    def test_ack(self):
        m = decode(encode(ACK))
        self.assertEqual(m, ACK)
        self.assertEqual((m.yiaddr, m.address(dhcp4.SERVER_ID), m.seconds(dhcp4.LEASE_TIME),
                          m.option(dhcp4.SUBNET_MASK)),
                         (IPv4Address("10.20.0.5"), IPv4Address("10.20.0.1"), 3600,
                          bytes((255, 255, 255, 0))))

    def test_subnetMask(self):
        self.assertEqual([subnetMask(n).data.hex() for n in (0, 8, 23, 32)],
                         ["00000000", "ff000000", "fffffe00", "ffffffff"])

    def test_clientIdOption(self):
        """A Client-identifier names the client instead of htype + chaddr."""
        m = Message(1, 1, MAC, options=[Option(dhcp4.CLIENT_ID, b"\xff" + b"x" * 8)])
        self.assertEqual(decode(encode(m)).clientId, b"\xff" + b"x" * 8)

    def test_longOptionSplit(self):
        """RFC 3396: a 300-octet option goes as 255 + 45 and comes back joined."""
        long = Option(200, bytes(range(256)) + bytes(44))
        wire = encode(Message(1, 1, MAC, options=[long]))
        body = wire[240:]
        self.assertEqual((body[0], body[1], body[257], body[258]), (200, 255, 200, 45))
        self.assertEqual(decode(wire).options, (long,))

    def test_repeatedOptionsJoined(self):
        """Two parts of one option (RFC 3396) decode to one, in first-seen order."""
        wire = (DISCOVER_BYTES[:240] + bytes((12, 2)) + b"ab" + bytes((53, 1, 3))
                + bytes((12, 1)) + b"c" + bytes((255,)))
        m = decode(wire)
        self.assertEqual(m.options, (Option(12, b"abc"), Option(53, b"\x03")))

    def test_overload(self):
        """Options in 'file' and 'sname' (Option Overload 3) are read; the fields are empty."""
        file = bytes((51, 4, 0, 0, 1, 0, 255))
        sname = bytes((54, 4, 10, 0, 0, 1, 255))
        wire = bytearray(DISCOVER_BYTES[:-1] + bytes((52, 1, 3, 255)))
        wire[44:44 + len(sname)] = sname
        wire[108:108 + len(file)] = file
        m = decode(bytes(wire))
        self.assertEqual((m.seconds(dhcp4.LEASE_TIME), m.address(dhcp4.SERVER_ID),
                          m.option(dhcp4.OVERLOAD), m.sname, m.file),
                         (256, IPv4Address("10.0.0.1"), None, b"", b""))
        self.assertEqual([o.code for o in m.options], [53, 55, 50, 51, 54])

    def test_names(self):
        self.assertEqual(Message(1, 1, MAC).name, "BOOTP")
        self.assertIsNone(Message(1, 1, MAC).type)


class BadInputTests(SynchronousTestCase):

    def test_truncation(self):
        """
        Every prefix of a valid message is refused: shorter than the fixed
        part and cookie (240), or options cut or without End. Only the
        padding after End may go.
        """
        wire = encode(DISCOVER)
        end = len(DISCOVER_BYTES)
        for n in range(len(wire)):
            if n >= end:
                self.assertEqual(decode(wire[:n]), DISCOVER, n)
                continue
            e = self.assertRaises(DecodeError, decode, wire[:n])
            if n < 240:
                self.assertEqual(str(e), f"DHCP message: {n} octets, at least 240 needed")

    def test_errors(self):
        """Each refusal says what is wrong."""
        body = DISCOVER_BYTES[:240]
        cases = [
            (bytes((3,)) + DISCOVER_BYTES[1:], "op 3 is neither BOOTREQUEST (1) nor BOOTREPLY (2)"),
            (DISCOVER_BYTES[:2] + bytes((17,)) + DISCOVER_BYTES[3:],
             "hlen 17 is more than the 16 octets of chaddr"),
            (DISCOVER_BYTES[:236] + b"\x63\x82\x53\x64" + DISCOVER_BYTES[240:],
             "no DHCP magic cookie (got 63825364)"),
            (body + bytes((53, 1, 1)), "options: no End option (255) after the options"),
            (body + bytes((53,)), "options: option 53 at offset 0 has no length octet"),
            (body + bytes((53, 3, 1)),
             "options: option 53 at offset 0: length 3, only 1 octets left"),
            (body + bytes((53, 1, 9, 255)), "option 53 (DHCP Message Type) 9 is not 1..8"),
            (body + bytes((53, 2, 1, 1, 255)),
             "option 53 (DHCP Message Type) is 2 octets, expected 1"),
            (body + bytes((1, 3, 255, 255, 0, 255)),
             "option 1 (Subnet Mask) is 3 octets, expected 4"),
            (body + bytes((3, 6)) + bytes(6) + bytes((255,)),
             "option 3 (Router) is 6 octets, expected 4..252 in steps of 4"),
            (body + bytes((54, 0, 255)), "option 54 (Server Identifier) is 0 octets, expected 4"),
            (body + bytes((61, 1, 1, 255)),
             "option 61 (Client-identifier) is 1 octets, expected 2..255"),
            (body + bytes((57, 2, 1, 0, 255)),
             "option 57 (Maximum DHCP Message Size) 256 < 576"),
            (body + bytes((52, 1, 4, 255)), "option 52 (Option Overload) 4 is not 1..3"),
            (body + bytes((52, 1, 1, 255)),
             "file field (overloaded): no End option (255) after the options"),
        ]
        for data, text in cases:
            e = self.assertRaises(DecodeError, decode, data)
            self.assertEqual(str(e), text)

    def test_encodeRanges(self):
        for f, text in [
                (lambda: Message(3, 1, MAC), "op: expected 1 (BOOTREQUEST) or 2 (BOOTREPLY)"),
                (lambda: Message(1, 1 << 32, MAC), "xid: expected an integer"),
                (lambda: Message(1, 1, bytes(17)), "chaddr: expected at most 16 octets"),
                (lambda: Message(1, 1, MAC, yiaddr="2001:db8::1"), "yiaddr: expected an IPv4"),
                (lambda: Message(1, 1, MAC, options=["x"]), "not an Option"),
                (lambda: Message(1, 1, MAC, options=[messageType(1), messageType(3)]),
                 "option 53 given twice"),
                (lambda: Option(0, b""), "option code: expected 1..254"),
                (lambda: Option(255, b""), "option code: expected 1..254"),
                (lambda: Option(1, b"\0"), "option 1 (Subnet Mask) is 1 octets"),
                (lambda: messageType(9), "DHCP message type: expected 1..8"),
                (lambda: subnetMask(33), "prefix length: expected 0..32"),
                (lambda: seconds(51, -1), "option 51: expected 0..4294967295"),
                (lambda: encode("nope"), "not a DHCP message")]:
            e = self.assertRaises(EncodeError, f)
            self.assertIn(text, str(e))

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=120))
    def test_fuzzOptions(self, tail):
        """Any option bytes after a valid fixed part decode or raise DecodeError; round-trip."""
        try:
            m = decode(DISCOVER_BYTES[:240] + tail)
        except DecodeError:
            return
        self.assertEqual(decode(encode(m)), m)


class ScapyTests(SynchronousTestCase):
    """scapy.layers.dhcp as an independent encoder and decoder."""

    skip = _SCAPY_SKIP

    def test_fromScapy(self):
        p = (_scapy.BOOTP(op=1, xid=XID, flags=0x8000, chaddr=MAC)
             / _scapy.DHCP(options=[("message-type", "discover"),
                                    ("param_req_list", [1, 3, 6, 26]),
                                    ("requested_addr", "10.20.0.5"), "end"]))
        self.assertEqual(decode(bytes(p)), DISCOVER)

    def test_toScapy(self):
        p = _scapy.BOOTP(encode(ACK))
        self.assertEqual((p.op, p.xid, p.yiaddr, p.chaddr[:6]), (2, XID, "10.20.0.5", MAC))
        options = dict(o for o in p[_scapy.DHCP].options if isinstance(o, tuple))
        self.assertEqual(options, {
            "message-type": 5, "server_id": "10.20.0.1", "lease_time": 3600,
            "renewal_time": 1800, "rebinding_time": 3150, "subnet_mask": "255.255.255.0",
            "router": "10.20.0.1"})


class TsharkTests(SynchronousTestCase):
    """tshark's DHCP dissector reads what we encode, field by field, with no warnings."""

    def setUp(self):
        if shutil.which("tshark") is None:
            raise SkipTest("needs tshark")
        if _scapy is None:
            raise SkipTest(_SCAPY_SKIP)

    def test_ack(self):
        from scapy.all import Ether, IP, UDP, wrpcap
        path = os.path.abspath(self.mktemp()) + ".pcap"
        wrpcap(path, [Ether(src="02:00:00:00:01:01", dst=MAC)
                      / IP(src="10.20.0.1", dst="10.20.0.5")
                      / UDP(sport=67, dport=68) / encode(ACK)])
        fields = ["dhcp.type", "dhcp.id", "dhcp.ip.your", "dhcp.hw.mac_addr",
                  "dhcp.option.dhcp", "dhcp.option.dhcp_server_id",
                  "dhcp.option.ip_address_lease_time", "dhcp.option.renewal_time_value",
                  "dhcp.option.rebinding_time_value", "dhcp.option.subnet_mask",
                  "dhcp.option.router", "dhcp.option.end"]
        out = subprocess.run(["tshark", "-r", path, "-T", "fields", "-E", "separator=;"]
                             + [a for f in fields for a in ("-e", f)],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.stdout.strip().split(";"), [
            "2", hex(XID), "10.20.0.5", "02:00:00:00:aa:01", "5", "10.20.0.1", "3600",
            "1800", "3150", "255.255.255.0", "10.20.0.1", "255"])
        expert = subprocess.run(["tshark", "-r", path, "-q", "-z", "expert"],
                                capture_output=True, text=True, timeout=60)
        self.assertNotIn("Warning", expert.stdout)
        self.assertNotIn("Error", expert.stdout)
