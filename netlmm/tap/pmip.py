"""twistd netlmm-pmip: the PMIP client."""

from netlmm.core.pmip import PmipCore
from netlmm.tap.common import RoleOptions


class Options(RoleOptions):
    synopsis = "--config pmip.toml"
    longdesc = """Run a PMIP client: take Triggers from MAGs, send Proxy Binding Updates
to the LMA on the mobiles' behalf, and answer the MAGs with Notifications."""
    configHelp = """
The [pmip] table of the config file:
  listen        '[address]:port' where MAGs connect over TCP ('[::1]:5437')
  lma           '[address]:port' of the LMA's Mobility Header socket (required,
                unless [[pmip.lmas]] lists several LMAs)
  [[pmip.lmas]] several LMAs at once (draft 4.4), one table each, instead of lma:
    name        the LMA's name, unique (logs, state records, [pmip.anchor])
    address     '[address]:port' of its Mobility Header socket; addresses
                are unique
    tunnel      its data-plane address, where MAGs tunnel the mobiles it
                anchors (sent to the MAG in the Notification) (address's)
    prefixes    the home networks it anchors; a pHoA or prefix inside one
                goes to this LMA; no prefix may overlap another LMA's ([])
    profile, ordering, access_technology  as below, for this LMA ([pmip]'s)
    security    'rfc4285' (sign with [pmip.security]'s keys) or 'none'
                ('rfc4285' when [pmip.security] mode is, else 'none'), or a
                table [pmip.lmas.security] of keys for this LMA alone (an LMA
                of another operator's domain): mode, keys, [...radius] as in
                [pmip.security]; its PBAcks are checked with these keys only
    heartbeat   send it RFC 5847 heartbeats (true); false for an LMA that
                does not implement them
  [pmip.anchor] which LMA anchors a mobile the client does not know yet (a
                known mobile stays with its LMA):
    policy      'static' (the prefix rule, then [pmip.anchor.mobiles], then
                default), 'hash' (the prefix rule, then the map, then a
                stable SHA-256 hash of the MN identifier) or 'least-loaded'
                (the prefix rule, the map, then the LMA with the fewest of
                this client's mobiles) or 'aaa' (the prefix rule, the map,
                then the LMA the AAA server names in the Access-Accept that
                brings the mobile's key: RFC 6572 PMIP6-Home-LMA-IPv6-Address,
                matched against address and tunnel; needs
                [pmip.security.radius]; else default) ('static');
                `twistd netlmm-pmip --list-anchor-policies` lists plugins
    default     with 'static' and 'aaa': the LMA of mobiles nothing else
                places (the first listed)
    [pmip.anchor.mobiles]  "MN-ID" = "LMA name"
    [pmip.anchor.mags]     "MAG address or prefix" = "LMA name": the LMA a
                mobile at that MAG is anchored at (after the prefix rule and
                the map); a mobile with a per-MN prefix that hands over to
                such a MAG keeps its old prefix and is moved there (draft 4.4)
  [pmip.heartbeat]  RFC 5847 heartbeats to the LMA(s): interval = seconds
                between Requests (60; 0 sends none, Requests from the LMA are
                answered anyway), missing = Requests unanswered in a row
                before the LMA is unreachable (3); an LMA whose Restart
                Counter changed lost its bindings: they are registered again
  mh_bind       '[address]:port' of this client's MH socket ('[::1]:0'); in
                the rfc5213 profile a PMIP client co-located with its MAG
                binds the MAG's address: PBUs from it carry no Alternate CoA
  transport     'udp' or 'raw' (IPv6 protocol 135, root; ports 0) ('udp')
  lifetime      binding lifetime asked for, seconds, 4..262140 (3600)
  profile       the dialect spoken to the LMA (doc/protocol.md 2): 'netlmm'
                (the draft's: H flag, Alternate CoA, MN-ID on attachment;
                netlmm's own LMA) or 'rfc5213' (any standard RFC 5213 LMA:
                A|P, MN-ID, HI, ATT in every PBU; per-MN prefixes only)
                ('netlmm')
  ordering      how the LMA orders this client's PBUs (RFC 5213 5.5), with
                profile 'rfc5213': 'timestamp' (RFC 5213's default: a
                Timestamp option) or 'sequence' ('timestamp'); the netlmm
                dialect always uses sequence numbers
  access_technology  RFC 5213 Access Technology Type sent when the MAG's
                Trigger names none, 1..255 (3, IEEE 802.3)
  max_clock_offset  how far (seconds) an authenticated status 144 (RFC 4285)
                or a 156/157 (RFC 5213 timestamps) may set this client's
                clock from its own, either way; beyond it the answer is not
                followed and the PBU fails (60)
  allowed_mags  MAG addresses/prefixes allowed to connect (required)
  detach_delay  seconds between a Detach and the deregistration, so a mobile
                that shows up at another MAG keeps its binding (1.5)
  state_file    the database (SQLite) that keeps the bound mobiles across
                restarts: every binding is written before its Notification
                leaves; relative to this file; a JSON state file of earlier
                versions there is converted; unset: a restarted client forgets
                its mobiles (no refreshes, no deregistration on Detach)
  peers         the other PMIP clients of the domain, ['[addr]:port', ...] of
                their peer_listen: a pHoA the mobile configured itself
                (SLAAC) is checked with all of them before the PBU
                (Appendix B; conflict -> 'address-conflict' to the MAG)
  peer_listen   '[address]:port' where peers' conflict checks are answered,
                plain TCP ('[listen address]:5438' when peers are set)
  peer_timeout  seconds to wait for the peers; a silent peer does not block
                the mobile, the PBU goes and the LMA's DAD applies (1.0)
  allowed_peers networks peer connections may come from (the peers' addresses)
  [pmip.limits] what the MAG and peer listeners take; refused connections are
                closed before any byte is read or TLS handshake is made:
    max_connections           connections at once (256)
    max_connections_per_peer  connections from one address (8)
    handshake_timeout         seconds for a TLS handshake (10)
    idle_timeout              seconds without a message after which a
                connection is closed if it stalled in the middle of one, or
                if its peer has a newer connection up (60)
  [pmip.retransmit] initial (1.0) and max (32.0): PBU retransmission timeout,
                doubled from initial up to max, then the PBU is given up
  [pmip.security] message authentication of PBUs/PBAcks (RFC 4285):
                mode = 'none' or 'rfc4285' ('none')
                keys = key file of [[sa]] entries (spi, algorithm, key, mn or
                       client), mode 0600; relative to the config file
  [pmip.security.radius] keys from AAA (Appendix C, RFC 2865, 3GPP2 MN-HA
                attributes): servers = ['[addr]:port', ...] (failover in
                order), secret or secret_file (0600), timeout (1.0),
                retries (3), key_lifetime (3600), algorithm, nas_identifier,
                nas_address (this client's address, sent as NAS-IPv6-Address so
                the server can authorize each client for each mobile, E.1)
  [pmip.tls]    the MAG channel (draft 4.9.3/4.9.4), required: mutually
                authenticated TLS unless transport says otherwise.
                Paths are relative to this file.
    transport   'tls' (TLS 1.2+ over TCP, the default), 'sctp+tls' (TLS over
                SCTP), or, unauthenticated (a warning at start), 'tcp' or 'sctp'
    ca          the domain CA certificate (PEM): only MAGs it issued connect
    certificate this PMIP client's certificate (role pmip) from that CA
    key         its private key (PEM, unencrypted, not readable by others)
                Create them with `netlmm pki init` / `netlmm pki issue --role pmip`.
See etc/netlmm/pmip.toml for a commented example."""
    section = "pmip"
    keepsState = True
    hasControl = True

    def opt_list_anchor_policies(self):
        """List the installed anchor policies (plugins) and exit."""
        from netlmm.registry import anchors
        from netlmm.tap.common import listPlugins
        listPlugins(anchors)

    def build(self, table):
        from netlmm.config import ConfigError
        listen = table.endpoint("listen", "[::1]:5437")
        several = "lmas" in table.data
        if several and "lma" in table.data:
            raise ConfigError("pmip.lma: give one LMA as lma = '[address]:port' or "
                              "several as [[pmip.lmas]] tables, not both")
        lma = None if several else table.endpoint("lma", required=True)
        mhBind = table.endpoint("mh_bind", "[::1]:0")
        transport = table.string("transport", "udp", choices=("udp", "raw"))
        if transport == "raw" and (mhBind[1] or (lma is not None and lma[1])):
            raise ConfigError("pmip.lma / pmip.mh_bind: with transport 'raw' the "
                              "ports must be 0")
        lifetime = table.number("lifetime", 3600, minimum=4, maximum=262140,
                                integer=True)
        profile = _profile(table, mhBind[0])
        maxOffset = table.number("max_clock_offset", 60, minimum=0.1, maximum=86400)
        mags = table.networks("allowed_mags", required=True)
        detachDelay = table.number("detach_delay", 1.5, minimum=0, maximum=3600)
        from netlmm.security.config import securityConfig
        security = securityConfig(table, self["config"], client=True)
        lmas = anchor = None
        anchorMags = []
        if several:
            lmas = _lmas(table, profile, transport, security, mhBind[0], self["config"])
            anchor, anchorMags = _anchorPolicy(table, lmas)
            if getattr(anchor, "needsAaa", False) and (security is None
                                                       or security.get("radius") is None):
                raise ConfigError(f"pmip.anchor.policy: {anchor.name!r} takes the LMA from "
                                  "the AAA server's answer; it needs keys from RADIUS "
                                  "([pmip.security.radius])")
            lma = (lmas[0]["anchor"].address, lmas[0]["anchor"].port)
        elif "anchor" in table.data:
            raise ConfigError("pmip.anchor: an anchor policy chooses among several "
                              "LMAs ([[pmip.lmas]]); with one lma = ... there is none")
        from netlmm.service.heartbeat import HeartbeatConfig
        heartbeat = HeartbeatConfig.fromTable(table.table("heartbeat"))
        from netlmm.transport.channel import channelFromTable
        channel = channelFromTable(table, "pmip", getattr(self, "configDir", None))
        from netlmm.store import stateFileFromTable
        stateFile = stateFileFromTable(table, getattr(self, "configDir", None))
        peers = table.endpoints("peers")
        peerListen = table.endpoint("peer_listen")
        if peerListen is None and peers:
            peerListen = (listen[0], 5438)
        peerTimeout = table.number("peer_timeout", 1.0, minimum=0.01, maximum=60)
        allowedPeers = table.networks("allowed_peers")
        limits = limitsFromTable(table)
        rt = table.table("retransmit")
        initial = rt.number("initial", 1.0, minimum=0.01, maximum=3600)
        maximum = rt.number("max", 32.0, minimum=0.01, maximum=3600)
        rt.finish()
        if maximum < initial:
            raise ConfigError(f"pmip.retransmit.max ({maximum}) is below "
                              f"pmip.retransmit.initial ({initial})")
        return dict(listen=listen, lma=lma, mhBind=mhBind, transport=transport,
                    allowedMags=mags, security=security, stateFile=stateFile, channel=channel,
                    peers=peers, peerListen=peerListen, allowedPeers=allowedPeers,
                    profile=profile, lmas=lmas, anchor=anchor, anchorMags=anchorMags,
                    limits=limits, heartbeat=heartbeat,
                    core=dict(lmaAddress=lma[0], lifetime=lifetime, peerTimeout=peerTimeout,
                              initialTimeout=initial, maxTimeout=maximum,
                              detachDelay=detachDelay, maxOffset=maxOffset))


def makeService(options):
    """The PMIP client service described by the validated options."""
    from netlmm.tap.common import daemon
    return daemon(options, [serviceFromBuilt(options.built,
                                             getattr(options, "stateBackend", None))])


def serviceFromBuilt(b, redis=None):
    """
    The PMIP client service for what L{Options.build} returned; its state in
    Redis when C{redis} (L{netlmm.redisstore.stateConfig}) is given.
    """
    from twisted.internet import reactor
    from netlmm.daemon import roleLogger
    from netlmm.service.pmip import PmipService
    guard = None
    if b["security"] is not None:
        guard = pmipGuard(b["security"], b["core"]["maxOffset"])
    from netlmm.service.pmip import peerKey
    peers = b.get("peers", ())
    lmaPorts = None
    if b.get("lmas"):
        core = anchoredCore(b, guard, [peerKey(p) for p in peers])
        lmaPorts = {a.address: a.port for a in core.anchors}
    else:
        core = PmipCore(log=roleLogger("netlmm.pmip"), security=guard,
                        peers=[peerKey(p) for p in peers], profile=profileFromBuilt(b),
                        **b["core"])
    service = PmipService(reactor, core, b["listen"], b["mhBind"], b["transport"],
                          b["lma"][1], b["allowedMags"], channel=b["channel"],
                          peers=peers, peerListen=b.get("peerListen"),
                          allowedPeers=b.get("allowedPeers"), lmaPorts=lmaPorts,
                          limits=b.get("limits"), heartbeat=b.get("heartbeat"),
                          heartbeatLmas=_heartbeatLmas(b))
    from netlmm.redisstore import makeStore
    service.store = makeStore(redis, b["stateFile"], "pmip-bindings", reactor)
    if service.store is not None:
        from netlmm.store import loadOrExit
        loadOrExit(service, "pmip")
    return service


def anchoredCore(b, guard, peers):
    """
    The L{netlmm.core.anchors.AnchoredCore} for the validated C{[[pmip.lmas]]}:
    one L{PmipCore} per LMA (its profile; C{guard} where it signs).
    """
    from netlmm.core.anchors import AnchoredCore
    from netlmm.daemon import roleLogger
    cores = []
    for lma in b["lmas"]:
        anchor = lma["anchor"]
        settings = dict(b["core"], lmaAddress=anchor.address)
        security = None
        if lma.get("security") is not None:
            security = pmipGuard(lma["security"], b["core"]["maxOffset"])
        elif lma["sign"]:
            security = guard
        core = PmipCore(log=roleLogger(f"netlmm.pmip.{anchor.name}"),
                        security=security, peers=peers,
                        profile=profileFromBuilt(lma), **settings)
        cores.append((anchor, core))
    policy = b["anchor"]
    if getattr(policy, "needsAaa", False):
        policy.lookup = guard.keys.homeLma
    return AnchoredCore(cores, policy, log=roleLogger("netlmm.pmip"),
                        mags=b.get("anchorMags", ()), security=guard)


def pmipGuard(security, maxOffset):
    """
    The L{netlmm.security.guard.PmipGuard} over validated keys C{security}
    ([pmip.security], or an LMA's own [pmip.lmas.security]).
    """
    from twisted.internet import reactor
    from netlmm.security.config import buildKeys
    from netlmm.security.guard import PmipGuard
    return PmipGuard(buildKeys(security, reactor), maxOffset)


def _profile(table, source, default=None):
    """
    The profile keys of C{table} ([pmip], or one [[pmip.lmas]] whose
    C{default} is what [pmip] says), validated.
    """
    from netlmm.config import ConfigError
    from netlmm.core import profiles
    default = default or dict(name=profiles.NETLMM, ordering=None, accessTechnology=3)
    profile = table.string("profile", default["name"],
                           choices=(profiles.NETLMM, profiles.RFC5213))
    # An LMA of another profile than [pmip]'s does not inherit its ordering.
    ordering = table.string("ordering",
                            default["ordering"] if profile == default["name"] else None,
                            choices=(profiles.TIMESTAMP, profiles.SEQUENCE))
    if profile == profiles.NETLMM and ordering == profiles.TIMESTAMP:
        raise ConfigError(f"{table.where}.ordering: the netlmm dialect orders PBUs by "
                          "sequence number; 'timestamp' needs profile = 'rfc5213'")
    accessTechnology = table.number("access_technology", default["accessTechnology"],
                                    minimum=1, maximum=255, integer=True)
    return dict(name=profile, ordering=ordering, accessTechnology=accessTechnology,
                source=source)


def _heartbeatLmas(b):
    """The LMAs heartbeats go to (None: the one LMA)."""
    if not b.get("lmas"):
        return None
    return [m["anchor"].address for m in b["lmas"] if m.get("heartbeat", True)]


def _lmas(table, default, transport, security, source, configPath=None):
    """
    The validated C{[[pmip.lmas]]}: name, MH endpoint, tunnel address, the
    prefixes each anchors, its profile (the [pmip] keys are the defaults),
    whether PBUs to it are signed and with which keys (L{_lmaSecurity}).
    """
    from netlmm.config import ConfigError
    from netlmm.core.anchors import Anchor, checkAnchors
    lmas = []
    tables = table.tables("lmas")
    if not tables:
        raise ConfigError("pmip.lmas: at least one [[pmip.lmas]] table is needed")
    for t in tables:
        name = t.string("name", required=True)
        if not name:
            raise ConfigError(f"{t.where}.name: an LMA name is not empty")
        address, port = t.endpoint("address", required=True)
        if transport == "raw" and port:
            raise ConfigError(f"{t.where}.address: with transport 'raw' the port must be 0")
        tunnel = t.address("tunnel")
        prefixes = t.networks("prefixes", [])
        profile = _profile(t, source, default)
        sign, own = _lmaSecurity(t, security, configPath)
        heartbeat = t.boolean("heartbeat", True)
        t.finish()
        lmas.append(dict(anchor=Anchor(name, address, port, tunnel, prefixes),
                         profile=profile, sign=sign, security=own, heartbeat=heartbeat))
    try:
        checkAnchors([m["anchor"] for m in lmas])
    except ValueError as e:
        raise ConfigError(f"pmip.lmas: {e}") from None
    return lmas


def _lmaSecurity(t, default, configPath):
    """
    How PBUs to the LMA of C{[[pmip.lmas]]} entry C{t} are signed:
    C{(sign, own)}. C{security = 'rfc4285'} or C{'none'} signs with the
    [pmip.security] keys or not at all; a C{[pmip.lmas.security]} table
    gives the LMA keys of its own (an LMA of another operator's domain
    shares none with the others), validated as [pmip.security] is: C{own}
    is then what L{netlmm.security.config.securityConfig} made of it (None
    for its mode 'none'), else None.
    """
    from netlmm.config import ConfigError
    if isinstance(t.data.get("security"), dict):
        from netlmm.security.config import securityConfig
        own = securityConfig(t, configPath, client=True)
        return own is not None, own
    sign = t.string("security", "none" if default is None else "rfc4285",
                    choices=("none", "rfc4285")) == "rfc4285"
    if sign and default is None:
        raise ConfigError(f"{t.where}.security: 'rfc4285' needs the keys of "
                          "[pmip.security] (mode = 'rfc4285') or a "
                          f"[{t.where}.security] table of its own")
    return sign, None


def _anchorPolicy(table, lmas):
    """The anchor policy plugin [pmip.anchor] names ('static' when absent)."""
    from netlmm.registry import anchors as policies
    t = table.table("anchor")
    name = t.string("policy", "static")
    anchors = [m["anchor"] for m in lmas]
    mags = _preferredLmas(t.table("mags"), anchors)
    policy = policies.create(name, t, f"{t.where}.policy", anchors=anchors)
    return policy, mags


def _preferredLmas(t, anchors):
    """[pmip.anchor.mags]: (MAG network, LMA name) pairs, validated."""
    from ipaddress import IPv6Network
    from netlmm.config import ConfigError
    names = [a.name for a in anchors]
    mags = []
    for key in list(t.data):
        name = t.string(key, choices=names)
        try:
            network = IPv6Network(key)
        except ValueError:
            raise ConfigError(f"{t.where}.{key}: expected a MAG's IPv6 address or prefix "
                              f"(the key), got {key!r}") from None
        mags.append((network, name))
    t.finish()
    return mags


def profileFromBuilt(b):
    """The L{netlmm.core.profiles} object the validated options (or one LMA's) name."""
    from netlmm.core import profiles
    p = b.get("profile") or {"name": profiles.NETLMM}
    if p["name"] == profiles.RFC5213:
        return profiles.Rfc5213Profile(p["ordering"] or profiles.TIMESTAMP,
                                       p["accessTechnology"], p["source"])
    return profiles.NetlmmDialect()


def limitsFromTable(table):
    """C{[pmip.limits]}: the listeners' bounds, as PmipService takes them."""
    from netlmm.service.pmip import PmipService
    d = PmipService.LIMITS
    t = table.table("limits")
    limits = dict(
        maxConnections=t.number("max_connections", d["maxConnections"], minimum=1,
                                maximum=65535, integer=True),
        maxPerPeer=t.number("max_connections_per_peer", d["maxPerPeer"], minimum=1,
                            maximum=65535, integer=True),
        handshakeTimeout=t.number("handshake_timeout", d["handshakeTimeout"],
                                  minimum=0.1, maximum=600),
        idleTimeout=t.number("idle_timeout", d["idleTimeout"], minimum=1, maximum=86400))
    t.finish()
    return limits
