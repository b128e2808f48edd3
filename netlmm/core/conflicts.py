"""
Address conflict detection between PMIP clients (draft Appendix B), sans-IO.

A mobile that configured its pHoA itself (SLAAC, Trigger address mode
stateless) may have picked an address another mobile uses. The PMIP client
checks its own cache first (L{netlmm.core.pmip}); with other PMIP clients in
the domain (C{peers}) it then asks each of them with a Conflict Detection
Request and waits for their Responses, up to C{peerTimeout} (a silent peer
does not block the mobile: the LMA's own DAD still catches a duplicate
within one LMA). This module keeps those checks; the PMIP client core keeps
the mobile's state (AWAITING_PEERS) and acts on the outcome.

The same request serves a PMIP client that restarts with bindings from its
store (draft E.1): before refreshing one it asks whether a peer holds that
mobile now (a MAG moved it there while this client was down); a peer that
has the same mobile with the same pHoA answers HELD_HERE, and the client
forgets the binding without sending a PBU (a I{verifying} L{Check}).
"""

from netlmm.core.effects import AskPeers
from netlmm.wire.control import AddressMode, Conflict, ConflictRequest, ConflictResponse


class Check:
    """A Conflict Detection Request waiting for the peers' answers."""

    __slots__ = ("transaction", "mag", "request", "waiting", "deadline", "silent",
                 "verifying")

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
        #: A restored binding's check: does a peer hold the mobile now?
        self.verifying = False


class ConflictDetector:
    """
    The checks this PMIP client has asked its peers about.

    @param peers: the other PMIP clients of the domain (opaque keys, such as
        '[address]:port', that come back in L{AskPeers} and with their
        answers).
    @param peerTimeout: how long to wait for the peers' answers, seconds.
    """

    def __init__(self, peers=(), peerTimeout=1.0):
        self.peers = tuple(peers)
        if peerTimeout <= 0:
            raise ValueError("peerTimeout must be positive")
        self.peerTimeout = peerTimeout
        #: Request transaction -> MN identifier.
        self._checks = {}
        self._nextRequest = 1
        #: How many stateless Triggers the peers were asked about, how many
        #: found a conflict, how many went on with a silent peer, how many
        #: of the peers' requests this client answered, how many restored
        #: bindings were checked and how many of those a peer held.
        self.counters = {"asked": 0, "conflicts": 0, "silent": 0, "answered": 0,
                         "verified": 0, "held": 0}

    def wanted(self, trigger):
        """True when C{trigger}'s pHoA must be checked with the peers."""
        return (bool(self.peers) and trigger.phoa is not None
                and trigger.mode == AddressMode.STATELESS)

    def ask(self, mnId, phoa, transaction, mag, now, verifying=False):
        """
        Start a check of C{phoa} for C{mnId}: the L{Check} and the L{AskPeers}.
        C{verifying}: the check of a restored binding (no Trigger to answer).
        """
        request = self._nextRequest
        self._nextRequest = request % 0xFFFFFFFF + 1
        check = Check(transaction, mag, request, self.peers, now + self.peerTimeout)
        check.verifying = verifying
        self._checks[request] = mnId
        self.counters["verified" if verifying else "asked"] += 1
        return check, AskPeers(ConflictRequest(request, mnId, phoa), self.peers)

    def mobileAsked(self, transaction):
        """The MN identifier the request C{transaction} is about, or None."""
        return self._checks.get(transaction)

    def done(self, check):
        """C{check} is over (answered, abandoned or superseded)."""
        self._checks.pop(check.request, None)

    def answered(self, check, peer, result):
        """
        Peer C{peer} said C{result} (a L{Conflict} code, or None when it
        could not be asked). Returns 'conflict', 'unique' when every peer
        has answered (or failed), or None while some are still waiting.
        """
        check.waiting.discard(peer)
        if result == Conflict.HELD_HERE and check.verifying:
            self.counters["held"] += 1
            return "held"
        if result == Conflict.CONFLICT_DETECTED:
            self.counters["conflicts"] += 1
            return "conflict"
        if result is None:
            check.silent.add(peer)
        return None if check.waiting else "unique"

    def timedOut(self, check):
        """The deadline passed: every peer still waited for counts as silent."""
        check.silent |= check.waiting
        check.waiting.clear()

    def unique(self, check):
        """Count a check that ends with the PBU going out; True if a peer was silent."""
        if check.silent:
            self.counters["silent"] += 1
        return bool(check.silent)

    def answer(self, request, holder):
        """
        The L{ConflictResponse} to a peer's L{ConflictRequest}. C{holder} is
        (MN identifier, still being checked here) of the mobile this client
        has with the requested pHoA, or None. Two clients checking the same
        address at once both hold it; the mobile with the lower MN
        identifier (bytewise) keeps it, so exactly one of them hears
        'conflict'. The same mobile bound here (not being checked): HELD_HERE.
        """
        conflict = holder is not None and holder[0] != request.mnId
        if conflict and holder[1] and request.mnId < holder[0]:
            conflict = False
        self.counters["answered"] += 1
        if conflict:
            result = Conflict.CONFLICT_DETECTED
        elif holder is not None and not holder[1]:
            result = Conflict.HELD_HERE
        else:
            result = Conflict.NO_CONFLICT
        return ConflictResponse(request.transaction, result, request.mnId, request.phoa)
