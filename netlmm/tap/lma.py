"""twistd netlmm-lma: the Local Mobility Anchor."""

from ipaddress import IPv4Address, IPv4Network, IPv6Network

from netlmm.config import ConfigError
from netlmm.core.lma import AddressPool, LmaCore, Ordering, PeerPolicy, PrefixPool, Profile
from netlmm.registry import dataplanes
from netlmm.tap.common import RoleOptions, sub


class Options(RoleOptions):
    synopsis = "--config lma.toml"
    longdesc = """Run the Local Mobility Anchor: answer Proxy Binding Updates from the
PMIP clients (netlmm dialect) and from standard RFC 5213 MAGs, and tunnel each
mobile's traffic (pHoAs, per-mobile prefixes, IPv4 home addresses) to its
current MAG."""
    configHelp = """
The [lma] table of the config file:
  listen          '[address]:port' for Mobility Headers (default '[::1]:5436')
  transport       'udp' (MH over UDP) or 'raw' (IPv6 protocol 135, root; port 0)
  home_prefix     the LMD's prefix; netlmm pHoAs outside it are refused (required)
  max_lifetime    longest binding lifetime granted, seconds, 4..262140 (3600)
  allowed_clients PMIP client and MAG addresses/prefixes allowed to send PBUs
                  (required; the [[lma.peers]] addresses are allowed too)
  mobiles         MN identifiers served, as patterns ('*@example.net'); an
                  RFC 5213 PBU for another gets 153. Unset: every mobile
  relocation      which PMIP client may take over a netlmm binding another
                  client holds (draft E.1, doc/protocol.md 2.4):
                  'authorized' (one whose PBU an SA for that very mobile
                  authenticated; with [lma.security.radius]: the key the AAA
                  server gave that client), 'any' (any allowed client:
                  trusted networks only) or 'never' ('authorized')
  state_file      the database (SQLite) that keeps the binding cache across
                  restarts: every binding is written before its PBAck leaves;
                  relative to this file; a JSON state file of earlier versions
                  there is converted; unset: bindings are lost on a restart
  [lma.pool]      first, last: addresses for LMA-assigned pHoAs (Appendix A);
                  leave the table out to refuse assignment requests
  [lma.prefixes]  per-mobile prefixes (draft E.3, RFC 5213 home network
                  prefixes): pool = an IPv6 prefix such as '2001:db8:100::/48',
                  length = the prefix each mobile gets (64); leave the table
                  out to refuse prefix requests
  [lma.ipv4]      IPv4 home addresses (RFC 5844): pool = an IPv4 network such
                  as '192.0.2.0/24' (its hosts are handed out, its length
                  given with each), router = the mobiles' default router (the
                  pool's first host, never handed out), dhcp = 'server' |
                  'relay' | 'none' (what the MAGs are told to be for DHCPv4,
                  'server'); leave the table out to refuse IPv4 (170)
  [lma.rfc5213]   for standard MAGs (RFC 5213 section 9 defaults):
                  ordering = 'timestamp' | 'sequence' ('timestamp', RFC 5213
                  5.5), timestamp_window = seconds a Timestamp may be off
                  (0.3), min_delay_before_bce_delete = seconds a deregistered
                  session is kept for a handoff (10)
  [[lma.peers]]   one table per peer (or prefix of peers) with its own rules:
                  address = an IPv6 address or prefix (required),
                  profile = 'auto' | 'netlmm' | 'rfc5213' ('auto': told from
                  each PBU, see doc/protocol.md 1.3), ordering = as above,
                  security = 'rfc4285' | 'none' (as [lma.security] says;
                  standard MAGs sign nothing: they use IPsec, doc/security.md),
                  heartbeat = false sends it no RFC 5847 heartbeats (true),
                  revocation = false: a binding of it that `netlmm ctl
                  deregister` ends is not revoked at it with an RFC 5846
                  Binding Revocation Indication (true)
  [lma.revocation] RFC 5846 Binding Revocation Indications (sent when `netlmm
                  ctl deregister` ends a binding): min_delay_bris = seconds
                  before one is sent again without an answer (1),
                  max_retries = times it is sent again, then given up (1)
  [lma.heartbeat] RFC 5847 heartbeats to the PMIP clients and MAGs holding
                  bindings: interval = seconds between Requests (60; 0 sends
                  none, Requests from peers are answered anyway), missing =
                  Requests unanswered in a row before a peer is unreachable
                  (3); a client whose Restart Counter changed lost its state:
                  the bindings it registered before are released
  [lma.dataplane] kind = 'seg6' | 'ip6tnl' | 'userspace' | 'memory'; the
                  kernel ones take address (the LMA's tunnel address),
                  interface (core side), tables and priorities;
                  see doc/deployment.md
  [lma.security]  message authentication of PBUs/PBAcks (RFC 4285):
                  mode = 'none' or 'rfc4285' ('none')
                  keys = key file of [[sa]] entries (spi, algorithm, key, mn or
                         client), mode 0600; relative to the config file
                  replay_window = seconds a timestamp may be off (7)
  [lma.security.radius] keys from AAA (Appendix C, RFC 2865, 3GPP2 MN-HA
                  attributes): servers = ['[addr]:port', ...] (failover in
                  order), secret or secret_file (0600), timeout (1.0),
                  retries (3), key_lifetime (3600), algorithm, nas_identifier;
                  each request names the PBU's PMIP client in NAS-IPv6-Address
See etc/netlmm/lma.toml for a commented example."""
    section = "lma"
    keepsState = True
    hasControl = True

    def build(self, table):
        listen = table.endpoint("listen", "[::1]:5436")
        transport = table.string("transport", "udp", choices=("udp", "raw"))
        if transport == "raw" and listen[1] != 0:
            raise ConfigError("lma.listen: with transport 'raw' the port must be 0 "
                              "(raw Mobility Header sockets have no ports)")
        prefix = table.network("home_prefix", required=True)
        maxLifetime = table.number("max_lifetime", 3600, minimum=4, maximum=262140,
                                   integer=True)
        clients = table.networks("allowed_clients", required=True)
        mobiles = _patterns(table, "mobiles")
        from netlmm.service.lma import RELOCATION
        relocation = table.string("relocation", "authorized", choices=RELOCATION)
        from netlmm.store import stateFileFromTable
        stateFile = stateFileFromTable(table, getattr(self, "configDir", None))
        poolTable = table.table("pool")
        pool = None
        if poolTable.data:
            first = poolTable.address("first", required=True)
            last = poolTable.address("last", required=True)
            poolTable.finish()
            for key, address in (("first", first), ("last", last)):
                if address not in prefix:
                    raise ConfigError(f"lma.pool.{key}: {address} is outside "
                                      f"home_prefix {prefix}")
            if int(last) < int(first):
                raise ConfigError(f"lma.pool: last {last} comes before first {first}")
            pool = AddressPool(first, last)
        prefixPool = _prefixPool(table.table("prefixes"), prefix)
        ipv4 = _ipv4(table.table("ipv4"))
        rfc = table.table("rfc5213")
        ordering = Ordering(rfc.string("ordering", "timestamp",
                                       choices=("timestamp", "sequence")))
        window = rfc.number("timestamp_window", 0.3, minimum=0.001, maximum=60)
        delay = rfc.number("min_delay_before_bce_delete", 10, minimum=0, maximum=3600)
        rfc.finish()
        from netlmm.service.heartbeat import HeartbeatConfig
        heartbeat = HeartbeatConfig.fromTable(table.table("heartbeat"))
        revocations = _revocations(table.table("revocation"))
        from netlmm.security.config import securityConfig
        security = securityConfig(table, self["config"])
        policy = PeerPolicy(ordering=ordering)
        peers = [_peer(t, ordering, security is not None) for t in table.tables("peers")]
        from twisted.internet import reactor
        dataplane = sub(table, "dataplane", "kind", dataplanes, reactor=reactor,
                        role="lma")
        return dict(listen=listen, transport=transport, dataplane=dataplane,
                    security=security, stateFile=stateFile, relocation=relocation,
                    heartbeat=heartbeat,
                    core=dict(homePrefix=prefix, authorizedClients=clients,
                              maxLifetime=maxLifetime, pool=pool, prefixPool=prefixPool,
                              peers=peers, policy=policy, mobiles=mobiles,
                              minDelayBeforeBceDelete=delay, timestampWindow=window,
                              revocations=revocations, **ipv4))


def _revocations(t):
    """The [lma.revocation] table: the L{Revocations} of RFC 5846 (its defaults)."""
    from netlmm.core.revocation import BRI_MAX_RETRIES_NUMBER, MIN_DELAY_BRIS, Revocations
    delay = t.number("min_delay_bris", MIN_DELAY_BRIS, minimum=0.01, maximum=60)
    retries = t.number("max_retries", BRI_MAX_RETRIES_NUMBER, minimum=0, maximum=10,
                       integer=True)
    t.finish()
    return Revocations(delay, retries)


def _patterns(table, key):
    value = table.strings(key)
    if not all(value):
        raise ConfigError(f"{table.where}.{key}: expected a list of MN identifier "
                          f"patterns such as ['*@example.net'], got {value!r}")
    return value


def _prefixPool(t, homePrefix):
    """The [lma.prefixes] table: a PrefixPool, or None without the table."""
    if not t.data:
        return None
    network = t.network("pool", required=True)
    length = t.number("length", 64, integer=True, minimum=1, maximum=128)
    t.finish()
    if length < network.prefixlen:
        raise ConfigError(f"{t.where}.length: {length} is shorter than the pool "
                          f"{network}; expected {network.prefixlen}..128")
    if length - network.prefixlen > 32:
        raise ConfigError(f"{t.where}.length: {network} holds 2**"
                          f"{length - network.prefixlen} /{length}s; at most 2**32")
    if network.overlaps(homePrefix):
        raise ConfigError(f"{t.where}.pool: {network} overlaps home_prefix {homePrefix}, "
                          "whose pHoAs are routed one by one")
    return PrefixPool(network, length)


def _ipv4(t):
    """The [lma.ipv4] table: the core's IPv4 arguments ({} without the table)."""
    if not t.data:
        return {}
    text = t.string("pool", required=True)
    try:
        network = IPv4Network(text, strict=True)
    except ValueError as e:
        raise ConfigError(f"{t.where}.pool: expected an IPv4 network such as "
                          f"'192.0.2.0/24', got {text!r} ({e})") from None
    if network.prefixlen > 30:
        raise ConfigError(f"{t.where}.pool: {network} has no room for a router and "
                          "mobiles; expected /30 or shorter")
    hosts = (network.network_address + 1, network.broadcast_address - 1)
    text = t.string("router", str(hosts[0]))
    try:
        router = IPv4Address(text)
    except ValueError:
        raise ConfigError(f"{t.where}.router: expected an IPv4 address, got {text!r}") from None
    if router not in network:
        raise ConfigError(f"{t.where}.router: {router} is outside the pool {network}")
    dhcp = t.string("dhcp", "server", choices=("server", "relay", "none"))
    t.finish()
    return dict(ipv4Pool=AddressPool(hosts[0], hosts[1], exclude=[router]),
                ipv4PrefixLength=network.prefixlen, ipv4Router=router,
                ipv4DhcpServer={"server": True, "relay": False, "none": None}[dhcp])


def _peer(t, ordering, secured):
    """One [[lma.peers]] table: (network, PeerPolicy)."""
    network = _peerNetwork(t, t.string("address", required=True))
    profile = t.string("profile", "auto", choices=("auto", "netlmm", "rfc5213"))
    order = t.string("ordering", ordering.value, choices=("timestamp", "sequence"))
    security = t.string("security", "rfc4285" if secured else "none",
                        choices=("rfc4285", "none"))
    heartbeat = t.boolean("heartbeat", True)
    revocation = t.boolean("revocation", True)
    t.finish()
    if security == "rfc4285" and not secured:
        raise ConfigError(f"{t.where}.security: 'rfc4285' needs keys: set "
                          "[lma.security] mode = 'rfc4285'")
    return network, PeerPolicy(None if profile == "auto" else Profile(profile),
                               Ordering(order), security == "rfc4285", heartbeat,
                               revocation)


def _peerNetwork(t, address):
    try:
        return IPv6Network(address, strict=True)
    except ValueError as e:
        raise ConfigError(f"{t.where}.address: expected an IPv6 address or prefix such "
                          f"as '2001:db8:f::2' or '2001:db8:f::/64', got {address!r} ({e})"
                          ) from None


def makeService(options):
    """The LMA service described by the validated options."""
    from twisted.internet import reactor
    from netlmm.daemon import roleLogger
    from netlmm.service.lma import LmaService
    from netlmm.tap.common import daemon
    b = options.built
    core = LmaCore(log=roleLogger("netlmm.lma"), **b["core"])
    guard = None
    if b["security"] is not None:
        from netlmm.security.guard import LmaGuard
        from netlmm.security.config import buildKeys
        guard = LmaGuard(buildKeys(b["security"], reactor), b["security"]["window"])
    service = LmaService(reactor, core, b["listen"], b["transport"], b["dataplane"],
                         security=guard, relocation=b.get("relocation", "authorized"),
                         heartbeat=b.get("heartbeat"))
    from netlmm.redisstore import makeStore
    redis = getattr(options, "stateBackend", None)
    service.store = makeStore(redis, b["stateFile"], "lma-bindings", reactor)
    if redis is not None and redis["failover"] is not None:
        # One of an active/standby pair: the state is loaded when this
        # daemon takes over; now only whether Redis answers.
        from netlmm.failover import FailoverService
        from netlmm.store import StateError
        try:
            service.store.ping()
        except StateError as e:
            raise SystemExit(f"netlmm-lma cannot start: {e}") from None
        f = redis["failover"]
        return daemon(options, [FailoverService(
            reactor, service, service.store, f["lease"], f["name"], f["address"],
            f["interface"])])
    if service.store is not None:
        from netlmm.store import loadOrExit
        loadOrExit(service, "lma")
    return daemon(options, [service])
