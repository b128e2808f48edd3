"""
Handover with context transfer, forwarding and the hold, with the real
daemons and a stock Linux mobile (root): the mobile's link is deleted at
MAG1 and created at MAG2, its new address is tentative for a second (DAD);
meanwhile MAG1 holds and then forwards its downlink to MAG2, which holds it
until the mobile answers and delivers it. Nothing is lost but what was on
the link at the instant it was deleted. On each data plane: `userspace`
(the daemon's TUN), and the kernel ones, seg6 and ip6tnl (where the kernel
lacks them, `./dev test` runs those under kernel-lab); ip6tnl does not pass
yet and is skipped.
"""

from twisted.trial.unittest import TestCase

from netlmm.lab import timeScale
from netlmm.lab.domain import NetnsDomain


class WiredHandoverTests(TestCase):
    """On the userspace data plane (the daemon's TUN): any kernel."""

    timeout = 300 * timeScale()
    dataplane = "userspace"

    def domain(self):
        return NetnsDomain(self.mktemp(), self.dataplane, testCase=self, handover=True)

    def test_noLoss(self):
        """Forwarding and holding: a ping flow from the CN loses nothing, both ways."""
        domain = self.domain()
        domain.start()
        phoa = domain.attach("mag1")
        for target, old in (("mag2", "mag1"), ("mag1", "mag2")):
            result = domain.handoff(target)
            self.assertEqual(domain.topology.mn.address(), phoa)
            # Only what the old MAG had already handed to the link when the
            # link was deleted may be lost: 0 to 4 packets at 100/s (a busy
            # machine widens that moment); without handover about 45 are.
            # Under kernel-lab (16 times slower) the old MAG takes up to half
            # a second to see the link go: 50 packets (seg6, load 16).
            self.assertLessEqual(result["lost"], max(10, 4 * timeScale()),
                                 (result, domain.logs()))
            self.assertIn("context of 02:00:00:00:aa:01 from", domain.log(target))
            self.assertRegex(domain.log(old), r"packets held for \S+ sent on to")
            self.assertRegex(domain.log(target), r"reachable at \S+; \d+ held packets "
                                                 r"delivered")

    def test_previousMagDown(self):
        """
        MAG1's daemon is gone when the mobile moves: MAG2 gets no context,
        goes on as without handover after context_timeout, and the handover
        completes (the LMA's binding moves, the mobile keeps its address).
        """
        domain = self.domain()
        domain.start()
        phoa = domain.attach("mag1")
        domain.topology.stop(domain.daemons.pop(2))  # MAG1
        domain.topology.mn.detach()
        self.assertEqual(domain.attach("mag2"), phoa)
        self.assertIn("no context for 02:00:00:00:aa:01 from 2001:db8:ffff::11",
                      domain.log("mag2"))
        self.assertEqual(domain.ping("cn", phoa).returncode, 0)


class Seg6WiredHandoverTests(WiredHandoverTests):
    """Forwarding and holding on the seg6 data plane (kernel routes, seg6 encap)."""

    dataplane = "seg6"


class Ip6tnlWiredHandoverTests(WiredHandoverTests):
    """Forwarding and holding on the ip6tnl data plane (ip6ip6 devices)."""

    dataplane = "ip6tnl"
    # Under kernel-lab (2026-12-03) test_noLoss lost 393 of 522 packets: the
    # new MAG held nothing, neither what the old MAG forwarded nor what the
    # LMA tunnelled once the binding moved; test_previousMagDown passed.
    skip = ("ip6tnl: the new MAG holds nothing during a handover (issue 9, not solved "
            "yet); run it with the skip removed to reproduce")


class DualStackHandoverTests(TestCase):
    """
    A dual-stack mobile (RFC 5844: its IPv4 home address from the LMA, served
    by the MAG's DHCPv4 to a stock `dhclient -4`) hands off MAG1 -> MAG2 on
    the userspace data plane while the CN streams UDP to its IPv4 address:
    MAG2 has its IPv4 state from the context, MAG1 holds and forwards its
    IPv4 downlink with the IPv6, MAG2 holds it until the mobile answers,
    and the mobile keeps its IPv4 address; nothing is lost but what MAG1 had
    handed to the link when it was deleted, with test_noLoss's bound at the
    same 100 packets/s (measured at 200/s: 3 lost on a quiet host, 45 once in a
    full suite at load 10, as MAG1 saw the link go late; 43 with the IPv6
    homes alone held and forwarded, as on the kernel data planes). The wired
    lab makes the mobile a new interface at MAG2: the test gives it back its
    IPv4 configuration at once, as a Wi-Fi station's interface keeps it.
    """

    timeout = 300 * timeScale()

    def test_ipv4StreamNoLoss(self):
        from ipaddress import IPv4Address

        from netlmm.lab.netns import skipUnlessTools, which
        skipUnlessTools(("dhclient", "isc-dhcp-client"))
        router = IPv4Address("10.20.0.1")
        lmaExtra = f'[lma.ipv4]\npool = "10.20.0.0/24"\nrouter = "{router}"\n'
        domain = NetnsDomain(self.mktemp(), "userspace", testCase=self, handover=True,
                             lmaExtra=lmaExtra, magExtra="[mag.ipv4]\n")
        domain.start()
        t = domain.topology
        domain.attach("mag1")
        dhclient = t.start("mn", [which("dhclient"), "-4", "-d", "-v", "-lf",
                                  domain.path("dhclient4.leases"), "-pf",
                                  domain.path("dhclient4.pid"), "eth0"],
                           domain.path("dhclient4.log"))

        def configured():
            out = t.exec("mn", "ip", "-4", "-o", "addr", "show", "dev", "eth0",
                         check=False).stdout.split()
            routes = t.exec("mn", "ip", "-4", "route", "show", check=False).stdout
            if "inet" not in out or f"default via {router}" not in routes:
                return None
            return out[out.index("inet") + 1]
        domain.waitFor(configured, "dhclient's address and default route", 20)
        address = configured()
        t.stop(dhclient)
        if configured() != address:  # (dhclient-script may take it on the way out)
            t.exec("mn", "ip", "addr", "replace", address, "dev", "eth0")

        def restore():
            t.exec("mn", "ip", "addr", "replace", address, "dev", "eth0")
            t.exec("mn", "ip", "route", "replace", "default", "via", str(router), "dev",
                   "eth0", "onlink")
        ip = address.split("/")[0]
        result = domain.handoffFlow("mag2", rate=100.0, target=f"::ffff:{ip}", onLink=restore)
        self.assertEqual(configured(), address)
        self.assertGreater(result["received"], 50, result)
        self.assertLessEqual(result["lost"], max(10, 4 * timeScale()), (result, domain.logs()))
        log1, log2 = domain.log("mag1"), domain.log("mag2")
        self.assertIn("context of 02:00:00:00:aa:01 from", log2)
        self.assertRegex(log1, rf"packets held for {ip} sent on to")
        self.assertRegex(log2, rf"reachable at {ip}; \d+ held packets delivered")
        self.assertEqual(domain.ping("cn", IPv4Address(ip)).returncode, 0)


class LearnedNeighbourTests(TestCase):
    """
    MAGs with no configured neighbours learn each other from the PMIP
    client (draft Appendix D): at the first handoff MAG2 is told the mobile
    came from MAG1 and asks it, late, for what it held; at the way back
    MAG1 knows MAG2 and asks it at the attachment, as configured neighbours
    do, and the flow loses no more than test_noLoss allows (measured: the
    first handoff lost 41 of 123 pings, MAG2 bound before it asked, so the
    mobile's DAD bounds it as without context; the way back lost 0 of 129).
    """

    timeout = 300 * timeScale()

    def test_learnedFromThePmipClient(self):
        domain = NetnsDomain(self.mktemp(), "userspace", testCase=self, handover=True,
                             neighbours=False)
        domain.start()
        phoa = domain.attach("mag1")
        first = domain.handoff("mag2")
        log1, log2 = domain.log("mag1"), domain.log("mag2")
        self.assertIn("2001:db8:ffff::11 is a neighbour (named by the PMIP client)", log2)
        self.assertIn("came from 2001:db8:ffff::11: asking it for what it holds", log2)
        self.assertIn("2001:db8:ffff::12 is a neighbour (named by the PMIP client)", log1)
        self.assertRegex(log1, r"packets held for \S+ sent on to 2001:db8:ffff::12")
        result = domain.handoff("mag1")
        self.assertEqual(domain.topology.mn.address(), phoa)
        self.assertLessEqual(result["lost"], max(10, 4 * timeScale()),
                             (first, result, domain.logs()))
        self.assertIn("context of 02:00:00:00:aa:01 from 2001:db8:ffff::12", domain.log("mag1"))
