"""
Prometheus metrics ([metrics], netlmm.metrics): a domain on loopback does
known things (attachments, a handoff, a forged PBU), then its LMA's and PMIP
client's endpoints are scraped over HTTP with Twisted's Agent and the values
compared with what was done.
"""

import os
from ipaddress import IPv6Address

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, readBody

from netlmm import demo
from netlmm.access import AttachmentEvent
from netlmm.config import ConfigError, Table
from netlmm.lab.fakes import UDPProbe
from netlmm.lab.wait import until
from netlmm.metrics import Histogram, MetricsService, metricsConfig
from netlmm.security import auth, replay
from netlmm.security.auth import SecurityAssociation
from netlmm.store import MemoryStore, SqliteStore
from netlmm.wire import mh

LO = IPv6Address("::1")
MOBILES = (b"mn1@example.net", b"mn2@example.net")


@inlineCallbacks
def scrape(service, path="/metrics"):
    """(HTTP status, {(name, labels as a sorted tuple): value}) of a scrape."""
    port = service.port.getHost().port
    response = yield Agent(reactor).request(
        b"GET", f"http://[::1]:{port}{path}".encode("ascii"))
    body = yield readBody(response)
    samples = {}
    if response.code == 200:
        for family in text_string_to_metric_families(body.decode("utf-8")):
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return response.code, samples


@inlineCallbacks
def startDomain(test):
    """A secured domain on loopback serving MOBILES, stopped at C{test}'s cleanup."""
    domain = demo.Domain(reactor, detachDelay=0.05, tls=False, mobiles=MOBILES)
    yield domain.start()
    test.addCleanup(domain.stop)
    return domain


def bound(domain, mnId, mag):
    """True when C{mnId} is bound through C{mag} at the PMIP client and the LMA."""
    m = domain.pmip.core.mobile(mnId)
    b = domain.lma.core.bindingFor(mnId)
    return (m is not None and m.state == "BOUND" and m.mag == mag.core.address
            and b is not None and b.pcoa == mag.core.address
            and mag.core.attachment(mnId) is not None
            and mag.core.attachment(mnId).state == "BOUND")


@inlineCallbacks
def attachAndHandOff(domain):
    """MOBILES attach at MAG1 (two Triggers), then mn1 moves to MAG2 (one)."""
    mag1, mag2 = domain.mags
    for mnId in MOBILES:
        mag1.attached(AttachmentEvent(mnId))
    yield until(lambda: all(bound(domain, m, mag1) for m in MOBILES), what="attachments")
    mag2.attached(AttachmentEvent(MOBILES[0]))
    yield until(lambda: bound(domain, MOBILES[0], mag2)
                and mag1.core.attachment(MOBILES[0]) is None, what="the handoff")


class MetricsScrapeTests(TestCase):
    """A secured domain's LMA and PMIP client, scraped after known traffic."""

    timeout = 30

    @inlineCallbacks
    def setUp(self):
        self.domain = yield startDomain(self)
        self.metrics = {}
        for role, service in (("lma", self.domain.lma), ("pmip", self.domain.pmip),
                              ("mag2", self.domain.mags[1])):
            m = MetricsService(reactor, (LO, 0), [service])
            yield m.startService()
            self.addCleanup(m.stopService)
            self.metrics[role] = m

    @inlineCallbacks
    def test_valuesMatchWhatWasDone(self):
        d = self.domain
        yield attachAndHandOff(d)
        # One PBU signed with a key the LMA does not have for that SPI.
        probe = UDPProbe()
        peer = reactor.listenUDP(0, probe, interface="::1")
        self.addCleanup(peer.stopListening)
        forger = SecurityAssociation(1000, b"\x01" * 20, "hmac-sha1-96", MOBILES[0])
        bu = mh.BindingUpdate(77, lifetime=100, options=[
            mh.HomeNetworkPrefix("::"), mh.AlternateCareOfAddress("2001:db8:ff::9"),
            mh.MobileNodeIdentifier(MOBILES[0]),
            mh.MobilityMessageReplayProtection(replay.toNtp(reactor.seconds()))])
        peer.write(auth.encodeSigned(bu, forger, LO, LO), ("::1", d.lma.port.port))
        yield until(lambda: probe.received, what="the refusal")

        code, lma = yield scrape(self.metrics["lma"])
        self.assertEqual(code, 200)
        self.assertEqual(lma[("netlmm_lma_initial_binding_registrations_total", ())], 2)
        self.assertEqual(lma[("netlmm_lma_handoffs_total", ())], 1)
        self.assertEqual(lma[("netlmm_lma_pbas_sent_total", (("status", "ACCEPTED"),))],
                         d.lma.core.counters["accepted"])
        self.assertGreaterEqual(d.lma.core.counters["accepted"], 3)
        self.assertEqual(lma[("netlmm_lma_pbas_sent_total",
                              (("status", "MIPV6_AUTH_FAIL"),))], 1)
        self.assertEqual(lma[("netlmm_lma_auth_refusals_total",
                              (("reason", "auth_failed"),))], 1)
        self.assertEqual(lma[("netlmm_lma_auth_refusals_total",
                              (("reason", "replayed"),))], 0)
        self.assertEqual(lma[("netlmm_lma_bindings", (("state", "REGISTERED"),))], 2)
        self.assertEqual(lma[("netlmm_lma_pbus_received_total", ())],
                         d.lma.core.counters["pbu"])
        self.assertGreater(lma[("process_resident_memory_bytes", ())], 0)

        code, pmip = yield scrape(self.metrics["pmip"])
        self.assertEqual(code, 200)
        self.assertEqual(pmip[("netlmm_pmip_triggers_received_total", ())], 3)
        # Each Trigger answered once, and timed.
        self.assertEqual(pmip[("netlmm_pmip_notifications_sent_total",
                               (("result", "success"),))], 3)
        self.assertEqual(pmip[("netlmm_pmip_trigger_notification_seconds_count", ())], 3)
        self.assertEqual(pmip[("netlmm_pmip_trigger_notification_seconds_bucket",
                               (("le", "+Inf"),))], 3)
        self.assertGreater(pmip[("netlmm_pmip_trigger_notification_seconds_sum", ())], 0)
        self.assertEqual(pmip[("netlmm_pmip_mobiles", (("state", "BOUND"),))], 2)
        self.assertEqual(pmip[("netlmm_pmip_mag_connections", ())], 2)
        self.assertEqual(pmip[("netlmm_pmip_pbas_received_total", (("status", "ACCEPTED"),))],
                         d.lma.core.counters["accepted"])
        self.assertEqual(pmip[("netlmm_pmip_auth_refusals_total", (("reason", "no_key"),))], 0)

        # MAG2 saw one mobile arrive (the handoff) and bind.
        code, mag = yield scrape(self.metrics["mag2"])
        self.assertEqual(code, 200)
        self.assertEqual(mag[("netlmm_mag_notifications_received_total",
                              (("result", "success"),))], 1)
        self.assertEqual(mag[("netlmm_mag_attach_to_bound_seconds_count", ())], 1)
        self.assertEqual(mag[("netlmm_mag_attachments", (("state", "BOUND"),))], 1)
        self.assertEqual(mag[("netlmm_mag_pmip_connections", ())], 1)

    @inlineCallbacks
    def test_otherPathsNotFound(self):
        code, _ = yield scrape(self.metrics["lma"], "/")
        self.assertEqual(code, 404)
        code, _ = yield scrape(self.metrics["lma"], "/metrics/x")
        self.assertEqual(code, 404)


class StoreMetricsTests(TestCase):
    """The state stores' commit latency and counts, scraped over HTTP."""

    timeout = 30

    @inlineCallbacks
    def test_storeLatencyScraped(self):
        """
        With state kept (the LMA in SQLite, the PMIP client in memory), each
        role's endpoint shows its store's commits as a latency histogram and
        counters equal to what the store did, and nothing left waiting.
        """
        domain = demo.Domain(reactor, detachDelay=0.05, tls=False, mobiles=MOBILES)
        path = os.path.abspath(self.mktemp())
        domain.lma.store = SqliteStore(path, "lma-bindings", reactor)
        domain.lma.loadState()
        yield domain.start()
        self.addCleanup(domain.stop)
        domain.pmip.store = MemoryStore(reactor)
        metrics = {}
        for role, service in (("lma", domain.lma), ("pmip", domain.pmip)):
            m = MetricsService(reactor, (LO, 0), [service])
            yield m.startService()
            self.addCleanup(m.stopService)
            metrics[role] = m
        yield attachAndHandOff(domain)
        for role, service in (("lma", domain.lma), ("pmip", domain.pmip)):
            code, samples = yield scrape(metrics[role])
            self.assertEqual(code, 200)
            store = service.store
            commits = store.counters["commits"]
            self.assertGreaterEqual(commits, 2, role)
            prefix = f"netlmm_{role}_store"
            self.assertEqual(samples[(f"{prefix}_commit_seconds_count", ())], commits)
            self.assertEqual(samples[(f"{prefix}_commit_seconds_bucket",
                                      (("le", "+Inf"),))], commits)
            self.assertAlmostEqual(samples[(f"{prefix}_commit_seconds_sum", ())],
                                   store.latency.sum)
            self.assertEqual(samples[(f"{prefix}_commits_total", ())], commits)
            # Each attachment and the handoff changed a record.
            self.assertGreaterEqual(samples[(f"{prefix}_entries_written_total", ())], 3)
            self.assertEqual(samples[(f"{prefix}_entries_written_total", ())],
                             store.counters["entries"])
            self.assertEqual(samples[(f"{prefix}_failures_total", ())], 0)
            self.assertEqual(samples[(f"{prefix}_pending", ())], 0)
            self.assertEqual(samples[(f"netlmm_{role}_acknowledgements_held", ())], 0)
        # A real disk write takes time; the SQLite store's is measured.
        self.assertGreater(domain.lma.store.latency.sum, 0)


class HistogramTests(TestCase):
    """The plain-number histogram behind the latency metric."""

    def test_bucketsCumulativeInFamily(self):
        h = Histogram((0.001, 0.01))
        for v in (0.0005, 0.001, 0.005, 2.0):
            h.observe(v)
        family = h.family("x_seconds", "x")
        buckets = [(s.labels["le"], s.value) for s in family.samples
                   if s.name == "x_seconds_bucket"]
        # An observation equal to a bound falls in that bound's bucket (le).
        self.assertEqual(buckets, [("0.001", 2), ("0.01", 3), ("+Inf", 4)])
        self.assertEqual(h.count, 4)
        self.assertAlmostEqual(h.sum, 2.0065)


class MetricsConfigTests(TestCase):
    """The [metrics] table."""

    def test_offWithoutTable(self):
        self.assertIsNone(metricsConfig(Table({}, "")))

    def test_listen(self):
        self.assertEqual(metricsConfig(Table({"metrics": {"listen": "[::1]:9436"}}, "")),
                         (LO, 9436))

    def test_listenRequired(self):
        e = self.assertRaises(ConfigError, metricsConfig, Table({"metrics": {"x": 1}}, ""))
        self.assertIn("metrics.listen", str(e))

    def test_unknownKey(self):
        e = self.assertRaises(ConfigError, metricsConfig, Table(
            {"metrics": {"listen": "[::1]:9436", "path": "/m"}}, ""))
        self.assertIn("path", str(e))

    def test_badAddress(self):
        e = self.assertRaises(ConfigError, metricsConfig,
                              Table({"metrics": {"listen": "127.0.0.1:9436"}}, ""))
        self.assertIn("metrics.listen", str(e))


class DaemonTablesTests(TestCase):
    """[metrics] and [control] in a daemon's config file, as twistd reads it."""

    LMA = ('[lma]\nhome_prefix = "2001:db8:1::/64"\nallowed_clients = ["::1"]\n'
           '[lma.dataplane]\nkind = "memory"\n')
    MAG = ('[mag]\naddress = "2001:db8:ff::1"\nlma_address = "::1"\n'
           'pmip = "[::1]:5437"\n[mag.assignment]\nstrategy = "static"\n'
           '[mag.attachment]\ndetector = "control"\nsocket = "x.sock"\n'
           '[mag.dataplane]\nkind = "memory"\n[mag.tls]\ntransport = "tcp"\n')

    def write(self, text):
        import os
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, "role.toml")
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_lmaServesBoth(self):
        from netlmm.ctl import ControlService
        from netlmm.tap import lma as lmaTap
        options = lmaTap.Options()
        path = self.write(self.LMA + '[metrics]\nlisten = "[::1]:9436"\n'
                          '[control]\nsocket = "lma.sock"\n')
        options.parseOptions(["--config", path])
        service = lmaTap.makeService(options)
        children = {type(s): s for s in service}
        self.assertEqual(children[MetricsService].listen, (LO, 9436))
        self.assertEqual(children[ControlService].socket.path,
                         path.replace("role.toml", "lma.sock"))

    def test_offByDefault(self):
        from netlmm.tap import lma as lmaTap
        options = lmaTap.Options()
        options.parseOptions(["--config", self.write(self.LMA)])
        from netlmm.service.lma import LmaService
        self.assertEqual([type(s) for s in lmaTap.makeService(options)], [LmaService])

    def test_magHasNoControlTable(self):
        from twisted.python import usage
        from netlmm.tap import mag as magTap
        options = magTap.Options()
        options.parseOptions(["--config", self.write(self.MAG)])
        e = self.assertRaises(usage.UsageError, magTap.Options().parseOptions, [
            "--config", self.write(self.MAG + '[control]\nsocket = "mag.sock"\n')])
        self.assertIn("control: only the LMA and the PMIP client", str(e))
