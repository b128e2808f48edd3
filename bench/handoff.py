#!/usr/bin/env python3
"""
Handoff interruption with real hosts (root): the end-to-end namespace domain
(netlmm.lab.domain), the real daemons, a stock-Linux mobile using SLAAC, and a CN
pinging the mobile every 10 ms. The mobile hands off N times between MAG1 and
MAG2; for each data plane the script prints the median and the worst
interruption (longest gap between echo replies) and the packets lost. A data
plane this kernel cannot run is left out with the reason.

    sudo python bench/handoff.py              # 20 handoffs, seg6 and userspace
    sudo python bench/handoff.py --handoffs 5 --dataplane seg6
"""

import argparse
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from netlmm.lab import kernel  # noqa: E402
from netlmm.lab.domain import NetnsDomain, dataPlaneMissing  # noqa: E402


def measure(dataplane, handoffs, interval):
    """Interruptions (s) and losses of C{handoffs} handoffs."""
    domain = NetnsDomain(tempfile.mkdtemp(prefix=f"bench-{dataplane}-"), dataplane)
    results = []
    try:
        domain.start()
        domain.attach("mag1")
        for i in range(handoffs):
            target = "mag2" if i % 2 == 0 else "mag1"
            r = domain.handoff(target, flowInterval=interval)
            results.append(r)
            print(f"  {dataplane} handoff {i + 1:2d} -> {target}: "
                  f"{r['interruption'] * 1000:7.1f} ms, {r['lost']} lost of {r['sent']}",
                  flush=True)
        domain.detach()
    finally:
        domain.stop()
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--handoffs", type=int, default=20)
    parser.add_argument("--interval", type=float, default=0.01, help="ping interval, s")
    parser.add_argument("--dataplane", action="append", choices=("seg6", "userspace"))
    args = parser.parse_args()
    reason = kernel.needsRoot()
    if reason:
        sys.exit(f"bench/handoff.py: {reason}")
    summary = []
    for plane in args.dataplane or ["seg6", "userspace"]:
        reason = dataPlaneMissing(plane)
        if reason:
            summary.append(f"{plane:9s} not measured: this kernel has {reason}")
            continue
        results = measure(plane, args.handoffs, args.interval)
        gaps = [r["interruption"] * 1000 for r in results]
        lost = [r["lost"] for r in results]
        summary.append(f"{plane:9s} handoffs {len(gaps)}  interruption median "
                       f"{statistics.median(gaps):.0f} ms  worst {max(gaps):.0f} ms  "
                       f"lost median {statistics.median(lost):.0f}  worst {max(lost)} "
                       f"(ping every {args.interval * 1000:.0f} ms)")
    print()
    for line in summary:
        print(line)


if __name__ == "__main__":
    main()
