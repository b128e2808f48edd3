"""
RFC 5846 Binding Revocation, the revoking side (the LMA), sans-IO: the
Binding Revocation Indications sent and not acknowledged yet, their
retransmission, and what an Acknowledgement or a Binding Error ends.

The revoking node sends a BRI and waits MINDelayBRIs (1 s) for the
Binding Revocation Acknowledgement; without one it sends the BRI again, at
most BRIMaxRetriesNumber (1) times (RFC 5846 section 11 defaults), then
gives up. The binding itself is gone before the first BRI leaves: the
answer only tells whether the peer knew and dropped its side. A peer that
answers with a Binding Error, status 2 (RFC 6275 9.2: it does not know MH
type 16), ends every BRI outstanding to it and gets no more. Nothing here
is kept across a restart: an unanswered BRI is lost with it, and the peer's
binding then ends with its lifetime.
"""

from netlmm.core.effects import SendMH
from netlmm.wire import mh

#: RFC 5846 section 11: seconds before a BRI is sent again.
MIN_DELAY_BRIS = 1.0
#: RFC 5846 section 11: times a BRI is sent again before giving up.
BRI_MAX_RETRIES_NUMBER = 1


class Outstanding:
    """One BRI sent to C{peer} about C{mnId}, waiting for its BRA."""

    __slots__ = ("message", "peer", "mnId", "retries", "due")

    def __init__(self, message, peer, mnId, due):
        self.message = message
        self.peer = peer
        self.mnId = mnId
        self.retries = 0
        self.due = due


class Revocations:
    """
    The BRIs of one revoking node. L{indicate} makes one (a L{SendMH}),
    L{acknowledged} / L{bindingError} end them, L{handleTimer} sends them
    again or gives up; C{counters} count each outcome.

    @param delay: MINDelayBRIs, seconds.
    @param retries: BRIMaxRetriesNumber.
    """

    def __init__(self, delay=MIN_DELAY_BRIS, retries=BRI_MAX_RETRIES_NUMBER):
        if delay <= 0:
            raise ValueError(f"the BRI retransmission delay must be positive, not {delay}")
        if retries < 0:
            raise ValueError(f"BRIMaxRetriesNumber must not be negative, not {retries}")
        self.delay = delay
        self.retries = retries
        #: Sequence number -> L{Outstanding}.
        self.outstanding = {}
        #: Peers that answered a BRI with Binding Error status 2.
        self.unsupported = set()
        self._sequence = 0
        self.counters = {"sent": 0, "retransmitted": 0, "acknowledged": 0, "refused": 0,
                         "unanswered": 0, "unsupported": 0}

    def indicate(self, peer, mnId, options, trigger, now, flags=mh.BR_P):
        """
        The L{SendMH} of a new BRI to C{peer} about C{mnId} carrying
        C{options}, for C{trigger} (a L{mh.RevocationTrigger} value).
        """
        self._sequence = (self._sequence + 1) & 0xFFFF
        while self._sequence in self.outstanding:
            self._sequence = (self._sequence + 1) & 0xFFFF
        message = mh.RevocationIndication(trigger, self._sequence, flags, options)
        self.outstanding[self._sequence] = Outstanding(message, peer, mnId, now + self.delay)
        self.counters["sent"] += 1
        return SendMH(message, peer)

    def acknowledged(self, bra, peer):
        """
        The L{Outstanding} that BRA C{bra} from C{peer} answers (no longer
        outstanding), or None when it answers none.
        """
        o = self.outstanding.get(bra.sequence)
        if o is None or o.peer != peer:
            return None
        del self.outstanding[bra.sequence]
        self.counters["acknowledged" if bra.accepted else "refused"] += 1
        return o

    def bindingError(self, error, peer):
        """
        The L{Outstanding}s a Binding Error from C{peer} ends: all of those
        to it when the status is 2 (it does not know MH type 16), after
        which it gets no more BRIs; none otherwise.
        """
        if error.status != mh.BE_UNKNOWN_MH_TYPE:
            return []
        ended = [o for o in self.outstanding.values() if o.peer == peer]
        if not ended:
            return []
        for o in ended:
            del self.outstanding[o.message.sequence]
        self.unsupported.add(peer)
        self.counters["unsupported"] += len(ended)
        return ended

    def nextTimer(self):
        """When L{handleTimer} must next run, or None."""
        if not self.outstanding:
            return None
        return min(o.due for o in self.outstanding.values())

    def handleTimer(self, now):
        """
        (the L{SendMH}s of the BRIs due again, the L{Outstanding}s given up
        after BRIMaxRetriesNumber retransmissions).
        """
        again, given = [], []
        for o in list(self.outstanding.values()):
            if o.due > now:
                continue
            if o.retries >= self.retries:
                del self.outstanding[o.message.sequence]
                self.counters["unanswered"] += 1
                given.append(o)
                continue
            o.retries += 1
            o.due = now + self.delay
            self.counters["retransmitted"] += 1
            again.append(SendMH(o.message, o.peer))
        return again, given
