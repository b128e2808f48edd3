"""
Prometheus metrics of a daemon, served over HTTP at /metrics on the address
of its [metrics] table (off unless the table is there):

    [metrics]
    listen = "[::1]:9436"

Nothing on a message's path calls prometheus_client: the services count in
the plain ints and dicts they keep anyway (the cores' and guards'
C{counters}, a status -> count dict), and L{RoleCollector} turns them into
metric families only when scraped. The one addition to a hot path is the
PMIP client's Trigger -> Notification latency, a L{Histogram} (one bisect per
Notification); the state stores time their transactions the same way (one
bisect per commit, netlmm.store). Every daemon also exports prometheus_client's process_*
metrics (CPU seconds, resident memory, open file descriptors).

Names follow the Prometheus conventions (netlmm_<role>_..., _total for
counters, _seconds for durations); doc/deployment.md lists them with the
RFC 6475 (PMIPV6-MIB) object each one corresponds to, where one exists.
"""

from bisect import bisect_left

from twisted.application.service import Service
from twisted.internet import endpoints
from twisted.logger import Logger
from twisted.web.resource import NoResource, Resource
from twisted.web.server import Site


#: Upper bounds (seconds) of the latency histograms' buckets: 0.25 ms to 10 s.
LATENCY_BUCKETS = (0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                   0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Histogram:
    """
    A Prometheus histogram kept as plain numbers: C{observe} is a bisect and
    two additions, with no lock (everything runs on the reactor thread).
    """

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds=LATENCY_BUCKETS):
        self.bounds = tuple(bounds)
        #: Per bucket (not cumulative); the last one is +Inf.
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value):
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self):
        return sum(self.counts)

    def family(self, name, documentation, labels=None, families=None):
        """A HistogramMetricFamily (cumulative buckets, as the format wants)."""
        from prometheus_client.core import HistogramMetricFamily
        family = families if families is not None else HistogramMetricFamily(
            name, documentation, labels=list(labels or ()))
        buckets, total = [], 0
        for bound, n in zip(self.bounds + (float("inf"),), self.counts):
            total += n
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), total))
        family.add_metric(list((labels or {}).values()), buckets, self.sum)
        return family


def counter(name, documentation, values, label=None):
    """
    A CounterMetricFamily C{name} (without _total) from C{values}: a number,
    or a dict {label value: number} when C{label} names the label.
    """
    from prometheus_client.core import CounterMetricFamily
    return _family(CounterMetricFamily, name, documentation, values, label)


def gauge(name, documentation, values, label=None):
    """A GaugeMetricFamily, as L{counter}."""
    from prometheus_client.core import GaugeMetricFamily
    return _family(GaugeMetricFamily, name, documentation, values, label)


def _family(kind, name, documentation, values, label):
    if label is None:
        return kind(name, documentation, value=values)
    family = kind(name, documentation, labels=[label])
    for key in sorted(values):
        family.add_metric([str(key)], values[key])
    return family


def snake(name):
    """'authFailed' -> 'auth_failed': a counter's key as a label value."""
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


def tally(entries, attribute, name=str):
    """
    {name(value): how many} of C{attribute} over C{entries} (bindings by
    state): counted in C, about 60 ms for 1,000,000 entries on a busy core.
    """
    from collections import Counter
    from operator import attrgetter
    return {name(k): n for k, n in Counter(map(attrgetter(attribute), entries)).items()}


class RoleCollector:
    """
    A prometheus_client collector around a service's C{metricFamilies()}:
    called at each scrape, on the reactor thread (the page is rendered
    there, so the service's state is never read while it changes).
    """

    def __init__(self, service):
        self.service = service

    def collect(self):
        return list(self.service.metricFamilies())

    def describe(self):
        # No names up front: the registry then never collects at register time.
        return []


class MetricsPage(Resource):
    """/metrics: the registry in Prometheus' text format."""

    isLeaf = True

    def __init__(self, registry):
        super().__init__()
        self.registry = registry

    def render_GET(self, request):
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
        if request.postpath not in ([b""], []) or request.prepath != [b"metrics"]:
            return NoResource().render(request)
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode("ascii"))
        return generate_latest(self.registry)


class MetricsService(Service):
    """
    Serves the metrics of C{roles} (services; those with C{metricFamilies()}
    add theirs to the process metrics) over HTTP on C{listen} =
    (IPv6Address, port).
    """

    log = Logger()

    def __init__(self, reactor, listen, roles=()):
        from prometheus_client import CollectorRegistry, ProcessCollector
        self.reactor = reactor
        self.listen = listen
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.registry)
        for role in roles:
            if hasattr(role, "metricFamilies"):
                self.registry.register(RoleCollector(role))
                if hasattr(role, "enableMetrics"):
                    role.enableMetrics()
        self.port = None

    def startService(self):
        super().startService()
        root = Resource()
        root.putChild(b"metrics", MetricsPage(self.registry))
        site = Site(root)
        site.noisy = False
        address, port = self.listen
        d = endpoints.TCP6ServerEndpoint(self.reactor, port, interface=str(address)
                                         ).listen(site)

        def listening(p):
            self.port = p
            self.log.info("metrics on http://[{address}]:{port}/metrics",
                          address=address, port=p.getHost().port)
        return d.addCallback(listening)

    def stopService(self):
        super().stopService()
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()


def metricsConfig(document):
    """The [metrics] table of a daemon's config: C{listen} or None (off)."""
    table = document.table("metrics")
    if not table.data:
        return None
    listen = table.endpoint("listen", required=True)
    table.finish()
    return listen
