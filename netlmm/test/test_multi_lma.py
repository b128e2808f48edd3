"""
A PMIP client with several LMAs as a user configures it: [[pmip.lmas]] and
[pmip.anchor] (draft 4.4), what they build, and bad input refused at start
with one line naming it. The data path through two LMAs with real hosts is
L{netlmm.test.test_multi_lma_netns}.
"""

import subprocess
import sys
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from netlmm.core import profiles
from netlmm.core.anchors import (
    AaaAnchors, AnchoredCore, HashAnchors, LeastLoadedAnchors, StaticAnchors,
)
from netlmm.lab.netns import codeEnvironment
from netlmm.tap import pmip as pmipTap

TWO = '''[pmip]
allowed_mags = ["::1"]
[pmip.tls]
transport = "tcp"
[[pmip.lmas]]
name = "lma1"
address = "[2001:db8:f1::1]:5436"
prefixes = ["2001:db8:1::/48"]
[[pmip.lmas]]
name = "lma2"
address = "[2001:db8:f2::1]:5436"
tunnel = "2001:db8:e2::1"
prefixes = ["2001:db8:2::/48"]
profile = "rfc5213"
'''


class ConfigTests(SynchronousTestCase):
    """[[pmip.lmas]] and [pmip.anchor] build an anchored core, or name what is wrong."""

    def write(self, text):
        path = Path(self.mktemp())
        path.write_text(text)
        return str(path)

    def parse(self, text):
        o = pmipTap.Options()
        o.parseOptions(["--config", self.write(text)])
        return o

    def assertRejected(self, text, message):
        """The config is refused with C{message}, after the file's name."""
        path = self.write(text)
        with self.assertRaises(usage.UsageError) as cm:
            pmipTap.Options().parseOptions(["--config", path])
        self.assertEqual(str(cm.exception), f"{path}: {message}")

    def test_twoLmas(self):
        """
        One core per LMA, each with its address, profile and prefixes; the
        static policy by default; MH ports per LMA for the service.
        """
        [service] = pmipTap.makeService(self.parse(TWO)).ordered
        core = service.core
        self.assertIsInstance(core, AnchoredCore)
        self.assertIsInstance(core.policy, StaticAnchors)
        (a1, c1), (a2, c2) = core.cores
        self.assertEqual((a1.name, a1.address, a1.tunnel, a1.prefixes),
                         ("lma1", IPv6Address("2001:db8:f1::1"),
                          IPv6Address("2001:db8:f1::1"), (IPv6Network("2001:db8:1::/48"),)))
        self.assertEqual((a2.name, a2.tunnel), ("lma2", IPv6Address("2001:db8:e2::1")))
        self.assertEqual((c1.lmaAddress, c2.lmaAddress), (a1.address, a2.address))
        self.assertIsInstance(c1.profile, profiles.NetlmmDialect)
        self.assertIsInstance(c2.profile, profiles.Rfc5213Profile)
        self.assertEqual(c2.profile.ordering, "timestamp")
        self.assertIs(c1.conflicts, c2.conflicts)
        self.assertEqual(service.lmaPorts, {a1.address: 5436, a2.address: 5436})

    def test_moveMetrics(self):
        """The anchor moves and each LMA's mobiles are scraped."""
        [service] = pmipTap.makeService(self.parse(TWO)).ordered
        service.core.moveCounters["moved"] = 3
        found = {}
        for family in service.metricFamilies():
            found[family.name] = {tuple(s.labels.values()): s.value for s in family.samples}
            if family.name == "netlmm_pmip_lma_mobiles":
                break
        self.assertEqual(found["netlmm_pmip_anchor_moves"][("moved",)], 3)
        self.assertEqual(found["netlmm_pmip_lma_mobiles"], {("lma1",): 0, ("lma2",): 0})

    def test_hashPolicyWithMap(self):
        o = self.parse(TWO + '[pmip.anchor]\npolicy = "hash"\n'
                             '[pmip.anchor.mobiles]\n"mn1@example.net" = "lma2"\n')
        policy = o.built["anchor"]
        self.assertIsInstance(policy, HashAnchors)
        self.assertEqual(policy.choose(b"mn1@example.net", None).name, "lma2")

    def test_leastLoadedPolicy(self):
        [service] = pmipTap.makeService(self.parse(TWO + '[pmip.anchor]\n'
                                                       'policy = "least-loaded"\n')).ordered
        self.assertIsInstance(service.core.policy, LeastLoadedAnchors)
        self.assertEqual(service.core.policy.loads(), {"lma1": 0, "lma2": 0})

    def test_staticDefault(self):
        o = self.parse(TWO + '[pmip.anchor]\ndefault = "lma2"\n')
        self.assertEqual(o.built["anchor"].choose(b"anyone", None).name, "lma2")

    def test_oneLmaUnchanged(self):
        """lma = ... builds the single core as before; no anchor policy."""
        o = self.parse('[pmip]\nlma = "[::1]:5436"\nallowed_mags = ["::1"]\n'
                       '[pmip.tls]\ntransport = "tcp"\n')
        self.assertIsNone(o.built["lmas"])
        self.assertNotIsInstance(pmipTap.makeService(o).ordered[0].core, AnchoredCore)

    def test_unknownPolicy(self):
        self.assertRejected(
            TWO + '[pmip.anchor]\npolicy = "round-robin"\n',
            "pmip.anchor.policy: unknown anchor policy 'round-robin'; expected one of "
            "'aaa', 'hash', 'least-loaded', 'static' (`netlmm plugins` lists what is "
            "installed)")

    def test_prefixAtTwoLmas(self):
        self.assertRejected(
            TWO.replace('"2001:db8:2::/48"', '"2001:db8:1:5::/64"'),
            "pmip.lmas: the prefix 2001:db8:1:5::/64 of LMA 'lma2' overlaps "
            "2001:db8:1::/48 of LMA 'lma1': a prefix is anchored at one LMA")

    def test_lmaNamedTwice(self):
        self.assertRejected(TWO.replace('name = "lma2"', 'name = "lma1"'),
                            "pmip.lmas: the LMA name 'lma1' is given twice")

    def test_sameAddressTwice(self):
        self.assertRejected(TWO.replace("2001:db8:f2::1]", "2001:db8:f1::1]"),
                            "pmip.lmas: LMAs 'lma1' and 'lma2' have the same address "
                            "2001:db8:f1::1")

    def test_lmaAndLmas(self):
        self.assertRejected(TWO.replace("[pmip]\n", '[pmip]\nlma = "[::1]:5436"\n'),
                            "pmip.lma: give one LMA as lma = '[address]:port' or several "
                            "as [[pmip.lmas]] tables, not both")

    def test_anchorWithoutLmas(self):
        self.assertRejected('[pmip]\nlma = "[::1]:5436"\nallowed_mags = ["::1"]\n'
                            '[pmip.anchor]\npolicy = "hash"\n',
                            "pmip.anchor: an anchor policy chooses among several LMAs "
                            "([[pmip.lmas]]); with one lma = ... there is none")

    def test_mapToUnknownLma(self):
        self.assertRejected(TWO + '[pmip.anchor.mobiles]\n"mn1" = "lma3"\n',
                            "pmip.anchor.mobiles.mn1: expected one of 'lma1', 'lma2', "
                            "got 'lma3'")

    def test_preferredLmaOfMags(self):
        """[pmip.anchor.mags]: a MAG (address or prefix) = the LMA its mobiles go to."""
        [service] = pmipTap.makeService(self.parse(
            TWO + '[pmip.anchor.mags]\n"2001:db8:a2::1" = "lma2"\n'
                  '"2001:db8:a3::/64" = "lma1"\n')).ordered
        core = service.core
        self.assertEqual(core.preferredAt(IPv6Address("2001:db8:a2::1")).name, "lma2")
        self.assertEqual(core.preferredAt(IPv6Address("2001:db8:a3::9")).name, "lma1")
        self.assertIsNone(core.preferredAt(IPv6Address("2001:db8:a2::2")))
        self.assertRejected(TWO + '[pmip.anchor.mags]\n"2001:db8:a2::1" = "lma3"\n',
                            "pmip.anchor.mags.2001:db8:a2::1: expected one of 'lma1', "
                            "'lma2', got 'lma3'")
        self.assertRejected(TWO + '[pmip.anchor.mags]\n"mag2" = "lma2"\n',
                            "pmip.anchor.mags.mag2: expected a MAG's IPv6 address or "
                            "prefix (the key), got 'mag2'")

    def test_aaaPolicy(self):
        """
        'aaa' reads the LMA from the AAA server's answer: it is wired to the
        RADIUS key store, and refused without one.
        """
        radius = ('[pmip.security]\nmode = "rfc4285"\n[pmip.security.radius]\n'
                  'servers = ["[::1]:1812"]\nsecret = "s3cret"\n')
        [service] = pmipTap.makeService(self.parse(
            TWO + radius + '[pmip.anchor]\npolicy = "aaa"\ndefault = "lma2"\n')).ordered
        policy = service.core.policy
        self.assertIsInstance(policy, AaaAnchors)
        keys = service.core.security.keys
        self.assertEqual(policy.lookup, keys.homeLma)
        keys._homeLmas[b"mn1"] = IPv6Address("2001:db8:e2::1")
        self.assertEqual(policy.choose(b"mn1", None).name, "lma2")
        keys._homeLmas[b"mn1"] = IPv6Address("2001:db8:f1::1")
        self.assertEqual(policy.choose(b"mn1", None).name, "lma1")
        self.assertEqual(policy.choose(b"mn9", None).name, "lma2")
        self.assertEqual(policy.unmatched, 1)
        self.assertRejected(TWO + '[pmip.anchor]\npolicy = "aaa"\n',
                            "pmip.anchor.policy: 'aaa' takes the LMA from the AAA server's "
                            "answer; it needs keys from RADIUS ([pmip.security.radius])")

    def test_badLmaEntry(self):
        """A key of one LMA is named with its index."""
        self.assertRejected(TWO.replace('tunnel = "2001:db8:e2::1"', 'tunnel = "x"'),
                            "pmip.lmas[1].tunnel: expected an IPv6 address such as "
                            "'2001:db8::1', got 'x'")
        self.assertRejected(TWO.replace('profile = "rfc5213"', 'colour = "red"'),
                            "pmip.lmas[1].colour: unknown key; known keys here are "
                            "access_technology, address, heartbeat, name, ordering, prefixes, "
                            "profile, security, tunnel")
        self.assertRejected(TWO.replace('profile = "rfc5213"', 'security = "rfc4285"'),
                            "pmip.lmas[1].security: 'rfc4285' needs the keys of "
                            "[pmip.security] (mode = 'rfc4285') or a "
                            "[pmip.lmas[1].security] table of its own")

    def test_refusedAtStart(self):
        """twistd netlmm-pmip with a bad [[pmip.lmas]] exits non-zero with one line."""
        config = self.write(TWO.replace('name = "lma2"', 'name = "lma1"'))
        out = subprocess.run(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
             "-n", "--logfile", "-", "--pidfile", "", "netlmm-pmip", "--config", config],
            capture_output=True, text=True, timeout=60, env=codeEnvironment())
        self.assertNotEqual(out.returncode, 0)
        lines = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
        named = [line for line in lines if "the LMA name 'lma1' is given twice" in line]
        self.assertEqual(len(named), 1, lines)
        self.assertIn("pmip.lmas", named[0])
