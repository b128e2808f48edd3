"""
Where the LMA's time per PBU goes, stage by stage, without sockets or the
kernel: the daemon built from the shipped config (etc/netlmm/lma.toml, RFC
4285 on, the shipped keys), exactly as `twistd netlmm-lma` builds it, with a
socket that drops what is sent, fed signed datagrams by direct calls.

    python bench/lma_breakdown.py [--mobiles 100000] [--profile]

The state is the shipped one (the SQLite store, a file in a temporary
directory), its writes run on this thread when each batch ends instead of
on the store's own, so that their CPU is counted. It registers every mobile
(pHoAs they name), then runs three rounds of refresh PBUs and one of
handoffs, in batches of 64 as MHPort reads them, timing each stage of every
request (CPU time of this thread, so that other processes on the machine
hardly move it):

  decode    netlmm.wire.mh.decodeMessage, checksum included
  verify    LmaGuard.check: locate the authentication option, HMAC, the
            SA's scope, replay window
  core      LmaCore.receive (the binding's record for the store included)
  persist   IStateStore.put: the record encoded (JSON)
  execute   LmaService.execute: sign the BA in one encoding, checksum,
            sendto on the null socket, data-plane call (memory)
  rearm     RoleService._rearm: LmaCore.nextTimer and the callLater
  commit    the batch's SQLite transaction (and its fsync), per PBU

and then the whole path per request as the daemon runs it (MHPort._datagram
in batches: RoleService holding the PBAcks for the batch's commit) without
the per-stage clocks. With --profile that part runs under cProfile.
bench/lma_rate.py measures the daemon itself, over UDP, under twistd.
"""

import argparse
import gc
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import load  # noqa: E402


#: Datagrams per batch, as MHPort reads them at most (its _BATCH).
BATCH = 64


class NullSocket:
    """Takes what MHPort sends and drops it."""

    def sendto(self, data, target):
        return len(data)

    def fileno(self):
        return -1


class InlineWrites:
    """
    The store's C{run}: its writes wait until L{run} carries them out on
    this thread (the daemon has a thread of its own for them).
    """

    def __init__(self):
        self.pending = []

    def __call__(self, f, *args):
        from twisted.internet.defer import Deferred
        d = Deferred()
        self.pending.append((d, f, args))
        return d

    def run(self):
        while self.pending:
            d, f, args = self.pending.pop(0)
            d.callback(f(*args))


def shippedService(configs):
    """The LMA service `twistd netlmm-lma --config lma.toml` would run."""
    from netlmm.tap import lma as tap
    options = tap.Options()
    options.parseOptions(["--config", configs.path("lma.toml")])
    # The daemon's services in their start order: the LMA's first.
    return tap.makeService(options).ordered[0]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mobiles", type=int, default=100_000)
    p.add_argument("--profile", action="store_true")
    args = p.parse_args()
    if not 1 <= args.mobiles <= 1 << 20:
        raise SystemExit("--mobiles 1..1048576")

    from netlmm.store import SqliteStore

    configs = load.ShippedConfigs()
    try:
        configs.edit("lma.toml", "lma", "listen", '"[::1]:0"')
        service = shippedService(configs)
        if service.store is None:
            raise SystemExit("the shipped lma.toml keeps no state: this benchmark "
                             "expects it to")
        # The shipped store, its writes run by this thread (InlineWrites).
        writes = InlineWrites()
        service.store = SqliteStore(configs.path("bench-state.db"), "lma-bindings",
                                    service.reactor, run=writes)
        try:
            run(args, service, writes)
        finally:
            service.store._release()
    finally:
        configs.remove()


def run(args, service, writes):
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from netlmm.core.effects import Persist

    from netlmm.wire import mh

    # As under twistd: every log event is formatted and written (to a file
    # there; to /dev/null here).
    devnull = open(os.devnull, "w")
    globalLogBeginner.beginLoggingTo([textFileLogObserver(devnull)],
                                     redirectStandardIO=False)
    service.running = True          # so that _rearm arms its timer
    port = service.port
    port.socket = NullSocket()
    keys = load.shippedKeys()
    sa = load.clientSa(keys)
    n = args.mobiles
    clock = time.thread_time
    named = load.SignedPbus(n, sa, mnId=True)
    named.check(keys)
    source = load.LOOPBACK
    packed = source.packed
    addr = ("::1", 40000, 0, 0)
    datagram = port._datagram
    stamp = [load.ntpNow()]

    def ts():
        stamp[0] = max(stamp[0] + 1, load.ntpNow())
        return stamp[0]
    # As MHPort.doRead calls it (versions before it had none).
    batch = port.onBatch or (lambda starting: None)

    def whole(packets):
        """The daemon's path: MHPort's batches, the store's writes after each."""
        now = service.reactor.seconds()
        for b in range(0, len(packets), BATCH):
            batch(True)
            for data in packets[b:b + BATCH]:
                datagram(data, addr, packed, now)
            batch(False)
            writes.run()
    start = clock()
    whole([named.packet(i, 1, ts()) for i in range(n)])
    print(f"{n} mobiles registered: {(clock() - start) / n * 1e6:.2f} us CPU per PBU "
          "(new binding, named pHoA, whole path)")
    core = service.core
    if core.counters["accepted"] != n:
        raise SystemExit(f"registration failed: {core.counters}")
    # A full collection walks every object: with many bindings it is a
    # pause of the whole daemon, which the latency of the PBUs behind it
    # shows.
    start = time.perf_counter()
    gc.collect()
    print(f"a full garbage collection with {n} bindings: "
          f"{(time.perf_counter() - start) * 1e3:.0f} ms ({len(gc.get_objects())} "
          "objects tracked)")
    # What a daemon does after loading a large state (RoleService.loadState):
    # the objects there are now are never walked again.
    gc.freeze()
    start = time.perf_counter()
    gc.collect()
    print(f"the same after gc.freeze(): {(time.perf_counter() - start) * 1e3:.1f} ms")
    gc.unfreeze()
    del named
    pbus = load.SignedPbus(n, sa, mnId=False)
    seconds = service.reactor.seconds
    decode, receive = mh.decodeMessage, core.receive
    check = service.security.check
    execute, rearm = service.execute, service._rearm
    mobileOf = service._mobileOf
    collections = [0]
    gc.callbacks.append(lambda phase, info: phase == "start" and collections.__setitem__(
        0, collections[0] + 1))
    print("microseconds per PBU:")
    sequence = 2

    store = service.store
    put = store.put
    names = ("decode", "verify", "core", "persist", "execute", "rearm", "commit")

    def staged(kind, sequence):
        mag = sequence % 16 if kind == "handoff" else 0
        packets = [pbus.packet(i, sequence, ts(), mag) for i in range(n)]
        stages = [0.0] * len(names)
        collections[0] = 0
        accepted = core.counters["accepted"]
        start = clock()
        for first in range(0, n, BATCH):
            for data in packets[first:first + BATCH]:
                a = clock()
                message = decode(data, packed, packed)
                b = clock()
                now = seconds()
                verdict = check(message, data, source, now, mobileOf)
                c = clock()
                effects = receive(message, source, now)
                d = clock()
                rest = []
                for e in effects:
                    if type(e) is Persist:
                        put(e.key, e.record)
                    else:
                        rest.append(e)
                e = clock()
                service.context = ((source, 40000), verdict)
                execute(rest)
                service.context = None
                f = clock()
                rearm()
                g = clock()
                stages[0] += b - a
                stages[1] += c - b
                stages[2] += d - c
                stages[3] += e - d
                stages[4] += f - e
                stages[5] += g - f
            a = clock()
            store.commit()
            writes.run()
            stages[6] += clock() - a
        total = clock() - start
        if core.counters["accepted"] != accepted + n:
            raise SystemExit(f"{kind}: not all accepted: {core.counters}")
        print(f"  {kind:8}" + "  ".join(f"{name} {t / n * 1e6:5.2f}" for name, t in zip(
            names, stages)) + f"   loop {total / n * 1e6:5.2f}   ({collections[0]} GC runs)")

    for _ in range(3):
        staged("refresh", sequence)
        sequence += 1
    # The whole path, as MHPort hands a datagram over, for refreshes.
    packets = [pbus.packet(i, sequence, ts()) for i in range(n)]
    sequence += 1
    if args.profile:
        import cProfile
        import pstats
        profiler = cProfile.Profile()
        profiler.enable()
    accepted = core.counters["accepted"]
    start = clock()
    whole(packets)
    total = clock() - start
    if args.profile:
        profiler.disable()
        stats = pstats.Stats(profiler).sort_stats("tottime")
        stats.print_stats(30)
        if os.environ.get("CALLERS"):
            stats.print_callers(os.environ["CALLERS"])
    if core.counters["accepted"] != accepted + n:
        raise SystemExit(f"refreshes failed: {core.counters}")
    print(f"  whole path (MHPort._datagram in batches, commits): {total / n * 1e6:.2f} us "
          "per refresh PBU"
          + (" (under cProfile)" if args.profile else ""))
    staged("handoff", sequence)
    scrape(service, n)


def scrape(service, n):
    """What one scrape of the [metrics] page costs the daemon with N bindings."""
    try:
        from netlmm.metrics import MetricsService
    except ImportError:
        return
    from prometheus_client import generate_latest
    metrics = MetricsService(service.reactor, (load.LOOPBACK, 0), [service])
    start = time.perf_counter()
    page = generate_latest(metrics.registry)
    print(f"one scrape of the metrics with {n} bindings: "
          f"{(time.perf_counter() - start) * 1e3:.1f} ms on the reactor ({len(page)} octets)")


if __name__ == "__main__":
    main()
