"""
The Mobile Access Gateway, sans-IO: per-mobile state from attachment through
Trigger to bound, and detachment.

    (none) --attach--> ATTACHED --address--> TRIGGERED --success--> BOUND
    BOUND --address--> TRIGGERED (a new address or prefix; the tunnel stays)
    BOUND --detach--> DETACHING --answer--> (none)
    BOUND --moved / lost--> (none)
    TRIGGERED --conflict--> ATTACHED
    BOUND --reanchor--> BOUND (another LMA anchors it now; the old home is kept)

L{TRANSITIONS} is the whole machine: every input goes through L{MagCore.step},
which refuses an input the table has no entry for (L{InvalidInput}, nothing
changed) and sets the next state, removing the entry when it is (none).

On ADDRESS_CONFLICT (Appendix B) the mobile stays attached: the MAG defends
the address on the access link (the L{AddressConflict} effect goes to the
strategy), the mobile configures another one, and the strategy calls
L{MagCore.addressReady} again with it.

An unsolicited REANCHORED Notification (draft 4.4: the PMIP client moved the
mobile to another LMA) gives a bound mobile a new per-MN prefix at the new
LMA. Its old prefix becomes an L{OldHome}: the strategy advertises it
deprecated (preferred lifetime 0), its tunnel to the old LMA stays, and the
MAG releases it (tunnel down, a Detach naming the prefix, so the PMIP client
deregisters the old binding) once it has been unused for C{idleRelease}
seconds (when the data plane can tell, L{lastUsed}) or C{oldLifetime} after
the move at the latest. A mobile that leaves takes its old homes along.

Tunnel state is installed only after a successful Notification (section
4.9), one L{TunnelUp} per I{home} of the mobile: its pHoA, its per-MN
prefix (draft E.3, address mode PREFIX) and its IPv4 home address (draft
E.2, RFC 5844), whichever the Notification carries. How the mobile's address
is learned is the address-assignment strategy's business: it calls
L{MagCore.addressReady} when it has one (or knows the LMA is to assign it).
Every Trigger carries the mobile's link-layer identifier (its MAC, from the
attachment) and the access technology of this MAG's link (RFC 5213 8.5);
with C{ipv4} policy on it asks the LMA for an IPv4 home address too.
"""

import enum
from collections import namedtuple
from ipaddress import IPv4Interface, IPv6Address, IPv6Network

from netlmm.core.effects import (
    AddressConflict, Bound, InvalidInput, SendControl, TunnelDown, TunnelUp, Unbound,
)
from netlmm.wire import control
from netlmm.wire.control import AddressMode, Detach, Result, Trigger, showMnId


class State(str, enum.Enum):
    """
    Where a mobile's attachment stands. A state's text is its name (the
    control socket's listing, the logs).
    """

    #: On the access link; no Trigger yet (waiting for its address).
    ATTACHED = "ATTACHED"
    #: Trigger sent; waiting for the Notification.
    TRIGGERED = "TRIGGERED"
    #: Bound at the LMA through this MAG; the tunnel carries its homes.
    BOUND = "BOUND"
    #: Left the link; Detach sent, waiting for its Notification.
    DETACHING = "DETACHING"

    def __str__(self):
        return self.value


ATTACHED, TRIGGERED, BOUND, DETACHING = State

#: (state, input) -> next state; None as a state is "no entry".
TRANSITIONS = {
    (None, "attach"): ATTACHED,
    (DETACHING, "attach"): ATTACHED,
    (ATTACHED, "address"): TRIGGERED,
    (BOUND, "address"): TRIGGERED,
    (TRIGGERED, "success"): BOUND,
    (BOUND, "reanchor"): BOUND,
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
}

#: What a Trigger sends to ask the LMA for an IPv4 home address (RFC 5844).
IPV4_REQUEST = IPv4Interface("0.0.0.0/0")

#: RFC 5213 8.5 Access Technology Type values (1..5; the IANA registry adds
#: 6..12, which are accepted as numbers).
ACCESS_TECHNOLOGIES = {"virtual": 1, "ppp": 2, "ethernet": 3, "wlan": 4, "wimax": 5}


class Homes(namedtuple("Homes", "phoa prefix ipv4 ipv4Router")):
    """
    What a bound mobile has: its pHoA (IPv6Address or None), its per-MN
    prefix (IPv6Network or None), its IPv4 home address (IPv4Interface, the
    address with the prefix length of its home network, or None) and its
    IPv4 default router (IPv4Address or None).
    """

    __slots__ = ()

    def dataPlane(self):
        """The homes as the data plane carries them (see L{IDataPlane})."""
        out = [h for h in (self.phoa, self.prefix) if h is not None]
        if self.ipv4 is not None:
            out.append(self.ipv4.ip)
        return tuple(out)


NO_HOMES = Homes(None, None, None, None)


class OldHome:
    """
    A home another LMA anchored before the mobile moved (draft 4.4): kept,
    deprecated, until released at C{deadline} or when unused for a while.
    """

    __slots__ = ("prefix", "lma", "since", "deadline", "checkAt")

    def __init__(self, prefix, lma, since, deadline):
        self.prefix = prefix
        self.lma = lma
        self.since = since
        self.deadline = deadline
        #: When to look at its use next.
        self.checkAt = deadline

    def __repr__(self):
        return f"OldHome({self.prefix}, lma={self.lma}, deadline={self.deadline})"


class Attachment:
    """The MAG's state for one attached mobile."""

    __slots__ = ("mnId", "state", "phoa", "mode", "transaction", "deadline",
                 "tunnels", "lma", "since", "linkLayerId", "homes",
                 "request", "old", "ipv4Hint")

    def __init__(self, mnId, now, linkLayerId=None):
        self.mnId = mnId
        self.state = None
        self.reset(now, linkLayerId)

    def reset(self, now, linkLayerId):
        """Start over: a fresh attachment (kept homes are only hints now)."""
        self.phoa = None
        self.mode = None
        self.transaction = None
        self.deadline = None
        #: The homes the data plane carries for the mobile now, and the LMA
        #: their tunnel goes to.
        self.tunnels = ()
        self.lma = None
        self.since = now
        self.linkLayerId = linkLayerId
        #: What the last successful Notification bound.
        self.homes = NO_HOMES
        #: The Trigger or Detach of the pending C{transaction}.
        self.request = None
        #: L{OldHome}s of an earlier anchor, deprecated.
        self.old = []
        #: The IPv4 home address the mobile had at its previous MAG (context
        #: transfer): the Trigger asks the LMA for it, not for a new one.
        self.ipv4Hint = None

    @property
    def tunnel(self):
        """True while the data plane carries some of the mobile's traffic."""
        return bool(self.tunnels)

    def __repr__(self):
        state = self.state.name if self.state is not None else None
        return f"Attachment({self.mnId!r}, {state}, phoa={self.phoa}, homes={self.homes})"


class MagCore:
    """
    @param address: this MAG's data-plane address, the pCoA.
    @param lmaAddress: the LMA whose tunnel the MAG terminates, unless the
        Notification names another (a PMIP client with several LMAs, draft
        4.4: the MAG keeps tunnels to each).
    @param notificationTimeout: how long to wait for a Notification before
        giving a Trigger or Detach up. It exceeds the PMIP client's whole
        retransmission schedule (1+2+...+32 s) by default.
    @param accessTechnology: the RFC 5213 8.5 Access Technology Type of this
        MAG's access link, sent in every Trigger (None: not sent).
    @param ipv4: ask the LMA for an IPv4 home address for every mobile
        (RFC 5844: the MAG's policy for its mobiles).
    @param oldLifetime: how long (seconds) a mobile moved to another LMA
        keeps its old prefix at most: the valid lifetime its RAs give the
        deprecated prefix, after which the MAG releases it.
    @param idleRelease: release an old prefix unused for this long
        (seconds; 0: only at the end of C{oldLifetime}). Needs L{lastUsed}.
    """

    #: Set by the service: C{lastUsed(home)}, when a packet of the home last
    #: went through the data plane (L{netlmm.dataplane.userspace}), or None
    #: when the data plane cannot tell.
    lastUsed = None

    def __init__(self, address, lmaAddress, notificationTimeout=70.0, log=None,
                 accessTechnology=None, ipv4=False, oldLifetime=3600.0, idleRelease=60.0):
        self.oldLifetime = oldLifetime
        self.idleRelease = idleRelease
        #: transaction -> (MN identifier, Detach, deadline) of the releases of
        #: old homes not answered yet.
        self._releases = {}
        self.address = IPv6Address(address)
        self.lmaAddress = IPv6Address(lmaAddress)
        self.notificationTimeout = notificationTimeout
        self.accessTechnology = accessTechnology
        self.ipv4 = ipv4
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

    def homes(self, mnId):
        """The L{Homes} C{mnId} is bound with here (L{NO_HOMES} when not bound)."""
        a = self.attachments.get(mnId)
        return a.homes if a is not None and a.state is BOUND else NO_HOMES

    def expectIpv4(self, mnId, ipv4):
        """
        C{mnId}, attached here, had the IPv4 home address C{ipv4}
        (IPv4Interface) at its previous MAG (context transfer): with the
        C{ipv4} policy its Trigger asks for that address. Nothing happens
        for a mobile not attached here.
        """
        a = self.attachments.get(mnId)
        if a is not None:
            a.ipv4Hint = ipv4

    def oldHomes(self, mnId):
        """The L{OldHome}s C{mnId} keeps deprecated here (after an anchor move)."""
        a = self.attachments.get(mnId)
        return tuple(a.old) if a is not None else ()

    def requests(self):
        """
        The Triggers and Detaches not answered yet, oldest first: what to
        send a PMIP client when the connection to it is (re)made, since a
        client that restarted lost what it had not answered.
        """
        pending = [(a.deadline, a.request) for a in self.attachments.values()
                   if a.transaction is not None]
        pending += [(deadline, detach) for _, detach, deadline in self._releases.values()]
        pending.sort(key=lambda p: p[0])
        return [request for _, request in pending]

    def nextTimer(self):
        """When a pending Trigger or Detach times out next (or an old home is due), or None."""
        deadlines = [a.deadline for a in self.attachments.values()
                     if a.deadline is not None]
        deadlines += [o.checkAt for a in self.attachments.values() for o in a.old]
        deadlines += [deadline for _, _, deadline in self._releases.values()]
        return min(deadlines) if deadlines else None

    # ------------------------------------------------------------ the machine

    def step(self, a, what):
        """
        Take input C{what} for attachment C{a} (None: no entry): refuse it
        (L{InvalidInput}, nothing changed) unless L{TRANSITIONS} has it, else
        move C{a} to the next state, removing its entry when that is (none).
        Returns the next state.
        """
        state = None if a is None else a.state
        try:
            nextState = TRANSITIONS[(state, what)]
        except KeyError:
            raise InvalidInput(what, state) from None
        if a is not None:
            a.state = nextState
            if nextState is None:
                self.attachments.pop(a.mnId, None)
        return nextState

    # ------------------------------------------------------------ inputs

    def attach(self, mnId, now, linkLayerId=None):
        """
        The mobile appeared on the access link (L2 attachment);
        C{linkLayerId} is its link-layer address (its MAC) when known.
        """
        a = self.attachments.get(mnId)
        fresh = a is None
        if fresh:
            a = Attachment(mnId, now, linkLayerId)
        self.step(a, "attach")
        if not fresh:
            # Back before the Detach was answered: that answer no longer matters.
            self._forgetTransaction(a)
            a.reset(now, linkLayerId)
        self.attachments[mnId] = a
        self._say("MN {mnId} attached", mnId=showMnId(mnId))
        return []

    def addressReady(self, mnId, phoa, mode, now, prefix=None):
        """
        The strategy knows the mobile's pHoA, or (C{phoa} None) that the LMA
        is to assign it (mode LMA_ASSIGNED) or to give it a prefix of its own
        (mode PREFIX; C{prefix} names one the MAG already knows): trigger
        the PMIP client.
        """
        a = self.attachments.get(mnId)
        if a is not None:
            # Checked before anything changes (step below is the last check).
            _checkAddress(a, phoa, mode, prefix)
        self.step(a, "address")
        a.phoa = None if phoa is None else IPv6Address(phoa)
        a.mode = mode
        a.transaction = self._transaction(a)
        a.deadline = now + self.notificationTimeout
        ipv4 = None
        if self.ipv4:
            # The address it has (a re-trigger), else a request for one.
            ipv4 = a.homes.ipv4 or a.ipv4Hint or IPV4_REQUEST
        a.request = Trigger(
            a.transaction, mnId, self.address, a.phoa, mode,
            prefix=None if prefix is None else IPv6Network(prefix), ipv4=ipv4,
            linkLayerId=a.linkLayerId, accessTechnology=self.accessTechnology)
        return [SendControl(a.request)]

    def relocate(self, mnId, now):
        """
        Trigger again for a bound mobile, with everything the MAG knows of
        it (pHoA or per-MN prefix, IPv4 home address, link-layer
        identifier), so that another PMIP client registers the same homes
        (draft E.1, PMIP client relocation: the service sends the Trigger to
        the new client). The tunnels stay while it is answered.
        """
        a = self.attachments.get(mnId)
        if a is None or a.state is not BOUND:
            raise InvalidInput("relocate", None if a is None else a.state,
                               "only a bound mobile is relocated")
        if a.mode == AddressMode.PREFIX:
            return self.addressReady(mnId, None, a.mode, now, prefix=a.homes.prefix)
        return self.addressReady(mnId, a.homes.phoa or a.phoa, a.mode, now)

    def detach(self, mnId, now):
        """The mobile left the access link."""
        a = self.attachments.get(mnId)
        state = None if a is None else a.state
        nextState = self.step(a, "detach")
        self._say("MN {mnId} detached in state {state}", mnId=showMnId(mnId),
                  state=state.name)
        self._forgetTransaction(a)
        effects = self._tunnelDown(a)
        if nextState is None:
            return effects + [Unbound(mnId, a.phoa, None, "detached")]
        a.transaction = self._transaction(a)
        a.deadline = now + self.notificationTimeout
        a.request = Detach(a.transaction, mnId, self.address, a.phoa,
                           linkLayerId=a.linkLayerId)
        effects.append(SendControl(a.request))
        return effects

    def receiveNotification(self, notification, now):
        """A Notification from the PMIP client."""
        n = notification
        if n.transaction == 0:
            return self._unsolicited(n, now)
        release = self._releases.pop(n.transaction, None)
        if release is not None:
            self._say("MN {mnId}: old home {prefix} released: {result}",
                      mnId=showMnId(release[0]), prefix=release[1].prefix,
                      result=control.Result.NAMES.get(n.result, n.result))
            return []
        a = self._byTransaction.get(n.transaction)
        if a is None and self._abandoned.pop(n.transaction, None) is not None:
            self._say("late Notification {txn} for an abandoned transaction",
                      txn=n.transaction)
            return []
        if a is None:
            raise InvalidInput("Notification", "no such transaction",
                               f"transaction {n.transaction} is not pending")
        if a.state is DETACHING:
            self.step(a, "answer")
            self._settled(a)
            return [Unbound(a.mnId, a.phoa, n.result, "detached")]
        if n.result == Result.SUCCESS:
            return self._success(a, n)
        if n.result == Result.ADDRESS_CONFLICT and a.phoa is not None:
            self.step(a, "conflict")
            self._settled(a)
            effects = self._tunnelDown(a)
            self._say("pHoA {phoa} of {mnId} is used by another mobile; defending it",
                      phoa=a.phoa, mnId=showMnId(a.mnId))
            phoa, a.phoa = a.phoa, None
            return effects + [AddressConflict(a.mnId, phoa)]
        reason = control.Result.NAMES.get(n.result, str(n.result))
        self._say("trigger for {mnId} failed: {reason}", mnId=showMnId(a.mnId),
                  reason=reason)
        return self._fail(a, n.result, reason)

    def handleTimer(self, now):
        """
        Give up Triggers and Detaches that got no Notification in time;
        release old homes that are due (unused, or at the end of their time).
        """
        effects = []
        for t, (_, _, deadline) in list(self._releases.items()):
            if deadline <= now:
                del self._releases[t]
        for a in list(self.attachments.values()):
            if a.old:
                effects.extend(self._checkOld(a, now))
            if a.deadline is not None and a.deadline <= now:
                self.step(a, "timeout")
                self._forgetTransaction(a)
                effects.extend(self._tunnelDown(a))
                self._say("no Notification for {mnId}; giving up", mnId=showMnId(a.mnId))
                effects.append(Unbound(a.mnId, a.phoa, None, "no Notification"))
        return effects

    # ------------------------------------------------------------ internals

    def _success(self, a, n):
        """A SUCCESS Notification for the pending Trigger of C{a}."""
        if a.mode == AddressMode.PREFIX and n.prefix is None:
            return self._fail(a, n.result, "Notification without a prefix")
        if a.mode != AddressMode.PREFIX and n.phoa is None:
            return self._fail(a, n.result, "Notification without pHoA")
        ipv4, router = n.ipv4, n.ipv4Router
        if ipv4 is not None and (router is None or ipv4 == IPV4_REQUEST):
            self._say("MN {mnId}: IPv4 home address {ipv4} without a usable default "
                      "router ({router}); IPv4 not served", mnId=showMnId(a.mnId),
                      ipv4=ipv4, router=router)
            ipv4 = router = None
        elif ipv4 is None and self.ipv4:
            self._say("MN {mnId}: the LMA assigned no IPv4 home address",
                      mnId=showMnId(a.mnId))
        self.step(a, "success")
        self._settled(a)
        a.phoa = n.phoa
        a.homes = Homes(n.phoa, n.prefix, ipv4, router)
        self._say("MN {mnId} bound with {homes}", mnId=showMnId(a.mnId),
                  homes=", ".join(str(h) for h in a.homes.dataPlane()))
        wanted = a.homes.dataPlane()
        lma = n.lma if n.lma is not None else self.lmaAddress
        if a.lma is not None and lma != a.lma:
            # Anchored at another LMA now: every home's tunnel goes there.
            effects = self._tunnelDown(a, old=False)
        else:
            effects = [TunnelDown(a.mnId, h, a.lma) for h in a.tunnels if h not in wanted]
        effects += [TunnelUp(a.mnId, h, lma) for h in wanted if h not in a.tunnels]
        a.tunnels = wanted
        a.lma = lma
        effects.append(Bound(a.mnId, a.phoa, n.prefix, ipv4, router, n.peerMag))
        return effects

    def _fail(self, a, result, reason):
        """The Trigger of C{a} failed: no tunnel, no entry."""
        self.step(a, "failure")
        self._settled(a)
        return self._tunnelDown(a) + [Unbound(a.mnId, a.phoa, result, reason)]

    def _settled(self, a):
        """C{a}'s pending transaction got its Notification."""
        self._byTransaction.pop(a.transaction, None)
        a.transaction = None
        a.deadline = None

    def _say(self, fmt, **kw):
        if self._log is not None:
            self._log.info(fmt, **kw)

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

    def _tunnelDown(self, a, old=True):
        """Tunnels of C{a}'s homes down (and of its old homes, unless C{old} is false)."""
        effects = [TunnelDown(a.mnId, h, a.lma) for h in a.tunnels]
        a.tunnels = ()
        a.lma = None
        if old:
            effects += [TunnelDown(a.mnId, o.prefix, o.lma) for o in a.old]
            a.old = []
        return effects

    def _reanchored(self, a, n, now):
        """REANCHORED: C{a} has a new prefix at another LMA; its old prefix is kept."""
        old = a.homes.prefix
        if a.state is not BOUND or old is None or n.prefix is None \
                or n.lma is None or n.prefix == old:
            self._say("MN {mnId}: REANCHORED to {prefix} at {lma} not usable here "
                      "(state {state}, prefix {old}); ignored", mnId=showMnId(a.mnId),
                      prefix=n.prefix, lma=n.lma, state=a.state, old=old)
            return []
        self.step(a, "reanchor")
        a.old.append(OldHome(old, a.lma, now, now + self.oldLifetime))
        self._schedule(a.old[-1], now)
        effects = [TunnelUp(a.mnId, n.prefix, n.lma)]
        if a.homes.ipv4 is not None:
            # Not expected (the PMIP client moves no IPv4 mobile): IPv4 follows.
            effects.append(TunnelUp(a.mnId, a.homes.ipv4.ip, n.lma))
        a.homes = a.homes._replace(prefix=n.prefix)
        a.tunnels = a.homes.dataPlane()
        a.lma = n.lma
        self._say("MN {mnId} re-anchored at {lma} with {prefix}; {old} deprecated",
                  mnId=showMnId(a.mnId), lma=n.lma, prefix=n.prefix, old=old)
        return effects + [Bound(a.mnId, a.phoa, n.prefix, a.homes.ipv4, a.homes.ipv4Router)]

    def _schedule(self, o, now):
        """When to look at the old home C{o} next."""
        check = o.deadline
        if self.idleRelease and self.lastUsed is not None:
            check = min(check, self.lastUsed(o.prefix) + self.idleRelease)
        o.checkAt = max(check, now)

    def _checkOld(self, a, now):
        """Release C{a}'s old homes that are due."""
        effects = []
        for o in list(a.old):
            if o.checkAt > now:
                continue
            idle = None
            if self.idleRelease and self.lastUsed is not None:
                idle = now - self.lastUsed(o.prefix)
            if o.deadline > now and (idle is None or idle < self.idleRelease):
                self._schedule(o, now)
                continue
            effects.extend(self._release(a, o, now, "its time is over" if idle is None
                                         or idle < self.idleRelease
                                         else f"unused for {idle:.0f} s"))
        return effects

    def _release(self, a, o, now, why):
        """Drop the old home C{o} of C{a} and tell the PMIP client (a Detach naming it)."""
        a.old.remove(o)
        self._say("MN {mnId}: releasing the old home {prefix} ({why})",
                  mnId=showMnId(a.mnId), prefix=o.prefix, why=why)
        t = self._nextTransaction
        self._nextTransaction = t % 0xFFFFFFFF + 1
        detach = Detach(t, a.mnId, self.address, linkLayerId=a.linkLayerId, prefix=o.prefix)
        self._releases[t] = (a.mnId, detach, now + self.notificationTimeout)
        return [TunnelDown(a.mnId, o.prefix, o.lma), SendControl(detach)]

    def _unsolicited(self, n, now):
        a = None if n.mnId is None else self.attachments.get(n.mnId)
        if n.result == Result.REANCHORED:
            return [] if a is None else self._reanchored(a, n, now)
        if a is not None and n.result == Result.BINDING_LOST and n.prefix is not None:
            for o in a.old:
                if o.prefix == n.prefix:
                    # The old LMA dropped the old home: only that goes.
                    a.old.remove(o)
                    self._say("MN {mnId}: old home {prefix} lost", mnId=showMnId(a.mnId),
                              prefix=o.prefix)
                    return [TunnelDown(a.mnId, o.prefix, o.lma)]
        if n.result not in (Result.MOVED, Result.BINDING_LOST):
            raise InvalidInput("Notification", "unsolicited",
                               f"result {n.result} needs a transaction")
        if a is None or a.state is not BOUND:
            # Already gone here (the mobile detached first): nothing to undo.
            return []
        self.step(a, "moved" if n.result == Result.MOVED else "lost")
        effects = self._tunnelDown(a)
        reason = Result.NAMES[n.result]
        self._say("MN {mnId}: {reason}", mnId=showMnId(a.mnId), reason=reason)
        return effects + [Unbound(a.mnId, a.phoa, n.result, reason)]


def _checkAddress(a, phoa, mode, prefix):
    """Refuse an address the Trigger could not carry (L{InvalidInput})."""
    if mode == AddressMode.PREFIX:
        if phoa is not None:
            raise InvalidInput("address", a.state, "mode prefix takes no pHoA")
    elif prefix is not None:
        raise InvalidInput("address", a.state, "only mode prefix names a prefix")
    elif phoa is None and mode != AddressMode.LMA_ASSIGNED:
        raise InvalidInput("address", a.state, "no pHoA and not LMA-assigned")

