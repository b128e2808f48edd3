"""
The Local Mobility Anchor (draft section 4.8; RFC 5213 section 5; RFC 5844
section 3.1.2), sans-IO.

L{LmaCore.receive} takes a decoded Mobility Header message, the sender's
address and the current time, and returns effects: the Binding
Acknowledgement or Binding Error to send and the data-plane changes.

One LMA serves two dialects at once, told apart by what each Proxy Binding
Update says (L{profileOf}; doc/protocol.md 1.3):

  - the B{netlmm} dialect of the draft: flags A|H|P, one Home Network Prefix
    option naming the pHoA with prefix length 128 (or, draft E.3, a whole
    per-mobile prefix with a shorter length), an Alternate Care-of Address
    naming the MAG, the MN Identifier only while the pHoA is not bound yet
    (section 4.2 step 3), sequence numbers from the PMIP client;
  - the B{RFC 5213} profile of a standard MAG: flags A|P, the MN Identifier
    in every PBU, Home Network Prefix options (ALL_ZERO asks the LMA to
    assign a prefix), Handoff Indicator, Access Technology Type, optionally
    MN Link-layer Identifier and Link-local Address, Timestamp or sequence
    numbers (per peer), the Proxy-CoA the PBU's source unless an Alternate
    Care-of Address names another.

Both may ask for an IPv4 home address (RFC 5844 IPv4 Home Address Request).

The binding cache holds mobility sessions (L{Binding}), each one explicit
state machine driven by L{TRANSITIONS} through L{LmaCore.step}:

    ABSENT --register--> REGISTERED --refresh / move--> REGISTERED
    REGISTERED --deregister--> DELETING (RFC 5213 MinDelayBeforeBCEDelete)
    DELETING --refresh / move--> REGISTERED
    REGISTERED / DELETING --delete / expire / revoke--> ABSENT

An operator revokes a session (L{LmaCore.revoke}, `netlmm ctl deregister`
at the LMA): it ends at once and an RFC 5846 Binding Revocation Indication
tells the peer that holds it (L{netlmm.core.revocation}).

A session is found by a home (pHoA, prefix or IPv4 address) or, for an
RFC 5213 PBU asking for assignment, by MN identifier, Handoff Indicator,
access technology and link-layer identifier (RFC 5213 5.4.1).
"""

import enum
import fnmatch
from collections import namedtuple
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Network

from netlmm.core import records as read
from netlmm.core.effects import (
    BadRecord, InvalidInput, Persist, RouteAdd, RouteMove, RouteRemove, SendMH, debugging,
)
from netlmm.core.expiry import Expiries
from netlmm.core.pools import AddressPool, PrefixPool
from netlmm.core.records import fields
from netlmm.core.revocation import Revocations
from netlmm.core.sequence import seqGreater
from netlmm.wire import mh
from netlmm.wire.control import showMnId
from netlmm.wire.mh import Status

__all__ = [
    "AddressPool", "Binding", "BindingState", "Event", "LmaCore", "Ordering",
    "PeerPolicy", "PrefixPool", "Profile", "TRANSITIONS", "profileOf",
]

HI = mh.HandoffIndicator
V4 = mh.IPv4HomeAddressReply

#: RFC 5213 section 9 defaults.
MIN_DELAY_BEFORE_BCE_DELETE = 10.0
TIMESTAMP_VALIDITY_WINDOW = 0.3
#: Previous senders whose last sequence number a session remembers.
_SENDERS = 8


class Profile(enum.Enum):
    """The two dialects of Proxy Binding Update the LMA serves."""

    # Members are singletons: hash them by identity, in C (see BindingState).
    __hash__ = object.__hash__

    NETLMM = "netlmm"
    RFC5213 = "rfc5213"


class Ordering(enum.Enum):
    """How PBUs of one peer are ordered (RFC 5213 5.5)."""

    SEQUENCE = "sequence"
    TIMESTAMP = "timestamp"


class PeerPolicy(namedtuple("PeerPolicy", "profile ordering rfc4285 heartbeat revocation")):
    """
    What the LMA expects of one peer (a MAG or PMIP client): C{profile} a
    L{Profile}, or None to tell it from each PBU; C{ordering} the
    L{Ordering} of its RFC 5213 PBUs (netlmm-dialect PBUs always use
    sequence numbers, draft 4.2); C{rfc4285} whether its PBUs must carry
    RFC 4285 authentication (None: as the LMA's security mode says);
    C{heartbeat} whether RFC 5847 heartbeats go to it, C{revocation}
    whether a session the operator ends is revoked with an RFC 5846
    Binding Revocation Indication to it (some RFC 5213 nodes choke on a
    Mobility Header type they do not know, doc/protocol.md 1.7 and 1.8).
    """

    __slots__ = ()

    def __new__(cls, profile=None, ordering=Ordering.TIMESTAMP, rfc4285=None, heartbeat=True,
                revocation=True):
        return super().__new__(cls, profile, ordering, rfc4285, heartbeat, revocation)


DEFAULT_POLICY = PeerPolicy()


class BindingState(enum.Enum):
    """Where a mobility session stands."""

    # Members are singletons: hash them by identity, in C (Enum's own
    # __hash__ is Python code, and L{TRANSITIONS} is looked up per PBU).
    __hash__ = object.__hash__

    ABSENT = "ABSENT"
    REGISTERED = "REGISTERED"
    #: Deregistered; kept MinDelayBeforeBCEDelete in case the mobile
    #: shows up at another MAG (RFC 5213 5.3.5).
    DELETING = "DELETING"


class Event(enum.Enum):
    """What can happen to a mobility session."""

    __hash__ = object.__hash__

    REGISTER = "register"
    REFRESH = "refresh"
    MOVE = "move"
    DEREGISTER = "deregister"
    #: A deregistration from a MAG the mobile already left: answered, ignored.
    STALE_DEREGISTER = "stale deregister"
    DELETE = "delete"
    EXPIRE = "expire"
    #: The operator ended it (RFC 5846 revocation).
    REVOKE = "revoke"


_ABSENT, _REGISTERED, _DELETING = (
    BindingState.ABSENT, BindingState.REGISTERED, BindingState.DELETING)

#: (state, event) -> (next state, what happens to the routes).
TRANSITIONS = {
    (_ABSENT, Event.REGISTER): (_REGISTERED, "add"),
    (_REGISTERED, Event.REFRESH): (_REGISTERED, None),
    (_REGISTERED, Event.MOVE): (_REGISTERED, "move"),
    (_REGISTERED, Event.DEREGISTER): (_DELETING, None),
    (_REGISTERED, Event.STALE_DEREGISTER): (_REGISTERED, None),
    (_REGISTERED, Event.DELETE): (_ABSENT, "remove"),
    (_REGISTERED, Event.EXPIRE): (_ABSENT, "remove"),
    (_REGISTERED, Event.REVOKE): (_ABSENT, "remove"),
    (_DELETING, Event.REFRESH): (_REGISTERED, None),
    (_DELETING, Event.MOVE): (_REGISTERED, "move"),
    (_DELETING, Event.DEREGISTER): (_DELETING, None),
    (_DELETING, Event.STALE_DEREGISTER): (_DELETING, None),
    (_DELETING, Event.DELETE): (_ABSENT, "remove"),
    (_DELETING, Event.EXPIRE): (_ABSENT, "remove"),
    (_DELETING, Event.REVOKE): (_ABSENT, "remove"),
}


class Binding:
    """
    One binding cache entry: a mobility session of one mobile.

    C{homes} are what is routed to the pCoA: IPv6Address for a netlmm pHoA,
    IPv6Network for a per-mobile prefix; C{ipv4} the RFC 5844 IPv4 home
    address (IPv4Interface, with its prefix length) or None. C{client} is
    the sender of the last accepted PBU and C{sequence} its number;
    C{timestamp} the last accepted RFC 5213 Timestamp value.
    """

    __slots__ = ("key", "state", "profile", "mnId", "homes", "ipv4", "pcoa",
                 "client", "sequence", "others", "timestamp", "lifetime", "expiry",
                 "att", "llId", "lla", "last")

    def __init__(self, key, profile, mnId, homes, pcoa, client, sequence):
        self.key = key
        self.state = _ABSENT
        self.profile = profile
        self.mnId = mnId
        self.homes = homes
        self.ipv4 = None
        self.pcoa = pcoa
        self.client = client
        self.sequence = sequence
        #: Last sequence number of earlier senders (sender int -> number).
        self.others = None
        self.timestamp = None
        #: Granted lifetime, seconds.
        self.lifetime = 0
        self.expiry = 0
        self.att = None
        self.llId = None
        self.lla = None
        #: hash of the last accepted PBU, to answer a retransmission of it.
        self.last = None

    @property
    def phoa(self):
        """The first home as an address (a prefix's first address)."""
        if not self.homes:
            return None
        home = self.homes[0]
        return home if type(home) is IPv6Address else home.network_address

    @property
    def prefixes(self):
        """The homes as networks (a pHoA as a /128)."""
        return tuple(h if type(h) is IPv6Network else IPv6Network(h) for h in self.homes)

    def __repr__(self):
        return (f"Binding({self.profile.value}, mnId={self.mnId!r}, "
                f"homes={[str(h) for h in self.homes]}, ipv4={self.ipv4}, "
                f"pcoa={self.pcoa}, state={self.state.value}, sequence={self.sequence}, "
                f"lifetime={self.lifetime}, expiry={self.expiry})")


#: Marks a prefix's key (see L{_homeKey}): above every address's integer.
_PREFIX = 1 << 136


def _homeKey(home):
    """
    One integer per home: a pHoA's own integer (the very object the address
    holds, so the index costs no object per binding), a prefix's address
    and length above every address.
    """
    if type(home) is IPv6Address:
        return int(home)
    return _PREFIX | (int(home.network_address) << 8) | home.prefixlen


def _route(home):
    """What the data plane routes for a home (a /128 as an address)."""
    if type(home) is IPv6Network and home.prefixlen == 128:
        return home.network_address
    return home


class _Pbu:
    """The options of one PBU that the LMA reads, gathered in one pass."""

    __slots__ = ("bu", "source", "profile", "hnps", "mnIdOpt", "acoa", "hi", "att",
                 "llId", "lla", "timestamp", "v4", "broken")

    def __init__(self, bu, source):
        self.bu = bu
        self.source = source
        self.hnps = []
        self.mnIdOpt = self.acoa = self.hi = self.att = self.llId = None
        self.lla = self.timestamp = None
        self.v4 = []
        self.broken = None
        #: As L{profileOf} says, unless the peer's policy decides.
        self.profile = Profile.NETLMM if bu.flags & mh.BU_H else Profile.RFC5213
        for o in bu.options:
            t = type(o)
            if t is mh.HomeNetworkPrefix:
                self.hnps.append(o)
            elif t is mh.MobileNodeIdentifier:
                if self.mnIdOpt is None:
                    self.mnIdOpt = o
            elif t is mh.AlternateCareOfAddress:
                self.acoa = o
            elif t is mh.HandoffIndicator:
                self.hi = o
                self.profile = Profile.RFC5213
            elif t is mh.AccessTechnologyType:
                self.att = o
                self.profile = Profile.RFC5213
            elif t is mh.MobileNodeLinkLayerIdentifier:
                self.llId = o
            elif t is mh.LinkLocalAddress:
                self.lla = o
            elif t is mh.Timestamp:
                self.timestamp = o
            elif t is mh.IPv4HomeAddressRequest:
                self.v4.append(o)
            elif t is mh.MalformedOption:
                if self.broken is None:
                    self.broken = {}
                self.broken.setdefault(o.type, o)
                if o.type in (mh.HandoffIndicator.TYPE, mh.AccessTechnologyType.TYPE):
                    self.profile = Profile.RFC5213

    @property
    def mnId(self):
        return None if self.mnIdOpt is None else self.mnIdOpt.identifier

    def malformed(self, cls):
        """The malformed option that should have been C{cls}, or None."""
        return None if self.broken is None else self.broken.get(cls.TYPE)


def profileOf(bu):
    """
    The dialect of PBU C{bu}: RFC 5213 when it has no H flag or carries a
    Handoff Indicator or Access Technology Type option (valid or not), which
    RFC 5213 makes mandatory and the netlmm dialect never sends; netlmm
    otherwise.
    """
    return _Pbu(bu, None).profile


class _Refusal(Exception):
    """
    A PBU refused with C{status}, for the reason C{why} (a log format over
    C{fields}). C{v4}: the IPv4 Home Address Reply status to send with it;
    C{binding}: the session concerned, if any; C{last}: the sequence number
    the answer carries instead of the PBU's (135).
    """

    def __init__(self, status, why, v4=None, binding=None, last=None, **fields):
        assert not _RESERVED.intersection(fields), fields
        self.status = status
        self.why = why
        self.v4 = v4
        self.binding = binding
        self.last = last
        self.fields = fields


class LmaCore:
    """
    Proxy Binding Update processing for both dialects.

    @param homePrefix: the LMD's prefix; netlmm pHoAs outside it get 132.
    @param authorizedClients: networks whose PMIP clients and MAGs may send
        PBUs; others get 129 (netlmm) or 154 (RFC 5213).
    @param maxLifetime: the longest lifetime granted, seconds.
    @param pool: an L{AddressPool} for LMA-assigned pHoAs (Appendix A), or
        None to refuse assignment requests.
    @param prefixPool: a L{PrefixPool} of per-mobile prefixes (draft E.3,
        RFC 5213 HNPs), or None.
    @param ipv4Pool: an IPv4 L{AddressPool} of RFC 5844 home addresses, or
        None to refuse IPv4 (170).
    @param ipv4PrefixLength: the prefix length of the mobiles' IPv4 home
        network, sent with each address.
    @param ipv4Router: the IPv4 default router the LMA names (RFC 5844
        3.3.3), or None to name none.
    @param ipv4DhcpServer: True when the MAGs serve the mobiles' DHCPv4,
        False when they relay it, None to send no DHCP Support Mode option.
    @param peers: (network, L{PeerPolicy}) pairs, first match wins; a peer
        named here is authorized too.
    @param policy: the L{PeerPolicy} of every other authorized peer.
    @param mobiles: fnmatch patterns of the MN identifiers this LMA serves
        (RFC 5213 PBUs of others get 153); empty: all.
    @param minDelayBeforeBceDelete: seconds an RFC 5213 session is kept
        after its deregistration (RFC 5213 5.3.5).
    @param timestampWindow: TimestampValidityWindow, seconds (RFC 5213 5.5).
    @param revocations: the L{Revocations} that send and retransmit the
        Binding Revocation Indications of L{revoke} (RFC 5846 defaults
        when not given).
    """

    def __init__(self, homePrefix, authorizedClients, maxLifetime=3600,
                 pool=None, log=None, prefixPool=None, ipv4Pool=None,
                 ipv4PrefixLength=24, ipv4Router=None, ipv4DhcpServer=None,
                 peers=(), policy=DEFAULT_POLICY, mobiles=(),
                 minDelayBeforeBceDelete=MIN_DELAY_BEFORE_BCE_DELETE,
                 timestampWindow=TIMESTAMP_VALIDITY_WINDOW, revocations=None):
        self.homePrefix = IPv6Network(homePrefix)
        self.authorizedClients = tuple(IPv6Network(n) for n in authorizedClients)
        if not 4 <= maxLifetime <= mh.MAX_LIFETIME_UNITS * mh.LIFETIME_UNIT:
            raise ValueError(f"maxLifetime must be 4..262140 seconds, not {maxLifetime}")
        self.maxLifetime = maxLifetime
        self.pool = pool
        self.prefixPool = prefixPool
        if ipv4Pool is not None and ipv4Pool.version != 4:
            raise ValueError(f"ipv4Pool {ipv4Pool} is not an IPv4 pool")
        self.ipv4Pool = ipv4Pool
        if not 0 <= ipv4PrefixLength <= 32:
            raise ValueError(f"ipv4PrefixLength must be 0..32, not {ipv4PrefixLength}")
        self.ipv4PrefixLength = ipv4PrefixLength
        self.ipv4Router = None if ipv4Router is None else IPv4Address(ipv4Router)
        self.ipv4DhcpServer = ipv4DhcpServer
        self.peers = tuple((IPv6Network(n), p) for n, p in peers)
        self.policy = policy
        self.mobiles = tuple(mobiles)
        if minDelayBeforeBceDelete < 0:
            raise ValueError("minDelayBeforeBceDelete must not be negative")
        self.minDelayBeforeBceDelete = minDelayBeforeBceDelete
        self.timestampWindow = timestampWindow
        self.revocations = Revocations() if revocations is None else revocations
        self._log = log
        #: Session key -> L{Binding}.
        self.bindings = {}
        self._nextKey = 1
        self._byHome = {}
        self._byMnId = {}
        self._byIpv4 = {}
        self._prefixLengths = set()
        # Pending expiries as (time, key): the machinery the GMA shares.
        self._expiries = Expiries()
        self._peers = {}
        self._pcoas = {}
        #: Called as C{mayRelocate(mnId, client)} for a PBU from a PMIP
        #: client other than the one that holds the mobile's netlmm binding
        #: (draft E.1): True when that client is authorized for the mobile.
        #: None: no client may take a binding over.
        self.mayRelocate = None
        #: Called as C{refused(peer, reason, fmt, **fields)} for each refused
        #: PBU, when set (the service logs them); else they go to C{log}.
        self.refused = None
        self.counters = {
            "pbu": 0, "accepted": 0, "rejected": 0, "new": 0, "deregistered": 0,
            "expired": 0, "bindingErrors": 0, "unexpected": 0,
            "retransmissions": 0, "moved": 0, "created": 0, "relocated": 0,
            "relocationsRefused": 0, "released": 0, "revoked": 0,
        }

    # ------------------------------------------------------------ persistence

    def snapshot(self):
        """A L{Persist} for every session, as the changes emit them."""
        return [_persist(b) for b in self.bindings.values()]

    def restore(self, records, now):
        """
        Load records made by L{_record} (or by releases that knew only one
        /128 pHoA per binding); the unexpired sessions come back with their
        sequence numbers and pool entries. Returns the RouteAdd effects that
        put them back into the data plane, and a Persist deletion for each
        record left out (expired, or in conflict with one taken back). May
        be called once per chunk of a large state. Raises L{BadRecord}
        naming the first bad record.
        """
        effects = []
        for i, r in enumerate(records):
            b = self._fromRecord(i, r)
            if (b.expiry <= now or any(_homeKey(h) in self._byHome for h in b.homes)
                    or (b.ipv4 is not None and int(b.ipv4.ip) in self._byIpv4)
                    or (b.profile is Profile.NETLMM and b.mnId in self._byMnId)):
                key = _storeKey(b)
                # (Not the key of a session taken back: a JSON state file
                # of old had no keys, and could hold a mobile twice.)
                if not any(_storeKey(o) == key for o in self.sessionsOf(b.mnId)):
                    effects.append(tuple.__new__(Persist, (key, None)))
                continue
            b.key = self._newKey()
            for home in b.homes:
                self._reserve(home)
            if b.ipv4 is not None and self.ipv4Pool is not None and b.ipv4.ip in self.ipv4Pool:
                self.ipv4Pool.reserve(b.ipv4.ip)
            self._index(b)
            self._expiries.push(b.lifetime, b.expiry, b.key)
            effects.extend(RouteAdd(_route(h), b.pcoa) for h in self._routes(b))
        return effects

    def _fromRecord(self, i, r):
        mnId, pcoa, client, sequence, lifetime, expiry = fields(
            i, r, mn=read.identifier, pcoa=read.address, client=read.address,
            sequence=read.sequence, lifetime=read.seconds, expiry=read.seconds)
        # Fields records of earlier releases do not have.
        if "homes" in r:
            (homes,) = fields(i, r, homes=_readHomes)
        else:
            (phoa,) = fields(i, r, phoa=read.address)
            homes = (phoa,)
        extra = {name: reader for name, reader in _OPTIONAL.items() if r.get(name) is not None}
        values = dict(zip(extra, fields(i, r, **extra)))
        b = Binding(0, values.get("profile", Profile.NETLMM), mnId, homes,
                    self._intern(pcoa), self._intern(client), sequence)
        b.lifetime = int(lifetime)
        b.expiry = expiry
        b.state = values.get("state", _REGISTERED)
        b.ipv4 = values.get("ipv4")
        b.timestamp = values.get("timestamp")
        b.att = values.get("att")
        b.llId = values.get("llid")
        b.lla = values.get("lla")
        if not homes and b.ipv4 is None:
            raise BadRecord(i, "a session with neither homes nor an IPv4 address")
        if b.state is _ABSENT:
            raise BadRecord(i, "'state': ABSENT is not a kept state")
        return b

    # ------------------------------------------------------------ queries

    def binding(self, address):
        """
        The session that routes C{address} (a pHoA, an address inside a
        per-mobile prefix, an IPv4 home address), or None.
        """
        if isinstance(address, str):
            address = IPv4Address(address) if "." in address else IPv6Address(address)
        if type(address) is IPv4Address:
            return self._byIpv4.get(int(address))
        value = int(address)
        b = self._byHome.get(value)
        if b is not None:
            return b
        for length in self._prefixLengths:
            shift = 128 - length
            b = self._byHome.get(_PREFIX | (((value >> shift) << shift) << 8) | length)
            if b is not None:
                return b
        return None

    def bindingFor(self, mnId):
        """The (first) session of mobile C{mnId}, or None."""
        sessions = self._byMnId.get(mnId)
        return sessions if type(sessions) is not list else sessions[0]

    def sessionsOf(self, mnId):
        """Every session of mobile C{mnId} (several when multihomed)."""
        sessions = self._byMnId.get(mnId)
        if sessions is None:
            return ()
        return (sessions,) if type(sessions) is not list else tuple(sessions)

    def policyFor(self, source):
        """The L{PeerPolicy} of peer C{source}, or None when it is not authorized."""
        peer = self._peers.get(int(source))
        return (peer or self._peer(IPv6Address(source)))[1]

    def _peer(self, source):
        """(interned address, policy or None) for C{source}, remembered."""
        policy = None
        for network, p in self.peers:
            if source in network:
                policy = p
                break
        else:
            if any(source in n for n in self.authorizedClients):
                policy = self.policy
        peer = (self._intern(source), policy)
        if len(self._peers) < 4096:
            self._peers[int(source)] = peer
        return peer

    def nextTimer(self):
        """When L{handleTimer} must next run, or None."""
        due = self._expiries.next(self._current)
        bri = self.revocations.nextTimer()
        return due if bri is None or (due is not None and due < bri) else bri

    def _current(self, key, expiry):
        b = self.bindings.get(key)
        return b is not None and b.expiry == expiry

    # ------------------------------------------------------------ the state machine

    def step(self, b, event, pcoa=None):
        """
        Drive session C{b} through C{event} as L{TRANSITIONS} says, with
        C{pcoa} the new Proxy-CoA of a move; returns the data-plane effects.
        Raises L{InvalidInput} (changing nothing) when the table has no
        such transition.
        """
        entry = TRANSITIONS.get((b.state, event))
        if entry is None:
            raise InvalidInput(event.value, b.state.value)
        state, routes = entry
        effects = []
        if routes == "add":
            self._index(b)
            effects = [RouteAdd(_route(h), b.pcoa) for h in self._routes(b)]
        elif routes == "move":
            old = b.pcoa
            b.pcoa = pcoa
            effects = [RouteMove(_route(h), old, pcoa) for h in self._routes(b)]
            self.counters["moved"] += 1
        elif routes == "remove":
            self._unindex(b)
            effects = [RouteRemove(_route(h), b.pcoa) for h in self._routes(b)]
        b.state = state
        return effects

    def _routes(self, b):
        if b.ipv4 is None:
            return b.homes
        return b.homes + (b.ipv4.ip,)

    # ------------------------------------------------------------ inputs

    def handleTimer(self, now):
        """
        End the sessions whose lifetime or deletion delay has run out; send
        again the Binding Revocation Indications due.
        """
        effects = []
        if self.revocations.outstanding:
            again, given = self.revocations.handleTimer(now)
            effects.extend(again)
            for o in given:
                self._say("no Binding Revocation Acknowledgement from {peer} for {mnId} "
                          "after {n} BRIs; its binding here is gone anyway", peer=o.peer,
                          mnId=_show(o.mnId), n=o.retries + 1)
        for expiry, key in self._expiries.due(now):
            b = self.bindings.get(key)
            if b is None or b.expiry != expiry:
                continue
            if b.state is _DELETING:
                effects.extend(self.step(b, Event.DELETE))
                what = "deleted after its deregistration"
            else:
                effects.extend(self.step(b, Event.EXPIRE))
                self.counters["expired"] += 1
                what = "expired"
            effects.append(Persist(_storeKey(b), None))
            if debugging(self._log):
                self._log.debug("binding for {homes} (MN {mnId}) {what}", homes=_homes(b),
                                mnId=_show(b.mnId), what=what)
        return effects

    def releaseClient(self, client, before, now):
        """
        End the sessions PMIP client (or MAG) C{client} registered or
        refreshed last at C{before} or earlier: it restarted and lost them
        (its RFC 5847 Restart Counter changed, and C{before} is when it last
        answered with the old one). Sessions it registered since are its
        new state and stay.
        """
        if type(client) is not IPv6Address:
            client = IPv6Address(client)
        gone = [b for b in self.bindings.values()
                if b.client == client and b.expiry - b.lifetime <= before]
        effects = []
        for b in gone:
            effects.extend(self.step(b, Event.EXPIRE))
            effects.append(Persist(_storeKey(b), None))
        self.counters["released"] += len(gone)
        if self._log is not None:
            self._log.info("{n} bindings of restarted client {client} released",
                           n=len(gone), client=client)
        return effects

    def revokes(self, client):
        """
        True when a session of peer C{client} that the operator ends is
        revoked with a BRI: its policy allows it and it did not answer one
        with "unknown MH type".
        """
        policy = self.policyFor(client)
        return ((policy or DEFAULT_POLICY).revocation
                and client not in self.revocations.unsupported)

    def revoke(self, b, indicate, now, trigger=mh.RevocationTrigger.ADMINISTRATIVE_REASON):
        """
        The operator ends session C{b} (`netlmm ctl deregister` at the
        LMA): its routes go at once and its record is deleted; with
        C{indicate} (as L{revokes} says, unless the service cannot protect
        it), an RFC 5846 Binding Revocation Indication for
        C{trigger} (P flag, the MN identifier, a Home Network Prefix option
        per home) goes to the PMIP client or MAG that holds it, sent again
        until a Binding Revocation Acknowledgement comes (L{Revocations}).
        """
        if self.bindings.get(b.key) is not b:
            raise InvalidInput(Event.REVOKE.value, "ABSENT")
        effects = self.step(b, Event.REVOKE)
        effects.append(Persist(_storeKey(b), None))
        self.counters["revoked"] += 1
        if indicate:
            options = [mh.MobileNodeIdentifier(b.mnId)] + [_hnp(h) for h in b.homes]
            effects.append(self.revocations.indicate(b.client, b.mnId, options, trigger, now))
            sent = "Binding Revocation Indication sent"
        else:
            sent = "not told (no Binding Revocation Indication)"
        self._say("binding for {homes} (MN {mnId}) revoked by the operator; {client}: "
                  "{sent}", homes=_homes(b), mnId=_show(b.mnId), client=b.client, sent=sent)
        return effects

    def receive(self, message, source, now):
        """Process one Mobility Header message from C{source}."""
        if type(source) is not IPv6Address:
            source = IPv6Address(source)
        if type(message) is mh.BindingUpdate:
            return self._bindingUpdate(message, source, now)
        if type(message) is mh.RevocationAcknowledgement:
            return self._revocationAcknowledged(message, source)
        if type(message) is mh.BindingError:
            for o in self.revocations.bindingError(message, source):
                self._say("{peer} does not know Binding Revocation (Binding Error, "
                          "unknown MH type): no BRA for {mnId}, and no more BRIs to it; "
                          "set revocation = false in its [[lma.peers]] table", peer=source,
                          mnId=_show(o.mnId))
            return []
        if type(message) is mh.UnknownMessage or type(message) is mh.RevocationIndication:
            # The LMA sends BRIs but does not take them (RFC 5846 MAG-initiated
            # revocation): to it a BRI is as unknown as it was.
            self.counters["bindingErrors"] += 1
            self._refuseMessage(source, "unknown MH type",
                         "unknown MH type {mhType} from {peer}: Binding Error",
                         mhType=message.MH_TYPE)
            return [SendMH(mh.BindingError(mh.BE_UNKNOWN_MH_TYPE), source)]
        self.counters["unexpected"] += 1
        kind = type(message).__name__
        self._refuseMessage(source, f"{kind} not for an LMA",
                     "{kind} from {peer} is not for an LMA; dropped", kind=kind)
        return []

    def _revocationAcknowledged(self, bra, source):
        o = self.revocations.acknowledged(bra, source)
        if o is None:
            self.counters["unexpected"] += 1
            self._refuseMessage(source, "BRA answers no BRI",
                                "Binding Revocation Acknowledgement seq {seq} from {peer} "
                                "answers no BRI outstanding; dropped", seq=bra.sequence)
        elif bra.accepted:
            if debugging(self._log):
                self._log.debug("{peer} acknowledged the revocation of {mnId}", peer=source,
                                mnId=_show(o.mnId))
        else:
            self._say("{peer} answered the revocation of {mnId} with {status}", peer=source,
                      mnId=_show(o.mnId), status=mh.RevocationStatus.name(bra.status))
        return []

    def knows(self, bu):
        """
        True when PBU C{bu} names a session this LMA has (by a home in its
        Home Network Prefix options, or by its MN identifier): a refresh,
        handoff or deregistration rather than a new attachment.
        """
        for o in bu.options:
            t = type(o)
            if t is mh.HomeNetworkPrefix:
                if not o.unspecified and self.binding(o.prefix) is not None:
                    return True
            elif t is mh.MobileNodeIdentifier:
                if o.identifier in self._byMnId:
                    return True
        return False

    def refuse(self, bu, source, status, why, now):
        """
        The effects that refuse PBU C{bu} from C{source} with C{status} for a
        reason of the service's (C{why}: one line), nothing else changed:
        the answer echoes what the PBU sent, as every refusal does.
        """
        if type(source) is not IPv6Address:
            source = IPv6Address(source)
        p = _Pbu(bu, source)
        policy = self._peer(source)[1]
        if policy is not None and policy.profile is not None:
            p.profile = policy.profile
        return self._refuse(p, _Refusal(status, why), now)

    def _refuseMessage(self, source, reason, fmt, **fields):
        """A message (not a PBU) from C{source} refused: through C{refused} when set."""
        if self.refused is not None:
            self.refused(source, reason, fmt, **fields)
        elif self._log is not None:
            self._log.warn(fmt, peer=source, **fields)

    # ------------------------------------------------------------ PBU processing

    def _bindingUpdate(self, bu, source, now):
        self.counters["pbu"] += 1
        peer = self._peers.get(int(source))
        if peer is None:
            peer = self._peer(source)
        # Interned, so that comparing senders is mostly an identity test.
        source, policy = peer
        p = _Pbu(bu, source)
        profile = None if policy is None else policy.profile
        if profile is not None:
            p.profile = profile
        profile = p.profile
        try:
            if policy is None:
                if profile is Profile.NETLMM:
                    raise _Refusal(Status.ADMINISTRATIVELY_PROHIBITED,
                                   "client is not authorized")
                raise _Refusal(Status.MAG_NOT_AUTHORIZED_FOR_PROXY_REG,
                               "MAG is not authorized")
            if not bu.flags & mh.BU_P:
                raise _Refusal(Status.HOME_REGISTRATION_NOT_SUPPORTED,
                               "not a proxy registration (no P flag)")
            if profile is Profile.NETLMM:
                return self._netlmm(p, now)
            return self._rfc5213(p, policy, now)
        except _Refusal as r:
            return self._refuse(p, r, now)

    def _refuse(self, p, r, now):
        """
        The PBA refusing PBU C{p}: it echoes what the PBU sent, as it sent
        it (RFC 5213 5.3.6), and is logged once with the peer's address.
        """
        bu = p.bu
        self.counters["rejected"] += 1
        name = Status.name(r.status)
        fmt = "PBU seq {seq} from {peer} refused with {status}: " + r.why
        if self.refused is not None:
            self.refused(p.source, name, fmt, seq=bu.sequence, status=name, **r.fields)
        elif self._log is not None:
            self._log.warn(fmt, peer=p.source, seq=bu.sequence, status=name, **r.fields)
        b = r.binding
        options = []
        if p.profile is Profile.NETLMM:
            if b is not None and r.last is not None:
                # 135 names the binding the PMIP client's sequence is for.
                options.extend(_hnp(h) for h in b.homes)
            else:
                options.extend(h for h in p.hnps if not h.unspecified)
            if p.mnIdOpt is not None:
                options.append(p.mnIdOpt)
        else:
            stamp = None
            if r.status in (Status.TIMESTAMP_MISMATCH,
                            Status.TIMESTAMP_LOWER_THAN_PREV_ACCEPTED):
                stamp = mh.Timestamp.fromSeconds(now)
            options = self._echo5213(p, p.hnps, b.lla if b is not None else None, stamp)
        if r.v4 is not None or (p.v4 and r.status in _V4_STATUSES):
            options.append(V4(V4.UNSPECIFIED if r.v4 is None else r.v4,
                              p.v4[0].address if p.v4 else _ZERO4,
                              p.v4[0].prefixLength if p.v4 else 0))
        return [SendMH(self._ba(bu, r.status, options, sequence=r.last), p.source)]

    def _ba(self, bu, status, options, lifetime=0, sequence=None):
        return tuple.__new__(mh.BindingAcknowledgement, (
            status, mh.BA_P if bu.flags & mh.BU_P else 0,
            bu.sequence if sequence is None else sequence, lifetime, tuple(options)))

    def _echo5213(self, p, hnps, lla, timestamp):
        """The options an RFC 5213 PBA echoes (5.3.6), C{hnps} as given."""
        options = []
        if p.mnIdOpt is not None:
            options.append(p.mnIdOpt)
        options.extend(hnps)
        if p.hi is not None:
            options.append(p.hi)
        if p.att is not None:
            options.append(p.att)
        if p.llId is not None:
            options.append(p.llId)
        if p.lla is not None:
            options.append(p.lla if lla is None else mh.LinkLocalAddress(lla))
        if timestamp is not None:
            options.append(timestamp)
        elif p.timestamp is not None:
            options.append(p.timestamp)
        return options

    def _accept(self, p, b, lifetime):
        """The PBA accepting PBU C{p} for session C{b}."""
        bu = p.bu
        self.counters["accepted"] += 1
        options = []
        if lifetime:
            refresh = lifetime * 3 // 4
            if refresh:
                # lifetime <= 0xFFFF, so refresh is a valid 16-bit interval.
                options.append(tuple.__new__(mh.BindingRefreshAdvice, (refresh,)))
        if p.profile is Profile.NETLMM:
            for h in b.homes:
                options.append(_hnp(h))
            if p.mnIdOpt is not None:
                options.append(p.mnIdOpt)
        else:
            options.extend(self._echo5213(p, [_hnp(h) for h in b.homes], b.lla, None))
        if b.ipv4 is not None and p.v4:
            options.append(V4(V4.SUCCESS, b.ipv4.ip, b.ipv4.network.prefixlen))
            if self.ipv4Router is not None:
                options.append(mh.IPv4DefaultRouterAddress(self.ipv4Router))
            if self.ipv4DhcpServer is not None:
                options.append(mh.IPv4DhcpSupportMode(self.ipv4DhcpServer))
        ba = tuple.__new__(mh.BindingAcknowledgement, (
            Status.ACCEPTED, mh.BA_P if bu.flags & mh.BU_P else 0, bu.sequence, lifetime,
            tuple(options)))
        return [tuple.__new__(SendMH, (ba, p.source))]

    # ------------------------------------------------------------ the netlmm dialect

    def _netlmm(self, p, now):
        bu = p.bu
        if len(p.hnps) != 1:
            if p.hnps:
                raise _Refusal(Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX,
                               "{n} Home Network Prefix options; the netlmm dialect "
                               "names one", n=len(p.hnps))
            bad = p.malformed(mh.HomeNetworkPrefix)
            raise _Refusal(Status.MISSING_HOME_NETWORK_PREFIX_OPTION,
                           "no Home Network Prefix option" if bad is None
                           else "malformed Home Network Prefix option: {problem}",
                           problem=None if bad is None else bad.reason)
        hnp = p.hnps[0]
        mnId = p.mnId
        dereg = bu.lifetime == 0
        value = int(hnp.prefix)
        if not value:
            if mnId is None:
                raise _Refusal(Status.MISSING_MN_IDENTIFIER_OPTION,
                               "an assignment request needs the MN identifier")
            b = self.bindingFor(mnId)
            if b is None:
                if dereg:
                    raise _Refusal(Status.NOT_HOME_AGENT_FOR_MN,
                                   "deregistration of an unknown MN")
                return self._netlmmCreate(p, now, hnp)
        else:
            if hnp.prefixLength == 128:
                home = hnp.prefix
                b = self._byHome.get(value)
            else:
                home = _network(hnp)
                if home is None:
                    raise _Refusal(Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX,
                                   "{prefix}/{plen} has bits set beyond its length",
                                   prefix=hnp.prefix, plen=hnp.prefixLength)
                b = self._byHome.get(_homeKey(home))
            if b is None:
                if dereg:
                    raise _Refusal(Status.NOT_HOME_AGENT_FOR_MN,
                                   "no binding for {home}", home=home)
                return self._netlmmCreate(p, now, hnp, home)
            if mnId is not None and mnId != b.mnId:
                if type(home) is IPv6Address:
                    raise _Refusal(Status.DAD_FAILED, "{home} is bound to another MN",
                                   home=home)
                raise _Refusal(Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX,
                               "{home} is bound to another MN", home=home)
        if p.source is not b.client and p.source != b.client:
            self._relocation(p, b)
        if b.last is not None and self._retransmission(p, b):
            return self._accept(p, b, self._grant(bu))
        # The usual case inline (the PBU per binding per refresh): the
        # client that numbers this binding's PBUs, a greater number.
        if p.source is not b.client or not 0 < ((bu.sequence - b.sequence) & 0xFFFF) < 0x8000:
            self._checkSequence(p, b)
        if dereg:
            return self._deregister(p, b, now, Event.DELETE)
        if p.acoa is None:
            raise _Refusal(Status.UNSPECIFIED, "no Alternate Care-of Address option")
        ipv4 = b.ipv4 if not p.v4 and p.broken is None else self._ipv4(p, b)
        return self._update(p, b, self._intern(p.acoa.address), ipv4, now)

    def _relocation(self, p, b):
        """
        PBU C{p} for netlmm session C{b} comes from a PMIP client other than
        the one that holds it: the mobile's MAG moved it to this client
        (draft E.1), or a client that lost it speaks for it again. Allowed
        only when the PBU names the mobile and L{mayRelocate} says this
        client is authorized for it (AAA, doc/protocol.md 2.4); otherwise
        129 and nothing changes. The new client's sequence numbers are its
        own (L{_checkSequence} keeps one per sender).
        """
        authority = self.mayRelocate
        if p.mnId != b.mnId:
            raise _Refusal(Status.ADMINISTRATIVELY_PROHIBITED,
                           "{homes} is held by PMIP client {holder}; a PBU from another "
                           "client must name the mobile", homes=_homes(b), holder=b.client)
        if authority is None or not authority(b.mnId, p.source):
            self.counters["relocationsRefused"] += 1
            raise _Refusal(Status.ADMINISTRATIVELY_PROHIBITED,
                           "MN {mnId} is held by PMIP client {holder}; this client is not "
                           "authorized to take it over", mnId=_show(b.mnId), holder=b.client)

    def _netlmmCreate(self, p, now, hnp, home=None):
        """A new netlmm session for PBU C{p}: C{home} named, or assigned."""
        mnId = p.mnId
        if home is not None and type(home) is IPv6Address and home not in self.homePrefix:
            raise _Refusal(Status.NOT_HOME_SUBNET, "{home} is outside {prefix}",
                           home=home, prefix=self.homePrefix)
        if mnId is None:
            raise _Refusal(Status.MISSING_MN_IDENTIFIER_OPTION,
                           "{home} is not bound and the PBU names no MN", home=home)
        if mnId in self._byMnId:
            raise _Refusal(Status.BCE_PBU_PREFIX_SET_DO_NOT_MATCH,
                           "MN is bound to {other}", other=_homes(self.bindingFor(mnId)))
        if p.acoa is None:
            raise _Refusal(Status.UNSPECIFIED, "no Alternate Care-of Address option")
        ipv4 = self._ipv4(p, None)
        fresh = ()
        if home is None:
            home = self._assign(hnp.prefixLength == 128)
            fresh = (home,)
        elif type(home) is IPv6Network:
            self._checkPrefix(home, mnId)
        b = Binding(0, Profile.NETLMM, mnId, (home,), self._intern(p.acoa.address),
                    p.source, p.bu.sequence)
        return self._create(p, b, ipv4, now, fresh)

    # ------------------------------------------------------------ the RFC 5213 profile

    def _rfc5213(self, p, policy, now):
        bu = p.bu
        mnId = p.mnId
        if mnId is None:
            raise _Refusal(Status.MISSING_MN_IDENTIFIER_OPTION,
                           *_missing(p, mh.MobileNodeIdentifier, "MN Identifier"))
        if self.mobiles and not _serves(self.mobiles, mnId):
            raise _Refusal(Status.NOT_LMA_FOR_THIS_MN, "MN {mnId} is not served here",
                           mnId=_show(mnId))
        if not p.hnps and not p.v4:
            raise _Refusal(Status.MISSING_HOME_NETWORK_PREFIX_OPTION,
                           *_missing(p, mh.HomeNetworkPrefix, "Home Network Prefix"))
        if p.hi is None:
            raise _Refusal(Status.MISSING_HANDOFF_INDICATOR_OPTION,
                           *_missing(p, mh.HandoffIndicator, "Handoff Indicator"))
        if p.att is None:
            raise _Refusal(Status.MISSING_ACCESS_TECH_TYPE_OPTION,
                           *_missing(p, mh.AccessTechnologyType, "Access Technology Type"))
        for cls in (mh.AlternateCareOfAddress, mh.MobileNodeLinkLayerIdentifier,
                    mh.LinkLocalAddress):
            bad = p.malformed(cls)
            if bad is not None:
                raise _Refusal(Status.UNSPECIFIED, "malformed {kind} option: {problem}",
                               kind=cls.__name__, problem=bad.reason)
        b = self._lookup(p)
        if policy.ordering is Ordering.TIMESTAMP:
            if self._checkTimestamp(p, b, now):
                return self._accept(p, b, self._grant(bu))
        else:
            if b is not None and self._retransmission(p, b):
                return self._accept(p, b, self._grant(bu))
            if b is not None:
                self._checkSequence(p, b)
        pcoa = p.source if p.acoa is None else p.acoa.address
        if bu.lifetime == 0:
            if b is None:
                raise _Refusal(Status.NOT_HOME_AGENT_FOR_MN,
                               "deregistration of MN {mnId}, which has no session",
                               mnId=_show(mnId))
            if pcoa != b.pcoa:
                event = Event.STALE_DEREGISTER
            elif self.minDelayBeforeBceDelete:
                event = Event.DEREGISTER
            else:
                event = Event.DELETE
            return self._deregister(p, b, now, event)
        ipv4 = self._ipv4(p, b)
        pcoa = self._intern(pcoa)
        if b is not None:
            return self._update(p, b, pcoa, ipv4, now)
        homes = self._homesFor(p, mnId)
        b = Binding(0, Profile.RFC5213, mnId, homes, pcoa, p.source, bu.sequence)
        assigned = bool(homes) and p.hnps[0].unspecified
        return self._create(p, b, ipv4, now, homes if assigned else ())

    def _lookup(self, p):
        """
        The session an RFC 5213 PBU is for (RFC 5213 5.4.1), or None for a
        new one. Named prefixes decide by themselves: all of one session of
        this mobile (that session), none bound (a new session), or else 155
        (another mobile's) or 159 (a different set). An ALL_ZERO request is
        matched by Handoff Indicator, access technology and link-layer id.
        """
        named = [h for h in p.hnps if not h.unspecified]
        if named and len(named) != len(p.hnps):
            raise _Refusal(Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX,
                           "ALL_ZERO mixed with named prefixes")
        if named:
            owners = set()
            for h in named:
                net = _network(h)
                if net is None:
                    raise _Refusal(Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX,
                                   "{prefix}/{plen} has bits set beyond its length",
                                   prefix=h.prefix, plen=h.prefixLength)
                owners.add(self._byHome.get(_homeKey(_home(net))))
            found = owners - {None}
            for b in found:
                if b.mnId != p.mnId:
                    raise _Refusal(Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX,
                                   "{prefix} is another MN's", prefix=_homes(b))
            if not found:
                return None
            (b,) = found if len(found) == 1 else (None,)
            if b is None or None in owners or len(b.homes) != len(named):
                raise _Refusal(Status.BCE_PBU_PREFIX_SET_DO_NOT_MATCH,
                               "the PBU's prefixes are not the session's {homes}",
                               homes=_homes(next(iter(found))))
            return b
        if p.v4 and not p.hnps:
            # IPv4 only (RFC 5844): the session of the address it names.
            request = p.v4[0]
            if not request.unspecified:
                b = self._byIpv4.get(int(request.address))
                if b is not None and b.mnId == p.mnId:
                    return b
        sessions = self.sessionsOf(p.mnId)
        if not sessions:
            return None
        hi = p.hi.value
        if hi == HI.ATTACHMENT_OVER_NEW_INTERFACE:
            return None
        if hi == HI.HANDOFF_BETWEEN_DIFFERENT_INTERFACES:
            # The mobile moves a session to another interface: its access
            # technology and link-layer id change, so only a lone session
            # can be meant.
            return sessions[0] if len(sessions) == 1 else None
        att = p.att.value
        llId = None if p.llId is None else p.llId.identifier
        same = [b for b in sessions if b.att == att
                and (llId is None or b.llId is None or b.llId == llId)]
        if hi == HI.NOT_CHANGED:
            pcoa = p.source if p.acoa is None else p.acoa.address
            for b in same:
                if b.pcoa == pcoa:
                    return b
        if llId is not None:
            for b in same:
                if b.llId == llId:
                    return b
        return same[0] if same else None

    def _homesFor(self, p, mnId):
        """The homes of a new RFC 5213 session: the named prefixes or one assigned."""
        if not p.hnps:
            return ()
        if p.hnps[0].unspecified:
            if len(p.hnps) > 1:
                raise _Refusal(Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX,
                               "{n} ALL_ZERO Home Network Prefix options", n=len(p.hnps))
            return (self._assign(False),)
        homes = []
        for h in p.hnps:
            home = _home(_network(h))
            if type(home) is IPv6Network:
                self._checkPrefix(home, mnId)
            elif home not in self.homePrefix:
                raise _Refusal(Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX,
                               "{home} is outside {prefix}", home=home, prefix=self.homePrefix)
            if home in homes:
                raise _Refusal(Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX,
                               "{home} named twice", home=home)
            homes.append(home)
        return tuple(homes)

    # ------------------------------------------------------------ shared steps

    def _checkPrefix(self, prefix, mnId):
        """Refuse (155) a named prefix this LMA may not give C{mnId}."""
        pool = self.prefixPool
        if pool is None or prefix not in pool:
            raise _Refusal(Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX,
                           "{prefix} is not in the prefix pool {pool}",
                           prefix=prefix, pool=pool)

    def _assign(self, address):
        """An address (Appendix A) or a prefix (E.3) from the pools."""
        pool = self.pool if address else self.prefixPool
        if pool is None:
            raise _Refusal(Status.ADMINISTRATIVELY_PROHIBITED,
                           "LMA-assigned {what} are disabled (no pool)",
                           what="pHoAs" if address else "prefixes")
        home = pool.allocate()
        if home is None:
            raise _Refusal(Status.INSUFFICIENT_RESOURCES, "{pool} exhausted", pool=pool)
        return home

    def _ipv4(self, p, b):
        """
        The IPv4 home address (IPv4Interface) for PBU C{p} of session C{b}
        (None for a new one), or None when it asks for none (RFC 5844
        3.1.2). Allocates nothing yet: a new address is taken in L{_create}
        or L{_update}, after every other check passed.
        """
        if not p.v4:
            bad = p.malformed(mh.IPv4HomeAddressRequest)
            if bad is not None:
                raise _Refusal(Status.NOT_AUTHORIZED_FOR_IPV4_HOME_ADDRESS,
                               "malformed IPv4 Home Address Request: {problem}",
                               v4=V4.INVALID_IPV4_ADDRESS, problem=bad.reason)
            return None if b is None else b.ipv4
        if len(p.v4) > 1:
            raise _Refusal(Status.MULTIPLE_IPV4_HOME_ADDRESS_ASSIGNMENT_NOT_SUPPORTED,
                           "{n} IPv4 Home Address Request options", n=len(p.v4))
        pool = self.ipv4Pool
        if pool is None:
            raise _Refusal(Status.NOT_AUTHORIZED_FOR_IPV4_MOBILITY_SERVICE,
                           "IPv4 home addresses are disabled (no IPv4 pool)",
                           v4=V4.ADMINISTRATIVELY_PROHIBITED)
        request = p.v4[0]
        if b is not None and b.ipv4 is not None:
            if request.unspecified or request.address == b.ipv4.ip:
                return b.ipv4
            raise _Refusal(Status.NOT_AUTHORIZED_FOR_IPV4_HOME_ADDRESS,
                           "{asked} asked, the session has {has}",
                           v4=V4.INCORRECT_IPV4_HOME_ADDRESS, asked=request.address,
                           has=b.ipv4.ip)
        if request.unspecified:
            return _NEW_V4
        address = request.address
        if address not in pool or self.ipv4Router == address:
            raise _Refusal(Status.NOT_AUTHORIZED_FOR_IPV4_HOME_ADDRESS,
                           "{address} is not in the IPv4 pool {pool}",
                           v4=V4.INVALID_IPV4_ADDRESS, address=address, pool=pool)
        owner = self._byIpv4.get(int(address))
        if owner is not None and owner.mnId != p.mnId:
            raise _Refusal(Status.NOT_AUTHORIZED_FOR_IPV4_HOME_ADDRESS,
                           "{address} is another MN's", v4=V4.INCORRECT_IPV4_HOME_ADDRESS,
                           address=address)
        if owner is None and pool.taken(address):
            raise _Refusal(Status.NOT_AUTHORIZED_FOR_IPV4_HOME_ADDRESS,
                           "{address} is not free", v4=V4.INCORRECT_IPV4_HOME_ADDRESS,
                           address=address)
        return IPv4Interface((address, self.ipv4PrefixLength))

    def _takeIpv4(self, ipv4):
        """Allocate or reserve the address L{_ipv4} chose."""
        if ipv4 is _NEW_V4:
            address = self.ipv4Pool.allocate()
            if address is None:
                raise _Refusal(Status.INSUFFICIENT_RESOURCES, "{pool} exhausted",
                               v4=V4.DYNAMIC_IPV4_HOME_ADDRESS_ASSIGNMENT_NOT_AVAILABLE,
                               pool=self.ipv4Pool)
            return IPv4Interface((address, self.ipv4PrefixLength))
        self.ipv4Pool.reserve(ipv4.ip)
        return ipv4

    def _checkTimestamp(self, p, b, now):
        """
        RFC 5213 5.5: refuse (156/157) a PBU whose Timestamp is missing,
        outside TimestampValidityWindow, or not later than the session's.
        True for a retransmission of the last accepted PBU (answer again).
        """
        ts = p.timestamp
        if ts is None:
            bad = p.malformed(mh.Timestamp)
            raise _Refusal(Status.TIMESTAMP_MISMATCH,
                           "no Timestamp option" if bad is None
                           else "malformed Timestamp option: {problem}",
                           binding=b, problem=None if bad is None else bad.reason)
        if b is not None and b.timestamp is not None and ts.value <= b.timestamp:
            if ts.value == b.timestamp and self._retransmission(p, b):
                return True
            raise _Refusal(Status.TIMESTAMP_LOWER_THAN_PREV_ACCEPTED,
                           "timestamp {ts} not later than the accepted {accepted}",
                           binding=b, ts=ts.seconds, accepted=b.timestamp / 65536)
        if abs(ts.seconds - now) > self.timestampWindow:
            raise _Refusal(Status.TIMESTAMP_MISMATCH,
                           "timestamp {ts} is {off:.3f} s off the LMA's clock",
                           ts=ts.seconds, off=ts.seconds - now, binding=b)
        return False

    def _retransmission(self, p, b):
        """
        True when C{p} is the very PBU last accepted for C{b}, sent again
        (a MAG that resends without a new sequence number, as some do):
        it is answered again and changes nothing.
        """
        if (b.last is not None and (p.source is b.client or p.source == b.client)
                and b.last == hash(p.bu)):
            self.counters["retransmissions"] += 1
            return True
        return False

    def _checkSequence(self, p, b):
        """RFC 6275 9.5.1, per sender: refuse (135) a number not greater."""
        source = p.source
        if source is b.client or source == b.client:
            last = b.sequence
        elif b.others is not None:
            last = b.others.get(int(source))
        else:
            last = None
        if last is not None and not seqGreater(p.bu.sequence, last):
            if debugging(self._log):
                self._log.debug("PBU for {homes} seq {seq} not greater than {last}: 135",
                                homes=_homes(b), seq=p.bu.sequence, last=last)
            raise _Refusal(Status.SEQUENCE_OUT_OF_WINDOW,
                           "sequence number not greater than {accepted}", binding=b,
                           last=last, accepted=last)

    def _accepted(self, p, b, now):
        """Note what session C{b} keeps of the PBU it accepted."""
        bu = p.bu
        source = p.source
        if source is not b.client and source != b.client:
            if p.profile is Profile.NETLMM and p.bu.lifetime:
                # Authorized by _relocation (draft E.1).
                self.counters["relocated"] += 1
                if debugging(self._log):
                    self._log.debug("binding for {homes} (MN {mnId}) taken over by PMIP "
                                    "client {client} from {holder}", homes=_homes(b),
                                    mnId=_show(b.mnId), client=source, holder=b.client)
            others = b.others
            if others is None:
                others = b.others = {}
            elif len(others) >= _SENDERS:
                del others[next(iter(others))]
            others[int(b.client)] = b.sequence
            others.pop(int(source), None)
            b.client = source
        b.sequence = bu.sequence
        if p.timestamp is not None:
            b.timestamp = p.timestamp.value
        # Only RFC 5213 MAGs resend a PBU unchanged; hashing costs.
        b.last = hash(bu) if p.profile is Profile.RFC5213 else None
        if p.att is not None:
            b.att = p.att.value
        if p.llId is not None:
            b.llId = p.llId.identifier
        if p.lla is not None and b.lla is None and p.lla.address != mh._UNSPECIFIED:
            b.lla = p.lla.address

    def _create(self, p, b, ipv4, now, fresh=()):
        """
        Register new session C{b}: its homes are checked, those in C{fresh}
        just allocated from a pool, the others not taken yet.
        """
        taken = list(fresh)
        try:
            for home in b.homes:
                if home in fresh:
                    continue
                if not self._reserve(home):
                    # Free by the checks above, so only a pool slot held by
                    # other means (a restored or static address) lands here.
                    raise _Refusal(Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX,
                                   "{home} is not free", home=home)
                taken.append(home)
            if ipv4 is not None:
                b.ipv4 = self._takeIpv4(ipv4)
        except _Refusal:
            for home in taken:
                self._release(home)
            raise
        b.key = self._newKey()
        self.counters["created"] += 1
        self._accepted(p, b, now)
        lifetime = self._grant(p.bu)
        b.lifetime = lifetime * mh.LIFETIME_UNIT
        effects = self.step(b, Event.REGISTER)
        self._schedule(b, now)
        effects.append(_persist(b))
        self.counters["new"] += 1
        if debugging(self._log):
            self._log.debug("new binding {homes} -> {pcoa} for MN {mnId} ({profile})",
                            homes=_homes(b), pcoa=b.pcoa, mnId=_show(b.mnId),
                            profile=b.profile.value)
        return effects + self._accept(p, b, lifetime)

    def _update(self, p, b, pcoa, ipv4, now):
        """A registration for existing session C{b}: refresh, or move to C{pcoa}."""
        newV4 = None
        if ipv4 is not None and b.ipv4 is None:
            newV4 = self._takeIpv4(ipv4)
        bu = p.bu
        lifetime = min(bu.lifetime, self.maxLifetime // mh.LIFETIME_UNIT)
        # pCoAs are interned: the same MAG is usually the same object.
        if pcoa is b.pcoa or pcoa == b.pcoa:
            effects = self.step(b, Event.REFRESH)
        else:
            if debugging(self._log):
                self._log.debug("binding for {homes} moves {old} -> {new}", homes=_homes(b),
                                old=b.pcoa, new=pcoa)
            effects = self.step(b, Event.MOVE, pcoa)
        if newV4 is not None:
            b.ipv4 = newV4
            self._byIpv4[int(newV4.ip)] = b
            effects.append(RouteAdd(newV4.ip, b.pcoa))
        if p.source is b.client and p.profile is Profile.NETLMM:
            b.sequence = bu.sequence
        else:
            self._accepted(p, b, now)
        b.lifetime = seconds = lifetime * mh.LIFETIME_UNIT
        b.expiry = expiry = now + seconds
        self._expiries.push(seconds, expiry, b.key)
        effects.append(_persist(b))
        effects.extend(self._accept(p, b, lifetime))
        return effects

    def _deregister(self, p, b, now, event):
        effects = self.step(b, event)
        if event is not Event.STALE_DEREGISTER:
            self._accepted(p, b, now)
        if event is Event.DEREGISTER:
            b.lifetime = 0
            b.expiry = now + self.minDelayBeforeBceDelete
            self._expiries.push(self.minDelayBeforeBceDelete, b.expiry, b.key)
        if event is not Event.STALE_DEREGISTER:
            effects.append(_persist(b))
        if event is not Event.STALE_DEREGISTER:
            self.counters["deregistered"] += 1
            if debugging(self._log):
                self._log.debug("binding for {homes} deregistered", homes=_homes(b))
        return effects + self._accept(p, b, 0)

    def _grant(self, bu):
        return min(bu.lifetime, self.maxLifetime // mh.LIFETIME_UNIT)

    # ------------------------------------------------------------ bookkeeping

    def _newKey(self):
        key = self._nextKey
        self._nextKey += 1
        return key

    def _index(self, b):
        self.bindings[b.key] = b
        for home in b.homes:
            self._byHome[_homeKey(home)] = b
            if type(home) is IPv6Network:
                self._prefixLengths.add(home.prefixlen)
        if b.ipv4 is not None:
            self._byIpv4[int(b.ipv4.ip)] = b
        # A mobile's one session itself, a list only when it has several
        # (a list per mobile cost about 120 bytes).
        sessions = self._byMnId.get(b.mnId)
        if sessions is None:
            self._byMnId[b.mnId] = b
        elif type(sessions) is list:
            sessions.append(b)
        else:
            self._byMnId[b.mnId] = [sessions, b]

    def _unindex(self, b):
        del self.bindings[b.key]
        for home in b.homes:
            if self._byHome.get(_homeKey(home)) is b:
                del self._byHome[_homeKey(home)]
            self._release(home)
        if b.ipv4 is not None:
            if self._byIpv4.get(int(b.ipv4.ip)) is b:
                del self._byIpv4[int(b.ipv4.ip)]
            if self.ipv4Pool is not None and b.ipv4.ip in self.ipv4Pool:
                self.ipv4Pool.release(b.ipv4.ip)
        sessions = self._byMnId.get(b.mnId)
        if sessions is b:
            del self._byMnId[b.mnId]
        elif type(sessions) is list and b in sessions:
            sessions.remove(b)
            if len(sessions) == 1:
                self._byMnId[b.mnId] = sessions[0]

    def _poolOf(self, home):
        if type(home) is IPv6Address:
            pool = self.pool
            return pool if pool is not None and home in pool else None
        pool = self.prefixPool
        return pool if pool is not None and home in pool else None

    def _reserve(self, home):
        """Take C{home} in its pool, if it is in one; False when already taken."""
        pool = self._poolOf(home)
        return True if pool is None else pool.reserve(home)

    def _release(self, home):
        pool = self._poolOf(home)
        if pool is not None:
            pool.release(home)

    def _intern(self, address):
        # Many bindings share a few MAG addresses: keep one object per MAG.
        return self._pcoas.setdefault(int(address), address)

    def _schedule(self, b, now):
        b.expiry = now + b.lifetime
        self._expiries.push(b.lifetime, b.expiry, b.key)

    def _say(self, fmt, **kw):
        if self._log is not None:
            self._log.info(fmt, **kw)


#: Fields every refusal's log line has already (see L{LmaCore._refuse}).
_RESERVED = frozenset(("peer", "reason", "seq", "status"))

#: Marks "allocate an IPv4 address from the pool" between checks and commit.
_NEW_V4 = object()
_ZERO4 = IPv4Address("0.0.0.0")

#: BA statuses whose PBA carries an IPv4 Home Address Reply when IPv4 was asked.
_V4_STATUSES = frozenset((
    Status.NOT_AUTHORIZED_FOR_IPV4_MOBILITY_SERVICE,
    Status.NOT_AUTHORIZED_FOR_IPV4_HOME_ADDRESS,
    Status.MULTIPLE_IPV4_HOME_ADDRESS_ASSIGNMENT_NOT_SUPPORTED,
))


def _record(b):
    """
    The one record a session is kept as (see L{LmaCore.restore}); addresses,
    prefixes and the IPv4 interface stay ipaddress objects, which the store
    writes as their text (and the readers take either). "phoa" keeps
    records readable by earlier releases.
    """
    return {
        "phoa": b.phoa, "homes": list(b.homes), "ipv4": b.ipv4,
        "mn": b.mnId.hex(), "pcoa": b.pcoa, "sequence": b.sequence,
        "lifetime": b.lifetime, "expiry": b.expiry, "client": b.client,
        "profile": _TEXT[b.profile], "state": _TEXT[b.state],
        "timestamp": b.timestamp, "att": b.att,
        "llid": None if b.llId is None else b.llId.hex(), "lla": b.lla,
    }


def _storeKey(b):
    """
    What a session is kept under, the same for its whole life: the MN
    identifier (one session per mobile in the netlmm dialect), with the
    first home or the IPv4 address for an RFC 5213 one (multihoming).
    """
    if b.profile is Profile.NETLMM:
        return b.mnId
    first = b.homes[0] if b.homes else b.ipv4.ip
    return b.mnId + b" " + str(first).encode()


def _persist(b):
    if b.state is _ABSENT:
        return tuple.__new__(Persist, (_storeKey(b), None))
    return tuple.__new__(Persist, (_storeKey(b), _record(b)))


def _readHomes(value):
    if not isinstance(value, list):
        raise TypeError(f"{value!r} is not a list of homes")
    homes = []
    for h in value:
        if type(h) in (IPv6Address, IPv6Network):
            homes.append(_home(IPv6Network(h)) if type(h) is IPv6Network else h)
            continue
        try:
            # A pHoA as the stores write it: read without a network object.
            homes.append(read.address(h) if isinstance(h, str) and "/" not in h
                         else _home(IPv6Network(h)))
        except (TypeError, ValueError):
            raise ValueError(f"{h!r} is not an IPv6 address or prefix") from None
    return tuple(homes)


def _readChoice(kind):
    def reader(value):
        return kind(value)
    return reader


def _readInt(maximum):
    def reader(value):
        if type(value) is not int or not 0 <= value <= maximum:
            raise ValueError(f"{value!r} is not an integer 0..{maximum}")
        return value
    return reader


def _readIpv4(value):
    if type(value) is IPv4Interface:
        return value
    try:
        return IPv4Interface(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not an IPv4 address/length") from None


def _readHex(value):
    if not isinstance(value, str) or not value:
        raise TypeError(f"{value!r} is not hex octets")
    return bytes.fromhex(value)


#: The text of the enums a record holds (a dict: Enum.value is slow).
_TEXT = {member: member.value for kind in (Profile, BindingState) for member in kind}

#: The fields a record may lack (records of earlier releases), and their readers.
_OPTIONAL = {
    "profile": _readChoice(Profile), "state": _readChoice(BindingState),
    "ipv4": _readIpv4, "timestamp": _readInt((1 << 64) - 1), "att": _readInt(255),
    "llid": _readHex, "lla": read.address,
}


def _network(hnp):
    """The IPv6Network an HNP option names, or None when host bits are set."""
    try:
        return IPv6Network((hnp.prefix, hnp.prefixLength))
    except ValueError:
        return None


def _home(network):
    """A /128 home as the address itself (the netlmm pHoA form)."""
    return network.network_address if network.prefixlen == 128 else network


def _hnp(home):
    """The Home Network Prefix option naming C{home}."""
    if type(home) is IPv6Address:
        return tuple.__new__(mh.HomeNetworkPrefix, (home, 128))
    return tuple.__new__(mh.HomeNetworkPrefix, (home.network_address, home.prefixlen))


def _missing(p, cls, name):
    """The reason (format and fields) for a missing or malformed option."""
    bad = p.malformed(cls)
    if bad is None:
        return (f"no {name} option",)
    return (f"malformed {name} option: {bad.reason}",)


def _serves(patterns, mnId):
    text = mnId.decode("utf-8", "replace")
    return any(fnmatch.fnmatchcase(text, pattern) for pattern in patterns)


def _homes(b):
    if b is None:
        return "-"
    parts = [str(h) for h in b.homes]
    if b.ipv4 is not None:
        parts.append(str(b.ipv4.ip))
    return ",".join(parts) or "-"


def _show(mnId):
    # Safe in a log line: control characters and bad UTF-8 come out as hex.
    return showMnId(mnId)
