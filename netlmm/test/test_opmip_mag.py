"""
netlmm's MAG, as shipped (`twistd netlmm-mag` with a co-located PMIP client
in the RFC 5213 profile), against an independent LMA: OPMIP's (C++,
../shared/tools/opmip; its README lists where it departs from RFC 5213).
Two netlmm MAGs with the seg6 data plane and per-MN prefixes; a stock Linux
mobile forms its address from the prefix the PBA confirmed, pings and talks
TCP to a correspondent through OPMIP's ip6ip6 tunnels (which carry a Tunnel
Encapsulation Limit option), and keeps its address across a handoff from
one netlmm MAG to the other. On the way: a refresh, the deregistrations,
and every PBU netlmm sends and PBA it gets read by tshark.

OPMIP needs ip6_tunnel and the MAGs seg6, so `./dev test` runs this under
kernel-lab when the host kernel lacks them; it skips where OPMIP is not
built (`../shared/tools/opmip/opmip build`).
"""

import os

from twisted.trial.unittest import SynchronousTestCase

from netlmm.lab import eui64, opmip, timeScale
from netlmm.lab.capture import ECHO, MOBILITY
from netlmm.lab.netns import readText, skipUnlessTools
from netlmm.lab.opmip import (
    CN_ADDRESS, HOME_PREFIX, LMA_ADDRESS, MAG_ADDRESSES, MN_MAC, InteropTopology,
    NodeDatabase, OpmipLma,
)
from netlmm.lab.wait import waitFor

#: The netlmm MAG names a mobile by its MAC (the rs detector); so does the
#: node database here.
MN_ID = MN_MAC
ADDRESS = eui64(HOME_PREFIX, MN_MAC)
#: The binding lifetime the clients ask for (s): a refresh within the test.
LIFETIME = 8

MAG_CONFIG = """[mag]
name = "{name}"
address = "{address}"
lma_address = "{lma}"
pmip = "[::1]:5437"
access_technology = "ethernet"
[mag.tls]
transport = "tcp"
[mag.access]
interface = "acc0"
ra_interval_max = 10
[mag.attachment]
detector = "rs"
idle_timeout = 0
[mag.assignment]
strategy = "prefix"
[mag.assignment.prefixes]
"{mnId}" = "{prefix}"
[mag.dataplane]
kind = "seg6"
address = "{address}"
interface = "core0"
access_interface = "acc0"
[mag.pmip_client]
listen = "[::1]:5437"
lma = "[{lma}]:0"
mh_bind = "[{address}]:0"
transport = "raw"
lifetime = {lifetime}
allowed_mags = ["::1"]
detach_delay = 0.5
profile = "rfc5213"
ordering = "sequence"
[mag.pmip_client.tls]
transport = "tcp"
# OPMIP stops receiving after a Mobility Header type it does not know
# (doc/protocol.md 2.2): no RFC 5847 heartbeats to it.
[mag.pmip_client.heartbeat]
interval = 0
"""

class NetlmmMagOpmipLmaTests(SynchronousTestCase):

    def setUp(self):
        skipUnlessTools(("ping", "iputils-ping"))
        opmip.require(self)
        self.t = InteropTopology(self, needs=("ip6tnl", "seg6")).build()
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        db = NodeDatabase()
        db.router("lma", LMA_ADDRESS)
        for i, mag in enumerate(self.t.mags):
            db.router(mag, MAG_ADDRESSES[i])
        db.mobile(MN_ID, [HOME_PREFIX], [MN_MAC], "lma")
        database = db.write(os.path.join(self.dir, "node.db"))
        self.capture = self.t.capture("lma", "core", os.path.join(self.dir, "core.pcap"))
        self.lma = OpmipLma(self.t, "lma", database, "lma", self.dir).start(timeout=30)
        self.mags = {}
        for i, mag in enumerate(self.t.mags):
            config = os.path.join(self.dir, f"{mag}.toml")
            with open(config, "w") as f:
                f.write(MAG_CONFIG.format(name=mag.upper(), address=MAG_ADDRESSES[i],
                                          lma=LMA_ADDRESS, mnId=MN_ID, prefix=HOME_PREFIX,
                                          lifetime=LIFETIME))
            log = os.path.join(self.dir, f"{mag}.log")
            process = self.t.twistd(mag, "mag", config, log)
            self.mags[mag] = log
            waitFor(lambda log=log: "connected to PMIP client" in readText(log),
                    f"netlmm's {mag}", timeout=90, alive=lambda p=process: p.poll() is None,
                    details=self.logs)

    def logs(self):
        return "\n".join(f"--- {name}\n{readText(os.path.join(self.dir, name))[-4000:]}"
                         for name in sorted(os.listdir(self.dir)) if name.endswith(".log"))

    def ping(self, node, target, count=2):
        return self.t.exec(node, "ping", "-c", str(count), "-i", "0.2", "-W", "3",
                           str(target), check=False)

    def waitForPing(self, node, target, what, timeout=20):
        waitFor(lambda: self.ping(node, target, 1).returncode == 0, what, timeout,
                details=self.logs)

    def tcp(self):
        """Octets a TCP connection mobile -> CN got echoed back (of 200,000)."""
        return self.t.tcp("cn", "mn", CN_ADDRESS, timeout=20 * timeScale())

    def test_pingTcpHandoff(self):
        t = self.t
        t.mn.attach("mag1")
        self.lma.waitFor(f"PBU registration [id = {MN_ID}, mag = {MAG_ADDRESSES[0]}]", 60)
        waitFor(lambda: ADDRESS in t.mn.addresses(), "the mobile's SLAAC address from "
                "MAG1's RA", 30, details=self.logs)
        self.assertEqual(t.mn.addresses(), [ADDRESS])
        self.waitForPing("mn", CN_ADDRESS, "mobile -> CN through OPMIP's LMA")
        self.assertEqual(self.ping("cn", ADDRESS).returncode, 0)
        self.assertEqual(self.tcp(), 200000)
        # A refresh within the lifetime.
        self.lma.waitFor(f"PBU re-registration [id = {MN_ID}, mag = {MAG_ADDRESSES[0]}]",
                         LIFETIME * 2)

        # The handoff: the link goes (MAG1's client deregisters), comes up at MAG2.
        t.mn.detach()
        self.lma.waitFor("PBU de-registration", 60)
        t.mn.attach("mag2")
        self.lma.waitFor(f"PBU registration [id = {MN_ID}, mag = {MAG_ADDRESSES[1]}]", 60)
        self.waitForPing("mn", CN_ADDRESS, "mobile -> CN through MAG2", 30)
        self.assertEqual(t.mn.addresses(), [ADDRESS])
        self.assertEqual(self.ping("cn", ADDRESS).returncode, 0)
        self.assertEqual(self.tcp(), 200000)
        # Gone for good: MAG2's client deregisters too.
        t.mn.detach()
        self.lma.waitFor("PBU de-registration", 60, count=2)
        self.checkData()
        self.checkSignalling()

    def checkData(self):
        """
        On the core link: echoes inside IPv6-in-IPv6 both ways. The LMA's
        outer header is followed by a Destination Options header (next
        header 60) with OPMIP's Tunnel Encapsulation Limit, then the inner
        packet; the MAGs' (seg6 encap.red) is plain next header 41.
        """
        self.capture.stop(8, ECHO)
        rows = self.capture.fields(ECHO, "ipv6.src", "ipv6.nxt", "ipv6.opt.tel")
        down = {(nxt, opt) for src, nxt, opt in rows if src.split(",")[0] == LMA_ADDRESS}
        up = {(nxt, opt) for src, nxt, opt in rows if src.split(",")[0] in MAG_ADDRESSES}
        self.assertEqual(down, {("60,58", "4")}, rows)
        self.assertEqual(up, {("41,58", "")}, rows)

    def checkSignalling(self):
        """
        Every PBU netlmm's clients send (RFC 5213 profile) carries A|P, the
        MN Identifier (the MAC as text), the /64 the MAG named, ATT 3
        (Ethernet) and the mobile's MAC as link-layer identifier, no
        Alternate CoA; HI 4 on each attachment (the prefix is named: the
        mobile may be bound elsewhere) and deregistration, 5 on a refresh;
        every PBA is 0; tshark finds nothing to warn about in either.
        """
        self.assertEqual(self.capture.expert(MOBILITY), [])
        rows = self.capture.fields(
            MOBILITY, "ipv6.src", "mip6.mhtype", "mip6.bu.a_flag", "mip6.bu.h_flag",
            "mip6.bu.p_flag", "mip6.mnid.identifier", "mip6.nemo.mnp.mnp",
            "mip6.nemo.mnp.pfl", "mip6.hi", "mip6.att", "mip6.mnlli.lli", "mip6.acoa.acoa",
            "mip6.ba.status", "mip6.bu.lifetime")
        pbus = [r for r in rows if r[1] == "5"]
        pbas = [r for r in rows if r[1] == "6"]
        prefix, length = HOME_PREFIX.split("/")
        for r in pbus:
            self.assertIn(r[0], MAG_ADDRESSES, r)
            self.assertEqual(r[2:8] + (r[9], r[10].replace(":", ""), r[11]),
                             ("1", "0", "1", MN_ID, prefix, length, "3",
                              MN_MAC.replace(":", ""), ""), r)
        lifetime = str(LIFETIME // 4)
        mag1 = [(r[8], r[13]) for r in pbus if r[0] == MAG_ADDRESSES[0]]
        mag2 = [(r[8], r[13]) for r in pbus if r[0] == MAG_ADDRESSES[1]]
        self.assertEqual(mag1[:2], [("4", lifetime), ("5", lifetime)], pbus)
        self.assertEqual(set(mag1[1:-1]), {("5", lifetime)}, pbus)
        self.assertEqual(mag1[-1], ("4", "0"), pbus)
        self.assertEqual((mag2[0], mag2[-1]), (("4", lifetime), ("4", "0")), pbus)
        self.assertEqual({(r[0], r[12]) for r in pbas}, {(LMA_ADDRESS, "0")}, pbas)
