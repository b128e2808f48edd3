"""
The DHCPv6 strategies end to end (root): the netns domain of
L{netlmm.lab.domain.NetnsDomain} (with the best data plane this kernel has)
with a real `dhclient -6` (isc-dhcp-client) on the mobile and, for
'dhcp-relay', a real Kea DHCPv6 server (kea-dhcp6-server) in a namespace of
its own behind the LMA, reachable from both MAGs. Everything (namespaces,
daemons, Kea, dhclient) is removed in cleanup, also when a test fails.
"""

import json
import os
from ipaddress import IPv6Address, IPv6Network

from twisted.trial.unittest import SynchronousTestCase

from netlmm.lab.domain import CN_ADDRESS, HOME_PREFIX, MAG_ADDRESSES, NetnsDomain
from netlmm.lab.netns import skipUnlessTools, which

DHCP_SERVER = "2001:db8:d::2"
POOL = ("2001:db8:1::100", "2001:db8:1::1ff")
LMA_POOL = ("2001:db8:1::1:0", "2001:db8:1::1:ff")
DHCP_ACCESS = "managed = true\nautonomous = false\n"


class _Dhcp:
    """Shared steps: dhclient on the mobile, attach and handoff."""

    def startDomain(self, assignment, lmaExtra=""):
        self.domain = NetnsDomain(self.mktemp(), detachDelay=10.0, assignment=assignment,
                                  accessExtra=DHCP_ACCESS, lmaExtra=lmaExtra, testCase=self)
        self.domain.start()
        self.t = self.domain.topology
        self.lease = self.domain.path("dhclient6.leases")
        self.dhclient = None

    def startDhclient(self):
        """`dhclient -6` on the MN's eth0, in the foreground (destroy() kills it)."""
        # dhclient binds to the link-local address: wait until DAD is done.
        self.domain.waitFor(self.linkLocalReady, "the MN's link-local address", 10)
        n = len(self.t.processes)
        self.dhclient = self.t.start("mn", [which("dhclient"), "-6", "-d", "-v", "-lf",
                                            self.lease, "-pf", self.domain.path(f"dhc{n}.pid"),
                                            "eth0"], self.domain.path(f"dhclient{n}.log"))

    def linkLocalReady(self):
        return bool(self.t.addresses("mn", "eth0", scope="link"))

    def stopDhclient(self):
        if self.dhclient is not None:
            self.t.stop(self.dhclient)
        self.dhclient = None

    def bindingsVia(self, mag):
        return self.domain._bindingsVia(MAG_ADDRESSES[int(mag[-1]) - 1])

    def attach(self, mag, timeout=20):
        before = self.bindingsVia(mag)
        self.t.mn.attach(mag)
        self.startDhclient()
        self.domain.waitFor(lambda: self.t.mn.address() is not None,
                            "the MN's DHCPv6 address", timeout)
        self.domain.waitFor(lambda: self.bindingsVia(mag) > before,
                            f"the LMA's binding via {mag}", timeout)
        return self.t.mn.address()

    def handoff(self, mag, timeout=25):
        """The MN moves: link down at the old MAG, dhclient restarts with its lease."""
        self.stopDhclient()
        self.t.mn.detach()
        return self.attach(mag, timeout)

    def checkTraffic(self, phoa):
        d = self.domain
        d.waitFor(lambda: d.ping("mn", CN_ADDRESS, 1).returncode == 0, "MN -> CN traffic", 10)
        self.assertEqual(d.ping("cn", phoa).returncode, 0)

    def lmaRoute(self, phoa):
        return self.t.exec("lma", "ip", "-6", "route", "show", f"{phoa}/128").stdout.strip()

    def noSlaac(self):
        """Only the DHCPv6 address: the RA's prefix carries no A flag."""
        out = self.t.exec("mn", "ip", "-6", "-o", "addr", "show", "dev", "eth0",
                          "scope", "global").stdout
        self.assertEqual(out.count("inet6"), 1, out)


_KEA = {
    "Dhcp6": {
        "interfaces-config": {"interfaces": [f"eth0/{DHCP_SERVER}"]},
        "lease-database": {"type": "memfile", "persist": False},
        "server-id": {"type": "EN", "enterprise-id": 2495, "identifier": "6e65746c6d6d",
                      "persist": False},
        "renew-timer": 4, "rebind-timer": 6, "preferred-lifetime": 60, "valid-lifetime": 120,
        "subnet6": [{"id": 1, "subnet": HOME_PREFIX,
                     "pools": [{"pool": f"{POOL[0]}-{POOL[1]}"}]}],
        "loggers": [{"name": "kea-dhcp6", "output_options": [{"output": "stdout"}],
                     "severity": "INFO"}],
    }
}


class DhcpRelayTests(_Dhcp, SynchronousTestCase):
    """'dhcp-relay': dhclient -6 -> MAG (relay) -> Kea, then PBU with the leased pHoA."""

    timeout = 60

    def setUp(self):
        skipUnlessTools(("kea-dhcp6", "kea-dhcp6-server"), ("dhclient", "isc-dhcp-client"),
                        ("ping", "iputils-ping"))
        self.startDomain(f'strategy = "dhcp-relay"\nserver = "{DHCP_SERVER}"\ntimeout = 3')
        t = self.t
        # Kea's namespace, behind the LMA.
        t.add("dhcp")
        t.link("dhcp", "eth0", "lma", "dh0")
        t.addr("dhcp", "eth0", f"{DHCP_SERVER}/64")
        t.addr("lma", "dh0", "2001:db8:d::1/64")
        t.exec("dhcp", "ip", "-6", "route", "add", "default", "via", "2001:db8:d::1")
        self.kea = None

    def startKea(self):
        d = self.domain
        with open(d.path("kea.json"), "w") as f:
            json.dump(_KEA, f)
        run = d.path("kea-run")
        os.makedirs(run, exist_ok=True)
        self.kea = self.t.start("dhcp", ["env", f"KEA_LOCKFILE_DIR={run}",
                                         f"KEA_PIDFILE_DIR={run}", which("kea-dhcp6"), "-c",
                                         d.path("kea.json")], d.path("kea.log"))
        d.waitFor(lambda: "DHCP6_STARTED" in d.log("kea"), "Kea", 10)

    def test_attachHandoffDetach(self):
        self.startKea()
        d = self.domain
        phoa = self.attach("mag1")
        self.assertIn(phoa, IPv6Network(HOME_PREFIX))
        self.assertTrue(IPv6Address(POOL[0]) <= phoa <= IPv6Address(POOL[1]), phoa)
        self.noSlaac()
        self.assertIn(f"new binding {phoa} -> {MAG_ADDRESSES[0]}", d.log("lma"))
        self.assertIn(f"dhcp-relay: 02:00:00:00:aa:01 was assigned {phoa}", d.log("mag1"))
        self.checkTraffic(phoa)
        # Kea leased it through the relay: the lease names the LMD subnet.
        self.assertIn(str(phoa), d.log("kea"))

        # Handoff: the new MAG relays the restarted dhclient's Confirm / Renew.
        again = self.handoff("mag2")
        self.assertEqual(again, phoa)
        self.noSlaac()
        self.assertIn(f"moves {MAG_ADDRESSES[0]} -> {MAG_ADDRESSES[1]}", d.log("lma"))
        self.assertIn(f"dhcp-relay: 02:00:00:00:aa:01 was assigned {phoa}", d.log("mag2"))
        # dhclient, restarted with its lease, confirmed (or renewed) it through MAG2.
        self.assertRegex(d.log("mag2"), r"dhcp-relay: (Confirm|Renew|Rebind) from fe80::")
        if d.dataplane == "seg6":
            self.assertIn(f"segs 1 [ {MAG_ADDRESSES[1]} ]", self.lmaRoute(phoa))
        self.checkTraffic(phoa)

        # Detach: the binding goes.
        self.stopDhclient()
        before = d.log("lma").count("deregistered")
        self.t.mn.detach()
        d.waitFor(lambda: d.log("lma").count("deregistered") > before, "deregistration")
        d.waitFor(lambda: self.lmaRoute(phoa) == "", "the LMA's route to go")

    def test_serverSilent(self):
        """No DHCPv6 server: the relay says so, the mobile stays unbound, no PBU goes."""
        d = self.domain
        self.t.mn.attach("mag1")
        self.startDhclient()
        d.waitFor(lambda: "did not answer the Solicit of 02:00:00:00:aa:01" in d.log("mag1"),
                  "the relay's no-answer log", 15)
        self.assertIsNone(self.t.mn.address())
        self.assertNotIn("new binding", d.log("lma"))
        self.assertNotIn("bound with pHoA", d.log("mag1"))
        self.assertIn("MN 02:00:00:00:aa:01 attached", d.log("mag1"))


class LmaAssignedTests(_Dhcp, SynchronousTestCase):
    """'lma-assigned': the MAG answers dhclient -6 with the pHoA the LMA assigned."""

    timeout = 60

    def setUp(self):
        skipUnlessTools(("dhclient", "isc-dhcp-client"), ("ping", "iputils-ping"))
        # Short lifetimes: dhclient renews (T1 = 4 s) within the test.
        self.startDomain('strategy = "lma-assigned"\npreferred_lifetime = 8\n'
                         'valid_lifetime = 60',
                         lmaExtra=f'[lma.pool]\nfirst = "{LMA_POOL[0]}"\nlast = "{LMA_POOL[1]}"\n')

    def test_attachRenewElsewhere(self):
        d = self.domain
        phoa = self.attach("mag1")
        self.assertTrue(IPv6Address(LMA_POOL[0]) <= phoa <= IPv6Address(LMA_POOL[1]), phoa)
        self.noSlaac()
        # The LMA chose it (the PBU carried ::) and the MAG handed it to dhclient.
        self.assertIn(f"new binding {phoa} -> {MAG_ADDRESSES[0]}", d.log("lma"))
        self.assertRegex(d.log("mag1"), rf"lma-assigned: (Advertise|Reply) with {phoa}")
        self.checkTraffic(phoa)

        again = self.handoff("mag2")
        self.assertEqual(again, phoa)
        self.noSlaac()
        self.assertIn(f"moves {MAG_ADDRESSES[0]} -> {MAG_ADDRESSES[1]}", d.log("lma"))
        self.assertRegex(d.log("mag2"), r"lma-assigned: DHCPv6 (Confirm|Renew|Rebind) from")
        self.checkTraffic(phoa)
        # dhclient's Renew at MAG2 gets a Reply with the same address.
        d.waitFor(lambda: f"lma-assigned: Reply with {phoa}" in d.log("mag2"),
                  "the Renew answered at MAG2", 15)
        self.assertEqual(self.t.mn.address(), phoa)
        self.stopDhclient()
