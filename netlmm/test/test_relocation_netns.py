"""
PMIP client relocation (draft E.1) with the real daemons in namespaces (root
only): 20 real Linux mobiles on one MAG, two PMIP clients with RFC 4285 per-MN
keys per client, from a real FreeRADIUS (Appendix C: each client is
authorized for each mobile by NAS-IPv6-Address) or from key files; kill -9
of one client. Every mobile it served is re-registered through the other
within a measured time, keeps its address, and its traffic goes on; the
killed client, restarted with its store, takes none back and sends no PBU
for them. A mobile the surviving client is not authorized for is refused
(by the AAA server, or by the LMA: 129), its binding unchanged.

    CN --- LMA --- MAG1 ==acc0== 20 mobiles
           | |
        PMIP1 PMIP2

Built on L{netlmm.test.test_multi_pmip_netns}'s two-client topology.
"""

import os
import re
import signal
import time

from twisted.trial.unittest import SynchronousTestCase

from netlmm.lab import eui64
from netlmm.lab.domain import (
    CN_ADDRESS, HOME_PREFIX, LMA_ADDRESS, MAG_ADDRESSES, dataPlaneConfig, pickDataPlane,
)
from netlmm.test.test_multi_pmip_netns import PMIPS, TwoClientTopology, _TwoClients, macsFor

#: Seconds the MAG waits for a lost PMIP client before moving its mobiles.
FAILOVER = 1.0

_LMA = """[lma]
listen = "[{lma}]:5436"
home_prefix = "{prefix}"
max_lifetime = 3600
allowed_clients = ["{pmip1}", "{pmip2}"]
relocation = "authorized"
[lma.security]
mode = "rfc4285"
{security}
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
state_file = "{name}.db"
[pmip.security]
mode = "rfc4285"
{security}
[pmip.tls]
transport = "tcp"
"""

_MAG = """[mag]
name = "MAG1"
address = "{address}"
lma_address = "{lma}"
pmip_clients = ["[{pmip2}]:5437", "[{pmip1}]:5437"]
pmip_failover = {failover}
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

# 14 mobiles of PMIP1 (the one killed), 6 of PMIP2; the last of PMIP1's is
# the one PMIP2 is not authorized for.
_MACS = macsFor(0, 14, 0x60) + macsFor(1, 6, 0x60)
_NODES = ["mn"] + [f"mn{i}" for i in range(1, len(_MACS))]
_UNAUTHORIZED = _MACS[13]
KEY = "00112233445566778899aabbccddeeff00112233"


def _sa(spi, mn=None, clients=(), client=None):
    lines = ["[[sa]]", f"spi = {spi}", f'key = "{KEY}"']
    if mn is not None:
        lines.append(f'mn = "{mn}"')
    if client is not None:
        lines.append(f'client = "{client}"')
    if clients:
        lines.append("clients = [" + ", ".join(f'"{c}"' for c in clients) + "]")
    return "\n".join(lines) + "\n"


def keyFiles():
    """
    The key files: for each mobile a per-MN SA per PMIP client, good for that
    client only (SPI 1000+i for PMIP1, 2000+i for PMIP2); the unauthorized
    mobile has none for PMIP2, whose per-client SA 3000 (any mobile) signs
    its PBUs but names no mobile.
    """
    lma, pmip1, pmip2 = [], [], []
    for i, mac in enumerate(_MACS):
        lma.append(_sa(1000 + i, mac, [PMIPS[0]]))
        pmip1.append(_sa(1000 + i, mac))
        if mac != _UNAUTHORIZED:
            lma.append(_sa(2000 + i, mac, [PMIPS[1]]))
            pmip2.append(_sa(2000 + i, mac))
    lma.append(_sa(3000, client=PMIPS[1]))
    pmip2.append(_sa(3000, client=PMIPS[1]))
    return {"lma-keys.toml": lma, "pmip-keys.toml": pmip1, "pmip2-keys.toml": pmip2}


RADIUS_PORT = 1812
SECRET = "netlmm-relocation-secret"


def users():
    """FreeRADIUS users: the same pairs as L{keyFiles} (no per-client SA 3000)."""
    entries = []
    for i, mac in enumerate(_MACS):
        for client, spi in ((PMIPS[0], 1000 + i), (PMIPS[1], 2000 + i)):
            if client == PMIPS[1] and mac == _UNAUTHORIZED:
                continue
            entries.append(f'"{mac}" NAS-IPv6-Address == {client}, Auth-Type := Accept\n'
                           f'\t3GPP2-MN-HA-SPI = {spi},\n'
                           f'\t3GPP2-MN-HA-Shared-Key = "key-{spi}-0123456789abcdef"\n')
    return "\n".join(entries + ["DEFAULT Auth-Type := Reject\n"])


class _Relocation(_TwoClients):
    """kill -9 of one of two PMIP clients with 20 mobiles bound."""

    def security(self, name=None, me=None):
        """The [*.security] lines of the LMA (C{name} None) or a PMIP client."""
        raise NotImplementedError

    def setUp(self):
        plane, needs = pickDataPlane()
        self.workdir = os.path.abspath(self.mktemp())
        os.makedirs(self.workdir)
        mobiles = {node: (mac, ("net.ipv6.conf.default.addr_gen_mode=0",))
                   for node, mac in zip(_NODES, _MACS)}
        self.t = TwoClientTopology(self, mobiles, needs=(needs,))
        self.t.build()
        self.prepare()
        common = dict(lma=LMA_ADDRESS, prefix=HOME_PREFIX, pmip1=PMIPS[0], pmip2=PMIPS[1])
        self.write("lma.toml", _LMA.format(
            **common, plane=dataPlaneConfig(plane, "lma", LMA_ADDRESS, "m1"),
            security=self.security()))
        for name, me, peer in (("pmip", PMIPS[0], PMIPS[1]), ("pmip2", PMIPS[1], PMIPS[0])):
            self.write(f"{name}.toml", _PMIP.format(**common, me=me, peer=peer, name=name,
                                                    security=self.security(name, me)))
        self.write("mag1.toml", _MAG.format(
            **common, address=MAG_ADDRESSES[0], failover=FAILOVER,
            plane=dataPlaneConfig(plane, "mag", MAG_ADDRESSES[0], "core0")))
        self.t.twistd("lma", "lma", self.path("lma.toml"), self.path("lma.log"))
        self.waitFor(lambda: "LMA listening" in self.log("lma"), "the LMA")
        self.pmip1 = self.startPmip("pmip")
        self.startPmip("pmip2")
        for node in ("pmip", "pmip2"):
            self.waitFor(lambda n=node: "connected to peer" in self.log(n), f"{node}'s peer")
        self.t.twistd("mag1", "mag", self.path("mag1.toml"), self.path("mag1.log"))
        self.waitFor(lambda: self.log("mag1").count("connected to PMIP client") >= 2,
                     "MAG1's two PMIP clients")

    def startPmip(self, name, log=None):
        return self.t.twistd(name, "pmip", self.path(f"{name}.toml"),
                             self.path(log or f"{name}.log"))

    def write(self, name, text):
        with open(self.path(name), "w") as f:
            f.write(text)

    def logs(self):
        return "\n".join(f"--- {n}.log\n{self.log(n)[-3000:]}"
                         for n in ("lma", "pmip", "pmip2", "pmip-again", "mag1"))

    def test_killOneClient(self):
        t = self.t
        phoas = {mac: eui64(HOME_PREFIX, mac) for mac in _MACS}
        for node in _NODES:
            t.mobiles[node].attach("mag1")
        for mac in _MACS:
            client = "pmip" if mac in _MACS[:14] else "pmip2"
            line = f"{mac} bound: {phoas[mac]}"
            self.waitFor(lambda c=client, l=line: l in self.log(c), f"{client}: {line}", 40)
        moved = [mac for mac in _MACS[:14] if mac != _UNAUTHORIZED]
        # Traffic: the CN pings the first mobile (one of PMIP1's) 20 times a
        # second through the kill; every reply is timestamped.
        target = phoas[_MACS[0]]
        self.waitFor(lambda: self.ping("cn", target) == 0, "CN -> the mobile")
        pinger = t.start("cn", ["ping", "-D", "-i", "0.05", "-W", "1", str(target)],
                         self.path("ping.log"))
        time.sleep(1.0)
        killed = time.monotonic()
        t.stop(self.pmip1, sig=signal.SIGKILL)
        # Every one of its mobiles is bound through PMIP2.
        pending = set(moved)
        while pending:
            text = self.log("pmip2")
            pending = {m for m in pending if f"{m} bound: {phoas[m]}" not in text}
            self.assertLess(time.monotonic() - killed, 20, (sorted(pending), self.logs()))
            time.sleep(0.02)
        elapsed = time.monotonic() - killed
        time.sleep(1.0)
        t.stop(pinger, sig=signal.SIGINT)
        self.report(elapsed)
        self.assertIn("14 mobiles moved to other PMIP clients", self.log("mag1"))
        lma = self.log("lma")
        for mac in moved:
            self.assertIn(f"binding for {phoas[mac]} (MN {mac}) taken over by PMIP client "
                          f"{PMIPS[1]} from {PMIPS[0]}", lma)
            # Same address, still reachable.
            node = _NODES[_MACS.index(mac)]
            self.assertEqual(t.mobiles[node].address(), phoas[mac])
        for mac in moved[:3]:
            self.assertEqual(self.ping("cn", phoas[mac]), 0)
        # Bad input: PMIP2 is not authorized for one mobile: refused, the
        # binding still PMIP1's (no takeover line).
        self.waitFor(lambda: self.refusedUnauthorized(), "the unauthorized mobile's refusal")
        self.assertNotIn(f"(MN {_UNAUTHORIZED}) taken over", self.log("lma"))
        # PMIP1 restarts with its store: it asks PMIP2, which holds them.
        before = len(lma)
        self.startPmip("pmip", "pmip-again.log")
        again = "pmip-again"
        for mac in moved:
            line = f"restored {mac} ({phoas[mac]}) is held by peer"
            self.waitFor(lambda l=line: l in self.log(again), f"{again}: {line}")
        time.sleep(1.0)
        text = self.log(again)
        for mac in moved:
            self.assertNotIn(f"{mac} bound:", text)
        self.assertNotIn(f"taken over by PMIP client {PMIPS[0]}", self.log("lma")[before:])
        for mac in moved[:3]:
            self.assertEqual(self.ping("cn", phoas[mac]), 0)

    def report(self, elapsed):
        """Print the measured bound and the traffic's gap (doc/performance.md)."""
        text = open(self.path("ping.log")).read()
        stamps = [float(m) for m in re.findall(r"^\[(\d+\.\d+)\] \d+ bytes from", text, re.M)]
        gaps = [b - a for a, b in zip(stamps, stamps[1:])]
        summary = re.search(r"(\d+) packets transmitted, (\d+) received", text)
        sent, received = (int(summary.group(1)), int(summary.group(2))) if summary else (0, 0)
        print(f"\nrelocation: 13 mobiles re-registered through PMIP2 {elapsed:.2f} s after "
              f"kill -9 (pmip_failover {FAILOVER:g} s); CN pinging one of them every 50 ms: "
              f"{received} of {sent} replies, longest gap {max(gaps) if gaps else 0:.3f} s")
        self.assertTrue(stamps, "no ping replies")
        # The tunnel stays up throughout: at most a reply or two lost to jitter.
        self.assertGreaterEqual(received, sent - 2)
        self.assertLess(max(gaps), 0.5)


class KeyFileRelocationTests(_Relocation, SynchronousTestCase):
    """
    Static keys: PMIP2's per-client SA (any mobile) signs its PBU for the
    mobile it has no per-MN SA for; the LMA refuses the takeover (129).
    """

    def prepare(self):
        for name, entries in keyFiles().items():
            path = self.path(name)
            with open(path, "w") as f:
                f.write("\n".join(entries))
            os.chmod(path, 0o600)

    def security(self, name=None, me=None):
        return f'keys = "{name or "lma"}-keys.toml"'

    def refusedUnauthorized(self):
        return re.search(rf"refused with ADMINISTRATIVELY_PROHIBITED: MN "
                         rf"{re.escape(_UNAUTHORIZED)} is held by PMIP client "
                         rf"{re.escape(PMIPS[0])}; this client is not authorized",
                         self.log("lma")) is not None


class AaaRelocationTests(_Relocation, SynchronousTestCase):
    """
    Keys from a real FreeRADIUS (in the LMA's namespace): the LMA and each
    client ask with NAS-IPv6-Address = the client. PMIP2 gets an
    Access-Reject for the mobile it is not authorized for and answers its MAG
    not-authorized; no PBU reaches the LMA.
    """

    def prepare(self):
        from netlmm.test import test_radius
        if test_radius.FREERADIUS is None:
            from twisted.trial.unittest import SkipTest
            raise SkipTest("freeradius is not installed (apt-get install freeradius)")
        directory = self.path("radius")
        os.makedirs(directory)
        config = test_radius.CONFIG.format(dir=directory, port=RADIUS_PORT, secret=SECRET)
        config = config.replace("ipv6addr = ::1\n  secret", "ipv6addr = ::/0\n  secret")
        config = config.replace("ipv6addr = ::1\n    port", f"ipv6addr = {LMA_ADDRESS}\n    port")
        with open(os.path.join(directory, "radiusd.conf"), "w") as f:
            f.write(config)
        with open(os.path.join(directory, "users"), "w") as f:
            f.write(users())
        self.t.start("lma", [test_radius.FREERADIUS, "-X", "-d", directory],
                     self.path("radius.log"))
        self.waitFor(lambda: "Ready to process requests" in self.log("radius"), "FreeRADIUS")

    def security(self, name=None, me=None):
        lines = ["[{}.security.radius]".format("lma" if name is None else "pmip"),
                 f'servers = ["[{LMA_ADDRESS}]:{RADIUS_PORT}"]', f'secret = "{SECRET}"']
        if me is not None:
            lines.append(f'nas_address = "{me}"')
        return "\n".join(lines)

    def refusedUnauthorized(self):
        return f"no key from AAA for MN {_UNAUTHORIZED}" in self.log("pmip2")
