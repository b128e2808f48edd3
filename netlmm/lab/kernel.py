"""
What this kernel can do, and a way to run tests under one that can.

The machines that build and test netlmm run kernels without some features the
tests need (seg6 lightweight tunnels, ip6tnl, SCTP, kernel IPsec,
mac80211_hwsim...). A test names what it needs with L{require}; where the
kernel lacks it the test skips with the reason, and, when the environment
variable C{NETLMM_LAB_KERNEL_SKIPS} names a file, its id is appended there.
`./dev test` then runs exactly those tests again under
C{../shared/tools/kernel-lab} (Debian's stock kernel in qemu) with
L{kernelLabCommand}, and adds their results to its final count.

Under kernel-lab the CPU is about 16 times slower: L{timeScale} says by how
much to stretch a test's timing bounds (1 on a real machine).
"""

import os
import platform
import shutil
import subprocess
import sys
from unittest import SkipTest

#: Set by `./dev test` on the host run: a file collecting "test id<TAB>capability".
SKIPS_ENV = "NETLMM_LAB_KERNEL_SKIPS"
#: Set by L{kernelLabCommand}: the slowdown of the emulated CPU.
SCALE_ENV = "NETLMM_LAB_TIME_SCALE"
#: How much slower kernel-lab's emulated CPU runs Python than the host (measured).
KERNEL_LAB_SCALE = 16


def timeScale():
    """
    The factor by which to stretch timing bounds: 1 normally, about 16 under
    kernel-lab, whose emulated CPU runs Python that much slower.
    """
    try:
        return max(1.0, float(os.environ.get(SCALE_ENV, "1")))
    except ValueError:
        return 1.0


def needsRoot():
    """None when this process may build namespaces, else the reason why not."""
    if os.geteuid() != 0:
        return "needs root for network namespaces (CI runs it as root)"
    if shutil.which("ip") is None:
        return "iproute2 ('ip') is not installed"
    return None


def _run(*argv):
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=30)


def _inScratchNamespace(*commands):
    """
    Run C{commands} (argv lists, 'ip -n NS' prefixed) in a namespace made for
    the probe; the stderr of the first failing one, or None.
    """
    name = f"nlprobe{os.getpid()}"
    made = _run("ip", "netns", "add", name)
    if made.returncode:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    try:
        for argv in (["link", "set", "lo", "up"],) + commands:
            result = _run("ip", "-n", name, *argv)
            if result.returncode:
                return result.stderr.strip() or f"exit status {result.returncode}"
        return None
    finally:
        _run("ip", "netns", "del", name)


def _seg6():
    error = _inScratchNamespace(
        ["-6", "route", "add", "2001:db8::/64", "encap", "seg6", "mode", "encap.red",
         "segs", "2001:db8::1", "dev", "lo"],
        ["-6", "route", "add", "2001:db8:1::/64", "encap", "seg6local", "action", "End.DX6",
         "nh6", "::", "dev", "lo"])
    return error and f"no seg6 lightweight tunnels (CONFIG_IPV6_SEG6_LWTUNNEL): {error}"


def _ip6tnl():
    error = _inScratchNamespace(["link", "add", "t0", "type", "ip6tnl", "mode", "ip6ip6",
                                 "local", "2001:db8::1", "remote", "2001:db8::2"])
    return error and f"no ip6tnl tunnels (ip6_tunnel module): {error}"


def _esp():
    key = "00112233445566778899aabbccddeeff"
    error = _inScratchNamespace(["xfrm", "state", "add", "src", "2001:db8::1", "dst",
                                 "2001:db8::2", "proto", "esp", "spi", "0x100", "mode",
                                 "transport", "enc", "cbc(aes)", "0x" + key,
                                 "auth-trunc", "hmac(sha256)", "0x" + key * 2, "128"])
    return error and f"no IPsec ESP for IPv6 (xfrm, esp6): {error}"


def _mip6():
    error = _inScratchNamespace(["xfrm", "state", "add", "src", "::", "dst", "::", "proto",
                                 "hao", "coa", "::", "mode", "ro"])
    return error and f"no Mobile IPv6 extension headers (CONFIG_IPV6_MIP6, mip6): {error}"


def _dummy():
    error = _inScratchNamespace(["link", "add", "d0", "type", "dummy"])
    return error and f"no dummy devices: {error}"


def _sctp():
    from netlmm.transport.sctp import sctpUnavailable
    reason = sctpUnavailable()
    return reason and reason.removeprefix("this kernel has ")


def _tun():
    try:
        os.close(os.open("/dev/net/tun", os.O_RDWR))
    except OSError as e:
        return f"no TUN devices (/dev/net/tun: {e.strerror})"
    return None


def _hwsim():
    if os.path.isdir("/sys/module/mac80211_hwsim"):
        return None
    # A dry run: finds the module without loading it (loading makes radios).
    result = _run("modprobe", "-n", "-q", "mac80211_hwsim") if shutil.which("modprobe") \
        else None
    if result is not None and result.returncode == 0:
        return None
    return "no simulated Wi-Fi radios (mac80211_hwsim module)"


#: capability -> (probe returning None or what is missing, needs root to probe)
CAPABILITIES = {
    "seg6": (_seg6, True),
    "ip6tnl": (_ip6tnl, True),
    "esp": (_esp, True),
    "mip6": (_mip6, True),
    "dummy": (_dummy, True),
    "sctp": (_sctp, False),
    "tun": (_tun, False),
    "mac80211_hwsim": (_hwsim, False),
}

_cache = {}


def missing(capability):
    """
    None when this kernel has C{capability} (a key of L{CAPABILITIES}), else
    a sentence saying what is missing. Probes run once per process, in a
    namespace of their own (root) so that the host is left as it was.
    """
    if capability not in CAPABILITIES:
        raise ValueError(f"unknown kernel capability {capability!r} "
                         f"(known: {', '.join(sorted(CAPABILITIES))})")
    if capability not in _cache:
        probe, root = CAPABILITIES[capability]
        reason = needsRoot() if root else None
        if reason:
            return f"cannot probe for {capability}: {reason}"
        _cache[capability] = probe()
    return _cache[capability]


def require(testCase, *capabilities, root=None):
    """
    Skip C{testCase} unless this process can build namespaces (when C{root},
    by default when any capability needs root to probe) and the kernel has
    every capability. A kernel that lacks one is recorded for `./dev test`
    (see L{SKIPS_ENV}), which runs the test again under kernel-lab.
    """
    if root is None:
        root = any(CAPABILITIES[c][1] for c in capabilities)
    if root:
        reason = needsRoot()
        if reason:
            raise SkipTest(reason)
    for capability in capabilities:
        reason = missing(capability)
        if reason:
            _record(testCase.id(), capability)
            hint = "" if SCALE_ENV in os.environ else "; ./dev test runs it under kernel-lab"
            raise SkipTest(f"this kernel ({platform.release()}) has {reason.rstrip('.')}{hint}")


def _record(testId, capability):
    path = os.environ.get(SKIPS_ENV)
    if path:
        with open(path, "a") as f:
            f.write(f"{testId}\t{capability}\n")


def sharedTool(name, env, start=None):
    """
    A tool of C{../shared/tools/}: $C{env} when set, else the first
    C{shared/tools/NAME} beside C{start} or one of its parents (by default:
    the current directory's, then this package's, as C{../shared} is beside a
    checkout and its venv); None when there is none.
    """
    if os.environ.get(env):
        path = os.environ[env]
        return os.path.abspath(path) if os.access(path, os.X_OK) else None
    starts = [start] if start else [os.getcwd(), os.path.dirname(os.path.abspath(__file__))]
    for directory in map(os.path.abspath, starts):
        while True:
            path = os.path.join(directory, "shared", "tools", name)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
            parent = os.path.dirname(directory)
            if parent == directory:
                break
            directory = parent
    return None


def kernelLabTool(start=None):
    """The kernel-lab script ($KERNEL_LAB, else ../shared/tools/kernel-lab), or None."""
    return sharedTool("kernel-lab", "KERNEL_LAB", start)


def runTimeout(count):
    """
    The seconds a kernel-lab run of C{count} tests gets: 10 minutes for the
    boot, then 5 a test at 1/16 speed, but at most 70: CI has 90 minutes for
    everything (setup, OPMIP's build, the host part), and a run stopped by its
    own timeout still leaves its output and `./dev test`'s final line.
    """
    return min(600 + 300 * count, 4200)


def kernelLabCommand(tests, timeout=None, tool=None, python=None):
    """
    The argv that runs the trial tests C{tests} under kernel-lab, with this
    Python (its venv must lie in the current directory or under /tmp, which
    the guest sees), timing bounds scaled by L{KERNEL_LAB_SCALE}, and trial's
    temporary files in the guest's /tmp. C{timeout} defaults to
    L{runTimeout} for as many tests as C{tests} names.
    """
    tool = tool or kernelLabTool()
    if tool is None:
        raise RuntimeError("kernel-lab not found: set KERNEL_LAB to its path")
    if timeout is None:
        timeout = runTimeout(len(tests))
    python = python or sys.executable
    return [tool, "run", "--timeout", str(int(timeout)), "-e",
            f"{SCALE_ENV}={KERNEL_LAB_SCALE}", "--", python, "-m", "twisted.trial",
            "--temp-directory=/tmp/_trial_kernel", *tests]


def holdKernelLabLock(path=None, say=print):
    """
    Wait for and take the machine-wide lock of kernel-lab runs (a file in
    kernel-lab's cache, or C{path}); returns the open descriptor, which keeps
    the lock until it is closed or the process (after an exec too) ends.
    Each emulated CPU wants the host's cores to itself: two runs at once
    make both several times slower than the L{KERNEL_LAB_SCALE} their
    timing bounds allow for, and no faster in total.
    """
    import fcntl
    if path is None:
        cache = os.environ.get("KERNEL_LAB_CACHE") or os.path.join(
            os.path.expanduser("~"), ".cache", "kernel-lab")
        os.makedirs(cache, exist_ok=True)
        path = os.path.join(cache, "netlmm-run.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        say(f"kernel-lab: waiting for another run to finish ({path})")
        fcntl.flock(fd, fcntl.LOCK_EX)
    os.set_inheritable(fd, True)
    return fd
