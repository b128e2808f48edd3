"""
Two MAGs' handover services talking RFC 5949 over a memory wire, without
root: context transfer, forwarding, authentication and replay protection
(refused, counted, logged within bounds, nothing changed), the hold and its bounds, the
[mag.handover] config.
"""

import os
import tempfile
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Network

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from netlmm.access import AttachmentEvent
from netlmm.config import ConfigError, Table
from netlmm.core.handover import Context, HandoverCore, State
from netlmm.dataplane.handover import BufferDevice, PacketBuffer
from netlmm.dataplane.memory import MemoryDataPlane
from netlmm.security.auth import SecurityAssociation
from netlmm.security.keystore import KeyStore
from netlmm.service.handover import (
    HandoverGuard, HandoverService, fromConfig, loadHandoverKeys, writeHandoverKeys,
)
from netlmm.wire import mh
from netlmm.wire.icmpv6 import Frame
from netlmm.wire.fho import HackCode, HandoverAcknowledge, HandoverInitiate, HiCode

MAG1 = IPv6Address("2001:db8:ffff::11")
MAG2 = IPv6Address("2001:db8:ffff::12")
LMA = IPv6Address("2001:db8:ffff::1")
MN = b"02:00:00:00:aa:01"
MN_MAC = bytes.fromhex("02000000aa01")
PHOA = IPv6Address("2001:db8:1::ff:fe00:aa01")
KEY = SecurityAssociation(300, b"k" * 20, "hmac-sha1-96", clients=[f"{MAG1}/128",
                                                                     f"{MAG2}/128"])


class Wire:
    """Records datagrams; L{deliver} hands them to the addressed service."""

    def __init__(self, address):
        self.address = address
        self.sent = []

    def sendRaw(self, data, target):
        self.sent.append((data, target))


class _Attachment:
    def __init__(self, state, phoa, since):
        self.state, self.phoa, self.since = state, phoa, since


class FakeMagCore:
    lmaAddress = LMA

    def __init__(self):
        self.attachments = {}

    def attachment(self, mnId):
        return self.attachments.get(mnId)


class FakeMag:
    """What a handover service asks of its MAG."""

    def __init__(self):
        self.core = FakeMagCore()
        self.proceeded = []

    def proceed(self, event):
        self.proceeded.append(event)


class FakeHold:
    """The daemon-side hold, as the service sees it."""

    index = None
    name = "nlbuf0"

    def __init__(self):
        self.buffer = PacketBuffer()
        self.forwarded = []

    def forget(self, destination):
        pass

    def forwardTo(self, destination, peer, now):
        self.forwarded.append((destination, peer))
        return len(self.buffer.take(destination, now))


class FakeAccess:
    def __init__(self):
        self.solicited = []

    def solicit(self, target):
        self.solicited.append(target)


class Domain:
    def __init__(self, clock, keys1=None, keys2=None):
        self.clock = clock
        self.services = {}
        for address, peer, keys in ((MAG1, MAG2, keys1), (MAG2, MAG1, keys2)):
            core = HandoverCore(address, [peer])
            plane = MemoryDataPlane()
            service = HandoverService(clock, core, HandoverGuard(keys or KeyStore([KEY])),
                                      plane, transport=Wire(address))
            service.mag = FakeMag()
            core.lookup = self._lookup(service.mag)
            core.attachedSince = lambda mnId, mag=service.mag: getattr(
                mag.core.attachment(mnId), "since", None)
            service.startService()
            self.services[address] = service

    @staticmethod
    def _lookup(mag):
        def lookup(mnId):
            a = mag.core.attachment(mnId)
            if a is None or a.state != "BOUND":
                return None
            return Context(mnId, a.phoa, bytes.fromhex("02000000aa01"), LMA)
        return lookup

    def deliver(self, source):
        """Hand every datagram C{source} sent to its destination; returns them."""
        wire = self.services[source].transport
        out, wire.sent = wire.sent, []
        for data, (host, port) in out:
            target = self.services[IPv6Address(host)]
            target._received(mh.decodeMessage(data), data, (source, port), self.clock.seconds())
        return out


class TwoMags:
    """Mixin: MAG1 serves the mobile; MAG2 is its neighbour."""

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.domain = Domain(self.clock)
        self.mag1 = self.domain.services[MAG1]
        self.mag2 = self.domain.services[MAG2]
        self.mag1.mag.core.attachments[MN] = _Attachment("BOUND", PHOA, 1_699_999_000)


class ServiceTests(TwoMags, SynchronousTestCase):

    def test_reactive(self):
        """
        The HI and HAck cross authenticated; MAG2 goes on with the pHoA, asks
        for the downlink once it holds it, and MAG1 forwards.
        """
        event = AttachmentEvent(MN, linkLayer="02:00:00:00:aa:01")
        self.mag2.arrived(event)
        self.assertEqual(len(self.domain.deliver(MAG2)), 1)
        self.assertEqual(self.mag1.dataplane.handovers, {PHOA: ("deliver", None)})  # no hold
        self.domain.deliver(MAG1)
        self.assertEqual(self.mag2.mag.proceeded,
                         [AttachmentEvent(MN, PHOA, "02:00:00:00:aa:01")])
        self.assertEqual(len(self.domain.deliver(MAG2)), 1)
        self.assertEqual(self.mag1.dataplane.handovers, {PHOA: ("forward", MAG2)})
        self.domain.deliver(MAG1)
        self.assertEqual(self.mag2.dataplane.tunnels, {PHOA: LMA})
        self.assertIn(MAG1, self.mag2.dataplane.accepted)
        self.assertEqual(self.mag2.core.session(MN).state, State.RECEIVING)
        # Bound at MAG2: MAG1 is told and stops forwarding.
        self.mag2.bound(MN)
        self.domain.deliver(MAG2)
        # What is still on its way to MAG1 follows for a second, then it stops.
        self.assertEqual(self.mag1.dataplane.handovers, {PHOA: ("forward", MAG2)})
        self.clock.advance(1.0)
        self.assertEqual(self.mag1.dataplane.handovers, {})
        self.assertEqual(self.mag1.counters["refused"], 0)
        self.assertEqual(self.mag2.counters["refused"], 0)

    def test_fallbackWhenPreviousMagIsDown(self):
        """MAG1 never answers: MAG2 goes on without context within the timeout."""
        event = AttachmentEvent(MN, linkLayer="02:00:00:00:aa:01")
        self.mag2.arrived(event)
        self.clock.advance(0.25)
        self.assertEqual(len(self.mag2.transport.sent), 2)  # sent again half-way
        self.assertEqual(self.mag2.mag.proceeded, [])
        self.clock.advance(0.25)
        self.assertEqual(self.mag2.mag.proceeded, [event])
        self.assertIsNone(self.mag2.core.session(MN))

    def test_predictive(self):
        """
        MAG1 learns (802.11v) that the mobile goes to MAG2's access point: it
        holds the mobile's downlink at once, without probing its own access
        link for it (hostapd says nothing of a roam away, so the MAG core still
        has the mobile), offers the context, and once MAG2 accepts sends what
        it held on to MAG2.
        """
        hold = FakeHold()
        access = FakeAccess()
        self.mag1.hold, self.mag1.access = hold, access
        self.mag1.accessPoints = {"02:00:00:00:02:00": MAG2}
        self.mag1.leaving(MN, "02:00:00:00:02:00".upper())
        self.assertEqual(self.mag1.dataplane.handovers, {PHOA: ("hold", "nlbuf0")})
        self.assertTrue(hold.buffer.holding(PHOA))
        self.clock.advance(0.1)
        self.assertEqual(access.solicited, [])
        self.domain.deliver(MAG1)
        self.assertEqual(self.mag2.core.session(MN).state, State.PREPARED)
        self.domain.deliver(MAG2)
        self.assertEqual(hold.forwarded, [(PHOA, MAG2)])
        self.assertEqual(self.mag1.core.session(MN).state, State.FORWARDING)

    def test_acceptedOnceHolding(self):
        """
        MAG2 accepts an offer only once the route into its hold is in (set
        on the data plane's worker): what MAG1 forwards on the acceptance
        would otherwise be routed back to the core.
        """
        from twisted.internet.defer import Deferred
        routed = Deferred()
        self.mag2.hold = FakeHold()
        self.mag2.dataplane.hold = lambda phoa, device: routed
        self.mag1.accessPoints = {"02:00:00:00:02:00": MAG2}
        self.mag1.leaving(MN, "02:00:00:00:02:00")
        self.domain.deliver(MAG1)
        self.assertEqual(self.mag2.core.session(MN).state, State.PREPARED)
        self.assertEqual(self.mag2.transport.sent, [])
        routed.callback(None)
        self.assertEqual(len(self.domain.deliver(MAG2)), 1)
        self.assertEqual(self.mag1.dataplane.handovers, {PHOA: ("forward", MAG2)})

    def test_acceptedAtOnceWhenDiverting(self):
        """A data plane that hands held packets to the hold itself needs no route: no wait."""
        from twisted.internet.defer import Deferred
        self.mag2.hold = FakeHold()
        self.mag2.dataplane.hold = lambda phoa, device: Deferred()
        self.mag2.dataplane.toHold = lambda packet: None
        self.mag1.accessPoints = {"02:00:00:00:02:00": MAG2}
        self.mag1.leaving(MN, "02:00:00:00:02:00")
        self.domain.deliver(MAG1)
        self.assertEqual(len(self.domain.deliver(MAG2)), 1)
        self.assertEqual(self.mag1.dataplane.handovers, {PHOA: ("forward", MAG2)})

    def boundBeforeTheRoute(self):
        """MAG2 gets the context, is bound before its hold's route is in; MAG1 holds."""
        from twisted.internet.defer import Deferred
        routed = Deferred()
        self.mag1.hold, self.mag1.access = FakeHold(), FakeAccess()
        self.mag2.hold = FakeHold()
        self.mag2.dataplane.hold = lambda phoa, device: routed
        self.mag2.arrived(AttachmentEvent(MN, linkLayer="02:00:00:00:aa:01"))
        self.domain.deliver(MAG2)
        self.domain.deliver(MAG1)
        self.mag2.bound(MN)
        return routed

    def test_messagesInOrder(self):
        """
        'Forwarding done' (bound) waits behind the request for the downlink,
        which waits for the hold's route: MAG1 forwards, then stops.
        """
        routed = self.boundBeforeTheRoute()
        self.assertEqual(self.mag2.transport.sent, [])
        routed.callback(None)
        self.assertEqual(len(self.domain.deliver(MAG2)), 2)
        self.assertEqual(self.mag1.hold.forwarded, [(PHOA, MAG2)])
        self.assertEqual((self.mag1.counters["refused"], self.mag1.counters["freed"]), (0, 0))

    def test_doneBeforeAsked(self):
        """
        'Forwarding done' before the request for the downlink (reordered on
        the way): what MAG1 held goes to MAG2 all the same, not freed.
        """
        from netlmm.wire import fho
        self.boundBeforeTheRoute().callback(None)
        wire = self.mag2.transport
        wire.sent.sort(key=lambda m: fho.decodeMessage(m[0]).code != HiCode.FORWARDING_DONE)
        self.domain.deliver(MAG2)
        self.assertEqual(self.mag1.hold.forwarded, [(PHOA, MAG2)])
        self.assertEqual(self.mag1.counters["freed"], 0)

    def test_neverAskedToForward(self):
        """
        MAG2 took the context but never asked for the downlink (it went
        down): MAG1's hold is freed after forward_timeout, its route goes.
        """
        self.mag1.hold, self.mag1.access = FakeHold(), FakeAccess()
        self.mag2.arrived(AttachmentEvent(MN, linkLayer="02:00:00:00:aa:01"))
        self.domain.deliver(MAG2)
        self.assertEqual(self.mag1.dataplane.handovers, {PHOA: ("hold", "nlbuf0")})
        self.assertTrue(self.mag1.hold.buffer.holding(PHOA))
        self.clock.advance(self.mag1.core.forwardTimeout + 0.1)
        self.assertEqual(self.mag1.dataplane.handovers, {})
        self.assertFalse(self.mag1.hold.buffer.holding(PHOA))
        self.assertEqual(self.mag1.counters["freed"], 1)

    def test_predictiveUnknownAccessPoint(self):
        """A transition to an access point of no neighbour changes nothing."""
        self.mag1.leaving(MN, "02:00:00:00:09:00")
        self.assertEqual((self.mag1.core.sessions, self.mag1.transport.sent), ({}, []))

    def refusedAtMag1(self, data, source=MAG2):
        """Deliver C{data} to MAG1 from C{source}; MAG1 must change nothing."""
        before = dict(self.mag1.core.sessions), dict(self.mag1.dataplane.handovers)
        self.mag1._received(mh.decodeMessage(data), data, (source, 5436),
                            self.clock.seconds())
        self.assertEqual((dict(self.mag1.core.sessions), dict(self.mag1.dataplane.handovers)),
                         before)
        self.assertEqual(self.mag1.transport.sent, [])

    def request(self):
        hi = HandoverInitiate(1, code=HiCode.REQUEST, options=[mh.MobileNodeIdentifier(MN)])
        return self.mag2.guard.sign(hi, MAG2, MAG1, self.clock.seconds())

    def test_tampered(self):
        data = bytearray(self.request())
        data[-1] ^= 1
        self.refusedAtMag1(bytes(data))
        self.assertEqual(self.mag1.counters["refused"], 1)

    def test_replayed(self):
        data = self.request()
        self.mag1._received(mh.decodeMessage(data), data, (MAG2, 5436), self.clock.seconds())
        self.mag1.transport.sent = []
        sessions = dict(self.mag1.core.sessions)
        self.mag1._received(mh.decodeMessage(data), data, (MAG2, 5436), self.clock.seconds())
        self.assertEqual(self.mag1.core.sessions, sessions)
        self.assertEqual(self.mag1.transport.sent, [])
        self.assertEqual(self.mag1.counters["refused"], 1)

    def test_stale(self):
        data = self.request()
        self.clock.advance(8)
        self.refusedAtMag1(data)

    def test_unknownSender(self):
        """An address that is not a neighbour (and has no key) is refused, unanswered."""
        self.refusedAtMag1(self.request(), source=IPv6Address("2001:db8:9::1"))

    def test_unsigned(self):
        hi = HandoverInitiate(1, code=HiCode.REQUEST, options=[mh.MobileNodeIdentifier(MN)])
        self.refusedAtMag1(mh.encodeMessage(hi))

    def test_truncated(self):
        """A HI whose fixed part is cut short is refused (it does not decode)."""
        data = b"\x3b\x00\x0e\x00\x00\x00\x00\x01"  # 8 octets: no flags, no code
        self.refusedAtMag1(data)
        self.assertEqual(self.mag1.counters["refused"], 1)

    def test_otherKey(self):
        """A neighbour signing with a key MAG1 does not share is refused."""
        other = SecurityAssociation(300, b"x" * 20, "hmac-sha1-96",
                                    clients=[f"{MAG1}/128", f"{MAG2}/128"])
        hi = HandoverInitiate(1, code=HiCode.REQUEST, options=[mh.MobileNodeIdentifier(MN)])
        data = HandoverGuard(KeyStore([other])).sign(hi, MAG2, MAG1, self.clock.seconds())
        self.refusedAtMag1(data)

    def test_refusalsBounded(self):
        """
        Refusals are counted one by one and logged within the bounds of a
        RefusalLog per neighbour and fixed reason: a flood of 500 tampered
        HIs and 500 HAcks that answer nothing (each naming another sequence
        number) gives 3 lines of each, then one summary of each a minute.
        """
        from netlmm.test.test_floods import Lines
        lines = Lines(self)
        data = bytearray(self.request())
        data[-1] ^= 1
        for _ in range(500):
            self.mag1._received(mh.decodeMessage(bytes(data)), bytes(data), (MAG2, 5436),
                                self.clock.seconds())
        for n in range(500):
            hack = HandoverAcknowledge(1000 + n, code=HackCode.CONTEXT_ACCEPTED)
            raw = self.mag2.guard.sign(hack, MAG2, MAG1, self.clock.seconds())
            self.mag1._received(mh.decodeMessage(raw), raw, (MAG2, 5436), self.clock.seconds())
        self.assertEqual(self.mag1.counters["refused"], 1000)
        self.assertEqual(len(lines.texts(f"handover: refused a message from {MAG2}: ",
                                         "authenticat")), 3)
        self.assertEqual(len(lines.texts(f"handover: refused a message from {MAG2}: HAck ",
                                         "answers no HI pending")), 3)
        self.assertEqual(len(lines), 6)
        self.clock.advance(60)
        self.assertEqual(sorted(lines.texts("more like this")), [
            f"497 more like this from {MAG2} suppressed in the last 60 s: "
            "failed authentication",
            f"497 more like this from {MAG2} suppressed in the last 60 s: "
            "refused by the handover rules"])
        self.assertEqual(len(lines), 8)


class FakeFrames:
    """The hold's AF_PACKET socket: records the frames sent."""

    def __init__(self):
        self.sent = []

    def send(self, frame):
        self.sent.append(frame)


class ReleaseTests(TwoMags, SynchronousTestCase):
    """MAG2's hold with a mobile that arrives reactively."""

    def setUp(self):
        super().setUp()
        self.hold = BufferDevice(self.clock, PacketBuffer(), "acc0")
        self.hold.frames, self.hold.sourceMac = FakeFrames(), bytes(6)
        self.mag2.hold, self.mag2.access = self.hold, FakeAccess()
        self.mag2.arrived(AttachmentEvent(MN, linkLayer="02:00:00:00:aa:01"))
        self.domain.deliver(MAG2)
        self.domain.deliver(MAG1)

    def packet(self, n):
        return b"\x60" + bytes(7) + IPv6Address("2001:db8:c::1").packed + PHOA.packed \
            + n.to_bytes(4, "big")

    def answer(self):
        """The mobile sends from its address on MAG2's access link."""
        self.mag2._frame(Frame(bytes(6), MN_MAC, PHOA, LMA, 64, 17, b""))

    def test_stragglersAfterBound(self):
        """
        Bound before the mobile answered, the hold is released when it does;
        what the kernel still routes into the hold until the route is gone
        goes to the mobile too, not dropped as 'not held for'.
        """
        self.hold.received(self.packet(0), self.clock.seconds())
        self.mag2.bound(MN)
        self.assertTrue(self.hold.buffer.holding(PHOA))
        self.answer()
        self.assertEqual(self.mag2.dataplane.handovers, {})
        self.hold.received(self.packet(1), self.clock.seconds())
        self.assertEqual([f[54:58] for f in self.hold.frames.sent],
                         [n.to_bytes(4, "big") for n in (0, 1)])
        self.clock.advance(self.mag2.probeInterval)
        self.hold.received(self.packet(2), self.clock.seconds())
        self.assertEqual(len(self.hold.frames.sent), 2)
        self.assertEqual(self.hold.buffer.counters["droppedUnknown"], 1)

    def test_stragglersNotForgottenByAnotherHandover(self):
        """A handover that began meanwhile keeps its own state in the hold."""
        self.mag2.bound(MN)
        self.answer()
        self.hold.released[PHOA] = ("peer", MAG1)
        self.clock.advance(self.mag2.probeInterval)
        self.assertEqual(self.hold.released, {PHOA: ("peer", MAG1)})


    def test_divertWired(self):
        """The userspace data plane hands held mobiles' packets to the hold while it runs."""
        class Plane(MemoryDataPlane):
            toHold = None

        class Hold(FakeHold):
            def start(self, mac, address):
                pass

            def stop(self):
                pass

            def divert(self, packet):
                pass
        hold, plane, access = Hold(), Plane(), FakeAccess()
        access.mac, access.frameListeners = bytes(6), []
        service = HandoverService(self.clock, HandoverCore(MAG2, [MAG1]),
                                  HandoverGuard(KeyStore([KEY])), plane, access, hold,
                                  transport=Wire(MAG2))
        service.startService()
        self.assertEqual(plane.toHold, hold.divert)
        service.stopService()
        self.assertIsNone(plane.toHold)


class QueueTests(SynchronousTestCase):
    def test_queueFallback(self):
        """
        A kernel that refuses a TUN transmit queue of the bound's size (Debian
        6.1: ERANGE at 65,536) gets one of QUEUE_FALLBACK, with a warning; the
        MAG starts.
        """
        import errno

        from netlmm.dataplane import handover
        asked = []

        def setUp(name, queue=None):
            asked.append(queue)
            if queue > handover.QUEUE_FALLBACK:
                raise OSError(errno.ERANGE, "Numerical result out of range")
        self.patch(handover, "setUp", setUp)
        device = BufferDevice(Clock(), PacketBuffer(maxPackets=65536), "acc0")
        device._queueUp()
        self.assertEqual(asked, [65536, handover.QUEUE_FALLBACK])
        small = BufferDevice(Clock(), PacketBuffer(maxPackets=2048), "acc0")
        self.patch(handover, "setUp", lambda name, queue=None: (_ for _ in ()).throw(
            OSError(errno.EPERM, "no")))
        self.assertRaises(OSError, small._queueUp)


class BufferTests(SynchronousTestCase):
    def packet(self, n, size=100):
        return b"\x60" + bytes(23) + PHOA.packed + n.to_bytes(4, "big") + bytes(size - 44)

    def test_orderAndBounds(self):
        b = PacketBuffer(maxPackets=3, maxBytes=10_000, maxAge=1.0)
        self.assertFalse(b.add(PHOA, self.packet(0), 0.0))
        self.assertEqual(b.counters["droppedUnknown"], 1)
        b.open(PHOA)
        for n in range(5):
            b.add(PHOA, self.packet(n), 0.1 * n)
        self.assertEqual(b.counters["droppedPackets"], 2)
        self.assertEqual(b.take(PHOA, 0.5), [self.packet(n) for n in range(3)])
        self.assertEqual((b.packets, b.bytes), (0, 0))

    def test_dropOld(self):
        b = PacketBuffer(maxPackets=2, maxBytes=10_000, maxAge=1.0, policy="drop-old")
        b.open(PHOA)
        for n in range(4):
            b.add(PHOA, self.packet(n), 0.1 * n)
        self.assertEqual(b.take(PHOA, 0.4), [self.packet(2), self.packet(3)])
        self.assertEqual(b.counters["droppedPackets"], 2)

    def test_bytesAndAge(self):
        b = PacketBuffer(maxPackets=100, maxBytes=250, maxAge=1.0)
        b.open(PHOA)
        for n in range(3):
            b.add(PHOA, self.packet(n), 0.0)
        self.assertEqual(b.counters["droppedBytes"], 1)
        self.assertEqual(b.take(PHOA, 2.0), [])
        self.assertEqual(b.counters["droppedAge"], 2)

    def test_freed(self):
        b = PacketBuffer()
        b.open(PHOA)
        b.add(PHOA, self.packet(1), 0.0)
        b.free(PHOA)
        self.assertEqual((b.counters["droppedFreed"], b.packets, b.holding(PHOA)),
                         (1, 0, False))

    def test_policyChecked(self):
        self.assertRaises(ValueError, PacketBuffer, policy="random")

    def test_early(self):
        """
        What a neighbour forwards before this MAG holds for the mobile is
        kept, within the bounds, and comes first once it holds; not held for
        (holding() is False) until then.
        """
        b = PacketBuffer(maxPackets=3, maxBytes=10_000, maxAge=1.0)
        self.assertTrue(b.add(PHOA, self.packet(0), 0.0, early=True))
        self.assertTrue(b.add(PHOA, self.packet(1), 0.1, early=True))
        self.assertFalse(b.holding(PHOA))
        self.assertFalse(b.add(PHOA, self.packet(9), 0.1))  # not early: not held for
        b.open(PHOA)
        self.assertTrue(b.holding(PHOA))
        b.add(PHOA, self.packet(2), 0.2)
        b.add(PHOA, self.packet(3), 0.3)
        self.assertEqual(b.counters["droppedPackets"], 1)
        self.assertEqual(b.take(PHOA, 0.4), [self.packet(n) for n in range(3)])

    def test_earlyUnclaimed(self):
        """Early packets nobody holds for go by age, counted, and leave nothing behind."""
        b = PacketBuffer(maxAge=1.0)
        b.add(PHOA, self.packet(0), 0.0, early=True)
        b.expire(1.5)
        self.assertEqual((b.counters["droppedAge"], b.packets, b.queues, b.unclaimed),
                         (1, 0, {}, set()))

    def test_earlyPrefix(self):
        """A per-MN prefix held adopts the early packets of its addresses, oldest first."""
        prefix = IPv6Network("2001:db8:1::/64")
        other = IPv6Address("2001:db8:1::9")
        b = PacketBuffer()
        b.add(other, self.packet(1), 0.2, early=True)
        b.add(PHOA, self.packet(0), 0.1, early=True)
        b.open(prefix)
        self.assertEqual(b.take(prefix, 0.3), [self.packet(0), self.packet(1)])
        self.assertEqual((b.queues, b.unclaimed, b.packets), ({}, set(), 0))


class ConfigTests(SynchronousTestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.keys = os.path.join(self.dir, "handover.toml")
        writeHandoverKeys(self.keys, [KEY])

    def build(self, **handover):
        data = {"handover": dict(dict(neighbors=[str(MAG2)], keys=self.keys,
                                      buffer=False), **handover)}
        return fromConfig(Table(data, "mag"), Clock(), MAG1, MemoryDataPlane(), None)

    def badKeys(self, text):
        path = os.path.join(self.dir, "bad.toml")
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o600)
        return path

    def test_keysRoundTrip(self):
        (sa,) = list(loadHandoverKeys(self.keys))
        self.assertEqual((sa.spi, sa.key, sa.clients), (KEY.spi, KEY.key, KEY.clients))

    def test_built(self):
        service = self.build(context_timeout=0.2, access_points={
            "02:00:00:00:01:00": str(MAG2)})
        self.assertEqual(service.core.neighbors, [MAG2])
        self.assertEqual(service.core.contextTimeout, 0.2)
        self.assertEqual(service.accessPoints, {"02:00:00:00:01:00": MAG2})
        self.assertIsNone(service.hold)
        self.assertIsNone(fromConfig(Table({}, "mag"), Clock(), MAG1, None, None))

    def test_neighboursLearnedOnly(self):
        """No configured neighbours: those the PMIP client names (learnNeighbour)."""
        service = self.build(neighbors=[])
        self.assertEqual(service.core.neighbors, [])
        service = fromConfig(Table({"handover": dict(keys=self.keys, buffer=False)}, "mag"),
                             Clock(), MAG1, MemoryDataPlane(), None)
        self.assertEqual(service.core.neighbors, [])

    def test_errors(self):
        cases = [
            (dict(neighbors="x"), "mag.handover.neighbors: expected a list"),
            (dict(neighbors=["x"]), "mag.handover.neighbors: 'x' is not an IPv6 address"),
            (dict(neighbors=[str(MAG1)]), f"mag.handover.neighbors: {MAG1} is this MAG"),
            (dict(neighbors=["2001:db8::99"]), "mag.handover.keys: "),
            (dict(keys=self.badKeys('[[sa]]\nspi = 300\nkey = "00"\npeers = ["::1"]\n')),
             "mag.handover.keys: "),
            (dict(keys="/nonexistent"), "mag.handover.keys: /nonexistent: no such key file"),
            (dict(keys=self.badKeys("[[sa]]\nspi = 300\n")), "mag.handover.keys: "),
            (dict(buffer=True), "mag.handover.buffer: holding a mobile's packets needs"),
            (dict(access_points={"zz": str(MAG2)}), "mag.handover.access_points.zz: expected"),
            (dict(access_points={"02:00:00:00:01:00": "2001:db8::5"}),
             "mag.handover.access_points.02:00:00:00:01:00: 2001:db8::5 is not one"),
            (dict(bogus=1), "mag.handover.bogus: unknown key"),
        ]
        for change, message in cases:
            e = self.assertRaises(ConfigError, self.build, **change)
            self.assertTrue(str(e).startswith(message), (str(e), message))


V4 = IPv4Interface("10.200.0.7/24")
V4_ROUTER = IPv4Address("10.200.0.1")


class FakeDhcp4:
    """The MAG's DHCPv4 server, as the handover service sees it."""

    def __init__(self):
        self.leases = {}

    def bound(self, mnId, homes):
        self.leases[mnId] = (homes.ipv4, homes.ipv4Router)

    def unbound(self, mnId):
        self.leases.pop(mnId, None)


class DualStackTests(TwoMags, SynchronousTestCase):
    """
    A dual-stack mobile (RFC 5844): its IPv4 state goes with the context,
    MAG2 serves its IPv4 at once, and on a data plane that carries IPv4 in
    handover its IPv4 home address is held, forwarded and released with its
    pHoA.
    """

    def setUp(self):
        super().setUp()
        self.mag1.core.lookup = lambda mnId: Context(mnId, PHOA, MN_MAC, LMA, V4, V4_ROUTER,
                                                     True) if mnId == MN else None
        self.expected = []
        self.mag2.mag.core.expectIpv4 = lambda mnId, ipv4: self.expected.append((mnId, ipv4))
        self.mag2.mag.ipv4 = FakeDhcp4()
        for service in (self.mag1, self.mag2):
            service.dataplane.handoverIpv4 = True

    def handover(self):
        self.mag2.arrived(AttachmentEvent(MN, linkLayer="02:00:00:00:aa:01"))
        self.domain.deliver(MAG2)
        self.domain.deliver(MAG1)
        self.domain.deliver(MAG2)
        self.domain.deliver(MAG1)

    def test_reactive(self):
        """MAG2 has the IPv4 uplink, lease and hint at once; MAG1 forwards both homes, then stops both."""
        self.handover()
        self.assertEqual(self.mag2.dataplane.tunnels, {PHOA: LMA, V4.ip: LMA})
        self.assertEqual(self.mag2.mag.ipv4.leases, {MN: (V4, V4_ROUTER)})
        self.assertEqual(self.expected, [(MN, V4)])
        self.assertEqual(self.mag1.dataplane.handovers,
                         {PHOA: ("forward", MAG2), V4.ip: ("forward", MAG2)})
        self.assertEqual(self.mag2.dataplane.handovers,
                         {PHOA: ("deliver", None), V4.ip: ("deliver", None)})
        self.mag2.bound(MN)
        self.domain.deliver(MAG2)
        self.clock.advance(1.0)
        self.assertEqual(self.mag1.dataplane.handovers, {})
        self.assertEqual(self.mag2.dataplane.handovers, {})
        self.assertEqual(self.mag2._ipv4, {})

    def test_ipv6OnlyDataPlane(self):
        """A data plane without IPv4 in handover (the kernel ones): the pHoA alone is forwarded."""
        for service in (self.mag1, self.mag2):
            service.dataplane.handoverIpv4 = False
        self.handover()
        self.assertEqual(self.mag1.dataplane.handovers, {PHOA: ("forward", MAG2)})
        self.assertEqual(self.mag2.dataplane.tunnels, {PHOA: LMA, V4.ip: LMA})
        self.assertEqual(self.mag2.mag.ipv4.leases, {MN: (V4, V4_ROUTER)})

    def test_heldAndReleasedTogether(self):
        """
        MAG2 holds IPv4 and IPv6 downlink; it probes the pHoA only, and the
        mobile's answer releases both, IPv4 as IPv4 frames (EtherType 0x0800).
        """
        hold = BufferDevice(self.clock, PacketBuffer(), "acc0")
        hold.frames, hold.sourceMac = FakeFrames(), bytes(6)
        access = FakeAccess()
        self.mag2.hold, self.mag2.access = hold, access
        self.handover()
        v4 = b"\x45" + bytes(11) + IPv4Address("192.0.2.1").packed + V4.ip.packed + b"v4"
        v6 = b"\x60" + bytes(7) + IPv6Address("2001:db8:c::1").packed + PHOA.packed + b"v6"
        hold.divert(v4)
        hold.divert(v6)
        self.assertEqual(hold.frames.sent, [])
        self.clock.advance(0)
        self.assertEqual(set(access.solicited), {PHOA})
        self.mag2._frame(Frame(bytes(6), MN_MAC, PHOA, LMA, 64, 17, b""))
        self.assertEqual(sorted((f[12:14], f[-2:]) for f in hold.frames.sent),
                         [(b"\x08\x00", b"v4"), (b"\x86\xdd", b"v6")])
        self.assertEqual(self.mag2.dataplane.handovers,
                         {PHOA: ("deliver", MN_MAC), V4.ip: ("deliver", MN_MAC)})

    def test_timeoutFreesTheEarlyLease(self):
        """MAG2 is never bound: the IPv4 uplink and the lease it gave early go at the timeout."""
        self.mag2.mag.core.attachments[MN] = _Attachment("ATTACHED", None, 1_700_000_000)
        self.mag2.hold = FakeHold()
        self.handover()
        self.assertEqual(self.mag2.mag.ipv4.leases, {MN: (V4, V4_ROUTER)})
        self.clock.advance(30)
        self.assertEqual(self.mag2.mag.ipv4.leases, {})
        self.assertNotIn(V4.ip, self.mag2.dataplane.tunnels)


class LearnedNeighbourTests(TwoMags, SynchronousTestCase):
    """
    Neighbours from the PMIP client (draft Appendix D): MAG2, which has no
    configured neighbour, is told that the mobile bound there came from MAG1
    (Notification option 13): MAG1 becomes its neighbour, and MAG1, told of
    MAG2 by its MOVED, forwards what it held for the departed mobile.
    """

    def setUp(self):
        super().setUp()
        for service in (self.mag1, self.mag2):
            service.core.neighbors = []

    def test_lateContextAndForwarding(self):
        self.mag1.detached(MN)  # held at MAG1, nobody asks: MAG2 does not know it
        self.assertEqual(self.mag1.dataplane.handovers, {PHOA: ("deliver", None)})
        self.mag2.learned(MN, MAG1)  # the SUCCESS naming MAG1, before 'bound'
        # (MAG1's MOVED naming MAG2 comes after MAG2's HI: MAG1 learns MAG2 from it.)
        self.assertEqual(self.mag2.core.neighbors, [MAG1])
        self.assertIn(MAG1, self.mag2.dataplane.accepted)
        self.assertEqual(len(self.domain.deliver(MAG2)), 2)  # HI (F), 'forwarding done'
        self.assertEqual(self.mag1.dataplane.handovers, {PHOA: ("forward", MAG2)})
        self.assertEqual(len(self.domain.deliver(MAG1)), 2)  # their HAcks, expected
        self.clock.advance(self.mag1.linger)
        self.assertEqual(self.mag1.dataplane.handovers, {})
        self.assertEqual((self.mag1.counters["refused"], self.mag2.counters["refused"]), (0, 0))
        self.assertEqual(self.mag1.core.neighbors, [MAG2])
        self.mag1.learnNeighbour(MAG2)  # the MOVED, late: nothing new
        self.assertEqual(self.mag1.core.neighbors, [MAG2])
        # Known now: told again, nothing more is asked.
        self.mag2.learned(MN, MAG1)
        self.assertEqual(self.domain.deliver(MAG2), [])

    def test_strangerAskingForAnother(self):
        """A keyed MAG asking for a mobile this MAG does not have stays a stranger: refused."""
        self.mag2.learned(MN, MAG1)  # MAG1 does not serve it any more
        self.mag1.mag.core.attachments.clear()
        self.domain.deliver(MAG2)
        self.assertEqual(self.mag1.core.neighbors, [])
        self.assertEqual(self.mag1.counters["refused"], 2)

    def test_noSharedKey(self):
        """A MAG this one shares no key with is not made a neighbour; said once."""
        other = IPv6Address("2001:db8:ffff::99")
        from twisted.logger import capturedLogs, formatEvent
        with capturedLogs() as events:
            self.mag2.learned(MN, other)
            self.mag2.learned(MN, other)
        said = [formatEvent(e) for e in events]
        self.assertEqual(self.mag2.core.neighbors, [])
        self.assertEqual(self.domain.deliver(MAG2), [])
        self.assertEqual(len([e for e in said if "no key" in e]), 1)

    def test_itself(self):
        self.assertFalse(self.mag2.learnNeighbour(MAG2))
        self.assertEqual(self.mag2.core.neighbors, [])
