"""
Several PMIP clients in one domain (draft 4.1 step 3, 4.2, 4.5) and duplicate
address detection between them (Appendix B): the stable choice of a mobile's
PMIP client, the Conflict Detection Request / Response messages, the PMIP
client's AWAITING_PEERS state (fake clock), the MAG's answer to a conflict,
and the MAG defending the address on the access link.
"""

import hashlib
from ipaddress import IPv6Address

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from netlmm.access.link import AccessLink
from netlmm.access.rs import RsDetector, mnIdOf
from netlmm.assignment.slaac import SlaacAssignment
from netlmm.config import ConfigError, Table
from netlmm.core import mag as magcore
from netlmm.core import pmip
from netlmm.core.effects import AddressConflict, AskPeers, Notify, SendControl, SendMH
from netlmm.core.mag import MagCore
from netlmm.core.pmip import PmipCore
from netlmm.core.selection import ClientSelector, endpointText
from netlmm.lab.fakes import FakeAccessSystem, RecordingMag
from netlmm.test.test_access import MN, MN_ADDRESS, PREFIX, config
from netlmm.wire import control
from netlmm.wire.control import (
    AddressMode, Conflict, ConflictRequest, ConflictResponse, Notification, Result,
    Trigger,
)
from netlmm.wire.errors import DecodeError
from netlmm.wire.icmpv6 import NA_OVERRIDE, NeighborSolicitation, decodeMessage, encodeFrame

LMA = IPv6Address("2001:db8:ffff::1")
MAG1 = IPv6Address("2001:db8:a::1")
MAG2 = IPv6Address("2001:db8:a::2")
PHOA = IPv6Address("2001:db8:1::100")
MN1 = b"mn1@example.net"
MN2 = b"mn2@example.net"
PEERS = ("[2001:db8:b::3]:5438", "[2001:db8:b::4]:5438")
CLIENTS = [(IPv6Address("2001:db8:b::2"), 5437), (IPv6Address("2001:db8:b::3"), 5437),
           (IPv6Address("2001:db8:b::4"), 5437)]


def roundtrip(message):
    return control.decodeControl(control.encodeControl(message))


class SelectionTests(SynchronousTestCase):
    """Every MAG chooses the same PMIP client for a mobile, whatever the list order."""

    def test_independentOfOrder(self):
        mobiles = [f"02:00:00:00:{i // 256:02x}:{i % 256:02x}".encode() for i in range(300)]
        a = ClientSelector(CLIENTS)
        b = ClientSelector(list(reversed(CLIENTS)))
        c = ClientSelector([CLIENTS[1], CLIENTS[2], CLIENTS[0]])
        for mnId in mobiles:
            self.assertEqual(a.choose(mnId), b.choose(mnId))
            self.assertEqual(a.choose(mnId), c.choose(mnId))

    def test_sameAfterMoving(self):
        """Two MAGs (two services' selectors) agree, every time they are asked."""
        mag1, mag2 = ClientSelector(CLIENTS), ClientSelector(CLIENTS[::-1])
        for _ in range(3):
            self.assertEqual(mag1.choose(MN1), mag2.choose(MN1))

    def test_definition(self):
        """SHA-256 of the MN identifier, modulo the list sorted by '[addr]:port'."""
        ordered = sorted(CLIENTS, key=endpointText)
        for mnId in (MN1, MN2, b"02:00:00:00:aa:01"):
            n = int.from_bytes(hashlib.sha256(mnId).digest(), "big")
            self.assertEqual(ClientSelector(CLIENTS).choose(mnId), ordered[n % 3])

    def test_spread(self):
        """Mobiles are spread over all the clients."""
        s = ClientSelector(CLIENTS)
        counts = {}
        for i in range(300):
            chosen = s.choose(f"mn{i}".encode())
            counts[chosen] = counts.get(chosen, 0) + 1
        self.assertEqual(set(counts), set(CLIENTS))
        self.assertTrue(all(n > 60 for n in counts.values()), counts)

    def test_explicitMap(self):
        hashed = ClientSelector(CLIENTS).choose(MN1)
        other = next(c for c in CLIENTS if c != hashed)
        s = ClientSelector(CLIENTS, {MN1: other})
        self.assertEqual(s.choose(MN1), other)
        self.assertEqual(s.choose(MN2), ClientSelector(CLIENTS).choose(MN2))
        self.assertRaises(ValueError, ClientSelector, CLIENTS,
                          {MN1: (IPv6Address("2001:db8::9"), 1)})
        self.assertRaises(ValueError, ClientSelector, [])

    def test_config(self):
        """[mag] pmip stays valid; pmip_clients and [mag.pmip_map] add several."""
        from netlmm.tap.mag import pmipClients, pmipMapFromTable
        self.assertEqual(pmipClients(Table({"pmip": "[::1]:9"}, "mag")),
                         [(IPv6Address("::1"), 9)])
        self.assertEqual(pmipClients(Table({}, "mag")), [(IPv6Address("::1"), 5437)])
        t = Table({"pmip_clients": ["[2001:db8:b::3]:5437", "[2001:db8:b::2]:5437"],
                   "pmip_map": {"mn1": "[2001:db8:b::3]:5437"}}, "mag")
        clients = pmipClients(t)
        self.assertEqual(len(clients), 2)
        self.assertEqual(pmipMapFromTable(t, clients), {b"mn1": clients[0]})
        t.finish()
        for bad in ({"pmip": "[::1]:1", "pmip_clients": ["[::1]:2"]},
                    {"pmip_clients": []}, {"pmip_clients": ["[::1]:2", "[::1]:2"]},
                    {"pmip_clients": "[::1]:2"}):
            self.assertRaises(ConfigError, pmipClients, Table(bad, "mag"))
        t = Table({"pmip_map": {"mn1": "[::1]:7"}}, "mag")
        self.assertRaises(ConfigError, pmipMapFromTable, t, pmipClients(t))


class WireTests(SynchronousTestCase):
    """Conflict Detection Request (4) and Response (5)."""

    def test_request(self):
        r = ConflictRequest(9, MN1, PHOA)
        data = control.encodeControl(r)
        self.assertEqual(data[:8], bytes.fromhex("04") + bytes((len(data),))
                         + bytes.fromhex("2000 00000009"))
        self.assertEqual(data[8:], bytes((1, len(MN1))) + MN1 + b"\x02\x10" + PHOA.packed)
        self.assertEqual(roundtrip(r), r)

    def test_response(self):
        for result in (Conflict.NO_CONFLICT, Conflict.CONFLICT_DETECTED):
            r = ConflictResponse(9, result, MN1, PHOA)
            data = control.encodeControl(r)
            self.assertEqual(data[0], 5)
            self.assertEqual(data[8:11], bytes((5, 1, result)))
            self.assertEqual(roundtrip(r), r)

    def test_malformed(self):
        good = control.encodeControl(ConflictRequest(9, MN1, PHOA))
        noAddress = bytearray(good[:8 + 2 + len(MN1)])
        noAddress[1] = len(noAddress)
        self.assertRaises(DecodeError, control.decodeControl, bytes(noAddress))
        good = control.encodeControl(ConflictResponse(9, 0, MN1, PHOA))
        noResult = bytearray(good[:8] + good[11:])
        noResult[1] = len(noResult)
        self.assertRaises(DecodeError, control.decodeControl, bytes(noResult))


class PmipPeersTests(SynchronousTestCase):
    """The PMIP client asks its peers before binding a SLAAC address."""

    def makePmip(self, **kw):
        kw.setdefault("peers", PEERS)
        kw.setdefault("peerTimeout", 1.0)
        return PmipCore(LMA, **kw)

    def trigger(self, core, transaction=1, mnId=MN1, phoa=PHOA, mag=MAG1,
                mode=AddressMode.STATELESS, now=0):
        return core.receiveTrigger(roundtrip(Trigger(transaction, mnId, mag, phoa, mode)), now)

    def ask(self, core, **kw):
        effects = self.trigger(core, **kw)
        self.assertEqual(len(effects), 1, effects)
        (ask,) = effects
        self.assertIsInstance(ask, AskPeers)
        self.assertEqual(ask.peers, PEERS)
        self.assertEqual(roundtrip(ask.request), ask.request)
        return ask.request

    def answer(self, core, peer, request, result, now=0.1):
        return core.receiveConflictResponse(
            peer, roundtrip(ConflictResponse(request.transaction, result, request.mnId,
                                             request.phoa)), now)

    def pbus(self, effects):
        return [e for e in effects if type(e) is SendMH]

    def test_noConflict(self):
        core = self.makePmip()
        request = self.ask(core)
        self.assertEqual((request.mnId, request.phoa), (MN1, PHOA))
        self.assertEqual(core.mobile(MN1).state, pmip.AWAITING_PEERS)
        self.assertEqual(self.answer(core, PEERS[0], request, Conflict.NO_CONFLICT), [])
        effects = self.answer(core, PEERS[1], request, Conflict.NO_CONFLICT)
        (pbu,) = self.pbus(effects)
        self.assertEqual(core.mobile(MN1).state, pmip.REGISTERING)
        self.assertEqual(core.conflictCounters["asked"], 1)

    def test_conflict(self):
        core = self.makePmip()
        request = self.ask(core)
        effects = self.answer(core, PEERS[1], request, Conflict.CONFLICT_DETECTED)
        self.assertEqual(effects, [Notify(Notification(1, Result.ADDRESS_CONFLICT, MN1, PHOA),
                                          MAG1)])
        self.assertIsNone(core.mobile(MN1))
        self.assertIsNone(core.nextTimer())
        # The other peer's late answer is dropped.
        self.assertEqual(self.answer(core, PEERS[0], request, Conflict.NO_CONFLICT), [])
        # The mobile's next address is asked about afresh.
        self.ask(core, transaction=2, phoa="2001:db8:1::101")

    def test_peerTimeout(self):
        """A peer that does not answer within peerTimeout: the PBU goes anyway."""
        core = self.makePmip(peerTimeout=0.5)
        request = self.ask(core)
        self.answer(core, PEERS[0], request, Conflict.NO_CONFLICT)
        self.assertEqual(core.nextTimer(), 0.5)
        self.assertEqual(core.handleTimer(0.4), [])
        effects = core.handleTimer(0.5)
        self.assertEqual(len(self.pbus(effects)), 1)
        self.assertEqual(core.mobile(MN1).state, pmip.REGISTERING)
        self.assertEqual(core.conflictCounters["silent"], 1)
        # The silent peer's late answer changes nothing.
        self.assertEqual(self.answer(core, PEERS[1], request, Conflict.CONFLICT_DETECTED,
                                     now=0.6), [])
        self.assertEqual(core.mobile(MN1).state, pmip.REGISTERING)

    def test_peerNotConnected(self):
        core = self.makePmip()
        request = self.ask(core)
        self.assertEqual(core.peerFailed(request.transaction, PEERS[0], 0), [])
        effects = self.answer(core, PEERS[1], request, Conflict.NO_CONFLICT)
        self.assertEqual(len(self.pbus(effects)), 1)

    def test_onlyStateless(self):
        """Stateful, static and LMA-assigned triggers, and handoffs, ask nobody."""
        core = self.makePmip()
        for mode, phoa, mnId in ((AddressMode.STATEFUL, PHOA, MN1),
                                 (AddressMode.LMA_ASSIGNED, None, MN2),
                                 (AddressMode.STATIC, "2001:db8:1::7", b"mn3")):
            effects = self.trigger(core, mnId=mnId, phoa=phoa, mode=mode)
            self.assertEqual(len(self.pbus(effects)), 1, effects)

    def test_withoutPeers(self):
        effects = self.trigger(PmipCore(LMA))
        self.assertEqual(len(self.pbus(effects)), 1)

    def test_ownCacheFirst(self):
        """A conflict in the client's own cache is answered without asking."""
        core = self.makePmip()
        self.ask(core)
        effects = self.trigger(core, transaction=2, mnId=MN2)
        self.assertEqual(effects, [Notify(Notification(2, Result.ADDRESS_CONFLICT, MN2, PHOA),
                                          MAG1)])

    def test_answerFromCache(self):
        core = self.makePmip(peers=())
        self.trigger(core)
        yes = core.answerConflict(ConflictRequest(5, MN2, PHOA))
        self.assertEqual(yes, ConflictResponse(5, Conflict.CONFLICT_DETECTED, MN2, PHOA))
        no = core.answerConflict(ConflictRequest(6, MN2, "2001:db8:1::9"))
        self.assertEqual(no.result, Conflict.NO_CONFLICT)
        same = core.answerConflict(ConflictRequest(7, MN1, PHOA))
        # The same mobile bound here: held (draft E.1, a restarted peer asks).
        self.assertEqual(same.result, Conflict.HELD_HERE)

    def test_simultaneousChecks(self):
        """Two clients checking one address at once: the lower MN identifier wins."""
        a, b = self.makePmip(), self.makePmip()
        ra = self.ask(a, mnId=MN1)
        rb = self.ask(b, mnId=MN2)
        self.assertEqual(b.answerConflict(ra).result, Conflict.NO_CONFLICT)
        self.assertEqual(a.answerConflict(rb).result, Conflict.CONFLICT_DETECTED)

    def test_detachWhileAsking(self):
        core = self.makePmip()
        request = self.ask(core)
        effects = core.receiveDetach(roundtrip(control.Detach(2, MN1, MAG1, PHOA)), 0.1)
        self.assertIn(Notify(Notification(1, Result.SUPERSEDED, MN1, PHOA), MAG1), effects)
        self.assertIn(Notify(Notification(2, Result.SUCCESS, MN1), MAG1), effects)
        self.assertIsNone(core.mobile(MN1))
        self.assertEqual(self.answer(core, PEERS[0], request, Conflict.NO_CONFLICT), [])

    def test_retriggerWhileAsking(self):
        core = self.makePmip()
        request = self.ask(core)
        effects = self.trigger(core, transaction=2, mag=MAG2)
        self.assertEqual(effects, [Notify(Notification(1, Result.SUPERSEDED, MN1, PHOA),
                                          MAG1)])
        self.answer(core, PEERS[0], request, Conflict.NO_CONFLICT)
        self.answer(core, PEERS[1], request, Conflict.NO_CONFLICT)
        self.assertEqual(core.mobile(MN1).pending.transaction, 2)
        self.assertEqual(core.mobile(MN1).pending.mag, MAG2)


class MagConflictTests(SynchronousTestCase):
    """ADDRESS_CONFLICT keeps the mobile attached and asks for defence."""

    def test_conflictThenNewAddress(self):
        core = MagCore(MAG1, LMA)
        core.attach(MN1, 0)
        (send,) = core.addressReady(MN1, PHOA, AddressMode.STATELESS, 0)
        effects = core.receiveNotification(
            roundtrip(Notification(send.message.transaction, Result.ADDRESS_CONFLICT, MN1,
                                   PHOA)), 0.1)
        self.assertEqual(effects, [AddressConflict(MN1, PHOA)])
        self.assertEqual(core.attachment(MN1).state, magcore.ATTACHED)
        self.assertIsNone(core.nextTimer())
        (send,) = core.addressReady(MN1, "2001:db8:1::101", AddressMode.STATELESS, 2)
        self.assertIsInstance(send, SendControl)
        self.assertEqual(send.message.phoa, IPv6Address("2001:db8:1::101"))


class DefendTests(SynchronousTestCase):
    """The slaac strategy defends a conflicting address with an NA."""

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.system = FakeAccessSystem()
        self.link = AccessLink(self.reactor, config(advertise=False), self.system)
        self.mag = RecordingMag()
        self.strategy = self.mag.strategy = SlaacAssignment(self.link, PREFIX)
        self.detector = RsDetector(self.reactor, self.link, idleTimeout=30, watchPorts=False)
        self.strategy.start(self.mag)
        self.detector.start(self.mag)
        self.icmp = self.system.sockets[0]
        self.mnId = mnIdOf(MN)

    def dad(self, target):
        data = encodeFrame(b"\x33\x33\xff\x00\x00\x01", MN, "::", "ff02::1:ff00:1",
                           NeighborSolicitation(target))
        self.link._frameReceived(data, [], ("acc0", 0x86DD, 2, 1, MN))

    def test_defend(self):
        self.link.solicited(MN, IPv6Address("fe80::ff:fe00:aa01"))
        self.dad(MN_ADDRESS)
        self.assertEqual(len(self.mag.kinds("addressReady")), 1)
        self.strategy.addressConflict(self.mnId, MN_ADDRESS)
        (data, to), = self.icmp.sent
        self.assertEqual(to, ("ff02::1", 0, 0, 7))
        na = decodeMessage(data)
        self.assertEqual((na.flags, na.target), (NA_OVERRIDE, MN_ADDRESS))
        self.assertEqual(na.options[0].address, bytes.fromhex("020000000101"))
        # A repeated DAD probe for it is defended again, not triggered.
        self.dad(MN_ADDRESS)
        self.assertEqual(len(self.icmp.sent), 2)
        self.assertEqual(len(self.mag.kinds("addressReady")), 1)
        # The mobile's next address is triggered.
        self.dad("2001:db8:1::1:2:3:4")
        ready = self.mag.kinds("addressReady")
        self.assertEqual(ready[-1][2], IPv6Address("2001:db8:1::1:2:3:4"))
        self.assertEqual(self.strategy.defended, 2)


def _freePort():
    import socket
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.bind(("::1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class ServiceTests(TestCase):
    """Real services over loopback: peers answer, the MAG spreads mobiles."""

    timeout = 20

    @inlineCallbacks
    def startPmips(self, count=2, peers=True):
        from netlmm.service.pmip import PmipService, peerKey
        from netlmm.lab.fakes import UDPProbe
        LO = IPv6Address("::1")
        self.lmaProbe = UDPProbe()
        lmaPort = reactor.listenUDP(0, self.lmaProbe, interface="::1")
        self.addCleanup(lmaPort.stopListening)
        peerPorts = [_freePort() for _ in range(count)]
        self.pmips = []
        for i in range(count):
            others = [(LO, p) for j, p in enumerate(peerPorts) if j != i] if peers else []
            core = PmipCore(LO, peers=[peerKey(o) for o in others], peerTimeout=2.0)
            service = PmipService(reactor, core, (LO, 0), (LO, 0), "udp",
                                  lmaPort.getHost().port, ["::1/128"], name=f"PMIP{i + 1}",
                                  peers=others,
                                  peerListen=(LO, peerPorts[i]) if peers else None)
            yield service.startService()
            self.addCleanup(service.stopService)
            self.pmips.append(service)
        if peers:
            from netlmm.lab.wait import until
            yield until(lambda: all(len(p.peerConnections) == count - 1 for p in self.pmips),
                        what="the peers to connect")

    @inlineCallbacks
    def test_peerConflict(self):
        """A Trigger at PMIP1 for an address PMIP2 holds: ADDRESS_CONFLICT, no PBU."""
        from netlmm.lab.wait import until
        from netlmm.assignment.static import StaticAssignment
        from netlmm.dataplane.memory import MemoryDataPlane
        from netlmm.service.mag import MagService
        from netlmm.access import AttachmentEvent
        yield self.startPmips()
        LO = IPv6Address("::1")
        p1, p2 = self.pmips
        # MN1 holds PHOA at PMIP2.
        p2.feed(p2.core.receiveTrigger, Trigger(1, MN1, MAG2, PHOA, AddressMode.STATEFUL))
        ports = [(LO, p.listening.getHost().port) for p in self.pmips]

        class Strategy(StaticAssignment):
            def __init__(self):
                super().__init__({})
                self.conflicts = []

            def addressConflict(self, mnId, phoa):
                self.conflicts.append((mnId, phoa))
        strategy = Strategy()
        mag = MagService(reactor, MagCore(MAG1, LMA), ports, strategy, MemoryDataPlane(),
                         pmipMap={MN2: ports[0]})
        yield mag.startService()
        self.addCleanup(mag.stopService)
        yield until(lambda: all(up.connection for up in mag.upstreams.values()))
        sent = len(self.lmaProbe.received)
        mag.attached(AttachmentEvent(MN2))
        mag.addressReady(MN2, PHOA, AddressMode.STATELESS)
        yield until(lambda: strategy.conflicts, what="the conflict")
        self.assertEqual(strategy.conflicts, [(MN2, PHOA)])
        self.assertEqual(len(self.lmaProbe.received), sent)
        self.assertEqual(p1.core.conflictCounters["conflicts"], 1)
        self.assertEqual(mag.core.attachment(MN2).state, magcore.ATTACHED)
        # Its next address is unique: PMIP1 sends the PBU.
        mag.addressReady(MN2, "2001:db8:1::101", AddressMode.STATELESS)
        yield until(lambda: len(self.lmaProbe.received) > sent, what="the PBU")
        self.assertEqual(p1.core.mobile(MN2).state, pmip.REGISTERING)

    @inlineCallbacks
    def test_spreadOverClients(self):
        """One MAG, two PMIP clients: each mobile goes to its hashed client only."""
        from netlmm.lab.wait import until
        from netlmm.assignment.lma import LmaAssignment
        from netlmm.dataplane.memory import MemoryDataPlane
        from netlmm.service.mag import MagService
        from netlmm.access import AttachmentEvent
        yield self.startPmips(peers=False)
        LO = IPv6Address("::1")
        ports = [(LO, p.listening.getHost().port) for p in self.pmips]
        mags = []
        for i, order in enumerate((ports, ports[::-1])):
            mag = MagService(reactor, MagCore(MAG1 if i == 0 else MAG2, LMA), order,
                             LmaAssignment(), MemoryDataPlane(), name=f"MAG{i + 1}")
            # Mobiles attach before the channels are up: their Triggers queue.
            mags.append(mag)
        mobiles = [f"mn{i}".encode() for i in range(12)]
        for mag in mags:
            yield mag.startService()
            self.addCleanup(mag.stopService)
        for mnId in mobiles:
            mags[0].attached(AttachmentEvent(mnId))
        yield until(lambda: sum(len(p.core.mobiles) for p in self.pmips) == len(mobiles),
                    what="every Trigger")
        byPort = {ports[i]: p for i, p in enumerate(self.pmips)}
        for mnId in mobiles:
            chosen = byPort[mags[1].selector.choose(mnId)]
            self.assertIn(mnId, chosen.core.mobiles)
            for p in self.pmips:
                if p is not chosen:
                    self.assertNotIn(mnId, p.core.mobiles)
        self.assertTrue(all(p.core.mobiles for p in self.pmips))
