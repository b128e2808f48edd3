"""
Strategies, attachment detectors and data planes as Twisted plugins
(netlmm.registry, netlmm.plugins), `netlmm plugins`, and the example
third-party strategy package under examples/.
"""

import errno
import importlib
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import SkipTest

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase
from netlmm import registry as registryModule
from netlmm.access import getDetectors
from netlmm.assignment import strategies
from netlmm.assignment.static import StaticAssignment
from netlmm.config import ConfigError, Table
from netlmm.dataplane import dataplanes
from netlmm.interfaces import (
    IAddressAssignment, IAddressAssignmentFactory, IDataPlane, IDataPlaneFactory,
)
from netlmm.registry import PluginConflict, Registry, describe


BUILTINS = {
    "address-assignment strategy": ("dhcp-relay", "lma-assigned", "slaac", "static"),
    "attachment detector": ("control", "link", "rs"),
    "data plane": ("ip6tnl", "memory", "seg6", "userspace"),
}


class BuiltinTests(SynchronousTestCase):
    """netlmm's own parts come from its plugin module, through the registries."""

    def test_registriesBuiltInOnePlace(self):
        """
        The three registries are made in netlmm.registry, and nowhere else
        in netlmm's code; the names the packages export are those objects.
        """
        from netlmm import registry
        self.assertIs(strategies, registry.strategies)
        self.assertIs(getDetectors(), registry.detectors)
        self.assertIs(dataplanes, registry.dataplanes)
        self.assertEqual([r for _, r in registry.registries()],
                         [registry.strategies, registry.detectors, registry.dataplanes,
                          registry.anchors])
        root = Path(registry.__file__).parent
        # netlmm.registry's Registry, not another library's (CollectorRegistry).
        makers = [str(p.relative_to(root)) for p in root.rglob("*.py")
                  if "test" not in p.parts and re.search(r"\bRegistry\(", p.read_text())]
        self.assertEqual(makers, ["registry.py"])

    def test_builtinsArePlugins(self):
        """
        Every built-in part is declared in netlmm.plugins.netlmm_parts, and
        the name it is declared under is the class's own C{name}.
        """
        for registry in (strategies, getDetectors(), dataplanes):
            entries = {e.name: e for e in registry.entries()}
            for name in BUILTINS[registry.kind]:
                entry = entries[name]
                self.assertEqual(entry.plugin, "netlmm.plugins.netlmm_parts")
                self.assertTrue(entry.description)
                plugin = getattr(importlib.import_module(entry.plugin),
                                 {"lma-assigned": "lmaAssigned",
                                  "dhcp-relay": "dhcpRelay"}.get(name, name))
                cls = getattr(importlib.import_module(plugin.module),
                              plugin.factory.split(".")[0])
                self.assertEqual(cls.name, name)
                self.assertEqual(entry.module, cls.__module__)

    def test_createBuildsTheBuiltin(self):
        """The registry API the tap modules use builds a plugin's part."""
        part = strategies.create("static", Table({"addresses": {"mn1": "2001:db8:1::5"}},
                                                 "mag.assignment"),
                                 "mag.assignment.strategy", reactor=None, access=None)
        self.assertIsInstance(part, StaticAssignment)
        plane = dataplanes.create("memory", Table({}, "mag.dataplane"),
                                  "mag.dataplane.kind", reactor=None, role="mag")
        self.assertTrue(IDataPlane.providedBy(plane))

    def test_unknownNameListsInstalled(self):
        with self.assertRaises(ConfigError) as cm:
            strategies.create("nope", Table({}, "mag.assignment"), "mag.assignment.strategy")
        message = str(cm.exception)
        self.assertIn("mag.assignment.strategy", message)
        for name in BUILTINS["address-assignment strategy"]:
            self.assertIn(repr(name), message)
        self.assertIn("netlmm plugins", message)

    def test_directRegistrationBesidePlugins(self):
        """register() still works, next to the plugins, in one name space."""
        registry = Registry("address-assignment strategy", IAddressAssignmentFactory,
                            IAddressAssignment)
        registry.register("direct9", lambda table, **context: ("built", context))
        self.assertIn("direct9", registry.names())
        self.assertIn("static", registry.names())
        self.assertEqual(registry.create("direct9", None, "k", x=1), ("built", {"x": 1}))
        entry = [e for e in registry.entries() if e.name == "direct9"][0]
        self.assertIsNone(entry.plugin)

    def test_directRegistrationTwice(self):
        registry = Registry("data plane")
        registry.register("a", lambda table: None)
        self.assertRaises(ValueError, registry.register, "a", lambda table: None)

    def test_directRegistrationClashesWithPlugin(self):
        """A direct registration of a plugin's name is a conflict, naming both."""
        registry = Registry("address-assignment strategy", IAddressAssignmentFactory,
                            IAddressAssignment)
        registry.register("static", StaticAssignment.fromConfig)
        with self.assertRaises(PluginConflict) as cm:
            registry.names()
        message = str(cm.exception)
        self.assertIn("'static'", message)
        self.assertIn("netlmm.plugins.netlmm_parts", message)
        self.assertIn("registered directly", message)

    def test_cliListsBuiltins(self):
        """`netlmm plugins` lists each kind: name, module, description."""
        from netlmm import cli
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        self.assertEqual(cli.main(["plugins"]), 0)
        text = out.getvalue()
        self.assertIn("address-assignment strategies", text)
        self.assertIn("attachment detectors", text)
        self.assertIn("data planes", text)
        lines = text.splitlines()
        for kind, names in BUILTINS.items():
            for name in names:
                line = [li for li in lines if li.split()[:1] == [name]][0]
                self.assertIn("netlmm.", line)
                self.assertGreater(len(line.split()), 2)

    def test_twistdListStrategies(self):
        """`twistd netlmm-mag --list-strategies` lists the strategies and exits."""
        from netlmm.tap import mag as magTap
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        with self.assertRaises(SystemExit) as cm:
            magTap.Options().parseOptions(["--list-strategies"])
        self.assertEqual(cm.exception.code, 0)
        text = out.getvalue()
        for name in BUILTINS["address-assignment strategy"]:
            self.assertIn(name, text)
        self.assertNotIn("data planes", text)
        self.assertIn("--list-strategies", str(magTap.Options()))


def _strategyModule(className, name):
    return f'''
from zope.interface import implementer
from netlmm.interfaces import IAddressAssignment

@implementer(IAddressAssignment)
class {className}:
    name = {name!r}
    def __init__(self, options):
        self.options = options
    @classmethod
    def fromConfig(cls, table, **context):
        return cls(dict(table.data))
    def start(self, mag): pass
    def stop(self): pass
    def attached(self, event): pass
    def bound(self, mnId, phoa): pass
    def unbound(self, mnId, phoa, reason): pass
'''


def _pluginModule(name, implementation, factory, description="a test strategy"):
    return f'''
from netlmm.registry import AddressAssignmentPlugin
plugin = AddressAssignmentPlugin({name!r}, {implementation!r}, {factory!r}, {description!r})
'''


class FakePluginPackageTests(SynchronousTestCase):
    """
    Registries over a plugin package in a temporary directory, in which the
    tests drop third-party, duplicate and broken plugin modules.
    """

    counter = 0

    def makePackage(self, modules, implementations=None):
        """
        A fresh plugin package with C{modules} (name -> source); the
        C{implementations} (module name -> source) go beside it on sys.path.
        Returns the package's name.
        """
        FakePluginPackageTests.counter += 1
        base = Path(self.mktemp()).resolve()
        name = f"netlmm_fake_plugins_{os.getpid()}_{FakePluginPackageTests.counter}"
        package = base / name
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("")
        for module, source in modules.items():
            (package / f"{module}.py").write_text(source)
        for module, source in (implementations or {}).items():
            (base / f"{module}.py").write_text(source)
        sys.path.insert(0, str(base))
        importlib.invalidate_caches()

        def cleanup():
            sys.path.remove(str(base))
            for key in list(sys.modules):
                if key == name or key.startswith(name + ".") or key in (implementations or {}):
                    del sys.modules[key]
            registryModule._dropins.pop(name, None)
        self.addCleanup(cleanup)
        self.packageDir = package
        return name

    def strategies(self, package):
        return Registry("address-assignment strategy", IAddressAssignmentFactory,
                        IAddressAssignment, package=package)

    def test_thirdPartyStrategy(self):
        """A module in the plugin package adds a strategy, built on demand."""
        impl = f"impl_{FakePluginPackageTests.counter + 1}"
        package = self.makePackage(
            {"acme": _pluginModule("acme", impl, "AcmeAssignment.fromConfig")},
            {impl: _strategyModule("AcmeAssignment", "acme")})
        registry = self.strategies(package)
        self.assertEqual(registry.names(), ["acme"])
        self.assertNotIn(impl, sys.modules, "listing must not import the implementation")
        entry = registry.entries()[0]
        self.assertEqual((entry.module, entry.plugin, entry.description),
                         (impl, f"{package}.acme", "a test strategy"))
        part = registry.create("acme", Table({"x": 1}, "mag.assignment"), "k", reactor=None)
        self.assertEqual(type(part).__name__, "AcmeAssignment")
        self.assertEqual(part.options, {"x": 1})
        # Another kind's registry does not see it.
        planes = Registry("data plane", IDataPlaneFactory, IDataPlane, package=package)
        self.assertEqual(planes.names(), [])

    def test_duplicateNames(self):
        """Two plugins claiming one name: an error naming both modules."""
        impl = f"impl_{FakePluginPackageTests.counter + 1}"
        package = self.makePackage(
            {"vendor_a": _pluginModule("twin", impl, "AcmeAssignment.fromConfig"),
             "vendor_b": _pluginModule("twin", impl, "AcmeAssignment.fromConfig")},
            {impl: _strategyModule("AcmeAssignment", "twin")})
        registry = self.strategies(package)
        for call in (registry.names,
                     lambda: registry.create("twin", Table({}, "t"), "mag.assignment.strategy")):
            with self.assertRaises(PluginConflict) as cm:
                call()
            message = str(cm.exception)
            self.assertIn("'twin'", message)
            self.assertIn(f"{package}.vendor_a", message)
            self.assertIn(f"{package}.vendor_b", message)
            # A ConfigError, so the daemon's option parsing reports it as a usage error.
            self.assertIsInstance(cm.exception, ConfigError)
        self.assertEqual([e.name for e in registry.entries(strict=False)], ["twin", "twin"])

    def test_duplicateListed(self):
        """`netlmm plugins` lists both claims, flags the conflict, and exits 1."""
        impl = f"impl_{FakePluginPackageTests.counter + 1}"
        package = self.makePackage(
            {"vendor_a": _pluginModule("static", impl, "AcmeAssignment.fromConfig")},
            {impl: _strategyModule("AcmeAssignment", "static")})
        registry = self.strategies(package)
        registry.register("static", StaticAssignment.fromConfig)
        self.patch(registryModule, "registries", lambda: [("strategies", registry)])
        out = io.StringIO()
        self.assertEqual(describe(out), 1)
        text = out.getvalue()
        self.assertIn("CONFLICT: address-assignment strategy 'static'", text)
        self.assertIn(f"{package}.vendor_a", text)

    def test_brokenModuleSkipped(self):
        """
        A plugin module that fails to import is logged and skipped; the
        other plugins still work, and the listing names the broken module.
        """
        impl = f"impl_{FakePluginPackageTests.counter + 1}"
        package = self.makePackage(
            {"good": _pluginModule("good", impl, "AcmeAssignment.fromConfig"),
             "broken": "import netlmm\n1 / 0\n",
             "typo": "def (:\n"},
            {impl: _strategyModule("AcmeAssignment", "good")})
        registry = self.strategies(package)
        self.assertEqual(registry.names(), ["good"])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(len(self.flushLoggedErrors(SyntaxError)), 1)
        broken = dict(registry.broken())
        self.assertEqual(sorted(broken), [f"{package}.broken", f"{package}.typo"])
        self.assertIn("ZeroDivisionError", broken[f"{package}.broken"])
        self.assertIn("SyntaxError", broken[f"{package}.typo"])
        self.patch(registryModule, "registries", lambda: [("strategies", registry)])
        out = io.StringIO()
        self.assertEqual(describe(out), 1)
        self.assertIn(f"BROKEN: plugin module {package}.broken skipped: ZeroDivisionError",
                      out.getvalue())
        self.assertIn("good", out.getvalue())

    def test_pluginWithoutName(self):
        """An object that claims the interface but has no usable name is skipped."""
        package = self.makePackage({"noname": '''
from zope.interface import implementer
from netlmm.interfaces import IAddressAssignmentFactory
@implementer(IAddressAssignmentFactory)
class P:
    name = None
    def fromConfig(self, table, **context): pass
plugin = P()
'''})
        registry = self.strategies(package)
        self.assertEqual(registry.names(), [])
        [(module, reason)] = registry.broken()
        self.assertEqual(module, f"{package}.noname")
        self.assertIn("no name", reason)

    def test_pluginObjectWrittenByHand(self):
        """A vendor can provide the interface with its own object, not our helper."""
        package = self.makePackage({"byhand": '''
from zope.interface import provider
from netlmm.interfaces import IAddressAssignmentFactory
from netlmm.assignment.static import StaticAssignment

@provider(IAddressAssignmentFactory)
class ByHand:
    """Static, under another name."""
    name = "byhand"
    fromConfig = StaticAssignment.fromConfig
'''})
        registry = self.strategies(package)
        [entry] = registry.entries()
        self.assertEqual((entry.name, entry.module, entry.description),
                         ("byhand", f"{package}.byhand", "Static, under another name."))
        part = registry.create("byhand", Table({}, "t"), "k")
        self.assertIsInstance(part, StaticAssignment)

    def test_partMustProvideTheInterface(self):
        """A plugin that builds something else is a configuration error."""
        impl = f"impl_{FakePluginPackageTests.counter + 1}"
        package = self.makePackage(
            {"wrong": _pluginModule("wrong", impl, "make")},
            {impl: "def make(table, **context):\n    return object()\n"})
        registry = self.strategies(package)
        with self.assertRaises(ConfigError) as cm:
            registry.create("wrong", Table({}, "t"), "mag.assignment.strategy")
        self.assertIn("mag.assignment.strategy", str(cm.exception))
        self.assertIn("does not provide IAddressAssignment", str(cm.exception))

    def test_cacheNotWritable(self):
        """
        When dropin.cache cannot be written (read-only site-packages), the
        plugins are still found, every time.
        """
        impl = f"impl_{FakePluginPackageTests.counter + 1}"
        package = self.makePackage(
            {"acme": _pluginModule("acme", impl, "AcmeAssignment.fromConfig")},
            {impl: _strategyModule("AcmeAssignment", "acme")})

        def refuse(self, content, ext=b".new"):
            raise OSError(errno.EROFS, "Read-only file system", self.path)
        self.patch(FilePath, "setContent", refuse)
        for attempt in range(2):
            registry = self.strategies(package)
            registry.reload()
            self.assertEqual(registry.names(), ["acme"])
            self.assertIsNotNone(registry.create("acme", Table({}, "t"), "k"))
        self.assertFalse((self.packageDir / "dropin.cache").exists())

    def test_readOnlyDirectory(self):
        """
        The same with a real read-only directory, in a process that cannot
        write to it: this one when it is not root; as root (CI), a child
        without the capabilities that let root write anywhere.
        """
        impl = f"impl_{FakePluginPackageTests.counter + 1}"
        package = self.makePackage(
            {"acme": _pluginModule("acme", impl, "AcmeAssignment.fromConfig")},
            {impl: _strategyModule("AcmeAssignment", "acme")})
        os.chmod(self.packageDir, 0o555)
        self.addCleanup(os.chmod, self.packageDir, 0o755)
        script = (
            "import sys\n"
            "from netlmm.interfaces import IAddressAssignment, IAddressAssignmentFactory\n"
            "from netlmm.registry import Registry\n"
            f"r = Registry('s', IAddressAssignmentFactory, IAddressAssignment, "
            f"package={package!r})\n"
            "print(r.names(), r.broken())\n")
        argv = [sys.executable, "-c", script]
        if os.geteuid() == 0:
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                raise SkipTest("as root this needs setpriv (util-linux) to drop "
                               "CAP_DAC_OVERRIDE; it is not installed")
            argv = [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner"] + argv
        # The proof that the child cannot write there, whoever runs the test.
        probe = subprocess.run(argv[:-2] + ["-c", f"open({str(self.packageDir / 'w')!r}, 'w')"],
                               capture_output=True, text=True, timeout=60)
        self.assertIn("PermissionError", probe.stderr)
        import netlmm
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(self.packageDir.parent), str(Path(netlmm.__file__).resolve().parents[1])]))
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
        self.assertEqual((done.returncode, done.stdout.strip()), (0, "['acme'] []"),
                         done.stderr)
        self.assertFalse((self.packageDir / "dropin.cache").exists())

    def test_builtinsWithReadOnlyCache(self):
        """netlmm's own plugins need no writable dropin.cache either."""
        def refuse(self, content, ext=b".new"):
            raise OSError(errno.EACCES, "Permission denied", self.path)
        self.patch(FilePath, "setContent", refuse)
        cache = Path(importlib.import_module("netlmm.plugins").__path__[0]) / "dropin.cache"
        saved = cache.read_bytes() if cache.exists() else None
        if saved is not None:
            cache.unlink()

        def restore():
            if saved is not None and not cache.exists():
                cache.write_bytes(saved)
        self.addCleanup(restore)
        registry = Registry("data plane", IDataPlaneFactory, IDataPlane)
        registry.reload()
        self.assertIn("memory", registry.names())
        self.addCleanup(registry.reload)


def _source():
    """The repository's root (with examples/), from this file or the working directory."""
    env = os.environ.get("NETLMM_SOURCE")
    starts = [Path(env)] if env else []
    starts += [Path(__file__).resolve().parents[2], Path.cwd(), *Path.cwd().parents]
    for start in starts:
        if (start / "examples" / "netlmm-example-strategy" / "pyproject.toml").exists():
            return start
    raise SkipTest("examples/ not found: run the tests from the source tree (./dev test)")


def _canBuildOffline():
    """Whether pip can build a setuptools wheel without an isolated build environment."""
    try:
        import setuptools
    except ImportError:
        return False
    version = tuple(int(p) for p in setuptools.__version__.split(".")[:2] if p.isdigit())
    if version >= (70, 1):
        return True
    try:
        import wheel  # noqa: F401
    except ImportError:
        return False
    return True


_installed = {}


def _installExample(testCase):
    """
    pip-install examples/netlmm-example-strategy into a temporary --target
    directory once per run; returns that directory.
    """
    if "target" in _installed:
        return _installed["target"]
    if "skip" in _installed:
        raise SkipTest(_installed["skip"])
    root = _source()
    work = Path(testCase.mktemp()).resolve()
    source = work / "src"
    shutil.copytree(root / "examples" / "netlmm-example-strategy", source,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = work / "target"
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-deps",
               "--disable-pip-version-check", "--target", str(target)]
    if _canBuildOffline():
        command.append("--no-build-isolation")
    command.append(str(source))
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        # Without wheel/setuptools>=70.1 the build needs PyPI; offline, skip.
        _installed["skip"] = ("could not pip-install the example plugin package: "
                              + (result.stderr.strip().splitlines() or ["?"])[-1])
        raise SkipTest(_installed["skip"])
    _installed["target"] = target
    return target


def _run(target, *args):
    """Run python with the example installed (first on sys.path) and this netlmm."""
    import netlmm
    netlmmRoot = str(Path(netlmm.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(target), netlmmRoot])
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          env=env, timeout=120, cwd=str(target))


class ExamplePackageTests(SynchronousTestCase):
    """The third-party example strategy, pip-installed and selected by name."""

    def test_installedLayout(self):
        """
        The example ships its plugin module into netlmm/plugins/ without an
        __init__.py that would replace netlmm's packages.
        """
        target = _installExample(self)
        self.assertTrue((target / "netlmm" / "plugins" / "netlmm_example_strategy.py").exists())
        self.assertFalse((target / "netlmm" / "__init__.py").exists())
        self.assertFalse((target / "netlmm" / "plugins" / "__init__.py").exists())

    def test_magBuildsTheExampleStrategy(self):
        """A MAG config selects 'hashed'; the MAG daemon's options build it."""
        target = _installExample(self)
        config = target.parent / "mag.toml"
        config.write_text('''[mag]
address = "2001:db8:ff::1"
lma_address = "2001:db8:ff::100"
[mag.assignment]
strategy = "hashed"
prefix = "2001:db8:1::/64"
key = "secret"
[mag.attachment]
detector = "control"
socket = "mag.sock"
[mag.dataplane]
kind = "memory"
[mag.tls]
transport = "tcp"
''')
        script = f'''
import netlmm.plugins, netlmm_example_strategy.hashed as h
from netlmm.tap import mag
o = mag.Options()
o.parseOptions(["--config", {str(config)!r}])
s = o.built["strategy"]
assert type(s) is h.HashedAssignment, type(s)
service = mag.makeService(o)
print(type(s).__module__, type(s).__name__, s.addressFor(b"mn1"), s.prefix)
'''
        result = _run(target, "-c", script)
        self.assertEqual(result.returncode, 0, result.stderr)
        module, cls, address, prefix = result.stdout.split()
        self.assertEqual((module, cls, prefix),
                         ("netlmm_example_strategy.hashed", "HashedAssignment",
                          "2001:db8:1::/64"))
        self.assertTrue(address.startswith("2001:db8:1:0:"), address)

    def test_badExampleConfigNamesTheKey(self):
        """The plugin's own validation reaches the operator like netlmm's."""
        target = _installExample(self)
        config = target.parent / "bad.toml"
        config.write_text('''[mag]
address = "2001:db8:ff::1"
lma_address = "2001:db8:ff::100"
[mag.assignment]
strategy = "hashed"
prefix = "2001:db8:1::/48"
[mag.attachment]
detector = "control"
socket = "mag.sock"
[mag.dataplane]
kind = "memory"
[mag.tls]
transport = "tcp"
''')
        script = f'''
from twisted.python import usage
from netlmm.tap import mag
try:
    mag.Options().parseOptions(["--config", {str(config)!r}])
except usage.UsageError as e:
    print(e)
'''
        result = _run(target, "-c", script)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("mag.assignment.prefix: expected an IPv6 /64", result.stdout)

    def test_cliListsTheExample(self):
        """`netlmm plugins` lists the example with its module and description."""
        target = _installExample(self)
        result = _run(target, "-m", "netlmm.cli", "plugins")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        [line] = [li for li in result.stdout.splitlines() if li.split()[:1] == ["hashed"]]
        self.assertIn("netlmm_example_strategy.hashed", line)
        self.assertIn("keyed hash of the MN identifier", line)
        self.assertIn("static", result.stdout)

    def test_exampleStrategyBehaviour(self):
        """The example strategy itself: same MN, same address; it triggers static."""
        root = _source()
        path = str(root / "examples" / "netlmm-example-strategy")
        sys.path.insert(0, path)
        self.addCleanup(sys.path.remove, path)
        self.addCleanup(sys.modules.pop, "netlmm_example_strategy", None)
        self.addCleanup(sys.modules.pop, "netlmm_example_strategy.hashed", None)
        from ipaddress import IPv6Network
        from netlmm.access import AttachmentEvent
        from netlmm.wire.control import AddressMode
        hashed = importlib.import_module("netlmm_example_strategy.hashed")
        a = hashed.HashedAssignment(IPv6Network("2001:db8:1::/64"), b"k")
        b = hashed.HashedAssignment(IPv6Network("2001:db8:1::/64"), b"k")
        self.assertEqual(a.addressFor(b"mn1"), b.addressFor(b"mn1"))
        self.assertNotEqual(a.addressFor(b"mn1"), a.addressFor(b"mn2"))
        self.assertIn(a.addressFor(b"mn1"), IPv6Network("2001:db8:1::/64"))
        self.assertTrue(IAddressAssignment.providedBy(a))
        calls = []

        class Mag:
            def addressReady(self, mnId, phoa, mode):
                calls.append((mnId, phoa, mode))
        a.start(Mag())
        a.attached(AttachmentEvent("mn1"))
        self.assertEqual(calls, [(b"mn1", a.addressFor(b"mn1"), AddressMode.STATIC)])
