"""
A PMIP client with two LMAs of two operators' domains, each with RFC 4285
keys of its own ([pmip.lmas.security]): each LMA's PBUs are signed with its
keys, each LMA's PBAcks are checked with its keys only (one signed with the
other LMA's key is dropped and counted), and bad per-LMA key tables are
refused naming the key. The service here is fed through its MH port (a fake
socket); the daemons as shipped are L{DaemonTests} (root: a namespace whose
loopback has both LMAs' addresses).
"""

import os
import sys
from ipaddress import IPv6Address
from pathlib import Path

from twisted.internet.task import Clock
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from netlmm.core.lma import LmaCore
from netlmm.dataplane.memory import MemoryDataPlane
from netlmm.security.auth import SecurityAssociation, withChecksum
from netlmm.security.guard import LmaGuard, PmipGuard, Verdict
from netlmm.security.keystore import KeyStore, writeKeyFile
from netlmm.service.lma import LmaService
from netlmm.service.pmip import PmipService
from netlmm.tap import pmip as pmipTap
from netlmm.test.test_services import controlConnection
from netlmm.wire import mh
from netlmm.wire.control import AddressMode, Result, Trigger, decodeControl

LO = IPv6Address("::1")
LMA1 = IPv6Address("2001:db8:f1::1")
LMA2 = IPv6Address("2001:db8:f2::1")
MAG = "2001:db8:ff::1"
#: Each operator's key for this PMIP client (per-client SAs, RFC 4285).
SA1 = SecurityAssociation(1100, bytes.fromhex("11" * 32), "hmac-sha256-128", clients=["::1"])
SA2 = SecurityAssociation(2100, bytes.fromhex("22" * 32), "hmac-sha256-128", clients=["::1"])

CONFIG = '''[pmip]
allowed_mags = ["::1"]
[pmip.tls]
transport = "tcp"
[[pmip.lmas]]
name = "lma1"
address = "[2001:db8:f1::1]:5436"
prefixes = ["2001:db8:1::/64"]
[pmip.lmas.security]
mode = "rfc4285"
keys = "lma1-keys.toml"
[[pmip.lmas]]
name = "lma2"
address = "[2001:db8:f2::1]:5436"
prefixes = ["2001:db8:2::/64"]
[pmip.lmas.security]
mode = "rfc4285"
keys = "lma2-keys.toml"
'''


class _Socket:
    """The PMIP client's MH socket: keeps what is sent, with its destination."""

    def __init__(self):
        self.sent = []

    def sendto(self, data, target):
        self.sent.append((data, IPv6Address(target[0])))
        return len(data)

    def fileno(self):
        return -1


def metric(service, name):
    """C{service}'s metric family C{name}: label value (or None) -> value."""
    for family in service.metricFamilies():
        if family.name == name:
            return {next(iter(s.labels.values()), None): s.value for s in family.samples}
    raise KeyError(name)


class _Keys:
    """A config directory with one key file per LMA."""

    def directory(self, text=CONFIG, keys=((("lma1-keys.toml"), SA1), ("lma2-keys.toml", SA2))):
        base = Path(self.mktemp()).resolve()
        base.mkdir(parents=True)
        for name, sa in keys:
            writeKeyFile(base / name, [sa])
        (base / "pmip.toml").write_text(text)
        return base

    def parse(self, text=CONFIG):
        o = pmipTap.Options()
        o.parseOptions(["--config", str(self.directory(text) / "pmip.toml")])
        return o


class _Service(_Keys):
    """The PMIP client service with two LMAs, each of its own keys."""

    #: What each LMA's key file holds.
    keys = (("lma1-keys.toml", SA1), ("lma2-keys.toml", SA2))
    #: The PMIP client's config.
    config = CONFIG

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1_000_000)
        b = pmipTap.Options()
        b.parseOptions(["--config", str(self.directory(self.config, self.keys) / "pmip.toml")])
        b = b.built
        default = None if b["security"] is None else pmipTap.pmipGuard(b["security"], 60)
        core = pmipTap.anchoredCore(b, default, [])
        self.pmip = PmipService(self.clock, core, (LO, 0), (LO, 0), "udp", 5436,
                                ["::1/128"], lmaPorts={LMA1: 5436, LMA2: 5436})
        self.pmip.running = True
        self.pmip.port.socket = _Socket()
        self.mag, self.magTransport = controlConnection()
        self.pmip.connections.add(self.mag)
        self.lmas = {}
        for address, home, (_, sa) in zip((LMA1, LMA2), ("2001:db8:1::/64", "2001:db8:2::/64"),
                                          self.keys):
            # Each LMA knows its own key only.
            lma = LmaService(self.clock, LmaCore(home, ["::1/128"], 3600), (address, 0),
                             "udp", MemoryDataPlane(), security=LmaGuard(KeyStore([sa])))
            lma.answers = []
            lma.port.send = (lambda message, destination, port=None, octets=None, lma=lma:
                             lma.answers.append((message, octets)))
            self.lmas[address] = lma

    def trigger(self, n, phoa):
        mode = AddressMode.LMA_ASSIGNED if phoa is None else AddressMode.STATIC
        self.pmip.controlReceived(Trigger(n, b"mn%d@example.net" % n, MAG, phoa, mode),
                                  self.mag)

    def pbu(self):
        """The PBU the client sent last, as the LMA it went to receives it."""
        data, destination = self.pmip.port.socket.sent.pop()
        return mh.decodeMessage(data, LO.packed, destination.packed), data, destination

    def deliver(self, data, source):
        """Datagram C{data} (checksum zero) to the client, from C{source}."""
        self.pmip.port._datagram(withChecksum(data, source, LO), (str(source), 5436, 0, 0),
                                 LO.packed, self.clock.seconds())

    def atLma(self):
        """The last PBU at the LMA it was sent to: that LMA's signed answer."""
        message, data, destination = self.pbu()
        lma = self.lmas[destination]
        lma._received(message, data, (LO, 40000), self.clock.seconds())
        ba, octets = lma.answers.pop()
        return message, destination, ba, octets

    def notifications(self):
        writes, self.magTransport.writes[:] = list(self.magTransport.writes), []
        return [decodeControl(w) for w in writes]

class ServiceTests(_Service, SynchronousTestCase):
    """Each LMA's PBUs signed and its PBAcks checked with its keys."""

    def test_eachLmaItsOwnKeys(self):
        """Each LMA gets PBUs signed with its SA and accepts them; both mobiles are bound."""
        for n, phoa, destination, sa in ((1, "2001:db8:1::1", LMA1, SA1),
                                         (2, "2001:db8:2::2", LMA2, SA2)):
            self.trigger(n, phoa)
            pbu, at, ba, octets = self.atLma()
            self.assertEqual((at, pbu.option(mh.MobilityMessageAuthentication).spi),
                             (destination, sa.spi))
            self.assertEqual(ba.status, 0)
            self.deliver(octets, destination)
            [note] = self.notifications()
            self.assertEqual((note.transaction, note.result), (n, Result.SUCCESS))
        for address in (LMA1, LMA2):
            self.assertEqual(self.lmas[address].security.counters["verified"], 1)
            self.assertEqual(len(self.lmas[address].core.bindings), 1)
        self.assertEqual(metric(self.pmip, "netlmm_pmip_pbus_signed"), {None: 2})
        self.assertEqual(metric(self.pmip, "netlmm_pmip_auth_refusals"),
                         {"no_key": 0, "dropped": 0})

    def test_pbackSignedWithTheOtherLmasKey(self):
        """
        A PBAck from LMA2 signed with LMA1's key (its SPI, or LMA2's SPI
        with LMA1's key) is dropped and counted as failing authentication,
        no Notification goes. LMA2's genuine answer arriving from LMA1's
        address answers no PBU sent to LMA1: dropped too. LMA2's genuine
        answer from LMA2 is then accepted.
        """
        self.trigger(2, "2001:db8:2::2")
        pbu, at, ba, octets = self.atLma()
        self.assertEqual(at, LMA2)
        timestamp = pbu.option(mh.MobilityMessageReplayProtection).timestamp
        now = self.clock.seconds()
        forgedSa = SecurityAssociation(SA2.spi, SA1.key, SA1.algorithm, clients=["::1"])
        for sa in (SA1, forgedSa):
            forger = LmaGuard(KeyStore([sa]))
            forged = forger.answer(ba, Verdict(None, "", sa, timestamp, None), now)
            self.deliver(forger.octets.take(forged), LMA2)
        self.deliver(octets, LMA1)
        self.assertEqual(self.notifications(), [])
        self.assertEqual(metric(self.pmip, "netlmm_pmip_auth_refusals"),
                         {"no_key": 0, "dropped": 2})
        guards = self.pmip.core.securities
        self.assertEqual([g.counters["dropped"] for g in guards], [0, 2])
        self.deliver(octets, LMA2)
        [note] = self.notifications()
        self.assertEqual((note.transaction, note.result), (2, Result.SUCCESS))
        self.assertEqual([g.counters["verified"] for g in guards], [0, 1])


    def test_revocationCheckedWithItsLmasKey(self):
        """
        RFC 5846: a BRI from LMA2 signed with LMA1's key is dropped and
        counted, the mobile stays; LMA2's own BRI revokes it, and the BRA
        goes back to LMA2 signed with LMA2's key.
        """
        self.trigger(2, "2001:db8:2::2")
        pbu, at, ba, octets = self.atLma()
        self.deliver(octets, LMA2)
        self.assertEqual(len(self.notifications()), 1)
        lma2 = self.lmas[LMA2]
        lma2.command(["deregister", "mn2@example.net"])
        bri, signed = lma2.answers.pop()
        self.assertIsInstance(bri, mh.RevocationIndication)
        forger = LmaGuard(KeyStore([SA1]))
        forged = forger.protectRevocation(bri, b"mn2@example.net", LO, self.clock.seconds())
        self.deliver(forger.octets.take(forged), LMA2)
        self.assertEqual(self.pmip.port.socket.sent, [])
        self.assertIn(b"mn2@example.net", self.pmip.core.mobiles)
        self.assertEqual(metric(self.pmip, "netlmm_pmip_revocations"),
                         {"revoked": 0, "dropped": 1})
        self.deliver(signed, LMA2)
        bra, data, destination = self.pbu()
        self.assertIsInstance(bra, mh.RevocationAcknowledgement)
        self.assertEqual((destination, bra.option(mh.MobilityMessageAuthentication).spi),
                         (LMA2, SA2.spi))
        self.assertNotIn(b"mn2@example.net", self.pmip.core.mobiles)
        self.assertEqual(metric(self.pmip, "netlmm_pmip_revocations"),
                         {"revoked": 1, "dropped": 1})


class KeyOfTheAnchorTests(_Service, SynchronousTestCase):
    """LMA2's key covers mn2 only: whether a mobile has a key depends on its LMA."""

    keys = (("lma1-keys.toml", SA1),
            ("lma2-keys.toml", SecurityAssociation(SA2.spi, SA2.key, SA2.algorithm,
                                                   clients=["::1"],
                                                   mobiles=["mn2@example.net"])))

    def test_noKeyAtItsLma(self):
        """
        mn3, anchored at LMA2, is refused 'not-authorized' and no PBU leaves
        (LMA1's key would cover it, but LMA1 is not its anchor); mn4,
        anchored at LMA1, is registered there with LMA1's key.
        """
        self.trigger(3, "2001:db8:2::3")
        [note] = self.notifications()
        self.assertEqual((note.transaction, note.result), (3, Result.NOT_AUTHORIZED))
        self.assertEqual(self.pmip.port.socket.sent, [])
        self.assertEqual(self.pmip.core.mobiles, {})
        self.trigger(4, "2001:db8:1::3")
        pbu, at, ba, octets = self.atLma()
        self.assertEqual((at, pbu.option(mh.MobilityMessageAuthentication).spi, ba.status),
                         (LMA1, SA1.spi, 0))


class _Aaa:
    """An AAA server's answers (SA, home LMA) by MN identifier, for L{AaaKeys}."""

    def __init__(self, answers):
        self.answers = answers
        self.homeLmas = {}
        self.asked = []

    def fetch(self, mnId):
        from twisted.internet.defer import succeed
        self.asked.append(mnId)
        sa, lma = self.answers[mnId]
        if lma is not None:
            self.homeLmas[mnId] = lma
        return succeed(sa)


class AaaPolicyTests(_Service, SynchronousTestCase):
    """
    policy = 'aaa': the [pmip.security.radius] answer names the LMA, whose
    own keys (lma2: a key file covering mn2 only) then decide.
    """

    keys = KeyOfTheAnchorTests.keys
    config = (CONFIG.replace('[pmip.lmas.security]\nmode = "rfc4285"\nkeys = "lma1-keys.toml"\n', "")
              + '[pmip.security]\nmode = "rfc4285"\n[pmip.security.radius]\n'
              'servers = ["[::1]:1812"]\nsecret = "s3cret"\n'
              '[pmip.anchor]\npolicy = "aaa"\n')

    def setUp(self):
        super().setUp()
        keys = self.pmip.core.security.keys
        self.aaa = keys.client = _Aaa({
            b"mn2@example.net": (SecurityAssociation(3002, b"k" * 20, mnId="mn2@example.net"),
                                 LMA2),
            b"mn3@example.net": (SecurityAssociation(3003, b"k" * 20, mnId="mn3@example.net"),
                                 LMA2),
            b"mn4@example.net": (SecurityAssociation(3004, b"k" * 20, mnId="mn4@example.net"),
                                 None)})
        keys.clock = self.clock

    def test_lmaNamedByAaaSignsWithItsKeys(self):
        """
        mn2, placed at LMA2 by AAA, is registered there with LMA2's own key;
        mn4, placed nowhere, goes to the default LMA1 with the AAA key.
        """
        for n, at, spi in ((2, LMA2, SA2.spi), (4, LMA1, 3004)):
            self.trigger(n, None)
            pbu, destination = self.pbu()[0::2]
            self.assertEqual((destination, pbu.option(mh.MobilityMessageAuthentication).spi),
                             (at, spi))
        self.assertEqual(self.aaa.asked, [b"mn2@example.net", b"mn4@example.net"])

    def test_noKeyAtTheLmaAaaNamed(self):
        """
        mn3, placed at LMA2 by AAA, has no SA in LMA2's keys: 'not-authorized'
        at once, no PBU (not a PBU never sent and a MAG left waiting).
        """
        self.trigger(3, None)
        [note] = self.notifications()
        self.assertEqual((note.transaction, note.result), (3, Result.NOT_AUTHORIZED))
        self.assertEqual(self.pmip.port.socket.sent, [])
        self.assertEqual(self.aaa.asked, [b"mn3@example.net"])


class ConfigTests(_Keys, SynchronousTestCase):
    """[pmip.lmas.security]: what it builds, and bad tables refused naming the key."""

    def assertRejected(self, text, message, keys=None):
        """Config C{text} is refused with C{message} (BASE: its directory)."""
        base = self.directory(text) if keys is None else self.directory(text, keys)
        path = base / "pmip.toml"
        with self.assertRaises(usage.UsageError) as cm:
            pmipTap.Options().parseOptions(["--config", str(path)])
        self.assertEqual(str(cm.exception),
                         f"{path}: " + message.replace("BASE", str(base)))

    def test_ownKeysPerLma(self):
        """
        Each LMA's core signs with a guard over its own key file (relative
        to the config file); with no [pmip.security], there is no default.
        """
        [service] = pmipTap.makeService(self.parse()).ordered
        (_, c1), (_, c2) = service.core.cores
        self.assertIsInstance(c1.security, PmipGuard)
        self.assertIsNot(c1.security, c2.security)
        self.assertEqual(([sa.spi for sa in c1.security.keys],
                          [sa.spi for sa in c2.security.keys]), ([1100], [2100]))
        self.assertIs(service.core.securityAt(LMA2), c2.security)
        self.assertIsNone(service.core.securityAt("2001:db8:9::1"))

    def test_defaultAndOwnKeys(self):
        """
        An LMA without a table of its own signs with [pmip.security]'s keys
        (or not at all: security = 'none'); one with mode 'none' does not sign.
        """
        text = CONFIG.replace('[pmip.lmas.security]\nmode = "rfc4285"\nkeys = "lma1-keys.toml"\n',
                              "") + '[pmip.security]\nmode = "rfc4285"\nkeys = "lma1-keys.toml"\n'
        [service] = pmipTap.makeService(self.parse(text)).ordered
        (_, c1), (_, c2) = service.core.cores
        self.assertIs(c1.security, service.core.security)
        self.assertEqual([sa.spi for sa in c1.security.keys], [1100])
        self.assertEqual([sa.spi for sa in c2.security.keys], [2100])
        self.assertEqual(service.core.securities, [c1.security, c2.security])
        unsigned = text.replace('keys = "lma2-keys.toml"\n', "").replace(
            'mode = "rfc4285"\n[pmip.security]', 'mode = "none"\n[pmip.security]')
        [service] = pmipTap.makeService(self.parse(unsigned)).ordered
        (_, c1), (_, c2) = service.core.cores
        self.assertIsNotNone(c1.security)
        self.assertIsNone(c2.security)

    def test_badOwnKeys(self):
        """Each mistake in a [pmip.lmas.security] table is named with the LMA's index."""
        where = "pmip.lmas[1].security"
        self.assertRejected(CONFIG.replace('keys = "lma2-keys.toml"\n', ""),
                            f"{where}.keys: missing: mode 'rfc4285' needs a key file or "
                            f"a [{where}.radius] table (keys from AAA)")
        self.assertRejected(CONFIG.replace('keys = "lma2-keys.toml"\n',
                                           'keys = "lma2-keys.toml"\ncolour = "red"\n'),
                            f"{where}.colour: unknown key; known keys here are keys, mode, "
                            "radius")
        self.assertRejected(CONFIG.replace('keys = "lma2-keys.toml"\n',
                                           'keys = "lma2-keys.toml"\nreplay_window = 7\n'),
                            f"{where}.replay_window: only the LMA checks PBU timestamps "
                            "against a window; a PMIP client's bound is max_clock_offset "
                            "in its main table")
        self.assertRejected(CONFIG.replace('mode = "rfc4285"\nkeys = "lma2-keys.toml"',
                                           'mode = "none"\nkeys = "lma2-keys.toml"'),
                            f"{where}.mode: keys are configured but mode is 'none'; set "
                            "mode = 'rfc4285' or remove them")
        self.assertRejected(CONFIG.replace('mode = "rfc4285"\nkeys = "lma2-keys.toml"',
                                           'mode = "sign"\nkeys = "lma2-keys.toml"'),
                            f"{where}.mode: expected one of 'none', 'rfc4285', got 'sign'")
        self.assertRejected(CONFIG, f"{where}.keys: BASE/lma2-keys.toml: no such key file",
                            keys=[("lma1-keys.toml", SA1)])

    def test_readableKeyFileRefused(self):
        """A per-LMA key file others may read is refused, naming the key and the file."""
        base = self.directory()
        os.chmod(base / "lma2-keys.toml", 0o644)
        with self.assertRaises(usage.UsageError) as cm:
            pmipTap.Options().parseOptions(["--config", str(base / "pmip.toml")])
        self.assertIn(f"pmip.lmas[1].security.keys: {base / 'lma2-keys.toml'}",
                      str(cm.exception))


class DaemonTests(SynchronousTestCase):
    """
    The daemons as shipped (the example configs, UDP, TLS to the MAG) with
    two LMAs, each knowing only its own key, in a namespace whose loopback
    holds both LMAs' addresses (root).
    """

    def setUp(self):
        from netlmm.lab import Lab
        from netlmm.test.test_daemons import copyExamples
        self.lab = Lab(testCase=self)
        self.lab.add("n")
        for address in (LMA1, LMA2):
            self.lab.addr("n", "lo", f"{address}/128")
        self.dir = Path(self.mktemp()).resolve()
        self.dir.mkdir(parents=True)
        copyExamples(self.dir)
        writeKeyFile(self.dir / "lma1-keys.toml", [SA1])
        writeKeyFile(self.dir / "lma2-keys.toml", [SA2])
        shipped = (self.dir / "lma.toml").read_text()
        for n, address in ((1, LMA1), (2, LMA2)):
            text = (shipped.replace('listen = "[::1]:5436"', f'listen = "[{address}]:5436"')
                    .replace('"lma-state.db"', f'"lma{n}-state.db"')
                    .replace('keys = "keys.toml"', f'keys = "lma{n}-keys.toml"'))
            if n == 2:
                text = (text.replace("2001:db8:1::", "2001:db8:2::")
                        .replace("2001:db8:100::/48", "2001:db8:200::/48")
                        .replace("192.0.2.", "198.51.100."))
            (self.dir / f"lma{n}.toml").write_text(text)
        pmip = (self.dir / "pmip.toml").read_text()
        security = '[pmip.security]\nmode = "rfc4285"\nkeys = "keys.toml"\n'
        for old in ('lma = "[::1]:5436"\n', security):
            self.assertIn(old, pmip)
            pmip = pmip.replace(old, "")
        for n, address in ((1, LMA1), (2, LMA2)):
            pmip += (f'\n[[pmip.lmas]]\nname = "lma{n}"\naddress = "[{address}]:5436"\n'
                     f'[pmip.lmas.security]\nmode = "rfc4285"\nkeys = "lma{n}-keys.toml"\n')
        pmip += '\n[pmip.anchor.mobiles]\n"mn2@example.net" = "lma2"\n'
        (self.dir / "pmip.toml").write_text(pmip)

    def start(self, role, config):
        return self.lab.twistd("n", role, self.dir / config, self.dir / f"{config}.log")

    def log(self, config):
        return (self.dir / f"{config}.log").read_text()

    def waitFor(self, predicate, what, timeout=30):
        from netlmm.lab.wait import waitFor
        alive = lambda: all(p.poll() is None for p, _ in self.lab.processes)
        waitFor(predicate, what, timeout, alive=alive,
                details=lambda: "\n".join(self.log(c) for c in
                                          ("lma1.toml", "lma2.toml", "pmip.toml", "mag.toml")
                                          if (self.dir / f"{c}.log").exists()))

    def ctl(self, *words):
        return self.lab.exec("n", sys.executable, "-m", "netlmm.cli", "mag-ctl", "--socket",
                             str(self.dir / "netlmm-mag1.sock"), *words, check=False)

    def test_twoLmasOwnKeys(self):
        """
        mn1 is bound at LMA1 and mn2 at LMA2, each LMA verifying PBUs with
        the one key it has; nothing is refused on either side. On the wire
        (tshark), each flow carries its LMA's SPI in both directions.
        """
        from netlmm.lab.capture import MOBILITY
        capture = self.lab.capture("n", "lo", str(self.dir / "lo.pcap"), filter="udp port 5436")
        for n in (1, 2):
            self.start("lma", f"lma{n}.toml")
        for n in (1, 2):
            self.waitFor(lambda: "LMA listening" in self.log(f"lma{n}.toml"), f"LMA{n}")
        self.start("pmip", "pmip.toml")
        self.waitFor(lambda: "MAGs connect to" in self.log("pmip.toml"), "the PMIP client")
        self.start("mag", "mag.toml")
        self.waitFor(lambda: "connected to PMIP client" in self.log("mag.toml"), "the MAG")
        for mn in ("mn1@example.net", "mn2@example.net"):
            out = self.ctl("attach", mn)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.waitFor(lambda: self.ctl("list").stdout.count("BOUND") == 2, "both bindings")
        listed = self.ctl("list").stdout
        self.assertIn("mn1@example.net BOUND 2001:db8:1::100", listed)
        self.assertIn("mn2@example.net BOUND 2001:db8:2::100", listed)
        for n in (1, 2):
            self.assertIn(f"new binding 2001:db8:{n}::100", self.log(f"lma{n}.toml"))
            self.assertNotIn("refused with", self.log(f"lma{n}.toml"))
        self.assertNotIn("failed authentication", self.log("pmip.toml"))
        self.assertNotIn("no security association", self.log("pmip.toml"))
        capture.stop(expect=4, displayFilter=MOBILITY)
        rows = set(capture.fields(MOBILITY, "mip6.mhtype", "ipv6.src", "ipv6.dst",
                                  "mip6.auth.mobility_spi", "mip6.ba.status"))
        self.assertEqual(rows, {("5", "::1", str(LMA1), "1100", ""),
                                ("6", str(LMA1), "::1", "1100", "0"),
                                ("5", "::1", str(LMA2), "2100", ""),
                                ("6", str(LMA2), "::1", "2100", "0")})
        self.assertEqual(capture.expert(MOBILITY), [])
