"""The DHCPv6 strategies without sockets: a fake socket, a fake MAG, a Clock."""

from ipaddress import IPv6Address

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from netlmm.access import AttachmentEvent
from netlmm.access.link import AccessConfig
from netlmm.assignment.dhcp6relay import DhcpRelayAssignment
from netlmm.assignment.dhcp6server import DhcpProxyServer
from netlmm.test.test_access_netns import RecordingMag
from netlmm.wire import dhcp6
from netlmm.wire.control import AddressMode
from netlmm.wire.dhcp6 import (
    ClientId, IaAddress, IaNa, InterfaceId, Message, RapidCommit, RelayMessage,
    RelayMessageOption, ServerId, StatusCode,
)

MAC = bytes.fromhex("02000000aa01")
MNID = b"02:00:00:00:aa:01"
PEER = IPv6Address("fe80::ff:fe00:aa01")
SERVER = IPv6Address("2001:db8:d::2")
PHOA = IPv6Address("2001:db8:1::100")
DUID = dhcp6.duidLL(MAC)


class FakeSocket:
    def __init__(self):
        self.sent = []

    def sendto(self, data, address):
        self.sent.append((dhcp6.decode(data), address))


class FakeReader:
    def __init__(self):
        self.socket = FakeSocket()


class FakeLink:
    def __init__(self):
        self.config = AccessConfig("acc0", None, 0, 0, 0, 1280, 1, 1, 64, False)
        self.frameListeners = []
        self.system = None


def _prepare(strategy):
    strategy.reader = FakeReader()
    strategy.accessIndex = 7
    return strategy.reader.socket.sent


class RelayTests(SynchronousTestCase):

    def setUp(self):
        self.clock = Clock()
        self.relay = DhcpRelayAssignment(self.clock, FakeLink(), SERVER, "2001:db8:1::",
                                         timeout=5)
        self.sent = _prepare(self.relay)
        self.mag = RecordingMag()
        self.relay.mag = self.mag
        self.relay.attached(AttachmentEvent(MNID, linkLayer="02:00:00:00:aa:01"))

    def client(self, message):
        self.relay.clientMessage(message, dhcp6.encode(message), PEER, MAC)

    def server(self, inner, interfaceId=b"acc0", source=SERVER, peer=PEER):
        reply = RelayMessage(dhcp6.RELAY_REPL, 0, "2001:db8:1::", peer,
                             [InterfaceId(interfaceId), RelayMessageOption(inner)])
        self.relay.otherMessage(dhcp6.encode(reply), source, 547, 2)

    def test_relayAndLearn(self):
        request = Message(dhcp6.REQUEST, 5, [ClientId(DUID), IaNa(1)])
        self.client(request)
        forward, to = self.sent[0]
        self.assertEqual(to, (str(SERVER), 547, 0, 0))
        self.assertEqual(forward.type, dhcp6.RELAY_FORW)
        self.assertEqual((forward.hopCount, forward.linkAddress, forward.peerAddress),
                         (0, IPv6Address("2001:db8:1::"), PEER))
        self.assertEqual(forward.interfaceId, b"acc0")
        self.assertEqual(dhcp6.decode(forward.relayed), request)
        reply = Message(dhcp6.REPLY, 5, [ClientId(DUID), ServerId(b"\x00\x02\x00\x00\x09"),
                                         IaNa(1, 4, 6, [IaAddress(PHOA, 60, 120)])])
        self.server(reply)
        inner, to = self.sent[1]
        self.assertEqual(inner, reply)
        self.assertEqual(to, (str(PEER), 546, 0, 7))
        self.assertEqual(self.mag.kinds("addressReady"),
                         [("addressReady", MNID, PHOA, AddressMode.STATEFUL)])
        # A Renew's Reply with the same address triggers nothing more.
        self.client(Message(dhcp6.RENEW, 6, [ClientId(DUID), IaNa(1)]))
        self.server(Message(dhcp6.REPLY, 6, reply.options))
        self.assertEqual(len(self.mag.kinds("addressReady")), 1)
        self.clock.advance(10)
        self.assertEqual(self.relay.pending, {})

    def test_confirmSuccess(self):
        """A successful Confirm of the client's address (after a handoff) binds it."""
        self.client(Message(dhcp6.CONFIRM, 9, [ClientId(DUID),
                                               IaNa(1, 0, 0, [IaAddress(PHOA, 0, 0)])]))
        self.server(Message(dhcp6.REPLY, 9, [ClientId(DUID), StatusCode(0, "ok")]))
        self.assertEqual(self.mag.kinds("addressReady"),
                         [("addressReady", MNID, PHOA, AddressMode.STATEFUL)])

    def test_failureStatus(self):
        """NoAddrsAvail (message or IA level) or NotOnLink: unbound, logged."""
        self.client(Message(dhcp6.REQUEST, 5, [ClientId(DUID), IaNa(1)]))
        self.server(Message(dhcp6.REPLY, 5, [ClientId(DUID), IaNa(1, 0, 0, [
            StatusCode(dhcp6.NO_ADDRS_AVAIL, "pool exhausted")])]))
        self.client(Message(dhcp6.CONFIRM, 6, [ClientId(DUID),
                                               IaNa(1, 0, 0, [IaAddress(PHOA, 0, 0)])]))
        self.server(Message(dhcp6.REPLY, 6, [ClientId(DUID),
                                             StatusCode(dhcp6.NOT_ON_LINK, "no")]))
        self.assertEqual(self.mag.kinds("addressReady"), [])
        self.assertEqual(len(self.sent), 4)  # the answers still reach the client

    def test_noAnswer(self):
        self.client(Message(dhcp6.SOLICIT, 1, [ClientId(DUID), IaNa(1)]))
        self.assertEqual(len(self.relay.pending), 1)
        self.clock.advance(5)
        self.assertEqual(self.relay.pending, {})
        self.assertEqual(self.mag.kinds("addressReady"), [])

    def test_foreignReplies(self):
        """Another Interface-ID, another source, a Relay-forward: dropped."""
        reply = Message(dhcp6.REPLY, 5, [ClientId(DUID), IaNa(1, 4, 6, [IaAddress(PHOA, 6, 9)])])
        self.server(reply, interfaceId=b"other")
        self.server(reply, source=IPv6Address("2001:db8::666"))
        self.relay.otherMessage(b"\x0c\x00" + bytes(32), SERVER, 547, 2)
        self.assertEqual(self.sent, [])
        self.assertEqual(self.mag.kinds("addressReady"), [])

    def test_peerNotLinkLocal(self):
        """
        A Relay-reply for a peer that is not link-local is dropped: the
        relay sends only to clients on the access link (RFC 8415 clients use
        their link-local address), so the server cannot make it send elsewhere.
        """
        self.client(Message(dhcp6.REQUEST, 5, [ClientId(DUID), IaNa(1)]))
        self.assertEqual(len(self.sent), 1)
        reply = Message(dhcp6.REPLY, 5, [ClientId(DUID), IaNa(1, 4, 6, [IaAddress(PHOA, 6, 9)])])
        for peer in ("2001:db8:1::5", "ff02::1", "::1"):
            self.server(reply, peer=IPv6Address(peer))
        self.assertEqual((len(self.sent), self.relay.replies), (1, 0))
        self.assertEqual(self.mag.kinds("addressReady"), [])
        self.server(reply)
        self.assertEqual((len(self.sent), self.relay.replies), (2, 1))
        self.assertEqual(self.sent[1][1], (str(PEER), 546, 0, 7))

    def test_learnedBeforeAttach(self):
        self.relay.unbound(MNID, None, "detached")
        self.client(Message(dhcp6.REQUEST, 5, [ClientId(DUID), IaNa(1)]))
        self.server(Message(dhcp6.REPLY, 5, [ClientId(DUID),
                                             IaNa(1, 4, 6, [IaAddress(PHOA, 60, 120)])]))
        self.assertEqual(self.mag.kinds("addressReady"), [])
        self.relay.attached(AttachmentEvent(MNID, linkLayer="02:00:00:00:aa:01"))
        self.assertEqual(len(self.mag.kinds("addressReady")), 1)


class ProxyServerTests(SynchronousTestCase):

    def setUp(self):
        self.triggered = []
        self.server = DhcpProxyServer(Clock(), FakeLink(), self.triggered.append)
        self.sent = _prepare(self.server)
        self.server.attached(MNID, MAC)

    def client(self, message):
        self.server.clientMessage(message, dhcp6.encode(message), PEER, MAC)

    def test_solicitRequest(self):
        self.client(Message(dhcp6.SOLICIT, 1, [ClientId(DUID), IaNa(3)]))
        self.client(Message(dhcp6.SOLICIT, 1, [ClientId(DUID), IaNa(3)]))
        self.assertEqual(self.triggered, [MNID])
        self.assertEqual(self.sent, [])
        self.server.bound(MNID, PHOA)
        advertise, to = self.sent[0]
        self.assertEqual(advertise.type, dhcp6.ADVERTISE)
        self.assertEqual(to, (str(PEER), 546, 0, 7))
        self.assertEqual(advertise.option(IaNa).iaid, 3)
        self.assertEqual(advertise.option(IaNa).addresses[0].address, PHOA)
        serverDuid = advertise.serverDuid
        self.client(Message(dhcp6.REQUEST, 2, [ClientId(DUID), ServerId(serverDuid), IaNa(3)]))
        reply = self.sent[-1][0]
        self.assertEqual((reply.type, reply.transaction), (dhcp6.REPLY, 2))
        self.assertEqual(dhcp6.iaAddresses(reply)[0][1].address, PHOA)
        self.assertEqual(self.triggered, [MNID])

    def test_rapidCommitAndRenewElsewhere(self):
        """Another MAG (same prefix: same server DUID) answers the Renew with the same pHoA."""
        self.client(Message(dhcp6.SOLICIT, 1, [ClientId(DUID), RapidCommit(), IaNa(3)]))
        self.server.bound(MNID, PHOA)
        reply = self.sent[-1][0]
        self.assertEqual(reply.type, dhcp6.REPLY)
        self.assertIsNotNone(reply.option(RapidCommit))
        other = DhcpProxyServer(Clock(), FakeLink(), self.triggered.append)
        sent = _prepare(other)
        self.assertEqual(other.serverDuid, self.server.serverDuid)
        other.attached(MNID, MAC)
        renew = Message(dhcp6.RENEW, 4, [ClientId(DUID), ServerId(reply.serverDuid),
                                         IaNa(3, 0, 0, [IaAddress(PHOA, 0, 0)])])
        other.clientMessage(renew, dhcp6.encode(renew), PEER, MAC)
        self.assertEqual(self.triggered, [MNID, MNID])
        other.bound(MNID, PHOA)
        self.assertEqual(dhcp6.iaAddresses(sent[-1][0])[0][1].address, PHOA)

    def test_unboundLeavesUnanswered(self):
        self.client(Message(dhcp6.SOLICIT, 1, [ClientId(DUID), IaNa(3)]))
        self.server.unbound(MNID)
        self.assertEqual(self.sent, [])
