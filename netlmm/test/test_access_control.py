"""
Tests for L{netlmm.access.control}, the MAG's control socket (`netlmm
mag-ctl`): what `list` shows of each mobile, whatever its homes. (The
length limits of its commands are in test_limits.)
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from netlmm.access.control import ControlDetector
from netlmm.core.mag import MagCore
from netlmm.test.test_core_mag import (
    HNP, LMA, MAC, MAG1, MN1, MN2, PBACK, PHOA, ROUTER, V4, MagTestMixin,
)
from netlmm.wire.control import AddressMode, Notification, Result


class ListTests(MagTestMixin, SynchronousTestCase):
    """`list`: one row per mobile, MNID STATE HOMES..."""

    def setUp(self):
        self.core = MagCore(MAG1, LMA, ipv4=True)
        self.detector = ControlDetector(Clock(), "/nonexistent")
        self.detector.mag = type("Mag", (), {"core": self.core})()

    def test_rows(self):
        core = self.core
        # A per-MN prefix and an IPv4 home address.
        core.attach(MN1, 0, linkLayerId=MAC)
        trigger = self.sent(core.addressReady(MN1, None, AddressMode.PREFIX, 0))
        self.notify(core, Notification(trigger.transaction, Result.SUCCESS, MN1,
                                       prefix=HNP, ipv4=V4, ipv4Router=ROUTER))
        # A pHoA asked for, not yet bound.
        core.attach(MN2, 0)
        self.sent(core.addressReady(MN2, PHOA, AddressMode.STATIC, 0))
        self.assertEqual(self.detector.command(["list"]),
                         ["ok 2", f"mn1@example.net BOUND {HNP} {V4}",
                          f"mn2@example.net TRIGGERED {PHOA}"])

    def test_pHoA(self):
        """A shared-prefix mobile: its pHoA, as before per-MN prefixes."""
        core = self.core
        core.attach(MN1, 0)
        trigger = self.sent(core.addressReady(MN1, None, AddressMode.LMA_ASSIGNED, 0))
        self.assertEqual(self.detector.command(["list"]), ["ok 1", "mn1@example.net TRIGGERED -"])
        self.notify(core, Notification(trigger.transaction, Result.SUCCESS, MN1, PHOA, PBACK))
        self.assertEqual(self.detector.command(["list"]), ["ok 1", f"mn1@example.net BOUND {PHOA}"])

    def test_empty(self):
        self.assertEqual(self.detector.command(["list"]), ["ok 0"])
