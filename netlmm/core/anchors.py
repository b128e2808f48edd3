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

This module imports nothing from Twisted (only zope.interface, for the\nplugin interface).
"""

from collections import namedtuple
from ipaddress import IPv6Address

from netlmm.core.effects import BadRecord, Notify, Persist
from netlmm.core.selection import ClientSelector, endpointText
from netlmm.wire.control import AddressMode, Notification, Result, showMnId, withLma


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
        mapped = self.mobiles.get(mnId)
        if mapped is not None:
            return mapped
        return self.byIdentifier(mnId)

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
    """

    def __init__(self, cores, policy, log=None):
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
        self._log = log
        self._byName = {a.name: (a, core) for a, core in cores}
        self._byAddress = {a.address: (a, core) for a, core in cores}
        self.conflicts = cores[0][1].conflicts
        for _, core in cores[1:]:
            core.conflicts = self.conflicts
        #: Triggers no LMA would take (the policy chose none).
        self.unanchored = 0

    # ------------------------------------------------------------ queries

    @property
    def anchors(self):
        """The L{Anchor}s, in config order."""
        return [a for a, _ in self.cores]

    @property
    def security(self):
        """The message-authentication layer the cores that sign share (or None)."""
        for _, core in self.cores:
            if core.security is not None:
                return core.security
        return None

    def securityFor(self, mnId, home=None):
        """The security layer of the core that takes (or would take) C{mnId}."""
        found = self._holding(mnId)
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
        """MN identifier -> cache entry, over all LMAs."""
        merged = {}
        for _, core in self.cores:
            merged.update(core.mobiles)
        return merged

    def loads(self):
        """LMA name -> how many mobiles this client has there."""
        return {a.name: len(core.mobiles) for a, core in self.cores}

    def mobile(self, mnId):
        found = self._holding(mnId)
        return None if found is None else found[1].mobile(mnId)

    def anchorOf(self, mnId):
        """The L{Anchor} of a mobile this client knows, or None."""
        found = self._holding(mnId)
        return None if found is None else found[0]

    # ------------------------------------------------------------ persistence

    def snapshot(self):
        """The cores' records, each naming its LMA (C{lma}: the anchor's name)."""
        return [p for a, core in self.cores for p in self._persisted(a, core.snapshot())]

    def restore(self, records, now):
        """
        Give each core its records: by their C{lma} name; records without one
        (written with a single LMA) go to the first LMA. A name no LMA has
        raises L{BadRecord}.
        """
        first = self.cores[0][0].name
        groups = {a.name: ([], []) for a, _ in self.cores}
        for i, r in enumerate(records):
            name = r.get("lma", first) if isinstance(r, dict) else first
            if name not in groups:
                raise BadRecord(i, f"'lma': {name!r} is not one of the LMAs ("
                                   + ", ".join(groups) + ")")
            if isinstance(r, dict) and "lma" in r:
                r = {k: v for k, v in r.items() if k != "lma"}
            groups[name][0].append(i)
            groups[name][1].append(r)
        effects = []
        for a, core in self.cores:
            indices, mine = groups[a.name]
            try:
                effects.extend(self._wrap(a, core.restore(mine, now)))
            except BadRecord as e:
                raise BadRecord(indices[e.index], e.reason) from None
        return effects

    def nextTimer(self):
        times = [t for t in (core.nextTimer() for _, core in self.cores) if t is not None]
        return min(times) if times else None

    # ------------------------------------------------------------ inputs

    def receiveTrigger(self, trigger, now):
        found = self._holding(trigger.mnId)
        if found is None:
            home = _homeOf(trigger)
            holder = self._holdingHome(home)
            if holder is not None:
                # Another LMA's mobile has it: its core answers the conflict.
                found = holder
            else:
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
        return self._wrap(anchor, core.receiveTrigger(trigger, now))

    def receiveDetach(self, detach, now):
        anchor, core = self._holding(detach.mnId) or self.cores[0]
        return self._wrap(anchor, core.receiveDetach(detach, now))

    def receiveMH(self, message, raw, source, now):
        found = self._byAddress.get(IPv6Address(source))
        if found is None:
            self._say("{kind} from {source}, which is none of the LMAs; dropped",
                      kind=type(message).__name__, source=source)
            return []
        anchor, core = found
        return self._wrap(anchor, core.receiveMH(message, raw, source, now))

    def handleTimer(self, now):
        effects = []
        for anchor, core in self.cores:
            due = core.nextTimer()
            if due is not None and due <= now:
                effects.extend(self._wrap(anchor, core.handleTimer(now)))
        return effects

    def receiveConflictResponse(self, peer, response, now):
        anchor, core = self._asked(response.transaction)
        return self._wrap(anchor, core.receiveConflictResponse(peer, response, now))

    def peerFailed(self, transaction, peer, now):
        anchor, core = self._asked(transaction)
        return self._wrap(anchor, core.peerFailed(transaction, peer, now))

    def answerConflict(self, request, now=None):
        _, core = self._holdingHome(request.phoa) or self.cores[0]
        return core.answerConflict(request, now)

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

    def _asked(self, transaction):
        mnId = self.conflicts.mobileAsked(transaction)
        return (None if mnId is None else self._holding(mnId)) or self.cores[0]

    def _wrap(self, anchor, effects):
        """Name the LMA in SUCCESS Notifications and in the records kept."""
        out = []
        for e in effects:
            kind = type(e)
            if kind is Notify and e.notification.result == Result.SUCCESS:
                e = e._replace(notification=withLma(e.notification, anchor.tunnel))
            elif kind is Persist and e.record is not None:
                e = e._replace(record=dict(e.record, lma=anchor.name))
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
