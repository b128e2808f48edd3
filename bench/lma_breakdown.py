"""
Where the LMA's time per refresh PBU goes, without sockets or the kernel.

    python bench/lma_breakdown.py [--mobiles 100000] [--profile]

Builds the daemon as lma_rate.py does (LmaService, LmaCore, MHPort over UDP,
MemoryDataPlane) but replaces its socket by one that drops what is sent, then
hands it datagrams directly. It registers every mobile, then runs three
rounds of refresh PBUs, timing each stage of every request:

  decode    netlmm.wire.mh.decodeMessage, checksum included
  core      LmaCore.receive
  execute   LmaService.execute: BA encoding (checksum included) and sendto
            on the null socket
  rearm     RoleService._rearm: LmaCore.nextTimer and the callLater

and then the whole of MHPort._datagram per request (the same work without the
per-stage clocks). With --profile the last part runs under cProfile.
"""

import argparse
import gc
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for path in (ROOT, HERE):
    if path not in sys.path:
        sys.path.insert(0, path)

import lma_rate as B  # noqa: E402


class NullSocket:
    """Takes what MHPort sends and drops it."""

    def sendto(self, data, target):
        return len(data)

    def fileno(self):
        return -1


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mobiles", type=int, default=100_000)
    p.add_argument("--profile", action="store_true")
    args = p.parse_args()
    if not 1 <= args.mobiles <= 1 << 20:
        raise SystemExit("--mobiles 1..1048576")

    from twisted.internet import reactor

    from netlmm.core.lma import AddressPool, LmaCore
    from netlmm.dataplane.memory import MemoryDataPlane
    from netlmm.service.lma import LmaService
    from netlmm.wire import mh

    n = args.mobiles
    core = LmaCore(B.HOME_PREFIX, [f"{B.LOOPBACK}/128"], B.MAX_LIFETIME,
                   pool=AddressPool(*B.POOL))
    service = LmaService(reactor, core, (B.LOOPBACK, 0), "udp", MemoryDataPlane())
    service.running = True          # so that _rearm arms its timer
    port = service.port
    port.socket = NullSocket()
    pbus = B.Pbus(n)
    source = B.LOOPBACK
    packed = source.packed
    addr = ("::1", 40000, 0, 0)
    datagram = port._datagram
    for i in range(n):
        datagram(pbus.packet(i, 0), addr, packed, 0)
    if core.counters["accepted"] != n:
        raise SystemExit(f"registration failed: {core.counters}")

    clock = time.perf_counter
    seconds = reactor.seconds
    decode, receive = mh.decodeMessage, core.receive
    execute, rearm = service.execute, service._rearm
    collections = [0]
    gc.callbacks.append(lambda phase, info: phase == "start" and collections.__setitem__(
        0, collections[0] + 1))
    print(f"{n} mobiles bound; microseconds per refresh PBU:")
    for sequence in (1, 2, 3):
        packets = [pbus.packet(i, sequence) for i in range(n)]
        stages = [0.0] * 4
        collections[0] = 0
        start = clock()
        for data in packets:
            a = clock()
            message = decode(data, packed, packed)
            b = clock()
            effects = receive(message, source, seconds())
            c = clock()
            service._replyTo = (source, 40000)
            execute(effects)
            service._replyTo = None
            d = clock()
            rearm()
            e = clock()
            stages[0] += b - a
            stages[1] += c - b
            stages[2] += d - c
            stages[3] += e - d
        total = clock() - start
        print("  " + "  ".join(f"{name} {t / n * 1e6:5.2f}" for name, t in zip(
            ("decode", "core", "execute", "rearm"), stages))
            + f"   loop {total / n * 1e6:5.2f}   ({collections[0]} GC runs)")
    packets = [pbus.packet(i, 4) for i in range(n)]
    if args.profile:
        import cProfile
        import pstats
        profiler = cProfile.Profile()
        profiler.enable()
    start = clock()
    for data in packets:
        datagram(data, addr, packed, 0)
    total = clock() - start
    if args.profile:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    if core.counters["accepted"] != 5 * n:
        raise SystemExit(f"refreshes failed: {core.counters}")
    print(f"MHPort._datagram, whole path: {total / n * 1e6:.2f} us per refresh PBU"
          + (" (under cProfile)" if args.profile else ""))


if __name__ == "__main__":
    main()
