#!/usr/bin/env python3
"""
Handover interruption with real hosts (root): the namespace domain
(netlmm.lab.domain) with the real daemons, a stock-Linux mobile, a downlink
UDP stream of 1,000 packets/s from the CN to the mobile plus a 10 ms ping
from the mobile. The mobile hands over N times between MAG1 and MAG2; for
each case the script prints the median and the worst interruption of the
stream (the longest gap between packets), and the packets lost, duplicated
and reordered per handover (median and worst), and the ping's losses.

Cases (a case this machine cannot run is left out with the reason):

  wifi-forwarding  Wi-Fi roam steered by the old AP (802.11v), context
                   transfer, forwarding and the hold on   (mac80211_hwsim)
  wifi-reactive    Wi-Fi roam by the station (wpa_cli roam), the new MAG
                   asks for the context                   (mac80211_hwsim)
  wifi-baseline    Wi-Fi roam, no handover support, no shared router
                   identity: what netlmm did before       (mac80211_hwsim)
  wired-dad        link deleted and made at the other MAG, stock DAD (1 s),
                   forwarding and the hold on
  wired-optimistic the same with a mobile using optimistic DAD (RFC 4429)
  wired-baseline   link deleted and made, no handover support

    sudo python bench/handoff.py                        # every case, 20 handovers each
    sudo python bench/handoff.py --case wired-dad --handovers 5 --dataplane userspace

Wi-Fi cases need mac80211_hwsim: run the script under kernel-lab
(`kernel-lab run -- python3 bench/handoff.py --case wifi-...`), whose
emulated CPU is about 16 times slower (see doc/performance.md).
"""

import argparse
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from netlmm.lab import kernel  # noqa: E402
from netlmm.lab.domain import NetnsDomain, dataPlaneMissing  # noqa: E402

OPTIMISTIC = ("net.ipv6.conf.default.optimistic_dad=1", "net.ipv6.conf.default.use_optimistic=1")

#: case -> (NetnsDomain keywords, handoff keywords)
CASES = {
    "wifi-forwarding": (dict(wifi=True, handover=True), dict(steer=True)),
    "wifi-reactive": (dict(wifi=True, handover=True), dict()),
    "wifi-baseline": (dict(wifi=True), dict()),
    "wired-dad": (dict(handover=True), dict()),
    "wired-optimistic": (dict(handover=True, mobileSysctls=OPTIMISTIC), dict()),
    "wired-baseline": (dict(), dict()),
}


def measure(case, dataplane, handovers, rate):
    """The handoffFlow results of C{handovers} handovers in C{case}."""
    domainArgs, handoffArgs = CASES[case]
    workdir = tempfile.mkdtemp(prefix=f"bench-{case}-")
    domain = NetnsDomain(workdir, dataplane, **domainArgs)
    results = []
    try:
        domain.start()
        domain.attach("mag1")
        for i in range(handovers):
            target = "mag2" if i % 2 == 0 else "mag1"
            r = domain.handoffFlow(target, rate=rate, **handoffArgs)
            results.append(r)
            print(f"  {case} {domain.dataplane} handover {i + 1:2d} -> {target}: "
                  f"{r['interruption'] * 1000:7.1f} ms, lost {r['lost']}, dup "
                  f"{r['duplicated']}, reordered {r['reordered']} of {r['sent']}; ping lost "
                  f"{r['pingLost']} of {r['pingSent']}", flush=True)
    finally:
        domain.stop()
    return domain.dataplane, results


def missing(case, dataplane):
    """Why this machine cannot run C{case}, or None."""
    if CASES[case][0].get("wifi"):
        reason = kernel.missing("mac80211_hwsim")
        if reason:
            return f"this kernel has {reason} (run it under kernel-lab)"
    if dataplane is not None:
        reason = dataPlaneMissing(dataplane)
        if reason:
            return f"this kernel has {reason}"
    return None


def summary(case, plane, results, rate):
    """One line: median and worst of each figure."""
    def stat(key, scale=1, fmt="{:.0f}"):
        values = [r[key] * scale for r in results]
        return f"{fmt.format(statistics.median(values))}/{fmt.format(max(values))}"
    return (f"{case:16s} {plane:9s} n={len(results)}  interruption {stat('interruption', 1000)} "
            f"ms  lost {stat('lost')}  dup {stat('duplicated')}  reordered "
            f"{stat('reordered')}  (median/worst of {rate:.0f} packets/s)  ping lost "
            f"{stat('pingLost')}  ping gap {stat('pingInterruption', 1000)} ms")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--handovers", type=int, default=20)
    parser.add_argument("--rate", type=float, default=1000.0, help="stream packets/s")
    parser.add_argument("--case", action="append", choices=sorted(CASES))
    parser.add_argument("--dataplane", choices=("seg6", "userspace", "ip6tnl"), default=None,
                        help="default: the best this kernel has")
    args = parser.parse_args()
    reason = kernel.needsRoot()
    if reason:
        sys.exit(f"bench/handoff.py: {reason}")
    lines = []
    for case in args.case or list(CASES):
        reason = missing(case, args.dataplane)
        if reason:
            lines.append(f"{case:16s} not measured: {reason}")
            continue
        plane, results = measure(case, args.dataplane, args.handovers, args.rate)
        lines.append(summary(case, plane, results, args.rate))
    print()
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
