"""
What the shipped-daemon benchmarks share: signed Proxy Binding Updates made
as a PMIP client makes them, a load generator that keeps a window of
requests outstanding on a UDP socket, the shipped configs copied with only
the benchmark's ports, pool and paths changed, and daemons run under twistd.

Nothing here is used by netlmm itself; bench/lma_rate.py and
bench/pmip_rate.py drive it.
"""

import hashlib
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from ipaddress import IPv6Address

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

LOOPBACK = IPv6Address("::1")
ETC = os.path.join(ROOT, "etc", "netlmm")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: NTP seconds at the POSIX epoch (RFC 4285 timestamps are NTP format).
NTP_EPOCH_OFFSET = 2208988800
#: MAG addresses the PBUs name as Alternate Care-of Address.
MAGS = [IPv6Address(f"2001:db8:ff::{i + 1:x}") for i in range(16)]
#: pHoAs of mobiles that name theirs: 2001:db8:1::1:0:0 + i (inside the
#: shipped home prefix 2001:db8:1::/64, outside the pool).
PHOA_BASE = int(IPv6Address("2001:db8:1::1:0:0"))
_ZERO = bytes(16)


# ====================================================================== packets


class SignedPbus:
    """
    netlmm-dialect Proxy Binding Updates from [::1] to [::1] for C{count}
    mobiles, signed with the security association C{sa} (RFC 4285 MN-HA,
    replay protection by timestamp) exactly as L{netlmm.security.guard.
    PmipGuard.protect} signs them, any sequence number, timestamp and MAG.

    @param assigned: the PBUs ask the LMA for a pHoA (Home Network Prefix
        ::) and carry the MN identifier (initial attachments); otherwise
        each names its pHoA, and carries the MN identifier only when
        C{mnId} (the netlmm PMIP client leaves it out of refreshes).

    Each mobile's PBU is encoded once by netlmm.wire.mh with a zero
    sequence, timestamp and authenticator; L{packet} patches those, computes
    the authenticator over (care-of | home | MH data) and then the
    checksum. L{check} proves on a few of them that this gives what
    C{PmipGuard.protect} and C{encodeMessage} give.
    """

    def __init__(self, count, sa, assigned=False, mnId=True, mnIdFormat=b"mn%d@bench"):
        from netlmm.security.guard import Replay, Auth
        from netlmm.wire import mh

        self.sa = sa
        self.count = count
        self.assigned = assigned
        self.mnIdFormat = mnIdFormat
        self.withMnId = assigned or mnId
        self.size = sa.size
        self.mac = fastHmac(sa.key, {"hmac-sha1-96": hashlib.sha1,
                                     "hmac-sha256-128": hashlib.sha256}[sa.algorithm])
        template = self._pbu(0, 0, 0)
        signed = template._replace(options=template.options + (
            Replay(0x0102030405060708), Auth(Auth.MN_HA, sa.spi, bytes(sa.size))))
        data = mh.encodeMessage(signed)
        self.timestampAt = data.index(struct.pack("!Q", 0x0102030405060708))
        self.length = len(data)
        self.authAt = len(data) - sa.size
        self.bodies = []
        hoaZero = _ZERO
        for i in range(count):
            pbu = self._pbu(i, 0, 0)
            data = bytearray(mh.encodeMessage(pbu._replace(options=pbu.options + (
                Replay(0), Auth(Auth.MN_HA, sa.spi, bytes(sa.size))))))
            hoa = hoaZero if assigned else IPv6Address(PHOA_BASE + i).packed
            self.bodies.append((hoa, bytes(data)))
        self.pseudo = 2 * int(LOOPBACK) + self.length + 135

    def mnId(self, i):
        return self.mnIdFormat % i

    def _pbu(self, i, sequence, mag):
        from netlmm.wire import mh
        phoa = IPv6Address(0) if self.assigned else IPv6Address(PHOA_BASE + i)
        options = [mh.HomeNetworkPrefix(phoa, 128), mh.AlternateCareOfAddress(MAGS[mag])]
        if self.withMnId:
            options.append(mh.MobileNodeIdentifier(self.mnId(i)))
        return mh.BindingUpdate(sequence, mh.BU_A | mh.BU_H | mh.BU_P, 900, options)

    def packet(self, i, sequence, timestamp, mag=0, _seq=struct.Struct("!H"),
               _ts=struct.Struct("!Q")):
        hoa, body = self.bodies[i]
        data = bytearray(body)
        data[6:8] = _seq.pack(sequence)
        coa = MAGS[mag].packed
        if mag:
            # The Alternate CoA is the second option: at its fixed offset.
            at = self._coaAt
            data[at:at + 16] = coa
        t = self.timestampAt
        data[t:t + 8] = _ts.pack(timestamp)
        end = self.authAt
        data[end:] = self.mac(coa + hoa + bytes(data[:end]))[:self.size]
        # As netlmm.wire.checksum.mhChecksum: the octets as one integer
        # modulo 0xFFFF are their one's-complement sum.
        folded = (self.pseudo + int.from_bytes(data, "big")) % 0xFFFF
        data[4:6] = _seq.pack(0xFFFF - folded if folded else 0)
        return bytes(data)

    @property
    def _coaAt(self):
        body = self.bodies[0][1]
        at = body.index(bytes((3, 16)) + MAGS[0].packed) + 2
        self.__dict__["_coaAt"] = at
        return at

    def check(self, keys):
        """Raise SystemExit unless L{packet} gives what netlmm's own code gives."""
        from netlmm.security.guard import PmipGuard
        from netlmm.security.replay import fromNtp
        from netlmm.wire import mh

        guard = PmipGuard(keys, client=LOOPBACK)
        for i in sorted({0, 1, self.count - 1}):
            for sequence, mag in ((0, 0), (1, 1), (0xFFFF, 15)):
                timestamp = ntpNow()
                got = self.packet(i, sequence, timestamp, mag)
                pbu = self._pbu(i, sequence, mag)
                # PmipGuard picks its own timestamp: make it pick ours.
                guard._lastSent.clear()
                want = guard.protect(pbu, self.mnId(i), fromNtp(timestamp))
                replay = want.option(mh.MobilityMessageReplayProtection)
                if replay.timestamp != timestamp:
                    want = None
                wantData = None if want is None else mh.encodeMessage(
                    want, LOOPBACK, LOOPBACK)
                if got != wantData:
                    raise SystemExit(f"PBU {i} seq {sequence} MAG {mag}: the fast "
                                     "path differs from PmipGuard.protect")
                mh.decodeMessage(got, LOOPBACK, LOOPBACK)   # checksum verified


def fastHmac(key, constructor):
    """
    HMAC(key, .) (RFC 2104) with the padded key's hash states made once:
    with OpenSSL 3, hmac.new() and hmac.digest() look the algorithm up on
    every call, several microseconds, more than the hashing itself.
    """
    block = constructor().block_size
    if len(key) > block:
        key = constructor(key).digest()
    key = key.ljust(block, b"\0")
    inner0 = constructor(bytes(b ^ 0x36 for b in key))
    outer0 = constructor(bytes(b ^ 0x5C for b in key))

    def mac(data):
        inner = inner0.copy()
        inner.update(data)
        outer = outer0.copy()
        outer.update(inner.digest())
        return outer.digest()
    return mac


def ntpNow():
    """The current time as a 64-bit NTP timestamp."""
    return int((time.time() + NTP_EPOCH_OFFSET) * (1 << 32))


def shippedKeys():
    """The shipped key file's security associations (a KeyStore)."""
    from netlmm.security.keystore import loadKeyFile
    return loadKeyFile(os.path.join(ETC, "keys.toml"))


def clientSa(keys):
    """The shipped per-PMIP-client SA for ::1 (what the benchmark signs with)."""
    sa = keys.forMobile(b"mn0@bench", LOOPBACK)
    if sa is None:
        raise SystemExit("the shipped keys.toml has no SA for a PMIP client at ::1")
    return sa


# ====================================================================== generator


class Generator:
    """
    Keeps C{window} requests outstanding on a connected UDP socket on [::1]
    and counts the answers that C{good(reply)} accepts.
    """

    def __init__(self, port, window, spin=True):
        self.sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        self.sock.bind(("::1", 0))
        self.sock.connect(("::1", port))
        self.sock.setblocking(False)
        self.window = window
        # Spinning on a non-blocking recv instead of sleeping in poll() keeps
        # the generator from costing the server a wake-up per reply.
        self.spin = spin
        self.sample = None

    def close(self):
        self.sock.close()

    def drain(self, quiet=0.2):
        """Read and drop late answers of an earlier phase until none comes for C{quiet} s."""
        while select.select([self.sock], [], [], quiet)[0]:
            while True:
                try:
                    self.sock.recv(2048)
                except BlockingIOError:
                    break

    def run(self, packets, seconds, good, stall=0.5):
        """
        Send from the iterator C{packets} until it ends (then wait for the
        last answers) or C{seconds} pass. Returns (good, bad, lost, sent,
        elapsed). A request unanswered for C{stall} seconds counts as lost
        and frees its slot.
        """
        sock = self.sock
        send = sock.send
        recv = sock.recv
        self.drain()
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        poll = poller.poll
        clock = time.perf_counter
        window = self.window
        outstanding = sent = ok = bad = lost = 0
        spin = self.spin
        nextPacket = packets.__next__
        exhausted = False
        start = clock()
        deadline = start + seconds
        lastAnswer = start
        now = start
        while now < deadline:
            while not exhausted and outstanding < window:
                try:
                    data = nextPacket()
                except StopIteration:
                    exhausted = True
                    break
                try:
                    send(data)
                except BlockingIOError:
                    break
                outstanding += 1
                sent += 1
            if exhausted and outstanding == 0:
                break
            if not spin and not poll(50):
                now = clock()
                if now - lastAnswer > stall and outstanding:
                    lost += outstanding
                    outstanding = 0
                    lastAnswer = now
                continue
            answered = 0
            while True:
                try:
                    reply = recv(2048)
                except BlockingIOError:
                    break
                except ConnectionRefusedError:
                    raise SystemExit("the server is gone (connection refused)")
                answered += 1
                if good(reply):
                    ok += 1
                else:
                    bad += 1
                    if self.sample is None:
                        self.sample = reply
            now = clock()
            if answered:
                outstanding -= answered
                lastAnswer = now
            elif now - lastAnswer > stall and outstanding:
                lost += outstanding
                outstanding = 0
                lastAnswer = now
        elapsed = clock() - start
        # Drain what is still in flight so the next phase starts clean.
        end = clock() + 0.5
        while outstanding > 0 and clock() < end:
            if poll(50):
                while True:
                    try:
                        recv(2048)
                    except BlockingIOError:
                        break
                    outstanding -= 1
        return ok, bad, lost, sent, elapsed


# ====================================================================== accounting


def busySeconds():
    """CPU time all processes of the machine used so far, seconds."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLOCK_TICKS


def cpuSeconds(pid):
    """User + system CPU time of process C{pid}, seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rssBytes(pid):
    """Resident set size of process C{pid}, bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


class Meter:
    """CPU of a server, of this process and of the rest of the machine over a phase."""

    def __init__(self, pid):
        self.pid = pid
        self.server = cpuSeconds(pid)
        self.mine = time.process_time()
        self.busy = busySeconds()

    def stop(self):
        server = cpuSeconds(self.pid) - self.server
        mine = time.process_time() - self.mine
        others = max(0.0, busySeconds() - self.busy - server - mine)
        return server, mine, others


# ====================================================================== daemons


def freePort(kind=socket.SOCK_DGRAM):
    """A port on [::1] free at the moment (for UDP or TCP)."""
    s = socket.socket(socket.AF_INET6, kind)
    try:
        s.bind(("::1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def poolLast(mobiles):
    """The last address of a pool from the shipped first (2001:db8:1::100) for C{mobiles}."""
    return IPv6Address("2001:db8:1::100") + mobiles + 16


def setKey(text, table, key, value):
    """
    C{text} (a TOML document) with C{key} of C{[table]} set to C{value}
    (a TOML literal): the line replaced where it is, or added under the
    table's header. Everything else stays as shipped.
    """
    lines = text.split("\n")
    header = f"[{table}]"
    inside = False
    for n, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("["):
            if inside:
                lines.insert(n, f"{key} = {value}")
                return "\n".join(lines)
            inside = stripped == header
            continue
        if inside and re.match(rf"#?\s*{re.escape(key)}\s*=", stripped):
            lines[n] = f"{key} = {value}"
            return "\n".join(lines)
    if inside:
        lines.append(f"{key} = {value}")
        return "\n".join(lines)
    return text + f"\n{header}\n{key} = {value}\n"


class ShippedConfigs:
    """
    A temporary directory with copies of etc/netlmm (keys, PKI, role
    configs), or an C{existing} one made so before; L{edit} changes one key
    of one role's config, nothing else.
    """

    def __init__(self, existing=None):
        if existing is not None:
            self.dir = existing
            return
        self.dir = tempfile.mkdtemp(prefix="netlmm-bench.")
        for name in os.listdir(ETC):
            source = os.path.join(ETC, name)
            target = os.path.join(self.dir, name)
            if os.path.isdir(source):
                shutil.copytree(source, target)
            else:
                shutil.copy2(source, target)
        for dirpath, _, files in os.walk(self.dir):
            for name in files:
                if name.endswith((".key", "keys.toml")):
                    os.chmod(os.path.join(dirpath, name), 0o600)

    def path(self, name):
        return os.path.join(self.dir, name)

    def edit(self, name, table, key, value):
        path = self.path(name)
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(setKey(text, table, key, value))

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def twistd():
    """The twistd of the Python running this script."""
    candidate = os.path.join(os.path.dirname(sys.executable), "twistd")
    return [candidate] if os.path.exists(candidate) else [
        sys.executable, "-m", "twisted"]


class Daemon:
    """
    A netlmm role under C{twistd -n} with a config file, its log in a file;
    L{waitFor} reads the log for a line.
    """

    def __init__(self, role, config, logPath, extra=()):
        self.role = role
        self.logPath = logPath
        env = dict(os.environ)
        env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
        self.log = open(logPath, "w")
        self.proc = subprocess.Popen(
            twistd() + ["-n", "--pidfile=", "-l", "-", f"netlmm-{role}", "--config",
                        config, *extra],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)

    @property
    def pid(self):
        return self.proc.pid

    def text(self):
        with open(self.logPath, errors="replace") as f:
            return f.read()

    def waitFor(self, pattern, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.text()):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise SystemExit(f"netlmm-{self.role} did not log {pattern!r}:\n"
                         + self.text()[-3000:])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def enableMetrics(configs, name):
    """Turn on [metrics] in role config C{name} on a free port; its URL."""
    port = freePort()
    configs.edit(name, "metrics", "listen", f'"[::1]:{port}"')
    return f"http://[::1]:{port}/metrics"


class Scraper:
    """
    Scrapes a daemon's metrics URL every C{interval} seconds from a thread,
    as Prometheus would (scrapes counted, the last page's size kept), so a
    benchmark measures the daemon with its metrics read under load.
    """

    def __init__(self, url, interval=1.0):
        import threading
        self.url = url
        self.interval = interval
        self.scrapes = 0
        self.size = 0
        self.errors = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        import urllib.request
        while not self._stop.wait(self.interval):
            try:
                with urllib.request.urlopen(self.url, timeout=10) as r:
                    self.size = len(r.read())
                self.scrapes += 1
            except OSError as e:
                self.errors.append(str(e))

    def stop(self):
        self._stop.set()
        self._thread.join()
        return self.scrapes
