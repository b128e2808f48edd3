"""
Tests for L{netlmm.core.lma} as an RFC 5213 LMA (sections 5.3-5.5), with
per-mobile prefixes (draft E.3) and IPv4 home addresses (RFC 5844 3.1.2),
next to the netlmm dialect of the same core.

Every PBU goes through the Mobility Header codec before the core sees it,
and every answer is encoded and decoded again, so only messages that can
exist on the wire are used. A test about a refusal also checks that
nothing in the binding cache or the pools changed.
"""

from ipaddress import IPv4Address, IPv6Address, IPv6Network

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from netlmm.core.effects import (
    InvalidInput, Persist, RouteAdd, RouteMove, RouteRemove, SendMH,
)
from netlmm.core.lma import (
    TRANSITIONS, AddressPool, BindingState, Event, LmaCore, Ordering, PeerPolicy,
    PrefixPool, Profile, profileOf,
)
from netlmm.test.test_core_lma import LmaTestMixin
from netlmm.wire import mh
from netlmm.wire.mh import (
    BA_P, BU_A, BU_H, BU_P, AccessTechnologyType, AlternateCareOfAddress,
    BindingRefreshAdvice, BindingUpdate, HandoffIndicator,
    HomeNetworkPrefix, IPv4DefaultRouterAddress, IPv4DhcpSupportMode,
    IPv4HomeAddressReply, IPv4HomeAddressRequest, LinkLocalAddress, MobileNodeIdentifier,
    MobileNodeLinkLayerIdentifier, Status, Timestamp,
)

LMA = IPv6Address("2001:db8:ffff::1")
MAG1 = IPv6Address("2001:db8:a::1")
MAG2 = IPv6Address("2001:db8:b::1")
SEQMAG = IPv6Address("2001:db8:5::1")
PMIP = IPv6Address("2001:db8:c::1")
STRANGER = IPv6Address("2001:db8:bad::1")
HOME = "2001:db8:1::/64"
POOL = "2001:db8:100::/48"
P0 = IPv6Network("2001:db8:100::/64")
P1 = IPv6Network("2001:db8:100:1::/64")
ALL_ZERO = HomeNetworkPrefix("::", 0)
ROUTER = IPv4Address("192.0.2.1")
V4FIRST = IPv4Address("192.0.2.2")
MN1 = b"mn1@example.net"
MN2 = b"mn2@example.net"
MAC1 = bytes.fromhex("020000aabb01")
MAC2 = bytes.fromhex("020000aabb02")
FLAGS = BU_A | BU_P
HOUR = 900
#: The clock of the tests: PBUs are stamped with it.
T0 = 1_700_000_000.0


def hnp(network):
    network = IPv6Network(network)
    return HomeNetworkPrefix(network.network_address, network.prefixlen)


def pbu(sequence=1, mnId=MN1, hnps=(ALL_ZERO,), hi=HandoffIndicator.UNKNOWN,
        att=AccessTechnologyType.ETHERNET, llId=MAC1, timestamp=T0, lifetime=HOUR,
        flags=FLAGS, acoa=None, v4=(), extra=()):
    """An RFC 5213 Proxy Binding Update as a standard MAG builds it."""
    options = []
    if mnId is not None:
        options.append(MobileNodeIdentifier(mnId))
    options.extend(hnps)
    if hi is not None:
        options.append(HandoffIndicator(hi))
    if att is not None:
        options.append(AccessTechnologyType(att))
    if llId is not None:
        options.append(MobileNodeLinkLayerIdentifier(llId))
    if timestamp is not None:
        options.append(Timestamp.fromSeconds(timestamp))
    if acoa is not None:
        options.append(AlternateCareOfAddress(acoa))
    options.extend(v4)
    options.extend(extra)
    return BindingUpdate(sequence, flags, lifetime, options)


class CapturingLog:
    """A stand-in for a Logger that keeps what was logged."""

    def __init__(self):
        self.lines = []

    def _keep(self, level):
        def log(fmt, **kw):
            self.lines.append((level, fmt, kw))
        return log

    def __getattr__(self, name):
        if name in ("debug", "info", "warn", "error"):
            return self._keep(name)
        raise AttributeError(name)

    def warnings(self):
        return [(fmt, kw) for level, fmt, kw in self.lines if level == "warn"]


class Rfc5213Mixin:
    """An LMA with a prefix pool and an IPv4 pool, and helpers."""

    def makeLma(self, **kw):
        kw.setdefault("prefixPool", PrefixPool(POOL))
        kw.setdefault("ipv4Pool", AddressPool("192.0.2.1", "192.0.2.254",
                                              exclude=[ROUTER]))
        kw.setdefault("ipv4Router", ROUTER)
        kw.setdefault("ipv4PrefixLength", 24)
        kw.setdefault("peers", [("2001:db8:5::/48",
                                 PeerPolicy(ordering=Ordering.SEQUENCE))])
        self.log = CapturingLog()
        lma = LmaCore(HOME, ["2001:db8:a::/48", "2001:db8:b::/48", "2001:db8:c::/64"],
                      log=self.log, **kw)

        def refused(peer, reason, fmt, **fields):
            # What LmaService._refused does with the core's refusals.
            self.log.warn(fmt, peer=peer, reason=reason, **fields)
        lma.refused = refused
        return lma

    def send(self, lma, message, now=T0, source=MAG1):
        """C{message} through the codec to C{lma}; its effects, answers checked."""
        return LmaTestMixin.send(self, lma, message, now, source)

    def sendRaw(self, lma, raw, now=T0, source=MAG1):
        return lma.receive(mh.decodeMessage(raw), source, now)

    def onlyBA(self, effects, destination=MAG1):
        sends = [e for e in effects if type(e) is SendMH]
        self.assertEqual(len(sends), 1, effects)
        self.assertEqual(sends[0].destination, destination)
        return sends[0].message

    def routes(self, effects):
        return [e for e in effects if type(e) not in (SendMH, Persist)]

    def state(self, lma):
        """Everything a refusal must leave alone."""
        return (repr(sorted(lma.snapshot(), key=repr)),
                lma.prefixPool.inUse if lma.prefixPool else None,
                lma.ipv4Pool.inUse if lma.ipv4Pool else None,
                lma.pool.inUse if lma.pool else None)

    def assertRefused(self, lma, message, status, source=MAG1, now=T0, v4=None):
        """
        C{message} is refused with C{status}: one PBA, lifetime 0, no route
        change, no binding or pool change, one warning naming the peer.
        """
        before = self.state(lma)
        warnings = len(self.log.warnings())
        effects = self.send(lma, message, now, source)
        self.assertEqual(self.routes(effects), [])
        ba = self.onlyBA(effects, source)
        self.assertEqual(ba.status, status, Status.name(ba.status))
        self.assertEqual(ba.lifetime, 0)
        self.assertIsNone(ba.option(BindingRefreshAdvice))
        self.assertEqual(self.state(lma), before)
        new = self.log.warnings()[warnings:]
        self.assertEqual(len(new), 1, new)
        self.assertEqual(new[0][1]["peer"], source)
        if v4 is not None:
            self.assertEqual(ba.option(IPv4HomeAddressReply).status, v4)
        return ba

    def accepted(self, lma, message, now=T0, source=MAG1):
        effects = self.send(lma, message, now, source)
        ba = self.onlyBA(effects, source)
        self.assertEqual(ba.status, Status.ACCEPTED, Status.name(ba.status))
        return effects, ba


class ProfileTests(SynchronousTestCase):
    """How the LMA tells the two dialects apart (doc/protocol.md 1.3)."""

    def test_rule(self):
        netlmm = BindingUpdate(1, BU_A | BU_H | BU_P, 1, [hnp("2001:db8:1::1/128")])
        self.assertIs(profileOf(netlmm), Profile.NETLMM)
        self.assertIs(profileOf(netlmm._replace(flags=BU_A | BU_P)), Profile.RFC5213)
        for extra in (HandoffIndicator(4), AccessTechnologyType(3)):
            with_ = netlmm._replace(options=netlmm.options + (extra,))
            self.assertIs(profileOf(with_), Profile.RFC5213)

    def test_malformedHandoffIndicatorStillMarks(self):
        """A broken Handoff Indicator is still a sign of an RFC 5213 MAG."""
        raw = bytes.fromhex("3b 02 05 00 0000 0001 c200 0001 17 03 000000 01 05 0000000000"
                            .replace(" ", ""))
        self.assertIs(profileOf(mh.decodeMessage(raw)), Profile.RFC5213)

    def test_peerPolicyDecides(self):
        """A peer configured as netlmm is held to the netlmm dialect."""
        lma = LmaCore(HOME, [], peers=[("2001:db8:a::/48",
                                        PeerPolicy(profile=Profile.NETLMM))])
        effects = lma.receive(pbu(), MAG1, T0)
        # The netlmm dialect wants the MAG in an Alternate Care-of Address.
        self.assertEqual(effects[-1].message.status, Status.UNSPECIFIED)
        self.assertIs(lma.policyFor(MAG1).profile, Profile.NETLMM)
        self.assertIsNone(lma.policyFor(STRANGER))


class AttachTests(Rfc5213Mixin, SynchronousTestCase):
    """RFC 5213 5.3.1-5.3.2 and 5.3.6: a new mobility session."""

    def test_allZeroGetsAPrefix(self):
        """
        ALL_ZERO asks the LMA to assign: the first /64 of the pool, routed
        to the PBU's source (the Proxy-CoA), and a PBA that carries the
        prefix as assigned and echoes MN-ID, HI, ATT, LL-ID and Timestamp.
        """
        lma = self.makeLma()
        message = pbu(7)
        effects, ba = self.accepted(lma, message)
        self.assertEqual(self.routes(effects), [RouteAdd(P0, MAG1)])
        self.assertEqual((ba.sequence, ba.flags, ba.lifetime), (7, BA_P, HOUR))
        self.assertEqual(
            [o for o in ba.options if type(o) is not BindingRefreshAdvice],
            [MobileNodeIdentifier(MN1), hnp(P0), HandoffIndicator(4),
             AccessTechnologyType(3), MobileNodeLinkLayerIdentifier(MAC1),
             Timestamp.fromSeconds(T0)])
        b = lma.bindingFor(MN1)
        self.assertEqual((b.homes, b.pcoa, b.client, b.state, b.profile, b.att, b.llId),
                         ((P0,), MAG1, MAG1, BindingState.REGISTERED, Profile.RFC5213, 3,
                          MAC1))
        self.assertIs(lma.binding("2001:db8:100::1234"), b)
        self.assertEqual(lma.prefixPool.inUse, 1)

    def test_namedPrefixFromThePool(self):
        lma = self.makeLma()
        effects, ba = self.accepted(lma, pbu(hnps=[hnp(P1)]))
        self.assertEqual(self.routes(effects), [RouteAdd(P1, MAG1)])
        self.assertEqual(ba.option(HomeNetworkPrefix), hnp(P1))
        # The next assignment skips it... no: P0 is still free, P1 is taken.
        effects, ba = self.accepted(lma, pbu(mnId=MN2, llId=MAC2))
        self.assertEqual(ba.option(HomeNetworkPrefix), hnp(P0))
        effects, ba = self.accepted(lma, pbu(mnId=b"mn3", llId=None))
        self.assertEqual(ba.option(HomeNetworkPrefix), hnp("2001:db8:100:2::/64"))

    def test_severalPrefixes(self):
        """Several named prefixes make one session; each is routed."""
        lma = self.makeLma()
        effects, ba = self.accepted(lma, pbu(hnps=[hnp(P0), hnp(P1)]))
        self.assertEqual(self.routes(effects), [RouteAdd(P0, MAG1), RouteAdd(P1, MAG1)])
        self.assertEqual([o for o in ba.options if type(o) is HomeNetworkPrefix],
                         [hnp(P0), hnp(P1)])
        self.assertEqual(len(lma.bindings), 1)

    def test_alternateCareOfAddressIsTheProxyCoa(self):
        lma = self.makeLma()
        effects, ba = self.accepted(lma, pbu(acoa=MAG2))
        self.assertEqual(self.routes(effects), [RouteAdd(P0, MAG2)])
        self.assertEqual(lma.bindingFor(MN1).pcoa, MAG2)

    def test_opmipFirstPbu(self):
        """
        What OPMIP's MAG sends first: A|P, HI 4, ATT 0 (reserved, tolerated),
        a /64 named from the node database, options unaligned and a Pad1 run,
        sequence numbers: accepted, no H flag needed.
        """
        lma = self.makeLma(peers=[("2001:db8:a::/48", PeerPolicy(ordering=Ordering.SEQUENCE))])
        body = (bytes.fromhex("0001 8200 000f") + bytes((8, 1 + len(MN1), 1)) + MN1
                + bytes.fromhex("1612 0040") + P0.network_address.packed
                + bytes.fromhex("1702 0004 1802 0000"))
        body += bytes((-(len(body) + 6)) % 8)
        raw = bytes((59, (len(body) + 6) // 8 - 1, 5, 0, 0, 0)) + body
        effects = self.sendRaw(lma, raw)
        self.assertEqual(self.routes(effects), [RouteAdd(P0, MAG1)])
        ba = self.onlyBA(effects)
        self.assertEqual((ba.status, ba.sequence), (Status.ACCEPTED, 1))
        self.assertEqual(ba.option(AccessTechnologyType), AccessTechnologyType(0))

    def test_linkLocalAddressKept(self):
        """
        The MAG's link-local address is kept in the session and every PBA
        answering a PBU with the option names it (RFC 5213 6.8), so all MAGs
        use the same one.
        """
        lma = self.makeLma()
        first = LinkLocalAddress("fe80::1")
        effects, ba = self.accepted(lma, pbu(extra=[first]))
        self.assertEqual(ba.option(LinkLocalAddress), first)
        ask = LinkLocalAddress("::")
        effects, ba = self.accepted(lma, pbu(2, hnps=[hnp(P0)], hi=3, extra=[ask],
                                             timestamp=T0 + 0.1), now=T0 + 0.1,
                                    source=MAG2)
        self.assertEqual(ba.option(LinkLocalAddress), first)


class MandatoryOptionTests(Rfc5213Mixin, SynchronousTestCase):
    """RFC 5213 5.3.1: what a PBU must carry, and who may send it."""

    def test_missing(self):
        lma = self.makeLma()
        for status, message in (
                (Status.MISSING_MN_IDENTIFIER_OPTION, pbu(mnId=None)),
                (Status.MISSING_HOME_NETWORK_PREFIX_OPTION, pbu(hnps=())),
                (Status.MISSING_HANDOFF_INDICATOR_OPTION, pbu(hi=None)),
                (Status.MISSING_ACCESS_TECH_TYPE_OPTION, pbu(att=None))):
            ba = self.assertRefused(lma, message, status)
            # The answer echoes what the PBU sent.
            self.assertEqual(ba.option(MobileNodeIdentifier),
                             message.option(MobileNodeIdentifier))
            self.assertEqual(ba.option(HandoffIndicator), message.option(HandoffIndicator))

    def test_malformedCountsAsMissing(self):
        """
        A mandatory option whose data is broken (truncated, oversized) is
        treated as missing: the same status, the reason logged.
        """
        lma = self.makeLma()
        for option, length, status in (
                (MobileNodeIdentifier(MN1), 1, Status.MISSING_MN_IDENTIFIER_OPTION),
                (hnp(P0), 17, Status.MISSING_HOME_NETWORK_PREFIX_OPTION),
                (hnp(P0), 19, Status.MISSING_HOME_NETWORK_PREFIX_OPTION),
                (HandoffIndicator(3), 1, Status.MISSING_HANDOFF_INDICATOR_OPTION),
                (HandoffIndicator(3), 3, Status.MISSING_HANDOFF_INDICATOR_OPTION),
                (AccessTechnologyType(3), 3, Status.MISSING_ACCESS_TECH_TYPE_OPTION)):
            message = pbu()
            options = [o for o in message.options if type(o) is not type(option)]
            broken = mh.MalformedOption(option.TYPE, (option.body() + b"\x00")[:length],
                                        "broken")
            raw = mh.encodeMessage(message._replace(options=options + [broken]))
            before = self.state(lma)
            effects = self.sendRaw(lma, raw)
            self.assertEqual(self.onlyBA(effects).status, status, option)
            self.assertEqual(self.state(lma), before)
            self.assertIn("malformed", self.log.warnings()[-1][0])

    def test_prefixLength129(self):
        lma = self.makeLma()
        raw = bytearray(mh.encodeMessage(pbu(hnps=[hnp(P0)])))
        at = raw.index(bytes((22, 18)))
        raw[at + 3] = 129
        effects = self.sendRaw(lma, bytes(raw))
        self.assertEqual(self.onlyBA(effects).status,
                         Status.MISSING_HOME_NETWORK_PREFIX_OPTION)
        self.assertEqual(lma.bindings, {})

    def test_magNotAuthorized(self):
        lma = self.makeLma()
        self.assertRefused(lma, pbu(), Status.MAG_NOT_AUTHORIZED_FOR_PROXY_REG,
                           source=STRANGER)

    def test_noProxyFlag(self):
        lma = self.makeLma()
        ba = self.assertRefused(lma, pbu(flags=BU_A), Status.HOME_REGISTRATION_NOT_SUPPORTED)
        self.assertEqual(ba.flags, 0)

    def test_notLmaForThisMn(self):
        """With C{mobiles} set, an MN matching none of the patterns gets 153."""
        lma = self.makeLma(mobiles=["*@example.net"])
        self.accepted(lma, pbu())
        self.assertRefused(lma, pbu(mnId=b"mn@elsewhere.org", llId=MAC2),
                           Status.NOT_LMA_FOR_THIS_MN)


class PrefixTests(Rfc5213Mixin, SynchronousTestCase):
    """Named prefixes: RFC 5213 5.4.1 and 155/159, pools (draft E.3)."""

    def test_outsideThePool(self):
        lma = self.makeLma()
        for network in ("2001:db8:200::/64", "2001:db8:100::/56", "2001:db8:100::/80"):
            ba = self.assertRefused(lma, pbu(hnps=[hnp(network)]),
                                    Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX)
            # Echoed as sent, never rewritten.
            self.assertEqual(ba.option(HomeNetworkPrefix), hnp(network))

    def test_hostBitsSet(self):
        lma = self.makeLma()
        named = HomeNetworkPrefix("2001:db8:100::1", 64)
        ba = self.assertRefused(lma, pbu(hnps=[named]),
                                Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX)
        self.assertEqual(ba.option(HomeNetworkPrefix), named)

    def test_twoMobilesOnePrefix(self):
        lma = self.makeLma()
        self.accepted(lma, pbu(hnps=[hnp(P0)]))
        self.assertRefused(lma, pbu(mnId=MN2, llId=MAC2, hnps=[hnp(P0)]),
                           Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX, source=MAG2)
        self.assertEqual(lma.binding(P0.network_address).mnId, MN1)

    def test_prefixSetMismatch(self):
        lma = self.makeLma()
        self.accepted(lma, pbu(hnps=[hnp(P0)]))
        self.assertRefused(lma, pbu(2, hnps=[hnp(P0), hnp(P1)], timestamp=T0 + 0.1),
                           Status.BCE_PBU_PREFIX_SET_DO_NOT_MATCH, now=T0 + 0.1)

    def test_allZeroMixedWithNamed(self):
        lma = self.makeLma()
        self.assertRefused(lma, pbu(hnps=[ALL_ZERO, hnp(P1)]),
                           Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX)

    def test_noPrefixPool(self):
        lma = self.makeLma(prefixPool=None)
        self.assertRefused(lma, pbu(), Status.ADMINISTRATIVELY_PROHIBITED)

    def test_exhausted(self):
        lma = self.makeLma(prefixPool=PrefixPool("2001:db8:100::/63"))
        self.accepted(lma, pbu())
        self.accepted(lma, pbu(mnId=MN2, llId=MAC2))
        self.assertRefused(lma, pbu(mnId=b"mn3", llId=None), Status.INSUFFICIENT_RESOURCES)

    def test_namedPrefixReleasedWithTheSession(self):
        lma = self.makeLma(minDelayBeforeBceDelete=0)
        self.accepted(lma, pbu(hnps=[hnp(P1)]))
        effects, ba = self.accepted(lma, pbu(2, hnps=[hnp(P1)], lifetime=0,
                                             timestamp=T0 + 0.1), now=T0 + 0.1)
        self.assertEqual(self.routes(effects), [RouteRemove(P1, MAG1)])
        self.assertEqual(lma.prefixPool.inUse, 0)


class HandoffTests(Rfc5213Mixin, SynchronousTestCase):
    """RFC 5213 5.4.1: which session a PBU is for, from its HI."""

    def test_namedPrefixMoves(self):
        lma = self.makeLma()
        self.accepted(lma, pbu())
        effects, ba = self.accepted(
            lma, pbu(2, hnps=[hnp(P0)], hi=HandoffIndicator.HANDOFF_BETWEEN_MAGS_SAME_INTERFACE,
                     timestamp=T0 + 1), now=T0 + 1, source=MAG2)
        self.assertEqual(self.routes(effects), [RouteMove(P0, MAG1, MAG2)])
        self.assertEqual(lma.bindingFor(MN1).pcoa, MAG2)
        self.assertEqual(lma.counters["moved"], 1)

    def test_allZeroHandoffBetweenMags(self):
        """HI 3 with ALL_ZERO: the session of the same ATT and link-layer id."""
        lma = self.makeLma()
        self.accepted(lma, pbu())
        effects, ba = self.accepted(lma, pbu(2, hi=3, timestamp=T0 + 1), now=T0 + 1,
                                    source=MAG2)
        self.assertEqual(self.routes(effects), [RouteMove(P0, MAG1, MAG2)])
        self.assertEqual(ba.option(HomeNetworkPrefix), hnp(P0))

    def test_newInterfaceIsMultihoming(self):
        """HI 1: a second session with a prefix of its own (RFC 5213 5.4.1)."""
        lma = self.makeLma()
        self.accepted(lma, pbu())
        effects, ba = self.accepted(
            lma, pbu(2, hi=HandoffIndicator.ATTACHMENT_OVER_NEW_INTERFACE,
                     att=AccessTechnologyType.WLAN, llId=MAC2, timestamp=T0 + 1),
            now=T0 + 1, source=MAG2)
        self.assertEqual(self.routes(effects), [RouteAdd(P1, MAG2)])
        self.assertEqual([b.homes for b in lma.sessionsOf(MN1)], [(P0,), (P1,)])

    def test_otherInterfaceWithOneSession(self):
        """HI 2 moves the mobile's one session to its other interface."""
        lma = self.makeLma()
        self.accepted(lma, pbu())
        effects, ba = self.accepted(
            lma, pbu(2, hi=HandoffIndicator.HANDOFF_BETWEEN_DIFFERENT_INTERFACES,
                     att=AccessTechnologyType.WLAN, llId=MAC2, timestamp=T0 + 1),
            now=T0 + 1, source=MAG2)
        self.assertEqual(self.routes(effects), [RouteMove(P0, MAG1, MAG2)])
        self.assertEqual(lma.bindingFor(MN1).att, AccessTechnologyType.WLAN)

    def test_unknownWithAnotherInterface(self):
        """HI 4 on another access technology is a new session."""
        lma = self.makeLma()
        self.accepted(lma, pbu())
        self.accepted(lma, pbu(2, att=AccessTechnologyType.WLAN, llId=MAC2,
                               timestamp=T0 + 1), now=T0 + 1, source=MAG2)
        self.assertEqual(len(lma.sessionsOf(MN1)), 2)

    def test_reRegistration(self):
        """HI 5 from the same MAG refreshes; no route change."""
        lma = self.makeLma()
        self.accepted(lma, pbu())
        effects, ba = self.accepted(lma, pbu(2, hi=HandoffIndicator.NOT_CHANGED,
                                             timestamp=T0 + 30), now=T0 + 30)
        self.assertEqual(self.routes(effects), [])
        self.assertEqual(lma.bindingFor(MN1).expiry, T0 + 30 + 3600)


class TimestampTests(Rfc5213Mixin, SynchronousTestCase):
    """RFC 5213 5.5: the default ordering, timestamps."""

    def test_missing(self):
        lma = self.makeLma()
        ba = self.assertRefused(lma, pbu(timestamp=None), Status.TIMESTAMP_MISMATCH,
                                now=T0 + 5)
        # The answer carries the LMA's time, for the MAG to correct its clock.
        self.assertEqual(ba.option(Timestamp), Timestamp.fromSeconds(T0 + 5))

    def test_outsideTheWindow(self):
        lma = self.makeLma()
        for off in (0.31, -0.31, 60):
            ba = self.assertRefused(lma, pbu(timestamp=T0 + off), Status.TIMESTAMP_MISMATCH)
            self.assertEqual(ba.option(Timestamp), Timestamp.fromSeconds(T0))
        self.accepted(lma, pbu(timestamp=T0 + 0.29))

    def test_notLaterThanAccepted(self):
        lma = self.makeLma()
        self.accepted(lma, pbu(timestamp=T0))
        ba = self.assertRefused(lma, pbu(2, hnps=[hnp(P0)], hi=3, timestamp=T0 - 0.1),
                                Status.TIMESTAMP_LOWER_THAN_PREV_ACCEPTED, source=MAG2)
        self.assertEqual(ba.option(Timestamp), Timestamp.fromSeconds(T0))
        self.assertEqual(lma.bindingFor(MN1).pcoa, MAG1)

    def test_malformed(self):
        lma = self.makeLma()
        message = pbu(timestamp=None, extra=[mh.MalformedOption(27, b"\x00" * 4, "x")])
        before = self.state(lma)
        effects = self.sendRaw(lma, mh.encodeMessage(message))
        self.assertEqual(self.onlyBA(effects).status, Status.TIMESTAMP_MISMATCH)
        self.assertEqual(self.state(lma), before)

    def test_retransmissionAnsweredAgain(self):
        """
        The very PBU accepted last, sent again (same timestamp, same
        sequence), is answered again and changes nothing.
        """
        lma = self.makeLma()
        first, ba = self.accepted(lma, pbu())
        again = self.send(lma, pbu(), now=T0 + 1)
        self.assertEqual(self.routes(again), [])
        self.assertEqual(self.onlyBA(again), ba)
        self.assertEqual(lma.counters["retransmissions"], 1)
        # Anything else with that timestamp is not a retransmission.
        self.assertRefused(lma, pbu(lifetime=10), Status.TIMESTAMP_LOWER_THAN_PREV_ACCEPTED,
                           now=T0 + 1)


class SequenceTests(Rfc5213Mixin, SynchronousTestCase):
    """Sequence numbers for peers set to them, checked per sender."""

    def test_perSender(self):
        """
        Each MAG numbers its own PBUs: a handoff to a MAG whose counter is
        lower is accepted; a replay of the old MAG's PBU is not (135, with
        that MAG's last number).
        """
        lma = self.makeLma(policy=PeerPolicy(ordering=Ordering.SEQUENCE))
        self.accepted(lma, pbu(500, timestamp=None))
        self.accepted(lma, pbu(3, hnps=[hnp(P0)], hi=3, timestamp=None), source=MAG2)
        ba = self.assertRefused(lma, pbu(500, hnps=[hnp(P0)], hi=3, timestamp=None),
                                Status.SEQUENCE_OUT_OF_WINDOW)
        self.assertEqual(ba.sequence, 500)
        self.assertEqual(lma.bindingFor(MN1).pcoa, MAG2)
        self.accepted(lma, pbu(501, hnps=[hnp(P0)], hi=3, timestamp=None))
        self.assertEqual(lma.bindingFor(MN1).pcoa, MAG1)

    def test_sameSequenceRetransmission(self):
        """
        A MAG that resends its PBU unchanged (same sequence number, as OPMIP
        does) gets the same answer again; a different PBU with that number
        gets 135.
        """
        lma = self.makeLma()
        message = pbu(9, timestamp=None)
        first, ba = self.accepted(lma, message, source=SEQMAG)
        again = self.send(lma, message, source=SEQMAG)
        self.assertEqual(self.routes(again), [])
        self.assertEqual(self.onlyBA(again, SEQMAG), ba)
        self.assertRefused(lma, pbu(9, timestamp=None, lifetime=1),
                           Status.SEQUENCE_OUT_OF_WINDOW, source=SEQMAG)


class DeregistrationTests(Rfc5213Mixin, SynchronousTestCase):
    """RFC 5213 5.3.5: deregistration and MinDelayBeforeBCEDelete."""

    def test_deletedAfterTheDelay(self):
        lma = self.makeLma()
        self.accepted(lma, pbu())
        effects, ba = self.accepted(lma, pbu(2, hnps=[hnp(P0)], lifetime=0,
                                             timestamp=T0 + 5), now=T0 + 5)
        self.assertEqual(self.routes(effects), [])
        self.assertEqual(ba.lifetime, 0)
        self.assertIsNone(ba.option(BindingRefreshAdvice))
        b = lma.bindingFor(MN1)
        self.assertIs(b.state, BindingState.DELETING)
        self.assertEqual(lma.nextTimer(), T0 + 15)
        self.assertEqual(lma.handleTimer(T0 + 14.9), [])
        self.assertEqual(lma.handleTimer(T0 + 15), [
            RouteRemove(P0, MAG1), Persist(MN1 + b" 2001:db8:100::/64", None)])
        self.assertEqual(lma.bindings, {})
        self.assertEqual(lma.prefixPool.inUse, 0)
        self.assertEqual(lma.counters["deregistered"], 1)

    def test_oneOfTwoSessionsDeleted(self):
        """
        A multihomed mobile's other session stays found by its MN identifier
        when one is deleted, and nothing is left once both are.
        """
        lma = self.makeLma()
        self.accepted(lma, pbu())
        self.accepted(lma, pbu(2, hi=HandoffIndicator.ATTACHMENT_OVER_NEW_INTERFACE,
                               att=AccessTechnologyType.WLAN, llId=MAC2, timestamp=T0 + 1),
                      now=T0 + 1, source=MAG2)
        first, second = lma.sessionsOf(MN1)
        self.accepted(lma, pbu(3, hnps=[hnp(P0)], lifetime=0, timestamp=T0 + 2), now=T0 + 2)
        lma.handleTimer(T0 + 12)
        self.assertEqual(lma.sessionsOf(MN1), (second,))
        self.assertIs(lma.bindingFor(MN1), second)
        self.accepted(lma, pbu(4, hnps=[hnp(P1)], lifetime=0, att=AccessTechnologyType.WLAN,
                               llId=MAC2, timestamp=T0 + 13), now=T0 + 13, source=MAG2)
        lma.handleTimer(T0 + 23)
        self.assertEqual(lma.sessionsOf(MN1), ())
        self.assertIsNone(lma.bindingFor(MN1))
        self.assertEqual(lma.bindings, {})

    def test_handoffWithinTheDelay(self):
        """The mobile shows up at MAG2 before the delay ends: moved, kept."""
        lma = self.makeLma()
        self.accepted(lma, pbu())
        self.accepted(lma, pbu(2, hnps=[hnp(P0)], lifetime=0, timestamp=T0 + 1),
                      now=T0 + 1)
        effects, ba = self.accepted(lma, pbu(3, hnps=[hnp(P0)], hi=3, timestamp=T0 + 2),
                                    now=T0 + 2, source=MAG2)
        self.assertEqual(self.routes(effects), [RouteMove(P0, MAG1, MAG2)])
        self.assertIs(lma.bindingFor(MN1).state, BindingState.REGISTERED)
        self.assertEqual(lma.handleTimer(T0 + 100), [])
        self.assertIsNotNone(lma.bindingFor(MN1))

    def test_staleDeregistration(self):
        """
        The old MAG's deregistration after the handoff is accepted and
        changes nothing (the mobile is at MAG2 now).
        """
        lma = self.makeLma()
        self.accepted(lma, pbu())
        self.accepted(lma, pbu(2, hnps=[hnp(P0)], hi=3, timestamp=T0 + 1), now=T0 + 1,
                      source=MAG2)
        effects, ba = self.accepted(lma, pbu(3, hnps=[hnp(P0)], lifetime=0,
                                             timestamp=T0 + 2), now=T0 + 2)
        self.assertEqual(self.routes(effects), [])
        b = lma.bindingFor(MN1)
        self.assertEqual((b.state, b.pcoa), (BindingState.REGISTERED, MAG2))

    def test_unknown(self):
        lma = self.makeLma()
        self.assertRefused(lma, pbu(lifetime=0), Status.NOT_HOME_AGENT_FOR_MN)

    def test_noDelay(self):
        lma = self.makeLma(minDelayBeforeBceDelete=0)
        self.accepted(lma, pbu())
        effects, ba = self.accepted(lma, pbu(2, lifetime=0, timestamp=T0 + 1), now=T0 + 1)
        self.assertEqual(self.routes(effects), [RouteRemove(P0, MAG1)])
        self.assertEqual(lma.bindings, {})


class Ipv4Tests(Rfc5213Mixin, SynchronousTestCase):
    """RFC 5844 3.1.2: IPv4 home addresses from the LMA's pool."""

    def test_assigned(self):
        lma = self.makeLma(ipv4DhcpServer=True)
        effects, ba = self.accepted(lma, pbu(v4=[IPv4HomeAddressRequest()]))
        self.assertEqual(self.routes(effects), [RouteAdd(P0, MAG1), RouteAdd(V4FIRST, MAG1)])
        self.assertEqual(ba.option(IPv4HomeAddressReply), IPv4HomeAddressReply(0, V4FIRST, 24))
        self.assertEqual(ba.option(IPv4DefaultRouterAddress), IPv4DefaultRouterAddress(ROUTER))
        self.assertEqual(ba.option(IPv4DhcpSupportMode), IPv4DhcpSupportMode(True))
        self.assertIs(lma.binding(V4FIRST), lma.bindingFor(MN1))
        self.assertIs(lma.binding(str(V4FIRST)), lma.bindingFor(MN1))

    def test_ipv4Only(self):
        """No HNP option but an IPv4 request: an IPv4-only session."""
        lma = self.makeLma()
        effects, ba = self.accepted(lma, pbu(hnps=(), v4=[IPv4HomeAddressRequest()]))
        self.assertEqual(self.routes(effects), [RouteAdd(V4FIRST, MAG1)])
        self.assertIsNone(ba.option(HomeNetworkPrefix))
        self.assertEqual(lma.bindingFor(MN1).homes, ())
        # Its handoff names the address.
        effects, ba = self.accepted(
            lma, pbu(2, hnps=(), hi=3, v4=[IPv4HomeAddressRequest(V4FIRST, 24)],
                     timestamp=T0 + 1), now=T0 + 1, source=MAG2)
        self.assertEqual(self.routes(effects), [RouteMove(V4FIRST, MAG1, MAG2)])

    def test_keptAcrossHandoff(self):
        lma = self.makeLma()
        self.accepted(lma, pbu(v4=[IPv4HomeAddressRequest()]))
        effects, ba = self.accepted(
            lma, pbu(2, hnps=[hnp(P0)], hi=3, v4=[IPv4HomeAddressRequest(V4FIRST, 24)],
                     timestamp=T0 + 1), now=T0 + 1, source=MAG2)
        self.assertEqual(self.routes(effects), [RouteMove(P0, MAG1, MAG2),
                                                RouteMove(V4FIRST, MAG1, MAG2)])
        self.assertEqual(ba.option(IPv4HomeAddressReply).address, V4FIRST)

    def test_namedFreeAddress(self):
        lma = self.makeLma()
        effects, ba = self.accepted(
            lma, pbu(v4=[IPv4HomeAddressRequest("192.0.2.77", 24)]))
        self.assertEqual(ba.option(IPv4HomeAddressReply).address, IPv4Address("192.0.2.77"))
        effects, ba = self.accepted(lma, pbu(mnId=MN2, llId=MAC2,
                                             v4=[IPv4HomeAddressRequest()]))
        self.assertEqual(ba.option(IPv4HomeAddressReply).address, V4FIRST)

    def test_refusals(self):
        lma = self.makeLma()
        self.accepted(lma, pbu(v4=[IPv4HomeAddressRequest()]))
        other = dict(mnId=MN2, llId=MAC2)
        for request, status, v4 in (
                (IPv4HomeAddressRequest(V4FIRST, 24), Status.NOT_AUTHORIZED_FOR_IPV4_HOME_ADDRESS,
                 IPv4HomeAddressReply.INCORRECT_IPV4_HOME_ADDRESS),
                (IPv4HomeAddressRequest("198.51.100.1", 24),
                 Status.NOT_AUTHORIZED_FOR_IPV4_HOME_ADDRESS,
                 IPv4HomeAddressReply.INVALID_IPV4_ADDRESS),
                (IPv4HomeAddressRequest(ROUTER, 24), Status.NOT_AUTHORIZED_FOR_IPV4_HOME_ADDRESS,
                 IPv4HomeAddressReply.INVALID_IPV4_ADDRESS)):
            ba = self.assertRefused(lma, pbu(v4=[request], **other), status, v4=v4,
                                    source=MAG2)
            self.assertEqual(ba.option(IPv4HomeAddressReply).address, request.address)
        self.assertRefused(lma, pbu(v4=[IPv4HomeAddressRequest()] * 2, **other),
                           Status.MULTIPLE_IPV4_HOME_ADDRESS_ASSIGNMENT_NOT_SUPPORTED,
                           source=MAG2)
        # A session asking for another address than its own.
        self.assertRefused(
            lma, pbu(2, hnps=[hnp(P0)], hi=5, timestamp=T0 + 1,
                     v4=[IPv4HomeAddressRequest("192.0.2.99", 24)]),
            Status.NOT_AUTHORIZED_FOR_IPV4_HOME_ADDRESS, now=T0 + 1,
            v4=IPv4HomeAddressReply.INCORRECT_IPV4_HOME_ADDRESS)

    def test_noIpv4Pool(self):
        lma = self.makeLma(ipv4Pool=None)
        self.assertRefused(lma, pbu(v4=[IPv4HomeAddressRequest()]),
                           Status.NOT_AUTHORIZED_FOR_IPV4_MOBILITY_SERVICE,
                           v4=IPv4HomeAddressReply.ADMINISTRATIVELY_PROHIBITED)

    def test_exhaustedReleasesThePrefix(self):
        """
        No IPv4 address left: refused (130, Reply 132) and the prefix the
        session would have had goes back to the pool.
        """
        lma = self.makeLma(ipv4Pool=AddressPool("192.0.2.2", "192.0.2.2"))
        self.accepted(lma, pbu(v4=[IPv4HomeAddressRequest()]))
        self.assertRefused(lma, pbu(mnId=MN2, llId=MAC2, v4=[IPv4HomeAddressRequest()]),
                           Status.INSUFFICIENT_RESOURCES, source=MAG2,
                           v4=IPv4HomeAddressReply.DYNAMIC_IPV4_HOME_ADDRESS_ASSIGNMENT_NOT_AVAILABLE)

    def test_malformedRequest(self):
        lma = self.makeLma()
        for data in (b"\x00" * 5, b"\x00" * 7, b"\x84\x00\x0a\x00\x00\x01"):
            message = pbu(extra=[mh.MalformedOption(36, data, "broken")])
            before = self.state(lma)
            effects = self.sendRaw(lma, mh.encodeMessage(message))
            ba = self.onlyBA(effects)
            self.assertEqual(ba.status, Status.NOT_AUTHORIZED_FOR_IPV4_HOME_ADDRESS, data)
            self.assertEqual(ba.option(IPv4HomeAddressReply).status,
                             IPv4HomeAddressReply.INVALID_IPV4_ADDRESS)
            self.assertEqual(self.state(lma), before)

    def test_releasedWithTheSession(self):
        lma = self.makeLma(minDelayBeforeBceDelete=0)
        self.accepted(lma, pbu(v4=[IPv4HomeAddressRequest()]))
        effects, ba = self.accepted(lma, pbu(2, lifetime=0, timestamp=T0 + 1), now=T0 + 1)
        self.assertEqual(self.routes(effects), [RouteRemove(P0, MAG1),
                                                RouteRemove(V4FIRST, MAG1)])
        self.assertEqual(lma.ipv4Pool.inUse, 0)
        self.assertIsNone(lma.binding(V4FIRST))


class NetlmmPrefixTests(Rfc5213Mixin, SynchronousTestCase):
    """Per-mobile prefixes and IPv4 in the netlmm dialect (draft E.3, E.2)."""

    def netlmm(self, sequence, home, mnId=MN1, mag=MAG1, lifetime=HOUR, v4=()):
        options = [home, AlternateCareOfAddress(mag)] if mag else [home]
        if mnId is not None:
            options.append(MobileNodeIdentifier(mnId))
        return BindingUpdate(sequence, BU_A | BU_H | BU_P, lifetime, options + list(v4))

    def test_prefixRequest(self):
        """An all-zero HNP with a length below 128 asks for a prefix."""
        lma = self.makeLma()
        effects, ba = self.accepted(lma, self.netlmm(1, HomeNetworkPrefix("::", 64)),
                                    source=PMIP)
        self.assertEqual(self.routes(effects), [RouteAdd(P0, MAG1)])
        self.assertEqual(ba.option(HomeNetworkPrefix), hnp(P0))
        self.assertIs(lma.bindingFor(MN1).profile, Profile.NETLMM)
        # The handoff names the prefix, without the MN identifier.
        effects, ba = self.accepted(lma, self.netlmm(2, hnp(P0), mnId=None, mag=MAG2),
                                    source=PMIP)
        self.assertEqual(self.routes(effects), [RouteMove(P0, MAG1, MAG2)])

    def test_namedPrefix(self):
        lma = self.makeLma()
        effects, ba = self.accepted(lma, self.netlmm(1, hnp(P1)), source=PMIP)
        self.assertEqual(self.routes(effects), [RouteAdd(P1, MAG1)])
        ba = self.assertRefused(lma, self.netlmm(1, hnp(P1), mnId=MN2),
                                Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX, source=PMIP)
        self.assertEqual(ba.option(HomeNetworkPrefix), hnp(P1))

    def test_outsideThePoolNotRewritten(self):
        """The refusal echoes the /64 as sent (it used to come back as a /128)."""
        lma = self.makeLma()
        ba = self.assertRefused(lma, self.netlmm(1, hnp("2001:db8:1::/64")),
                                Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX, source=PMIP)
        self.assertEqual(ba.option(HomeNetworkPrefix), hnp("2001:db8:1::/64"))

    def test_ipv4(self):
        lma = self.makeLma()
        effects, ba = self.accepted(
            lma, self.netlmm(1, hnp("2001:db8:1::5/128"), v4=[IPv4HomeAddressRequest()]),
            source=PMIP)
        self.assertEqual(self.routes(effects), [RouteAdd(IPv6Address("2001:db8:1::5"), MAG1),
                                                RouteAdd(V4FIRST, MAG1)])
        self.assertEqual(ba.option(IPv4HomeAddressReply).address, V4FIRST)


class StateMachineTests(Rfc5213Mixin, SynchronousTestCase):
    """The session state machine: one table, one step."""

    def test_table(self):
        """Every state but ABSENT can end; ABSENT can only register."""
        self.assertEqual({e for (s, e) in TRANSITIONS if s is BindingState.ABSENT},
                         {Event.REGISTER})
        for state in (BindingState.REGISTERED, BindingState.DELETING):
            self.assertEqual({e for (s, e) in TRANSITIONS if s is state},
                             set(Event) - {Event.REGISTER})

    def test_invalidChangesNothing(self):
        lma = self.makeLma()
        self.accepted(lma, pbu())
        b = lma.bindingFor(MN1)
        with self.assertRaises(InvalidInput):
            lma.step(b, Event.REGISTER)
        self.assertIs(b.state, BindingState.REGISTERED)
        self.assertEqual(len(lma.bindings), 1)


class PersistenceTests(Rfc5213Mixin, SynchronousTestCase):
    """snapshot() and restore() keep prefixes, IPv4 and RFC 5213 state."""

    def test_roundTrip(self):
        lma = self.makeLma()
        self.accepted(lma, pbu(v4=[IPv4HomeAddressRequest()],
                               extra=[LinkLocalAddress("fe80::1")]))
        self.accepted(lma, pbu(mnId=MN2, llId=MAC2, hnps=[hnp(P1)]))
        records = [p.record for p in lma.snapshot()]
        again = self.makeLma()
        effects = again.restore(records, T0 + 1)
        self.assertEqual(sorted(effects, key=repr), sorted(
            [RouteAdd(P0, MAG1), RouteAdd(V4FIRST, MAG1), RouteAdd(P1, MAG1)], key=repr))
        b = again.bindingFor(MN1)
        self.assertEqual((b.homes, b.ipv4.ip, b.att, b.llId, b.profile, b.timestamp,
                          str(b.lla)),
                         ((P0,), V4FIRST, 3, MAC1, Profile.RFC5213,
                          Timestamp.fromSeconds(T0).value, "fe80::1"))
        self.assertEqual((again.prefixPool.inUse, again.ipv4Pool.inUse), (2, 1))
        # The restored session goes on: a later timestamp is accepted.
        self.accepted(again, pbu(2, hnps=[hnp(P0)], hi=5, timestamp=T0 + 2), now=T0 + 2)

    def test_everyChangeKeptBeforeItsAnswer(self):
        """
        Registration, refresh, move and deregistration each emit one
        Persist of the session, before the PBA; the DELETING session is kept
        too (a restart within MinDelayBeforeBCEDelete does not lose it), and
        removed when the delay ends. What changes nothing keeps nothing.
        """
        lma = self.makeLma()
        key = MN1 + b" 2001:db8:100::/64"

        def kept(effects):
            kinds = [type(e) for e in effects]
            self.assertEqual(kinds[-2:], [Persist, SendMH], kinds)
            self.assertEqual(kinds.count(Persist), 1)
            persist = effects[-2]
            self.assertEqual(persist.key, key)
            return persist.record

        self.assertEqual(kept(self.send(lma, pbu()))["state"], "REGISTERED")
        record = kept(self.send(lma, pbu(2, hnps=[hnp(P0)], hi=3, timestamp=T0 + 1),
                                now=T0 + 1, source=MAG2))
        self.assertEqual(record["pcoa"], MAG2)
        # The same PBU again: answered, nothing kept.
        again = self.send(lma, pbu(2, hnps=[hnp(P0)], hi=3, timestamp=T0 + 1),
                          now=T0 + 1, source=MAG2)
        self.assertEqual([type(e) for e in again], [SendMH])
        # MAG1's late deregistration changes nothing.
        stale = self.send(lma, pbu(3, hnps=[hnp(P0)], lifetime=0, timestamp=T0 + 2),
                          now=T0 + 2)
        self.assertEqual([type(e) for e in stale], [SendMH])
        record = kept(self.send(lma, pbu(4, hnps=[hnp(P0)], lifetime=0,
                                         timestamp=T0 + 3), now=T0 + 3, source=MAG2))
        self.assertEqual((record["state"], record["expiry"]), ("DELETING", T0 + 13))
        # Restored in the middle of the delay, it is deleted when the delay ends.
        again = self.makeLma()
        self.assertEqual(again.restore([record], T0 + 5), [RouteAdd(P0, MAG2)])
        self.assertIs(again.bindingFor(MN1).state, BindingState.DELETING)
        self.assertEqual(again.handleTimer(T0 + 13), [RouteRemove(P0, MAG2),
                                                      Persist(key, None)])

    def test_oldRecord(self):
        """A record written before prefixes and IPv4 existed still loads."""
        lma = self.makeLma()
        effects = lma.restore([{
            "phoa": "2001:db8:1::10", "mn": MN1.hex(), "pcoa": str(MAG1), "sequence": 7,
            "lifetime": 3600, "expiry": T0 + 100, "client": str(PMIP), "pooled": False,
        }], T0)
        self.assertEqual(effects, [RouteAdd(IPv6Address("2001:db8:1::10"), MAG1)])
        b = lma.binding("2001:db8:1::10")
        self.assertEqual((b.profile, b.mnId, b.sequence), (Profile.NETLMM, MN1, 7))
        # Its sequence number still guards it, whatever address object sends.
        stale = BindingUpdate(7, BU_A | BU_H | BU_P, 10, [hnp("2001:db8:1::10/128"),
                                                          AlternateCareOfAddress(MAG2)])
        self.assertRefused(lma, stale, Status.SEQUENCE_OUT_OF_WINDOW,
                           source=IPv6Address(str(PMIP)))

    def test_badRecordNamed(self):
        lma = self.makeLma()
        with self.assertRaises(ValueError) as caught:
            lma.restore([{"homes": ["zzz"], "mn": "00", "pcoa": "::1", "client": "::1",
                          "sequence": 1, "lifetime": 1, "expiry": T0 + 1}], T0)
        self.assertIn("record 0", str(caught.exception))


class LoggingTests(Rfc5213Mixin, SynchronousTestCase):
    """Refusals are logged once, with the peer's address; bindings at debug."""

    def test_levels(self):
        lma = self.makeLma()
        self.accepted(lma, pbu())
        self.assertEqual(self.log.warnings(), [])
        self.assertTrue(any(level == "debug" for level, fmt, kw in self.log.lines))
        self.assertRefused(lma, pbu(mnId=None), Status.MISSING_MN_IDENTIFIER_OPTION)

    def test_realLoggerTakesTheFields(self):
        """
        The formats and fields of refusals of every kind work with
        twisted.logger, both through the core's own log and through the
        service's one refusal method (no KeyError, no clash of names).
        """
        from netlmm.ratelimit import RefusalLog
        from netlmm.service.lma import LmaService
        from twisted.logger import formatEvent
        messages = [
            pbu(mnId=None), pbu(hnps=[hnp("2001:db8:9::/64")]), pbu(timestamp=None),
            pbu(v4=[IPv4HomeAddressRequest()]), pbu(timestamp=T0 + 9),
            pbu(extra=[mh.MalformedOption(36, b"\x00", "x")]),
            pbu(timestamp=None, extra=[mh.MalformedOption(27, b"\x00", "x")]),
            pbu(extra=[mh.MalformedOption(3, b"\x00", "x")]),
            BindingUpdate(1, BU_A | BU_H | BU_P, 1, [mh.MalformedOption(22, b"", "x")]),
            pbu(flags=BU_A), pbu(lifetime=0),
        ]
        for viaService in (False, True):
            events = []
            log = Logger(observer=events.append)
            lma = LmaCore(HOME, ["2001:db8:a::/48"], log=log)
            if viaService:
                service = LmaService.__new__(LmaService)
                service.log = log
                service.refusals = 0
                service._refusalLog = RefusalLog(log, burst=len(messages))
                lma.refused = service._refused
            for message in messages:
                raw = mh.encodeMessage(message)
                lma.receive(mh.decodeMessage(raw), MAG1, T0)
            texts = [formatEvent(e) for e in events]
            self.assertEqual(len(texts), len(messages))
            for text in texts:
                self.assertIn(str(MAG1), text)
                self.assertNotIn("Unable to format", text)


# ---------------------------------------------------------------- generated

_OPTIONS = st.one_of(
    st.just(MobileNodeIdentifier(MN1)), st.just(MobileNodeIdentifier(MN2)),
    st.sampled_from([ALL_ZERO, hnp(P0), hnp(P1), hnp("2001:db8:1::5/128"),
                     hnp("2001:db8:200::/64"), HomeNetworkPrefix("::", 64),
                     HomeNetworkPrefix("2001:db8:100::1", 64)]),
    st.builds(HandoffIndicator, st.integers(0, 6)),
    st.builds(AccessTechnologyType, st.integers(0, 5)),
    st.sampled_from([MobileNodeLinkLayerIdentifier(MAC1), MobileNodeLinkLayerIdentifier(MAC2)]),
    st.sampled_from([Timestamp.fromSeconds(T0), Timestamp.fromSeconds(T0 + 1),
                     Timestamp.fromSeconds(T0 - 5)]),
    st.sampled_from([AlternateCareOfAddress(MAG1), AlternateCareOfAddress(MAG2)]),
    st.sampled_from([IPv4HomeAddressRequest(), IPv4HomeAddressRequest(V4FIRST, 24),
                     IPv4HomeAddressRequest("192.0.2.200", 24),
                     IPv4HomeAddressRequest("198.51.100.1", 24)]),
    st.sampled_from([LinkLocalAddress("fe80::1"), LinkLocalAddress("::")]),
    # Truncated, oversized and out-of-range bodies of every option the LMA reads.
    st.builds(lambda t, n: mh.MalformedOption(t, b"\x00" * n, "generated"),
              st.sampled_from([3, 8, 22, 23, 24, 25, 26, 27, 36]),
              st.integers(0, 1)),
    st.builds(lambda t, n: mh.MalformedOption(t, b"\xff" * n, "generated"),
              st.sampled_from([22, 23, 24, 27, 36]), st.integers(19, 40)),
)


class GeneratedTests(Rfc5213Mixin, SynchronousTestCase):
    """Any PBU a peer may send: one answer, and a refusal changes nothing."""

    @settings(max_examples=300, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(st.tuples(st.lists(_OPTIONS, max_size=9),
                              st.sampled_from([FLAGS, BU_A | BU_H | BU_P, BU_A, BU_A | BU_H]),
                              st.integers(0, 3), st.sampled_from([0, 15, HOUR]),
                              st.sampled_from([MAG1, MAG2, SEQMAG, PMIP, STRANGER]),
                              st.floats(0, 20)),
                    min_size=1, max_size=6))
    def test_anyPbu(self, pbus):
        lma = self.makeLma()
        now = T0
        for options, flags, sequence, lifetime, source, later in pbus:
            now += later / 100
            message = BindingUpdate(sequence, flags, lifetime, options)
            raw = mh.encodeMessage(message, source, LMA)
            before = self.state(lma)
            effects = lma.receive(mh.decodeMessage(raw, source, LMA), source, now)
            sends = [e for e in effects if type(e) is SendMH]
            self.assertEqual(len(sends), 1, effects)
            self.assertEqual(sends[0].destination, source)
            ba = sends[0].message
            self.assertEqual(mh.decodeMessage(mh.encodeMessage(ba)), ba)
            self.assertEqual(ba.sequence if ba.status != Status.SEQUENCE_OUT_OF_WINDOW
                             else sequence, sequence)
            if ba.status >= 128:
                self.assertEqual(self.routes(effects), [])
                self.assertEqual(self.state(lma), before)
                self.assertEqual(ba.lifetime, 0)
            # The indexes agree with the sessions.
            for b in lma.bindings.values():
                for home in b.homes:
                    self.assertIs(lma.binding(home if type(home) is IPv6Address
                                              else home.network_address), b)
                if b.ipv4 is not None:
                    self.assertIs(lma.binding(b.ipv4.ip), b)
                self.assertIn(b, lma.sessionsOf(b.mnId))
            lma.handleTimer(now)
