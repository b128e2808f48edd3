"""
The PMIP client core's profiles (L{netlmm.core.profiles}) and its reading of
PBAs: per-MN prefixes, IPv4 home addresses, the RFC 5213 PBU, answers it
cannot use, malformed options and the statuses of RFC 5213 and RFC 5844.

The LMA is played by hand, as in test_core_pmip: each test builds the PBA it
wants and hands the decoded message and its octets to the core.
"""

import random
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Network

from twisted.logger import Logger, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from netlmm.core import pmip, profiles
from netlmm.core.effects import Notify, SendMH
from netlmm.core.pmip import PmipCore
from netlmm.test.test_core_pmip import LMA, PMIP, PmipTestMixin, roundtrip
from netlmm.wire import mh
from netlmm.wire.control import AddressMode, Detach, Notification, Result, Trigger
from netlmm.wire.mh import HandoffIndicator as HI, HomeNetworkPrefix, Status

MAG1 = IPv6Address("2001:db8:a::1")
MAG2 = IPv6Address("2001:db8:b::1")
MN1 = b"mn1@example.net"
PREFIX = IPv6Network("2001:db8:5::/64")
PHOA = IPv6Address("2001:db8:1::100")
MAC = bytes.fromhex("020000aabbcc")
HOUR = 900
NOW = 1_700_000_000.0


class LoggedMixin:
    """Collects what the core logs, formatted."""

    def captureLog(self):
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        return lambda: [formatEvent(e) for e in events if e.get("log_namespace") == "pmip-test"]


class ProfileMixin(LoggedMixin, PmipTestMixin):
    """A PMIP client core and a hand-played LMA (onlyPBU, notifies: test_core_pmip's)."""

    def makePmip(self, profile=None, **kw):
        kw.setdefault("rng", random.Random(7))
        return PmipCore(LMA, profile=profile, log=Logger(namespace="pmip-test"), **kw)

    def trigger(self, core, txn, mag=MAG1, mode=AddressMode.PREFIX, now=NOW, **fields):
        t = roundtrip(Trigger(txn, fields.pop("mnId", MN1), mag, fields.pop("phoa", None),
                              mode, **fields))
        return core.receiveTrigger(t, now)

    def ack(self, core, bu, options, status=Status.ACCEPTED, lifetime=HOUR, sequence=None,
            now=NOW):
        """Answer C{bu} with a PBA carrying exactly C{options}; (effects, raw)."""
        ba = mh.BindingAcknowledgement(status, mh.BA_P,
                                       bu.sequence if sequence is None else sequence,
                                       lifetime if status < 128 else 0, options)
        raw = mh.encodeMessage(ba, LMA, PMIP)
        return core.receiveMH(mh.decodeMessage(raw, LMA, PMIP), raw, LMA, now), raw


def _hnp(home):
    if isinstance(home, IPv6Network):
        return HomeNetworkPrefix(home.network_address, home.prefixlen)
    return HomeNetworkPrefix(home, 128)


class NetlmmPrefixTests(ProfileMixin, SynchronousTestCase):
    """Per-MN prefixes (draft E.3) in the netlmm dialect."""

    def register(self, core, txn=1):
        bu = self.onlyPBU(self.trigger(core, txn))
        effects, raw = self.ack(core, bu, [_hnp(PREFIX), mh.MobileNodeIdentifier(MN1)])
        return bu, effects, raw

    def test_askAndBind(self):
        """
        The PBU asks with ALL_ZERO ::/0 (A|H|P, Alternate CoA, MN-ID); the
        assigned prefix is the mobile's and goes to the MAG.
        """
        core = self.makePmip()
        bu, effects, raw = self.register(core)
        self.assertEqual(bu.flags, mh.BU_A | mh.BU_H | mh.BU_P)
        self.assertEqual([type(o) for o in bu.options],
                         [HomeNetworkPrefix, mh.AlternateCareOfAddress,
                          mh.MobileNodeIdentifier])
        self.assertEqual(bu.option(HomeNetworkPrefix), HomeNetworkPrefix("::", 0))
        self.assertEqual(self.notifies(effects), [Notify(Notification(
            1, Result.SUCCESS, MN1, pback=raw, prefix=PREFIX), MAG1)])
        m = core.mobile(MN1)
        self.assertEqual((m.state, m.home, m.prefix, m.phoa), (pmip.BOUND, PREFIX, PREFIX, None))

    def test_handoffNamesThePrefix(self):
        core = self.makePmip()
        self.register(core)
        bu = self.onlyPBU(self.trigger(core, 2, mag=MAG2, now=NOW + 5))
        self.assertEqual(bu.option(HomeNetworkPrefix), _hnp(PREFIX))
        self.assertIsNone(bu.option(mh.MobileNodeIdentifier))
        self.assertEqual(bu.option(mh.AlternateCareOfAddress).address, MAG2)
        effects, raw = self.ack(core, bu, [_hnp(PREFIX)], now=NOW + 5)
        self.assertEqual(self.notifies(effects), [
            Notify(Notification(2, Result.SUCCESS, MN1, pback=raw, prefix=PREFIX,
                                peerMag=MAG1), MAG2),
            Notify(Notification(0, Result.MOVED, MN1, prefix=PREFIX, peerMag=MAG2), MAG1)])

    def test_triggerForAnotherPrefix(self):
        """A Trigger naming another prefix than the cache's: phoa-mismatch."""
        core = self.makePmip()
        self.register(core)
        effects = self.trigger(core, 2, prefix=IPv6Network("2001:db8:6::/64"))
        self.assertEqual(effects, [Notify(Notification(
            2, Result.PHOA_MISMATCH, MN1, prefix=PREFIX), MAG1)])

    def test_modeChangeIsMismatch(self):
        core = self.makePmip()
        self.register(core)
        effects = self.trigger(core, 2, mode=AddressMode.STATIC, phoa=PHOA)
        self.assertEqual([e.notification.result for e in effects], [Result.PHOA_MISMATCH])

    def test_prefixOfAnotherMobile(self):
        core = self.makePmip()
        self.register(core)
        effects = self.trigger(core, 2, mnId=b"mn2@example.net", prefix=PREFIX)
        self.assertEqual(effects, [Notify(Notification(
            2, Result.ADDRESS_CONFLICT, b"mn2@example.net", prefix=PREFIX), MAG1)])

    def test_tooLongPrefixInTrigger(self):
        core = self.makePmip()
        log = self.captureLog()
        effects = self.trigger(core, 2, prefix=IPv6Network("2001:db8:5::/80"))
        self.assertEqual(effects, [Notify(Notification(2, Result.MALFORMED, MN1), MAG1)])
        self.assertIn("longer than /64", log()[-1])
        self.assertEqual(core.mobiles, {})


class UnusableTests(ProfileMixin, SynchronousTestCase):
    """An accepted PBA the client cannot use is deregistered at once."""

    def assertUnusable(self, core, effects, raw, why, dereg, txn=1, mag=MAG1, lost=None,
                       known=None):
        """C{known}: the home the client knew before the PBA."""
        notes = self.notifies(effects)
        expected = [Notify(Notification(txn, Result.PBACK_UNUSABLE, MN1, pback=raw,
                                        **pmip._homeFields(known)), mag)]
        if lost is not None:
            expected.append(Notify(Notification(
                0, Result.BINDING_LOST, MN1, **pmip._homeFields(known)), lost))
        self.assertEqual(notes, expected)
        bu = self.onlyPBU(effects)
        self.assertEqual((bu.lifetime, bu.option(HomeNetworkPrefix)), (0, dereg))
        self.assertEqual(bu.option(mh.MobileNodeIdentifier).identifier, MN1)
        self.assertEqual(core.mobile(MN1).state, pmip.DEREGISTERING)
        self.assertIn(why, "\n".join(self.log()))
        self.assertEqual(core.counters["unusable"], 1)
        return bu

    def setUp(self):
        self.log = self.captureLog()

    def test_prefixWhereAddressAsked(self):
        """An LMA-assigned pHoA answered with a /64: the /64 is deregistered."""
        core = self.makePmip()
        bu = self.onlyPBU(self.trigger(core, 1, mode=AddressMode.LMA_ASSIGNED))
        self.assertEqual(bu.option(HomeNetworkPrefix), HomeNetworkPrefix("::", 128))
        effects, raw = self.ack(core, bu, [_hnp(PREFIX), mh.MobileNodeIdentifier(MN1)])
        # The MAG learns nothing it could use: no home in the Notification.
        self.assertEqual(self.notifies(effects)[0].notification,
                         Notification(1, Result.PBACK_UNUSABLE, MN1, pback=raw))
        dereg = self.onlyPBU(effects)
        self.assertEqual((dereg.lifetime, dereg.option(HomeNetworkPrefix)), (0, _hnp(PREFIX)))
        self.assertIn("assigns the prefix 2001:db8:5::/64 where one address (a /128 pHoA, "
                      "address mode lma-assigned) was asked", "\n".join(self.log()))
        # The deregistration's answer ends it, quietly.
        effects, raw = self.ack(core, dereg, [_hnp(PREFIX)], lifetime=0)
        self.assertEqual(effects, [])
        self.assertIsNone(core.mobile(MN1))
        self.assertEqual(core.counters["deregistered"], 1)

    def test_prefixTooLong(self):
        core = self.makePmip()
        bu = self.onlyPBU(self.trigger(core, 1))
        long = IPv6Network("2001:db8:5::/96")
        effects, raw = self.ack(core, bu, [_hnp(long)])
        self.assertEqual(self.notifies(effects)[0].notification.result, Result.PBACK_UNUSABLE)
        dereg = self.onlyPBU(effects)
        self.assertEqual(dereg.option(HomeNetworkPrefix), _hnp(long))
        self.assertIn("longer than /64", "\n".join(self.log()))

    def test_allZeroEchoed(self):
        """An LMA that echoes ALL_ZERO (as OPMIP does) assigned nothing usable."""
        core = self.makePmip()
        bu = self.onlyPBU(self.trigger(core, 1))
        effects, raw = self.ack(core, bu, [HomeNetworkPrefix("::", 0)])
        self.assertUnusable(core, effects, raw, "all zeros (::/0): nothing was assigned",
                            HomeNetworkPrefix("::", 0))

    def test_noHomeNetworkPrefix(self):
        core = self.makePmip()
        bu = self.onlyPBU(self.trigger(core, 1))
        effects, raw = self.ack(core, bu, [mh.MobileNodeIdentifier(MN1)])
        self.assertUnusable(core, effects, raw, "no Home Network Prefix option",
                            HomeNetworkPrefix("::", 0))

    def test_malformedHomeNetworkPrefix(self):
        """Matched by its MN-ID, its prefix option unreadable: unusable."""
        core = self.makePmip()
        bu = self.onlyPBU(self.trigger(core, 1))
        broken = mh.MalformedOption(22, b"\x00\xc8" + bytes(16), "prefix length 200")
        effects, raw = self.ack(core, bu, [broken, mh.MobileNodeIdentifier(MN1)])
        self.assertUnusable(core, effects, raw, "Home Network Prefix option is malformed",
                            HomeNetworkPrefix("::", 0))

    def test_otherPrefixThanNamed(self):
        core = self.makePmip()
        bu = self.onlyPBU(self.trigger(core, 1, prefix=PREFIX))
        other = IPv6Network("2001:db8:6::/64")
        effects, raw = self.ack(core, bu, [_hnp(other)])
        self.assertUnusable(core, effects, raw,
                            "it binds the prefix 2001:db8:6::/64, not the prefix "
                            "2001:db8:5::/64", _hnp(other), known=PREFIX)

    def test_lifetimeZero(self):
        core = self.makePmip()
        bu = self.onlyPBU(self.trigger(core, 1))
        effects, raw = self.ack(core, bu, [_hnp(PREFIX)], lifetime=0)
        self.assertUnusable(core, effects, raw, "granted lifetime 0", _hnp(PREFIX))

    def test_unusableHandoff(self):
        """
        A handoff accepted with another prefix: the new MAG hears
        pback-unusable, the old one binding-lost, and the LMA's binding is
        deregistered.
        """
        core = self.makePmip()
        bu = self.onlyPBU(self.trigger(core, 1))
        self.ack(core, bu, [_hnp(PREFIX)])
        bu = self.onlyPBU(self.trigger(core, 2, mag=MAG2))
        other = IPv6Network("2001:db8:6::/64")
        effects, raw = self.ack(core, bu, [_hnp(other)])
        dereg = self.assertUnusable(core, effects, raw, "it binds the prefix 2001:db8:6::/64",
                                    _hnp(other), txn=2, mag=MAG2, lost=MAG1, known=PREFIX)
        self.assertEqual(core.mobile(MN1).pcoa, MAG2)
        self.assertEqual(core.mobile(MN1).home, other)
        del dereg


class MalformedPbaTests(ProfileMixin, SynchronousTestCase):
    """A PBA with a malformed option is still matched and its status acted on."""

    def bound(self, core):
        bu = self.onlyPBU(self.trigger(core, 1, mode=AddressMode.STATIC, phoa=PHOA))
        self.ack(core, bu, [_hnp(PHOA), mh.MobileNodeIdentifier(MN1)])
        return core.mobile(MN1)

    def test_lostBindingRecoveryWithMalformedMnId(self):
        """
        A handoff answered 160 whose MN-ID option is malformed (empty, as
        OPMIP sends it) is matched by its home and re-registered with the
        MN-ID.
        """
        core = self.makePmip()
        self.bound(core)
        bu = self.onlyPBU(self.trigger(core, 2, mag=MAG2, mode=AddressMode.STATIC, phoa=PHOA))
        empty = mh.MalformedOption(8, b"\x01", "length 1, expected at least 2")
        effects, raw = self.ack(core, bu, [_hnp(PHOA), empty],
                                status=Status.MISSING_MN_IDENTIFIER_OPTION)
        again = self.onlyPBU(effects)
        self.assertEqual(again.option(mh.MobileNodeIdentifier).identifier, MN1)
        self.assertEqual(self.notifies(effects), [])

    def test_matchedBySequenceAlone(self):
        """
        With both MN-ID and home malformed, the sequence number of the one
        PBU in flight matches it: a 133 to a refresh re-registers.
        """
        core = self.makePmip()
        due = self.bound(core).refreshAt
        bu = self.onlyPBU(core.handleTimer(due))
        self.assertEqual(bu.option(mh.MobileNodeIdentifier), None)
        effects, raw = self.ack(core, bu, [
            mh.MalformedOption(22, b"\x00", "length 1"),
            mh.MalformedOption(8, b"\x01", "length 1")],
            status=Status.NOT_HOME_AGENT_FOR_MN, now=due)
        again = self.onlyPBU(effects)
        self.assertEqual(again.option(mh.MobileNodeIdentifier).identifier, MN1)
        self.assertEqual(again.sequence, (bu.sequence + 1) & 0xFFFF)

    def test_ambiguousSequenceDropped(self):
        """Two PBUs in flight with the same number: an anonymous PBA matches neither."""
        core = self.makePmip()
        a = self.onlyPBU(self.trigger(core, 1, mnId=b"a@x", mode=AddressMode.LMA_ASSIGNED))
        b = self.onlyPBU(self.trigger(core, 2, mnId=b"b@x", mode=AddressMode.LMA_ASSIGNED))
        core.mobile(b"b@x").sequence = a.sequence - 1
        core.mobile(b"b@x").pending.sequences = []
        core._inFlight[b.sequence].discard(b"b@x")
        b = self.onlyPBU(core._send(core.mobile(b"b@x"), core.mobile(b"b@x").pending, NOW))
        self.assertEqual(a.sequence, b.sequence)
        effects, raw = self.ack(core, a, [mh.MalformedOption(8, b"\x01", "length 1")],
                                status=Status.UNSPECIFIED)
        self.assertEqual(effects, [])
        self.assertEqual(core.mobile(b"a@x").state, pmip.REGISTERING)


class StatusTests(ProfileMixin, SynchronousTestCase):
    """RFC 5213 and RFC 5844 statuses map to clear results and logs."""

    def refused(self, status):
        core = self.makePmip()
        log = self.captureLog()
        bu = self.onlyPBU(self.trigger(core, 1))
        effects, raw = self.ack(core, bu, [mh.MobileNodeIdentifier(MN1)], status=status)
        self.assertIsNone(core.mobile(MN1))
        return self.notifies(effects)[0].notification.result, log()[-1]

    def test_results(self):
        cases = {
            Status.DAD_FAILED: Result.ADDRESS_CONFLICT,
            Status.BCE_PBU_PREFIX_SET_DO_NOT_MATCH: Result.PHOA_MISMATCH,
            Status.PROXY_REG_NOT_ENABLED: Result.NOT_AUTHORIZED,
            Status.MAG_NOT_AUTHORIZED_FOR_PROXY_REG: Result.NOT_AUTHORIZED,
            Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX: Result.NOT_AUTHORIZED,
            Status.NOT_AUTHORIZED_FOR_IPV4_MOBILITY_SERVICE: Result.NOT_AUTHORIZED,
            Status.MIPV6_AUTH_FAIL: Result.NOT_AUTHORIZED,
            Status.NOT_LMA_FOR_THIS_MN: Result.PBACK_REJECTED,
            Status.MISSING_HANDOFF_INDICATOR_OPTION: Result.PBACK_REJECTED,
            Status.MISSING_ACCESS_TECH_TYPE_OPTION: Result.PBACK_REJECTED,
            Status.MISSING_HOME_NETWORK_PREFIX_OPTION: Result.PBACK_REJECTED,
            Status.MULTIPLE_IPV4_HOME_ADDRESS_ASSIGNMENT_NOT_SUPPORTED: Result.PBACK_REJECTED,
            Status.INSUFFICIENT_RESOURCES: Result.PBACK_REJECTED,
        }
        for status, result in cases.items():
            got, line = self.refused(status)
            self.assertEqual(got, result, mh.Status.name(status))
            self.assertIn(f"rejected with {mh.Status.name(status)}: "
                          f"{profiles.describeStatus(status)}", line)
        self.assertIn("profile = \"rfc5213\"", profiles.describeStatus(161))
        self.assertIn("profile = \"rfc5213\"", profiles.describeStatus(162))
        self.assertEqual(profiles.describeStatus(132, ipv4=True),
                         "dynamic IPv4 home address assignment not available")


class Ipv4Tests(ProfileMixin, SynchronousTestCase):
    """IPv4 home addresses (draft E.2, RFC 5844) in both profiles."""

    def test_assigned(self):
        core = self.makePmip()
        bu = self.onlyPBU(self.trigger(core, 1, ipv4=IPv4Interface("0.0.0.0/0")))
        self.assertEqual(bu.option(mh.IPv4HomeAddressRequest), mh.IPv4HomeAddressRequest())
        effects, raw = self.ack(core, bu, [
            _hnp(PREFIX), mh.IPv4HomeAddressReply(0, "10.0.0.5", 24),
            mh.IPv4DefaultRouterAddress("10.0.0.1")])
        self.assertEqual(self.notifies(effects), [Notify(Notification(
            1, Result.SUCCESS, MN1, pback=raw, prefix=PREFIX,
            ipv4=IPv4Interface("10.0.0.5/24"), ipv4Router=IPv4Address("10.0.0.1")), MAG1)])
        refresh = self.onlyPBU(core.handleTimer(core.mobile(MN1).refreshAt))
        self.assertEqual(refresh.option(mh.IPv4HomeAddressRequest),
                         mh.IPv4HomeAddressRequest("10.0.0.5", 24))

    def test_refused(self):
        """The IPv6 binding stands; the MAG gets no IPv4 address, the log says why."""
        core = self.makePmip()
        log = self.captureLog()
        bu = self.onlyPBU(self.trigger(core, 1, ipv4=IPv4Interface("0.0.0.0/0")))
        effects, raw = self.ack(core, bu, [
            _hnp(PREFIX), mh.IPv4HomeAddressReply(132)])
        n = self.notifies(effects)[0].notification
        self.assertEqual((n.result, n.prefix, n.ipv4), (Result.SUCCESS, PREFIX, None))
        self.assertIn("refused an IPv4 home address for mn1@example.net: 132 dynamic IPv4 "
                      "home address assignment not available", "\n".join(log()))

    def test_noReply(self):
        core = self.makePmip()
        log = self.captureLog()
        bu = self.onlyPBU(self.trigger(core, 1, ipv4=IPv4Interface("0.0.0.0/0")))
        effects, raw = self.ack(core, bu, [_hnp(PREFIX)])
        self.assertIsNone(self.notifies(effects)[0].notification.ipv4)
        self.assertIn("no IPv4 Home Address Reply (RFC 5844)", "\n".join(log()))

    def kept(self, reply, lost=MAG1, handoff=False):
        """
        Bind 10.0.0.5, then answer a refresh (or a handoff to MAG2) with
        C{reply} options: the mobile must keep its address, or the binding
        is deregistered (the MAG serves the address it was told of).
        """
        log = self.captureLog()
        core = self.makePmip(profiles.Rfc5213Profile(source=MAG1))
        bu = self.onlyPBU(self.trigger(core, 1, ipv4=IPv4Interface("0.0.0.0/0")))
        self.ack(core, bu, [_hnp(PREFIX), mh.IPv4HomeAddressReply(0, "10.0.0.5", 24)])
        if handoff:
            now = NOW + 10
            bu = self.onlyPBU(self.trigger(core, 2, mag=MAG2, now=now))
        else:
            now = core.mobile(MN1).refreshAt
            bu = self.onlyPBU(core.handleTimer(now))
        self.assertEqual(bu.option(mh.IPv4HomeAddressRequest),
                         mh.IPv4HomeAddressRequest("10.0.0.5", 24))
        effects, raw = self.ack(core, bu, [_hnp(PREFIX)] + reply, now=now)
        return core, effects, raw, "\n".join(log())

    def assertLost(self, core, effects, raw, log, why, dereg4, handoff=False):
        known = dict(prefix=PREFIX)
        expected = [Notify(Notification(0, Result.BINDING_LOST, MN1, **known), MAG1)]
        if handoff:
            expected.insert(0, Notify(Notification(2, Result.PBACK_UNUSABLE, MN1, pback=raw,
                                                   **known), MAG2))
        self.assertEqual(self.notifies(effects), expected)
        dereg = self.onlyPBU(effects)
        self.assertEqual((dereg.lifetime, dereg.option(HomeNetworkPrefix),
                          dereg.option(mh.IPv4HomeAddressRequest)),
                         (0, _hnp(PREFIX), dereg4))
        self.assertEqual(core.mobile(MN1).state, pmip.DEREGISTERING)
        self.assertEqual(core.counters["unusable"], 1)
        self.assertIn(f"cannot be used: {why}; deregistering it", log)

    def test_refreshKeepsAddress(self):
        core, effects, raw, log = self.kept([mh.IPv4HomeAddressReply(0, "10.0.0.5", 24)])
        self.assertEqual(self.notifies(effects), [])
        self.assertEqual(core.mobile(MN1).ipv4, IPv4Interface("10.0.0.5/24"))
        self.assertEqual(core.mobile(MN1).state, pmip.BOUND)

    def test_refreshAssignsAnotherAddress(self):
        """The LMA routes 10.0.0.9 now: that is deregistered, the MAG told."""
        self.assertLost(*self.kept([mh.IPv4HomeAddressReply(0, "10.0.0.9", 24)]),
                        "it assigns the IPv4 home address 10.0.0.9, not the mobile's "
                        "10.0.0.5", mh.IPv4HomeAddressRequest("10.0.0.9", 24))

    def test_refreshRefusesAddress(self):
        self.assertLost(*self.kept([mh.IPv4HomeAddressReply(130)]),
                        "it refuses the mobile's IPv4 home address 10.0.0.5 (130 incorrect "
                        "IPv4 home address)", mh.IPv4HomeAddressRequest())

    def test_refreshWithoutReply(self):
        self.assertLost(*self.kept([]), "it has no IPv4 Home Address Reply for the mobile's "
                        "IPv4 home address 10.0.0.5", mh.IPv4HomeAddressRequest("10.0.0.5", 24))

    def test_refreshMalformedReply(self):
        self.assertLost(*self.kept([mh.MalformedOption(37, bytes(5), "by the test")]),
                        "its IPv4 Home Address Reply is malformed (IPv4HomeAddressReply "
                        "option: length 5, expected 6) for the mobile's IPv4 home address "
                        "10.0.0.5", mh.IPv4HomeAddressRequest("10.0.0.5", 24))

    def test_handoffAssignsAnotherAddress(self):
        self.assertLost(*self.kept([mh.IPv4HomeAddressReply(0, "10.0.0.9", 24)],
                                   handoff=True),
                        "it assigns the IPv4 home address 10.0.0.9, not the mobile's "
                        "10.0.0.5", mh.IPv4HomeAddressRequest("10.0.0.9", 24), handoff=True)

    def test_acceptedWithoutAddress(self):
        """Status 0 naming 0.0.0.0 assigns nothing: no IPv4, and the log says so."""
        core = self.makePmip()
        log = self.captureLog()
        bu = self.onlyPBU(self.trigger(core, 1, ipv4=IPv4Interface("0.0.0.0/0")))
        effects, raw = self.ack(core, bu, [_hnp(PREFIX), mh.IPv4HomeAddressReply(0)])
        n = self.notifies(effects)[0].notification
        self.assertEqual((n.result, n.prefix, n.ipv4), (Result.SUCCESS, PREFIX, None))
        self.assertIn("LMA accepted an IPv4 home address for mn1@example.net but assigned "
                      "none (0.0.0.0): no IPv4 home address", "\n".join(log()))

    def test_namedAddress(self):
        core = self.makePmip()
        bu = self.onlyPBU(self.trigger(core, 1, ipv4=IPv4Interface("192.0.2.7/24")))
        self.assertEqual(bu.option(mh.IPv4HomeAddressRequest),
                         mh.IPv4HomeAddressRequest("192.0.2.7", 24))

    def test_noIpv4Unasked(self):
        core = self.makePmip()
        bu = self.onlyPBU(self.trigger(core, 1))
        self.assertIsNone(bu.option(mh.IPv4HomeAddressRequest))
        effects, raw = self.ack(core, bu, [_hnp(PREFIX), mh.IPv4HomeAddressReply(0, "10.0.0.5", 24)])
        self.assertIsNone(self.notifies(effects)[0].notification.ipv4)


class Rfc5213Tests(ProfileMixin, SynchronousTestCase):
    """The RFC 5213 profile's PBUs, option by option."""

    def rfc5213(self, source=MAG1, **kw):
        return self.makePmip(profiles.Rfc5213Profile(source=source, **kw))

    def register(self, core, txn=1, **fields):
        bu = self.onlyPBU(self.trigger(core, txn, **fields))
        ts = bu.option(mh.Timestamp)
        options = [mh.MobileNodeIdentifier(MN1), _hnp(PREFIX), HI(bu.option(HI).value),
                   mh.AccessTechnologyType(bu.option(mh.AccessTechnologyType).value)]
        if ts is not None:
            options.append(ts)
        effects, raw = self.ack(core, bu, options)
        return bu, effects

    def test_initialPbu(self):
        core = self.rfc5213()
        bu, effects = self.register(core, linkLayerId=MAC, accessTechnology=4)
        self.assertEqual(bu.flags, mh.BU_A | mh.BU_P)
        self.assertEqual([type(o) for o in bu.options], [
            mh.MobileNodeIdentifier, HomeNetworkPrefix, HI, mh.AccessTechnologyType,
            mh.MobileNodeLinkLayerIdentifier, mh.Timestamp])
        self.assertEqual(bu.option(mh.MobileNodeIdentifier).identifier, MN1)
        self.assertEqual(bu.option(HomeNetworkPrefix), HomeNetworkPrefix("::", 0))
        self.assertEqual(bu.option(HI).value, HI.ATTACHMENT_OVER_NEW_INTERFACE)
        self.assertEqual(bu.option(mh.AccessTechnologyType).value, 4)
        self.assertEqual(bu.option(mh.MobileNodeLinkLayerIdentifier).identifier, MAC)
        self.assertAlmostEqual(bu.option(mh.Timestamp).seconds, NOW, delta=1 / 65536)
        self.assertIsNone(bu.option(mh.AlternateCareOfAddress))
        self.assertEqual(self.notifies(effects)[0].notification.prefix, PREFIX)

    def test_separateClientSendsAlternateCoa(self):
        """A PBU whose source is not the pCoA names it (RFC 5213 6.9.1.5)."""
        core = self.rfc5213(source=PMIP)
        bu = self.onlyPBU(self.trigger(core, 1))
        self.assertEqual(bu.option(mh.AlternateCareOfAddress).address, MAG1)
        core = self.rfc5213(source=None)
        bu = self.onlyPBU(self.trigger(core, 1))
        self.assertEqual(bu.option(mh.AlternateCareOfAddress).address, MAG1)

    def test_defaultAccessTechnology(self):
        core = self.rfc5213()
        bu = self.onlyPBU(self.trigger(core, 1))
        self.assertEqual(bu.option(mh.AccessTechnologyType).value, 3)
        core = self.rfc5213(accessTechnology=4)
        bu = self.onlyPBU(self.trigger(core, 1))
        self.assertEqual(bu.option(mh.AccessTechnologyType).value, 4)

    def test_namedPrefixHandoffUnknown(self):
        """A first Trigger naming a prefix: the mobile may be bound elsewhere (HI 4)."""
        core = self.rfc5213()
        bu = self.onlyPBU(self.trigger(core, 1, prefix=PREFIX))
        self.assertEqual(bu.option(HI).value, HI.UNKNOWN)
        self.assertEqual(bu.option(HomeNetworkPrefix), _hnp(PREFIX))

    def test_refreshHandoffDeregistration(self):
        """
        Every later PBU carries MN-ID, the prefix, ATT and LL-ID: a refresh
        with HI 5, a handoff with HI 3 (and the new MAG as Alternate CoA,
        this client sending from MAG1's address), a deregistration with HI 4.
        """
        core = self.rfc5213()
        self.register(core, linkLayerId=MAC, accessTechnology=4)
        m = core.mobile(MN1)
        due = m.refreshAt
        refresh = self.onlyPBU(core.handleTimer(due))
        handoff = self.onlyPBU(self.trigger(core, 2, mag=MAG2, now=due + 1))
        for bu, hi in ((refresh, HI.NOT_CHANGED), (handoff, HI.HANDOFF_BETWEEN_MAGS_SAME_INTERFACE)):
            self.assertEqual(bu.option(mh.MobileNodeIdentifier).identifier, MN1)
            self.assertEqual(bu.option(HomeNetworkPrefix), _hnp(PREFIX))
            self.assertEqual(bu.option(HI).value, hi)
            self.assertEqual(bu.option(mh.AccessTechnologyType).value, 4)
            self.assertEqual(bu.option(mh.MobileNodeLinkLayerIdentifier).identifier, MAC)
            self.assertIsNotNone(bu.option(mh.Timestamp))
        self.assertIsNone(refresh.option(mh.AlternateCareOfAddress))
        self.assertEqual(handoff.option(mh.AlternateCareOfAddress).address, MAG2)
        self.ack(core, handoff, [mh.MobileNodeIdentifier(MN1), _hnp(PREFIX)], now=due + 1)
        self.assertEqual(m.pcoa, MAG2)
        core.receiveDetach(roundtrip(Detach(3, MN1, MAG2)), due + 2)
        dereg = self.onlyPBU(core.handleTimer(due + 2 + core.detachDelay))
        self.assertEqual((dereg.lifetime, dereg.option(HI).value), (0, HI.UNKNOWN))
        self.assertEqual(dereg.option(mh.MobileNodeIdentifier).identifier, MN1)
        self.assertEqual(dereg.option(HomeNetworkPrefix), _hnp(PREFIX))
        self.assertEqual(dereg.option(mh.AlternateCareOfAddress).address, MAG2)

    def test_sequenceOrdering(self):
        core = self.rfc5213(ordering=profiles.SEQUENCE)
        bu = self.onlyPBU(self.trigger(core, 1))
        self.assertIsNone(bu.option(mh.Timestamp))

    def test_onlyPrefixMode(self):
        core = self.rfc5213()
        log = self.captureLog()
        effects = self.trigger(core, 1, mode=AddressMode.STATIC, phoa=PHOA)
        self.assertEqual(effects, [Notify(Notification(1, Result.MALFORMED, MN1), MAG1)])
        self.assertIn("the rfc5213 profile binds per-MN prefixes only", log()[-1])

    def test_timestampResync(self):
        """
        156 carries the LMA's time: the client follows it (within
        max_clock_offset) and resends at once, stamped with the LMA's clock.
        """
        core = self.rfc5213()
        bu = self.onlyPBU(self.trigger(core, 1))
        effects, raw = self.ack(core, bu, [mh.MobileNodeIdentifier(MN1),
                                           mh.Timestamp.fromSeconds(NOW + 10)],
                                status=Status.TIMESTAMP_MISMATCH)
        again = self.onlyPBU(effects)
        self.assertAlmostEqual(again.option(mh.Timestamp).seconds, NOW + 10, delta=0.001)
        self.assertEqual(core.clock.offset, 10)
        # A replay of that 156 (an older LMA time) is not followed: it fails.
        effects, raw = self.ack(core, again, [mh.MobileNodeIdentifier(MN1),
                                              mh.Timestamp.fromSeconds(NOW + 10)],
                                status=Status.TIMESTAMP_MISMATCH)
        self.assertEqual([e.notification.result for e in self.notifies(effects)],
                         [Result.PBACK_REJECTED])
        self.assertEqual(core.clock.offset, 10)

    def test_timestampBeyondBound(self):
        core = self.rfc5213()
        log = self.captureLog()
        bu = self.onlyPBU(self.trigger(core, 1))
        effects, raw = self.ack(core, bu, [mh.MobileNodeIdentifier(MN1),
                                           mh.Timestamp.fromSeconds(NOW + 61)],
                                status=Status.TIMESTAMP_MISMATCH)
        self.assertEqual([e.notification.result for e in self.notifies(effects)],
                         [Result.PBACK_REJECTED])
        self.assertIn("beyond max_clock_offset (60 s)", "\n".join(log()))
        self.assertEqual(core.clock.offset, 0)

    def test_lostBindingReregistersUnknown(self):
        """A refresh answered 133: registered again with HI 4 (state unknown)."""
        core = self.rfc5213()
        self.register(core)
        due = core.mobile(MN1).refreshAt
        refresh = self.onlyPBU(core.handleTimer(due))
        effects, raw = self.ack(core, refresh, [mh.MobileNodeIdentifier(MN1)],
                                status=Status.NOT_HOME_AGENT_FOR_MN, now=due)
        again = self.onlyPBU(effects)
        self.assertEqual(again.option(HI).value, HI.UNKNOWN)
        self.assertEqual(again.option(HomeNetworkPrefix), _hnp(PREFIX))


class RecordTests(ProfileMixin, SynchronousTestCase):
    """
    The kept record gains the prefix, IPv4, link and mode fields; restore
    reads them back, and still reads the records of earlier releases.
    """

    def test_prefixAndIpv4RoundTrip(self):
        import json
        from netlmm.core.effects import Persist
        core = self.makePmip()
        bu = self.onlyPBU(self.trigger(core, 1, ipv4=IPv4Interface("0.0.0.0/0"),
                                       linkLayerId=MAC, accessTechnology=4))
        effects, raw = self.ack(core, bu, [_hnp(PREFIX), mh.IPv4HomeAddressReply(0, "10.0.0.5", 24),
                                           mh.IPv4DefaultRouterAddress("10.0.0.1")])
        [kept] = [e for e in effects if type(e) is Persist]
        record = json.loads(json.dumps(kept.record, default=str))
        self.assertEqual(record, {
            "mn": MN1.hex(), "prefix": "2001:db8:5::/64", "pcoa": str(MAG1), "mag": str(MAG1),
            "sequence": bu.sequence, "lifetime": 3600, "expiry": NOW + 3600,
            "mode": AddressMode.PREFIX, "ipv4": "10.0.0.5/24", "ipv4Router": "10.0.0.1",
            "ipv4Request": "0.0.0.0/0", "linkLayerId": MAC.hex(), "accessTechnology": 4})
        again = self.makePmip()
        again.restore([record], NOW + 10)
        m = again.mobile(MN1)
        self.assertEqual((m.state, m.home, m.ipv4, m.ipv4Router, m.linkLayerId,
                          m.accessTechnology, m.mode),
                         (pmip.BOUND, PREFIX, IPv4Interface("10.0.0.5/24"),
                          IPv4Address("10.0.0.1"), MAC, 4, AddressMode.PREFIX))
        refresh = self.onlyPBU(again.handleTimer(NOW + 10))
        self.assertEqual(refresh.option(HomeNetworkPrefix), _hnp(PREFIX))
        self.assertEqual(refresh.option(mh.IPv4HomeAddressRequest),
                         mh.IPv4HomeAddressRequest("10.0.0.5", 24))

    def test_earlierReleaseRecord(self):
        core = self.makePmip()
        core.restore([{"mn": MN1.hex(), "phoa": str(PHOA), "pcoa": str(MAG1),
                       "sequence": 7, "lifetime": 3600, "expiry": NOW + 100}], NOW)
        m = core.mobile(MN1)
        self.assertEqual((m.home, m.mode, m.ipv4), (PHOA, AddressMode.STATIC, None))

    def test_badRecords(self):
        from netlmm.core.effects import BadRecord
        good = {"mn": MN1.hex(), "prefix": str(PREFIX), "pcoa": str(MAG1), "sequence": 7,
                "lifetime": 3600, "expiry": NOW + 100, "mode": 5}
        cases = [
            ({"mode": 9}, "record 0: 'mode': 9 is not an address mode (1..5)"),
            ({"mode": 1}, "record 0: address mode 1 does not go with the home "
                          "2001:db8:5::/64"),
            ({"prefix": "2001:db8:5::1/64"}, "record 0: 'prefix': "),
            ({"ipv4": "10.0.0.300/24"}, "record 0: 'ipv4': "),
            ({"accessTechnology": 0}, "record 0: 'accessTechnology': 0 is not an access "
                                      "technology type"),
            ({"mn": ("m" * 65).encode().hex()}, "record 0: 'mn': MN identifier"),
            ({"mn": b"a\x00".hex()}, "has control character U+0000"),
        ]
        for change, message in cases:
            core = self.makePmip()
            e = self.assertRaises(BadRecord, core.restore, [{**good, **change}], NOW)
            self.assertIn(message, str(e), change)
            self.assertEqual(core.mobiles, {})
        prefixLess = {k: v for k, v in good.items() if k != "prefix"}
        e = self.assertRaises(BadRecord, self.makePmip().restore, [prefixLess], NOW)
        self.assertEqual(str(e), "record 0: 'phoa' is missing")


class BadPbaOptionTests(ProfileMixin, SynchronousTestCase):
    """
    Every option an RFC 5213 client reads in a PBA, truncated, oversized or
    out of range (issue 8, bad input): the decoder keeps it as a
    L{mh.MalformedOption}, the PBA is still matched, the log names the
    option and the LMA's address once, and the Notification's result is
    exactly what the rest of the PBA allows. Only the Home Network Prefix
    decides the binding: without it the client cannot use the PBA and
    deregisters at once. The other options inform (RFC 5213 6.9.1.2 asks
    the MAG to act on the status and the prefix); a bad IPv4 Home Address
    Reply leaves the mobile without IPv4 and the IPv6 binding standing.
    """

    IPV4 = IPv4Interface("10.0.0.5/24")
    ROUTER = IPv4Address("10.0.0.1")

    #: name -> (option type, data, what the decoder says, the option it replaces)
    CASES = {
        "hnpTruncated": (22, bytes(17), "length 17, expected 18", HomeNetworkPrefix),
        "hnpOversized": (22, b"\x00\x40" + bytes(17), "length 19, expected 18",
                         HomeNetworkPrefix),
        "hnpPrefixLength129": (22, b"\x00\x81" + bytes(16), "prefix length 129",
                               HomeNetworkPrefix),
        "mnIdEmpty": (8, b"", "length 0, expected at least 2", mh.MobileNodeIdentifier),
        "mnIdNoIdentifier": (8, b"\x01", "length 1, expected at least 2",
                             mh.MobileNodeIdentifier),
        "hiEmpty": (23, b"", "length 0, expected 2", HI),
        "hiOversized": (23, b"\x00\x01\x00", "length 3, expected 2", HI),
        "attEmpty": (24, b"", "length 0, expected 2", mh.AccessTechnologyType),
        "lliTruncated": (25, b"\x01", "length 1, expected at least 3",
                         mh.MobileNodeLinkLayerIdentifier),
        "timestampTruncated": (27, bytes(7), "length 7, expected 8", mh.Timestamp),
        "ipv4ReplyTruncated": (37, bytes(5), "length 5, expected 6",
                               mh.IPv4HomeAddressReply),
        "ipv4ReplyPrefixLength33": (37, bytes((0, 33 << 2, 10, 0, 0, 5)),
                                    "prefix length 33", mh.IPv4HomeAddressReply),
        "ipv4RouterTruncated": (38, bytes(5), "length 5, expected 6",
                                mh.IPv4DefaultRouterAddress),
    }

    def answer(self, name):
        """Register with one option of the PBA broken as C{name} says."""
        kind, data, reason, replaced = self.CASES[name]
        log = self.captureLog()
        core = self.makePmip(profiles.Rfc5213Profile(source=MAG1))
        bu = self.onlyPBU(self.trigger(core, 1, ipv4=IPv4Interface("0.0.0.0/0"),
                                       linkLayerId=MAC))
        options = [mh.MobileNodeIdentifier(MN1), _hnp(PREFIX), HI(bu.option(HI).value),
                   mh.AccessTechnologyType(3), bu.option(mh.MobileNodeLinkLayerIdentifier),
                   bu.option(mh.Timestamp), mh.IPv4HomeAddressReply(0, "10.0.0.5", 24),
                   mh.IPv4DefaultRouterAddress("10.0.0.1")]
        bad = mh.MalformedOption(kind, data, "set by the test")
        options = [bad if type(o) is replaced else o for o in options]
        self.assertIn(bad, options)
        effects, raw = self.ack(core, bu, options)
        [decoded] = mh.decodeMessage(raw, LMA, PMIP).malformed()
        self.assertEqual((decoded.type, decoded.data), (kind, data))
        self.assertIn(reason, decoded.reason)
        lines = log()
        said = [line for line in lines if f"from {LMA} for mn1@example.net: malformed "
                f"{replaced.__name__} option" in line]
        self.assertEqual(len(said), 1, lines)
        self.assertIn(reason, said[0])
        return core, effects, raw, lines

    def test_homeNetworkPrefix(self):
        """A PBA whose prefix is unreadable binds nothing the MAG can use."""
        for name in ("hnpTruncated", "hnpOversized", "hnpPrefixLength129"):
            core, effects, raw, lines = self.answer(name)
            self.assertEqual(self.notifies(effects), [Notify(Notification(
                1, Result.PBACK_UNUSABLE, MN1, pback=raw), MAG1)], name)
            dereg = self.onlyPBU(effects)
            self.assertEqual((dereg.lifetime, dereg.option(HomeNetworkPrefix)),
                             (0, HomeNetworkPrefix("::", 0)), name)
            self.assertEqual(dereg.option(mh.MobileNodeIdentifier).identifier, MN1, name)
            self.assertEqual(core.mobile(MN1).state, pmip.DEREGISTERING, name)
            self.assertEqual(core.counters["unusable"], 1, name)
            self.assertIn("its Home Network Prefix option is malformed", "\n".join(lines))

    def test_informativeOptions(self):
        """MN-ID, HI, ATT, link-layer id, timestamp: bound, everything delivered."""
        for name in ("mnIdEmpty", "mnIdNoIdentifier", "hiEmpty", "hiOversized", "attEmpty",
                     "lliTruncated", "timestampTruncated"):
            core, effects, raw, lines = self.answer(name)
            self.assertEqual(self.notifies(effects), [Notify(Notification(
                1, Result.SUCCESS, MN1, pback=raw, prefix=PREFIX, ipv4=self.IPV4,
                ipv4Router=self.ROUTER), MAG1)], name)
            self.assertEqual([e for e in effects if type(e) is SendMH], [], name)
            self.assertEqual(core.mobile(MN1).state, pmip.BOUND, name)

    def test_ipv4Reply(self):
        """The IPv6 binding stands; the MAG gets no IPv4 address, the log says why."""
        for name in ("ipv4ReplyTruncated", "ipv4ReplyPrefixLength33"):
            core, effects, raw, lines = self.answer(name)
            self.assertEqual(self.notifies(effects), [Notify(Notification(
                1, Result.SUCCESS, MN1, pback=raw, prefix=PREFIX), MAG1)], name)
            self.assertEqual(core.mobile(MN1).state, pmip.BOUND, name)
            self.assertIsNone(core.mobile(MN1).ipv4, name)
            self.assertIn("has a malformed IPv4 Home Address Reply", lines[-2])

    def test_ipv4Router(self):
        """The address is delivered without a default router."""
        core, effects, raw, lines = self.answer("ipv4RouterTruncated")
        self.assertEqual(self.notifies(effects), [Notify(Notification(
            1, Result.SUCCESS, MN1, pback=raw, prefix=PREFIX, ipv4=self.IPV4), MAG1)])

    def test_unmatchedNamesTheSender(self):
        """A PBA that answers no PBU is dropped, logged once with the LMA's address."""
        core = self.makePmip(profiles.Rfc5213Profile(source=MAG1))
        log = self.captureLog()
        bu = self.onlyPBU(self.trigger(core, 1))
        effects, raw = self.ack(core, bu, [mh.MobileNodeIdentifier(b"other@example.net")],
                                sequence=(bu.sequence + 1) & 0xFFFF)
        self.assertEqual(effects, [])
        self.assertEqual(core.mobile(MN1).state, pmip.REGISTERING)
        said = [line for line in log() if "matches no pending PBU" in line]
        self.assertEqual(said, [f"PBAck seq {(bu.sequence + 1) & 0xFFFF} status ACCEPTED "
                                f"from {LMA} matches no pending PBU; dropped"])
