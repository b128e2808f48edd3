"""
A local mobility domain in network namespaces, for end-to-end tests,
`netlmm demo --netns` and the benchmarks (root only).

    CN --- LMA --- MAG1 ==acc0== (MN)
            | \\--- MAG2 ==acc0==
           PMIP

Every node is a namespace named ``<prefix>-<node>``; the MN runs the stock
Linux IPv6 stack (accept_ra, SLAAC with EUI-64 addresses, DAD on) and is
attached to a MAG by a veth pair whose MAG end is a port of that MAG's access
bridge ``acc0``. A handoff deletes that veth and creates a new one, with the
same MAC, into the other MAG's bridge.

Everything created is recorded and removed by L{Topology.destroy}, which is
safe to call more than once and after partial failures.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from ipaddress import IPv6Address

HOME_PREFIX = "2001:db8:1::/64"
LMA_ADDRESS = "2001:db8:ffff::1"
PMIP_ADDRESS = "2001:db8:b::2"
CN_ADDRESS = "2001:db8:c::2"
MAG_ADDRESSES = ("2001:db8:ffff::11", "2001:db8:ffff::12")
MN_MAC = "02:00:00:00:aa:01"
TRANSPORT_MTU = 1600


class CommandFailed(Exception):
    """A setup command failed; the text has the command and its output."""


def canRun():
    """None when namespaces can be built here, else the reason why not."""
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs these tests as root)"
    if shutil.which("ip") is None:
        return "iproute2 ('ip') is not installed"
    return None


def run(*args, check=True, timeout=20, input=None):
    """Run a command; raise L{CommandFailed} with its output on failure."""
    p = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                       input=input)
    if check and p.returncode:
        raise CommandFailed(f"{' '.join(args)}: exit {p.returncode}: "
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
    """The SLAAC (EUI-64) address a host with C{mac} forms in a /64."""
    octets = [int(x, 16) for x in mac.split(":")]
    octets[0] ^= 0x02
    iid = octets[:3] + [0xFF, 0xFE] + octets[3:]
    base = int(IPv6Address(prefix.split("/")[0]))
    return IPv6Address(base | int.from_bytes(bytes(iid), "big"))


class Topology:
    """
    The namespaces, links and addresses of a test domain.

    @param prefix: the namespaces' name prefix; unique per test run.
    """

    def __init__(self, prefix=None):
        self.prefix = prefix or f"nl{os.getpid() % 100000}"
        self.namespaces = []
        self.processes = []
        self.mnAt = None
        self._mnLinks = 0

    def ns(self, node):
        """The namespace name of C{node}."""
        return f"{self.prefix}-{node}"

    def exec(self, node, *args, **kw):
        """Run a command inside C{node}'s namespace."""
        return run("ip", "netns", "exec", self.ns(node), *args, **kw)

    def _sysctl(self, node, *settings):
        for s in settings:
            self.exec(node, "sysctl", "-qw", s)

    def _addNamespace(self, node, router):
        name = self.ns(node)
        run("ip", "netns", "add", name)
        self.namespaces.append(name)
        self.exec(node, "ip", "link", "set", "lo", "up")
        if router:
            self._sysctl(node, "net.ipv6.conf.default.accept_dad=0",
                         "net.ipv6.conf.all.accept_dad=0",
                         "net.ipv6.conf.all.forwarding=1")

    def _link(self, a, aName, b, bName, mtu=TRANSPORT_MTU):
        tmpA, tmpB = f"{self.prefix}{aName}"[:15], f"{self.prefix}{bName}x"[:15]
        run("ip", "link", "add", tmpA, "type", "veth", "peer", "name", tmpB)
        run("ip", "link", "set", tmpA, "netns", self.ns(a))
        run("ip", "link", "set", tmpB, "netns", self.ns(b))
        self.exec(a, "ip", "link", "set", tmpA, "name", aName)
        self.exec(b, "ip", "link", "set", tmpB, "name", bName)
        for node, name in ((a, aName), (b, bName)):
            self.exec(node, "ip", "link", "set", name, "mtu", str(mtu), "up")

    def _addr(self, node, dev, address):
        self.exec(node, "ip", "-6", "addr", "add", address, "dev", dev, "nodad")

    def build(self):
        """Create the namespaces, links, addresses and routes."""
        try:
            self._build()
        except BaseException:
            self.destroy()
            raise
        return self

    def _build(self):
        for node in ("cn", "lma", "pmip", "mag1", "mag2"):
            self._addNamespace(node, router=node != "cn")
        self._sysctl("cn", "net.ipv6.conf.default.accept_dad=0",
                     "net.ipv6.conf.all.accept_dad=0")
        # CN <-> LMA
        self._link("cn", "eth0", "lma", "cn0")
        self._addr("cn", "eth0", f"{CN_ADDRESS}/64")
        self._addr("lma", "cn0", "2001:db8:c::1/64")
        self.exec("cn", "ip", "-6", "route", "add", "default", "via", "2001:db8:c::1")
        # PMIP <-> LMA
        self._link("pmip", "eth0", "lma", "pm0")
        self._addr("pmip", "eth0", f"{PMIP_ADDRESS}/64")
        self._addr("lma", "pm0", "2001:db8:b::1/64")
        self.exec("pmip", "ip", "-6", "route", "add", "default", "via", "2001:db8:b::1")
        self._addr("lma", "lo", f"{LMA_ADDRESS}/128")
        # MAGs <-> LMA; each MAG has a /128 loopback address (its pCoA)
        for i, mag in enumerate(("mag1", "mag2")):
            net = f"2001:db8:a{i + 1}::"
            self._link(mag, "core0", "lma", f"m{i + 1}")
            self._addr(mag, "core0", f"{net}2/64")
            self._addr("lma", f"m{i + 1}", f"{net}1/64")
            self._addr(mag, "lo", f"{MAG_ADDRESSES[i]}/128")
            self.exec(mag, "ip", "-6", "route", "add", "default", "via", f"{net}1")
            self.exec("lma", "ip", "-6", "route", "add", f"{MAG_ADDRESSES[i]}/128",
                      "via", f"{net}2")
            # The access link: a bridge that mobiles' veths join.
            self.exec(mag, "ip", "link", "add", "acc0", "type", "bridge")
            self.exec(mag, "ip", "link", "set", "acc0", "address",
                      f"02:00:00:00:0{i + 1}:01", "up")
        self._addNamespace("mn", router=False)
        self._sysctl("mn", "net.ipv6.conf.default.accept_ra=1",
                     "net.ipv6.conf.default.autoconf=1",
                     "net.ipv6.conf.default.addr_gen_mode=0",
                     "net.ipv6.conf.default.router_solicitation_delay=0",
                     "net.ipv6.conf.default.router_solicitation_interval=1",
                     "net.ipv6.conf.default.dad_transmits=1")

    def attachMn(self, mag):
        """Give the MN a link into C{mag}'s access bridge (same MAC each time)."""
        if self.mnAt is not None:
            raise RuntimeError(f"the MN is still attached to {self.mnAt}")
        self._mnLinks += 1
        port = f"mn{self._mnLinks}"
        tmp = f"{self.prefix}t{self._mnLinks}"[:15]
        run("ip", "link", "add", tmp, "type", "veth", "peer", "name", f"{tmp}p"[:15])
        run("ip", "link", "set", tmp, "netns", self.ns("mn"))
        run("ip", "link", "set", f"{tmp}p"[:15], "netns", self.ns(mag))
        self.exec(mag, "ip", "link", "set", f"{tmp}p"[:15], "name", port)
        self.exec(mag, "ip", "link", "set", port, "master", "acc0", "up")
        self.exec("mn", "ip", "link", "set", tmp, "name", "eth0")
        self.exec("mn", "ip", "link", "set", "eth0", "address", MN_MAC)
        self.exec("mn", "ip", "link", "set", "eth0", "up")
        self.mnAt = (mag, port)

    def detachMn(self):
        """Take the MN's link away (the MAG side sees its bridge port vanish)."""
        if self.mnAt is None:
            return
        mag, port = self.mnAt
        self.mnAt = None
        self.exec(mag, "ip", "link", "del", port, check=False)

    def mnAddress(self):
        """The MN's global address (the pHoA), or None."""
        out = self.exec("mn", "ip", "-6", "-o", "addr", "show", "dev", "eth0",
                        "scope", "global", check=False).stdout
        for line in out.splitlines():
            words = line.split()
            if "inet6" in words and "tentative" not in words:
                return IPv6Address(words[words.index("inet6") + 1].split("/")[0])
        return None

    def start(self, node, args, log):
        """Start a long-running process in C{node}; it is killed by destroy()."""
        f = open(log, "w")
        p = subprocess.Popen(["ip", "netns", "exec", self.ns(node)] + list(args),
                             stdout=f, stderr=subprocess.STDOUT, env=codeEnvironment())
        self.processes.append((p, f))
        return p

    def twistd(self, node, role, config, log):
        """Start `twistd -n netlmm-ROLE --config CONFIG` in C{node}."""
        return self.start(node, [sys.executable, "-c",
                                 "from twisted.scripts.twistd import run; run()",
                                 "-n", "--pidfile=", f"netlmm-{role}", "--config",
                                 str(config)], log)

    def destroy(self):
        """Stop every process and remove every namespace this made."""
        for p, f in reversed(self.processes):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for p, f in self.processes:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            f.close()
        self.processes = []
        for name in reversed(self.namespaces):
            run("ip", "netns", "del", name, check=False)
        self.namespaces = []


_LMA_TOML = """[lma]
listen = "[{lma}]:5436"
home_prefix = "{prefix}"
max_lifetime = 3600
allowed_clients = ["{pmip}"]
[lma.dataplane]
{lmaPlane}
{lmaExtra}"""

_PMIP_TOML = """[pmip]
listen = "[{pmip}]:5437"
lma = "[{lma}]:5436"
mh_bind = "[{pmip}]:0"
lifetime = 3600
allowed_mags = ["2001:db8:a1::/64", "2001:db8:a2::/64", "2001:db8:ffff::/64"]
detach_delay = {detachDelay}
"""

_MAG_TOML = """[mag]
name = "{name}"
address = "{address}"
lma_address = "{lma}"
pmip = "[{pmip}]:5437"
[mag.access]
interface = "acc0"
prefix = "{prefix}"
ra_interval_max = 10
{accessExtra}[mag.attachment]
detector = "rs"
idle_timeout = 0
[mag.assignment]
{assignment}
[mag.dataplane]
{magPlane}
"""


def _plane(kind, role, address, core):
    lines = [f'kind = "{kind}"', f'address = "{address}"']
    if kind in ("seg6", "ip6tnl"):
        lines.append(f'interface = "{core}"')
    if role == "mag":
        lines.append('access_interface = "acc0"')
    return "\n".join(lines)


class NetnsDomain:
    """
    L{Topology} plus the real daemons (`twistd -n netlmm-...`) in it, with
    generated configs: SLAAC mobiles detected by their Router Solicitations,
    and the chosen data plane (C{"seg6"} or C{"userspace"}).
    """

    def __init__(self, workdir, dataplane="seg6", prefix=None, detachDelay=5.0,
                 assignment='strategy = "slaac"', accessExtra="", lmaExtra=""):
        # assignment: the [mag.assignment] table's body (TOML lines);
        # accessExtra: more [mag.access] lines (each ending in a newline);
        # lmaExtra: more LMA config (whole tables, e.g. [lma.pool]).
        self.lmaExtra = lmaExtra
        self.assignment = assignment
        self.accessExtra = accessExtra
        self.workdir = str(workdir)
        self.dataplane = dataplane
        self.detachDelay = detachDelay
        self.topology = Topology(prefix)
        self.daemons = []

    def path(self, name):
        """A file in the work directory."""
        return os.path.join(self.workdir, name)

    def log(self, role):
        """What a daemon has logged so far."""
        try:
            with open(self.path(f"{role}.log")) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def waitFor(self, predicate, what, timeout=20.0):
        """Poll C{predicate} until true; raise with the logs after C{timeout}."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            for p in self.daemons:
                if p.poll() is not None:
                    raise CommandFailed(f"a daemon exited (status {p.returncode}) while "
                                        f"waiting for {what}\n" + self.logs())
            time.sleep(0.05)
        raise CommandFailed(f"timed out after {timeout} s waiting for {what}\n" + self.logs())

    def logs(self):
        """All daemon logs, for failure messages."""
        return "\n".join(f"--- {role}.log\n{self.log(role)[-4000:]}"
                         for role in ("lma", "pmip", "mag1", "mag2"))

    def start(self):
        """Build the namespaces and start the LMA, PMIP client and both MAGs."""
        os.makedirs(self.workdir, exist_ok=True)
        common = dict(lma=LMA_ADDRESS, pmip=PMIP_ADDRESS, prefix=HOME_PREFIX,
                      detachDelay=self.detachDelay)
        files = {
            "lma.toml": _LMA_TOML.format(lmaPlane=_plane(self.dataplane, "lma",
                                                          LMA_ADDRESS, "m1"),
                                         lmaExtra=self.lmaExtra, **common),
            "pmip.toml": _PMIP_TOML.format(**common),
        }
        for i in (1, 2):
            files[f"mag{i}.toml"] = _MAG_TOML.format(
                name=f"MAG{i}", address=MAG_ADDRESSES[i - 1],
                magPlane=_plane(self.dataplane, "mag", MAG_ADDRESSES[i - 1], "core0"),
                assignment=self.assignment, accessExtra=self.accessExtra, **common)
        for name, text in files.items():
            with open(self.path(name), "w") as f:
                f.write(text)
        self.topology.build()
        try:
            t = self.topology
            self.daemons.append(t.twistd("lma", "lma", self.path("lma.toml"),
                                         self.path("lma.log")))
            self.waitFor(lambda: "LMA listening" in self.log("lma"), "the LMA")
            self.daemons.append(t.twistd("pmip", "pmip", self.path("pmip.toml"),
                                         self.path("pmip.log")))
            self.waitFor(lambda: "MAGs connect to" in self.log("pmip"), "the PMIP client")
            for i in (1, 2):
                self.daemons.append(t.twistd(f"mag{i}", "mag", self.path(f"mag{i}.toml"),
                                             self.path(f"mag{i}.log")))
            for i in (1, 2):
                self.waitFor(lambda i=i: "connected to PMIP client" in self.log(f"mag{i}"),
                             f"MAG{i}")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        """Stop the daemons and remove the namespaces."""
        self.topology.destroy()

    # ------------------------------------------------------------ scenario steps

    def ping(self, node, target, count=3, interval=0.2):
        """`ping` from C{node}; the completed process."""
        return self.topology.exec(node, "ping", "-c", str(count), "-i", str(interval),
                                  "-W", "2", str(target), check=False)

    def attach(self, mag, timeout=20.0):
        """
        Bring the MN's link up at C{mag} and wait until it has its SLAAC
        address and the LMA binds it there; returns the address.
        """
        pcoa = MAG_ADDRESSES[int(mag[-1]) - 1]
        before = self._bindingsVia(pcoa)
        self.topology.attachMn(mag)
        self.waitFor(lambda: self.topology.mnAddress() is not None,
                     "the MN's SLAAC address", timeout)
        self.waitFor(lambda: self._bindingsVia(pcoa) > before,
                     f"the LMA's binding via {mag}", timeout)
        return self.topology.mnAddress()

    def _bindingsVia(self, pcoa):
        log = self.log("lma")
        return len(re.findall(rf"(new binding \S+|moves \S+) -> {re.escape(pcoa)}\b", log))

    def handoff(self, mag, flowInterval=0.01, timeout=20.0):
        """
        Move the MN to C{mag} (link down at the old MAG, up at the new one,
        same MAC) while the CN pings the MN's address every C{flowInterval}
        seconds; returns dict(interruption=seconds, lost=packets, sent=packets).
        """
        phoa = self.topology.mnAddress()
        flowLog = self.path(f"flow-{time.time():.0f}-{mag}.log")
        flow = self.topology.start("cn", ["ping", "-D", "-i", str(flowInterval), "-W", "1",
                                          str(phoa)], flowLog)
        self.waitFor(lambda: len(parsePing(_read(flowLog))[2]) >= 20,
                     "the flow before the handoff", 10)
        started = time.time()
        self.topology.detachMn()
        self.attach(mag, timeout)
        moved = time.time()
        self.waitFor(lambda: any(s > moved for s in parsePing(_read(flowLog))[2]),
                     f"the flow to resume through {mag}", timeout)
        time.sleep(0.5)
        flow.send_signal(signal.SIGINT)
        flow.wait(timeout=10)
        sent, got, stamps = parsePing(_read(flowLog))
        gaps = [b - a for a, b in zip(stamps, stamps[1:]) if b > started]
        return dict(interruption=max(gaps), lost=sent - got, sent=sent)

    def detach(self, timeout=20.0):
        """Take the MN's link away and wait for the deregistration."""
        phoa = self.topology.mnAddress()
        before = self.log("lma").count("deregistered")
        self.topology.detachMn()
        self.waitFor(lambda: self.log("lma").count("deregistered") > before,
                     f"the deregistration of {phoa}", timeout)


def _read(path):
    with open(path) as f:
        return f.read()


def parsePing(text):
    """(transmitted, received, reply timestamps) from `ping -D` output."""
    stamps = [float(m) for m in re.findall(r"^\[(\d+\.\d+)\] \d+ bytes from", text, re.M)]
    m = re.search(r"(\d+) packets transmitted, (\d+) received", text)
    sent, got = (int(m.group(1)), int(m.group(2))) if m else (0, len(stamps))
    return sent, got, stamps
