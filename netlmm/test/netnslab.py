"""
Network namespaces for the data-plane tests that need root: each test makes
its own uniquely named namespaces and veth links, and removes them (and every
process it started in them) in cleanups that run also when the test fails.
"""

import ctypes
import os
import shutil
import signal
import subprocess
import threading
import time
from unittest import SkipTest

CLONE_NEWNET = 0x40000000


def skipUnlessNetns():
    """Raise SkipTest when namespaces cannot be made here."""
    if os.geteuid() != 0:
        raise SkipTest("needs root to create network namespaces (CI runs this as root)")
    for tool in ("ip", "ping"):
        if shutil.which(tool) is None:
            raise SkipTest(f"needs {tool!r} (iproute2 / iputils-ping) on PATH")


class Lab:
    """
    Namespaces and links for one test; C{prefix} keeps names unique (the
    test process id plus a counter).
    """

    _counter = 0

    def __init__(self, testcase):
        skipUnlessNetns()
        Lab._counter += 1
        self.testcase = testcase
        self.prefix = f"nlt{os.getpid()}x{Lab._counter}"
        self.namespaces = {}

    def netns(self, role, forwarding=False):
        """Make namespace C{role} (DAD off before any link exists)."""
        name = f"{self.prefix}{role}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        self.testcase.addCleanup(subprocess.run, ["ip", "netns", "del", name],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.namespaces[role] = name
        self.sh(role, "sysctl -qw net.ipv6.conf.default.accept_dad=0 "
                      "net.ipv6.conf.all.accept_dad=0")
        self.sh(role, "ip link set lo up")
        if forwarding:
            self.sh(role, "sysctl -qw net.ipv6.conf.all.forwarding=1")
        return name

    def name(self, role):
        return self.namespaces[role]

    def link(self, a, ifa, b, ifb, mtu=None):
        """A veth pair: C{ifa} in namespace C{a}, C{ifb} in C{b}, both up."""
        subprocess.run(["ip", "link", "add", ifa, "netns", self.name(a), "type", "veth",
                        "peer", "name", ifb, "netns", self.name(b)], check=True)
        for ns, ifname in ((a, ifa), (b, ifb)):
            if mtu:
                self.sh(ns, f"ip link set {ifname} mtu {mtu}")
            self.sh(ns, f"ip link set {ifname} up")

    def sh(self, role, command, check=True, timeout=20):
        """Run a shell command inside namespace C{role}; its CompletedProcess."""
        result = subprocess.run(["ip", "netns", "exec", self.name(role), "sh", "-c", command],
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"[{role}] {command!r} failed ({result.returncode}): "
                                 f"{result.stdout}{result.stderr}")
        return result

    def spawn(self, role, argv, **kw):
        """Start a process inside C{role}; it is killed at cleanup."""
        p = subprocess.Popen(["ip", "netns", "exec", self.name(role)] + list(argv),
                             start_new_session=True, **kw)

        def kill():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        self.testcase.addCleanup(kill)
        return p

    def capture(self, role, interface, path):
        """
        Start tcpdump on C{interface}, writing C{path}; returns a function
        C{stop(expect=0)} that waits (a bounded time) for C{expect} packets,
        stops the capture and returns the tshark decoding of it as lines
        of "ipv6.nxt<TAB>ipv6.src<TAB>ipv6.dst<TAB>ipv6.routing.type" per
        ICMPv6 echo request or reply.
        """
        if shutil.which("tcpdump") is None or shutil.which("tshark") is None:
            raise SkipTest("needs tcpdump and tshark to check the packets on the wire")
        p = self.spawn(role, ["tcpdump", "-i", interface, "-nn", "-U", "-w", path, "ip6"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        line = p.stderr.readline()  # "listening on ..." once the capture runs
        if b"listening" not in line:
            raise AssertionError(f"tcpdump did not start: {line!r}")

        def decode():
            out = subprocess.run(
                ["tshark", "-r", path, "-Y", "icmpv6.type == 128 or icmpv6.type == 129",
                 "-T", "fields", "-e", "ipv6.nxt",
                 "-e", "ipv6.src", "-e", "ipv6.dst", "-e", "ipv6.routing.type"],
                capture_output=True, text=True, timeout=60)
            return [line for line in out.stdout.splitlines() if line.strip()]

        def stop(expect=0, wait=15.0):
            # tcpdump may lag behind on a slow machine (kernel-lab emulates
            # the CPU): wait until the expected packets are in the file.
            deadline = time.monotonic() + wait
            time.sleep(0.2)
            while len(decode()) < expect and time.monotonic() < deadline:
                time.sleep(0.3)
            os.killpg(p.pid, signal.SIGINT)
            p.wait(timeout=10)
            return decode()
        return stop

    def inNetns(self, role, f, *args):
        """
        C{f(*args)} on a short-lived thread that has entered namespace
        C{role}: sockets and TUN devices it opens belong to that namespace.
        """
        result = {}

        def body():
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{self.name(role)}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    e = ctypes.get_errno()
                    raise OSError(e, os.strerror(e))
            finally:
                os.close(fd)
            try:
                result["value"] = f(*args)
            except BaseException as e:
                result["error"] = e
        t = threading.Thread(target=body)
        t.start()
        t.join()
        if "error" in result:
            raise result["error"]
        return result["value"]
