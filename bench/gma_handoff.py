"""
How long a Mobile IPv6 mobile (`netlmm mn`) is unreachable at its home
address when its care-of address changes: the time from the moment the new
care-of address is on the mobile to the first packet that reaches it through
the GMA on the new path, next to the time to the first packet sent straight
to that care-of address (the baseline: the access link and the kernel,
without any mobility), measured in the same run.

The correspondent pings the home address and the mobile's care-of address on
the other access network every 10 ms; the mobile moves AR1 -> AR2 -> AR1 ...
(its link deleted and re-created into the other router's bridge, then its
care-of address added). Needs root and a kernel with mip6, ip6tnl and seg6
(on the build machines: `../shared/tools/kernel-lab run -- .venv/bin/python
bench/gma_handoff.py`, where every figure is stretched by the emulated CPU).

    sudo python bench/gma_handoff.py [--moves 10]
"""

import argparse
import os
import re
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from netlmm.lab.mip6 import HOME_ADDRESS, ROUTERS, MobileIpv6Lab  # noqa: E402
from netlmm.lab.wait import waitFor  # noqa: E402

REPLY = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from ([0-9a-f:]+)")


def replies(path):
    """(time, source) of each echo reply in a `ping -D` log."""
    out = []
    with open(path) as f:
        for line in f:
            m = REPLY.match(line)
            if m:
                out.append((float(m.group(1)), m.group(2)))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--moves", type=int, default=10)
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="netlmm-gma-bench-")
    with MobileIpv6Lab(directory=directory) as lab:
        lab.build()
        lab.startGma()
        lab.moveTo("ar1")
        lab.startMobile(lifetime=600)
        lab.waitBound("ar1", timeout=120)
        logs = {}
        for name, target in (("home", HOME_ADDRESS), ("ar1", ROUTERS["ar1"][1]),
                             ("ar2", ROUTERS["ar2"][1])):
            logs[name] = lab.path(f"ping-{name}.log")
            lab.start("cn", ["ping", "-6", "-D", "-n", "-i", "0.01", "-W", "1", target],
                      log=logs[name])
        time.sleep(2)
        results = []
        at, bound = "ar1", {"ar1": 1, "ar2": 0}
        for _ in range(args.moves):
            to = "ar2" if at == "ar1" else "ar1"
            lab.mobile.detach()
            time.sleep(0.5)
            lab.mobile.attach(to)
            lab.exec("mn", "ip", "-6", "route", "replace", "default", "via",
                     ROUTERS[to][0].replace("::/64", "::1"), "dev", "eth0", "onlink")
            added = time.time()
            lab.addr("mn", "eth0", ROUTERS[to][1] + "/64")
            bound[to] += 1
            lab.waitBound(to, count=bound[to], timeout=120)

            def after(name):
                return [t for t, _ in replies(logs[name]) if t > added]
            waitFor(lambda: after("home") and after(to), "replies on the new path",
                    timeout=60)
            time.sleep(1)
            home, direct = after("home")[0] - added, after(to)[0] - added
            results.append((to, home, direct))
            print(f"-> {to}: first reply via the GMA {home * 1000:7.1f} ms, "
                  f"straight to the care-of address {direct * 1000:7.1f} ms", flush=True)
            at = to
        signalling = [float(m) for m in re.findall(r"bound .* (\d+) ms after", lab.log("mn"))]
    homes = [h for _, h, _ in results]
    directs = [d for _, _, d in results]
    print(f"\n{len(results)} moves; from the new care-of address to the first packet:")
    print(f"  through the GMA (home address)  median {statistics.median(homes) * 1000:7.1f} ms"
          f"  worst {max(homes) * 1000:7.1f} ms")
    print(f"  straight (baseline)              median {statistics.median(directs) * 1000:7.1f} ms"
          f"  worst {max(directs) * 1000:7.1f} ms")
    print(f"  ratio (median)                   {statistics.median(homes) / statistics.median(directs):.2f}")
    if signalling:
        print(f"  BU -> accepted BA at the mobile  median {statistics.median(signalling):7.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
