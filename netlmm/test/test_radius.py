"""
Keys from AAA (Appendix C) against a real FreeRADIUS on loopback: a mobile
the server accepts (3GPP2 MN-HA SPI and key), one it rejects, a server that
is down (failover, timeout), and key rollover while the mobile is bound.

Skipped when the freeradius binary is not installed (`apt-get install
freeradius`; ./dev test installs it as root).
"""

import os
import shutil
import socket
import subprocess
import time
from ipaddress import IPv6Address

from twisted.internet import reactor
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import SkipTest, TestCase

from netlmm import demo
from netlmm.access import AttachmentEvent
from netlmm.security.radius import AaaKeys, AAAUnavailable, KeyRejected, RadiusKeyClient
from netlmm.lab.wait import until

FREERADIUS = shutil.which("freeradius") or shutil.which("radiusd")
SECRET = b"netlmm-test-secret"
MN = b"mn1@example.net"
KEY_1000 = "0123456789abcdef0123"
KEY_1001 = "fedcba9876543210fedcba9876543210"

CONFIG = """
prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = {dir}
sbindir = /usr/sbin
logdir = {dir}
raddbdir = {dir}
radacctdir = {dir}
name = freeradius
confdir = {dir}
run_dir = {dir}
db_dir = {dir}
libdir = /usr/lib/freeradius
pidfile = {dir}/radiusd.pid
max_request_time = 5
cleanup_delay = 1
max_requests = 1024
hostname_lookups = no
log {{
  destination = stdout
}}
security {{
  allow_core_dumps = no
  max_attributes = 200
  reject_delay = 0
  status_server = yes
}}
client netlmm {{
  ipv6addr = ::1
  secret = {secret}
}}
modules {{
  files {{
    filename = {dir}/users
  }}
}}
server default {{
  listen {{
    type = auth
    ipv6addr = ::1
    port = {port}
  }}
  authorize {{
    files
  }}
  authenticate {{
  }}
  post-auth {{
  }}
}}
"""

# No realm or suffix module: user@realm names are looked up as they are,
# never proxied.
USERS = """
"mn1@example.net" Auth-Type := Accept
\t3GPP2-MN-HA-SPI = {spi},
\t3GPP2-MN-HA-Shared-Key = "{key}"

"mn2@example.net" Auth-Type := Accept
\t3GPP2-MN-HA-SPI = 2000,
\t3GPP2-MN-HA-Shared-Key = "abcdefabcdefabcdefabcdef",
\tPMIP6-Home-LMA-IPv6-Address = 2001:db8:f2::1

"banned@example.net" Auth-Type := Reject

DEFAULT Auth-Type := Reject
"""


def freePort():
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.bind(("::1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class FreeRadius:
    """A FreeRADIUS started with a generated config directory."""

    def __init__(self, directory, spi=1000, key=KEY_1000):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.port = freePort()
        with open(os.path.join(directory, "radiusd.conf"), "w") as f:
            f.write(CONFIG.format(dir=directory, port=self.port,
                                  secret=SECRET.decode()))
        self.setUsers(spi, key)
        self.proc = None

    def setUsers(self, spi, key):
        with open(os.path.join(self.dir, "users"), "w") as f:
            f.write(USERS.format(spi=spi, key=key))

    def start(self):
        self.log = open(os.path.join(self.dir, "radiusd.log"), "w")
        self.proc = subprocess.Popen([FREERADIUS, "-X", "-d", self.dir],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            text = open(os.path.join(self.dir, "radiusd.log")).read()
            if "Ready to process requests" in text:
                return
            if self.proc.poll() is not None:
                raise RuntimeError("freeradius exited:\n" + text[-3000:])
            time.sleep(0.02)
        raise RuntimeError("freeradius did not become ready")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        if getattr(self, "log", None) is not None:
            self.log.close()
            self.log = None

    def restart(self, spi, key):
        self.stop()
        self.setUsers(spi, key)
        self.start()


class _SlowProxy(DatagramProtocol):
    """Holds each request C{delay} seconds before passing it to C{server}."""

    def __init__(self, server, delay):
        self.server = server
        self.delay = delay
        self.client = None
        self.pending = []

    def datagramReceived(self, data, addr):
        if addr[:2] == self.server:
            if self.client is not None:
                self.transport.write(data, self.client)
            return
        self.client = addr[:2]
        self.pending.append(reactor.callLater(self.delay, self._forward, data))

    def _forward(self, data):
        if self.transport is not None:
            self.transport.write(data, self.server)

    def stopProtocol(self):
        for call in self.pending:
            if call.active():
                call.cancel()


class RadiusTestCase(TestCase):
    timeout = 30

    def setUp(self):
        if FREERADIUS is None:
            raise SkipTest("freeradius is not installed (apt-get install freeradius)")
        self.server = FreeRadius(os.path.abspath(self.mktemp()))
        # Registered before starting, so the server dies even if start fails.
        self.addCleanup(self.server.stop)
        self.server.start()

    def client(self, servers=None, timeout=0.3, retries=2, algorithm="hmac-sha1-96"):
        c = RadiusKeyClient(reactor, servers or [("::1", self.server.port)], SECRET,
                            timeout, retries, algorithm)
        c.start()
        self.addCleanup(c.stop)
        return c


class RadiusClientTests(RadiusTestCase):

    @inlineCallbacks
    def test_accept(self):
        """The 3GPP2 MN-HA SPI and salt-encrypted key come through."""
        sa = yield self.client().fetch(MN)
        self.assertEqual(sa.spi, 1000)
        self.assertEqual(sa.key, KEY_1000.encode())
        self.assertEqual(sa.mnId, MN)
        self.assertEqual(sa.algorithm, "hmac-sha1-96")

    @inlineCallbacks
    def test_homeLma(self):
        """
        The LMA the server names (RFC 6572 PMIP6-Home-LMA-IPv6-Address, from
        FreeRADIUS's own dictionary) is kept with the key, for the 'aaa'
        anchor policy; a mobile the server names none for has none.
        """
        keys = AaaKeys(self.client())
        yield keys.fetch(b"mn2@example.net")
        yield keys.fetch(MN)
        self.assertEqual(keys.homeLma(b"mn2@example.net"), IPv6Address("2001:db8:f2::1"))
        self.assertIsNone(keys.homeLma(MN))
        self.assertEqual(keys.client.homeLmas, {})

    @inlineCallbacks
    def test_reject(self):
        c = self.client()
        with self.assertRaises(KeyRejected):
            yield c.fetch(b"banned@example.net")
        with self.assertRaises(KeyRejected):
            yield c.fetch(b"nobody@example.net")
        self.assertEqual(c.counters["rejects"], 2)

    @inlineCallbacks
    def test_failover(self):
        """The first server is down: after its retries the second answers."""
        dead = ("::1", freePort())
        c = self.client([dead, ("::1", self.server.port)], timeout=0.2, retries=2)
        start = reactor.seconds()
        sa = yield c.fetch(MN)
        self.assertEqual(sa.spi, 1000)
        self.assertEqual(c.counters["failovers"], 1)
        self.assertEqual(c.counters["retransmissions"], 1)
        self.assertGreaterEqual(reactor.seconds() - start, 0.35)

    @inlineCallbacks
    def test_slowServer(self):
        """
        A server slower than the timeout: the client retransmits (same
        Identifier and Authenticator, RFC 2865) and takes the late answer.
        """
        proxy = _SlowProxy(("::1", self.server.port), delay=0.35)
        port = reactor.listenUDP(0, proxy, interface="::1")
        self.addCleanup(port.stopListening)
        c = self.client([("::1", port.getHost().port)], timeout=0.2, retries=3)
        sa = yield c.fetch(MN)
        self.assertEqual(sa.spi, 1000)
        self.assertGreaterEqual(c.counters["retransmissions"], 1)
        self.assertEqual(c.counters.get("failovers", 0), 0)

    @inlineCallbacks
    def test_allDown(self):
        c = self.client([("::1", freePort()), ("::1", freePort())], timeout=0.1,
                        retries=2)
        with self.assertRaises(AAAUnavailable):
            yield c.fetch(MN)
        self.assertEqual(c.counters["timeouts"], 2)

    @inlineCallbacks
    def test_wrongSecretIgnored(self):
        """Replies that fail verification (wrong secret) are dropped: timeout."""
        c = RadiusKeyClient(reactor, [("::1", self.server.port)], b"wrong", 0.2, 2)
        self.addCleanup(c.stop)
        with self.assertRaises(AAAUnavailable):
            yield c.fetch(MN)

    @inlineCallbacks
    def test_cacheSharesOneRequest(self):
        keys = AaaKeys(self.client(), lifetime=60)
        d1, d2 = keys.fetch(MN), keys.fetch(MN)
        sa1 = yield d1
        sa2 = yield d2
        self.assertEqual(sa1, sa2)
        self.assertEqual(keys.client.counters["requests"], 1)
        self.assertTrue(keys.fresh(MN))
        self.assertEqual(keys.bySpi(1000), sa1)


class AaaDomainTests(RadiusTestCase):
    """The PMIP client and the LMA both fetch keys from FreeRADIUS."""

    timeout = 40

    @inlineCallbacks
    def startDomain(self, lifetime=3600):
        self.pmipKeys = AaaKeys(self.client(), lifetime=lifetime)
        self.lmaKeys = AaaKeys(self.client(), lifetime=lifetime)
        self.domain = demo.Domain(reactor, detachDelay=0.05, tls=False,
                                  lmaKeys=self.lmaKeys, pmipKeys=self.pmipKeys)
        yield self.domain.start()
        self.addCleanup(self.domain.stop)

    def bound(self, mag):
        d = self.domain
        m = d.pmip.core.mobile(MN)
        b = d.lma.core.bindingFor(MN)
        return (m is not None and m.state == "BOUND" and b is not None
                and b.pcoa == mag.core.address)

    @inlineCallbacks
    def test_attachWithAaaKeys(self):
        yield self.startDomain()
        d = self.domain
        d.mags[0].attached(AttachmentEvent(MN))
        yield until(lambda: self.bound(d.mags[0]), 10, "binding with AAA keys")
        self.assertEqual(self.pmipKeys.client.counters["accepts"], 1)
        self.assertEqual(self.lmaKeys.client.counters["accepts"], 1)
        self.assertEqual(d.lma.security.counters["verified"], 1)
        # Handoff: both sides use their cache; the LMA does not ask again.
        d.mags[1].attached(AttachmentEvent(MN))
        yield until(lambda: self.bound(d.mags[1]), 10, "handoff")
        self.assertEqual(self.lmaKeys.client.counters["requests"], 1)
        self.assertEqual(self.pmipKeys.client.counters["requests"], 1)

    @inlineCallbacks
    def test_rejectedMobile(self):
        yield self.startDomain()
        d = self.domain
        d.mags[0].attached(AttachmentEvent(b"banned@example.net"))
        yield until(lambda: self.pmipKeys.client.counters["rejects"] == 1, 5,
                    "the Access-Reject")
        yield deferLater(reactor, 0.1, lambda: None)
        self.assertIsNone(d.pmip.core.mobile(b"banned@example.net"))
        self.assertEqual(d.lma.core.counters["pbu"], 0)
        self.assertEqual(d.lma.core.bindings, {})

    @inlineCallbacks
    def test_rollover(self):
        """
        While mn1 is bound with SPI 1000, the server starts handing out SPI
        1001 with a new key. The PMIP client's cached key expires, the next
        attachment fetches SPI 1001, the LMA sees an SPI it does not know,
        fetches it too, and the handoff is accepted: the binding survives.
        """
        yield self.startDomain(lifetime=1.0)
        d = self.domain
        d.mags[0].attached(AttachmentEvent(MN))
        yield until(lambda: self.bound(d.mags[0]), 10, "binding with SPI 1000")
        self.server.restart(1001, KEY_1001)
        yield deferLater(reactor, 1.1, lambda: None)
        d.mags[1].attached(AttachmentEvent(MN))
        yield until(lambda: self.bound(d.mags[1]), 10, "handoff with SPI 1001")
        self.assertEqual(self.lmaKeys.bySpi(1001).key, KEY_1001.encode())
        self.assertEqual(self.lmaKeys.client.counters["requests"], 2)
        self.assertEqual(d.lma.security.counters["authFailed"], 0)

    @inlineCallbacks
    def test_lmaAaaDownRefuses(self):
        """The LMA cannot reach AAA: the PBU is answered 146, no binding."""
        self.pmipKeys = AaaKeys(self.client(), lifetime=60)
        self.lmaKeys = AaaKeys(self.client([("::1", freePort())], timeout=0.1,
                                           retries=1), lifetime=60)
        self.domain = demo.Domain(reactor, detachDelay=0.05, tls=False,
                                  lmaKeys=self.lmaKeys, pmipKeys=self.pmipKeys)
        yield self.domain.start()
        self.addCleanup(self.domain.stop)
        d = self.domain
        d.mags[0].attached(AttachmentEvent(MN))
        yield until(lambda: d.lma.security.counters["authFailed"] >= 1, 5,
                    "the LMA's refusal")
        self.assertEqual(d.lma.core.bindings, {})
        self.assertTrue(d.lma.running and d.pmip.running)
