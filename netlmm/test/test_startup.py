"""
Loud failure at start: a daemon that cannot do its job exits non-zero with one
line naming the cause, under `twistd -n` and daemonized alike. The cases run
against real twistd processes; L{DaemonServiceTests} covers the mechanism with
a fake reactor.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.internet.error import CannotListenError
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from netlmm.daemon import DaemonService, StartupError, describeFailure
from netlmm.lab.netns import codeEnvironment

TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def freePort(kind=socket.SOCK_STREAM):
    """A port on ::1 that nothing uses right now."""
    s = socket.socket(socket.AF_INET6, kind)
    s.bind(("::1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def occupy(testCase, kind, port=0):
    """Hold [::1]:port (TCP listening or UDP bound) for the test; returns the port."""
    s = socket.socket(socket.AF_INET6, kind)
    s.bind(("::1", port))
    if kind == socket.SOCK_STREAM:
        s.listen()
    testCase.addCleanup(s.close)
    return s.getsockname()[1]


def lmaConfig(port, extra=""):
    return f'''[lma]
listen = "[::1]:{port}"
home_prefix = "2001:db8:1::/64"
allowed_clients = ["::1"]
{extra}
[lma.dataplane]
kind = "memory"
'''


def pmipConfig(listen, lma, extra=""):
    return f'''[pmip]
listen = "[::1]:{listen}"
lma = "[::1]:{lma}"
allowed_mags = ["::1"]
{extra}
[pmip.tls]
transport = "tcp"
'''


def magConfig(pmip, socketPath):
    return f'''[mag]
address = "2001:db8:ff::1"
lma_address = "::1"
pmip = "[::1]:{pmip}"
[mag.assignment]
strategy = "lma-assigned"
[mag.attachment]
detector = "control"
socket = "{socketPath}"
[mag.dataplane]
kind = "memory"
[mag.tls]
transport = "tcp"
'''


GMA_CONFIG = """
[gma]
address = "2001:db8:dead::1"
home_prefix = "2001:db8:100::/64"
[gma.mobiles]
"mn1@example.net" = "2001:db8:100::10"
[gma.dataplane]
kind = "memory"
"""


class TwistdFailureTests(SynchronousTestCase):
    """Each way a daemon cannot start, as twistd runs it."""

    def setUp(self):
        # Short: UNIX socket paths have a limit of 107 octets.
        self.dir = Path(tempfile.mkdtemp(prefix="netlmm-start-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        # A daemonized twistd that started after all (a failed test).
        for pidfile in self.dir.glob("*.pid"):
            try:
                os.kill(int(pidfile.read_text()), 9)
            except (OSError, ValueError):
                pass

    def write(self, name, text):
        (self.dir / name).write_text(text)
        return name

    def run_(self, role, config, daemon=False, timeout=30):
        """Run twistd for C{role}; returns (status, stdout+stderr, log file text)."""
        log = self.dir / f"{role}.log"
        if daemon:
            argv = TWISTD + [f"--pidfile={role}.pid", f"--logfile={log}",
                             f"netlmm-{role}", "--config", config]
        else:
            argv = TWISTD + ["-n", "--pidfile=", f"netlmm-{role}", "--config", config]
        p = subprocess.run(argv, cwd=self.dir, capture_output=True, text=True,
                           timeout=timeout, env=codeEnvironment())
        return p.returncode, p.stdout + p.stderr, log.read_text() if log.exists() else ""

    def assertFailsLoudly(self, role, config, cause, beforeFork=False):
        """
        Both ways: status 1, the cause in one line, no traceback, and
        daemonized the cause reaches the terminal, the log says it and no
        pid file is left behind.
        """
        status, output, _ = self.run_(role, config)
        self.assertEqual(status, 1, output)
        lines = [line for line in output.splitlines() if cause in line]
        self.assertEqual(len(lines), 1, output)
        self.assertIn(f"netlmm-{role} cannot start: ", lines[0])
        self.assertNotIn("Traceback", output)
        self.assertNotIn("Unhandled error", output)
        status, output, log = self.run_(role, config, daemon=True)
        self.assertEqual(status, 1, output + log)
        if beforeFork:
            # Found in makeService (state): the whole line on the terminal,
            # before twistd forks or opens its log.
            self.assertEqual(len([line for line in output.splitlines()
                                  if f"netlmm-{role} cannot start: " in line
                                  and cause in line]), 1, output)
            self.assertFalse((self.dir / f"{role}.pid").exists())
            return
        # twistd's parent shows the first 98 octets of the cause.
        self.assertIn(cause[:80], output)
        self.assertIn(f"netlmm-{role} cannot start: ", log)
        self.assertIn(cause, log)
        self.assertNotIn("Traceback", log)
        self.assertFalse((self.dir / f"{role}.pid").exists())

    def test_lmaPortBusy(self):
        """A second LMA on a busy UDP port."""
        port = occupy(self, socket.SOCK_DGRAM)
        config = self.write("lma.toml", lmaConfig(port))
        self.assertFailsLoudly("lma", config, f"MH socket [::1]:{port}/udp: address "
                                              "already in use")

    def test_lmaAddressNotLocal(self):
        """An LMA told to listen on an address this host does not have."""
        config = self.write("lma.toml", lmaConfig(5436).replace(
            "[::1]", "[2001:db8:dead::1]"))
        self.assertFailsLoudly("lma", config, "MH socket [2001:db8:dead::1]:5436/udp: "
                                              "cannot assign requested address")

    def test_pmipPortBusy(self):
        """A second PMIP client on a busy TCP port."""
        port = occupy(self, socket.SOCK_STREAM)
        config = self.write("pmip.toml", pmipConfig(port, freePort(socket.SOCK_DGRAM)))
        self.assertFailsLoudly("pmip", config, f"PMIP client: MAG channel (tcp): cannot "
                                               f"listen on [::1]:{port}: address already "
                                               "in use")

    def test_pmipPeerPortBusy(self):
        """The peer channel's port (Appendix B) is busy."""
        peer = occupy(self, socket.SOCK_STREAM)
        config = self.write("pmip.toml", pmipConfig(
            freePort(), freePort(socket.SOCK_DGRAM),
            f'peers = ["[::1]:{freePort()}"]\npeer_listen = "[::1]:{peer}"'))
        self.assertFailsLoudly("pmip", config, f"PMIP client: peer channel (peer_listen): "
                                               f"cannot listen on [::1]:{peer}")

    def test_magSocketDirectoryMissing(self):
        config = self.write("mag.toml", magConfig(freePort(), "missing/mag.sock"))
        self.assertFailsLoudly("mag", config, f"control socket {self.dir}/missing/mag.sock: "
                                              f"the directory {self.dir}/missing does not "
                                              "exist")

    def test_magSocketServed(self):
        """A second MAG on the control socket another MAG serves."""
        served = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        served.bind(str(self.dir / "mag.sock"))
        served.listen()
        self.addCleanup(served.close)
        config = self.write("mag.toml", magConfig(freePort(), "mag.sock"))
        self.assertFailsLoudly("mag", config, f"control socket {self.dir}/mag.sock: "
                                              "another MAG is listening there")
        # The socket of the MAG that runs is left alone.
        self.assertTrue((self.dir / "mag.sock").exists())

    def test_stateRecordUnusable(self):
        """A state file whose record cannot be restored (issue 11: {"phoa":"zzz"})."""
        (self.dir / "state.json").write_text(json.dumps(
            {"format": 1, "kind": "pmip-bindings", "records": [{"phoa": "zzz"}]}))
        config = self.write("pmip.toml", pmipConfig(
            freePort(), freePort(socket.SOCK_DGRAM), 'state_file = "state.json"'))
        self.assertFailsLoudly("pmip", config, f"{self.dir}/state.json: bad record #0",
                               beforeFork=True)

    def test_configErrorOneLine(self):
        """A bad config: one line on stderr, not after twistd's --help."""
        config = self.write("lma.toml", lmaConfig(5436, "max_lifetime = 300000"))
        for daemon in (False, True):
            status, output, log = self.run_("lma", config, daemon=daemon)
            self.assertEqual(status, 1)
            self.assertEqual(output.strip().splitlines(), [
                "twistd netlmm-lma: error: lma.toml: lma.max_lifetime: expected a value "
                "from 4 to 262140, got 300000"])

    def test_certificateAndKeyOneLine(self):
        """A missing certificate, a private key others can read: one line each, status 1."""
        from netlmm import pki
        pki.ensureDomain(self.dir / "pki", "example.net", [("pmip", "pmip1")])
        tls = ('ca = "pki/ca.pem"\ncertificate = "pki/pmip-{name}.pem"\n'
               'key = "pki/pmip-{name}.key"\n')
        text = pmipConfig(freePort(), freePort(socket.SOCK_DGRAM)).replace(
            'transport = "tcp"\n', tls)
        config = self.write("pmip.toml", text.format(name="nobody"))
        status, output, _ = self.run_("pmip", config)
        self.assertEqual(status, 1)
        self.assertEqual(len(output.strip().splitlines()), 1, output)
        self.assertIn(f"pmip.tls.certificate: {self.dir}/pki/pmip-nobody.pem: no such file",
                      output)
        os.chmod(self.dir / "pki" / "pmip-pmip1.key", 0o644)
        config = self.write("pmip.toml", text.format(name="pmip1"))
        status, output, _ = self.run_("pmip", config, daemon=True)
        self.assertEqual(status, 1)
        self.assertEqual(output.strip().splitlines(), [
            f"twistd netlmm-pmip: error: pmip.toml: pmip.tls.key: {self.dir}/pki/"
            "pmip-pmip1.key: the private key is accessible to every user (mode 0644); "
            f"refused: chmod 600 {self.dir}/pki/pmip-pmip1.key"])

    def test_gmaKernelWithoutMip6(self):
        """A GMA on a kernel that cannot take Home Address options."""
        from unittest import SkipTest
        from netlmm.lab import kernel
        reason = kernel.missing("mip6")
        if reason is None:
            raise SkipTest("this kernel has mip6: the GMA would install xfrm states on the host")
        if reason.startswith("cannot probe"):
            raise SkipTest(reason)
        config = self.write("gma.toml", GMA_CONFIG)
        self.assertFailsLoudly("gma", config, "GMA: this kernel does not take Home Address "
                                              "options (it needs CONFIG_IPV6_MIP6, module mip6)")

    def test_unknownOptionOneLine(self):
        status = subprocess.run(TWISTD + ["-n", "netlmm-pmip", "--frobnicate"],
                                cwd=self.dir, capture_output=True, text=True,
                                env=codeEnvironment(), timeout=30)
        self.assertEqual(status.returncode, 1)
        self.assertEqual(status.stdout, "")
        self.assertEqual(status.stderr.strip(),
                         "twistd netlmm-pmip: error: option --frobnicate not recognized "
                         "(`twistd netlmm-pmip --help` lists the options)")

    def test_daemonizedSuccessWaitsForSockets(self):
        """
        Daemonized, twistd's parent exits 0 only once the start is complete:
        the socket answers as soon as it has returned.
        """
        port = freePort(socket.SOCK_DGRAM)
        config = self.write("lma.toml", lmaConfig(port))
        status, output, log = self.run_("lma", config, daemon=True)
        self.assertEqual(status, 0, output + log)
        self.assertTrue((self.dir / "lma.pid").exists())
        probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.addCleanup(probe.close)
        with self.assertRaises(OSError):
            probe.bind(("::1", port))
        os.kill(int((self.dir / "lma.pid").read_text()), 15)
        # Stopping is not what this test is about: under a loaded machine
        # (a full suite beside other runs) the stop took more than 10 s.
        deadline = time.monotonic() + 30
        while (self.dir / "lma.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertFalse((self.dir / "lma.pid").exists(),
                         "the LMA did not stop within 30 s of SIGTERM:\n"
                         + (self.dir / "lma.log").read_text())


class _Step(Service):
    """A service whose start returns C{result} (a Deferred or a value) or raises."""

    def __init__(self, name, result=None, error=None):
        self.setName(name)
        self.result = result
        self.error = error
        self.stopped = False

    def startService(self):
        Service.startService(self)
        if self.error is not None:
            raise self.error
        return self.result

    def stopService(self):
        self.stopped = True
        return Service.stopService(self)


class _Reactor(task.Clock):
    """A Clock with what DaemonService uses of a reactor."""

    def __init__(self, running=True):
        super().__init__()
        self.running = running
        self.triggers = []
        self.stopped = False

    def addSystemEventTrigger(self, phase, event, f, *args):
        self.triggers.append((phase, event, f, args))

    def callWhenRunning(self, f, *args):
        if self.running:
            f(*args)
        else:
            self.addSystemEventTrigger("after", "startup", f, *args)

    def stop(self):
        self.stopped = True


class NetlinkError(Exception):
    """Like pyroute2's: the kernel's errno in C{code}."""

    def __init__(self, code, text):
        super().__init__(code, text)
        self.code = code


class DaemonServiceTests(SynchronousTestCase):
    """The start-up sequence and its failures, with a fake reactor."""

    def setUp(self):
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        self.exits = []

    def critical(self):
        return [e for e in self.events if e.get("log_level") == LogLevel.critical]

    def test_inOrderEachAfterThePrevious(self):
        """The second service starts only once the first one's start completed."""
        first = defer.Deferred()
        a, b = _Step("a", first), _Step("b")
        daemon = DaemonService("netlmm-x", [a, b], reactor=_Reactor())
        daemon.startService()
        self.assertTrue(a.running)
        self.assertFalse(b.running)
        self.assertNoResult(daemon.ready)
        first.callback(None)
        self.assertTrue(b.running)
        self.successResultOf(daemon.ready)

    def test_synchronousFailureBeforeTheReactorRuns(self):
        """twistd's own call: one critical line, then SystemExit(1)."""
        reactor = _Reactor(running=False)
        daemon = DaemonService("netlmm-x", [_Step("a", error=StartupError("no socket"))],
                               reactor=reactor)
        with self.assertRaises(SystemExit) as cm:
            daemon.startService()
        self.assertEqual(cm.exception.code, 1)
        [event] = self.critical()
        self.assertEqual((event["name"], event["cause"]), ("netlmm-x", "no socket"))
        self.assertEqual(daemon.failure, "no socket")

    def test_laterFailureStopsTheReactorAndExits1(self):
        """A start that fails later stops the reactor; the process then exits 1."""
        later = defer.Deferred()
        reactor = _Reactor()
        a, b = _Step("a"), _Step("b", later)
        daemon = DaemonService("netlmm-x", [a, b], reactor=reactor,
                               exit=self.exits.append)
        daemon.startService()
        self.assertFalse(reactor.stopped)
        later.errback(StartupError("the data plane said no"))
        self.assertTrue(reactor.stopped)
        [(phase, event, end, args)] = reactor.triggers
        self.assertEqual((phase, event), ("after", "shutdown"))
        # twistd stops the services before the "after" phase.
        self.successResultOf(daemon.stopService())
        self.assertEqual((a.stopped, b.stopped), (True, True))
        end(*args)
        self.assertEqual(self.exits, [1])
        self.assertEqual(self.critical()[0]["cause"], "the data plane said no")

    def test_notStartedNotStopped(self):
        """Services after the failed one were never started and are not stopped."""
        reactor = _Reactor()
        a, b = _Step("a", error=StartupError("x")), _Step("b")
        daemon = DaemonService("netlmm-x", [a, b], reactor=reactor,
                               exit=self.exits.append)
        daemon.startService()
        self.successResultOf(daemon.stopService())
        self.assertEqual((a.stopped, b.stopped), (True, False))
        self.assertFalse(b.running)

    def test_statusPipe(self):
        """Daemonized: the parent hears '0' only when every start is complete."""
        for outcome, expected in ((None, b"0"), (StartupError("busy"), b"1 busy")):
            r, w = os.pipe()
            self.addCleanup(os.close, r)
            config = {"statusPipe": w, "pidfile": None}
            later = defer.Deferred()
            reactor = _Reactor()
            daemon = DaemonService("netlmm-x", [_Step("a", later)], config=config,
                                   reactor=reactor, exit=self.exits.append)
            daemon.startService()
            # twistd finds no pipe to write its own "0" to.
            self.assertIsNone(config["statusPipe"])
            os.set_blocking(r, False)
            with self.assertRaises(BlockingIOError):
                os.read(r, 100)
            if outcome is None:
                later.callback(None)
            else:
                later.errback(outcome)
                # Told once the services have stopped, just before the exit.
                with self.assertRaises(BlockingIOError):
                    os.read(r, 100)
                [(_, _, end, args)] = reactor.triggers
                end(*args)
            self.assertEqual(os.read(r, 100), expected)

    def test_statusPipeOnceTheReactorRuns(self):
        """
        A start complete before the reactor runs (twistd starts services in
        a "before startup" trigger) is told to the parent only once it runs,
        when its SIGTERM handler is in place: a SIGTERM sent as soon as the
        parent exited then stops the daemon cleanly.
        """
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        os.set_blocking(r, False)
        reactor = _Reactor(running=False)
        daemon = DaemonService("netlmm-x", [_Step("a")], config={"statusPipe": w, "pidfile": None},
                               reactor=reactor, exit=self.exits.append)
        daemon.startService()
        self.successResultOf(daemon.ready)
        with self.assertRaises(BlockingIOError):
            os.read(r, 100)
        [(phase, event, tell, args)] = reactor.triggers
        self.assertEqual((phase, event), ("after", "startup"))
        tell(*args)
        self.assertEqual(os.read(r, 100), b"0")

    def test_startupStepNamesTheStep(self):
        """A step's failure is a StartupError that says which step failed."""
        from netlmm.daemon import startupStep
        d = startupStep("LMA: data plane 'seg6'",
                        lambda: defer.fail(NetlinkError(95, "Operation not supported")))
        self.assertEqual(str(self.failureResultOf(d, StartupError).value),
                         "LMA: data plane 'seg6': the kernel refused a netlink request: "
                         "operation not supported")

    def test_describeFailure(self):
        """The causes of failed starts, in words."""
        cases = [
            (StartupError("as it says"), "as it says"),
            (CannotListenError("::1", 5437, OSError(98, "Address already in use")),
             "cannot listen on [::1]:5437: address already in use"),
            (FileNotFoundError(2, "No such file or directory", "/x/y"),
             "/x/y: no such file or directory"),
            (defer.FirstError(Failure(StartupError("inner")), 0), "inner"),
            (ValueError("bad"), "ValueError: bad"),
            (NetlinkError(95, "Operation not supported"),
             "the kernel refused a netlink request: operation not supported"),
        ]
        for error, text in cases:
            self.assertEqual(describeFailure(error), text)
