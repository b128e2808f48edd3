"""
`netlmm ctl`: the LMA's and PMIP client's local command socket ([control],
netlmm.ctl), driven by the real client (in a thread, as the command runs)
against a domain on loopback.
"""

import io
import os
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from netlmm import ctl
from netlmm.config import ConfigError, Table
from netlmm.core.lma import BindingState
from netlmm.ctl import ControlService, clientMain, controlConfig
from netlmm.lab.wait import until
from netlmm.test.test_metrics import MOBILES, attachAndHandOff, startDomain


class ControlSocketTests(TestCase):
    """Two mobiles bound at MAG1 and one moved to MAG2, then listed and shown."""

    timeout = 30

    @inlineCallbacks
    def setUp(self):
        self.domain = yield startDomain(self)
        # A short directory: UNIX socket paths are limited to 107 octets.
        directory = tempfile.mkdtemp(prefix="ctl")
        self.addCleanup(os.rmdir, directory)
        self.paths = {}
        for role, service in (("lma", self.domain.lma), ("pmip", self.domain.pmip)):
            path = os.path.join(directory, f"{role}.sock")
            control = ControlService(reactor, path, service)
            yield control.startService()
            self.addCleanup(control.stopService)
            self.paths[role] = path
        yield attachAndHandOff(self.domain)

    @inlineCallbacks
    def ctl(self, role, *words):
        """(exit status, output lines) of `netlmm ctl --socket ROLE WORDS`."""
        out = io.StringIO()
        status = yield deferToThread(clientMain, self.paths[role], list(words), out=out)
        return status, out.getvalue().splitlines()

    @inlineCallbacks
    def test_lmaList(self):
        status, lines = yield self.ctl("lma", "list")
        self.assertEqual(status, 0)
        self.assertEqual(lines[0], "ok 2")
        mag1, mag2 = (m.core.address for m in self.domain.mags)
        phoas = {m: self.domain.lma.core.bindingFor(m).homes[0] for m in MOBILES}
        self.assertEqual(sorted(lines[1:]), [
            f"mn1@example.net REGISTERED {mag2} {phoas[MOBILES[0]]}",
            f"mn2@example.net REGISTERED {mag1} {phoas[MOBILES[1]]}"])

    @inlineCallbacks
    def test_lmaShowByEachKey(self):
        b = self.domain.lma.core.bindingFor(MOBILES[1])
        for key in ("mn2@example.net", str(b.homes[0]), str(b.pcoa)):
            status, lines = yield self.ctl("lma", "show", key)
            self.assertEqual(status, 0, key)
            self.assertEqual(lines[0], "ok 9", key)
            self.assertEqual(lines[1:5], ["mn-id mn2@example.net", "state REGISTERED",
                                          f"homes {b.homes[0]}", f"pcoa {b.pcoa}"], key)

    @inlineCallbacks
    def test_pmipListAndShow(self):
        status, lines = yield self.ctl("pmip", "list")
        self.assertEqual((status, lines[0], len(lines)), (0, "ok 2", 3))
        m = self.domain.pmip.core.mobile(MOBILES[0])
        status, lines = yield self.ctl("pmip", "show", str(m.phoa))
        self.assertEqual(status, 0)
        self.assertEqual(lines[1:5], ["mn-id mn1@example.net", "state BOUND",
                                      f"homes {m.phoa}", f"pcoa {m.pcoa}"])

    @inlineCallbacks
    def test_unknownKeyAndBadCommand(self):
        status, lines = yield self.ctl("lma", "show", "nobody@example.net")
        self.assertEqual((status, lines), (1, ["error no binding for 'nobody@example.net'"]))
        status, lines = yield self.ctl("lma", "show", "2001:db8:99::1")
        self.assertEqual((status, lines), (1, ["error no binding for '2001:db8:99::1'"]))
        status, lines = yield self.ctl("pmip", "frobnicate", "mn1@example.net")
        self.assertEqual((status, lines), (1, [
            "error cannot parse 'frobnicate mn1@example.net'; expected 'list', 'show KEY' "
            "or 'deregister KEY' (KEY: an MN identifier, a home address or a pCoA)"]))
        status, lines = yield self.ctl("pmip", "deregister", "nobody@example.net")
        self.assertEqual((status, lines), (1, ["error no binding for 'nobody@example.net'"]))
        status, lines = yield self.ctl("pmip", "deregister")
        self.assertEqual(status, 1)
        self.assertIsNotNone(self.domain.lma.core.bindingFor(MOBILES[0]))

    @inlineCallbacks
    def test_moveNeedsSeveralLmas(self):
        """
        `move`, `drain`, `lmas` (draft 4.4) need several LMAs; refused,
        nothing changed (test_multi_lma_netns uses them with two).
        """
        for words in (("move", "mn1@example.net", "lma2"), ("drain", "lma1"), ("lmas",)):
            status, lines = yield self.ctl("pmip", *words)
            self.assertEqual((status, lines), (1, [
                "error this PMIP client has one LMA; there is none to move to"]), words)
        self.assertIsNotNone(self.domain.lma.core.bindingFor(MOBILES[0]))

    @inlineCallbacks
    def test_lmaDeregister(self):
        """
        `deregister` at the LMA, by MN identifier: the binding ends there at
        once, an RFC 5846 Binding Revocation Indication goes to the PMIP
        client, which drops the mobile and tells MAG1 (it takes the tunnel
        down) and answers with a Binding Revocation Acknowledgement; the
        other mobile is untouched.
        """
        mag1 = self.domain.mags[0]
        lma, client = self.domain.lma, self.domain.pmip
        phoa = client.core.mobile(MOBILES[1]).phoa
        self.assertIn(phoa, mag1.dataplane.tunnels)
        status, lines = yield self.ctl("lma", "deregister", "mn2@example.net")
        self.assertEqual((status, lines), (0, [
            "ok 1", f"deregistered mn2@example.net; Binding Revocation Indication sent to "
            f"{lma.core.bindingFor(MOBILES[0]).client}"]))
        self.assertIsNone(lma.core.bindingFor(MOBILES[1]))
        yield until(lambda: lma.core.revocations.counters["acknowledged"] == 1,
                    what="the Binding Revocation Acknowledgement")
        self.assertIsNone(client.core.mobile(MOBILES[1]))
        self.assertEqual(client.core.counters["revoked"], 1)
        yield until(lambda: phoa not in mag1.dataplane.tunnels, what="the MAG told")
        self.assertEqual(lma.core.bindingFor(MOBILES[0]).state, BindingState.REGISTERED)
        self.assertEqual(lma.core.revocations.outstanding, {})
        # Both ways signed (RFC 4285): the BRA echoed the BRI's timestamp.
        self.assertIsNotNone(client.core.security)
        self.assertEqual(lma.security._revocations, {})
        self.assertEqual(samples(lma, "netlmm_lma_revocations"), {
            "revoked": 1, "sent": 1, "acknowledged": 1, "retransmitted": 0, "refused": 0,
            "unanswered": 0, "unsupported": 0})
        self.assertEqual(samples(client, "netlmm_pmip_revocations"),
                         {"revoked": 1, "dropped": 0})
        status, lines = yield self.ctl("lma", "deregister", "mn2@example.net")
        self.assertEqual((status, lines), (1, ["error no binding for 'mn2@example.net'"]))

    @inlineCallbacks
    def test_pmipDeregister(self):
        """
        `deregister` at the PMIP client, by home address: a PBU with lifetime
        0 ends the LMA's binding, the MAG is told (it takes the tunnel down),
        the client forgets the mobile; the other mobile is untouched.
        """
        mag1 = self.domain.mags[0]
        m = self.domain.pmip.core.mobile(MOBILES[1])
        phoa = m.phoa
        self.assertIn(phoa, mag1.dataplane.tunnels)
        status, lines = yield self.ctl("pmip", "deregister", str(phoa))
        self.assertEqual((status, lines), (0, ["ok 1", "deregistering mn2@example.net"]))
        lma = self.domain.lma.core
        yield until(lambda: self.domain.pmip.core.mobile(MOBILES[1]) is None
                    and getattr(lma.bindingFor(MOBILES[1]), "state", None)
                    in (None, BindingState.DELETING), what="the deregistration")
        yield until(lambda: mag1.core.attachment(MOBILES[1]) is None
                    or mag1.core.attachment(MOBILES[1]).state != "BOUND",
                    what="the MAG told")
        self.assertNotIn(phoa, mag1.dataplane.tunnels)
        self.assertEqual(self.domain.pmip.core.counters["deregistered"], 1)
        self.assertEqual(lma.bindingFor(MOBILES[0]).state, BindingState.REGISTERED)
        status, lines = yield self.ctl("pmip", "deregister", "mn2@example.net")
        self.assertEqual((status, lines), (1, ["error no binding for 'mn2@example.net'"]))

    @inlineCallbacks
    def test_otherUserRefused(self):
        """A peer that is neither root nor the daemon's user gets nothing."""
        self.patch(ctl, "peerUid", lambda transport: os.geteuid() + 4242)
        status, lines = yield self.ctl("lma", "list")
        self.assertEqual((status, lines), (1, [
            "error not allowed: only root and the daemon's user may command it"]))

    @inlineCallbacks
    def test_listCapped(self):
        self.patch(ctl, "LIST_LIMIT", 1)
        status, lines = yield self.ctl("lma", "list")
        self.assertEqual((status, lines[0], len(lines)), (0, "ok 1 of 2", 2))

    def test_socketMode(self):
        self.assertEqual(os.stat(self.paths["lma"]).st_mode & 0o777, 0o600)


class ControlConfigTests(TestCase):
    """The [control] table."""

    def test_offWithoutTable(self):
        self.assertIsNone(controlConfig(Table({}, ""), "/etc/netlmm"))

    def test_relativeToConfig(self):
        self.assertEqual(controlConfig(Table({"control": {"socket": "lma.sock"}}, ""),
                                       "/etc/netlmm"), "/etc/netlmm/lma.sock")

    def test_socketRequired(self):
        e = self.assertRaises(ConfigError, controlConfig,
                              Table({"control": {"path": "x"}}, ""), "/")
        self.assertIn("control.socket", str(e))


def samples(service, name):
    """{label value: value} of counter family C{name} among C{service}'s metrics."""
    [family] = [f for f in service.metricFamilies() if f.name == name]
    return {s.labels["outcome"]: s.value for s in family.samples
            if s.name.endswith("_total")}
