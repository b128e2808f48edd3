"""
The authenticated MAG <-> PMIP client channel (draft 4.9.4, done with
mutual TLS) and `netlmm pki`: refusals of wrong peers over real loopback
sockets, the end-to-end path over TLS, credential and config validation.
"""

import datetime
import io
import os
import stat
from ipaddress import IPv6Address
from pathlib import Path

from twisted.internet import endpoints, reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.internet.task import deferLater
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase

from netlmm import pki
from netlmm.access import AttachmentEvent
from netlmm.assignment.static import StaticAssignment
from netlmm.cli import main as cliMain
from netlmm.config import ConfigError
from netlmm.core.lma import LmaCore
from netlmm.core.mag import MagCore
from netlmm.core.pmip import PmipCore
from netlmm.dataplane.memory import MemoryDataPlane
from netlmm.service.lma import LmaService
from netlmm.service.mag import MagService
from netlmm.service.pmip import PmipService
from netlmm.tap import mag as magTap, pmip as pmipTap
from netlmm.lab.fakes import UDPProbe
from netlmm.lab.wait import until
from netlmm.transport.channel import Channel
from netlmm.transport.control import ControlFactory
from netlmm.transport.tls import Credentials, loadCredentials
from netlmm.wire import mh
from netlmm.wire.control import AddressMode, Trigger, encodeControl

LO = IPv6Address("::1")
MAG_ADDRESS = IPv6Address("2001:db8:ff::1")


class TestDomain:
    """A domain CA in memory and credentials issued from it."""

    def __init__(self, domain="example.net"):
        self.caCert, self.caKey = pki.makeCA(domain)

    def credentials(self, role, name, **kw):
        cert, key = pki.issue(self.caCert, self.caKey, role, name, **kw)
        return Credentials(self.caCert, cert, key)


DOMAIN = TestDomain()
OTHER = TestDomain("elsewhere.example")


class LogCapture:
    """Collects formatted log lines while a test runs."""

    def __init__(self, test):
        self.lines = []
        globalLogPublisher.addObserver(self)
        test.addCleanup(globalLogPublisher.removeObserver, self)

    def __call__(self, event):
        self.lines.append(formatEvent(event))

    def matching(self, *fragments):
        return [line for line in self.lines if all(f in line for f in fragments)]


class Peer(Protocol):
    """A hand-driven peer: records what it receives and when it is lost."""

    def __init__(self):
        self.received = []
        self.lost = []
        self.handshake = False

    def dataReceived(self, data):
        self.received.append(data)

    def connectionLost(self, reason):
        self.lost.append(reason)


class ChannelTests(TestCase):
    """Refusals and the good path, over real loopback sockets."""

    timeout = 30

    @inlineCallbacks
    def startPmip(self, credentials=None, lmaPort=None):
        self.logs = LogCapture(self)
        if lmaPort is None:
            self.lmaProbe = UDPProbe()
            self.lmaPort = reactor.listenUDP(0, self.lmaProbe, interface="::1")
            self.addCleanup(self.lmaPort.stopListening)
            lmaPort = self.lmaPort.getHost().port
        credentials = credentials or DOMAIN.credentials("pmip", "pmip1")
        self.pmip = PmipService(reactor, PmipCore(LO), (LO, 0), (LO, 0), "udp", lmaPort,
                                ["::1/128"], channel=Channel("tls", credentials))
        yield self.pmip.startService()
        self.addCleanup(self.pmip.stopService)
        self.pmipPort = self.pmip.listening.getHost().port

    @inlineCallbacks
    def tlsPeer(self, credentials, expectRole="pmip", port=None):
        """A raw TLS client with C{credentials}; returns the Peer."""
        peer = Peer()
        endpoint = endpoints.wrapClientTLS(
            credentials.clientCreator(expectRole),
            endpoints.TCP6ClientEndpoint(reactor, "::1", port or self.pmipPort))
        factory = ClientFactory.forProtocol(lambda: peer)
        proto = yield endpoint.connect(factory)
        self.addCleanup(proto.transport.loseConnection)
        return peer

    @inlineCallbacks
    def assertRefused(self, peer, *fragments):
        """The PMIP client dropped C{peer}, logged why, and took no Trigger."""
        yield until(lambda: peer.lost, what="the refused peer to be disconnected")
        yield until(lambda: self.pmip.factory.counters["refused"] >= 1,
                    what="the refusal to be counted")
        self.assertEqual(self.pmip.connections, set())
        lines = self.logs.matching("refused MAG [::1]:", *fragments)
        self.assertTrue(lines, f"no refusal log line with {fragments}: {self.logs.lines}")
        # Nothing reached the LMA.
        yield deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(self.lmaProbe.received, [])

    def trigger(self, txn=5):
        return encodeControl(Trigger(txn, b"mn", str(MAG_ADDRESS), "2001:db8:1::9",
                                     AddressMode.STATIC))

    @inlineCallbacks
    def test_magFromAnotherCARefused(self):
        """A MAG whose certificate comes from another domain's CA is refused."""
        yield self.startPmip()
        peer = yield self.tlsPeer(OTHER.credentials("mag", "MAG1"))
        peer.transport.write(self.trigger())
        yield self.assertRefused(peer)

    @inlineCallbacks
    def test_pmipCertificateWhereMagExpected(self):
        """A TLS peer presenting a PMIP client certificate to a PMIP client is refused."""
        yield self.startPmip()
        peer = yield self.tlsPeer(DOMAIN.credentials("pmip", "pmip2"))
        peer.transport.write(self.trigger())
        yield self.assertRefused(peer, "PMIP client's (pmip:pmip2)", "a MAG is expected")

    @inlineCallbacks
    def test_expiredCertificateRefused(self):
        """A MAG certificate past its notAfter is refused."""
        yield self.startPmip()
        now = datetime.datetime.now(datetime.timezone.utc)
        peer = yield self.tlsPeer(DOMAIN.credentials(
            "mag", "MAG1", notBefore=now - datetime.timedelta(days=30),
            notAfter=now - datetime.timedelta(days=1)))
        peer.transport.write(self.trigger())
        yield self.assertRefused(peer, "expired")

    @inlineCallbacks
    def test_plainTcpPeerRefused(self):
        """A plain TCP peer writing a Trigger to the TLS listener is refused."""
        yield self.startPmip()
        peer = Peer()
        factory = ClientFactory.forProtocol(lambda: peer)
        proto = yield endpoints.TCP6ClientEndpoint(reactor, "::1", self.pmipPort).connect(factory)
        self.addCleanup(proto.transport.loseConnection)
        proto.transport.write(self.trigger())
        yield self.assertRefused(peer, "TLS handshake failed")

    @inlineCallbacks
    def test_silentPeerTimesOut(self):
        """A peer that never starts a handshake is dropped after the timeout."""
        yield self.startPmip()
        self.pmip.factory.handshakeTimeout = 0.2
        peer = Peer()
        factory = ClientFactory.forProtocol(lambda: peer)
        proto = yield endpoints.TCP6ClientEndpoint(reactor, "::1", self.pmipPort).connect(factory)
        self.addCleanup(proto.transport.loseConnection)
        yield self.assertRefused(peer, "no TLS handshake within 0.2 s")

    @inlineCallbacks
    def test_noClientCertificateRefused(self):
        """A TLS client that presents no certificate is refused."""
        from OpenSSL import SSL
        from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
        from zope.interface import implementer

        @implementer(IOpenSSLClientConnectionCreator)
        class NoCertificate:
            def clientConnectionForTLS(self, protocol):
                c = SSL.Connection(SSL.Context(SSL.TLS_METHOD))
                c.set_connect_state()
                return c
        yield self.startPmip()
        peer = Peer()
        endpoint = endpoints.wrapClientTLS(
            NoCertificate(), endpoints.TCP6ClientEndpoint(reactor, "::1", self.pmipPort))
        proto = yield endpoint.connect(ClientFactory.forProtocol(lambda: peer))
        self.addCleanup(proto.transport.loseConnection)
        proto.transport.write(self.trigger())
        yield until(lambda: peer.lost, what="the refused peer to be disconnected")
        yield until(lambda: self.pmip.factory.counters["refused"] >= 1,
                    what="the refusal to be counted")
        self.assertEqual(self.pmip.connections, set())
        self.assertEqual(self.lmaProbe.received, [])

    @inlineCallbacks
    def test_goodMagTriggerAccepted(self):
        """A MAG of the domain gets its Trigger through: a PBU goes to the LMA."""
        yield self.startPmip()
        peer = yield self.tlsPeer(DOMAIN.credentials("mag", "MAG1"))
        peer.transport.write(self.trigger())
        yield until(lambda: self.lmaProbe.received, what="a PBU")
        (proto,) = self.pmip.connections
        self.assertEqual(proto.identity, ("mag", "MAG1"))
        self.assertTrue(self.logs.matching("MAG connected from [::1]:", "(mag:MAG1, TLS)"))

    @inlineCallbacks
    def test_refusalsDoNotStopService(self):
        """After wrong peers of every kind, a good MAG still gets through."""
        yield self.startPmip()
        bad = [(yield self.tlsPeer(OTHER.credentials("mag", "MAG1"))),
               (yield self.tlsPeer(DOMAIN.credentials("pmip", "x")))]
        for peer in bad:
            peer.transport.write(b"\xff" * 40)
        yield until(lambda: all(p.lost for p in bad), what="refusals")
        peer = yield self.tlsPeer(DOMAIN.credentials("mag", "MAG1"))
        peer.transport.write(self.trigger())
        yield until(lambda: self.lmaProbe.received, what="a PBU")
        self.assertEqual(self.pmip.factory.counters["refused"], 2)

    @inlineCallbacks
    def startRogue(self, credentials):
        """A TLS listener that presents C{credentials} (not a proper PMIP client)."""
        accepted = []

        class Rogue(ControlFactory):
            def connectionMade(self, proto):
                accepted.append(proto)
        factory = Rogue()
        channel = Channel("tls", credentials)
        channel.prepare(factory, reactor, "rogue", "mag")
        port = yield channel.listen(reactor, LO, 0, factory, expectRole="mag")
        self.addCleanup(port.stopListening)
        return port.getHost().port, accepted

    @inlineCallbacks
    def startMag(self, port, credentials=None, peerName=None):
        self.logs = getattr(self, "logs", None) or LogCapture(self)
        credentials = credentials or DOMAIN.credentials("mag", "MAG1")
        mag = MagService(reactor, MagCore(MAG_ADDRESS, LO), (LO, port), StaticAssignment(),
                         MemoryDataPlane(), name="MAG1",
                         channel=Channel("tls", credentials, peerName))
        yield mag.startService()
        self.addCleanup(mag.stopService)
        return mag

    @inlineCallbacks
    def test_magRefusesMagCertificateAsPmip(self):
        """A MAG refuses a 'PMIP client' that presents a MAG certificate."""
        port, accepted = yield self.startRogue(DOMAIN.credentials("mag", "MAG9"))
        mag = yield self.startMag(port)
        yield until(lambda: mag.factory.counters["refused"] >= 1, what="the refusal")
        self.assertIsNone(mag.connection)
        self.assertTrue(self.logs.matching("MAG1: refused PMIP client [::1]:",
                                           "MAG's (mag:MAG9)"))

    @inlineCallbacks
    def test_magRefusesPmipFromAnotherCA(self):
        """A MAG refuses a PMIP client whose certificate is from another CA."""
        port, accepted = yield self.startRogue(OTHER.credentials("pmip", "pmip1"))
        mag = yield self.startMag(port)
        yield until(lambda: mag.factory.counters["refused"] >= 1, what="the refusal")
        self.assertIsNone(mag.connection)
        self.assertEqual(accepted, [])

    @inlineCallbacks
    def test_magChecksPmipName(self):
        """With pmip_name set, another PMIP client of the domain is refused."""
        yield self.startPmip(DOMAIN.credentials("pmip", "pmip2"))
        mag = yield self.startMag(self.pmipPort, peerName="pmip1")
        yield until(lambda: mag.factory.counters["refused"] >= 1, what="the refusal")
        self.assertIsNone(mag.connection)
        self.assertTrue(self.logs.matching("'pmip2'", "'pmip1' is expected"))

    @inlineCallbacks
    def test_goodDomainEndToEnd(self):
        """
        Trigger -> PBU -> PBAck -> Notification over TLS: the MAG binds, and
        each end knows the other's authenticated name.
        """
        lma = LmaService(reactor, LmaCore("2001:db8:1::/64", ["::1/128"]), (LO, 0),
                         "udp", MemoryDataPlane())
        yield lma.startService()
        self.addCleanup(lma.stopService)
        yield self.startPmip(lmaPort=lma.port.port)
        mag = yield self.startMag(self.pmipPort, peerName="pmip1")
        yield until(lambda: mag.connection is not None, what="the MAG to connect")
        self.assertEqual(mag.connection.identity, ("pmip", "pmip1"))
        mag.attached(AttachmentEvent(b"mn1", "2001:db8:1::42"))
        yield until(lambda: mag.core.attachment(b"mn1").state == "BOUND", 10,
                    "the MAG to bind over TLS")
        self.assertEqual(lma.core.binding("2001:db8:1::42").pcoa, MAG_ADDRESS)
        (proto,) = self.pmip.connections
        self.assertEqual(proto.identity, ("mag", "MAG1"))
        self.assertEqual(self.pmip.factory.counters["refused"], 0)


class PkiTests(SynchronousTestCase):
    """`netlmm pki init` and `issue`."""

    def setUp(self):
        self.dir = Path(self.mktemp())

    def cli(self, *argv):
        out = io.StringIO()
        import contextlib
        with contextlib.redirect_stdout(out):
            code = cliMain(list(argv))
        return code, out.getvalue()

    def test_initAndIssue(self):
        """A CA and a node certificate; keys 0600; the role and name in the SAN URI."""
        code, text = self.cli("pki", "init", "--dir", str(self.dir), "--domain", "example.net")
        self.assertEqual(code, 0)
        self.assertIn("domain CA for example.net", text)
        code, text = self.cli("pki", "issue", "--dir", str(self.dir), "--role", "mag",
                              "--name", "MAG1")
        self.assertEqual(code, 0)
        self.assertIn("netlmm:mag:MAG1", text)
        for name in ("ca.key", "mag-MAG1.key"):
            self.assertEqual(stat.S_IMODE(os.stat(self.dir / name).st_mode), 0o600)
        creds = loadCredentials(self.dir / "ca.pem", self.dir / "mag-MAG1.pem",
                                self.dir / "mag-MAG1.key", "mag", "mag.tls")
        self.assertEqual((creds.role, creds.name), ("mag", "MAG1"))

    def test_initRefusesToReplaceCA(self):
        pki.initDomain(self.dir, "example.net")
        with self.assertRaises(pki.PkiError):
            pki.initDomain(self.dir, "example.net")

    def test_issueRefusesToReplace(self):
        pki.initDomain(self.dir, "example.net")
        pki.issueFiles(self.dir, "pmip", "p1")
        with self.assertRaises(pki.PkiError):
            pki.issueFiles(self.dir, "pmip", "p1")
        pki.issueFiles(self.dir, "pmip", "p1", force=True)

    def test_badNameAndRole(self):
        pki.initDomain(self.dir, "example.net")
        for role, name in (("lma", "x"), ("mag", "a:b"), ("mag", ""), ("mag", "../x")):
            with self.assertRaises(pki.PkiError):
                pki.issueFiles(self.dir, role, name)

    def test_issueWithoutCA(self):
        code = cliMain(["pki", "issue", "--dir", str(self.dir), "--role", "mag",
                        "--name", "m"])
        self.assertEqual(code, 1)


class CredentialTests(SynchronousTestCase):
    """Credential files are checked at start with errors naming the key."""

    def setUp(self):
        self.dir = Path(self.mktemp())
        pki.initDomain(self.dir, "example.net")
        pki.issueFiles(self.dir, "pmip", "pmip1")
        pki.issueFiles(self.dir, "mag", "MAG1")

    def load(self, ca="ca.pem", cert="pmip-pmip1.pem", key="pmip-pmip1.key", role="pmip"):
        return loadCredentials(self.dir / ca, self.dir / cert, self.dir / key, role,
                               "pmip.tls")

    def assertError(self, *fragments, **kw):
        with self.assertRaises(ConfigError) as cm:
            self.load(**kw)
        for f in fragments:
            self.assertIn(f, str(cm.exception))

    def test_good(self):
        self.assertEqual(self.load().name, "pmip1")

    def test_missingFiles(self):
        self.assertError("pmip.tls.ca", "no such file", ca="nope.pem")
        self.assertError("pmip.tls.certificate", "no such file", cert="nope.pem")
        self.assertError("pmip.tls.key", "no such file", key="nope.key")

    def test_worldReadableKeyRefused(self):
        os.chmod(self.dir / "pmip-pmip1.key", 0o644)
        self.assertError("pmip.tls.key", "accessible to every user", "0644", "chmod 600")

    def test_unreadableKey(self):
        (self.dir / "bad.key").write_bytes(b"not a key")
        os.chmod(self.dir / "bad.key", 0o600)
        self.assertError("pmip.tls.key", "not a PEM private key", key="bad.key")

    def test_notACertificate(self):
        self.assertError("pmip.tls.certificate", "not a PEM certificate",
                         cert="pmip-pmip1.key")

    def test_keyMismatch(self):
        self.assertError("pmip.tls.key", "does not match", key="mag-MAG1.key")

    def test_wrongRole(self):
        self.assertError("pmip.tls.certificate", "MAG certificate", "needs a 'pmip'",
                         cert="mag-MAG1.pem", key="mag-MAG1.key")

    def test_otherCA(self):
        other = Path(self.mktemp())
        pki.initDomain(other, "elsewhere.example")
        os.replace(other / "ca.pem", self.dir / "other-ca.pem")
        self.assertError("pmip.tls.certificate", "not issued by the CA", ca="other-ca.pem")

    def test_caMustBeCA(self):
        self.assertError("pmip.tls.ca", "not a CA certificate", ca="mag-MAG1.pem")

    def test_expired(self):
        caCert, caKey = pki.loadCA(self.dir)
        now = datetime.datetime.now(datetime.timezone.utc)
        cert, key = pki.issue(caCert, caKey, "pmip", "old",
                              notBefore=now - datetime.timedelta(days=10),
                              notAfter=now - datetime.timedelta(days=1))
        (self.dir / "old.pem").write_bytes(pki.certificatePEM(cert))
        pki.writeSecret(self.dir / "old.key", pki.keyPEM(key))
        self.assertError("pmip.tls.certificate", "expired", cert="old.pem", key="old.key")


class ConfigTests(SynchronousTestCase):
    """[pmip.tls] and [mag.tls] in the role configs."""

    PMIP = '[pmip]\nlma = "[::1]:5436"\nallowed_mags = ["::1"]\n'
    MAG = ('[mag]\naddress = "2001:db8:ff::1"\nlma_address = "::1"\n'
           '[mag.assignment]\nstrategy = "static"\n[mag.attachment]\ndetector = "control"\n'
           'socket = "x.sock"\n[mag.dataplane]\nkind = "memory"\n')

    def setUp(self):
        self.dir = Path(self.mktemp())
        pki.initDomain(self.dir / "pki", "example.net")
        pki.issueFiles(self.dir / "pki", "pmip", "pmip1")
        pki.issueFiles(self.dir / "pki", "mag", "MAG1")

    def parse(self, options, text):
        path = self.dir / "role.toml"
        path.write_text(text)
        options.parseOptions(["--config", str(path)])
        return options.built

    def rejected(self, options, text, *fragments):
        with self.assertRaises(usage.UsageError) as cm:
            self.parse(options, text)
        for f in fragments:
            self.assertIn(f, str(cm.exception))

    TLS = ('[{role}.tls]\nca = "pki/ca.pem"\ncertificate = "pki/{role}-{name}.pem"\n'
           'key = "pki/{role}-{name}.key"\n')

    def test_pmipTlsRelativeToConfig(self):
        built = self.parse(pmipTap.Options(), self.PMIP + self.TLS.format(
            role="pmip", name="pmip1"))
        self.assertEqual(built["channel"].transport, "tls")
        self.assertEqual(built["channel"].credentials.name, "pmip1")

    def test_magTlsWithPmipName(self):
        built = self.parse(magTap.Options(), self.MAG + self.TLS.format(
            role="mag", name="MAG1") + 'pmip_name = "pmip1"\n')
        self.assertEqual(built["channel"].peerName, "pmip1")
        self.assertEqual(built["channel"].credentials.describe(), "MAG MAG1")

    def test_channelMustBeChosen(self):
        """Without [pmip.tls] / [mag.tls] the daemon refuses to start (secure by default)."""
        self.rejected(pmipTap.Options(), self.PMIP, "pmip.tls: missing",
                      "mutually authenticated TLS", "transport = 'tcp'")
        self.rejected(magTap.Options(), self.MAG, "mag.tls: missing")

    def test_tlsIsTheDefaultTransport(self):
        """A [pmip.tls] table that names no transport is TLS, and needs its files."""
        self.rejected(pmipTap.Options(), self.PMIP + "[pmip.tls]\n", "pmip.tls.ca: missing")

    def test_plainTcpOnlyWhenSaid(self):
        built = self.parse(pmipTap.Options(), self.PMIP + '[pmip.tls]\ntransport = "tcp"\n')
        self.assertEqual(built["channel"].transport, "tcp")

    def test_missingFileSaysHowToMakeIt(self):
        """A certificate that is not there: the error says how to make the PKI."""
        self.rejected(pmipTap.Options(), self.PMIP + self.TLS.format(role="pmip", name="p9"),
                      f"pmip.tls.certificate: {self.dir.absolute()}/pki/pmip-p9.pem: no such "
                      "file", "netlmm pki issue --dir DIR --role pmip --name NAME")

    def test_tcpWithCredentialsRefused(self):
        self.rejected(pmipTap.Options(), self.PMIP + self.TLS.format(
            role="pmip", name="pmip1") + 'transport = "tcp"\n',
            "pmip.tls.ca: only used with transport 'tls'")

    def test_missingKeyNamed(self):
        self.rejected(pmipTap.Options(), self.PMIP + '[pmip.tls]\nca = "pki/ca.pem"\n',
                      "pmip.tls.certificate: missing")

    def test_badTransport(self):
        self.rejected(magTap.Options(), self.MAG + '[mag.tls]\ntransport = "quic"\n',
                      "mag.tls.transport", "'sctp+tls'")

    def test_wrongRoleCertificate(self):
        self.rejected(magTap.Options(), self.MAG + self.TLS.format(role="pmip", name="pmip1")
                      .replace("[pmip.tls]", "[mag.tls]"),
                      "mag.tls.certificate", "needs a 'mag' certificate")

    def test_helpDocumentsTls(self):
        for options in (pmipTap.Options(), magTap.Options()):
            text = str(options)
            for key in ("tls]", "transport", "'sctp+tls'", "ca", "certificate", "key",
                        "netlmm pki"):
                self.assertIn(key, text)
        self.assertIn("pmip_name", str(magTap.Options()))


class DemoTests(TestCase):
    """`netlmm demo` runs the channel over TLS by default and says so."""

    timeout = 30

    @inlineCallbacks
    def test_demoShowsTls(self):
        from netlmm import demo
        out = io.StringIO()
        result = yield demo.run(reactor, out)
        self.assertEqual(result, 0)
        ladder = out.getvalue().split("\n\n")[0]
        for mag in ("MAG1", "MAG2"):
            self.assertIn(f"mutually authenticated: {mag} is mag:{mag}, peer pmip:pmip1",
                          ladder)


class DaemonTlsTests(SynchronousTestCase):
    """
    The shipped configs, TLS as shipped, with certificates made by `netlmm
    pki` as their comments say: the daemons bind a mobile over the
    authenticated channel.
    """

    def setUp(self):
        from netlmm.test.test_daemons import examples
        self.dir = Path(self.mktemp())
        self.dir.mkdir()
        import shutil
        for name in ("lma.toml", "pmip.toml", "mag.toml", "keys.toml"):
            shutil.copy(examples() / name, self.dir / name)
        os.chmod(self.dir / "keys.toml", 0o600)  # git does not keep a secret file's 0600
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()

    def run_(self, *argv):
        import subprocess
        import sys
        out = subprocess.run([sys.executable, "-m", "netlmm.cli", *argv], cwd=self.dir,
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        return out.stdout

    def log(self, role):
        return (self.dir / f"{role}.log").read_text()

    def start(self, role):
        import subprocess
        from netlmm.test.test_daemons import TWISTD
        log = open(self.dir / f"{role}.log", "w")
        self.addCleanup(log.close)
        p = subprocess.Popen(TWISTD + ["-n", "--pidfile=", f"netlmm-{role}", "--config",
                                       f"{role}.toml"], cwd=self.dir, stdout=log,
                             stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p

    def waitFor(self, predicate, what, timeout=20):
        import time
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            for p in self.procs:
                if p.poll() is not None:
                    self.fail(f"a daemon exited early waiting for {what}:\n" + "\n".join(
                        self.log(r) for r in ("lma", "pmip", "mag")
                        if (self.dir / f"{r}.log").exists()))
            time.sleep(0.05)
        self.fail(f"timed out waiting for {what}")

    def test_shippedConfigsOverTls(self):
        from twisted.trial.unittest import SkipTest
        from netlmm.test.test_daemons import portFree
        if not (portFree(5436) and portFree(5437)):
            raise SkipTest("ports 5436/5437 on ::1 are in use")
        self.run_("pki", "init", "--dir", "pki", "--domain", "example.net")
        self.run_("pki", "issue", "--dir", "pki", "--role", "pmip", "--name", "pmip1")
        self.run_("pki", "issue", "--dir", "pki", "--role", "mag", "--name", "MAG1")
        self.start("lma")
        self.waitFor(lambda: "LMA listening" in self.log("lma"), "the LMA")
        self.start("pmip")
        self.waitFor(lambda: "MAGs connect to" in self.log("pmip"), "the PMIP client")
        self.assertIn("TLS over TCP, mutually authenticated as PMIP client pmip1",
                      self.log("pmip"))
        self.start("mag")
        self.waitFor(lambda: "connected to PMIP client" in self.log("mag"), "the MAG")
        self.assertIn("(pmip:pmip1, TLS)", self.log("mag"))
        self.waitFor(lambda: "(mag:MAG1, TLS)" in self.log("pmip"), "the PMIP client log")
        import subprocess
        import sys
        sock = str(self.dir / "netlmm-mag1.sock")
        ctl = [sys.executable, "-m", "netlmm.cli", "mag-ctl", "--socket", sock]
        subprocess.run(ctl + ["attach", "mn1@example.net"], check=True, timeout=10,
                       capture_output=True)
        self.waitFor(lambda: "BOUND" in subprocess.run(
            ctl + ["list"], capture_output=True, text=True, timeout=10).stdout,
            "the binding over TLS")
