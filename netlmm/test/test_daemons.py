"""
The daemons as a user runs them: twistd plugins, shipped example configs,
config validation errors, --help, and `netlmm mag-ctl`.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from twisted.python import usage
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from netlmm.lab.netns import codeEnvironment
from netlmm.tap import lma as lmaTap, mag as magTap, pmip as pmipTap

TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def examples():
    """The repository's etc/netlmm, found from the working directory upwards."""
    env = os.environ.get("NETLMM_SOURCE")
    starts = [Path(env)] if env else []
    starts += [Path.cwd(), *Path.cwd().parents]
    for start in starts:
        candidate = start / "etc" / "netlmm"
        if (candidate / "lma.toml").exists():
            return candidate
    raise SkipTest("etc/netlmm not found: run the tests from the source tree (./dev test)")


def copyExamples(directory):
    """
    The shipped configs and key file in C{directory}, with the PKI `./dev
    setup` makes for them (pki/) and the key file's mode 0600 (git does not
    keep modes).
    """
    from netlmm.pki import ensureDomain
    for name in ("lma.toml", "pmip.toml", "mag.toml", "keys.toml"):
        shutil.copy(examples() / name, Path(directory) / name)
    os.chmod(Path(directory) / "keys.toml", 0o600)
    ensureDomain(Path(directory) / "pki", "example.net")


def portFree(port):
    """True when the daemons could bind [::1]:port (UDP for the LMA, TCP listen)."""
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        s = socket.socket(socket.AF_INET6, kind)
        if kind == socket.SOCK_STREAM:
            # As Twisted's listenTCP does: connections in TIME_WAIT do not count.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("::1", port))
        except OSError:
            return False
        finally:
            s.close()
    return True


class ConfigValidationTests(SynchronousTestCase):
    """A bad config stops the daemon with an error naming the key."""

    def write(self, text):
        path = Path(self.mktemp())
        path.write_text(text)
        return str(path)

    def assertRejected(self, options, text, *fragments):
        with self.assertRaises(usage.UsageError) as cm:
            options.parseOptions(["--config", self.write(text)])
        message = str(cm.exception)
        for fragment in fragments:
            self.assertIn(fragment, message)
        return message

    LMA = '''[lma]
home_prefix = "2001:db8:1::/64"
allowed_clients = ["::1"]
[lma.dataplane]
kind = "memory"
'''

    def test_lmaMinimalAccepted(self):
        """The minimal LMA config is accepted, with the documented defaults."""
        o = lmaTap.Options()
        o.parseOptions(["--config", self.write(self.LMA)])
        self.assertEqual(o.built["listen"][1], 5436)
        self.assertEqual(o.built["core"]["maxLifetime"], 3600)
        self.assertIsNone(o.built["core"]["pool"])

    def test_missingFile(self):
        with self.assertRaises(usage.UsageError) as cm:
            lmaTap.Options().parseOptions(["--config", "/nonexistent/lma.toml"])
        self.assertIn("no such file", str(cm.exception))

    def test_configRequired(self):
        with self.assertRaises(usage.UsageError) as cm:
            lmaTap.Options().parseOptions([])
        self.assertIn("--config", str(cm.exception))

    def test_invalidToml(self):
        self.assertRejected(lmaTap.Options(), "[lma\n", "not valid TOML")

    def test_missingSection(self):
        self.assertRejected(lmaTap.Options(), "[pmip]\n", "lma: missing")

    def test_missingKey(self):
        self.assertRejected(lmaTap.Options(), '[lma]\nallowed_clients = ["::1"]\n',
                            "lma.home_prefix: missing")

    def test_typoNamed(self):
        self.assertRejected(lmaTap.Options(), self.LMA.replace(
            "[lma.dataplane]", "max_lifetme = 10\n[lma.dataplane]"),
            "lma.max_lifetme: unknown key", "max_lifetime")

    def test_badAddress(self):
        self.assertRejected(lmaTap.Options(), self.LMA.replace('["::1"]', '["::1", "nonsense"]'),
                            "lma.allowed_clients", "nonsense")

    def test_badPrefix(self):
        self.assertRejected(lmaTap.Options(), self.LMA.replace(
            "2001:db8:1::/64", "2001:db8:1::1/64"), "lma.home_prefix", "IPv6 prefix")

    PMIP = '[pmip]\nlma = "[::1]:5436"\nallowed_mags = ["::1"]\n'
    #: The channel table a PMIP config needs (plain TCP, said explicitly); it
    #: comes last, after the keys the tests add to [pmip].
    PLAIN = '[pmip.tls]\ntransport = "tcp"\n'

    def test_pmipProfiles(self):
        """
        profile, ordering and access_technology build the profile the core
        speaks; the netlmm dialect is the default; the PBU source for the
        Alternate CoA rule is mh_bind's address.
        """
        from netlmm.core import profiles
        o = pmipTap.Options()
        o.parseOptions(["--config", self.write(self.PMIP + self.PLAIN)])
        self.assertIsInstance(pmipTap.profileFromBuilt(o.built), profiles.NetlmmDialect)
        o = pmipTap.Options()
        o.parseOptions(["--config", self.write(
            self.PMIP + 'profile = "rfc5213"\nordering = "sequence"\n'
            'access_technology = 4\nmh_bind = "[2001:db8::a]:0"\n' + self.PLAIN)])
        profile = pmipTap.profileFromBuilt(o.built)
        self.assertIsInstance(profile, profiles.Rfc5213Profile)
        self.assertEqual((profile.ordering, profile.accessTechnology, str(profile.source)),
                         ("sequence", 4, "2001:db8::a"))
        o = pmipTap.Options()
        o.parseOptions(["--config", self.write(self.PMIP + 'profile = "rfc5213"\n'
                                               'mh_bind = "[::]:0"\n' + self.PLAIN)])
        profile = pmipTap.profileFromBuilt(o.built)
        self.assertEqual((profile.ordering, profile.source), ("timestamp", None))

    def test_pmipProfileErrors(self):
        self.assertRejected(pmipTap.Options(),
                            self.PMIP + 'profile = "pmipv6"\n' + self.PLAIN,
                            "pmip.profile", "'netlmm', 'rfc5213'")
        self.assertRejected(pmipTap.Options(),
                            self.PMIP + 'ordering = "timestamp"\n' + self.PLAIN,
                            "pmip.ordering: the netlmm dialect orders PBUs by sequence")
        self.assertRejected(pmipTap.Options(), self.PMIP + 'profile = "rfc5213"\n'
                            'ordering = "clock"\n' + self.PLAIN, "pmip.ordering",
                            "'timestamp', 'sequence'")
        self.assertRejected(pmipTap.Options(),
                            self.PMIP + 'access_technology = 0\n' + self.PLAIN,
                            "pmip.access_technology", "from 1 to 255")

    def test_badTransport(self):
        self.assertRejected(lmaTap.Options(), self.LMA.replace(
            "[lma.dataplane]", 'transport = "tcp"\n[lma.dataplane]'),
            "lma.transport", "'udp', 'raw'")

    def test_rawNeedsPortZero(self):
        self.assertRejected(lmaTap.Options(), self.LMA.replace(
            "[lma.dataplane]", 'transport = "raw"\n[lma.dataplane]'),
            "lma.listen", "port must be 0")

    def test_lifetimeRange(self):
        self.assertRejected(lmaTap.Options(), self.LMA.replace(
            "[lma.dataplane]", 'max_lifetime = 300000\n[lma.dataplane]'),
            "lma.max_lifetime", "4 to 262140")

    def test_heartbeatDefaults(self):
        """RFC 5847's defaults when [lma.heartbeat] is left out: 60 s, 3 missing."""
        o = lmaTap.Options()
        o.parseOptions(["--config", self.write(self.LMA)])
        self.assertEqual((o.built["heartbeat"].interval, o.built["heartbeat"].missing),
                         (60.0, 3))

    def test_heartbeatValidated(self):
        """Each [lma.heartbeat] key is checked, and a typo named."""
        for table, fragments in (
                ("interval = -1", ("lma.heartbeat.interval", "0 to 3600")),
                ('interval = "often"', ("lma.heartbeat.interval", "expected a number")),
                ("missing = 0", ("lma.heartbeat.missing", "1 to 100")),
                ("missing = 2.5", ("lma.heartbeat.missing", "expected an integer")),
                ("intervall = 5", ("lma.heartbeat.intervall: unknown key", "interval"))):
            self.assertRejected(lmaTap.Options(), self.LMA + f"[lma.heartbeat]\n{table}\n",
                                *fragments)

    def test_poolOutsidePrefix(self):
        self.assertRejected(lmaTap.Options(), self.LMA + '[lma.pool]\nfirst = "2001:db8:2::1"\n'
                            'last = "2001:db8:2::9"\n', "lma.pool.first", "outside")

    def test_poolBackwards(self):
        self.assertRejected(lmaTap.Options(), self.LMA + '[lma.pool]\nfirst = "2001:db8:1::9"\n'
                            'last = "2001:db8:1::1"\n', "lma.pool", "before")

    def test_lmaRfc5213Keys(self):
        """
        Prefixes, IPv4, the RFC 5213 settings and per-peer rules reach the
        core as the config says.
        """
        o = lmaTap.Options()
        o.parseOptions(["--config", self.write(self.LMA + '''
[lma.prefixes]
pool = "2001:db8:100::/48"
length = 60
[lma.ipv4]
pool = "192.0.2.0/28"
dhcp = "relay"
[lma.rfc5213]
ordering = "sequence"
timestamp_window = 0.5
min_delay_before_bce_delete = 2
[[lma.peers]]
address = "2001:db8:f::2"
profile = "rfc5213"
heartbeat = false
[[lma.peers]]
address = "2001:db8:e::/64"
ordering = "timestamp"
revocation = false
[lma.revocation]
min_delay_bris = 2.5
max_retries = 3
''')])
        core = o.built["core"]
        self.assertEqual((str(core["prefixPool"].network), core["prefixPool"].length),
                         ("2001:db8:100::/48", 60))
        self.assertEqual((str(core["ipv4Router"]), core["ipv4PrefixLength"],
                          core["ipv4DhcpServer"], core["ipv4Pool"].size), ("192.0.2.1", 28,
                                                                           False, 13))
        self.assertEqual((core["policy"].ordering.value, core["timestampWindow"],
                          core["minDelayBeforeBceDelete"]), ("sequence", 0.5, 2))
        (n1, p1), (n2, p2) = core["peers"]
        self.assertEqual((str(n1), p1.profile.value, p1.ordering.value, p1.rfc4285,
                          p1.heartbeat), ("2001:db8:f::2/128", "rfc5213", "sequence", False, False))
        self.assertEqual((str(n2), p2.profile, p2.ordering.value, p2.heartbeat),
                         ("2001:db8:e::/64", None, "timestamp", True))
        self.assertEqual((p1.revocation, p2.revocation), (True, False))
        self.assertEqual((core["revocations"].delay, core["revocations"].retries), (2.5, 3))

    def test_lmaRfc5213KeysRefused(self):
        """Each new key's bad values are refused with an error naming it."""
        for extra, fragments in (
                ('[lma.prefixes]\npool = "2001:db8:100::1/48"\n', ("lma.prefixes.pool",)),
                ('[lma.prefixes]\npool = "2001:db8:100::/48"\nlength = 40\n',
                 ("lma.prefixes.length", "shorter")),
                ('[lma.prefixes]\npool = "2001:db8:1::/56"\n',
                 ("lma.prefixes.pool", "overlaps home_prefix")),
                ('[lma.prefixes]\nlength = 64\n', ("lma.prefixes.pool: missing",)),
                ('[lma.ipv4]\npool = "192.0.2.1/24"\n', ("lma.ipv4.pool", "IPv4 network")),
                ('[lma.ipv4]\npool = "2001:db8::/64"\n', ("lma.ipv4.pool",)),
                ('[lma.ipv4]\npool = "192.0.2.0/31"\n', ("lma.ipv4.pool", "no room")),
                ('[lma.ipv4]\npool = "192.0.2.0/24"\nrouter = "10.0.0.1"\n',
                 ("lma.ipv4.router", "outside")),
                ('[lma.ipv4]\npool = "192.0.2.0/24"\nrouter = "x"\n', ("lma.ipv4.router",)),
                ('[lma.ipv4]\npool = "192.0.2.0/24"\ndhcp = "maybe"\n', ("lma.ipv4.dhcp",)),
                ('[lma.rfc5213]\nordering = "random"\n', ("lma.rfc5213.ordering",)),
                ('[lma.rfc5213]\ntimestamp_window = 0\n', ("lma.rfc5213.timestamp_window",)),
                ('[lma.rfc5213]\nmin_delay_before_bce_delete = -1\n',
                 ("lma.rfc5213.min_delay_before_bce_delete",)),
                ('[[lma.peers]]\nprofile = "rfc5213"\n', ("lma.peers[0].address: missing",)),
                ('[[lma.peers]]\naddress = "mag1"\n', ("lma.peers[0].address", "IPv6")),
                ('[[lma.peers]]\naddress = "::2"\nprofile = "x"\n', ("lma.peers[0].profile",)),
                ('[[lma.peers]]\naddress = "::2"\nsecurity = "rfc4285"\n',
                 ("lma.peers[0].security", "mode = 'rfc4285'")),
                ('[[lma.peers]]\naddress = "::2"\nprofil = "netlmm"\n',
                 ("lma.peers[0].profil: unknown key",)),
                ('[[lma.peers]]\naddress = "::2"\nrevocation = "no"\n',
                 ("lma.peers[0].revocation",)),
                ('[lma.revocation]\nmin_delay_bris = 0\n', ("lma.revocation.min_delay_bris",)),
                ('[lma.revocation]\nmax_retries = 1.5\n', ("lma.revocation.max_retries",
                                                           "integer")),
                ('[lma.revocation]\nretries = 1\n', ("lma.revocation.retries: unknown key",)),
                ('[lma.peers]\naddress = "::2"\n', ("lma.peers", "array of tables")),
                ('[[lma.peers]]\naddress = "::2"\nheartbeat = "no"\n',
                 ("lma.peers[0].heartbeat",)),
        ):
            self.assertRejected(lmaTap.Options(), self.LMA + extra, *fragments)
        for mobiles in ('"mn1"', '[""]', '[1]'):
            self.assertRejected(lmaTap.Options(), self.LMA.replace(
                "[lma.dataplane]", f"mobiles = {mobiles}\n[lma.dataplane]"), "lma.mobiles")

    def test_unknownDataPlane(self):
        self.assertRejected(lmaTap.Options(), self.LMA.replace('"memory"', '"kernel9"'),
                            "lma.dataplane.kind", "'memory'")

    def test_badEndpoint(self):
        self.assertRejected(pmipTap.Options(), '[pmip]\nlma = "::1:5436"\nallowed_mags = ["::1"]\n',
                            "pmip.lma", "[IPv6 address]:port")

    def test_retransmitOrder(self):
        self.assertRejected(pmipTap.Options(), '[pmip]\nlma = "[::1]:5436"\nallowed_mags = ["::1"]\n'
                            '[pmip.tls]\ntransport = "tcp"\n'
                            '[pmip.retransmit]\ninitial = 4.0\nmax = 2.0\n',
                            "pmip.retransmit.max")

    def test_stateFileDirectoryMissing(self):
        """The state file's directory must exist (the daemon makes the file, not the directory)."""
        missing = os.path.abspath(self.mktemp())
        self.assertRejected(pmipTap.Options(),
                            '[pmip]\nlma = "[::1]:5436"\nallowed_mags = ["::1"]\n'
                            f'state_file = "{missing}/pmip.db"\n'
                            '[pmip.tls]\ntransport = "tcp"\n',
                            f"pmip.state_file: directory {missing} does not exist")

    def test_relativePathsFromTheConfigFile(self):
        """
        One rule for every path key of every role: a relative path is taken
        from the config file's directory, whatever the working directory.
        """
        base = Path(self.mktemp()).absolute()
        (base / "etc").mkdir(parents=True)
        elsewhere = base / "run"
        elsewhere.mkdir()
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(elsewhere)
        config = base / "etc" / "lma.toml"
        config.write_text(self.LMA.replace("[lma.dataplane]",
                                           'state_file = "state/lma.db"\n[lma.dataplane]'))
        with self.assertRaises(usage.UsageError) as cm:
            lmaTap.Options().parseOptions(["--config", str(config)])
        self.assertIn(f"lma.state_file: directory {base}/etc/state does not exist",
                      str(cm.exception))
        config = base / "etc" / "pmip.toml"
        config.write_text('[pmip]\nlma = "[::1]:5436"\nallowed_mags = ["::1"]\n'
                          'state_file = "state/pmip.db"\n[pmip.tls]\ntransport = "tcp"\n')
        with self.assertRaises(usage.UsageError) as cm:
            pmipTap.Options().parseOptions(["--config", str(config)])
        self.assertIn(f"pmip.state_file: directory {base}/etc/state does not exist",
                      str(cm.exception))
        config = base / "etc" / "mag.toml"
        config.write_text(self.MAG % ("static", 'socket = "run/mag.sock"'))
        options = magTap.Options()
        options.parseOptions(["--config", str(config)])
        self.assertEqual(options.built["detector"].path, f"{base}/etc/run/mag.sock")
        # Keys (and certificates, test_tls) follow the same rule.
        shutil.copy(examples() / "keys.toml", base / "etc" / "keys.toml")
        os.chmod(base / "etc" / "keys.toml", 0o644)
        config = base / "etc" / "lma.toml"
        config.write_text(self.LMA + '[lma.security]\nmode = "rfc4285"\nkeys = "keys.toml"\n')
        with self.assertRaises(usage.UsageError) as cm:
            lmaTap.Options().parseOptions(["--config", str(config)])
        self.assertIn(f"lma.security.keys: {base}/etc/keys.toml", str(cm.exception))

    MAG = '''[mag]
address = "2001:db8:ff::1"
lma_address = "::1"
[mag.assignment]
strategy = "%s"
[mag.attachment]
detector = "control"
%s
[mag.dataplane]
kind = "memory"
[mag.tls]
transport = "tcp"
'''

    def test_unknownStrategyListsKnown(self):
        self.assertRejected(magTap.Options(), self.MAG % ("dhcp9", 'socket = "x.sock"'),
                            "mag.assignment.strategy", "'lma-assigned'", "'static'")

    def test_detectorNeedsSocket(self):
        self.assertRejected(magTap.Options(), self.MAG % ("static", ""),
                            "mag.attachment.socket: missing")

    def test_dataplaneAddressMustBePcoa(self):
        """A MAG's data plane must end the tunnel at the MAG's own address."""
        self.assertRejected(magTap.Options(), (self.MAG % ("static", 'socket = "x.sock"')).replace(
            'kind = "memory"', 'kind = "userspace"\naddress = "2001:db8:ff::99"\n'
                               'access_interface = "acc0"'),
            "mag.dataplane.address", "must be mag.address")

    def test_colocatedListenMustBeAClient(self):
        """A co-located PMIP client the MAG would not use is a config error."""
        text = (self.MAG % ("static", 'socket = "x.sock"')) + (
            '[mag.pmip_client]\nlisten = "[::1]:6000"\nlma = "[::1]:5436"\n'
            'allowed_mags = ["::1"]\n[mag.pmip_client.tls]\ntransport = "tcp"\n')
        self.assertRejected(magTap.Options(), text, "mag.pmip_client.listen",
                            "not one of this MAG's PMIP clients")

    def test_staticAddresses(self):
        o = magTap.Options()
        o.parseOptions(["--config", self.write(
            (self.MAG % ("static", 'socket = "x.sock"')).replace(
                "[mag.attachment]", '[mag.assignment.addresses]\n"mn1" = "2001:db8:1::5"\n'
                                    "[mag.attachment]"))])
        self.assertEqual(str(o.built["strategy"].addresses[b"mn1"]), "2001:db8:1::5")

    def test_shippedExamplesValid(self):
        """
        The example configs in etc/netlmm parse as shipped, once the key file
        has mode 0600 (git does not keep modes: the copy here gets it).
        """
        base = Path(self.mktemp())
        base.mkdir()
        copyExamples(base)
        for options, name in ((lmaTap.Options(), "lma.toml"), (pmipTap.Options(), "pmip.toml"),
                              (magTap.Options(), "mag.toml")):
            options.parseOptions(["--config", str(base / name)])
            if name != "mag.toml":
                self.assertIsNotNone(options.built["security"])

    def test_readableKeyFileRefused(self):
        """A key file group or others can read stops the daemon, naming it."""
        base = Path(self.mktemp())
        base.mkdir()
        shutil.copy(examples() / "lma.toml", base / "lma.toml")
        shutil.copy(examples() / "keys.toml", base / "keys.toml")
        os.chmod(base / "keys.toml", 0o644)
        with self.assertRaises(usage.UsageError) as cm:
            lmaTap.Options().parseOptions(["--config", str(base / "lma.toml")])
        message = str(cm.exception)
        self.assertIn("lma.security.keys", message)
        self.assertIn(str(base / "keys.toml"), message)
        self.assertIn("mode 0644", message)
        self.assertIn("chmod 600", message)

    def test_helpDocumentsEveryKey(self):
        """--help names every key that the role reads."""
        cases = [
            (lmaTap.Options(), ["listen", "transport", "home_prefix", "max_lifetime",
                                "allowed_clients", "state_file",
                                "mobiles", "[lma.prefixes]", "pool", "length",
                                "[lma.ipv4]", "router", "dhcp", "[lma.rfc5213]",
                                "ordering", "timestamp_window",
                                "min_delay_before_bce_delete", "[[lma.peers]]",
                                "address", "profile", "security", "revocation",
                                "[lma.pool]", "first", "last", "[lma.security]",
                                "[lma.dataplane]", "[lma.security]", "mode", "keys",
                                "replay_window", "[lma.heartbeat]", "interval",
                                "[lma.revocation]", "min_delay_bris", "max_retries",
                                "missing", "--config"]),
            (pmipTap.Options(), ["listen", "lma", "mh_bind", "transport", "lifetime",
                                 "allowed_mags", "detach_delay", "state_file", "peers",
                                 "peer_listen", "peer_timeout", "[pmip.retransmit]",
                                 "[pmip.limits]", "max_connections",
                                 "max_connections_per_peer", "handshake_timeout",
                                 "idle_timeout", "--log-level",
                                 "initial", "max", "[pmip.security]", "max_clock_offset",
                                 "profile", "ordering", "access_technology",
                                 "[[pmip.lmas]]", "name", "address", "tunnel", "prefixes",
                                 "security", "[pmip.anchor]", "policy", "default",
                                 "[pmip.anchor.mobiles]", "[pmip.heartbeat]",
                                 "interval", "missing", "heartbeat", "--config"]),
            (magTap.Options(), ["name", "address", "lma_address", "pmip",
                                "notification_timeout", "pmip_clients", "[mag.pmip_map]",
                                "[mag.assignment]", "strategy", "dhcp-relay",
                                "[mag.access]", "managed", "autonomous",
                                "[mag.attachment]", "detector", "socket",
                                "[mag.dataplane]", "--config"]),
        ]
        for options, keys in cases:
            text = str(options)
            for key in keys:
                self.assertIn(key, text)


class DaemonTests(SynchronousTestCase):
    """The three daemons under twistd, with the shipped example configs."""

    def setUp(self):
        self.dir = Path(self.mktemp())
        self.dir.mkdir()
        copyExamples(self.dir)
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()

    def start(self, role, *options):
        log = open(self.dir / f"{role}.log", "w")
        p = subprocess.Popen(TWISTD + ["-n", "--pidfile=", f"netlmm-{role}", "--config",
                                       f"{role}.toml", *options], cwd=self.dir, stdout=log,
                             stderr=subprocess.STDOUT, env=codeEnvironment())
        self.procs.append(p)
        return p

    def log(self, role):
        return (self.dir / f"{role}.log").read_text()

    def waitFor(self, predicate, what, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            for p in self.procs:
                if p.poll() is not None:
                    self.fail(f"a daemon exited early while waiting for {what}:\n"
                              + "\n".join(self.log(r) for r in ("lma", "pmip", "mag")
                                          if (self.dir / f"{r}.log").exists()))
            time.sleep(0.05)
        self.fail(f"timed out waiting for {what}")

    def ctl(self, *words):
        out = subprocess.run([sys.executable, "-m", "netlmm.cli", "mag-ctl", "--socket",
                              str(self.dir / "netlmm-mag1.sock"), *words],
                             capture_output=True, text=True, timeout=10,
                             env=codeEnvironment())
        return out.returncode, out.stdout + out.stderr

    def test_shippedConfigsWorkOnLoopback(self):
        """
        The daemons start with the shipped configs, a mobile attached with
        `netlmm mag-ctl` gets bound with an LMA-assigned pHoA, and SIGTERM
        stops each cleanly.
        """
        if not (portFree(5436) and portFree(5437)):
            raise SkipTest("ports 5436/5437 on ::1 are in use")
        lma = self.start("lma")
        self.waitFor(lambda: "LMA listening" in self.log("lma"), "the LMA")
        # The PMIP client logs each mobile's events at debug level, asked for
        # here to see the deregistration.
        pmip = self.start("pmip", "--log-level", "debug")
        self.waitFor(lambda: "MAGs connect to" in self.log("pmip"), "the PMIP client")
        mag = self.start("mag")
        self.waitFor(lambda: "connected to PMIP client" in self.log("mag"), "the MAG")
        code, text = self.ctl("attach", "mn1@example.net")
        self.assertEqual((code, text.strip()), (0, "attached mn1@example.net"))
        self.waitFor(lambda: "BOUND" in self.ctl("list")[1], "the binding")
        code, text = self.ctl("list")
        self.assertIn("mn1@example.net BOUND 2001:db8:1::100", text)
        # Each binding's events are logged at debug level only (issue 11)...
        self.assertNotIn("new binding", self.log("lma"))
        # The shipped configs authenticate PBUs (RFC 4285): nothing was refused.
        self.assertNotIn("refused with", self.log("lma"))
        self.assertNotIn("failed authentication", self.log("pmip"))
        code, text = self.ctl("detach", "mn1@example.net")
        self.assertEqual(code, 0)
        self.waitFor(lambda: "deregistered" in self.log("pmip"), "the deregistration")
        code, text = self.ctl("frobnicate")
        self.assertEqual(code, 1)
        self.assertIn("expected 'attach MNID [PHOA]'", text)
        for p, role in ((mag, "mag"), (pmip, "pmip"), (lma, "lma")):
            p.send_signal(signal.SIGTERM)
            # twistd re-raises the signal that stopped it once shut down.
            self.assertIn(p.wait(timeout=10), (0, -signal.SIGTERM))
            self.assertIn("Server Shut Down.", self.log(role))
        self.assertFalse((self.dir / "netlmm-mag1.sock").exists())
        # ... and summed up in the LMA's statistics line (here at stop).
        self.assertIn("LMA: 0 bindings; since the last report 2 PBUs: 1 new, 0 moved, "
                      "1 deregistered, 0 rejected, 0 retransmissions; 0 expired",
                      self.log("lma"))
        # No Twisted chatter about factories and ports (issue 11).
        for role in ("lma", "pmip", "mag"):
            for noise in ("Starting factory", "Stopping factory", " starting on ",
                          "Port ", " object at 0x"):
                self.assertNotIn(noise, self.log(role))

    def test_lmaRevokes(self):
        """
        `netlmm ctl deregister` at the LMA daemon (shipped configs plus a
        [control] socket): the binding goes, the PMIP client daemon takes
        the signed RFC 5846 Binding Revocation Indication, drops the mobile
        and tells the MAG daemon, whose tunnel goes; the LMA gets its
        Binding Revocation Acknowledgement.
        """
        if not (portFree(5436) and portFree(5437)):
            raise SkipTest("ports 5436/5437 on ::1 are in use")
        with open(self.dir / "lma.toml", "a") as f:
            f.write('\n[control]\nsocket = "lma.sock"\n')
        self.start("lma", "--log-level", "debug")
        self.waitFor(lambda: "LMA listening" in self.log("lma"), "the LMA")
        self.start("pmip")
        self.waitFor(lambda: "MAGs connect to" in self.log("pmip"), "the PMIP client")
        self.start("mag")
        self.waitFor(lambda: "connected to PMIP client" in self.log("mag"), "the MAG")
        self.assertEqual(self.ctl("attach", "mn1@example.net")[0], 0)
        self.waitFor(lambda: "BOUND" in self.ctl("list")[1], "the binding")
        out = subprocess.run([sys.executable, "-m", "netlmm.cli", "ctl", "--socket",
                              str(self.dir / "lma.sock"), "deregister", "mn1@example.net"],
                             capture_output=True, text=True, timeout=10,
                             env=codeEnvironment())
        self.assertEqual((out.returncode, out.stdout.splitlines()), (0, [
            "ok 1", "deregistered mn1@example.net; Binding Revocation Indication sent to ::1"]))
        self.waitFor(lambda: "acknowledged the revocation of mn1@example.net"
                     in self.log("lma"), "the Binding Revocation Acknowledgement")
        self.assertIn("the LMA revoked mn1@example.net's binding (ADMINISTRATIVE_REASON)",
                      self.log("pmip"))
        self.waitFor(lambda: "BOUND" not in self.ctl("list")[1], "the MAG told")
        self.assertNotIn("dropped", self.log("pmip"))

    def test_colocatedPmipClient(self):
        """
        A MAG with [mag.pmip_client] runs the PMIP client in its own process
        (draft 4.2): with only the LMA and that MAG running, a mobile is bound.
        """
        if not (portFree(5436) and portFree(5437)):
            raise SkipTest("ports 5436/5437 on ::1 are in use")
        pmipText = (self.dir / "pmip.toml").read_text().replace("[pmip", "[mag.pmip_client")
        with open(self.dir / "mag.toml", "a") as f:
            f.write("\n" + pmipText)
        self.start("lma", "--log-level", "debug")
        self.waitFor(lambda: "LMA listening" in self.log("lma"), "the LMA")
        self.start("mag")
        self.waitFor(lambda: "connected to PMIP client" in self.log("mag"), "the MAG")
        self.assertIn("MAGs connect to", self.log("mag"))
        code, text = self.ctl("attach", "mn1@example.net")
        self.assertEqual(code, 0, text)
        self.waitFor(lambda: "BOUND" in self.ctl("list")[1], "the binding")
        self.assertIn("new binding 2001:db8:1::100 -> 2001:db8:ff::1", self.log("lma"))

    def test_badStateExitsNonZero(self):
        """
        State that cannot be used stops the daemon, daemonized or not, with
        one line naming the file and the record; it does not start empty.
        """
        import json
        import sqlite3
        state = (self.dir / "lma-state.db").resolve()
        db = sqlite3.connect(state)
        db.executescript(
            "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "CREATE TABLE entries (key BLOB PRIMARY KEY, record TEXT NOT NULL) WITHOUT ROWID;"
            "INSERT INTO meta VALUES ('format', '1'), ('kind', 'lma-bindings');")
        db.execute("INSERT INTO entries VALUES (?, ?)", (b"mn7", json.dumps({
            "mn": b"mn7".hex(), "pcoa": "2001:db8:ff::1", "client": "::1", "sequence": 1,
            "lifetime": 3600, "expiry": 4e9, "phoa": "zzz"})))
        db.commit()
        db.close()
        line = (f"netlmm-lma cannot start: {state}: bad record 'mn7': 'phoa': 'zzz' "
                "is not an IPv6 address")
        p = self.start("lma")
        self.assertEqual(p.wait(timeout=30), 1)
        self.assertEqual(self.log("lma").strip().splitlines()[-1], line)
        daemonized = subprocess.run(
            TWISTD + [f"--pidfile={self.dir / 'lma.pid'}", f"--logfile={self.dir / 'l.log'}",
                      "netlmm-lma", "--config", "lma.toml"], cwd=self.dir,
            capture_output=True, text=True, timeout=30, env=codeEnvironment())
        self.assertEqual((daemonized.returncode, daemonized.stderr.strip()), (1, line))
        # Another role's state is refused too.
        (self.dir / "pmip.toml").write_text((self.dir / "pmip.toml").read_text().replace(
            'state_file = "pmip-state.db"', 'state_file = "lma-state.db"'))
        p = self.start("pmip")
        self.assertEqual(p.wait(timeout=30), 1)
        self.assertEqual(self.log("pmip").strip().splitlines()[-1],
                         f"netlmm-pmip cannot start: {state}: holds lma-bindings state, "
                         "not pmip-bindings")

    def test_badConfigExitsNonZero(self):
        """twistd exits non-zero and names the key when the config is bad."""
        (self.dir / "lma.toml").write_text(
            (self.dir / "lma.toml").read_text().replace('home_prefix = "2001:db8:1::/64"',
                                                        'home_prefix = "not-a-prefix"'))
        p = self.start("lma")
        self.assertNotEqual(p.wait(timeout=30), 0)
        self.assertIn("lma.home_prefix", self.log("lma"))


def readmeDaemonCommands():
    """
    The commands of README.md's "Running the daemons" block, in order, as
    (command, expected output or None): a `# prints: TEXT` comment is the
    output the command must print.
    """
    readme = examples().parent.parent / "README.md"
    text = readme.read_text()
    section = text[text.index("## Running the daemons"):]
    section = section[:section.index("\n## ", 1)]
    commands = []
    started = False
    for line in section.splitlines():
        if line.startswith("    "):
            started = True
            command, _, comment = line.strip().partition("#")
            comment = comment.strip()
            expected = comment[len("prints:"):].strip() if comment.startswith("prints:") \
                else None
            commands.append((command.strip(), expected))
        elif started and line.strip():
            break
    return commands


class ReadmeTests(SynchronousTestCase):
    """The README's daemon section, run literally (issue 11)."""

    def test_daemonSectionAsWritten(self):
        """
        In a copy of the tree's etc/netlmm (with the PKI ./dev setup makes),
        every command of the block runs as written, in one shell, and prints
        what the README says.
        """
        if not (portFree(5436) and portFree(5437)):
            raise SkipTest("ports 5436/5437 on ::1 are in use")
        commands = readmeDaemonCommands()
        self.assertEqual(commands[0][0], "./dev setup && . .venv/bin/activate")
        root = Path(self.mktemp()).absolute()
        (root / "etc" / "netlmm").mkdir(parents=True)
        copyExamples(root / "etc" / "netlmm")
        env = codeEnvironment()
        # What `. .venv/bin/activate` gives: twistd and netlmm on the PATH.
        env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env["PATH"]])
        self.addCleanup(self.killAll, root)
        for command, expected in commands[1:]:
            p = subprocess.run(["bash", "-c", command], cwd=root, env=env,
                               capture_output=True, text=True, timeout=60)
            logs = "\n".join(f.read_text() for f in root.glob("*.log"))
            self.assertEqual(p.returncode, 0, f"{command}:\n{p.stdout}{p.stderr}\n{logs}")
            if expected is not None:
                self.assertEqual(p.stdout.strip(), expected, command)
        deadline = time.monotonic() + 10
        while list(root.glob("*.pid")) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(list(root.glob("*.pid")), [])
        self.assertFalse((root / "etc" / "netlmm" / "netlmm-mag1.sock").exists())

    def killAll(self, root):
        for pidfile in root.glob("*.pid"):
            try:
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
            except (OSError, ValueError):
                pass
