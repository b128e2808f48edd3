#!/usr/bin/env python3
"""
Data-plane throughput with real hosts (root): TCP from the CN to the mobile
through the LMA and MAG1, with the seg6 and userspace data planes, next to
plain kernel routing (host routes, no tunnel) between the same namespaces,
measured in the same run with the same sender and receiver; prints each rate
and its ratio to plain routing. A data plane this kernel cannot run is left
out with the reason.

    sudo python bench/throughput.py                 # 3 rounds of 3 s each
    sudo python bench/throughput.py --seconds 5 --rounds 5
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from netlmm.lab import eui64, kernel  # noqa: E402
from netlmm.lab.domain import (  # noqa: E402
    HOME_PREFIX, MN_MAC, NetnsDomain, Topology, dataPlaneMissing,
)

PORT = 5999
RECEIVER = """
import socket, sys, time
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", %d)); s.listen(1); s.settimeout(30)
c, _ = s.accept(); c.settimeout(30)
total = 0; start = None
while True:
    data = c.recv(1 << 20)
    if not data:
        break
    if start is None:
        start = time.monotonic()
    total += len(data)
print(total, time.monotonic() - start)
""" % PORT
SENDER = """
import socket, sys, time
s = socket.create_connection((sys.argv[1], %d), timeout=30)
block = bytes(1 << 16); end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    s.sendall(block)
s.close()
""" % PORT


def transfer(topology, target, seconds):
    """Bits per second from the CN to C{target} (in the MN namespace)."""
    receiver = subprocess.Popen(["ip", "netns", "exec", topology.ns("mn"), sys.executable,
                                 "-c", RECEIVER], stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
    topology.exec("cn", sys.executable, "-c", SENDER, str(target), str(seconds),
                  timeout=seconds + 40)
    out, _ = receiver.communicate(timeout=40)
    total, elapsed = out.split()
    return int(total) * 8 / float(elapsed)


def plain(workdir, seconds, rounds):
    """Plain kernel routing: the same namespaces, host routes, no tunnel."""
    t = Topology()
    t.build()
    try:
        t.mn.attach("mag1")
        phoa = eui64(HOME_PREFIX, MN_MAC)
        t.exec("mn", "sysctl", "-qw", "net.ipv6.conf.eth0.accept_ra=0")
        t.exec("mn", "ip", "link", "set", "eth0", "mtu", "1460")
        t.exec("mn", "ip", "-6", "addr", "add", f"{phoa}/64", "dev", "eth0", "nodad")
        t.exec("mag1", "ip", "-6", "addr", "add", "fe80::1/64", "dev", "acc0", "nodad")
        t.exec("mn", "ip", "-6", "route", "replace", "default", "via", "fe80::1", "dev", "eth0")
        t.exec("mag1", "ip", "-6", "route", "add", f"{phoa}/128", "dev", "acc0")
        t.exec("lma", "ip", "-6", "route", "add", f"{phoa}/128", "via", "2001:db8:a1::2")
        time.sleep(0.5)
        t.exec("cn", "ping", "-c", "1", "-W", "3", str(phoa))
        return [transfer(t, phoa, seconds) for _ in range(rounds)]
    finally:
        t.destroy()


def tunnelled(dataplane, workdir, seconds, rounds):
    """The netlmm domain with C{dataplane}."""
    domain = NetnsDomain(os.path.join(workdir, dataplane), dataplane)
    try:
        domain.start()
        phoa = domain.attach("mag1")
        domain.waitFor(lambda: domain.ping("cn", phoa, 1).returncode == 0, "traffic", 10)
        return [transfer(domain.topology, phoa, seconds) for _ in range(rounds)]
    finally:
        domain.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    reason = kernel.needsRoot()
    if reason:
        sys.exit(f"bench/throughput.py: {reason}")
    workdir = tempfile.mkdtemp(prefix="bench-throughput-")
    rates = {"plain routing": plain(workdir, args.seconds, args.rounds)}
    skipped = []
    for plane in ("seg6", "userspace"):
        reason = dataPlaneMissing(plane)
        if reason:
            skipped.append(f"  {plane:14s} not measured: this kernel has {reason}")
            continue
        rates[plane] = tunnelled(plane, workdir, args.seconds, args.rounds)
    base = statistics.median(rates["plain routing"])
    print(f"\nTCP CN -> MN, {args.rounds} rounds of {args.seconds:g} s, median "
          f"(CN ->  LMA -> MAG1 -> MN, MN MTU 1460):")
    for name, values in rates.items():
        m = statistics.median(values)
        print(f"  {name:14s} {m / 1e6:9.1f} Mbit/s   ratio {m / base:5.3f}   "
              f"(rounds: {', '.join(f'{v / 1e6:.0f}' for v in values)})")
    for line in skipped:
        print(line)


if __name__ == "__main__":
    main()
