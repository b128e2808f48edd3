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


class ServiceTests(_Keys, SynchronousTestCase):
    """The PMIP client service with two LMAs, each of its own keys."""

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1_000_000)
        b = self.parse().built
        core = pmipTap.anchoredCore(b, None, [])
        self.pmip = PmipService(self.clock, core, (LO, 0), (LO, 0), "udp", 5436,
                                ["::1/128"], lmaPorts={LMA1: 5436, LMA2: 5436})
        self.pmip.running = True
        self.pmip.port.socket = _Socket()
        self.mag, self.magTransport = controlConnection()
        self.pmip.connections.add(self.mag)
        self.lmas = {}
        for address, home, sa in ((LMA1, "2001:db8:1::/64", SA1),
                                  (LMA2, "2001:db8:2::/64", SA2)):
            # Each LMA knows its own key only.
            lma = LmaService(self.clock, LmaCore(home, ["::1/128"], 3600), (address, 0),
                             "udp", MemoryDataPlane(), security=LmaGuard(KeyStore([sa])))
            lma.answers = []
            lma.port.send = (lambda message, destination, port=None, octets=None, lma=lma:
                             lma.answers.append((message, octets)))
            self.lmas[address] = lma

    def trigger(self, n, phoa):
        self.pmip.controlReceived(Trigger(n, b"mn%d@example.net" % n, MAG, phoa,
                                          AddressMode.STATIC), self.mag)

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
