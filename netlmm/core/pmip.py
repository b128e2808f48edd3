"""
The PMIP client (draft section 4.7), sans-IO.

It keeps a cache MN identifier -> (home, pCoA, sequence, state) and turns the
MAGs' Triggers and Detaches into Proxy Binding Updates to the LMA, and the
LMA's acknowledgements into Notifications. Because the PMIP client for a
mobile stays fixed while it moves, the sequence numbers live here and never
travel between gateways (section 4.2). A mobile's home is its pHoA (an
L{IPv6Address}) or, in the per-MN prefix mode (draft E.3, RFC 5213), its
prefix (an L{IPv6Network}); it may also have an IPv4 home address (E.2,
RFC 5844). What goes into each PBU depends on the profile the client speaks
to its LMA (L{netlmm.core.profiles}).

Each mobile is one explicit state machine: L{PmipCore._step} is the only
place its state changes, by the table L{TRANSITIONS} (an input the table
does not allow raises L{InvalidInput} before anything changes):

    (none) --attach--> REGISTERING --accepted--> BOUND
    (none) --check (SLAAC, peers)--> AWAITING_PEERS --unique--> REGISTERING
    BOUND --handoff--> HANDING_OVER --accepted--> BOUND
    BOUND --refresh--> REFRESHING --accepted--> BOUND
    BOUND --detach--> DETACH_PENDING --deregister--> DEREGISTERING --accepted--> (none)
    REGISTERING / HANDING_OVER / REFRESHING --unusable--> DEREGISTERING
    REGISTERING / REFRESHING --failed--> (none);  HANDING_OVER --failed--> BOUND
    (none) --deregister (a Detach for a mobile not in the cache)--> DEREGISTERING

"unusable" is an accepted PBA the client cannot use (a prefix where an
address was asked, a prefix too long for SLAAC, no home at all): the binding
the LMA just made is deregistered at once and the MAG told why.

Address conflict detection with other PMIP clients (Appendix B) is in
L{netlmm.core.conflicts}; the mobile waits in AWAITING_PEERS meanwhile.

A client restarted with bindings from its store asks its peers about each
restored pHoA before the binding's first refresh: a peer that holds the
mobile now (its MAG moved it there, draft E.1) answers held-here, and the
binding is forgotten without a PBU, so the restarted client neither takes
the mobile back nor sends stale PBUs. The mobile stays BOUND meanwhile.
"""

import enum
import heapq
import random
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Network

from netlmm.core import records as read
from netlmm.core.conflicts import ConflictDetector
from netlmm.core.effects import BadRecord, InvalidInput, Notify, Persist, SendMH, debugging
from netlmm.core.records import fields
from netlmm.core.profiles import NetlmmDialect, TIMESTAMP, describeStatus
from netlmm.security.replay import DEFAULT_MAX_OFFSET, ClockOffset
from netlmm.wire import mh
from netlmm.wire.control import (
    AddressMode, Conflict, Notification, Result, mnIdProblem, showMnId, withContainer,
    withPeerMag,
)

_ZERO = IPv6Address("::")
#: The longest per-MN prefix a mobile can form addresses in by SLAAC.
MAX_PREFIX_LENGTH = 64


#: How many MAG addresses the client keeps one shared object for (a MAG
#: naming ever new addresses must not grow the table without bound).
INTERNED = 4096


class State(str, enum.Enum):
    """Where a mobile's binding stands (see the module docstring)."""

    REGISTERING = "REGISTERING"
    BOUND = "BOUND"
    HANDING_OVER = "HANDING_OVER"
    REFRESHING = "REFRESHING"
    DETACH_PENDING = "DETACH_PENDING"
    DEREGISTERING = "DEREGISTERING"
    AWAITING_PEERS = "AWAITING_PEERS"

    def __str__(self):
        return self.value


class Event(str, enum.Enum):
    """The inputs that move a mobile from one L{State} to another."""

    ATTACH = "attach"
    HANDOFF = "handoff"
    CHECK = "check"
    UNIQUE = "unique"
    CONFLICT = "conflict"
    DETACH = "detach"
    DEREGISTER = "deregister"
    REFRESH = "refresh"
    ACCEPTED = "accepted"
    FAILED = "failed"
    UNUSABLE = "unusable"
    #: The LMA revoked the binding (RFC 5846).
    REVOKED = "revoked"

    def __str__(self):
        return self.value


REGISTERING = State.REGISTERING
BOUND = State.BOUND
HANDING_OVER = State.HANDING_OVER
REFRESHING = State.REFRESHING
DETACH_PENDING = State.DETACH_PENDING
DEREGISTERING = State.DEREGISTERING
AWAITING_PEERS = State.AWAITING_PEERS

#: (state, event) -> the state the event leads to. None stands for "no
#: entry" (the mobile is forgotten).
TRANSITIONS = {
    # A Trigger while no binding exists (or it is being deregistered).
    (None, Event.ATTACH): REGISTERING,
    (REGISTERING, Event.ATTACH): REGISTERING,
    (DETACH_PENDING, Event.ATTACH): REGISTERING,
    (DEREGISTERING, Event.ATTACH): REGISTERING,
    (AWAITING_PEERS, Event.ATTACH): AWAITING_PEERS,
    # A Trigger while a binding exists.
    (BOUND, Event.HANDOFF): HANDING_OVER,
    (HANDING_OVER, Event.HANDOFF): HANDING_OVER,
    (REFRESHING, Event.HANDOFF): HANDING_OVER,
    (DETACH_PENDING, Event.HANDOFF): HANDING_OVER,
    # Appendix B.
    (None, Event.CHECK): AWAITING_PEERS,
    (AWAITING_PEERS, Event.UNIQUE): REGISTERING,
    (AWAITING_PEERS, Event.CONFLICT): None,
    (AWAITING_PEERS, Event.DETACH): None,
    # Detach, refresh, deregistration.
    (REGISTERING, Event.DETACH): DETACH_PENDING,
    (BOUND, Event.DETACH): DETACH_PENDING,
    (HANDING_OVER, Event.DETACH): DETACH_PENDING,
    (REFRESHING, Event.DETACH): DETACH_PENDING,
    (DETACH_PENDING, Event.DEREGISTER): DEREGISTERING,
    # A Detach for a mobile the client lost (it stopped between the LMA's
    # PBAck and keeping the record): what the LMA holds is deregistered.
    (None, Event.DEREGISTER): DEREGISTERING,
    (BOUND, Event.REFRESH): REFRESHING,
    # The LMA's answer (or its absence).
    (REGISTERING, Event.ACCEPTED): BOUND,
    (HANDING_OVER, Event.ACCEPTED): BOUND,
    (REFRESHING, Event.ACCEPTED): BOUND,
    (DEREGISTERING, Event.ACCEPTED): None,
    (REGISTERING, Event.FAILED): None,
    (HANDING_OVER, Event.FAILED): BOUND,
    (REFRESHING, Event.FAILED): None,
    (DEREGISTERING, Event.FAILED): None,
    (REGISTERING, Event.UNUSABLE): DEREGISTERING,
    (HANDING_OVER, Event.UNUSABLE): DEREGISTERING,
    (REFRESHING, Event.UNUSABLE): DEREGISTERING,
    # The LMA ended the binding (RFC 5846 revocation), whatever was under way.
    **{(state, Event.REVOKED): None for state in State},
}

#: The Notification result for an LMA's refusal (the log says which status).
_RESULTS = {
    mh.Status.DAD_FAILED: Result.ADDRESS_CONFLICT,
    mh.Status.BCE_PBU_PREFIX_SET_DO_NOT_MATCH: Result.PHOA_MISMATCH,
    mh.Status.MIPV6_MESG_ID_REQD: Result.NOT_AUTHORIZED,
    mh.Status.MIPV6_AUTH_FAIL: Result.NOT_AUTHORIZED,
    mh.Status.PROXY_REG_NOT_ENABLED: Result.NOT_AUTHORIZED,
    mh.Status.MAG_NOT_AUTHORIZED_FOR_PROXY_REG: Result.NOT_AUTHORIZED,
    mh.Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX: Result.NOT_AUTHORIZED,
    mh.Status.NOT_AUTHORIZED_FOR_IPV4_MOBILITY_SERVICE: Result.NOT_AUTHORIZED,
    mh.Status.NOT_AUTHORIZED_FOR_IPV4_HOME_ADDRESS: Result.NOT_AUTHORIZED,
    mh.Status.NOT_AUTHORIZED_FOR_IPV6_MOBILITY_SERVICE: Result.NOT_AUTHORIZED,
}
#: Statuses after which a handoff or refresh is sent again as a new
#: registration: the LMA has no binding any more (it restarted, or the
#: binding expired).
_LOST = (mh.Status.MISSING_MN_IDENTIFIER_OPTION, mh.Status.NOT_HOME_AGENT_FOR_MN)
#: A deregistration's answers that leave the mobile with no binding: accepted,
#: no binding for the home (133), the home bound to another mobile (the LMA's
#: answer to a PBU naming the mobile: DAD failed for an address, not authorized
#: for a prefix).
_GONE = (mh.Status.ACCEPTED, mh.Status.NOT_HOME_AGENT_FOR_MN, mh.Status.DAD_FAILED,
         mh.Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX)
#: Statuses whose PBA carries the LMA's time (RFC 5213 5.5).
_CLOCK = (mh.Status.TIMESTAMP_MISMATCH, mh.Status.TIMESTAMP_LOWER_THAN_PREV_ACCEPTED)
#: PBUs a second when every binding is registered again with a restarted LMA.
REREGISTER_RATE = 2000.0
#: How often a PBU is sent again after a resynchronisation (135, 144, 156).
_RESYNCS = 3
#: What L{PmipCore._unusable} leaves as it was.
_UNCHANGED = object()


def resultFor(status):
    """The Notification result telling a MAG that the LMA refused with C{status}."""
    return _RESULTS.get(status, Result.PBACK_REJECTED)


class _Pending:
    """A PBU waiting for its acknowledgement."""

    __slots__ = ("kind", "pcoa", "transaction", "mag", "sequences", "timeout",
                 "resendAt", "resyncs", "lifetime", "withMnId")

    def __init__(self, kind, pcoa, transaction, mag, lifetime):
        #: attach, handoff, reattach (same MAG), refresh or deregister.
        self.kind = kind
        self.pcoa = pcoa
        self.transaction = transaction
        self.mag = mag
        self.lifetime = lifetime
        self.sequences = []
        self.timeout = 0.0
        self.resendAt = 0.0
        self.resyncs = 0
        #: Register afresh although a binding exists (the LMA lost it).
        self.withMnId = False


class Mobile:
    """The PMIP client's cache entry for one mobile."""

    __slots__ = ("mnId", "mode", "home", "ipv4Request", "ipv4", "ipv4Router",
                 "linkLayerId", "accessTechnology", "pcoa", "mag", "sequence",
                 "state", "pending", "lifetime", "refreshAt", "expiry", "detachAt",
                 "detach", "check", "saved", "savedMag", "restored")

    def __init__(self, mnId, sequence, mode=AddressMode.STATIC):
        self.mnId = mnId
        #: The Trigger's address mode: PREFIX, or one of the pHoA modes.
        self.mode = mode
        #: The pHoA (IPv6Address) or per-MN prefix (IPv6Network), or None
        #: until the LMA assigns it.
        self.home = None
        #: What the MAG asked for IPv4 (0.0.0.0/0: any), or None.
        self.ipv4Request = None
        #: The IPv4 home address (IPv4Interface) and default router the
        #: LMA assigned, or None.
        self.ipv4 = None
        self.ipv4Router = None
        self.linkLayerId = None
        self.accessTechnology = None
        #: The MAG address the LMA has bound, or None.
        self.pcoa = None
        #: The MAG that triggered last (the mobile's current MAG).
        self.mag = None
        self.sequence = sequence
        self.state = None
        self.pending = None
        self.lifetime = 0
        self.refreshAt = None
        self.expiry = None
        self.detachAt = None
        #: (transaction, mag) of a Detach waiting for its answer.
        self.detach = None
        #: The L{netlmm.core.conflicts.Check} in state AWAITING_PEERS.
        self.check = None
        #: A record of this mobile is kept (L{Persist}): forgetting it
        #: must delete that record.
        self.saved = False
        #: The MAG that the kept record names as the mobile's current one.
        self.savedMag = None
        #: Loaded from the store and not acknowledged since: the LMA may
        #: have given the home to another mobile meanwhile, so PBUs name it.
        self.restored = False

    @property
    def phoa(self):
        """The pHoA, when the home is one address."""
        return self.home if isinstance(self.home, IPv6Address) else None

    @property
    def prefix(self):
        """The per-MN prefix, when the home is one."""
        return self.home if isinstance(self.home, IPv6Network) else None

    def __repr__(self):
        return (f"Mobile({self.mnId!r}, home={self.home}, pcoa={self.pcoa}, "
                f"state={self.state}, seq={self.sequence})")


def _homeOf(trigger):
    """What C{trigger} names: its pHoA or prefix (all-zero ones ask: None)."""
    if trigger.phoa is not None and trigger.phoa != _ZERO:
        return trigger.phoa
    if trigger.prefix is not None and trigger.prefix.prefixlen > 0:
        return trigger.prefix
    return None


def _prefixMode(mode):
    return mode == AddressMode.PREFIX


class PmipCore:
    """
    @param lmaAddress: where PBUs go.
    @param lifetime: the lifetime asked for, seconds (granted may be less).
    @param initialTimeout: first retransmission timeout (RFC 6275
        INITIAL_BINDACK_TIMEOUT, 1 s); it doubles up to C{maxTimeout}
        (MAX_BINDACK_TIMEOUT, 32 s), after which the PBU is given up.
    @param refreshRatio: refresh when this share of the granted lifetime has
        passed (or earlier, if the LMA's Binding Refresh Advice says so).
    @param detachDelay: how long to wait after a Detach before deregistering,
        so a mobile that reappears at another MAG keeps its binding.
    @param rng: a L{random.Random} for the initial sequence numbers.
    @param security: None, or an object with C{protect(pbu, mnId, now)}
        (the PBU to send, or None when no SA is at hand) and
        C{accept(pback, raw, mnId, now)} (None to accept, "resync" to send
        again, else the reason to drop), such as
        L{netlmm.security.guard.PmipGuard}. It must not do I/O.
    @param peers: the other PMIP clients of the domain, asked before a
        stateless pHoA is bound (L{netlmm.core.conflicts}).
    @param peerTimeout: how long to wait for the peers' answers; then the
        PBU goes anyway.
    @param profile: what the PBUs look like (L{netlmm.core.profiles}); the
        netlmm dialect by default.
    @param maxOffset: how far (seconds) an RFC 5213 status 156/157 may set
        the clock offset of the PBUs' Timestamp option.
    """

    def __init__(self, lmaAddress, lifetime=3600, initialTimeout=1.0,
                 maxTimeout=32.0, refreshRatio=0.8, detachDelay=1.5,
                 rng=None, log=None, security=None, peers=(), peerTimeout=1.0,
                 profile=None, maxOffset=DEFAULT_MAX_OFFSET):
        self.lmaAddress = IPv6Address(lmaAddress)
        if not 4 <= lifetime <= mh.MAX_LIFETIME_UNITS * mh.LIFETIME_UNIT:
            raise ValueError(f"lifetime must be 4..262140 seconds, not {lifetime}")
        if not 0 < initialTimeout <= maxTimeout:
            raise ValueError("need 0 < initialTimeout <= maxTimeout")
        if not 0 < refreshRatio < 1:
            raise ValueError("refreshRatio must be between 0 and 1")
        if detachDelay < 0:
            raise ValueError("detachDelay must not be negative")
        self.lifetime = lifetime
        self.initialTimeout = initialTimeout
        self.maxTimeout = maxTimeout
        self.refreshRatio = refreshRatio
        self.detachDelay = detachDelay
        self._rng = rng or random.Random()
        self._log = log
        self.security = security
        self.profile = profile if profile is not None else NetlmmDialect()
        self.conflicts = ConflictDetector(peers, peerTimeout)
        #: The RFC 5213 Timestamp's offset from our clock (status 156).
        self.clock = ClockOffset(maxOffset)
        #: PBAcks dropped because they failed authentication.
        self.unauthenticated = 0
        #: Per-binding events, counted rather than logged one by one.
        self.counters = {"bound": 0, "handoffs": 0, "refreshed": 0,
                         "deregistered": 0, "rejected": 0, "unusable": 0,
                         "lost": 0, "unreachable": 0, "reregistered": 0, "revoked": 0,
                         "revocationsDropped": 0}
        self.mobiles = {}
        self._byHome = {}
        #: Sequence number -> the mobiles with a PBU in flight carrying it,
        #: to match a PBA whose MN Identifier and home are missing or malformed.
        self._inFlight = {}
        # (due, mnId): a lazy heap; an entry is live while the mobile's own
        # due time still equals it.
        self._timers = []
        # One object per MAG address: many mobiles share a few MAGs.
        self._addresses = {}

    # ------------------------------------------------------------ queries

    @property
    def peers(self):
        """The other PMIP clients of the domain (Appendix B)."""
        return self.conflicts.peers

    @property
    def conflictCounters(self):
        """Appendix B counters (L{ConflictDetector.counters})."""
        return self.conflicts.counters

    def mobile(self, mnId):
        """The cache entry for C{mnId}, or None."""
        return self.mobiles.get(mnId)

    # ------------------------------------------------------------ persistence

    def snapshot(self):
        """
        A L{Persist} for every bound mobile, as the changes emit them.
        Operations in flight are not kept: their MAGs time out and trigger
        again.
        """
        return [_persist(m) for m in self.mobiles.values() if m.saved]

    def restore(self, records, now):
        """
        Load records made by L{_record} (and those of earlier releases,
        which name a pHoA only): unexpired bindings come back BOUND and are
        refreshed at once, which also resynchronises the sequence number
        with the LMA (status 135) if PBUs went out after the record was
        written. Returns a Persist deletion for each expired record left
        out; the refreshes come from the timer. May be called once per
        chunk of a large state. Raises L{BadRecord} naming the first bad
        record.
        """
        # With peers, a restored pHoA is first checked with them (is the
        # mobile held there now?); their channels need a moment to connect.
        delay = self.conflicts.peerTimeout if self.peers else 0
        effects = []
        for i, r in enumerate(records):
            m = _fromRecord(i, r)
            m.pcoa, m.mag = self._intern(m.pcoa), self._intern(m.mag)
            if m.mnId in self.mobiles:
                # A second record of a mobile (a JSON state file of old had
                # no keys): its key is the first one's.
                continue
            if m.expiry <= now:
                effects.append(Persist(m.mnId, None))
                continue
            m.state = BOUND
            m.refreshAt = now + delay
            m.saved = m.restored = True
            m.savedMag = m.mag
            self.mobiles[m.mnId] = m
            self._byHome[m.home] = m
            self._reschedule(m)
        return effects

    def nextTimer(self):
        """The earliest time a retransmission, refresh or deregistration is due."""
        heap = self._timers
        while heap:
            due, mnId = heap[0]
            m = self.mobiles.get(mnId)
            if m is not None and _due(m) == due:
                return due
            heapq.heappop(heap)
        return None

    # ------------------------------------------------------------ inputs

    def receiveTrigger(self, trigger, now):
        """A MAG reports C{trigger.mnId} attached at C{trigger.magAddress}."""
        mag = self._intern(trigger.magAddress)
        refusal = self.profile.refusal(trigger)
        if refusal is None and trigger.prefix is not None \
                and trigger.prefix.prefixlen > MAX_PREFIX_LENGTH:
            refusal = (f"the prefix {trigger.prefix} is longer than /{MAX_PREFIX_LENGTH}: "
                       "the mobile could not form addresses in it (SLAAC)")
        if refusal is not None:
            self._say("Trigger {txn} from {mag} for {mnId} refused: {why}",
                      txn=trigger.transaction, mag=mag, mnId=showMnId(trigger.mnId),
                      why=refusal)
            return [Notify(Notification(trigger.transaction, Result.MALFORMED,
                                        trigger.mnId), mag)]
        home = _homeOf(trigger)
        m = self.mobiles.get(trigger.mnId)
        if m is not None and self._waiting(m, trigger.transaction, mag):
            # The MAG sends its unanswered Triggers again when it reconnects;
            # this one's answer comes when its PBU is acknowledged.
            self._say("Trigger {txn} for {mnId} from {mag} again; still in progress",
                      txn=trigger.transaction, mnId=showMnId(m.mnId), mag=mag)
            return []
        if m is not None and (_prefixMode(m.mode) != _prefixMode(trigger.mode)
                              or (home is not None and m.home is not None
                                  and home != m.home)):
            self._say("Trigger for {mnId} names {got} ({mode}), cache has {cached}",
                      mnId=showMnId(trigger.mnId), got=home or "no home",
                      mode=AddressMode.NAMES[trigger.mode], cached=m.home or "no home yet")
            return [Notify(self._notification(trigger.transaction, Result.PHOA_MISMATCH, m),
                           mag)]
        if home is not None:
            other = self._byHome.get(home)
            if other is not None and other is not m:
                self._say("{home} of {mnId} is already used by {other}", home=home,
                          mnId=showMnId(trigger.mnId), other=showMnId(other.mnId))
                return [Notify(Notification(
                    trigger.transaction, Result.ADDRESS_CONFLICT, trigger.mnId,
                    **_homeFields(home)), mag)]
        if m is not None and m.state == AWAITING_PEERS:
            # Still asking the peers: the newer Trigger is answered instead.
            self._step(m, Event.ATTACH)
            c = m.check
            effects = [Notify(self._notification(c.transaction, Result.SUPERSEDED, m),
                              c.mag)]
            c.transaction, c.mag = trigger.transaction, mag
            m.mag = mag
            return effects
        if m is None and self.conflicts.wanted(trigger):
            return self._askPeers(trigger, now)
        bound = m is not None and m.pcoa is not None and m.state != DEREGISTERING
        effects = []
        if m is None:
            m = Mobile(trigger.mnId, self._rng.randrange(0x10000), trigger.mode)
            self._step(m, Event.ATTACH)
            self.mobiles[m.mnId] = m
        else:
            self._step(m, Event.HANDOFF if bound else Event.ATTACH)
            effects.extend(self._supersede(m, mag))
            if not bound:
                # A deregistration may already have removed the binding:
                # register afresh (with the MN identifier).
                m.pcoa = None
        if m.home is None and home is not None:
            m.home = home
            self._byHome[home] = m
        self._learn(m, trigger)
        m.mag = mag
        m.detachAt = None
        kind = "attach" if not bound else ("handoff" if m.pcoa != mag else "reattach")
        effects.extend(self._start(m, _Pending(kind, mag, trigger.transaction, mag,
                                               self.lifetime), now))
        self._reschedule(m)
        return effects

    def receiveConflictResponse(self, peer, response, now):
        """A peer's L{netlmm.wire.control.ConflictResponse} to one of our requests."""
        m = self._checking(response.transaction, peer)
        if m is None:
            self._say("Conflict Detection Response {txn} from {peer} answers no "
                      "pending request; dropped", txn=response.transaction, peer=peer)
            return []
        outcome = self.conflicts.answered(m.check, peer, response.result)
        if m.check.verifying:
            return self._verified(m, outcome, peer, now)
        if outcome == "conflict":
            c = m.check
            self._step(m, Event.CONFLICT)
            self._say("peer {peer}: {phoa} of {mnId} is used by another mobile; "
                      "address conflict", peer=peer, phoa=m.home, mnId=showMnId(m.mnId))
            return self._forget(m) + [Notify(Notification(
                c.transaction, Result.ADDRESS_CONFLICT, m.mnId, response.phoa), c.mag)]
        return self._unique(m, now) if outcome == "unique" else []

    def peerFailed(self, transaction, peer, now):
        """The request C{transaction} could not reach C{peer} (not connected)."""
        m = self._checking(transaction, peer)
        if m is None:
            return []
        if self.conflicts.answered(m.check, peer, None) == "unique":
            return self._unique(m, now)
        return []

    def _verify(self, m, now):
        """Ask the peers whether one of them holds restored mobile C{m} now."""
        m.check, ask = self.conflicts.ask(m.mnId, m.home, None, None, now, verifying=True)
        self._say("restored {mnId} ({phoa}): asking {n} peer(s) whether one holds it "
                  "now, before refreshing", mnId=showMnId(m.mnId), phoa=m.home,
                  n=len(self.peers))
        return [ask]

    def _verified(self, m, outcome, peer, now):
        """
        The check of restored mobile C{m} is over (C{outcome} 'held'), or
        may be ('unique', 'conflict', None: still waiting).
        """
        if outcome == "held":
            self._say("restored {mnId} ({phoa}) is held by peer {peer} now (relocated "
                      "while this client was down): forgotten, no PBU",
                      mnId=showMnId(m.mnId), phoa=m.home, peer=peer)
            return self._forget(m)
        if outcome is None:
            return []
        # Nobody holds it (a conflict is the LMA's to judge): refresh now.
        self.conflicts.done(m.check)
        m.check = None
        return self._refresh(m, now)

    def _refresh(self, m, now):
        """Refresh bound mobile C{m}'s binding."""
        self._step(m, Event.REFRESH)
        m.refreshAt = None
        return self._start(m, _Pending("refresh", m.pcoa, None, None, self.lifetime), now)

    def answerConflict(self, request, now=None):
        """
        The L{netlmm.wire.control.ConflictResponse} to a peer's request:
        conflict when another mobile here has (or is checking) that pHoA
        (L{ConflictDetector.answer}).
        """
        other = self._byHome.get(request.phoa)
        holder = None if other is None else (other.mnId, other.state == AWAITING_PEERS)
        response = self.conflicts.answer(request, holder)
        if response.result == Conflict.CONFLICT_DETECTED:
            self._say("peer asks about {phoa} for {mnId}: used here by {other}",
                      phoa=request.phoa, mnId=showMnId(request.mnId),
                      other=showMnId(other.mnId))
        return response

    def receiveDetach(self, detach, now):
        """A MAG reports C{detach.mnId} gone from C{detach.magAddress}."""
        m = self.mobiles.get(detach.mnId)
        mag = detach.magAddress
        if m is None:
            return self._unknownDetach(detach, now)
        if m.detach == (detach.transaction, mag):
            # Sent again by a MAG that reconnected: the first one is in hand.
            return []
        if m.mag != mag:
            # The mobile has moved on: this MAG only needs to clean up.
            return self._keepMag(m) + [
                Notify(self._notification(detach.transaction, Result.MOVED, m), mag)]
        state = self._step(m, Event.DETACH)
        effects = self._supersede(m, None)
        if state is None:
            # Still checking with the peers: no PBU went out, nothing is bound.
            return effects + self._forget(m) + [Notify(Notification(
                detach.transaction, Result.SUCCESS, m.mnId), mag)]
        self._clearPending(m)
        m.detach = (detach.transaction, mag)
        m.detachAt = now + self.detachDelay
        m.refreshAt = None
        self._reschedule(m)
        return effects

    def _unknownDetach(self, detach, now):
        """
        A Detach for a mobile this client has no entry for: answered
        unknown-mn at once. The LMA may still hold a binding this client
        made and lost (it stopped between the PBAck and keeping the
        record): that is deregistered, naming the mobile, with no answer
        to wait for (status 133 means there was none).
        """
        mnId, mag = detach.mnId, detach.magAddress
        self._say("Detach {txn} from {mag} for {mnId}, which this client does not know: "
                  "answered unknown-mn; deregistering what the LMA may hold for it",
                  txn=detach.transaction, mag=mag, mnId=showMnId(mnId))
        effects = [Notify(Notification(detach.transaction, Result.UNKNOWN_MN, mnId), mag)]
        home = detach.phoa if detach.phoa != _ZERO else None
        if home is not None and home in self._byHome:
            # Another mobile has that home now: nothing of this one is left.
            return effects
        m = Mobile(mnId, self._rng.randrange(0x10000))
        self._step(m, Event.DEREGISTER)
        m.mag = mag
        self.mobiles[mnId] = m
        if home is not None:
            m.home = home
            self._byHome[home] = m
        effects.extend(self._start(m, _Pending("deregister", None, None, None, 0), now))
        self._reschedule(m)
        return effects

    def receiveMH(self, message, raw, source, now):
        """
        A Mobility Header message from C{source}; C{raw} is its bytes as
        received (forwarded to the MAG in the Notification's container).
        """
        if type(message) is mh.BindingError:
            self._say("Binding Error {status} from {source}", status=message.status,
                      source=source)
            return []
        if type(message) is mh.RevocationIndication:
            return self._revocation(message, raw, source, now)
        if type(message) is not mh.BindingAcknowledgement:
            self._say("{kind} from {source} is not for a PMIP client; dropped",
                      kind=type(message).__name__, source=source)
            return []
        # IPv6Address() of an IPv6Address goes through its text and back.
        if (source if type(source) is IPv6Address else IPv6Address(source)) \
                != self.lmaAddress:
            self._say("PBAck from {source}, which is not the LMA; dropped",
                      source=source)
            return []
        m = self._matchAck(message)
        if m is None:
            self._say("PBAck seq {seq} status {status} from {source} matches no pending "
                      "PBU; dropped", seq=message.sequence,
                      status=mh.Status.name(message.status), source=source)
            return []
        for bad in message.malformed():
            self._say("PBAck seq {seq} from {source} for {mnId}: malformed {option} "
                      "option ({why}); the rest of it is used", seq=message.sequence,
                      source=source,
                      mnId=showMnId(m.mnId), option=bad.kind.__name__, why=bad.reason)
        if self.security is not None:
            why = self.security.accept(message, raw, m.mnId, now)
            if why is not None:
                p = m.pending
                if why == "resync" and p.resyncs < _RESYNCS:
                    # The LMA told us its time: resend with a fresh timestamp.
                    self._say("LMA refused {mnId}'s timestamp; clock offset "
                              "corrected, resending", mnId=showMnId(m.mnId))
                    return self._resend(m, p, now)
                # Drop it; the retransmission timer keeps running.
                self.unauthenticated += 1
                self._say("PBAck seq {seq} from {source} for {mnId} dropped: {why}",
                          seq=message.sequence, source=source,
                          mnId=showMnId(m.mnId), why=why)
                return []
        effects = self._ack(m, message, raw, now)
        self._reschedule(m)
        return effects

    def _revocation(self, bri, raw, source, now):
        """
        The LMA revoked a binding (RFC 5846 Binding Revocation Indication,
        its operator ran `netlmm ctl deregister`): the mobile its MN
        Identifier option (or else its first Home Network Prefix option)
        names is dropped as the LMA already dropped it, the MAG whose tunnel
        carries it is told (unsolicited binding-lost: it takes the tunnel
        down and withdraws the prefix), a Trigger in hand is answered
        superseded; the Binding Revocation Acknowledgement says success, or
        128 (binding does not exist) for a mobile this client does not
        have. A BRI from another node than the LMA is dropped; with RFC
        4285, one that is not authentic too (L{PmipGuard.acceptRevocation}),
        and the BRA is signed with the BRI's SA.
        """
        if (source if type(source) is IPv6Address else IPv6Address(source)) \
                != self.lmaAddress:
            self._say("Binding Revocation Indication from {source}, which is not the LMA; "
                      "dropped", source=source)
            return []
        sa = None
        if self.security is not None:
            sa = self.security.acceptRevocation(bri, raw, now)
            if type(sa) is str:
                self.counters["revocationsDropped"] += 1
                self._say("Binding Revocation Indication seq {seq} from {source} dropped: "
                          "{why}", seq=bri.sequence, source=source, why=sa)
                return []

        def answer(status):
            bra = mh.RevocationAcknowledgement(status, bri.sequence, bri.flags & mh.BR_P,
                                               options)
            if sa is not None:
                bra = self.security.answerRevocation(bra, bri, sa)
            return SendMH(bra, source)
        mnIdOpt = bri.option(mh.MobileNodeIdentifier)
        if mnIdOpt is not None:
            m = self.mobiles.get(mnIdOpt.identifier)
        else:
            hnp = bri.option(mh.HomeNetworkPrefix)
            m = None if hnp is None else self._byHome.get(_homeOfOption(hnp))
        options = [] if mnIdOpt is None else [mnIdOpt]
        if m is None:
            self._say("the LMA revoked {what}, which this client does not have",
                      what=showMnId(mnIdOpt.identifier) if mnIdOpt is not None
                      else "a binding it names by no MN-ID or known home")
            return [answer(mh.RevocationStatus.BINDING_DOES_NOT_EXIST)]
        self.counters["revoked"] += 1
        self._say("the LMA revoked {mnId}'s binding ({trigger}); the MAG is told",
                  mnId=showMnId(m.mnId), trigger=mh.RevocationTrigger.name(bri.trigger))
        effects = []
        if m.detach is not None:
            # The MAG's Detach asked for this very end: answered done.
            transaction, mag = m.detach
            m.detach = None
            effects.append(Notify(self._notification(transaction, Result.SUCCESS, m), mag))
        elif m.pcoa is not None and m.state is not DEREGISTERING:
            # The MAG whose tunnel carries it takes the tunnel down.
            effects.append(Notify(self._notification(0, Result.BINDING_LOST, m), m.pcoa))
        effects.extend(self._supersede(m, None))
        self._step(m, Event.REVOKED)
        # The record goes before the answer that acknowledges the end.
        effects = self._forget(m) + effects
        effects.append(answer(mh.RevocationStatus.SUCCESS))
        return effects

    def deregister(self, mnId, now):
        """
        An operator ends C{mnId}'s binding (`netlmm ctl deregister`): a PBU
        with lifetime 0 goes to the LMA at once, the MAG whose tunnel
        carries the mobile is told (unsolicited binding-lost: it takes the
        tunnel down), and a Trigger in hand is answered superseded. A
        mobile the MAG already detached is deregistered now instead of after
        the detach delay (the MAG's Detach is answered when the LMA has).
        Raises KeyError for a mobile this client does not know, and
        L{InvalidInput} when it is checked with the peers or already being
        deregistered.
        """
        m = self.mobiles[mnId]
        if m.state in (AWAITING_PEERS, DEREGISTERING):
            raise InvalidInput("deregister", m.state)
        effects = []
        if m.state is not DETACH_PENDING:
            self._step(m, Event.DETACH)
            effects.extend(self._supersede(m, None))
            if m.pcoa is not None:
                effects.append(Notify(self._notification(0, Result.BINDING_LOST, m),
                                      m.pcoa))
        self._step(m, Event.DEREGISTER)
        m.detachAt = m.refreshAt = None
        self._say("{mnId} deregistered by the operator", mnId=showMnId(mnId))
        effects.extend(self._start(m, _Pending("deregister", m.pcoa, None, None, 0), now))
        self._reschedule(m)
        return effects

    def reregister(self, lma, now):
        """
        LMA C{lma} restarted and lost its bindings (its RFC 5847 Restart
        Counter changed): refresh every bound mobile registered with it now,
        spread at L{REREGISTER_RATE} PBUs a second. An LMA without the
        binding answers the refresh with 133 or 160, and the PBU goes again
        naming the mobile (the recovery of L{_LOST}). Mobiles with a PBU in
        flight are left alone: it is retransmitted anyway.
        """
        if IPv6Address(lma) != self.lmaAddress:
            return []
        count = 0
        for m in self.mobiles.values():
            if m.state == BOUND and m.pending is None:
                m.refreshAt = now + count / REREGISTER_RATE
                self._reschedule(m)
                count += 1
        self.counters["reregistered"] += count
        self._say("LMA {lma} restarted: registering its {n} bindings again", lma=lma,
                  n=count)
        return []

    def handleTimer(self, now):
        """Retransmit, give up, refresh and deregister as due at C{now}."""
        effects = []
        heap = self._timers
        while heap and heap[0][0] <= now:
            due, mnId = heapq.heappop(heap)
            m = self.mobiles.get(mnId)
            if m is None or _due(m) != due:
                continue
            p = m.pending
            if p is not None and p.resendAt <= now:
                effects.extend(self._retransmit(m, p, now))
            elif m.check is not None and m.check.deadline <= now:
                self.conflicts.timedOut(m.check)
                if m.check.verifying:
                    effects.extend(self._verified(m, "unique", None, now))
                else:
                    effects.extend(self._unique(m, now))
            elif m.detachAt is not None and m.detachAt <= now:
                self._step(m, Event.DEREGISTER)
                m.detachAt = None
                effects.extend(self._start(m, _Pending("deregister", m.pcoa, None, None, 0),
                                           now))
            elif m.state == BOUND and m.refreshAt is not None and m.refreshAt <= now:
                if m.restored and self.peers and m.phoa is not None and m.check is None:
                    m.refreshAt = None
                    effects.extend(self._verify(m, now))
                else:
                    effects.extend(self._refresh(m, now))
            self._reschedule(m)
        return effects

    # ------------------------------------------------------------ internals

    def _say(self, fmt, **kw):
        if self._log is not None:
            self._log.info(fmt, **kw)

    def _step(self, m, event):
        """
        Move C{m} by C{event} (L{TRANSITIONS}); the one place a mobile's
        state changes. Raises L{InvalidInput}, changing nothing, when the
        table has no such move. Returns the new state (None: no entry).
        """
        key = (m.state, event)
        if key not in TRANSITIONS:
            raise InvalidInput(str(event), m.state)
        m.state = TRANSITIONS[key]
        return m.state

    def _intern(self, address):
        """The one object kept for a MAG address (up to L{INTERNED} of them)."""
        if address is None:
            return None
        known = self._addresses.get(int(address))
        if known is not None:
            return known
        if len(self._addresses) < INTERNED:
            self._addresses[int(address)] = address
        return address

    def _reschedule(self, m):
        due = _due(m)
        if due is not None and self.mobiles.get(m.mnId) is m:
            heapq.heappush(self._timers, (due, m.mnId))

    def _learn(self, m, trigger):
        """What a Trigger tells about the mobile's link and IPv4 wishes."""
        if trigger.ipv4 is not None:
            m.ipv4Request = trigger.ipv4
        if trigger.linkLayerId is not None:
            m.linkLayerId = trigger.linkLayerId
        if trigger.accessTechnology is not None:
            m.accessTechnology = trigger.accessTechnology

    def _notification(self, transaction, result, m, raw=None, assigned=False):
        """
        A Notification about C{m}, with its home and (C{assigned}) what the
        LMA gave for IPv4, and the PBAck C{raw} in its container when it fits.
        """
        n = Notification(transaction, result, m.mnId, **_homeFields(m.home))
        if assigned:
            n = n._replace(ipv4=m.ipv4, ipv4Router=m.ipv4Router)
        if raw is not None:
            fitted = withContainer(n, raw)
            if fitted is n and debugging(self._log):
                self._log.debug("Notification {txn} for {mnId} goes without its container: "
                                "with the {n}-octet PBAck it would pass 255 octets",
                                txn=transaction, mnId=showMnId(m.mnId), n=len(raw))
            n = fitted
        return n

    def _askPeers(self, trigger, now):
        m = Mobile(trigger.mnId, self._rng.randrange(0x10000), trigger.mode)
        self._step(m, Event.CHECK)
        m.home = trigger.phoa
        m.mag = self._intern(trigger.magAddress)
        self._learn(m, trigger)
        self.mobiles[m.mnId] = m
        self._byHome[m.home] = m
        m.check, ask = self.conflicts.ask(m.mnId, m.home, trigger.transaction,
                                          trigger.magAddress, now)
        self._say("asking {n} peer(s) whether {phoa} of {mnId} is unique",
                  n=len(self.peers), phoa=m.home, mnId=showMnId(m.mnId))
        self._reschedule(m)
        return [ask]

    def _waiting(self, m, transaction, mag):
        """True when C{transaction} of C{mag} is what C{m} is being handled for."""
        p, c = m.pending, m.check
        return (p is not None and p.transaction == transaction and p.mag == mag
                or c is not None and c.transaction == transaction and c.mag == mag)

    def _checking(self, transaction, peer):
        """The mobile whose check waits for C{peer}'s answer to C{transaction}."""
        m = self.mobiles.get(self.conflicts.mobileAsked(transaction))
        if m is None or m.check is None or m.check.request != transaction \
                or peer not in m.check.waiting:
            return None
        return m

    def _unique(self, m, now):
        """No peer objected (or some were silent): send the PBU."""
        c = m.check
        self._step(m, Event.UNIQUE)
        m.check = None
        self.conflicts.done(c)
        if self.conflicts.unique(c):
            self._say("peer(s) {peers} did not answer about {phoa} within {t:g} s; "
                      "registering {mnId} anyway (the LMA's DAD still applies)",
                      peers=", ".join(sorted(str(p) for p in c.silent)), phoa=m.home,
                      t=self.conflicts.peerTimeout, mnId=showMnId(m.mnId))
        effects = self._start(m, _Pending("attach", c.mag, c.transaction, c.mag,
                                          self.lifetime), now)
        self._reschedule(m)
        return effects

    def _supersede(self, m, mag):
        """Answer the transactions that a new input replaces."""
        effects = []
        if m.check is not None:
            c = m.check
            m.check = None
            self.conflicts.done(c)
            if not c.verifying:
                effects.append(Notify(self._notification(c.transaction, Result.SUPERSEDED,
                                                         m), c.mag))
        p = m.pending
        if p is not None and p.transaction is not None:
            effects.append(Notify(self._notification(p.transaction, Result.SUPERSEDED, m),
                                  p.mag))
        if m.detach is not None:
            transaction, detachMag = m.detach
            m.detach = None
            if mag is not None:
                m.mag = mag
                effects.extend(self._keepMag(m))
            # The mobile is back where it left (SUPERSEDED: a newer request
            # replaced the Detach) or at another MAG (MOVED).
            result = Result.SUPERSEDED if detachMag == mag else Result.MOVED
            effects.append(Notify(self._notification(transaction, result, m), detachMag))
        return effects

    def _keepMag(self, m):
        """
        Before a MAG is told that C{m} moved on (and forgets it), the kept
        record names the mobile's current MAG, C{m.mag}, even while the
        binding there is not acknowledged: after a restart, that MAG's
        requests sent again (a Detach above all) must not be taken for a
        stale MAG's, or the binding would be left with no MAG at all.
        Returns the L{Persist} to place before that answer, if one is due.
        """
        if not m.saved or m.savedMag == m.mag:
            return []
        m.savedMag = m.mag
        return [_persist(m)]

    def _start(self, m, p, now):
        self._clearPending(m)
        m.pending = p
        p.timeout = self.initialTimeout
        return self._send(m, p, now)

    def _clearPending(self, m):
        p, m.pending = m.pending, None
        if p is None:
            return
        for s in p.sequences:
            waiting = self._inFlight.get(s)
            if waiting is not None:
                waiting.discard(m.mnId)
                if not waiting:
                    del self._inFlight[s]

    def _send(self, m, p, now):
        m.sequence = (m.sequence + 1) & 0xFFFF
        p.sequences.append(m.sequence)
        self._inFlight.setdefault(m.sequence, set()).add(m.mnId)
        p.resendAt = now + p.timeout
        options = self.profile.options(m, p, now + self.clock.offset)
        pbu = mh.BindingUpdate(m.sequence, self.profile.flags,
                               p.lifetime // mh.LIFETIME_UNIT, options)
        if self.security is not None:
            pbu = self.security.protect(pbu, m.mnId, now)
            if pbu is None:
                # No SA: nothing goes out, and the timer gives up in the end.
                self._say("no security association for {mnId}; PBU not sent",
                          mnId=showMnId(m.mnId))
                return []
        return [SendMH(pbu, self.lmaAddress)]

    def _resend(self, m, p, now):
        """Send the pending PBU again at once (after a resynchronisation)."""
        p.resyncs += 1
        p.timeout = self.initialTimeout
        effects = self._send(m, p, now)
        self._reschedule(m)
        return effects

    def _retransmit(self, m, p, now):
        if p.timeout >= self.maxTimeout:
            self.counters["unreachable"] += 1
            self._say("no PBAck for {mnId} after {n} PBUs; giving up",
                      mnId=showMnId(m.mnId), n=len(p.sequences))
            return self._fail(m, p, Result.LMA_UNREACHABLE, None, now)
        p.timeout = min(p.timeout * 2, self.maxTimeout)
        return self._send(m, p, now)

    def _matchAck(self, ba):
        """
        The mobile whose pending PBU C{ba} answers: by its MN Identifier, else
        its home, else (both missing or malformed) its sequence number alone.
        """
        m = None
        mnIdOpt = ba.option(mh.MobileNodeIdentifier)
        if mnIdOpt is not None:
            m = self.mobiles.get(mnIdOpt.identifier)
        if m is None:
            hnp = ba.option(mh.HomeNetworkPrefix)
            if hnp is not None and not hnp.unspecified:
                m = self._byHome.get(_homeOfOption(hnp))
        if m is None and ba.status != mh.Status.SEQUENCE_OUT_OF_WINDOW:
            waiting = self._inFlight.get(ba.sequence)
            if waiting is not None and len(waiting) == 1:
                m = self.mobiles.get(next(iter(waiting)))
        if m is None or m.pending is None:
            return None
        if ba.status == mh.Status.SEQUENCE_OUT_OF_WINDOW:
            # The BA carries the LMA's last accepted number, not ours.
            return m
        if ba.sequence not in m.pending.sequences:
            return None
        return m

    def _ack(self, m, ba, raw, now):
        p = m.pending
        status = ba.status
        if status == mh.Status.SEQUENCE_OUT_OF_WINDOW and p.resyncs < _RESYNCS:
            # The LMA remembers a later number (we restarted): continue after it.
            m.sequence = ba.sequence
            self._say("LMA's last sequence for {mnId} is {seq}; resending",
                      mnId=showMnId(m.mnId), seq=ba.sequence)
            return self._resend(m, p, now)
        if status in _CLOCK and self.profile.ordering == TIMESTAMP \
                and p.resyncs < _RESYNCS:
            ts = ba.option(mh.Timestamp)
            why = "no Timestamp option" if ts is None else self.clock.follow(ts.seconds, now)
            if why is None:
                self._say("LMA refused {mnId}'s timestamp ({status}); clock offset now "
                          "{offset:+.3f} s, resending", mnId=showMnId(m.mnId),
                          status=mh.Status.name(status), offset=self.clock.offset)
                return self._resend(m, p, now)
            self._say("LMA refused {mnId}'s timestamp ({status}); not following its "
                      "clock: {why}", mnId=showMnId(m.mnId), status=mh.Status.name(status),
                      why=why)
        if status in _LOST and p.kind != "deregister" and not p.withMnId:
            # The LMA has no binding for the home (it restarted, or the
            # binding expired): register it again, naming the mobile.
            p.withMnId = True
            self._say("LMA does not know {mnId}'s binding ({status}); registering again",
                      mnId=showMnId(m.mnId), status=mh.Status.name(status))
            return self._resend(m, p, now)
        if p.kind == "deregister" and status in _GONE:
            # 133, or the home is another mobile's now (the LMA deleted this
            # binding and gave the home away before its PBAck arrived):
            # nothing to deregister any more, the outcome wanted.
            return self._deregistered(m, raw)
        if not ba.accepted:
            self.counters["rejected"] += 1
            self._say("PBU ({kind}) for {mnId} rejected with {status}: {meaning}",
                      kind=p.kind, mnId=showMnId(m.mnId), status=mh.Status.name(status),
                      meaning=describeStatus(status))
            return self._fail(m, p, resultFor(status), raw, now)
        if p.kind == "deregister":
            self._say("deregistration of {mnId} answered {status}, which is not a "
                      "deregistration status; taken as done", mnId=showMnId(m.mnId),
                      status=mh.Status.name(status))
            return self._deregistered(m, raw)
        home, problem = self._readHome(m, ba)
        if problem is None and ba.lifetime == 0:
            problem = "the LMA granted lifetime 0"
        if problem is not None:
            return self._unusable(m, p, home, problem, raw, now)
        if m.ipv4 is not None:
            problem, bound = self._ipv4Kept(m, ba)
            if problem is not None:
                return self._unusable(m, p, home, problem, raw, now, ipv4=bound)
        self._step(m, Event.ACCEPTED)
        self._clearPending(m)
        if m.home is None:
            m.home = home
            self._byHome[home] = m
        self._readIpv4(m, ba)
        old = m.pcoa
        m.pcoa = p.pcoa
        self.counters["refreshed" if p.kind == "refresh" else
                      "bound" if p.kind == "attach" else "handoffs"] += 1
        if debugging(self._log):
            self._log.debug("{mnId} bound: {home} via {pcoa} ({kind})",
                            mnId=showMnId(m.mnId), home=m.home, pcoa=m.pcoa, kind=p.kind)
        granted = ba.lifetimeSeconds
        m.lifetime = granted
        m.expiry = now + granted
        refresh = granted * self.refreshRatio
        bra = ba.option(mh.BindingRefreshAdvice)
        if bra is not None:
            refresh = min(refresh, bra.interval * mh.LIFETIME_UNIT)
        m.refreshAt = now + refresh
        m.saved = True
        m.savedMag = m.mag
        m.restored = False
        effects = [_persist(m)]
        # A handoff: each MAG is told the other (its neighbour, Appendix D).
        moved = old is not None and old != m.pcoa
        if p.transaction is not None:
            n = self._notification(p.transaction, Result.SUCCESS, m, raw, assigned=True)
            effects.append(Notify(withPeerMag(n, old) if moved else n, p.mag))
        if moved:
            effects.append(Notify(withPeerMag(self._notification(0, Result.MOVED, m),
                                              m.pcoa), old))
        return effects

    def _readHome(self, m, ba):
        """
        The home an accepted PBA binds for C{m}, and None; or (what it
        binds, if anything usable for a deregistration, and) why C{m}
        cannot use it.
        """
        hnps = [o for o in ba.options if type(o) is mh.HomeNetworkPrefix]
        if not hnps:
            if m.home is not None and not _prefixMode(m.mode):
                return m.home, None
            bad = ba.malformed(mh.HomeNetworkPrefix)
            return None, ("no Home Network Prefix option" if not bad else
                          f"its Home Network Prefix option is malformed ({bad[0].reason})")
        if m.home is not None:
            for h in hnps:
                if not h.unspecified and _homeOfOption(h) == m.home:
                    return m.home, None
        hnp = hnps[0]
        found = _homeOfOption(hnp)
        if hnp.unspecified:
            return None, ("its Home Network Prefix is all zeros "
                          f"({hnp.prefix}/{hnp.prefixLength}): nothing was assigned")
        if found is None:
            return None, f"{hnp.prefix}/{hnp.prefixLength} has bits set beyond its length"
        if m.home is not None:
            return found, f"it binds {_showHome(found)}, not {_showHome(m.home)}"
        if _prefixMode(m.mode):
            if hnp.prefixLength > MAX_PREFIX_LENGTH:
                return found, (f"the prefix {found} is longer than /{MAX_PREFIX_LENGTH}: "
                               "the mobile cannot form addresses in it (SLAAC)")
            if len(hnps) > 1:
                self._say("PBAck for {mnId} assigns {n} prefixes; the MAG is told the "
                          "first, {prefix}", mnId=showMnId(m.mnId), n=len(hnps),
                          prefix=found)
            return found, None
        if hnp.prefixLength != 128:
            return found, (f"it assigns the prefix {found} where one address (a /128 "
                           f"pHoA, address mode {AddressMode.NAMES[m.mode]}) was asked")
        return found, None

    def _ipv4Kept(self, m, ba):
        """
        (None, None) when an accepted PBA grants C{m} the IPv4 home address
        it already has (the PBU named it, RFC 5844 3.1.2); else why not and
        the IPv4 home address the LMA bound instead (None: none,
        L{_UNCHANGED}: it does not say, so still the known one): the MAG
        serves the address it knows, and a refresh or handoff has no way to
        tell it of another.
        """
        known = m.ipv4.ip
        reply = ba.option(mh.IPv4HomeAddressReply)
        if reply is None:
            bad = ba.malformed(mh.IPv4HomeAddressReply)
            return (f"its IPv4 Home Address Reply is malformed ({bad[0].reason})" if bad
                    else "it has no IPv4 Home Address Reply") + \
                f" for the mobile's IPv4 home address {known}", _UNCHANGED
        if not reply.accepted:
            return (f"it refuses the mobile's IPv4 home address {known} "
                    f"({reply.status} {describeStatus(reply.status, ipv4=True)})"), None
        if reply.address != known:
            bound = None if reply.address.packed == bytes(4) else \
                IPv4Interface((reply.address, reply.prefixLength or 32))
            return (f"it assigns the IPv4 home address {reply.address}, not the "
                    f"mobile's {known}"), bound
        return None, None

    def _readIpv4(self, m, ba):
        """Take the IPv4 home address and router an accepted PBA assigns."""
        if m.ipv4Request is None and m.ipv4 is None:
            return
        reply = ba.option(mh.IPv4HomeAddressReply)
        router = ba.option(mh.IPv4DefaultRouterAddress)
        if reply is None:
            bad = ba.malformed(mh.IPv4HomeAddressReply)
            self._say("PBAck for {mnId} has {what}: no IPv4 home address",
                      mnId=showMnId(m.mnId),
                      what=f"a malformed IPv4 Home Address Reply ({bad[0].reason})" if bad
                      else "no IPv4 Home Address Reply (RFC 5844)")
            m.ipv4 = m.ipv4Router = None
        elif not reply.accepted:
            self._say("LMA refused an IPv4 home address for {mnId}: {status} {meaning}",
                      mnId=showMnId(m.mnId), status=reply.status,
                      meaning=describeStatus(reply.status, ipv4=True))
            m.ipv4 = m.ipv4Router = None
        elif reply.address.packed == bytes(4):
            self._say("LMA accepted an IPv4 home address for {mnId} but assigned none "
                      "(0.0.0.0): no IPv4 home address", mnId=showMnId(m.mnId))
            m.ipv4 = m.ipv4Router = None
        else:
            # A prefix length of 0 names no IPv4 home network: one address.
            m.ipv4 = IPv4Interface((reply.address, reply.prefixLength or 32))
            m.ipv4Router = None if router is None else router.address

    def _unusable(self, m, p, home, problem, raw, now, ipv4=_UNCHANGED):
        """
        The LMA accepted a PBU with an answer the client cannot use: tell
        the MAG why and deregister what the LMA bound, at once (C{home},
        and C{ipv4} when it bound another IPv4 home address or none).
        """
        self.counters["unusable"] += 1
        self._say("PBAck accepting the {kind} of {mnId} cannot be used: {problem}; "
                  "deregistering it", kind=p.kind, mnId=showMnId(m.mnId), problem=problem)
        self._step(m, Event.UNUSABLE)
        # What was kept is going: a restart must not bring it back.
        effects = self._unsave(m)
        if p.transaction is not None:
            effects.append(Notify(self._notification(p.transaction, Result.PBACK_UNUSABLE,
                                                     m, raw), p.mag))
        if m.pcoa is not None:
            # The binding the old MAG tunnels for is being removed.
            effects.append(Notify(self._notification(0, Result.BINDING_LOST, m), m.pcoa))
        if home is not None and home != m.home:
            if self._byHome.get(m.home) is m:
                del self._byHome[m.home]
            m.home = home
        if ipv4 is not _UNCHANGED:
            m.ipv4, m.ipv4Router = ipv4, None
        m.pcoa = p.pcoa
        m.mag = None
        dereg = _Pending("deregister", p.pcoa, None, None, 0)
        # Name the mobile: what the LMA bound is not what the client knows.
        dereg.withMnId = True
        effects.extend(self._start(m, dereg, now))
        return effects

    def _deregistered(self, m, raw):
        self._step(m, Event.ACCEPTED)
        self.counters["deregistered"] += 1
        if debugging(self._log):
            self._log.debug("{mnId} deregistered", mnId=showMnId(m.mnId))
        transaction, mag = m.detach or (None, None)
        effects = self._forget(m)
        if transaction is None:
            return effects
        return effects + [Notify(self._notification(transaction, Result.SUCCESS, m, raw),
                                 mag)]

    def _fail(self, m, p, result, raw, now):
        state = self._step(m, Event.FAILED)
        effects = [] if state is BOUND else self._unsave(m)
        if p.transaction is not None:
            effects.append(Notify(self._notification(p.transaction, result, m, raw), p.mag))
        if state is BOUND:
            # A failed handoff or re-attachment: the old binding stands.
            self._clearPending(m)
            m.mag = m.pcoa
            if m.refreshAt is None:
                m.refreshAt = now
            return effects
        if p.kind == "refresh":
            self.counters["lost"] += 1
            effects.append(Notify(self._notification(0, Result.BINDING_LOST, m, raw),
                                  m.pcoa))
        elif p.kind == "deregister" and m.detach is not None:
            transaction, mag = m.detach
            effects.append(Notify(self._notification(transaction, result, m, raw), mag))
        self._forget(m)
        return effects

    def _unsave(self, m):
        """The L{Persist} that deletes C{m}'s record, if one is kept."""
        if not m.saved:
            return []
        m.saved = False
        return [Persist(m.mnId, None)]

    def _forget(self, m):
        """Drop C{m}; returns the L{Persist} that deletes its record, if any."""
        self._clearPending(m)
        self.mobiles.pop(m.mnId, None)
        if m.home is not None and self._byHome.get(m.home) is m:
            del self._byHome[m.home]
        m.state = None
        m.detach = None
        if m.check is not None:
            self.conflicts.done(m.check)
            m.check = None
        if self.security is not None and hasattr(self.security, "forget"):
            self.security.forget(m.mnId)
        return self._unsave(m)


def _homeOfOption(hnp):
    """A Home Network Prefix option's home: a /128 is an address; else a prefix."""
    if hnp.prefixLength == 128:
        return hnp.prefix
    try:
        return IPv6Network((hnp.prefix, hnp.prefixLength))
    except ValueError:
        return None


def _homeFields(home):
    """The Notification fields naming C{home}."""
    if isinstance(home, IPv6Network):
        return {"prefix": home}
    return {"phoa": home}


def _showHome(home):
    return f"the prefix {home}" if isinstance(home, IPv6Network) else f"the address {home}"


def _record(m):
    """
    The one record a bound mobile is kept as (see L{PmipCore.restore});
    addresses stay ipaddress objects, which the store writes as their text.
    """
    record = {"mn": m.mnId.hex(), "pcoa": m.pcoa, "mag": m.mag, "sequence": m.sequence,
              "lifetime": m.lifetime, "expiry": m.expiry, "mode": int(m.mode)}
    if isinstance(m.home, IPv6Network):
        record["prefix"] = m.home
    else:
        record["phoa"] = m.home
    if m.ipv4 is not None:
        record["ipv4"] = m.ipv4
        if m.ipv4Router is not None:
            record["ipv4Router"] = m.ipv4Router
    if m.ipv4Request is not None:
        record["ipv4Request"] = m.ipv4Request
    if m.linkLayerId is not None:
        record["linkLayerId"] = m.linkLayerId.hex()
    if m.accessTechnology is not None:
        record["accessTechnology"] = m.accessTechnology
    return record


def _persist(m):
    return Persist(m.mnId, _record(m))


def _mnId(value):
    mnId = read.identifier(value)
    problem = mnIdProblem(mnId)
    if problem is not None:
        raise ValueError(f"MN identifier {showMnId(mnId)} {problem}")
    return mnId


def _mode(value):
    if type(value) is not int or value not in AddressMode.NAMES:
        raise ValueError(f"{value!r} is not an address mode (1..5)")
    return value


def _prefix(value):
    return IPv6Network(value if isinstance(value, (str, IPv6Network)) else repr(value))


def _ipv4(value):
    return IPv4Interface(value if isinstance(value, (str, IPv4Interface)) else repr(value))


def _router(value):
    return IPv4Address(value if isinstance(value, (str, IPv4Address)) else repr(value))


def _att(value):
    if type(value) is not int or not 1 <= value <= 255:
        raise ValueError(f"{value!r} is not an access technology type (1..255)")
    return value


#: The fields a record may have beyond the required ones (records of
#: earlier releases have none of them), and how each is read.
_OPTIONAL = {"mode": _mode, "prefix": _prefix, "ipv4": _ipv4, "ipv4Router": _router,
             "ipv4Request": _ipv4, "linkLayerId": read.identifier,
             "accessTechnology": _att, "mag": read.address}


def _fromRecord(index, r):
    """A BOUND-to-be L{Mobile} from the C{index}th record; raises L{BadRecord}."""
    mnId, pcoa, sequence, lifetime, expiry = fields(
        index, r, mn=_mnId, pcoa=read.address, sequence=read.sequence,
        lifetime=read.seconds, expiry=read.seconds)
    extra = {}
    for name, reader in _OPTIONAL.items():
        if r.get(name) is not None:
            extra[name] = fields(index, r, **{name: reader})[0]
    if "prefix" in extra:
        home = extra["prefix"]
    else:
        home = fields(index, r, phoa=read.address)[0]
    m = Mobile(mnId, sequence, extra.get("mode", AddressMode.STATIC))
    if isinstance(home, IPv6Network) != (m.mode == AddressMode.PREFIX):
        raise BadRecord(index, f"address mode {m.mode} does not go with the home {home}")
    m.home, m.pcoa = home, pcoa
    # The mobile's current MAG (records of earlier releases: the bound one).
    m.mag = extra.get("mag", pcoa)
    m.lifetime, m.expiry = int(lifetime), expiry
    m.ipv4, m.ipv4Router = extra.get("ipv4"), extra.get("ipv4Router")
    m.ipv4Request = extra.get("ipv4Request")
    m.linkLayerId = extra.get("linkLayerId")
    m.accessTechnology = extra.get("accessTechnology")
    return m


def _due(m):
    """The time of the one timer that matters in the mobile's state."""
    if m.pending is not None:
        return m.pending.resendAt
    if m.check is not None:
        return m.check.deadline
    if m.detachAt is not None:
        return m.detachAt
    if m.state == BOUND:
        return m.refreshAt
    return None
