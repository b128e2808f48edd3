"""
The sans-IO handover core (Appendix D with RFC 5949 messages): reactive and
predictive context transfer, forwarding and its end, fallback when no
context comes, bad input refused with nothing changed, ping-pong.
"""

from ipaddress import IPv6Address

from twisted.trial.unittest import SynchronousTestCase

from netlmm.core.effects import InvalidInput
from netlmm.core.handover import (
    Context, ContextReady, Fallback, Forward, HandoverCore, Hold, Refused, Release,
    SendHandover, State, StopForward,
)
from netlmm.wire import mh
from netlmm.wire.fho import (
    HACK_F, HACK_P, HACK_U, HI_F, HI_P, HI_U, ContextRequest, HackCode, HandoverAcknowledge,
    HandoverInitiate, HiCode, LmaAddress,
)

MAG1 = IPv6Address("2001:db8:ffff::11")
MAG2 = IPv6Address("2001:db8:ffff::12")
MAG3 = IPv6Address("2001:db8:ffff::13")
LMA = IPv6Address("2001:db8:ffff::1")
MN = b"02:00:00:00:aa:01"
MAC = bytes.fromhex("02000000aa01")
PHOA = IPv6Address("2001:db8:1::ff:fe00:aa01")
CONTEXT = Context(MN, PHOA, MAC, LMA)


def sent(effects):
    return [(type(e.message).__name__, e.message.code, e.peer) for e in effects
            if type(e) is SendHandover]


def message(effects):
    """The one handover message among C{effects}."""
    [m] = [e.message for e in effects if type(e) is SendHandover]
    return m


def others(effects):
    return [e for e in effects if type(e) is not SendHandover]


class Pair:
    """A previous MAG (MAG1, serving the mobile) and a new one (MAG2)."""

    def __init__(self):
        self.bound = {MN: CONTEXT}
        self.since = {}
        self.mag1 = HandoverCore(MAG1, [MAG2, MAG3], lookup=self.bound.get,
                                 attachedSince=self.since.get)
        self.mag2 = HandoverCore(MAG2, [MAG1, MAG3])


class ReactiveTests(SynchronousTestCase):
    def setUp(self):
        self.pair = Pair()

    def test_contextTransfer(self):
        """
        The mobile attaches at MAG2: HI with a Context Request to each
        neighbour; MAG1 answers with the context and forwards; MAG3 does not
        know it; MAG2 holds the forwarded traffic and goes on with the context.
        """
        mag1, mag2 = self.pair.mag1, self.pair.mag2
        effects = mag2.arrive(MN, MAC, 100.0)
        self.assertEqual(sent(effects), [("HandoverInitiate", HiCode.REQUEST, MAG1),
                                         ("HandoverInitiate", HiCode.REQUEST, MAG3)])
        hi = effects[0].message
        self.assertEqual(hi.flags, HI_P | HI_U)  # the context; hold, do not forward yet
        self.assertEqual(hi.option(mh.MobileNodeIdentifier).identifier, MN)
        self.assertEqual(hi.option(ContextRequest).types, (22, 25, 41, 36, 38, 39))
        self.assertEqual(hi.option(mh.MobileNodeLinkLayerIdentifier).identifier, MAC)
        self.assertEqual(mag2.session(MN).state, State.REQUESTING)

        answer = mag1.receive(hi, MAG2, 100.0, 100.001)
        # MAG1 holds the downlink (the mobile is gone from it) and gives the context.
        self.assertEqual(others(answer), [Hold(MN, PHOA, None)])
        (hack,) = [e.message for e in answer if type(e) is SendHandover]
        self.assertEqual((hack.sequence, hack.flags, hack.code),
                         (hi.sequence, HACK_P | HACK_U, HackCode.CONTEXT_ACCEPTED))
        self.assertEqual(Context.fromMessage(hack), CONTEXT)
        self.assertEqual(mag1.session(MN).state, State.FORWARDING)

        unknown = HandoverAcknowledge(hi.sequence, HACK_P, HackCode.CONTEXT_NOT_AVAILABLE,
                                      [mh.MobileNodeIdentifier(MN)])
        self.assertEqual(mag2.receive(unknown, MAG3, 100.0, 100.002), [])
        got = mag2.receive(hack, MAG1, 100.0, 100.003)
        # MAG2 holds, then (its hold ready) asks MAG1 for the downlink.
        self.assertEqual(others(got), [Hold(MN, PHOA, MAG1), ContextReady(CONTEXT, MAG1)])
        self.assertEqual(sent(got), [("HandoverInitiate", HiCode.REQUEST, MAG1)])
        self.assertEqual(type(got[-1]), SendHandover)
        ask = got[-1].message
        self.assertEqual((ask.flags, ask.option(mh.MobileNodeIdentifier).identifier),
                         (HI_P | HI_F, MN))
        self.assertEqual(mag2.session(MN).state, State.RECEIVING)
        forward = mag1.receive(ask, MAG2, 100.004, 100.005)
        self.assertEqual(others(forward), [Forward(MN, PHOA, MAG2)])
        (ack,) = [e.message for e in forward if type(e) is SendHandover]
        self.assertEqual((ack.sequence, ack.flags), (ask.sequence, HACK_P | HACK_F))
        # Its answer is expected and changes nothing; asked again, MAG1 forwards once.
        self.assertEqual(mag2.receive(ack, MAG1, 100.005, 100.006), [])
        self.assertEqual(others(mag1.receive(ask._replace(sequence=ask.sequence + 1), MAG2,
                                             100.007, 100.008)), [])

        done = mag2.bound(MN, 100.05)
        self.assertEqual(sent(done), [("HandoverInitiate", HiCode.FORWARDING_DONE, MAG1)])
        self.assertEqual(others(done), [Release(MN, PHOA, MAG1, "bound")])
        self.assertIsNone(mag2.session(MN))
        stop = mag1.receive(done[0].message, MAG2, 100.05, 100.051)
        self.assertEqual(others(stop), [StopForward(MN, PHOA, MAG2, True)])
        self.assertEqual(sent(stop), [("HandoverAcknowledge", HackCode.ACCEPTED, MAG2)])
        self.assertIsNone(mag1.session(MN))
        # The answer to 'forwarding done' is expected and changes nothing.
        self.assertEqual(mag2.receive(stop[1].message, MAG1, 100.05, 100.052), [])

    def test_retransmittedRequest(self):
        """A HI sent again is answered again, without a second Forward."""
        hi = self.pair.mag2.arrive(MN, MAC, 100.0)[0].message
        first = self.pair.mag1.receive(hi, MAG2, 100.0, 100.0)
        second = self.pair.mag1.receive(hi, MAG2, 100.0, 100.3)
        self.assertEqual(len(others(first)), 1)
        self.assertEqual(others(second), [])
        self.assertEqual(sent(second), [("HandoverAcknowledge", HackCode.CONTEXT_ACCEPTED,
                                         MAG2)])

    def test_retransmissionAndFallback(self):
        """Half-way through the timeout the silent neighbours are asked again; then fallback."""
        mag2 = self.pair.mag2
        hi = mag2.arrive(MN, MAC, 100.0)[0].message
        mag2.receive(HandoverAcknowledge(hi.sequence, HACK_P, HackCode.CONTEXT_NOT_AVAILABLE),
                     MAG3, 100.0, 100.1)
        self.assertEqual(mag2.nextTimer(), 100.25)
        again = mag2.handleTimer(100.25)
        self.assertEqual(sent(again), [("HandoverInitiate", HiCode.REQUEST, MAG1)])
        self.assertEqual(again[0].message.sequence, hi.sequence)
        self.assertEqual(mag2.handleTimer(100.49), [])
        self.assertEqual(mag2.handleTimer(100.5), [Fallback(MN, "no answer")])
        self.assertIsNone(mag2.session(MN))
        self.assertEqual(mag2.counters["fallbacks"], 1)
        # The late answer changes nothing.
        late = HandoverAcknowledge(hi.sequence, HACK_P | HACK_F, HackCode.CONTEXT_ACCEPTED,
                                   CONTEXT.options())
        self.assertEqual(mag2.receive(late, MAG1, 100.0, 100.6), [])

    def test_allRefuse(self):
        """Every neighbour says it does not know the mobile: fallback at once."""
        mag2 = self.pair.mag2
        hi = mag2.arrive(MN, MAC, 100.0)[0].message
        no = HandoverAcknowledge(hi.sequence, HACK_P, HackCode.CONTEXT_NOT_AVAILABLE)
        self.assertEqual(mag2.receive(no, MAG1, 100.0, 100.01), [])
        self.assertEqual(mag2.receive(no, MAG3, 100.0, 100.02),
                         [Fallback(MN, "no neighbour has it")])

    def test_noNeighbours(self):
        core = HandoverCore(MAG2, [])
        self.assertEqual(core.arrive(MN, MAC, 1.0), [Fallback(MN, "no neighbours")])


class BadInputTests(SynchronousTestCase):
    """Refused, answered as RFC 5949 says where it has an answer, nothing changed."""

    def setUp(self):
        self.pair = Pair()
        self.hi = HandoverInitiate(5, HI_P | HI_F, HiCode.REQUEST, [
            mh.MobileNodeIdentifier(MN), ContextRequest([(22, b"")])])

    def test_unknownMobile(self):
        hi = self.hi._replace(options=(mh.MobileNodeIdentifier(b"someone-else"),))
        effects = self.pair.mag1.receive(hi, MAG2, 1.0, 1.0)
        self.assertEqual(effects[0], Refused(MAG2, "context of someone-else, which is not "
                                                   "bound here"))
        self.assertEqual(sent(effects), [("HandoverAcknowledge",
                                          HackCode.CONTEXT_NOT_AVAILABLE, MAG2)])
        self.assertEqual(self.pair.mag1.sessions, {})

    def test_notANeighbour(self):
        stranger = IPv6Address("2001:db8:9::1")
        self.assertEqual(self.pair.mag1.receive(self.hi, stranger, 1.0, 1.0),
                         [Refused(stranger, "not a neighbour")])
        self.assertEqual(self.pair.mag1.sessions, {})

    def test_noMnId(self):
        effects = self.pair.mag1.receive(self.hi._replace(options=()), MAG2, 1.0, 1.0)
        self.assertEqual(effects[0], Refused(MAG2, "HI without a valid MN identifier"))
        self.assertEqual(sent(effects), [("HandoverAcknowledge", HackCode.NOT_ACCEPTED, MAG2)])

    def test_unsolicitedHack(self):
        hack = HandoverAcknowledge(77, HACK_P, HackCode.CONTEXT_ACCEPTED, CONTEXT.options())
        self.assertEqual(self.pair.mag2.receive(hack, MAG1, 1.0, 1.0),
                         [Refused(MAG1, "HAck 77 answers no HI pending")])
        self.assertEqual(self.pair.mag2.sessions, {})

    def test_forwardingDoneForNothing(self):
        hi = HandoverInitiate(6, HI_P, HiCode.FORWARDING_DONE, [mh.MobileNodeIdentifier(MN)])
        effects = self.pair.mag1.receive(hi, MAG2, 1.0, 1.0)
        self.assertEqual(effects[0], Refused(
            MAG2, f"'forwarding done' for {MN.decode()}, not forwarded to {MAG2}"))
        self.assertEqual(self.pair.mag1.sessions, {})

    def test_unknownCode(self):
        effects = self.pair.mag1.receive(self.hi._replace(code=9), MAG2, 1.0, 1.0)
        self.assertEqual(effects[0], Refused(MAG2, "HI code 9"))

    def test_contextAnswerForAnotherMobile(self):
        """A HAck whose context names another mobile is no context."""
        mag2 = self.pair.mag2
        hi = mag2.arrive(MN, MAC, 1.0)[0].message
        wrong = HandoverAcknowledge(hi.sequence, HACK_P, HackCode.CONTEXT_ACCEPTED,
                                    CONTEXT._replace(mnId=b"other").options())
        self.assertEqual(mag2.receive(wrong, MAG1, 1.0, 1.1), [])
        self.assertEqual(mag2.session(MN).state, State.REQUESTING)

    def test_invalidInputsRaise(self):
        """An input illegal in its state raises InvalidInput before any change."""
        core = self.pair.mag1
        self.assertRaises(InvalidInput, core._step, None, "context")


class PredictiveTests(SynchronousTestCase):
    def setUp(self):
        self.pair = Pair()

    def test_prepared(self):
        """
        MAG1 learns the mobile leaves for MAG2: it holds the mobile's
        downlink (nobody takes it on MAG1's link any more) and offers the
        context; MAG2 holds the traffic; MAG1 forwards (what it held, then
        the rest) once MAG2 accepts; the mobile's arrival at MAG2 finds its
        context ready.
        """
        mag1, mag2 = self.pair.mag1, self.pair.mag2
        offer = mag1.leave(MN, MAG2, 10.0)
        self.assertEqual(others(offer), [Hold(MN, PHOA, None)])
        self.assertEqual(sent(offer), [("HandoverInitiate", HiCode.ALL_CONTEXT, MAG2)])
        self.assertEqual(Context.fromMessage(message(offer)), CONTEXT)
        self.assertEqual(mag1.session(MN).state, State.OFFERING)
        answer = mag2.receive(message(offer), MAG1, 10.0, 10.001)
        self.assertEqual(others(answer), [Hold(MN, PHOA, MAG1)])
        self.assertEqual(sent(answer), [("HandoverAcknowledge", HackCode.ACCEPTED, MAG1)])
        self.assertEqual(mag1.receive(message(answer), MAG2, 10.0, 10.002),
                         [Forward(MN, PHOA, MAG2)])
        self.assertEqual(mag2.arrive(MN, MAC, 10.01), [ContextReady(CONTEXT, MAG1)])
        self.assertEqual(mag2.session(MN).state, State.RECEIVING)

    def test_neverArrives(self):
        """A mobile announced but never arriving: its buffer is freed after the timeout."""
        mag2 = self.pair.mag2
        offer = message(self.pair.mag1.leave(MN, MAG2, 10.0))
        mag2.receive(offer, MAG1, 10.0, 10.0)
        self.assertEqual(mag2.nextTimer(), 13.0)
        self.assertEqual(mag2.handleTimer(13.0), [Release(MN, PHOA, MAG1, "timeout")])
        self.assertIsNone(mag2.session(MN))

    def test_refusedOffer(self):
        """
        MAG2 refuses the offer: the mobile left all the same, so MAG1 goes
        on holding until a MAG asks for it (here MAG3, reactively) or the
        hold's time is up.
        """
        mag1 = self.pair.mag1
        offer = message(mag1.leave(MN, MAG2, 10.0))
        no = HandoverAcknowledge(offer.sequence, HACK_P, HackCode.INSUFFICIENT_RESOURCES)
        self.assertEqual(mag1.receive(no, MAG2, 10.0, 10.1), [])
        self.assertEqual(mag1.session(MN).state, State.DEPARTED)
        self.assertEqual(mag1.nextTimer(), 13.1)
        hi = HandoverInitiate(7, HI_P | HI_F, HiCode.REQUEST,
                              [mh.MobileNodeIdentifier(MN), ContextRequest([(22, b"")])])
        asked = mag1.receive(hi, MAG3, 10.2, 10.2)
        self.assertEqual(others(asked), [Forward(MN, PHOA, MAG3)])
        self.assertEqual(mag1.session(MN).state, State.FORWARDING)

    def test_offerUnanswered(self):
        """MAG2 never answers: MAG1 holds on, then frees the hold."""
        mag1 = self.pair.mag1
        offer = message(mag1.leave(MN, MAG2, 10.0))
        self.assertEqual(mag1.handleTimer(10.5), [])
        self.assertEqual(mag1.session(MN).state, State.DEPARTED)
        self.assertEqual(mag1.handleTimer(13.5), [Release(MN, PHOA, None, "timeout")])
        self.assertIsNone(mag1.session(MN))
        # MAG2's late answer changes nothing and is no refusal.
        late = HandoverAcknowledge(offer.sequence, HACK_P, HackCode.ACCEPTED)
        self.assertEqual(mag1.receive(late, MAG2, 13.6, 13.6), [])

    def test_backWhileOffering(self):
        """The mobile comes back before MAG2 answers: what MAG1 held goes to it."""
        mag1 = self.pair.mag1
        offer = message(mag1.leave(MN, MAG2, 10.0))
        self.assertEqual(mag1.arrive(MN, MAC, 10.1), [Release(MN, PHOA, None, "back"),
                                                     Fallback(MN, "came back")])
        self.assertIsNone(mag1.session(MN))
        late = HandoverAcknowledge(offer.sequence, HACK_P, HackCode.ACCEPTED)
        self.assertEqual(mag1.receive(late, MAG2, 10.2, 10.2), [])

    def test_leaveAfterDeparture(self):
        """Told where the mobile went after it left: already held, offered."""
        mag1 = self.pair.mag1
        self.assertEqual(mag1.depart(MN, 10.0), [Hold(MN, PHOA, None)])
        offer = mag1.leave(MN, MAG2, 10.1)
        self.assertEqual(others(offer), [])
        self.assertEqual(sent(offer), [("HandoverInitiate", HiCode.ALL_CONTEXT, MAG2)])

    def test_offerCrossesRequest(self):
        """
        The station roams faster than MAG1 hears of it (802.11v response
        late): MAG2 asks while MAG1 offers. The offer answers MAG2's request;
        MAG1, holding, answers the request with the context; MAG2 asks for
        the downlink once it holds, and MAG1 forwards once, whichever of the
        acceptance and that HI comes first; the answers that cross are no
        refusals.
        """
        mag1, mag2 = self.pair.mag1, self.pair.mag2
        request = mag2.arrive(MN, MAC, 10.0)[0].message
        offer = message(mag1.leave(MN, MAG2, 10.001))
        got = mag2.receive(offer, MAG1, 10.001, 10.002)
        self.assertEqual(others(got), [Hold(MN, PHOA, MAG1), ContextReady(CONTEXT, MAG1)])
        self.assertEqual(sent(got), [("HandoverAcknowledge", HackCode.ACCEPTED, MAG1),
                                     ("HandoverInitiate", HiCode.REQUEST, MAG1)])
        accept, ask = [e.message for e in got if type(e) is SendHandover]
        self.assertEqual(mag2.session(MN).state, State.RECEIVING)
        asked = mag1.receive(request, MAG2, 10.0, 10.002)
        self.assertEqual(others(asked), [])  # holding since the offer
        self.assertEqual(mag1.session(MN).state, State.FORWARDING)
        self.assertEqual(mag2.receive(message(asked), MAG1, 10.002, 10.003), [])
        self.assertEqual(mag1.receive(accept, MAG2, 10.002, 10.003), [])
        self.assertEqual(others(mag1.receive(ask, MAG2, 10.002, 10.004)),
                         [Forward(MN, PHOA, MAG2)])
        self.assertEqual((mag1.counters["refused"], mag2.counters["refused"]), (0, 0))
        self.assertEqual(mag2.session(MN).state, State.RECEIVING)
        self.assertEqual(mag1.session(MN).state, State.FORWARDING)

    def test_offerCrossesRequestAcceptedFirst(self):
        """The acceptance before the request: MAG1 forwards on it, and only once."""
        mag1, mag2 = self.pair.mag1, self.pair.mag2
        request = mag2.arrive(MN, MAC, 10.0)[0].message
        offer = message(mag1.leave(MN, MAG2, 10.001))
        accept, ask = [e.message for e in mag2.receive(offer, MAG1, 10.001, 10.002)
                       if type(e) is SendHandover]
        self.assertEqual(mag1.receive(accept, MAG2, 10.002, 10.003),
                         [Forward(MN, PHOA, MAG2)])
        self.assertEqual(others(mag1.receive(request, MAG2, 10.0, 10.004)), [])
        self.assertEqual(others(mag1.receive(ask, MAG2, 10.002, 10.005)), [])
        self.assertEqual(mag1.session(MN).state, State.FORWARDING)

    def test_leaveWhileForwarding(self):
        """Asked before told the station leaves: already forwarding, nothing more."""
        mag1, mag2 = self.pair.mag1, self.pair.mag2
        mag1.receive(mag2.arrive(MN, MAC, 10.0)[0].message, MAG2, 10.0, 10.001)
        self.assertEqual(mag1.leave(MN, MAG2, 10.002), [])
        self.assertEqual(mag1.session(MN).state, State.FORWARDING)

    def test_offerFromAnotherWhileRequesting(self):
        """An offer from a neighbour not asked (the mobile is here) is refused."""
        mag2 = self.pair.mag2
        mag2.arrive(MN, MAC, 10.0)
        mag2.session(MN).waiting.discard(MAG1)
        offer = message(self.pair.mag1.leave(MN, MAG2, 10.001))
        got = mag2.receive(offer, MAG1, 10.001, 10.002)
        self.assertEqual(sent(got), [("HandoverAcknowledge", HackCode.NOT_ACCEPTED, MAG1)])
        self.assertEqual(mag2.session(MN).state, State.REQUESTING)

    def test_leaveForStranger(self):
        self.assertEqual(self.pair.mag1.leave(MN, "2001:db8:9::1", 1.0), [])
        self.assertEqual(self.pair.mag1.leave(b"unbound", MAG2, 1.0), [])

    def test_forwardingTimeout(self):
        mag1 = self.pair.mag1
        hi = self.pair.mag2.arrive(MN, MAC, 100.0)[0].message
        mag1.receive(hi, MAG2, 100.0, 100.0)
        self.assertEqual(mag1.handleTimer(110.0), [StopForward(MN, PHOA, MAG2)])


class PingPongTests(SynchronousTestCase):
    """A mobile that goes MAG1 -> MAG2 -> MAG1 quickly never makes a loop."""

    def test_comeBack(self):
        pair = Pair()
        mag1, mag2 = pair.mag1, pair.mag2
        hi = mag2.arrive(MN, MAC, 100.0)[0].message
        hack = [e for e in mag1.receive(hi, MAG2, 100.0, 100.0) if type(e) is SendHandover]
        mag2.receive(hack[0].message, MAG1, 100.0, 100.001)
        # Back at MAG1 before MAG2 is bound: MAG1 stops forwarding first, then asks.
        pair.since[MN] = 100.01
        back = mag1.arrive(MN, MAC, 100.01)
        self.assertEqual(others(back)[0], StopForward(MN, PHOA, MAG2))
        self.assertEqual(mag1.session(MN).state, State.REQUESTING)
        request = [e.message for e in back if type(e) is SendHandover and e.peer == MAG2][0]
        # MAG2 hands it back: it stops receiving, forwards to MAG1.
        answer = mag2.receive(request, MAG1, 100.01, 100.011)
        self.assertEqual(others(answer), [Release(MN, PHOA, MAG1, "moved on"),
                                          Hold(MN, PHOA, None)])
        got = mag1.receive([e.message for e in answer if type(e) is SendHandover][0],
                           MAG2, 100.01, 100.012)
        self.assertEqual(others(got), [Hold(MN, PHOA, MAG2), ContextReady(CONTEXT, MAG2)])
        ask = [e.message for e in got if type(e) is SendHandover][0]
        self.assertEqual(others(mag2.receive(ask, MAG1, 100.013, 100.014)),
                         [Forward(MN, PHOA, MAG1)])
        # Never both directions at once.
        self.assertEqual((mag1.session(MN).state, mag2.session(MN).state),
                         (State.RECEIVING, State.FORWARDING))

    def test_staleRequestRefused(self):
        """
        A HI sent before the mobile came back (older than its attachment
        here) is refused: the mobile is here, forwarding would take its
        traffic away.
        """
        pair = Pair()
        hi = pair.mag2.arrive(MN, MAC, 100.0)[0].message
        pair.since[MN] = 100.2
        effects = pair.mag1.receive(hi, MAG2, 100.0, 100.3)
        self.assertEqual(effects[0], Refused(MAG2, f"{MN.decode()} attached here after "
                                                   f"{MAG2} asked"))
        self.assertEqual(sent(effects), [("HandoverAcknowledge", HackCode.NOT_ACCEPTED, MAG2)])
        self.assertIsNone(pair.mag1.session(MN))

    def test_lmaAddressOption(self):
        self.assertEqual(Context.fromMessage(HandoverAcknowledge(
            1, HACK_P, 5, [mh.MobileNodeIdentifier(MN), mh.HomeNetworkPrefix(PHOA, 128),
                           LmaAddress(LMA)])), Context(MN, PHOA, None, LMA))


class DualStackContextTests(SynchronousTestCase):
    """The IPv4 state of a dual-stack mobile in the context (RFC 5844 options)."""

    V4 = ("10.200.0.7/24", "10.200.0.1")

    def context(self, *extra):
        return Context.fromMessage(HandoverAcknowledge(1, HACK_P, 5, [
            mh.MobileNodeIdentifier(MN), mh.HomeNetworkPrefix(PHOA, 128), LmaAddress(LMA),
            *extra]))

    def test_roundTrip(self):
        from ipaddress import IPv4Address, IPv4Interface
        full = Context(MN, PHOA, MAC, LMA, IPv4Interface(self.V4[0]), IPv4Address(self.V4[1]),
                       False)
        hack = HandoverAcknowledge(1, HACK_P, 5, full.options())
        self.assertEqual([type(o).TYPE for o in hack.options], [8, 22, 25, 41, 36, 38, 39])
        self.assertEqual(Context.fromMessage(hack), full)
        self.assertEqual(full.homes, (PHOA, IPv4Address("10.200.0.7")))

    def test_fromEarlierMag(self):
        """A MAG of an earlier netlmm sends no IPv4 options: an IPv6-only context."""
        self.assertEqual(self.context(), Context(MN, PHOA, None, LMA))
        self.assertEqual(self.context().homes, (PHOA,))

    def test_partsAlone(self):
        """An address without its router, a router alone, or 0.0.0.0: no IPv4 state."""
        home = mh.IPv4HomeAddressRequest("10.200.0.7", 24)
        router = mh.IPv4DefaultRouterAddress(self.V4[1])
        for extra in ([home], [router], [mh.IPv4HomeAddressRequest(), router]):
            self.assertEqual(self.context(*extra), Context(MN, PHOA, None, LMA), extra)

    def test_noPrefixLength(self):
        """A home address sent with prefix length 0 is taken as a /32."""
        from ipaddress import IPv4Interface
        got = self.context(mh.IPv4HomeAddressRequest("10.200.0.7", 0),
                           mh.IPv4DefaultRouterAddress(self.V4[1]))
        self.assertEqual((got.ipv4, got.dhcpServer), (IPv4Interface("10.200.0.7/32"), None))
