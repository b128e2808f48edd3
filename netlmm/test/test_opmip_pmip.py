"""
netlmm's PMIP client in the RFC 5213 profile against an independent LMA:
OPMIP's (C++, ../shared/tools/opmip, its README lists where it departs from
RFC 5213). Two MAGs, each with a co-located PMIP client sending from the
MAG's address over raw IPv6 (OPMIP takes the source as Proxy-CoA and ignores
an Alternate CoA), drive one mobile through registration, a refresh, a
handoff and deregistration; the Triggers come from a scripted MAG on the
MAG channel. The wire is checked with tshark.

OPMIP needs ip6_tunnel, so ./dev test runs this under kernel-lab when the
host kernel lacks it; it skips where OPMIP is not built
(`../shared/tools/opmip/opmip build`).
"""

import os
import socket
from ipaddress import IPv6Network

from twisted.trial.unittest import SynchronousTestCase

from netlmm.lab import opmip, timeScale
from netlmm.lab.capture import MOBILITY
from netlmm.lab.opmip import (
    HOME_PREFIX, LMA_ADDRESS, MAG_ADDRESSES, MN_ID, MN_MAC, InteropTopology, OpmipLma,
)
from netlmm.lab.wait import waitFor
from netlmm.wire.control import (
    AddressMode, Detach, Result, Trigger, decodeControl, encodeControl,
)

MAGS = {"mag1": MAG_ADDRESSES[0], "mag2": MAG_ADDRESSES[1]}
MN = MN_ID.encode()
PREFIX = IPv6Network(HOME_PREFIX)
MAC = MN_MAC
#: The binding lifetime the clients ask for: a refresh within the test.
LIFETIME = 8

PMIP_CONFIG = """[pmip]
listen = "[::1]:5437"
lma = "[%(lma)s]:0"
mh_bind = "[%(mag)s]:0"
transport = "raw"
lifetime = %(lifetime)d
allowed_mags = ["::1"]
detach_delay = 1.0
profile = "rfc5213"
ordering = "sequence"
access_technology = 3
[pmip.tls]
transport = "tcp"
# OPMIP stops receiving after a Mobility Header type it does not know
# (doc/protocol.md 2.2): no RFC 5847 heartbeats to it.
[pmip.heartbeat]
interval = 0
"""


def exchange(octets):
    """
    One message to the PMIP client on [::1]:5437 of the namespace this runs
    in (L{netlmm.lab.Lab.inNetns}), and the first message back.
    """
    with socket.create_connection(("::1", 5437), timeout=60 * timeScale()) as s:
        s.sendall(octets)
        data = b""
        while len(data) < 2 or len(data) < data[1]:
            chunk = s.recv(4096)
            if not chunk:
                raise EOFError("the PMIP client closed the connection")
            data += chunk
    return data[:data[1]]


class OpmipLmaTests(SynchronousTestCase):
    """Register, refresh, hand off and deregister against OPMIP's LMA."""

    def setUp(self):
        opmip.require(self)
        self.lab = lab = InteropTopology(self).build()
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        database = lab.nodeDatabase(os.path.join(self.dir, "node.db"))
        self.capture = lab.capture("lma", "core", os.path.join(self.dir, "core.pcap"))
        self.lma = OpmipLma(lab, "lma", database, "lma", self.dir).start(timeout=30)
        for node, address in MAGS.items():
            config = os.path.join(self.dir, f"{node}.toml")
            with open(config, "w") as f:
                f.write(PMIP_CONFIG % dict(lma=LMA_ADDRESS, mag=address, lifetime=LIFETIME))
            log = os.path.join(self.dir, f"pmip-{node}.log")
            process = lab.twistd(node, "pmip", config, log)
            waitFor(lambda: "MAGs connect to" in self.read(log), f"the PMIP client in {node}",
                    timeout=60, alive=lambda: process.poll() is None,
                    details=lambda: self.read(log))

    @staticmethod
    def read(path):
        try:
            with open(path) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def send(self, node, message):
        """The Notification the PMIP client in C{node} answers C{message} with."""
        return decodeControl(self.lab.inNetns(node, exchange, encodeControl(message)))

    def trigger(self, node, transaction, prefix=None):
        return self.send(node, Trigger(
            transaction, MN, MAGS[node], mode=AddressMode.PREFIX, prefix=prefix,
            linkLayerId=bytes.fromhex(MAC.replace(":", "")), accessTechnology=3))

    def lmaSaid(self, text):
        return text in self.lma.log()

    def logs(self):
        """Every log of the run, for a failure's message."""
        return "\n".join(f"--- {name}\n{self.read(os.path.join(self.dir, name))}"
                         for name in sorted(os.listdir(self.dir)) if name.endswith(".log"))

    def test_registerRefreshHandoffDeregister(self):
        # OPMIP echoes an ALL_ZERO request instead of the prefix it routes:
        # the PMIP client cannot use that answer and deregisters at once.
        n = self.trigger("mag1", 1)
        self.assertEqual((n.result, n.prefix), (Result.PBACK_UNUSABLE, None), self.logs())
        self.assertIsNotNone(n.pback)
        waitFor(lambda: self.lmaSaid("PBU de-registration [id = mn1@example.net"),
                "the deregistration of the unusable binding", timeout=20, details=self.logs)
        # Named, the prefix binds.
        n = self.trigger("mag1", 2, PREFIX)
        self.assertEqual((n.result, n.prefix), (Result.SUCCESS, PREFIX), self.logs())
        self.assertIsNotNone(n.pback)
        # A refresh within the lifetime.
        waitFor(lambda: self.lmaSaid("PBU re-registration [id = mn1@example.net, "
                                     f"mag = {MAGS['mag1']}]"), "a refresh",
                timeout=LIFETIME * 2, details=self.logs)
        # The mobile moves: it leaves MAG1, whose client deregisters it, and
        # MAG2's client registers it there (HI 4, the prefix named).
        n = self.send("mag1", Detach(3, MN, MAGS["mag1"]))
        self.assertEqual(n.result, Result.SUCCESS, self.logs())
        n = self.trigger("mag2", 4, PREFIX)
        self.assertEqual((n.result, n.prefix), (Result.SUCCESS, PREFIX), self.logs())
        self.assertTrue(self.lmaSaid(f"PBU registration [id = mn1@example.net, "
                                     f"mag = {MAGS['mag2']}]"), self.logs())
        # Gone for good at MAG2.
        n = self.send("mag2", Detach(5, MN, MAGS["mag2"]))
        self.assertEqual(n.result, Result.SUCCESS, self.logs())
        waitFor(lambda: self.lmaSaid("Binding cache remove entry [id = mn1@example.net]"),
                "the binding's removal", timeout=20, details=self.logs)
        self.checkWire()

    def checkWire(self):
        """
        Every PBU carries A|P, the MN Identifier, the HNP, the Handoff
        Indicator, ATT 3 and the link-layer identifier, with no Alternate
        CoA (each client sends from its MAG's address); every PBA is 0; no
        expert warning from tshark.
        """
        self.capture.stop(expect=12, displayFilter=MOBILITY)
        rows = self.capture.fields(
            MOBILITY, "ipv6.src", "mip6.mhtype", "mip6.bu.a_flag", "mip6.bu.h_flag",
            "mip6.bu.p_flag", "mip6.mnid.identifier", "mip6.nemo.mnp.pfl", "mip6.hi",
            "mip6.att", "mip6.mnlli.lli", "mip6.acoa.acoa", "mip6.ba.status",
            "mip6.bu.lifetime", "_ws.expert.message")
        pbus = [r for r in rows if r[1] == "5"]
        pbas = [r for r in rows if r[1] == "6"]
        self.assertGreaterEqual(len(pbus), 6, rows)
        for r in pbus:
            self.assertEqual(r[2:6], ("1", "0", "1", MN.decode()), r)
            self.assertIn(r[6], ("0", "64"), r)
            self.assertEqual((r[8], r[9].replace(":", ""), r[10], r[13]),
                             ("3", MAC.replace(":", ""), "", ""), r)
        # HI at MAG1: ALL_ZERO attach 1, its deregistration 4, the named
        # attach 4, refreshes 5, deregistration 4; at MAG2: attach 4, (5...), 4.
        mag1 = [(r[7], r[12]) for r in pbus if r[0] == MAGS["mag1"]]
        mag2 = [(r[7], r[12]) for r in pbus if r[0] == MAGS["mag2"]]
        lifetime = str(LIFETIME // 4)
        self.assertEqual(mag1[:4], [("1", lifetime), ("4", "0"), ("4", lifetime),
                                    ("5", lifetime)], pbus)
        self.assertEqual(mag1[-1], ("4", "0"), pbus)
        self.assertEqual((mag2[0], mag2[-1]), (("4", lifetime), ("4", "0")), pbus)
        self.assertEqual({r[11] for r in pbas}, {"0"}, pbas)
        self.assertEqual({r[13] for r in pbas}, {""}, pbas)
        # No expert item of any severity on either side's messages.
        self.assertEqual(self.capture.expert(MOBILITY, least="comment"), [])

