"""
Name -> factory registries for the pluggable parts (strategies, detectors,
data planes), all three built here (L{strategies}, L{detectors},
L{dataplanes}). The config names a part; the registry finds it or says
which names exist.

The parts are Twisted plugins: module-level objects in the plugin package
C{netlmm.plugins} that provide L{netlmm.interfaces.IAddressAssignmentFactory},
L{netlmm.interfaces.IAttachmentDetectorFactory} or
L{netlmm.interfaces.IDataPlaneFactory}. netlmm's own parts are plugins too
(C{netlmm/plugins/netlmm_parts.py}); a vendor's package adds one by shipping a
module in its own C{netlmm/plugins/} directory (doc/plugins.md).
L{Registry.register} still adds a factory directly (tests, code that builds
its own daemon); both kinds share one name space.
"""

from collections import namedtuple

from twisted.logger import Logger
from zope.interface import implementer

from netlmm.config import ConfigError
from netlmm.interfaces import (
    IAddressAssignment, IAddressAssignmentFactory, IAnchorPolicy, IAnchorPolicyFactory,
    IAttachmentDetector, IAttachmentDetectorFactory, IDataPlane, IDataPlaneFactory,
)

#: The plugin package searched for parts.
PLUGIN_PACKAGE = "netlmm.plugins"


class Entry(namedtuple("Entry", "name module description factory plugin")):
    """
    One part a registry can build: C{factory(table, **context)} builds it;
    C{module} implements it; C{plugin} is the plugin module that declared it
    (None when it was registered directly).
    """

    __slots__ = ()


class PluginConflict(ConfigError):
    """Two plugins (or a plugin and a direct registration) claim one name."""


class Registry:
    """
    The parts of one kind, by name: those registered directly and those the
    plugins in C{package} provide (C{interface}), loaded on first use.
    C{provides}, when given, is the interface every part built by a plugin
    must provide.
    """

    log = Logger()

    def __init__(self, kind, interface=None, provides=None, package=PLUGIN_PACKAGE):
        self.kind = kind
        self.interface = interface
        self.provides = provides
        self.package = package
        self._direct = {}
        self._plugins = None
        self._broken = []

    def register(self, name, factory, module=None, description=None):
        """Make C{factory(options, **context)} available as C{name}."""
        if name in self._direct:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        if module is None:
            module = getattr(factory, "__module__", None) or "?"
        if description is None:
            # A classmethod fromConfig: the class says what the part is.
            owner = getattr(factory, "__self__", None)
            description = _firstLine(getattr(owner if isinstance(owner, type) else factory,
                                             "__doc__", None))
        self._direct[name] = Entry(name, module, description, factory, None)
        return factory

    def reload(self):
        """Forget the plugins found so far; the next use scans the package again."""
        self._plugins = None
        self._broken = []
        name = self.package if isinstance(self.package, str) else self.package.__name__
        _dropins.pop(name, None)

    def _load(self):
        if self._plugins is None:
            if self.interface is None:
                self._plugins, self._broken = [], []
            else:
                self._plugins, self._broken = _scan(self.interface, self.package)
        return self._plugins

    def entries(self, strict=True):
        """
        Every part, sorted by name. With C{strict}, a name claimed twice
        raises L{PluginConflict} naming both sources; otherwise every claim is
        listed.
        """
        found = list(self._direct.values()) + list(self._load())
        found.sort(key=lambda e: (e.name, e.plugin or "", e.module))
        if strict:
            for message in self.conflicts(found):
                raise PluginConflict(message)
        return found

    def conflicts(self, entries=None):
        """A message for each name that is claimed more than once."""
        if entries is None:
            entries = self.entries(strict=False)
        byName = {}
        for entry in entries:
            byName.setdefault(entry.name, []).append(entry)
        return [f"{self.kind} {name!r} is claimed by "
                + " and by ".join(_source(e) for e in claims)
                + "; uninstall or rename one of them"
                for name, claims in sorted(byName.items()) if len(claims) > 1]

    def broken(self):
        """C{(module, reason)} of the plugin modules that could not be loaded."""
        self._load()
        return list(self._broken)

    def names(self):
        """The available names, sorted."""
        return [e.name for e in self.entries()]

    def create(self, name, options, key, **context):
        """
        Build the part named C{name}; C{key} is the config key that named it,
        for the error message.
        """
        entries = {e.name: e for e in self.entries()}
        entry = entries.get(name)
        if entry is None:
            raise ConfigError(
                f"{key}: unknown {self.kind} {name!r}; expected one of "
                + ", ".join(repr(n) for n in sorted(entries))
                + " (`netlmm plugins` lists what is installed)"
            )
        part = entry.factory(options, **context)
        if entry.plugin is not None and self.provides is not None \
                and not self.provides.providedBy(part):
            raise ConfigError(
                f"{key}: the {self.kind} {name!r} of {_source(entry)} built {part!r}, "
                f"which does not provide {self.provides.__name__}")
        return part


def _firstLine(text):
    for line in (text or "").strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


def _source(entry):
    if entry.plugin is None:
        return f"{entry.module} (registered directly)"
    return f"plugin {entry.plugin} ({entry.module})"


#: The dropins found per plugin package, shared by the registries so that
#: one start imports (and reports) each plugin module once.
_dropins = {}


def _scan(interface, packageName):
    """
    The plugins providing C{interface} in the plugin package: a list of
    L{Entry} and a list of C{(module, reason)} for the modules that failed.

    Like L{twisted.plugin.getPlugins}, but it also says which module each
    plugin comes from and which modules are broken.
    """
    from twisted.python.reflect import namedAny

    package = namedAny(packageName) if isinstance(packageName, str) else packageName
    if package.__name__ not in _dropins:
        _dropins[package.__name__] = _dropinsOf(package)
    cache, broken = _dropins[package.__name__]
    broken = list(broken)

    entries = []
    for key, dropin in sorted(cache.items()):
        for cached in dropin.plugins:
            try:
                plugin = interface(cached, None)
            except Exception as e:
                Registry.log.failure("plugin {module}.{plugin} could not be loaded; "
                                     "skipped", module=dropin.moduleName,
                                     plugin=cached.name)
                broken.append((dropin.moduleName, f"{type(e).__name__}: {e}"))
                continue
            if plugin is None:
                continue
            name = getattr(plugin, "name", None)
            fromConfig = getattr(plugin, "fromConfig", None)
            if not isinstance(name, str) or not name or not callable(fromConfig):
                reason = (f"{cached.name} provides {interface.__name__} but has no "
                          "name (a non-empty str) or no callable fromConfig")
                Registry.log.warn("plugin module {module}: {reason}; skipped",
                                  module=dropin.moduleName, reason=reason)
                broken.append((dropin.moduleName, reason))
                continue
            module = getattr(plugin, "module", None) or dropin.moduleName
            description = getattr(plugin, "description", None) or _firstLine(
                getattr(plugin, "__doc__", None))
            entries.append(Entry(name, module, description, fromConfig, dropin.moduleName))
    return entries, broken


def _dropinsOf(package):
    """
    L{twisted.plugin.getCache} of C{package}, and the modules that failed to
    import. A module that fails is logged (by Twisted, with its traceback, and
    here by name) and skipped; a dropin.cache that cannot be written
    (read-only site-packages) only costs the import of every plugin module on
    each start.
    """
    from twisted.logger import globalLogPublisher
    from twisted.plugin import getCache
    from twisted.python.modules import getModule

    failures = []

    def observe(event):
        # getCache logs with the legacy log.err(): the key is "failure".
        failure = event.get("log_failure") or event.get("failure")
        if failure is not None:
            failures.append(failure)

    globalLogPublisher.addObserver(observe)
    try:
        cache = getCache(package)
    finally:
        globalLogPublisher.removeObserver(observe)
    broken = []
    for module in getModule(package.__name__).iterModules():
        if module.name.split(".")[-1] not in cache:
            broken.append((module.name, _reason(failures, module.filePath.path)))
    for moduleName, reason in broken:
        Registry.log.warn("plugin module {module} could not be loaded and is skipped: "
                          "{reason}", module=moduleName, reason=reason)
    return cache, broken


def _reason(failures, path):
    """The error of the failure that happened in the module at C{path}."""
    import os

    def stem(name):
        return os.path.realpath(name).rsplit(".", 1)[0]
    wanted = stem(path)
    for failure in failures:
        files = [frame[1] for frame in failure.frames]
        files.append(getattr(failure.value, "filename", None) or "")
        if any(f and stem(f) == wanted for f in files):
            return f"{failure.type.__name__}: {failure.getErrorMessage()}"
    return "import failed (see the log)"


class _LazyPart:
    """
    A plugin that names its factory by dotted name and imports it only when
    the part is built, so that listing plugins does not import every data
    plane's dependencies.
    """

    def __init__(self, name, module, factory, description):
        self.name = name
        self.module = module
        self.factory = factory
        self.description = description

    def fromConfig(self, table, **context):
        """Import C{module}, find C{factory} in it and call it."""
        from importlib import import_module
        target = import_module(self.module)
        for attribute in self.factory.split("."):
            target = getattr(target, attribute)
        return target(table, **context)

    def __repr__(self):
        return (f"<{type(self).__name__} {self.name!r}: "
                f"{self.module}.{self.factory}>")


@implementer(IAddressAssignmentFactory)
class AddressAssignmentPlugin(_LazyPart):
    """
    Declares an address-assignment strategy: put one at module level in a
    C{netlmm/plugins/} module, e.g.
    C{AddressAssignmentPlugin("hashed", "acme.hashed", "HashedAssignment.fromConfig",
    "pHoA from a hash of the MN identifier")}.
    """


@implementer(IAttachmentDetectorFactory)
class AttachmentDetectorPlugin(_LazyPart):
    """Declares an attachment detector (see L{AddressAssignmentPlugin})."""


@implementer(IDataPlaneFactory)
class DataPlanePlugin(_LazyPart):
    """Declares a data plane (see L{AddressAssignmentPlugin})."""


@implementer(IAnchorPolicyFactory)
class AnchorPolicyPlugin(_LazyPart):
    """Declares an anchor policy of a PMIP client with several LMAs (see
    L{AddressAssignmentPlugin})."""


#: Address-assignment strategies: the MAG config's [mag.assignment] strategy.
strategies = Registry("address-assignment strategy", IAddressAssignmentFactory,
                      IAddressAssignment)
#: Attachment detectors: the MAG config's [mag.attachment] detector.
detectors = Registry("attachment detector", IAttachmentDetectorFactory,
                     IAttachmentDetector)
#: Data planes: [mag.dataplane] / [lma.dataplane] kind.
dataplanes = Registry("data plane", IDataPlaneFactory, IDataPlane)


def _anchorPolicies():
    # The sans-IO core does not import zope.interface's declarations.
    from zope.interface import classImplements
    from netlmm.core.anchors import AnchorPolicy
    classImplements(AnchorPolicy, IAnchorPolicy)
    return Registry("anchor policy", IAnchorPolicyFactory, IAnchorPolicy)


#: Anchor policies: the PMIP client config's [pmip.anchor] policy.
anchors = _anchorPolicies()


def registries():
    """The registries, as C{(title, registry)}, for listings."""
    return [("address-assignment strategies ([mag.assignment] strategy)", strategies),
            ("attachment detectors ([mag.attachment] detector)", detectors),
            ("data planes ([mag.dataplane] / [lma.dataplane] kind)", dataplanes),
            ("anchor policies ([pmip.anchor] policy)", anchors)]


def describe(out, only=None):
    """
    Write what is installed of each kind: name, module, description; then
    conflicts and broken plugin modules. Returns 0, or 1 when something is
    wrong. C{only} restricts the listing to one registry.
    """
    status = 0
    brokenSeen = set()
    for title, registry in registries():
        if only is not None and registry is not only:
            continue
        entries = registry.entries(strict=False)
        out.write(f"{title}:\n")
        width = max([len(e.name) for e in entries] + [4])
        modWidth = max([len(e.module) for e in entries] + [6])
        for e in entries:
            out.write(f"  {e.name:<{width}}  {e.module:<{modWidth}}  {e.description}\n")
        for message in registry.conflicts(entries):
            status = 1
            out.write(f"  CONFLICT: {message}\n")
        for module, reason in registry.broken():
            status = 1
            if module not in brokenSeen:
                brokenSeen.add(module)
                out.write(f"  BROKEN: plugin module {module} skipped: {reason}\n")
        out.write("\n")
    return status
