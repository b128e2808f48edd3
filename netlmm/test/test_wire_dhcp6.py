"""The DHCPv6 codec: known values, truncation, and scapy as a second opinion."""

from ipaddress import IPv6Address

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from netlmm.wire import dhcp6
from netlmm.wire.dhcp6 import (
    ClientId, ElapsedTime, IaAddress, IaNa, InterfaceId, Message, OptionRequest, Preference,
    RapidCommit, RelayMessage, RelayMessageOption, ServerId, StatusCode, UnknownOption,
    decode, encode,
)
from netlmm.wire.errors import DecodeError, EncodeError

from netlmm.test.scapytools import MISSING as _SCAPY_SKIP, scapyModule

# Not installed: the scapy tests skip; installed but broken: this import fails.
_scapy = scapyModule("scapy.layers.dhcp6")

MAC = bytes.fromhex("02000000aa01")
DUID = dhcp6.duidLL(MAC)

SOLICIT = Message(dhcp6.SOLICIT, 0x123456, [
    ClientId(DUID), RapidCommit(), ElapsedTime(5), IaNa(7)])
#: scapy's encoding of the same Solicit (see ScapyTests).
SOLICIT_BYTES = bytes.fromhex(
    "01123456" "0001000a" "0003000102000000aa01" "000e0000" "000800020005"
    "0003000c" "00000007" "00000000" "00000000")


class KnownValueTests(SynchronousTestCase):

    def test_solicit(self):
        self.assertEqual(encode(SOLICIT), SOLICIT_BYTES)
        self.assertEqual(decode(SOLICIT_BYTES), SOLICIT)
        self.assertEqual(decode(SOLICIT_BYTES).clientDuid, DUID)
        self.assertEqual(decode(SOLICIT_BYTES).name, "Solicit")

    def test_relayForward(self):
        relay = RelayMessage(dhcp6.RELAY_FORW, 0, "2001:db8:1::", "fe80::1",
                             [InterfaceId(b"acc0"), RelayMessageOption(SOLICIT)])
        data = encode(relay)
        self.assertEqual(data[:34], bytes.fromhex(
            "0c00" "20010db8000100000000000000000000" "fe800000000000000000000000000001"))
        self.assertEqual(data[34:42], bytes.fromhex("00120004") + b"acc0")
        self.assertEqual(data[42:46], bytes.fromhex("0009") + len(SOLICIT_BYTES).to_bytes(2, "big"))
        back = decode(data)
        self.assertEqual(back, relay)
        self.assertEqual(back.interfaceId, b"acc0")
        self.assertEqual(decode(back.relayed), SOLICIT)

    def test_replyWithAddress(self):
        reply = Message(dhcp6.REPLY, 1, [
            ServerId(bytes.fromhex("000100012a2b2c2d020000000001")), ClientId(DUID),
            IaNa(7, 3, 5, [IaAddress("2001:db8:1::100", 60, 120),
                           StatusCode(0, "all good")]),
            Preference(255), OptionRequest([23, 24]), UnknownOption(23, b"\x01\x02")])
        data = encode(reply)
        self.assertEqual(decode(data), reply)
        pairs = dhcp6.iaAddresses(decode(data))
        self.assertEqual([a.address for _, a in pairs], [IPv6Address("2001:db8:1::100")])
        self.assertEqual(decode(data).option(IaNa).status.name, "Success")

    def test_failures(self):
        """Addresses with zero lifetime or under a failure status are not assigned."""
        reply = Message(dhcp6.REPLY, 1, [
            IaNa(1, 0, 0, [StatusCode(dhcp6.NO_ADDRS_AVAIL, "none")]),
            IaNa(2, 0, 0, [IaAddress("2001:db8:1::1", 0, 0)]),
            IaNa(3, 0, 0, [IaAddress("2001:db8:1::2", 1, 1, [StatusCode(2)])])])
        self.assertEqual(dhcp6.iaAddresses(decode(encode(reply))), [])
        self.assertEqual(len(dhcp6.iaAddresses(reply, success=False)), 2)

    def test_unknownKeptByteForByte(self):
        data = bytes.fromhex("07000001" "abcd0003010203" "00180000")
        self.assertEqual(encode(decode(data)), data)
        self.assertEqual(decode(data).options[0], UnknownOption(0xABCD, b"\x01\x02\x03"))

    def test_duids(self):
        self.assertEqual(dhcp6.macOfDuid(DUID), MAC)
        llt = bytes.fromhex("00010001" "2a2b2c2d") + MAC
        self.assertEqual(dhcp6.macOfDuid(llt), MAC)
        self.assertIsNone(dhcp6.macOfDuid(bytes.fromhex("0002000000090102")))
        self.assertEqual(dhcp6.macOfLinkLocal("fe80::ff:fe00:aa01"), MAC)
        self.assertIsNone(dhcp6.macOfLinkLocal("fe80::1"))
        self.assertIsNone(dhcp6.macOfLinkLocal("2001:db8::ff:fe00:aa01"))


class BadInputTests(SynchronousTestCase):

    def assertTruncations(self, message, boundaries):
        """
        Every prefix of C{message}'s encoding is refused with a DecodeError,
        except those ending at an option boundary: C{boundaries} maps each
        such length to the shorter message it decodes to.
        """
        data = encode(message)
        outcomes = {}
        for n in range(len(data)):
            try:
                outcomes[n] = decode(data[:n])
            except DecodeError as e:
                self.assertTrue(str(e), n)
                outcomes[n] = DecodeError
        self.assertEqual({n: m for n, m in outcomes.items() if m is not DecodeError},
                         boundaries)
        self.assertEqual(len(outcomes), len(data))
        self.assertEqual(decode(data), message)

    def test_truncationRelay(self):
        """
        A Relay-reply: shorter than its 34-octet fixed part, or cut inside an
        option, is a DecodeError; at the two option boundaries it is the
        relay message with the options before the cut.
        """
        options = [InterfaceId(b"x"), RelayMessageOption(SOLICIT)]
        relay = RelayMessage(dhcp6.RELAY_REPL, 1, "2001:db8:1::", "fe80::1", options)
        self.assertTruncations(relay, {
            34: RelayMessage(dhcp6.RELAY_REPL, 1, "2001:db8:1::", "fe80::1", []),
            39: RelayMessage(dhcp6.RELAY_REPL, 1, "2001:db8:1::", "fe80::1", options[:1])})

    def test_truncationSolicit(self):
        """The same for a client message, whose fixed part is 4 octets."""
        cuts = {4: 0, 18: 1, 22: 2, 28: 3}
        self.assertTruncations(SOLICIT, {
            n: Message(dhcp6.SOLICIT, 0x123456, SOLICIT.options[:k])
            for n, k in cuts.items()})

    def test_shortMessages(self):
        """Too short for the fixed part: the error says how short."""
        for data, text in ((b"", "empty DHCPv6 message"),
                           (b"\x01\x00\x00", "DHCPv6 message: 3 octets, at least 4 needed"),
                           (bytes([dhcp6.RELAY_FORW]) + bytes(32),
                            "relay message: 33 octets, at least 34 needed"),
                           (SOLICIT_BYTES[:-1],
                            "option 3 at offset 24: length 12, only 11 octets left")):
            e = self.assertRaises(DecodeError, decode, data)
            self.assertEqual(str(e), text)

    def test_badOptionBodies(self):
        for body in ("0001" "0002" "0003",          # DUID too short
                     "0003" "0004" "00000001",      # IA_NA short
                     "000e" "0001" "00",            # rapid commit with data
                     "0008" "0001" "00",            # elapsed time short
                     "0006" "0003" "000100",        # ORO odd
                     "000d" "0001" "00"):           # status short
            self.assertRaises(DecodeError, decode, bytes.fromhex("07000001" + body))

    def test_depth(self):
        inner = b""
        for _ in range(10):
            inner = (bytes.fromhex("0003") + (12 + len(inner)).to_bytes(2, "big")
                     + bytes(12) + inner)
        self.assertRaises(DecodeError, decode, bytes.fromhex("07000001") + inner)

    def test_encodeRanges(self):
        self.assertRaises(EncodeError, Message, 1, 1 << 24)
        self.assertRaises(EncodeError, Message, dhcp6.RELAY_FORW, 1)
        self.assertRaises(EncodeError, RelayMessage, 1, 0, "::", "::")
        self.assertRaises(EncodeError, IaNa, -1)
        self.assertRaises(EncodeError, ClientId, b"\x00")
        self.assertRaises(EncodeError, IaAddress, "nope", 1, 1)
        self.assertRaises(EncodeError, Message, 1, 1, ["not an option"])

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=200))
    def test_fuzz(self, data):
        """Arbitrary bytes decode or raise DecodeError, nothing else; decoded ones round-trip."""
        try:
            m = decode(data)
        except DecodeError:
            return
        self.assertEqual(decode(encode(m)), m)


class ScapyTests(SynchronousTestCase):
    """scapy.layers.dhcp6 as an independent encoder and decoder."""

    skip = _SCAPY_SKIP

    def test_solicitFromScapy(self):
        p = (_scapy.DHCP6_Solicit(trid=0x123456)
             / _scapy.DHCP6OptClientId(duid=_scapy.DUID_LL(lladdr="02:00:00:00:aa:01"))
             / _scapy.DHCP6OptRapidCommit() / _scapy.DHCP6OptElapsedTime(elapsedtime=5)
             / _scapy.DHCP6OptIA_NA(iaid=7, T1=0, T2=0))
        self.assertEqual(decode(bytes(p)), SOLICIT)

    def test_relayToScapy(self):
        relay = RelayMessage(dhcp6.RELAY_FORW, 2, "2001:db8:1::", "fe80::ff:fe00:aa01",
                             [InterfaceId(b"acc0"), RelayMessageOption(SOLICIT)])
        p = _scapy.DHCP6_RelayForward(encode(relay))
        self.assertEqual(p.hopcount, 2)
        self.assertEqual(p.linkaddr, "2001:db8:1::")
        self.assertEqual(p.peeraddr, "fe80::ff:fe00:aa01")
        self.assertEqual(p[_scapy.DHCP6OptIfaceId].ifaceid, b"acc0")
        self.assertEqual(p[_scapy.DHCP6_Solicit].trid, 0x123456)
        self.assertEqual(p[_scapy.DHCP6OptClientId].duid.lladdr, "02:00:00:00:aa:01")

    def test_replyFromScapy(self):
        p = (_scapy.DHCP6_Reply(trid=9)
             / _scapy.DHCP6OptServerId(duid=_scapy.DUID_LL(lladdr="02:00:00:00:01:01"))
             / _scapy.DHCP6OptIA_NA(iaid=7, T1=3, T2=5, ianaopts=[
                 _scapy.DHCP6OptIAAddress(addr="2001:db8:1::100", preflft=60, validlft=120)])
             / _scapy.DHCP6OptStatusCode(statuscode=0, statusmsg="ok"))
        m = decode(bytes(p))
        self.assertEqual(m.type, dhcp6.REPLY)
        self.assertEqual(m.transaction, 9)
        self.assertEqual(m.status, StatusCode(0, "ok"))
        self.assertEqual(m.option(IaNa).addresses,
                         [IaAddress("2001:db8:1::100", 60, 120)])
        self.assertEqual(encode(m), bytes(p))
