"""
The three role cores wired together in memory: one LMA, one PMIP client and
two MAGs, with a tiny loop that carries every message through its codec
(L{netlmm.wire.mh} with checksums, L{netlmm.wire.control}) and keeps the
data planes as plain dictionaries. Time only moves when a test moves it.

Also: L{netlmm.core} imports nothing from Twisted.
"""

import json
import os
import random
import subprocess
import sys
from collections import deque
from ipaddress import IPv6Address

from twisted.trial.unittest import SynchronousTestCase

import netlmm
from netlmm.core import mag as magmod
from netlmm.core import pmip as pmipmod
from netlmm.core.effects import (
    Bound, Notify, Persist, RouteAdd, RouteMove, RouteRemove, SendControl, SendMH,
    TunnelDown, TunnelUp, Unbound,
)
from netlmm.core.lma import AddressPool, LmaCore
from netlmm.core.mag import MagCore
from netlmm.core.pmip import PmipCore
from netlmm.wire import control, mh
from netlmm.wire.control import AddressMode, Detach, Notification, Result, Trigger

LMA = IPv6Address("2001:db8:ffff::1")
PMIP = IPv6Address("2001:db8:c::1")
MAG1 = IPv6Address("2001:db8:a::1")
MAG2 = IPv6Address("2001:db8:b::1")
POOL_FIRST = IPv6Address("2001:db8:1::100")
MN = b"mn1@example.net"


class Domain:
    """
    One local mobility domain in memory. C{dropToPmip} and C{dropToLma}
    count messages to lose on the way to the PMIP client and to the LMA.
    """

    def __init__(self, maxLifetime=3600, detachDelay=1.5):
        self.now = 0.0
        self.lma = LmaCore("2001:db8:1::/64", ["2001:db8:c::/64"],
                           maxLifetime=maxLifetime,
                           pool=AddressPool(POOL_FIRST, "2001:db8:1::1ff"))
        self.pmip = PmipCore(LMA, lifetime=3600, detachDelay=detachDelay,
                             rng=random.Random(11))
        self.mags = {MAG1: MagCore(MAG1, LMA), MAG2: MagCore(MAG2, LMA)}
        #: The LMA's data plane: pHoA -> pCoA.
        self.routes = {}
        #: Each MAG's data plane: the pHoAs it tunnels.
        self.tunnels = {MAG1: set(), MAG2: set()}
        #: Every effect any core produced, with who produced it.
        self.log = []
        #: Every effects list as a core returned it, with who returned it.
        self.lists = []
        self.dropToPmip = 0
        self.dropToLma = 0
        self.dropped = []
        #: What the LMA and the PMIP client keep across a restart (their
        #: Persist effects, through JSON as a store writes them).
        self.stores = {"lma": {}, "pmip": {}}

    def mag(self, address):
        return self.mags[address]

    def run(self, origin, effects):
        """Carry out C{effects} of C{origin} and everything they lead to."""
        self.lists.append((origin, effects))
        queue = deque((origin, e) for e in effects)
        while queue:
            origin, e = queue.popleft()
            self.log.append((origin, e))
            for nextOrigin, more in self._deliver(origin, e):
                self.lists.append((nextOrigin, more))
                queue.extend((nextOrigin, m) for m in more)

    def _deliver(self, origin, e):
        t = type(e)
        if t is SendMH:
            source = PMIP if origin == "pmip" else LMA
            raw = mh.encodeMessage(e.message, source, e.destination)
            message = mh.decodeMessage(raw, source, e.destination)
            if e.destination == LMA:
                if self.dropToLma:
                    self.dropToLma -= 1
                    self.dropped.append(message)
                    return
                yield "lma", self.lma.receive(message, source, self.now)
            elif e.destination == PMIP:
                if self.dropToPmip:
                    self.dropToPmip -= 1
                    self.dropped.append(message)
                    return
                yield "pmip", self.pmip.receiveMH(message, raw, source, self.now)
            else:
                raise AssertionError(f"MH to nowhere: {e}")
        elif t is SendControl:
            assert origin in self.mags, origin
            message = control.decodeControl(control.encodeControl(e.message))
            assert message.magAddress == origin
            if type(message) is Trigger:
                yield "pmip", self.pmip.receiveTrigger(message, self.now)
            else:
                assert type(message) is Detach
                yield "pmip", self.pmip.receiveDetach(message, self.now)
        elif t is Notify:
            assert origin == "pmip"
            message = control.decodeControl(control.encodeControl(e.notification))
            yield e.mag, self.mags[e.mag].receiveNotification(message, self.now)
        elif t is RouteAdd:
            assert e.phoa not in self.routes, (e, self.routes)
            self.routes[e.phoa] = e.pcoa
        elif t is RouteMove:
            assert self.routes.get(e.phoa) == e.old, (e, self.routes)
            self.routes[e.phoa] = e.new
        elif t is RouteRemove:
            assert self.routes.get(e.phoa) == e.pcoa, (e, self.routes)
            del self.routes[e.phoa]
        elif t is TunnelUp:
            assert e.lma == LMA
            assert e.phoa not in self.tunnels[origin]
            self.tunnels[origin].add(e.phoa)
        elif t is TunnelDown:
            self.tunnels[origin].remove(e.phoa)
        elif t is Persist:
            store = self.stores[origin]
            if e.record is None:
                store.pop(e.key, None)
            else:
                store[e.key] = json.loads(json.dumps(e.record, default=str))
        elif t in (Bound, Unbound):
            pass
        else:
            raise AssertionError(f"unexpected effect {e!r}")

    # ---------------------------------------------------------- driving

    def attach(self, magAddress, mnId=MN, phoa=None, mode=AddressMode.LMA_ASSIGNED):
        m = self.mags[magAddress]
        self.run(magAddress, m.attach(mnId, self.now))
        self.run(magAddress, m.addressReady(mnId, phoa, mode, self.now))

    def detach(self, magAddress, mnId=MN):
        self.run(magAddress, self.mags[magAddress].detach(mnId, self.now))

    def advance(self, seconds):
        """Move time on, firing every timer that falls due on the way."""
        end = self.now + seconds
        while True:
            cores = [("lma", self.lma), ("pmip", self.pmip)] + list(self.mags.items())
            due = [(c.nextTimer(), name, c) for name, c in cores
                   if c.nextTimer() is not None and c.nextTimer() <= end]
            if not due:
                break
            when = min(d[0] for d in due)
            self.now = max(self.now, when)
            for when_, name, core in due:
                if when_ == when:
                    self.run(name, core.handleTimer(self.now))
        self.now = end

    def restartLma(self):
        """A new LMA core from what the old one kept; its routes put back."""
        self.lma = LmaCore("2001:db8:1::/64", ["2001:db8:c::/64"],
                           maxLifetime=self.lma.maxLifetime,
                           pool=AddressPool(POOL_FIRST, "2001:db8:1::1ff"))
        self.routes = {}
        self.run("lma", self.lma.restore(list(self.stores["lma"].values()), self.now))

    def restartPmip(self):
        """A new PMIP client core from what the old one kept."""
        self.pmip = PmipCore(LMA, lifetime=3600, detachDelay=self.pmip.detachDelay,
                             rng=random.Random(12))
        self.run("pmip", self.pmip.restore(list(self.stores["pmip"].values()), self.now))

    def since(self, mark):
        return [e for _, e in self.log[mark:]]


class DomainTests(SynchronousTestCase):

    def assertIn_(self, effect, effects):
        self.assertIn(effect, effects, effects)

    def test_attachHandoffBackDetach(self):
        """
        Attach at MAG1 with an LMA-assigned pHoA, hand off to MAG2 (the new
        MAG triggers first), go back to MAG1 (MAG2 detaches first), leave.
        """
        d = Domain()
        lma, pmip = d.lma, d.pmip

        # Attach at MAG1: the LMA assigns the first pool address.
        d.attach(MAG1)
        phoa = POOL_FIRST
        effects = d.since(0)
        self.assertIn_(RouteAdd(phoa, MAG1), effects)
        self.assertIn_(TunnelUp(MN, phoa, LMA), effects)
        self.assertIn_(Bound(MN, phoa), effects)
        self.assertEqual(d.routes, {phoa: MAG1})
        self.assertEqual(d.tunnels, {MAG1: {phoa}, MAG2: set()})
        b = lma.binding(phoa)
        self.assertEqual((b.mnId, b.pcoa, b.client), (MN, MAG1, PMIP))
        m = pmip.mobile(MN)
        self.assertEqual((m.state, m.phoa, m.pcoa), (pmipmod.BOUND, phoa, MAG1))
        self.assertEqual(b.sequence, m.sequence)
        self.assertEqual(d.mag(MAG1).attachment(MN).state, magmod.BOUND)
        self.assertEqual(lma.pool.inUse, 1)
        # The PBU asked for assignment and carried the MN identifier.
        pbus = [e.message for e in effects if type(e) is SendMH and e.destination == LMA]
        self.assertEqual(len(pbus), 1)
        self.assertTrue(pbus[0].option(mh.HomeNetworkPrefix).unspecified)
        self.assertIsNotNone(pbus[0].option(mh.MobileNodeIdentifier))

        # Handoff to MAG2, which learned the pHoA by context transfer.
        d.advance(30)
        mark = len(d.log)
        d.attach(MAG2, phoa=phoa, mode=AddressMode.STATIC)
        effects = d.since(mark)
        pbus = [e.message for e in effects if type(e) is SendMH and e.destination == LMA]
        self.assertEqual(len(pbus), 1)
        self.assertIsNone(pbus[0].option(mh.MobileNodeIdentifier))
        self.assertIn_(RouteMove(phoa, MAG1, MAG2), effects)
        self.assertIn_(Notify(Notification(0, Result.MOVED, MN, phoa, peerMag=MAG2), MAG1),
                       effects)
        self.assertIn_(TunnelDown(MN, phoa, LMA), effects)
        self.assertIn_(Unbound(MN, phoa, Result.MOVED, "moved"), effects)
        self.assertEqual(d.routes, {phoa: MAG2})
        self.assertEqual(d.tunnels, {MAG1: set(), MAG2: {phoa}})
        self.assertEqual(lma.binding(phoa).pcoa, MAG2)
        self.assertEqual(pmip.mobile(MN).pcoa, MAG2)
        self.assertIsNone(d.mag(MAG1).attachment(MN))
        self.assertEqual(d.mag(MAG2).attachment(MN).state, magmod.BOUND)

        # Back to MAG1: MAG2 sees the mobile leave first, MAG1 triggers
        # within the detach delay, so no deregistration happens.
        d.advance(30)
        mark = len(d.log)
        d.detach(MAG2)
        self.assertEqual(d.tunnels[MAG2], set())
        self.assertEqual(pmip.mobile(MN).state, pmipmod.DETACH_PENDING)
        self.assertEqual(d.routes, {phoa: MAG2})
        d.advance(1)
        d.attach(MAG1, phoa=phoa, mode=AddressMode.STATIC)
        effects = d.since(mark)
        self.assertIn_(RouteMove(phoa, MAG2, MAG1), effects)
        self.assertIn_(Unbound(MN, phoa, Result.MOVED, "detached"), effects)
        self.assertEqual(d.routes, {phoa: MAG1})
        self.assertEqual(d.tunnels, {MAG1: {phoa}, MAG2: set()})
        self.assertIsNone(d.mag(MAG2).attachment(MN))
        d.advance(5)
        self.assertEqual([e for e in d.since(mark) if type(e) is RouteRemove], [])
        self.assertEqual(pmip.mobile(MN).state, pmipmod.BOUND)

        # Leave: after the detach delay the binding is deregistered.
        mark = len(d.log)
        d.detach(MAG1)
        self.assertEqual(d.routes, {phoa: MAG1})
        d.advance(1.4)
        self.assertEqual(d.routes, {phoa: MAG1})
        d.advance(0.2)
        effects = d.since(mark)
        self.assertIn_(RouteRemove(phoa, MAG1), effects)
        self.assertIn_(Unbound(MN, phoa, Result.SUCCESS, "detached"), effects)
        self.assertEqual(d.routes, {})
        self.assertEqual(d.tunnels, {MAG1: set(), MAG2: set()})
        self.assertEqual(lma.bindings, {})
        self.assertEqual(lma.pool.inUse, 0)
        self.assertEqual(pmip.mobiles, {})
        self.assertEqual(d.mags[MAG1].attachments, {})
        self.assertEqual(d.mags[MAG2].attachments, {})
        for core in (lma, pmip, d.mags[MAG1], d.mags[MAG2]):
            self.assertIsNone(core.nextTimer())
        self.assertEqual(lma.counters["rejected"], 0)

    def test_lostPBAck(self):
        """
        The first PBAck is lost; the retransmission a second later (a new
        sequence number, the same assignment request) completes the binding
        without a second address.
        """
        d = Domain()
        d.dropToPmip = 1
        d.attach(MAG1)
        phoa = POOL_FIRST
        self.assertEqual(len(d.dropped), 1)
        self.assertEqual(d.dropped[0].status, mh.Status.ACCEPTED)
        self.assertEqual(d.routes, {phoa: MAG1})
        self.assertEqual(d.tunnels[MAG1], set())
        self.assertEqual(d.pmip.mobile(MN).state, pmipmod.REGISTERING)
        self.assertEqual(d.mag(MAG1).attachment(MN).state, magmod.TRIGGERED)
        self.assertEqual(d.pmip.nextTimer(), 1.0)

        mark = len(d.log)
        d.now = 1.0
        d.run("pmip", d.pmip.handleTimer(d.now))
        effects = d.since(mark)
        pbus = [e.message for e in effects if type(e) is SendMH and e.destination == LMA]
        self.assertEqual(len(pbus), 1)
        self.assertTrue(pbus[0].option(mh.HomeNetworkPrefix).unspecified)
        self.assertIn_(Bound(MN, phoa), effects)
        self.assertEqual([e for e in d.since(0) if type(e) is RouteAdd],
                         [RouteAdd(phoa, MAG1)])
        self.assertEqual(d.routes, {phoa: MAG1})
        self.assertEqual(d.tunnels[MAG1], {phoa})
        self.assertEqual(len(d.lma.bindings), 1)
        self.assertEqual(d.lma.pool.inUse, 1)
        self.assertEqual(d.lma.binding(phoa).sequence, pbus[0].sequence)
        m = d.pmip.mobile(MN)
        self.assertEqual((m.state, m.phoa, m.pending), (pmipmod.BOUND, phoa, None))

    def test_lostPBU(self):
        """A PBU lost on the way to the LMA is retransmitted too."""
        d = Domain()
        d.dropToLma = 1
        d.attach(MAG1)
        self.assertEqual(d.routes, {})
        d.advance(1)
        self.assertEqual(d.routes, {POOL_FIRST: MAG1})
        self.assertEqual(d.tunnels[MAG1], {POOL_FIRST})

    def test_lmaUnreachable(self):
        """No answer at all: the MAG hears LMA_UNREACHABLE before its own timeout."""
        d = Domain()
        d.dropToLma = 100
        d.attach(MAG1)
        d.advance(63)
        self.assertEqual(len(d.dropped), 6)
        unbound = [e for e in d.since(0) if type(e) is Unbound]
        self.assertEqual(unbound, [Unbound(MN, None, Result.LMA_UNREACHABLE,
                                           "lma-unreachable")])
        self.assertEqual(d.pmip.mobiles, {})
        self.assertEqual(d.mags[MAG1].attachments, {})

    def test_refreshKeepsBindingAlive(self):
        """
        With a short granted lifetime the PMIP client refreshes before the
        LMA's binding runs out, hour after hour.
        """
        d = Domain(maxLifetime=400)
        d.attach(MAG1)
        d.advance(3 * 3600)
        self.assertEqual(d.routes, {POOL_FIRST: MAG1})
        self.assertEqual(d.lma.counters["expired"], 0)
        self.assertEqual(d.pmip.mobile(MN).state, pmipmod.BOUND)
        refreshes = [e for e in d.since(0) if type(e) is SendMH and e.destination == LMA]
        self.assertGreaterEqual(len(refreshes), 3 * 3600 // 400)

    def test_bindingExpiresWithoutRefresh(self):
        """If every refresh is lost the LMA drops the binding and the MAG hears of it."""
        d = Domain(maxLifetime=400)
        d.attach(MAG1)
        d.dropToLma = 100
        d.advance(1000)
        self.assertEqual(d.routes, {})
        self.assertEqual(d.lma.counters["expired"], 1)
        self.assertEqual(d.tunnels[MAG1], set())
        self.assertIn_(Unbound(MN, POOL_FIRST, Result.BINDING_LOST, "binding-lost"),
                       d.since(0))
        self.assertEqual(d.pmip.mobiles, {})
        self.assertEqual(d.lma.pool.inUse, 0)


class NoTwistedTests(SynchronousTestCase):
    """The sans-IO cores and codecs import nothing from Twisted."""

    def test_coreImportsNoTwisted(self):
        root = os.path.dirname(os.path.dirname(os.path.abspath(netlmm.__file__)))
        code = (
            "import sys\n"
            "import netlmm.core.lma, netlmm.core.pmip, netlmm.core.mag, netlmm.core.anchors\n"
            "import netlmm.core.effects, netlmm.core.sequence\n"
            "import netlmm.wire.mh, netlmm.wire.control\n"
            "print(','.join(sorted(m for m in sys.modules\n"
            "    if m == 'twisted' or m.startswith('twisted.'))))\n"
        )
        env = dict(os.environ, PYTHONPATH=root)
        out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env,
                             capture_output=True, text=True, check=True)
        self.assertEqual(out.stdout.strip(), "", out.stdout)


class RestartTests(SynchronousTestCase):
    """
    The LMA and the PMIP client restarted from what they kept (their
    Persist effects): the domain carries on as if nothing happened.
    """

    def test_persistedBeforeEveryAcknowledgement(self):
        """
        Every PBAck accepting a change and every SUCCESS Notification comes
        after the Persist that keeps that change, in the same effects list.
        """
        d = Domain()
        d.attach(MAG1)
        d.advance(10)
        d.attach(MAG2, phoa=POOL_FIRST, mode=AddressMode.STATIC)
        d.detach(MAG2)
        d.advance(5)
        acks = 0
        for origin, effects in d.lists:
            for i, e in enumerate(effects):
                if (type(e) is SendMH and type(e.message) is mh.BindingAcknowledgement
                        or type(e) is Notify and e.notification.result == Result.SUCCESS):
                    acks += 1
                    self.assertIn(Persist, [type(x) for x in effects[:i]], effects)
        self.assertEqual(acks, 6)
        self.assertEqual(d.stores, {"lma": {}, "pmip": {}})

    def test_pmipRestartThenDetach(self):
        """
        A restarted PMIP client knows the mobile where it was last bound: a
        Detach from that MAG deregisters it at the LMA.
        """
        d = Domain()
        d.attach(MAG1)
        d.advance(10)
        d.attach(MAG2, phoa=POOL_FIRST, mode=AddressMode.STATIC)
        self.assertEqual(d.stores["pmip"][MN]["pcoa"], str(MAG2))
        d.restartPmip()
        m = d.pmip.mobile(MN)
        self.assertEqual((m.state, m.phoa, m.pcoa), (pmipmod.BOUND, POOL_FIRST, MAG2))
        d.detach(MAG2)
        d.advance(2)
        self.assertEqual(d.routes, {})
        self.assertEqual(d.lma.bindings, {})
        self.assertEqual(d.pmip.mobiles, {})
        self.assertEqual(d.stores, {"lma": {}, "pmip": {}})
        self.assertIn(Unbound(MN, POOL_FIRST, Result.SUCCESS, "detached"), d.since(0))

    def test_pmipRestartResynchronises(self):
        """
        PBUs that went out after the last record (a refresh whose PBAck was
        lost) leave the restarted client behind the LMA's sequence number:
        the refresh right after the restart catches up through status 135.
        """
        d = Domain(maxLifetime=400)
        d.attach(MAG1)
        d.dropToPmip = 1
        d.advance(300)
        self.assertEqual(len(d.dropped), 1)
        d.restartPmip()
        self.assertLess(d.pmip.mobile(MN).sequence, d.lma.bindingFor(MN).sequence)
        mark = len(d.log)
        d.advance(1)
        statuses = [e.message.status for e in d.since(mark)
                    if type(e) is SendMH and e.destination == PMIP]
        self.assertEqual(statuses, [mh.Status.SEQUENCE_OUT_OF_WINDOW, mh.Status.ACCEPTED])
        self.assertEqual(d.pmip.mobile(MN).sequence, d.lma.bindingFor(MN).sequence)
        d.advance(3600)
        self.assertEqual(d.routes, {POOL_FIRST: MAG1})
        self.assertEqual(d.lma.counters["expired"], 0)

    def test_lmaRestartKeepsBindings(self):
        """
        A restarted LMA has its bindings and routes back, refreshes go on,
        a pool address in use is not handed out again, and a detach
        deregisters as before.
        """
        d = Domain(maxLifetime=400)
        d.attach(MAG1)
        d.attach(MAG2, mnId=b"mn2", phoa=IPv6Address("2001:db8:1::7"),
                 mode=AddressMode.STATIC)
        d.advance(100)
        d.restartLma()
        self.assertEqual(d.routes, {POOL_FIRST: MAG1, IPv6Address("2001:db8:1::7"): MAG2})
        self.assertEqual(d.lma.pool.inUse, 1)
        d.advance(3600)
        self.assertEqual(d.lma.counters["expired"], 0)
        self.assertEqual(d.lma.counters["rejected"], 0)
        d.attach(MAG2, mnId=b"mn3")
        self.assertEqual(d.lma.bindingFor(b"mn3").phoa, IPv6Address("2001:db8:1::101"))
        d.detach(MAG1)
        d.advance(2)
        self.assertIsNone(d.lma.bindingFor(MN))
        self.assertNotIn(MN, d.stores["lma"])
        self.assertEqual(sorted(d.stores["lma"]), [b"mn2", b"mn3"])

    def test_expiredBindingsAreDeleted(self):
        """An expired binding's record goes too, and a restart does not bring it back."""
        d = Domain(maxLifetime=400)
        d.attach(MAG1)
        d.dropToLma = 100
        d.advance(1000)
        self.assertEqual(d.stores, {"lma": {}, "pmip": {}})
        d.restartLma()
        self.assertEqual(d.lma.bindings, {})

    def test_pmipRestartBeforeKeepingOrphansNothing(self):
        """
        The PMIP client stops after the LMA bound a mobile but before the
        client kept it (nor told the MAG). When the MAG then reports the
        mobile gone, the restarted client, which does not know it,
        deregisters it: the LMA is left with nothing.
        """
        d = Domain()
        d.dropToPmip = 1
        d.attach(MAG1)
        self.assertEqual(d.routes, {POOL_FIRST: MAG1})
        self.assertEqual(d.stores["pmip"], {})
        d.restartPmip()
        d.detach(MAG1)
        d.advance(3)
        self.assertEqual(d.routes, {})
        self.assertEqual(d.lma.bindings, {})
        self.assertEqual(d.pmip.mobiles, {})
        self.assertEqual(d.mags[MAG1].attachments, {})
        self.assertEqual(d.stores, {"lma": {}, "pmip": {}})

    def test_pmipRestartDoesNotTakeAnotherMobilesBinding(self):
        """
        The PMIP client stops after the LMA deregistered a mobile but before
        it deleted its own record; the LMA gives the pool address to another
        mobile. The restarted client's refresh of its stale record names its
        mobile, so the LMA refuses it instead of moving the other mobile's
        binding, and the stale record goes.
        """
        d = Domain()
        d.attach(MAG1)
        kept = dict(d.stores["pmip"])
        d.detach(MAG1)
        d.advance(2)
        self.assertEqual(d.lma.bindings, {})
        d.attach(MAG2, mnId=b"mn2")
        self.assertEqual(d.routes, {POOL_FIRST: MAG2})
        d.stores["pmip"].update(kept)
        d.restartPmip()
        d.advance(5)
        self.assertEqual(d.routes, {POOL_FIRST: MAG2})
        self.assertEqual(d.lma.bindingFor(b"mn2").pcoa, MAG2)
        self.assertIsNone(d.pmip.mobile(MN))
        self.assertEqual(list(d.stores["pmip"]), [b"mn2"])
