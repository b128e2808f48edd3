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


def runWifi(out=sys.stdout, dataplane=None, workdir=None, roams=("mag2", "mag1"),
            rate=1000.0):
    """
    `netlmm demo --netns --wifi`: the domain with Wi-Fi access points
    (mac80211_hwsim, hostapd) and a wpa_supplicant mobile, context transfer
    and forwarding between the MAGs; a C{rate} packets/s downlink stream
    from the CN while the mobile roams MAG1 -> MAG2 (by itself: reactive)
    -> MAG1 (steered by the AP, 802.11v: predictive). Prints the ladder of
    the signalling and the forwarding as captured in the LMA's namespace
    (everything between the MAGs passes there) and one line per roam;
    returns the exit status (1 when a roam fails).
    """
    try:
        reason = kernel.needsRoot() or kernel.missing("mac80211_hwsim")
        if reason:
            raise CommandFailed(f"--wifi needs simulated radios: {reason}"
                                if "mac80211" in reason else reason)
        dataplane = chooseDataPlane(dataplane)
    except CommandFailed as e:
        print(f"netlmm demo --netns --wifi: {e}", file=sys.stderr)
        return 2
    workdir = workdir or tempfile.mkdtemp(prefix="netlmm-demo-wifi-")
    domain = NetnsDomain(workdir, dataplane, wifi=True, handover=True)
    print(f"netlmm demo --netns --wifi: {dataplane} data plane; logs and captures in "
          f"{workdir}", file=out)
    notes, results, failed = [], [], []
    captures = []
    mag1, mag2 = MAG_ADDRESSES
    between = (f"udp port 5436 or tcp port 5437 or (ip6 proto 41 and ((src host {mag1} and "
               f"dst host {mag2}) or (src host {mag2} and dst host {mag1})))")
    try:
        domain.start()
        # pm0 carries the MAG <-> PMIP client and PMIP client <-> LMA
        # signalling, m1 everything between MAG1 and MAG2.
        for interface in ("pm0", "m1"):
            captures.append(domain.topology.start(
                "lma", ["tcpdump", "-n", "-U", "--immediate-mode", "-i", interface, "-w",
                        domain.path(f"{interface}.pcap"), between],
                domain.path(f"tcpdump-{interface}.log")))
        time.sleep(0.5 * kernel.timeScale())
        start = time.time()
        notes.append((time.time(), "MN", "MAG1", "1. association with MAG1's AP "
                      "(hostapd: AP-STA-CONNECTED)"))
        phoa = domain.attach("mag1")
        notes.append((time.time(), "MAG1", "MN", f"RA; the MN configures {phoa} (SLAAC)"))
        current = "mag1"
        for i, target in enumerate(roams):
            steer = i % 2 == 1
            how = ("steered by MAG1's AP (802.11v): predictive" if steer
                   else "wpa_cli roam: reactive")
            note = (f"{i + 2}. roam {current.upper()} -> {target.upper()}, {how}, under "
                    f"{rate:.0f} packets/s")
            try:
                r = domain.handoffFlow(target, rate=rate, steer=steer, onMove=lambda note=note,
                                       target=target: notes.append(
                                           (time.time(), "MN", target.upper(), note)))
            except CommandFailed as e:
                failed.append(f"roam {current.upper()} -> {target.upper()}: {e}")
                break
            results.append((current, target, steer, r))
            if domain.topology.mn.address() != phoa:
                failed.append(f"the MN's address changed on the roam to {target.upper()}")
            current = target
        for capture in captures:
            domain.topology.stop(capture, sig=signal.SIGTERM)
        captures = []
        print("\nSignalling and forwarding as captured in the LMA's namespace:", file=out)
        for line in _wifiLadder(domain, start, notes):
            print(line, file=out)
        print(file=out)
        for old, new, steer, r in results:
            print(f"roam {old.upper()} -> {new.upper()} ({'predictive' if steer else 'reactive'}"
                  f"): interruption {r['interruption'] * 1000:.0f} ms, lost {r['lost']} of "
                  f"{r['sent']} ({rate:.0f} packets/s), reordered {r['reordered']}, "
                  f"duplicated {r['duplicated']}", file=out)
        if failed:
            for f in failed:
                print(f"demo FAILED: {f}", file=sys.stderr)
            return 1
        return 0
    except CommandFailed as e:
        print(f"demo FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        for capture in captures:
            domain.topology.stop(capture, sig=signal.SIGTERM)
        domain.stop()


def _wifiLadder(domain, start, notes):
    """The ladder of the Wi-Fi demo: notes, signalling, and forwarding bursts."""
    from netlmm.pcap import readPcap
    lanes = names()
    packets = []
    for interface in ("pm0", "m1"):
        try:
            packets += readPcap(domain.path(f"{interface}.pcap"))
        except (OSError, ValueError):
            continue
    packets.sort(key=lambda p: p.time)
    rows = list(notes)
    seen = set()
    for m in signalling(packets, 5437):
        key = (round(m.time, 4), str(m.src), str(m.dst), describe(m.message))
        if key in seen:
            continue  # the same message captured on two of the LMA's links
        seen.add(key)
        rows.append((m.time, lanes.get(str(m.src), str(m.src)),
                     lanes.get(str(m.dst), str(m.dst)), describe(m.message)))
    # Forwarded packets between the MAGs, one line per burst.
    burst = None
    for p in (p for p in packets if p.proto == "ipip"):
        key = (str(p.src), str(p.dst))
        if burst is not None and (burst[1] != key or p.time - burst[3] > 0.2):
            rows.append(_burst(burst, lanes))
            burst = None
        if burst is None:
            burst = [p.time, key, 0, p.time, set()]
        burst[2] += 1
        burst[3] = p.time
        burst[4].add(p.payload[:48])
    if burst is not None:
        rows.append(_burst(burst, lanes))
    ladder = Ladder(["MN", "MAG1", "MAG2", "PMIP client", "LMA"], start, _Clock(start))
    ladder.rows = [(t - start, s, r, text) for t, s, r, text in sorted(rows)]
    return ladder.render()


def _burst(burst, lanes):
    first, (src, dst), count, last, distinct = burst
    return (first, lanes.get(src, src), lanes.get(dst, dst),
            f"forwarded downlink: {len(distinct)} packets in IPv6-in-IPv6 over "
            f"{(last - first) * 1000:.0f} ms")


#: Lanes of the two-domain ladder: MN runs `netlmm mn`, PN is a plain host.
DOMAIN_LANES = ["MN", "PN", "MAG1", "MAG2", "MAG3", "PMIP1", "PMIP2", "LMA1", "LMA2", "GMA", "CN"]


def runDomains(out=sys.stdout, dataplane=None, workdir=None):
    """
    `netlmm demo --netns --domains`: two local mobility domains (LMA1 and
    LMA2, each with its PMIP client; MAG1 in LMA1's, MAG3 in LMA2's, MAG2 in
    both), the GMA and a correspondent (L{netlmm.lab.domains}). A Mobile
    IPv6 mobile (`netlmm mn`) moves MAG1 -> MAG2 -> MAG3 and a plain one
    MAG1 -> MAG2 (into LMA2's domain), each with a TCP connection from the
    CN open. Prints the ladder as captured on the core network and, per
    mobile, whether its connection survived and its addresses before and
    after; returns the exit status (1 when the MIPv6 mobile's connection did
    not survive, 2 when this host cannot run it).
    """
    from netlmm.lab.domains import LMAS, MAGS, PMIPS, TwoDomains, crossDomains
    from netlmm.lab.mip6 import GMA_ADDRESS, NEEDS
    try:
        reason = kernel.needsRoot()
        if reason:
            raise CommandFailed(reason)
        reason = next(filter(None, map(kernel.missing, NEEDS)), None)
        if reason:
            raise CommandFailed(f"the GMA and `netlmm mn` need a kernel with Mobile IPv6 "
                                f"(mip6, ip6tnl, seg6); this one has {reason}")
        dataplane = chooseDataPlane(dataplane)
    except CommandFailed as e:
        print(f"netlmm demo --netns --domains: {e}", file=sys.stderr)
        return 2
    workdir = workdir or tempfile.mkdtemp(prefix="netlmm-demo-domains-")
    print(f"netlmm demo --netns --domains: {dataplane} data plane; logs and capture in "
          f"{workdir}", file=out)
    lab = TwoDomains(directory=workdir, dataplane=dataplane)
    notes = []
    lanes = {GMA_ADDRESS: "GMA"}
    for table in (LMAS, PMIPS, MAGS):
        lanes.update({address: node.upper() for node, address in table.items()})

    def note(sender, receiver, text):
        notes.append((time.time(), sender, receiver, text))
    try:
        lab.startAll()
        # Everything between the domains' nodes and the GMA crosses the core
        # bridge; "host GMA" keeps the BU/BA themselves, not their copies
        # inside the MAG-LMA tunnels.
        capture = lab.capture("core", "core", lab.path("core.pcap"),
                              filter=f"udp port 5436 or tcp port 5437 or (host {GMA_ADDRESS} "
                                     "and (ip6[6] == 60 or ip6[6] == 43 or ip6[6] == 135))")
        start = time.time()
        results = crossDomains(lab, note, window=5.0)
        capture.stop()
        print("\nSignalling as captured on the core network (MN: netlmm mn, PN: a plain "
              "host):", file=out)
        for line in _domainLadder(lab, capture, start, notes, lanes):
            print(line, file=out)
        print(file=out)
        for name, what in (("mn", "MN (Mobile IPv6, netlmm mn)"), ("pn", "PN (plain IPv6)")):
            r = results[name]
            print(f"{what}: TCP connection {'SURVIVED' if r['survived'] else 'did not survive'};"
                  f" addresses before {', '.join(r['before'])}; after "
                  f"{', '.join(r['after']) or '-'}", file=out)
            for old, new, first in r["moves"]:
                gap = "none" if first is None else f"{first * 1000:.0f} ms"
                print(f"  move {old.upper()} -> {new.upper()}: first packet on the new path "
                      f"{gap} after the new link came up", file=out)
            if r.get("released") is not None:
                print(f"  its old prefix released {r['released']:.1f} s after the old "
                      "connection closed (unused that long: old_prefix_idle)", file=out)
        if not results["mn"]["survived"]:
            print("demo FAILED: the Mobile IPv6 mobile's TCP connection did not survive",
                  file=sys.stderr)
            return 1
        return 0
    except CommandFailed as e:
        print(f"demo FAILED: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("demo interrupted: removing the namespaces", file=sys.stderr)
        return 130
    finally:
        lab.destroy()


def _domainLadder(lab, capture, start, notes, lanes):
    """The two-domain ladder: notes, PMIP signalling (pcap) and BU/BA (tshark)."""
    rows = list(notes)
    packets = readPcap(capture.path)
    for m in signalling(packets, 5437):
        rows.append((m.time, lanes.get(str(m.src), str(m.src)),
                     lanes.get(str(m.dst), str(m.dst)), describe(m.message)))
    for t, src, dst, kind, buSeq, baSeq, status, lifetime, home in capture.fields(
            "mipv6 and not udp", "frame.time_epoch", "ipv6.src", "ipv6.dst", "mip6.mhtype",
            "mip6.bu.seqnr", "mip6.ba.seqnr", "mip6.ba.status", "mip6.bu.lifetime",
            "ipv6.opt.mipv6.home_address"):
        if kind == "5":
            text = f"BU seq={buSeq} HoA={home} CoA={src} lifetime={lifetime}"
            rows.append((float(t), "MN", "GMA", text))
        elif kind == "6":
            rows.append((float(t), "GMA", "MN", f"BA seq={baSeq} status={status} to {dst}"))
    ladder = Ladder(DOMAIN_LANES, start, _Clock(start))
    ladder.rows = [(t - start, s, r, text) for t, s, r, text in sorted(rows)]
    return ladder.render()
