"""
One PMIP client and one MAG with two LMAs at once (draft 4.4), with the real
daemons and stock Linux mobiles in network namespaces (root only):

    CN1 --- LMA1 --- MAG1 ==acc0== mn (anchored at LMA1), mn2 (at LMA2)
            |  \\
          PMIP  LMA2 --- CN2

Each LMA gives its mobiles a prefix of its own pool (draft E.3; the mobiles
configure by SLAAC from the MAG's unicast RAs). The PMIP client's static
anchor policy sends mn2 (by its MN identifier) to LMA2 and everyone else to
LMA1; the MAG learns the anchor from the Notification and keeps a tunnel to
each LMA. Each mobile reaches the correspondent behind its own LMA, and that
correspondent reaches it back. LMA2 is reached through LMA1's namespace,
which routes the core network.

L{AnchorMoveTests}: the operator moves mn from LMA1 to LMA2 while it stays
at MAG1 (`netlmm ctl move` or `drain`, draft 4.4), or mn hands over to MAG2,
which prefers LMA2: mn forms an address in its new prefix, new connections
use it, its TCP connection on the old address goes on through LMA1 until it
is closed; then the MAG releases the old prefix and LMA1's binding goes.
Both MAGs have one router identity (router_mac, router_address).
"""

import io
import os
import shutil
import tempfile
import time
from ipaddress import IPv6Network

from twisted.trial.unittest import SynchronousTestCase

from netlmm.ctl import clientMain
from netlmm.lab import Mobile
from netlmm.lab.probes import ECHO_CLIENT, ECHO_SERVER, command, echoes
from netlmm.lab.domain import (
    CN_ADDRESS, LMA_ADDRESS, MAG_ADDRESSES, MN_MAC, PMIP_ADDRESS, ROUTER_ADDRESS, ROUTER_MAC,
    Topology, dataPlaneConfig, pickDataPlane,
)
from netlmm.test.test_multi_pmip_netns import _TwoClients

LMA2_ADDRESS = "2001:db8:fffe::1"
CN2_ADDRESS = "2001:db8:c2::2"
MN2_MAC = "02:00:00:00:aa:02"
POOLS = {"lma1": IPv6Network("2001:db8:100::/48"), "lma2": IPv6Network("2001:db8:200::/48")}
HOMES = {"lma1": "2001:db8:1::/64", "lma2": "2001:db8:2::/64"}

_LMA = """[lma]
listen = "[{address}]:5436"
home_prefix = "{home}"
max_lifetime = 3600
allowed_clients = ["{pmip}"]
[control]
socket = "{sockets}/{node}.sock"
[lma.prefixes]
pool = "{pool}"
length = 64
[lma.dataplane]
{plane}
"""

_PMIP = f"""[pmip]
listen = "[{PMIP_ADDRESS}]:5437"
mh_bind = "[{PMIP_ADDRESS}]:0"
allowed_mags = ["2001:db8:a1::/64", "2001:db8:a2::/64", "2001:db8:ffff::/64"]
detach_delay = 3.0
[pmip.tls]
transport = "tcp"
[[pmip.lmas]]
name = "lma1"
address = "[{LMA_ADDRESS}]:5436"
prefixes = ["{HOMES['lma1']}", "{POOLS['lma1']}"]
[[pmip.lmas]]
name = "lma2"
address = "[{LMA2_ADDRESS}]:5436"
prefixes = ["{HOMES['lma2']}", "{POOLS['lma2']}"]
[pmip.anchor]
policy = "static"
default = "lma1"
[pmip.anchor.mobiles]
"{MN2_MAC}" = "lma2"
[pmip.anchor.mags]
"{MAG_ADDRESSES[1]}" = "lma2"
[control]
socket = "{{sockets}}/pmip.sock"
"""

_MAG = f"""[mag]
name = "{{name}}"
address = "{{address}}"
lma_address = "{LMA_ADDRESS}"
pmip = "[{PMIP_ADDRESS}]:5437"
old_prefix_lifetime = 600
old_prefix_idle = 2
[mag.tls]
transport = "tcp"
[mag.access]
interface = "acc0"
ra_interval_max = 10
router_mac = "{ROUTER_MAC}"
router_address = "{ROUTER_ADDRESS}"
[mag.attachment]
detector = "rs"
idle_timeout = 0
[mag.assignment]
strategy = "prefix"
[mag.dataplane]
{{plane}}
"""


class TwoLmaTopology(Topology):
    """The shared topology plus LMA2 (behind LMA1) with its correspondent, and mn2."""

    def _build(self):
        super()._build()
        for node in ("lma2", "cn2"):
            self.add(node, router=node == "lma2")
        self.link("lma2", "up0", "lma", "l2", 1600)
        self.addr("lma2", "up0", "2001:db8:d::2/64")
        self.addr("lma", "l2", "2001:db8:d::1/64")
        self.addr("lma2", "lo", f"{LMA2_ADDRESS}/128")
        self.exec("lma2", "ip", "-6", "route", "add", "default", "via", "2001:db8:d::1")
        self.exec("lma", "ip", "-6", "route", "add", f"{LMA2_ADDRESS}/128",
                  "via", "2001:db8:d::2")
        self.link("cn2", "eth0", "lma2", "cn0")
        self.addr("cn2", "eth0", f"{CN2_ADDRESS}/64")
        self.addr("lma2", "cn0", "2001:db8:c2::1/64")
        self.exec("cn2", "ip", "-6", "route", "add", "default", "via", "2001:db8:c2::1")
        self.mobile("mn2")


class _TwoLmas(_TwoClients):
    """The daemons of the topology (files and waits as in the two-client domain)."""

    #: The data plane (None: the best this kernel has).
    dataPlane = None

    def setUp(self):
        plane, needs = pickDataPlane(self.dataPlane)
        # Control sockets: a UNIX socket path is at most 107 octets.
        self.sockets = tempfile.mkdtemp(prefix="netlmm-")
        self.addCleanup(shutil.rmtree, self.sockets, True)
        self.workdir = os.path.abspath(self.mktemp())
        os.makedirs(self.workdir)
        self.t = TwoLmaTopology(testCase=self, needs=(needs,))
        self.t.build()
        configs = {
            "lma": _LMA.format(address=LMA_ADDRESS, home=HOMES["lma1"], pmip=PMIP_ADDRESS,
                               pool=POOLS["lma1"], node="lma", sockets=self.sockets,
                               plane=dataPlaneConfig(plane, "lma", LMA_ADDRESS, "m1")),
            "lma2": _LMA.format(address=LMA2_ADDRESS, home=HOMES["lma2"], pmip=PMIP_ADDRESS,
                                pool=POOLS["lma2"], node="lma2", sockets=self.sockets,
                                plane=dataPlaneConfig(plane, "lma", LMA2_ADDRESS, "up0")),
            "pmip": _PMIP.format(sockets=self.sockets),
        }
        for i, node in enumerate(("mag1", "mag2")):
            configs[node] = _MAG.format(name=node.upper(), address=MAG_ADDRESSES[i],
                                        plane=dataPlaneConfig(plane, "mag", MAG_ADDRESSES[i],
                                                              "core0"))
        for node, text in configs.items():
            with open(self.path(f"{node}.toml"), "w") as f:
                f.write(text)
        for node in ("lma", "lma2"):
            self.t.twistd(node, "lma", self.path(f"{node}.toml"), self.path(f"{node}.log"))
            self.waitFor(lambda n=node: "LMA listening" in self.log(n), node)
        self.t.twistd("pmip", "pmip", self.path("pmip.toml"), self.path("pmip.log"))
        self.waitFor(lambda: "MAGs connect to" in self.log("pmip"), "the PMIP client")
        for node in ("mag1", "mag2"):
            self.t.twistd(node, "mag", self.path(f"{node}.toml"), self.path(f"{node}.log"))
        for node in ("mag1", "mag2"):
            self.waitFor(lambda n=node: "connected to PMIP client" in self.log(n), node)
        self.mobiles = {"mn": self.t.mn, "mn2": Mobile(self.t, "mn2", MN2_MAC)}

    def logs(self):
        return "\n".join(f"--- {n}.log\n{self.log(n)[-3000:]}"
                         for n in ("lma", "lma2", "pmip", "mag1", "mag2"))

    def ctl(self, node, *words):
        """A command to C{node}'s control socket: its reply lines."""
        out = io.StringIO()
        clientMain(os.path.join(self.sockets, f"{node}.sock"), list(words), out=out)
        return out.getvalue().splitlines()


class TwoLmaTests(_TwoLmas, SynchronousTestCase):
    """Two mobiles at one MAG, anchored at two LMAs by the PMIP client's policy."""

    def test_twoMobilesTwoLmas(self):
        for mobile in self.mobiles.values():
            mobile.attach("mag1")
        addresses = {}
        for node, mobile in self.mobiles.items():
            self.waitFor(lambda m=mobile: m.address() is not None, f"{node}'s address", 20)
            addresses[node] = mobile.address()
        # Each has a prefix of its own LMA's pool: the policy anchored mn at
        # the default LMA and mn2 (by the map) at LMA2.
        self.assertIn(addresses["mn"], POOLS["lma1"])
        self.assertIn(addresses["mn2"], POOLS["lma2"])
        self.assertIn("new binding", self.log("lma"))
        self.assertIn("new binding", self.log("lma2"))
        self.assertNotIn(MN2_MAC, self.log("lma"))
        self.assertNotIn(MN_MAC, self.log("lma2"))
        # Each reaches the correspondent behind its own LMA, and back: the MAG
        # tunnels each mobile's prefix to the LMA the Notification named.
        for node, cn, cnAddress in (("mn", "cn", CN_ADDRESS), ("mn2", "cn2", CN2_ADDRESS)):
            self.waitFor(lambda n=node, a=cnAddress: self.ping(n, a, 1) == 0,
                         f"{node} -> {cn}", 15)
            self.assertEqual(self.ping(cn, addresses[node], 3), 0)
        # LMA1 routes only its own homes (and LMA2's address): CN2 is out of
        # its reach and mn2's prefix unknown to it. So mn2's uplink went
        # through LMA2, and CN1, behind LMA1, cannot reach mn2.
        self.assertNotEqual(self.ping("cn", addresses["mn2"], 1), 0)


class AnchorMoveTests(_TwoLmas, SynchronousTestCase):
    """
    A move to another LMA while the mobile stays (draft 4.4), with the
    userspace data plane (it tells the MAG when the old prefix was last used).
    """

    dataPlane = "userspace"

    def test_moveKeepsLiveSession(self):
        """`netlmm ctl move`: mn goes to LMA2, its TCP connection stays on LMA1 until closed."""
        self.liveSessionAcrossMove(lambda: self.assertEqual(
            self.ctl("pmip", "move", MN_MAC, "lma2"), ["ok 0"]))

    def test_drainKeepsLiveSession(self):
        """
        `netlmm ctl drain lma1`: its mobile moves to LMA2 (the only LMA left),
        as with move; LMA2's own mobile stays; undrain takes new mobiles again.
        """
        mn2 = self.mobiles["mn2"]
        mn2.attach("mag1")
        self.waitFor(lambda: mn2.address() is not None, "mn2's address", 20)

        # Bad commands change nothing.
        for words, reply in ((("move", MN_MAC), "error expected 'move MNID LMA'"),
                             (("move", MN_MAC, "lma7"),
                              "error no LMA is named 'lma7' (the LMAs: lma1, lma2)"),
                             (("drain", "lma9"),
                              "error no LMA is named 'lma9' (the LMAs: lma1, lma2)")):
            self.assertEqual(self.ctl("pmip", *words), [reply])

        def drain():
            self.assertEqual(self.ctl("pmip", "drain", "lma1"),
                             ["ok 1", f"{MN_MAC} MOVING lma1 -> lma2"])
        self.liveSessionAcrossMove(drain)
        self.assertEqual(self.ctl("pmip", "lmas"),
                         ["ok 2", f"lma1 [{LMA_ADDRESS}]:5436 0 drained",
                          f"lma2 [{LMA2_ADDRESS}]:5436 2 serving"])
        self.assertEqual(self.ctl("pmip", "undrain", "lma1"), ["ok 0"])
        self.assertIn("serving", self.ctl("pmip", "lmas")[1])

    def test_handoverToMagPreferringLma2(self):
        """
        mn hands over from MAG1 (LMA1's domain) to MAG2, which prefers LMA2
        ([pmip.anchor.mags]): handed over at LMA1 first (its connection goes
        on through MAG2), then moved to LMA2 as by `move`.
        """
        mn = self.t.mn

        def handover():
            mn.detach()
            mn.attach("mag2")
        self.liveSessionAcrossMove(handover, at="mag2")
        self.assertIn("re-anchored at", self.log("mag2"))
        self.assertIn(f"{MN_MAC} moved from lma1 to lma2", self.log("pmip"))

    def liveSessionAcrossMove(self, move, at="mag1"):
        """
        mn, anchored at LMA1 with a TCP connection open, is moved by
        C{move()}; checks the new address, the connection, the release
        (by the MAG C{at}, where the mobile is after the move).
        """
        mn = self.t.mn
        # The baseline: from the mobile's arrival to its first packet
        # through LMA1 (RS, Trigger, PBU, RA, its address's DAD).
        attached = time.monotonic()
        mn.attach("mag1")
        self.waitFor(lambda: self.t.exec("mn", "ping", "-c", "1", "-W", "0.2", CN_ADDRESS,
                                         check=False).returncode == 0,
                     "mn -> cn through LMA1", 20)
        firstAttached = time.monotonic() - attached
        old = mn.address()
        self.assertIn(old, POOLS["lma1"])
        # A long TCP connection from the old address to CN1 (behind LMA1).
        server = self.t.start("cn", command(ECHO_SERVER, CN_ADDRESS, 7000),
                              log=self.path("server.log"))
        self.waitFor(lambda: "listening" in open(self.path("server.log")).read(),
                     "the echo server")
        clientLog = self.path("client.log")
        client = self.t.start("mn", command(ECHO_CLIENT, CN_ADDRESS, 7000, 0.05),
                              log=clientLog)
        self.waitFor(lambda: len(echoes(clientLog)[0]) > 5, "echoes before the move")

        moved = time.monotonic()
        move()
        # The first packet on the new path: CN2 answers only through LMA2,
        # hence only once mn sends from its new address (one ping a process,
        # each choosing its source anew).
        self.waitFor(lambda: self.t.exec("mn", "ping", "-c", "1", "-W", "0.2", CN2_ADDRESS,
                                         check=False).returncode == 0,
                     "mn -> cn2 through LMA2", 20)
        firstPacket = time.monotonic() - moved

        def new():
            return [a for a in mn.addresses() if a in POOLS["lma2"]]
        self.assertTrue(new())
        # The old address is deprecated, not gone: new connections use the new one.
        line = [w for w in self.t.exec("mn", "ip", "-6", "-o", "addr", "show", "dev",
                                       "eth0").stdout.splitlines() if str(old) in w]
        self.assertEqual(len(line), 1)
        self.assertIn("deprecated", line[0])
        route = self.t.exec("mn", "ip", "-6", "route", "get", CN2_ADDRESS).stdout
        self.assertIn(f"src {new()[0]}", route)
        # CN2 is reachable only through LMA2, hence only from the new address.
        self.waitFor(lambda: self.ping("mn", CN2_ADDRESS, 1) == 0, "mn -> cn2 (new path)", 15)
        self.assertEqual(self.ping("cn2", new()[0], 3), 0)
        # The old connection went on through LMA1.
        after = time.monotonic()
        self.waitFor(lambda: len([t for t, _ in echoes(clientLog)[0] if t > after]) > 20,
                     "echoes after the move")
        rows, error = echoes(clientLog)
        self.assertIsNone(error)
        self.assertEqual([n for _, n in rows], list(range(1, len(rows) + 1)),
                         "echoes lost or out of order: the old connection did not survive")
        gaps = [b - a for (a, _), (b, _) in zip(rows, rows[1:])]
        # Both bindings at once meanwhile.
        shown = self.ctl("pmip", "show", MN_MAC)
        self.assertIn("lma lma2", shown)
        self.assertIn("move MOVED lma1 -> lma2", shown)
        self.assertIn(f"old-home {IPv6Network(f'{old}/64', strict=False)}", shown)
        self.assertEqual(self.ctl("lma", "list")[0], "ok 1")
        self.assertTrue(any(row.startswith(f"{MN_MAC} REGISTERED")
                            for row in self.ctl("lma2", "list")[1:]))
        # Closed: unused for old_prefix_idle, the old prefix is released and
        # LMA1's binding deregistered; LMA2's stays.
        for p in (client, server):
            p.terminate()
            p.wait(10)
        for p, f in self.t.processes:
            if p in (client, server) and f is not None:
                f.close()
        self.t.processes = [(p, f) for p, f in self.t.processes if p not in (client, server)]
        closed = time.monotonic()
        self.waitFor(lambda: self.ctl("lma", "list")[0] == "ok 0",
                     "LMA1's binding to be deregistered", 30)
        released = time.monotonic() - closed
        self.assertTrue(any(row.startswith(f"{MN_MAC} REGISTERED")
                            for row in self.ctl("lma2", "list")[1:]))
        self.assertIn("releasing the old home", self.log(at))
        self.assertEqual(self.ping("mn", CN2_ADDRESS, 1), 0)
        print(f"\nfirst packet: on the new path {firstPacket:.2f} s after the move command, "
              f"after attaching {firstAttached:.2f} s (ratio {firstPacket / firstAttached:.2f}); "
              f"longest echo gap {max(gaps) * 1000:.0f} ms; old binding gone "
              f"{released:.1f} s after close")
