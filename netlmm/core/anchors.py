"""
Several LMAs behind one PMIP client (draft 4.4), sans-IO.

A MAG may keep tunnels to several LMAs at once, so local mobility domains
overlap. The PMIP client then registers each mobile with the LMA that
anchors it: L{AnchoredCore} keeps one L{netlmm.core.pmip.PmipCore} per LMA
(its own address, profile and signing; sequence numbers and clock offsets
stay per LMA as RFC 6275 keeps them per binding) and sends every input to the
core of the mobile's LMA. An anchor policy (a plugin, L{AnchorPolicy})
chooses the LMA of a mobile the client does not know yet; a known mobile
stays with its LMA. The SUCCESS Notification names the LMA's tunnel address
(L{netlmm.wire.control.withLma}), so the MAG tunnels the mobile's homes there.

What every policy does first: a Trigger that names a home (a pHoA or a
prefix) inside the prefixes an LMA anchors goes to that LMA, because only
that LMA can route the home. Then L{StaticAnchors}: the configured MN
identifier -> LMA map, else the default LMA; L{HashAnchors}: the map, else
a stable hash of the MN identifier, as L{netlmm.core.selection} chooses a
PMIP client (the same mobile always lands on the same LMA, whatever the
order of the config); L{LeastLoadedAnchors}: the map, else the LMA with
the fewest of this client's mobiles.

Moving a mobile to another anchor (draft 4.4) while it stays at its MAG
(L{AnchoredCore.move}: an operator's command, a drain): the client registers
the mobile with the new LMA (a new per-MN prefix), then tells the MAG with an
unsolicited REANCHORED Notification naming the new prefix and LMA. The MAG
advertises the new prefix and deprecates the old one; the old binding stays
(refreshed by its core as any binding) until the MAG releases the old home
(a Detach naming the old prefix: unused for a while, or its valid lifetime
ran out), the mobile leaves or hands over, or the old LMA drops it. Each move
is one state machine, L{MOVE_TRANSITIONS}, driven by L{AnchoredCore._stepMove}:

    (none) --move--> MOVING --accepted--> MOVED --release--> RELEASING --released--> (none)
    MOVING --failed--> (none)                   (the mobile stays at the old LMA)
    MOVING --abandon--> ABANDONING --released--> (none)
                           (it left or moved during the registration: the new binding goes)
    MOVED --lost--> (none)                      (the old binding ended by itself)

A move also starts by itself when a mobile's MAG prefers another LMA (the
C{mags} of L{AnchoredCore}, [pmip.anchor.mags]): a mobile that hands over
to a MAG of two overlapping domains keeps its old prefix (the handoff goes
to the old LMA as usual) and, once that is accepted, is moved to the LMA
that MAG prefers; a new mobile there is anchored at that LMA at once.

Only mobiles with a per-MN prefix (address mode PREFIX, draft E.3) move:
the MAG can advertise a new prefix to them alone. A mobile with an IPv4 home
address does not (its IPv4 address cannot be deprecated the same way).

This module imports nothing from Twisted (only zope.interface, for the\nplugin interface).
"""

import enum
from collections import namedtuple
from ipaddress import IPv6Address

from netlmm.core.effects import BadRecord, InvalidInput, Notify, Persist
from netlmm.core.selection import ClientSelector, endpointText
from netlmm.wire.control import (
    AddressMode, Detach, Notification, Result, Trigger, showMnId, withLma,
)


class Anchor(namedtuple("Anchor", "name address port tunnel prefixes")):
    """
    One LMA: C{name} (unique, as the config and the state file name it),
    C{address} and C{port} of its Mobility Header socket, C{tunnel} its
    data-plane address (where MAGs' tunnels go, told to them in the
    Notification), and C{prefixes}, the home networks it anchors.
    """

    __slots__ = ()

    def __new__(cls, name, address, port=5436, tunnel=None, prefixes=()):
        address = IPv6Address(address)
        return tuple.__new__(cls, (str(name), address, int(port),
                                   address if tunnel is None else IPv6Address(tunnel),
                                   tuple(prefixes)))

    def anchors(self, home):
        """True when C{home} (an address or a network) is inside one of C{prefixes}."""
        if home is None:
            return False
        if hasattr(home, "prefixlen"):
            return any(home.subnet_of(p) for p in self.prefixes if p.version == home.version)
        return any(home in p for p in self.prefixes)


def checkAnchors(anchors):
    """
    Refuse a list of L{Anchor}s that cannot work: none, a name or an address
    given twice, a prefix anchored at two LMAs (overlapping). Raises
    ValueError naming the input.
    """
    if not anchors:
        raise ValueError("at least one LMA is needed")
    names, addresses, prefixes = {}, {}, []
    for a in anchors:
        if a.name in names:
            raise ValueError(f"the LMA name {a.name!r} is given twice")
        names[a.name] = a
        if a.address in addresses:
            raise ValueError(f"LMAs {addresses[a.address].name!r} and {a.name!r} have "
                             f"the same address {a.address}")
        addresses[a.address] = a
        for p in a.prefixes:
            for other, q in prefixes:
                if p.version == q.version and p.overlaps(q):
                    raise ValueError(f"the prefix {p} of LMA {a.name!r} overlaps {q} of "
                                     f"LMA {other.name!r}: a prefix is anchored at one LMA")
            prefixes.append((a, p))


class AnchorPolicy:
    """
    Chooses the LMA of a mobile the PMIP client does not know yet. A plugin
    (L{netlmm.interfaces.IAnchorPolicy}) subclasses it and overrides
    L{byIdentifier}; L{choose} first sends a home inside an LMA's prefixes
    to that LMA.

    @param anchors: the L{Anchor}s, in config order.
    @param mobiles: MN identifier (bytes) -> LMA name, which wins over the
        policy's own rule.
    """

    name = None
    #: Set by L{AnchoredCore}: a callable returning LMA name -> how many
    #: mobiles this client has there (for policies that balance load).
    loads = None
    #: Names of the LMAs being drained (L{AnchoredCore.drain}): the policy
    #: places no mobile there unless its home lies in their prefixes.
    drained = frozenset()

    def __init__(self, anchors, mobiles=None):
        self.anchors = tuple(anchors)
        byName = {a.name: a for a in self.anchors}
        self.mobiles = {}
        for mnId, name in (mobiles or {}).items():
            if name not in byName:
                raise ValueError(f"MN {showMnId(mnId)} is mapped to LMA {name!r}, which "
                                 "is not one of the LMAs (" + ", ".join(byName) + ")")
            self.mobiles[bytes(mnId)] = byName[name]

    def choose(self, mnId, home):
        """The L{Anchor} for C{mnId} whose Trigger names C{home} (or None); None refuses."""
        for a in self.anchors:
            if a.anchors(home):
                return a
        chosen = self.mobiles.get(mnId)
        if chosen is None:
            chosen = self.byIdentifier(mnId)
        if chosen is not None and chosen.name in self.drained:
            chosen = self.instead()
        return chosen

    def instead(self):
        """
        The LMA for a mobile the rule placed at a drained one: the least
        loaded of the others (ties: the first listed), None when all are drained.
        """
        loads = self.loads() if self.loads is not None else {}
        others = [a for a in self.anchors if a.name not in self.drained]
        return min(others, key=lambda a: loads.get(a.name, 0)) if others else None

    def byIdentifier(self, mnId):
        """The policy's own rule for a mobile neither its home nor the map places."""
        raise NotImplementedError

    @classmethod
    def fromConfig(cls, table, anchors=(), **context):
        """Options (the [pmip.anchor] table): C{mobiles}, a table MN-ID = LMA name."""
        policy = cls(anchors, _mobiles(table, anchors), **cls._options(table, anchors))
        table.finish()
        return policy

    @classmethod
    def _options(cls, table, anchors):
        return {}


def _mobiles(table, anchors):
    from netlmm.config import ConfigError
    raw = table.table("mobiles")
    names = [a.name for a in anchors]
    mobiles = {}
    for mnId in list(raw.data):
        name = raw.string(mnId, choices=names)
        mobiles[mnId.encode("utf-8")] = name
        if not mnId or len(mnId.encode("utf-8")) > 64:
            raise ConfigError(f"{raw.where}.{mnId}: an MN identifier is 1..64 octets")
    raw.finish()
    return mobiles


class StaticAnchors(AnchorPolicy):
    """
    Configured placement: by prefix, then the MN identifier map, then the
    C{default} LMA (the first one listed when not given).
    """

    name = "static"

    def __init__(self, anchors, mobiles=None, default=None):
        super().__init__(anchors, mobiles)
        byName = {a.name: a for a in self.anchors}
        if default is not None and default not in byName:
            raise ValueError(f"the default LMA {default!r} is not one of the LMAs")
        self.default = byName[default] if default is not None else self.anchors[0]

    def byIdentifier(self, mnId):
        return self.default

    @classmethod
    def _options(cls, table, anchors):
        return dict(default=table.string("default", None, choices=[a.name for a in anchors]))


class HashAnchors(AnchorPolicy):
    """
    Spread by a stable hash: SHA-256 of the MN identifier modulo the number of
    LMAs, over the LMAs sorted by '[address]:port' (L{ClientSelector}), after
    the prefix rule and the map.
    """

    name = "hash"

    def __init__(self, anchors, mobiles=None):
        super().__init__(anchors, mobiles)
        self._byEndpoint = {(a.address, a.port): a for a in self.anchors}
        self._selector = ClientSelector(list(self._byEndpoint))

    def byIdentifier(self, mnId):
        return self._byEndpoint[self._selector.choose(bytes(mnId))]


class LeastLoadedAnchors(AnchorPolicy):
    """
    Balance by load: after the prefix rule and the map, the LMA with the
    fewest mobiles of this client (ties: the first listed). The count is
    this client's own, so several PMIP clients balance each their share.
    Unlike the hash, the choice depends on the order in which mobiles
    arrive; a mobile keeps the LMA it got.
    """

    name = "least-loaded"

    def byIdentifier(self, mnId):
        loads = self.loads() if self.loads is not None else {}
        return min(self.anchors, key=lambda a: loads.get(a.name, 0))


class AaaAnchors(StaticAnchors):
    """
    The LMA the AAA server assigns: the RFC 6572 PMIP6-Home-LMA-IPv6-Address
    in the Access-Accept that brings the mobile's key (draft Appendix C,
    L{netlmm.security.radius}), matched against each LMA's address and
    tunnel address; after the prefix rule and the map. A mobile the server
    names no LMA for, or an LMA not configured, goes to C{default} (the
    first listed) and is counted in C{unmatched}. Needs keys from RADIUS.
    """

    name = "aaa"
    #: Asks for the mobile's key before choosing (L{AnchoredCore.securityFor}).
    needsAaa = True
    #: Set when built: C{lookup(mnId)}, the address AAA named, or None
    #: (L{netlmm.security.radius.AaaKeys.homeLma}).
    lookup = None

    def __init__(self, anchors, mobiles=None, default=None):
        super().__init__(anchors, mobiles, default)
        self.unmatched = 0

    def byIdentifier(self, mnId):
        address = self.lookup(mnId) if self.lookup is not None else None
        for a in self.anchors:
            if address is not None and address in (a.address, a.tunnel):
                return a
        self.unmatched += 1
        return self.default


class MoveState(str, enum.Enum):
    """Where a move of a mobile to another LMA stands (see the module docstring)."""

    #: Registering with the new LMA; the old one still anchors the mobile.
    MOVING = "MOVING"
    #: Anchored at the new LMA; the old binding kept for the old home.
    MOVED = "MOVED"
    #: The old binding is being deregistered.
    RELEASING = "RELEASING"
    #: The mobile left or moved during the registration: the new binding goes.
    ABANDONING = "ABANDONING"

    def __str__(self):
        return self.value


MOVING, MOVED, RELEASING, ABANDONING = MoveState

#: (state, event) -> the next state of a move; None: the move is over.
MOVE_TRANSITIONS = {
    (None, "move"): MOVING,
    (MOVING, "accepted"): MOVED,
    (MOVING, "failed"): None,
    (MOVING, "abandon"): ABANDONING,
    (ABANDONING, "released"): None,
    (MOVED, "release"): RELEASING,
    (MOVED, "lost"): None,
    (RELEASING, "released"): None,
    (RELEASING, "lost"): None,
}


class Move:
    """One mobile's move from the LMA C{old} to C{new} ((L{Anchor}, core) pairs)."""

    __slots__ = ("mnId", "state", "old", "new", "oldHome", "mag", "answer", "started")

    def __init__(self, mnId, old, new, oldHome, mag, started):
        self.mnId = mnId
        self.state = None
        self.old = old
        self.new = new
        #: The home (per-MN prefix) the old LMA anchors.
        self.oldHome = oldHome
        #: The MAG the mobile is at (where the new binding points).
        self.mag = mag
        #: (transaction, MAG) of the Detach that releases the old home, or None.
        self.answer = None
        self.started = started

    def __repr__(self):
        return (f"Move({self.mnId!r}, {self.state}, {self.old[0].name} -> "
                f"{self.new[0].name}, old home {self.oldHome})")


def drainedKey(name):
    """The store key that keeps the LMA C{name} drained across a restart."""
    return b"drained:" + name.encode("utf-8")


def movedKey(name, mnId):
    """The store key of a moved mobile's old binding (its current one is keyed C{mnId})."""
    return b"moved-from:" + name.encode("utf-8") + b":" + bytes(mnId)


class AnchoredCore:
    """
    A PMIP client core for several LMAs: one L{netlmm.core.pmip.PmipCore}
    per L{Anchor}, behind the same interface as one core (the service does
    not tell them apart).

    @param cores: (L{Anchor}, PmipCore) pairs, checked by L{checkAnchors};
        the cores' C{lmaAddress} must be their anchor's address. They share
        the first core's conflict detector (one numbering of the peers'
        checks, Appendix B).
    @param policy: the L{AnchorPolicy} for mobiles not known yet.
    @param mags: (MAG network, LMA name) pairs: the LMA a mobile at a MAG
        inside the network should be anchored at (the first match), after
        the prefix rule and the policy's per-mobile map.
    @param security: the default message-authentication layer
        ([pmip.security]), asked for a mobile's key before the C{aaa}
        policy chooses; None: the first core's that signs. Each core signs
        and checks with its own layer (an LMA may have keys of its own).
    """

    def __init__(self, cores, policy, log=None, mags=(), security=None):
        cores = list(cores)
        checkAnchors([a for a, _ in cores])
        for a, core in cores:
            if core.lmaAddress != a.address:
                raise ValueError(f"the core of LMA {a.name!r} sends to {core.lmaAddress}, "
                                 f"not {a.address}")
        self.cores = cores
        self.policy = policy
        if hasattr(policy, "loads"):
            policy.loads = self.loads
        #: Names of the LMAs being drained (L{drain}).
        self.drained = set()
        #: MN identifier -> why the last L{drain} could not move it.
        self.unmoved = {}
        policy.drained = self.drained
        self._log = log
        self._security = security
        self._byName = {a.name: (a, core) for a, core in cores}
        self._byAddress = {a.address: (a, core) for a, core in cores}
        self.mags = []
        for network, name in mags:
            if name not in self._byName:
                raise ValueError(f"the MAGs {network} prefer LMA {name!r}, which is not one "
                                 "of the LMAs (" + ", ".join(self._byName) + ")")
            self.mags.append((network, self._byName[name][0]))
        self.conflicts = cores[0][1].conflicts
        for _, core in cores[1:]:
            core.conflicts = self.conflicts
        #: Triggers no LMA would take (the policy chose none).
        self.unanchored = 0
        #: MN identifier -> its L{Move} to another LMA, while one is under way.
        self.moves = {}
        #: Moves whose dropped binding is being deregistered (RELEASING, ABANDONING).
        self._dropping = set()
        self.moveCounters = dict(started=0, moved=0, failed=0, abandoned=0, released=0,
                                 lost=0)

    # ------------------------------------------------------------ queries

    @property
    def anchors(self):
        """The L{Anchor}s, in config order."""
        return [a for a, _ in self.cores]

    @property
    def security(self):
        """The default message-authentication layer (see C{security} above), or None."""
        if self._security is not None:
            return self._security
        for _, core in self.cores:
            if core.security is not None:
                return core.security
        return None

    @property
    def securities(self):
        """The distinct message-authentication layers of the cores, in config order."""
        found = []
        for _, core in self.cores:
            if core.security is not None and all(core.security is not s for s in found):
                found.append(core.security)
        return found

    def securityAt(self, address):
        """
        The layer that signs PBUs to the LMA at C{address} and checks its
        PBAcks (None: it does not sign, or no LMA is there).
        """
        found = self._byAddress.get(
            address if type(address) is IPv6Address else IPv6Address(address))
        return None if found is None else found[1].security

    def securityFor(self, mnId, home=None):
        """The security layer of the core that takes (or would take) C{mnId}."""
        found = self._current(mnId)
        if found is None and getattr(self.policy, "needsAaa", False):
            keys = getattr(self.security, "keys", None)
            if not hasattr(keys, "fresh") or not keys.fresh(mnId):
                # The policy reads the AAA server's answer: ask it first.
                return self.security
        if found is None:
            anchor = self.policy.choose(mnId, home)
            found = None if anchor is None else self._byName[anchor.name]
        return None if found is None else found[1].security

    @property
    def peers(self):
        return self.conflicts.peers

    @property
    def conflictCounters(self):
        return self.conflicts.counters

    @property
    def counters(self):
        """The cores' per-binding counters, summed."""
        total = {}
        for _, core in self.cores:
            for k, v in core.counters.items():
                total[k] = total.get(k, 0) + v
        return total

    @property
    def unauthenticated(self):
        return sum(core.unauthenticated for _, core in self.cores)

    @property
    def mobiles(self):
        """MN identifier -> cache entry (the current binding of a moving mobile), over all LMAs."""
        merged = {}
        for _, core in self.cores:
            merged.update(core.mobiles)
        for mnId in self.moves:
            found = self._current(mnId)
            if found is not None and mnId in found[1].mobiles:
                merged[mnId] = found[1].mobiles[mnId]
        return merged

    def loads(self):
        """LMA name -> how many mobiles this client has there."""
        return {a.name: len(core.mobiles) for a, core in self.cores}

    def mobile(self, mnId):
        found = self._current(mnId)
        return None if found is None else found[1].mobile(mnId)

    def anchorOf(self, mnId):
        """The L{Anchor} of a mobile this client knows (the new one once moved), or None."""
        found = self._current(mnId)
        return None if found is None else found[0]

    # ------------------------------------------------------------ persistence

    def snapshot(self):
        """
        The cores' records, each naming its LMA (C{lma}: the anchor's name);
        the old binding of a moved mobile is marked C{moved} and kept under
        L{movedKey}.
        """
        out = []
        for a, core in self.cores:
            for p in self._persisted(a, core.snapshot()):
                move = self.moves.get(p.key)
                if move is not None and move.state in (MOVED, RELEASING) \
                        and move.old[0] is a:
                    p = Persist(movedKey(a.name, p.key), dict(p.record, moved=True))
                elif move is not None and move.state in (MOVING, ABANDONING) \
                        and move.new[0] is a:
                    # Not durable before the new LMA accepted it.
                    continue
                out.append(p)
        return out + [Persist(drainedKey(name), {"drained": name})
                      for name in sorted(self.drained)]

    def restore(self, records, now):
        """
        Give each core its records: by their C{lma} name; records without one
        (written with a single LMA) go to the first LMA. A name no LMA has
        raises L{BadRecord}.
        """
        first = self.cores[0][0].name
        groups = {a.name: ([], []) for a, _ in self.cores}
        moved = []
        for i, r in enumerate(records):
            if isinstance(r, dict) and "drained" in r and "mn" not in r:
                # An LMA drained before the restart stays drained.
                if r["drained"] in groups:
                    self.drained.add(r["drained"])
                continue
            name = r.get("lma", first) if isinstance(r, dict) else first
            if name not in groups:
                raise BadRecord(i, f"'lma': {name!r} is not one of the LMAs ("
                                   + ", ".join(groups) + ")")
            if isinstance(r, dict) and ("lma" in r or "moved" in r):
                if r.get("moved", False) is not False:
                    if r["moved"] is not True:
                        raise BadRecord(i, f"'moved': expected true, got {r['moved']!r}")
                    moved.append((name, r.get("mn")))
                r = {k: v for k, v in r.items() if k not in ("lma", "moved")}
            groups[name][0].append(i)
            groups[name][1].append(r)
        effects = []
        for a, core in self.cores:
            indices, mine = groups[a.name]
            try:
                effects.extend(core.restore(mine, now))
            except BadRecord as e:
                raise BadRecord(indices[e.index], e.reason) from None
        # A moved mobile's old binding: in MOVED again when its current one
        # came back too; else it is the current one (kept under its own key).
        for name, mnHex in moved:
            mnId = bytes.fromhex(mnHex)
            old = self._byName[name]
            current = next((pair for pair in self.cores
                            if pair[0] is not old[0] and mnId in pair[1].mobiles), None)
            m = old[1].mobiles.get(mnId)
            if m is None:
                continue
            if current is None:
                # Its new binding was not kept: the old one is the current one.
                from netlmm.core.pmip import _record
                effects += [Persist(movedKey(name, mnId), None),
                            Persist(mnId, dict(_record(m), lma=name))]
                continue
            move = Move(mnId, old, current, m.home, current[1].mobiles[mnId].mag, now)
            self._stepMove(move, "move")
            self._stepMove(move, "accepted")
            self.moves[mnId] = move
        return self._wrapAll(effects, now)

    def nextTimer(self):
        times = [t for t in (core.nextTimer() for _, core in self.cores) if t is not None]
        return min(times) if times else None

    # ------------------------------------------------------------ inputs

    def receiveTrigger(self, trigger, now):
        effects = []
        move = self.moves.get(trigger.mnId)
        if move is not None and move.state is MOVED and trigger.magAddress != move.mag:
            # A handover: the new MAG knows only the current home, so the
            # old binding goes now.
            effects = self._release(move, now)
        found = self._current(trigger.mnId)
        if found is None:
            home = _homeOf(trigger)
            holder = self._holdingHome(home)
            if holder is not None:
                # Another LMA's mobile has it: its core answers the conflict.
                found = holder
            else:
                anchor = self._preferredFor(trigger.mnId, home, trigger.magAddress)
                if anchor is None:
                    anchor = self.policy.choose(trigger.mnId, home)
                if anchor is None:
                    self.unanchored += 1
                    self._say("Trigger {txn} for {mnId}: the anchor policy chose no LMA; "
                              "refused", txn=trigger.transaction,
                              mnId=showMnId(trigger.mnId))
                    return [Notify(Notification(trigger.transaction, Result.NOT_AUTHORIZED,
                                                trigger.mnId), trigger.magAddress)]
                found = self._byName[anchor.name]
        anchor, core = found
        return effects + self._wrap(anchor, core.receiveTrigger(trigger, now), now)

    def receiveDetach(self, detach, now):
        move = self.moves.get(detach.mnId)
        if detach.prefix is not None:
            return self._releaseHome(move, detach, now)
        effects = []
        if move is not None and move.state is MOVED and detach.magAddress == move.mag:
            # The mobile left: both bindings go. (A late Detach from a MAG
            # it left before is the current core's business alone.)
            effects = self._release(move, now)
        anchor, core = self._current(detach.mnId) or self.cores[0]
        return effects + self._wrap(anchor, core.receiveDetach(detach, now), now)

    def receiveMH(self, message, raw, source, now):
        found = self._byAddress.get(
            source if type(source) is IPv6Address else IPv6Address(source))
        if found is None:
            self._say("{kind} from {source}, which is none of the LMAs; dropped",
                      kind=type(message).__name__, source=source)
            return []
        anchor, core = found
        return self._wrap(anchor, core.receiveMH(message, raw, source, now), now)

    def deregister(self, mnId, now):
        found = self._holding(mnId)
        if found is None:
            raise KeyError(mnId)
        return self._wrap(found[0], found[1].deregister(mnId, now))

    def reregister(self, lma, now):
        found = self._byAddress.get(IPv6Address(lma))
        return [] if found is None else self._wrap(found[0], found[1].reregister(lma, now))

    def handleTimer(self, now):
        effects = []
        for anchor, core in self.cores:
            due = core.nextTimer()
            if due is not None and due <= now:
                effects.extend(self._wrap(anchor, core.handleTimer(now), now))
        return effects

    def receiveConflictResponse(self, peer, response, now):
        anchor, core = self._asked(response.transaction)
        return self._wrap(anchor, core.receiveConflictResponse(peer, response, now), now)

    def peerFailed(self, transaction, peer, now):
        anchor, core = self._asked(transaction)
        return self._wrap(anchor, core.peerFailed(transaction, peer, now), now)

    def answerConflict(self, request, now=None):
        _, core = self._holdingHome(request.phoa) or self.cores[0]
        return core.answerConflict(request, now)

    # ------------------------------------------------------------ moves (draft 4.4)

    def move(self, mnId, name, now):
        """
        Anchor C{mnId} at the LMA named C{name} while it stays at its MAG:
        register it there (a new per-MN prefix); once accepted the MAG hears
        REANCHORED and the old binding stays until the MAG releases the old
        home (see the module docstring). Returns the effects; raises
        ValueError, nothing changed, when the mobile cannot move (the reason
        names it).
        """
        from netlmm.core.pmip import BOUND, REFRESHING
        if name not in self._byName:
            raise ValueError(f"no LMA is named {name!r} (the LMAs: "
                             + ", ".join(self._byName) + ")")
        who = showMnId(mnId)
        move = self.moves.get(mnId)
        if move is not None:
            raise ValueError(f"{who} is {move.state} already ({move.old[0].name} -> "
                             f"{move.new[0].name}); one move at a time")
        found = self._current(mnId)
        if found is None:
            raise ValueError(f"{who} is not bound through this PMIP client")
        if found[0].name == name:
            raise ValueError(f"{who} is anchored at {name} already")
        m = found[1].mobiles[mnId]
        if m.state not in (BOUND, REFRESHING):
            raise ValueError(f"{who} is {m.state}; only a bound mobile moves")
        if m.mode != AddressMode.PREFIX:
            raise ValueError(f"{who} has no per-MN prefix (address mode "
                             f"{AddressMode.NAMES.get(m.mode, m.mode)}); only a mobile with a "
                             "prefix of its own can be given a new one")
        if m.ipv4 is not None:
            raise ValueError(f"{who} has the IPv4 home address {m.ipv4}, which cannot be "
                             "deprecated as an IPv6 prefix can")
        new = self._byName[name]
        if mnId in new[1].mobiles:
            raise ValueError(f"{who} still has a binding at {name} (being deregistered)")
        move = Move(mnId, found, new, m.home, m.mag, now)
        self._stepMove(move, "move")
        self.moves[mnId] = move
        self.moveCounters["started"] += 1
        self._say("moving {mnId} from {old} to {new}", mnId=who, old=found[0].name,
                  new=name)
        trigger = Trigger(0, mnId, m.mag, None, AddressMode.PREFIX,
                          linkLayerId=m.linkLayerId, accessTechnology=m.accessTechnology)
        return self._wrap(new[0], new[1].receiveTrigger(trigger, now), now)

    def drain(self, name, now):
        """
        Drain the LMA named C{name}: the policy places no new mobile there,
        and each of its bound mobiles is moved (L{move}) to the LMA the
        policy picks instead. Mobiles that cannot move now are listed by
        L{drainStatus}; draining again moves those that can by then.
        Returns the effects; ValueError when no other LMA is left.
        """
        if name not in self._byName:
            raise ValueError(f"no LMA is named {name!r} (the LMAs: "
                             + ", ".join(self._byName) + ")")
        if all(a.name == name or a.name in self.drained for a in self.anchors):
            raise ValueError(f"{name} is the last LMA not drained; there is nowhere to move "
                             "its mobiles")
        effects = [] if name in self.drained else [
            Persist(drainedKey(name), {"drained": name})]
        self.drained.add(name)
        self._say("draining {lma}: it anchors no new mobile; its mobiles move", lma=name)
        core = self._byName[name][1]
        self.unmoved = {}
        for mnId in sorted(core.mobiles):
            if mnId in self.moves or self._current(mnId)[0].name != name:
                continue
            target = self.policy.choose(mnId, None)
            try:
                effects.extend(self.move(mnId, target.name, now))
            except ValueError as e:
                self.unmoved[mnId] = str(e)
        return effects

    def undrain(self, name, now=None):
        """
        The LMA named C{name} takes new mobiles again (those moved away stay
        moved). Returns the effects (the record of the drain deleted).
        """
        if name not in self._byName:
            raise ValueError(f"no LMA is named {name!r} (the LMAs: "
                             + ", ".join(self._byName) + ")")
        if name not in self.drained:
            return []
        self.drained.discard(name)
        return [Persist(drainedKey(name), None)]

    def drainStatus(self, name):
        """
        Rows 'MNID STATE' for each mobile the LMA C{name} still holds: its
        move's state, or 'STAYS why' for one that could not move.
        """
        rows = []
        for mnId in sorted(self._byName[name][1].mobiles):
            move = self.moves.get(mnId)
            who = showMnId(mnId)
            if move is not None:
                rows.append(f"{who} {move.state} {move.old[0].name} -> {move.new[0].name}")
            elif mnId in self.unmoved:
                rows.append(f"{who} STAYS {self.unmoved[mnId]}")
            else:
                rows.append(f"{who} {self._byName[name][1].mobiles[mnId].state}")
        return rows

    def preferredAt(self, mag):
        """The L{Anchor} the MAG at C{mag} prefers ([pmip.anchor.mags]), or None."""
        for network, anchor in self.mags:
            if mag in network:
                return anchor
        return None

    def _preferredFor(self, mnId, home, mag):
        """The LMA C{mag} prefers for a new mobile, unless its home or the map places it."""
        if not self.mags or any(a.anchors(home) for a in self.anchors) \
                or bytes(mnId) in getattr(self.policy, "mobiles", {}):
            return None
        anchor = self.preferredAt(mag)
        return None if anchor is None or anchor.name in self.drained else anchor

    def _toPreferred(self, anchor, e, now):
        """After a SUCCESS at C{anchor}: move the mobile if its MAG prefers another LMA."""
        preferred = self.preferredAt(e.mag)
        if preferred is None or preferred is anchor or preferred.name in self.drained:
            return []
        mnId = e.notification.mnId
        try:
            return self.move(mnId, preferred.name, now)
        except ValueError as why:
            self._say("{mnId} stays at {lma} although its MAG {mag} prefers {preferred}: "
                      "{why}", mnId=showMnId(mnId), lma=anchor.name, mag=e.mag,
                      preferred=preferred.name, why=why)
            return []

    def _stepMove(self, move, event):
        """Move C{move} by C{event} (L{MOVE_TRANSITIONS}); InvalidInput when not allowed."""
        key = (move.state, event)
        if key not in MOVE_TRANSITIONS:
            raise InvalidInput(event, move.state)
        move.state = MOVE_TRANSITIONS[key]
        if move.state is None:
            self.moves.pop(move.mnId, None)
            self._dropping.discard(move.mnId)
        return move.state

    def _moveNotify(self, move, anchor, e, now):
        """A Notification of one of the cores a moving mobile is in."""
        n = e.notification
        fromOld = anchor is move.old[0]
        current = move.new[0] if move.state in (MOVED, RELEASING) else move.old[0]
        if anchor is current:
            if n.result == Result.SUCCESS:
                e = e._replace(notification=withLma(n, anchor.tunnel))
            return [e]
        if move.state is MOVING:
            # The new LMA's answer to the registration.
            if n.result == Result.SUCCESS:
                return self._accepted(move, n, now)
            if move.mnId in move.new[1].mobiles:
                # Its binding there is being undone (an unusable answer).
                self._stepMove(move, "abandon")
                self._dropping.add(move.mnId)
            else:
                self._stepMove(move, "failed")
            self.moveCounters["failed"] += 1
            self._say("{mnId} not moved to {new}: {why}; it stays at {old}",
                      mnId=showMnId(move.mnId), new=move.new[0].name,
                      why=Result.NAMES.get(n.result, n.result), old=move.old[0].name)
            return []
        if not fromOld:
            # ABANDONING: the new binding's deregistration is nobody's business.
            return []
        if n.transaction == 0 and n.result == Result.BINDING_LOST:
            self._stepMove(move, "lost")
            self.moveCounters["lost"] += 1
            return [Notify(Notification(0, Result.BINDING_LOST, move.mnId,
                                        prefix=move.oldHome, lma=anchor.tunnel), e.mag)]
        if move.answer is not None and n.transaction == move.answer[0]:
            return [Notify(n._replace(prefix=move.oldHome, phoa=None), move.answer[1])]
        return []

    def _accepted(self, move, n, now):
        """The new LMA accepted C{move}'s registration."""
        from netlmm.core.pmip import BOUND, REFRESHING, _record
        mnId = move.mnId
        old = move.old[1].mobiles.get(mnId)
        newM = move.new[1].mobiles.get(mnId)
        if old is None or old.state not in (BOUND, REFRESHING) or old.mag != move.mag \
                or newM is None:
            # It left or handed over meanwhile: the new binding goes.
            self._stepMove(move, "abandon")
            self.moveCounters["abandoned"] += 1
            self._say("{mnId} left {mag} while moving to {new}; the new binding goes",
                      mnId=showMnId(mnId), mag=move.mag, new=move.new[0].name)
            if newM is None:
                self._stepMove(move, "released")
                return []
            self._dropping.add(mnId)
            return self._wrap(move.new[0], move.new[1].receiveDetach(
                Detach(0, mnId, newM.mag), now), now)
        self._stepMove(move, "accepted")
        self.moveCounters["moved"] += 1
        self._say("{mnId} moved from {old} to {new}: {home}; {oldHome} kept until released",
                  mnId=showMnId(mnId), old=move.old[0].name, new=move.new[0].name,
                  home=n.prefix, oldHome=move.oldHome)
        oldName, newName = move.old[0].name, move.new[0].name
        return [Persist(mnId, dict(_record(newM), lma=newName)),
                Persist(movedKey(oldName, mnId), dict(_record(old), lma=oldName, moved=True)),
                Notify(Notification(0, Result.REANCHORED, mnId, prefix=n.prefix,
                                    lma=move.new[0].tunnel), move.mag)]

    def _movePersist(self, move, anchor, e):
        """A record of a moving mobile: which key it goes to, or None to drop it."""
        if move.state in (MOVED, RELEASING):
            if anchor is move.old[0]:
                key = movedKey(anchor.name, move.mnId)
                record = None if e.record is None else dict(e.record, lma=anchor.name,
                                                            moved=True)
                return Persist(key, record)
        elif anchor is move.new[0]:
            # MOVING / ABANDONING: the new binding is not the mobile's yet.
            return None
        return e if e.record is None else e._replace(record=dict(e.record, lma=anchor.name))

    def _release(self, move, now, answer=None):
        """Deregister C{move}'s old binding; C{answer}: the MAG's Detach to answer."""
        self._stepMove(move, "release")
        move.answer = answer
        self._dropping.add(move.mnId)
        old = move.old[1].mobiles[move.mnId]
        transaction = 0 if answer is None else answer[0]
        self._say("releasing the old home {home} of {mnId} at {old}", home=move.oldHome,
                  mnId=showMnId(move.mnId), old=move.old[0].name)
        return self._wrap(move.old[0], move.old[1].receiveDetach(
            Detach(transaction, move.mnId, old.mag), now), now)

    def _releaseHome(self, move, detach, now):
        """A Detach naming a prefix: the MAG releases a moved mobile's old home."""
        if move is not None and move.oldHome == detach.prefix:
            if move.state is MOVED:
                return self._release(move, now, (detach.transaction, detach.magAddress))
            if move.state is RELEASING:
                if move.answer is None:
                    move.answer = (detach.transaction, detach.magAddress)
                return []
        self._say("Detach {txn} for {mnId} releases {prefix}, which is no old home of it",
                  txn=detach.transaction, mnId=showMnId(detach.mnId), prefix=detach.prefix)
        return [Notify(Notification(detach.transaction, Result.UNKNOWN_MN, detach.mnId,
                                    prefix=detach.prefix), detach.magAddress)]

    def _released(self):
        """Moves whose dropped binding is gone now."""
        for mnId in list(self._dropping):
            move = self.moves.get(mnId)
            if move is None:
                self._dropping.discard(mnId)
                continue
            core = move.old[1] if move.state is RELEASING else move.new[1]
            if mnId not in core.mobiles:
                if move.state is RELEASING:
                    self.moveCounters["released"] += 1
                self._stepMove(move, "released")
        return []

    # ------------------------------------------------------------ internals

    def _holding(self, mnId):
        for pair in self.cores:
            if mnId in pair[1].mobiles:
                return pair
        return None

    def _holdingHome(self, home):
        if home is None:
            return None
        for pair in self.cores:
            if home in pair[1]._byHome:
                return pair
        return None

    def _current(self, mnId):
        """The (L{Anchor}, core) that anchors C{mnId} now, or None."""
        move = self.moves.get(mnId)
        if move is not None:
            return move.new if move.state in (MOVED, RELEASING) else move.old
        return self._holding(mnId)

    def _asked(self, transaction):
        mnId = self.conflicts.mobileAsked(transaction)
        return (None if mnId is None else self._current(mnId)) or self.cores[0]

    def _wrap(self, anchor, effects, now=None):
        """
        Name the LMA in SUCCESS Notifications and in the records kept; a
        moving mobile's Notifications and records go through L{_moveNotify}
        and L{_movePersist}.
        """
        out = []
        moves = self.moves
        for e in effects:
            kind = type(e)
            if kind is Notify:
                move = moves.get(e.notification.mnId) if moves else None
                if move is not None:
                    out.extend(self._moveNotify(move, anchor, e, now))
                    continue
                if e.notification.result == Result.SUCCESS:
                    e = e._replace(notification=withLma(e.notification, anchor.tunnel))
                    if self.mags and now is not None:
                        out.append(e)
                        out.extend(self._toPreferred(anchor, e, now))
                        continue
            elif kind is Persist:
                move = moves.get(e.key) if moves else None
                if move is not None:
                    e = self._movePersist(move, anchor, e)
                    if e is None:
                        continue
                elif e.record is not None:
                    e = e._replace(record=dict(e.record, lma=anchor.name))
            out.append(e)
        if self._dropping:
            out.extend(self._released())
        return out

    def _wrapAll(self, effects, now):
        """L{_wrap} for effects of several cores (restore): each Persist names its LMA."""
        out = []
        for e in effects:
            if type(e) is Persist and e.record is not None:
                found = self._current(e.key)
                if found is not None:
                    out.extend(self._wrap(found[0], [e], now))
                    continue
            out.append(e)
        return out

    def _persisted(self, anchor, persists):
        return [p._replace(record=dict(p.record, lma=anchor.name)) for p in persists]

    def _say(self, fmt, **kw):
        if self._log is not None:
            self._log.info(fmt, **kw)


def _homeOf(trigger):
    """The home a Trigger names: its pHoA, or its prefix in the prefix mode."""
    if trigger.mode == AddressMode.PREFIX:
        return trigger.prefix
    return trigger.phoa


def describeAnchor(anchor):
    """'name [address]:port' for logs."""
    return f"{anchor.name} {endpointText((anchor.address, anchor.port))}"
