"""
The Global Mobility Anchor (draft sections 2, 4.1 step 7, 4.6): an RFC 6275
home agent for mobiles that run Mobile IPv6 themselves, sans-IO.

A mobile registers the pHoA it has in the local domain (its care-of address
here) for its home address; when it moves to another domain it registers its
new pHoA, and the GMA tunnels its home address there, so its sessions keep
their address. L{GmaCore.receive} takes a decoded Mobility Header message
with what the IPv6 header said (the care-of address it came from and the
Home Address option, RFC 6275 6.3) and returns effects: the Binding
Acknowledgement to send (L{SendToMobile}: to the care-of address with a type
2 routing header naming the home address, RFC 6275 6.4) and the data-plane
changes (L{RouteAdd} / L{RouteMove} / L{RouteRemove} of the home address
towards its care-of address, over the LMA's data planes).

The home network is virtual: its prefix is routed to the GMA and no mobile is
ever on a home link, so there is no proxy Neighbor Discovery (RFC 6275
10.4.1). Each mobile may use the home addresses configured for it; the
binding cache is keyed by home address and holds one explicit state machine
per entry (L{TRANSITIONS}, driven by L{GmaCore.step}):

    ABSENT --register--> REGISTERED --refresh / move--> REGISTERED
    REGISTERED --deregister / expire--> ABSENT

Route optimization (correspondent registrations, return routability) is out
of scope: a Binding Update without the H flag is refused (129).
"""

import enum
from ipaddress import IPv6Address, IPv6Network

from netlmm.core import records as read
from netlmm.core.effects import (
    BadRecord, InvalidInput, Persist, RouteAdd, RouteMove, RouteRemove, SendToMobile)
from netlmm.core.records import fields
from netlmm.core.expiry import Expiries
from netlmm.core.sequence import seqGreater
from netlmm.wire import mh
from netlmm.wire.mh import Status

#: What a home agent answers with Binding Error status 2 (unknown MH type).
_UNPROCESSED = (mh.UnknownMessage, mh.Heartbeat, mh.RevocationIndication,
                mh.RevocationAcknowledgement)

__all__ = ["Binding", "BindingState", "Event", "GmaCore", "TRANSITIONS"]


class BindingState(enum.Enum):
    """Where a home registration stands."""

    __hash__ = object.__hash__

    ABSENT = "ABSENT"
    REGISTERED = "REGISTERED"


class Event(enum.Enum):
    """What can happen to a home registration."""

    __hash__ = object.__hash__

    REGISTER = "register"
    REFRESH = "refresh"
    MOVE = "move"
    DEREGISTER = "deregister"
    EXPIRE = "expire"


_ABSENT, _REGISTERED = BindingState.ABSENT, BindingState.REGISTERED

#: (state, event) -> (next state, what happens to the route).
TRANSITIONS = {
    (_ABSENT, Event.REGISTER): (_REGISTERED, "add"),
    (_REGISTERED, Event.REFRESH): (_REGISTERED, None),
    (_REGISTERED, Event.MOVE): (_REGISTERED, "move"),
    (_REGISTERED, Event.DEREGISTER): (_ABSENT, "remove"),
    (_REGISTERED, Event.EXPIRE): (_ABSENT, "remove"),
}


class Binding:
    """
    One binding cache entry: the home address C{home} of mobile C{mnId}
    bound to C{careOf}, the last accepted C{sequence}, the granted
    C{lifetime} (seconds) and its C{expiry}.
    """

    __slots__ = ("home", "mnId", "careOf", "sequence", "lifetime", "expiry", "state")

    def __init__(self, home, mnId, careOf, sequence):
        self.home = home
        self.mnId = mnId
        self.careOf = careOf
        self.sequence = sequence
        self.lifetime = 0
        self.expiry = 0.0
        self.state = _ABSENT

    def __repr__(self):
        return (f"Binding(home={self.home}, mnId={self.mnId!r}, careOf={self.careOf}, "
                f"state={self.state.value}, sequence={self.sequence}, "
                f"lifetime={self.lifetime}, expiry={self.expiry})")


class _Refusal(Exception):
    """A Binding Update refused with C{status} for C{why} (a format over C{fields})."""

    def __init__(self, status, why, last=None, **fields):
        self.status = status
        self.why = why
        self.last = last
        self.fields = fields


def _usable(address):
    """True for an address a binding may name: global unicast."""
    return not (address.is_multicast or address.is_unspecified or address.is_loopback
                or address.is_link_local or address.is_reserved)


class GmaCore:
    """
    Home registrations (RFC 6275 sections 9.5.1, 10.3.1, 10.3.2).

    @param homePrefix: the home network; home addresses outside it get 132.
    @param mobiles: MN identifier (bytes, the RFC 4283 NAI) -> the home
        addresses that mobile may register; a mobile or a home address not
        listed gets 133.
    @param careOfNetworks: the networks care-of addresses may come from (the
        local mobility domains' prefixes); others get 129. Empty: any global
        unicast address outside the home prefix.
    @param maxLifetime: the longest lifetime granted, seconds.
    """

    def __init__(self, homePrefix, mobiles, careOfNetworks=(), maxLifetime=3600, log=None):
        self.homePrefix = IPv6Network(homePrefix)
        if not 4 <= maxLifetime <= mh.MAX_LIFETIME_UNITS * mh.LIFETIME_UNIT:
            raise ValueError(f"maxLifetime must be 4..262140 seconds, not {maxLifetime}")
        self.maxLifetime = maxLifetime
        self.mobiles = {}
        self._owners = {}
        for mnId, homes in mobiles.items():
            homes = tuple(IPv6Address(h) for h in homes)
            for home in homes:
                if home not in self.homePrefix:
                    raise ValueError(f"home address {home} of {_show(mnId)} is outside "
                                     f"the home prefix {self.homePrefix}")
                if home in self._owners:
                    raise ValueError(f"home address {home} is given to both "
                                     f"{_show(self._owners[home])} and {_show(mnId)}")
                self._owners[home] = mnId
            self.mobiles[mnId] = homes
        self.careOfNetworks = tuple(IPv6Network(n) for n in careOfNetworks)
        self._log = log
        #: int(home) -> L{Binding}
        self.bindings = {}
        self._expiries = Expiries()
        #: Called as C{refused(peer, reason, fmt, **fields)} for each refused
        #: Binding Update, when set (the service logs them); else C{log}.
        self.refused = None
        self.counters = {
            "bu": 0, "accepted": 0, "rejected": 0, "registered": 0, "moved": 0,
            "deregistered": 0, "expired": 0, "bindingErrors": 0, "unexpected": 0,
        }

    # ------------------------------------------------------------ persistence

    def snapshot(self):
        """A L{Persist} for every binding, as the changes emit them."""
        return [_persist(b) for b in self.bindings.values()]

    def restore(self, records, now):
        """
        Load records made by L{_record}: the unexpired bindings of mobiles
        still configured with that home address come back with their
        sequence numbers. Returns the RouteAdd effects that put them back
        into the data plane and a Persist deletion for each record left out;
        raises L{BadRecord} naming the first bad one.
        """
        effects = []
        for i, r in enumerate(records):
            home, mnId, careOf, sequence, lifetime, expiry = fields(
                i, r, home=read.address, mn=read.identifier, careOf=read.address,
                sequence=read.sequence, lifetime=read.seconds, expiry=read.seconds)
            if int(home) in self.bindings:
                raise BadRecord(i, f"home address {home} appears twice")
            if expiry <= now or self._owners.get(home) != mnId:
                effects.append(Persist(home.packed, None))
                continue
            b = Binding(home, mnId, careOf, sequence)
            b.lifetime, b.expiry = int(lifetime), expiry
            effects.extend(self.step(b, Event.REGISTER))
            self._expiries.push(b.lifetime, expiry, int(home))
        return effects

    # ------------------------------------------------------------ queries

    def binding(self, home):
        """The binding of home address C{home}, or None."""
        return self.bindings.get(int(IPv6Address(home)))

    def bindingsOf(self, mnId):
        """The bindings of mobile C{mnId}."""
        return [b for b in (self.bindings.get(int(h)) for h in self.mobiles.get(mnId, ()))
                if b is not None]

    def nextTimer(self):
        """When L{handleTimer} must next run, or None."""
        return self._expiries.next(self._current)

    def _current(self, key, expiry):
        b = self.bindings.get(key)
        return b is not None and b.expiry == expiry

    # ------------------------------------------------------------ the state machine

    def step(self, b, event, careOf=None):
        """
        Drive binding C{b} through C{event} as L{TRANSITIONS} says (C{careOf}:
        the new care-of address of a move); returns the data-plane effects.
        Raises L{InvalidInput}, changing nothing, when the table has no such
        transition.
        """
        entry = TRANSITIONS.get((b.state, event))
        if entry is None:
            raise InvalidInput(event.value, b.state.value)
        state, route = entry
        effects = []
        if route == "add":
            self.bindings[int(b.home)] = b
            effects.append(RouteAdd(b.home, b.careOf))
        elif route == "move":
            effects.append(RouteMove(b.home, b.careOf, careOf))
            b.careOf = careOf
        elif route == "remove":
            del self.bindings[int(b.home)]
            effects.append(RouteRemove(b.home, b.careOf))
        b.state = state
        return effects

    # ------------------------------------------------------------ inputs

    def handleTimer(self, now):
        """End the bindings whose lifetime has run out."""
        effects = []
        for expiry, key in self._expiries.due(now):
            b = self.bindings.get(key)
            if b is None or b.expiry != expiry:
                continue
            effects.extend(self.step(b, Event.EXPIRE))
            effects.append(Persist(b.home.packed, None))
            self.counters["expired"] += 1
            self._debug("binding of {home} (MN {mnId}) expired", home=b.home,
                        mnId=_show(b.mnId))
        return effects

    def receive(self, message, careOf, home, mobile, now):
        """
        Process one Mobility Header message.

        @param careOf: the address the packet came from (its care-of address
            when it carried a Home Address option).
        @param home: the address in its Home Address option, or None.
        @param mobile: the mobile its security association authenticated
            (RFC 4285), or None.
        """
        careOf = IPv6Address(careOf)
        home = None if home is None else IPv6Address(home)
        if type(message) is mh.BindingUpdate:
            return self._bindingUpdate(message, careOf, home, mobile, now)
        if type(message) in _UNPROCESSED:
            # RFC 6275 9.2: status 2, sent to the source, no routing header.
            # A home agent has no RFC 5847 heartbeats and no RFC 5846
            # revocation: to it those are unknown, and the Binding Error
            # tells the sender so.
            self.counters["bindingErrors"] += 1
            self._debug("unknown MH type {mhType} from {source}: Binding Error",
                        mhType=message.MH_TYPE, source=careOf)
            error = mh.BindingError(mh.BE_UNKNOWN_MH_TYPE, home or careOf)
            return [SendToMobile(error, careOf, None)]
        self.counters["unexpected"] += 1
        self._debug("{kind} from {source} is not for a home agent; dropped",
                    kind=type(message).__name__, source=careOf)
        return []

    # ------------------------------------------------------------ Binding Updates

    def _bindingUpdate(self, bu, source, hao, mobile, now):
        self.counters["bu"] += 1
        # RFC 6275 9.5.1: the home address is the Home Address option's, or
        # the source when there is none (a mobile back home deregistering).
        home = source if hao is None else hao
        try:
            return self._process(bu, source, home, mobile, now)
        except _Refusal as r:
            self.counters["rejected"] += 1
            name = Status.name(r.status)
            fmt = "BU seq {seq} for {home} from {source} refused with {status}: " + r.why
            fields = dict(seq=bu.sequence, home=home, source=source, status=name, **r.fields)
            if self.refused is not None:
                self.refused(source, name, fmt, **fields)
            elif self._log is not None:
                self._log.warn(fmt, **fields)
            ba = mh.BindingAcknowledgement(
                r.status, 0, bu.sequence if r.last is None else r.last, 0)
            return [SendToMobile(ba, source, hao)]

    def _process(self, bu, source, home, mobile, now):
        hao = None if home == source else home
        if bu.flags & mh.BU_P:
            raise _Refusal(Status.PROXY_REG_NOT_ENABLED,
                           "a proxy registration (P flag); the GMA takes the mobile's own")
        b = self.bindings.get(int(home))
        if not bu.flags & mh.BU_H:
            if b is not None:
                raise _Refusal(Status.REGISTRATION_TYPE_CHANGE_DISALLOWED,
                               "no H flag for a home registration")
            raise _Refusal(Status.ADMINISTRATIVELY_PROHIBITED,
                           "no H flag: route optimization is not offered")
        mnIdOpt = bu.option(mh.MobileNodeIdentifier)
        mnId = mnIdOpt.identifier if mnIdOpt is not None else mobile
        if mobile is not None and mnId != mobile:
            raise _Refusal(Status.ADMINISTRATIVELY_PROHIBITED,
                           "the MN Identifier is not the mobile of its security association")
        if home not in self.homePrefix or not _usable(home):
            raise _Refusal(Status.NOT_HOME_SUBNET, "{home} is outside the home prefix {prefix}",
                           prefix=self.homePrefix)
        if mnId is None:
            raise _Refusal(Status.NOT_HOME_AGENT_FOR_MN, "no MN Identifier names the mobile")
        homes = self.mobiles.get(mnId)
        if homes is None:
            raise _Refusal(Status.NOT_HOME_AGENT_FOR_MN, "MN {mnId} is not served here",
                           mnId=_show(mnId))
        if home not in homes:
            raise _Refusal(Status.NOT_HOME_AGENT_FOR_MN,
                           "{home} is not a home address of MN {mnId}", mnId=_show(mnId))
        acoa = bu.option(mh.AlternateCareOfAddress)
        careOf = source if acoa is None else acoa.address
        if b is not None and not seqGreater(bu.sequence, b.sequence):
            raise _Refusal(Status.SEQUENCE_OUT_OF_WINDOW,
                           "sequence number not greater than {last}", last=b.sequence)
        if bu.lifetime == 0 or careOf == home:
            if b is None:
                raise _Refusal(Status.NOT_HOME_AGENT_FOR_MN, "deregistration of an unbound home")
            b.sequence = bu.sequence
            effects = self.step(b, Event.DEREGISTER) + [Persist(home.packed, None)]
            self.counters["deregistered"] += 1
            self._debug("binding of {home} (MN {mnId}) deregistered", home=home,
                        mnId=_show(mnId))
            return effects + self._accept(bu, source, hao, 0)
        if not _usable(careOf) or careOf in self.homePrefix:
            raise _Refusal(Status.ADMINISTRATIVELY_PROHIBITED,
                           "care-of address {careOf} cannot be bound", careOf=careOf)
        if self.careOfNetworks and not any(careOf in n for n in self.careOfNetworks):
            raise _Refusal(Status.ADMINISTRATIVELY_PROHIBITED,
                           "care-of address {careOf} is outside the allowed networks",
                           careOf=careOf)
        units = min(bu.lifetime, self.maxLifetime // mh.LIFETIME_UNIT)
        if b is None:
            b = Binding(home, mnId, careOf, bu.sequence)
            effects = self.step(b, Event.REGISTER)
            self.counters["registered"] += 1
            self._debug("new binding {home} -> {careOf} for MN {mnId}", home=home,
                        careOf=careOf, mnId=_show(mnId))
        elif careOf != b.careOf:
            self._debug("binding of {home} moves {old} -> {new}", home=home,
                        old=b.careOf, new=careOf)
            effects = self.step(b, Event.MOVE, careOf)
            self.counters["moved"] += 1
        else:
            effects = self.step(b, Event.REFRESH)
        b.sequence = bu.sequence
        b.lifetime = units * mh.LIFETIME_UNIT
        b.expiry = now + b.lifetime
        self._expiries.push(b.lifetime, b.expiry, int(home))
        effects.append(_persist(b))
        return effects + self._accept(bu, source, hao, units)

    def _accept(self, bu, source, hao, units):
        """The BA accepting C{bu}: sent only when it asked (A flag, RFC 6275 9.5.4)."""
        self.counters["accepted"] += 1
        if not bu.flags & mh.BU_A:
            return []
        options = ()
        refresh = units * 3 // 4
        if refresh:
            options = (mh.BindingRefreshAdvice(refresh),)
        ba = mh.BindingAcknowledgement(Status.ACCEPTED, 0, bu.sequence, units, options)
        return [SendToMobile(ba, source, hao)]

    def _debug(self, fmt, **kw):
        if self._log is not None:
            self._log.debug(fmt, **kw)


def _record(b):
    """The one record a binding is kept as (see L{GmaCore.restore})."""
    return {"home": b.home, "mn": b.mnId.hex(), "careOf": b.careOf,
            "sequence": b.sequence, "lifetime": b.lifetime, "expiry": b.expiry}


def _persist(b):
    """The L{Persist} of binding C{b}, keyed by its home address."""
    return Persist(b.home.packed, _record(b))


def _show(mnId):
    return mnId.decode("utf-8", "replace")
