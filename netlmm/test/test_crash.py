"""
kill -9 under load (issue 11 item 5): the LMA and the PMIP client run as real
twistd daemons with the shipped configs (only ports changed), three MAGs in
this process attach, hand off and detach mobiles at random, and in each round
one of the two daemons is killed with SIGKILL at a random moment, restarted,
and checked:

- what it kept (read from its state database right after the kill, as the
  restarted daemon reads it) holds every binding whose acknowledgement was
  sent, as acknowledged, and nothing that was deregistered or refused, except
  where a request still in flight may have changed it;
- once the load stops, the MAGs', the PMIP client's and the LMA's views agree
  again, within one refresh interval (in practice a few seconds).

Acknowledgements are observed where they arrive: the Notifications at the
MAGs (a PMIP client answers only after the LMA acknowledged, so they bound
what both daemons must have kept) and, as root, the LMA's PBAcks on lo (an
AF_PACKET socket), which say exactly what the LMA must have kept. Every
fourth LMA kill comes right after a PBAck is seen, and every fourth PMIP
client kill right after a MAG got a Notification: the moments when an answer
sent before its record is written would be caught.

About 100 s (2 cores, shared).

NETLMM_CRASH_ROUNDS sets the number of rounds (20); NETLMM_CRASH_SEED the
random seed (printed on failure).
"""

import ctypes
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import time
from collections import namedtuple
from ipaddress import IPv6Address
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from zope.interface import implementer

from netlmm.access import AttachmentEvent
from netlmm.core.sequence import seqGreater
from netlmm.core.mag import MagCore
from netlmm.dataplane.memory import MemoryDataPlane
from netlmm.interfaces import IAddressAssignment
from netlmm.lab.netns import codeEnvironment
from netlmm.service.mag import MagService
from netlmm.wire.control import AddressMode, Detach, Notification, Result, Trigger

TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
LO = IPv6Address("::1")
MAGS = [IPv6Address(f"2001:db8:ff::{i}") for i in (1, 2, 3)]
MOBILES = 40
#: Half the mobiles bring their own pHoA (static), half get one from the LMA's pool.
STATIC = {i: IPv6Address(f"2001:db8:1::1:0:{i:x}") for i in range(0, MOBILES, 2)}


def examples():
    from netlmm.test.test_daemons import examples
    return examples()


def freePort(kind):
    s = socket.socket(socket.AF_INET6, kind)
    s.bind(("::1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def stored(path):
    """
    What a state database holds: MN identifier -> pCoA (text); the RFC 5847
    Restart Counter's record left out.
    """
    from netlmm.service.heartbeat import COUNTER_KEY
    db = sqlite3.connect(path, timeout=5)
    try:
        return {bytes(k): str(IPv6Address(json.loads(r)["pcoa"])) for k, r in
                db.execute("SELECT key, record FROM entries") if bytes(k) != COUNTER_KEY}
    finally:
        db.close()


def shippedConfigs(case, directory, edit=lambda role, text: text):
    """
    The shipped lma.toml, pmip.toml and keys.toml copied to C{directory}
    (made), on free ports, the PMIP client's MAG channel plain TCP (the
    tests' MAGs run in-process); C{edit(role, text)} changes each config
    more. Returns (LMA's UDP port, PMIP client's TCP port).
    """
    directory.mkdir(parents=True)
    for name in ("lma.toml", "pmip.toml", "keys.toml"):
        shutil.copy(examples() / name, directory / name)
    os.chmod(directory / "keys.toml", 0o600)
    lmaPort = freePort(socket.SOCK_DGRAM)
    pmipPort = freePort(socket.SOCK_STREAM)
    lma = (directory / "lma.toml").read_text()
    pmip = (directory / "pmip.toml").read_text()
    lma = lma.replace('listen = "[::1]:5436"', f'listen = "[::1]:{lmaPort}"')
    pmip = pmip.replace('listen = "[::1]:5437"', f'listen = "[::1]:{pmipPort}"')
    pmip = pmip.replace('lma = "[::1]:5436"', f'lma = "[::1]:{lmaPort}"')
    pmip = re.sub(r"\[pmip\.tls\]\n(?:[^\[\n][^\n]*\n)*",
                  '[pmip.tls]\ntransport = "tcp"\n', pmip)
    case.assertIn('[pmip.tls]\ntransport = "tcp"\n', pmip)
    for role, text in (("lma", lma), ("pmip", pmip)):
        case.assertIn('state_file = "', text, f"the shipped {role}.toml keeps no state")
        (directory / f"{role}.toml").write_text(edit(role, text))
    return lmaPort, pmipPort


def mnId(i):
    return b"crash%d@example.net" % i


@implementer(IAddressAssignment)
class Strategy:
    """A MAG's strategy here: the pHoA comes with the attachment, or the LMA assigns one."""

    name = "crash-test"

    def start(self, mag):
        self.mag = mag

    def stop(self):
        pass

    def attached(self, event):
        if event.phoa is None:
            self.mag.addressReady(event.mnId, None, AddressMode.LMA_ASSIGNED)
        else:
            self.mag.addressReady(event.mnId, event.phoa, AddressMode.STATIC)

    def bound(self, mnId, phoa):
        pass

    def unbound(self, mnId, phoa, reason):
        pass


class Ledger:
    """
    What the MAGs asked of the PMIP client and what it answered, per mobile:
    the state its answers acknowledged (bound at a MAG, or none) and the
    requests not answered yet.
    """

    def __init__(self):
        #: mnId -> the acknowledged pCoA (IPv6Address) or None.
        self.acked = {}
        #: mnId -> True when an answer left the outcome open (a failure).
        self.uncertain = {}
        #: (mag, transaction) -> (request, its number in the order sent).
        self.pending = {}
        self._sent = 0
        #: mnId -> what happened to it, for messages.
        self.history = {}
        #: Acknowledgements seen, by kind.
        self.counts = {"bound": 0, "deregistered": 0, "other": 0}
        #: The other answers, by result.
        self.others = {}
        #: Called once, at the next success a MAG receives.
        self.onAck = None

    def observer(self, role, direction, message, peer):
        mag = self.magOf[role]
        kind = type(message)
        if kind in (Trigger, Detach, Notification) and message.mnId is not None:
            self.history.setdefault(message.mnId, []).append(
                f"{time.monotonic():.3f} {mag} {direction} {kind.__name__} "
                f"{message.transaction}"
                + (f" {Result.NAMES.get(message.result)}" if kind is Notification else ""))
        if direction == "sent" and kind in (Trigger, Detach):
            key = (mag, message.transaction)
            if key not in self.pending:
                self._sent += 1
                self.pending[key] = (message, self._sent)
        elif direction == "received" and kind is Notification:
            n = message
            if n.transaction == 0:
                return
            entry = self.pending.pop((mag, n.transaction), None)
            if entry is None:
                return
            request, number = entry
            m = request.mnId
            if n.result == Result.SUCCESS:
                # A success settles what was asked before it for the mobile
                # (a Trigger its MAG gave up when the mobile left, say).
                for key, (r, k) in list(self.pending.items()):
                    if r.mnId == m and k < number:
                        del self.pending[key]
            if n.result == Result.SUCCESS and self.onAck is not None:
                onAck, self.onAck = self.onAck, None
                onAck()
            if type(request) is Trigger and n.result == Result.SUCCESS:
                self.acked[m] = mag
                self.uncertain.pop(m, None)
                self.counts["bound"] += 1
            elif type(request) is Detach and n.result == Result.SUCCESS:
                self.acked[m] = None
                self.uncertain.pop(m, None)
                self.counts["deregistered"] += 1
            elif type(request) is Detach and n.result == Result.MOVED:
                pass
            else:
                # A refusal or failure (or an unknown mobile, deregistered
                # in the background): what the daemons hold is open until
                # the next acknowledgement.
                name = Result.NAMES.get(n.result, n.result)
                self.uncertain[m] = name
                self.counts["other"] += 1
                self.others[name] = self.others.get(name, 0) + 1

    def allowed(self, m):
        """The pCoAs (or None) a daemon may hold for C{m}; None when anything goes."""
        if m in self.uncertain:
            return None
        allowed = {self.acked.get(m)}
        for (mag, _), (request, _) in self.pending.items():
            if request.mnId == m:
                allowed.add(mag if type(request) is Trigger else None)
        return allowed


_SO_ATTACH_FILTER = 26
_SOL_PACKET = 263
_PACKET_STATISTICS = 6


def _udpPortFilter(port):
    """
    A classic BPF program (struct sock_filter[]) for an AF_PACKET socket on
    lo: IPv6 packets whose next header is UDP from or to C{port}; the
    offsets count lo's 14-octet link-layer header.
    """
    ldb, ldh, jeq, ret = 0x30, 0x28, 0x15, 0x06
    program = [(ldb, 0, 0, 14 + 6),           # IPv6 next header
               (jeq, 0, 5, socket.IPPROTO_UDP),
               (ldh, 0, 0, 14 + 40),          # UDP source port
               (jeq, 2, 0, port),
               (ldh, 0, 0, 14 + 42),          # UDP destination port
               (jeq, 0, 1, port),
               (ret, 0, 0, 0x40000),
               (ret, 0, 0, 0)]
    return b"".join(struct.pack("HBBI", *insn) for insn in program)


class SeenPbu(namedtuple("SeenPbu", "mnId home pcoa lifetime sequence order")):
    """
    A PBU seen on its way to the LMA: its MN identifier (or None) and home
    (None: one asked for), the pCoA it binds to (None: a deregistration),
    its lifetime and sequence number, and its place in the order seen.
    """


class LmaWire:
    """
    Every PBU to and PBAck from the LMA's UDP port, as the loopback interface
    carried them (an AF_PACKET socket on lo, opened by L{start}: root only):
    which acknowledgements the LMA really sent, matched to the PBUs they
    answer.

    A PBAck is matched as the PMIP client matches it: by the mobile's MN
    Identifier when it carries one, else by its home (the netlmm dialect's
    handoffs, refreshes and deregistrations name only the home), with the
    PBU's sequence number. The sequence alone names nothing: every mobile
    numbers its own PBUs, so several mobiles' PBUs in flight often share
    one. The LMA answers in the order it got the PBUs (its held answers
    leave in order), so PBUs alike in both (a pool address given to another
    mobile since, a restarted PMIP client numbering again) are matched
    oldest first; and a 135 (sequence out of window), which carries the
    LMA's last accepted number, not the refused PBU's, answers the oldest
    PBU waiting for that mobile with a number not greater.
    """

    ETH_P_IPV6 = 0x86DD
    PACKET_OUTGOING = 4

    def __init__(self, port):
        self.port = port
        self.sock = None
        #: (sequence, MN identifier or home) -> the PBUs not answered
        #: (L{SeenPbu}), for the PBAcks to name their pCoA.
        self.pbus = {}
        self._seen = 0
        #: mnId -> the pCoA the last accepting PBAck left bound, or None.
        self.acked = {}
        #: home -> the mobile the last accepting PBAck for it named.
        self.phoaOf = {}
        #: Called once, at the next accepting PBAck seen.
        self.onAck = None

    def fileno(self):
        return self.sock.fileno()

    def logPrefix(self):
        return "LmaWire"

    def connectionLost(self, reason):
        pass

    def start(self):
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW,
                                  socket.htons(self.ETH_P_IPV6))
        # Only the LMA's UDP traffic: the other suites that run at the same
        # time send floods on lo, which would fill the buffer for nothing.
        code = _udpPortFilter(self.port)
        program = ctypes.create_string_buffer(code)
        self.sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER,
                             struct.pack("HL", len(code) // 8, ctypes.addressof(program)))
        self.sock.bind(("lo", 0))
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        reactor.addReader(self)

    def stop(self):
        if self.sock is not None:
            reactor.removeReader(self)
            self.sock.close()
            self.sock = None

    def lost(self):
        """How many packets the capture dropped (a full buffer) since last asked."""
        _, drops = struct.unpack("II", self.sock.getsockopt(
            _SOL_PACKET, _PACKET_STATISTICS, 8))
        return drops

    def doRead(self):
        while True:
            try:
                frame, address = self.sock.recvfrom(65536)
            except BlockingIOError:
                return
            if address[2] == self.PACKET_OUTGOING:
                continue   # a kernel may show a packet on lo going out and coming in
            self.packet(frame[14:])

    def packet(self, ip6):
        """One IPv6 packet seen on lo."""
        from netlmm.wire import mh
        if len(ip6) < 48 or ip6[6] != 17:
            return
        src, dst = IPv6Address(ip6[8:24]), IPv6Address(ip6[24:40])
        sport, dport = struct.unpack("!HH", ip6[40:44])
        if self.port not in (sport, dport):
            return
        message = mh.decodeMessage(ip6[48:], src, dst)
        hnp = message.option(mh.HomeNetworkPrefix)
        mnIdOpt = message.option(mh.MobileNodeIdentifier)
        mnId = None if mnIdOpt is None else mnIdOpt.identifier
        home = None if hnp is None or hnp.unspecified else hnp.prefix
        if dport == self.port and type(message) is mh.BindingUpdate:
            acoa = message.option(mh.AlternateCareOfAddress)
            self._seen += 1
            entry = SeenPbu(mnId, home, None if acoa is None else acoa.address,
                            message.lifetime, message.sequence, self._seen)
            for name in (mnId, home):
                if name is not None:
                    self.pbus.setdefault((message.sequence, name), []).append(entry)
        elif sport == self.port and type(message) is mh.BindingAcknowledgement:
            name = mnId if mnId is not None else home
            if message.status == mh.Status.SEQUENCE_OUT_OF_WINDOW:
                waiting = [e for (number, n), entries in self.pbus.items()
                           if n == name and not seqGreater(number, message.sequence)
                           for e in entries]
            else:
                waiting = self.pbus.get((message.sequence, name))
            if not waiting:
                return
            pbu = min(waiting, key=lambda e: e.order)
            for name in (pbu.mnId, pbu.home):
                if name is not None:
                    self.answered(name, pbu)
            if message.status >= 128:
                return
            mnId = mnId or pbu.mnId or self.phoaOf.get(home)
            self.phoaOf[home] = mnId
            self.acked[mnId] = None if pbu.lifetime == 0 else pbu.pcoa
            if self.onAck is not None:
                onAck, self.onAck = self.onAck, None
                onAck()

    def answered(self, name, pbu):
        """PBU C{pbu}, waiting under C{name} (an MN identifier or home), waits no more."""
        key = (pbu.sequence, name)
        waiting = [e for e in self.pbus.get(key, ()) if e is not pbu]
        if waiting:
            self.pbus[key] = waiting
        else:
            self.pbus.pop(key, None)

    def unanswered(self):
        """mnId -> what the PBUs the LMA got and did not answer would make of it."""
        out = {}
        pbus = {id(e): e for waiting in self.pbus.values() for e in waiting}
        for pbu in pbus.values():
            mnId = pbu.mnId or self.phoaOf.get(pbu.home)
            out.setdefault(mnId, set()).add(None if pbu.lifetime == 0 else pbu.pcoa)
        return out

    def compare(self, kept):
        """
        (mnId, pCoA or None, the pCoAs or None allowed) for each mobile that
        the PBAcks seen or C{kept} (mnId -> pCoA, what the LMA's store holds)
        name: the store may hold what the last accepting PBAck said, or what
        a PBU not answered yet would make of it.
        """
        unanswered = self.unanswered()
        for m in set(self.acked) | set(kept):
            have = kept.get(m)
            have = None if have is None else IPv6Address(have)
            yield m, have, {self.acked.get(m)} | unanswered.get(m, set())

    def forget(self):
        """The LMA is gone: what it did not answer it will never answer."""
        self.pbus.clear()


def udpOnLo(data, src, dst, sport, dport):
    """UDP payload C{data} as an IPv6 packet (L{LmaWire.packet} reads no checksums)."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    return struct.pack("!IHBB", 6 << 28, len(udp), 17, 64) + src.packed + dst.packed + udp


class LmaWireTests(SynchronousTestCase):
    """
    L{LmaWire} matches each PBAck to the PBU it answers, with an LMA core
    answering the netlmm dialect's PBUs as the PMIP client sends them (the
    MN Identifier only until a mobile has a binding).
    """

    PORT = 5436
    CLIENT = IPv6Address("::1")
    LMA = IPv6Address("::2")

    def setUp(self):
        from netlmm.core.lma import LmaCore
        from netlmm.core.pools import AddressPool
        self.core = LmaCore("2001:db8:1::/64", ["::1/128"], 3600,
                            AddressPool("2001:db8:1::100", "2001:db8:1::1ff"))
        self.wire = LmaWire(self.PORT)
        self.homes = {}

    def seen(self, message, src, dst, sport, dport):
        """C{message} as lo carries it."""
        from netlmm.wire import mh
        self.wire.packet(udpOnLo(mh.encodeMessage(message, src, dst), src, dst, sport, dport))

    def send(self, mn, sequence, mag=None, withMnId=False):
        """
        A PBU from the PMIP client, seen on lo; returns the PBAck the LMA
        makes of it (not seen yet): C{mag} None deregisters.
        """
        from netlmm.test.test_store import pbu
        home = self.homes.get(mn, "::")
        bu = pbu(sequence, phoa=home, lifetime=0 if mag is None else 100, mag=mag,
                 mnId=mn if withMnId or home == "::" else None)
        self.seen(bu, self.CLIENT, self.LMA, 40000, self.PORT)
        (ba,) = [e.message for e in self.core.receive(bu, self.CLIENT, 0)
                 if type(e).__name__ == "SendMH"]
        return ba

    def answer(self, mn, ba):
        """The LMA's PBAck C{ba} for C{mn}, seen on lo."""
        from netlmm.wire import mh
        if ba.status < 128:
            self.homes[mn] = str(ba.option(mh.HomeNetworkPrefix).prefix)
        self.seen(ba, self.LMA, self.CLIENT, self.PORT, 40000)

    def attach(self, *mns):
        for mn in mns:
            self.answer(mn, self.send(mn, 1, "2001:db8:ff::1"))

    def test_sameSequenceOtherMobiles(self):
        """
        Two mobiles' handoffs in flight at once, numbered alike (each mobile
        numbers its own PBUs, and they name only the home): each PBAck says
        where its own mobile is bound. Matched by the sequence number alone,
        the first PBAck took the other mobile's PBU.
        """
        self.attach(b"a", b"b")
        toMag2 = self.send(b"a", 2, "2001:db8:ff::2")
        toMag3 = self.send(b"b", 2, "2001:db8:ff::3")
        self.answer(b"a", toMag2)
        self.answer(b"b", toMag3)
        self.assertEqual(self.wire.acked, {b"a": IPv6Address("2001:db8:ff::2"),
                                           b"b": IPv6Address("2001:db8:ff::3")})
        self.assertEqual(self.wire.unanswered(), {})

    def test_deregistrationAmongOthers(self):
        """
        A deregistration answered while another mobile's PBU with its number
        waits: the mobile is acknowledged unbound, the other's PBU still
        waits for its answer.
        """
        self.attach(b"a", b"b")
        leave = self.send(b"a", 2)
        self.send(b"b", 2, "2001:db8:ff::2")
        self.answer(b"a", leave)
        self.assertEqual(self.wire.acked, {b"a": None, b"b": IPv6Address("2001:db8:ff::1")})
        self.assertEqual(self.wire.unanswered(), {b"b": {IPv6Address("2001:db8:ff::2")}})

    def test_sequenceOutOfWindow(self):
        """
        A 135 carries the LMA's last accepted number, not the refused PBU's:
        it answers the refused PBU (the mobile's oldest waiting with a number
        not greater), not another mobile's PBU of that number.
        """
        from netlmm.wire import mh
        self.attach(b"a", b"b")
        self.answer(b"a", self.send(b"a", 2, "2001:db8:ff::2"))
        inFlight = self.send(b"b", 2, "2001:db8:ff::3")
        stale = self.send(b"a", 1, "2001:db8:ff::3")
        later = self.send(b"a", 3, "2001:db8:ff::1")
        self.assertEqual((stale.status, stale.sequence),
                         (mh.Status.SEQUENCE_OUT_OF_WINDOW, 2))
        self.answer(b"a", stale)
        self.assertEqual(self.wire.unanswered(), {b"a": {IPv6Address("2001:db8:ff::1")},
                                                  b"b": {IPv6Address("2001:db8:ff::3")}})
        self.answer(b"a", later)
        self.answer(b"b", inFlight)
        self.assertEqual(self.wire.acked, {b"a": IPv6Address("2001:db8:ff::1"),
                                           b"b": IPv6Address("2001:db8:ff::3")})


class HeldAnswerTests(SynchronousTestCase):
    """
    The kill test's check of the LMA, deterministic and at every step: the
    LMA service over a store whose writes the test completes or fails, fed
    random PBUs (new mobiles, handoffs, refreshes, deregistrations, numbers
    out of window) in batches and singly, while writes are in flight. After
    each step, what the store has made durable must be what the last
    accepting PBAck of each mobile said, or what a PBU not answered yet
    would make of it: a kill at any moment finds nothing acknowledged and
    not kept.
    """

    PORT = 5436
    CLIENT = 40000
    MAGS = [f"2001:db8:ff::{i}" for i in (1, 2, 3)]
    MOBILES = 6
    STEPS = 300

    def interleave(self, seed):
        from twisted.internet.task import Clock

        from netlmm.core.lma import LmaCore
        from netlmm.core.pools import AddressPool
        from netlmm.service.lma import LmaService
        from netlmm.store import MemoryStore
        from netlmm.test.test_services import _Datagrams
        from netlmm.test.test_store import pbu
        from netlmm.wire import mh
        rng = random.Random(seed)
        clock = Clock()
        lma = LmaService(clock, LmaCore("2001:db8:1::/64", ["::1/128"], 3600,
                                        AddressPool("2001:db8:1::100", "2001:db8:1::1ff")),
                         (LO, 0), "udp", MemoryDataPlane())
        lma.store = store = MemoryStore(clock, automatic=False)
        lma.running = True
        socket_ = lma.port.socket = _Datagrams([], self.CLIENT)
        wire = LmaWire(self.PORT)
        sequences = [0] * self.MOBILES
        answered = 0
        history = []

        def seen(data, toLma):
            ports = (self.CLIENT, self.PORT) if toLma else (self.PORT, self.CLIENT)
            wire.packet(udpOnLo(data, LO, LO, *ports))

        def makePbu():
            i = rng.randrange(self.MOBILES)
            mn = b"mn%d" % i
            b = lma.core.bindingFor(mn)
            mag = rng.choice(self.MAGS)
            sequences[i] += 1
            if b is None:
                return pbu(sequences[i], mnId=mn, mag=mag)
            home = str(b.phoa)
            named = mn if rng.random() < 0.2 else None
            kind = rng.random()
            if kind < 0.1:
                sequences[i] -= 1
                message = pbu((sequences[i] - 3) & 0xFFFF, phoa=home, mnId=named, mag=mag)
                return message
            if kind < 0.3:
                return pbu(sequences[i], phoa=home, mnId=named, lifetime=0, mag=None)
            return pbu(sequences[i], phoa=home, mnId=named, mag=mag)

        def deliver(batch):
            data = []
            for _ in range(rng.randint(1, 4) if batch else 1):
                message = makePbu()
                history.append(f"PBU {message}")
                data.append(mh.encodeMessage(message, LO, LO))
                if store.available or not lma.core.knows(message):
                    seen(data[-1], True)
                # else the LMA leaves it unanswered for its sender to retry:
                # as if lost on the way.
            if batch:
                socket_.datagrams.extend(data)
                lma.port.doRead()
            else:
                lma.port._datagram(data[0], ("::1", self.CLIENT, 0, 0), LO.packed,
                                   clock.seconds())

        for step in range(self.STEPS):
            op = rng.random()
            if op < 0.4:
                deliver(True)
            elif op < 0.6:
                deliver(False)
            elif op < 0.85 and store._pendingWrite is not None:
                history.append("write done")
                store.completeWrite()
            elif op < 0.9 and store._pendingWrite is not None:
                history.append("write failed")
                store.failWith = OSError("disk full")
                store.completeWrite()
                store.failWith = None
            else:
                clock.advance(rng.uniform(0, 1))
            for data in socket_.sent[answered:]:
                ba = mh.decodeMessage(data, LO, LO)
                history.append(f"PBAck {ba}")
                seen(data, False)
            answered = len(socket_.sent)
            kept = {m: r["pcoa"] for m, r in store.entries.items()}
            for m, have, allowed in wire.compare(kept):
                if have not in allowed:
                    self.fail(f"seed {seed}, step {step}: the last PBAck for {m!r} said "
                              f"{wire.acked.get(m)}, PBUs not answered "
                              f"{wire.unanswered().get(m)}, the store holds {have}\n"
                              + "\n".join(history[-30:]))
        return wire, lma

    def test_interleavings(self):
        accepted = refused = 0
        for seed in range(20):
            wire, lma = self.interleave(seed)
            accepted += lma.core.counters["accepted"]
            refused += lma.core.counters["rejected"]
        # The runs did acknowledge and refuse (135) a good deal.
        self.assertGreater(accepted, 1000)
        self.assertGreater(refused, 50)


class LmaWireCaptureTests(SynchronousTestCase):
    """The capture on lo takes the LMA port's UDP traffic only (root)."""

    def test_onlyThePort(self):
        import select
        if os.geteuid() != 0:
            raise SkipTest("an AF_PACKET socket needs root")
        port, other = freePort(socket.SOCK_DGRAM), freePort(socket.SOCK_DGRAM)
        seen = []
        wire = LmaWire(port)
        wire.packet = lambda ip6: seen.append(struct.unpack("!HH", ip6[40:44]))
        wire.start()
        self.addCleanup(wire.stop)
        # TCP on the port: not UDP, not taken.
        listener = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        self.addCleanup(listener.close)
        listener.bind(("::1", port))
        listener.listen()
        client = socket.create_connection(("::1", port))
        self.addCleanup(client.close)
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.addCleanup(s.close)
        s.bind(("::1", 0))
        mine = s.getsockname()[1]
        for to in (other, port, other):
            s.sendto(b"x", ("::1", to))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            select.select([wire], [], [], 0.05)
            wire.doRead()
            if seen:
                # A moment more for anything else to show.
                deadline = min(deadline, time.monotonic() + 0.2)
        self.assertEqual(seen, [(mine, port)])
        self.assertEqual(wire.lost(), 0)


class KillTests(TestCase):
    """The LMA and the PMIP client killed with SIGKILL under load, 20 times."""

    timeout = 600

    def setUp(self):
        self.dir = Path(self.mktemp()).resolve()
        self.lmaPort, self.pmipPort = shippedConfigs(self, self.dir)
        self.states = {"lma": str(self.dir / "lma-state.db"),
                       "pmip": str(self.dir / "pmip-state.db")}
        self.procs = {}
        self.logs = {}
        self.addCleanup(self.stopAll)

    # ------------------------------------------------------------ daemons

    def start(self, role):
        log = open(self.dir / f"{role}.log", "a")
        self.logs[role] = log
        self.procs[role] = subprocess.Popen(
            TWISTD + ["-n", "--pidfile=", f"netlmm-{role}", "--config", f"{role}.toml"],
            cwd=self.dir, stdout=log, stderr=subprocess.STDOUT, env=codeEnvironment())

    def logText(self, role):
        return (self.dir / f"{role}.log").read_text()

    @inlineCallbacks
    def started(self, role, marker, after):
        """Wait until the daemon's log shows C{marker} past offset C{after}."""
        deadline = time.monotonic() + 30
        while marker not in self.logText(role)[after:]:
            if self.procs[role].poll() is not None:
                self.fail(f"{role} exited:\n{self.logText(role)[after:]}")
            if time.monotonic() > deadline:
                self.fail(f"{role} did not start:\n{self.logText(role)[after:]}")
            yield deferLater(reactor, 0.05, lambda: None)

    def kill(self, role):
        p = self.procs.pop(role)
        p.send_signal(signal.SIGKILL)
        p.wait()
        self.logs.pop(role).close()

    def stopAll(self):
        for role in list(self.procs):
            p = self.procs.pop(role)
            if p.poll() is None:
                p.kill()
            p.wait()
            self.logs.pop(role).close()

    # ------------------------------------------------------------ the load

    def startMags(self):
        self.ledger = Ledger()
        self.ledger.magOf = {}
        self.mags = []
        for i, address in enumerate(MAGS):
            name = f"MAG{i + 1}"
            self.ledger.magOf[name] = address
            mag = MagService(reactor, MagCore(address, LO), (LO, self.pmipPort), Strategy(),
                             MemoryDataPlane(), name=name, observer=self.ledger.observer)
            self.mags.append(mag)
        #: Where each mobile is (index into MAGS) or None; pHoAs learnt.
        self.where = {}
        self.phoas = dict(STATIC)
        return [mag.startService() for mag in self.mags]

    def settled(self, i):
        """No request for mobile C{i} waits at any MAG."""
        m = mnId(i)
        return all(a is None or a.transaction is None
                   for a in (mag.core.attachment(m) for mag in self.mags))

    def step(self, rng):
        """One random move: attach somewhere, hand off, or leave."""
        i = rng.randrange(MOBILES)
        if not self.settled(i):
            return
        m = mnId(i)
        here = self.where.get(i)
        if here is None:
            to = rng.randrange(len(MAGS))
            self.attachAt(i, to)
            return
        a = self.mags[here].core.attachment(m)
        if a is not None and a.phoa is not None:
            self.phoas.setdefault(i, a.phoa)
        if rng.random() < 0.5:
            to = rng.choice([k for k in range(len(MAGS)) if k != here])
            self.attachAt(i, to)
            # The old MAG sees the mobile go a moment later.
            reactor.callLater(rng.uniform(0.05, 0.3), self.leave, i, here)
        else:
            self.leave(i, here)
            self.where[i] = None
            if i not in STATIC:
                # An address the LMA assigned goes back to its pool.
                self.phoas.pop(i, None)

    def attachAt(self, i, to):
        m = mnId(i)
        mag = self.mags[to]
        if mag.core.attachment(m) is not None:
            return
        self.where[i] = to
        mag.attached(AttachmentEvent(m, self.phoas.get(i)))

    def leave(self, i, at):
        m = mnId(i)
        if self.mags[at].core.attachment(m) is not None:
            self.mags[at].detached(m)

    @inlineCallbacks
    def load(self, rng, seconds, until=None):
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (until and until()):
            self.step(rng)
            yield deferLater(reactor, rng.uniform(0.005, 0.03), lambda: None)

    # ------------------------------------------------------------ checks

    def checkKept(self, role, kept, log):
        """What C{role} kept at the kill matches what was acknowledged."""
        checked = open_ = 0
        for i in range(MOBILES):
            m = mnId(i)
            allowed = self.ledger.allowed(m)
            if allowed is None:
                open_ += 1
                continue
            have = kept.get(m)
            have = None if have is None else IPv6Address(have)
            self.assertIn(have, allowed,
                          f"{role} kept {have} for {m!r}; acknowledged "
                          f"{self.ledger.acked.get(m)}, in flight "
                          f"{[(str(k[0]), type(r).__name__) for k, (r, _) in self.ledger.pending.items() if r.mnId == m]}"
                          f"\n" + "\n".join(self.ledger.history.get(m, [])) + f"\n{log}")
            if len(allowed) == 1:
                checked += 1
        return checked, open_

    def checkWire(self, kept, log):
        """
        The LMA kept exactly what its last accepting PBAck of each mobile
        said: bound at the PBU's pCoA, or nothing after a deregistration.
        """
        unanswered = self.wire.unanswered()
        exact = 0
        for m, have, allowed in self.wire.compare(kept):
            self.assertIn(have, allowed,
                          f"the LMA's last PBAck for {m!r} said {self.wire.acked.get(m)}, "
                          f"PBUs not answered {unanswered.get(m)}, it kept {have}\n"
                          + "\n".join(self.ledger.history.get(m, [])) + f"\n{log}")
            exact += len(allowed) == 1
        self.wire.forget()
        return exact

    def views(self):
        """Where each mobile is bound in the MAGs', PMIP client's and LMA's views."""
        pmip, lma = stored(self.states["pmip"]), stored(self.states["lma"])
        out = {}
        for i in range(MOBILES):
            m = mnId(i)
            at = [str(mag.core.address) for mag in self.mags
                  if (a := mag.core.attachment(m)) is not None and a.state == "BOUND"]
            out[m] = (at, pmip.get(m), lma.get(m))
        return out

    def agree(self):
        if not all(self.settled(i) for i in range(MOBILES)):
            return False
        for m, (at, pmip, lma) in self.views().items():
            if at != ([pmip] if pmip else []) or pmip != lma:
                return False
        return True

    # ------------------------------------------------------------ the test

    @inlineCallbacks
    def test_killUnderLoad(self):
        rounds = int(os.environ.get("NETLMM_CRASH_ROUNDS", "20"))
        seed = int(os.environ.get("NETLMM_CRASH_SEED", str(random.randrange(1 << 30))))
        rng = random.Random(seed)
        log = f"seed {seed} (NETLMM_CRASH_SEED)"
        markers = {"lma": "LMA listening", "pmip": "MAGs connect to"}
        for role in ("lma", "pmip"):
            self.start(role)
            yield self.started(role, markers[role], 0)
        self.wire = None
        if os.geteuid() == 0:
            # Root: watch the LMA's PBAcks on the wire, to check exactly.
            self.wire = LmaWire(self.lmaPort)
            self.wire.start()
            self.addCleanup(self.wire.stop)
        else:
            log += "; not root: the LMA's PBAcks are not watched on lo"
        yield gatherResults(self.startMags())
        self.addCleanup(lambda: gatherResults([mag.stopService() for mag in self.mags]))
        totals = {"checked": 0, "open": 0, "settle": 0.0, "wire": 0}
        for n in range(rounds):
            role = "lma" if n % 2 == 0 else "pmip"
            yield self.load(rng, rng.uniform(0.5, 2.5))
            if role == "lma" and self.wire is not None and n % 4 == 0:
                # The most demanding moment: right after a PBAck left.
                lma = self.procs["lma"]
                self.wire.onAck = lambda: lma.send_signal(signal.SIGKILL)
                yield self.load(rng, 5, until=lambda: self.wire.onAck is None)
            elif role == "pmip" and n % 4 == 1:
                # Right after a MAG got a Notification.
                pmip = self.procs["pmip"]
                self.ledger.onAck = lambda: pmip.send_signal(signal.SIGKILL)
                yield self.load(rng, 5, until=lambda: self.ledger.onAck is None)
            self.kill(role)
            # Answers already on their way still arrive.
            yield deferLater(reactor, 0.2, lambda: None)
            kept = stored(self.states[role])
            checked, open_ = self.checkKept(role, kept, f"round {n}, {log}")
            if role == "lma" and self.wire is not None:
                self.wire.doRead()
                lost = self.wire.lost()
                if lost:
                    # What it missed may be any mobile's last PBAck: it
                    # can tell nothing exactly from now on.
                    log += (f"; round {n}: the capture on lo dropped {lost} packets, "
                            "the LMA's PBAcks were not checked from then on")
                    self.wire.stop()
                    self.wire = None
                else:
                    totals["wire"] += self.checkWire(kept, f"round {n}, {log}")
            totals["checked"] += checked
            totals["open"] += open_
            offset = len(self.logText(role))
            loading = self.load(rng, 1.0)
            self.start(role)
            yield self.started(role, markers[role], offset)
            yield loading
            t = time.monotonic()
            deadline = t + 30
            while not self.agree():
                if time.monotonic() > deadline:
                    bad = {m: v for m, v in self.views().items()
                           if v[0] != ([v[1]] if v[1] else []) or v[1] != v[2]}
                    pending = [(str(k[0]), type(r).__name__, r.mnId)
                               for k, (r, _) in self.ledger.pending.items()]
                    self.fail(f"round {n} ({role} killed): views disagree after 30 s: {bad}; "
                              f"pending {pending}\n"
                              + "\n".join(line for m in bad
                                           for line in self.ledger.history.get(m, [])[-12:])
                              + f"\n{log}")
                yield deferLater(reactor, 0.1, lambda: None)
            totals["settle"] = max(totals["settle"], time.monotonic() - t)
        # Every round acknowledged something, and most outcomes were checked exactly.
        self.assertGreater(self.ledger.counts["bound"], rounds)
        self.assertGreater(self.ledger.counts["deregistered"], rounds // 2)
        self.assertGreater(totals["checked"], rounds * MOBILES // 2)
        self.report = totals
        print(f"\nkill test: {rounds} rounds, {self.ledger.counts} {self.ledger.others}, "
              f"{totals['checked']} kept states checked exactly against the MAGs' "
              f"acknowledgements, {totals['wire']} against the LMA's PBAcks on the wire, "
              f"{totals['open']} left open by a failure; views agreed within "
              f"{totals['settle']:.1f} s at most; {log}")

