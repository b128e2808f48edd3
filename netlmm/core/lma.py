"""
The Local Mobility Anchor: an RFC 6275 home agent used as the anchor of the
local mobility domain (draft section 4.8), sans-IO.

L{LmaCore.receive} takes a decoded Mobility Header message, the sender's
address and the current time, and returns effects: the Binding
Acknowledgement or Binding Error to send and the data-plane changes. The
binding cache is keyed by the pHoA, so a Proxy Binding Update needs the MN
identifier only when the pHoA is not bound yet (section 4.2 step 3).
"""

import heapq
from collections import deque
from ipaddress import IPv6Address, IPv6Network

from netlmm.core import records as read
from netlmm.core.effects import Persist, RouteAdd, RouteMove, RouteRemove, SendMH
from netlmm.core.records import fields
from netlmm.core.sequence import seqGreater
from netlmm.wire import mh
from netlmm.wire.mh import Status



class Binding:
    """One binding cache entry."""

    __slots__ = ("phoa", "mnId", "pcoa", "sequence", "lifetime", "expiry",
                 "client", "pooled")

    def __init__(self, phoa, mnId, pcoa, sequence, lifetime, expiry, client,
                 pooled):
        self.phoa = phoa
        self.mnId = mnId
        self.pcoa = pcoa
        self.sequence = sequence
        #: Granted lifetime, seconds.
        self.lifetime = lifetime
        self.expiry = expiry
        self.client = client
        self.pooled = pooled

    def __repr__(self):
        return (f"Binding(phoa={self.phoa}, mnId={self.mnId!r}, pcoa={self.pcoa}, "
                f"sequence={self.sequence}, lifetime={self.lifetime}, expiry={self.expiry})")


class AddressPool:
    """
    Addresses the LMA hands out when a PBU asks for one (Appendix A): the
    range C{first}..C{last} inclusive, lowest free address first.
    """

    def __init__(self, first, last):
        self.first = int(IPv6Address(first))
        self.last = int(IPv6Address(last))
        if self.last < self.first:
            raise ValueError(f"address pool {first}-{last} is empty")
        self._next = self.first
        self._free = []
        self._taken = set()

    def __contains__(self, address):
        return self.first <= int(address) <= self.last

    @property
    def size(self):
        """How many addresses the pool has in all."""
        return self.last - self.first + 1

    @property
    def inUse(self):
        """How many are handed out or reserved."""
        return len(self._taken)

    def allocate(self):
        """A free address, or None when the pool is exhausted."""
        while self._free:
            value = heapq.heappop(self._free)
            if value not in self._taken:
                self._taken.add(value)
                return IPv6Address(value)
        while self._next <= self.last:
            value = self._next
            self._next += 1
            if value not in self._taken:
                self._taken.add(value)
                return IPv6Address(value)
        return None

    def reserve(self, address):
        """Mark an address bound by other means (DHCP, SLAAC) as taken."""
        self._taken.add(int(address))

    def release(self, address):
        """Give an address back."""
        value = int(address)
        if value in self._taken:
            self._taken.discard(value)
            if value < self._next:
                heapq.heappush(self._free, value)


class LmaCore:
    """
    Home-registration processing for Proxy Binding Updates.

    @param homePrefix: the LMD's prefix; pHoAs outside it get status 132.
    @param authorizedClients: networks whose PMIP clients may send PBUs;
        others get status 129.
    @param maxLifetime: the longest lifetime granted, seconds.
    @param pool: an L{AddressPool} for LMA-assigned pHoAs, or None to refuse
        assignment requests.
    """

    def __init__(self, homePrefix, authorizedClients, maxLifetime=3600,
                 pool=None, log=None):
        self.homePrefix = IPv6Network(homePrefix)
        self.authorizedClients = tuple(IPv6Network(n) for n in authorizedClients)
        if not 4 <= maxLifetime <= mh.MAX_LIFETIME_UNITS * mh.LIFETIME_UNIT:
            raise ValueError(f"maxLifetime must be 4..262140 seconds, not {maxLifetime}")
        self.maxLifetime = maxLifetime
        self.pool = pool
        self._log = log
        self.bindings = {}
        self._byMnId = {}
        # Pending expiries as (time, key). Bindings with the same granted
        # lifetime are scheduled in time order, so one FIFO per lifetime
        # stays sorted at O(1) a refresh; a time out of order (a clock that
        # went back) goes to the heap. Entries of refreshed bindings are
        # skipped when they come up.
        self._fifos = {}
        self._expiries = []
        self._authorized = {}
        self._pcoas = {}
        self.counters = {
            "pbu": 0, "accepted": 0, "rejected": 0, "deregistered": 0,
            "expired": 0, "bindingErrors": 0, "unexpected": 0,
        }

    # ------------------------------------------------------------ persistence

    def snapshot(self):
        """A L{Persist} for every binding, as the changes emit them."""
        return [_persist(b) for b in self.bindings.values()]

    def restore(self, records, now):
        """
        Load records made by L{_record}; the unexpired bindings come back
        with their sequence numbers and pool addresses. Returns the RouteAdd
        effects that put them back into the data plane. Raises L{BadRecord}
        naming the first bad record.
        """
        effects = []
        for i, r in enumerate(records):
            phoa, mnId, pcoa, seq, lifetime, expiry, client, pooled = fields(
                i, r, phoa=read.address, mn=read.identifier, pcoa=read.address,
                sequence=read.sequence, lifetime=read.seconds, expiry=read.seconds,
                client=read.address, pooled=read.flag)
            key = int(phoa)
            if expiry <= now or key in self.bindings or mnId in self._byMnId:
                continue
            b = Binding(phoa, mnId, self._intern(pcoa), seq, int(lifetime), expiry,
                        client, pooled)
            self.bindings[key] = b
            self._byMnId[mnId] = b
            if b.pooled and self.pool is not None and phoa in self.pool:
                self.pool.reserve(phoa)
            self._push(b.lifetime, b.expiry, key)
            effects.append(RouteAdd(phoa, b.pcoa))
        return effects

    # ------------------------------------------------------------ queries

    def binding(self, phoa):
        """The binding for C{phoa}, or None."""
        return self.bindings.get(int(IPv6Address(phoa)))

    def bindingFor(self, mnId):
        """The binding of mobile C{mnId}, or None."""
        return self._byMnId.get(mnId)

    def nextTimer(self):
        """When L{handleTimer} must next run, or None."""
        bindings = self.bindings
        best = None
        for fifo in self._fifos.values():
            while fifo:
                expiry, key = fifo[0]
                b = bindings.get(key)
                if b is not None and b.expiry == expiry:
                    if best is None or expiry < best:
                        best = expiry
                    break
                fifo.popleft()
        heap = self._expiries
        while heap:
            expiry, key = heap[0]
            b = bindings.get(key)
            if b is not None and b.expiry == expiry:
                if best is None or expiry < best:
                    best = expiry
                break
            heapq.heappop(heap)
        return best

    # ------------------------------------------------------------ inputs

    def handleTimer(self, now):
        """Remove the bindings whose lifetime has run out."""
        effects = []
        due = []
        for fifo in self._fifos.values():
            while fifo and fifo[0][0] <= now:
                due.append(fifo.popleft())
        heap = self._expiries
        while heap and heap[0][0] <= now:
            due.append(heapq.heappop(heap))
        for expiry, key in sorted(due):
            b = self.bindings.get(key)
            if b is not None and b.expiry == expiry:
                self._remove(b)
                self.counters["expired"] += 1
                effects.append(RouteRemove(b.phoa, b.pcoa))
                effects.append(Persist(b.mnId, None))
                self._say("binding for {phoa} (MN {mnId}) expired", phoa=b.phoa,
                          mnId=_show(b.mnId))
        return effects

    def receive(self, message, source, now):
        """Process one Mobility Header message from C{source}."""
        if type(source) is not IPv6Address:
            source = IPv6Address(source)
        if type(message) is mh.BindingUpdate:
            return self._bindingUpdate(message, source, now)
        if type(message) is mh.UnknownMessage:
            self.counters["bindingErrors"] += 1
            self._say("unknown MH type {mhType} from {source}: Binding Error",
                      mhType=message.mhType, source=source)
            return [SendMH(mh.BindingError(mh.BE_UNKNOWN_MH_TYPE), source)]
        self.counters["unexpected"] += 1
        self._say("{kind} from {source} is not for an LMA; dropped",
                  kind=type(message).__name__, source=source)
        return []

    # ------------------------------------------------------------ internals

    def _say(self, fmt, **kw):
        if self._log is not None:
            self._log.info(fmt, **kw)

    def _isAuthorized(self, source):
        # Keyed by the address's integer: IPv6Address hashes through hex().
        key = int(source)
        ok = self._authorized.get(key)
        if ok is None:
            ok = any(source in n for n in self.authorizedClients)
            if len(self._authorized) < 4096:
                self._authorized[key] = ok
        return ok

    def _reply(self, bu, source, status, sequence=None, phoa=None, mnId=None,
               lifetime=0):
        options = []
        if lifetime:
            refresh = lifetime * 3 // 4
            if refresh:
                # lifetime <= 0xFFFF, so refresh is a valid 16-bit interval.
                options.append(tuple.__new__(mh.BindingRefreshAdvice, (refresh,)))
        if phoa is not None:
            options.append(tuple.__new__(mh.HomeNetworkPrefix, (phoa, 128)))
        if mnId is not None:
            options.append(mnId)
        if status < 128:
            self.counters["accepted"] += 1
        else:
            self.counters["rejected"] += 1
        ba = tuple.__new__(mh.BindingAcknowledgement, (
            status, mh.BA_P if bu.flags & mh.BU_P else 0,
            bu.sequence if sequence is None else sequence, lifetime,
            tuple(options)))
        return [tuple.__new__(SendMH, (ba, source))]

    def _reject(self, bu, source, status, why, **kw):
        self._say("PBU seq {seq} from {source} rejected with {status}: " + why,
                  seq=bu.sequence, source=source, status=Status.name(status), **kw)
        hnp = bu.option(mh.HomeNetworkPrefix)
        phoa = hnp.prefix if hnp is not None and not hnp.unspecified else None
        return self._reply(bu, source, status, phoa=phoa,
                           mnId=bu.option(mh.MobileNodeIdentifier))

    def _bindingUpdate(self, bu, source, now):
        self.counters["pbu"] += 1
        if not self._isAuthorized(source):
            return self._reject(bu, source, Status.ADMINISTRATIVELY_PROHIBITED,
                                "client is not authorized")
        if not bu.flags & mh.BU_H:
            return self._reject(bu, source, Status.HOME_REGISTRATION_NOT_SUPPORTED,
                                "H flag not set")
        hnp = mnIdOpt = acoa = None
        for o in bu.options:
            t = type(o)
            if t is mh.HomeNetworkPrefix:
                hnp = o
            elif t is mh.MobileNodeIdentifier:
                mnIdOpt = o
            elif t is mh.AlternateCareOfAddress:
                acoa = o
        if hnp is None:
            return self._reject(bu, source, Status.MISSING_HOME_NETWORK_PREFIX_OPTION,
                                "no Home Network Prefix option")
        mnId = None if mnIdOpt is None else mnIdOpt.identifier
        dereg = bu.lifetime == 0
        phoa = hnp.prefix
        # The binding cache is keyed by the address's integer (cheap to hash).
        key = int(phoa)
        if key == 0:
            if mnId is None:
                return self._reject(bu, source, Status.MISSING_MN_IDENTIFIER_OPTION,
                                    "an assignment request needs the MN identifier")
            bound = self._byMnId.get(mnId)
            if bound is None:
                if dereg:
                    return self._reject(bu, source, Status.NOT_HOME_AGENT_FOR_MN,
                                        "deregistration of an unknown MN")
                return self._assign(bu, source, now, mnIdOpt, acoa)
            phoa = bound.phoa
            key = int(phoa)
        elif hnp.prefixLength != 128:
            return self._reject(bu, source, Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX,
                                "prefix length {plen}: only /128 pHoAs are bound",
                                plen=hnp.prefixLength)
        b = self.bindings.get(key)
        if b is None and phoa not in self.homePrefix:
            # Checked only before a binding is made: every bound pHoA passed it.
            return self._reject(bu, source, Status.NOT_HOME_SUBNET,
                                "{phoa} is outside {prefix}", phoa=phoa,
                                prefix=self.homePrefix)
        if b is None:
            if dereg:
                return self._reject(bu, source, Status.NOT_HOME_AGENT_FOR_MN,
                                    "no binding for {phoa}", phoa=phoa)
            if mnId is None:
                return self._reject(bu, source, Status.MISSING_MN_IDENTIFIER_OPTION,
                                    "{phoa} is not bound and the PBU names no MN",
                                    phoa=phoa)
            if mnId in self._byMnId:
                return self._reject(bu, source, Status.BCE_PBU_PREFIX_SET_DO_NOT_MATCH,
                                    "MN is bound to {other}", other=self._byMnId[mnId].phoa)
            if acoa is None:
                return self._reject(bu, source, Status.UNSPECIFIED,
                                    "no Alternate Care-of Address option")
            return self._create(bu, source, now, phoa, mnIdOpt, acoa.address, False)
        if mnId is not None and mnId != b.mnId:
            return self._reject(bu, source, Status.DAD_FAILED,
                                "{phoa} is bound to another MN", phoa=phoa)
        if not seqGreater(bu.sequence, b.sequence):
            self._say("PBU for {phoa} seq {seq} not greater than {last}: 135",
                      phoa=phoa, seq=bu.sequence, last=b.sequence)
            return self._reply(bu, source, Status.SEQUENCE_OUT_OF_WINDOW,
                               sequence=b.sequence, phoa=phoa, mnId=mnIdOpt)
        if dereg:
            self._remove(b)
            self.counters["deregistered"] += 1
            self._say("binding for {phoa} deregistered", phoa=phoa)
            return [RouteRemove(phoa, b.pcoa), Persist(b.mnId, None)] + self._reply(
                bu, source, Status.ACCEPTED, phoa=phoa, mnId=mnIdOpt)
        if acoa is None:
            return self._reject(bu, source, Status.UNSPECIFIED,
                                "no Alternate Care-of Address option")
        lifetime = self._grant(bu)
        pcoa = self._intern(acoa.address)
        effects = []
        # pCoAs are interned: the same MAG is usually the same object.
        if pcoa is not b.pcoa and pcoa != b.pcoa:
            effects.append(RouteMove(phoa, b.pcoa, pcoa))
            self._say("binding for {phoa} moves {old} -> {new}", phoa=phoa,
                      old=b.pcoa, new=pcoa)
            b.pcoa = pcoa
        b.sequence = bu.sequence
        b.lifetime = lifetime * mh.LIFETIME_UNIT
        b.client = source
        self._schedule(b, now)
        effects.append(_persist(b))
        effects.extend(self._reply(bu, source, Status.ACCEPTED, phoa=phoa,
                                   mnId=mnIdOpt, lifetime=lifetime))
        return effects

    def _grant(self, bu):
        return min(bu.lifetime, self.maxLifetime // mh.LIFETIME_UNIT)

    def _intern(self, address):
        # Many bindings share a few MAG addresses: keep one object per MAG.
        return self._pcoas.setdefault(int(address), address)

    def _schedule(self, b, now):
        b.expiry = now + b.lifetime
        self._push(b.lifetime, b.expiry, int(b.phoa))

    def _push(self, lifetime, expiry, key):
        fifo = self._fifos.get(lifetime)
        if fifo is None:
            fifo = self._fifos[lifetime] = deque()
        if fifo and fifo[-1][0] > expiry:
            heapq.heappush(self._expiries, (expiry, key))
        else:
            fifo.append((expiry, key))

    def _assign(self, bu, source, now, mnIdOpt, acoa):
        if acoa is None:
            return self._reject(bu, source, Status.UNSPECIFIED,
                                "no Alternate Care-of Address option")
        if self.pool is None:
            return self._reject(bu, source, Status.ADMINISTRATIVELY_PROHIBITED,
                                "LMA-assigned pHoAs are disabled (no pool)")
        phoa = self.pool.allocate()
        if phoa is None:
            return self._reject(bu, source, Status.INSUFFICIENT_RESOURCES,
                                "address pool exhausted")
        self._say("assigned {phoa} to MN {mnId}", phoa=phoa,
                  mnId=_show(mnIdOpt.identifier))
        return self._create(bu, source, now, phoa, mnIdOpt, acoa.address, True)

    def _create(self, bu, source, now, phoa, mnIdOpt, pcoa, pooled):
        lifetime = self._grant(bu)
        pcoa = self._intern(pcoa)
        if not pooled and self.pool is not None and phoa in self.pool:
            self.pool.reserve(phoa)
            pooled = True
        b = Binding(phoa, mnIdOpt.identifier, pcoa, bu.sequence,
                    lifetime * mh.LIFETIME_UNIT, 0, source, pooled)
        self.bindings[int(phoa)] = b
        self._byMnId[b.mnId] = b
        self._schedule(b, now)
        self._say("new binding {phoa} -> {pcoa} for MN {mnId}", phoa=phoa,
                  pcoa=pcoa, mnId=_show(b.mnId))
        return [RouteAdd(phoa, pcoa), _persist(b)] + self._reply(
            bu, source, Status.ACCEPTED, phoa=phoa, mnId=mnIdOpt,
            lifetime=lifetime)

    def _remove(self, b):
        del self.bindings[int(b.phoa)]
        if self._byMnId.get(b.mnId) is b:
            del self._byMnId[b.mnId]
        if b.pooled and self.pool is not None:
            self.pool.release(b.phoa)


def _record(b):
    """
    The one record a binding is kept as (see L{LmaCore.restore}); addresses
    stay ipaddress objects, which the store writes as their text.
    """
    return {"phoa": b.phoa, "mn": b.mnId.hex(), "pcoa": b.pcoa,
            "sequence": b.sequence, "lifetime": b.lifetime, "expiry": b.expiry,
            "client": b.client, "pooled": b.pooled}


def _persist(b):
    return tuple.__new__(Persist, (b.mnId, _record(b)))


def _show(mnId):
    return mnId.decode("utf-8", "replace")
