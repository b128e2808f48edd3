"""
What changing domain costs a plain mobile (issue 10, draft 4.4): the time
from its new link coming up to the first packet from the correspondent
reaching it, for a move into the other LMA's domain (the other domain's PMIP
client registers it with the other LMA, the MAG advertises that LMA's prefix,
the mobile forms a new address by SLAAC with DAD) next to a move between two
MAGs of one domain (the baseline, same run: the address stays, only the
binding moves).

netlmm.lab.domains.TwoDomains without the GMA; its mobile mn (a stock Linux
host here: no `netlmm mn`) goes round MAG1 -> MAG2 -> MAG3 -> MAG1: MAG2 and
MAG3 put it in LMA2's domain, MAG1 in LMA1's, so two moves of three change
domain. After each move the correspondent pings the mobile's address every
10 ms from the moment it is usable; the time is from the link up to the
first reply. Needs root and a kernel with one PMIP data plane (the host's
userspace one will do).

    sudo python bench/domains.py [--moves 9] [--dataplane userspace]
"""

import argparse
import os
import signal
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from netlmm.lab.domain import parsePing  # noqa: E402
from netlmm.lab.domains import TwoDomains  # noqa: E402
from netlmm.lab.netns import readText  # noqa: E402


def moveAndReach(lab, mobile, mag, tag):
    """Move C{mobile} to C{mag}; (seconds from the link up to the first reply, address)."""
    mobile.detach()
    up = time.time()
    mobile.attach(mag)
    lab.waitFor(lambda: mobile.address() is not None, f"{mobile.node}'s address", 20)
    address = mobile.address()
    log = lab.path(f"ping-{tag}.log")
    ping = lab.start("cn", ["ping", "-D", "-i", "0.01", "-W", "1", str(address)], log)
    lab.waitFor(lambda: parsePing(readText(log))[2], f"a reply from {address}", 20)
    lab.stop(ping, sig=signal.SIGINT)
    return parsePing(readText(log))[2][0] - up, address


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--moves", type=int, default=9)
    parser.add_argument("--dataplane", default=None)
    args = parser.parse_args()
    lab = TwoDomains(dataplane=args.dataplane, gma=False)
    times = {"same": [], "other": []}
    try:
        lab.startAll()
        mobile = lab.mobile
        lab.attach(mobile, "mag1")
        at = "mag1"
        for i in range(args.moves):
            to = {"mag1": "mag2", "mag2": "mag3", "mag3": "mag1"}[at]
            before = mobile.address()
            seconds, address = moveAndReach(lab, mobile, to, str(i))
            kind = "same" if lab.domainOf(address) == lab.domainOf(before) else "other"
            times[kind].append(seconds)
            print(f"{kind:5} domain {at} -> {to}: first reply {seconds * 1000:7.1f} ms "
                  f"({before} -> {address})", flush=True)
            at = to
    finally:
        lab.destroy()
    same, other = (statistics.median(times[k]) for k in ("same", "other"))
    print(f"\n{args.moves} moves ({lab.dataplane} data plane); from the new link to the first "
          "packet reaching the mobile:")
    print(f"  same domain (address kept), {len(times['same'])} moves  median "
          f"{same * 1000:7.1f} ms  worst {max(times['same']) * 1000:7.1f} ms")
    print(f"  other domain (new address), {len(times['other'])} moves median "
          f"{other * 1000:7.1f} ms  worst {max(times['other']) * 1000:7.1f} ms")
    print(f"  ratio (median)                        {other / same:.2f}")


if __name__ == "__main__":
    main()
