"""
A real C{redis-server} (Debian's package) for tests and benchmarks: started
in a directory of the caller's, on a Unix socket there or on a free loopback
port, with the append-only file fsynced at every write (what
doc/operations.md asks of a Redis that keeps bindings), and stopped, paused
or killed on demand.
"""

import os
import shutil
import signal
import socket
import subprocess
import time

#: Why tests that need Redis skip, or None when redis-server is installed.
MISSING = None if shutil.which("redis-server") else \
    "redis-server is not installed (Debian package redis-server; ./dev test installs it)"


def freePort():
    """A TCP port on ::1 that nothing listens on now."""
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
        s.bind(("::1", 0))
        return s.getsockname()[1]


class RedisServer:
    """
    One redis-server in C{directory}: on the Unix socket
    C{directory}/redis.sock, and with C{tcp} on [::1]:a free port too.
    L{start} may be called again after L{stop} or L{kill}: the same socket,
    port and data (the append-only file) come back.
    """

    def __init__(self, directory, tcp=False, fsync="always"):
        self.directory = directory
        #: appendfsync: "always" (each write on disk before Redis answers),
        #: "everysec" or "no".
        self.fsync = fsync
        self.socket = os.path.join(directory, "redis.sock")
        self.port = freePort() if tcp else 0
        self.process = None

    def arguments(self):
        return ["redis-server", "--dir", self.directory, "--unixsocket", self.socket,
                "--unixsocketperm", "700", "--port", str(self.port), "--bind", "::1",
                "--appendonly", "yes", "--appendfsync", self.fsync, "--save", "",
                "--daemonize", "no", "--logfile", os.path.join(self.directory, "redis.log"),
                # Lua scripts of a few thousand entries must not be cut short.
                "--busy-reply-threshold", "5000"]

    def start(self, timeout=10.0):
        """Start and wait until it answers PING."""
        self.process = subprocess.Popen(self.arguments(), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: "
                                   + self.log()[-500:])
            try:
                if self.ping():
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("redis-server did not answer within "
                                   f"{timeout:g} s: " + self.log()[-500:])
            time.sleep(0.02)

    def ping(self):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1)
            s.connect(self.socket)
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            return s.recv(64).startswith(b"+PONG")

    def log(self):
        try:
            with open(os.path.join(self.directory, "redis.log")) as f:
                return f.read()
        except OSError:
            return ""

    def _end(self, sig):
        p, self.process = self.process, None
        if p is None or p.poll() is not None:
            return
        p.send_signal(sig)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def stop(self):
        """Stop it (SIGTERM: a clean shutdown)."""
        self._end(signal.SIGTERM)

    def kill(self):
        """Kill it (SIGKILL): what was fsynced to the append-only file stays."""
        self._end(signal.SIGKILL)

    def pause(self):
        """Freeze it (SIGSTOP): a Redis that accepts but never answers."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self):
        self.process.send_signal(signal.SIGCONT)

    def target(self, timeout=1.0, tcp=False):
        """A L{netlmm.redisstore.RedisTarget} for it."""
        from ipaddress import IPv6Address
        from netlmm.redisstore import RedisTarget
        if tcp:
            return RedisTarget(address=(IPv6Address("::1"), self.port), timeout=timeout)
        return RedisTarget(socket=self.socket, timeout=timeout)


def runningRedis(test, tcp=False):
    """
    A RedisServer started for C{test} (a TestCase) in a temporary directory
    of its own, killed at the test's end; skips the test without redis-server.
    """
    from twisted.trial.unittest import SkipTest
    if MISSING:
        raise SkipTest(MISSING)
    import tempfile
    # Not test.mktemp(): a Unix socket path has at most 107 octets.
    directory = tempfile.mkdtemp(prefix="netlmm-redis-")
    test.addCleanup(shutil.rmtree, directory, True)
    server = RedisServer(directory, tcp=tcp)
    test.addCleanup(server.kill)
    server.start()
    return server
