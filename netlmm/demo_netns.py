"""
`netlmm demo --netns` (root): the domain of the end-to-end tests, live. A
correspondent node, the LMA, the PMIP client, two MAGs and a mobile running
the stock Linux IPv6 stack, each in its own network namespace, with the real
daemons. The mobile attaches at MAG1 (SLAAC), hands off to MAG2 under a 10 ms
ping flow, and detaches. The signalling is captured on the wire inside the
LMA's namespace (everything passes there) and drawn as a ladder; then the
measured interruption, and everything is cleaned up.
"""

import signal
import sys
import tempfile
import time

from netlmm.lab import kernel
from netlmm.lab.domain import (
    CN_ADDRESS, DATAPLANES, LMA_ADDRESS, MAG_ADDRESSES, PMIP_ADDRESS, NetnsDomain,
    bestDataPlane, dataPlaneMissing,
)
from netlmm.lab.netns import CommandFailed
from netlmm.ladder import Ladder, describe
from netlmm.pcap import readPcap, signalling


class _Clock:
    def __init__(self, t):
        self.t = t

    def seconds(self):
        return self.t


def names():
    """Address -> lane of the namespaces' nodes."""
    table = {LMA_ADDRESS: "LMA", PMIP_ADDRESS: "PMIP client",
             "2001:db8:b::1": "LMA"}
    for i, address in enumerate(MAG_ADDRESSES):
        table[address] = f"MAG{i + 1}"
        table[f"2001:db8:a{i + 1}::2"] = f"MAG{i + 1}"
    return table


def chooseDataPlane(dataplane):
    """
    C{dataplane}, or the best this kernel has when None; raises
    L{CommandFailed} saying what the kernel lacks for it.
    """
    if dataplane is None:
        return bestDataPlane()
    reason = dataPlaneMissing(dataplane)
    if reason:
        others = [n for n, _ in DATAPLANES if n != dataplane and dataPlaneMissing(n) is None]
        hint = f"; try --dataplane {others[0]}" if others else ""
        raise CommandFailed(f"the {dataplane} data plane cannot run here: this kernel has "
                            f"{reason}{hint}")
    return dataplane


def run(out=sys.stdout, dataplane=None, workdir=None):
    """
    Run the scenario with C{dataplane} (the best this kernel has when None);
    returns the exit status.
    """
    try:
        reason = kernel.needsRoot()
        if reason:
            raise CommandFailed(reason)
        dataplane = chooseDataPlane(dataplane)
    except CommandFailed as e:
        print(f"netlmm demo --netns: {e}", file=sys.stderr)
        return 2
    workdir = workdir or tempfile.mkdtemp(prefix="netlmm-demo-")
    domain = NetnsDomain(workdir, dataplane)
    notes = []

    def note(sender, receiver, text):
        notes.append((time.time(), sender, receiver, text))
    print(f"netlmm demo --netns: {dataplane} data plane; logs and capture in {workdir}",
          file=out)
    try:
        domain.start()
        capture = domain.topology.start(
            "lma", ["tcpdump", "-n", "-U", "--immediate-mode", "-i", "pm0", "-w",
                    domain.path("signalling.pcap"), "udp port 5436 or tcp port 5437"],
            domain.path("tcpdump.log"))
        time.sleep(0.5)
        start = time.time()
        note("MN", "MAG1", "1. L2 attachment (link up), RS")
        phoa = domain.attach("mag1")
        note("MAG1", "MN", f"RA; the MN configures {phoa} by SLAAC (DAD snooped)")
        ok = domain.ping("mn", CN_ADDRESS, 3).returncode == 0
        note("MN", "MAG1", f"ping MN -> CN through the tunnel: {'ok' if ok else 'FAILED'}")
        note("MN", "MAG2", "2. L2 handoff MAG1 -> MAG2 under a 10 ms ping flow from the CN")
        result = domain.handoff("mag2")
        note("MAG2", "MN", f"measured: flow interrupted {result['interruption']:.3f} s, "
             f"{result['lost']} of {result['sent']} packets lost")
        same = domain.topology.mn.address() == phoa
        note("MN", "MAG2", f"the MN kept {phoa}: {'yes' if same else 'NO'}")
        note("MN", "MAG2", "3. L2 detachment (link down)")
        domain.detach()
        time.sleep(0.5)
        domain.topology.stop(capture, sig=signal.SIGTERM)
        lanes = names()
        ladder = Ladder(["MN", "MAG1", "MAG2", "PMIP client", "LMA"], start, _Clock(start))
        rows = [(t, s, r, text) for t, s, r, text in notes]
        for m in signalling(readPcap(domain.path("signalling.pcap")), 5437):
            rows.append((m.time, lanes.get(str(m.src), str(m.src)),
                         lanes.get(str(m.dst), str(m.dst)), describe(m.message)))
        ladder.rows = [(t - start, s, r, text) for t, s, r, text in sorted(rows)]
        print("\nSignalling as captured on the wire in the LMA's namespace:", file=out)
        for line in ladder.render():
            print(line, file=out)
        print(f"\nHandoff MAG1 -> MAG2: interruption {result['interruption']:.3f} s, "
              f"{result['lost']} of {result['sent']} packets lost (10 ms ping flow)",
              file=out)
        if not (ok and same):
            print("demo FAILED: traffic or address continuity broken", file=sys.stderr)
            return 1
        return 0
    except CommandFailed as e:
        print(f"demo FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        domain.stop()
