"""
The 'hostapd' attachment detector against a fake hostapd control socket (a
real UNIX datagram socket speaking hostapd's protocol), without root. The
real hostapd on simulated radios is in test_wifi_netns.
"""

import os
import tempfile

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from netlmm.access import getDetectors
from netlmm.access.hostapd import HostapdDetector, StartupError, parseArguments
from netlmm.config import ConfigError, Table
from netlmm.interfaces import IAttachmentDetector
from netlmm.lab.fakes import FakeHostapd, RecordingMag

STA = "02:00:00:00:02:00"
OTHER = "02:00:00:00:03:00"


class _Access:
    """An access link that counts the RAs the detector asks for."""

    def __init__(self):
        self.newPorts = 0
        self.users = 0

    def start(self):
        self.users += 1

    def stop(self):
        self.users -= 1

    def newPort(self):
        self.newPorts += 1


class HostapdDetectorTests(SynchronousTestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="hapd")
        self.path = os.path.join(self.dir, "wlan0")
        self.hostapd = FakeHostapd(self.path)
        self.addCleanup(self.hostapd.close)
        self.reactor = MemoryReactorClock()
        self.mag = RecordingMag()
        self.access = _Access()
        self.detector = HostapdDetector(self.reactor, self.path, access=self.access)
        self.addCleanup(self.detector.stop)

    def pump(self):
        """Let hostapd answer and the detector read until both are quiet."""
        for _ in range(50):
            served = self.hostapd.serve()
            reader = self.detector._reader
            if reader is not None:
                reader.doRead()
            if not served:
                return

    def start(self):
        d = self.detector.start(self.mag)
        self.pump()
        self.assertIsNone(self.successResultOf(d))

    def test_interface(self):
        """It is an attachment detector, registered as 'hostapd'."""
        verifyObject(IAttachmentDetector, self.detector)
        self.assertIn("hostapd", getDetectors().names())

    def test_startAttachesAndListsStations(self):
        """Start: ATTACH, then the stations already associated attach."""
        self.hostapd.stations = [STA, OTHER]
        self.start()
        self.assertEqual(self.hostapd.commands[:2], ["ATTACH", "STA-FIRST"])
        self.assertEqual(self.mag.kinds("attached"),
                         [("attached", STA.encode(), STA), ("attached", OTHER.encode(), OTHER)])
        self.assertTrue(self.detector.connected)

    def test_associationAttaches(self):
        """AP-STA-CONNECTED attaches the station (MN id: its MAC), with an RA at once."""
        self.start()
        self.hostapd.associate(STA)
        self.pump()
        self.assertEqual(self.mag.calls, [("attached", STA.encode(), STA)])
        self.assertEqual(self.access.newPorts, 1)
        self.hostapd.disassociate(STA)
        self.pump()
        self.assertEqual(self.mag.calls[-1], ("detached", STA.encode()))
        self.assertEqual(self.detector.stations, {})

    def test_reassociationIsANewAttachment(self):
        """A station that associates again without leaving first is detached, then attached."""
        self.start()
        self.hostapd.associate(STA)
        self.hostapd.associate(STA)
        self.pump()
        self.assertEqual(self.mag.calls, [("attached", STA.encode(), STA),
                                          ("detached", STA.encode()),
                                          ("attached", STA.encode(), STA)])

    def test_badEventsIgnored(self):
        """Events without a valid MAC, and unknown events, change nothing."""
        self.start()
        self.hostapd.event("AP-STA-CONNECTED not-a-mac")
        self.hostapd.event("AP-STA-CONNECTED")
        self.hostapd.event("AP-STA-DISCONNECTED 02:00:00:00:02")
        self.hostapd.event("WPS-PBC-ACTIVE")
        self.pump()
        self.assertEqual(self.mag.calls, [])
        self.assertEqual(self.detector.counters["ignored"], 3)

    def test_unknownStationLeaving(self):
        """A station the detector never attached leaving is not reported."""
        self.start()
        self.hostapd.event(f"AP-STA-DISCONNECTED {OTHER}")
        self.pump()
        self.assertEqual(self.mag.calls, [])

    def test_transition(self):
        """An accepted BSS transition names the target AP; a refused one is ignored."""
        seen = []
        self.detector.transition = lambda mnId, target: seen.append((mnId, target))
        self.start()
        self.hostapd.event(f"BSS-TM-RESP {STA} dialog_token=2 status_code=6 "
                           "bss_termination_delay=0")
        self.hostapd.event(f"BSS-TM-RESP {STA} dialog_token=3 status_code=0 "
                           "bss_termination_delay=0 target_bssid=02:00:00:00:01:00")
        self.pump()
        self.assertEqual(seen, [(STA.encode(), "02:00:00:00:01:00")])

    def test_parseArguments(self):
        self.assertEqual(parseArguments("02:00:00:00:02:00 a=1 b= c"),
                         {None: ["02:00:00:00:02:00", "c"], "a": "1", "b": ""})

    def test_missingSocket(self):
        """No socket at the path: a start-up error naming it."""
        self.hostapd.close()
        with self.assertRaises(StartupError) as caught:
            self.detector.start(self.mag)
        self.assertEqual(str(caught.exception),
                         f"hostapd control socket {self.path}: no such socket; is hostapd "
                         "running, with ctrl_interface naming that directory?")
        self.assertEqual(self.access.users, 0)

    def test_silentHostapd(self):
        """A socket that never answers ATTACH: a start-up error after the timeout."""
        self.hostapd.answering = False
        d = self.detector.start(self.mag)
        self.pump()
        self.assertNoResult(d)
        self.reactor.advance(2.0)
        failure = self.failureResultOf(d, StartupError)
        self.assertEqual(str(failure.value),
                         f"hostapd control socket {self.path}: no answer to ATTACH within "
                         "2 s; is hostapd running?")

    def test_restart(self):
        """
        hostapd restarts: the detector notices (PING fails), reconnects, and
        detaches the stations that are gone, attaches the new ones.
        """
        self.start()
        self.hostapd.associate(STA)
        self.pump()
        self.reactor.advance(1.0)
        self.pump()
        self.assertEqual(self.hostapd.commands[-1], "PING")
        self.hostapd.close()
        self.reactor.advance(1.0)  # the PING fails: ECONNREFUSED / ENOENT
        self.assertFalse(self.detector.connected)
        self.reactor.advance(0.5)  # no socket yet: retry later
        self.hostapd = FakeHostapd(self.path)
        self.hostapd.stations = [OTHER]
        self.reactor.advance(0.5)
        self.pump()
        self.assertTrue(self.detector.connected)
        self.assertEqual(self.detector.counters["reconnects"], 1)
        self.assertEqual(self.mag.calls, [("attached", STA.encode(), STA),
                                          ("detached", STA.encode()),
                                          ("attached", OTHER.encode(), OTHER)])

    def test_hungHostapd(self):
        """A hostapd that stops answering PING is given up after two intervals."""
        self.start()
        self.hostapd.answering = False
        for _ in range(3):
            self.reactor.advance(1.0)
            self.pump()
        self.assertFalse(self.detector.connected)


class HostapdConfigTests(SynchronousTestCase):
    def build(self, data):
        table = Table(data, "mag.attachment")
        return getDetectors().create("hostapd", table, "mag.attachment.detector",
                                     reactor=MemoryReactorClock())

    def test_config(self):
        d = self.build({"control": "/run/hostapd/wlan0", "ping_interval": 2})
        self.assertEqual((d.path, d.pingInterval, d.retryInterval),
                         ("/run/hostapd/wlan0", 2, 0.5))

    def test_controlRequired(self):
        with self.assertRaises(ConfigError) as caught:
            self.build({})
        self.assertIn("mag.attachment.control", str(caught.exception))

    def test_unknownKey(self):
        with self.assertRaises(ConfigError) as caught:
            self.build({"control": "/x", "ping": 1})
        self.assertIn("ping", str(caught.exception))
