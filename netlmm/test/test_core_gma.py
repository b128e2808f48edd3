"""
Tests for L{netlmm.core.gma}, the Global Mobility Anchor core: RFC 6275 home
registrations (draft 4.1 step 7, 4.6) with fake time.

Every Binding Update goes through the Mobility Header codec before the core
sees it, and every answer is encoded, so only messages that can exist on the
wire are used. Each refusal checks the status, that the answer goes back to
the sender, and that nothing in the binding cache changed.
"""

import subprocess
import sys
from ipaddress import IPv6Address

from twisted.trial.unittest import SynchronousTestCase

from netlmm.core.effects import (
    BadRecord, InvalidInput, Persist, RouteAdd, RouteMove, RouteRemove, SendToMobile)
from netlmm.core.gma import Binding, BindingState, Event, GmaCore
from netlmm.wire import mh
from netlmm.wire.mh import (
    BU_A, BU_H, BU_P, AlternateCareOfAddress, BindingAcknowledgement, BindingError,
    BindingRefreshAdvice, BindingUpdate, MobileNodeIdentifier, Status, UnknownMessage)

HOME_PREFIX = "2001:db8:100::/64"
HOA = IPv6Address("2001:db8:100::10")
HOA2 = IPv6Address("2001:db8:100::11")
OTHER_HOA = IPv6Address("2001:db8:100::99")
OUTSIDE = IPv6Address("2001:db8:200::10")
COA1 = IPv6Address("2001:db8:1::10")
COA2 = IPv6Address("2001:db8:2::10")
STRAY = IPv6Address("2001:db8:bad::10")
MN1 = b"mn1@example.net"
MN2 = b"mn2@example.net"
HOUR = 900


def bu(sequence, lifetime=HOUR, flags=BU_A | BU_H, mnId=MN1, acoa=None):
    """A home registration as a mobile sends it, through the codec."""
    options = []
    if acoa is not None:
        options.append(AlternateCareOfAddress(acoa))
    if mnId is not None:
        options.append(MobileNodeIdentifier(mnId))
    message = BindingUpdate(sequence, flags, lifetime, options)
    return mh.decodeMessage(mh.encodeMessage(message, HOA, COA1))


class GmaCoreTests(SynchronousTestCase):

    def setUp(self):
        self.core = GmaCore(HOME_PREFIX, {MN1: [HOA], MN2: [HOA2]},
                            careOfNetworks=["2001:db8:1::/48", "2001:db8:2::/48"],
                            maxLifetime=3600)
        self.refusals = []
        self.core.refused = lambda peer, reason, fmt, **kw: self.refusals.append(
            (peer, reason))

    def receive(self, message, careOf=COA1, home=HOA, mobile=None, now=0.0):
        effects = self.core.receive(message, careOf, home, mobile, now)
        for e in effects:
            if type(e) is SendToMobile:
                mh.encodeMessage(e.message, HOA, e.careOf)
        return effects

    def answer(self, effects):
        (sent,) = [e for e in effects if type(e) is SendToMobile]
        return sent

    def register(self, sequence=1, careOf=COA1, now=0.0):
        return self.receive(bu(sequence), careOf=careOf, now=now)

    def assertRefused(self, effects, status, careOf=COA1, home=HOA, sequence=None):
        """Only a BA with C{status}, to the sender, with the home in its RH2."""
        self.assertEqual(len(effects), 1, effects)
        sent = effects[0]
        self.assertIs(type(sent), SendToMobile)
        self.assertEqual((sent.careOf, sent.home), (careOf, home))
        self.assertEqual(sent.message.status, status)
        self.assertEqual(sent.message.lifetime, 0)
        if sequence is not None:
            self.assertEqual(sent.message.sequence, sequence)
        self.assertEqual(len(self.refusals), 1)
        self.assertEqual(self.refusals[0], (careOf, Status.name(status)))

    # -------------------------------------------------------------- accepting

    def test_register(self):
        """
        The first BU binds the home address to the care-of address it came
        from: a route, and a BA to that address with the home address in
        its type 2 routing header, lifetime granted and refresh advised.
        """
        effects = self.register(sequence=7)
        self.assertEqual(effects[0], RouteAdd(HOA, COA1))
        sent = self.answer(effects)
        self.assertEqual((sent.careOf, sent.home), (COA1, HOA))
        self.assertEqual(sent.message, BindingAcknowledgement(
            Status.ACCEPTED, 0, 7, HOUR, [BindingRefreshAdvice(HOUR * 3 // 4)]))
        b = self.core.binding(HOA)
        self.assertEqual((b.mnId, b.careOf, b.sequence, b.state),
                         (MN1, COA1, 7, BindingState.REGISTERED))
        self.assertEqual(b.expiry, 3600)
        self.assertEqual(self.core.bindingsOf(MN1), [b])
        self.assertEqual(self.core.counters["registered"], 1)

    def test_lifetimeCapped(self):
        """A longer lifetime than max_lifetime is cut to it."""
        sent = self.answer(self.receive(bu(1, lifetime=0xFFFF)))
        self.assertEqual(sent.message.lifetime, 3600 // 4)
        self.assertEqual(self.core.binding(HOA).lifetime, 3600)

    def test_refresh(self):
        """The same care-of address again: no route change, a new expiry."""
        self.register(1)
        effects = self.register(2, now=100.0)
        self.assertEqual(self.answer(effects).message.status, Status.ACCEPTED)
        self.assertEqual([type(e) for e in effects], [Persist, SendToMobile])
        self.assertEqual(self.core.binding(HOA).expiry, 3700)

    def test_move(self):
        """A new care-of address (another domain) moves the route there."""
        self.register(1)
        effects = self.register(2, careOf=COA2)
        self.assertEqual(effects[0], RouteMove(HOA, COA1, COA2))
        self.assertEqual(self.answer(effects).careOf, COA2)
        self.assertEqual(self.core.binding(HOA).careOf, COA2)
        self.assertEqual(self.core.counters["moved"], 1)

    def test_alternateCareOfAddress(self):
        """An Alternate Care-of Address option names the care-of address."""
        effects = self.receive(bu(1, acoa=COA2), careOf=COA1)
        self.assertEqual(effects[0], RouteAdd(HOA, COA2))
        self.assertEqual(self.answer(effects).careOf, COA1)

    def test_sequenceWraps(self):
        """Sequence numbers compare modulo 2**16 (RFC 6275 9.5.1)."""
        self.register(0xFFFF)
        self.assertEqual(self.answer(self.register(0)).message.status, Status.ACCEPTED)

    def test_noAcknowledgeFlag(self):
        """Without the A flag an accepted BU gets no answer."""
        effects = self.receive(bu(1, flags=BU_H))
        self.assertEqual([type(e) for e in effects], [RouteAdd, Persist])

    def test_mobileFromSecurityAssociation(self):
        """Without an MN Identifier option the SA's mobile is the mobile."""
        effects = self.receive(bu(1, mnId=None), mobile=MN1)
        self.assertEqual(effects[0], RouteAdd(HOA, COA1))

    def test_deregister(self):
        """Lifetime 0 removes the binding and the route; BA lifetime 0."""
        self.register(1)
        effects = self.receive(bu(2, lifetime=0))
        self.assertEqual(effects[0], RouteRemove(HOA, COA1))
        sent = self.answer(effects)
        self.assertEqual((sent.message.status, sent.message.lifetime), (Status.ACCEPTED, 0))
        self.assertIsNone(self.core.binding(HOA))
        self.assertEqual(self.core.counters["deregistered"], 1)

    def test_deregisterFromHome(self):
        """
        A BU from the home address itself, without Home Address option (a
        mobile back home, care-of address = home address) deregisters; the
        answer goes to the home address, without a routing header.
        """
        self.register(1)
        effects = self.receive(bu(2), careOf=HOA, home=None)
        self.assertEqual(effects[0], RouteRemove(HOA, COA1))
        sent = self.answer(effects)
        self.assertEqual((sent.careOf, sent.home, sent.message.status),
                         (HOA, None, Status.ACCEPTED))

    def test_expiry(self):
        """A binding not refreshed ends when its lifetime runs out."""
        self.register(1)
        self.assertEqual(self.core.nextTimer(), 3600)
        self.assertEqual(self.core.handleTimer(3599.0), [])
        self.register(2, now=1000.0)
        self.assertEqual(self.core.nextTimer(), 4600)
        self.assertEqual(self.core.handleTimer(3600.0), [])
        self.assertEqual(self.core.handleTimer(4600.0),
                         [RouteRemove(HOA, COA1), Persist(HOA.packed, None)])
        self.assertIsNone(self.core.binding(HOA))
        self.assertIsNone(self.core.nextTimer())
        self.assertEqual(self.core.counters["expired"], 1)

    # -------------------------------------------------------------- refusing

    def assertUnchanged(self, before):
        self.assertEqual({k: (b.careOf, b.sequence, b.expiry)
                          for k, b in self.core.bindings.items()}, before)

    def snapshotBindings(self):
        return {k: (b.careOf, b.sequence, b.expiry) for k, b in self.core.bindings.items()}

    def test_homeOutsidePrefix(self):
        """A home address the GMA does not serve at all: 132."""
        effects = self.receive(bu(1), home=OUTSIDE)
        self.assertRefused(effects, Status.NOT_HOME_SUBNET, home=OUTSIDE)
        self.assertEqual(self.core.bindings, {})

    def test_homeOfNobody(self):
        """A home address in the prefix but not this mobile's: 133."""
        self.register(1)
        before = self.snapshotBindings()
        effects = self.receive(bu(1, mnId=MN2), home=HOA)
        self.assertRefused(effects, Status.NOT_HOME_AGENT_FOR_MN)
        self.assertUnchanged(before)
        self.refusals.clear()
        effects = self.receive(bu(1), home=OTHER_HOA)
        self.assertRefused(effects, Status.NOT_HOME_AGENT_FOR_MN, home=OTHER_HOA)

    def test_unknownMobile(self):
        """A mobile the GMA has no entry for: 133; one with no identity: 133."""
        effects = self.receive(bu(1, mnId=b"stranger@example.net"))
        self.assertRefused(effects, Status.NOT_HOME_AGENT_FOR_MN)
        self.refusals.clear()
        self.assertRefused(self.receive(bu(1, mnId=None)), Status.NOT_HOME_AGENT_FOR_MN)
        self.assertEqual(self.core.bindings, {})

    def test_identityNotTheSecurityAssociations(self):
        """An MN Identifier other than the authenticated mobile's: 129."""
        effects = self.receive(bu(1, mnId=MN1), mobile=MN2)
        self.assertRefused(effects, Status.ADMINISTRATIVELY_PROHIBITED)
        self.assertEqual(self.core.bindings, {})

    def test_careOfOutsideAllowedNetworks(self):
        """A care-of address outside every allowed network: 129, nothing bound."""
        self.register(1)
        before = self.snapshotBindings()
        effects = self.receive(bu(2), careOf=STRAY)
        self.assertRefused(effects, Status.ADMINISTRATIVELY_PROHIBITED, careOf=STRAY)
        self.assertUnchanged(before)

    def test_careOfNotUsable(self):
        """Link-local, multicast or home-prefix care-of addresses: 129."""
        for careOf in ("fe80::1", "ff02::1", "2001:db8:100::77"):
            self.refusals.clear()
            effects = self.receive(bu(1, acoa=careOf))
            self.assertRefused(effects, Status.ADMINISTRATIVELY_PROHIBITED)
        self.assertEqual(self.core.bindings, {})

    def test_anyCareOfWithoutNetworks(self):
        """With no allowed networks configured, any global address will do."""
        core = GmaCore(HOME_PREFIX, {MN1: [HOA]})
        effects = core.receive(bu(1), STRAY, HOA, None, 0.0)
        self.assertEqual(effects[0], RouteAdd(HOA, STRAY))

    def test_replayedSequence(self):
        """A sequence number not greater than the last: 135 with the last."""
        self.register(5)
        before = self.snapshotBindings()
        for seq in (5, 4, 5 - 0x8000 & 0xFFFF):
            self.refusals.clear()
            effects = self.receive(bu(seq), careOf=COA2)
            self.assertRefused(effects, Status.SEQUENCE_OUT_OF_WINDOW, careOf=COA2,
                               sequence=5)
        self.assertUnchanged(before)

    def test_proxyRegistration(self):
        """A PBU (P flag) is not for the GMA: 152."""
        effects = self.receive(bu(1, flags=BU_A | BU_H | BU_P))
        self.assertRefused(effects, Status.PROXY_REG_NOT_ENABLED)

    def test_correspondentRegistration(self):
        """No H flag: 129 (no route optimization); 139 over a home binding."""
        effects = self.receive(bu(1, flags=BU_A))
        self.assertRefused(effects, Status.ADMINISTRATIVELY_PROHIBITED)
        self.register(2)
        self.refusals.clear()
        effects = self.receive(bu(3, flags=BU_A))
        self.assertRefused(effects, Status.REGISTRATION_TYPE_CHANGE_DISALLOWED)
        self.assertEqual(self.core.binding(HOA).sequence, 2)

    def test_deregisterUnbound(self):
        """Deregistering a home address that is not bound: 133."""
        self.assertRefused(self.receive(bu(1, lifetime=0)), Status.NOT_HOME_AGENT_FOR_MN)

    def test_refusedAlwaysAnswered(self):
        """Refusals are answered even without the A flag."""
        effects = self.receive(bu(1, flags=BU_H), home=OUTSIDE)
        self.assertRefused(effects, Status.NOT_HOME_SUBNET, home=OUTSIDE)

    def test_otherMessages(self):
        """
        An unknown MH type gets a Binding Error status 2 to its source; a
        BA (not for a home agent) is dropped.
        """
        effects = self.receive(UnknownMessage(42, b"\0" * 4))
        self.assertEqual(effects, [SendToMobile(BindingError(2, HOA), COA1, None)])
        # RFC 5847 Heartbeats are for PMIPv6 peers: unknown to a home agent.
        effects = self.receive(mh.Heartbeat(1))
        self.assertEqual(effects, [SendToMobile(BindingError(2, HOA), COA1, None)])
        # So is RFC 5846 Binding Revocation (MH type 16), both kinds.
        for message in (mh.RevocationIndication(1, 1), mh.RevocationAcknowledgement(0, 1)):
            effects = self.receive(message)
            self.assertEqual(effects, [SendToMobile(BindingError(2, HOA), COA1, None)])
        self.assertEqual(self.core.counters["bindingErrors"], 4)
        self.assertEqual(self.receive(BindingAcknowledgement(0)), [])
        self.assertEqual(self.core.counters["unexpected"], 1)

    # -------------------------------------------------------------- machinery

    def test_invalidTransition(self):
        """An event the table does not allow raises and changes nothing."""
        b = Binding(HOA, MN1, COA1, 1)
        with self.assertRaises(InvalidInput):
            self.core.step(b, Event.REFRESH)
        self.assertIs(b.state, BindingState.ABSENT)
        self.assertEqual(self.core.bindings, {})

    def test_persistBeforeAnswer(self):
        """
        Every acknowledged change is kept (Persist, keyed by the home
        address) before the BA that acknowledges it; removals keep None.
        """
        effects = self.register(1)
        kinds = [type(e) for e in effects]
        self.assertEqual(kinds, [RouteAdd, Persist, SendToMobile])
        self.assertEqual(effects[1].key, HOA.packed)
        self.assertEqual(effects[1].record["careOf"], COA1)
        effects = self.receive(bu(2, lifetime=0))
        self.assertEqual([type(e) for e in effects], [RouteRemove, Persist, SendToMobile])
        self.assertIsNone(effects[1].record)
        self.register(3)
        self.assertEqual(self.core.handleTimer(4000.0),
                         [RouteRemove(HOA, COA1), Persist(HOA.packed, None)])

    def test_restore(self):
        """
        What the Persist effects kept comes back with sequence numbers and
        routes; expired bindings and mobiles no longer configured are left
        out, and their records deleted.
        """
        self.register(9, now=0.0)
        self.receive(bu(3, mnId=MN2), home=HOA2, now=0.0)
        records = [p.record for p in self.core.snapshot()]
        fresh = GmaCore(HOME_PREFIX, {MN1: [HOA]}, maxLifetime=3600)
        effects = fresh.restore(records, 100.0)
        self.assertEqual(effects, [RouteAdd(HOA, COA1), Persist(HOA2.packed, None)])
        self.assertEqual(fresh.binding(HOA).sequence, 9)
        self.assertEqual(fresh.nextTimer(), 3600)
        self.assertEqual(GmaCore(HOME_PREFIX, {MN1: [HOA]}).restore(records, 4000.0),
                         [Persist(HOA.packed, None), Persist(HOA2.packed, None)])

    def test_restoreBadRecord(self):
        good = {"home": str(HOA), "mn": MN1.hex(), "careOf": str(COA1), "sequence": 1,
                "lifetime": 4, "expiry": 5.0}
        core = GmaCore(HOME_PREFIX, {MN1: [HOA]})
        with self.assertRaisesRegex(BadRecord, "record 1: 'home': 'nonsense' is not"):
            core.restore([good, dict(good, home="nonsense")], 0.0)
        with self.assertRaisesRegex(BadRecord, "record 1: home address .* appears twice"):
            GmaCore(HOME_PREFIX, {MN1: [HOA]}).restore([good, good], 0.0)

    def test_badConfiguration(self):
        with self.assertRaisesRegex(ValueError, "outside the home prefix"):
            GmaCore(HOME_PREFIX, {MN1: [OUTSIDE]})
        with self.assertRaisesRegex(ValueError, "given to both"):
            GmaCore(HOME_PREFIX, {MN1: [HOA], MN2: [HOA]})
        with self.assertRaisesRegex(ValueError, "maxLifetime"):
            GmaCore(HOME_PREFIX, {}, maxLifetime=1)

    def test_importsNoTwisted(self):
        code = ("import sys, netlmm.core.gma, netlmm.core.mn, netlmm.wire.mip6\n"
                "print(sorted(m for m in sys.modules if m.split('.')[0] == 'twisted'))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True).stdout.strip()
        self.assertEqual(out, "[]")
