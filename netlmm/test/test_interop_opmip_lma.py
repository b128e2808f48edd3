"""
Standard RFC 5213 MAGs (OPMIP's, ../shared/tools/opmip) against netlmm's
LMA as shipped (`twistd netlmm-lma`, the RFC 5213 profile), in network
namespaces with a stock Linux mobile: registration, refresh, handoff between
two OPMIP MAGs, deregistration, the mobile's ping and TCP through OPMIP's
ip6ip6 tunnels and the LMA's data plane, and kernel IPsec (ESP) protecting
the signalling. OPMIP needs ip6_tunnel (and the ESP test esp6), so on the
build machines `./dev test` runs these under kernel-lab. This is the
acceptance test of issue 8's LMA side.

What netlmm tolerates of OPMIP's PBUs (doc/protocol.md 1.4) is exercised
here: no H flag, Access Technology Type 0, options without alignment
padding, Pad1 runs, the same PBU resent with the same sequence number.
"""

import os
import time

from twisted.trial.unittest import SynchronousTestCase

from netlmm.lab import eui64, ipsec, require, timeScale
from netlmm.lab.capture import ECHO, MOBILITY
from netlmm.lab.domain import dataPlaneConfig, pickDataPlane
from netlmm.lab.opmip import (
    CN_ADDRESS, LMA_ADDRESS, MAG_ADDRESSES, MN_ID, MN_MAC, OpmipMag,
)
from netlmm.lab.wait import waitFor
from netlmm.test.test_interop_opmip import _Interop

#: the prefix OPMIP's MAGs name for the mobile, from the netlmm LMA's prefix pool
PREFIX = "2001:db8:100:1::/64"
PHOA = eui64(PREFIX, MN_MAC)

#: The netlmm LMA for OPMIP's MAGs: raw Mobility Header on the core link, the
#: node database's /64 inside the prefix pool (not in home_prefix), the MAGs'
#: sequence numbers, no RFC 4285 (OPMIP signs nothing; RFC 5213 uses IPsec).
CONFIG = """[lma]
listen = "[{lma}]:0"
transport = "raw"
home_prefix = "2001:db8:1::/64"
# short, so that OPMIP's MAGs refresh (3 s before the PBA's lifetime ends) within the test
max_lifetime = 12
allowed_clients = []

[lma.prefixes]
pool = "2001:db8:100::/48"
length = 64

[lma.rfc5213]
ordering = "sequence"
min_delay_before_bce_delete = 3

[[lma.peers]]
address = "2001:db8:f::/64"
profile = "rfc5213"
ordering = "sequence"
security = "none"
# OPMIP stops receiving after a Mobility Header type it does not know
# (doc/protocol.md 2.2): no RFC 5847 heartbeats to its MAGs.
heartbeat = false

[lma.dataplane]
{plane}
"""


class OpmipMagNetlmmLmaTests(_Interop, SynchronousTestCase):
    """OPMIP's MAGs with netlmm's LMA (the best data plane the kernel has)."""

    timeout = 240 * timeScale()

    def setUp(self):
        super().setUp()
        self.database = self.t.nodeDatabase(os.path.join(self.workdir, "node.db"),
                                            prefix=PREFIX)

    def startLma(self):
        plane, _ = pickDataPlane()
        config = os.path.join(self.workdir, "lma.toml")
        with open(config, "w") as f:
            f.write(CONFIG.format(lma=LMA_ADDRESS, plane=dataPlaneConfig(
                plane, "lma", LMA_ADDRESS, "core")))
        self.lmaLog = os.path.join(self.workdir, "lma.log")
        lma = self.t.twistd("lma", "lma", config, self.lmaLog)
        waitFor(lambda: "LMA listening" in self.log(), "netlmm's LMA", 60,
                alive=lambda: lma.poll() is None, details=self.log)

    def log(self):
        try:
            with open(self.lmaLog) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def waitForLog(self, text, timeout=20):
        waitFor(lambda: text in self.log(), f"the LMA: {text!r}", timeout,
                details=lambda: f"--- {self.lmaLog}\n{self.log()[-3000:]}")

    def startMags(self):
        return [OpmipMag(self.t, mag, self.database, mag, self.workdir).start()
                for mag in ("mag1", "mag2")]

    def register(self, mag):
        """The mobile attaches at C{mag}, which registers it: PBA status 0."""
        self.t.mn.attach(mag.node)
        mag.attach(MN_ID, "acc0")
        mag.waitFor("PBA registration")
        self.assertIn(f"lma = {LMA_ADDRESS}, status = 0]", mag.log())

    def lmaRoute(self):
        return self.t.exec("lma", "ip", "-6", "route", "show", "table", "all",
                           PREFIX).stdout.strip()

    def traffic(self, via):
        """Ping both ways and TCP from the CN to the mobile, through MAG C{via}."""
        waitFor(lambda: self.t.mn.address() == PHOA, f"the mobile's address at {via}", 15)
        self.waitForPing("mn", CN_ADDRESS, f"mobile -> CN through {via}")
        self.assertEqual(self.ping("cn", PHOA).returncode, 0)
        self.assertEqual(self.t.tcp("mn", "cn", PHOA), 200000)

    def test_registerRefreshHandoffDeregister(self):
        t = self.t
        self.startLma()
        mag1, mag2 = self.startMags()

        # Registration at MAG1: the named prefix, routed to MAG1.
        self.register(mag1)
        self.waitForLog(f"new binding {PREFIX} -> {MAG_ADDRESSES[0]}")
        self.traffic("mag1")

        # Refresh: OPMIP renews 3 s before the 12 s the LMA granted.
        mag1.waitFor("PBA re-registration", 30)
        self.assertIn("status = 0]", mag1.log().split("PBA re-registration")[1])

        # Handoff to MAG2, make before break: MAG2 registers, then MAG1's
        # deregistration of the session that moved on changes nothing.
        t.mn.detach()
        self.register(mag2)
        self.waitForLog(f"binding for {PREFIX} moves {MAG_ADDRESSES[0]} -> {MAG_ADDRESSES[1]}")
        mag1.detach(MN_ID)
        mag1.waitFor("PBA de-registration")
        self.traffic("mag2")

        # Deregistration at MAG2: the route goes after MinDelayBeforeBCEDelete.
        mag2.detach(MN_ID)
        mag2.waitFor("PBA de-registration")
        self.waitForLog(f"binding for {PREFIX} deregistered")
        self.waitForLog("deleted after its deregistration", 30)
        waitFor(lambda: self.lmaRoute() == "", "the LMA's route to go", 15)
        self.assertNotIn("refused", self.log())

        self.capture.stop()
        self.checkPbas()
        # The mobile's echoes crossed the core link in IPv6-in-IPv6 both ways.
        tunnelled = self.capture.fields(ECHO, "ipv6.src", "ipv6.dst")
        for mag in MAG_ADDRESSES:
            self.assertIn((f"{mag},{PHOA}", f"{LMA_ADDRESS},{CN_ADDRESS}"), tunnelled)
            self.assertIn((f"{LMA_ADDRESS},{CN_ADDRESS}", f"{mag},{PHOA}"), tunnelled)

    def checkPbas(self):
        """What netlmm's LMA sent decodes in tshark with no warning, field by field."""
        sent = f"{MOBILITY} and ipv6.src == {LMA_ADDRESS}"
        self.assertEqual(self.capture.expert(sent), [])
        pbus = {row[0]: row for row in self.capture.fields(
            f"{MOBILITY} and mip6.mhtype == 5", "mip6.bu.seqnr", "ipv6.src", "mip6.hi",
            "mip6.att", "mip6.bu.lifetime")}
        pbas = self.capture.fields(
            f"{sent} and mip6.mhtype == 6", "mip6.ba.seqnr", "ipv6.dst", "mip6.ba.status",
            "mip6.ba.lifetime", "mip6.mnid.identifier", "mip6.nemo.mnp.mnp",
            "mip6.nemo.mnp.pfl", "mip6.hi", "mip6.att", "mip6.ba.p_flag")
        self.assertGreaterEqual(len(pbas), 5, pbas)   # register, refresh, move, 2 deregs
        for seq, dst, status, lifetime, mnId, prefix, length, hi, att, p in pbas:
            self.assertIn(seq, pbus, f"a PBA for no PBU: seq {seq}")
            _, source, pbuHi, pbuAtt, pbuLifetime = pbus[seq]
            self.assertEqual((dst, status, mnId, prefix, length, p),
                             (source, "0", MN_ID, "2001:db8:100:1::", "64", "1"))
            # RFC 5213 5.3.6: the PBA echoes HI and ATT.
            self.assertEqual((hi, att), (pbuHi, pbuAtt))
            # Lifetime 0 answers a deregistration; else the 12 s granted (3 units of 4 s).
            self.assertEqual(lifetime, "0" if pbuLifetime == "0" else "3")

    def test_espProtectsSignalling(self):
        """
        RFC 5213 section 4 with a standard MAG: kernel IPsec (ESP, transport
        mode, protocol 135) between OPMIP's MAG1 and netlmm's LMA. The PBU and
        PBA cross the core link only as ESP; the LMA's inbound policy drops
        the clear-text PBUs of MAG2, which has no SA.
        """
        t = self.t
        require(self, "esp")
        ipsec.protect(t, "mag1", MAG_ADDRESSES[0], "lma", LMA_ADDRESS)
        for argv in ipsec.xfrmCommands(LMA_ADDRESS, MAG_ADDRESSES[1], spi=0x6275):
            t.exec("lma", "ip", "xfrm", *argv)    # MAG2 has no SA: its PBUs go in clear
        self.startLma()
        mag1, mag2 = self.startMags()
        self.register(mag1)
        waitFor(lambda: t.mn.address() == PHOA, "the mobile's SLAAC address", 15)
        self.waitForPing("mn", CN_ADDRESS, "mobile -> CN through mag1")

        mag2.attach(MN_ID, "acc0")
        waitFor(lambda: "MAG: Mobile Node attach" in mag2.log(), "MAG2's attachment", 10)
        time.sleep(3 * timeScale())    # OPMIP retransmits after 1.5 s, then 2.25 s
        self.assertNotIn("PBA registration", mag2.log())
        self.capture.stop()
        # MAG1 <-> LMA: ESP only; MAG2's PBUs in clear, never answered.
        esp = self.capture.fields("esp", "ipv6.src", "ipv6.dst")
        self.assertIn((MAG_ADDRESSES[0], LMA_ADDRESS), esp)
        self.assertIn((LMA_ADDRESS, MAG_ADDRESSES[0]), esp)
        clear = self.capture.fields(MOBILITY, "ipv6.src", "mip6.mhtype")
        self.assertTrue(clear, "MAG2's clear-text PBUs are on the wire")
        self.assertEqual(set(clear), {(MAG_ADDRESSES[1], "5")})
        # The mobile's route is still there, and traffic still flows through MAG1.
        self.assertTrue(self.lmaRoute())
        self.assertEqual(self.ping("cn", PHOA).returncode, 0)
