"""
Interoperability with OPMIP, an independent RFC 5213 MAG and LMA
(../shared/tools/opmip), in network namespaces with a real Linux mobile
(root; OPMIP needs ip6_tunnel, so on the build machines `./dev test` runs
these under kernel-lab). The Mobility Header on the core link is captured
and decoded with tshark.

OPMIP deviates from RFC 5213 in places (its README lists them); where it
does, the RFC is the reference.
"""

import json
import os
import threading
import time

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from netlmm.lab import eui64, opmip, require, timeScale
from netlmm.lab.capture import ECHO, MOBILITY
from netlmm.lab.netns import CommandFailed, skipUnlessTools
from netlmm.lab.opmip import (
    CN_ADDRESS, HOME_PREFIX, LMA_ADDRESS, MAG_ADDRESSES, MN_ID, MN_MAC, InteropTopology,
    OpmipLma, OpmipMag,
)
from netlmm.lab.wait import waitFor

PHOA = eui64(HOME_PREFIX, MN_MAC)
#: tshark fields of a PBU or PBA, in this order
MH_FIELDS = ("ipv6.src", "ipv6.dst", "mip6.mhtype", "mip6.bu.seqnr", "mip6.bu.a_flag",
             "mip6.bu.h_flag", "mip6.bu.p_flag", "mip6.bu.lifetime", "mip6.ba.status",
             "mip6.ba.seqnr", "mip6.ba.lifetime", "mip6.nemo.mnp.mnp", "mip6.nemo.mnp.pfl",
             "mip6.mnid.identifier")


def messages(capture):
    """The PBUs and PBAs of a capture: dicts of L{MH_FIELDS}, without 'mip6.'."""
    names = [f.removeprefix("mip6.") for f in MH_FIELDS]
    return [dict(zip(names, row)) for row in capture.fields(MOBILITY, *MH_FIELDS)]


class _Interop:
    """The topology, a capture on the LMA's core link, OPMIP's node database."""

    #: What the kernel must have (OPMIP's tunnels; more for a netlmm data plane).
    needs = ("ip6tnl",)

    def setUp(self):
        skipUnlessTools(("ping", "iputils-ping"), ("tcpdump", "tcpdump"), ("tshark", "tshark"))
        opmip.require(self)
        self.t = InteropTopology(self, needs=self.needs).build()
        self.workdir = os.path.abspath(self.mktemp())
        os.makedirs(self.workdir)
        self.database = self.t.nodeDatabase(os.path.join(self.workdir, "node.db"))
        self.capture = self.t.capture("lma", "core", os.path.join(self.workdir, "core.pcap"))

    def ping(self, node, target, count=2):
        return self.t.exec(node, "ping", "-c", str(count), "-i", "0.2", "-W", "3",
                           str(target), check=False)

    def waitForPing(self, node, target, what):
        waitFor(lambda: self.ping(node, target, 1).returncode == 0, what, 15)


class OpmipSelfTests(_Interop, SynchronousTestCase):
    """OPMIP's MAG with OPMIP's LMA: the harness itself, before netlmm plays a role."""

    def test_attachPingDetach(self):
        t = self.t
        lma = OpmipLma(t, "lma", self.database, "lma", self.workdir).start()
        mag = OpmipMag(t, "mag1", self.database, "mag1", self.workdir).start()
        t.mn.attach("mag1")
        mag.attach(MN_ID, "acc0")
        mag.waitFor("PBA registration")
        self.assertIn("status = 0]", mag.log())
        self.assertIn(f"LMA: PBU registration [id = {MN_ID}, mag = {MAG_ADDRESSES[0]}]",
                      lma.log())
        # OPMIP's MAG advertises the prefix; the mobile forms its address by SLAAC.
        waitFor(lambda: t.mn.address() == PHOA, "the mobile's SLAAC address", 15)
        self.waitForPing("mn", CN_ADDRESS, "mobile -> CN through the tunnel")
        self.assertEqual(self.ping("cn", PHOA).returncode, 0)

        mag.detach(MN_ID)
        mag.waitFor("PBA de-registration")
        lma.waitFor("Binding cache remove entry")
        self.capture.stop(4, MOBILITY)
        pbu, pba, dereg, deregAck = messages(self.capture)[:4]
        # Flags A|P (no H), the /64 and the NAI; lifetime in 4 s units.
        self.assertEqual((pbu["ipv6.src"], pbu["ipv6.dst"], pbu["mhtype"]),
                         (MAG_ADDRESSES[0], LMA_ADDRESS, "5"))
        self.assertEqual((pbu["bu.a_flag"], pbu["bu.h_flag"], pbu["bu.p_flag"]),
                         ("1", "0", "1"))
        self.assertEqual((pbu["nemo.mnp.mnp"], pbu["nemo.mnp.pfl"], pbu["mnid.identifier"]),
                         ("2001:db8:1::", "64", MN_ID))
        self.assertEqual((pba["mhtype"], pba["ba.status"], pba["ba.seqnr"]),
                         ("6", "0", pbu["bu.seqnr"]))
        self.assertEqual((dereg["mhtype"], dereg["bu.lifetime"]), ("5", "0"))
        self.assertEqual((deregAck["mhtype"], deregAck["ba.status"]), ("6", "0"))
        # The echoes crossed the core link inside IPv6-in-IPv6 between MAG and LMA.
        tunnelled = self.capture.fields(ECHO, "ipv6.src", "ipv6.dst")
        self.assertIn((f"{MAG_ADDRESSES[0]},{PHOA}", f"{LMA_ADDRESS},{CN_ADDRESS}"), tunnelled)
        self.assertIn((f"{LMA_ADDRESS},{CN_ADDRESS}", f"{MAG_ADDRESSES[0]},{PHOA}"), tunnelled)


#: the prefix OPMIP's MAGs name for the mobile, from the netlmm LMA's prefix pool
NAMED_PREFIX = "2001:db8:100:1::/64"
NAMED_PHOA = eui64(NAMED_PREFIX, MN_MAC)

_NETLMM_LMA = """[lma]
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

# Standard MAGs (OPMIP): RFC 5213, sequence numbers, no RFC 4285 (IPsec is theirs).
[[lma.peers]]
address = "2001:db8:f::/64"
profile = "rfc5213"
ordering = "sequence"
security = "none"

[lma.dataplane]
{plane}
"""


class OpmipMagToNetlmmLmaTests(_Interop, SynchronousTestCase):
    """
    Standard MAGs (OPMIP's) at netlmm's LMA (`twistd netlmm-lma`, the RFC
    5213 profile): register, refresh, hand off between the two MAGs and
    deregister a real mobile, with ping and TCP through the tunnels.
    """

    def startNetlmmLma(self):
        from netlmm.lab.domain import dataPlaneConfig, pickDataPlane
        plane, _ = pickDataPlane()
        path = os.path.join(self.workdir, "lma.toml")
        with open(path, "w") as f:
            f.write(_NETLMM_LMA.format(lma=LMA_ADDRESS, plane=dataPlaneConfig(
                plane, "lma", LMA_ADDRESS, "core")))
        self.lmaLog = os.path.join(self.workdir, "lma.log")
        self.lma = self.t.twistd("lma", "lma", path, self.lmaLog)
        waitFor(lambda: "LMA listening" in _read(self.lmaLog), "netlmm's LMA", 30,
                alive=lambda: self.lma.poll() is None, details=lambda: _read(self.lmaLog))

    def setUp(self):
        super().setUp()
        self.database = self.t.nodeDatabase(os.path.join(self.workdir, "node.db"),
                                            prefix=NAMED_PREFIX)

    def lmaRoute(self):
        return self.t.exec("lma", "ip", "-6", "route", "show", "table", "all",
                           NAMED_PREFIX).stdout.strip()

    def traffic(self, via):
        """Ping both ways and TCP from the CN to the mobile, through MAG C{via}."""
        self.waitForPing("mn", CN_ADDRESS, f"mobile -> CN through {via}")
        self.assertEqual(self.ping("cn", NAMED_PHOA).returncode, 0)
        self.assertEqual(self.t.tcp("mn", "cn", NAMED_PHOA), 200000)

    def test_registerRefreshHandoffDeregister(self):
        t = self.t
        self.startNetlmmLma()
        mag1 = OpmipMag(t, "mag1", self.database, "mag1", self.workdir).start()
        mag2 = OpmipMag(t, "mag2", self.database, "mag2", self.workdir).start()

        # Registration at MAG1: the named prefix, routed to MAG1.
        t.mn.attach("mag1")
        mag1.attach(MN_ID, "acc0")
        mag1.waitFor("PBA registration")
        self.assertIn(f"lma = {LMA_ADDRESS}, status = 0]", mag1.log())
        waitFor(lambda: t.mn.address() == NAMED_PHOA, "the mobile's SLAAC address", 15)
        self.traffic("mag1")

        # Refresh: OPMIP renews 3 s before the 12 s the LMA granted.
        mag1.waitFor("PBA re-registration", 30)
        self.assertIn("status = 0]", mag1.log().split("PBA re-registration")[1])

        # Handoff to MAG2, make before break: MAG2 registers, then MAG1's
        # deregistration of the session that moved on changes nothing.
        t.mn.detach()
        t.mn.attach("mag2")
        mag2.attach(MN_ID, "acc0")
        mag2.waitFor("PBA registration")
        self.assertIn(f"lma = {LMA_ADDRESS}, status = 0]", mag2.log())
        mag1.detach(MN_ID)
        mag1.waitFor("PBA de-registration")
        waitFor(lambda: t.mn.address() == NAMED_PHOA, "the mobile's address at MAG2", 15)
        self.traffic("mag2")

        # Deregistration at MAG2: the route goes after MinDelayBeforeBCEDelete.
        mag2.detach(MN_ID)
        mag2.waitFor("PBA de-registration")
        waitFor(lambda: self.lmaRoute() == "", "the LMA's route to go", 15)

        self.capture.stop()
        self.checkPbas()

    def test_espProtectsSignalling(self):
        """
        RFC 5213 section 4 with a standard MAG: kernel IPsec (ESP, transport
        mode, protocol 135) between OPMIP's MAG1 and netlmm's LMA. The PBU and
        PBA cross the core link only as ESP; the LMA's policy drops the
        clear-text PBUs of MAG2, which has no SA.
        """
        from netlmm.lab import ipsec
        t = self.t
        require(self, "esp")
        ipsec.protect(t, "mag1", MAG_ADDRESSES[0], "lma", LMA_ADDRESS)
        for argv in ipsec.xfrmCommands(LMA_ADDRESS, MAG_ADDRESSES[1], spi=0x6275):
            t.exec("lma", "ip", "xfrm", *argv)    # MAG2 has no SA: its PBUs go in clear
        self.startNetlmmLma()
        mag1 = OpmipMag(t, "mag1", self.database, "mag1", self.workdir).start()
        mag2 = OpmipMag(t, "mag2", self.database, "mag2", self.workdir).start()
        t.mn.attach("mag1")
        mag1.attach(MN_ID, "acc0")
        mag1.waitFor("PBA registration")
        self.assertIn(f"lma = {LMA_ADDRESS}, status = 0]", mag1.log())
        waitFor(lambda: t.mn.address() == NAMED_PHOA, "the mobile's SLAAC address", 15)
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
        self.assertEqual(self.ping("cn", NAMED_PHOA).returncode, 0)

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
            # RFC 5213 6.9.1.2 / 5.3.6: the PBA echoes HI and ATT.
            self.assertEqual((hi, att), (pbuHi, pbuAtt))
            # Lifetime 0 answers a deregistration; else at most the 12 s granted (3 units).
            if pbuLifetime == "0":
                self.assertEqual(lifetime, "0")
            else:
                self.assertEqual(lifetime, "3")


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


class _NoLab:
    """What OpmipMag needs of a lab outside namespaces."""

    def __init__(self):
        self.cleanups = []

    def addCleanup(self, f, *args):
        self.cleanups.append((f, args))


class HarnessTests(SynchronousTestCase):
    """The harness's own parts, without root."""

    def test_nodeDatabase(self):
        path = InteropTopology.nodeDatabase(_Mags(), self.mktemp())
        with open(path) as f:
            db = json.load(f)
        self.assertEqual(db["router-nodes"], [
            {"id": "lma", "ip-address": LMA_ADDRESS, "ip-scope-id": "0"},
            {"id": "mag1", "ip-address": MAG_ADDRESSES[0], "ip-scope-id": "0"},
            {"id": "mag2", "ip-address": MAG_ADDRESSES[1], "ip-scope-id": "0"}])
        self.assertEqual(db["mobile-nodes"], [
            {"id": MN_ID, "ip-prefix": [HOME_PREFIX], "link-address": [MN_MAC],
             "lma-id": "lma"}])

    def test_ctlFifo(self):
        """attach/detach are lines on the FIFO, written once the MAG reads it."""
        lab = _NoLab()
        mag = OpmipMag(lab, "mag1", "node.db", "mag1", self.mktemp())
        self.addCleanup(lambda: [f(*a) for f, a in lab.cleanups])
        self.assertEqual(mag.arguments(), ["-e", "ctl", mag.fifo])
        lines = []

        def reader():
            while len(lines) < 2:   # like the ctl driver: reopen after each writer
                with open(mag.fifo) as f:
                    lines.extend(f.read().splitlines())
        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        mag.attach(MN_ID, "acc0")
        mag.detach(MN_ID)
        thread.join(10)
        self.assertEqual(lines, [f"attach {MN_ID} acc0", f"detach {MN_ID}"])

    def test_ctlFifoNobodyReads(self):
        lab = _NoLab()
        mag = OpmipMag(lab, "mag1", "node.db", "mag1", self.mktemp())
        self.addCleanup(lambda: [f(*a) for f, a in lab.cleanups])
        e = self.assertRaises(CommandFailed, mag.command, "detach x", timeout=0.2)
        self.assertIn("mag1: cannot write 'detach x' to", str(e))
        for f, args in lab.cleanups:
            f(*args)
        self.assertFalse(os.path.exists(mag.fifo))

    def test_notBuilt(self):
        """Where `opmip bin` refuses, the tests skip with its reason."""
        script = os.path.abspath(self.mktemp())
        with open(script, "w") as f:
            f.write("#!/bin/sh\necho 'opmip: not built in /x: run opmip build' >&2\nexit 1\n")
        os.chmod(script, 0o755)
        self.patch(os, "environ", dict(os.environ, OPMIP_TOOL=script))
        e = self.assertRaises(SkipTest, opmip.require, self)
        self.assertEqual(str(e), "OPMIP is not available: opmip: not built in /x: "
                                 "run opmip build")


class _Mags:
    mags = ["mag1", "mag2"]
