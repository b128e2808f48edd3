"""
End to end, with real hosts: a correspondent node, the LMA, the PMIP client,
two MAGs and a mobile running the stock Linux IPv6 stack (SLAAC, DAD on), each
in its own network namespace, and the real daemons (`twistd -n netlmm-...`)
in them. Root only; CI runs these as root.
"""

from twisted.trial.unittest import SynchronousTestCase

from netlmm.lab import eui64, timeScale
from netlmm.lab.capture import ECHO
from netlmm.lab.domain import (
    CN_ADDRESS, HOME_PREFIX, LMA_ADDRESS, MAG_ADDRESSES, MN_MAC, NetnsDomain,
)
from netlmm.lab.netns import skipUnlessTools

PHOA = eui64(HOME_PREFIX, MN_MAC)


class _EndToEnd:
    """The scenario; subclasses pick the data plane."""

    dataplane = None
    #: The longest interruption accepted across a handoff, seconds: the
    #: mobile's own DAD of its address on the new link (1 s, real time) plus
    #: the detection, signalling and routes, which run about 16 times slower
    #: under kernel-lab's emulated CPU.
    maxInterruption = 1.0 + 1.5 * timeScale()

    def setUp(self):
        skipUnlessTools(("ping", "iputils-ping"), ("tcpdump", "tcpdump"), ("tshark", "tshark"))
        self.domain = NetnsDomain(self.mktemp(), self.dataplane, testCase=self)
        self.domain.start()
        self.t = self.domain.topology

    def waitFor(self, predicate, what, timeout=20):
        self.domain.waitFor(predicate, what, timeout)

    def lmaRoute(self):
        return self.t.exec("lma", "ip", "-6", "route", "show", f"{PHOA}/128").stdout.strip()

    def test_attachHandoffDetach(self):
        d, t = self.domain, self.t
        # 1. The mobile's link comes up at MAG1: RS, RA, SLAAC, DAD, binding.
        self.assertEqual(d.attach("mag1"), PHOA)
        self.assertIn(f"new binding {PHOA} -> {MAG_ADDRESSES[0]}", d.log("lma"))
        # Traffic both ways, and IPv6-in-IPv6 between LMA and MAG1.
        capture = t.capture("lma", "m1", d.path("tunnel.pcap"), filter="ip6 proto 41")
        self.waitFor(lambda: d.ping("mn", CN_ADDRESS, 1).returncode == 0,
                     "MN -> CN traffic", 10)
        self.assertEqual(d.ping("cn", PHOA).returncode, 0)
        capture.stop(2, ECHO)
        # Outer header between the tunnel end points, inner packet of the flow.
        wire = capture.fields(ECHO, "ipv6.src", "ipv6.dst")
        self.assertIn((f"{MAG_ADDRESSES[0]},{PHOA}", f"{LMA_ADDRESS},{CN_ADDRESS}"), wire)
        self.assertIn((f"{LMA_ADDRESS},{CN_ADDRESS}", f"{MAG_ADDRESSES[0]},{PHOA}"), wire)

        # 2 and 3. L2 handoff under a 10 ms ping flow: the MN keeps its address.
        result = d.handoff("mag2")
        print(f"\n[{self.dataplane}] handoff: interruption {result['interruption']:.3f} s, "
              f"{result['lost']} of {result['sent']} packets lost")
        self.assertLess(result["interruption"], self.maxInterruption)
        self.assertIn(f"moves {MAG_ADDRESSES[0]} -> {MAG_ADDRESSES[1]}", d.log("lma"))
        self.assertEqual(t.mn.address(), PHOA)
        addresses = t.exec("mn", "ip", "-6", "-o", "addr", "show", "dev", "eth0",
                           "scope", "global").stdout
        self.assertEqual(addresses.count("inet6"), 1, addresses)
        if self.dataplane == "seg6":
            self.assertIn(f"segs 1 [ {MAG_ADDRESSES[1]} ]", self.lmaRoute())
        self.assertEqual(d.ping("mn", CN_ADDRESS).returncode, 0)

        # 4. Detach: the binding goes at the LMA, the routes at both ends.
        d.detach()
        self.assertIn(f"binding for {PHOA} deregistered", d.log("lma"))
        self.waitFor(lambda: self.lmaRoute() == "", "the LMA's route to go")
        self.waitFor(lambda: str(PHOA) not in t.exec("mag2", "ip", "-6", "route", "show",
                                                     "table", "all").stdout,
                     "MAG2's routes to go")
        rules = t.exec("mag2", "ip", "-6", "rule", "show").stdout
        self.assertNotIn(str(PHOA), rules)


class Seg6EndToEndTests(_EndToEnd, SynchronousTestCase):
    """With the kernel's seg6 (encap.red) data plane."""

    dataplane = "seg6"


class UserspaceEndToEndTests(_EndToEnd, SynchronousTestCase):
    """With the TUN + raw protocol-41 data plane."""

    dataplane = "userspace"


class DemoNetnsTests(SynchronousTestCase):
    """`netlmm demo --netns` as a user runs it."""

    def test_demo(self):
        """
        It exits 0 and draws the signalling it captured on the wire, with the
        best data plane this kernel has.
        """
        from netlmm.lab.kernel import require
        require(self, root=True)
        import io
        from netlmm import demo_netns
        out = io.StringIO()
        self.assertEqual(demo_netns.run(out, None, self.mktemp()), 0, out.getvalue())
        text = out.getvalue()
        for expected in ("mode=stateless", "PBU seq=", "status=0 (ACCEPTED)",
                         "result=moved", "(deregistration)", "Handoff MAG1 -> MAG2: interruption"):
            self.assertIn(expected, text)
        # Attachment, handoff and deregistration: three PBUs on the wire.
        self.assertEqual(text.count("PBU seq="), 3, text)
