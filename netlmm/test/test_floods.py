"""
Hostile peers, as issue 11 measured them, against the daemons' services as the
taps build them: floods of bad datagrams at the LMA, connections full of junk
and idle connections at the PMIP client. The bounds asserted: log lines,
Binding Errors sent, connections held.
"""

import resource
import socket
import time
from ipaddress import IPv6Address
from pathlib import Path

from twisted.internet import endpoints, reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.internet.task import deferLater
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from netlmm.tap import lma as lmaTap, pmip as pmipTap
from netlmm.lab.wait import until
from netlmm.wire import mh

LO = IPv6Address("::1")


class Lines:
    """The netlmm log lines (info and up) written while a test runs."""

    def __init__(self, test):
        self.events = []
        globalLogPublisher.addObserver(self)
        test.addCleanup(globalLogPublisher.removeObserver, self)

    def __call__(self, event):
        if (event.get("log_namespace", "").startswith("netlmm")
                and event.get("log_level", LogLevel.info) >= LogLevel.info):
            self.events.append(event)

    def texts(self, *fragments):
        return [t for t in map(formatEvent, self.events) if all(f in t for f in fragments)]

    def __len__(self):
        return len(self.events)


def built(test, tap, text):
    """The role's service as `twistd netlmm-ROLE --config` builds it (not started)."""
    path = Path(test.mktemp())
    path.write_text(text)
    options = tap.Options()
    options.parseOptions(["--config", str(path)])
    [service] = tap.makeService(options).ordered
    return service


class LmaFloodTests(TestCase):
    """13,000 bad datagrams at the LMA."""

    timeout = 120

    @inlineCallbacks
    def test_13000BadDatagrams(self):
        """
        Junk, unknown MH types and PBUs from a client that is not allowed:
        the log stays within the refusal bounds, and the Binding Errors that
        answer the unknown types are rate limited (RFC 6275 9.3.3).
        """
        lines = Lines(self)
        lma = built(self, lmaTap, '''[lma]
listen = "[::1]:0"
home_prefix = "2001:db8:1::/64"
allowed_clients = ["2001:db8:99::1"]
[lma.dataplane]
kind = "memory"
''')
        yield lma.startService()
        self.addCleanup(lma.stopService)
        port = lma.port.port
        sender = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sender.bind(("::1", 0))
        # Room for every answer: the BAs that refuse the PBUs come back too.
        sender.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
        sender.setblocking(False)
        self.addCleanup(sender.close)
        packed = LO.packed
        unknown = mh.encodeMessage(mh.UnknownMessage(42, b"\0" * 6), packed, packed)
        pbu = mh.encodeMessage(mh.BindingUpdate(1, mh.BU_H | mh.BU_A | mh.BU_P, 100, (
            mh.HomeNetworkPrefix(IPv6Address("2001:db8:1::5"), 128),
            mh.MobileNodeIdentifier(b"mn1"),
            mh.AlternateCareOfAddress(IPv6Address("2001:db8:ff::1")))), packed, packed)
        kinds = [b"\x3b\x00", b"\xff" * 24, unknown, pbu]
        total = 13000
        start = time.monotonic()
        for i in range(total):
            sender.sendto(kinds[i % len(kinds)], ("::1", port))
            if i % 200 == 199:
                yield until(lambda: lma.port.counters["received"] > i - 50, timeout=10,
                            what="the LMA to read")
        yield until(lambda: lma.port.counters["received"] == total, timeout=10,
                    what="every datagram read")
        elapsed = time.monotonic() - start
        bindingErrors = 0
        while True:
            try:
                data = sender.recv(2048)
            except BlockingIOError:
                break
            bindingErrors += mh.decodeMessage(data, packed, packed).__class__ is \
                mh.BindingError
        malformed = lma.port.counters["malformed"]
        self.assertEqual(malformed, total // 2)
        self.assertEqual(lma.core.counters["bindingErrors"], total // 4)
        self.assertEqual(lma.core.counters["rejected"], total // 4)
        # A burst of 10, then 10 a second (the PBUs' own answers are BAs).
        self.assertLessEqual(bindingErrors, 10 + 10 * elapsed + 1)
        self.assertGreaterEqual(bindingErrors, 10)
        self.assertEqual(lma.bindingErrors.refused, total // 4 - bindingErrors)
        self.assertEqual(lma.port.counters["sent"], bindingErrors + total // 4)
        # Three kinds of refusal, three first lines each; nothing per datagram.
        self.assertEqual(len(lines.texts("malformed Mobility Header from [::1]")), 3)
        self.assertEqual(len(lines.texts("unknown MH type 42 from ::1")), 3)
        self.assertEqual(len(lines.texts("refused with ADMINISTRATIVELY_PROHIBITED")), 3)
        self.assertLessEqual(len(lines), 12, lines.texts())
        yield lma.stopService()
        # At stop the summaries say how many were not logged.
        summaries = {t.rsplit(": ", 1)[1]: int(t.split()[0])
                     for t in lines.texts("more like this from ::1 suppressed")}
        self.assertEqual(summaries, {"malformed Mobility Header": malformed - 3,
                                     "unknown MH type": total // 4 - 3,
                                     "ADMINISTRATIVELY_PROHIBITED": total // 4 - 3})
        self.assertIn(f"{total // 4} Binding Errors ({total // 4 - bindingErrors} not sent: "
                      "rate limit)", "\n".join(lines.texts("LMA: 0 bindings")))


class Junk(Protocol):
    """Sends C{count} malformed 8-octet messages once connected."""

    def __init__(self, count):
        self.count = count
        self.lost = False
        self.received = 0

    def connectionMade(self):
        # Type 0x63 is no message type: each one is malformed, the stream stays framed.
        self.transport.write(b"\x63\x08\x20\x00\x00\x00\x00\x01" * self.count)

    def dataReceived(self, data):
        self.received += len(data)

    def connectionLost(self, reason):
        self.lost = True


class PmipFloodTests(TestCase):
    """Connections full of junk, and idle connections, at the PMIP client."""

    timeout = 120

    def pmip(self, limits=""):
        lmaPort = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        lmaPort.bind(("::1", 0))
        self.addCleanup(lmaPort.close)
        return built(self, pmipTap, f'''[pmip]
listen = "[::1]:0"
lma = "[::1]:{lmaPort.getsockname()[1]}"
allowed_mags = ["::1"]
[pmip.tls]
transport = "tcp"
[pmip.limits]
{limits}
''')

    @inlineCallbacks
    def connect(self, port, protocols):
        """Connect each of C{protocols} to the PMIP client, all at once."""
        endpoint = endpoints.TCP6ClientEndpoint(reactor, "::1", port)
        connected = yield gatherResults([
            endpoint.connect(ClientFactory.forProtocol(lambda p=proto: p))
            for proto in protocols])
        for p in connected:
            self.addCleanup(p.transport.abortConnection)

    @inlineCallbacks
    def test_300ConnectionsOf200JunkMessages(self):
        """60,000 malformed messages: a few lines per kind, not one per message."""
        lines = Lines(self)
        pmip = self.pmip("max_connections_per_peer = 1000\nmax_connections = 1000")
        yield pmip.startService()
        self.addCleanup(pmip.stopService)
        peers = [Junk(200) for _ in range(300)]
        yield self.connect(pmip.listening.getHost().port, peers)
        yield until(lambda: pmip.factory.counters["malformed"] == 60000, timeout=60,
                    what="every junk message read")
        self.assertEqual(len(lines.texts("malformed message from [::1]:")), 3)
        self.assertEqual(len(lines.texts("MAG connected from [::1]:")), 3)
        self.assertLessEqual(len(lines), 10, lines.texts())
        yield pmip.stopService()
        summaries = sorted(t.split(" ", 1)[0] + " " + t.rsplit(": ", 1)[1]
                           for t in lines.texts("more like this from ::1 suppressed"))
        self.assertEqual(summaries, ["297 connections", "59997 malformed message"])

    @inlineCallbacks
    def test_500IdleConnections(self):
        """
        500 idle connections from one address: 8 are taken (the most per
        peer), the others closed before a byte is read; of the 8, those with
        a newer sibling are closed after idle_timeout. A MAG then gets in.
        """
        # Both ends of 500 connections live in this process.
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < 2048:
            if hard != resource.RLIM_INFINITY and hard < 2048:
                raise SkipTest(f"needs 2048 file descriptors; the hard limit is {hard}")
            resource.setrlimit(resource.RLIMIT_NOFILE, (2048, hard))
            self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        lines = Lines(self)
        pmip = self.pmip("idle_timeout = 2")
        yield pmip.startService()
        self.addCleanup(pmip.stopService)
        port = pmip.listening.getHost().port
        idle = [Junk(0) for _ in range(500)]
        yield self.connect(port, idle)
        yield until(lambda: sum(p.lost for p in idle) >= 492, timeout=20,
                    what=f"the connections over the cap to be closed "
                         f"({sum(p.lost for p in idle)}, {pmip.factory.counters}, "
                         f"{sum(p.transport is not None for p in idle)} connected)")
        self.assertEqual(len(pmip.factory.live), 8)
        self.assertEqual(pmip.factory.counters["refused"], 492)
        self.assertEqual(lines.texts("refused a connection from [::1]:")[0].rsplit(": ", 1)[1],
                         "it has 8 connections already (the most per peer)")
        yield deferLater(reactor, 4.5, lambda: None)
        # The newest one stays (a MAG keeps one quiet connection), the rest went.
        self.assertEqual(sum(p.lost for p in idle), 499)
        self.assertEqual(len(pmip.factory.live), 1)
        self.assertEqual(pmip.factory.counters["idle"], 7)
        self.assertLessEqual(len(lines), 12, lines.texts())
        # Room again: a new connection is taken.
        late = Junk(1)
        yield self.connect(port, [late])
        yield until(lambda: pmip.factory.counters["malformed"] == 1, what="the late one")
        self.assertFalse(late.lost)

    @inlineCallbacks
    def test_stalledMessage(self):
        """A connection that stops in the middle of a message is closed after idle_timeout."""
        pmip = self.pmip("idle_timeout = 1")
        yield pmip.startService()
        self.addCleanup(pmip.stopService)

        class Half(Junk):
            def connectionMade(self):
                self.transport.write(b"\x01\x40\x20\x00")
        half = Half(0)
        yield self.connect(pmip.listening.getHost().port, [half])
        yield until(lambda: half.lost, timeout=5, what="the stalled connection closed")
        self.assertEqual(pmip.factory.counters["idle"], 1)


class BeforeTlsTests(TestCase):
    """The peer's address is checked before the TLS handshake (issue 11)."""

    timeout = 30

    @inlineCallbacks
    def test_disallowedAddressNoHandshake(self):
        """
        A host outside allowed_mags is closed on before any TLS: no
        handshake is started for it and it reads not one byte.
        """
        from twisted.internet.endpoints import connectProtocol
        from netlmm.core.pmip import PmipCore
        from netlmm.service.pmip import PmipService
        from netlmm.test.test_tls import DOMAIN
        from netlmm.transport.channel import Channel
        lines = Lines(self)
        credentials = DOMAIN.credentials("pmip", "pmip1")
        handshakes = []
        creator = credentials.serverCreator

        def counting(*a, **kw):
            made = creator(*a, **kw)
            original = made.serverConnectionForTLS
            made.serverConnectionForTLS = lambda p: handshakes.append(p) or original(p)
            return made
        credentials.serverCreator = counting
        pmip = PmipService(reactor, PmipCore(LO), (LO, 0), (LO, 0), "udp", 9,
                           ["2001:db8:ff::/64"], channel=Channel("tls", credentials))
        yield pmip.startService()
        self.addCleanup(pmip.stopService)
        peer = Junk(0)
        yield connectProtocol(endpoints.TCP6ClientEndpoint(
            reactor, "::1", pmip.listening.getHost().port), peer)
        peer.transport.write(b"\x16\x03\x01\x00\x05hello")
        yield until(lambda: peer.lost, what="the connection closed")
        self.assertEqual((peer.received, handshakes), (0, []))
        self.assertEqual(pmip.factory.counters["refused"], 1)
        [line] = lines.texts("refused a connection from [::1]:")
        self.assertTrue(line.endswith("before reading it: not an allowed address"), line)
        # An allowed MAG still goes through the handshake (the same listener).
        pmip.factory.allowed = None
        good = Junk(0)
        yield connectProtocol(endpoints.wrapClientTLS(
            DOMAIN.credentials("mag", "MAG1").clientCreator("pmip"),
            endpoints.TCP6ClientEndpoint(reactor, "::1", pmip.listening.getHost().port)),
            good)
        self.addCleanup(good.transport.loseConnection)
        yield until(lambda: pmip.connections, what="the MAG to be authenticated")
        self.assertEqual(len(handshakes), 1)


class IdleRuleTests(SynchronousTestCase):
    """Which quiet connection the idle timeout may close (ControlFactory.hasNewer)."""

    def proto(self, address, upSince, identity=None):
        class Proto:
            peer = (IPv6Address(address), 1000)
            authenticated = True
        p = Proto()
        p.upSince, p.identity = upSince, identity
        return p

    def test_newerFromTheSamePeer(self):
        from netlmm.transport.control import ControlFactory
        f = ControlFactory()
        old, new = self.proto("::1", 1.0), self.proto("::1", 2.0)
        other = self.proto("2001:db8::2", 3.0)
        f.live.update([old, new, other])
        self.assertEqual((f.hasNewer(old), f.hasNewer(new), f.hasNewer(other)),
                         (True, False, False))

    def test_twoMagsBehindOneAddress(self):
        """Over TLS the identity counts too: MAG1 and MAG2 behind one NAT both stay."""
        from netlmm.transport.control import ControlFactory
        f = ControlFactory()
        mag1 = self.proto("::1", 1.0, ("mag", "MAG1"))
        mag2 = self.proto("::1", 2.0, ("mag", "MAG2"))
        mag1again = self.proto("::1", 3.0, ("mag", "MAG1"))
        f.live.update([mag1, mag2])
        self.assertFalse(f.hasNewer(mag1))
        f.live.add(mag1again)
        self.assertEqual((f.hasNewer(mag1), f.hasNewer(mag2)), (True, False))
