"""`netlmm mag-ctl` against the 'control' detector over a real UNIX socket."""

import io
import os
import shutil
import tempfile
from types import SimpleNamespace

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from netlmm.access.control import ControlDetector, clientMain
from netlmm.core.mag import NO_HOMES, State


class _Mag:
    """What the detector needs of a MAG: attached(), detached(), core.attachments."""

    def __init__(self):
        self.events = []
        self.core = SimpleNamespace(attachments={})

    def attached(self, event):
        self.events.append(("attached", event))
        self.core.attachments[event.mnId] = SimpleNamespace(
            mnId=event.mnId, state=State.TRIGGERED, phoa=event.phoa, homes=NO_HOMES)

    def detached(self, mnId):
        self.events.append(("detached", mnId))


class MagCtlTests(TestCase):

    timeout = 30

    @inlineCallbacks
    def setUp(self):
        directory = tempfile.mkdtemp(prefix="netlmm-ctl-")
        self.addCleanup(shutil.rmtree, directory, True)
        self.path = os.path.join(directory, "mag.sock")
        self.mag = _Mag()
        self.detector = ControlDetector(reactor, self.path)
        yield self.detector.start(self.mag)
        self.addCleanup(self.detector.stop)

    @inlineCallbacks
    def ctl(self, *words):
        out, err = io.StringIO(), io.StringIO()
        status = yield deferToThread(clientMain, self.path, list(words), out, err)
        return status, out.getvalue(), err.getvalue()

    @inlineCallbacks
    def test_attachListDetach(self):
        self.assertEqual((yield self.ctl("attach", "mn1@example.net", "2001:db8:1::100")),
                         (0, "attached mn1@example.net\n", ""))
        self.assertEqual((yield self.ctl("attach", "mn2")), (0, "attached mn2\n", ""))
        # list: one line per mobile, no "ok N" before them (issue 11).
        self.assertEqual((yield self.ctl("list")),
                         (0, "mn1@example.net TRIGGERED 2001:db8:1::100\nmn2 TRIGGERED -\n",
                          ""))
        self.assertEqual((yield self.ctl("detach", "mn2")), (0, "detached mn2\n", ""))
        self.assertEqual([e[0] for e in self.mag.events], ["attached", "attached", "detached"])

    @inlineCallbacks
    def test_listEmpty(self):
        self.assertEqual((yield self.ctl("list")), (0, "", ""))

    @inlineCallbacks
    def test_badPhoaNamed(self):
        """A pHoA that is not an address: the error names it in words (issue 11)."""
        self.assertEqual((yield self.ctl("attach", "mn1", "not-an-address")), (
            1, "", "netlmm mag-ctl: pHoA 'not-an-address' is not an IPv6 address\n"))
        self.assertEqual(self.mag.events, [])

    @inlineCallbacks
    def test_unknownCommand(self):
        status, out, err = yield self.ctl("frobnicate")
        self.assertEqual((status, out), (1, ""))
        self.assertEqual(err, "netlmm mag-ctl: cannot parse 'frobnicate'; expected "
                              "'attach MNID [PHOA]', 'detach MNID', 'list', "
                              "'drain [A]:P' or 'undrain [A]:P'\n")

    @inlineCallbacks
    def test_noMag(self):
        err = io.StringIO()
        status = yield deferToThread(clientMain, self.path + ".none", ["list"],
                                     io.StringIO(), err)
        self.assertEqual((status, err.getvalue()), (
            1, f"netlmm mag-ctl: cannot connect to {self.path}.none: No such file or "
               "directory\n"))
