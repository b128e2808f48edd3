"""
What the PMIP client puts on the wire, per profile, against independent
references: every message it sends in the RFC 5213 profile read back by
tshark (Wireshark's mip6 dissector) field by field with no expert warning,
and the annotated hex examples of doc/protocol.md section 2 checked against
the PBUs the core builds and the PBAs it accepts.
"""

import os
import re
import shutil
import subprocess
import tempfile
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Network

from twisted.trial.unittest import SynchronousTestCase

from netlmm.core import profiles
from netlmm.core.effects import Notify, SendMH
from netlmm.core.pmip import PmipCore
from netlmm.test.test_protocol_examples import examples, protocolPage
from netlmm.test.test_wire_mh import _TSHARK, _ipv6, _pcap
from netlmm.wire import mh
from netlmm.wire.control import AddressMode, Detach, Notification, Result, Trigger

LMA = IPv6Address("2001:db8::5")
MAG1 = IPv6Address("2001:db8::a")
MAG2 = IPv6Address("2001:db8::b")
CLIENT = IPv6Address("2001:db8::c")
MN = b"mn1@example.net"
MAC = bytes.fromhex("020000aabbcc")
PREFIX = IPv6Network("2001:db8:5::/64")
NOW = 1_700_000_000.0


class Lma:
    """A scripted RFC 5213 LMA: accepts every PBU, assigning PREFIX."""

    def __init__(self, core):
        self.core = core
        #: Every PBU the client sent, with its source address.
        self.pbus = []

    def run(self, effects, source, now):
        """Answer the PBUs among C{effects}; the Notifications that follow."""
        notes = [e for e in effects if type(e) is Notify]
        for e in effects:
            if type(e) is not SendMH:
                continue
            bu = e.message
            self.pbus.append((bu, source))
            options = [mh.MobileNodeIdentifier(MN), mh.HomeNetworkPrefix(
                PREFIX.network_address, PREFIX.prefixlen)]
            if bu.option(mh.IPv4HomeAddressRequest) is not None:
                options += [mh.IPv4HomeAddressReply(0, "10.0.0.5", 24),
                            mh.IPv4DefaultRouterAddress("10.0.0.1")]
            ba = mh.BindingAcknowledgement(0, mh.BA_P, bu.sequence, bu.lifetime, options)
            raw = mh.encodeMessage(ba, LMA, source)
            more = self.core.receiveMH(mh.decodeMessage(raw, LMA, source), raw, LMA, now)
            notes += self.run(more, source, now)
        return notes


def _rfc5213Session(source, ordering=profiles.TIMESTAMP):
    """
    Drive an RFC 5213 client through attach, re-trigger, refresh, handoff,
    a lost binding and detach; every PBU it sent and its source.
    """
    core = PmipCore(LMA, lifetime=600, profile=profiles.Rfc5213Profile(
        ordering, source=source), detachDelay=1)
    lma = Lma(core)
    src = source or CLIENT
    now = NOW
    lma.run(core.receiveTrigger(Trigger(1, MN, MAG1, mode=AddressMode.PREFIX,
                                        ipv4="0.0.0.0/0", linkLayerId=MAC,
                                        accessTechnology=4), now), src, now)
    lma.run(core.receiveTrigger(Trigger(2, MN, MAG1, mode=AddressMode.PREFIX,
                                        prefix=PREFIX), now + 1), src, now + 1)
    refresh = core.mobile(MN).refreshAt
    lma.run(core.handleTimer(refresh), src, refresh)
    now = refresh + 1
    lma.run(core.receiveTrigger(Trigger(3, MN, MAG2, mode=AddressMode.PREFIX), now), src, now)
    # The LMA restarted: the next refresh is answered 133, then re-registers.
    refresh = core.mobile(MN).refreshAt
    effects = core.handleTimer(refresh)
    [bu] = [e.message for e in effects if type(e) is SendMH]
    lma.pbus.append((bu, src))
    raw = mh.encodeMessage(mh.BindingAcknowledgement(
        mh.Status.NOT_HOME_AGENT_FOR_MN, mh.BA_P, bu.sequence, 0,
        [mh.MobileNodeIdentifier(MN)]), LMA, src)
    lma.run(core.receiveMH(mh.decodeMessage(raw, LMA, src), raw, LMA, refresh), src, refresh)
    now = refresh + 1
    core.receiveDetach(Detach(4, MN, MAG2), now)
    lma.run(core.handleTimer(now + 1), src, now + 1)
    return lma.pbus


class TsharkRfc5213Tests(SynchronousTestCase):
    """
    Every PBU of an RFC 5213 session as Wireshark reads it: flags A|P
    without H, the MN Identifier, the Home Network Prefix, Handoff
    Indicator and Access Technology Type in every one (RFC 5213 6.9.1.5),
    the Link-layer Identifier, the Timestamp, the Alternate CoA only when
    the source is not the pCoA, and no expert warning.
    """

    if _TSHARK is None:
        skip = "tshark is not installed"

    FIELDS = ["mip6.mhtype", "mip6.bu.seqnr", "mip6.bu.lifetime", "mip6.bu.a_flag",
              "mip6.bu.h_flag", "mip6.bu.p_flag", "mip6.mnid.identifier",
              "mip6.nemo.mnp.pfl", "mip6.nemo.mnp.mnp", "mip6.hi", "mip6.att",
              "mip6.mnlli.lli", "mip6.timestamp_tmp", "mip6.acoa.acoa",
              "mip6.ipv4ha.preflen", "mip6.ipv4ha.ha", "_ws.expert.message",
              "_ws.malformed"]

    def decode(self, pbus):
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        path = os.path.join(directory, "rfc5213.pcap")
        with open(path, "wb") as f:
            f.write(_pcap([_ipv6(src, LMA, mh.encodeMessage(bu, src, LMA))
                           for bu, src in pbus]))
        command = [_TSHARK, "-n", "-r", path, "-T", "fields", "-E", "separator=|",
                   "-E", "occurrence=a", "-E", "aggregator=,"]
        for field in self.FIELDS:
            command += ["-e", field]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        self.assertEqual(result.returncode, 0, result.stderr)
        rows = [dict(zip(self.FIELDS, line.split("|")))
                for line in result.stdout.splitlines() if line.strip()]
        self.assertEqual(len(rows), len(pbus), result.stdout)
        return rows

    def check(self, source, ordering=profiles.TIMESTAMP):
        pbus = _rfc5213Session(source, ordering)
        rows = self.decode(pbus)
        # attach, re-trigger at the same MAG, refresh, handoff, refresh answered
        # 133, its re-registration, deregistration.
        self.assertEqual([r["mip6.hi"] for r in rows], ["1", "5", "5", "3", "5", "4", "4"])
        self.assertEqual(rows[-1]["mip6.bu.lifetime"], "0")
        pcoas = [MAG1, MAG1, MAG1, MAG2, MAG2, MAG2, MAG2]
        for (bu, src), row, pcoa in zip(pbus, rows, pcoas):
            where = f"{row['mip6.bu.seqnr']} (HI {row['mip6.hi']})"
            self.assertEqual(row["mip6.mhtype"], "5", where)
            self.assertEqual(int(row["mip6.bu.seqnr"]), bu.sequence, where)
            self.assertEqual((row["mip6.bu.a_flag"], row["mip6.bu.h_flag"],
                              row["mip6.bu.p_flag"]), ("1", "0", "1"), where)
            self.assertEqual(row["mip6.mnid.identifier"], MN.decode(), where)
            self.assertEqual(row["mip6.att"], "4", where)
            self.assertEqual(row["mip6.mnlli.lli"].replace(":", ""), MAC.hex(), where)
            self.assertEqual((row["_ws.expert.message"], row["_ws.malformed"]), ("", ""),
                             where)
            if row["mip6.hi"] == "1":
                self.assertEqual((row["mip6.nemo.mnp.pfl"], row["mip6.nemo.mnp.mnp"]),
                                 ("0", "::"), where)
            else:
                self.assertEqual((row["mip6.nemo.mnp.pfl"], row["mip6.nemo.mnp.mnp"]),
                                 ("64", "2001:db8:5::"), where)
            if ordering == profiles.TIMESTAMP:
                self.assertTrue(row["mip6.timestamp_tmp"].startswith(
                    ("Nov 14, 2023", "Nov 15, 2023", "2023-11-14", "2023-11-15")),
                    row["mip6.timestamp_tmp"])
            else:
                self.assertEqual(row["mip6.timestamp_tmp"], "", where)
            expected = "" if pcoa == source else str(pcoa)
            self.assertEqual(row["mip6.acoa.acoa"], expected, where)
            # IPv4: asked with 0.0.0.0, then the assigned address.
            self.assertEqual(row["mip6.ipv4ha.ha"],
                             "0.0.0.0" if row is rows[0] else "10.0.0.5", where)
            del src

    def test_colocatedAtMag1(self):
        """Sending from MAG1's address: an Alternate CoA only after the handoff."""
        self.check(MAG1)

    def test_separateClient(self):
        """A client with its own address names the MAG in every PBU."""
        self.check(CLIENT)

    def test_sequenceOrdering(self):
        self.check(MAG1, profiles.SEQUENCE)

    def test_exceptionalPbus(self):
        """
        The PBUs of the exceptional paths, as Wireshark reads them: the
        resend after a 156 (the LMA's time), the deregistration of an
        ALL_ZERO answer (::/0), a named prefix (HI 4: the mobile may be
        bound elsewhere), and the deregistration of a refresh that assigned
        another IPv4 home address (naming the one the LMA bound).
        """
        core = PmipCore(LMA, lifetime=600, profile=profiles.Rfc5213Profile(source=MAG1))
        sent = []

        def answer(bu, status, options, now=NOW):
            sent.append((bu, MAG1))
            ba = mh.BindingAcknowledgement(status, mh.BA_P, bu.sequence,
                                           bu.lifetime if status < 128 else 0, options)
            raw = mh.encodeMessage(ba, LMA, MAG1)
            effects = core.receiveMH(mh.decodeMessage(raw, LMA, MAG1), raw, LMA, now)
            return [e.message for e in effects if type(e) is SendMH]

        [bu] = [e.message for e in core.receiveTrigger(Trigger(
            1, MN, MAG1, mode=AddressMode.PREFIX, ipv4="0.0.0.0/0", linkLayerId=MAC), NOW)
            if type(e) is SendMH]
        [again] = answer(bu, mh.Status.TIMESTAMP_MISMATCH, [
            mh.MobileNodeIdentifier(MN), mh.Timestamp.fromSeconds(NOW + 5)])
        [dereg] = answer(again, 0, [mh.MobileNodeIdentifier(MN), mh.HomeNetworkPrefix("::", 0)])
        self.assertEqual(answer(dereg, 0, [mh.MobileNodeIdentifier(MN)]), [])
        [bu] = [e.message for e in core.receiveTrigger(Trigger(
            2, MN, MAG1, mode=AddressMode.PREFIX, prefix=PREFIX, ipv4="0.0.0.0/0",
            linkLayerId=MAC), NOW + 1) if type(e) is SendMH]
        answer(bu, 0, [mh.MobileNodeIdentifier(MN), mh.HomeNetworkPrefix(
            PREFIX.network_address, 64), mh.IPv4HomeAddressReply(0, "10.0.0.5", 24)])
        due = core.mobile(MN).refreshAt
        [refresh] = [e.message for e in core.handleTimer(due) if type(e) is SendMH]
        [dereg4] = answer(refresh, 0, [mh.MobileNodeIdentifier(MN), mh.HomeNetworkPrefix(
            PREFIX.network_address, 64), mh.IPv4HomeAddressReply(0, "10.0.0.9", 24)], due)
        sent.append((dereg4, MAG1))
        rows = self.decode(sent)
        summary = [(r["mip6.hi"], r["mip6.bu.lifetime"], r["mip6.nemo.mnp.pfl"],
                    r["mip6.ipv4ha.ha"]) for r in rows]
        self.assertEqual(summary, [
            ("1", "150", "0", "0.0.0.0"), ("1", "150", "0", "0.0.0.0"),
            ("4", "0", "0", "0.0.0.0"), ("4", "150", "64", "0.0.0.0"),
            ("5", "150", "64", "10.0.0.5"), ("4", "0", "64", "10.0.0.9")])
        for row in rows:
            self.assertEqual((row["mip6.bu.a_flag"], row["mip6.bu.h_flag"],
                              row["mip6.bu.p_flag"], row["mip6.mnid.identifier"],
                              row["mip6.att"], row["mip6.acoa.acoa"]),
                             ("1", "0", "1", MN.decode(), "3", ""), row)
            self.assertEqual(row["mip6.mnlli.lli"].replace(":", ""), MAC.hex(), row)
            self.assertNotEqual(row["mip6.timestamp_tmp"], "", row)
            self.assertEqual((row["_ws.expert.message"], row["_ws.malformed"]), ("", ""),
                             row)
        # The resend carries the LMA's time, 5 s ahead of the first.
        self.assertAlmostEqual(sent[1][0].option(mh.Timestamp).seconds
                               - sent[0][0].option(mh.Timestamp).seconds, 5, delta=0.01)


# ---------------------------------------------------------------- doc examples


class DocExampleTests(SynchronousTestCase):
    """doc/protocol.md 2.2 and 2.3: each example is what the code does."""

    def setUp(self):
        self.examples = {name[len("pmip-"):]: octets
                         for name, octets in examples(protocolPage()).items()
                         if name.startswith("pmip-")}

    def test_everyExampleIsThere(self):
        self.assertEqual(sorted(self.examples),
                         ["netlmm-pba", "netlmm-pbu", "rfc5213-pba", "rfc5213-pbu"])

    def session(self, profile, **trigger):
        core = PmipCore(LMA, lifetime=600, profile=profile)
        effects = core.receiveTrigger(Trigger(1, b"mn1", MAG1, mode=AddressMode.PREFIX,
                                              **trigger), NOW)
        [send] = [e for e in effects if type(e) is SendMH]
        core.mobile(b"mn1").pending.sequences = [2]
        core._inFlight = {2: {b"mn1"}}
        return core, send.message._replace(sequence=2)

    def accepted(self, core, name):
        raw = self.examples[name]
        effects = core.receiveMH(mh.decodeMessage(raw), raw, LMA, NOW)
        [notify] = [e for e in effects if type(e) is Notify]
        return notify.notification

    def test_netlmmPbu(self):
        core, bu = self.session(None, ipv4=IPv4Interface("0.0.0.0/0"))
        self.assertEqual(mh.encodeMessage(bu).hex(" "),
                         self.examples["netlmm-pbu"].hex(" "))
        n = self.accepted(core, "netlmm-pba")
        self.assertEqual(n, Notification(1, Result.SUCCESS, b"mn1", pback=self.examples[
            "netlmm-pba"], prefix=PREFIX, ipv4=IPv4Interface("10.0.0.5/24"),
            ipv4Router=IPv4Address("10.0.0.1")))

    def test_rfc5213Pbu(self):
        core, bu = self.session(profiles.Rfc5213Profile(source=MAG1), linkLayerId=MAC,
                                accessTechnology=4)
        self.assertEqual(mh.encodeMessage(bu).hex(" "),
                         self.examples["rfc5213-pbu"].hex(" "))
        n = self.accepted(core, "rfc5213-pba")
        self.assertEqual(n, Notification(1, Result.SUCCESS, b"mn1", pback=self.examples[
            "rfc5213-pba"], prefix=PREFIX))


class DocResultTests(SynchronousTestCase):
    """doc/protocol.md 3.4 lists exactly the result codes the code has."""

    def test_resultTable(self):
        text = protocolPage()
        table = text[text.index("### 3.4 Result codes"):text.index("### 3.5")]
        rows = dict(re.findall(r"^\| (\d+) \| ([A-Z_]+) \|", table, re.M))
        self.assertEqual({int(k): v for k, v in rows.items()},
                         {code: name.upper().replace("-", "_")
                          for code, name in Result.NAMES.items()})
        notAuthorized = table[table.index("| 7 | NOT_AUTHORIZED"):]
        notAuthorized = notAuthorized[:notAuthorized.index("\n")]
        self.assertNotIn("does not send", notAuthorized)
        self.assertNotIn("reserved", notAuthorized)
        self.assertIn("no security association", notAuthorized)
