"""
Tests for L{netlmm.store}, the durable state, and for how the role services
use it (L{netlmm.service.base.RoleService}): records written before the
answers that acknowledge them, group commits, JSON state files converted,
bad state refused with the file and the record named.
"""

import gc
import json
import os
import sqlite3
import stat
from ipaddress import IPv6Address, IPv6Network

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from netlmm.core.effects import Persist
from netlmm.core.lma import AddressPool, LmaCore
from netlmm.dataplane.memory import MemoryDataPlane
from netlmm.interfaces import IStateStore
from netlmm.lab.fakes import UDPProbe
from netlmm.lab.wait import until
from netlmm.service.lma import LmaService
from netlmm.store import MemoryStore, SqliteStore, StateError, encode
from netlmm.wire import mh

LO = IPv6Address("::1")
MN1 = b"mn1@example.net"


class ManualRun:
    """A C{run} for L{SqliteStore} that runs each write when the test says so."""

    def __init__(self):
        self.calls = []

    def __call__(self, f, *args):
        d = Deferred()
        self.calls.append((d, f, args))
        return d

    def step(self, fail=None):
        """Run the oldest write (or fail it with C{fail})."""
        d, f, args = self.calls.pop(0)
        if fail is not None:
            d.errback(Failure(fail))
            return
        try:
            result = f(*args)
        except Exception:
            d.errback()
        else:
            d.callback(result)


def rows(path):
    """The (key, record) rows of a state database, read as another process would."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return sorted((bytes(k), json.loads(r)) for k, r in
                      db.execute("SELECT key, record FROM entries"))
    finally:
        db.close()


class SqliteStoreTests(SynchronousTestCase):
    """The SQLite store on its own."""

    def store(self, path=None, kind="lma-bindings"):
        self.run = ManualRun()
        s = SqliteStore(path or self.path, kind, Clock(), run=self.run)
        return s

    def setUp(self):
        self.path = os.path.join(self.mktemp())
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)

    def test_interface(self):
        self.assertTrue(verifyObject(IStateStore, self.store()))
        self.assertTrue(verifyObject(IStateStore, MemoryStore()))

    def test_newFile(self):
        """A missing file becomes an empty database only this user can read, in WAL mode."""
        s = self.store()
        self.assertEqual(list(s.load()), [])
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        db = sqlite3.connect(self.path)
        self.assertEqual(db.execute("PRAGMA journal_mode").fetchone()[0], "wal")
        self.assertEqual(dict(db.execute("SELECT name, value FROM meta")),
                         {"format": "1", "kind": "lma-bindings"})
        db.close()
        s.close()

    def test_putCommitLoad(self):
        """Committed records are in the file for anyone reading it, and for the next load."""
        s = self.store()
        s.load()
        s.put(MN1, {"phoa": IPv6Address("2001:db8:1::1"), "n": 1})
        s.put(b"mn2", {"n": 2})
        d = s.commit()
        self.assertNoResult(d)
        self.assertEqual(rows(self.path), [])
        self.run.step()
        self.successResultOf(d)
        self.assertEqual(rows(self.path), [(MN1, {"phoa": "2001:db8:1::1", "n": 1}),
                                           (b"mn2", {"n": 2})])
        s.put(b"mn2", None)
        d = s.commit()
        self.run.step()
        self.successResultOf(d)
        self.successResultOf(s.close())
        again = self.store()
        self.assertEqual(list(again.load()), [(MN1, {"phoa": "2001:db8:1::1", "n": 1})])

    def test_groupCommit(self):
        """
        Puts made while a write runs go together in the next one, and each
        commit() fires when the write holding its puts is done, in order.
        """
        s = self.store()
        s.load()
        fired = []
        s.put(b"a", {"v": 1})
        s.commit().addCallback(lambda _: fired.append("a"))
        self.assertEqual(len(self.run.calls), 1)
        for key in (b"b", b"c", b"d"):
            s.put(key, {"v": 2})
            s.commit().addCallback(lambda _, k=key: fired.append(k.decode()))
        s.put(b"b", {"v": 3})
        # One write at a time: the second waits for the first.
        self.assertEqual(len(self.run.calls), 1)
        self.run.step()
        self.assertEqual(fired, ["a"])
        self.assertEqual(len(self.run.calls), 1)
        self.run.step()
        self.assertEqual(fired, ["a", "b", "c", "d"])
        self.assertEqual(s.counters, {"commits": 2, "entries": 4, "failures": 0})
        self.assertEqual(dict(rows(self.path))[b"b"], {"v": 3})
        s.close()

    def test_commitWithNothingStaged(self):
        """With nothing staged, commit() waits only for the write in progress, if any."""
        s = self.store()
        s.load()
        self.successResultOf(s.commit())
        s.put(b"a", {"v": 1})
        first = s.commit()
        second = s.commit()
        self.assertNoResult(second)
        self.run.step()
        self.successResultOf(first)
        self.successResultOf(second)
        self.assertEqual(self.run.calls, [])
        s.close()

    def test_failedWriteRetried(self):
        """
        A write that fails is tried again later with what was staged since
        (newer puts winning); the commits wait and fire when it is written.
        """
        s = self.store()
        s.load()
        clock = s.reactor
        s.put(b"a", {"v": 1})
        d = s.commit()
        self.run.step(fail=sqlite3.OperationalError("disk I/O error"))
        self.assertNoResult(d)
        s.put(b"a", {"v": 2})
        later = s.commit()
        self.assertEqual(self.run.calls, [])
        clock.advance(0.1)
        self.run.step(fail=sqlite3.OperationalError("disk I/O error"))
        clock.advance(0.1)
        self.assertEqual(self.run.calls, [])
        clock.advance(0.1)
        self.run.step()
        self.successResultOf(d)
        self.successResultOf(later)
        self.assertEqual(rows(self.path), [(b"a", {"v": 2})])
        self.assertEqual(s.counters["failures"], 2)
        s.close()

    def test_unencodableRecordRefusedAtOnce(self):
        s = self.store()
        s.load()
        self.assertRaises(TypeError, s.put, b"a", {"v": b"bytes"})
        self.assertRaises(ValueError, s.put, b"a", {"v": float("inf")})
        s.close()

    def test_closeWritesWhatIsStaged(self):
        s = self.store()
        s.load()
        s.put(b"a", {"v": 1})
        d = s.close()
        self.run.step()
        self.successResultOf(d)
        self.assertEqual(rows(self.path), [(b"a", {"v": 1})])

    def test_otherKindRefused(self):
        s = self.store()
        s.load()
        s.close()
        e = self.assertRaises(StateError, self.store(kind="pmip-bindings").load)
        self.assertEqual(str(e), f"{self.path}: holds lma-bindings state, not pmip-bindings")

    def test_otherDatabaseRefused(self):
        db = sqlite3.connect(self.path)
        db.execute("CREATE TABLE t (x)")
        db.commit()
        db.close()
        e = self.assertRaises(StateError, self.store().load)
        self.assertEqual(str(e), f"{self.path}: not a netlmm state database (format 1); "
                                 "move it away to start with an empty state")

    def test_garbageRefused(self):
        with open(self.path, "wb") as f:
            f.write(b"\x00garbage" * 100)
        e = self.assertRaises(StateError, self.store().load)
        self.assertTrue(str(e).startswith(
            f"{self.path}: neither a state database nor a JSON state file: "), str(e))

    def test_corruptDatabaseRefused(self):
        """A database whose pages are damaged is refused, not read as empty."""
        s = self.store()
        s.load()
        for i in range(200):
            s.put(b"mn%d" % i, {"v": "x" * 100})
        s.commit()
        self.run.step()
        s.close()
        with open(self.path, "r+b") as f:
            f.seek(4096)
            f.write(b"\xff" * 8192)
        e = self.assertRaises(StateError, lambda: list(self.store().load()))
        self.assertIn(f"{self.path}: cannot ", str(e))

    def test_loadReadsAsItGoes(self):
        """
        load() checks the file at once and then reads the rows as they are
        asked for, a few at a time, so a large state is never held whole.
        """
        s = self.store()
        list(s.load())
        for i in range(5):
            s.put(b"mn%d" % i, {"n": i})
        s.commit()
        self.run.step()
        s.close()
        s = self.store()
        s.fetchRows = 2
        entries = s.load()
        self.assertNotIsInstance(entries, list)
        self.assertEqual(next(entries), (b"mn0", {"n": 0}))
        self.assertEqual(list(entries), [(b"mn%d" % i, {"n": i}) for i in range(1, 5)])

    def test_recordNotJson(self):
        s = self.store()
        s.load()
        s.close()
        db = sqlite3.connect(self.path)
        db.execute("INSERT INTO entries VALUES (?, ?)", (b"mn\n7", "{broken"))
        db.commit()
        db.close()
        e = self.assertRaises(StateError, list, self.store().load())
        self.assertEqual(str(e), f"{self.path}: bad record 'mn\\n7': not JSON (Expecting "
                                 "property name enclosed in double quotes: line 1 column 2 "
                                 "(char 1))")

    def test_missingDirectory(self):
        path = os.path.join(self.mktemp(), "state.db")
        e = self.assertRaises(StateError, self.store(path).load)
        self.assertEqual(str(e), f"{path}: directory {os.path.dirname(os.path.abspath(path))}"
                                 " does not exist")

    def test_jsonStateFileRewritten(self):
        """
        A JSON state file (earlier versions) loads with keys unknown; rewrite()
        turns the file into a database in one step and keeps the old file.
        """
        document = {"format": 1, "kind": "lma-bindings", "records": [{"n": 1}]}
        with open(self.path, "w") as f:
            json.dump(document, f)
        s = self.store()
        self.assertEqual(list(s.load()), [(None, {"n": 1})])
        s.rewrite([Persist(MN1, {"n": 1})])
        self.assertEqual(rows(self.path), [(MN1, {"n": 1})])
        with open(self.path + ".json") as f:
            self.assertEqual(json.load(f), document)
        self.assertFalse(os.path.exists(self.path + ".new"))
        s.put(b"mn2", {"n": 2})
        s.commit()
        self.run.step()
        s.close()
        self.assertEqual(list(self.store().load()), [(MN1, {"n": 1}), (b"mn2", {"n": 2})])

    def test_jsonStateFileOfOtherKind(self):
        with open(self.path, "w") as f:
            json.dump({"format": 1, "kind": "pmip-bindings", "records": []}, f)
        e = self.assertRaises(StateError, self.store().load)
        self.assertEqual(str(e), f"{self.path}: not a netlmm lma-bindings state file; move "
                                 "it away to start with an empty state")


class MemoryStoreTests(SynchronousTestCase):
    """The memory store keeps the same promises."""

    def test_commitWaitsForTheWrite(self):
        s = MemoryStore(Clock(), automatic=False)
        s.put(b"a", {"p": IPv6Address("::1")})
        d = s.commit()
        self.assertEqual(s.entries, {})
        s.completeWrite()
        self.successResultOf(d)
        self.assertEqual(s.entries, {b"a": {"p": "::1"}})

    def test_commitLatencyObserved(self):
        """
        Each committed write's time from its start until it is durable goes
        into the store's latency histogram (the [metrics] endpoint's
        netlmm_ROLE_store_commit_seconds); a failed write is counted apart.
        """
        clock = Clock()
        s = MemoryStore(clock, automatic=False)
        s.put(b"a", {"v": 1})
        s.commit()
        clock.advance(0.003)
        s.completeWrite()
        self.assertEqual(s.latency.count, 1)
        self.assertAlmostEqual(s.latency.sum, 0.003)
        self.assertEqual(s.latency.counts[s.latency.bounds.index(0.005)], 1)
        s.failWith = OSError("disk full")
        s.put(b"b", {"v": 2})
        s.commit()
        s.completeWrite()
        self.assertEqual((s.latency.count, s.counters["failures"]), (1, 1))
        clock.advance(0.1)
        clock.advance(0.5)
        s.failWith = None
        s.completeWrite()
        self.assertEqual((s.latency.count, s.counters["commits"]), (2, 2))
        self.assertAlmostEqual(s.latency.sum, 0.003 + 0.5)

    def test_crashLosesWhatIsNotWritten(self):
        s = MemoryStore(Clock(), automatic=False)
        s.put(b"a", {"v": 1})
        s.commit()
        s.put(b"b", {"v": 1})
        s.crash()
        self.assertEqual(s.entries, {})

    def test_encode(self):
        """JSON; addresses and networks as their (compressed) text."""
        self.assertEqual(encode({"a": IPv6Address("2001:db8::1"), "b": [1, None],
                                 "c": IPv6Network("2001:db8:100::/48")}),
                         '{"a":"2001:db8::1","b":[1,null],"c":"2001:db8:100::/48"}')


def pbu(seq, phoa="::", mnId=MN1, lifetime=100, mag="2001:db8:ff::1"):
    options = [mh.HomeNetworkPrefix(phoa)]
    if mag is not None:
        options.append(mh.AlternateCareOfAddress(mag))
    if mnId is not None:
        options.append(mh.MobileNodeIdentifier(mnId))
    return mh.BindingUpdate(seq, lifetime=lifetime, options=options)


class HeldAcknowledgementTests(TestCase):
    """
    The LMA service over real sockets with a store whose writes the test
    completes: no PBAck leaves before its binding is written.
    """

    timeout = 20

    @inlineCallbacks
    def setUp(self):
        self.store = MemoryStore(reactor, automatic=False)
        self.lma = self.lmaService(self.store)
        yield self.lma.startService()
        self.addCleanup(self.lma.stopService)
        self.probe = UDPProbe()
        self.port = reactor.listenUDP(0, self.probe, interface="::1")
        self.addCleanup(self.port.stopListening)

    def lmaService(self, store):
        service = LmaService(
            reactor, LmaCore("2001:db8:1::/64", ["::1/128"], 3600,
                             AddressPool("2001:db8:1::100", "2001:db8:1::1ff")),
            (LO, 0), "udp", MemoryDataPlane())
        service.store = store
        return service

    def send(self, message):
        self.port.write(mh.encodeMessage(message, LO, LO), ("::1", self.lma.port.port))

    def answers(self):
        return [mh.decodeMessage(data) for data, _ in self.probe.received]

    @inlineCallbacks
    def test_pbackAfterCommit(self):
        self.send(pbu(10))
        yield until(lambda: self.lma.core.bindingFor(MN1) is not None, what="the PBU")
        # The route goes at once; the answer waits for the write.
        self.assertEqual(len(self.lma.dataplane.routes), 1)
        yield deferLaterSeconds(0.1)
        self.assertEqual(self.probe.received, [])
        self.assertEqual(self.store.entries, {})
        self.store.completeWrite()
        self.assertEqual(list(self.store.entries), [MN1])
        yield until(lambda: self.probe.received, what="the PBAck")
        self.assertEqual([(a.status, a.sequence) for a in self.answers()], [(0, 10)])

    @inlineCallbacks
    def test_crashBeforeCommitSendsNothing(self):
        """
        A crash between the binding's write and its PBAck: what the peer was
        told is what a restart finds. Killed before the write completed,
        neither the answer nor the record exists.
        """
        self.send(pbu(10))
        yield until(lambda: self.lma.core.bindingFor(MN1) is not None, what="the PBU")
        self.store.crash()
        yield self.lma.stopService()
        yield deferLaterSeconds(0.1)
        self.assertEqual(self.probe.received, [])
        again = self.lmaService(self.store)
        yield again.startService()
        self.addCleanup(again.stopService)
        self.assertIsNone(again.core.bindingFor(MN1))

    @inlineCallbacks
    def test_laterAnswersWaitBehindHeldOnes(self):
        """
        While a PBAck is held, a later answer that needs no write (a 135)
        waits behind it: answers leave in the order the core made them.
        """
        self.send(pbu(10))
        yield until(lambda: self.lma.core.bindingFor(MN1) is not None, what="the PBU")
        self.send(pbu(9, phoa="2001:db8:1::100", mnId=None))
        yield until(lambda: self.lma.core.counters["pbu"] == 2, what="the second PBU")
        yield deferLaterSeconds(0.1)
        self.assertEqual(self.probe.received, [])
        self.store.completeWrite()
        yield until(lambda: len(self.probe.received) == 2, what="both answers")
        self.assertEqual([(a.status, a.sequence) for a in self.answers()],
                         [(0, 10), (mh.Status.SEQUENCE_OUT_OF_WINDOW, 10)])

    @inlineCallbacks
    def test_groupCommitUnderLoad(self):
        """Many PBUs while one write runs are written together, then all answered."""
        self.send(pbu(1, mnId=b"mn0"))
        yield until(lambda: self.store._pendingWrite is not None, what="the first write")
        for i in range(1, 50):
            self.send(pbu(1, mnId=b"mn%d" % i))
        yield until(lambda: self.lma.core.counters["pbu"] == 50, what="the PBUs")
        self.store.completeWrite()
        yield until(lambda: self.store._pendingWrite is not None, what="the second write")
        self.assertEqual(len(self.store._pendingWrite[1]), 49)
        self.store.completeWrite()
        yield until(lambda: len(self.probe.received) == 50, what="the answers")
        self.assertEqual(len(self.store.entries), 50)
        self.assertEqual(self.store.counters["commits"], 2)

    @inlineCallbacks
    def test_oneCommitPerBatch(self):
        """
        PBUs read in one batch (MHPort.onBatch) wait for one commit asked at
        its end, and are answered in order once it is done.
        """
        for i in range(20):
            self.send(pbu(1, mnId=b"mn%d" % i))
        yield until(lambda: self.store._pendingWrite is not None, what="the write")
        self.assertEqual(self.lma.core.counters["pbu"], 20)
        self.assertEqual(len(self.store._pendingWrite[1]), 20)
        self.assertEqual(self.lma.awaitingCommit, 20)
        self.store.completeWrite()
        yield until(lambda: len(self.probe.received) == 20, what="the answers")
        self.assertEqual([a.option(mh.MobileNodeIdentifier).identifier
                          for a in self.answers()], [b"mn%d" % i for i in range(20)])
        self.assertEqual((self.store.counters["commits"], self.lma.awaitingCommit), (1, 0))


def deferLaterSeconds(seconds):
    from twisted.internet.task import deferLater
    return deferLater(reactor, seconds, lambda: None)


class ServiceStateTests(TestCase):
    """Loading the state into a service: conversion, clean-up, bad records."""

    timeout = 20

    def lmaService(self, path):
        service = LmaService(
            reactor, LmaCore("2001:db8:1::/64", ["::1/128"], 3600,
                             AddressPool("2001:db8:1::100", "2001:db8:1::1ff")),
            (LO, 0), "udp", MemoryDataPlane())
        service.store = SqliteStore(path, "lma-bindings", reactor)
        return service

    def record(self, mnId=MN1, phoa="2001:db8:1::100", expiry=None):
        return {"phoa": phoa, "mn": mnId.hex(), "pcoa": "2001:db8:ff::1", "sequence": 7,
                "lifetime": 3600, "expiry": expiry or reactor.seconds() + 3000,
                "client": "::1", "pooled": True}

    @inlineCallbacks
    def test_jsonStateFileConverted(self):
        """
        The JSON state file of earlier versions: its bindings come back, the
        file becomes a database (the old one kept as .json), expired
        bindings are left out.
        """
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            json.dump({"format": 1, "kind": "lma-bindings", "records": [
                self.record(), self.record(b"old", "2001:db8:1::101",
                                           expiry=reactor.seconds() - 1)]}, f)
        lma = self.lmaService(path)
        yield lma.startService()
        self.assertEqual(lma.core.bindingFor(MN1).sequence, 7)
        self.assertIsNone(lma.core.bindingFor(b"old"))
        yield lma.stopService()
        self.assertEqual([k for k, _ in rows(path)], [MN1])
        self.assertTrue(os.path.exists(path + ".json"))
        again = self.lmaService(path)
        yield again.startService()
        self.addCleanup(again.stopService)
        self.assertEqual(again.dataplane.routes, {IPv6Address("2001:db8:1::100"):
                                                  IPv6Address("2001:db8:ff::1")})

    @inlineCallbacks
    def test_expiredEntriesDeleted(self):
        """Bindings that expired while the daemon was down leave the store at start."""
        path = os.path.abspath(self.mktemp())
        store = SqliteStore(path, "lma-bindings", reactor)
        store.load()
        store.rewrite([Persist(MN1, self.record()),
                       Persist(b"old", self.record(b"old", "2001:db8:1::101",
                                                   expiry=reactor.seconds() - 1))])
        store._release()
        lma = self.lmaService(path)
        yield lma.startService()
        yield lma.stopService()
        self.assertEqual([k for k, _ in rows(path)], [MN1])

    def test_largeStateFrozen(self):
        """
        Once a large state is restored, the collector's full collections
        leave it alone (gc.freeze); a small one is not worth a collection.
        """
        path = os.path.abspath(self.mktemp())
        store = SqliteStore(path, "lma-bindings", reactor)
        store.load()
        store.rewrite([Persist(MN1, self.record()),
                       Persist(b"mn2", self.record(b"mn2", "2001:db8:1::101"))])
        store._release()
        self.addCleanup(gc.unfreeze)
        self.assertEqual(gc.get_freeze_count(), 0)
        small = self.lmaService(path)
        small.freezeFrom = 3
        small.loadState()
        small.store._release()
        self.assertEqual(gc.get_freeze_count(), 0)
        large = self.lmaService(path)
        large.freezeFrom = 2
        large.loadState()
        large.store._release()
        self.assertGreater(gc.get_freeze_count(), 0)

    def test_restoredInChunks(self):
        """
        The core restores a chunk of records at a time, read from the store
        as they go; no snapshot of the whole cache is taken to find the
        records left out (the core says which with Persist deletions).
        """
        path = os.path.abspath(self.mktemp())
        store = SqliteStore(path, "lma-bindings", reactor)
        list(store.load())
        store.rewrite([Persist(b"mn%d" % i, self.record(b"mn%d" % i, f"2001:db8:1::{i:x}",
                                                        expiry=reactor.seconds() + 3000
                                                        if i != 3 else 1.0))
                       for i in range(1, 6)])
        store._release()
        lma = self.lmaService(path)
        lma.restoreChunk = 2
        sizes = []
        restore = lma.core.restore

        def chunked(records, now):
            sizes.append(len(records))
            return restore(records, now)
        lma.core.restore = chunked
        lma.core.snapshot = lambda: self.fail("snapshot() taken")
        lma.loadState()
        self.assertEqual(sizes, [2, 2, 1])
        self.assertEqual(sorted(b.mnId for b in lma.core.bindings.values()),
                         [b"mn1", b"mn2", b"mn4", b"mn5"])
        self.assertEqual(lma.store._staged, {b"mn3": None})
        lma.store._release()

    def test_stateOfEarlierReleaseLoads(self):
        """
        A database as the release before chunked restores wrote it (schema
        and records copied from one) loads: the live binding comes back
        with its pool address, the expired one is deleted at start.
        """
        path = os.path.abspath(self.mktemp())
        db = sqlite3.connect(path)
        db.executescript(
            "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "CREATE TABLE entries (key BLOB PRIMARY KEY, record TEXT NOT NULL) WITHOUT ROWID;"
            "INSERT INTO meta VALUES ('format', '1'), ('kind', 'lma-bindings');")
        later = reactor.seconds() + 3000
        for key, last, expiry in ((b"mn0@bench", "100", later),
                                  (b"mn1@bench", "101", reactor.seconds() - 10)):
            db.execute("INSERT INTO entries VALUES (?, ?)", (key, (
                '{"phoa":"2001:db8:1:0:0:0:0:%s","homes":["2001:db8:1:0:0:0:0:%s"],'
                '"ipv4":null,"mn":"%s","pcoa":"2001:db8:ff:0:0:0:0:1","sequence":20372,'
                '"lifetime":3600,"expiry":%r,"client":"0:0:0:0:0:0:0:1","profile":"netlmm",'
                '"state":"REGISTERED","timestamp":null,"att":null,"llid":null,"lla":null}'
                % (last, last, key.hex(), expiry))))
        db.commit()
        db.close()
        lma = self.lmaService(path)
        lma.loadState()
        self.addCleanup(lma.store._release)
        b = lma.core.bindingFor(b"mn0@bench")
        self.assertEqual((b.phoa, b.pcoa, b.client, b.sequence, b.lifetime, b.expiry),
                         (IPv6Address("2001:db8:1::100"), IPv6Address("2001:db8:ff::1"),
                          IPv6Address("::1"), 20372, 3600, later))
        self.assertTrue(lma.core.pool.taken(IPv6Address("2001:db8:1::100")))
        self.assertIsNone(lma.core.bindingFor(b"mn1@bench"))
        self.assertEqual(lma.store._staged, {b"mn1@bench": None})

    def test_badRecordInLaterChunkNamed(self):
        """A bad record without a key (a JSON state file) is named by its place in the file."""
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            json.dump({"format": 1, "kind": "lma-bindings", "records": [
                self.record(), self.record(b"mn2", "2001:db8:1::101"),
                self.record(b"mn3", phoa="zzz")]}, f)
        lma = self.lmaService(path)
        lma.restoreChunk = 2
        e = self.assertRaises(StateError, lma.loadState)
        self.assertEqual(str(e), f"{path}: bad record #2: 'phoa': 'zzz' is not an "
                                 "IPv6 address")

    def test_badRecordNamed(self):
        """A record the core cannot use stops the start, naming the file and the record."""
        path = os.path.abspath(self.mktemp())
        store = SqliteStore(path, "lma-bindings", reactor)
        store.load()
        store.rewrite([Persist(MN1, self.record()),
                       Persist(b"mn2", self.record(b"mn2", phoa="zzz"))])
        store._release()
        lma = self.lmaService(path)
        e = self.assertRaises(StateError, lma.loadState)
        self.assertEqual(str(e), f"{path}: bad record 'mn2': 'phoa': 'zzz' is not an "
                                 "IPv6 address")
        lma.store._release()
