"""
Resident memory per binding of the LMA and PMIP client daemons AS SHIPPED
(`twistd -n netlmm-lma`, `twistd -n netlmm-pmip`, shipped configs with a
state file), holding N bindings each, state store included.

    python bench/memory.py                    # 1,000,000 bindings (minutes)
    python bench/memory.py --bindings 100000
    python bench/memory.py --lma-only         # the LMA alone, its state made by its core

How: the two services are built in this process from the copied shipped
configs, exactly as twistd builds them, and wired back to back through
capturing sockets: N Triggers (new mobiles, LMA-assigned pHoAs) go into the
PMIP client, whose signed PBUs go into the LMA, whose signed PBAcks go back
to the PMIP client; every binding is acknowledged on both sides. Both
services are stopped, which writes their state as they would on a restart.
Then each daemon is started under twistd from that config: it loads its N
bindings from its state and serves. Its VmRSS, minus that of the same
daemon started with an empty state, divided by N, is the figure (goal: at
most 1 KiB). A state that a daemon loads is the same binding cache the
protocol built: the cores' restore() makes the same objects receive()
does (bench/lma_memory.py measures the LMA core fed by PBUs directly).
"""

import argparse
import os
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import load  # noqa: E402
import pmip_rate  # noqa: E402


class Capture:
    """A socket for MHPort that keeps what is sent instead of sending it."""

    def __init__(self):
        self.sent = []

    def sendto(self, data, target):
        self.sent.append(data)
        return len(data)

    def fileno(self):
        return -1


class SilentMag:
    """What the PMIP client takes for a MAG connection: takes Notifications."""

    def __init__(self):
        self.results = {}
        self.peer = (load.LOOPBACK, 1)

    def send(self, message):
        self.results[message.result] = self.results.get(message.result, 0) + 1
        return True

    def describe(self):
        return "bench MAG"


def configure(configs, states, count):
    lmaPort = load.freePort()
    configs.edit("lma.toml", "lma", "listen", f'"[::1]:{lmaPort}"')
    # The pool holds every mobile (the shipped one 65,280).
    configs.edit("lma.toml", "lma.pool", "last", f'"{load.poolLast(count)}"')
    configs.edit("pmip.toml", "pmip", "listen",
                 f'"[::1]:{load.freePort(socket.SOCK_STREAM)}"')
    configs.edit("pmip.toml", "pmip", "lma", f'"[::1]:{lmaPort}"')
    for role in ("lma", "pmip"):
        configs.edit(f"{role}.toml", role, "state_file", f'"{states[role]}"')
    pmip_rate.tlsFiles(configs)


def build(role, configs):
    """The service twistd would run for C{role} with the copied config."""
    if role == "lma":
        from netlmm.tap import lma as tap
    else:
        from netlmm.tap import pmip as tap
    options = tap.Options()
    options.parseOptions(["--config", configs.path(f"{role}.toml")])
    # makeService wraps the role's service (and [metrics], [control]) in
    # a netlmm.daemon.DaemonService: the role's is the first.
    return tap.makeService(options).ordered[0]


#: Triggers fed before the reactor runs the stores' commits: few enough
#: that their PBAcks come back before the PMIP client sends any PBU again.
BATCH = 200


def fill(configs, count, log):
    """Bind C{count} mobiles through both services in this process; save their state."""
    from ipaddress import IPv6Address

    from twisted.internet import defer, task

    from netlmm.wire.control import AddressMode, Trigger

    @defer.inlineCallbacks
    def run(reactor):
        lma, pmip = build("lma", configs), build("pmip", configs)
        for s in (lma, pmip):
            s.running = True
            s.port.socket = Capture()
        lmaOut, pmipOut = lma.port.socket.sent, pmip.port.socket.sent
        mag = SilentMag()
        magAddress = IPv6Address("2001:db8:ff::1")
        pmip._mags[magAddress] = mag
        loopback = load.LOOPBACK.packed
        fromPmip = ("::1", pmip.port.port or 40001, 0, 0)
        fromLma = ("::1", lma.port.port or 5436, 0, 0)
        seconds = reactor.seconds

        def pump():
            while pmipOut:
                lma.port._datagram(pmipOut.pop(), fromPmip, loopback, seconds())
                while lmaOut:
                    pmip.port._datagram(lmaOut.pop(), fromLma, loopback, seconds())

        start = time.perf_counter()
        for first in range(0, count, BATCH):
            for i in range(first, min(count, first + BATCH)):
                trigger = Trigger(i + 1, b"mn%d@bench" % i, magAddress,
                                  mode=AddressMode.LMA_ASSIGNED)
                pmip.feed(pmip.core.receiveTrigger, trigger)
                pump()
            # Each side holds its acknowledgement (PBAck, Notification)
            # until its store has committed the binding: let the reactor
            # run the commits and carry the released answers across.
            while lma.awaitingCommit or pmip.awaitingCommit or lmaOut:
                yield task.deferLater(reactor, 0.001, lambda: None)
                while lmaOut:
                    pmip.port._datagram(lmaOut.pop(), fromLma, loopback, seconds())
                pump()
            done = first + BATCH
            if done % 100_000 == 0 and done < count:
                log(f"  {done} bound ({(time.perf_counter() - start) / done * 1e6:.0f} us each)")
        bound = mag.results.get(0, 0)
        log(f"  {bound} of {count} mobiles bound in {time.perf_counter() - start:.0f} s; "
            f"Notifications by result {mag.results}; LMA bindings {len(lma.core.bindings)}")
        if bound != count:
            raise SystemExit("not every mobile was bound")
        for s in (lma, pmip):
            s.port.socket = None
        yield defer.gatherResults([defer.maybeDeferred(s.stopService)
                                   for s in (lma, pmip)])
    task.react(run)


def fillLma(configs, count, log):
    """
    The LMA alone (--lma-only): its core, built from the copied shipped
    config, is fed one PBU per mobile directly (as bench/lma_memory.py does;
    no PMIP client, no RFC 4285, no sockets), and the records its Persist
    effects name are written to its state in one transaction. Several times
    quicker than the fill through both daemons, for a million mobiles on a
    busy machine; the daemon then loads them exactly as in the full run.
    """
    from ipaddress import IPv6Address

    from netlmm.core.effects import Persist
    from netlmm.wire import mh

    lma = build("lma", configs)
    core, receive = lma.core, lma.core.receive
    client = IPv6Address("::1")
    mags = [IPv6Address(f"2001:db8:ff::{i + 1:x}") for i in range(16)]
    unspecified = IPv6Address("::")
    flags = mh.BU_A | mh.BU_H | mh.BU_P
    kept = {}
    start = time.perf_counter()
    for i in range(count):
        mnId = b"mn%d@bench" % i
        bu = mh.BindingUpdate(1, flags, 65535, [
            mh.HomeNetworkPrefix(unspecified), mh.AlternateCareOfAddress(mags[i % 16]),
            mh.MobileNodeIdentifier(mnId)])
        effects = receive(bu, client, time.time())
        if effects[-1].message.status != 0:
            raise SystemExit(f"mobile {i}: {effects[-1].message!r}")
        for e in effects:
            if type(e) is Persist:
                kept[e.key] = e.record
        if (i + 1) % 100_000 == 0 and i + 1 < count:
            log(f"  {i + 1} bound ({(time.perf_counter() - start) / (i + 1) * 1e6:.0f} us each)")
    log(f"  {len(core.bindings)} of {count} mobiles bound at the LMA core in "
        f"{time.perf_counter() - start:.0f} s")
    if len(core.bindings) != count:
        raise SystemExit("not every mobile was bound")
    lma.store.rewrite([Persist(k, r) for k, r in kept.items()])


def resident(role, configs, count, log):
    """VmRSS of the daemon started from its state, and with an empty state."""
    figures = {}
    for name, state in (("empty", "empty"), ("loaded", "full")):
        configs.edit(f"{role}.toml", role, "state_file",
                     f'"{configs.path(f"{role}.{state}")}"')
        daemon = load.Daemon(role, configs.path(f"{role}.toml"),
                             configs.path(f"{role}.{name}.log"))
        try:
            daemon.waitFor("LMA listening" if role == "lma" else "MAGs connect to",
                           timeout=1800)
            time.sleep(2)
            figures[name] = load.rssBytes(daemon.pid)
        finally:
            daemon.stop()
    per = (figures["loaded"] - figures["empty"]) / count
    log(f"  netlmm-{role}: VmRSS {figures['empty'] / 2**20:.1f} MiB empty, "
        f"{figures['loaded'] / 2**20:.1f} MiB with {count} bindings: "
        f"{per:.0f} bytes per binding ({'under' if per <= 1024 else 'OVER'} 1 KiB)")
    return per


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bindings", type=int, default=1_000_000)
    p.add_argument("--keep", action="store_true", help="keep configs, states and logs")
    p.add_argument("--lma-only", action="store_true",
                   help="the LMA alone, its state made by its core fed PBUs directly "
                        "(quicker; for 1,000,000 on a busy machine)")
    p.add_argument("--fill", metavar="DIR", help=argparse.SUPPRESS)
    args = p.parse_args()

    def log(text):
        print(text, flush=True)
    if args.fill:
        configs = load.ShippedConfigs(args.fill)
        fill(configs, args.bindings, log)
        return
    configs = load.ShippedConfigs()
    try:
        states = {role: configs.path(f"{role}.full") for role in ("lma", "pmip")}
        configure(configs, states, args.bindings)
        roles = ("lma",) if args.lma_only else ("lma", "pmip")
        if args.lma_only:
            log(f"binding {args.bindings} mobiles at the LMA core (shipped config)")
            fillLma(configs, args.bindings, log)
        else:
            log(f"binding {args.bindings} mobiles through the PMIP client and the LMA "
                "(in one process, shipped configs)")
            # In a process of its own: the reactor runs the services' stop.
            import subprocess
            subprocess.run([sys.executable, os.path.abspath(__file__), "--fill",
                            configs.dir, "--bindings", str(args.bindings)],
                           check=True, cwd=load.ROOT)
        for role in roles:
            log(f"  {role} state: {os.path.getsize(states[role]) / 2**20:.1f} MiB on disk")
        for role in roles:
            resident(role, configs, args.bindings, log)
    finally:
        if args.keep:
            log(f"kept in {configs.dir}")
        else:
            configs.remove()


if __name__ == "__main__":
    main()
