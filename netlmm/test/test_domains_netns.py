"""
Two local mobility domains with a GMA (issue 10, the check "Two LMAs, three
MAGs (one in both domains), a correspondent"; draft 4.4, 4.6), with the real
daemons in network namespaces (root; L{netlmm.lab.domains}):

  - a plain IPv6 mobile moving into the other domain gets an address under
    the other LMA's prefix, reachable at once (host: any PMIP data plane);
  - a Mobile IPv6 mobile (`netlmm mn` with the GMA) keeps a TCP connection
    to its home address across the same change of domain, and the demo
    `netlmm demo --netns --domains` runs (a kernel with mip6: kernel-lab).
"""

import io
import os
import sys
from ipaddress import IPv6Address

from twisted.trial.unittest import SynchronousTestCase

from netlmm import demo_netns
from netlmm.lab import kernel, timeScale
from netlmm.lab.domains import (
    GMA_ADDRESS, HOME_ADDRESS, POOLS, TwoDomains, mobileIpv6Moves, plainMove)


def _inPool(lma, addresses):
    return [a for a in addresses if IPv6Address(a) in POOLS[lma]]


class PlainMobileTests(SynchronousTestCase):

    def test_plainMobileKeepsOldAddressUntilClosed(self):
        """
        MAG1 -> MAG2, where the mobile's PMIP client moves its anchor to LMA2
        (draft 4.4): the mobile gets a second address, under LMA2's prefix,
        which the CN reaches; the first one is deprecated but its TCP
        connection goes on, none lost, through LMA1. Once that connection
        closes, MAG2 releases the old prefix (unused for old_prefix_idle s,
        userspace data plane) and LMA1's binding is deregistered.
        """
        lab = TwoDomains(self, self.mktemp(), gma=False)
        lab.startAll()
        result = plainMove(lab, window=5.0, release=lab.dataplane == "userspace")
        [old] = result["before"]
        self.assertTrue(_inPool("lma1", [old]), result)
        self.assertIn(f"{old} (deprecated)", result["after"])
        new = [a for a in result["after"] if a != f"{old} (deprecated)"]
        self.assertEqual(len(new), 1, result)
        self.assertTrue(_inPool("lma2", new), result)
        [(_, _, reached)] = result["moves"]
        self.assertIsNotNone(reached, "the CN did not reach the new address")
        self.assertTrue(result["survived"], result)
        self.assertIn("02:00:00:00:bb:02 moved from lma1 to lma2", lab.logOf("pmip1"))
        self.assertNotIn("02:00:00:00:bb:02", lab.logOf("pmip2"))
        if lab.dataplane != "userspace":
            return
        self.assertIsNotNone(result["released"], lab.logs())
        self.assertLess(result["released"], 15 * timeScale())
        lab.waitFor(lambda: "deregistered" in lab.logOf("lma1"),
                    "LMA1's binding of the old prefix to go", 10)


class MobileIpv6Tests(SynchronousTestCase):

    def test_tcpSurvivesDomainChange(self):
        """
        `netlmm mn` at MAG1 registers its care-of address (LMA1's prefix)
        with the GMA; a TCP connection from the CN to its home address keeps
        echoing, none lost or reordered, across MAG1 -> MAG2 (where PMIP2,
        LMA2's client, takes it: a new care-of address under LMA2's prefix, a
        Binding Update with the Home Address option and an accepting BA on
        the wire) and MAG2 -> MAG3 (LMA2's domain still: same care-of
        address, no Binding Update).
        """
        lab = TwoDomains(self, self.mktemp())

        lab.startAll()
        capture = lab.capture("core", "core", lab.path("core.pcap"),
                              filter=f"host {GMA_ADDRESS}")
        result = mobileIpv6Moves(lab, window=10.0)
        capture.stop()
        home, careOf1 = result["before"]
        _, careOf3 = result["after"]
        self.assertIn("02:00:00:00:bb:01", lab.logOf("pmip2"))
        self.assertEqual(home, HOME_ADDRESS)
        self.assertTrue(_inPool("lma1", [careOf1]), result)
        self.assertTrue(_inPool("lma2", [careOf3]), result)
        self.assertEqual(lab.boundTo(), [careOf1, careOf3])
        self.assertTrue(result["survived"], result)
        for old, new, first in result["moves"]:
            self.assertIsNotNone(first, (old, new))
            sys.stdout.write(f"\n{old} -> {new}: first echo {first * 1000:.0f} ms after "
                             "the new link")
        bus = capture.fields("mip6.mhtype == 5", "ipv6.src", "ipv6.opt.mipv6.home_address")
        bas = capture.fields("mip6.mhtype == 6", "ipv6.dst", "mip6.ba.status")
        self.assertIn((careOf3, HOME_ADDRESS), bus)
        self.assertIn((careOf3, "0"), bas)


class DemoTests(SynchronousTestCase):

    def test_demoNeedsMobileIpv6(self):
        """On a kernel without mip6 the demo says so and exits 2, building nothing."""
        from netlmm.test.test_lab import FakeKernel, _Out
        FakeKernel(self, {"mip6": "no Mobile IPv6 extension headers (CONFIG_IPV6_MIP6, mip6)"})
        self.patch(kernel, "needsRoot", lambda: None)
        self.patch(sys, "stderr", _Out())
        self.assertEqual(demo_netns.runDomains(_Out()), 2)
        self.assertEqual(sys.stderr.text,
                         "netlmm demo --netns --domains: the GMA and `netlmm mn` need a kernel "
                         "with Mobile IPv6 (mip6, ip6tnl, seg6); this one has no Mobile IPv6 "
                         "extension headers (CONFIG_IPV6_MIP6, mip6)\n")

    def test_demo(self):
        """
        `netlmm demo --netns --domains` end to end: exit 0 (the MIPv6
        mobile's connection survived), the ladder has the PMIP signalling of
        both domains and the BU/BA with the GMA, one line per mobile.
        """
        from netlmm.lab import require
        from netlmm.lab.mip6 import NEEDS
        require(self, *NEEDS, root=True)
        out = io.StringIO()
        workdir = self.mktemp()
        self.assertEqual(demo_netns.runDomains(out, None, workdir), 0, out.getvalue())
        text = out.getvalue()
        self.assertRegex(text, r"MN \(Mobile IPv6, netlmm mn\): TCP connection SURVIVED; "
                               r"addresses before 2001:db8:100::10, 2001:db8:110:\S+; after "
                               r"2001:db8:100::10, 2001:db8:120:")
        self.assertRegex(text, r"PN \(plain IPv6\): TCP connection .*; addresses before "
                               r"2001:db8:110:\S+; after 2001:db8:120:")
        self.assertRegex(text, r"move MAG2 -> MAG3: first packet on the new path \d+ ms")
        self.assertRegex(text, r"BU seq=\d+ HoA=2001:db8:100::10 CoA=2001:db8:120:")
        self.assertIn("BA seq=", text)
        self.assertIn("PBU seq=", text)
        self.assertIn("Trigger txn=", text)
        self.assertIn("PN moves MAG1 -> MAG2", text)
        # Everything removed: no namespace of this process is left.
        mine = f"nl{os.getpid()}x"
        self.assertEqual([n for n in os.listdir("/run/netns") if n.startswith(mine)], [])
