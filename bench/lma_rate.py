"""
Proxy Binding Updates per second answered by the LMA daemon AS SHIPPED
(`twistd -n netlmm-lma` with etc/netlmm/lma.toml: RFC 4285 on, the shipped
keys, logging), next to a bare Twisted UDP echo server measured in the same
run, each in its own process, loaded by this script from a third process.

    python bench/lma_rate.py                 # 100,000 mobiles, 10 s per phase
    python bench/lma_rate.py --rounds 3      # everything three times; spread
    python bench/lma_rate.py --quick         # 5,000 mobiles, 2 s (smoke test)
    python bench/lma_rate.py --profile out   # py-spy the LMA: out.<phase>.txt
    python bench/lma_rate.py --without-state # also the LMA with no state file
    python bench/lma_rate.py --redis         # also the LMA with its state in Redis

The shipped config directory is copied to a temporary one and only what a
benchmark must change is changed: the listen port, the address pool widened
to hold the benchmark's mobiles, and (when the config has one) the state
file's path. Everything else, security included, is as shipped.
With --without-state the LMA is also measured with `state_file = ""` (no
durable state): the ratio of the two is what the state costs. With --redis
it is also measured with its state in a redis-server this script starts
(`[state] backend = "redis"` on a Unix socket, append-only file fsynced at
every write: netlmm.lab.redis), case "LMA redis".

Phases against the LMA, each timed on its own:

  attach    N new mobiles, each PBU asking for an LMA-assigned pHoA (Home
            Network Prefix ::, MN identifier), signed with the shipped
            per-PMIP-client SA, replay protection by timestamp.
  refresh   N other mobiles are registered first with pHoAs they name (not
            timed); then refresh PBUs round-robin over them, each signed,
            each the next sequence number of its mobile, as the PMIP client
            sends them (no MN identifier once bound). The LMA then holds 2N
            bindings.
  handoff   the same, each PBU naming the next of 16 MAGs (Alternate CoA):
            the LMA moves the route (memory data plane, as shipped).

Only Binding Acknowledgements with status 0 count. The generator keeps a
window of requests outstanding (128) and signs each PBU as it sends it
(bench/load.py, checked against PmipGuard.protect).

The echo server gets the same generator twice: once signing every datagram
as for the LMA ("echo, signing"), once sending datagrams signed beforehand
("echo, presigned": the generator then does almost no work, so this is the
echo's own ceiling). Ratios are taken against the HIGHER of the two, so a
generator that cannot keep up with the echo never flatters the LMA.

Each line reports CPU per answered request of the server and of the
generator and what other processes took meanwhile (the machine is shared);
run --rounds 3 and read the spread. The summary also gives the ratio by CPU
(the echo's CPU per datagram over the LMA's per PBU): what the rates' ratio
would be with a core each, which a busy machine disturbs much less. See doc/performance.md.
Traffic goes only to [::1].
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import load  # noqa: E402
from load import LOOPBACK, poolLast  # noqa: E402

PHASES = ("attach", "refresh", "handoff")


# ====================================================================== echo server


def serveEcho(portFile, limit):
    """A bare Twisted UDP echo on [::1] (the ceiling) until SIGTERM or C{limit}."""
    from twisted.internet import reactor
    from twisted.internet.protocol import DatagramProtocol

    class Echo(DatagramProtocol):
        count = 0

        def datagramReceived(self, data, addr):
            self.count += 1
            self.transport.write(data, addr)

    echo = Echo()
    listening = reactor.listenUDP(0, echo, interface="::1")
    listening.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    tmp = portFile + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(listening.getHost().port))
    os.rename(tmp, portFile)
    reactor.callLater(limit, reactor.stop)
    reactor.run()
    print(json.dumps({"echoed": echo.count}), flush=True)


def startEcho(limit):
    import tempfile
    tmpdir = tempfile.mkdtemp(prefix="lma_rate.")
    portFile = os.path.join(tmpdir, "port")
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve-echo",
                             portFile, "--limit", str(limit)], stdout=subprocess.PIPE,
                            text=True, cwd=load.ROOT)
    deadline = time.monotonic() + 30
    while not os.path.exists(portFile):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("echo server did not start")
        time.sleep(0.02)
    with open(portFile) as f:
        port = int(f.read())
    os.unlink(portFile)
    os.rmdir(tmpdir)
    return proc, port


# ====================================================================== packets


class Stamps:
    """RFC 4285 timestamps: the clock, strictly increasing (one SA for all)."""

    def __init__(self):
        self.last = 0

    def __call__(self, _now=load.ntpNow):
        t = _now()
        if t <= self.last:
            t = self.last + 1
        self.last = t
        return t


def attaches(pbus, stamps):
    packet = pbus.packet
    for i in range(pbus.count):
        yield packet(i, 1, stamps())


def registrations(pbus, stamps):
    packet = pbus.packet
    for i in range(pbus.count):
        yield packet(i, 1, stamps())


def refreshes(pbus, stamps, first, handoff, state):
    """Round-robin refresh (or handoff) PBUs; C{state} keeps where it ended."""
    packet = pbus.packet
    count = pbus.count
    sequence = first
    while True:
        mag = sequence % 16 if handoff else 0
        for i in range(count):
            state["sequence"] = sequence
            yield packet(i, sequence & 0xFFFF, stamps(), mag)
        sequence += 1


def presigned(pbus, stamps, n):
    """C{n} packets signed now, for the echo's presigned run."""
    packet = pbus.packet
    count = pbus.count
    return [packet(i % count, 2 + i // count, stamps()) for i in range(n)]


def isAccepted(reply):
    """A Binding Acknowledgement (MH type 6) with status 0."""
    return reply[2] == 6 and reply[6] == 0


def isEcho(reply):
    return reply[2] == 5


# ====================================================================== measuring


def phase(gen, pid, packets, seconds, good, name, log, results):
    """Run one timed phase against process C{pid}; log and keep its figures."""
    meter = load.Meter(pid)
    ok, bad, lost, sent, elapsed = gen.run(packets, seconds, good)
    server, mine, others = meter.stop()
    rate = ok / elapsed
    results.setdefault(name, []).append(dict(
        rate=rate, serverUs=1e6 * server / max(ok, 1),
        generatorUs=1e6 * mine / max(sent, 1), others=others / elapsed,
        server=server / elapsed, generator=mine / elapsed, bad=bad, lost=lost))
    log(f"  {name:16} {rate:8.0f}/s  ({ok} answered in {elapsed:.2f} s; {bad} bad, "
        f"{lost} lost)  CPU per request: server {1e6 * server / max(ok, 1):5.1f} us, "
        f"generator {1e6 * mine / max(sent, 1):4.1f} us; busy: server "
        f"{server / elapsed:.0%}, generator {mine / elapsed:.0%}, others "
        f"{others / elapsed:.0%} of a core")
    if bad:
        sample = gen.sample
        gen.sample = None
        raise SystemExit(f"{name}: {bad} answers were not accepted; one: {sample!r}")
    return ok


def measureEcho(pbus, args, log, results):
    proc, port = startEcho(args.seconds * 4 + 60)
    gen = load.Generator(port, args.window)
    try:
        stamps = Stamps()
        packets = refreshes(pbus, stamps, 2, False, {})
        phase(gen, proc.pid, packets, args.seconds, isEcho, "echo, signing", log,
              results)
        # Enough presigned datagrams for the phase at up to 400k/s.
        table = presigned(pbus, stamps, min(len(pbus.bodies), 100_000))
        n = int(args.seconds * 400_000)
        packets = (table[i % len(table)] for i in range(n))
        phase(gen, proc.pid, packets, args.seconds, isEcho, "echo, presigned", log,
              results)
    finally:
        gen.close()
        proc.terminate()
        proc.communicate(timeout=30)


def lmaConfig(configs, port, mobiles, state, redis=None):
    """
    The shipped lma.toml with the benchmark's port, pool and state path (or,
    with C{redis}, a L{netlmm.lab.redis.RedisServer}, its state there).
    """
    configs.edit("lma.toml", "lma", "listen", f'"[::1]:{port}"')
    # The pool holds the attach phase's mobiles (the shipped one 65,280).
    configs.edit("lma.toml", "lma.pool", "last", f'"{poolLast(mobiles)}"')
    configs.edit("lma.toml", "lma", "state_file",
                 f'"{configs.path("lma-state")}"' if state and not redis else '""')
    if redis is not None:
        with open(configs.path("lma.toml"), "a") as f:
            f.write(f'\n[state]\nbackend = "redis"\nsocket = "{redis.socket}"\n')


def measureLma(args, log, results, profile=None, withState=True, metrics=False,
               redis=False):
    """
    One round against a twistd LMA. With C{metrics}, its [metrics] endpoint
    is on and scraped every second, and the cases are named "... +metrics";
    with C{redis}, its state is in a redis-server ("LMA redis ...").
    """
    keys = load.shippedKeys()
    sa = load.clientSa(keys)
    configs = load.ShippedConfigs()
    port = load.freePort()
    state = withState and _shippedState()
    server = None
    if redis:
        from netlmm.lab.redis import RedisServer
        server = RedisServer(configs.dir).start()
    lmaConfig(configs, port, args.mobiles, state, server)
    lma = "LMA redis" if redis else "LMA" if state or not _shippedState() \
        else "LMA no state"
    url = load.enableMetrics(configs, "lma.toml") if metrics else None
    suffix = " +metrics" if metrics else ""
    daemon = load.Daemon("lma", configs.path("lma.toml"), configs.path("lma.log"))
    gen = scraper = None
    try:
        daemon.waitFor(r"LMA listening")
        if url:
            scraper = load.Scraper(url)
        gen = load.Generator(port, args.window)
        stamps = Stamps()
        new = load.SignedPbus(args.mobiles, sa, assigned=True,
                              mnIdFormat=b"new%d@bench")
        spy = _spy(profile, "attach", daemon.pid)
        phase(gen, daemon.pid, attaches(new, stamps), 600, isAccepted,
              f"{lma} attach{suffix}", log, results)
        _stopSpy(spy)
        del new
        named = load.SignedPbus(args.mobiles, sa, mnId=True)
        ok, bad, lost, sent, elapsed = gen.run(registrations(named, stamps), 600,
                                               isAccepted, stall=5)
        if ok != args.mobiles:
            raise SystemExit(f"registration: {ok} of {args.mobiles} accepted "
                             f"({bad} refused, {lost} lost): {gen.sample!r}")
        refresh = load.SignedPbus(args.mobiles, sa, mnId=False)
        where = {}
        spy = _spy(profile, "refresh", daemon.pid)
        phase(gen, daemon.pid, refreshes(refresh, stamps, 2, False, where),
              args.seconds, isAccepted, f"{lma} refresh{suffix}", log, results)
        _stopSpy(spy)
        spy = _spy(profile, "handoff", daemon.pid)
        phase(gen, daemon.pid, refreshes(refresh, stamps, where["sequence"] + 1, True,
                                         where), args.seconds, isAccepted,
              f"{lma} handoff{suffix}", log, results)
        _stopSpy(spy)
        rss = load.rssBytes(daemon.pid)
        log(f"  LMA RSS {rss / 2**20:.1f} MiB with {2 * args.mobiles} bindings")
        if scraper is not None:
            log(f"  metrics scraped {scraper.stop()} times ({scraper.size} octets a page; "
                f"errors: {scraper.errors[:1] or 'none'})")
            scraper = None
    finally:
        if scraper is not None:
            scraper.stop()
        if gen is not None:
            gen.close()
        daemon.stop()
        if server is not None:
            server.stop()
        if args.keep:
            log(f"  configs and log kept in {configs.dir}")
        else:
            configs.remove()


def _shippedState():
    """True when the shipped lma.toml keeps state (a state_file key, set or commented)."""
    with open(os.path.join(load.ETC, "lma.toml")) as f:
        return any(line.lstrip("# ").startswith("state_file") for line in f)


def _spy(profile, name, pid):
    if not profile:
        return None
    spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return subprocess.Popen([spy if os.path.exists(spy) else "py-spy", "record", "--format", "raw", "--rate", "250",
                             "--nonblocking", "-o", f"{profile}.{name}.txt",
                             "--pid", str(pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stopSpy(spy):
    if spy is not None:
        spy.send_signal(2)
        spy.wait(timeout=30)


def summary(results, log):
    """Best, median and spread of each case, and the ratios against the echo."""
    def rates(name):
        return [r["rate"] for r in results.get(name, [])]
    echoBest = [max(a, b) for a, b in zip(rates("echo, signing"), rates("echo, presigned"))]
    log("")
    echoCpu = [r["serverUs"] for name in ("echo, signing", "echo, presigned")
               for r in results.get(name, [])]
    log("case                   best/s   median/s   runs        server us/req  ratio to echo "
        "(best; per run)  by CPU")
    names = [f"{lma} {p}{m}" for lma in ("LMA", "LMA redis", "LMA no state")
             for m in ("", " +metrics")
             for p in PHASES]
    for name in ("echo, signing", "echo, presigned") + tuple(names):
        rs = rates(name)
        if not rs:
            continue
        cpu = min(r["serverUs"] for r in results[name])
        line = (f"{name:20} {max(rs):9.0f} {statistics.median(rs):10.0f}   "
                f"{'/'.join(f'{r / 1000:.0f}k' for r in rs):12} {cpu:6.1f}")
        if name.startswith("LMA") and echoBest:
            perRun = [r / e for r, e in zip(rs, echoBest)]
            line += (f"        {max(rs) / max(echoBest):.2f}; "
                     + " ".join(f"{x:.2f}" for x in perRun))
            # What the rates would be with a core each: the echo's CPU per
            # datagram over the LMA's per PBU (steadier on a busy machine).
            line += f"   {min(echoCpu) / cpu:.3f}"
        log(line)
    for p in PHASES:
        with_, without = (results.get(f"{lma} {p}") for lma in ("LMA", "LMA no state"))
        if with_ and without:
            # What durable state costs: the LMA with its state file over
            # the LMA without, by best rate and by CPU per answered PBU.
            rate = max(r["rate"] for r in with_) / max(r["rate"] for r in without)
            cpu = (min(r["serverUs"] for r in without)
                   / min(r["serverUs"] for r in with_))
            log(f"state cost, {p}: rate with/without {rate:.2f}, by CPU {cpu:.2f}")
        redis = results.get(f"LMA redis {p}")
        if with_ and redis:
            rate = max(r["rate"] for r in redis) / max(r["rate"] for r in with_)
            cpu = (min(r["serverUs"] for r in with_)
                   / min(r["serverUs"] for r in redis))
            log(f"Redis instead of SQLite, {p}: rate {rate:.2f}, by CPU {cpu:.2f}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--serve-echo", metavar="PORTFILE", help=argparse.SUPPRESS)
    p.add_argument("--limit", type=float, default=600, help=argparse.SUPPRESS)
    p.add_argument("--mobiles", type=int, default=100_000)
    p.add_argument("--seconds", type=float, default=10.0,
                   help="length of the refresh, handoff and echo phases (10)")
    p.add_argument("--window", type=int, default=128,
                   help="requests outstanding (128)")
    p.add_argument("--rounds", type=int, default=1,
                   help="measure echo and LMA this many times, alternately")
    p.add_argument("--profile", metavar="PREFIX",
                   help="sample the LMA with py-spy during each phase: PREFIX.PHASE.txt "
                        "(collapsed stacks)")
    p.add_argument("--keep", action="store_true",
                   help="keep the temporary config directory and the daemon's log")
    p.add_argument("--json", metavar="FILE", help="also write every figure to FILE")
    p.add_argument("--quick", action="store_true", help="smoke test: 5,000 mobiles, 2 s")
    p.add_argument("--without-state", action="store_true",
                   help="also measure the LMA with no state file (state_file = \"\")")
    p.add_argument("--redis", action="store_true",
                   help="also measure the LMA with its state in Redis (redis-server "
                        "started here; case 'LMA redis')")
    p.add_argument("--metrics", action="store_true",
                   help="each round also runs the LMA with [metrics] on, scraped every "
                        "second (cases '... +metrics')")
    args = p.parse_args()
    if args.serve_echo:
        serveEcho(args.serve_echo, args.limit)
        return
    if args.quick:
        args.mobiles = min(args.mobiles, 5000)
        args.seconds = 2.0
    if not 16 <= args.mobiles <= 1 << 20 or not 1 <= args.window <= 4096:
        raise SystemExit("--mobiles 16..1048576, --window 1..4096")

    def log(text):
        print(text, flush=True)

    keys = load.shippedKeys()
    sa = load.clientSa(keys)
    t = time.perf_counter()
    pbus = load.SignedPbus(args.mobiles, sa, mnId=False)
    for variant in (pbus, load.SignedPbus(16, sa, assigned=True)):
        variant.check(keys)
    log(f"{args.mobiles} mobiles, window {args.window}, {args.seconds:g} s per timed "
        f"phase, SA {sa.spi} {sa.algorithm}; PBUs built in "
        f"{time.perf_counter() - t:.1f} s ({os.cpu_count()} CPUs)")
    results = {}
    for n in range(args.rounds):
        log(f"round {n + 1}:")
        measureEcho(pbus, args, log, results)
        measureLma(args, log, results, args.profile if n == 0 else None)
        if args.without_state:
            measureLma(args, log, results, withState=False)
        if args.redis:
            measureLma(args, log, results, redis=True)
        if args.metrics:
            measureLma(args, log, results, metrics=True)
    summary(results, log)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
