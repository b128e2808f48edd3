"""
Two PMIP clients in a real namespace domain (root only), with the real
daemons: conflict detection between the PMIP clients for two real Linux
mobiles that form the same SLAAC address (Appendix B), and mobiles spread
over the two clients by the MAGs' stable choice (sections 4.2, 4.5).

    CN --- LMA --- MAG1 ==acc0== mobiles
           | | \\--- MAG2 ==acc0== mobiles
        PMIP1 PMIP2

The fixture is built here on L{netlmm.lab.domain.Topology} (extra namespaces
for the second PMIP client and the mobiles), leaving the shared one untouched,
with the best data plane this kernel has.
"""

import os
import re
from ipaddress import IPv6Address

from twisted.trial.unittest import SynchronousTestCase

from netlmm.core.selection import ClientSelector
from netlmm.lab import Mobile, eui64
from netlmm.lab.domain import (
    CN_ADDRESS, HOME_PREFIX, LMA_ADDRESS, MAG_ADDRESSES, PMIP_ADDRESS, Topology,
    dataPlaneConfig, pickDataPlane,
)
from netlmm.lab.wait import waitFor

PMIP2_ADDRESS = "2001:db8:b2::2"
PMIPS = (PMIP_ADDRESS, PMIP2_ADDRESS)
CLIENTS = [(IPv6Address(a), 5437) for a in PMIPS]

_LMA = """[lma]
listen = "[{lma}]:5436"
home_prefix = "{prefix}"
max_lifetime = 3600
allowed_clients = ["{pmip1}", "{pmip2}"]
[lma.dataplane]
{plane}
"""

_PMIP = """[pmip]
listen = "[{me}]:5437"
lma = "[{lma}]:5436"
mh_bind = "[{me}]:0"
allowed_mags = ["2001:db8:a1::/64", "2001:db8:a2::/64", "2001:db8:ffff::/64"]
detach_delay = 3.0
peers = ["[{peer}]:5438"]
peer_timeout = 1.0
[pmip.tls]
transport = "tcp"
"""

_MAG = """[mag]
name = "{name}"
address = "{address}"
lma_address = "{lma}"
pmip_clients = ["[{pmip2}]:5437", "[{pmip1}]:5437"]
[mag.access]
interface = "acc0"
prefix = "{prefix}"
ra_interval_max = 10
[mag.attachment]
detector = "rs"
idle_timeout = 0
[mag.assignment]
strategy = "slaac"
[mag.dataplane]
{plane}
[mag.tls]
transport = "tcp"
"""


def macsFor(client, count, start=0x10):
    """MACs of mobiles whose MN identifier goes to PMIP client C{client} (0 or 1)."""
    selector = ClientSelector(CLIENTS)
    found = []
    n = start
    while len(found) < count:
        mac = f"02:00:00:00:bb:{n:02x}"
        if selector.choose(mac.encode()) == CLIENTS[client]:
            found.append(mac)
        n += 1
    return found


class TwoClientTopology(Topology):
    """The shared topology plus a second PMIP client and several mobiles."""

    def __init__(self, testCase, mobiles, needs):
        super().__init__(testCase=testCase, needs=needs)
        #: node -> (MAC, sysctls)
        self.settings = mobiles
        self.mobiles = {node: Mobile(self, node, mac) for node, (mac, _) in mobiles.items()}

    def _build(self):
        super()._build()
        self.add("pmip2", router=True)
        self.link("pmip2", "eth0", "lma", "pm2")
        self.addr("pmip2", "eth0", f"{PMIP2_ADDRESS}/64")
        self.addr("lma", "pm2", "2001:db8:b2::1/64")
        self.exec("pmip2", "ip", "-6", "route", "add", "default", "via", "2001:db8:b2::1")
        for node, (mac, settings) in self.settings.items():
            if node == "mn":
                self.sysctl(node, *settings)
            else:
                self.mobile(node, *settings)


class _TwoClients:
    """Start the domain with two PMIP clients; subclasses say which mobiles."""

    mobiles = None

    def setUp(self):
        plane, needs = pickDataPlane()
        self.workdir = os.path.abspath(self.mktemp())
        os.makedirs(self.workdir)
        self.t = TwoClientTopology(self, self.mobiles, needs=(needs,))
        self.t.build()
        files = {"lma": _LMA, "pmip": _PMIP, "pmip2": _PMIP, "mag1": _MAG, "mag2": _MAG}
        common = dict(lma=LMA_ADDRESS, prefix=HOME_PREFIX, pmip1=PMIPS[0], pmip2=PMIPS[1])
        for node, template in files.items():
            extra = {}
            if node == "lma":
                extra = dict(plane=dataPlaneConfig(plane, "lma", LMA_ADDRESS, "m1"))
            if node.startswith("pmip"):
                me = PMIPS[0] if node == "pmip" else PMIPS[1]
                extra = dict(me=me, peer=PMIPS[1] if node == "pmip" else PMIPS[0])
            if node.startswith("mag"):
                address = MAG_ADDRESSES[int(node[-1]) - 1]
                extra = dict(name=node.upper(), address=address,
                             plane=dataPlaneConfig(plane, "mag", address, "core0"))
            with open(self.path(f"{node}.toml"), "w") as f:
                f.write(template.format(**common, **extra))
        role = {"lma": "lma", "pmip": "pmip", "pmip2": "pmip", "mag1": "mag", "mag2": "mag"}
        self.t.twistd("lma", "lma", self.path("lma.toml"), self.path("lma.log"))
        self.waitFor(lambda: "LMA listening" in self.log("lma"), "the LMA")
        for node in ("pmip", "pmip2"):
            self.t.twistd(node, "pmip", self.path(f"{node}.toml"), self.path(f"{node}.log"))
        for node in ("pmip", "pmip2"):
            self.waitFor(lambda n=node: "connected to peer" in self.log(n), f"{node}'s peer")
        for node in ("mag1", "mag2"):
            self.t.twistd(node, role[node], self.path(f"{node}.toml"), self.path(f"{node}.log"))
        for node in ("mag1", "mag2"):
            self.waitFor(lambda n=node: self.log(n).count("connected to PMIP client") >= 2,
                         f"{node}'s two PMIP clients")

    def path(self, name):
        return os.path.join(self.workdir, name)

    def log(self, node):
        try:
            with open(self.path(f"{node}.log")) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def logs(self):
        return "\n".join(f"--- {n}.log\n{self.log(n)[-3000:]}"
                         for n in ("lma", "pmip", "pmip2", "mag1", "mag2"))

    def waitFor(self, predicate, what, timeout=15.0):
        waitFor(predicate, what, timeout,
                alive=lambda: all(p.poll() is None for p, _ in self.t.processes),
                details=self.logs)

    def bound(self, phoa, mag):
        pcoa = MAG_ADDRESSES[int(mag[-1]) - 1]
        return re.search(rf"(new binding {re.escape(str(phoa))}|binding for "
                         rf"{re.escape(str(phoa))} moves \S+) -> {re.escape(pcoa)}\b",
                         self.log("lma")) is not None

    def ping(self, node, target, count=2):
        return self.t.exec(node, "ping", "-c", str(count), "-i", "0.2", "-W", "2",
                           str(target), check=False).returncode


_STABLE = ("net.ipv6.conf.default.addr_gen_mode=2",
           "net.ipv6.conf.default.stable_secret=2001:db8:5ec::1234")
_A, _B = macsFor(0, 1)[0], macsFor(1, 1)[0]


class ConflictTests(_TwoClients, SynchronousTestCase):
    """Two mobiles with the same stable-privacy address, at two PMIP clients."""

    # Same stable_secret, same interface, veths without a permanent MAC: both
    # form the same address (RFC 7217), though their MACs (MN ids) differ.
    mobiles = {"mn": (_A, _STABLE), "mnb": (_B, _STABLE)}

    def test_conflictBetweenClients(self):
        a, b = self.t.mobiles["mn"], self.t.mobiles["mnb"]
        a.attach("mag1")
        self.waitFor(lambda: a.address() is not None, "mobile A's address")
        first = a.address()
        self.waitFor(lambda: self.bound(first, "mag1"), "mobile A's binding")
        self.assertIn(f"{_A} bound: {first}", self.log("pmip"))
        # Mobile B forms the same address at MAG2; its client (PMIP2) asks PMIP1.
        b.attach("mag2")
        self.waitFor(lambda: f"defended {first}" in self.log("mag2"),
                     "MAG2 to defend the address")
        # The kernel marks it dadfailed and, as a SLAAC address, removes it.
        self.assertNotEqual(b.address(), first)
        self.assertIn(f"used here by {_A}", self.log("pmip"))
        self.assertIn("address conflict", self.log("pmip2"))
        # The kernel forms another address (idgen_retries); that one is bound.
        self.waitFor(lambda: b.address() is not None, "mobile B's next address", 20)
        second = b.address()
        self.assertNotEqual(second, first)
        self.waitFor(lambda: self.bound(second, "mag2"), "mobile B's binding")
        self.assertIn(f"{_B} bound: {second}", self.log("pmip2"))
        self.assertFalse(self.bound(first, "mag2"))
        self.assertNotIn(first, b.addresses(usable=False))
        # Both reach the CN, each with its own address.
        self.waitFor(lambda: self.ping("mn", CN_ADDRESS, 1) == 0, "A -> CN", 10)
        self.waitFor(lambda: self.ping("mnb", CN_ADDRESS, 1) == 0, "B -> CN", 10)
        self.assertEqual(self.ping("cn", first), 0)
        self.assertEqual(self.ping("cn", second), 0)


_SPREAD = macsFor(0, 2, 0x40) + macsFor(1, 2, 0x40)


class SpreadTests(_TwoClients, SynchronousTestCase):
    """Four mobiles, two per PMIP client; a handoff keeps the client."""

    mobiles = {node: (mac, ("net.ipv6.conf.default.addr_gen_mode=0",))
               for node, mac in zip(("mn", "mnb", "mnc", "mnd"), _SPREAD)}

    def test_spread(self):
        t = self.t
        nodes = list(self.mobiles)
        for i, node in enumerate(nodes):
            t.mobiles[node].attach("mag1" if i % 2 == 0 else "mag2")
        phoas = {node: eui64(HOME_PREFIX, self.mobiles[node][0]) for node in nodes}
        for i, node in enumerate(nodes):
            self.waitFor(lambda n=node, m="mag1" if i % 2 == 0 else "mag2":
                         self.bound(phoas[n], m), f"{node}'s binding")
        # Each PMIP client bound its two mobiles (it logs that once the PBA
        # is in, after the LMA's log) and no other.
        for client, name in ((0, "pmip"), (1, "pmip2")):
            for node in nodes[2 * client:2 * client + 2]:
                line = f"{self.mobiles[node][0]} bound: {phoas[node]}"
                self.waitFor(lambda: line in self.log(name), f"{name}: {line}")
            for node in nodes[:2 * client] + nodes[2 * client + 2:]:
                self.assertNotIn(f"{self.mobiles[node][0]} bound:", self.log(name))
        # The PBUs came from the chosen client.
        lma = self.log("lma")
        self.assertEqual(len(re.findall(r"new binding", lma)), 4)
        # Hand one mobile of each client over: the same client sends the PBU.
        for node, client in (("mn", "pmip"), ("mnc", "pmip2")):
            t.mobiles[node].detach()
            t.mobiles[node].attach("mag2")
            self.waitFor(lambda n=node: self.bound(phoas[n], "mag2"), f"{node}'s handoff")
            mac = self.mobiles[node][0]
            line = f"{mac} bound: {phoas[node]} via {MAG_ADDRESSES[1]} (handoff)"
            self.waitFor(lambda: line in self.log(client), f"{client}: {line}")
            other = "pmip2" if client == "pmip" else "pmip"
            self.assertNotIn(mac, self.log(other))
        for node in nodes:
            self.waitFor(lambda n=node: self.ping(n, CN_ADDRESS, 1) == 0, f"{node} -> CN", 10)
