"""`netlmm mn` (and twistd netlmm-mn): a Linux host's Mobile IPv6 home registration."""

from netlmm.config import ConfigError
from netlmm.dataplane import _netlink as nl
from netlmm.tap.common import RoleOptions


class Options(RoleOptions):
    synopsis = "--config mn.toml"
    longdesc = """Keep this host's home address at its home agent (the netlmm GMA) as it
moves: send Binding Updates (RFC 6275) when its care-of address changes,
retransmit, refresh, deregister at home and at stop, and carry the home
address through an ip6ip6 tunnel to the home agent. Needs root and a kernel
with CONFIG_IPV6_MIP6 (module mip6) and ip6_tunnel."""
    configHelp = """
The [mn] table of the config file:
  id              the mobile's NAI (RFC 4283), as the GMA knows it (required)
  home_address    its home address (required)
  home_agent      the GMA's address (required)
  home_prefix     the home network: a care-of address inside it means the
                  host is at home (it deregisters); unset: never at home
  lifetime        binding lifetime asked for, seconds, 4..262140 (300)
  interfaces      where care-of addresses are taken from (names); default:
                  every interface but loopback and the tunnel
  tunnel          the tunnel device's name ('mip6tnl0')
  table, priority the routing table of the home address's default route
                  through the tunnel (5216) and its source rule's priority (100)
  mtu             the tunnel's MTU (1400)
  [mn.security]   RFC 4285 MN-HA authentication: mode = 'none' or 'rfc4285';
                  keys = key file with the mobile's [[sa]] (mn = its NAI,
                  mode 0600, relative to the config file); replay_window (7)
See etc/netlmm/mn.toml for a commented example."""
    section = "mn"

    def build(self, table):
        from netlmm.wire.control import mnIdProblem
        mnId = table.string("id", required=True).encode("utf-8")
        problem = mnIdProblem(mnId)
        if problem:
            raise ConfigError(f"mn.id: {problem}")
        home = table.address("home_address", required=True)
        homeAgent = table.address("home_agent", required=True)
        prefix = table.network("home_prefix")
        if prefix is not None and home not in prefix:
            raise ConfigError(f"mn.home_prefix: {prefix} does not hold home_address {home}")
        lifetime = table.number("lifetime", 300, minimum=4, maximum=262140, integer=True)
        interfaces = table._get("interfaces", [], False)
        if not isinstance(interfaces, list) or not all(isinstance(i, str) for i in interfaces):
            raise ConfigError(f"mn.interfaces: expected a list of interface names, "
                              f"got {interfaces!r}")
        tunnel = nl.interfaceName(table, "tunnel", required=False) or "mip6tnl0"
        tunnelTable = nl.routingTable(table, "table", 5216)
        priority = nl.rulePriority(table, "priority", 100)
        mtu = table.number("mtu", 1400, minimum=1280, maximum=65535, integer=True)
        from netlmm.security.config import securityConfig
        security = securityConfig(table, self["config"])
        if security is not None and security.get("radius") is not None:
            raise ConfigError("mn.security.radius: a mobile's key comes from its key file")
        if security is not None and security["keys"].forMobile(mnId) is None:
            raise ConfigError(f"mn.security.keys: no [[sa]] for mn = {mnId.decode()!r}")
        return dict(core=dict(mnId=mnId, home=home, homeAgent=homeAgent, homePrefix=prefix,
                              lifetime=lifetime),
                    interfaces=interfaces, tunnel=dict(name=tunnel, table=tunnelTable,
                                                       priority=priority, mtu=mtu),
                    security=security)


def makeService(options):
    """The service twistd runs (`twistd netlmm-mn`): the mobile's, as L{mobileService}."""
    from netlmm.tap.common import daemon
    return daemon(options, [mobileService(options)])


def mobileService(options, reactor=None):
    """The mobile's service described by the validated options."""
    if reactor is None:
        from twisted.internet import reactor
    from netlmm.core.mn import MobileCore
    from netlmm.daemon import roleLogger
    from netlmm.mobile import AddressWatcher, HomeTunnel, MobileService
    from netlmm.transport.mip6 import MIP6Port, Xfrm
    b = options.built
    core = MobileCore(log=roleLogger("netlmm.mn"), **b["core"])
    guard = None
    if b["security"] is not None:
        from netlmm.security.guard import PmipGuard
        guard = PmipGuard(b["security"]["keys"], b["security"]["window"])
    tunnel = HomeTunnel(reactor=reactor, **b["tunnel"])
    watcher = AddressWatcher(reactor, None, b["interfaces"], exclude=(tunnel.name,))
    port = MIP6Port(reactor, None, mobile=True)
    return MobileService(reactor, core, port, watcher, tunnel, security=guard, xfrm=Xfrm())


def main(argv):
    """`netlmm mn --config FILE`: run until SIGTERM / SIGINT, then deregister."""
    import sys
    from twisted.python import usage
    options = Options()
    try:
        options.parseOptions(argv)
    except usage.UsageError as e:
        print(f"netlmm mn: error: {e}", file=sys.stderr)
        return 2
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver
    from netlmm.daemon import setLogLevel
    setLogLevel(options["log-level"])
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)],
                                     redirectStandardIO=False)
    service = mobileService(options, reactor)
    status = {"code": 0}

    def failed(f):
        from netlmm.daemon import describeFailure
        print(f"netlmm mn cannot start: {describeFailure(f)}", file=sys.stderr)
        status["code"] = 1
        reactor.stop()

    def start():
        from twisted.internet.defer import maybeDeferred
        maybeDeferred(service.startService).addErrback(failed)
        reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.callWhenRunning(start)
    reactor.run()
    return status["code"]
