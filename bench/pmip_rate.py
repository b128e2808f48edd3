"""
Trigger -> Notification rate and latency of the PMIP client daemon AS
SHIPPED (`twistd -n netlmm-pmip` with etc/netlmm/pmip.toml: RFC 4285 towards
the LMA, mutually authenticated TLS on the MAG channel), with the shipped
LMA behind it (`twistd -n netlmm-lma`), loaded by an independent MAG-side
generator in this process (Python's ssl module, not netlmm's transport),
next to a TLS echo over the same channel measured in the same run.

    python bench/pmip_rate.py                # 20,000 mobiles, 50 in flight
    python bench/pmip_rate.py --rounds 3     # everything three times; spread
    python bench/pmip_rate.py --quick        # 2,000 mobiles (smoke test)
    python bench/pmip_rate.py --profile out  # py-spy both daemons: out.ROLE.txt

The shipped config directory is copied and only ports and paths change
(and, while the shipped PMIP client config leaves the MAG channel as plain
TCP, TLS is turned on with a PKI made for the run; the output says so).

The generator holds one TLS connection as MAG "MAG1" and keeps N Triggers
outstanding (50): each a new mobile asking for an LMA-assigned pHoA
(attach), then, for the same mobiles, a Trigger naming another MAG address
(handoff). A Trigger counts when its Notification says SUCCESS; every
Trigger's latency (sent to Notification read) is kept: p50 and p99 are
reported. "unloaded" sends one Trigger at a time.

The TLS echo is a Twisted server on netlmm's own TLS channel (same
certificates, same TLS settings) that writes back what it reads; the
generator sends it the same Triggers with the same window, and a message
counts when it comes back. The ratio is PMIP client / echo. Traffic goes
only to [::1].
"""

import argparse
import json
import os
import select
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import load  # noqa: E402

MAG_ADDRESSES = [bytes.fromhex("20010db800ff") + bytes(9) + bytes([i + 1])
                 for i in range(16)]


# ====================================================================== PKI, configs


def tlsFiles(configs):
    """
    The PMIP client's and MAG1's TLS files in the copied configs: those the
    shipped pmip.toml names when it turns TLS on; otherwise a PKI made here
    (and [pmip.tls] turned on). Returns (ca, mag cert, mag key, note).
    """
    text = open(configs.path("pmip.toml")).read()
    shipped = 'transport = "tls"' in text.split("[pmip.tls]", 1)[-1].split("\n[", 1)[0]
    pki = configs.path("pki")
    if not (shipped and os.path.exists(os.path.join(pki, "ca.pem"))):
        from netlmm import pki as P
        if not os.path.exists(os.path.join(pki, "ca.pem")):
            P.initDomain(pki, "example.net")
        for role, name in (("pmip", "pmip1"), ("mag", "MAG1")):
            if not os.path.exists(os.path.join(pki, f"{role}-{name}.pem")):
                P.issueFiles(pki, role, name)
    note = "as shipped" if shipped else "TLS turned on by the benchmark (shipped: tcp)"
    if not shipped:
        configs.edit("pmip.toml", "pmip.tls", "transport", '"tls"')
        configs.edit("pmip.toml", "pmip.tls", "ca", '"pki/ca.pem"')
        configs.edit("pmip.toml", "pmip.tls", "certificate", '"pki/pmip-pmip1.pem"')
        configs.edit("pmip.toml", "pmip.tls", "key", '"pki/pmip-pmip1.key"')
    return (os.path.join(pki, "ca.pem"), os.path.join(pki, "mag-MAG1.pem"),
            os.path.join(pki, "mag-MAG1.key"), note)


# ====================================================================== TLS echo


def serveTlsEcho(directory, portFile, limit):
    """A TLS echo on netlmm's MAG channel (as the PMIP client listens) until SIGTERM."""
    from twisted.internet import reactor
    from twisted.internet.protocol import Factory, Protocol

    from netlmm.transport.channel import Channel
    from netlmm.transport.tls import loadCredentials

    pki = os.path.join(directory, "pki")
    credentials = loadCredentials(os.path.join(pki, "ca.pem"),
                                  os.path.join(pki, "pmip-pmip1.pem"),
                                  os.path.join(pki, "pmip-pmip1.key"), role="pmip",
                                  where="echo")

    class Echo(Protocol):
        def dataReceived(self, data):
            self.transport.write(data)

    class EchoFactory(Factory):
        # Channel.listen asks its factory to admit each connection (Gate).
        protocol = Echo
        noisy = False

        def admit(self, addr):
            return True

        def stopRefusals(self):
            pass

    def listening(port):
        tmp = portFile + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(port.getHost().port))
        os.rename(tmp, portFile)
    Channel("tls", credentials).listen(reactor, "::1", 0, EchoFactory(),
                                       expectRole="mag").addCallback(listening)
    reactor.callLater(limit, reactor.stop)
    reactor.run()


def startTlsEcho(directory, limit):
    portFile = os.path.join(directory, "echo.port")
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve-tls-echo",
                             directory, "--port-file", portFile, "--limit", str(limit)],
                            cwd=load.ROOT)
    deadline = time.monotonic() + 60
    while not os.path.exists(portFile):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("TLS echo did not start")
        time.sleep(0.02)
    with open(portFile) as f:
        return proc, int(f.read())


# ====================================================================== messages


def trigger(transaction, mnId, mag):
    """A Trigger (draft 4.9.1), LMA-assigned pHoA, built octet by octet."""
    body = (bytes((1, len(mnId))) + mnId            # L2-ID (MN identifier)
            + bytes((6, 16)) + mag                  # MAG address (pCoA)
            + bytes((4, 1, 3)))                     # address mode: LMA-assigned
    return struct.pack("!BBHI", 1, 8 + len(body), 1 << 13, transaction) + body


def checkTrigger():
    """The hand-built Trigger is what netlmm's encoder makes."""
    from ipaddress import IPv6Address
    from netlmm.wire.control import AddressMode, Trigger, encodeControl
    want = encodeControl(Trigger(7, b"mn7@bench", IPv6Address(MAG_ADDRESSES[3]),
                                 mode=AddressMode.LMA_ASSIGNED))
    if trigger(7, b"mn7@bench", MAG_ADDRESSES[3]) != want:
        raise SystemExit("hand-built Trigger differs from netlmm's encoder")


def result(message):
    """The Result option (5) of a Notification, or None."""
    pos = 8
    end = message[1]
    while pos + 2 <= end:
        kind, length = message[pos], message[pos + 1]
        if kind == 5 and length == 1:
            return message[pos + 2]
        pos += 2 + length
    return None


# ====================================================================== generator


class MagGenerator:
    """One TLS connection as a MAG; keeps a window of Triggers outstanding."""

    def __init__(self, port, ca, cert, key):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = False
        context.load_verify_locations(ca)
        context.load_cert_chain(cert, key)
        raw = socket.create_connection(("::1", port))
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = context.wrap_socket(raw)
        self.sock.setblocking(False)
        self.buffer = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _read(self):
        """Complete messages read so far (may be none)."""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise SystemExit("the server closed the connection")
                self.buffer += chunk
                if not self.sock.pending():
                    break
        except (ssl.SSLWantReadError, BlockingIOError):
            pass
        messages = []
        buf = self.buffer
        pos = 0
        while len(buf) - pos >= 2 and len(buf) - pos >= buf[pos + 1]:
            length = buf[pos + 1]
            if length < 8:
                raise SystemExit(f"broken frame from the server: {buf[pos:pos + 8]!r}")
            messages.append(buf[pos:pos + length])
            pos += length
        self.buffer = buf[pos:]
        return messages

    def _send(self, data):
        view = memoryview(data)
        while view:
            try:
                n = self.sock.send(view)
                view = view[n:]
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                select.select([], [self.sock], [], 0.05)

    def run(self, requests, window, good, seconds=600, stall=10.0):
        """
        Send the (transaction, octets) of C{requests} keeping C{window}
        outstanding; answers are matched by transaction. Returns (ok, bad,
        lost, latencies in seconds, elapsed).
        """
        clock = time.perf_counter
        sent = {}
        latencies = []
        ok = bad = 0
        requests = iter(requests)
        exhausted = False
        start = clock()
        lastAnswer = start
        deadline = start + seconds
        fd = self.sock
        while True:
            now = clock()
            while not exhausted and len(sent) < window:
                try:
                    transaction, data = next(requests)
                except StopIteration:
                    exhausted = True
                    break
                sent[transaction] = clock()
                self._send(data)
            if (exhausted and not sent) or now > deadline:
                break
            if not self.sock.pending():
                select.select([fd], [], [], 0.05)
            messages = self._read()
            now = clock()
            for m in messages:
                transaction = int.from_bytes(m[4:8], "big")
                t = sent.pop(transaction, None)
                if t is None:
                    continue
                lastAnswer = now
                latencies.append(now - t)
                if good(m):
                    ok += 1
                else:
                    bad += 1
                    if bad == 1:
                        self.sample = m
            if sent and now - lastAnswer > stall:
                break
        return ok, bad, len(sent), latencies, clock() - start


def percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


# ====================================================================== measuring


def isSuccess(message):
    return message[0] == 2 and result(message) == 0


def isEcho(message):
    return message[0] == 1


def report(name, pid, gen, requests, window, good, log, results, count):
    meter = load.Meter(pid) if pid else None
    ok, bad, lost, latencies, elapsed = gen.run(requests, window, good)
    cpu = meter.stop() if meter else (0, 0, 0)
    rate = ok / elapsed
    figures = dict(rate=rate, p50=percentile(latencies, 50) * 1e3,
                   p99=percentile(latencies, 99) * 1e3, bad=bad, lost=lost,
                   serverUs=1e6 * cpu[0] / max(ok, 1), others=cpu[2] / elapsed)
    results.setdefault(name, []).append(figures)
    log(f"  {name:18} {rate:8.0f}/s  p50 {figures['p50']:6.2f} ms  p99 "
        f"{figures['p99']:6.2f} ms  ({ok}/{count} in {elapsed:.2f} s; {bad} bad, "
        f"{lost} unanswered)  server CPU {figures['serverUs']:.0f} us/req, others "
        f"{cpu[2] / elapsed:.0%} of a core")
    if bad or ok != count:
        raise SystemExit(f"{name}: {ok} of {count} succeeded; {bad} failed: "
                         f"{getattr(gen, 'sample', None)!r}")


def triggers(n, first, magIndex, prefix=b"mn"):
    for i in range(n):
        yield first + i, trigger(first + i, b"%s%d@bench" % (prefix, i),
                                 MAG_ADDRESSES[magIndex])


def measure(args, log, results, round, profile=None):
    configs = load.ShippedConfigs()
    lmaPort, pmipPort = load.freePort(), load.freePort(socket.SOCK_STREAM)
    daemons = []
    echo = gen = None
    try:
        ca, cert, key, note = tlsFiles(configs)
        if round == 0:
            log(f"  MAG channel: {note}")
        # TLS echo first, same certificates and window.
        echo, echoPort = startTlsEcho(configs.dir, 600)
        gen = MagGenerator(echoPort, ca, cert, key)
        count = args.mobiles
        report("TLS echo", echo.pid, gen, triggers(count, 1, 0), args.window, isEcho,
               log, results, count)
        report("TLS echo unloaded", echo.pid, gen, triggers(args.unloaded, 10**6, 0),
               1, isEcho, log, results, args.unloaded)
        gen.close()
        gen = None
        echo.terminate()
        echo.wait(timeout=30)
        echo = None
        # The LMA and the PMIP client, as shipped.
        configs.edit("lma.toml", "lma", "listen", f'"[::1]:{lmaPort}"')
        configs.edit("lma.toml", "lma.pool", "last",
                     f'"{load.poolLast(2 * count + args.unloaded)}"')
        configs.edit("pmip.toml", "pmip", "listen", f'"[::1]:{pmipPort}"')
        configs.edit("pmip.toml", "pmip", "lma", f'"[::1]:{lmaPort}"')
        for role in ("lma", "pmip"):
            daemons.append(load.Daemon(role, configs.path(f"{role}.toml"),
                                       configs.path(f"{role}.log")))
        daemons[0].waitFor(r"LMA listening")
        daemons[1].waitFor(r"MAGs connect to")
        pmip = daemons[1]
        gen = MagGenerator(pmipPort, ca, cert, key)
        spies = [_spy(profile, d) for d in daemons] if profile else []
        report("PMIP attach", pmip.pid, gen, triggers(count, 1, 0), args.window,
               isSuccess, log, results, count)
        report("PMIP handoff", pmip.pid, gen, triggers(count, count + 1, 1), args.window,
               isSuccess, log, results, count)
        for spy in spies:
            spy.send_signal(2)
            spy.wait(timeout=60)
        report("PMIP unloaded", pmip.pid, gen, triggers(args.unloaded, 10**6, 2, b"u"), 1,
               isSuccess, log, results, args.unloaded)
        for d in daemons:
            log(f"  {d.role} RSS {load.rssBytes(d.pid) / 2**20:.1f} MiB")
    finally:
        if gen is not None:
            gen.close()
        if echo is not None:
            echo.kill()
        for d in daemons:
            d.stop()
        if args.keep:
            log(f"  configs and logs kept in {configs.dir}")
        else:
            configs.remove()


def _spy(profile, daemon):
    spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return subprocess.Popen([spy if os.path.exists(spy) else "py-spy", "record",
                             "--format", "raw", "--rate", "250", "--nonblocking",
                             "-o", f"{profile}.{daemon.role}.txt", "--pid", str(daemon.pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summary(results, log):
    log("")
    log("case                  best/s  median/s  runs            p50 ms (best)  "
        "p99 ms (best)  ratio to echo (best)")
    echo = [r["rate"] for r in results.get("TLS echo", [])]
    echoCpu = [r["serverUs"] for r in results.get("TLS echo", [])]
    for name in ("TLS echo", "TLS echo unloaded", "PMIP attach", "PMIP handoff",
                 "PMIP unloaded"):
        rs = results.get(name)
        if not rs:
            continue
        rates = [r["rate"] for r in rs]
        line = (f"{name:18} {max(rates):9.0f} {statistics.median(rates):9.0f}  "
                f"{'/'.join(f'{r:.0f}' for r in rates):15} "
                f"{min(r['p50'] for r in rs):8.2f}      {min(r['p99'] for r in rs):8.2f}")
        if name in ("PMIP attach", "PMIP handoff") and echo:
            # And by CPU: the echo's per message over the PMIP client's per
            # Trigger (the LMA's work is on top, in its own process).
            line += (f"       {max(rates) / max(echo):.3f}  by CPU "
                     f"{min(echoCpu) / min(r['serverUs'] for r in rs):.3f}")
        log(line)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--serve-tls-echo", metavar="DIR", help=argparse.SUPPRESS)
    p.add_argument("--port-file", help=argparse.SUPPRESS)
    p.add_argument("--limit", type=float, default=600, help=argparse.SUPPRESS)
    p.add_argument("--mobiles", type=int, default=20_000)
    p.add_argument("--window", type=int, default=50, help="Triggers in flight (50)")
    p.add_argument("--unloaded", type=int, default=500,
                   help="Triggers sent one at a time for the unloaded latency (500)")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--profile", metavar="PREFIX",
                   help="py-spy both daemons during the loaded phases: PREFIX.ROLE.txt")
    p.add_argument("--keep", action="store_true", help="keep configs and logs")
    p.add_argument("--json", metavar="FILE", help="also write every figure to FILE")
    p.add_argument("--quick", action="store_true", help="smoke test: 2,000 mobiles")
    args = p.parse_args()
    if args.serve_tls_echo:
        serveTlsEcho(args.serve_tls_echo, args.port_file, args.limit)
        return
    if args.quick:
        args.mobiles = min(args.mobiles, 2000)
        args.unloaded = min(args.unloaded, 200)
    checkTrigger()

    def log(text):
        print(text, flush=True)
    log(f"{args.mobiles} mobiles, {args.window} Triggers in flight, {args.unloaded} "
        f"unloaded ({os.cpu_count()} CPUs)")
    results = {}
    for n in range(args.rounds):
        log(f"round {n + 1}:")
        measure(args, log, results, n, args.profile if n == 0 else None)
    summary(results, log)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
