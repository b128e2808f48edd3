"""What the three tap modules share: --config handling and error reporting."""

import os

from twisted.python import usage

from netlmm.config import ConfigError, Table, loadToml


class ConfigRejected(usage.UsageError):
    """The config file cannot be used; the text names the file and the key."""


class RoleOptions(usage.Options):
    """
    Base of the roles' options: C{--config FILE}, read and validated in
    postOptions so a bad file stops twistd before it forks, with an error that
    names the key. Subclasses set C{section} and implement C{build(table)}.
    """

    section = None
    #: Whether the role serves commands on a [control] socket (netlmm.ctl).
    hasControl = False
    optParameters = [
        ["config", "c", None, "The role's TOML configuration file (required)."],
        ["log-level", None, "info", "The least severe netlmm events logged: debug "
         "(also every binding's events), info, warn, error or critical."],
    ]

    #: The config keys, shown verbatim after the options in --help.
    configHelp = ""
    #: Whether the role keeps durable state (and so reads a [state] table).
    keepsState = False
    stateHelp = """
The top-level [state] table keeps the state in Redis (instead of state_file):
  backend = 'redis', address = '[::1]:6379' or socket = a path, database
  (0), prefix ('netlmm:'), timeout (1.0 s), password_file, replicas (0);
  see doc/operations.md "State in Redis". LMA only: [state.failover]
  address = the service address with its prefix length, interface, lease
  (1.0 s), name: one of an active/standby pair (doc/operations.md)
"""

    def getUsage(self, width=None):
        # usage.Options re-wraps longdesc; the key list must keep its layout.
        return (super().getUsage(width) + "\n" + self.configHelp.strip("\n") + "\n"
                + (self.stateHelp.lstrip("\n") if self.keepsState else ""))

    def parseOptions(self, options=None):
        """
        As usage.Options, except under twistd: there a bad option or config
        ends the process with one line on stderr (status 1), where twistd
        would print its whole --help before the error.
        """
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            parent = getattr(self, "parent", None)
            if parent is None:
                raise
            command = f"twistd {parent.subCommand}"
            hint = "" if isinstance(e, ConfigRejected) else \
                f" (`{command} --help` lists the options)"
            raise SystemExit(f"{command}: error: {e}{hint}") from None

    def postOptions(self):
        level = self["log-level"]
        if level not in ("debug", "info", "warn", "error", "critical"):
            raise usage.UsageError(f"--log-level: expected debug, info, warn, error or "
                                   f"critical, got {level!r}")
        path = self["config"]
        if path is None:
            raise usage.UsageError("--config FILE is required")
        # Relative paths in the file (certificates, keys, sockets, state)
        # are taken from its directory.
        self.configDir = os.path.dirname(os.path.abspath(path))
        try:
            document = Table(loadToml(path), "", base=self.configDir)
            table = document.table(self.section, required=True)
            self.built = self.build(table)
            table.finish()
            from netlmm.metrics import metricsConfig
            self.metricsListen = metricsConfig(document)
            self.stateBackend = None
            if self.keepsState:
                from netlmm.redisstore import stateConfig
                self.stateBackend = stateConfig(document, self.configDir)
            built = self.built if isinstance(self.built, dict) else {}
            if (self.stateBackend or {}).get("failover") and self.section != "lma":
                raise ConfigError("state.failover: only for the LMA (an active/standby "
                                  "pair)")
            if self.stateBackend is not None and self.section == "mag" and \
                    not built.get("colocated"):
                raise ConfigError("state: a MAG keeps state only with a co-located "
                                  "PMIP client ([mag.pmip_client])")
            if self.stateBackend is not None and (built.get("stateFile") or (
                    built.get("colocated") or {}).get("stateFile")):
                raise ConfigError(f"{self.section}.state_file: not with [state] backend "
                                  "'redis' (keep one)")
            from netlmm.ctl import controlConfig
            self.controlSocket = controlConfig(document, self.configDir)
            if self.controlSocket is not None and not self.hasControl:
                raise ConfigError("control: only the LMA and the PMIP client have a "
                                  "[control] socket (a MAG takes commands through its "
                                  "attachment detector 'control')")
            document.finish()
        except ConfigError as e:
            raise ConfigRejected(f"{path}: {e}") from None
        except (ValueError, OSError) as e:
            raise ConfigRejected(f"{path}: {e}") from None

    def build(self, table):
        """Validate the role's table; return what makeService needs."""
        raise NotImplementedError


def daemon(options, services):
    """
    The service twistd runs for a role: C{services} started in order, then
    what the config's top-level tables add to any role: [metrics]
    (Prometheus metrics of C{services} over HTTP, L{netlmm.metrics}) and
    [control] (the first service's local command socket, L{netlmm.ctl}). A
    start-up failure of any of them is reported in one line and ends the
    process with status 1 (L{netlmm.daemon.DaemonService}); the log level is
    set from C{--log-level}.
    """
    from twisted.internet import reactor
    from netlmm.daemon import DaemonService, setLogLevel
    setLogLevel(options["log-level"])
    services = list(services)
    listen = getattr(options, "metricsListen", None)
    if listen is not None:
        from netlmm.metrics import MetricsService
        services.append(MetricsService(reactor, listen, list(services)))
    path = getattr(options, "controlSocket", None)
    if path is not None:
        from netlmm.ctl import ControlService
        services.append(ControlService(reactor, path, services[0]))
    parent = getattr(options, "parent", None)
    name = getattr(parent, "subCommand", None) or f"netlmm-{options.section}"
    return DaemonService(name, services, config=parent)


def listPlugins(registry):
    """
    Print the installed parts of C{registry} (a L{netlmm.registry.Registry})
    as `netlmm plugins` does, and exit: for C{--list-strategies} and the like.
    """
    import sys
    from netlmm.registry import describe
    raise SystemExit(describe(sys.stdout, only=registry))


def sub(table, key, nameKey, registry, **context):
    """Build the plugin named by C{[table.key] nameKey = "..."}."""
    t = table.table(key)
    name = t.string(nameKey, required=True)
    return registry.create(name, t, f"{t.where}.{nameKey}", **context)
