"""
A standard RFC 5213 MAG (OPMIP's, ../shared/tools/opmip) against netlmm's LMA,
in network namespaces with a stock Linux mobile: registration, refresh,
handoff between two OPMIP MAGs, deregistration, and the mobile's traffic
through OPMIP's ip6ip6 tunnels and netlmm's seg6 data plane. OPMIP needs
ip6_tunnel and the LMA seg6, so on the build machines `./dev test` runs
these under kernel-lab. This is the acceptance test of issue 8's LMA side.

What netlmm tolerates of OPMIP's PBUs (doc/protocol.md 1.4) is exercised
here: no H flag, Access Technology Type 0, options without alignment
padding, Pad1 runs, the same PBU resent with the same sequence number.
"""

import os

from twisted.trial.unittest import SynchronousTestCase

from netlmm.lab import eui64, timeScale
from netlmm.lab.capture import ECHO, MOBILITY
from netlmm.lab.opmip import (
    CN_ADDRESS, HOME_PREFIX, LMA_ADDRESS, MAG_ADDRESSES, MN_ID, MN_MAC, OpmipMag,
)
from netlmm.lab.wait import waitFor
from netlmm.test.test_interop_opmip import _Interop

PHOA = eui64(HOME_PREFIX, MN_MAC)
FIELDS = ("ipv6.src", "ipv6.dst", "mip6.mhtype", "mip6.bu.seqnr", "mip6.ba.seqnr",
          "mip6.ba.status", "mip6.bu.lifetime", "mip6.ba.lifetime", "mip6.nemo.mnp.mnp",
          "mip6.nemo.mnp.pfl", "mip6.hi", "mip6.att", "mip6.mnid.identifier",
          "_ws.expert.message", "_ws.malformed")

#: The netlmm LMA for OPMIP's MAGs: raw Mobility Header on the core link, OPMIP's
#: /64 inside the prefix pool, the MAGs' sequence numbers, no RFC 4285 (OPMIP
#: signs nothing; RFC 5213 would use IPsec).
CONFIG = f"""
[lma]
listen = "[{LMA_ADDRESS}]:0"
transport = "raw"
home_prefix = "2001:db8:ff::/64"
allowed_clients = []

[lma.prefixes]
pool = "2001:db8:1::/56"

[[lma.peers]]
address = "2001:db8:f::/64"
profile = "rfc5213"
ordering = "sequence"
security = "none"

[lma.dataplane]
kind = "seg6"
interface = "core"
address = "{LMA_ADDRESS}"
"""


class OpmipMagNetlmmLmaTests(_Interop, SynchronousTestCase):
    """OPMIP's MAGs with netlmm's LMA."""

    timeout = 240 * timeScale()
    needs = ("ip6tnl", "seg6")

    def startLma(self):
        config = os.path.join(self.workdir, "lma.toml")
        with open(config, "w") as f:
            f.write(CONFIG)
        self.lmaLog = os.path.join(self.workdir, "lma.log")
        self.t.twistd("lma", "lma", config, self.lmaLog)
        self.waitForLog("LMA listening", 60)

    def log(self):
        with open(self.lmaLog) as f:
            return f.read()

    def waitForLog(self, text, timeout=20, count=1):
        waitFor(lambda: self.log().count(text) >= count, f"the LMA: {text!r}", timeout,
                details=lambda: f"--- {self.lmaLog}\n{self.log()[-3000:]}")

    def test_attachHandoffDetach(self):
        t = self.t
        self.startLma()
        mags = [OpmipMag(t, mag, self.database, mag, self.workdir).start()
                for mag in ("mag1", "mag2")]
        t.mn.attach("mag1")
        mags[0].attach(MN_ID, "acc0")
        mags[0].waitFor("PBA registration")
        self.assertIn("status = 0]", mags[0].log())
        self.waitForLog(f"new binding {HOME_PREFIX} -> {MAG_ADDRESSES[0]}")
        waitFor(lambda: t.mn.address() == PHOA, "the mobile's SLAAC address", 15)
        self.waitForPing("mn", CN_ADDRESS, "mobile -> CN through MAG1")
        self.assertEqual(self.ping("cn", PHOA).returncode, 0)

        # Handoff: the mobile shows up at MAG2, MAG1 lets it go.
        t.mn.detach()
        t.mn.attach("mag2")
        mags[1].attach(MN_ID, "acc0")
        mags[1].waitFor("PBA registration")
        mags[0].detach(MN_ID)
        mags[0].waitFor("PBA de-registration")
        self.waitForLog(f"binding for {HOME_PREFIX} moves {MAG_ADDRESSES[0]} -> "
                        f"{MAG_ADDRESSES[1]}")
        self.waitForPing("mn", CN_ADDRESS, "mobile -> CN through MAG2")
        self.assertEqual(self.ping("cn", PHOA).returncode, 0)

        mags[1].detach(MN_ID)
        mags[1].waitFor("PBA de-registration")
        self.waitForLog(f"binding for {HOME_PREFIX} deregistered")
        self.waitForLog("deleted after its deregistration", 30)
        self.assertNotIn("refused", self.log())

        self.capture.stop(8, MOBILITY)
        rows = [dict(zip(FIELDS, r)) for r in self.capture.fields(MOBILITY, *FIELDS)]
        pbas = [r for r in rows if r["mip6.mhtype"] == "6"]
        pbus = [r for r in rows if r["mip6.mhtype"] == "5"]
        self.assertEqual({r["mip6.ba.status"] for r in pbas}, {"0"})
        for r in rows:
            self.assertEqual((r["_ws.expert.message"], r["_ws.malformed"]), ("", ""), r)
            self.assertEqual((r["mip6.nemo.mnp.mnp"], r["mip6.nemo.mnp.pfl"]),
                             ("2001:db8:1::", "64"))
            self.assertEqual(r["mip6.mnid.identifier"], MN_ID)
        # Each PBA answers a PBU, echoing its sequence number and HI.
        for pba in pbas:
            pbu = [p for p in pbus if p["mip6.bu.seqnr"] == pba["mip6.ba.seqnr"]
                   and p["ipv6.src"] == pba["ipv6.dst"]]
            self.assertTrue(pbu, pba)
            self.assertEqual(pba["mip6.hi"], pbu[-1]["mip6.hi"])
        # The mobile's echoes crossed the core link in IPv6-in-IPv6 both ways.
        tunnelled = self.capture.fields(ECHO, "ipv6.src", "ipv6.dst")
        for mag in MAG_ADDRESSES:
            self.assertIn((f"{mag},{PHOA}", f"{LMA_ADDRESS},{CN_ADDRESS}"), tunnelled)
            self.assertIn((f"{LMA_ADDRESS},{CN_ADDRESS}", f"{mag},{PHOA}"), tunnelled)
