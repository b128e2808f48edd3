"""What the three tap modules share: --config handling and error reporting."""

import os

from twisted.python import usage

from netlmm.config import ConfigError, Table, loadToml


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
    ]

    #: The config keys, shown verbatim after the options in --help.
    configHelp = ""

    def getUsage(self, width=None):
        # usage.Options re-wraps longdesc; the key list must keep its layout.
        return super().getUsage(width) + "\n" + self.configHelp.strip("\n") + "\n"

    def postOptions(self):
        path = self["config"]
        if path is None:
            raise usage.UsageError("--config FILE is required")
        # Relative paths in the file (certificates, keys) are from its directory.
        self.configDir = os.path.dirname(os.path.abspath(path))
        try:
            document = Table(loadToml(path), "")
            table = document.table(self.section, required=True)
            self.built = self.build(table)
            table.finish()
            from netlmm.metrics import metricsConfig
            self.metricsListen = metricsConfig(document)
            from netlmm.ctl import controlConfig
            self.controlSocket = controlConfig(document, self.configDir)
            if self.controlSocket is not None and not self.hasControl:
                raise ConfigError("control: only the LMA and the PMIP client have a "
                                  "[control] socket (a MAG takes commands through its "
                                  "attachment detector 'control')")
            document.finish()
        except ConfigError as e:
            raise usage.UsageError(f"{path}: {e}") from None
        except (ValueError, OSError) as e:
            raise usage.UsageError(f"{path}: {e}") from None

    def build(self, table):
        """Validate the role's table; return what makeService needs."""
        raise NotImplementedError


def withManagement(service, options, roles=None):
    """
    C{service} with what the config's top-level tables add to any role:
    [metrics] (Prometheus metrics over HTTP, L{netlmm.metrics}) of
    C{roles} (the services whose metrics are served; C{[service]} unless
    given) and [control] (the local command socket, L{netlmm.ctl}).
    """
    from twisted.internet import reactor
    listen = getattr(options, "metricsListen", None)
    if listen is not None:
        from netlmm.metrics import MetricsService
        MetricsService(reactor, listen, roles or [service]).setServiceParent(service)
    path = getattr(options, "controlSocket", None)
    if path is not None:
        from netlmm.ctl import ControlService
        ControlService(reactor, path, service).setServiceParent(service)
    return service


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
