"""
Durable state in Redis (issue 12 item 3): the same promises as the embedded
L{netlmm.store.SqliteStore} (every Persist written before the answer that
acknowledges it leaves, group commit, restore at start), with the state on a
C{redis-server} that outlives the daemon and that another daemon (a standby
LMA, L{netlmm.failover}) can read.

Layout: one Redis hash per daemon, C{PREFIX + kind} (C{netlmm:lma-bindings}),
field = the entry's key (the MN identifier), value = the record as JSON (the
same text the SQLite store keeps); C{PREFIX + kind + ":format"} holds
L{netlmm.store.FORMAT}. A batch is written by one Lua script, so it is
applied whole or not at all, and only while the writer holds the hash (the
fencing token of L{netlmm.failover}, when there is one): a deposed active
cannot overwrite what its successor wrote.

Writes go through txredisapi (Twisted-native, reconnects by itself); a write
that has no answer within C{timeout} counts as failed: the group commit
keeps the entries and their acknowledgements and tries again
(L{netlmm.store._GroupCommit}), and the role services refuse new work while
the store is failing (L{netlmm.store._GroupCommit.available}). L{load} and
L{rewrite} are for start-up (before twistd forks, or before a standby takes
over): they block, over a plain socket (L{BlockingRedis}).

Durability is Redis's: what Redis acknowledged survives a daemon's crash; to
survive a crash of Redis itself, run it with C{appendonly yes} and
C{appendfsync always} (doc/operations.md), and set C{replicas} to wait for
replicas too (Redis WAIT).
"""

import json
import os
import socket

from twisted.internet.defer import CancelledError
from twisted.python.failure import Failure
from twisted.logger import Logger
from zope.interface import implementer

from netlmm.interfaces import IStateStore
from netlmm.store import FORMAT, StateError, _GroupCommit, describeKey, encode

#: Entries per HSCAN/HSET round trip at start-up, and per HSET in the script.
CHUNK = 1000

#: Applies one batch: KEYS = (hash, owner key, format key); ARGV = (owner
#: token or '', format, number of upserts n, n field/value pairs, then the
#: fields to delete). With a token, only while the owner key holds it.
WRITE_SCRIPT = b"""
if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return redis.error_reply('NOTOWNER this daemon does not hold ' .. KEYS[2])
end
redis.call('SET', KEYS[3], ARGV[2])
local last = 3 + 2 * tonumber(ARGV[3])
local i = 4
while i <= last do
  local j = math.min(i + 1999, last)
  redis.call('HSET', KEYS[1], unpack(ARGV, i, j))
  i = j + 1
end
while i <= #ARGV do
  local j = math.min(i + 999, #ARGV)
  redis.call('HDEL', KEYS[1], unpack(ARGV, i, j))
  i = j + 1
end
return 1
"""


class RedisTarget:
    """
    Where a Redis server is: C{address} (IPv6Address, port) or C{socket} (a
    Unix socket path), database number, password (or None).
    """

    def __init__(self, address=None, socket=None, database=0, password=None,
                 timeout=1.0):
        if (address is None) == (socket is None):
            raise ValueError("a Redis target is an address or a socket, not both")
        self.address = address
        self.socket = socket
        self.database = database
        self.password = password
        self.timeout = timeout

    def __str__(self):
        where = self.socket if self.socket is not None else \
            f"[{self.address[0]}]:{self.address[1]}"
        return f"redis {where}" + (f" db {self.database}" if self.database else "")


class RedisError(Exception):
    """An error reply of Redis (its text)."""


class BlockingRedis:
    """
    A minimal blocking Redis client (RESP2 over a socket) for start-up:
    L{RedisStore.load} and L{RedisStore.rewrite} run before the reactor
    does. Not for the reactor thread of a serving daemon.
    """

    def __init__(self, target):
        self.target = target
        if target.socket is not None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            where = target.socket
        else:
            s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            where = (str(target.address[0]), target.address[1])
        s.settimeout(max(target.timeout, 5.0))
        try:
            s.connect(where)
        except OSError as e:
            s.close()
            raise StateError(f"{target}: cannot connect: {e.strerror or e}") from None
        self._sock = s
        self._buffer = b""
        if target.password is not None:
            self.call(b"AUTH", target.password)
        if target.database:
            self.call(b"SELECT", target.database)

    def close(self):
        self._sock.close()

    def call(self, *args):
        """Send one command, return its reply (bytes, int, list or None)."""
        return self.pipeline([args])[0]

    def pipeline(self, commands):
        """Send C{commands} at once; their replies, in order. An error reply raises."""
        self._sock.sendall(b"".join(_command(c) for c in commands))
        replies = [self._reply() for _ in commands]
        for r in replies:
            if isinstance(r, RedisError):
                raise r
        return replies

    def _line(self):
        while b"\r\n" not in self._buffer:
            self._fill()
        line, _, self._buffer = self._buffer.partition(b"\r\n")
        return line

    def _fill(self):
        try:
            data = self._sock.recv(65536)
        except OSError as e:
            raise StateError(f"{self.target}: {e.strerror or e}") from None
        if not data:
            raise StateError(f"{self.target}: connection closed")
        self._buffer += data

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b"-":
            return RedisError(rest.decode("utf-8", "replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self._buffer) < n + 2:
                self._fill()
            data, self._buffer = self._buffer[:n], self._buffer[n + 2:]
            return data
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise StateError(f"{self.target}: not a Redis reply: {line[:40]!r}")


def _command(args):
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode("utf-8")
        elif isinstance(a, int):
            a = b"%d" % a
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(parts)


@implementer(IStateStore)
class RedisStore(_GroupCommit):
    """
    The state of one daemon (C{kind}: "lma-bindings", "pmip-bindings",
    "gma-bindings") in the hash C{prefix + kind} on C{target} (a
    L{RedisTarget}).

    @ivar owner: None, or (owner key, token): writes apply only while the
        owner key holds the token (set by L{netlmm.failover}).
    """

    log = Logger()
    # Redis back means back at once: try often (each try is one round trip,
    # and the LMA refuses new mobiles until one succeeds).
    retryCap = 0.5

    def __init__(self, target, kind, reactor, prefix="netlmm:", replicas=0,
                 connect=None):
        super().__init__(reactor)
        self.target = target
        self.kind = kind
        self.hash = (prefix + kind).encode("utf-8")
        self.formatKey = self.hash + b":format"
        self.location = f"{target} {self.hash.decode()}"
        self.replicas = replicas
        self.owner = None
        self._connect = connect
        self._redis = None

    # ------------------------------------------------------------ start-up

    def _blocking(self):
        return BlockingRedis(self.target)

    def ping(self):
        """Raise L{StateError} unless Redis answers (blocking; for start-up)."""
        r = self._blocking()
        try:
            r.call(b"PING")
        except RedisError as e:
            raise StateError(f"{self.location}: {e}") from None
        finally:
            r.close()

    def load(self):
        r = self._blocking()
        try:
            try:
                kind, fmt = r.pipeline([(b"TYPE", self.hash), (b"GET", self.formatKey)])
            except RedisError as e:
                raise StateError(f"{self.location}: cannot read state: {e}") from None
            if kind == b"none":
                return []
            if kind != b"hash" or fmt != str(FORMAT).encode():
                raise StateError(f"{self.location}: not netlmm {self.kind} state (a "
                                 f"{kind.decode()}, format {fmt!r}); delete it or choose "
                                 "another prefix to start with an empty state")
            entries = []
            cursor = b"0"
            while True:
                cursor, items = r.call(b"HSCAN", self.hash, cursor, b"COUNT", CHUNK)
                for i in range(0, len(items), 2):
                    key, text = items[i], items[i + 1]
                    try:
                        entries.append((key, json.loads(text)))
                    except ValueError as e:
                        raise StateError(f"{self.location}: bad record "
                                         f"{describeKey(key)}: not JSON ({e})") from None
                if cursor == b"0":
                    return entries
        finally:
            r.close()

    def rewrite(self, persists):
        """Make the hash hold exactly C{persists}, in one step (RENAME of a new hash)."""
        tmp = self.hash + b":new"
        r = self._blocking()
        try:
            r.call(b"DEL", tmp)
            items = [(p.key, encode(p.record)) for p in persists]
            for i in range(0, len(items), CHUNK):
                args = [b"HSET", tmp]
                for key, text in items[i:i + CHUNK]:
                    args += (key, text)
                r.call(*args)
            last = (b"RENAME", tmp, self.hash) if items else (b"DEL", self.hash)
            r.pipeline([(b"SET", self.formatKey, FORMAT), last])
        except RedisError as e:
            raise StateError(f"{self.location}: cannot write state: {e}") from None
        finally:
            r.close()

    # ------------------------------------------------------------ writing

    def _client(self):
        if self._redis is None:
            if self._connect is not None:
                self._redis = self._connect(self.target)
            else:
                self._redis = connect(self.target)
        return self._redis

    def _write(self, batch):
        upserts, deletes = [], []
        for key, text in batch.items():
            if text is None:
                deletes.append(key)
            else:
                upserts += (key, text)
        if self.owner is None:
            ownerKey, token = self.hash + b":owner", b""
        else:
            ownerKey, token = self.owner
        d = self._client().eval(WRITE_SCRIPT, [self.hash, ownerKey, self.formatKey],
                                [token, FORMAT, len(upserts) // 2] + upserts + deletes)
        if self.replicas:
            d.addCallback(self._waitReplicas)
        # txredisapi waits for a connection as long as Redis is away: give
        # up after the timeout (the group commit tries again).
        return d.addTimeout(self.target.timeout, self.reactor, onTimeoutCancel=self._late)

    def _late(self, result, timeout):
        from twisted.internet.defer import TimeoutError
        if isinstance(result, Failure) and result.check(CancelledError):
            raise TimeoutError(f"no answer within {timeout:g} s")
        return result

    def _waitReplicas(self, result):
        d = self._client().execute_command(
            "WAIT", self.replicas, int(self.target.timeout * 1000))

        def check(n):
            if n < self.replicas:
                raise RedisError(f"{n} of {self.replicas} replicas have the write")
            return result
        return d.addCallback(check)

    def _release(self):
        redis, self._redis = self._redis, None
        if redis is not None:
            return redis.disconnect()


def connect(target):
    """A txredisapi lazy connection to C{target} that reconnects within a second."""
    import txredisapi
    common = dict(dbid=target.database or None, reconnect=True, password=target.password,
                  connectTimeout=target.timeout, replyTimeout=target.timeout)
    if target.socket is not None:
        redis = txredisapi.lazyUnixConnection(target.socket, **common)
    else:
        redis = txredisapi.lazyConnection(str(target.address[0]), target.address[1],
                                          **common)
    # Back quickly when Redis returns (txredisapi's default waits up to 10 s).
    redis._factory.initialDelay = 0.1
    redis._factory.maxDelay = 1.0
    return redis


def stateConfig(document, configDir):
    """
    The top-level [state] table of a daemon's config: None (the role's own
    C{state_file}, SQLite) or a dict describing a Redis store.
    """
    from netlmm.config import ConfigError
    table = document.table("state")
    if not table.data:
        return None
    backend = table.string("backend", "sqlite", choices=("sqlite", "redis"))
    if backend == "sqlite":
        table.finish()
        return None
    try:
        import txredisapi  # noqa: F401
    except ImportError:
        raise ConfigError("state.backend: 'redis' needs the txredisapi package "
                          "(pip install 'netlmm[redis]')") from None
    address = table.endpoint("address")
    path = table.path("socket")
    if (address is None) == (path is None):
        raise ConfigError("state: backend 'redis' needs address ('[::1]:6379') or "
                          "socket (a path), not both")
    database = table.number("database", 0, minimum=0, maximum=1 << 16, integer=True)
    timeout = table.number("timeout", 1.0, minimum=0.01, maximum=60)
    prefix = table.string("prefix", "netlmm:")
    replicas = table.number("replicas", 0, minimum=0, maximum=100, integer=True)
    password = None
    passwordFile = table.path("password_file")
    if passwordFile is not None:
        try:
            with open(passwordFile, "rb") as f:
                mode = os.fstat(f.fileno()).st_mode
                password = f.read().strip().decode("utf-8")
        except OSError as e:
            raise ConfigError(f"state.password_file: {passwordFile}: {e.strerror}") from None
        if mode & 0o077:
            raise ConfigError(f"state.password_file: {passwordFile} can be read by others; "
                              "chmod 600 it")
    failover = table.table("failover")
    if failover.data:
        from netlmm.failover import failoverConfig
        failover = failoverConfig(failover)
    else:
        failover = None
    table.finish()
    return dict(target=RedisTarget(address, path, int(database), password, timeout),
                prefix=prefix, replicas=int(replicas), failover=failover)


def makeStore(redis, stateFile, kind, reactor):
    """
    The store of a role: in Redis when C{redis} (what L{stateConfig} made)
    is given, else the SQLite database C{stateFile}, else None (no durable
    state).
    """
    if redis is not None:
        return RedisStore(redis["target"], kind, reactor, redis["prefix"],
                          redis["replicas"])
    if stateFile:
        from netlmm.store import SqliteStore
        return SqliteStore(stateFile, kind, reactor)
    return None
