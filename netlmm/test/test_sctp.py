"""
SCTP for the MAG <-> PMIP client channel (draft 4.9.3).

Two levels: the socket set-up and the endpoints against fakes (run
everywhere), and the real thing over loopback (needs a kernel with SCTP). On a
kernel without SCTP the real tests skip with the reason, and `./dev test`
runs them under kernel-lab (see netlmm.lab.kernel).
"""

import errno
import socket
import struct
from ipaddress import IPv6Address

from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.internet.defer import inlineCallbacks
from twisted.internet.error import ConnectError, ConnectingCancelledError, TimeoutError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from netlmm.access import AttachmentEvent
from netlmm.lab import require, timeScale
from netlmm.transport import sctp
from netlmm.transport.channel import Channel


class FakeSocket:
    """Records what the SCTP code does to a socket."""

    fd = 41

    def __init__(self, family, kind, proto, connectResult=errno.EINPROGRESS, soError=0):
        self.args = (family, kind, proto)
        self.options = {}
        self.blocking = True
        self.closed = False
        self.bound = None
        self.listening = None
        self.connected = None
        self.connectResult = connectResult
        self.soError = soError

    def setsockopt(self, level, name, value):
        self.options[(level, name)] = value

    def getsockopt(self, level, name):
        assert (level, name) == (socket.SOL_SOCKET, socket.SO_ERROR)
        return self.soError

    def setblocking(self, flag):
        self.blocking = flag

    def bind(self, address):
        self.bound = address

    def listen(self, backlog):
        self.listening = backlog

    def connect_ex(self, address):
        self.connected = address
        return self.connectResult

    def fileno(self):
        return self.fd

    def close(self):
        self.closed = True


class FakeSockets:
    """A socket factory handing out L{FakeSocket}s, or failing like a kernel without SCTP."""

    def __init__(self, fail=False, **kw):
        self.made = []
        self.fail = fail
        self.kw = kw

    def __call__(self, family, kind, proto):
        if self.fail:
            raise OSError(errno.EPROTONOSUPPORT, "Protocol not supported")
        s = FakeSocket(family, kind, proto, **self.kw)
        self.made.append(s)
        return s


class FakeReactor(Clock):
    """The reactor calls the SCTP endpoints make."""

    def __init__(self):
        super().__init__()
        self.writers = []
        self.adopted = []

    def addWriter(self, writer):
        self.writers.append(writer)

    def removeWriter(self, writer):
        if writer in self.writers:
            self.writers.remove(writer)

    def adoptStreamPort(self, fd, family, factory):
        self.adopted.append(("port", fd, family, factory))
        return "port"

    def adoptStreamConnection(self, fd, family, factory):
        self.adopted.append(("connection", fd, family, factory))
        factory.buildProtocol(None)


class SocketSetupTests(SynchronousTestCase):
    """The socket is set up as draft 4.9.3 asks, whatever the kernel."""

    def test_oneToOneSingleStreamPpid(self):
        sockets = FakeSockets()
        s = sctp.sctpSocket(sockets)
        self.assertEqual(s.args, (socket.AF_INET6, socket.SOCK_STREAM, 132))
        self.assertFalse(s.blocking)
        # One stream each way.
        self.assertEqual(struct.unpack("=HHHH", s.options[(132, sctp.SCTP_INITMSG)])[:2],
                         (1, 1))
        self.assertEqual(s.options[(132, sctp.SCTP_NODELAY)], 1)
        info = s.options[(132, sctp.SCTP_DEFAULT_SNDINFO)]
        sid, flags, ppid, context, assoc = struct.unpack("=HH4sII", info)
        # Stream 0, ordered (no SCTP_UNORDERED flag), PPID on the wire "PMIP".
        self.assertEqual((sid, flags, ppid), (0, 0, b"PMIP"))
        self.assertEqual(struct.unpack("!I", ppid)[0], sctp.PPID_PMIP_MAG)
        self.assertEqual(len(info), 16)

    def test_unavailableReason(self):
        reason = sctp.sctpUnavailable(FakeSockets(fail=True))
        self.assertIn("this kernel has no SCTP", reason)
        self.assertIn("IPPROTO_SCTP", reason)
        self.assertIsNone(sctp.sctpUnavailable(FakeSockets()))

    def test_channelChoosesSctp(self):
        self.assertIsInstance(Channel("sctp").serverEndpoint(reactor, "::1", 0),
                              sctp.SCTPServerEndpoint)
        self.assertIsInstance(Channel("sctp").clientEndpoint(reactor, "::1", 5437),
                              sctp.SCTPClientEndpoint)
        self.assertEqual(Channel("sctp").describe(), "plain SCTP (unauthenticated)")


class EndpointTests(SynchronousTestCase):
    """The endpoints adopt the socket into the reactor."""

    def test_listen(self):
        sockets, r = FakeSockets(), FakeReactor()
        factory = Factory.forProtocol(Protocol)
        d = sctp.SCTPServerEndpoint(r, 5437, "::1", socketFactory=sockets).listen(factory)
        self.assertEqual(self.successResultOf(d), "port")
        (s,) = sockets.made
        self.assertEqual((s.bound, s.listening), (("::1", 5437), 50))
        self.assertEqual(r.adopted, [("port", 41, socket.AF_INET6, factory)])
        # The reactor holds its own duplicate; ours is closed.
        self.assertTrue(s.closed)

    def test_listenFailsWithoutSctp(self):
        d = sctp.SCTPServerEndpoint(FakeReactor(), 0, socketFactory=FakeSockets(fail=True)) \
            .listen(Factory())
        self.failureResultOf(d, OSError)

    def connect(self, **kw):
        sockets, r = FakeSockets(**kw), FakeReactor()
        endpoint = sctp.SCTPClientEndpoint(r, IPv6Address("::1"), 5437, timeout=5,
                                           socketFactory=sockets)
        d = endpoint.connect(Factory.forProtocol(Protocol))
        return sockets, r, d

    def test_connectAdoptsWhenWritable(self):
        sockets, r, d = self.connect()
        (s,) = sockets.made
        self.assertEqual(s.connected, ("::1", 5437))
        self.assertNoResult(d)
        (writer,) = r.writers
        writer.doWrite()
        self.assertIsInstance(self.successResultOf(d), Protocol)
        self.assertEqual(r.adopted[0][:3], ("connection", 41, socket.AF_INET6))
        self.assertEqual((r.writers, r.getDelayedCalls()), ([], []))
        self.assertTrue(s.closed)

    def test_connectRefused(self):
        sockets, r, d = self.connect(soError=errno.ECONNREFUSED)
        r.writers[0].doWrite()
        self.failureResultOf(d, ConnectError)
        self.assertTrue(sockets.made[0].closed)
        self.assertEqual(r.adopted, [])

    def test_connectImmediateError(self):
        sockets, r, d = self.connect(connectResult=errno.ENETUNREACH)
        self.failureResultOf(d, ConnectError)
        self.assertEqual(r.writers, [])

    def test_connectTimeout(self):
        sockets, r, d = self.connect()
        r.advance(5)
        self.failureResultOf(d, TimeoutError)
        self.assertEqual(r.writers, [])
        self.assertTrue(sockets.made[0].closed)

    def test_connectCancelled(self):
        sockets, r, d = self.connect()
        d.cancel()
        self.failureResultOf(d, ConnectingCancelledError)
        self.assertEqual((r.writers, r.getDelayedCalls()), ([], []))
        self.assertTrue(sockets.made[0].closed)

    def test_connectWithoutSctp(self):
        sockets, r, d = self.connect(fail=True)
        self.failureResultOf(d, ConnectError)


# ---------------------------------------------------------------- real SCTP

SCTP_RECVRCVINFO = 32   # socket option: deliver struct sctp_rcvinfo
SCTP_RCVINFO = 3        # its cmsg type
SCTP_UNORDERED = 1


def recvWithInfo(sock):
    """One SCTP message and its (stream, flags, ppid)."""
    data, ancillary, flags, address = sock.recvmsg(4096, socket.CMSG_SPACE(64))
    for level, kind, value in ancillary:
        if level == 132 and kind == SCTP_RCVINFO:
            # The PPID is carried as is: the octets of the wire, network order.
            sid, ssn, rflags, ppid = struct.unpack_from("=HHH2x4s", value)
            return data, (sid, rflags, struct.unpack("!I", ppid)[0])
    raise AssertionError(f"no SCTP_RCVINFO in {ancillary!r}")


class RealSctpTests(TestCase):
    """Over a real kernel's SCTP on loopback."""

    timeout = 30 * timeScale()

    def setUp(self):
        require(self, "sctp")

    @inlineCallbacks
    def domain(self, channel):
        from netlmm.assignment.static import StaticAssignment
        from netlmm.core.lma import LmaCore
        from netlmm.core.mag import MagCore
        from netlmm.core.pmip import PmipCore
        from netlmm.dataplane.memory import MemoryDataPlane
        from netlmm.service.lma import LmaService
        from netlmm.service.mag import MagService
        from netlmm.service.pmip import PmipService
        lo = IPv6Address("::1")
        lma = LmaService(reactor, LmaCore("2001:db8:1::/64", ["::1/128"]), (lo, 0),
                         "udp", MemoryDataPlane())
        yield lma.startService()
        self.addCleanup(lma.stopService)
        pmip = PmipService(reactor, PmipCore(lo), (lo, 0), (lo, 0), "udp", lma.port.port,
                           ["::1/128"], channel=channel("pmip"))
        yield pmip.startService()
        self.addCleanup(pmip.stopService)
        mag = MagService(reactor, MagCore("2001:db8:ff::1", lo),
                         (lo, pmip.listening.getHost().port), StaticAssignment(),
                         MemoryDataPlane(), name="MAG1", channel=channel("mag"))
        yield mag.startService()
        self.addCleanup(mag.stopService)
        from netlmm.lab.wait import until
        mag.attached(AttachmentEvent(b"mn1", "2001:db8:1::42"))
        yield until(lambda: mag.core.attachment(b"mn1").state == "BOUND", 20,
                    "the MAG to bind over SCTP")
        self.assertEqual(lma.core.binding("2001:db8:1::42").pcoa,
                         IPv6Address("2001:db8:ff::1"))
        return lma, pmip, mag

    @inlineCallbacks
    def test_endToEndOverSctp(self):
        """Trigger -> PBU -> PBAck -> Notification over a real SCTP association."""
        lma, pmip, mag = yield self.domain(lambda role: Channel("sctp"))
        (proto,) = pmip.connections
        handle = proto.transport.getHandle()
        self.assertEqual(handle.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE),
                         socket.SOCK_STREAM)
        self.assertEqual(handle.getsockopt(socket.SOL_SOCKET, socket.SO_PROTOCOL), 132)

    @inlineCallbacks
    def test_endToEndTlsOverSctp(self):
        """The same with mutually authenticated TLS on the association."""
        from netlmm.test.test_tls import DOMAIN
        names = {"pmip": "pmip1", "mag": "MAG1"}
        lma, pmip, mag = yield self.domain(
            lambda role: Channel("sctp+tls", DOMAIN.credentials(role, names[role])))
        self.assertEqual(mag.connection.identity, ("pmip", "pmip1"))

    def rawSocket(self):
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM, 132)
        self.addCleanup(s.close)
        s.setsockopt(132, SCTP_RECVRCVINFO, 1)
        return s

    @inlineCallbacks
    def test_pmipSendsPpidOnStreamZeroInOrder(self):
        """The PMIP client's Notification: stream 0, ordered, PPID 'PMIP'."""
        from netlmm.lab.fakes import UDPProbe
        from netlmm.lab.wait import until
        from netlmm.core.pmip import PmipCore
        from netlmm.service.pmip import PmipService
        from netlmm.wire.control import Result, decodeControl, encodeControl, Trigger, \
            AddressMode
        lo = IPv6Address("::1")
        probe = UDPProbe()
        port = reactor.listenUDP(0, probe, interface="::1")
        self.addCleanup(port.stopListening)
        pmip = PmipService(reactor, PmipCore(lo), (lo, 0), (lo, 0), "udp",
                           port.getHost().port, ["::1/128"], channel=Channel("sctp"))
        yield pmip.startService()
        self.addCleanup(pmip.stopService)
        raw = self.rawSocket()
        raw.settimeout(30)
        raw.connect(("::1", pmip.listening.getHost().port))
        good = encodeControl(Trigger(77, b"mn", "2001:db8:ff::1", None,
                                     AddressMode.LMA_ASSIGNED))
        broken = bytearray(good[:8] + good[12:])   # no L2-ID: MALFORMED
        broken[1] = len(broken)
        raw.send(bytes(broken))
        yield until(lambda: pmip.factory.counters["malformed"], 20, "the Trigger")
        data, (sid, flags, ppid) = yield deferToThread(recvWithInfo, raw)
        n = decodeControl(data)
        self.assertEqual((n.transaction, n.result), (77, Result.MALFORMED))
        self.assertEqual((sid, flags & SCTP_UNORDERED, ppid),
                         (0, 0, sctp.PPID_PMIP_MAG))

    @inlineCallbacks
    def test_magSendsPpidOnStreamZeroInOrder(self):
        """The MAG's Trigger: stream 0, ordered, PPID 'PMIP'."""
        from netlmm.assignment.static import StaticAssignment
        from netlmm.core.mag import MagCore
        from netlmm.dataplane.memory import MemoryDataPlane
        from netlmm.service.mag import MagService
        from netlmm.wire.control import Trigger, decodeControl
        lo = IPv6Address("::1")
        listener = self.rawSocket()
        listener.bind(("::1", 0))
        listener.listen(1)
        listener.settimeout(60)
        mag = MagService(reactor, MagCore("2001:db8:ff::1", lo),
                         (lo, listener.getsockname()[1]), StaticAssignment(),
                         MemoryDataPlane(), name="MAG1", channel=Channel("sctp"))
        yield mag.startService()
        self.addCleanup(mag.stopService)
        mag.attached(AttachmentEvent(b"mn1", "2001:db8:1::42"))

        def accept():
            conn, _ = listener.accept()
            conn.settimeout(60)
            try:
                return recvWithInfo(conn)
            finally:
                conn.close()
        data, (sid, flags, ppid) = yield deferToThread(accept)
        self.assertIsInstance(decodeControl(data), Trigger)
        self.assertEqual((sid, flags & SCTP_UNORDERED, ppid),
                         (0, 0, sctp.PPID_PMIP_MAG))


class ConfigTests(SynchronousTestCase):
    """transport = 'sctp' / 'sctp+tls' in the role configs."""

    def test_sctpChosenInConfig(self):
        from pathlib import Path
        from netlmm import pki
        from netlmm.tap import pmip as pmipTap
        d = Path(self.mktemp())
        pki.initDomain(d, "example.net")
        pki.issueFiles(d, "pmip", "pmip1")
        base = '[pmip]\nlma = "[::1]:5436"\nallowed_mags = ["::1"]\n[pmip.tls]\n'
        for text, tls in (('transport = "sctp"\n', False),
                          ('transport = "sctp+tls"\nca = "ca.pem"\ncertificate = '
                           '"pmip-pmip1.pem"\nkey = "pmip-pmip1.key"\n', True)):
            (d / "pmip.toml").write_text(base + text)
            o = pmipTap.Options()
            o.parseOptions(["--config", str(d / "pmip.toml")])
            channel = o.built["channel"]
            self.assertEqual((channel.sctp, channel.tls), (True, tls))
