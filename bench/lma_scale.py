"""
Scale-out: the aggregate rate of 1..N LMA daemons sharing one domain's
mobiles, each mobile owned by one of them (issue 12 item 3).

    python bench/lma_scale.py                   # 1, 2, 3, 4 LMAs, SQLite state
    python bench/lma_scale.py --redis           # their state in one redis-server
    python bench/lma_scale.py --quick           # 2,000 mobiles a process, 2 s

The partition is the PMIP client's `[pmip.anchor] policy = "hash"`
(netlmm.core.anchors.HashAnchors: SHA-256 of the MN identifier modulo the
number of LMAs, doc/deployment.md): every LMA is a `[[pmip.lmas]]` entry of
its own (here: its own port on [::1]; on several machines its own address),
with its own pool slice and its own state (a state file each, or with
--redis a `prefix` each in one Redis), so nothing is shared between them but
Redis. Each LMA is `twistd -n netlmm-lma` with the shipped lma.toml (RFC 4285
on) and gets its own generator process (bench/lma_rate.py's phases:
registration untimed, then signed refresh PBUs round-robin over its
mobiles for --seconds), all generators running at once; the aggregate is
the sum of their rates of accepted PBUs.

On a machine of C cores, N LMAs plus N generators share the C cores: the
aggregate grows while 2N <= C and stops there; the line per N gives the
CPU each LMA got, to tell a saturated machine from a saturated design.
Traffic goes only to [::1].
"""

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import load  # noqa: E402
import lma_rate  # noqa: E402


def owners(count, n):
    """The MN identifiers of C{count} mobiles that hash to each of C{n} LMAs."""
    from netlmm.core.anchors import Anchor, HashAnchors
    policy = HashAnchors([Anchor(f"lma{i}", "::1", 5436 + i) for i in range(n)])
    mine = [[] for _ in range(n)]
    i = 0
    while min(len(m) for m in mine) < count:
        mnId = b"scale%d@bench" % i
        index = int(policy.byIdentifier(mnId).name[3:])
        if len(mine[index]) < count:
            mine[index].append(mnId)
        i += 1
    return mine


def drive(port, pid, mnIds, seconds, window, out):
    """One generator against one LMA: register C{mnIds}, then time refreshes."""
    keys = load.shippedKeys()
    sa = load.clientSa(keys)
    count = len(mnIds)
    names = _Names(mnIds)
    named = load.SignedPbus(count, sa, mnId=True, mnIdFormat=names)
    gen = load.Generator(port, window)
    stamps = lma_rate.Stamps()
    ok, bad, lost, _, _ = gen.run(lma_rate.registrations(named, stamps), 600,
                                  lma_rate.isAccepted, stall=5)
    if ok != count:
        raise SystemExit(f"registration: {ok} of {count} accepted ({bad} refused, "
                         f"{lost} lost)")
    refresh = load.SignedPbus(count, sa, mnId=False, mnIdFormat=names)
    # Start together: say this one is ready, wait for the go file.
    open(out + ".ready", "w").close()
    while not os.path.exists(out + ".go"):
        time.sleep(0.01)
    meter = load.Meter(pid)
    ok, bad, lost, sent, elapsed = gen.run(
        lma_rate.refreshes(refresh, stamps, 2, False, {}), seconds, lma_rate.isAccepted)
    server, _, others = meter.stop()
    gen.close()
    with open(out, "w") as f:
        json.dump(dict(rate=ok / elapsed, bad=bad, lost=lost, server=server / elapsed,
                       others=others / elapsed), f)


def measure(n, args, log):
    """n LMAs, n generators at once: the aggregate rate."""
    configs = load.ShippedConfigs()
    server = None
    if args.redis:
        from netlmm.lab.redis import RedisServer
        server = RedisServer(configs.dir, fsync=args.fsync).start()
    daemons, drivers = [], []
    try:
        ports = []
        for i in range(n):
            port = load.freePort()
            ports.append(port)
            name = f"lma{i}.toml"
            with open(configs.path("lma.toml")) as f:
                text = f.read()
            with open(configs.path(name), "w") as f:
                f.write(text)
            configs.edit(name, "lma", "listen", f'"[::1]:{port}"')
            # A pool slice each (the shipped pool 2001:db8:1::100-ffff).
            configs.edit(name, "lma.pool", "first", f'"2001:db8:1::{0x100 + i * 0x3000:x}"')
            configs.edit(name, "lma.pool", "last", f'"2001:db8:1::{0x100 + i * 0x3000 + 0x2fff:x}"')
            if server is not None:
                configs.edit(name, "lma", "state_file", '""')
                with open(configs.path(name), "a") as f:
                    f.write(f'\n[state]\nbackend = "redis"\nsocket = "{server.socket}"\n'
                            f'prefix = "lma{i}:"\ntimeout = {args.timeout}\n')
            else:
                configs.edit(name, "lma", "state_file", f'"{configs.path(f"state{i}.db")}"')
            d = load.Daemon("lma", configs.path(name), configs.path(f"lma{i}.log"))
            daemons.append(d)
        for d in daemons:
            d.waitFor(r"LMA listening")
        outs = [configs.path(f"result{i}.json") for i in range(n)]
        for i in range(n):
            drivers.append(subprocess.Popen(
                [sys.executable, __file__, "--drive", str(ports[i]), str(daemons[i].pid),
                 outs[i], "--seconds", str(args.seconds), "--window", str(args.window),
                 "--mobiles", str(args.mobiles), "--of", str(n), "--index", str(i)]))
        # Every generator registered its mobiles: go.
        deadline = time.monotonic() + 600
        while not all(os.path.exists(out + ".ready") for out in outs):
            if any(p.poll() not in (None, 0) for p in drivers):
                raise SystemExit("a generator failed")
            if time.monotonic() > deadline:
                raise SystemExit("the generators did not register within 600 s")
            time.sleep(0.1)
        for out in outs:
            open(out + ".go", "w").close()
        for p in drivers:
            if p.wait(args.seconds * 4 + 600):
                raise SystemExit("a generator failed")
        results = []
        for out in outs:
            with open(out) as f:
                results.append(json.load(f))
        total = sum(r["rate"] for r in results)
        each = " ".join("%.0f" % r["rate"] for r in results)
        cpu = " ".join("%.0f%%" % (100 * r["server"]) for r in results)
        log(f"{n} LMA{'s' if n > 1 else ' '}: aggregate {total:8.0f} refresh PBUs/s  "
            f"(each: {each}; LMA CPU {cpu}; others "
            f"{max(r['others'] for r in results):.0%} of a core; bad "
            f"{sum(r['bad'] for r in results)}, lost {sum(r['lost'] for r in results)})")
        return total
    finally:
        for p in drivers:
            if p.poll() is None:
                p.kill()
        for d in daemons:
            d.stop()
        if server is not None:
            server.stop()
        configs.remove()


class _Names:
    """Given MN identifiers where load.SignedPbus asks for C{format % i}."""

    def __init__(self, mnIds):
        self.mnIds = mnIds

    def __mod__(self, i):
        return self.mnIds[i]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--drive", nargs=3, metavar=("PORT", "PID", "OUT"), help=argparse.SUPPRESS)
    p.add_argument("--of", type=int, help=argparse.SUPPRESS)
    p.add_argument("--index", type=int, help=argparse.SUPPRESS)
    p.add_argument("--processes", type=int, default=4, help="up to this many LMAs (4)")
    p.add_argument("--mobiles", type=int, default=10_000, help="mobiles per LMA (10,000)")
    p.add_argument("--seconds", type=float, default=10.0, help="timed phase (10 s)")
    p.add_argument("--window", type=int, default=128, help="requests outstanding (128)")
    p.add_argument("--redis", action="store_true", help="state in one redis-server")
    p.add_argument("--fsync", default="always", choices=("always", "everysec", "no"),
                   help="the redis-server's appendfsync (always)")
    p.add_argument("--timeout", type=float, default=5.0,
                   help="[state] timeout with --redis (5 s: a shared disk's fsyncs "
                        "can take seconds)")
    p.add_argument("--quick", action="store_true", help="2,000 mobiles, 2 s")
    args = p.parse_args()
    if args.quick:
        args.mobiles, args.seconds = min(args.mobiles, 2000), 2.0
    if args.drive:
        port, pid, out = args.drive
        mnIds = owners(args.mobiles, args.of)[args.index]
        drive(int(port), int(pid), mnIds, args.seconds, args.window, out)
        return

    def log(text):
        print(text, flush=True)
    log(f"{args.mobiles} mobiles per LMA, window {args.window}, {args.seconds:g} s, "
        f"state {f'in Redis (appendfsync {args.fsync})' if args.redis else 'SQLite'}, "
        f"{os.cpu_count()} CPUs")
    first = None
    for n in range(1, args.processes + 1):
        total = measure(n, args, log)
        first = first or total
        log(f"   {total / first:.2f} x one LMA")


if __name__ == "__main__":
    main()
