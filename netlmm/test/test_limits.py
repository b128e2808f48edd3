"""
The length limits of doc/protocol.md 3.8, walked through every handler where
input enters: the MAG's control socket, the MAG channel at the PMIP client
and the PMIP client's Mobility Header socket. Each field is tried with its
largest legal value (handled as usual) and its smallest illegal one (a clear
refusal); trial fails any test in which an exception was logged, so none
escapes a handler unnoticed.
"""

from ipaddress import IPv6Address, IPv6Network

from twisted.internet.address import IPv6Address as TwistedAddress
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import Logger, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from netlmm.access.control import ControlDetector
from netlmm.core.pmip import PmipCore
from netlmm.service.pmip import PmipService
from netlmm.wire import mh
from netlmm.wire.control import (
    MAX_MN_ID, AddressMode, Notification, Result, decodeControl,
)

LMA = IPv6Address("2001:db8::5")
MAG = "2001:db8:ff::1"
MAG_HEX = "20010db8 00ff0000 00000000 00000001"


def h(text):
    return bytes.fromhex("".join(text.split()))


class FakeMag:
    """What the control detector drives: records attachments and detachments."""

    def __init__(self):
        self.attachedEvents = []
        self.detachedIds = []
        self.core = type("Core", (), {"attachments": {}})()

    def attached(self, event):
        self.attachedEvents.append(event)

    def detached(self, mnId):
        self.detachedIds.append(mnId)


class ControlSocketTests(SynchronousTestCase):
    """`netlmm mag-ctl` commands on the MAG's control socket."""

    def setUp(self):
        self.mag = FakeMag()
        self.detector = ControlDetector(Clock(), "/nonexistent")
        self.detector.mag = self.mag

    def command(self, line):
        """The reply to one command line (octets), as the socket sends it."""
        from netlmm.access.control import _CommandProtocol
        factory = Factory.forProtocol(_CommandProtocol)
        factory.detector = self.detector
        proto = factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        proto.dataReceived(line + b"\n")
        self.assertTrue(transport.disconnecting)
        return transport.value().decode("utf-8")

    def test_largestLegal(self):
        longest = "\u00e9" * (MAX_MN_ID // 2)
        self.assertEqual(self.command(f"attach {longest}".encode()),
                         f"ok attached {longest}\n")
        self.assertEqual(self.command(b"detach " + b"m" * 64), "ok detached " + "m" * 64 + "\n")
        self.assertEqual([e.mnId for e in self.mag.attachedEvents], [longest.encode()])
        self.assertEqual(self.mag.detachedIds, [b"m" * 64])

    def test_tooLong(self):
        for verb in (b"attach", b"detach"):
            self.assertEqual(
                self.command(verb + b" " + b"m" * 65),
                "error MN identifier <65 octets: " + "6d" * 64 + "...> is 65 octets; "
                "1..64 are allowed\n")
        self.assertEqual((self.mag.attachedEvents, self.mag.detachedIds), ([], []))
        self.flushLoggedErrors()

    def test_controlCharacters(self):
        self.assertEqual(self.command(b"attach mn\x00x"),
                         "error MN identifier <4 octets: 6d6e0078> has control "
                         "character U+0000 at character 2\n")
        self.assertEqual(self.command(b"detach mn\x1bx"),
                         "error MN identifier <4 octets: 6d6e1b78> has control "
                         "character U+001B at character 2\n")
        self.assertEqual(self.command("attach mn\u0085".encode()),
                         "error MN identifier <4 octets: 6d6ec285> has control "
                         "character U+0085 at character 2\n")
        self.assertEqual((self.mag.attachedEvents, self.mag.detachedIds), ([], []))

    def test_notUtf8(self):
        self.assertEqual(self.command(b"attach mn\xff"),
                         "error the command is not valid UTF-8 (octet 9)\n")
        self.assertEqual(self.mag.attachedEvents, [])

    def test_badPhoa(self):
        self.assertEqual(self.command(b"attach mn1 not-an-address"),
                         "error pHoA 'not-an-address' is not an IPv6 address\n")


class FakeMHPort:
    """Stands in for the PMIP client's MH socket: records what it sends."""

    kind = "udp"

    def __init__(self):
        self.sent = []

    def send(self, message, destination, port=None):
        self.sent.append((message, destination))

    def startListening(self):
        pass

    def stopListening(self):
        pass


class ServiceMixin:
    """A PMIP client service with a fake MH socket and one MAG connection."""

    def setUp(self):
        self.clock = Clock()
        self.core = PmipCore(LMA, log=Logger(namespace="netlmm.pmip"))
        self.service = PmipService(self.clock, self.core, ("::1", 0), ("::1", 0), "udp",
                                   5436, ["::/0"])
        self.service.port = FakeMHPort()
        self.transport = StringTransport(
            peerAddress=TwistedAddress("TCP", "2001:db8:ff::1", 40000))
        self.proto = self.service.factory.buildProtocol(None)
        self.proto.makeConnection(self.transport)
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)


class MagChannelTests(ServiceMixin, SynchronousTestCase):
    """Triggers and Detaches at the PMIP client, one field at a time."""

    def exchange(self, octets):
        """Feed a message; the Notifications it got back and the PBUs sent."""
        self.transport.clear()
        before = len(self.service.port.sent)
        self.proto.dataReceived(octets)
        replies, data = [], self.transport.value()
        while data:
            replies.append(decodeControl(data[:data[1]]))
            data = data[data[1]:]
        return replies, self.service.port.sent[before:]

    def trigger(self, txn, mnId=b"mn1", mode=1, options=""):
        """A Trigger's octets, written out by hand, with extra option text."""
        body = (bytes((1, len(mnId))) + mnId + h(f"06 10 {MAG_HEX}")
                + bytes((4, 1, mode)) + h(options))
        return bytes((1, 8 + len(body))) + h("2000") + txn.to_bytes(4, "big") + body

    def assertMalformed(self, octets, txn, why, mnId=None):
        replies, sent = self.exchange(octets)
        self.assertEqual(replies, [Notification(txn, Result.MALFORMED, mnId)])
        self.assertEqual(sent, [])
        self.assertEqual(self.core.mobiles, {})
        logged = [formatEvent(e) for e in self.events]
        self.assertTrue(any(why in line and "2001:db8:ff::1" in line for line in logged),
                        f"{why!r} not logged with the MAG's address: {logged}")

    def assertHandled(self, octets, mnId):
        replies, sent = self.exchange(octets)
        self.assertEqual(replies, [])
        self.assertEqual(len(sent), 1)
        self.assertEqual(sent[0][0].option(mh.MobileNodeIdentifier).identifier, mnId)
        self.setUp()
        return sent[0][0]

    def test_mnId(self):
        self.assertHandled(self.trigger(1, b"m" * 64, 3), b"m" * 64)
        self.assertMalformed(self.trigger(2, b"m" * 65, 3), 2, "65 octets")
        self.assertMalformed(self.trigger(3, b"m\x00", 3), 3, "U+0000")
        self.assertMalformed(self.trigger(4, b"m\xff", 3), 4, "UTF-8")

    def test_addressMode(self):
        """Modes 1..5 are defined; 0 and 6 and up are answered MALFORMED."""
        self.assertHandled(self.trigger(1, mode=1, options="02 10 20010db8 0001 0000 0000 0000 0000 0001"),
                           b"mn1")
        self.assertMalformed(self.trigger(2, mode=0), 2, "address mode 0")
        self.assertMalformed(self.trigger(3, mode=6), 3, "address mode 6")
        self.assertMalformed(self.trigger(4, mode=255), 4, "address mode 255")

    def test_linkLayerId(self):
        self.assertHandled(self.trigger(1, mode=3, options="0a 20" + "ab" * 32), b"mn1")
        self.assertHandled(self.trigger(2, mode=3, options="0a 01 ab"), b"mn1")
        self.assertMalformed(self.trigger(3, mode=3, options="0a 21" + "ab" * 33), 3, "33")
        self.assertMalformed(self.trigger(4, mode=3, options="0a 00"), 4, "not 0")

    def test_accessTechnology(self):
        self.assertHandled(self.trigger(1, mode=3, options="0b 01 ff"), b"mn1")
        self.assertHandled(self.trigger(2, mode=3, options="0b 01 01"), b"mn1")
        self.assertMalformed(self.trigger(3, mode=3, options="0b 01 00"), 3, "reserved")

    def test_ipv4(self):
        self.assertHandled(self.trigger(1, mode=3, options="08 05 20 0a000001"), b"mn1")
        self.assertMalformed(self.trigger(2, mode=3, options="08 05 21 0a000001"), 2, "33")

    def test_detach(self):
        detach = (b"\x03\x60\x20\x00\x00\x00\x00\x09\x01\x40" + b"m" * 64
                  + h(f"06 10 {MAG_HEX}") + h("0a 02 abcd"))
        replies, sent = self.exchange(detach)
        self.assertEqual(replies, [Notification(9, Result.UNKNOWN_MN, b"m" * 64)])
        # The unknown mobile is deregistered at the LMA, in case it holds one.
        self.assertEqual([p[0].option(mh.MobileNodeIdentifier).identifier for p in sent],
                         [b"m" * 64])
        self.core.mobiles.clear()
        tooLong = (b"\x03\x61\x20\x00\x00\x00\x00\x0a\x01\x41" + b"m" * 65
                   + h(f"06 10 {MAG_HEX}") + h("0a 02 abcd"))
        self.assertMalformed(tooLong, 10, "65")

    def test_longestMessage(self):
        """A 255-octet Trigger (extra option padding it out) is handled."""
        head = self.trigger(1, b"m" * 64, 3)
        extra = bytes((200, 255 - len(head) - 2)) + b"x" * (255 - len(head) - 2)
        octets = bytes((1, 255)) + head[2:] + extra
        self.assertEqual(len(octets), 255)
        self.assertHandled(octets, b"m" * 64)

    def test_prefixMode(self):
        """A per-MN prefix Trigger asks the LMA for a prefix (ALL_ZERO ::/0)."""
        pbu = self.assertHandled(self.trigger(1, mode=AddressMode.PREFIX), b"mn1")
        self.assertEqual(pbu.option(mh.HomeNetworkPrefix), mh.HomeNetworkPrefix("::", 0))
        pbu = self.assertHandled(self.trigger(
            2, mode=AddressMode.PREFIX, options="07 11 40 20010db8 00010000 00000000 00000000"),
            b"mn1")
        self.assertEqual(pbu.option(mh.HomeNetworkPrefix),
                         mh.HomeNetworkPrefix("2001:db8:1::", 64))
        self.assertMalformed(self.trigger(
            4, mode=AddressMode.PREFIX, options="07 11 41 20010db8 00010000 00000000 00000000"),
            4, "longer than /64", b"mn1")
        self.assertMalformed(self.trigger(
            3, mode=AddressMode.PREFIX, options="07 11 81 20010db8 00010000 00000000 00000000"),
            3, "prefix length 129")


class PbaTests(ServiceMixin, SynchronousTestCase):
    """
    PBAs at the PMIP client's MH socket, one field at a time: the largest
    legal and smallest illegal value of each option it reads is handled
    without an exception escaping (trial fails a test that logs one), and
    with the exact outcome.
    """

    MN = b"mn1@example.net"

    def pending(self, mode=AddressMode.PREFIX, ipv4=False):
        """Trigger an attachment; the PBU that went out."""
        from netlmm.wire.control import Trigger, encodeControl
        self.proto.dataReceived(encodeControl(Trigger(
            1, self.MN, MAG, mode=mode, ipv4="0.0.0.0/0" if ipv4 else None)))
        return self.service.port.sent[-1][0]

    def answer(self, bu, options, status=0):
        """Feed the PBA the way the MH socket does; the Notifications sent back."""
        self.transport.clear()
        ba = mh.BindingAcknowledgement(status, mh.BA_P, bu.sequence, 900, options)
        raw = mh.encodeMessage(ba)
        self.service._mhReceived(mh.decodeMessage(raw), raw, (LMA, 5436), 0)
        data, out = self.transport.value(), []
        while data:
            out.append(decodeControl(data[:data[1]]))
            data = data[data[1]:]
        return out

    def test_mnIdOption(self):
        """
        The largest MN Identifier option (254 octets) is not an identifier
        this client has: the PBA matches nothing by it, and is matched by
        the sequence number of the one PBU in flight. An empty one is
        malformed and matched the same way.
        """
        prefix = mh.HomeNetworkPrefix("2001:db8:5::", 64)
        for mnIdOption in (mh.MobileNodeIdentifier(b"m" * 254),
                           mh.MalformedOption(8, b"\x01", "length 1")):
            self.setUp()
            bu = self.pending()
            out = self.answer(bu, [mnIdOption, prefix])
            self.assertEqual([(n.result, n.prefix) for n in out],
                             [(Result.SUCCESS, IPv6Network("2001:db8:5::/64"))])

    def test_homeNetworkPrefix(self):
        """/64 is the longest usable per-MN prefix; /65 is refused, /129 malformed."""
        bu = self.pending()
        out = self.answer(bu, [mh.MobileNodeIdentifier(self.MN),
                               mh.HomeNetworkPrefix("2001:db8:5::", 64)])
        self.assertEqual(out[0].result, Result.SUCCESS)
        for option in (mh.HomeNetworkPrefix("2001:db8:5::", 65),
                       mh.MalformedOption(22, b"\x00\x81" + bytes(16), "prefix length 129")):
            self.setUp()
            bu = self.pending()
            out = self.answer(bu, [mh.MobileNodeIdentifier(self.MN), option])
            self.assertEqual([n.result for n in out], [Result.PBACK_UNUSABLE])
            self.assertEqual(self.service.port.sent[-1][0].lifetime, 0)

    def test_ipv4Reply(self):
        """Prefix length 32 is taken; 33 makes the option malformed: no IPv4."""
        bu = self.pending(ipv4=True)
        out = self.answer(bu, [mh.MobileNodeIdentifier(self.MN),
                               mh.HomeNetworkPrefix("2001:db8:5::", 64),
                               mh.IPv4HomeAddressReply(0, "10.0.0.5", 32)])
        self.assertEqual(str(out[0].ipv4), "10.0.0.5/32")
        self.setUp()
        bu = self.pending(ipv4=True)
        out = self.answer(bu, [mh.MobileNodeIdentifier(self.MN),
                               mh.HomeNetworkPrefix("2001:db8:5::", 64),
                               mh.MalformedOption(37, b"\x00\x84\x0a\x00\x00\x05",
                                                  "prefix length 33")])
        self.assertEqual((out[0].result, out[0].ipv4), (Result.SUCCESS, None))

    def test_statusAndLifetime(self):
        """Status 255 and the longest lifetime are handled; 255 is a refusal."""
        bu = self.pending()
        out = self.answer(bu, [mh.MobileNodeIdentifier(self.MN)], status=255)
        self.assertEqual([n.result for n in out], [Result.PBACK_REJECTED])
        self.setUp()
        bu = self.pending()
        self.transport.clear()
        ba = mh.BindingAcknowledgement(0, mh.BA_P, bu.sequence, 0xFFFF, [
            mh.MobileNodeIdentifier(self.MN), mh.HomeNetworkPrefix("2001:db8:5::", 64)])
        raw = mh.encodeMessage(ba)
        self.service._mhReceived(mh.decodeMessage(raw), raw, (LMA, 5436), 0)
        self.assertEqual(self.core.mobile(self.MN).lifetime, 0xFFFF * 4)


class ContainerTests(SynchronousTestCase):
    """
    doc/protocol.md 3.8: with a 64-octet MN identifier, netlmm's LMA in the
    netlmm dialect and RFC 4285 with HMAC-SHA256-128, the success
    Notification always carries the PBAck in its container.
    """

    def test_largestSignedPbackFits(self):
        from netlmm.core.effects import Notify, SendMH
        from netlmm.core.lma import AddressPool, LmaCore
        from netlmm.security.auth import SecurityAssociation
        from netlmm.security.guard import LmaGuard, PmipGuard
        from netlmm.security.keystore import KeyStore
        from netlmm.wire.control import Trigger, encodeControl
        mnId = b"m" * MAX_MN_ID
        keys = KeyStore([SecurityAssociation(1000, bytes(32), "hmac-sha256-128", mnId)])
        pmipGuard, lmaGuard = PmipGuard(keys), LmaGuard(keys)
        client = IPv6Address("2001:db8::c")
        lma = LmaCore("2001:db8:1::/64", [f"{client}/128"], 3600,
                      AddressPool("2001:db8:1::100", "2001:db8:1::1ff"))
        core = PmipCore(LMA, security=pmipGuard)
        now = 1_700_000_000.0
        effects = core.receiveTrigger(
            Trigger(5, mnId, MAG, mode=AddressMode.LMA_ASSIGNED), now)
        [send] = [e for e in effects if type(e) is SendMH]
        raw = mh.encodeMessage(send.message, client, LMA)
        pbu = mh.decodeMessage(raw, client, LMA)
        verdict = lmaGuard.check(pbu, raw, client, now)
        self.assertTrue(verdict.ok, verdict.reason)
        [answer] = [e for e in lma.receive(pbu, client, now) if type(e) is SendMH]
        raw = mh.encodeMessage(lmaGuard.answer(answer.message, verdict, now), LMA, client)
        self.assertEqual(len(raw), 152)
        effects = core.receiveMH(mh.decodeMessage(raw, LMA, client), raw, LMA, now)
        [notify] = [e for e in effects if type(e) is Notify]
        self.assertEqual((notify.notification.result, notify.notification.pback),
                         (Result.SUCCESS, raw))
        self.assertEqual(len(encodeControl(notify.notification)), 249)

    def test_prefixVariantFits(self):
        """The same PBAck shape naming a /64 (one octet more in the Notification)."""
        from netlmm.core.effects import Notify, SendMH
        from netlmm.security.auth import SecurityAssociation
        from netlmm.security.guard import LmaGuard, PmipGuard
        from netlmm.security.keystore import KeyStore
        from netlmm.wire.control import Trigger, encodeControl
        mnId = b"m" * MAX_MN_ID
        keys = KeyStore([SecurityAssociation(1000, bytes(32), "hmac-sha256-128", mnId)])
        pmipGuard, lmaGuard = PmipGuard(keys), LmaGuard(keys)
        core = PmipCore(LMA, security=pmipGuard)
        client, now = IPv6Address("2001:db8::c"), 1_700_000_000.0
        effects = core.receiveTrigger(Trigger(5, mnId, MAG, mode=AddressMode.PREFIX), now)
        [send] = [e for e in effects if type(e) is SendMH]
        raw = mh.encodeMessage(send.message, client, LMA)
        pbu = mh.decodeMessage(raw, client, LMA)
        verdict = lmaGuard.check(pbu, raw, client, now)
        ba = mh.BindingAcknowledgement(0, mh.BA_P, pbu.sequence, 900, [
            mh.BindingRefreshAdvice(675), mh.HomeNetworkPrefix("2001:db8:5::", 64),
            mh.MobileNodeIdentifier(mnId)])
        raw = mh.encodeMessage(lmaGuard.answer(ba, verdict, now), LMA, client)
        self.assertEqual(len(raw), 152)
        effects = core.receiveMH(mh.decodeMessage(raw, LMA, client), raw, LMA, now)
        [notify] = [e for e in effects if type(e) is Notify]
        self.assertEqual(notify.notification.pback, raw)
        self.assertEqual(len(encodeControl(notify.notification)), 250)

    def test_leftOutWhenTooLarge(self):
        """A larger PBAck (another LMA's) goes without the container, nothing else lost."""
        from netlmm.core.effects import Notify, SendMH
        from netlmm.wire.control import Trigger
        mnId = b"m" * MAX_MN_ID
        core = PmipCore(LMA)
        effects = core.receiveTrigger(Trigger(5, mnId, MAG, mode=AddressMode.PREFIX), 0)
        [send] = [e for e in effects if type(e) is SendMH]
        ba = mh.BindingAcknowledgement(0, mh.BA_P, send.message.sequence, 900, [
            mh.HomeNetworkPrefix("2001:db8:5::", 64), mh.MobileNodeIdentifier(mnId),
            mh.UnknownOption(200, b"v" * 100)])
        raw = mh.encodeMessage(ba)
        effects = core.receiveMH(mh.decodeMessage(raw), raw, LMA, 0)
        [notify] = [e for e in effects if type(e) is Notify]
        n = notify.notification
        self.assertEqual((n.result, str(n.prefix), n.pback), (Result.SUCCESS, "2001:db8:5::/64",
                                                             None))
