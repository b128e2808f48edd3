"""
Draining an LMA with 50 mobiles bound, as shipped (issue 10, "Drain"; draft
4.4): two LMA daemons and a PMIP client daemon with [[pmip.lmas]] (twistd,
the shipped configs edited for two LMAs, RFC 4285 and state files; memory
data planes), in one network namespace whose loopback carries each daemon's
address (the PMIP client tells its LMAs apart by address). One MAG runs in
this process (its MAG channel a TCP connection made inside the namespace)
and attaches 50 mobiles, each with a per-MN prefix; the operator runs
`netlmm ctl drain lma1` on the PMIP client's control socket.

Every mobile is registered at LMA2 with a new prefix, and the MAG keeps
each old prefix (deprecated) while the data plane sees it in use: a mobile
whose old address carries a live session keeps its old binding at LMA1
until the session ends (then C{old_prefix_idle} later) or
C{old_prefix_lifetime} runs out, whichever comes first; the others' old
bindings go C{old_prefix_idle} after the move. LMA1 ends with none. The
in-process MAG's data plane reports use as the userspace one does
(L{netlmm.dataplane.userspace.UserspaceDataPlane.lastUsed}); the live
sessions themselves, with real mobiles, are
L{netlmm.test.test_multi_lma_netns}.

L{DrainTests.test_drainWithMagDaemon} runs the MAG as a daemon too (the
shipped mag.toml, 'prefix' strategy, 'control' detector, memory data plane:
old prefixes last old_prefix_lifetime). The MAG lives in a namespace of its
own, linked to the core's, so its MAG channel comes from its address.

Root only (network namespaces); skipped with the reason elsewhere.
"""

import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.defer import fail, inlineCallbacks, succeed
from twisted.internet.error import ConnectError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from netlmm.access import AttachmentEvent
from netlmm.core.mag import MagCore
from netlmm.ctl import clientMain
from netlmm.dataplane.memory import MemoryDataPlane
from netlmm.lab import Lab
from netlmm.lab.netns import codeEnvironment
from netlmm.lab.wait import until
from netlmm.service.mag import MagService
from netlmm.test.test_crash import Strategy
from netlmm.transport.channel import Channel
from netlmm.wire.control import AddressMode

LMA1 = "2001:db8:f1::1"
LMA2 = "2001:db8:f2::1"
PMIP = "2001:db8:b::2"
MAG = "2001:db8:ff::1"
HOMES = {"lma1": "2001:db8:1::/64", "lma2": "2001:db8:2::/64"}
POOLS = {"lma1": "2001:db8:100::/48", "lma2": "2001:db8:200::/48"}
ADDRESSES = {"lma1": LMA1, "lma2": LMA2}
MAG_NET = IPv6Network("2001:db8:ff::/64")
MOBILES = [b"drain%02d@example.net" % i for i in range(50)]
#: Mobiles whose old address carries a session that ends during the test,
#: and a session that outlives the old prefix's lifetime.
ENDING = MOBILES[:5]
ENDLESS = MOBILES[5:10]
#: The MAG's [mag] old_prefix_idle and old_prefix_lifetime (seconds).
IDLE = 2.0
LIFETIME = 25.0


def examples():
    from netlmm.test.test_daemons import examples
    return examples()


def _replace(case, text, old, new):
    """C{text} with C{old} replaced by C{new}; the test fails when it is not there."""
    case.assertIn(old, text)
    return text.replace(old, new)


def lmaConfig(case, name):
    """The shipped lma.toml as LMA C{name} (lma1, lma2) of the two."""
    text = (examples() / "lma.toml").read_text()
    home = IPv6Network(HOMES[name])
    for old, new in (
            ('listen = "[::1]:5436"', f'listen = "[{ADDRESSES[name]}]:5436"'),
            ('home_prefix = "2001:db8:1::/64"', f'home_prefix = "{home}"'),
            ('allowed_clients = ["::1"]', f'allowed_clients = ["{PMIP}"]'),
            ('first = "2001:db8:1::100"', f'first = "{home[0x100]}"'),
            ('last = "2001:db8:1::ffff"', f'last = "{home[0xffff]}"'),
            ('pool = "2001:db8:100::/48"', f'pool = "{POOLS[name]}"')):
        text = _replace(case, text, old, new)
    return text


def pmipConfig(case):
    """The shipped pmip.toml with two LMAs, the MAG channel plain TCP, a control socket."""
    text = (examples() / "pmip.toml").read_text()
    lmas = "".join(
        f'[[pmip.lmas]]\nname = "{name}"\naddress = "[{ADDRESSES[name]}]:5436"\n'
        f'prefixes = ["{HOMES[name]}", "{POOLS[name]}"]\n' for name in ("lma1", "lma2"))
    for old, new in (
            ('listen = "[::1]:5437"', f'listen = "[{PMIP}]:5437"'),
            ('lma = "[::1]:5436"\n', ""),
            ('mh_bind = "[::1]:0"', f'mh_bind = "[{PMIP}]:0"'),
            ('allowed_mags = ["::1"]', f'allowed_mags = ["{MAG}"]'),
            ('[pmip.tls]\ntransport = "tls"\n', '[pmip.tls]\ntransport = "tcp"\n'),
            ('ca = "pki/ca.pem"\n', ""),
            ('certificate = "pki/pmip-pmip1.pem"\n', ""),
            ('key = "pki/pmip-pmip1.key"\n', "")):
        text = _replace(case, text, old, new)
    return (text + lmas + '[pmip.anchor]\npolicy = "static"\ndefault = "lma1"\n'
)


def magConfig(case, socketPath, lifetime):
    """
    The shipped mag.toml at MAG, per-MN prefixes on the access bridge acc0,
    the channel plain TCP, the old prefixes kept C{lifetime} seconds.
    """
    text = (examples() / "mag.toml").read_text()
    for old, new in (
            ('address = "2001:db8:ff::1"', f'address = "{MAG}"'),
            ('lma_address = "::1"', f'lma_address = "{LMA1}"'),
            ('pmip = "[::1]:5437"', f'pmip = "[{PMIP}]:5437"'),
            ('access_technology = "ethernet"\n',
             f'access_technology = "ethernet"\nold_prefix_lifetime = {lifetime}\n'),
            ('strategy = "lma-assigned"', 'strategy = "prefix"\n[mag.access]\ninterface = "acc0"'),
            ('socket = "netlmm-mag1.sock"', f'socket = "{socketPath}"'),
            ('[mag.tls]\ntransport = "tls"\n', '[mag.tls]\ntransport = "tcp"\n'),
            ('ca = "pki/ca.pem"\n', ""),
            ('certificate = "pki/mag-MAG1.pem"\n', ""),
            ('key = "pki/mag-MAG1.key"\n', ""),
            ('pmip_name = "pmip1"\n', "")):
        text = _replace(case, text, old, new)
    return text


def keysConfig(case):
    """The shipped keys.toml, its client SA for the PMIP client's address."""
    return _replace(case, (examples() / "keys.toml").read_text(), 'client = "::1"',
                    f'client = "{PMIP}"')


class PrefixStrategy(Strategy):
    """Every mobile asks for a per-MN prefix (draft E.3), as with the shipped 'prefix' strategy."""

    name = "drain-test"

    def attached(self, event):
        self.mag.addressReady(event.mnId, None, AddressMode.PREFIX)


class WatchingPlane(MemoryDataPlane):
    """
    The memory data plane, telling when a home was last used as the
    userspace one does: the homes in C{live} are in use now; any other was
    last used when it left C{live} or was first asked about.
    """

    def __init__(self):
        super().__init__()
        self.live = set()
        self.last = {}

    def lastUsed(self, home):
        if home in self.live:
            self.last[home] = reactor.seconds()
        return self.last.setdefault(home, reactor.seconds())

    def ended(self, home):
        """The session on C{home} ends now."""
        self.lastUsed(home)
        self.live.discard(home)


@implementer(IStreamClientEndpoint)
class NetnsEndpoint:
    """
    A TCP connection made inside a lab's namespace from C{source} (the MAG's
    address, which the PMIP client allows), then run by this reactor.
    """

    def __init__(self, lab, node, source, address, port):
        self.lab, self.node, self.address, self.port = lab, node, str(address), port
        self.source = str(source)

    def connect(self, factory):
        try:
            sock = self.lab.inNetns(self.node, socket.create_connection,
                                    (self.address, self.port), 5, (self.source, 0))
        except OSError as e:
            return fail(ConnectError(string=str(e)))
        built = []

        class Capture(Factory):
            def buildProtocol(self, addr):
                built.append(factory.buildProtocol(addr))
                return built[-1]
        sock.setblocking(False)
        reactor.adoptStreamConnection(sock.fileno(), socket.AF_INET6, Capture())
        sock.close()
        return succeed(built[0])


class NetnsChannel(Channel):
    """The plain TCP MAG channel, connected from C{source} inside the lab's namespace."""

    def __init__(self, lab, node, source):
        super().__init__("tcp")
        self.lab, self.node, self.source = lab, node, source

    def clientEndpoint(self, reactor, address, port, expectRole="pmip", timeout=5):
        return NetnsEndpoint(self.lab, self.node, self.source, address, port)


class DrainTests(TestCase):
    """`netlmm ctl drain lma1` with 50 mobiles bound through the daemons as shipped."""

    timeout = 240

    @inlineCallbacks
    def setUp(self):
        self.dir = Path(self.mktemp()).resolve()
        # Short: a UNIX socket's path must fit in 108 bytes. Removed after
        # the lab stopped the daemons (cleanups run last added, first).
        self.sockets = Path(tempfile.mkdtemp(prefix="netlmm-drain-"))
        self.addCleanup(shutil.rmtree, self.sockets, True)
        self.lab = lab = Lab(self)
        lab.add("core")
        for address in (LMA1, LMA2, PMIP):
            lab.addr("core", "lo", f"{address}/128")
        # The MAG's namespace: its address on the link to the core (the
        # source of its MAG channel), an access bridge for a MAG daemon.
        lab.add("mag")
        lab.link("mag", "up0", "core", "mag0")
        lab.addr("mag", "up0", f"{MAG}/64")
        lab.addr("core", "mag0", f"{MAG_NET[0xfe]}/64")
        lab.exec("mag", "ip", "-6", "route", "add", "2001:db8::/32", "via", str(MAG_NET[0xfe]))
        lab.bridge("mag", "acc0")
        self.logs, self.procs = {}, {}
        for role, text in (("lma1", lmaConfig(self, "lma1")), ("lma2", lmaConfig(self, "lma2")),
                           ("pmip", pmipConfig(self))):
            d = self.dir / role
            d.mkdir(parents=True)
            (d / f"{role}.toml").write_text(
                f'{text}[control]\nsocket = "{self.controlSocket(role)}"\n')
            (d / "keys.toml").write_text(keysConfig(self))
            os.chmod(d / "keys.toml", 0o600)
            self.logs[role] = d / f"{role}.log"
            self.procs[role] = lab.start("core", [
                sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
                "-n", "--pidfile=", "netlmm-" + role.rstrip("12"), "--config", f"{role}.toml"],
                self.logs[role], cwd=d)
        for role in self.procs:
            # The control socket is the last thing a daemon opens.
            yield until(lambda: self.controlSocket(role).exists() or self.exited(role),
                        30, f"{role} started", interval=0.05)
            self.assertFalse(self.exited(role), self.log(role))

    @inlineCallbacks
    def startMag(self, ipv4=False):
        """The MAG, connected; C{ipv4}: it asks an IPv4 home address for each mobile."""
        self.plane = WatchingPlane()
        self.mag = MagService(
            reactor, MagCore(MAG, LMA1, ipv4=ipv4, oldLifetime=LIFETIME, idleRelease=IDLE),
            (PMIP, 5437), PrefixStrategy(), self.plane, name="MAG1",
            channel=NetnsChannel(self.lab, "mag", MAG))
        yield self.mag.startService()
        self.addCleanup(self.mag.stopService)
        yield until(lambda: self.mag.connection is not None, 20, "the MAG's connection")

    def controlSocket(self, role):
        """The path of C{role}'s control socket."""
        return self.sockets / f"{role}.sock"

    def log(self, role):
        return self.logs[role].read_text()

    def exited(self, role):
        return self.procs[role].poll() is not None

    def ctl(self, role, *words):
        """The reply rows of a command on C{role}'s control socket."""
        out = io.StringIO()
        clientMain(str(self.controlSocket(role)), list(words), out=out)
        return out.getvalue().splitlines()

    def bindings(self, role):
        """MN identifier -> its home (the rows of `netlmm ctl list` at C{role})."""
        rows = self.ctl(role, "list")
        self.assertTrue(rows[0].startswith("ok "), rows)
        return {r.split()[0]: r.split()[3] for r in rows[1:]}

    def attachment(self, mnId):
        return self.mag.core.attachment(mnId)

    @inlineCallbacks
    def test_drainFiftyMobiles(self):
        """
        All 50 move to LMA2 with new prefixes; each old binding stays at
        LMA1 while its prefix is in use, until old_prefix_idle after its
        last use or old_prefix_lifetime; LMA1 ends with none.
        """
        yield self.startMag()
        began = time.monotonic()
        for m in MOBILES:
            self.mag.attached(AttachmentEvent(m, None))
        yield until(lambda: all(getattr(self.attachment(m), "state", None) == "BOUND"
                                for m in MOBILES), 60, "the 50 mobiles bound")
        attach = time.monotonic() - began
        old = {m: self.attachment(m).homes.prefix for m in MOBILES}
        atLma1 = self.bindings("lma1")
        self.assertEqual(atLma1, {m.decode(): str(old[m]) for m in MOBILES})
        self.assertEqual(self.bindings("lma2"), {})
        self.assertTrue(all(IPv6Network(p).subnet_of(IPv6Network(POOLS["lma1"]))
                            for p in atLma1.values()))
        for m in ENDING + ENDLESS:
            self.plane.live.add(old[m])

        # The command over the control socket, as `netlmm ctl` sends it
        # (timed without the client program's start).
        started = time.monotonic()
        rows = self.ctl("pmip", "drain", "lma1")
        self.assertEqual(rows[0], "ok 50")
        self.assertEqual(sorted(rows[1:]), sorted(f"{m.decode()} MOVING lma1 -> lma2"
                                                  for m in MOBILES))
        yield until(lambda: all(self.attachment(m).lma == IPv6Address(LMA2)
                                for m in MOBILES), 60, "every mobile re-anchored at the MAG")
        reanchored = time.monotonic() - started
        new = {m: self.attachment(m).homes.prefix for m in MOBILES}
        self.assertEqual(self.bindings("lma2"), {m.decode(): str(new[m]) for m in MOBILES})
        self.assertTrue(all(p.subnet_of(IPv6Network(POOLS["lma2"])) for p in new.values()))
        self.assertEqual({m: [o.prefix for o in self.mag.oldHomes(m)] for m in MOBILES},
                         {m: [old[m]] for m in MOBILES})
        print(f"\ndrain of 50 mobiles: all at LMA2 and re-anchored at the MAG "
              f"{reanchored:.2f} s after the command; baseline (same run): their "
              f"attachment at LMA1 {attach:.2f} s; ratio {reanchored / attach:.2f}")

        # The idle old homes go old_prefix_idle after the move; the live ones stay.
        live = {m.decode(): str(old[m]) for m in ENDING + ENDLESS}
        yield until(lambda: self.bindings("lma1") == live, 30,
                    "only the old bindings in use left at LMA1", interval=0.1)
        # The MAG keeps the tunnels of the old prefixes in use to LMA1.
        self.assertEqual({p: self.plane.tunnels.get(p) for p in old.values()},
                         {old[m]: IPv6Address(LMA1) if m in ENDING + ENDLESS else None
                          for m in MOBILES})
        # (The PMIP client forgets an old binding once LMA1 acknowledged
        # its deregistration, a moment after LMA1 dropped it.)
        yield until(lambda: self.ctl("pmip", "lmas") == [
            "ok 2", f"lma1 [{LMA1}]:5436 10 drained", f"lma2 [{LMA2}]:5436 50 serving"],
            10, "the PMIP client holding 10 mobiles at LMA1", interval=0.1)
        # Sessions ending: those old bindings go old_prefix_idle later.
        for m in ENDING:
            self.plane.ended(old[m])
        ended = time.monotonic()
        endless = {m.decode(): str(old[m]) for m in ENDLESS}
        yield until(lambda: self.bindings("lma1") == endless, 30,
                    "the ended sessions' old bindings deregistered", interval=0.1)
        self.assertGreaterEqual(time.monotonic() - ended, IDLE - 0.5)
        # Still in use: they stay until old_prefix_lifetime after the move.
        self.assertLess(time.monotonic() - started, LIFETIME,
                        "the test ran too slowly to see the lifetime")
        yield until(lambda: self.bindings("lma1") == {}, LIFETIME + 30,
                    "the last old bindings gone at the end of old_prefix_lifetime",
                    interval=0.2)
        self.assertGreaterEqual(time.monotonic() - started, LIFETIME - 1)
        self.assertEqual(self.bindings("lma2"), {m.decode(): str(new[m]) for m in MOBILES})
        self.assertEqual({m: self.mag.oldHomes(m) for m in MOBILES}, {m: () for m in MOBILES})
        # What the operator sees with the shipped command.
        lmas = subprocess.run(
            [sys.executable, "-c", "from netlmm.cli import main; main()", "ctl", "--socket",
             str(self.controlSocket("pmip")), "lmas"],
            capture_output=True, text=True, env=codeEnvironment(), timeout=30)
        self.assertEqual((lmas.returncode, lmas.stdout.splitlines(), lmas.stderr),
                         (0, ["ok 2", f"lma1 [{LMA1}]:5436 0 drained",
                              f"lma2 [{LMA2}]:5436 50 serving"], ""))

    @inlineCallbacks
    def test_ipv4MobilesStay(self):
        """
        Mobiles with an IPv4 home address (RFC 5844) do not move (an IPv4
        address cannot be deprecated as a prefix can): `drain` lists each
        with the reason and leaves it at LMA1, `move` is refused naming it;
        LMA1 stays drained for new mobiles.
        """
        yield self.startMag(ipv4=True)
        mobiles = MOBILES[:3]
        for m in mobiles:
            self.mag.attached(AttachmentEvent(m, None))
        yield until(lambda: all(getattr(self.attachment(m), "state", None) == "BOUND"
                                for m in mobiles), 30, "the mobiles bound")
        ipv4 = {m: self.attachment(m).homes.ipv4 for m in mobiles}
        before = self.bindings("lma1")
        self.assertEqual(sorted(before), sorted(m.decode() for m in mobiles))
        why = "has the IPv4 home address {}, which cannot be deprecated as an IPv6 prefix can"
        self.assertEqual(self.ctl("pmip", "drain", "lma1"),
                         ["ok 3"] + [f"{m.decode()} STAYS {m.decode()} " + why.format(ipv4[m])
                                     for m in mobiles])
        m = mobiles[0].decode()
        self.assertEqual(self.ctl("pmip", "move", m, "lma2"),
                         [f"error {m} " + why.format(ipv4[mobiles[0]])])
        self.assertEqual(self.ctl("pmip", "lmas"),
                         ["ok 2", f"lma1 [{LMA1}]:5436 3 drained",
                          f"lma2 [{LMA2}]:5436 0 serving"])
        self.assertEqual(self.bindings("lma1"), before)
        self.assertEqual(self.bindings("lma2"), {})
        self.assertTrue(all(self.attachment(m).lma == IPv6Address(LMA1)
                            and self.mag.oldHomes(m) == () for m in mobiles))

    @inlineCallbacks
    def test_drainWithMagDaemon(self):
        """
        The MAG a daemon too (twistd netlmm-mag, the shipped mag.toml with the
        'prefix' strategy and the 'control' detector, memory data plane): 50
        mobiles attached over its control socket, `drain lma1`: all move to
        LMA2; the memory data plane cannot tell whether an old prefix is in
        use, so every old binding stays at LMA1 until old_prefix_lifetime
        after the move, then goes.
        """
        lifetime = 8
        d = self.dir / "mag"
        d.mkdir()
        (d / "mag.toml").write_text(magConfig(self, self.controlSocket("mag"), lifetime))
        self.logs["mag"] = d / "mag.log"
        self.procs["mag"] = self.lab.start("mag", [
            sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
            "-n", "--pidfile=", "netlmm-mag", "--config", "mag.toml"], self.logs["mag"], cwd=d)
        yield until(lambda: self.controlSocket("mag").exists() or self.exited("mag"), 30,
                    "the MAG started", interval=0.05)
        self.assertFalse(self.exited("mag"), self.log("mag"))
        macs = [f"02:00:00:00:01:{i:02x}" for i in range(50)]
        for mac in macs:
            self.assertEqual(self.ctl("mag", "attach", mac), [f"ok attached {mac}"])
        yield until(lambda: len(self.bindings("lma1")) == len(macs), 60,
                    "the 50 mobiles bound at LMA1", interval=0.1)
        old = self.bindings("lma1")
        self.assertEqual(sorted(old), macs)

        started = time.monotonic()
        rows = self.ctl("pmip", "drain", "lma1")
        self.assertEqual(rows, ["ok 50"] + [f"{mac} MOVING lma1 -> lma2" for mac in macs])
        yield until(lambda: len(self.bindings("lma2")) == len(macs), 60,
                    "every mobile registered at LMA2", interval=0.05)
        moved = time.monotonic() - started
        new = self.bindings("lma2")
        self.assertTrue(all(IPv6Network(new[mac]).subnet_of(IPv6Network(POOLS["lma2"]))
                            for mac in macs))
        # The MAG learnt the new prefixes (REANCHORED): its mobiles are bound there.
        yield until(lambda: self.log("mag").count(" re-anchored at ") == len(macs), 30,
                    "the MAG re-anchored every mobile", interval=0.1)
        self.assertEqual(self.bindings("lma1"), old)
        yield until(lambda: self.bindings("lma1") == {}, lifetime + 30,
                    "the old bindings gone at the end of old_prefix_lifetime", interval=0.2)
        self.assertGreaterEqual(time.monotonic() - started, lifetime - 1)
        self.assertEqual(self.bindings("lma2"), new)
        print(f"\ndrain of 50 mobiles of a MAG daemon: all at LMA2 {moved:.2f} s after the "
              f"command; old bindings at LMA1 gone {time.monotonic() - started:.1f} s after it "
              f"(old_prefix_lifetime {lifetime} s)")
