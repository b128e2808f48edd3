"""
The PMIP client (draft section 4.7), sans-IO.

It keeps a cache MN identifier -> (pHoA, pCoA, sequence, state) and turns the
MAGs' Triggers and Detaches into Proxy Binding Updates to the LMA, and the
LMA's acknowledgements into Notifications. Because the PMIP client for a
mobile stays fixed while it moves, the sequence numbers live here and never
travel between gateways (section 4.2).

Each mobile is one explicit state machine (see L{TRANSITIONS}):

    (none) --trigger--> REGISTERING --PBAck ok--> BOUND
    (none) --SLAAC trigger, peers--> AWAITING_PEERS --no conflict--> REGISTERING
    AWAITING_PEERS --a peer reports a conflict--> (none)
    BOUND --trigger--> HANDING_OVER --PBAck ok--> BOUND
    BOUND --refresh due--> REFRESHING --PBAck ok--> BOUND
    BOUND --detach--> DETACH_PENDING --delay--> DEREGISTERING --PBAck--> (none)

An input that the table does not allow raises L{InvalidInput}.

With other PMIP clients in the domain (C{peers}), a Trigger with a pHoA the
mobile configured itself (stateless mode, Appendix B) is first checked with
all of them: the core returns an L{AskPeers} effect with a Conflict
Detection Request and waits (AWAITING_PEERS) for their Responses, given to
L{PmipCore.receiveConflictResponse}. A conflict answers the MAG with
ADDRESS_CONFLICT and no PBU goes out; when every peer said "no conflict",
or C{peerTimeout} passed (a silent peer does not block the mobile: the
LMA's own DAD still catches a duplicate within one LMA), the PBU goes.
Peers' requests are answered from the cache by L{PmipCore.answerConflict}.
"""

import heapq
import itertools
import random
from ipaddress import IPv6Address

from netlmm.core import records as read
from netlmm.core.effects import AskPeers, InvalidInput, Notify, Persist, SendMH
from netlmm.core.records import fields
from netlmm.wire import mh
from netlmm.wire.control import (
    AddressMode, Conflict, ConflictRequest, ConflictResponse, Detach, Notification,
    Result, Trigger,
)

_ZERO = IPv6Address("::")

REGISTERING = "REGISTERING"
BOUND = "BOUND"
HANDING_OVER = "HANDING_OVER"
REFRESHING = "REFRESHING"
DETACH_PENDING = "DETACH_PENDING"
DEREGISTERING = "DEREGISTERING"
AWAITING_PEERS = "AWAITING_PEERS"

#: (state, input) -> the state the input leads to (before the outcome of the
#: PBU it may send is known). None stands for "no entry".
TRANSITIONS = {
    (None, "trigger"): REGISTERING,
    (REGISTERING, "trigger"): REGISTERING,
    (BOUND, "trigger"): HANDING_OVER,
    (HANDING_OVER, "trigger"): HANDING_OVER,
    (REFRESHING, "trigger"): HANDING_OVER,
    (DETACH_PENDING, "trigger"): HANDING_OVER,
    (DEREGISTERING, "trigger"): REGISTERING,
    (REGISTERING, "detach"): DETACH_PENDING,
    (BOUND, "detach"): DETACH_PENDING,
    (HANDING_OVER, "detach"): DETACH_PENDING,
    (REFRESHING, "detach"): DETACH_PENDING,
    (BOUND, "refresh"): REFRESHING,
    (DETACH_PENDING, "deregister"): DEREGISTERING,
    (REGISTERING, "pback"): BOUND,
    (HANDING_OVER, "pback"): BOUND,
    (REFRESHING, "pback"): BOUND,
    (DEREGISTERING, "pback"): None,
    (None, "check"): AWAITING_PEERS,
    (AWAITING_PEERS, "trigger"): AWAITING_PEERS,
    (AWAITING_PEERS, "unique"): REGISTERING,
    (AWAITING_PEERS, "conflict"): None,
    (AWAITING_PEERS, "detach"): None,
}


class _Check:
    """A Conflict Detection Request waiting for the peers' answers."""

    __slots__ = ("transaction", "mag", "request", "waiting", "deadline", "silent")

    def __init__(self, transaction, mag, request, peers, deadline):
        #: The Trigger's transaction and MAG, answered at the end.
        self.transaction = transaction
        self.mag = mag
        #: The request's own transaction number.
        self.request = request
        self.waiting = set(peers)
        self.deadline = deadline
        #: Peers that could not be asked or did not answer.
        self.silent = set()


class _Pending:
    """A PBU waiting for its acknowledgement."""

    __slots__ = ("kind", "pcoa", "transaction", "mag", "sequences", "timeout",
                 "resendAt", "resyncs", "lifetime", "withMnId")

    def __init__(self, kind, pcoa, transaction, mag, lifetime):
        self.kind = kind
        self.pcoa = pcoa
        self.transaction = transaction
        self.mag = mag
        self.lifetime = lifetime
        self.sequences = []
        self.timeout = 0.0
        self.resendAt = 0.0
        self.resyncs = 0
        #: Name the mobile even though a binding exists (the LMA lost it).
        self.withMnId = False


class Mobile:
    """The PMIP client's cache entry for one mobile."""

    __slots__ = ("mnId", "phoa", "pcoa", "mag", "sequence", "state", "pending",
                 "lifetime", "refreshAt", "expiry", "detachAt", "detach", "check",
                 "saved")

    def __init__(self, mnId, sequence):
        self.mnId = mnId
        self.phoa = None
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
        #: The L{_Check} with the peers in state AWAITING_PEERS.
        self.check = None
        #: A record of this mobile is kept (L{Persist}): forgetting it
        #: must delete that record.
        self.saved = False

    def __repr__(self):
        return (f"Mobile({self.mnId!r}, phoa={self.phoa}, pcoa={self.pcoa}, "
                f"state={self.state}, seq={self.sequence})")


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
        stateless pHoA is bound (opaque keys, such as (address, port),
        that come back in L{AskPeers} and go to L{receiveConflictResponse}).
    @param peerTimeout: how long to wait for the peers' answers; then the
        PBU goes anyway.
    """

    def __init__(self, lmaAddress, lifetime=3600, initialTimeout=1.0,
                 maxTimeout=32.0, refreshRatio=0.8, detachDelay=1.5,
                 rng=None, log=None, security=None, peers=(), peerTimeout=1.0):
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
        self.peers = tuple(peers)
        if peerTimeout <= 0:
            raise ValueError("peerTimeout must be positive")
        self.peerTimeout = peerTimeout
        #: Conflict Detection Request transaction -> MN identifier.
        self._checks = {}
        self._nextRequest = 1
        #: How many stateless Triggers the peers were asked about, how many
        #: found a conflict, and how many went on with a silent peer.
        self.conflictCounters = {"asked": 0, "conflicts": 0, "silent": 0,
                                 "answered": 0}
        #: PBAcks dropped because they failed authentication.
        self.unauthenticated = 0
        self.mobiles = {}
        self._byPhoa = {}
        # (due, tiebreak, mnId): a lazy heap; an entry is live while the
        # mobile's own due time still equals it.
        self._timers = []
        self._tiebreak = itertools.count()

    # ------------------------------------------------------------ queries

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
        return [_persist(m) for m in self.mobiles.values()
                if m.pcoa is not None and m.phoa is not None and m.expiry is not None]

    def restore(self, records, now):
        """
        Load records made by L{_record}: unexpired bindings come back BOUND
        and are refreshed at once, which also resynchronises the sequence
        number with the LMA (status 135) if PBUs went out after the record
        was written. Returns the effects (none: the refreshes come from the
        timer). Raises L{BadRecord} naming the first bad record.
        """
        for i, r in enumerate(records):
            mnId, phoa, pcoa, sequence, lifetime, expiry = fields(
                i, r, mn=read.identifier, phoa=read.address, pcoa=read.address,
                sequence=read.sequence, lifetime=read.seconds, expiry=read.seconds)
            if expiry <= now or mnId in self.mobiles:
                continue
            m = Mobile(mnId, sequence)
            m.phoa, m.pcoa, m.mag = phoa, pcoa, pcoa
            m.state = BOUND
            m.lifetime, m.expiry = int(lifetime), expiry
            m.refreshAt = now
            m.saved = True
            self.mobiles[mnId] = m
            self._byPhoa[phoa] = m
            self._reschedule(m)
        return []

    def nextTimer(self):
        """The earliest time a retransmission, refresh or deregistration is due."""
        heap = self._timers
        while heap:
            due, _, mnId = heap[0]
            m = self.mobiles.get(mnId)
            if m is not None and _due(m) == due:
                return due
            heapq.heappop(heap)
        return None

    # ------------------------------------------------------------ inputs

    def receiveTrigger(self, trigger, now):
        """A MAG reports C{trigger.mnId} attached at C{trigger.magAddress}."""
        if trigger.phoa == _ZERO:
            # An all-zero pHoA asks for assignment, like no pHoA at all.
            trigger = trigger._replace(phoa=None)
        if trigger.mode == AddressMode.PREFIX:
            self._say("Trigger {txn} for {mnId} asks for a per-MN prefix, which "
                      "this PMIP client does not support yet", txn=trigger.transaction,
                      mnId=_show(trigger.mnId))
            return [Notify(Notification(trigger.transaction, Result.MALFORMED,
                                        trigger.mnId), trigger.magAddress)]
        m = self.mobiles.get(trigger.mnId)
        state = None if m is None else m.state
        nextState = self._step(state, "trigger")
        mag = trigger.magAddress
        if m is not None and trigger.phoa is not None and m.phoa is not None \
                and trigger.phoa != m.phoa:
            self._say("trigger for {mnId} names {got}, cache has {cached}",
                      mnId=_show(trigger.mnId), got=trigger.phoa, cached=m.phoa)
            return [Notify(Notification(trigger.transaction, Result.PHOA_MISMATCH,
                                        trigger.mnId, m.phoa), mag)]
        if trigger.phoa is not None:
            other = self._byPhoa.get(trigger.phoa)
            if other is not None and other is not m:
                self._say("{phoa} of {mnId} is already used by {other}",
                          phoa=trigger.phoa, mnId=_show(trigger.mnId),
                          other=_show(other.mnId))
                return [Notify(Notification(trigger.transaction,
                                            Result.ADDRESS_CONFLICT,
                                            trigger.mnId, trigger.phoa), mag)]
        if state == AWAITING_PEERS:
            # Still asking the peers: the newer Trigger is answered instead.
            c = m.check
            effects = [Notify(Notification(c.transaction, Result.SUPERSEDED,
                                           m.mnId, m.phoa), c.mag)]
            c.transaction, c.mag = trigger.transaction, mag
            m.mag = mag
            return effects
        if m is None and self.peers and trigger.phoa is not None \
                and trigger.mode == AddressMode.STATELESS:
            return self._askPeers(trigger, now)
        effects = []
        if m is None:
            m = Mobile(trigger.mnId, self._rng.randrange(0x10000))
            self.mobiles[m.mnId] = m
            if trigger.phoa is not None:
                m.phoa = trigger.phoa
                self._byPhoa[m.phoa] = m
        else:
            effects.extend(self._supersede(m, mag))
            if state == DEREGISTERING:
                # The deregistration may already have removed the binding:
                # register afresh, with the MN identifier.
                m.pcoa = None
            if m.phoa is None and trigger.phoa is not None:
                m.phoa = trigger.phoa
                self._byPhoa[m.phoa] = m
        m.mag = mag
        m.detachAt = None
        m.state = nextState
        kind = "attach" if m.pcoa is None else (
            "handoff" if m.pcoa != mag else "reattach")
        pending = _Pending(kind, mag, trigger.transaction, mag, self.lifetime)
        effects.extend(self._start(m, pending, now))
        self._reschedule(m)
        return effects

    def receiveConflictResponse(self, peer, response, now):
        """A peer's L{ConflictResponse} to one of our requests."""
        m = self._checking(response.transaction, peer)
        if m is None:
            self._say("Conflict Detection Response {txn} from {peer} answers no "
                      "pending request; dropped", txn=response.transaction, peer=peer)
            return []
        c = m.check
        if response.result == Conflict.CONFLICT_DETECTED:
            self._step(m.state, "conflict")
            self.conflictCounters["conflicts"] += 1
            self._say("peer {peer}: {phoa} of {mnId} is used by another mobile; "
                      "address conflict", peer=peer, phoa=m.phoa, mnId=_show(m.mnId))
            return self._forget(m) + [Notify(Notification(
                c.transaction, Result.ADDRESS_CONFLICT, m.mnId, response.phoa), c.mag)]
        c.waiting.discard(peer)
        if c.waiting:
            return []
        return self._unique(m, now)

    def peerFailed(self, transaction, peer, now):
        """The request C{transaction} could not reach C{peer} (not connected)."""
        m = self._checking(transaction, peer)
        if m is None:
            return []
        c = m.check
        c.waiting.discard(peer)
        c.silent.add(peer)
        if c.waiting:
            return []
        return self._unique(m, now)

    def answerConflict(self, request, now=None):
        """
        The L{ConflictResponse} to a peer's L{ConflictRequest}: conflict
        when another mobile here has (or is checking) that pHoA. Two clients
        checking the same address at once both hold it AWAITING_PEERS; the
        mobile with the lower MN identifier keeps it, so exactly one of them
        hears "conflict".
        """
        other = self._byPhoa.get(request.phoa)
        conflict = other is not None and other.mnId != request.mnId
        if conflict and other.state == AWAITING_PEERS and request.mnId < other.mnId:
            conflict = False
        self.conflictCounters["answered"] += 1
        result = Conflict.CONFLICT_DETECTED if conflict else Conflict.NO_CONFLICT
        if conflict:
            self._say("peer asks about {phoa} for {mnId}: used here by {other}",
                      phoa=request.phoa, mnId=_show(request.mnId),
                      other=_show(other.mnId))
        return ConflictResponse(request.transaction, result, request.mnId, request.phoa)

    def receiveDetach(self, detach, now):
        """A MAG reports C{detach.mnId} gone from C{detach.magAddress}."""
        m = self.mobiles.get(detach.mnId)
        mag = detach.magAddress
        if m is None:
            self._say("Detach {txn} from {mag} for {mnId}, which this client does not "
                      "know: answered unknown-mn, nothing to deregister",
                      txn=detach.transaction, mag=mag, mnId=_show(detach.mnId))
            return [Notify(Notification(detach.transaction, Result.UNKNOWN_MN,
                                        detach.mnId), mag)]
        if m.mag != mag:
            # The mobile has moved on: this MAG only needs to clean up.
            return [Notify(Notification(detach.transaction, Result.MOVED,
                                        m.mnId, m.phoa), mag)]
        nextState = self._step(m.state, "detach")
        effects = self._supersede(m, None)
        sent = m.pending is not None and bool(m.pending.sequences)
        m.pending = None
        if m.pcoa is None and not sent:
            # No PBU went out: nothing can be bound, forget the mobile at once.
            return effects + self._forget(m) + [Notify(Notification(
                detach.transaction, Result.SUCCESS, m.mnId), mag)]
        m.state = nextState
        m.detach = (detach.transaction, mag)
        m.detachAt = now + self.detachDelay
        m.refreshAt = None
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
        if type(message) is not mh.BindingAcknowledgement:
            self._say("{kind} from {source} is not for a PMIP client; dropped",
                      kind=type(message).__name__, source=source)
            return []
        if IPv6Address(source) != self.lmaAddress:
            self._say("PBAck from {source}, which is not the LMA; dropped",
                      source=source)
            return []
        m = self._matchAck(message)
        if m is None:
            self._say("PBAck seq {seq} matches no pending PBU; dropped",
                      seq=message.sequence)
            return []
        if self.security is not None:
            why = self.security.accept(message, raw, m.mnId, now)
            if why is not None:
                p = m.pending
                if why == "resync" and p.resyncs < 3:
                    # The LMA told us its time: resend with a fresh timestamp.
                    p.resyncs += 1
                    p.timeout = self.initialTimeout
                    self._say("LMA refused {mnId}'s timestamp; clock offset "
                              "corrected, resending", mnId=_show(m.mnId))
                    effects = self._send(m, p, now)
                    self._reschedule(m)
                    return effects
                # Drop it; the retransmission timer keeps running.
                self.unauthenticated += 1
                self._say("PBAck seq {seq} from {source} for {mnId} dropped: {why}",
                          seq=message.sequence, source=source,
                          mnId=_show(m.mnId), why=why)
                return []
        effects = self._ack(m, message, raw, now)
        self._reschedule(m)
        return effects

    def handleTimer(self, now):
        """Retransmit, give up, refresh and deregister as due at C{now}."""
        effects = []
        heap = self._timers
        while heap and heap[0][0] <= now:
            due, _, mnId = heapq.heappop(heap)
            m = self.mobiles.get(mnId)
            if m is None or _due(m) != due:
                continue
            p = m.pending
            if p is not None and p.resendAt <= now:
                effects.extend(self._retransmit(m, p, now))
            elif m.check is not None and m.check.deadline <= now:
                c = m.check
                c.silent |= c.waiting
                c.waiting.clear()
                effects.extend(self._unique(m, now))
            elif m.detachAt is not None and m.detachAt <= now:
                m.detachAt = None
                m.state = self._step(m.state, "deregister")
                effects.extend(self._start(m, _Pending("deregister", m.pcoa, None, None, 0), now))
            elif m.state == BOUND and m.refreshAt is not None and m.refreshAt <= now:
                m.state = self._step(m.state, "refresh")
                m.refreshAt = None
                effects.extend(self._start(m, _Pending("refresh", m.pcoa, None, None, self.lifetime), now))
            self._reschedule(m)
        return effects

    # ------------------------------------------------------------ internals

    def _say(self, fmt, **kw):
        if self._log is not None:
            self._log.info(fmt, **kw)

    def _reschedule(self, m):
        due = _due(m)
        if due is not None and self.mobiles.get(m.mnId) is m:
            heapq.heappush(self._timers, (due, next(self._tiebreak), m.mnId))

    def _step(self, state, what):
        nextState = TRANSITIONS.get((state, what), "invalid")
        if nextState == "invalid":
            raise InvalidInput(what, state)
        return nextState

    def _askPeers(self, trigger, now):
        m = Mobile(trigger.mnId, self._rng.randrange(0x10000))
        m.state = self._step(None, "check")
        m.phoa = trigger.phoa
        m.mag = trigger.magAddress
        self.mobiles[m.mnId] = m
        self._byPhoa[m.phoa] = m
        request = self._nextRequest
        self._nextRequest = request % 0xFFFFFFFF + 1
        m.check = _Check(trigger.transaction, trigger.magAddress, request, self.peers,
                         now + self.peerTimeout)
        self._checks[request] = m.mnId
        self.conflictCounters["asked"] += 1
        self._say("asking {n} peer(s) whether {phoa} of {mnId} is unique",
                  n=len(self.peers), phoa=m.phoa, mnId=_show(m.mnId))
        self._reschedule(m)
        return [AskPeers(ConflictRequest(request, m.mnId, m.phoa), self.peers)]

    def _checking(self, transaction, peer):
        """The mobile whose check waits for C{peer}'s answer to C{transaction}."""
        m = self.mobiles.get(self._checks.get(transaction))
        if m is None or m.check is None or m.check.request != transaction \
                or peer not in m.check.waiting:
            return None
        return m

    def _unique(self, m, now):
        """No peer objected (or some were silent): send the PBU."""
        c = m.check
        m.check = None
        self._checks.pop(c.request, None)
        m.state = self._step(m.state, "unique")
        if c.silent:
            self.conflictCounters["silent"] += 1
            self._say("peer(s) {peers} did not answer about {phoa} within {t:g} s; "
                      "registering {mnId} anyway (the LMA's DAD still applies)",
                      peers=", ".join(sorted(str(p) for p in c.silent)), phoa=m.phoa,
                      t=self.peerTimeout, mnId=_show(m.mnId))
        pending = _Pending("attach", c.mag, c.transaction, c.mag, self.lifetime)
        effects = self._start(m, pending, now)
        self._reschedule(m)
        return effects

    def _supersede(self, m, mag):
        """Answer the transactions that a new input replaces."""
        effects = []
        if m.check is not None:
            c = m.check
            m.check = None
            self._checks.pop(c.request, None)
            effects.append(Notify(Notification(c.transaction, Result.SUPERSEDED,
                                               m.mnId, m.phoa), c.mag))
        p = m.pending
        if p is not None and p.transaction is not None:
            effects.append(Notify(Notification(p.transaction, Result.SUPERSEDED,
                                               m.mnId, m.phoa), p.mag))
        if m.detach is not None:
            transaction, detachMag = m.detach
            m.detach = None
            # The mobile is back where it left (SUPERSEDED: a newer request
            # replaced the Detach) or at another MAG (MOVED).
            result = Result.SUPERSEDED if detachMag == mag else Result.MOVED
            effects.append(Notify(Notification(transaction, result,
                                               m.mnId, m.phoa), detachMag))
        return effects

    def _pbu(self, m, p):
        options = []
        phoa = m.phoa if m.phoa is not None else _ZERO
        options.append(mh.HomeNetworkPrefix(phoa, 128))
        if p.kind != "deregister":
            options.append(mh.AlternateCareOfAddress(p.pcoa))
        if m.pcoa is None or p.withMnId:
            # Initial attachment: the LMA needs the MN identifier (4.1 step 4).
            options.append(mh.MobileNodeIdentifier(m.mnId))
        lifetime = p.lifetime // mh.LIFETIME_UNIT
        return mh.BindingUpdate(m.sequence, mh.BU_A | mh.BU_H | mh.BU_P,
                                lifetime, options)

    def _start(self, m, p, now):
        m.pending = p
        p.timeout = self.initialTimeout
        return self._send(m, p, now)

    def _send(self, m, p, now):
        m.sequence = (m.sequence + 1) & 0xFFFF
        p.sequences.append(m.sequence)
        p.resendAt = now + p.timeout
        pbu = self._pbu(m, p)
        if self.security is not None:
            pbu = self.security.protect(pbu, m.mnId, now)
            if pbu is None:
                # No SA: nothing goes out, and the timer gives up in the end.
                self._say("no security association for {mnId}; PBU not sent",
                          mnId=_show(m.mnId))
                return []
        return [SendMH(pbu, self.lmaAddress)]

    def _retransmit(self, m, p, now):
        if p.timeout >= self.maxTimeout:
            self._say("no PBAck for {mnId} after {n} PBUs; giving up",
                      mnId=_show(m.mnId), n=len(p.sequences))
            return self._fail(m, p, Result.LMA_UNREACHABLE, None, now)
        p.timeout = min(p.timeout * 2, self.maxTimeout)
        return self._send(m, p, now)

    def _matchAck(self, ba):
        m = None
        mnIdOpt = ba.option(mh.MobileNodeIdentifier)
        if mnIdOpt is not None:
            m = self.mobiles.get(mnIdOpt.identifier)
        if m is None:
            hnp = ba.option(mh.HomeNetworkPrefix)
            if hnp is not None:
                m = self._byPhoa.get(hnp.prefix)
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
        if ba.status == mh.Status.SEQUENCE_OUT_OF_WINDOW and p.resyncs < 3:
            # The LMA remembers a later number (we restarted): continue after it.
            p.resyncs += 1
            m.sequence = ba.sequence
            self._say("LMA's last sequence for {mnId} is {seq}; resending",
                      mnId=_show(m.mnId), seq=ba.sequence)
            p.timeout = self.initialTimeout
            return self._send(m, p, now)
        if (ba.status in (mh.Status.MISSING_MN_IDENTIFIER_OPTION,
                          mh.Status.NOT_HOME_AGENT_FOR_MN)
                and p.kind != "deregister" and not p.withMnId):
            # The LMA has no binding for the pHoA (it restarted, or the
            # binding expired): register it again, naming the mobile.
            p.withMnId = True
            p.timeout = self.initialTimeout
            self._say("LMA does not know {mnId}'s binding; registering again",
                      mnId=_show(m.mnId))
            return self._send(m, p, now)
        if ba.status == mh.Status.NOT_HOME_AGENT_FOR_MN and p.kind == "deregister":
            # Nothing to deregister any more: the outcome the MAG wanted.
            ba = None
        if ba is not None and not ba.accepted:
            self._say("PBU for {mnId} rejected with {status}", mnId=_show(m.mnId),
                      status=mh.Status.name(ba.status))
            return self._fail(m, p, Result.PBACK_REJECTED, raw, now)
        m.pending = None
        effects = []
        if p.kind == "deregister":
            self._step(m.state, "pback")
            self._say("{mnId} deregistered", mnId=_show(m.mnId))
            transaction, mag = m.detach or (None, None)
            effects.extend(self._forget(m))
            if transaction is not None:
                effects.append(Notify(Notification(transaction, Result.SUCCESS,
                                                   m.mnId, m.phoa, raw), mag))
            return effects
        m.state = self._step(m.state, "pback")
        hnp = ba.option(mh.HomeNetworkPrefix)
        if m.phoa is None:
            if hnp is None or hnp.unspecified:
                self._say("PBAck for {mnId} assigns no pHoA", mnId=_show(m.mnId))
                return self._fail(m, p, Result.PBACK_REJECTED, raw, now)
            m.phoa = hnp.prefix
            self._byPhoa[m.phoa] = m
        old = m.pcoa
        m.pcoa = p.pcoa
        if p.kind != "refresh":
            self._say("{mnId} bound: {phoa} via {pcoa} ({kind})", mnId=_show(m.mnId),
                      phoa=m.phoa, pcoa=m.pcoa, kind=p.kind)
        granted = ba.lifetimeSeconds
        m.lifetime = granted
        m.expiry = now + granted
        refresh = granted * self.refreshRatio
        bra = ba.option(mh.BindingRefreshAdvice)
        if bra is not None:
            refresh = min(refresh, bra.interval * mh.LIFETIME_UNIT)
        m.refreshAt = now + refresh if granted else None
        m.saved = True
        effects.append(_persist(m))
        if p.transaction is not None:
            effects.append(Notify(Notification(p.transaction, Result.SUCCESS,
                                               m.mnId, m.phoa, raw), p.mag))
        if old is not None and old != m.pcoa:
            effects.append(Notify(Notification(0, Result.MOVED, m.mnId, m.phoa),
                                  old))
        return effects

    def _fail(self, m, p, result, raw, now):
        m.pending = None
        effects = []
        if p.transaction is not None:
            effects.append(Notify(Notification(p.transaction, result, m.mnId,
                                               m.phoa, raw), p.mag))
        if p.kind in ("attach",) or m.pcoa is None:
            effects[:0] = self._forget(m)
        elif p.kind in ("refresh",):
            effects[:0] = self._forget(m)
            effects.append(Notify(Notification(0, Result.BINDING_LOST, m.mnId,
                                               m.phoa, raw), m.pcoa))
        elif p.kind == "deregister":
            transaction, mag = m.detach or (None, None)
            effects[:0] = self._forget(m)
            if transaction is not None:
                effects.append(Notify(Notification(transaction, result, m.mnId,
                                                   m.phoa, raw), mag))
        else:
            # A failed handoff or re-attachment: the old binding stands.
            m.state = BOUND
            m.mag = m.pcoa
            if m.refreshAt is None:
                m.refreshAt = now
        return effects

    def _forget(self, m):
        """Drop C{m}; returns the L{Persist} that deletes its record, if any."""
        self.mobiles.pop(m.mnId, None)
        if m.phoa is not None and self._byPhoa.get(m.phoa) is m:
            del self._byPhoa[m.phoa]
        m.state = None
        m.detach = None
        if m.check is not None:
            self._checks.pop(m.check.request, None)
            m.check = None
        if self.security is not None and hasattr(self.security, "forget"):
            self.security.forget(m.mnId)
        if not m.saved:
            return []
        m.saved = False
        return [Persist(m.mnId, None)]


def _record(m):
    """
    The one record a bound mobile is kept as (see L{PmipCore.restore});
    addresses stay ipaddress objects, which the store writes as their text.
    """
    return {"mn": m.mnId.hex(), "phoa": m.phoa, "pcoa": m.pcoa,
            "sequence": m.sequence, "lifetime": m.lifetime, "expiry": m.expiry}


def _persist(m):
    return Persist(m.mnId, _record(m))


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


def _show(mnId):
    return mnId.decode("utf-8", "replace")
