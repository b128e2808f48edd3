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
from ipaddress import IPv6Network

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from netlmm.lab import eui64, opmip
from netlmm.lab.capture import ECHO, MOBILITY
from netlmm.lab.netns import CommandFailed, readText, skipUnlessTools
from netlmm.lab.opmip import (
    CN_ADDRESS, HOME_PREFIX, LMA_ADDRESS, MAG_ADDRESSES, MN_ID, MN_MAC, InteropTopology,
    OpmipLma, OpmipMag,
)
from netlmm.lab.wait import waitFor
from netlmm.test.test_opmip_pmip import exchange
from netlmm.wire.control import (
    AddressMode, Detach, Result, Trigger, decodeControl, encodeControl,
)

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


PMIP_ADDRESS = "2001:db8:f::9"

_SEPARATE_PMIP = """[pmip]
listen = "[::1]:5437"
lma = "[{lma}]:0"
mh_bind = "[{pmip}]:0"
transport = "raw"
lifetime = 60
allowed_mags = ["::1"]
detach_delay = 1.0
profile = "rfc5213"
ordering = "sequence"
[pmip.tls]
transport = "tcp"
# OPMIP stops receiving after a Mobility Header type it does not know
# (doc/protocol.md 2.2): no RFC 5847 heartbeats to it.
[pmip.heartbeat]
interval = 0
"""


class SeparatePmipClientAtOpmipLmaTests(_Interop, SynchronousTestCase):
    """
    A PMIP client apart from its MAG, in the RFC 5213 profile, at OPMIP's LMA:
    its PBUs come from the client's address and name the MAG in an Alternate
    Care-of Address, which RFC 5213 6.9.1.5 makes the Proxy-CoA. OPMIP
    ignores the option: it accepts the PBU and tunnels the mobile's prefix to
    the PMIP client instead of the MAG. This test shows that deviation on the
    wire (doc/protocol.md 2.2); netlmm does not work around it.
    """

    def test_alternateCareOfAddressIgnored(self):
        t = self.t
        t.add("pmip")
        t.link("pmip", "eth0", "lma", "p9", master="core")
        t.addr("pmip", "eth0", f"{PMIP_ADDRESS}/64")
        # OPMIP only takes PBUs from router nodes it knows (else 154).
        database = t.nodeDatabase(os.path.join(self.workdir, "node-pmip.db"),
                                  extraRouters=[("pmip", PMIP_ADDRESS)])
        lma = OpmipLma(t, "lma", database, "lma", self.workdir).start()
        config = os.path.join(self.workdir, "pmip.toml")
        with open(config, "w") as f:
            f.write(_SEPARATE_PMIP.format(lma=LMA_ADDRESS, pmip=PMIP_ADDRESS))
        log = os.path.join(self.workdir, "pmip.log")
        client = t.twistd("pmip", "pmip", config, log)
        waitFor(lambda: "MAGs connect to" in readText(log), "the PMIP client", 60,
                alive=lambda: client.poll() is None, details=lambda: readText(log))

        def send(message):
            return decodeControl(t.inNetns("pmip", exchange, encodeControl(message)))
        mn = MN_ID.encode()
        n = send(Trigger(1, mn, MAG_ADDRESSES[0], mode=AddressMode.PREFIX,
                         prefix=IPv6Network(HOME_PREFIX),
                         linkLayerId=bytes.fromhex(MN_MAC.replace(":", "")),
                         accessTechnology=3))
        self.assertEqual(n.result, Result.SUCCESS, readText(log) + lma.log())
        # OPMIP binds the mobile to the PBU's source, the PMIP client...
        self.assertIn(f"PBU registration [id = {MN_ID}, mag = {PMIP_ADDRESS}]", lma.log())
        tunnels = t.exec("lma", "ip", "-6", "tunnel", "show").stdout
        self.assertIn(f"remote {PMIP_ADDRESS}", tunnels)
        self.assertNotIn(f"remote {MAG_ADDRESSES[0]}", tunnels)
        n = send(Detach(2, mn, MAG_ADDRESSES[0]))
        self.assertEqual(n.result, Result.SUCCESS)
        lma.waitFor("Binding cache remove entry")
        # ... though every PBU named the MAG as Alternate Care-of Address, and
        # decodes in tshark without a warning.
        self.capture.stop(4, MOBILITY)
        pbus = self.capture.fields(f"{MOBILITY} and mip6.mhtype == 5", "ipv6.src",
                                   "mip6.acoa.acoa", "mip6.bu.lifetime")
        self.assertEqual([row[:2] for row in pbus], [(PMIP_ADDRESS, MAG_ADDRESSES[0])] * 2)
        self.assertEqual(pbus[-1][2], "0")
        self.assertEqual(self.capture.expert(f"{MOBILITY} and ipv6.src == {PMIP_ADDRESS}"), [])


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
