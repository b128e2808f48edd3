"""
Context transfer and data forwarding between MAGs (draft Appendix D), with
the messages of fast handovers for Proxy Mobile IPv6 (RFC 5949), sans-IO.

One L{Session} per mobile in handover at this MAG, in one of these states:

    new MAG (target)                       previous MAG (source)
    ----------------                       ---------------------
    REQUESTING  HI sent to the neighbours  OFFERING    HI with the context sent
                (reactive: the mobile is                 to the target (predictive:
                here, its context is not)                the mobile is leaving)
    PREPARED    context offered by the     FORWARDING  context given: downlink
                previous MAG; the mobile                held for the target until
                is not here yet                         it asks (HI with F), then
                                                        sent there
    RECEIVING   the mobile is here with
                its context; forwarded
                downlink is held until it
                can take it, then delivered

    (none) --arrive--> REQUESTING --context--> RECEIVING --bound--> (none)
    REQUESTING --refused by all / timeout--> (none)        [today's behaviour]
    (none) --offer--> PREPARED --arrive--> RECEIVING
    PREPARED --timeout--> (none)                           [buffer freed]
    (none) --asked--> FORWARDING --done / timeout--> (none)
    (none) --depart--> DEPARTED --asked--> FORWARDING  [held meanwhile]
    DEPARTED --arrive--> (none)  [back: the hold goes to it]; --timeout--> (none)
    (none) --leave--> OFFERING --accepted--> FORWARDING  [held until accepted]
    OFFERING --refused / timeout--> DEPARTED   [still held: the mobile left]
    OFFERING --arrive--> (none)                [back: the hold goes to it]
    FORWARDING --arrive--> (none)      [the mobile came back: stop first]
    REQUESTING --offer--> RECEIVING    [the offer crossed our request]
    FORWARDING --leave--> FORWARDING   [the target asked before we offered]
    RECEIVING / PREPARED --asked--> FORWARDING  [it moved on at once]

Reactive (the mobile attaches at the new MAG, which knows nothing of it):
the new MAG sends a HI (P and U flags, a Context Request) to its neighbours;
the one that serves the mobile holds the mobile's downlink and answers with
a HAck carrying the context (MN identifier, Home Network Prefix, link-layer
identifier, LMA address); the others answer 'requested context not
available'. Once the new MAG holds the mobile's downlink itself (its route
into the hold is in) it sends that MAG a HI with the F flag, and the
downlink held and arriving is forwarded: sent earlier, it would find no
route at the new MAG, which would send it back to the core. Predictive (the previous MAG learns the
mobile is leaving and to which neighbour, e.g. from an 802.11v BSS
transition): the previous MAG holds the mobile's downlink at once (what it
would send on the access link now reaches nobody), sends the HI with the
context, and forwards what it held, and what follows, once the target
accepts (which it does once it holds); if the target refuses or does not answer, it goes on holding as
for a mobile that left without saying where to. When the new MAG is bound
at the LMA it sends a HI with code 'forwarding done' and the previous MAG
stops.

A forwarded packet is never forwarded again: a MAG forwards a mobile only
while it has no session delivering to it, and a mobile that comes back ends
the forwarding before anything is asked. A HI sent before the mobile came
back (its timestamp older than the mobile's attachment here) is refused.

Messages arrive here already authenticated (L{netlmm.service.handover});
this core checks what they say. Nothing here imports Twisted.
"""

import enum
from collections import namedtuple
from ipaddress import IPv4Interface, IPv6Address, IPv6Network

from netlmm.core.effects import InvalidInput
from netlmm.wire import mh
from netlmm.wire.fho import (
    HACK_F, HACK_P, HACK_U, HI_F, HI_P, HI_U, ContextRequest, HackCode, HandoverAcknowledge,
    HandoverInitiate, HiCode, LmaAddress,
)


class State(enum.Enum):
    """Where a mobile's handover is, at this MAG."""

    REQUESTING = "REQUESTING"
    PREPARED = "PREPARED"
    RECEIVING = "RECEIVING"
    OFFERING = "OFFERING"
    DEPARTED = "DEPARTED"
    FORWARDING = "FORWARDING"


S = State
#: (state, input) -> next state; None stands for "no session".
TRANSITIONS = {
    (None, "arrive"): S.REQUESTING,
    (S.REQUESTING, "context"): S.RECEIVING,
    (S.REQUESTING, "refused"): S.REQUESTING,
    (S.REQUESTING, "fallback"): None,
    (S.REQUESTING, "timeout"): None,
    (S.REQUESTING, "leave"): None,
    (S.REQUESTING, "offer"): S.RECEIVING,
    (None, "offer"): S.PREPARED,
    (S.PREPARED, "offer"): S.PREPARED,
    (S.PREPARED, "arrive"): S.RECEIVING,
    (S.PREPARED, "timeout"): None,
    (S.PREPARED, "asked"): S.FORWARDING,
    (S.RECEIVING, "bound"): None,
    (S.RECEIVING, "timeout"): None,
    (S.RECEIVING, "asked"): S.FORWARDING,
    (S.RECEIVING, "leave"): S.OFFERING,
    (S.RECEIVING, "arrive"): S.RECEIVING,
    (None, "asked"): S.FORWARDING,
    (S.FORWARDING, "asked"): S.FORWARDING,
    (S.FORWARDING, "done"): None,
    (S.FORWARDING, "timeout"): None,
    (S.FORWARDING, "arrive"): S.REQUESTING,
    (S.FORWARDING, "leave"): S.FORWARDING,
    (None, "leave"): S.OFFERING,
    (S.OFFERING, "accepted"): S.FORWARDING,
    (S.OFFERING, "refused"): S.DEPARTED,
    (S.OFFERING, "timeout"): S.DEPARTED,
    (S.OFFERING, "arrive"): None,
    (S.OFFERING, "asked"): S.FORWARDING,
    (None, "depart"): S.DEPARTED,
    (S.DEPARTED, "asked"): S.FORWARDING,
    (S.DEPARTED, "arrive"): None,
    (S.DEPARTED, "timeout"): None,
    (S.DEPARTED, "leave"): S.OFFERING,
}

#: What the target asks of the previous MAG: the mobile's prefix / address,
#: its link-layer identifier and its LMA (RFC 5949 6.2.1), and its IPv4 state
#: (RFC 5844: home address, default router, DHCP support mode). A MAG of an
#: earlier netlmm answers without the IPv4 options.
REQUESTED = ((mh.HomeNetworkPrefix.TYPE, b""), (mh.MobileNodeLinkLayerIdentifier.TYPE, b""),
             (LmaAddress.TYPE, b""), (mh.IPv4HomeAddressRequest.TYPE, b""),
             (mh.IPv4DefaultRouterAddress.TYPE, b""), (mh.IPv4DhcpSupportMode.TYPE, b""))


class Context(namedtuple("Context", "mnId phoa linkLayer lma ipv4 ipv4Router dhcpServer",
                         defaults=(None, None, None))):
    """
    What a MAG knows of a mobile it serves: MN identifier (bytes), pHoA
    (IPv6Address) or per-MN prefix (IPv6Network), link-layer identifier
    (bytes or None), LMA address; for a dual-stack mobile (RFC 5844) its
    IPv4 home address (IPv4Interface: address and home prefix length), IPv4
    default router (IPv4Address) and whether the MAG serves its DHCPv4
    (True) or relays it (False); None for an IPv6-only mobile.
    """

    __slots__ = ()

    def options(self):
        """
        The context as mobility options: RFC 5949's, and RFC 5844's IPv4
        Home Address Request (type 36, the address assigned), Default-Router
        Address (38) and DHCP Support Mode (39) for a dual-stack mobile.
        """
        phoa = self.phoa
        options = [mh.MobileNodeIdentifier(self.mnId)]
        if isinstance(phoa, IPv6Network):
            options.append(mh.HomeNetworkPrefix(phoa.network_address, phoa.prefixlen))
        else:
            options.append(mh.HomeNetworkPrefix(phoa, 128))
        if self.linkLayer:
            options.append(mh.MobileNodeLinkLayerIdentifier(self.linkLayer))
        if self.lma is not None:
            options.append(LmaAddress(self.lma))
        if self.ipv4 is not None and self.ipv4Router is not None:
            options.append(mh.IPv4HomeAddressRequest(self.ipv4.ip, self.ipv4.network.prefixlen))
            options.append(mh.IPv4DefaultRouterAddress(self.ipv4Router))
            if self.dhcpServer is not None:
                options.append(mh.IPv4DhcpSupportMode(self.dhcpServer))
        return options

    @classmethod
    def fromMessage(cls, message):
        """
        The context a HI or HAck carries, or None when it lacks one. IPv4
        state counts only whole: a home address (not 0.0.0.0) with its
        default router; either alone is left out.
        """
        mnId = message.option(mh.MobileNodeIdentifier)
        hnp = message.option(mh.HomeNetworkPrefix)
        if mnId is None or hnp is None or hnp.unspecified:
            return None
        if hnp.prefixLength == 128:
            phoa = IPv6Address(hnp.prefix)
        else:
            phoa = IPv6Network(f"{hnp.prefix}/{hnp.prefixLength}", strict=False)
        lli = message.option(mh.MobileNodeLinkLayerIdentifier)
        lma = message.option(LmaAddress)
        ipv4 = router = dhcp = None
        home = message.option(mh.IPv4HomeAddressRequest)
        dra = message.option(mh.IPv4DefaultRouterAddress)
        if home is not None and not home.unspecified and dra is not None:
            ipv4 = IPv4Interface(f"{home.address}/{home.prefixLength or 32}")
            router = dra.address
            mode = message.option(mh.IPv4DhcpSupportMode)
            dhcp = mode.server if mode is not None else None
        return cls(mnId.identifier, phoa, lli.identifier if lli else None,
                   lma.address if lma else None, ipv4, router, dhcp)

    @property
    def homes(self):
        """Every address whose downlink is this mobile's: the pHoA / prefix, the IPv4 home address."""
        if self.ipv4 is None:
            return (self.phoa,)
        return (self.phoa, self.ipv4.ip)


# ---------------------------------------------------------------- effects


class SendHandover(namedtuple("SendHandover", "message peer")):
    """Send a HI or HAck to the neighbour MAG C{peer}."""

    __slots__ = ()


class Forward(namedtuple("Forward", "mnId phoa peer")):
    """Source: send the downlink for C{phoa} to the MAG C{peer} (a tunnel)."""

    __slots__ = ()


class StopForward(namedtuple("StopForward", "mnId phoa peer linger",
                             defaults=(False,))):
    """
    Source: stop forwarding C{phoa}; it is routed as usual again. With
    C{linger} (the target is bound), after a while: what is still on its
    way here (held, queued, in flight from the LMA) goes to the target too.
    """

    __slots__ = ()


class Hold(namedtuple("Hold", "mnId phoa peer")):
    """
    Target: accept what C{peer} forwards for C{phoa} and hold the downlink
    until the mobile can take it (then deliver it, in order).
    """

    __slots__ = ()


class Release(namedtuple("Release", "mnId phoa peer reason")):
    """
    Target: the handover of C{phoa} from C{peer} is over (C{reason}
    'bound', 'timeout', 'moved on'): stop holding (what is still held goes
    to the mobile if it is reachable, else is dropped) and route as usual.
    """

    __slots__ = ()


class ContextReady(namedtuple("ContextReady", "context peer")):
    """Target: the mobile's context arrived; its attachment may go on with it."""

    __slots__ = ()


class Fallback(namedtuple("Fallback", "mnId reason")):
    """Target: no context will come; the attachment goes on as without handover."""

    __slots__ = ()


class Refused(namedtuple("Refused", "peer reason")):
    """A message from C{peer} was refused (for the log and the counters)."""

    __slots__ = ()


# ---------------------------------------------------------------- core


class Session:
    """One mobile's handover at this MAG."""

    __slots__ = ("mnId", "state", "peer", "context", "sequence", "deadline", "waiting",
                 "retransmitAt", "since", "forwarding")

    def __init__(self, mnId, now):
        self.mnId = mnId
        self.state = None
        #: the other MAG (source: the target; target: the previous MAG)
        self.peer = None
        self.context = None
        self.sequence = None
        self.deadline = None
        #: neighbours asked and not answered yet (REQUESTING)
        self.waiting = set()
        self.retransmitAt = None
        self.since = now
        #: FORWARDING: the downlink goes to the peer (else held for it until asked)
        self.forwarding = False

    def __repr__(self):
        return f"Session({self.mnId!r}, {self.state}, peer={self.peer})"


class HandoverCore:
    """
    @param address: this MAG's address (the pCoA), where neighbours send.
    @param neighbors: the neighbour MAGs' addresses.
    @param lookup: C{lookup(mnId)} -> the L{Context} of a mobile this MAG
        serves (bound here), or None; with C{attachedSince(mnId)} -> when it
        attached here (POSIX seconds) or None.
    @param contextTimeout: how long a new MAG waits for the context before
        going on without it (a HI is sent again at half of it).
    @param forwardTimeout: longest forwarding, in case the target never says
        it is done.
    @param prepareTimeout: how long a target holds for a mobile announced
        by its previous MAG that does not arrive.
    """

    def __init__(self, address, neighbors=(), lookup=None, attachedSince=None,
                 contextTimeout=0.5, forwardTimeout=10.0, prepareTimeout=3.0, log=None):
        self.address = IPv6Address(address)
        self.neighbors = [IPv6Address(n) for n in neighbors]
        self.lookup = lookup or (lambda mnId: None)
        self.attachedSince = attachedSince or (lambda mnId: None)
        self.contextTimeout = contextTimeout
        self.forwardTimeout = forwardTimeout
        self.prepareTimeout = prepareTimeout
        self._log = log
        self.sessions = {}
        self._sequence = 0
        #: (peer, sequence) -> mnId of the HIs waiting for a HAck.
        self._pending = {}
        #: (peer, sequence) of HIs answered or given up lately: late HAcks are expected.
        self._answered = {}
        self.counters = dict(requested=0, contexts=0, fallbacks=0, forwarded=0, offered=0,
                             prepared=0, refused=0, unknown=0, learned=0, late=0)

    # ------------------------------------------------------------ queries

    def session(self, mnId):
        """The session of C{mnId}, or None."""
        return self.sessions.get(mnId)

    def nextTimer(self):
        """When a session times out or a HI is sent again next, or None."""
        times = [t for s in self.sessions.values()
                 for t in (s.deadline, s.retransmitAt) if t is not None]
        return min(times) if times else None

    # ------------------------------------------------------------ inputs

    def arrive(self, mnId, linkLayer, now):
        """
        A mobile attached here. With a prepared context it goes on at once;
        a mobile being forwarded from here came back (forwarding stops);
        otherwise the neighbours are asked for its context.
        """
        s = self.sessions.get(mnId)
        state = None if s is None else s.state
        if state in (S.PREPARED, S.RECEIVING):
            self._step(s, "arrive")
            s.state = S.RECEIVING
            s.deadline = now + self.forwardTimeout
            return [ContextReady(s.context, s.peer)]
        if state in (S.DEPARTED, S.OFFERING):
            # Back before anything was forwarded: what was held goes to it.
            self._step(s, "arrive")
            del self.sessions[mnId]
            self._forgetPending(s)
            self._say("{mnId} came back", mnId=_show(mnId))
            return [Release(mnId, s.context.phoa, None, "back"),
                    Fallback(mnId, "came back")]
        effects = []
        if state == S.FORWARDING:
            self._step(s, "arrive")
            effects.append(StopForward(mnId, s.context.phoa, s.peer))
            self._say("{mnId} came back; forwarding to {peer} stopped", mnId=_show(mnId),
                      peer=s.peer)
            del self.sessions[mnId]
        elif state == S.REQUESTING:
            # Attached again while asking: the question stands.
            return []
        if not self.neighbors:
            return effects + [Fallback(mnId, "no neighbours")]
        s = Session(mnId, now)
        s.state = self._step(None, "arrive")
        s.sequence = self._nextSequence()
        s.waiting = set(self.neighbors)
        s.deadline = now + self.contextTimeout
        s.retransmitAt = now + self.contextTimeout / 2
        self.sessions[mnId] = s
        self.counters["requested"] += 1
        return effects + self._request(s, linkLayer, s.waiting)

    def learn(self, peer):
        """
        The PMIP client named C{peer} as the other MAG of a handoff: a
        neighbour from now on (asked for contexts, heard), besides the
        configured ones. True when it is new. (Whether this MAG shares a key
        with it is the service's to check.)
        """
        peer = IPv6Address(peer)
        if peer == self.address or peer in self.neighbors:
            return False
        self.neighbors.append(peer)
        self.counters["learned"] += 1
        self._say("{peer} is a neighbour (named by the PMIP client)", peer=peer)
        return True

    def late(self, mnId, peer, now):
        """
        C{mnId} is bound here and came from C{peer}, which this MAG did not
        ask for its context (a neighbour just learned, L{learn}): ask it now,
        with F, so that what it holds for the departed mobile is forwarded
        here at once, and say 'forwarding done' straight after (this MAG is
        bound: forwarding lingers a moment, then stops). Their answers are
        expected and change nothing. Nothing for a mobile in handover here.
        """
        peer = IPv6Address(peer)
        if mnId in self.sessions or peer not in self.neighbors:
            return []
        self._say("{mnId} came from {peer}: asking it for what it holds", mnId=_show(mnId),
                  peer=peer)
        self.counters["late"] += 1
        ask = HandoverInitiate(self._nextSequence(), HI_P | HI_U | HI_F, HiCode.REQUEST,
                               [mh.MobileNodeIdentifier(mnId), ContextRequest(REQUESTED)])
        done = HandoverInitiate(self._nextSequence(), HI_P | HI_F, HiCode.FORWARDING_DONE,
                                [mh.MobileNodeIdentifier(mnId)])
        for hi in (ask, done):
            self._answered[(peer, hi.sequence)] = True
        return [SendHandover(ask, peer), SendHandover(done, peer)]

    def depart(self, mnId, now):
        """
        A mobile bound here left the access link without saying where to:
        hold its downlink until the new MAG asks (reactive handover, no
        packet lost meanwhile) or C{prepareTimeout} passes.
        """
        context = self.lookup(mnId)
        if context is None or mnId in self.sessions:
            return []
        s = Session(mnId, now)
        s.state = self._step(None, "depart")
        s.context = context
        s.deadline = now + self.prepareTimeout
        self.sessions[mnId] = s
        return [Hold(mnId, context.phoa, None)]

    def leave(self, mnId, peer, now):
        """
        The mobile is about to move to the neighbour C{peer} (predictive):
        hold its downlink and offer C{peer} its context. Nothing happens for
        a mobile not bound here or an unknown neighbour.
        """
        peer = IPv6Address(peer)
        context = self.lookup(mnId)
        if context is None or peer not in self.neighbors:
            self._say("no predictive handover of {mnId} to {peer}: {why}", mnId=_show(mnId),
                      peer=peer, why="not bound here" if context is None
                      else "not a neighbour")
            return []
        s = self.sessions.get(mnId)
        effects = []
        holding = False
        if s is not None and s.state == S.FORWARDING:
            # The target asked for it before this MAG learnt it was leaving
            # (a roam faster than the 802.11v response): forwarding already.
            self._step(s, "leave")
            return []
        if s is not None:
            self._step(s, "leave")
            if s.state == S.RECEIVING:
                effects.append(Release(mnId, s.context.phoa, s.peer, "moved on"))
            elif s.state == S.DEPARTED:
                context = s.context
                holding = True
        else:
            s = Session(mnId, now)
            self.sessions[mnId] = s
        s.state = S.OFFERING
        s.peer = peer
        s.context = context
        s.sequence = self._nextSequence()
        s.deadline = now + self.contextTimeout
        s.retransmitAt = None
        self._pending[(peer, s.sequence)] = mnId
        self.counters["offered"] += 1
        hi = HandoverInitiate(s.sequence, HI_P | HI_F | HI_U, HiCode.ALL_CONTEXT,
                              context.options())
        if not holding:
            effects.append(Hold(mnId, context.phoa, None))
        return effects + [SendHandover(hi, peer)]

    def bound(self, mnId, now):
        """The mobile is bound at the LMA through this MAG: its handover is over."""
        s = self.sessions.get(mnId)
        if s is None or s.state != S.RECEIVING:
            return []
        self._step(s, "bound")
        del self.sessions[mnId]
        hi = HandoverInitiate(self._nextSequence(), HI_P | HI_F, HiCode.FORWARDING_DONE,
                              [mh.MobileNodeIdentifier(mnId)])
        # Its HAck is expected and changes nothing.
        self._answered[(s.peer, hi.sequence)] = True
        self._say("{mnId} bound here; {peer} may stop forwarding", mnId=_show(mnId),
                  peer=s.peer)
        return [SendHandover(hi, s.peer), Release(mnId, s.context.phoa, s.peer, "bound")]

    def receive(self, message, peer, sentAt, now):
        """
        An authenticated HI or HAck from the neighbour C{peer}, sent at
        C{sentAt} (its replay-protection timestamp, POSIX seconds).
        """
        peer = IPv6Address(peer)
        if peer not in self.neighbors:
            return [Refused(peer, "not a neighbour")]
        if type(message) is HandoverInitiate:
            return self._initiate(message, peer, sentAt, now)
        if type(message) is HandoverAcknowledge:
            return self._acknowledge(message, peer, now)
        return [Refused(peer, f"unexpected {type(message).__name__}")]

    def handleTimer(self, now):
        """Send HIs again, give up questions and forwarding that lasted too long."""
        effects = []
        for s in list(self.sessions.values()):
            if s.retransmitAt is not None and s.retransmitAt <= now:
                s.retransmitAt = None
                if s.state == S.REQUESTING and s.waiting:
                    effects.extend(self._request(s, None, s.waiting))
            if s.deadline is None or s.deadline > now:
                continue
            if s.state == S.OFFERING:
                self._say("{peer} did not answer the offer of {mnId}; holding until a MAG "
                          "asks for it", peer=s.peer, mnId=_show(s.mnId))
                self._departed(s, now, "timeout")
                continue
            state = s.state
            self._step(s, "timeout")
            del self.sessions[s.mnId]
            self._forgetPending(s)
            if state == S.REQUESTING:
                self.counters["fallbacks"] += 1
                self._say("no context for {mnId} from {peers} in {t:g} s; going on "
                          "without it", mnId=_show(s.mnId),
                          peers=", ".join(map(str, sorted(s.waiting))), t=self.contextTimeout)
                effects.append(Fallback(s.mnId, "no answer"))
            elif state == S.DEPARTED:
                self._say("{mnId} left and no MAG asked for it in {t:g} s",
                          mnId=_show(s.mnId), t=self.prepareTimeout)
                effects.append(Release(s.mnId, s.context.phoa, None, "timeout"))
            elif state in (S.PREPARED, S.RECEIVING):
                self._say("{mnId}: handover from {peer} timed out in state {state}",
                          mnId=_show(s.mnId), peer=s.peer, state=state.value)
                effects.append(Release(s.mnId, s.context.phoa, s.peer, "timeout"))
            elif state == S.FORWARDING:
                self._say("{mnId}: forwarding to {peer} stopped after {t:g} s",
                          mnId=_show(s.mnId), peer=s.peer, t=self.forwardTimeout)
                effects.append(StopForward(s.mnId, s.context.phoa, s.peer))
        return effects

    # ------------------------------------------------------------ HI

    def _initiate(self, hi, peer, sentAt, now):
        mnIdOption = hi.option(mh.MobileNodeIdentifier)
        if mnIdOption is None or hi.malformed():
            return self._answer(hi, peer, HackCode.NOT_ACCEPTED,
                                "HI without a valid MN identifier")
        mnId = mnIdOption.identifier
        if hi.code == HiCode.FORWARDING_DONE:
            s = self.sessions.get(mnId)
            if s is None or s.state != S.FORWARDING or s.peer != peer:
                return self._answer(hi, peer, HackCode.NOT_ACCEPTED,
                                    f"'forwarding done' for {_show(mnId)}, not forwarded "
                                    f"to {peer}")
            self._step(s, "done")
            del self.sessions[mnId]
            self._say("forwarding of {mnId} to {peer} done", mnId=_show(mnId), peer=peer)
            return [StopForward(mnId, s.context.phoa, peer, True),
                    SendHandover(self._hack(hi, HackCode.ACCEPTED), peer)]
        if hi.code == HiCode.ALL_CONTEXT:
            return self._offered(hi, mnId, peer, now)
        if hi.code != HiCode.REQUEST:
            return self._answer(hi, peer, HackCode.NOT_ACCEPTED, f"HI code {hi.code}")
        return self._asked(hi, mnId, peer, sentAt, now)

    def _asked(self, hi, mnId, peer, sentAt, now):
        """A new MAG asks for the context of a mobile that attached there."""
        context = self.lookup(mnId)
        s = self.sessions.get(mnId)
        if context is None and s is not None and s.state in (S.PREPARED, S.RECEIVING,
                                                            S.DEPARTED, S.FORWARDING):
            # Moved on before being bound here (what this MAG was given), or
            # gone from here, its context given already.
            context = s.context
        if context is None:
            self.counters["unknown"] += 1
            return self._answer(hi, peer, HackCode.CONTEXT_NOT_AVAILABLE,
                                f"context of {_show(mnId)}, which is not bound here")
        since = self.attachedSince(mnId)
        if since is not None and sentAt is not None and since > sentAt:
            return self._answer(hi, peer, HackCode.NOT_ACCEPTED,
                                f"{_show(mnId)} attached here after {peer} asked")
        effects = []
        if s is not None and s.state == S.REQUESTING:
            return self._answer(hi, peer, HackCode.NOT_ACCEPTED,
                                f"{_show(mnId)} is attaching here too")
        # Held here already (the mobile left, or is leaving to the target).
        holding = s is not None and s.state in (S.DEPARTED, S.OFFERING)
        again = s is not None and s.state == S.FORWARDING and s.peer == peer
        if s is not None:
            self._step(s, "asked")
            if s.state == S.FORWARDING and s.peer != peer:
                effects.append(StopForward(mnId, s.context.phoa, s.peer))
                s.forwarding = False
            elif s.state in (S.PREPARED, S.RECEIVING):
                effects.append(Release(mnId, s.context.phoa, s.peer, "moved on"))
            elif s.state == S.OFFERING:
                self._forgetPending(s)
        else:
            s = Session(mnId, now)
            self._step(None, "asked")
            self.sessions[mnId] = s
        s.state = S.FORWARDING
        s.peer = peer
        s.context = context
        s.deadline = now + self.forwardTimeout
        s.retransmitAt = None
        forward = hi.flag(HI_F) and not s.forwarding
        if again and forward:
            self._say("{peer} holds {mnId}: forwarding its downlink there", peer=peer,
                      mnId=_show(mnId))
        if not again:
            self.counters["forwarded"] += 1
            self._say("context of {mnId} to {peer}; {what}", mnId=_show(mnId), peer=peer,
                      what="forwarding its downlink there" if forward
                      else "holding its downlink until asked to forward it")
            if not forward and not holding:
                # U without F: hold until the target's own hold is ready (it
                # asks again with F), which forwarding at once would outrun.
                effects.append(Hold(mnId, context.phoa, None))
        flags = HACK_P | (HACK_F if hi.flag(HI_F) else 0) | (HACK_U if hi.flag(HI_U) else 0)
        hack = HandoverAcknowledge(hi.sequence, flags, HackCode.CONTEXT_ACCEPTED,
                                   context.options())
        effects.append(SendHandover(hack, peer))
        if forward:
            s.forwarding = True
            effects.append(Forward(mnId, context.phoa, peer))
        return effects

    def _offered(self, hi, mnId, peer, now):
        """The previous MAG says the mobile is coming here, with its context."""
        context = Context.fromMessage(hi)
        if context is None:
            return self._answer(hi, peer, HackCode.NOT_ACCEPTED,
                                "offered context without a Home Network Prefix")
        s = self.sessions.get(mnId)
        if s is not None and s.state == S.REQUESTING and peer in s.waiting:
            return self._crossed(hi, s, context, peer, now)
        if s is not None and s.state not in (S.PREPARED,):
            return self._answer(hi, peer, HackCode.NOT_ACCEPTED,
                                f"{_show(mnId)} is in handover here ({s.state.value})")
        if s is None:
            s = Session(mnId, now)
            self.sessions[mnId] = s
        s.state = self._step(s if s.state else None, "offer")
        s.peer = peer
        s.context = context
        s.deadline = now + self.prepareTimeout
        self.counters["prepared"] += 1
        self._say("{peer} announces {mnId} ({phoa}); holding its traffic", peer=peer,
                  mnId=_show(mnId), phoa=context.phoa)
        flags = HACK_P | (HACK_F if hi.flag(HI_F) else 0) | (HACK_U if hi.flag(HI_U) else 0)
        return [Hold(mnId, context.phoa, peer),
                SendHandover(HandoverAcknowledge(hi.sequence, flags, HackCode.ACCEPTED,
                                                 [mh.MobileNodeIdentifier(mnId)]), peer)]

    def _crossed(self, hi, s, context, peer, now):
        """
        The mobile attached here and this MAG asked its neighbours while its
        previous MAG, told it was leaving, offered its context: the offer
        and the request crossed. The offer answers the request (the previous
        MAG forwards on either the request or this acceptance).
        """
        self._receiving(s, "offer", context, peer, now)
        self._say("{peer} announces {mnId} ({phoa}), which is here already: its context",
                  peer=peer, mnId=_show(s.mnId), phoa=context.phoa)
        flags = HACK_P | (HACK_F if hi.flag(HI_F) else 0) | (HACK_U if hi.flag(HI_U) else 0)
        # The previous MAG may take our request (which asks no forwarding)
        # before this acceptance: forwarding is asked for in any case.
        return [Hold(s.mnId, context.phoa, peer), ContextReady(context, peer),
                SendHandover(HandoverAcknowledge(hi.sequence, flags, HackCode.ACCEPTED,
                                                 [mh.MobileNodeIdentifier(s.mnId)]), peer),
                self._askForwarding(s.mnId, peer)]

    # ------------------------------------------------------------ HAck

    def _acknowledge(self, hack, peer, now):
        key = (peer, hack.sequence)
        mnId = self._pending.pop(key, None)
        s = None if mnId is None else self.sessions.get(mnId)
        if s is None or s.state not in (S.REQUESTING, S.OFFERING):
            if key in self._answered:
                # The answer to a HI sent twice, or after the question was settled.
                return []
            return [Refused(peer, f"HAck {hack.sequence} answers no HI pending")]
        self._answered[key] = True
        while len(self._answered) > 1024:
            del self._answered[next(iter(self._answered))]
        if s.state == S.OFFERING:
            if hack.accepted:
                self._step(s, "accepted")
                s.state = S.FORWARDING
                s.deadline = now + self.forwardTimeout
                s.forwarding = True
                self.counters["forwarded"] += 1
                return [Forward(s.mnId, s.context.phoa, peer)]
            self._say("{peer} refused {mnId}: {why}; holding until a MAG asks for it",
                      peer=peer, mnId=_show(s.mnId), why=HackCode.name(hack.code))
            self._departed(s, now, "refused")
            return []
        s.waiting.discard(peer)
        context = Context.fromMessage(hack) if hack.accepted else None
        if context is None or context.mnId != s.mnId:
            self._step(s, "refused")
            if s.waiting:
                return []
            self._step(s, "fallback")
            del self.sessions[s.mnId]
            self._forgetPending(s)
            self.counters["fallbacks"] += 1
            self._say("no neighbour has the context of {mnId}; going on without it",
                      mnId=_show(s.mnId))
            return [Fallback(s.mnId, "no neighbour has it")]
        self._receiving(s, "context", context, peer, now)
        self._say("context of {mnId} from {peer}: {phoa}", mnId=_show(s.mnId), peer=peer,
                  phoa=context.phoa)
        effects = [Hold(s.mnId, context.phoa, peer), ContextReady(context, peer)]
        if not hack.flag(HACK_F):
            # The previous MAG holds the downlink: once this MAG holds too
            # (the HI waits for the hold's route), it asks for it.
            effects.append(self._askForwarding(s.mnId, peer))
        return effects

    # ------------------------------------------------------------ internals

    def _request(self, s, linkLayer, peers):
        # U, not F: the previous MAG holds the mobile's downlink and sends
        # the context; forwarding is asked for once this MAG holds too
        # (L{_askForwarding}): what comes earlier would find no route here.
        options = [mh.MobileNodeIdentifier(s.mnId), ContextRequest(REQUESTED)]
        if linkLayer:
            options.append(mh.MobileNodeLinkLayerIdentifier(linkLayer))
        hi = HandoverInitiate(s.sequence, HI_P | HI_U, HiCode.REQUEST, options)
        effects = []
        for peer in sorted(peers):
            self._pending[(peer, s.sequence)] = s.mnId
            effects.append(SendHandover(hi, peer))
        return effects

    def _askForwarding(self, mnId, peer):
        """The HI (F) that asks C{peer}, which gave the context, to forward; its HAck changes nothing."""
        hi = HandoverInitiate(self._nextSequence(), HI_P | HI_F, HiCode.REQUEST,
                              [mh.MobileNodeIdentifier(mnId)])
        self._answered[(peer, hi.sequence)] = True
        return SendHandover(hi, peer)

    def _answer(self, hi, peer, code, reason):
        self.counters["refused"] += 1
        return [Refused(peer, reason), SendHandover(self._hack(hi, code), peer)]

    @staticmethod
    def _hack(hi, code):
        mnId = hi.option(mh.MobileNodeIdentifier)
        return HandoverAcknowledge(hi.sequence, HACK_P, code,
                                   [mnId] if mnId is not None else [])

    def _nextSequence(self):
        self._sequence = (self._sequence + 1) & 0xFFFF
        return self._sequence

    def _receiving(self, s, what, context, peer, now):
        """The mobile is here and its context came from C{peer} (RECEIVING)."""
        s.state = self._step(s, what)
        self._forgetPending(s)
        s.peer = peer
        s.context = context
        s.waiting = set()
        s.retransmitAt = None
        s.deadline = now + self.forwardTimeout
        self.counters["contexts"] += 1

    def _departed(self, s, now, what):
        """An offer came to nothing: the mobile left all the same (DEPARTED)."""
        s.state = self._step(s, what)
        self._forgetPending(s)
        s.peer = None
        s.deadline = now + self.prepareTimeout
        s.retransmitAt = None

    def _forgetPending(self, s):
        for key in [k for k, v in self._pending.items() if v == s.mnId]:
            del self._pending[key]
            self._answered[key] = True

    def _step(self, s, what):
        state = s.state if isinstance(s, Session) else s
        nextState = TRANSITIONS.get((state, what), "invalid")
        if nextState == "invalid":
            raise InvalidInput(what, None if state is None else state.value)
        return nextState

    def _say(self, fmt, **kw):
        if self._log is not None:
            self._log.info("handover: " + fmt, **kw)


def _show(mnId):
    return mnId.decode("utf-8", "replace")
