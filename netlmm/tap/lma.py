"""twistd netlmm-lma: the Local Mobility Anchor."""

from netlmm.config import ConfigError
from netlmm.core.lma import AddressPool, LmaCore
from netlmm.dataplane import dataplanes
from netlmm.tap.common import RoleOptions, sub


class Options(RoleOptions):
    synopsis = "--config lma.toml"
    longdesc = """Run the Local Mobility Anchor: answer Proxy Binding Updates from the
PMIP clients and tunnel each mobile's traffic to its current MAG."""
    configHelp = """
The [lma] table of the config file:
  listen          '[address]:port' for Mobility Headers (default '[::1]:5436')
  transport       'udp' (MH over UDP) or 'raw' (IPv6 protocol 135, root; port 0)
  home_prefix     the LMD's prefix; pHoAs outside it are refused (required)
  max_lifetime    longest binding lifetime granted, seconds, 4..262140 (3600)
  allowed_clients PMIP client addresses/prefixes allowed to send PBUs (required)
  state_file      where the binding cache is kept across restarts (JSON,
                  written atomically when changed and at stop); unset: none
  state_interval  seconds between state-file writes while bindings change (30)
  [lma.pool]      first, last: addresses for LMA-assigned pHoAs (Appendix A);
                  leave the table out to refuse assignment requests
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
                  retries (3), key_lifetime (3600), algorithm, nas_identifier
See etc/netlmm/lma.toml for a commented example."""
    section = "lma"

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
        stateFile = table.string("state_file")
        stateInterval = table.number("state_interval", 30, minimum=1, maximum=3600)
        if stateFile:
            from netlmm.statefile import StateFile, StateFileError
            try:
                StateFile(stateFile, "lma-bindings").load()
            except StateFileError as e:
                raise ConfigError(f"lma.state_file: {e}") from None
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
        from netlmm.security.config import securityConfig
        security = securityConfig(table, self["config"])
        from twisted.internet import reactor
        dataplane = sub(table, "dataplane", "kind", dataplanes, reactor=reactor,
                        role="lma")
        return dict(listen=listen, transport=transport, dataplane=dataplane,
                    security=security, stateFile=stateFile, stateInterval=stateInterval,
                    core=dict(homePrefix=prefix, authorizedClients=clients,
                              maxLifetime=maxLifetime, pool=pool))


def makeService(options):
    """The LMA service described by the validated options."""
    from twisted.internet import reactor
    from twisted.logger import Logger
    from netlmm.service.lma import LmaService
    b = options.built
    core = LmaCore(log=Logger(namespace="netlmm.lma"), **b["core"])
    guard = None
    if b["security"] is not None:
        from netlmm.security.guard import LmaGuard
        from netlmm.security.config import buildKeys
        guard = LmaGuard(buildKeys(b["security"], reactor), b["security"]["window"])
    service = LmaService(reactor, core, b["listen"], b["transport"], b["dataplane"],
                         security=guard)
    if b["stateFile"]:
        from netlmm.statefile import StateFile
        service.stateFile = StateFile(b["stateFile"], "lma-bindings")
        service.saveInterval = b["stateInterval"]
    return service
