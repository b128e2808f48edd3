"""
Durable state: what a daemon must not lose when it restarts, kept one record
per entry (a binding, a bound mobile) and written before the answer that
acknowledges it leaves (issue 11, CONTRACTS.md section 4).

The cores say what to keep with L{netlmm.core.effects.Persist}; the role
service (L{netlmm.service.base.RoleService}) stages each one with
L{IStateStore.put} and holds the acknowledgements that follow until
L{IStateStore.commit} fires. A store writes whatever was staged while its
previous write was running in one transaction (group commit), so the rate
stays up: the more inputs arrive, the more each transaction carries.

L{SqliteStore} is the embedded default: one SQLite database in WAL mode with
synchronous=FULL (a commit is on disk when it returns), a row per entry,
written by a thread of its own so the reactor never waits for the disk.
L{MemoryStore} keeps the same promises in memory, for tests.
"""

import json
import os
import socket
import time
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, IPv6Network

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from zope.interface import implementer

from netlmm.interfaces import IStateStore

#: The layout of what a store keeps; a store of another format is refused.
FORMAT = 1

_SQLITE_MAGIC = b"SQLite format 3\x00"
_ADDRESSES = (IPv6Address, IPv4Address, IPv6Network, IPv4Network, IPv4Interface)


class StateError(Exception):
    """
    State that exists but cannot be used (unreadable, of another kind, a bad
    record). The text is one line that names the file and what is wrong.
    """


def encode(record):
    """A record as the text a store keeps: JSON, addresses as their text."""
    return _encode(record)


def _text(value, _ntop=socket.inet_ntop, _v6=socket.AF_INET6):
    if type(value) is IPv6Address:
        # The compressed form, as str() gives it, in C: str() costs twice as
        # much (and the full form by "%x" ten times as much as this).
        return _ntop(_v6, int(value).to_bytes(16, "big"))
    if isinstance(value, _ADDRESSES):
        return str(value)
    raise TypeError(f"{type(value).__name__} {value!r} cannot be kept in a record")


# check_circular=False: records are flat (one function per core makes them),
# and the encoder's bookkeeping of containers doubled a record's encoding.
_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False, check_circular=False,
                           default=_text).encode


def describeKey(key, index=None):
    """
    An entry's key as one line of text for an error: an MN identifier as
    text, a home address (the GMA's 16-octet keys that are not text) as an
    address.
    """
    if key is None:
        return f"#{index}"
    text = key.decode("utf-8", "backslashreplace")
    if len(key) == 16 and not text.isprintable():
        return repr(IPv6Address(key).compressed)
    return repr(text)


class _GroupCommit:
    """
    What the stores share: puts staged in memory, one write at a time, and
    every commit() answered when the write that holds its puts is done.
    Subclasses implement C{_write(batch)}: batch is {key: text or None} to
    make durable; it returns a Deferred.
    """

    log = Logger()
    #: The longest wait between two attempts at a write that failed, seconds.
    retryCap = 5.0

    def __init__(self, reactor):
        from netlmm.metrics import Histogram
        self.reactor = reactor
        #: Entries put since the last write began: key -> encoded record or None.
        self._staged = {}
        #: commit() Deferreds that wait for the staged entries.
        self._waiters = []
        #: (batch, waiters) of the write in progress, or None.
        self._writing = None
        self._retry = None
        self._failures = 0
        self._closing = False
        #: Transactions committed and entries they carried.
        self.counters = {"commits": 0, "entries": 0, "failures": 0}
        #: How long each committed write took, from its start until it was
        #: durable (seconds): what the acknowledgements it holds wait for.
        self.latency = Histogram()
        self._began = 0.0

    def put(self, key, record):
        self._staged[key] = None if record is None else encode(record)

    def commit(self):
        if not self._staged:
            if self._writing is None:
                return succeed(None)
            d = Deferred()
            self._writing[1].append(d)
            return d
        d = Deferred()
        self._waiters.append(d)
        if self._writing is None and self._retry is None:
            self._startWrite()
        return d

    def _now(self):
        return time.monotonic() if self.reactor is None else self.reactor.seconds()

    @property
    def available(self):
        """
        False while writing fails (since the last failed attempt, until one
        succeeds): the role services then refuse new work rather than pile
        up acknowledgements they cannot release.
        """
        return not self._failures

    @property
    def pending(self):
        """Entries staged or being written."""
        return len(self._staged) + (len(self._writing[0]) if self._writing else 0)

    def _startWrite(self):
        batch, self._staged = self._staged, {}
        waiters, self._waiters = self._waiters, []
        self._writing = (batch, waiters)
        self._began = self._now()
        d = self._write(batch)
        d.addCallbacks(self._written, self._failed)

    def _written(self, _):
        batch, waiters = self._writing
        self._writing = None
        self.counters["commits"] += 1
        self.counters["entries"] += len(batch)
        self.latency.observe(self._now() - self._began)
        if self._failures:
            self.log.info("state {location}: writing again after {n} failed attempts",
                          location=self.location, n=self._failures)
            self._failures = 0
        for d in waiters:
            d.callback(None)
        if self._staged:
            self._startWrite()

    def _failed(self, failure):
        batch, waiters = self._writing
        self._writing = None
        self._failures += 1
        self.counters["failures"] += 1
        if self._closing:
            self.log.error("state {location}: {n} entries not written at stop: {error}",
                           location=self.location, n=len(batch) + len(self._staged),
                           error=failure.getErrorMessage())
            self._staged = {}
            for d in waiters + self._waiters:
                d.callback(None)
            self._waiters = []
            return
        # Newer puts win over what failed; the acknowledgements stay held.
        batch.update(self._staged)
        self._staged = batch
        self._waiters[:0] = waiters
        delay = min(0.1 * 2 ** (self._failures - 1), self.retryCap)
        if self._failures == 1 or self._failures % 10 == 0:
            self.log.error("state {location}: cannot write ({error}); {n} entries and "
                           "their acknowledgements wait, trying again in {delay:g} s",
                           location=self.location, error=failure.getErrorMessage(),
                           n=len(batch), delay=delay)
        self._retry = self.reactor.callLater(delay, self._retryNow)

    def _retryNow(self):
        self._retry = None
        if self._staged and self._writing is None:
            self._startWrite()

    def flush(self):
        """A Deferred that fires once everything put so far is written."""
        return self.commit()

    def close(self):
        """Write what is staged, then release the store. Returns a Deferred."""
        self._closing = True
        if self._retry is not None and self._retry.active():
            # Failing already: one last attempt, then give up.
            self._retry.cancel()
            self._retry = None
            if self._staged and self._writing is None:
                self._startWrite()
        d = self.commit()
        d.addCallback(lambda _: self._release())
        return d

    def _release(self):
        """Free what the store holds (a connection, a thread)."""


@implementer(IStateStore)
class MemoryStore(_GroupCommit):
    """
    A store in memory with the real stores' behaviour: records go through
    JSON, and a commit completes only when the test says so
    (L{completeWrite}) unless C{automatic}.

    @ivar entries: what is durable: key -> record (decoded).
    """

    def __init__(self, reactor=None, automatic=True, entries=None):
        super().__init__(reactor)
        self.location = "memory"
        self.automatic = automatic
        self.entries = dict(entries or {})
        self._pendingWrite = None
        #: Set to an exception to make the next writes fail with it.
        self.failWith = None

    def load(self):
        return list(self.entries.items())

    def rewrite(self, persists):
        self.entries = {p.key: json.loads(encode(p.record)) for p in persists}

    def _write(self, batch):
        d = Deferred()
        self._pendingWrite = (d, batch)
        if self.automatic:
            self.completeWrite()
        return d

    def completeWrite(self):
        """Finish the write in progress (when not C{automatic})."""
        d, batch = self._pendingWrite
        self._pendingWrite = None
        if self.failWith is not None:
            d.errback(self.failWith)
            return
        for key, text in batch.items():
            if text is None:
                self.entries.pop(key, None)
            else:
                self.entries[key] = json.loads(text)
        d.callback(None)

    def crash(self):
        """Lose what is not written, as a killed process would."""
        self._pendingWrite = None
        self._staged = {}
        self._waiters = []
        self._writing = None


@implementer(IStateStore)
class SqliteStore(_GroupCommit):
    """
    State in the SQLite database at C{path}: a table of (key, record) rows
    and the C{kind} of state it holds ("lma-bindings", "pmip-bindings"),
    so a file of another daemon is refused. A JSON state file of earlier
    versions at C{path} is read, and replaced by a database (the old file
    kept as C{path}.json) by L{rewrite}.

    @param run: how to run a blocking call off the reactor thread:
        C{run(f, *args)} returns a Deferred. By default a thread of the
        store's own, so writes happen in order and never wait for other
        blocking work.
    """

    def __init__(self, path, kind, reactor, run=None):
        super().__init__(reactor)
        self.path = path
        self.location = path
        self.kind = kind
        self._db = None
        self._pool = None
        self._run = run

    # ------------------------------------------------------------ opening

    def load(self):
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise StateError(f"{self.path}: directory {directory} does not exist")
        try:
            with open(self.path, "rb") as f:
                head = f.read(len(_SQLITE_MAGIC))
        except FileNotFoundError:
            head = b""
        except OSError as e:
            raise StateError(f"{self.path}: cannot read state: {e.strerror}") from None
        if head and head != _SQLITE_MAGIC:
            return [(None, r) for r in self._loadJson()]
        # Checked (and made, when new) at once; read when iterated.
        self._connect(self.path).close()
        return self._rows()

    #: Rows fetched from SQLite at a time by L{load}'s iterator.
    fetchRows = 1000

    def _rows(self):
        """
        The entries, decoded as they are read, a few rows at a time. The
        connection is closed once they are all read: twistd may fork after
        loading, and SQLite's locks do not pass to a child. The writer opens
        its own.
        """
        import sqlite3
        db = self._connect(self.path)
        try:
            cursor = db.execute("SELECT key, record FROM entries")
            while True:
                rows = cursor.fetchmany(self.fetchRows)
                if not rows:
                    break
                for key, text in rows:
                    try:
                        record = json.loads(text)
                    except (TypeError, ValueError) as e:
                        raise StateError(f"{self.path}: bad record "
                                         f"{describeKey(bytes(key))}: not JSON ({e})") \
                            from None
                    yield bytes(key), record
        except sqlite3.Error as e:
            raise StateError(f"{self.path}: cannot read state: {e}") from None
        finally:
            db.close()

    def _connect(self, path):
        import sqlite3
        if not os.path.exists(path):
            # Bindings name subscribers: the file is for this daemon only.
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        try:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise StateError(f"{path}: SQLite cannot use WAL mode here ({mode})")
            db.execute("PRAGMA synchronous=FULL")
            tables = {r[0] for r in db.execute(
                "SELECT name FROM sqlite_master WHERE type='table'")}
            if not tables:
                db.executescript(
                    "BEGIN;"
                    "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);"
                    "CREATE TABLE entries (key BLOB PRIMARY KEY, record TEXT NOT NULL)"
                    " WITHOUT ROWID;"
                    f"INSERT INTO meta VALUES ('format', '{FORMAT}'), "
                    f"('kind', '{self.kind}');"
                    "COMMIT;")
                return db
            meta = dict(db.execute("SELECT name, value FROM meta")) \
                if "meta" in tables else {}
        except sqlite3.Error as e:
            raise StateError(f"{path}: cannot use state: {e}") from None
        if meta.get("format") != str(FORMAT) or "entries" not in tables:
            db.close()
            raise StateError(f"{path}: not a netlmm state database (format {FORMAT}); "
                             "move it away to start with an empty state")
        if meta.get("kind") != self.kind:
            db.close()
            raise StateError(f"{path}: holds {meta.get('kind')} state, not {self.kind}")
        return db

    def _loadJson(self):
        """Records of a JSON state file (format 1 of netlmm.statefile)."""
        try:
            with open(self.path, "rb") as f:
                document = json.load(f)
        except (OSError, ValueError) as e:
            raise StateError(f"{self.path}: neither a state database nor a JSON state "
                             f"file: {e}") from None
        if (not isinstance(document, dict) or document.get("format") != 1
                or document.get("kind") != self.kind
                or not isinstance(document.get("records"), list)):
            raise StateError(f"{self.path}: not a netlmm {self.kind} state file; move "
                             "it away to start with an empty state")
        self.legacy = True
        return document["records"]

    legacy = False

    def rewrite(self, persists):
        """
        Make the store hold exactly C{persists} (L{Persist} effects), in
        one step: a new database replaces the file at once (a JSON state
        file is kept as C{path}.json). Blocking; for start-up.
        """
        if self._db is not None:
            self._db.close()
            self._db = None
        tmp = f"{self.path}.new"
        for leftover in (tmp, tmp + "-wal", tmp + "-shm", tmp + "-journal"):
            if os.path.exists(leftover):
                os.unlink(leftover)
        db = self._connect(tmp)
        with db:
            db.execute("BEGIN")
            db.executemany("INSERT INTO entries (key, record) VALUES (?, ?)",
                           [(p.key, encode(p.record)) for p in persists])
        # Leave no -wal file behind: the rename moves only the main file.
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("PRAGMA journal_mode=DELETE")
        db.close()
        if self.legacy:
            backup = self.path + ".json"
            if os.path.exists(backup):
                os.unlink(backup)
            os.link(self.path, backup)
        os.replace(tmp, self.path)
        _syncDirectory(self.path)
        if self.legacy:
            self.log.info("state {path}: the JSON state file is now a database; the old "
                          "file is kept as {backup}", path=self.path,
                          backup=self.path + ".json")
            self.legacy = False

    # ------------------------------------------------------------ writing

    def _write(self, batch):
        if self._run is not None:
            return self._run(self._transaction, batch)
        if self._pool is None:
            from twisted.python.threadpool import ThreadPool
            self._pool = ThreadPool(1, 1, name="netlmm-state")
            self._pool.start()
            self.reactor.addSystemEventTrigger("after", "shutdown", self._stopPool)
        from twisted.internet.threads import deferToThreadPool
        return deferToThreadPool(self.reactor, self._pool, self._transaction, batch)

    def _transaction(self, batch):
        """Write C{batch} in one transaction (off the reactor thread)."""
        db = self._db
        if db is None:
            db = self._db = self._connect(self.path)
        upserts = [(k, v) for k, v in batch.items() if v is not None]
        deletes = [(k,) for k, v in batch.items() if v is None]
        db.execute("BEGIN")
        try:
            if upserts:
                db.executemany("INSERT OR REPLACE INTO entries (key, record) "
                               "VALUES (?, ?)", upserts)
            if deletes:
                db.executemany("DELETE FROM entries WHERE key = ?", deletes)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _release(self):
        db, self._db = self._db, None
        if db is not None:
            db.close()
        self._stopPool()

    def _stopPool(self):
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()


def _syncDirectory(path):
    """Make a rename in C{path}'s directory durable."""
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def stateFileFromTable(table, configDir):
    """
    The C{state_file} of a role's config table as an absolute path (relative
    ones are from the config file's directory), or None when unset. Its
    directory must exist: the daemon creates the file, not the directory.
    """
    from netlmm.config import ConfigError
    path = table.string("state_file")
    if not path:
        return None
    path = os.path.join(configDir or os.getcwd(), os.path.expanduser(path))
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise ConfigError(f"{table._key('state_file')}: directory {directory} does not exist")
    return path


def loadOrExit(service, role):
    """
    For makeService: load the state into C{service}'s core before twistd
    forks. State that cannot be used stops the daemon with one line that
    names the file and the bad record (exit status 1); it never starts empty
    in its place.
    """
    try:
        service.loadState()
    except StateError as e:
        raise SystemExit(f"netlmm-{role} cannot start: {e}") from None
