"""twistd netlmm-gma: the Global Mobility Anchor (an RFC 6275 home agent)."""

from ipaddress import IPv6Address

from netlmm.config import ConfigError
from netlmm.core.gma import GmaCore
from netlmm.registry import dataplanes
from netlmm.tap.common import RoleOptions, sub


class Options(RoleOptions):
    synopsis = "--config gma.toml"
    longdesc = """Run the Global Mobility Anchor (draft 4.1 step 7, 4.6): a Mobile IPv6
home agent (RFC 6275) for mobiles that run Mobile IPv6 themselves (netlmm mn).
They register the pHoA of the local domain as their care-of address and keep
their home address across domains. Needs root and a kernel with
CONFIG_IPV6_MIP6 (module mip6)."""
    configHelp = """
The [gma] table of the config file:
  address         the GMA's IPv6 address, where mobiles send Binding Updates
                  (required; raw IPv6 protocol 135)
  home_prefix     the home network, routed to the GMA (required)
  max_lifetime    longest binding lifetime granted, seconds, 4..262140 (3600)
  care_of_networks prefixes care-of addresses may come from (the local
                  domains' prefixes); others are refused (129); default: any
  state_file      the database (SQLite) that keeps the binding cache across
                  restarts, each binding written before its Binding
                  Acknowledgement leaves; relative to the config file, whose
                  directory must exist; a JSON state file of earlier versions
                  is converted at the first start (kept as FILE.json); unset:
                  none
  [gma.mobiles]   one key per mobile: its NAI (RFC 4283) = its home address,
                  or a list of them; others are refused (133)
  [gma.dataplane] kind = 'seg6' | 'ip6tnl' | 'userspace' | 'memory': the
                  tunnel from each home address to its care-of address, as
                  [lma.dataplane] (see doc/deployment.md)
  [gma.security]  RFC 4285 MN-HA authentication of Binding Updates and
                  Acknowledgements: mode = 'none' or 'rfc4285' ('none');
                  keys = key file of [[sa]] entries with mn = the mobile's
                  NAI (mode 0600, relative to the config file);
                  replay_window = seconds a timestamp may be off (7)
See etc/netlmm/gma.toml for a commented example."""
    section = "gma"
    keepsState = True

    def build(self, table):
        address = table.address("address", required=True)
        prefix = table.network("home_prefix", required=True)
        maxLifetime = table.number("max_lifetime", 3600, minimum=4, maximum=262140,
                                   integer=True)
        careOf = table.networks("care_of_networks", [])
        for network in careOf:
            if network.overlaps(prefix):
                raise ConfigError(f"gma.care_of_networks: {network} overlaps the "
                                  f"home_prefix {prefix}")
        from netlmm.store import stateFileFromTable
        stateFile = stateFileFromTable(table, getattr(self, "configDir", None))
        mobiles = _mobiles(table.table("mobiles", required=True), prefix)
        security = table.table("security")
        if security.data.get("radius") is not None:
            raise ConfigError("gma.security.radius: keys from AAA are not offered by the "
                              "GMA yet; give the mobiles' keys in a key file")
        from netlmm.security.config import securityConfig
        security = securityConfig(table, self["config"])
        from twisted.internet import reactor
        dataplane = sub(table, "dataplane", "kind", dataplanes, reactor=reactor, role="lma")
        return dict(address=address, dataplane=dataplane, security=security,
                    stateFile=stateFile,
                    core=dict(homePrefix=prefix, mobiles=mobiles, careOfNetworks=careOf,
                              maxLifetime=maxLifetime))


def _mobiles(table, prefix):
    """[gma.mobiles]: NAI -> home address(es), each inside the home prefix, none twice."""
    from netlmm.wire.control import mnIdProblem
    mobiles, owners = {}, {}
    for name, value in table.data.items():
        key = f"{table.where}.{name!r}" if not name.isidentifier() else f"{table.where}.{name}"
        problem = mnIdProblem(name.encode("utf-8"))
        if problem:
            raise ConfigError(f"{key}: {problem}")
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, str) for v in values):
            raise ConfigError(f"{key}: expected a home address or a list of them, "
                              f"got {value!r}")
        homes = []
        for v in values:
            try:
                home = IPv6Address(v)
            except ValueError:
                raise ConfigError(f"{key}: {v!r} is not an IPv6 address") from None
            if home not in prefix:
                raise ConfigError(f"{key}: {home} is outside the home_prefix {prefix}")
            if home in owners:
                raise ConfigError(f"{key}: {home} is also {owners[home]!r}'s")
            owners[home] = name
            homes.append(home)
        table._seen.add(name)
        mobiles[name.encode("utf-8")] = homes
    if not mobiles:
        raise ConfigError(f"{table.where}: no mobiles; give each one's NAI = home address")
    return mobiles


def makeService(options):
    """The GMA service described by the validated options."""
    from twisted.internet import reactor
    from netlmm.daemon import roleLogger
    from netlmm.service.gma import GmaService
    from netlmm.tap.common import daemon
    from netlmm.transport.mip6 import MIP6Port, Xfrm
    b = options.built
    core = GmaCore(log=roleLogger("netlmm.gma"), **b["core"])
    guard = None
    if b["security"] is not None:
        from netlmm.security.config import buildKeys
        from netlmm.security.guard import LmaGuard
        guard = LmaGuard(buildKeys(b["security"], reactor), b["security"]["window"])
    port = MIP6Port(reactor, None, b["address"])
    service = GmaService(reactor, core, port, b["dataplane"], security=guard, xfrm=Xfrm())
    from netlmm.redisstore import makeStore
    service.store = makeStore(getattr(options, "stateBackend", None), b["stateFile"],
                              "gma-bindings", reactor)
    if service.store is not None:
        from netlmm.store import loadOrExit
        loadOrExit(service, "gma")
    return daemon(options, [service])
