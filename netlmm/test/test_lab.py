"""
The lab package: capability probes and the skip record `./dev test` reads,
the kernel-lab command, the data-plane choice, and (root) namespaces,
processes and captures removed also when a test fails.
"""

import os
import shutil
import stat
import subprocess
import sys
from ipaddress import IPv6Address

from twisted.trial.reporter import TestResult
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from netlmm import demo_netns
from netlmm.lab import CommandFailed, Lab, Mobile, domain, eui64, kernel
from netlmm.lab.capture import ECHO


class FakeKernel:
    """Makes L{kernel.missing} answer from a dict for the duration of a test."""

    def __init__(self, test, lacks):
        saved = dict(kernel._cache)
        test.addCleanup(lambda: (kernel._cache.clear(), kernel._cache.update(saved)))
        kernel._cache.clear()
        for name in kernel.CAPABILITIES:
            kernel._cache[name] = lacks.get(name)


class RequireTests(SynchronousTestCase):

    def setUp(self):
        self.record = os.path.abspath(self.mktemp())
        self.patch(os, "environ", dict(os.environ, **{kernel.SKIPS_ENV: self.record}))
        os.environ.pop(kernel.SCALE_ENV, None)

    def test_recordsAndSkips(self):
        """A missing capability skips with the reason and records the test id."""
        FakeKernel(self, {"sctp": "no SCTP: socket() failed."})
        e = self.assertRaises(SkipTest, kernel.require, self, "tun", "sctp")
        self.assertIn("has no SCTP: socket() failed; ./dev test runs it under kernel-lab",
                      str(e))
        with open(self.record) as f:
            self.assertEqual(f.read(), f"{self.id()}\tsctp\n")

    def test_present(self):
        """Nothing missing: no skip, nothing recorded."""
        FakeKernel(self, {})
        kernel.require(self, "sctp", "tun")
        self.assertFalse(os.path.exists(self.record))

    def test_underKernelLab(self):
        """Inside kernel-lab the reason does not send the test to kernel-lab again."""
        FakeKernel(self, {"seg6": "no seg6"})
        os.environ[kernel.SCALE_ENV] = "16"
        self.patch(kernel, "needsRoot", lambda: None)
        e = self.assertRaises(SkipTest, kernel.require, self, "seg6")
        self.assertNotIn("kernel-lab", str(e))

    def test_rootFirst(self):
        """Without root the test skips for that, and is not recorded as a kernel lack."""
        FakeKernel(self, {"seg6": "no seg6"})
        self.patch(kernel, "needsRoot", lambda: "needs root")
        e = self.assertRaises(SkipTest, kernel.require, self, "seg6")
        self.assertEqual(str(e), "needs root")
        self.assertFalse(os.path.exists(self.record))

    def test_unknown(self):
        e = self.assertRaises(ValueError, kernel.missing, "warp-drive")
        self.assertIn("unknown kernel capability 'warp-drive' (known: dummy, esp", str(e))


class TimeScaleTests(SynchronousTestCase):

    def test_values(self):
        for value, expected in ((None, 1.0), ("16", 16.0), ("x", 1.0), ("0.5", 1.0)):
            env = {k: v for k, v in os.environ.items() if k != kernel.SCALE_ENV}
            if value is not None:
                env[kernel.SCALE_ENV] = value
            self.patch(os, "environ", env)
            self.assertEqual(kernel.timeScale(), expected, value)


class KernelLabCommandTests(SynchronousTestCase):

    def test_command(self):
        argv = kernel.kernelLabCommand(["a.b.C", "a.d"], 700, tool="/x/kernel-lab",
                                       python="/v/bin/python")
        self.assertEqual(argv, ["/x/kernel-lab", "run", "--timeout", "700", "-e",
                                "NETLMM_LAB_TIME_SCALE=16", "--", "/v/bin/python", "-m",
                                "twisted.trial", "--temp-directory=/tmp/_trial_kernel",
                                "a.b.C", "a.d"])

    def test_timeoutByCount(self):
        """
        Without a timeout, a run gets 10 minutes plus 5 a test, but never more
        than 70: CI has 90 minutes for everything.
        """
        def timeout(tests):
            argv = kernel.kernelLabCommand(tests, tool="/x/kernel-lab", python="/v/bin/python")
            return argv[argv.index("--timeout") + 1]
        self.assertEqual(timeout(["a.b.C"]), "900")
        self.assertEqual(timeout([f"a.T.test_{i}" for i in range(12)]), "4200")
        self.assertEqual(timeout([f"a.T.test_{i}" for i in range(20)]), "4200")
        self.assertEqual(kernel.runTimeout(11), 3900)

    def test_toolBesideAParent(self):
        """../shared/tools/kernel-lab is found from a checkout nested deeper too."""
        root = os.path.abspath(self.mktemp())
        tool = os.path.join(root, "shared", "tools", "kernel-lab")
        checkout = os.path.join(root, "wt", "lab")
        os.makedirs(os.path.dirname(tool))
        os.makedirs(checkout)
        with open(tool, "w") as f:
            f.write("#!/bin/sh\n")
        os.chmod(tool, stat.S_IRWXU)
        self.patch(os, "environ", {k: v for k, v in os.environ.items() if k != "KERNEL_LAB"})
        self.assertEqual(kernel.kernelLabTool(checkout), tool)
        os.environ["KERNEL_LAB"] = os.path.join(root, "nothing")
        self.assertIsNone(kernel.kernelLabTool(checkout))

    def test_noTool(self):
        self.patch(kernel, "kernelLabTool", lambda: None)
        self.assertRaises(RuntimeError, kernel.kernelLabCommand, ["t"])


class DataPlaneChoiceTests(SynchronousTestCase):

    def setUp(self):
        self.patch(kernel, "needsRoot", lambda: None)

    def test_best(self):
        FakeKernel(self, {})
        self.assertEqual(domain.bestDataPlane(), "seg6")
        FakeKernel(self, {"seg6": "no seg6 lightweight tunnels"})
        self.assertEqual(domain.bestDataPlane(), "userspace")
        self.assertEqual(domain.pickDataPlane(), ("userspace", "tun"))
        self.assertEqual(domain.pickDataPlane("seg6"), ("seg6", "seg6"))

    def test_none(self):
        FakeKernel(self, {"seg6": "no seg6", "tun": "no TUN devices", "ip6tnl": "no ip6tnl"})
        e = self.assertRaises(CommandFailed, domain.bestDataPlane)
        self.assertEqual(str(e), "no data plane can run on this kernel (seg6: this kernel "
                                 "has no seg6; userspace: this kernel has no TUN devices; "
                                 "ip6tnl: this kernel has no ip6tnl)")
        # A test asking for the best then skips for the first one's reason.
        self.assertEqual(domain.pickDataPlane(), ("seg6", "seg6"))

    def test_demoNamesWhatIsMissing(self):
        """`netlmm demo --netns --dataplane seg6` on a kernel without seg6."""
        FakeKernel(self, {"seg6": "no seg6 lightweight tunnels (CONFIG_IPV6_SEG6_LWTUNNEL)"})
        e = self.assertRaises(CommandFailed, demo_netns.chooseDataPlane, "seg6")
        self.assertEqual(str(e), "the seg6 data plane cannot run here: this kernel has no "
                                 "seg6 lightweight tunnels (CONFIG_IPV6_SEG6_LWTUNNEL); "
                                 "try --dataplane userspace")
        self.assertEqual(demo_netns.chooseDataPlane(None), "userspace")

    def test_demoExitsWithTheReason(self):
        FakeKernel(self, {"seg6": "no seg6", "tun": "no TUN devices"})
        self.patch(sys, "stderr", _Out())
        self.assertEqual(demo_netns.run(_Out(), "userspace"), 2)
        self.assertIn("netlmm demo --netns: the userspace data plane cannot run here: "
                      "this kernel has no TUN devices", sys.stderr.text)


class _Out:
    def __init__(self):
        self.text = ""

    def write(self, s):
        self.text += s

    def flush(self):
        pass


class Eui64Tests(SynchronousTestCase):

    def test_known(self):
        self.assertEqual(eui64("2001:db8:1::/64", "02:00:00:00:aa:01"),
                         IPv6Address("2001:db8:1::ff:fe00:aa01"))


def namespaces():
    return subprocess.run(["ip", "netns", "list"], capture_output=True,
                          text=True).stdout


class LabTests(SynchronousTestCase):
    """For real (root): what a lab makes, it removes."""

    def test_buildAndDestroy(self):
        lab = Lab(self)
        lab.add("a", router=True)
        lab.add("b")
        lab.bridge("b", "acc0")
        lab.link("a", "eth0", "b", "e1", mtu=1600)
        lab.addr("a", "eth0", "2001:db8:7::1/64")
        lab.addr("b", "e1", "2001:db8:7::2/64")
        self.assertEqual(lab.exec("a", "cat", "/proc/sys/net/ipv6/conf/all/forwarding")
                         .stdout.strip(), "1")
        self.assertIn("mtu 1600", lab.exec("b", "ip", "link", "show", "e1").stdout)
        self.assertEqual(lab.addresses("a", "eth0"), [IPv6Address("2001:db8:7::1")])
        lab.exec("a", "ping", "-c", "1", "-W", "5", "2001:db8:7::2")
        sleeper = lab.start("a", ["sleep", "600"])
        self.assertIn(lab.ns("a"), namespaces())
        lab.destroy()
        self.assertIsNotNone(sleeper.poll())
        self.assertNotIn(lab.prefix, namespaces())
        lab.destroy()  # twice is harmless

    def test_cleanupAfterFailure(self):
        """A test that fails half-way leaves no namespace and no process behind."""
        made = []

        class HalfWay(SynchronousTestCase):
            def test_it(inner):
                lab = Lab(inner)
                lab.add("x")
                made.extend([lab.prefix, lab.start("x", ["sleep", "600"])])
                inner.fail("half-way")
        outcome = TestResult()
        HalfWay("test_it").run(outcome)
        prefix, sleeper = made
        self.assertEqual([str(f.value) for _, f in outcome.failures], ["half-way"])
        self.assertIsNotNone(sleeper.poll())
        self.assertNotIn(prefix, namespaces())

    def test_failedCommand(self):
        lab = Lab(self)
        lab.add("a")
        e = self.assertRaises(CommandFailed, lab.exec, "a", "ip", "link", "del", "nothing")
        self.assertIn("ip link del nothing: exit", str(e))

    def test_mobileAndCapture(self):
        """
        A mobile plugged into a bridge reaches the MAG once its address is
        usable (DAD on), tshark sees the echoes, detaching removes the port.
        """
        lab = Lab(self)
        lab.add("mag", router=True)
        lab.bridge("mag", "acc0", "02:00:00:00:01:01")
        lab.addr("mag", "acc0", "2001:db8:9::1/64")
        lab.mobile("mn")
        mn = Mobile(lab, "mn", "02:00:00:00:aa:07")
        capture = lab.capture("mag", "acc0", self.mktemp() + ".pcap")
        mn.attach("mag")
        lab.exec("mn", "ip", "addr", "add", "2001:db8:9::7/64", "dev", "eth0")
        from netlmm.lab.wait import waitFor
        waitFor(lambda: mn.address() is not None, "the mobile's address", 10)
        self.assertEqual(mn.address(), IPv6Address("2001:db8:9::7"))
        lab.exec("mn", "ping", "-c", "2", "-i", "0.2", "-W", "5", "2001:db8:9::1")
        capture.stop(4, ECHO)
        rows = capture.fields(ECHO, "ipv6.src", "ipv6.dst", "icmpv6.type")
        self.assertEqual(rows[:2], [("2001:db8:9::7", "2001:db8:9::1", "128"),
                                    ("2001:db8:9::1", "2001:db8:9::7", "129")])
        port = mn.at[1]
        mn.detach()
        self.assertNotIn(port, lab.exec("mag", "ip", "link").stdout)
        self.assertEqual(lab.addresses("mn", "eth0"), [])


class ExpertTests(SynchronousTestCase):
    """tshark's expert items, the check that what netlmm sends decodes cleanly."""

    def test_truncatedOption(self):
        if not shutil.which("tshark"):
            raise SkipTest("needs tshark (apt-get install tshark)")
        from scapy.all import IPv6, Raw, wrpcap
        from netlmm.lab.capture import expert
        path = os.path.abspath(self.mktemp())
        # A PBU whose Home Network Prefix option claims 10 octets past the end.
        mh = bytes([59, 1, 5, 0, 0, 0, 0, 1, 0x82, 0, 0, 10, 22, 10, 0, 64])
        wrpcap(path, [IPv6(src="2001:db8::1", dst="2001:db8::2", nh=135) / Raw(mh)])
        self.assertEqual(expert(path, "mipv6"), [
            (1, "warning", "Home Network Prefix (option length = 10 bytes says option "
                           "goes past end of options)")])
        self.assertEqual(expert(path, "mipv6 and frame.number == 2"), [])


class IpsecTests(SynchronousTestCase):
    """Both ends key the same SAs and protect protocol 135 both ways."""

    def test_bothEnds(self):
        from netlmm.lab.ipsec import xfrmCommands
        a, b = "2001:db8:f::2", "2001:db8:f::1"
        atA, atB = xfrmCommands(a, b), xfrmCommands(b, a)
        states = [c for c in atA if c[0] == "state"]
        self.assertEqual(states, [c for c in atB if c[0] == "state"])
        self.assertEqual([(c[3], c[5], c[9]) for c in states],
                         [(b, a, "0x5213"), (a, b, "0x5214")])
        policies = [c for c in atA if c[0] == "policy"]
        self.assertEqual([(c[3], c[5], c[7], c[9]) for c in policies],
                         [(f"{a}/128", f"{b}/128", "135", "out"),
                          (f"{b}/128", f"{a}/128", "135", "in")])
        for c in atA:
            self.assertIn("esp", c)
            self.assertIn("transport", c)


class KernelLabLockTests(SynchronousTestCase):
    """One kernel-lab run at a time: the second waits, and says so."""

    def test_waits(self):
        import threading
        path = os.path.abspath(self.mktemp())
        first = kernel.holdKernelLabLock(path, say=self.fail)
        said, taken = [], threading.Event()

        def second():
            fd = kernel.holdKernelLabLock(path, say=said.append)
            taken.set()
            os.close(fd)
        thread = threading.Thread(target=second, daemon=True)
        thread.start()
        self.assertFalse(taken.wait(0.3))
        self.assertEqual(said, [f"kernel-lab: waiting for another run to finish ({path})"])
        os.close(first)
        self.assertTrue(taken.wait(10))
        thread.join(10)


class TcpTests(SynchronousTestCase):

    def test_echo(self):
        """Root: the octets sent come back over a real TCP connection between namespaces."""
        lab = Lab(self)
        lab.add("a")
        lab.add("b")
        lab.link("a", "eth0", "b", "eth0")
        lab.addr("a", "eth0", "2001:db8:7::1/64")
        lab.addr("b", "eth0", "2001:db8:7::2/64")
        self.assertEqual(lab.tcp("a", "b", "2001:db8:7::1", size=300000), 300000)
        lab.exec("a", "ip", "link", "set", "eth0", "down")
        self.assertRaises(CommandFailed, lab.tcp, "a", "b", "2001:db8:7::1", timeout=3)
