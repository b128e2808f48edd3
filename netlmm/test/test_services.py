"""
Service-level tests: the role services over real loopback sockets, with the
real reactor (each test bounded by trial's timeout).
"""

import io
import os
import socket
from ipaddress import IPv6Address

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.protocol import Protocol, ClientFactory
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from netlmm import demo
from netlmm.access import AttachmentEvent
from netlmm.assignment.static import StaticAssignment
from netlmm.core.lma import AddressPool, LmaCore
from netlmm.core.mag import MagCore
from netlmm.core.pmip import PmipCore
from netlmm.dataplane.memory import MemoryDataPlane
from netlmm.lab.fakes import UDPProbe
from netlmm.lab.wait import until
from netlmm.service.lma import LmaService
from netlmm.service.mag import MagService
from netlmm.service.pmip import PmipService
from netlmm.store import SqliteStore
from netlmm.wire import mh
from netlmm.wire.control import (
    AddressMode, Notification, Result, Trigger, decodeControl, encodeControl,
)

LO = IPv6Address("::1")


def storedKeys(path):
    """The keys in a state database, read as another process would."""
    import sqlite3
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return sorted(bytes(k) for k, in db.execute("SELECT key FROM entries"))
    finally:
        db.close()


def pbu(seq, phoa="::", mag="2001:db8:ff::1", mnId=b"mn1@example.net", lifetime=100):
    options = [mh.HomeNetworkPrefix(phoa), mh.AlternateCareOfAddress(mag)]
    if mnId is not None:
        options.append(mh.MobileNodeIdentifier(mnId))
    return mh.BindingUpdate(seq, lifetime=lifetime, options=options)


class LmaServiceTests(TestCase):
    """The LMA daemon's socket side: checksums, bad input, replies."""

    timeout = 20

    @inlineCallbacks
    def setUp(self):
        self.plane = MemoryDataPlane()
        self.lma = LmaService(
            reactor, LmaCore("2001:db8:1::/64", ["::1/128"], 3600,
                             AddressPool("2001:db8:1::100", "2001:db8:1::1ff")),
            (LO, 0), "udp", self.plane)
        yield self.lma.startService()
        self.addCleanup(self.lma.stopService)
        self.probe = UDPProbe()
        self.port = reactor.listenUDP(0, self.probe, interface="::1")
        self.addCleanup(self.port.stopListening)

    def send(self, data):
        self.port.write(data, ("::1", self.lma.port.port))

    def reply(self, count=1):
        return until(lambda: len(self.probe.received) >= count, what="a reply")

    @inlineCallbacks
    def test_pbuAnsweredWithValidChecksum(self):
        """A PBU over UDP gets a PBAck whose MH checksum is right."""
        self.send(mh.encodeMessage(pbu(1), LO, LO))
        yield self.reply()
        data, addr = self.probe.received[0]
        self.assertTrue(mh.checksumValid(data, LO, LO))
        ba = mh.decodeMessage(data, LO, LO)
        self.assertEqual(ba.status, 0)
        self.assertEqual(ba.option(mh.HomeNetworkPrefix).prefix,
                         IPv6Address("2001:db8:1::100"))
        self.assertEqual(self.plane.routes,
                         {IPv6Address("2001:db8:1::100"): IPv6Address("2001:db8:ff::1")})

    @inlineCallbacks
    def test_badInputDroppedAndCounted(self):
        """
        A wrong checksum, a truncated header and garbage are dropped and
        counted; the daemon still answers the next valid PBU.
        """
        good = mh.encodeMessage(pbu(1), LO, LO)
        bad = bytearray(good)
        bad[5] ^= 0xFF
        self.send(bytes(bad))
        self.send(good[:10])
        self.send(b"\xff" * 7)
        self.send(good)
        yield self.reply()
        self.assertEqual(len(self.probe.received), 1)
        self.assertEqual(self.lma.port.counters["malformed"], 3)
        self.assertEqual(len(self.lma.core.bindings), 1)
        self.assertEqual(len(self.flushLoggedErrors()), 0)

    @inlineCallbacks
    def test_unknownTypeGetsBindingError(self):
        """An unknown MH type is answered with a Binding Error, status 2."""
        raw = bytearray(mh.encodeMessage(mh.BindingRefreshRequest()))
        raw[2] = 42
        self.send(mh.encodeMessage(mh.decodeMessage(bytes(raw)), LO, LO))
        yield self.reply()
        be = mh.decodeMessage(self.probe.received[0][0], LO, LO)
        self.assertIsInstance(be, mh.BindingError)
        self.assertEqual(be.status, mh.BE_UNKNOWN_MH_TYPE)


class Rfc5213ServiceTests(TestCase):
    """A standard MAG's PBUs at the LMA daemon: prefixes and IPv4 routed."""

    timeout = 20

    @inlineCallbacks
    def setUp(self):
        from netlmm.core.lma import Ordering, PeerPolicy, PrefixPool
        self.plane = MemoryDataPlane()
        core = LmaCore("2001:db8:1::/64", [], 3600,
                       prefixPool=PrefixPool("2001:db8:100::/48"),
                       ipv4Pool=AddressPool("192.0.2.2", "192.0.2.9"),
                       ipv4Router="192.0.2.1",
                       peers=[("::1/128", PeerPolicy(ordering=Ordering.SEQUENCE))])
        self.lma = LmaService(reactor, core, (LO, 0), "udp", self.plane)
        self.logged = []
        self.lma.log = type(self.lma.log)(observer=self.logged.append)
        yield self.lma.startService()
        self.addCleanup(self.lma.stopService)
        self.probe = UDPProbe()
        self.port = reactor.listenUDP(0, self.probe, interface="::1")
        self.addCleanup(self.port.stopListening)

    def pbu(self, seq, mnId=b"mn1@example.net", hi=4):
        options = [mh.HomeNetworkPrefix("::", 0), mh.HandoffIndicator(hi),
                   mh.AccessTechnologyType(3), mh.IPv4HomeAddressRequest()]
        if mnId is not None:
            options.insert(0, mh.MobileNodeIdentifier(mnId))
        return mh.BindingUpdate(seq, mh.BU_A | mh.BU_P, 100, options)

    @inlineCallbacks
    def test_registered(self):
        """
        The prefix and the IPv4 address are routed to the MAG (the PBU's
        source), the PBA says so, and the binding table shows both.
        """
        from ipaddress import IPv4Address, IPv6Network
        self.port.write(mh.encodeMessage(self.pbu(1), LO, LO), ("::1", self.lma.port.port))
        yield until(lambda: self.probe.received, what="the PBA")
        ba = mh.decodeMessage(self.probe.received[0][0], LO, LO)
        self.assertEqual(ba.status, 0)
        self.assertEqual(ba.option(mh.IPv4HomeAddressReply).address, IPv4Address("192.0.2.2"))
        self.assertEqual(self.plane.routes, {IPv6Network("2001:db8:100::/64"): LO,
                                             IPv4Address("192.0.2.2"): LO})
        lines = self.lma.bindingTable()
        self.assertEqual(lines[0].split(), ["MN", "identifier", "homes", "pCoA", "profile",
                                            "state", "seq", "lifetime", "expires", "in"])
        self.assertEqual(lines[1].split()[:6], ["mn1@example.net", "2001:db8:100::/64",
                                                "192.0.2.2/24", "::1", "rfc5213",
                                                "REGISTERED"])

    @inlineCallbacks
    def test_refusalLoggedOnce(self):
        """A refused PBU is answered and logged once, naming the peer."""
        self.port.write(mh.encodeMessage(self.pbu(1, mnId=None), LO, LO),
                        ("::1", self.lma.port.port))
        yield until(lambda: self.probe.received, what="the PBA")
        ba = mh.decodeMessage(self.probe.received[0][0], LO, LO)
        self.assertEqual(ba.status, mh.Status.MISSING_MN_IDENTIFIER_OPTION)
        refusals = [e for e in self.logged if "refused" in e.get("log_format", "")]
        self.assertEqual(len(refusals), 1)
        self.assertEqual((refusals[0]["peer"], refusals[0]["reason"]),
                         (LO, "MISSING_MN_IDENTIFIER_OPTION"))
        self.assertEqual(self.lma.refusals, 1)
        self.assertEqual(self.plane.routes, {})

    @inlineCallbacks
    def test_revokedAtMagWithoutRfc5846(self):
        """
        `deregister` at the LMA: the MAG gets an (unsigned: its PBUs are
        not) RFC 5846 BRI at the port its PBUs came from; it answers Binding
        Error status 2 (it does not know MH type 16): the BRI ends, the
        routes stay removed, and the MAG gets no more BRIs.
        """
        self.port.write(mh.encodeMessage(self.pbu(1), LO, LO), ("::1", self.lma.port.port))
        yield until(lambda: self.probe.received, what="the PBA")
        self.assertEqual(self.lma.command(["deregister", "mn1@example.net"]), [
            "ok 1", "deregistered mn1@example.net; Binding Revocation Indication sent to ::1"])
        self.assertEqual(self.plane.routes, {})
        yield until(lambda: len(self.probe.received) == 2, what="the BRI")
        bri = mh.decodeMessage(self.probe.received[1][0], LO, LO)
        self.assertEqual((type(bri), bri.trigger, bri.flags, bri.option(
            mh.MobileNodeIdentifier).identifier, bri.option(mh.HomeNetworkPrefix).prefixLength,
            bri.option(mh.MobilityMessageAuthentication)),
            (mh.RevocationIndication, mh.RevocationTrigger.ADMINISTRATIVE_REASON, mh.BR_P,
             b"mn1@example.net", 64, None))
        self.port.write(mh.encodeMessage(mh.BindingError(mh.BE_UNKNOWN_MH_TYPE), LO, LO),
                        ("::1", self.lma.port.port))
        revocations = self.lma.core.revocations
        yield until(lambda: not revocations.outstanding, what="the Binding Error taken")
        self.assertEqual(revocations.counters["unsupported"], 1)
        self.assertFalse(self.lma.core.revokes(LO))
        self.assertIsNone(self.lma.core.bindingFor(b"mn1@example.net"))


class RawTransportTests(TestCase):
    """MH over raw IPv6 sockets (protocol 135): needs root."""

    timeout = 20

    def setUp(self):
        if os.geteuid() != 0:
            raise SkipTest("raw IPv6 protocol-135 sockets need root (CI runs this as root)")

    @inlineCallbacks
    def test_rawPbu(self):
        """The kernel fills the checksum on send and checks it on receipt."""
        lma = LmaService(reactor, LmaCore("2001:db8:1::/64", ["::1/128"], 3600,
                                          AddressPool("2001:db8:1::100", "2001:db8:1::1ff")),
                         (LO, 0), "raw", MemoryDataPlane())
        yield lma.startService()
        self.addCleanup(lma.stopService)
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, mh.IPPROTO_MH)
        self.addCleanup(s.close)
        s.setblocking(False)
        s.sendto(mh.encodeMessage(pbu(7)), ("::1", 0))
        got = []

        def poll():
            try:
                while True:
                    data = s.recv(2048)
                    # Our own PBU is looped back to this socket too.
                    message = mh.decodeMessage(data)
                    if isinstance(message, mh.BindingAcknowledgement):
                        got.append((data, message))
            except BlockingIOError:
                pass
            return bool(got)
        yield until(poll, what="a PBAck over raw MH")
        data, ba = got[0]
        self.assertEqual(ba.sequence, 7)
        self.assertEqual(ba.status, 0)
        # The kernel computed a checksum that is valid over the pseudo-header.
        self.assertTrue(mh.checksumValid(data, LO, LO))


class PmipServiceTests(TestCase):
    """The PMIP client's MAG-facing side."""

    timeout = 20

    @inlineCallbacks
    def startPmip(self, allowed=("::1/128",)):
        self.lmaProbe = UDPProbe()
        self.lmaPort = reactor.listenUDP(0, self.lmaProbe, interface="::1")
        self.addCleanup(self.lmaPort.stopListening)
        self.pmip = PmipService(reactor, PmipCore(LO), (LO, 0), (LO, 0), "udp",
                                self.lmaPort.getHost().port, list(allowed))
        yield self.pmip.startService()
        self.addCleanup(self.pmip.stopService)

    @inlineCallbacks
    def connect(self):
        received = []
        lost = []

        class Peer(Protocol):
            def dataReceived(self, data):
                received.append(data)

            def connectionLost(self, reason):
                lost.append(reason)
        factory = ClientFactory.forProtocol(Peer)
        connected = []
        factory.buildProtocol = lambda addr: connected.append(Peer()) or connected[-1]
        connector = reactor.connectTCP("::1", self.pmip.listening.getHost().port, factory)
        self.addCleanup(connector.disconnect)
        yield until(lambda: connected and connected[0].transport is not None)
        return connected[0], received, lost

    @inlineCallbacks
    def test_refusesMagOutsideAllowed(self):
        """A MAG connecting from outside allowed_mags is disconnected."""
        yield self.startPmip(allowed=("2001:db8::/64",))
        peer, received, lost = yield self.connect()
        yield until(lambda: lost, what="the refused connection to close")
        self.assertEqual(self.pmip.connections, set())

    @inlineCallbacks
    def test_malformedTriggerAnswered(self):
        """A Trigger without its L2-ID is answered with Notification MALFORMED."""
        yield self.startPmip()
        peer, received, lost = yield self.connect()
        good = encodeControl(Trigger(77, b"mn", "2001:db8:ff::1", None,
                                     AddressMode.LMA_ASSIGNED))
        # Drop the L2-ID option (the first option, 2 + 2 octets) and fix Length.
        broken = bytearray(good[:8] + good[12:])
        broken[1] = len(broken)
        peer.transport.write(bytes(broken))
        yield until(lambda: received, what="a Notification")
        n = decodeControl(b"".join(received))
        self.assertEqual((n.transaction, n.result), (77, Result.MALFORMED))

    @inlineCallbacks
    def test_triggerSendsPbu(self):
        """A Trigger from an allowed MAG becomes a PBU to the LMA."""
        yield self.startPmip()
        peer, received, lost = yield self.connect()
        peer.transport.write(encodeControl(Trigger(
            5, b"mn", "2001:db8:ff::1", "2001:db8:1::9", AddressMode.STATIC)))
        yield until(lambda: self.lmaProbe.received, what="a PBU")
        data, addr = self.lmaProbe.received[0]
        bu = mh.decodeMessage(data, LO, LO)
        self.assertEqual(bu.option(mh.HomeNetworkPrefix).prefix,
                         IPv6Address("2001:db8:1::9"))
        self.assertEqual(bu.option(mh.AlternateCareOfAddress).address,
                         IPv6Address("2001:db8:ff::1"))
        self.assertEqual(bu.flags, mh.BU_A | mh.BU_H | mh.BU_P)


class DomainTests(TestCase):
    """All three roles together over loopback."""

    timeout = 30

    @inlineCallbacks
    def test_demoScenario(self):
        """`netlmm demo`'s scenario completes and prints the ladder."""
        out = io.StringIO()
        result = yield demo.run(reactor, out)
        self.assertEqual(result, 0)
        text = out.getvalue()
        for expected in ("Trigger txn=1", "PBU seq=", "pHoA=::(assign)",
                         "status=0 (ACCEPTED)", "result=moved",
                         "(deregistration)", "LMA binding cache after handoff to MAG2"):
            self.assertIn(expected, text)
        ladder = text.split("\n\n")[0].splitlines()
        pbus = [line for line in ladder if "PBU seq=" in line]
        self.assertEqual(len(pbus), 4)

    @inlineCallbacks
    def test_triggerQueuedUntilPmipIsUp(self):
        """A MAG started before its PMIP client delivers the Trigger on connect."""
        lma = LmaService(reactor, LmaCore("2001:db8:1::/64", ["::1/128"]), (LO, 0),
                         "udp", MemoryDataPlane())
        yield lma.startService()
        self.addCleanup(lma.stopService)
        # Reserve a port for the PMIP client, then free it for the service.
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
        pmipPort = s.getsockname()[1]
        s.close()
        strategy = StaticAssignment()
        mag = MagService(reactor, MagCore("2001:db8:ff::1", LO), (LO, pmipPort),
                         strategy, MemoryDataPlane(), name="MAG1")
        yield mag.startService()
        self.addCleanup(mag.stopService)
        mag.attached(AttachmentEvent(b"mn1", "2001:db8:1::42"))
        yield deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(mag.core.attachment(b"mn1").state, "TRIGGERED")
        pmip = PmipService(reactor, PmipCore(LO), (LO, pmipPort), (LO, 0), "udp",
                           lma.port.port, ["::1/128"])
        yield pmip.startService()
        self.addCleanup(pmip.stopService)
        yield until(lambda: mag.core.attachment(b"mn1").state == "BOUND", 10,
                    "the MAG to bind after reconnecting")
        self.assertEqual(mag.dataplane.tunnels, {IPv6Address("2001:db8:1::42"): LO})
        self.assertEqual(lma.core.binding("2001:db8:1::42").pcoa,
                         IPv6Address("2001:db8:ff::1"))


class RestartTests(TestCase):
    """What a restarted daemon keeps."""

    timeout = 30

    @inlineCallbacks
    def test_unansweredTriggerSentAgainToRestartedClient(self):
        """
        A PMIP client stops after taking a Trigger and before answering it;
        the MAG sends that Trigger again when it reconnects to the restarted
        client, and the mobile is bound with the same transaction.
        """
        lma = LmaService(reactor, LmaCore("2001:db8:1::/64", ["::1/128"]), (LO, 0),
                         "udp", MemoryDataPlane())
        yield lma.startService()
        self.addCleanup(lma.stopService)
        silent = UDPProbe()
        silentPort = reactor.listenUDP(0, silent, interface="::1")
        self.addCleanup(silentPort.stopListening)
        # The first client's LMA never answers.
        first = PmipService(reactor, PmipCore(LO), (LO, 0), (LO, 0), "udp",
                            silentPort.getHost().port, ["::1/128"])
        yield first.startService()
        port = first.listening.getHost().port
        mag = MagService(reactor, MagCore("2001:db8:ff::1", LO), (LO, port),
                         StaticAssignment(), MemoryDataPlane(), name="MAG1")
        yield mag.startService()
        self.addCleanup(mag.stopService)
        yield until(lambda: mag.connection is not None)
        mag.attached(AttachmentEvent(b"mn1", "2001:db8:1::42"))
        yield until(lambda: silent.received, what="the first PBU")
        transaction = mag.core.attachment(b"mn1").transaction
        yield first.stopService()
        second = PmipService(reactor, PmipCore(LO), (LO, port), (LO, 0), "udp",
                             lma.port.port, ["::1/128"])
        yield second.startService()
        self.addCleanup(second.stopService)
        yield until(lambda: mag.core.attachment(b"mn1").state == "BOUND", 10,
                    "the MAG to bind through the restarted client")
        self.assertEqual(lma.core.binding("2001:db8:1::42").pcoa,
                         IPv6Address("2001:db8:ff::1"))
        self.assertEqual(mag.invalidInputs, 0)
        self.assertIsNotNone(transaction)

    @inlineCallbacks
    def test_pmipClientKeepsBindingsAcrossRestart(self):
        """
        A PMIP client with a state file that stops and starts again keeps its
        bound mobiles and refreshes them at once, so the LMA's bindings
        neither expire nor need the MAGs to trigger again.
        """
        lma = LmaService(reactor, LmaCore("2001:db8:1::/64", ["::1/128"]), (LO, 0),
                         "udp", MemoryDataPlane())
        yield lma.startService()
        self.addCleanup(lma.stopService)
        path = self.mktemp()

        def pmipService(port):
            service = PmipService(reactor, PmipCore(LO, lifetime=400), (LO, port),
                                  (LO, 0), "udp", lma.port.port, ["::1/128"])
            service.store = SqliteStore(path, "pmip-bindings", reactor)
            return service
        pmip = pmipService(0)
        yield pmip.startService()
        port = pmip.listening.getHost().port
        mag = MagService(reactor, MagCore("2001:db8:ff::1", LO), (LO, port),
                         StaticAssignment(), MemoryDataPlane(), name="MAG1")
        yield mag.startService()
        self.addCleanup(mag.stopService)
        yield until(lambda: mag.connection is not None)
        mag.attached(AttachmentEvent(b"mn1", "2001:db8:1::42"))
        yield until(lambda: lma.core.binding("2001:db8:1::42") is not None)
        # The LMA binds before the PMIP client has its PBAck (and so its
        # record): stopping in between would rightly restore nothing.
        yield until(lambda: getattr(pmip.core.mobile(b"mn1"), "state", None) == "BOUND",
                    what="the PMIP client's PBAck")
        sequence = lma.core.binding("2001:db8:1::42").sequence
        yield pmip.stopService()
        self.assertTrue(os.path.exists(path))
        again = pmipService(port)
        yield again.startService()
        self.addCleanup(again.stopService)
        m = again.core.mobile(b"mn1")
        self.assertEqual((m.state is not None, str(m.phoa), str(m.pcoa)),
                         (True, "2001:db8:1::42", "2001:db8:ff::1"))
        yield until(lambda: lma.core.binding("2001:db8:1::42").sequence != sequence
                    and again.core.mobile(b"mn1").state == "BOUND",
                    what="the restored binding's refresh")


class LmaRestartTests(TestCase):
    """The LMA's binding cache across a restart."""

    timeout = 30

    @inlineCallbacks
    def test_lmaKeepsBindingsAcrossRestart(self):
        """
        A restarted LMA with a state file has its bindings (sequence numbers
        and pool addresses included) and puts their routes back, so the next
        refresh is accepted and no assigned address is handed out twice.
        """
        path = self.mktemp()

        def lmaService():
            plane = MemoryDataPlane()
            service = LmaService(
                reactor, LmaCore("2001:db8:1::/64", ["::1/128"], 3600,
                                 AddressPool("2001:db8:1::100", "2001:db8:1::1ff")),
                (LO, 0), "udp", plane)
            service.store = SqliteStore(path, "lma-bindings", reactor)
            return service, plane
        lma, plane = lmaService()
        yield lma.startService()
        probe = UDPProbe()
        port = reactor.listenUDP(0, probe, interface="::1")
        self.addCleanup(port.stopListening)
        port.write(mh.encodeMessage(pbu(10), LO, LO), ("::1", lma.port.port))
        yield until(lambda: probe.received, what="the PBAck")
        # The binding was on disk before its PBAck left.
        self.assertEqual(storedKeys(path), [b"mn1@example.net"])
        yield lma.stopService()
        again, plane = lmaService()
        yield again.startService()
        self.addCleanup(again.stopService)
        b = again.core.binding("2001:db8:1::100")
        self.assertEqual((b.mnId, b.sequence, str(b.pcoa)),
                         (b"mn1@example.net", 10, "2001:db8:ff::1"))
        yield until(lambda: plane.routes, what="the restored route")
        self.assertEqual(plane.routes, {IPv6Address("2001:db8:1::100"):
                                        IPv6Address("2001:db8:ff::1")})
        # The restored pool does not hand the address out again.
        self.assertEqual(str(again.core.pool.allocate()), "2001:db8:1::101")
        # A replayed old sequence number is still refused.
        port.write(mh.encodeMessage(pbu(10, phoa="2001:db8:1::100", mnId=None), LO, LO),
                   ("::1", again.port.port))
        yield until(lambda: len(probe.received) == 2, what="the second PBAck")
        self.assertEqual(mh.decodeMessage(probe.received[1][0]).status,
                         mh.Status.SEQUENCE_OUT_OF_WINDOW)


class _CountingTransport:
    """A stream transport that counts its writes."""

    def __init__(self):
        from twisted.internet.address import IPv6Address as Address
        self.writes = []
        self.address = Address("TCP", "::1", 40000)

    def write(self, data):
        self.writes.append(data)

    def getPeer(self):
        return self.address

    def loseConnection(self):
        pass


class _Datagrams:
    """A socket for MHPort.doRead that hands over the given datagrams, then none."""

    def __init__(self, datagrams, port):
        self.datagrams = list(datagrams)
        self.port = port
        self.sent = []

    def recvmsg(self, size, space):
        if not self.datagrams:
            raise BlockingIOError()
        return self.datagrams.pop(0), [], 0, ("::1", self.port, 0, 0)

    def sendto(self, data, target):
        self.sent.append(data)
        return len(data)

    def fileno(self):
        return -1


def controlConnection():
    """A control protocol (as a MAG's connection is) over a L{_CountingTransport}."""
    from netlmm.transport.control import ControlFactory, ControlProtocol
    proto = ControlProtocol()
    proto.factory = ControlFactory()
    transport = _CountingTransport()
    proto.makeConnection(transport)
    return proto, transport


class CoalescedWriteTests(SynchronousTestCase):
    """Notifications made by one batch of PBAcks go to a MAG in one write."""

    def control(self):
        return controlConnection()

    def test_holdAndFlush(self):
        proto, transport = self.control()
        one, two = Notification(1, Result.SUCCESS), Notification(2, Result.MOVED)
        proto.send(one)
        self.assertEqual(transport.writes, [encodeControl(one)])
        proto.hold()
        proto.send(one)
        proto.send(two)
        self.assertEqual(len(transport.writes), 1)
        proto.flush()
        self.assertEqual(transport.writes[1:], [encodeControl(one) + encodeControl(two)])
        proto.flush()
        self.assertEqual(len(transport.writes), 2)

    def test_batchOfPbacks(self):
        """
        Two PBAcks read by one doRead: their two Notifications leave in one
        write; a PBAck handled alone (not from a socket read) is written at
        once.
        """
        lma = LmaCore("2001:db8:1::/64", ["::1/128"], 3600)
        pmip = PmipService(Clock(), PmipCore(LO), (LO, 0), (LO, 0), "udp", 5436,
                           ["::1/128"])
        pmip.running = True
        pmip.port.socket = _Datagrams([], 5436)
        proto, transport = self.control()
        pmip.connections.add(proto)
        answers = []
        for n in (1, 2, 3):
            pmip.controlReceived(Trigger(n, b"mn%d" % n, "2001:db8:ff::1",
                                         f"2001:db8:1::{n}", AddressMode.STATIC), proto)
            sent = mh.decodeMessage(pmip.port.socket.sent.pop(), LO, LO)
            ba = lma.receive(sent, LO, 0)[-1].message
            answers.append(mh.encodeMessage(ba, LO, LO))
        self.assertEqual(transport.writes, [])
        pmip.port.socket.datagrams = answers[:2]
        pmip.port.doRead()
        self.assertEqual(len(transport.writes), 1)
        data = transport.writes[0]
        self.assertEqual([decodeControl(data[:data[1]]).transaction,
                          decodeControl(data[data[1]:]).transaction], [1, 2])
        pmip.port._datagram(answers[2], ("::1", 5436, 0, 0), LO.packed, 0)
        self.assertEqual(len(transport.writes), 2)
        self.assertEqual(decodeControl(transport.writes[1]).result, Result.SUCCESS)

    def test_batchOfPbacksWithStore(self):
        """
        With a store, the Notifications of one batch of PBAcks wait for one
        commit, asked at the end of the batch, and then leave in one write.
        """
        from netlmm.store import MemoryStore
        lma = LmaCore("2001:db8:1::/64", ["::1/128"], 3600)
        pmip = PmipService(Clock(), PmipCore(LO), (LO, 0), (LO, 0), "udp", 5436,
                           ["::1/128"])
        pmip.store = store = MemoryStore(automatic=False)
        pmip.running = True
        pmip.port.socket = _Datagrams([], 5436)
        proto, transport = self.control()
        pmip.connections.add(proto)
        answers = []
        for n in (1, 2):
            pmip.controlReceived(Trigger(n, b"mn%d" % n, "2001:db8:ff::1",
                                         f"2001:db8:1::{n}", AddressMode.STATIC), proto)
            sent = mh.decodeMessage(pmip.port.socket.sent.pop(), LO, LO)
            ba = lma.receive(sent, LO, 0)[-1].message
            answers.append(mh.encodeMessage(ba, LO, LO))
        pmip.port.socket.datagrams = answers
        pmip.port.doRead()
        self.assertEqual(transport.writes, [])
        self.assertEqual(sorted(store._pendingWrite[1]), [b"mn1", b"mn2"])
        store.completeWrite()
        self.assertEqual(len(transport.writes), 1)
        data = transport.writes[0]
        self.assertEqual([decodeControl(data[:data[1]]).transaction,
                          decodeControl(data[data[1]:]).transaction], [1, 2])
        self.assertEqual(store.counters["commits"], 1)
