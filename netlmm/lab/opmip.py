"""
OPMIP, an independent RFC 5213 MAG and LMA (C++, GPLv2, built from source by
C{../shared/tools/opmip/opmip}), as a test peer in a lab's namespaces.

OPMIP reads one node database (JSON) naming the LMA, the MAGs and the mobiles;
its MAG takes attachments from a FIFO (the C{ctl} driver). It needs ip6_tunnel,
so tests with it need the C{ip6tnl} capability (kernel-lab on the build
machines). Its deviations from RFC 5213 are listed in the tool's README: the
RFC is the reference, never OPMIP.
"""

import errno
import json
import os
import shutil
import subprocess
import tempfile
import time
from unittest import SkipTest

from netlmm.lab.kernel import sharedTool, timeScale
from netlmm.lab.netns import CommandFailed, Lab, Mobile
from netlmm.lab.wait import waitFor


def tool(start=None):
    """The opmip script ($OPMIP_TOOL, else ../shared/tools/opmip/opmip), or None."""
    return sharedTool(os.path.join("opmip", "opmip"), "OPMIP_TOOL", start)


def binDirectory():
    """
    The directory of a current build of opmip-lma and opmip-mag; raises
    L{CommandFailed} saying why there is none.
    """
    script = tool()
    if script is None:
        raise CommandFailed("the opmip tool (../shared/tools/opmip/opmip) is not there")
    result = subprocess.run([script, "bin"], capture_output=True, text=True, timeout=60)
    if result.returncode:
        raise CommandFailed(result.stderr.strip() or f"'opmip bin' exited {result.returncode}")
    return result.stdout.strip()


def require(testCase):
    """Skip C{testCase} unless OPMIP is built (`./dev test` builds it as root)."""
    try:
        binDirectory()
    except CommandFailed as e:
        raise SkipTest(f"OPMIP is not available: {e}")


class NodeDatabase:
    """OPMIP's node database: router nodes (LMAs, MAGs) and mobile nodes."""

    def __init__(self):
        self.routers = []
        self.mobiles = []

    def router(self, id, address, scopeId=0):
        """An LMA (its address is the LMAA) or a MAG (its Proxy-CoA)."""
        self.routers.append({"id": id, "ip-address": str(address),
                             "ip-scope-id": str(scopeId)})

    def mobile(self, id, prefixes, macs, lma, homeAddress=None):
        """A mobile: its NAI, home network prefixes, MACs (the first is used), LMA id."""
        entry = {"id": id, "ip-prefix": [str(p) for p in prefixes],
                 "link-address": list(macs), "lma-id": lma}
        if homeAddress is not None:
            entry["home-address"] = str(homeAddress)
        self.mobiles.append(entry)

    def write(self, path):
        with open(path, "w") as f:
            json.dump({"router-nodes": self.routers, "mobile-nodes": self.mobiles}, f,
                      indent=1)
        return path


class _Daemon:
    """An OPMIP daemon in a lab namespace, logging to C{<directory>/<routerId>.log}."""

    program = None
    ready = None

    def __init__(self, lab, node, database, routerId, directory):
        self.lab = lab
        self.node = node
        self.database = database
        self.routerId = routerId
        self.logPath = os.path.join(directory, f"opmip-{routerId}.log")
        self.process = None

    def arguments(self):
        return []

    def start(self, timeout=20):
        """Start it and wait until it says it has started."""
        binary = os.path.join(binDirectory(), self.program)
        self.process = self.lab.start(self.node, [binary, "-i", self.routerId, "-d",
                                                  self.database] + self.arguments(),
                                      log=self.logPath)
        self.waitFor(self.ready, timeout)
        return self

    def log(self):
        """What it has logged so far."""
        try:
            with open(self.logPath) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def waitFor(self, text, timeout=20, count=1):
        """Wait until C{text} appears C{count} times in the log."""
        waitFor(lambda: self.log().count(text) >= count, f"{self.routerId}: {text!r}",
                timeout, alive=lambda: self.process.poll() is None,
                details=lambda: f"--- {self.logPath}\n{self.log()[-3000:]}")

    def stop(self):
        """Stop it (SIGTERM, SIGKILL after 5 s)."""
        if self.process is not None:
            self.lab.stop(self.process)
            self.process = None


class OpmipLma(_Daemon):
    """opmip-lma; C{-t 0}: no LMAA/64 on every tunnel (its default, 1, adds one)."""

    program = "opmip-lma"
    ready = "LMA: Started"

    def arguments(self):
        return ["-t", "0"]


class OpmipMag(_Daemon):
    """opmip-mag with the C{ctl} driver: L{attach} and L{detach} write to its FIFO."""

    program = "opmip-mag"
    ready = "MAG: Started"

    def __init__(self, lab, node, database, routerId, directory):
        super().__init__(lab, node, database, routerId, directory)
        # FIFOs do not work on 9p shares (kernel-lab's working directory): /tmp.
        self.fifoDirectory = tempfile.mkdtemp(prefix="opmip-ctl-")
        lab.addCleanup(shutil.rmtree, self.fifoDirectory, True)
        self.fifo = os.path.join(self.fifoDirectory, "mag.ctl")
        os.mkfifo(self.fifo)

    def arguments(self):
        return ["-e", "ctl", self.fifo]

    def command(self, line, timeout=5.0):
        """Write one line to the ctl FIFO, once the MAG has it open for reading."""
        deadline = time.monotonic() + timeout * timeScale()
        while True:
            try:
                fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError as e:
                # ENXIO: no reader yet (the driver reopens the FIFO after each writer).
                if e.errno != errno.ENXIO or time.monotonic() > deadline:
                    raise CommandFailed(f"{self.routerId}: cannot write {line!r} to "
                                        f"{self.fifo}: {e.strerror}")
                time.sleep(0.05)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    def attach(self, mnId, interface):
        """The mobile C{mnId} (a node database id) attached on access C{interface}."""
        self.command(f"attach {mnId} {interface}")

    def detach(self, mnId):
        self.command(f"detach {mnId}")


#: The interop domain's numbers (documentation prefixes).
LMA_ADDRESS = "2001:db8:f::1"
MAG_ADDRESSES = ("2001:db8:f::2", "2001:db8:f::3")
CN_ADDRESS = "2001:db8:c::2"
HOME_PREFIX = "2001:db8:1::/64"
MN_ID = "mn1@example.net"
MN_MAC = "02:00:00:00:00:01"


class InteropTopology(Lab):
    """
    The namespaces of an interop run, whoever plays each role:

        CN --- LMA ==core== MAG1 ==acc0== (mn)
                     ||==== MAG2 ==acc0==

    The LMA's bridge C{core} joins the LMA (L{LMA_ADDRESS}) and the MAGs
    (L{MAG_ADDRESSES}) on one link, as OPMIP's own demo does; each MAG has
    an access bridge C{acc0}; C{self.mn} is a stock Linux host (SLAAC, DAD
    on) with L{MN_MAC}, moved between them. Needs ip6tnl by default (OPMIP's
    tunnels).
    """

    def __init__(self, testCase=None, needs=("ip6tnl",), mags=2):
        super().__init__(testCase, needs=needs)
        self.mags = [f"mag{i + 1}" for i in range(mags)]
        self.mn = Mobile(self, "mn", MN_MAC)

    def _build(self):
        """The correspondent, the LMA with its core bridge, the MAGs, the mobile."""
        self.add("cn")
        self.add("lma", router=True)
        self.link("cn", "eth0", "lma", "cn0")
        self.addr("cn", "eth0", f"{CN_ADDRESS}/64")
        self.addr("lma", "cn0", "2001:db8:c::1/64")
        self.exec("cn", "ip", "-6", "route", "add", "default", "via", "2001:db8:c::1")
        self.bridge("lma", "core")
        self.addr("lma", "core", f"{LMA_ADDRESS}/64")
        for i, mag in enumerate(self.mags):
            self.add(mag, router=True)
            self.link(mag, "core0", "lma", f"m{i + 1}", master="core")
            self.addr(mag, "core0", f"{MAG_ADDRESSES[i]}/64")
            self.bridge(mag, "acc0", f"02:00:00:00:0{i + 1}:01")
        self.mobile("mn")

    def nodeDatabase(self, path, prefix=HOME_PREFIX, mnId=MN_ID, extraRouters=()):
        """
        OPMIP's node database for this domain: the LMA, the MAGs and
        C{extraRouters} (C{(id, address)}), and the mobile C{mnId} with home
        network prefix C{prefix}.
        """
        db = NodeDatabase()
        db.router("lma", LMA_ADDRESS)
        for i, mag in enumerate(self.mags):
            db.router(mag, MAG_ADDRESSES[i])
        for id, address in extraRouters:
            db.router(id, address)
        db.mobile(mnId, [prefix], [MN_MAC], "lma")
        return db.write(path)
