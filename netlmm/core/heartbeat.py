"""
RFC 5847 heartbeats between a PMIP client (or an RFC 5213 MAG) and an LMA,
sans IO: the reachability of each peer and the detection of its restarts.

Every C{interval} seconds a Heartbeat Request (a new 32-bit sequence number)
goes to every watched peer; the peer answers with a Heartbeat Response
repeating the number and carrying its Restart Counter. A peer that left
C{missing} Requests in a row unanswered is declared unreachable
(L{PeerUnreachable}); its next Response makes it reachable again
(L{PeerReachable}). A Restart Counter other than the one the peer sent
before means it restarted and lost its state (L{PeerRestarted}): what to do
about it is the role's (the PMIP client registers its bindings again, the
LMA releases those the restarted client had registered).

Only a Response that answers the Request outstanding (same sequence number)
counts. An unsolicited Response (U flag, sent by a peer that just
restarted) is not believed by itself: it makes the core ask at once, and the
answer decides. So an off-path sender, who cannot guess the sequence number
(it starts at a random value), can neither fake a restart nor keep a dead
peer alive. A Binding Error "unknown MH type" from a watched peer means it
does not implement RFC 5847: the core stops asking it (L{PeerUnsupported}).

The role feeds every Heartbeat it receives to L{HeartbeatCore.receive} (which
also answers Requests, watched peer or not), tells the core which peers to
watch (L{HeartbeatCore.watch}, L{HeartbeatCore.unwatch}) and drives its timer
(L{HeartbeatCore.nextTimer}, L{HeartbeatCore.handleTimer}).
"""

import enum
import random
from collections import namedtuple
from ipaddress import IPv6Address

from netlmm.core.effects import SendMH
from netlmm.wire import mh

#: RFC 5847 section 6: HEARTBEAT_INTERVAL and MISSING_HEARTBEATS_ALLOWED.
DEFAULT_INTERVAL = 60.0
DEFAULT_MISSING = 3
#: At least this many seconds between two Requests an unsolicited Response
#: makes the core send to one peer (a flood of them asks no more often).
ASK_AGAIN_AFTER = 1.0


class PeerUnreachable(namedtuple("PeerUnreachable", "peer missed answeredBefore")):
    """
    C{peer} left C{missed} Heartbeat Requests in a row unanswered.
    C{answeredBefore}: False when it never answered one (it may not
    implement RFC 5847 and drop what it does not know).
    """

    __slots__ = ()


class PeerReachable(namedtuple("PeerReachable", "peer")):
    """C{peer}, declared unreachable before, answered again."""

    __slots__ = ()


class PeerRestarted(namedtuple("PeerRestarted", "peer old new lastHeard")):
    """
    C{peer}'s Restart Counter changed from C{old} to C{new}: it restarted
    and lost its PMIPv6 state. C{lastHeard}: when the peer last answered
    with the old counter (what it registered before that, it has lost).
    """

    __slots__ = ()


class PeerUnsupported(namedtuple("PeerUnsupported", "peer")):
    """C{peer} answered a Heartbeat with a Binding Error: it has no RFC 5847."""

    __slots__ = ()


class PeerState(enum.Enum):
    """What the core knows of a watched peer."""

    #: No Response yet (none asked, or the first one is out).
    UNKNOWN = "unknown"
    REACHABLE = "reachable"
    UNREACHABLE = "unreachable"
    #: It answered a Heartbeat with Binding Error "unknown MH type".
    UNSUPPORTED = "unsupported"


class Peer:
    """The heartbeat state of one watched peer."""

    __slots__ = ("address", "state", "sequence", "outstanding", "missed", "counter",
                 "lastHeard", "askedAt", "due", "answered")

    def __init__(self, address, sequence, due):
        self.address = address
        self.state = PeerState.UNKNOWN
        #: The sequence number of the last Request sent.
        self.sequence = sequence
        #: True while the last Request has no Response.
        self.outstanding = False
        #: Requests in a row without a Response.
        self.missed = 0
        #: The peer's last Restart Counter, None before the first.
        self.counter = None
        #: When the peer last answered (with C{counter}).
        self.lastHeard = None
        self.askedAt = None
        #: When the next Request is due.
        self.due = due
        #: True once the peer answered a Request.
        self.answered = False


class HeartbeatCore:
    """
    The heartbeats of one node with its peers.

    @param restartCounter: this node's Restart Counter (the role keeps it:
        L{netlmm.service.heartbeat.restartCounter}).
    @param interval: seconds between two Requests to a peer; 0 sends none
        (Requests from peers are still answered).
    @param missing: unanswered Requests in a row after which a peer is
        unreachable.
    @param log: a twisted.logger.Logger, or None.
    """

    def __init__(self, restartCounter, interval=DEFAULT_INTERVAL, missing=DEFAULT_MISSING,
                 log=None, rng=None):
        if interval < 0:
            raise ValueError(f"heartbeat interval must be >= 0, not {interval!r}")
        if type(missing) is not int or missing < 1:
            raise ValueError(f"missing heartbeats allowed must be an integer >= 1, "
                             f"not {missing!r}")
        self.restartCounter = restartCounter
        self.interval = interval
        self.missing = missing
        self._log = log
        self._random = rng if rng is not None else random.SystemRandom()
        #: Watched peers, IPv6Address -> L{Peer}.
        self.peers = {}
        self.counters = {"requestsSent": 0, "requestsAnswered": 0, "responses": 0,
                         "ignored": 0, "unreachable": 0, "restarts": 0}

    # ------------------------------------------------------------ peers

    def watch(self, address, now):
        """
        Start heartbeats with C{address} (the first Request at once, then
        every C{interval}); nothing when already watched or when the interval
        is 0.
        """
        address = IPv6Address(address)
        if not self.interval or address in self.peers:
            return []
        peer = Peer(address, self._random.getrandbits(32), now)
        self.peers[address] = peer
        return self.handleTimer(now) if peer.due <= now else []

    def unwatch(self, address):
        """Stop heartbeats with C{address} (forgets what was learnt of it)."""
        self.peers.pop(IPv6Address(address), None)

    def state(self, address):
        """The L{PeerState} of C{address}, None when not watched."""
        peer = self.peers.get(IPv6Address(address))
        return None if peer is None else peer.state

    # ------------------------------------------------------------ inputs

    def receive(self, message, source, now):
        """
        A Heartbeat or a Binding Error from C{source}: answer a Request,
        learn from a Response; effects.
        """
        if type(source) is not IPv6Address:
            source = IPv6Address(source)
        if type(message) is mh.BindingError:
            return self._bindingError(message, source)
        if not message.response:
            self.counters["requestsAnswered"] += 1
            return [SendMH(mh.Heartbeat(message.sequence, mh.HB_R,
                                        [mh.RestartCounter(self.restartCounter)]), source)]
        peer = self.peers.get(source)
        if peer is None or peer.state is PeerState.UNSUPPORTED:
            self.counters["ignored"] += 1
            return []
        if message.unsolicited:
            return self._unsolicited(peer, now)
        if not peer.outstanding or message.sequence != peer.sequence:
            self.counters["ignored"] += 1
            return []
        self.counters["responses"] += 1
        effects = []
        peer.outstanding = False
        peer.missed = 0
        peer.answered = True
        if peer.state is PeerState.UNREACHABLE:
            effects.append(PeerReachable(source))
        peer.state = PeerState.REACHABLE
        option = message.option(mh.RestartCounter)
        if option is not None:
            if peer.counter is not None and option.value != peer.counter:
                self.counters["restarts"] += 1
                effects.append(PeerRestarted(source, peer.counter, option.value,
                                             peer.lastHeard))
            peer.counter = option.value
        peer.lastHeard = now
        return effects

    def _unsolicited(self, peer, now):
        """Ask at once (at most every L{ASK_AGAIN_AFTER}); the answer decides."""
        if peer.askedAt is not None and now - peer.askedAt < ASK_AGAIN_AFTER:
            self.counters["ignored"] += 1
            return []
        return self._ask(peer, now, count=False)

    def _bindingError(self, be, source):
        peer = self.peers.get(source)
        if (peer is None or be.status != mh.BE_UNKNOWN_MH_TYPE
                or peer.state is PeerState.UNSUPPORTED or peer.answered):
            return []
        peer.state = PeerState.UNSUPPORTED
        peer.outstanding = False
        peer.due = None
        return [PeerUnsupported(source)]

    # ------------------------------------------------------------ time

    def nextTimer(self):
        """When the next Request is due, or None."""
        due = [p.due for p in self.peers.values() if p.due is not None]
        return min(due) if due else None

    def handleTimer(self, now):
        """Send the Requests due at C{now}; count the ones left unanswered."""
        effects = []
        for peer in self.peers.values():
            if peer.due is None or peer.due > now:
                continue
            effects.extend(self._ask(peer, now, count=True))
        return effects

    def _ask(self, peer, now, count):
        effects = []
        if peer.outstanding and count:
            peer.missed += 1
            if peer.missed == self.missing and peer.state is not PeerState.UNREACHABLE:
                peer.state = PeerState.UNREACHABLE
                self.counters["unreachable"] += 1
                effects.append(PeerUnreachable(peer.address, peer.missed, peer.answered))
        peer.sequence = (peer.sequence + 1) & 0xFFFFFFFF
        peer.outstanding = True
        peer.askedAt = now
        peer.due = now + self.interval
        self.counters["requestsSent"] += 1
        effects.append(SendMH(mh.Heartbeat(peer.sequence), peer.address))
        return effects

    def announce(self, now):
        """
        Unsolicited Responses (U flag) with this node's Restart Counter to
        every watched peer: sent at start, so that peers learn of a restart
        without waiting for their next Request.
        """
        return [SendMH(mh.Heartbeat(0, mh.HB_U | mh.HB_R,
                                    [mh.RestartCounter(self.restartCounter)]), p.address)
                for p in self.peers.values()]
