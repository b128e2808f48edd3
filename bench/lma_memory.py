"""
Resident memory per binding of the LMA's binding cache.

    python bench/lma_memory.py                   # 1,000,000 bindings
    python bench/lma_memory.py --bindings 100000
    python bench/lma_memory.py --assigned        # pHoAs from the LMA's pool
    python bench/lma_memory.py --tracemalloc     # also: which lines allocate

A fresh subprocess builds an L{LmaCore} (home prefix 2001:db8:1::/64, ::1/128
authorized, maxLifetime 262140 s so that nothing expires), reads VmRSS from
/proc/self/status, then feeds it one Proxy Binding Update per mobile: each is
built, encoded with its checksum and decoded again by netlmm.wire.mh, as the
daemon would receive it, and handed to C{core.receive} directly (no sockets,
no reactor: the UDP daemon would take minutes for a million mobiles and adds
nothing to what the binding cache keeps), followed by C{core.nextTimer()}
as the daemon's timer re-arming does after every input. All PBUs come from one MAG client
address object, as the daemon's MH transport passes them. VmRSS is read again
after every mobile is bound, and once more after one refresh PBU per mobile.
The growth divided by the number of bindings is the figure; the goal is under
1 KiB.

With --assigned the PBUs ask the LMA for a pHoA (Home Network Prefix ::) and
the pool's bookkeeping is included; otherwise the PBUs name their pHoA
(2001:db8:1::1:0:0 + i), outside the pool.
"""

import argparse
import gc
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

HOME_PREFIX = "2001:db8:1::/64"
PHOA_BASE = "2001:db8:1::1:0:0"
MAX_LIFETIME = 262140
LIFETIME_UNITS = 65535


def rss():
    """This process's resident set size, bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _rounded(size):
    """What pymalloc really takes for a small object: 16-octet classes."""
    return (size + 15) // 16 * 16 if size <= 512 else size


def breakdown(core):
    """Bytes per binding, structure by structure, by sys.getsizeof."""
    from sys import getsizeof

    n = len(core.bindings)
    b = next(iter(core.bindings.values()))
    # Pending expiries: one FIFO per granted lifetime, plus a heap for the
    # rare out-of-order time.
    heap = core._expiries.entries()
    parts = {
        "Binding object": _rounded(getsizeof(b)),
        "pHoA IPv6Address": _rounded(getsizeof(b.phoa)) + _rounded(getsizeof(b.phoa._ip)),
        "MN identifier bytes": _rounded(getsizeof(b.mnId)),
        "expiry float": _rounded(getsizeof(b.expiry)),
        "bindings dict": getsizeof(core.bindings) / n,
        "MN identifier dict": getsizeof(core._byMnId) / n,
        "home index dict (keys: the pHoAs' own ints)": getsizeof(core._byHome) / n,
        "pending expiries (deques + tuples)":
            (getsizeof(heap) + len(heap) * _rounded(getsizeof(heap[0]))) / n,
        "stale entries' floats": max(0, len(heap) - n) * 24 / n,
    }
    if core.pool is not None and core.pool.inUse:
        blocks = core.pool._slots._blocks
        parts["pool (bitmap blocks)"] = (getsizeof(blocks) + len(blocks) * _rounded(
            getsizeof(next(iter(blocks.values()))))) / n
    # lifetime, sequence: small ints, shared; pCoA and client: shared objects.
    return parts, len(heap)


def child(count, assigned, trace):
    from ipaddress import IPv6Address

    from netlmm.core.lma import AddressPool, LmaCore
    from netlmm.wire import mh

    if trace:
        import tracemalloc
        tracemalloc.start(1)
    client = IPv6Address("::1")
    packedClient = client.packed
    mags = [IPv6Address(f"2001:db8:ff::{i + 1:x}") for i in range(16)]
    base = int(IPv6Address(PHOA_BASE))
    pool = AddressPool("2001:db8:1::2:0:0", IPv6Address("2001:db8:1::2:0:0") + count)
    core = LmaCore(HOME_PREFIX, [f"{client}/128"], MAX_LIFETIME, pool=pool)
    flags = mh.BU_A | mh.BU_H | mh.BU_P
    unspecified = IPv6Address("::")
    encode, decode, receive = mh.encodeMessage, mh.decodeMessage, core.receive
    nextTimer = core.nextTimer

    def feed(sequence):
        t = time.perf_counter()
        now = 1000.0 + sequence
        for i in range(count):
            phoa = unspecified if assigned and sequence == 0 else (
                core.bindingFor(b"mn%d@bench" % i).phoa if assigned
                else IPv6Address(base + i))
            bu = mh.BindingUpdate(sequence, flags, LIFETIME_UNITS, [
                mh.HomeNetworkPrefix(phoa),
                mh.AlternateCareOfAddress(mags[i % len(mags)]),
                mh.MobileNodeIdentifier(b"mn%d@bench" % i),
            ])
            message = decode(encode(bu, packedClient, packedClient),
                             packedClient, packedClient)
            effects = receive(message, client, now + i * 1e-6)
            nextTimer()         # as the daemon re-arms its timer after each input
            ba = effects[-1].message
            if ba.status != 0:
                raise SystemExit(f"mobile {i}: {ba!r}")
        return time.perf_counter() - t

    gc.collect()
    before = rss()
    if trace:
        snap0 = tracemalloc.take_snapshot()
    elapsed = feed(0)
    gc.collect()
    bound = rss()
    if trace:
        snap1 = tracemalloc.take_snapshot()
    refreshElapsed = feed(1)
    gc.collect()
    refreshed = rss()
    if len(core.bindings) != count or core.counters["accepted"] != 2 * count:
        raise SystemExit(f"expected {count} bindings: {core.counters}")
    parts, heapLength = breakdown(core)
    result = {
        "bindings": count, "rssBefore": before, "rssBound": bound,
        "rssRefreshed": refreshed, "seconds": elapsed,
        "refreshSeconds": refreshElapsed, "parts": parts, "heap": heapLength,
    }
    if trace:
        stats = snap1.compare_to(snap0, "lineno")
        result["tracemalloc"] = [
            (str(s.traceback[0]), s.size_diff, s.count_diff) for s in stats[:12]]
    print(json.dumps(result), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bindings", type=int, default=1_000_000)
    p.add_argument("--assigned", action="store_true",
                   help="let the LMA assign the pHoAs from its pool")
    p.add_argument("--tracemalloc", action="store_true",
                   help="also list the lines that allocate the most (slow)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if not 1 <= args.bindings <= 10_000_000:
        raise SystemExit("--bindings 1..10000000")
    if args.child:
        child(args.bindings, args.assigned, args.tracemalloc)
        return
    cmd = [sys.executable, os.path.abspath(__file__), "--child",
           "--bindings", str(args.bindings)]
    if args.assigned:
        cmd.append("--assigned")
    if args.tracemalloc:
        cmd.append("--tracemalloc")
    out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True,
                         cwd=ROOT, timeout=3600).stdout
    r = json.loads(out.strip().splitlines()[-1])
    n = r["bindings"]
    per = (r["rssBound"] - r["rssBefore"]) / n
    perRefreshed = (r["rssRefreshed"] - r["rssBefore"]) / n
    print(f"{n} bindings ({'pool-assigned' if args.assigned else 'MAG-named'} pHoAs), "
          f"bound in {r['seconds']:.1f} s, refreshed in {r['refreshSeconds']:.1f} s "
          "(encode + decode + core.receive, no sockets)")
    print(f"VmRSS {r['rssBefore'] / 2**20:.1f} MiB before, {r['rssBound'] / 2**20:.1f} MiB "
          f"bound, {r['rssRefreshed'] / 2**20:.1f} MiB after one refresh each "
          f"({r['heap']} pending expiries)")
    print("estimate by sys.getsizeof, bytes per binding:")
    for name, size in r["parts"].items():
        print(f"  {name:30s} {size:7.1f}")
    print(f"  {'total':30s} {sum(r['parts'].values()):7.1f}")
    if "tracemalloc" in r:
        print("tracemalloc, growth while binding, by line:")
        for where, size, count in r["tracemalloc"]:
            print(f"  {size / n:8.1f} B/binding  {count / n:6.2f} blocks/binding  {where}")
    if "tracemalloc" in r:
        print(f"tracemalloc total {sum(s for _, s, _ in r['tracemalloc']) / n:.0f} bytes/binding "
              "(VmRSS is not meaningful with tracemalloc on: run without it)")
        return
    verdict = "under" if perRefreshed < 1024 else "OVER"
    print(f"lma memory {per:.0f} bytes/binding bound, {perRefreshed:.0f} after refresh "
          f"({verdict} 1 KiB)")


if __name__ == "__main__":
    main()
