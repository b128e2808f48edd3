"""
Real Wi-Fi roaming (root, a kernel with mac80211_hwsim: kernel-lab): two
MAGs each run hostapd on a simulated radio with the same SSID and follow it
with the 'hostapd' detector; a mobile running stock wpa_supplicant and the
Linux IPv6 stack roams between them (`wpa_cli roam`) while it pings a
correspondent, and keeps its address.
"""

from twisted.trial.unittest import TestCase

from netlmm.lab import timeScale
from netlmm.lab.domain import (
    CN_ADDRESS, MAG_ADDRESSES, ROUTER_ADDRESS, ROUTER_MAC, NetnsDomain,
)


class WifiRoamTests(TestCase):
    timeout = 600 * timeScale()

    def test_roamKeepsAddress(self):
        """
        Association attaches the mobile at MAG1 (hostapd event, before any
        IPv6 packet), SLAAC gives it an address; it roams to MAG2 and back
        under a ping flow, keeping the address, the LMA's binding following.
        """
        domain = NetnsDomain(self.mktemp(), testCase=self, wifi=True)
        domain.start()
        phoa = domain.attach("mag1")
        self.assertIn("hostapd detector: 02:00:00:00:aa:01 associated", domain.log("mag1"))
        self.assertEqual(domain.ping("mn", CN_ADDRESS).returncode, 0)
        for target in ("mag2", "mag1"):
            result = domain.handoff(target, pingFrom="mn")
            self.assertEqual(domain.topology.mn.address(), phoa)
            self.assertGreater(result["sent"], result["lost"])
            pcoa = MAG_ADDRESSES[int(target[-1]) - 1]
            self.assertRegex(domain.log("lma"), rf"binding for {phoa} moves \S+ -> {pcoa}")
            self.assertIn("02:00:00:00:aa:01 associated", domain.log(target))
        self.assertEqual(domain.ping("cn", phoa).returncode, 0)


class OneRouterTests(TestCase):
    timeout = 600 * timeScale()

    def routers(self, domain):
        """The mobile's default routers and their link-layer addresses."""
        import json
        routes = json.loads(domain.topology.sh("mn", "ip -6 -j route show default").stdout)
        gateways = sorted(hop["gateway"] for r in routes
                          for hop in (r.get("nexthops") or [r]) if "gateway" in hop)
        neighbours = json.loads(domain.topology.sh("mn", "ip -6 -j neigh show dev wlan0")
                                .stdout)
        macs = {n["dst"]: n.get("lladdr") for n in neighbours if n["dst"] in gateways}
        return gateways, macs

    def solicitations(self, domain):
        """How many Router Solicitations the mobile's kernel has sent."""
        for line in domain.topology.sh("mn", "cat /proc/net/snmp6").stdout.splitlines():
            name, _, value = line.partition(" ")
            if name == "Icmp6OutRouterSolicits":
                return int(value)
        raise AssertionError("no Icmp6OutRouterSolicits in /proc/net/snmp6")

    def test_roamKeepsRouter(self):
        """
        Every MAG answers as one router (one link-local and one MAC): across
        roams MAG1 -> MAG2 -> MAG1 the station keeps its one default router
        and its neighbour entry, sends no Router Solicitation, and its uplink
        goes on through the new MAG.
        """
        domain = NetnsDomain(self.mktemp(), testCase=self, wifi=True, handover=True)
        domain.start()
        phoa = domain.attach("mag1")
        self.assertEqual(domain.ping("mn", CN_ADDRESS).returncode, 0)
        router = self.routers(domain)
        self.assertEqual(router, ([ROUTER_ADDRESS], {ROUTER_ADDRESS: ROUTER_MAC}))
        sent = self.solicitations(domain)
        for target in ("mag2", "mag1"):
            self.assertEqual(domain.roam(target), phoa)
            self.assertEqual(domain.ping("mn", CN_ADDRESS).returncode, 0, domain.logs())
            self.assertEqual(self.routers(domain), router)
        self.assertEqual(self.solicitations(domain), sent)


class WifiDemoTests(TestCase):
    timeout = 900 * timeScale()

    def test_demo(self):
        """
        `netlmm demo --netns --wifi`: with [mag.handover] and one router
        identity, a reactive roam (the new MAG asks for the context at
        association) and a predictive one (the old AP steers the station with
        an 802.11v BSS transition request and the old MAG offers the context
        first) under a 1,000 packets/s stream; the address stays (or the demo
        exits 1), the ladder shows HI/HAck and the forwarding.
        """
        import io
        import os
        from netlmm import demo_netns
        from netlmm.lab import require
        from netlmm.lab.netns import readText
        require(self, "mac80211_hwsim", root=True)
        out = io.StringIO()
        workdir = self.mktemp()
        self.assertEqual(demo_netns.runWifi(out, None, workdir), 0, out.getvalue())
        text = out.getvalue()
        mag1, mag2 = (readText(os.path.join(workdir, f"mag{i}.log")) for i in (1, 2))
        self.assertIn("context of 02:00:00:00:aa:01 from", mag2)
        self.assertIn("forwarding its downlink there", mag1)
        self.assertIn("accepts a transition to", mag2)
        self.assertIn("announces 02:00:00:00:aa:01", mag1)
        self.assertRegex(text, r"roam MAG1 -> MAG2 \(reactive\): interruption \d+ ms, lost \d+")
        self.assertRegex(text, r"roam MAG2 -> MAG1 \(predictive\): interruption \d+ ms, "
                               r"lost \d+")
        self.assertIn("HI seq=", text)
        self.assertIn("context transfer accepted", text)
        self.assertIn("forwarded downlink:", text)
