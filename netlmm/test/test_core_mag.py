"""
Tests for L{netlmm.core.mag}, the Mobile Access Gateway core: attachment,
Trigger, the Notification that installs the tunnel (draft section 4.9), and
detachment. Control messages go through the MAG <-> PMIP codec both ways.
"""

from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Network

from twisted.trial.unittest import SynchronousTestCase

from netlmm.core import mag
from netlmm.core.effects import (
    Bound, InvalidInput, SendControl, TunnelDown, TunnelUp, Unbound,
)
from netlmm.core.mag import MagCore
from netlmm.wire import control
from netlmm.wire.control import AddressMode, Detach, Notification, Result, Trigger

LMA = IPv6Address("2001:db8:ffff::1")
MAG1 = IPv6Address("2001:db8:a::1")
PHOA = IPv6Address("2001:db8:1::100")
MN1 = b"mn1@example.net"
MN2 = b"mn2@example.net"
PBACK = b"\x3b\x01\x06\x00\x00\x00\x00\x20\x00\x07\x03\x84\x00\x00\x00\x00"
MAC = bytes.fromhex("02000000aa01")
HNP = IPv6Network("2001:db8:1:7::/64")
HNP2 = IPv6Network("2001:db8:1:8::/64")
V4 = IPv4Interface("10.20.0.5/24")
ROUTER = IPv4Address("10.20.0.1")


def roundtrip(message):
    return control.decodeControl(control.encodeControl(message))


class MagTestMixin:
    """Helpers: a MAG and a hand-played PMIP client."""

    def makeMag(self, **kw):
        return MagCore(MAG1, LMA, **kw)

    def sent(self, effects):
        """The control message in C{effects}, as the PMIP client decodes it."""
        sends = [e for e in effects if type(e) is SendControl]
        self.assertEqual(len(sends), 1, effects)
        message = sends[0].message
        self.assertEqual(roundtrip(message), message)
        return message

    def notify(self, core, notification, now=0):
        return core.receiveNotification(roundtrip(notification), now)

    def bind(self, core, mnId=MN1, now=0):
        """Attach, trigger and succeed; returns the Trigger."""
        core.attach(mnId, now)
        trigger = self.sent(core.addressReady(mnId, None, AddressMode.LMA_ASSIGNED, now))
        self.notify(core, Notification(trigger.transaction, Result.SUCCESS, mnId, PHOA,
                                       PBACK), now)
        self.assertEqual(core.attachment(mnId).state, mag.BOUND)
        return trigger


class AttachTests(MagTestMixin, SynchronousTestCase):

    def test_attachThenAddress(self):
        """Attachment waits for an address; the address sends the Trigger."""
        core = self.makeMag()
        self.assertEqual(core.attach(MN1, 5), [])
        self.assertEqual(core.attachment(MN1).state, mag.ATTACHED)
        self.assertIsNone(core.nextTimer())
        effects = core.addressReady(MN1, None, AddressMode.LMA_ASSIGNED, 6)
        self.assertEqual(len(effects), 1)
        trigger = self.sent(effects)
        self.assertEqual(trigger, Trigger(trigger.transaction, MN1, MAG1, None,
                                          AddressMode.LMA_ASSIGNED))
        self.assertNotEqual(trigger.transaction, 0)
        a = core.attachment(MN1)
        self.assertEqual((a.state, a.transaction, a.tunnel),
                         (mag.TRIGGERED, trigger.transaction, False))
        self.assertEqual(core.nextTimer(), 6 + 70)

    def test_addressFromDhcp(self):
        core = self.makeMag()
        core.attach(MN1, 0)
        trigger = self.sent(core.addressReady(MN1, str(PHOA), AddressMode.STATEFUL, 0))
        self.assertEqual((trigger.phoa, trigger.mode), (PHOA, AddressMode.STATEFUL))

    def test_transactionsDiffer(self):
        core = self.makeMag()
        core.attach(MN1, 0)
        core.attach(MN2, 0)
        t1 = self.sent(core.addressReady(MN1, None, AddressMode.LMA_ASSIGNED, 0))
        t2 = self.sent(core.addressReady(MN2, None, AddressMode.LMA_ASSIGNED, 0))
        self.assertNotEqual(t1.transaction, t2.transaction)

    def test_success(self):
        """A SUCCESS Notification brings the tunnel up and binds the mobile."""
        core = self.makeMag()
        core.attach(MN1, 0)
        trigger = self.sent(core.addressReady(MN1, None, AddressMode.LMA_ASSIGNED, 0))
        effects = self.notify(core, Notification(trigger.transaction, Result.SUCCESS,
                                                 MN1, PHOA, PBACK), 1)
        self.assertEqual(effects, [TunnelUp(MN1, PHOA, LMA), Bound(MN1, PHOA)])
        a = core.attachment(MN1)
        self.assertEqual((a.state, a.phoa, a.tunnel, a.transaction),
                         (mag.BOUND, PHOA, True, None))
        self.assertIsNone(core.nextTimer())

    def test_failure(self):
        """A failed Trigger leaves no tunnel and no attachment."""
        core = self.makeMag()
        core.attach(MN1, 0)
        trigger = self.sent(core.addressReady(MN1, None, AddressMode.LMA_ASSIGNED, 0))
        effects = self.notify(core, Notification(trigger.transaction,
                                                 Result.PBACK_REJECTED, MN1, None, PBACK))
        self.assertEqual(effects, [Unbound(MN1, None, Result.PBACK_REJECTED,
                                           "pback-rejected")])
        self.assertIsNone(core.attachment(MN1))
        self.assertIsNone(core.nextTimer())

    def test_successWithoutPhoa(self):
        """A SUCCESS that names no pHoA cannot bind: the mobile is unbound."""
        core = self.makeMag()
        core.attach(MN1, 0)
        trigger = self.sent(core.addressReady(MN1, None, AddressMode.LMA_ASSIGNED, 0))
        effects = self.notify(core, Notification(trigger.transaction, Result.SUCCESS, MN1))
        self.assertEqual(len(effects), 1)
        self.assertIs(type(effects[0]), Unbound)
        self.assertEqual(effects[0].mnId, MN1)
        self.assertIsNone(core.attachment(MN1))

    def test_notificationTimeout(self):
        core = self.makeMag(notificationTimeout=70)
        core.attach(MN1, 0)
        self.sent(core.addressReady(MN1, None, AddressMode.LMA_ASSIGNED, 10))
        self.assertEqual(core.handleTimer(79.9), [])
        self.assertEqual(core.handleTimer(80), [Unbound(MN1, None, None, "no Notification")])
        self.assertIsNone(core.attachment(MN1))
        self.assertIsNone(core.nextTimer())

    def test_lateNotificationAfterTimeout(self):
        core = self.makeMag()
        core.attach(MN1, 0)
        trigger = self.sent(core.addressReady(MN1, None, AddressMode.LMA_ASSIGNED, 0))
        core.handleTimer(1000)
        # Given up here: the late answer is expected and changes nothing.
        self.assertEqual(self.notify(core, Notification(trigger.transaction,
                                                        Result.SUCCESS, MN1, PHOA)), [])
        self.assertIsNone(core.attachment(MN1))

    def test_reattachWhileDetaching(self):
        """A mobile back before its Detach is answered can attach again."""
        core = self.makeMag()
        self.bind(core)
        detach = self.sent(core.detach(MN1, 10))
        self.assertEqual(core.attachment(MN1).state, mag.DETACHING)
        core.attach(MN1, 10.5)
        self.assertEqual(core.attachment(MN1).state, mag.ATTACHED)
        self.assertEqual(self.notify(core, Notification(detach.transaction,
                                                        Result.SUCCESS, MN1, PHOA)), [])
        self.assertEqual(core.attachment(MN1).state, mag.ATTACHED)

    def test_retriggerWhileBound(self):
        """A new address for a bound mobile keeps the tunnel; success rebinds."""
        core = self.makeMag()
        self.bind(core)
        trigger = self.sent(core.addressReady(MN1, PHOA, AddressMode.STATIC, 5))
        self.assertEqual(core.attachment(MN1).state, mag.TRIGGERED)
        effects = self.notify(core, Notification(trigger.transaction, Result.SUCCESS,
                                                 MN1, PHOA))
        self.assertEqual(effects, [Bound(MN1, PHOA)])


class SeveralLmaTests(MagTestMixin, SynchronousTestCase):
    """
    A Notification that names the mobile's LMA (draft 4.4: a PMIP client
    with several): the tunnel goes there, and comes down from there.
    """

    LMA2 = IPv6Address("2001:db8:fffe::1")

    def test_tunnelToNamedLma(self):
        core = self.makeMag()
        core.attach(MN1, 0)
        trigger = self.sent(core.addressReady(MN1, None, AddressMode.LMA_ASSIGNED, 0))
        effects = self.notify(core, Notification(trigger.transaction, Result.SUCCESS, MN1,
                                                 PHOA, lma=self.LMA2))
        self.assertEqual(effects, [TunnelUp(MN1, PHOA, self.LMA2), Bound(MN1, PHOA)])
        self.assertEqual(core.attachment(MN1).lma, self.LMA2)
        effects = core.detach(MN1, 20)
        self.assertEqual(effects[0], TunnelDown(MN1, PHOA, self.LMA2))
        self.assertIsNone(core.attachment(MN1).lma)

    def test_anchorChanges(self):
        """Rebound at another LMA: every tunnel moves there, even for an unchanged home."""
        core = self.makeMag()
        self.bind(core)
        self.assertEqual(core.attachment(MN1).lma, LMA)
        trigger = self.sent(core.addressReady(MN1, PHOA, AddressMode.STATIC, 5))
        effects = self.notify(core, Notification(trigger.transaction, Result.SUCCESS,
                                                 MN1, PHOA, lma=self.LMA2))
        self.assertEqual(effects, [TunnelDown(MN1, PHOA, LMA), TunnelUp(MN1, PHOA, self.LMA2),
                                   Bound(MN1, PHOA)])
        # The same LMA named again changes nothing.
        trigger = self.sent(core.addressReady(MN1, PHOA, AddressMode.STATIC, 6))
        effects = self.notify(core, Notification(trigger.transaction, Result.SUCCESS,
                                                 MN1, PHOA, lma=self.LMA2))
        self.assertEqual(effects, [Bound(MN1, PHOA)])


class DetachTests(MagTestMixin, SynchronousTestCase):

    def test_detachBound(self):
        """Detach takes the tunnel down and tells the PMIP client."""
        core = self.makeMag()
        self.bind(core)
        effects = core.detach(MN1, 20)
        self.assertEqual(effects[0], TunnelDown(MN1, PHOA, LMA))
        d = self.sent(effects)
        self.assertEqual(len(effects), 2)
        self.assertEqual(d, Detach(d.transaction, MN1, MAG1, PHOA))
        self.assertEqual(core.attachment(MN1).state, mag.DETACHING)
        self.assertEqual(core.nextTimer(), 90)
        effects = self.notify(core, Notification(d.transaction, Result.SUCCESS, MN1, PHOA))
        self.assertEqual(effects, [Unbound(MN1, PHOA, Result.SUCCESS, "detached")])
        self.assertIsNone(core.attachment(MN1))

    def test_detachAnsweredMoved(self):
        core = self.makeMag()
        self.bind(core)
        d = self.sent(core.detach(MN1, 20))
        effects = self.notify(core, Notification(d.transaction, Result.MOVED, MN1, PHOA))
        self.assertEqual(effects, [Unbound(MN1, PHOA, Result.MOVED, "detached")])

    def test_detachTimeout(self):
        core = self.makeMag()
        self.bind(core)
        self.sent(core.detach(MN1, 20))
        self.assertEqual(core.handleTimer(90), [Unbound(MN1, PHOA, None, "no Notification")])
        self.assertIsNone(core.attachment(MN1))

    def test_detachBeforeAddress(self):
        """A mobile that leaves before the Trigger needs no signalling."""
        core = self.makeMag()
        core.attach(MN1, 0)
        self.assertEqual(core.detach(MN1, 1), [Unbound(MN1, None, None, "detached")])
        self.assertIsNone(core.attachment(MN1))

    def test_detachWhileTriggered(self):
        core = self.makeMag()
        core.attach(MN1, 0)
        trigger = self.sent(core.addressReady(MN1, None, AddressMode.LMA_ASSIGNED, 0))
        effects = core.detach(MN1, 1)
        d = self.sent(effects)
        self.assertEqual(len(effects), 1)
        self.assertNotEqual(d.transaction, trigger.transaction)
        self.assertEqual(core.attachment(MN1).state, mag.DETACHING)

    def test_unsolicitedMoved(self):
        """The mobile is bound through another MAG now: the tunnel goes."""
        core = self.makeMag()
        self.bind(core)
        effects = self.notify(core, Notification(0, Result.MOVED, MN1, PHOA), 30)
        self.assertEqual(effects, [TunnelDown(MN1, PHOA, LMA),
                                   Unbound(MN1, PHOA, Result.MOVED, "moved")])
        self.assertIsNone(core.attachment(MN1))

    def test_unsolicitedBindingLost(self):
        core = self.makeMag()
        self.bind(core)
        effects = self.notify(core, Notification(0, Result.BINDING_LOST, MN1, PHOA), 30)
        self.assertEqual(effects, [TunnelDown(MN1, PHOA, LMA),
                                   Unbound(MN1, PHOA, Result.BINDING_LOST, "binding-lost")])

    def test_unsolicitedForAbsentMobile(self):
        """A MOVED for a mobile that already left here changes nothing."""
        core = self.makeMag()
        self.assertEqual(self.notify(core, Notification(0, Result.MOVED, MN1, PHOA)), [])
        core.attach(MN1, 0)
        self.assertEqual(self.notify(core, Notification(0, Result.MOVED, MN1, PHOA)), [])
        self.assertEqual(core.attachment(MN1).state, mag.ATTACHED)


class InvalidInputTests(MagTestMixin, SynchronousTestCase):
    """Inputs that are illegal in the state they arrive in raise and change nothing."""

    def test_attachTwice(self):
        core = self.makeMag()
        core.attach(MN1, 0)
        before = core.attachment(MN1)
        exc = self.assertRaises(InvalidInput, core.attach, MN1, 1)
        self.assertEqual(exc.state, mag.ATTACHED)
        self.assertIs(core.attachment(MN1), before)

    def test_attachWhileBound(self):
        core = self.makeMag()
        self.bind(core)
        self.assertRaises(InvalidInput, core.attach, MN1, 1)
        self.assertEqual(core.attachment(MN1).state, mag.BOUND)

    def test_addressBeforeAttach(self):
        core = self.makeMag()
        self.assertRaises(InvalidInput, core.addressReady, MN1, PHOA, AddressMode.STATIC, 0)
        self.assertIsNone(core.attachment(MN1))

    def test_addressTwice(self):
        core = self.makeMag()
        core.attach(MN1, 0)
        core.addressReady(MN1, None, AddressMode.LMA_ASSIGNED, 0)
        self.assertRaises(InvalidInput, core.addressReady, MN1, PHOA, AddressMode.STATIC, 0)

    def test_noAddressNotLmaAssigned(self):
        """A missing pHoA is only valid when the LMA is to assign one."""
        core = self.makeMag()
        core.attach(MN1, 0)
        self.assertRaises(InvalidInput, core.addressReady, MN1, None,
                          AddressMode.STATEFUL, 0)
        a = core.attachment(MN1)
        self.assertEqual((a.state, a.transaction), (mag.ATTACHED, None))
        # The attachment still works.
        trigger = self.sent(core.addressReady(MN1, PHOA, AddressMode.STATEFUL, 0))
        self.assertEqual(trigger.phoa, PHOA)

    def test_unknownTransaction(self):
        core = self.makeMag()
        self.assertRaises(InvalidInput, self.notify, core,
                          Notification(1234, Result.SUCCESS, MN1, PHOA))

    def test_staleTransaction(self):
        """A Notification already answered is not taken twice."""
        core = self.makeMag()
        trigger = self.bind(core)
        self.assertRaises(InvalidInput, self.notify, core,
                          Notification(trigger.transaction, Result.SUCCESS, MN1, PHOA))
        self.assertEqual(core.attachment(MN1).state, mag.BOUND)

    def test_unsolicitedNeedsMovedOrLost(self):
        core = self.makeMag()
        self.bind(core)
        self.assertRaises(InvalidInput, self.notify, core,
                          Notification(0, Result.SUCCESS, MN1, PHOA))
        self.assertEqual(core.attachment(MN1).state, mag.BOUND)

    def test_detachUnknown(self):
        core = self.makeMag()
        self.assertRaises(InvalidInput, core.detach, MN1, 0)

    def test_detachTwice(self):
        core = self.makeMag()
        self.bind(core)
        core.detach(MN1, 1)
        self.assertRaises(InvalidInput, core.detach, MN1, 2)
        self.assertEqual(core.attachment(MN1).state, mag.DETACHING)


class MachineTests(MagTestMixin, SynchronousTestCase):
    """The transition table is the machine: step() refuses what it lacks."""

    INPUTS = ("attach", "address", "success", "failure", "conflict", "timeout", "detach",
              "moved", "lost", "answer")

    def test_everyMissingTransitionRefused(self):
        core = self.makeMag()
        for state in (None,) + tuple(mag.State):
            for what in self.INPUTS:
                a = mag.Attachment(MN1, 0)
                a.state = state
                core.attachments[MN1] = a
                if (state, what) in mag.TRANSITIONS:
                    self.assertEqual(core.step(a, what), mag.TRANSITIONS[(state, what)])
                    self.assertEqual(a.state, mag.TRANSITIONS[(state, what)])
                    self.assertEqual(MN1 in core.attachments, a.state is not None)
                else:
                    e = self.assertRaises(InvalidInput, core.step, a, what)
                    self.assertEqual((e.what, e.state, a.state), (what, state, state))
                    self.assertIs(core.attachments[MN1], a)
                core.attachments.clear()

    def test_statesAreAnEnum(self):
        self.assertEqual([s.name for s in mag.State],
                         ["ATTACHED", "TRIGGERED", "BOUND", "DETACHING"])
        self.assertIs(mag.BOUND, mag.State.BOUND)


class LinkTests(MagTestMixin, SynchronousTestCase):
    """The Trigger and Detach describe the mobile's link (RFC 5213 LL-ID, ATT)."""

    def test_linkLayerIdAndAccessTechnology(self):
        core = self.makeMag(accessTechnology=4)
        core.attach(MN1, 0, linkLayerId=MAC)
        trigger = self.sent(core.addressReady(MN1, PHOA, AddressMode.STATIC, 0))
        self.assertEqual((trigger.linkLayerId, trigger.accessTechnology), (MAC, 4))
        self.notify(core, Notification(trigger.transaction, Result.SUCCESS, MN1, PHOA))
        detach = self.sent(core.detach(MN1, 1))
        self.assertEqual(detach.linkLayerId, MAC)

    def test_peerMag(self):
        """The MAG a handoff came from (Notification option 13) goes with the Bound effect."""
        core = self.makeMag()
        core.attach(MN1, 0, linkLayerId=MAC)
        trigger = self.sent(core.addressReady(MN1, PHOA, AddressMode.STATIC, 0))
        previous = IPv6Address("2001:db8:ffff::11")
        effects = self.notify(core, Notification(trigger.transaction, Result.SUCCESS, MN1,
                                                 PHOA, peerMag=previous))
        self.assertEqual(effects[-1], Bound(MN1, PHOA, None, None, None, previous))

    def test_withoutThem(self):
        """No MAC known and no access technology configured: neither option is sent."""
        core = self.makeMag()
        core.attach(MN1, 0)
        trigger = self.sent(core.addressReady(MN1, PHOA, AddressMode.STATIC, 0))
        self.assertEqual((trigger.linkLayerId, trigger.accessTechnology, trigger.ipv4),
                         (None, None, None))

    def test_reattachTakesNewLinkLayerId(self):
        core = self.makeMag()
        self.bind(core)
        self.sent(core.detach(MN1, 1))
        core.attach(MN1, 2, linkLayerId=MAC)
        trigger = self.sent(core.addressReady(MN1, None, AddressMode.LMA_ASSIGNED, 2))
        self.assertEqual(trigger.linkLayerId, MAC)


class PrefixTests(MagTestMixin, SynchronousTestCase):
    """Per-MN prefixes (draft E.3): the tunnel carries the whole prefix."""

    def triggerPrefix(self, core, prefix=None, now=0):
        return self.sent(core.addressReady(MN1, None, AddressMode.PREFIX, now, prefix=prefix))

    def test_bindPrefix(self):
        core = self.makeMag()
        core.attach(MN1, 0, linkLayerId=MAC)
        trigger = self.triggerPrefix(core)
        self.assertEqual((trigger.mode, trigger.phoa, trigger.prefix),
                         (AddressMode.PREFIX, None, None))
        effects = self.notify(core, Notification(trigger.transaction, Result.SUCCESS, MN1,
                                                 prefix=HNP))
        self.assertEqual(effects, [TunnelUp(MN1, HNP, LMA), Bound(MN1, None, HNP)])
        self.assertEqual(core.homes(MN1), mag.Homes(None, HNP, None, None))
        effects = core.detach(MN1, 5)
        self.assertEqual(effects[0], TunnelDown(MN1, HNP, LMA))
        self.assertEqual(core.homes(MN1), mag.NO_HOMES)

    def test_knownPrefix(self):
        """A prefix the MAG knows (context transfer) goes in the Trigger."""
        core = self.makeMag()
        core.attach(MN1, 0)
        self.assertEqual(self.triggerPrefix(core, str(HNP)).prefix, HNP)

    def test_successWithoutPrefix(self):
        """A SUCCESS in prefix mode that names no prefix cannot bind."""
        core = self.makeMag()
        core.attach(MN1, 0)
        trigger = self.triggerPrefix(core)
        effects = self.notify(core, Notification(trigger.transaction, Result.SUCCESS, MN1,
                                                 PHOA))
        self.assertEqual(effects, [Unbound(MN1, None, Result.SUCCESS,
                                           "Notification without a prefix")])
        self.assertIsNone(core.attachment(MN1))

    def test_newPrefixOnRetrigger(self):
        """Re-triggered and given another prefix: the old one's tunnel goes."""
        core = self.makeMag()
        core.attach(MN1, 0)
        t = self.triggerPrefix(core)
        self.notify(core, Notification(t.transaction, Result.SUCCESS, MN1, prefix=HNP))
        t = self.triggerPrefix(core, HNP, now=1)
        effects = self.notify(core, Notification(t.transaction, Result.SUCCESS, MN1,
                                                 prefix=HNP2))
        self.assertEqual(effects, [TunnelDown(MN1, HNP, LMA), TunnelUp(MN1, HNP2, LMA),
                                   Bound(MN1, None, HNP2)])
        t = self.triggerPrefix(core, HNP2, now=2)
        effects = self.notify(core, Notification(t.transaction, Result.SUCCESS, MN1,
                                                 prefix=HNP2))
        self.assertEqual(effects, [Bound(MN1, None, HNP2)])

    def test_badCombinations(self):
        """A pHoA in prefix mode, or a prefix in another mode: refused, nothing changed."""
        core = self.makeMag()
        core.attach(MN1, 0)
        for phoa, mode, prefix, why in (
                (PHOA, AddressMode.PREFIX, None, "mode prefix takes no pHoA"),
                (PHOA, AddressMode.STATIC, HNP, "only mode prefix names a prefix"),
                (None, AddressMode.LMA_ASSIGNED, HNP, "only mode prefix names a prefix")):
            e = self.assertRaises(InvalidInput, core.addressReady, MN1, phoa, mode, 0,
                                  prefix=prefix)
            self.assertEqual(e.reason, why)
            a = core.attachment(MN1)
            self.assertEqual((a.state, a.transaction), (mag.ATTACHED, None))


class Ipv4Tests(MagTestMixin, SynchronousTestCase):
    """IPv4 home addresses (draft E.2, RFC 5844) with the MAG's ipv4 policy on."""

    def bindDual(self, core, ipv4=V4, router=ROUTER):
        core.attach(MN1, 0, linkLayerId=MAC)
        trigger = self.sent(core.addressReady(MN1, None, AddressMode.PREFIX, 0))
        self.assertEqual(trigger.ipv4, IPv4Interface("0.0.0.0/0"))
        return self.notify(core, Notification(trigger.transaction, Result.SUCCESS, MN1,
                                              prefix=HNP, ipv4=ipv4, ipv4Router=router))

    def test_dualStack(self):
        core = self.makeMag(ipv4=True)
        effects = self.bindDual(core)
        self.assertEqual(effects, [TunnelUp(MN1, HNP, LMA), TunnelUp(MN1, V4.ip, LMA),
                                   Bound(MN1, None, HNP, V4, ROUTER)])
        self.assertEqual(core.homes(MN1), mag.Homes(None, HNP, V4, ROUTER))
        self.assertEqual(core.detach(MN1, 3)[:2], [TunnelDown(MN1, HNP, LMA),
                                                   TunnelDown(MN1, V4.ip, LMA)])

    def test_retriggerNamesItsAddress(self):
        """A bound mobile's next Trigger names the IPv4 address it has."""
        core = self.makeMag(ipv4=True)
        self.bindDual(core)
        trigger = self.sent(core.addressReady(MN1, None, AddressMode.PREFIX, 1, prefix=HNP))
        self.assertEqual(trigger.ipv4, V4)

    def test_notAssigned(self):
        """No IPv4 in the answer (the LMA has no IPv4 pool): IPv6 only."""
        core = self.makeMag(ipv4=True)
        effects = self.bindDual(core, ipv4=None, router=None)
        self.assertEqual(effects, [TunnelUp(MN1, HNP, LMA), Bound(MN1, None, HNP)])

    def test_withoutRouter(self):
        """An IPv4 address without a default router cannot be served: not carried."""
        core = self.makeMag(ipv4=True)
        for ipv4, router in ((V4, None), (IPv4Interface("0.0.0.0/0"), ROUTER)):
            effects = self.bindDual(core, ipv4=ipv4, router=router)
            self.assertEqual(effects, [TunnelUp(MN1, HNP, LMA), Bound(MN1, None, HNP)])
            core.detach(MN1, 1)
            core.attachments.clear()

    def test_contextNamesItsAddress(self):
        """
        The IPv4 home address a context transfer brought (expectIpv4) is
        what the first Trigger at the new MAG asks for, not a new one.
        """
        core = self.makeMag(ipv4=True)
        core.expectIpv4(MN1, V4)  # not attached: nothing
        core.attach(MN1, 0, linkLayerId=MAC)
        core.expectIpv4(MN1, V4)
        trigger = self.sent(core.addressReady(MN1, PHOA, AddressMode.STATIC, 0))
        self.assertEqual(trigger.ipv4, V4)

    def test_policyOff(self):
        """Without the ipv4 policy the Trigger asks for no IPv4 address."""
        core = self.makeMag()
        core.attach(MN1, 0)
        trigger = self.sent(core.addressReady(MN1, PHOA, AddressMode.STATIC, 0))
        self.assertIsNone(trigger.ipv4)


class RequestsTests(MagTestMixin, SynchronousTestCase):
    """L{MagCore.requests}: what a (re)connected PMIP client must be sent."""

    def test_unansweredRequestsOldestFirst(self):
        core = self.makeMag()
        self.bind(core, MN2, now=0)
        core.attach(MN1, 1)
        trigger = self.sent(core.addressReady(MN1, PHOA, AddressMode.STATIC, 1))
        detach = self.sent(core.detach(MN2, 2))
        self.assertEqual(core.requests(), [trigger, detach])
        self.notify(core, Notification(trigger.transaction, Result.SUCCESS, MN1, PHOA), 3)
        self.assertEqual(core.requests(), [detach])
        self.notify(core, Notification(detach.transaction, Result.SUCCESS, MN2, PHOA), 3)
        self.assertEqual(core.requests(), [])

    def test_givenUpRequestsAreNotSentAgain(self):
        core = self.makeMag(notificationTimeout=10)
        core.attach(MN1, 0)
        self.sent(core.addressReady(MN1, None, AddressMode.LMA_ASSIGNED, 0))
        core.handleTimer(10)
        self.assertEqual(core.requests(), [])


LMA2 = IPv6Address("2001:db8:fffe::1")


class ReanchorTests(MagTestMixin, SynchronousTestCase):
    """
    REANCHORED (draft 4.4): the mobile gets a new prefix at another LMA; the
    old prefix keeps its tunnel to the old LMA until released.
    """

    def setUp(self):
        self.used = {}
        self.core = self.makeMag(oldLifetime=600, idleRelease=30)
        self.core.lastUsed = lambda home: self.used.setdefault(home, 0)
        self.core.attach(MN1, 0, linkLayerId=MAC)
        t = self.sent(self.core.addressReady(MN1, None, AddressMode.PREFIX, 0))
        self.notify(self.core, Notification(t.transaction, Result.SUCCESS, MN1, prefix=HNP))

    def reanchor(self, now=10):
        return self.notify(self.core, Notification(0, Result.REANCHORED, MN1, prefix=HNP2,
                                                   lma=LMA2), now)

    def test_reanchor(self):
        """New prefix tunnelled to the new LMA, the old one kept, both told to the strategy."""
        self.assertEqual(self.reanchor(), [TunnelUp(MN1, HNP2, LMA2), Bound(MN1, None, HNP2)])
        a = self.core.attachment(MN1)
        self.assertEqual((a.state, a.lma, a.tunnels), (mag.BOUND, LMA2, (HNP2,)))
        self.assertEqual(self.core.homes(MN1).prefix, HNP2)
        [old] = self.core.oldHomes(MN1)
        self.assertEqual((old.prefix, old.lma, old.deadline), (HNP, LMA, 610))
        # Looked at again once it could have been idle long enough.
        self.assertEqual(self.core.nextTimer(), 30)

    def test_releasedWhenIdle(self):
        """Unused for idleRelease seconds: tunnel down, a Detach naming the old prefix."""
        self.reanchor()
        self.used[HNP] = 25
        self.assertEqual(self.core.handleTimer(30), [])
        self.assertEqual(self.core.nextTimer(), 55)
        effects = self.core.handleTimer(55)
        self.assertEqual(effects[0], TunnelDown(MN1, HNP, LMA))
        detach = self.sent(effects)
        self.assertEqual((detach.mnId, detach.prefix, detach.phoa, detach.linkLayerId),
                         (MN1, HNP, None, MAC))
        self.assertEqual(self.core.oldHomes(MN1), ())
        # Until answered, it is sent again on a new connection.
        self.assertEqual(self.core.requests(), [detach])
        self.assertEqual(self.notify(self.core, Notification(
            detach.transaction, Result.SUCCESS, MN1, prefix=HNP), 56), [])
        self.assertEqual(self.core.requests(), [])
        self.assertEqual(self.core.attachment(MN1).state, mag.BOUND)

    def test_releasedAtDeadline(self):
        """In use, it goes anyway at the end of its time; without lastUsed only then."""
        self.reanchor()
        for t in range(30, 610, 30):
            self.used[HNP] = t
            self.assertEqual(self.core.handleTimer(t), [])
        self.assertEqual(self.core.nextTimer(), 610)
        self.assertEqual(self.core.handleTimer(610)[0], TunnelDown(MN1, HNP, LMA))
        self.setUp()
        self.core.lastUsed = None
        self.reanchor()
        self.assertEqual(self.core.nextTimer(), 610)

    def test_oldHomeLost(self):
        """binding-lost naming the old prefix drops only it."""
        self.reanchor()
        effects = self.notify(self.core, Notification(0, Result.BINDING_LOST, MN1,
                                                      prefix=HNP, lma=LMA), 20)
        self.assertEqual(effects, [TunnelDown(MN1, HNP, LMA)])
        self.assertEqual(self.core.attachment(MN1).state, mag.BOUND)
        self.assertEqual(self.core.oldHomes(MN1), ())

    def test_leavingTakesOldHomes(self):
        """The mobile leaves: both tunnels go."""
        self.reanchor()
        effects = self.core.detach(MN1, 20)
        self.assertEqual(effects[:2], [TunnelDown(MN1, HNP2, LMA2), TunnelDown(MN1, HNP, LMA)])
        self.assertEqual(self.core.oldHomes(MN1), ())

    def test_notUsable(self):
        """REANCHORED for a mobile not bound here, or without a prefix: ignored."""
        self.assertEqual(self.notify(self.core, Notification(0, Result.REANCHORED, MN2,
                                                             prefix=HNP2, lma=LMA2)), [])
        self.assertEqual(self.notify(self.core, Notification(0, Result.REANCHORED, MN1,
                                                             lma=LMA2)), [])
        self.assertEqual(self.core.oldHomes(MN1), ())
        self.assertEqual(self.core.attachment(MN1).lma, LMA)
