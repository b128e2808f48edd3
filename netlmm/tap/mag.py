"""twistd netlmm-mag: a Mobile Access Gateway."""

from netlmm.core.mag import MagCore
from netlmm.registry import dataplanes, detectors, strategies
from netlmm.tap.common import RoleOptions, sub


class Options(RoleOptions):
    synopsis = "--config mag.toml"
    longdesc = """Run a Mobile Access Gateway: learn which mobiles are on the access link,
trigger their PMIP client, and terminate the tunnel from the LMA."""
    configHelp = """
The [mag] table of the config file:
  name                  a name for the logs ('MAG')
  address               this MAG's data-plane address, the pCoA (required)
  lma_address           the LMA's tunnel address (required)
  pmip                  '[address]:port' of the PMIP client ('[::1]:5437')
  pmip_clients          several PMIP clients in the domain (instead of pmip):
                        ['[a]:p', ...]; a mobile's client is chosen from its
                        MN identifier (SHA-256 modulo the sorted list), the
                        same on every MAG: give every MAG the same list
  [mag.pmip_client]     run a PMIP client in this MAG's process (draft 4.2,
                        co-located): the keys of `twistd netlmm-pmip --help`;
                        its listen must be one of pmip / pmip_clients
  [mag.pmip_map]        MNID = '[a]:p': explicit choices that win over the
                        hash (each must be one of pmip_clients / pmip)
  pmip_failover         with several PMIP clients: seconds the connection to
                        one may stay lost before its mobiles move to the
                        next client (draft E.1; 5); `mag-ctl drain '[a]:p'`
                        moves them at once
  notification_timeout  seconds to wait for a Notification (70)
  old_prefix_lifetime   after the PMIP client moves a mobile to another LMA
                        (draft 4.4), how long its old prefix stays usable at
                        most: the valid lifetime its RAs give the deprecated
                        prefix; then the old binding is released (3600)
  old_prefix_idle       release the old prefix earlier once no packet of it
                        went through the tunnel for this many seconds (60;
                        0: never; only data planes that can tell, userspace)
  access_technology     the access link's RFC 5213 8.5 Access Technology
                        Type, sent in every Trigger: 'ethernet' (IEEE 802.3,
                        the default), 'wlan' (IEEE 802.11a/b/g), 'wimax',
                        'ppp', 'virtual', or a number 1..255
  [mag.assignment]      strategy = 'lma-assigned' | 'static' | 'slaac' |
                        'dhcp-relay' | 'prefix' (required; `netlmm plugins`
                        lists more): prefix gives each mobile a prefix of its
                        own (draft E.3) and advertises it to that mobile alone
                        ([mag.access] without prefix; [mag.assignment.prefixes]
                        MNID = "prefix/64" names one in the Trigger);
                        static takes [mag.assignment.addresses] MNID = "pHoA";
                        slaac learns the pHoA from the mobile's DAD (Appendix B);
                        dhcp-relay relays DHCPv6 to server = ADDRESS (server_port,
                        link_address, interface_id, timeout) and binds the
                        leased address; lma-assigned answers the mobile's
                        DHCPv6 itself with the LMA's address when the access
                        link is configured (dhcp, preferred_lifetime,
                        valid_lifetime)
  [mag.attachment]      detector = 'control' with socket = PATH (required,
                        relative to this file like every path here):
                        `netlmm mag-ctl --socket PATH attach MNID [PHOA]`;
                        'rs' (Router Solicitations; idle_timeout = 300,
                        watch_ports = true), 'link' (bridge port and FDB
                        events; detach_on_ageing = true) or 'hostapd' (Wi-Fi
                        associations from hostapd's control socket: control =
                        PATH, ping_interval = 1, retry_interval = 0.5); MN id =
                        MAC as text
  [mag.access]          the access link (for rs, link, slaac, prefix):
                        interface (a bridge, e.g. 'acc0'), prefix (the LMD's
                        shared /64; leave it out for per-MN prefixes),
                        link_local (the RAs' source, the same on every MAG),
                        router_lifetime, valid_lifetime (86400),
                        preferred_lifetime (14400), mtu (1460), hop_limit (64),
                        managed / other (RA M and O flags, false),
                        autonomous (PIO A flag, true unless managed),
                        ra_interval_min / ra_interval_max (200 / 600 s),
                        advertise (true), neighbor_retrans_ms (200),
                        router_mac / router_address (the domain's one router
                        identity: the same MAC and link-local address on
                        every MAG's access link); see doc/deployment.md
  [mag.ipv4]            IPv4 mobiles (draft E.2, RFC 5844): every Trigger asks
                        the LMA for an IPv4 home address and the MAG serves it
                        by DHCPv4 on the access link: dhcp ('server'),
                        lease_time (3600 s), subnet ('host': mask /32, each
                        mobile alone with its router; 'home': the home
                        network's prefix length); needs [mag.access]
  [mag.dataplane]       kind = 'seg6' | 'ip6tnl' | 'userspace' | 'memory';
                        the kernel ones take address (= mag.address),
                        interface (core side), access_interface, tables and
                        priorities; see doc/deployment.md
  [mag.handover]        context transfer and forwarding with the neighbour MAGs
                        (draft Appendix D, RFC 5949 HI/HAck over UDP):
                        neighbors = ['addr', ...] (required), keys = PATH
                        (required: [[sa]] with client = a neighbour), port
                        (5436), context_timeout (0.5 s), forward_timeout (10),
                        prepare_timeout (3), replay_window (7), probe_interval
                        (0.02), buffer (true: hold forwarded packets until the
                        mobile answers), buffer_packets (2048), buffer_bytes
                        (4194304), buffer_time (3 s), buffer_policy
                        ('drop-new' | 'drop-old'), buffer_device ('nlbuf0');
                        [mag.handover.access_points] BSSID = 'neighbour addr'
                        (predictive handover on an 802.11v transition)
  [mag.tls]             the channel to the PMIP client (draft 4.9.3/4.9.4),
                        required: mutually authenticated TLS unless transport
                        says otherwise. Paths are relative to this file.
    transport           'tls' (TLS 1.2+ over TCP, the default), 'sctp+tls'
                        (TLS over SCTP), or, unauthenticated (a warning at
                        start), 'tcp' or 'sctp'
    ca                  the domain CA certificate (PEM): only a PMIP client it
                        issued is accepted
    certificate         this MAG's certificate (role mag) from that CA
    key                 its private key (PEM, unencrypted, not readable by others)
    pmip_name           accept only the PMIP client of this name (any of the
                        domain's PMIP clients when unset)
                        Create them with `netlmm pki init` / `netlmm pki issue --role mag`.
See etc/netlmm/mag.toml for a commented example."""
    section = "mag"
    keepsState = True

    def opt_list_strategies(self):
        """List the installed address-assignment strategies (plugins) and exit."""
        from netlmm.tap.common import listPlugins
        listPlugins(strategies)

    def _colocated(self, table, clients):
        """
        A PMIP client run in this MAG's process (draft 4.2): the options of
        `twistd netlmm-pmip` in [mag.pmip_client]; None without that table.
        """
        if "pmip_client" not in table.data:
            table._get("pmip_client", None, False)
            return None
        from netlmm.config import ConfigError
        from netlmm.tap import pmip as pmipTap
        sub = table.table("pmip_client")
        options = pmipTap.Options()
        options["config"] = self["config"]
        options.configDir = getattr(self, "configDir", None)
        built = options.build(sub)
        sub.finish()
        listen = built["listen"]
        if not any(port == listen[1] and (address == listen[0] or listen[0].is_unspecified)
                   for address, port in clients):
            raise ConfigError(
                f"mag.pmip_client.listen [{listen[0]}]:{listen[1]} is not one of this "
                "MAG's PMIP clients (mag.pmip / mag.pmip_clients): list it there, as every "
                "MAG of the domain does, so the mobiles it anchors keep it")
        return built

    def build(self, table):
        from twisted.internet import reactor
        name = table.string("name", "MAG")
        address = table.address("address", required=True)
        lma = table.address("lma_address", required=True)
        pmip = pmipClients(table)
        pmipMap = pmipMapFromTable(table, pmip)
        timeout = table.number("notification_timeout", 70, minimum=1, maximum=3600)
        failover = table.number("pmip_failover", 5.0, minimum=0, maximum=3600)
        oldLifetime = table.number("old_prefix_lifetime", 3600, minimum=1,
                                   maximum=0xFFFFFFFE, integer=True)
        idleRelease = table.number("old_prefix_idle", 60, minimum=0, maximum=0xFFFFFFFE)
        technology = accessTechnology(table)
        from netlmm.access.link import fromConfig as accessFromConfig
        access = accessFromConfig(table, reactor)
        ipv4 = None
        if "ipv4" in table.data:
            from netlmm.access.dhcp4 import Dhcp4Server
            ipv4 = Dhcp4Server.fromTable(table.table("ipv4"), reactor, access)
        else:
            table._get("ipv4", None, False)
        strategy = sub(table, "assignment", "strategy", strategies, reactor=reactor,
                       access=access)
        detector = sub(table, "attachment", "detector", detectors, reactor=reactor,
                       access=access)
        dataplane = sub(table, "dataplane", "kind", dataplanes, reactor=reactor,
                        role="mag")
        planeAddress = getattr(dataplane, "address", None)
        if planeAddress is not None and planeAddress != address:
            from netlmm.config import ConfigError
            raise ConfigError(
                f"mag.dataplane.address ({planeAddress}) must be mag.address ({address}): "
                "the tunnel ends at the pCoA the PMIP client binds")
        from netlmm.transport.channel import channelFromTable
        channel = channelFromTable(table, "mag", getattr(self, "configDir", None))
        colocated = self._colocated(table, pmip)
        from netlmm.service.handover import fromConfig as handoverFromConfig
        handover = handoverFromConfig(table, reactor, address, dataplane, access,
                                      getattr(self, "configDir", None))
        if handover is not None and not hasattr(dataplane, "forward"):
            from netlmm.config import ConfigError
            raise ConfigError(f"mag.handover: the {dataplane.name!r} data plane cannot "
                              "forward between MAGs")
        return dict(name=name, pmip=pmip, pmipMap=pmipMap, strategy=strategy, detector=detector,
                    dataplane=dataplane, channel=channel, colocated=colocated, ipv4=ipv4,
                    handover=handover, failoverAfter=failover,
                    core=dict(address=address, lmaAddress=lma,
                              notificationTimeout=timeout, accessTechnology=technology,
                              ipv4=ipv4 is not None, oldLifetime=oldLifetime,
                              idleRelease=idleRelease))


def makeService(options):
    """The MAG service described by the validated options."""
    from twisted.internet import reactor
    from netlmm.daemon import roleLogger
    from netlmm.service.mag import MagService
    from netlmm.tap.common import daemon
    b = options.built
    core = MagCore(log=roleLogger("netlmm.mag"), **b["core"])
    mag = MagService(reactor, core, b["pmip"], b["strategy"], b["dataplane"],
                     detector=b["detector"], name=b["name"], channel=b["channel"],
                     pmipMap=b.get("pmipMap"), ipv4=b.get("ipv4"),
                     handover=b.get("handover"), failoverAfter=b.get("failoverAfter", 5.0))
    if not b.get("colocated"):
        return daemon(options, [mag])
    # The co-located PMIP client starts first, so the MAG finds it listening.
    from netlmm.tap import pmip as pmipTap
    return daemon(options, [pmipTap.serviceFromBuilt(
        b["colocated"], getattr(options, "stateBackend", None)), mag])


def accessTechnology(table, key="access_technology"):
    """
    The RFC 5213 8.5 Access Technology Type of C{[mag]}: a name of
    L{netlmm.core.mag.ACCESS_TECHNOLOGIES} or a number 1..255 (0 is reserved).
    """
    from netlmm.config import ConfigError
    from netlmm.core.mag import ACCESS_TECHNOLOGIES
    value = table._get(key, "ethernet", False)
    if isinstance(value, str) and value in ACCESS_TECHNOLOGIES:
        return ACCESS_TECHNOLOGIES[value]
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 255:
        return value
    names = ", ".join(f"'{n}'" for n in ACCESS_TECHNOLOGIES)
    raise ConfigError(f"{table._key(key)}: expected one of {names} or a number 1..255 "
                      f"(RFC 5213 8.5; 0 is reserved), got {value!r}")


def pmipClients(table):
    """
    The PMIP clients of [mag]: C{pmip = '[a]:p'} (one) or C{pmip_clients =
    ['[a]:p', ...]} (several); a list of (address, port).
    """
    from netlmm.config import ConfigError
    if "pmip_clients" not in table.data:
        return [table.endpoint("pmip", "[::1]:5437")]
    if table._get("pmip", None, False) is not None:
        raise ConfigError(f"{table._key('pmip_clients')}: give either pmip or "
                          "pmip_clients, not both")
    return table.endpoints("pmip_clients", nonEmpty=True)


def pmipMapFromTable(table, clients):
    """C{[mag.pmip_map]} MNID = '[a]:p' as {bytes: (address, port)}, or None."""
    from netlmm.config import ConfigError
    if "pmip_map" not in table.data:
        table._get("pmip_map", None, False)
        return None
    t = table.table("pmip_map")
    result = {}
    for mnId in list(t.data):
        endpoint = t.endpoint(mnId, required=True)
        if endpoint not in clients:
            raise ConfigError(f"{t.where}.{mnId}: [{endpoint[0]}]:{endpoint[1]} is not one "
                              "of the PMIP clients (pmip / pmip_clients)")
        result[mnId.encode("utf-8")] = endpoint
    t.finish()
    return result
