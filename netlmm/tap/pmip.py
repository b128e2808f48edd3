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
  lma           '[address]:port' of the LMA's Mobility Header socket (required)
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
  [pmip.retransmit] initial (1.0) and max (32.0): PBU retransmission timeout,
                doubled from initial up to max, then the PBU is given up
  [pmip.security] message authentication of PBUs/PBAcks (RFC 4285):
                mode = 'none' or 'rfc4285' ('none')
                keys = key file of [[sa]] entries (spi, algorithm, key, mn or
                       client), mode 0600; relative to the config file
  [pmip.security.radius] keys from AAA (Appendix C, RFC 2865, 3GPP2 MN-HA
                attributes): servers = ['[addr]:port', ...] (failover in
                order), secret or secret_file (0600), timeout (1.0),
                retries (3), key_lifetime (3600), algorithm, nas_identifier
  [pmip.tls]    the MAG channel (draft 4.9.3/4.9.4); without this table: plain
                TCP, unauthenticated. Paths are relative to this file.
    transport   'tls' (TLS 1.2+ over TCP), 'sctp+tls' (TLS over SCTP), or,
                unauthenticated, 'tcp' or 'sctp' ('tls' when the table is there)
    ca          the domain CA certificate (PEM): only MAGs it issued connect
    certificate this PMIP client's certificate (role pmip) from that CA
    key         its private key (PEM, unencrypted, not readable by others)
                Create them with `netlmm pki init` / `netlmm pki issue --role pmip`.
See etc/netlmm/pmip.toml for a commented example."""
    section = "pmip"
    hasControl = True

    def build(self, table):
        from netlmm.config import ConfigError
        listen = table.endpoint("listen", "[::1]:5437")
        lma = table.endpoint("lma", required=True)
        mhBind = table.endpoint("mh_bind", "[::1]:0")
        transport = table.string("transport", "udp", choices=("udp", "raw"))
        if transport == "raw" and (mhBind[1] or lma[1]):
            raise ConfigError("pmip.lma / pmip.mh_bind: with transport 'raw' the "
                              "ports must be 0")
        lifetime = table.number("lifetime", 3600, minimum=4, maximum=262140,
                                integer=True)
        from netlmm.core import profiles
        profile = table.string("profile", profiles.NETLMM,
                               choices=(profiles.NETLMM, profiles.RFC5213))
        ordering = table.string("ordering", None,
                                choices=(profiles.TIMESTAMP, profiles.SEQUENCE))
        if profile == profiles.NETLMM and ordering == profiles.TIMESTAMP:
            raise ConfigError("pmip.ordering: the netlmm dialect orders PBUs by sequence "
                              "number; 'timestamp' needs profile = 'rfc5213'")
        accessTechnology = table.number("access_technology", 3, minimum=1, maximum=255,
                                        integer=True)
        maxOffset = table.number("max_clock_offset", 60, minimum=0.1, maximum=86400)
        mags = table.networks("allowed_mags", required=True)
        detachDelay = table.number("detach_delay", 1.5, minimum=0, maximum=3600)
        from netlmm.security.config import securityConfig
        security = securityConfig(table, self["config"], client=True)
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
                    profile=dict(name=profile, ordering=ordering or profiles.TIMESTAMP,
                                 accessTechnology=accessTechnology, source=mhBind[0]),
                    core=dict(lmaAddress=lma[0], lifetime=lifetime, peerTimeout=peerTimeout,
                              initialTimeout=initial, maxTimeout=maximum,
                              detachDelay=detachDelay, maxOffset=maxOffset))


def makeService(options):
    """The PMIP client service described by the validated options."""
    from netlmm.tap.common import withManagement
    return withManagement(serviceFromBuilt(options.built), options)


def serviceFromBuilt(b):
    """The PMIP client service for what L{Options.build} returned."""
    from twisted.internet import reactor
    from twisted.logger import Logger
    from netlmm.service.pmip import PmipService
    guard = None
    if b["security"] is not None:
        from netlmm.security.guard import PmipGuard
        from netlmm.security.config import buildKeys
        guard = PmipGuard(buildKeys(b["security"], reactor), b["core"]["maxOffset"])
    from netlmm.service.pmip import peerKey
    peers = b.get("peers", ())
    core = PmipCore(log=Logger(namespace="netlmm.pmip"), security=guard,
                    peers=[peerKey(p) for p in peers], profile=profileFromBuilt(b),
                    **b["core"])
    service = PmipService(reactor, core, b["listen"], b["mhBind"], b["transport"],
                          b["lma"][1], b["allowedMags"], channel=b["channel"],
                          peers=peers, peerListen=b.get("peerListen"),
                          allowedPeers=b.get("allowedPeers"))
    if b["stateFile"]:
        from netlmm.store import SqliteStore, loadOrExit
        service.store = SqliteStore(b["stateFile"], "pmip-bindings", reactor)
        loadOrExit(service, "pmip")
    return service


def profileFromBuilt(b):
    """The L{netlmm.core.profiles} object the validated options name."""
    from netlmm.core import profiles
    p = b.get("profile") or {"name": profiles.NETLMM}
    if p["name"] == profiles.RFC5213:
        return profiles.Rfc5213Profile(p["ordering"], p["accessTechnology"], p["source"])
    return profiles.NetlmmDialect()
