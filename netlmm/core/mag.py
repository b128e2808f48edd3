"""
The Mobile Access Gateway, sans-IO: per-mobile state from attachment through
Trigger to bound, and detachment.

    (none) --attach--> ATTACHED --address--> TRIGGERED --Notification ok--> BOUND
    BOUND --detach--> DETACHING --Notification--> (none)
    BOUND --Notification MOVED / BINDING_LOST--> (none)
    TRIGGERED --Notification ADDRESS_CONFLICT--> ATTACHED

On ADDRESS_CONFLICT (Appendix B) the mobile stays attached: the MAG defends
the address on the access link (the L{AddressConflict} effect goes to the
strategy), the mobile configures another one, and the strategy calls
L{MagCore.addressReady} again with it.

Tunnel state is installed only after a successful Notification (section
4.9). How the mobile's pHoA is learned is the address-assignment strategy's
business: it calls L{MagCore.addressReady} when it has one (or knows the LMA
is to assign it).
"""

from ipaddress import IPv6Address

from netlmm.core.effects import (
    AddressConflict, Bound, InvalidInput, SendControl, TunnelDown, TunnelUp, Unbound,
)
from netlmm.wire import control
from netlmm.wire.control import AddressMode, Detach, Result, Trigger

ATTACHED = "ATTACHED"
TRIGGERED = "TRIGGERED"
BOUND = "BOUND"
DETACHING = "DETACHING"

#: (state, input) -> next state; None stands for "no entry".
TRANSITIONS = {
    (None, "attach"): ATTACHED,
    (DETACHING, "attach"): ATTACHED,
    (ATTACHED, "address"): TRIGGERED,
    (TRIGGERED, "success"): BOUND,
    (TRIGGERED, "failure"): None,
    (TRIGGERED, "conflict"): ATTACHED,
    (TRIGGERED, "timeout"): None,
    (ATTACHED, "detach"): None,
    (TRIGGERED, "detach"): DETACHING,
    (BOUND, "detach"): DETACHING,
    (BOUND, "moved"): None,
    (BOUND, "lost"): None,
    (DETACHING, "answer"): None,
    (DETACHING, "timeout"): None,
    (BOUND, "address"): TRIGGERED,
}


class Attachment:
    """The MAG's state for one attached mobile."""

    __slots__ = ("mnId", "state", "phoa", "mode", "transaction", "deadline",
                 "tunnel", "since")

    def __init__(self, mnId, now):
        self.mnId = mnId
        self.state = None
        self.phoa = None
        self.mode = None
        self.transaction = None
        self.deadline = None
        #: True while the data plane carries the mobile's traffic.
        self.tunnel = False
        self.since = now

    def __repr__(self):
        return f"Attachment({self.mnId!r}, {self.state}, phoa={self.phoa})"


class MagCore:
    """
    @param address: this MAG's data-plane address, the pCoA.
    @param lmaAddress: the LMA whose tunnel the MAG terminates.
    @param notificationTimeout: how long to wait for a Notification before
        giving a Trigger or Detach up. It exceeds the PMIP client's whole
        retransmission schedule (1+2+...+32 s) by default.
    """

    def __init__(self, address, lmaAddress, notificationTimeout=70.0, log=None):
        self.address = IPv6Address(address)
        self.lmaAddress = IPv6Address(lmaAddress)
        self.notificationTimeout = notificationTimeout
        self._log = log
        self.attachments = {}
        self._byTransaction = {}
        # Transactions given up locally (detach while triggered, re-attach
        # while detaching): their late Notifications are expected, not errors.
        self._abandoned = {}
        self._nextTransaction = 1

    # ------------------------------------------------------------ queries

    def attachment(self, mnId):
        """The state kept for C{mnId}, or None."""
        return self.attachments.get(mnId)

    def nextTimer(self):
        """When a pending Trigger or Detach times out next, or None."""
        deadlines = [a.deadline for a in self.attachments.values()
                     if a.deadline is not None]
        return min(deadlines) if deadlines else None

    # ------------------------------------------------------------ inputs

    def attach(self, mnId, now):
        """The mobile appeared on the access link (L2 attachment)."""
        old = self.attachments.get(mnId)
        self._step(old, "attach")
        if old is not None:
            # Back before the Detach was answered: that answer no longer matters.
            self._forgetTransaction(old)
        a = Attachment(mnId, now)
        a.state = ATTACHED
        self.attachments[mnId] = a
        self._say("MN {mnId} attached", mnId=_show(mnId))
        return []

    def addressReady(self, mnId, phoa, mode, now):
        """
        The strategy knows the mobile's pHoA (or, with C{phoa} None and mode
        LMA_ASSIGNED, that the LMA is to assign it): trigger the PMIP client.
        """
        a = self.attachments.get(mnId)
        nextState = self._step(a, "address")
        if phoa is None and mode != AddressMode.LMA_ASSIGNED:
            raise InvalidInput("address", a.state, "no pHoA and not LMA-assigned")
        a.state = nextState
        a.phoa = None if phoa is None else IPv6Address(phoa)
        a.mode = mode
        a.transaction = self._transaction(a)
        a.deadline = now + self.notificationTimeout
        return [SendControl(Trigger(a.transaction, mnId, self.address, a.phoa, mode))]

    def detach(self, mnId, now):
        """The mobile left the access link."""
        a = self.attachments.get(mnId)
        nextState = self._step(a, "detach")
        self._say("MN {mnId} detached in state {state}", mnId=_show(mnId),
                  state=a.state)
        self._forgetTransaction(a)
        effects = self._tunnelDown(a)
        if nextState is None:
            del self.attachments[mnId]
            return effects + [Unbound(mnId, a.phoa, None, "detached")]
        a.state = nextState
        a.transaction = self._transaction(a)
        a.deadline = now + self.notificationTimeout
        effects.append(SendControl(Detach(a.transaction, mnId, self.address, a.phoa)))
        return effects

    def receiveNotification(self, notification, now):
        """A Notification from the PMIP client."""
        n = notification
        if n.transaction == 0:
            return self._unsolicited(n)
        a = self._byTransaction.pop(n.transaction, None)
        if a is None and self._abandoned.pop(n.transaction, None) is not None:
            self._say("late Notification {txn} for an abandoned transaction",
                      txn=n.transaction)
            return []
        if a is None:
            raise InvalidInput("Notification", "no such transaction",
                               f"transaction {n.transaction} is not pending")
        a.transaction = None
        a.deadline = None
        if a.state == DETACHING:
            self._step(a, "answer")
            del self.attachments[a.mnId]
            return [Unbound(a.mnId, a.phoa, n.result, "detached")]
        if n.result == Result.SUCCESS:
            if n.phoa is None:
                self._step(a, "failure")
                effects = self._tunnelDown(a)
                del self.attachments[a.mnId]
                return effects + [Unbound(a.mnId, a.phoa, n.result,
                                          "Notification without pHoA")]
            a.state = self._step(a, "success")
            a.phoa = n.phoa
            self._say("MN {mnId} bound with pHoA {phoa}", mnId=_show(a.mnId),
                      phoa=a.phoa)
            effects = []
            if not a.tunnel:
                a.tunnel = True
                effects.append(TunnelUp(a.mnId, a.phoa, self.lmaAddress))
            effects.append(Bound(a.mnId, a.phoa))
            return effects
        if n.result == Result.ADDRESS_CONFLICT and a.phoa is not None:
            a.state = self._step(a, "conflict")
            effects = self._tunnelDown(a)
            self._say("pHoA {phoa} of {mnId} is used by another mobile; defending it",
                      phoa=a.phoa, mnId=_show(a.mnId))
            phoa, a.phoa = a.phoa, None
            return effects + [AddressConflict(a.mnId, phoa)]
        self._step(a, "failure")
        effects = self._tunnelDown(a)
        del self.attachments[a.mnId]
        reason = control.Result.NAMES.get(n.result, str(n.result))
        self._say("trigger for {mnId} failed: {reason}", mnId=_show(a.mnId),
                  reason=reason)
        return effects + [Unbound(a.mnId, a.phoa, n.result, reason)]

    def handleTimer(self, now):
        """Give up Triggers and Detaches that got no Notification in time."""
        effects = []
        for a in list(self.attachments.values()):
            if a.deadline is not None and a.deadline <= now:
                self._step(a, "timeout")
                self._forgetTransaction(a)
                effects.extend(self._tunnelDown(a))
                del self.attachments[a.mnId]
                self._say("no Notification for {mnId}; giving up", mnId=_show(a.mnId))
                effects.append(Unbound(a.mnId, a.phoa, None, "no Notification"))
        return effects

    # ------------------------------------------------------------ internals

    def _say(self, fmt, **kw):
        if self._log is not None:
            self._log.info(fmt, **kw)

    def _step(self, a, what):
        state = None if a is None else a.state
        nextState = TRANSITIONS.get((state, what), "invalid")
        if nextState == "invalid":
            raise InvalidInput(what, state)
        return nextState

    def _transaction(self, a):
        t = self._nextTransaction
        self._nextTransaction = t % 0xFFFFFFFF + 1
        self._byTransaction[t] = a
        return t

    def _forgetTransaction(self, a):
        if a.transaction is not None:
            self._byTransaction.pop(a.transaction, None)
            self._abandoned[a.transaction] = a.mnId
            while len(self._abandoned) > 1024:
                del self._abandoned[next(iter(self._abandoned))]
            a.transaction = None
            a.deadline = None

    def _tunnelDown(self, a):
        if not a.tunnel:
            return []
        a.tunnel = False
        return [TunnelDown(a.mnId, a.phoa, self.lmaAddress)]

    def _unsolicited(self, n):
        a = None if n.mnId is None else self.attachments.get(n.mnId)
        if n.result not in (Result.MOVED, Result.BINDING_LOST):
            raise InvalidInput("Notification", "unsolicited",
                               f"result {n.result} needs a transaction")
        if a is None or a.state != BOUND:
            # Already gone here (the mobile detached first): nothing to undo.
            return []
        self._step(a, "moved" if n.result == Result.MOVED else "lost")
        effects = self._tunnelDown(a)
        del self.attachments[a.mnId]
        reason = Result.NAMES[n.result]
        self._say("MN {mnId}: {reason}", mnId=_show(a.mnId), reason=reason)
        return effects + [Unbound(a.mnId, a.phoa, n.result, reason)]


def _show(mnId):
    return mnId.decode("utf-8", "replace")
