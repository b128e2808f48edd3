"""
Where the PMIP client's time per Trigger goes, stage by stage, without
sockets: the PMIP client and the LMA built from the shipped configs exactly
as twistd builds them (RFC 4285 with the shipped keys, twistd's text log
observer writing to /dev/null), wired back to back in one process, the MAG
channel's TLS done in memory with the channel's own TLS contexts.

    python bench/pmip_breakdown.py [--mobiles 20000] [--profile]

Stages, per Trigger (the PMIP client's own work, then the LMA's for scale):

  tls in      the Trigger's TLS record decrypted (OpenSSL, memory BIOs)
  decode      netlmm.wire.control.decodeControl
  trigger     PmipService: the core's Trigger handling, the PBU signed in one
              encoding, checksummed and sent (to a socket that keeps it)
  lma         the LMA service handling that PBU and sending its signed PBAck
  pback       PmipService: the PBAck decoded, verified (RFC 4285), the core's
              acknowledgement, the Notification encoded
  tls out     the Notification's TLS record encrypted

Phases: attach (new mobiles, LMA-assigned pHoAs) and handoff (the same
mobiles from another MAG address). With --profile the handoff phase runs
under cProfile. bench/pmip_rate.py measures the daemons themselves.
"""

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import lma_breakdown  # noqa: E402
import load  # noqa: E402
import memory  # noqa: E402
import pmip_rate  # noqa: E402


class TlsPair:
    """A PMIP client's and a MAG's TLS connections, handshaken in memory."""

    def __init__(self, configs):
        from OpenSSL import SSL

        from netlmm.transport.tls import loadCredentials
        pki = configs.path("pki")
        pmip = loadCredentials(os.path.join(pki, "ca.pem"),
                               os.path.join(pki, "pmip-pmip1.pem"),
                               os.path.join(pki, "pmip-pmip1.key"), "pmip", "bench")
        mag = loadCredentials(os.path.join(pki, "ca.pem"),
                              os.path.join(pki, "mag-MAG1.pem"),
                              os.path.join(pki, "mag-MAG1.key"), "mag", "bench")
        self.server = SSL.Connection(pmip.serverCreator("mag").context, None)
        self.server.set_accept_state()
        self.client = SSL.Connection(mag.clientCreator("pmip").context, None)
        self.client.set_connect_state()
        self.want = SSL.WantReadError
        for _ in range(20):
            for a, b in ((self.client, self.server), (self.server, self.client)):
                try:
                    a.do_handshake()
                except self.want:
                    pass
                self._move(a, b)
        for c in (self.client, self.server):
            c.do_handshake()

    def _move(self, a, b):
        try:
            data = a.bio_read(65536)
        except self.want:
            return
        b.bio_write(data)

    def toServer(self, message):
        """The MAG sends C{message}: the record the PMIP client receives."""
        self.client.send(message)
        return self.client.bio_read(65536)

    def serverReads(self, record):
        self.server.bio_write(record)
        return self.server.recv(65536)

    def serverWrites(self, message):
        self.server.send(message)
        return self.server.bio_read(65536)


class MagConnection:
    """
    What the PMIP client takes for a MAG connection: keeps the octets of
    each write, and holds and flushes as ControlProtocol does (one write for
    the Notifications of a batch).
    """

    def __init__(self):
        self.sent = []
        self._held = None
        self.peer = (load.LOOPBACK, 1)

    def send(self, message):
        from netlmm.wire.control import encodeControl
        data = encodeControl(message)
        if self._held is not None:
            self._held.append(data)
        else:
            self.sent.append(data)
        return True

    def hold(self):
        if self._held is None:
            self._held = []

    def flush(self):
        held, self._held = self._held, None
        if held:
            self.sent.append(b"".join(held))

    def describe(self):
        return "bench MAG"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mobiles", type=int, default=20_000)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--metrics", action="store_true",
                   help="with [metrics] on: each Trigger timed to its Notification")
    args = p.parse_args()

    from netlmm.store import SqliteStore

    configs = load.ShippedConfigs()
    try:
        states = {role: configs.path(f"{role}.state") for role in ("lma", "pmip")}
        memory.configure(configs, states, 2 * args.mobiles)
        tls = TlsPair(configs)
        lma, pmip = (roleService(memory.build(role, configs)) for role in ("lma", "pmip"))
        # The shipped stores, their writes run by this thread at the end of
        # each batch (the daemons have a thread each for them).
        writes = lma_breakdown.InlineWrites()
        for s, kind in ((lma, "lma-bindings"), (pmip, "pmip-bindings")):
            if s.store is None:
                raise SystemExit("a shipped config keeps no state: this benchmark "
                                 "expects it to")
            s.store = SqliteStore(configs.path(f"bench-{kind}.db"), kind, s.reactor,
                                  run=writes)
        try:
            measure(args, tls, lma, pmip, writes)
        finally:
            for s in (lma, pmip):
                s.store._release()
    finally:
        configs.remove()


def roleService(service):
    """The role's own service of what makeService gives (a DaemonService: its first)."""
    return getattr(service, "ordered", [service])[0]


def measure(args, tls, lma, pmip, writes):
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from netlmm.wire.control import decodeControl

    globalLogBeginner.beginLoggingTo([textFileLogObserver(open(os.devnull, "w"))],
                                     redirectStandardIO=False)
    for s in (lma, pmip):
        s.running = True
        s.port.socket = memory.Capture()
    lmaOut, pmipOut = lma.port.socket.sent, pmip.port.socket.sent
    mag = MagConnection()
    pmip.connections.add(mag)
    if args.metrics:
        pmip.enableMetrics()
        pmip.triggerLatency = None      # on for the alternating rounds below
    loopback = load.LOOPBACK.packed
    fromPmip, fromLma = ("::1", 40001, 0, 0), ("::1", 5436, 0, 0)
    seconds = pmip.reactor.seconds
    clock = time.thread_time
    names = ("tls in", "decode", "trigger", "lma", "pback", "tls out")

    # As ControlProtocol calls it around one read (versions before it had none).
    batch = pmip.batch if hasattr(type(pmip.factory), "batch") else (
        lambda starting: None)

    def datagrams(service, out, source):
        """What one service sent, read by the other in one batch, its commit run."""
        sent = out[:]
        del out[:]
        now = seconds()
        service.batch(True)
        for data in sent:
            service.port._datagram(data, source, loopback, now)
        service.batch(False)
        writes.run()

    def run(first, magIndex, profile=False):
        n = args.mobiles
        records = [tls.toServer(pmip_rate.trigger(first + i, b"mn%d@bench" % i,
                                                  pmip_rate.MAG_ADDRESSES[magIndex]))
                   for i in range(n)]
        stages = [0.0] * 6
        ok = [0]
        profiler = None
        if profile:
            import cProfile
            profiler = cProfile.Profile()
            profiler.enable()
        start = clock()
        cpu = time.process_time()
        for b in range(0, n, WINDOW):
            window = records[b:b + WINDOW]
            triggers = []
            a = clock()
            for record in window:
                triggers.append(tls.serverReads(record))
            b = clock()
            triggers = [decodeControl(data) for data in triggers]
            c = clock()
            # One read of the MAG connection (ControlProtocol.dataReceived).
            batch(True)
            for trigger in triggers:
                pmip.controlReceived(trigger, mag)
            batch(False)
            writes.run()
            d = clock()
            datagrams(lma, pmipOut, fromPmip)
            e = clock()
            datagrams(pmip, lmaOut, fromLma)
            f = clock()
            # The Notifications, and on a handoff the old MAG's MOVED (the
            # same connection here): one TLS record per write.
            for data in mag.sent:
                tls.serverWrites(data)
            g = clock()
            answered = b"".join(mag.sent)
            for t in triggers:
                ok[0] += _succeeded(answered, t.transaction)
            mag.sent.clear()
            for i, (x, y) in enumerate(((a, b), (b, c), (c, d), (d, e), (e, f), (f, g))):
                stages[i] += y - x
        total = clock() - start
        cpu = time.process_time() - cpu
        if profiler is not None:
            import pstats
            profiler.disable()
            stats = pstats.Stats(profiler).sort_stats("tottime")
            stats.print_stats(30)
            if os.environ.get("CALLERS"):
                stats.print_callers(os.environ["CALLERS"])
        if ok[0] != len(records):
            raise SystemExit(f"{ok[0]} of {len(records)} Triggers succeeded")
        run.cpu = cpu
        return stages, total

    print(f"{args.mobiles} mobiles, {WINDOW} Triggers a batch; microseconds (thread CPU) "
          "per Trigger:")
    for name, first, magIndex in (("attach", 1, 0), ("handoff", 10**6, 1)):
        stages, total = run(first, magIndex, args.profile and name == "handoff")
        n = args.mobiles
        own = sum(stages) - stages[3]
        print(f"  {name:8}" + "  ".join(f"{k} {t / n * 1e6:6.2f}" for k, t in zip(names, stages))
              + f"   PMIP client {own / n * 1e6:6.2f}   loop {total / n * 1e6:6.2f}")
    if args.metrics:
        # Handoffs back and forth, timed to their Notifications or not in
        # turn: the CPU (process time, PMIP client and LMA) per Trigger.
        from netlmm.metrics import Histogram
        cpus = {False: [], True: []}
        for k in range(6):
            timed = k % 2 == 1
            pmip.triggerLatency = Histogram() if timed else None
            run(2 * 10**6 + k * 10**5, k % 2)
            cpus[timed].append(run.cpu / args.mobiles * 1e6)
        off, on = (sorted(cpus[x])[1] for x in (False, True))
        print(f"  CPU per handoff Trigger (both daemons), metrics off "
              f"{'/'.join(f'{c:.1f}' for c in cpus[False])} us, on "
              f"{'/'.join(f'{c:.1f}' for c in cpus[True])} us: medians {off:.1f} -> {on:.1f} "
              f"({(on - off) / off:+.1%})")
        lma_breakdown.scrape(pmip, len(pmip.core.mobiles))


#: Triggers in flight, as pmip_rate.py keeps them: each stage handles a
#: window's worth at once, as the daemons read them in batches.
WINDOW = 50


def _succeeded(data, transaction):
    """True when a Notification in C{data} answers C{transaction} with SUCCESS."""
    want = transaction.to_bytes(4, "big")
    pos = 0
    while pos < len(data):
        frame = data[pos:pos + data[pos + 1]]
        if frame[4:8] == want and pmip_rate.result(frame) == 0:
            return True
        pos += len(frame)
    return False


if __name__ == "__main__":
    main()
