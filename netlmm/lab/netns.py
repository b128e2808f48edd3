"""
Network namespaces for tests, demos and benchmarks (root only): namespaces,
veth links, bridges, addresses, processes started inside them, and their
removal, also when something fails half-way.
"""

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from ipaddress import IPv6Address

from unittest import SkipTest

from netlmm.lab import kernel
from netlmm.lab.capture import Capture

CLONE_NEWNET = 0x40000000

#: sysctls of a host running the stock Linux IPv6 stack as a mobile: router
#: advertisements and SLAAC with EUI-64 addresses, DAD on, quick solicitations.
MOBILE_SYSCTLS = ("net.ipv6.conf.default.accept_ra=1",
                  "net.ipv6.conf.default.autoconf=1",
                  "net.ipv6.conf.default.addr_gen_mode=0",
                  "net.ipv6.conf.default.router_solicitation_delay=0",
                  "net.ipv6.conf.default.router_solicitation_interval=1",
                  "net.ipv6.conf.default.dad_transmits=1")


class CommandFailed(Exception):
    """A command failed; the text has the command and its output."""


def run(*argv, check=True, timeout=20, input=None):
    """Run a command; raise L{CommandFailed} with its output on failure."""
    try:
        p = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                           timeout=timeout * kernel.timeScale(), input=input)
    except subprocess.TimeoutExpired as e:
        raise CommandFailed(f"{' '.join(map(str, argv))}: no exit after {e.timeout:.0f} s")
    if check and p.returncode:
        raise CommandFailed(f"{' '.join(map(str, argv))}: exit {p.returncode}: "
                            f"{(p.stderr or p.stdout).strip()}")
    return p


def codeEnvironment():
    """
    The environment for child processes, with PYTHONPATH leading to the
    netlmm this process runs, so daemons run the same code as their caller.
    """
    import netlmm
    env = dict(os.environ)
    here = os.path.dirname(os.path.dirname(os.path.abspath(netlmm.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [here, env.get("PYTHONPATH")]))
    return env


def eui64(prefix, mac):
    """The SLAAC (EUI-64) address a host with C{mac} forms in the /64 C{prefix}."""
    octets = bytes(int(x, 16) for x in mac.split(":"))
    iid = bytes([octets[0] ^ 0x02]) + octets[1:3] + b"\xff\xfe" + octets[3:]
    base = int(IPv6Address(str(prefix).split("/")[0]))
    return IPv6Address(base | int.from_bytes(iid, "big"))


class Lab:
    """
    The namespaces, links and processes of one test (or one demo run).

    Every namespace is named C{<prefix>-<node>}; the prefix carries the
    process id and a counter, so parallel runs and several labs in one
    process do not collide. With a C{testCase}, the test skips (with the
    reason) where namespaces or a kernel capability in C{needs} are missing
    (see L{netlmm.lab.kernel.require}), and L{destroy} runs at its cleanup;
    without one, use the lab as a context manager or call L{destroy}.
    """

    _counter = 0

    def __init__(self, testCase=None, prefix=None, needs=()):
        if testCase is not None:
            kernel.require(testCase, *needs, root=True)
        else:
            reason = kernel.needsRoot() or next(
                filter(None, (kernel.missing(c) for c in needs)), None)
            if reason:
                raise CommandFailed(reason)
        Lab._counter += 1
        self.prefix = prefix or f"nl{os.getpid()}x{Lab._counter}"
        self.namespaces = []
        self.processes = []
        self._cleanups = []
        self._ports = 0
        self._atDestroy = []
        if testCase is not None:
            testCase.addCleanup(self.destroy)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.destroy()

    def addCleanup(self, f, *args):
        """Call C{f(*args)} in L{destroy}, after the processes stopped (last added, first)."""
        self._cleanups.append((f, args))

    def ns(self, node):
        """The namespace name of C{node}."""
        return f"{self.prefix}-{node}"

    # ---------------------------------------------------------------- building

    def add(self, node, router=False, dad=False, sysctls=()):
        """
        Make namespace C{node} with loopback up; C{router}: IPv6 forwarding on;
        C{dad}: keep duplicate address detection (off by default, set before
        any link exists, so test addresses are usable at once).
        """
        name = self.ns(node)
        run("ip", "netns", "add", name)
        self.namespaces.append(name)
        self.exec(node, "ip", "link", "set", "lo", "up")
        settings = [] if dad else ["net.ipv6.conf.default.accept_dad=0",
                                   "net.ipv6.conf.all.accept_dad=0"]
        if router:
            settings.append("net.ipv6.conf.all.forwarding=1")
        self.sysctl(node, *settings, *sysctls)
        return name

    def mobile(self, node, *sysctls):
        """A namespace for a mobile: the stock IPv6 host stack (L{MOBILE_SYSCTLS})."""
        return self.add(node, dad=True, sysctls=MOBILE_SYSCTLS + tuple(sysctls))

    def sysctl(self, node, *settings):
        """Set sysctls (C{"name=value"}) in C{node}."""
        if settings:
            self.exec(node, "sysctl", "-qw", *settings)

    def link(self, a, ifa, b, ifb, mtu=None, mac=None, master=None):
        """
        A veth pair, both ends up: C{ifa} in C{a} (with MAC C{mac} if given),
        C{ifb} in C{b} (a port of C{b}'s bridge C{master} if given).
        """
        run("ip", "link", "add", ifa, "netns", self.ns(a), "type", "veth",
            "peer", "name", ifb, "netns", self.ns(b))
        if mac:
            self.exec(a, "ip", "link", "set", ifa, "address", mac)
        if master:
            self.exec(b, "ip", "link", "set", ifb, "master", master)
        for node, name in ((a, ifa), (b, ifb)):
            if mtu:
                self.exec(node, "ip", "link", "set", name, "mtu", str(mtu))
            self.exec(node, "ip", "link", "set", name, "up")

    def plug(self, node, bridgeNode, bridge="acc0", ifname="eth0", mac=None):
        """
        Plug C{node} into C{bridgeNode}'s C{bridge} (a MAG's access link): a
        veth whose end in C{node} is C{ifname} (with C{mac}), and whose other
        end is a new port of the bridge; returns that port's name. L{unlink}
        the port to take the link away again.
        """
        self._ports += 1
        port = f"port{self._ports}"
        self.link(node, ifname, bridgeNode, port, mac=mac, master=bridge)
        return port

    def unlink(self, node, ifname):
        """Delete a link (and so its veth peer); nothing if it is gone."""
        self.exec(node, "ip", "link", "del", ifname, check=False)

    def bridge(self, node, name, mac=None):
        """A bridge C{name} in C{node}, up."""
        self.exec(node, "ip", "link", "add", name, "type", "bridge")
        if mac:
            self.exec(node, "ip", "link", "set", name, "address", mac)
        self.exec(node, "ip", "link", "set", name, "up")

    def addr(self, node, dev, address):
        """Add C{address} (with its prefix length) to C{dev}, without DAD."""
        self.exec(node, "ip", "addr", "add", str(address), "dev", dev, "nodad")

    def addresses(self, node, dev, scope="global", usable=True):
        """
        The IPv6 addresses of C{dev} in C{scope}; with C{usable}, only those
        neither tentative nor failed by DAD.
        """
        out = self.exec(node, "ip", "-6", "-o", "addr", "show", "dev", dev, "scope", scope,
                        check=False).stdout
        found = []
        for line in out.splitlines():
            words = line.split()
            if "inet6" not in words:
                continue
            if usable and {"tentative", "dadfailed"} & set(words):
                continue
            found.append(IPv6Address(words[words.index("inet6") + 1].split("/")[0]))
        return found

    # ---------------------------------------------------------------- running

    def exec(self, node, *argv, check=True, timeout=20, input=None):
        """Run a command in C{node}; its CompletedProcess (L{CommandFailed} on failure)."""
        return run("ip", "netns", "exec", self.ns(node), *argv, check=check,
                   timeout=timeout, input=input)

    def sh(self, node, command, check=True, timeout=20):
        """Run a shell command line in C{node}."""
        return self.exec(node, "sh", "-c", command, check=check, timeout=timeout)

    def start(self, node, argv, log=None, **popen):
        """
        Start a long-running process in C{node}, in a session of its own;
        its output goes to the file C{log} (if given). L{destroy} stops it.
        """
        logFile = None
        if log is not None:
            logFile = open(log, "w")
            popen.setdefault("stdout", logFile)
            popen.setdefault("stderr", subprocess.STDOUT)
        popen.setdefault("env", codeEnvironment())
        p = subprocess.Popen(["ip", "netns", "exec", self.ns(node)] + [str(a) for a in argv],
                             start_new_session=True, **popen)
        self.processes.append((p, logFile))
        return p

    def twistd(self, node, role, config, log):
        """
        Start `twistd -n netlmm-ROLE --config CONFIG` in C{node}, logging at
        debug level (each binding's events, which tests look for).
        """
        return self.start(node, [sys.executable, "-c",
                                 "from twisted.scripts.twistd import run; run()",
                                 "-n", "--pidfile=", f"netlmm-{role}", "--config",
                                 str(config), "--log-level", "debug"], log)

    def stop(self, process, sig=signal.SIGTERM, timeout=5.0):
        """Stop one process started here: C{sig}, then SIGKILL after C{timeout} s."""
        for entry in [e for e in self.processes if e[0] is process]:
            self.processes.remove(entry)
            self._stop([entry], sig, timeout)

    @staticmethod
    def _stop(entries, sig, timeout):
        for p, _ in entries:
            if p.poll() is None:
                _signal(p, sig)
        deadline = time.monotonic() + timeout * kernel.timeScale()
        for p, logFile in entries:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal(p, signal.SIGKILL)
                p.wait()
            if logFile is not None:
                logFile.close()

    def tcp(self, server, client, address, size=200000, port=5999, timeout=20):
        """
        A TCP connection from C{client} to C{address} (in C{server}) that
        carries C{size} octets, which the server echoes back; returns the
        number of octets the client got back (C{size} when all went well).
        """
        serve = ("import socket; s = socket.socket(socket.AF_INET6); "
                 "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
                 f"s.bind(('::', {port})); s.listen(1); s.settimeout({timeout}); "
                 "c, _ = s.accept(); c.settimeout(10)\n"
                 "while True:\n d = c.recv(65536)\n if not d: break\n c.sendall(d)\n"
                 "c.close()")
        talk = ("import socket, sys; "
                f"c = socket.create_connection(('{address}', {port}), timeout=10); "
                f"c.sendall(bytes({size})); c.shutdown(socket.SHUT_WR); n = 0\n"
                "while True:\n d = c.recv(65536)\n if not d: break\n n += len(d)\n"
                "print(n)")
        listener = self.start(server, [sys.executable, "-c", serve],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            # Wait until it listens: /proc/net/tcp6 shows ports as 4 hex digits.
            deadline = time.monotonic() + 10 * kernel.timeScale()
            while (f":{port:04X} " not in self.exec(server, "cat", "/proc/net/tcp6").stdout
                   and time.monotonic() < deadline):
                time.sleep(0.05)
            return int(self.exec(client, sys.executable, "-c", talk,
                                 timeout=timeout).stdout.strip() or 0)
        finally:
            self.stop(listener)

    def capture(self, node, interface, path, filter="ip6"):
        """Start capturing C{interface} of C{node} into C{path}: a running L{Capture}."""
        return Capture(self, node, interface, path, filter).start()

    def netlink(self, node):
        """A factory of pyroute2 IPRoute objects working in C{node}."""
        def factory():
            from pyroute2 import IPRoute
            return IPRoute(netns=self.ns(node))
        return factory

    def inNetns(self, node, f, *args):
        """
        C{f(*args)} on a short-lived thread that has entered namespace
        C{node}: sockets and TUN devices it opens belong to that namespace.
        """
        result = {}

        def body():
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{self.ns(node)}", os.O_RDONLY)
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

    def build(self):
        """
        Make the lab's namespaces, links, addresses and routes with
        C{self._build()} (nothing running yet); everything made is removed
        again if it fails. Returns the lab.
        """
        try:
            self._build()
        except BaseException:
            self.destroy()
            raise
        return self

    def _build(self):
        """What L{build} makes: a subclass's topology (nothing here)."""

    def atDestroy(self, f):
        """Call C{f()} in L{destroy}, after the processes stop and the namespaces go."""
        self._atDestroy.append(f)

    def destroy(self):
        """
        Stop every process started here (SIGTERM, SIGKILL after 5 s), run
        the cleanups added with L{addCleanup}, and delete every namespace
        made here; safe to call more than once and after a partial failure.
        """
        entries, self.processes = list(reversed(self.processes)), []
        self._stop(entries, signal.SIGTERM, 5.0)
        while self._cleanups:
            f, args = self._cleanups.pop()
            f(*args)
        for name in reversed(self.namespaces):
            run("ip", "netns", "del", name, check=False)
        self.namespaces = []
        calls, self._atDestroy = self._atDestroy, []
        for f in reversed(calls):
            f()


class Mobile:
    """
    A host in namespace C{node} of a L{Lab} that moves between access links
    (bridges in MAG namespaces), keeping its interface name and MAC: each
    attachment is a new veth, so the MAG sees a new bridge port.
    """

    def __init__(self, lab, node, mac, ifname="eth0"):
        self.lab = lab
        self.node = node
        self.mac = mac
        self.ifname = ifname
        #: (MAG node, bridge port) while attached, else None
        self.at = None

    def attach(self, mag, bridge="acc0"):
        """Link up into C{mag}'s C{bridge}."""
        if self.at is not None:
            raise RuntimeError(f"{self.node} is still attached to {self.at[0]}")
        self.at = (mag, self.lab.plug(self.node, mag, bridge, self.ifname, self.mac))

    def detach(self):
        """Take the link away (the MAG sees its bridge port vanish); nothing if detached."""
        if self.at is not None:
            (mag, port), self.at = self.at, None
            self.lab.unlink(mag, port)

    def addresses(self, usable=True):
        """The global IPv6 addresses (see L{Lab.addresses})."""
        return self.lab.addresses(self.node, self.ifname, usable=usable)

    def address(self):
        """The first usable global address, or None."""
        found = self.addresses()
        return found[0] if found else None


def readText(path):
    """The text of the file at C{path}, or '' when there is none (yet)."""
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def _signal(process, sig):
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def which(program):
    """The path of C{program} on PATH or in /usr/sbin, /sbin; or None."""
    for path in (None, "/usr/sbin", "/sbin"):
        found = shutil.which(program, path=path)
        if found:
            return found
    return None


def skipUnlessTools(*tools):
    """Raise SkipTest naming the first C{(program, Debian package)} not installed."""
    for program, package in tools:
        if which(program) is None:
            raise SkipTest(f"{program} is not installed (apt-get install {package})")
