"""
Tests for L{netlmm.redisstore}, binding state in Redis, against a real
redis-server started in a temporary directory (L{netlmm.lab.redis}): the
promises of the SQLite store (written before acknowledged, group commit,
restore at start, bad state refused by name), plus what a server of its own
adds: Redis away or frozen (nothing acknowledged, writes kept and retried,
back by itself), fencing, and the [state] config.
"""

import os
from ipaddress import IPv6Address

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from netlmm.core.effects import Persist
from netlmm.interfaces import IStateStore
from netlmm.lab.redis import runningRedis
from netlmm.lab.wait import until
from netlmm.redisstore import BlockingRedis, RedisStore, RedisTarget
from netlmm.store import StateError
from netlmm.test.test_store import LO, deferLaterSeconds, pbu
from netlmm.wire import mh

MN1 = b"mn1@example.net"


class RedisStoreTests(TestCase):

    timeout = 30

    def setUp(self):
        self.redis = runningRedis(self, tcp=True)

    def store(self, kind="lma-bindings", timeout=1.0, prefix="netlmm:", tcp=False):
        s = RedisStore(self.redis.target(timeout, tcp=tcp), kind, reactor, prefix)
        self.addCleanup(s.close)
        return s

    def raw(self, *command):
        r = BlockingRedis(self.redis.target())
        try:
            return r.call(*command)
        finally:
            r.close()

    def test_interface(self):
        verifyObject(IStateStore, self.store())

    def test_emptyLoad(self):
        self.assertEqual(self.store().load(), [])

    @inlineCallbacks
    def test_putCommitLoad(self):
        """What a commit waited for is what a new store (a restarted daemon) loads."""
        s = self.store(tcp=True)
        s.put(MN1, {"phoa": IPv6Address("2001:db8::1"), "n": 1})
        s.put(b"mn2", {"n": 2})
        yield s.commit()
        s.put(b"mn2", None)
        s.put(b"mn3", {"n": 3})
        yield s.commit()
        self.assertEqual(sorted(self.store().load()), [
            (MN1, {"phoa": "2001:db8::1", "n": 1}), (b"mn3", {"n": 3})])
        self.assertEqual(self.raw(b"GET", b"netlmm:lma-bindings:format"), b"1")

    @inlineCallbacks
    def test_largeBatch(self):
        """
        A batch larger than one HSET/HDEL of the script (and than Lua's
        unpack limit) is written whole; so is a large load (several HSCANs).
        """
        s = self.store()
        for i in range(12000):
            s.put(b"mn%d" % i, {"i": i})
        yield s.commit()
        self.assertEqual(s.counters["commits"], 1)
        for i in range(0, 12000, 2):
            s.put(b"mn%d" % i, None)
        yield s.commit()
        loaded = dict(self.store().load())
        self.assertEqual(len(loaded), 6000)
        self.assertEqual(loaded[b"mn11999"], {"i": 11999})

    @inlineCallbacks
    def test_groupCommit(self):
        """Puts made while a write runs go together in the next one."""
        s = self.store()
        s.put(b"a", {"n": 1})
        first = s.commit()
        for i in range(20):
            s.put(b"b%d" % i, {"n": i})
            s.commit()
        yield first
        yield s.flush()
        self.assertEqual(s.counters, {"commits": 2, "entries": 21, "failures": 0})

    def test_binaryKeys(self):
        """Keys that are not text (the GMA's 16-octet home addresses) come back as they went."""
        key = IPv6Address("2001:db8::1").packed
        s = self.store("gma-bindings")
        s.rewrite([Persist(key, {"x": 1}), Persist(MN1, {"x": 2})])
        self.assertEqual(sorted(s.load()), sorted([(key, {"x": 1}), (MN1, {"x": 2})]))

    def test_rewrite(self):
        """rewrite() replaces everything, in one step; an empty rewrite empties."""
        s = self.store()
        s.rewrite([Persist(b"a", {"n": 1}), Persist(b"b", {"n": 2})])
        s.rewrite([Persist(b"c", {"n": 3})])
        self.assertEqual(s.load(), [(b"c", {"n": 3})])
        s.rewrite([])
        self.assertEqual(s.load(), [])
        self.assertEqual(self.raw(b"EXISTS", b"netlmm:lma-bindings:new"), 0)

    def test_kindsApart(self):
        """Each kind (and prefix) has its own hash: an LMA never reads a PMIP client's state."""
        self.store("pmip-bindings").rewrite([Persist(MN1, {"n": 1})])
        self.store(prefix="other:").rewrite([Persist(MN1, {"n": 2})])
        self.assertEqual(self.store().load(), [])

    def test_notAHash(self):
        self.raw(b"SET", b"netlmm:lma-bindings", b"something else")
        e = self.assertRaises(StateError, self.store().load)
        self.assertIn("netlmm:lma-bindings: not netlmm lma-bindings state (a string", str(e))

    def test_otherFormat(self):
        self.raw(b"HSET", b"netlmm:lma-bindings", MN1, b"{}")
        self.raw(b"SET", b"netlmm:lma-bindings:format", b"7")
        e = self.assertRaises(StateError, self.store().load)
        self.assertIn("format b'7'", str(e))

    def test_recordNotJson(self):
        """A bad record is named: the daemon does not start empty in its place."""
        self.store().rewrite([Persist(b"a", {"n": 1})])
        self.raw(b"HSET", b"netlmm:lma-bindings", MN1, b"{oops")
        e = self.assertRaises(StateError, self.store().load)
        self.assertIn("bad record 'mn1@example.net': not JSON", str(e))
        self.assertIn(f"redis {self.redis.socket} netlmm:lma-bindings", str(e))

    def test_noServer(self):
        """No Redis at start-up: one line naming where it was looked for."""
        self.redis.kill()
        e = self.assertRaises(StateError, self.store().load)
        self.assertEqual(str(e), f"redis {self.redis.socket}: cannot connect: "
                         "Connection refused")

    @inlineCallbacks
    def test_redisAwayThenBack(self):
        """
        Redis killed: the commit does not fire (nothing may be acknowledged),
        the store says it is unavailable; Redis back (its append-only file
        kept what it had acknowledged): the write goes through by itself,
        and the commit fires.
        """
        s = self.store(timeout=0.3)
        s.put(b"a", {"n": 1})
        yield s.commit()
        self.redis.kill()
        s.put(MN1, {"n": 2})
        done = []
        s.commit().addCallback(done.append)
        yield until(lambda: not s.available, what="the store to notice", timeout=5)
        self.assertEqual(done, [])
        self.redis.start()
        yield until(lambda: done, what="the commit once Redis is back", timeout=10)
        self.assertTrue(s.available)
        self.assertEqual(sorted(self.store().load()), [(b"a", {"n": 1}), (MN1, {"n": 2})])

    @inlineCallbacks
    def test_redisFrozen(self):
        """
        A Redis that accepts but does not answer (SIGSTOP) is a failure after
        the timeout too; answered again, the held write completes.
        """
        s = self.store(timeout=0.3)
        s.put(b"a", {"n": 1})
        yield s.commit()
        self.redis.pause()
        self.addCleanup(lambda: self.redis.process and self.redis.resume())
        s.put(MN1, {"n": 2})
        done = []
        s.commit().addCallback(done.append)
        yield until(lambda: not s.available, what="the timeout", timeout=5)
        yield deferLaterSeconds(0.5)
        self.assertEqual(done, [])
        self.redis.resume()
        yield until(lambda: done, what="the commit", timeout=10)
        self.assertEqual(dict(self.store().load())[MN1], {"n": 2})

    @inlineCallbacks
    def test_fenced(self):
        """
        With an owner token, writes apply only while the owner key holds it:
        a deposed writer's write is refused (and kept for retrying), never
        applied over its successor's.
        """
        s = self.store(timeout=0.3)
        s.owner = (b"netlmm:lma-bindings:owner", b"me")
        self.raw(b"SET", b"netlmm:lma-bindings:owner", b"me")
        s.put(b"a", {"n": 1})
        yield s.commit()
        self.raw(b"SET", b"netlmm:lma-bindings:owner", b"successor")
        s.put(b"a", {"n": 2})
        done = []
        s.commit().addCallback(done.append)
        yield until(lambda: s.counters["failures"], what="the refusal", timeout=5)
        self.assertEqual(done, [])
        self.assertEqual(self.store().load(), [(b"a", {"n": 1})])
        self.raw(b"SET", b"netlmm:lma-bindings:owner", b"me")
        yield until(lambda: done, what="the retry", timeout=10)
        self.assertEqual(self.store().load(), [(b"a", {"n": 2})])


class RedisTargetTests(TestCase):

    def test_oneOfAddressOrSocket(self):
        self.assertRaises(ValueError, RedisTarget)
        self.assertRaises(ValueError, RedisTarget, (IPv6Address("::1"), 1), "/x")

    def test_text(self):
        self.assertEqual(str(RedisTarget((IPv6Address("::1"), 6379), database=2)),
                         "redis [::1]:6379 db 2")
        self.assertEqual(str(RedisTarget(socket="/run/redis.sock")), "redis /run/redis.sock")


class StateConfigTests(TestCase):
    """The [state] table: validated, with errors that name the key."""

    def config(self, text, role="lma"):
        from netlmm.test.test_daemons import copyExamples
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        copyExamples(directory)
        path = os.path.join(directory, f"{role}.toml")
        with open(path) as f:
            original = f.read()
        with open(path, "w") as f:
            f.write(original.replace("state_file", "# state_file") + "\n" + text)
        return path

    def options(self, path, role="lma"):
        from importlib import import_module
        o = import_module(f"netlmm.tap.{role}").Options()
        o.parseOptions(["--config", path])
        return o

    def refused(self, text, role="lma"):
        from netlmm.tap.common import ConfigRejected
        return str(self.assertRaises(ConfigRejected, self.options, self.config(text, role),
                                     role))

    def test_defaults(self):
        o = self.options(self.config('[state]\nbackend = "redis"\naddress = "[::1]:6379"\n'))
        b = o.stateBackend
        self.assertEqual((str(b["target"]), b["target"].timeout, b["target"].database,
                          b["prefix"], b["replicas"]),
                         ("redis [::1]:6379", 1.0, 0, "netlmm:", 0))

    def test_socketRelativeToConfig(self):
        path = self.config('[state]\nbackend = "redis"\nsocket = "run/redis.sock"\n'
                           'database = 3\ntimeout = 0.5\nprefix = "site1:"\n')
        b = self.options(path).stateBackend
        self.assertEqual(b["target"].socket,
                         os.path.join(os.path.dirname(path), "run/redis.sock"))
        self.assertEqual((b["target"].database, b["target"].timeout, b["prefix"]),
                         (3, 0.5, "site1:"))

    def test_sqliteIsTheRolesStateFile(self):
        self.assertIsNone(self.options(self.config('[state]\nbackend = "sqlite"\n'))
                          .stateBackend)

    def test_addressOrSocket(self):
        self.assertIn("state: backend 'redis' needs address ('[::1]:6379') or socket",
                      self.refused('[state]\nbackend = "redis"\n'))

    def test_badBackend(self):
        self.assertIn("state.backend", self.refused('[state]\nbackend = "etcd"\n'))

    def test_typo(self):
        self.assertIn("state.adress", self.refused(
            '[state]\nbackend = "redis"\nsocket = "r.sock"\nadress = "x"\n'))

    def test_notWithStateFile(self):
        path = self.config('[state]\nbackend = "redis"\nsocket = "r.sock"\n')
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace("# state_file", "state_file"))
        from netlmm.tap.common import ConfigRejected
        e = self.assertRaises(ConfigRejected, self.options, path)
        self.assertIn("lma.state_file: not with [state] backend 'redis'", str(e))

    def test_failover(self):
        b = self.options(self.config(
            '[state]\nbackend = "redis"\nsocket = "r.sock"\n[state.failover]\n'
            'address = "2001:db8:f::1/64"\ninterface = "eth0"\nname = "lma-a"\n'
        )).stateBackend["failover"]
        self.assertEqual((str(b["address"]), b["interface"], b["lease"], b["name"]),
                         ("2001:db8:f::1/64", "eth0", 1.0, "lma-a"))

    def test_failoverBadAddress(self):
        self.assertIn("state.failover.address: expected an IPv6 address with its prefix "
                      "length such as '2001:db8:f::1/64', got 'lma'", self.refused(
                          '[state]\nbackend = "redis"\nsocket = "r.sock"\n'
                          '[state.failover]\naddress = "lma"\ninterface = "eth0"\n'))

    def test_failoverOnlyForTheLma(self):
        self.assertIn("state.failover: only for the LMA", self.refused(
            '[state]\nbackend = "redis"\nsocket = "r.sock"\n[state.failover]\n'
            'address = "2001:db8:f::1/64"\ninterface = "eth0"\n', "pmip"))

    def test_magWithoutPmipClient(self):
        """A MAG keeps state only for a co-located PMIP client: [state] alone is an error."""
        self.assertIn("state: a MAG keeps state only with a co-located PMIP client",
                      self.refused('[state]\nbackend = "redis"\nsocket = "r.sock"\n',
                                   "mag"))

    def test_passwordFileMode(self):
        path = self.config('[state]\nbackend = "redis"\nsocket = "r.sock"\n'
                           'password_file = "redis.pw"\n')
        pw = os.path.join(os.path.dirname(path), "redis.pw")
        with open(pw, "w") as f:
            f.write("secret\n")
        os.chmod(pw, 0o644)
        from netlmm.tap.common import ConfigRejected
        e = self.assertRaises(ConfigRejected, self.options, path)
        self.assertIn("state.password_file: " + pw + " can be read by others", str(e))
        os.chmod(pw, 0o600)
        self.assertEqual(self.options(path).stateBackend["target"].password, "secret")


class TapTests(TestCase):
    """The daemons as the taps build them keep their state in Redis."""

    timeout = 30

    def test_lmaLoadsFromRedis(self):
        redis = runningRedis(self)
        RedisStore(redis.target(), "lma-bindings", reactor).rewrite([Persist(MN1, {
            "phoa": "2001:db8:1::100", "mn": MN1.hex(), "pcoa": "2001:db8:ff::1",
            "sequence": 7, "lifetime": 3600, "expiry": reactor.seconds() + 3000,
            "client": "::1", "pooled": True})])
        t = StateConfigTests("test_defaults")
        path = t.config(f'[state]\nbackend = "redis"\nsocket = "{redis.socket}"\n')
        from netlmm.tap import lma
        [service] = lma.makeService(t.options(path)).ordered
        self.assertIsInstance(service.store, RedisStore)
        self.assertIsNotNone(service.core.bindingFor(MN1))


class LmaOverRedisTests(TestCase):
    """
    The LMA service over real sockets with its state in a real Redis: no
    PBAck before the binding is in Redis, whatever Redis does meanwhile.
    """

    timeout = 60

    @inlineCallbacks
    def setUp(self):
        from netlmm.lab.fakes import UDPProbe
        self.redis = runningRedis(self)
        # Killed, Redis is noticed at once (the connection closes): the
        # timeout matters for a frozen Redis only, and must not fire under
        # a loaded machine's delays.
        self.store = RedisStore(self.redis.target(timeout=1.0), "lma-bindings", reactor)
        from netlmm.core.lma import AddressPool, LmaCore
        from netlmm.dataplane.memory import MemoryDataPlane
        from netlmm.service.lma import LmaService
        self.lma = LmaService(
            reactor, LmaCore("2001:db8:1::/64", ["::1/128"], 3600,
                             AddressPool("2001:db8:1::100", "2001:db8:1::ffff")),
            (LO, 0), "udp", MemoryDataPlane())
        self.lma.store = self.store
        yield self.lma.startService()
        self.addCleanup(self.lma.stopService)
        self.probe = UDPProbe()
        self.port = reactor.listenUDP(0, self.probe, interface="::1")
        self.addCleanup(self.port.stopListening)

    def send(self, message):
        self.port.write(mh.encodeMessage(message, LO, LO), ("::1", self.lma.port.port))

    def answers(self):
        return [mh.decodeMessage(data) for data, _ in self.probe.received]

    def stored(self):
        return {key for key, _ in RedisStore(self.redis.target(), "lma-bindings",
                                             reactor).load()}

    @inlineCallbacks
    def test_attachStoredThenAnswered(self):
        self.send(pbu(10))
        yield until(lambda: self.probe.received, what="the PBAck")
        self.assertEqual([(a.status, a.sequence) for a in self.answers()], [(0, 10)])
        self.assertEqual(self.stored(), {MN1})

    @inlineCallbacks
    def test_redisAway(self):
        """
        Redis killed: a PBU in flight is not answered; once the store knows,
        a new mobile is refused with 130 at once, and a PBU for a binding
        the LMA has is not answered (its sender retransmits). Redis back:
        the held PBAck leaves, and new mobiles are accepted again.
        """
        self.send(pbu(10))
        yield until(lambda: self.probe.received, what="the first PBAck")
        self.redis.kill()
        self.send(pbu(11, mnId=b"mn2"))
        yield until(lambda: not self.store.available, what="the store to notice")
        self.assertEqual(len(self.probe.received), 1)
        self.send(pbu(12, mnId=b"mn3"))
        yield until(lambda: len(self.probe.received) == 2, what="the refusal")
        refusal = self.answers()[1]
        self.assertEqual((refusal.status, refusal.sequence),
                         (mh.Status.INSUFFICIENT_RESOURCES, 12))
        self.assertEqual(refusal.option(mh.MobileNodeIdentifier).identifier, b"mn3")
        self.assertIsNone(self.lma.core.bindingFor(b"mn3"))
        # A refresh of a known binding: not answered, not processed.
        self.send(pbu(13, phoa="2001:db8:1::100", mnId=None))
        yield until(lambda: self.lma.storeCounters["delayed"] == 1, what="the refresh")
        self.assertEqual(self.lma.storeCounters, {"refused": 1, "delayed": 1})
        self.assertEqual(self.lma.core.bindingFor(MN1).sequence, 10)
        self.redis.start()
        yield until(lambda: len(self.probe.received) == 3, what="the held PBAck",
                    timeout=10)
        self.assertEqual((self.answers()[2].status, self.answers()[2].sequence), (0, 11))
        self.assertTrue(self.store.available)
        self.send(pbu(14, mnId=b"mn4"))
        yield until(lambda: len(self.probe.received) == 4, what="a new attachment")
        self.assertEqual(self.answers()[3].status, 0)
        self.assertEqual(self.stored(), {MN1, b"mn2", b"mn4"})

    @inlineCallbacks
    def test_stopStartUnderLoad(self):
        """
        New mobiles at 200 PBUs/s while Redis is killed and started again:
        every PBU accepted is in Redis, the others were refused with 130 or
        are unanswered, and the LMA accepts again by itself.
        """
        from twisted.internet.task import LoopingCall
        sent = []

        def one():
            i = len(sent)
            sent.append(i)
            self.send(pbu(i % 65536, mnId=b"load%d" % i))
        load = LoopingCall(one)
        load.start(0.005)
        self.addCleanup(lambda: load.running and load.stop())
        yield deferLaterSeconds(0.5)
        self.redis.kill()
        yield deferLaterSeconds(1.0)
        self.redis.start()
        # Back by itself: then a moment more of load, accepted again.
        yield until(lambda: self.store.available, what="the store to write again",
                    timeout=15)
        back = len(sent)
        yield until(lambda: len(sent) > back + 50, what="more load", timeout=15)
        load.stop()
        # Accepted again after Redis came back, by itself (on a loaded machine
        # the answers to the last PBUs may take a while).
        yield until(lambda: [a for a in self.answers() if a.status == 0 and a.sequence >= back],
                    what="a PBU sent after Redis came back accepted", timeout=15)
        yield until(lambda: self.lma.awaitingCommit == 0, what="the held answers",
                    timeout=10)
        yield deferLaterSeconds(0.2)
        answers = self.answers()
        accepted = {b"load%d" % a.sequence for a in answers if a.status == 0}
        refused = [a for a in answers if a.status != 0]
        self.assertEqual({a.status for a in refused}, {130})
        self.assertEqual(len(refused), self.lma.storeCounters["refused"])
        self.assertTrue(refused)
        self.assertTrue(accepted)
        stored = self.stored()
        self.assertEqual(accepted - stored, set())




class FailoverTests(TestCase):
    """
    Two LMA services of one pair in this process (on loopback, each on a
    port of its own; the service address is the netns test's business):
    the lease decides which one serves, the standby takes over with every
    acknowledged binding, and a deposed active can write nothing.
    """

    timeout = 60

    def setUp(self):
        self.redis = runningRedis(self)

    def member(self, node, lease=0.5):
        from netlmm.core.lma import AddressPool, LmaCore
        from netlmm.dataplane.memory import MemoryDataPlane
        from netlmm.failover import FailoverService
        from netlmm.service.lma import LmaService
        lma = LmaService(
            reactor, LmaCore("2001:db8:1::/64", ["::1/128"], 3600,
                             AddressPool("2001:db8:1::100", "2001:db8:1::ffff")),
            (LO, 0), "udp", MemoryDataPlane(), name=f"LMA {node}")
        lma.store = RedisStore(self.redis.target(timeout=0.3), "lma-bindings", reactor)
        f = FailoverService(reactor, lma, lma.store, lease=lease, name=node)
        f.lostLease = []
        f.lost = lambda: f.lostLease.append(True)
        f.startService()
        self.addCleanup(lambda: f.running and f.stopService())
        return f

    @inlineCallbacks
    def pbus(self, f, messages):
        """Send C{messages} to C{f}'s LMA; its answers."""
        from netlmm.lab.fakes import UDPProbe
        probe = UDPProbe()
        port = reactor.listenUDP(0, probe, interface="::1")
        try:
            for m in messages:
                port.write(mh.encodeMessage(m, LO, LO), ("::1", f.role.port.port))
            yield until(lambda: len(probe.received) == len(messages), what="the answers")
        finally:
            yield port.stopListening()
        return [mh.decodeMessage(data) for data, _ in probe.received]

    @inlineCallbacks
    def test_standbyTakesOverOnStop(self):
        a = self.member("a")
        yield until(lambda: a.state == "active", what="a to be active")
        b = self.member("b")
        yield until(lambda: b.state == "waiting", what="b to wait")
        self.assertFalse(b.role.running)
        self.assertEqual(b.command(["list"]), "standby (waiting): not serving; the "
                         "active LMA answers\n")
        answers = yield self.pbus(a, [pbu(1, mnId=b"mn%d" % i) for i in range(20)])
        self.assertEqual({x.status for x in answers}, {0})
        yield a.stopService()
        # The lease was given up: b takes over within one poll.
        yield until(lambda: b.state == "active", what="b to take over", timeout=2)
        self.assertEqual(len(b.role.core.bindings), 20)
        self.assertEqual(len(b.role.dataplane.routes), 20)
        refresh = yield self.pbus(b, [pbu(2, phoa=str(
            x.option(mh.HomeNetworkPrefix).prefix), mnId=None) for x in answers[:3]])
        self.assertEqual([x.status for x in refresh], [0, 0, 0])

    @inlineCallbacks
    def test_deposedActiveCannotWrite(self):
        """
        An active that stops renewing (paused) loses the lease after
        C{lease}; the standby takes over; the old active's writes are
        refused by the fencing token, it finds the lease gone and steps
        down, and its late PBU changed nothing in Redis.
        """
        a = self.member("a")
        yield until(lambda: a.state == "active", what="a to be active")
        b = self.member("b")
        yield self.pbus(a, [pbu(1)])
        # a "pauses": no more renewals.
        a._call.cancel()
        yield until(lambda: b.state == "active", what="b to take over", timeout=3)
        self.assertIsNotNone(b.role.core.bindingFor(MN1))
        # a's core still believes in MN1 and processes a handoff: not stored.
        from netlmm.lab.fakes import UDPProbe
        probe = UDPProbe()
        port = reactor.listenUDP(0, probe, interface="::1")
        self.addCleanup(port.stopListening)
        port.write(mh.encodeMessage(pbu(5, phoa="2001:db8:1::100", mnId=None,
                                        mag="2001:db8:ff::9"), LO, LO),
                   ("::1", a.role.port.port))
        yield until(lambda: a.store.counters["failures"], what="the fenced write")
        a._renew()
        yield until(lambda: a.lostLease, what="a to step down")
        self.assertEqual(a.state, "stepped down")
        yield deferLaterSeconds(0.3)
        self.assertEqual(probe.received, [])
        [(key, record)] = RedisStore(self.redis.target(), "lma-bindings", reactor).load()
        self.assertEqual(IPv6Address(record["pcoa"]), IPv6Address("2001:db8:ff::1"))


    @inlineCallbacks
    def test_leaseRunOutUnclaimedIsTakenAgain(self):
        """
        A lease that ran out while the active could not renew it (a takeover
        blocked loading many bindings) and that nobody took is taken again;
        the active does not step down.
        """
        a = self.member("a")
        yield until(lambda: a.state == "active", what="a to be active")
        a._call.cancel()
        r = BlockingRedis(self.redis.target())
        self.addCleanup(r.close)
        r.call(b"DEL", b"netlmm:lma-bindings:owner")
        yield a._renew()
        self.assertEqual((a.state, a.lostLease), ("active", []))
        self.assertEqual(r.call(b"GET", b"netlmm:lma-bindings:owner"), a.token)
        answers = yield self.pbus(a, [pbu(1)])
        self.assertEqual(answers[0].status, 0)


class PmipTapTests(TestCase):

    timeout = 30

    def test_pmipClientKeepsItsStateInRedis(self):
        """The PMIP client as the tap builds it: its bound mobiles in Redis, loaded at start."""
        redis = runningRedis(self)
        t = StateConfigTests("test_defaults")
        path = t.config(f'[state]\nbackend = "redis"\nsocket = "{redis.socket}"\n'
                        'prefix = "site1:"\n', "pmip")
        from netlmm.tap import pmip
        [service] = pmip.makeService(t.options(path, "pmip")).ordered
        self.assertIsInstance(service.store, RedisStore)
        self.assertEqual(service.store.hash, b"site1:pmip-bindings")
        self.assertEqual(service.store.location,
                         f"redis {redis.socket} site1:pmip-bindings")
