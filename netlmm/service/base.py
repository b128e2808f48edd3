"""What the three role services share: feeding a core, driving its timer, keeping its state."""

import gc
from itertools import islice

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from netlmm.core.effects import BadRecord, InvalidInput, Persist


class RoleService(MultiService):
    """
    A service around a sans-IO core. Every input goes through L{feed}, which
    runs the core, carries out the effects it returns and re-arms the one
    C{callLater} that drives the core's timers.

    With a C{store} (an L{netlmm.interfaces.IStateStore}), the core's
    L{Persist} effects go to it, and what follows a Persist (the PBAck, the
    Notification that acknowledges the change) is held until the store has
    committed it. Held effects leave in the order the core made them: while
    anything is held, later effects queue behind it.

    @param observer: optional callable C{(role, direction, message, peer)}
        told of every message this role sends or receives.
    """

    log = Logger()

    def __init__(self, reactor, core, observer=None):
        super().__init__()
        self.reactor = reactor
        self.core = core
        self.observer = observer
        self._timer = None
        self.invalidInputs = 0
        #: Where the core's Persist effects go (an IStateStore), or None.
        self.store = None
        #: This node's RFC 5847 Restart Counter, set by L{loadState}.
        self.restartCounter = None
        #: The role's L{netlmm.service.heartbeat.HeartbeatConfig}, or None:
        #: with one, the Restart Counter is kept in the store.
        self.heartbeatConfig = None
        #: What the role's execute() needs from the input being handled
        #: (the LMA: the PBU's source port and security verdict). Held
        #: effects are carried out later with the context they were made in.
        self.context = None
        # Effects the core asked for at start (restore), until started.
        self._restored = None
        # The Deferred the last held effects wait for.
        self._holding = None
        # Within a batch: the (effects, context) that wait for its commit.
        self._gathered = None
        # How many batches are open (one, unless a transport nests them).
        self._inBatch = 0
        #: How many effects lists wait for a commit now.
        self.awaitingCommit = 0
        self._stopping = False
        #: Effects lists held for a commit, and those dropped at stop.
        self.holdCounters = {"held": 0, "dropped": 0}

    # ------------------------------------------------------------ state

    #: How many restored entries make L{loadState} freeze the collector's
    #: view of them (C{gc.freeze}).
    freezeFrom = 10_000

    #: Records read, decoded and given to the core's restore() at a time: a
    #: large state is never held whole, so the start leaves no high-water
    #: mark of transient objects among the restored ones.
    restoreChunk = 1000

    def loadState(self):
        """
        Read the store into the core, a chunk of records at a time. The taps
        call it in makeService, before twistd forks, so that state that
        cannot be used stops the daemon; otherwise L{restoreState} does at
        start. Raises L{netlmm.store.StateError} naming the file and the bad
        record. The records the core leaves out (expired while the daemon
        was down) are deleted from the store when the service starts.
        """
        self._restored = []
        from netlmm.service.heartbeat import COUNTER_KEY, restartCounter
        if self.store is None:
            self.restartCounter = restartCounter([])[0]
            return
        from netlmm.store import StateError, describeKey
        now = self.reactor.seconds()
        effects, total, leftOut, legacy = [], 0, 0, False
        # The Restart Counter's record, taken out of the entries as they go by.
        counter = []
        # Nothing restored is garbage: collections during the load would
        # only walk the growing cache again and again.
        collecting = gc.isenabled()
        gc.disable()
        try:
            entries = iter(_withoutCounter(self.store.load(), counter))
            while True:
                chunk = list(islice(entries, self.restoreChunk))
                if not chunk:
                    break
                try:
                    made = self.core.restore([r for _, r in chunk], now)
                except BadRecord as e:
                    raise StateError(
                        f"{self.store.location}: bad record "
                        f"{describeKey(chunk[e.index][0], total + e.index)}: "
                        f"{e.reason}") from None
                total += len(chunk)
                # An older format without keys is rewritten whole below.
                legacy = legacy or chunk[0][0] is None
                for e in made:
                    if type(e) is not Persist:
                        effects.append(e)
                        continue
                    if e.record is None:
                        leftOut += 1
                    if not legacy:
                        self.store.put(e.key, e.record)
                del chunk, made
        finally:
            if collecting:
                gc.enable()
        kept = total - leftOut
        if legacy:
            persists = self.core.snapshot()
            kept = len(persists)
            self.store.rewrite(persists)
            del persists
        self.restartCounter, _, stored = restartCounter(counter)
        if self.heartbeatConfig is not None and not stored:
            # A new counter, kept with the state it goes with (RFC 5847 3.3).
            self.store.put(COUNTER_KEY, {"restartCounter": self.restartCounter})
        self.log.info("{role}: restored {n} of {total} entries from {location}",
                      role=self.name, n=kept, total=total, location=self.store.location)
        if kept >= self.freezeFrom:
            # The restored entries live as long as their bindings: collect
            # once, then move every object there is into the permanent
            # generation, so that full collections never walk them again (a
            # full collection over 100,000 LMA bindings paused every PBU for
            # about 0.3 s).
            gc.collect()
            gc.freeze()
        self._restored = effects

    def storeMetricFamilies(self, prefix):
        """
        The state store's Prometheus metrics (L{netlmm.metrics}), when the
        role keeps state: commit latency, transactions, entries, failures,
        and what waits for the store now.
        """
        store = self.store
        if store is None:
            return
        from netlmm.metrics import counter, gauge
        yield store.latency.family(
            f"{prefix}_store_commit_seconds",
            "Time each state store transaction took from its start until it was "
            "durable; the acknowledgements it holds wait that long")
        for key, name, what in (
                ("commits", "commits", "State store transactions committed"),
                ("entries", "entries_written",
                 "Entries (changes and deletions) written by those transactions"),
                ("failures", "failures", "State store writes that failed (and are retried)")):
            yield counter(f"{prefix}_store_{name}", what, store.counters[key])
        yield gauge(f"{prefix}_store_pending", "Entries staged or being written",
                    store.pending)
        yield gauge(f"{prefix}_acknowledgements_held",
                    "Answers (PBAcks, Notifications) held until the store commits",
                    self.awaitingCommit)

    def restoreState(self):
        """Load the store if not done yet, and carry out what the core asked (before serving)."""
        if self._restored is None:
            self.loadState()
        effects, self._restored = self._restored, []
        self._dispatch(effects)

    # ------------------------------------------------------------ inputs

    def feed(self, method, *args):
        """
        Run C{method(*args, now)} on the core and carry out its effects. An
        input not valid in its state is logged and counted; the caller gets
        the L{InvalidInput} back to answer it.
        """
        try:
            effects = method(*args, self.reactor.seconds())
        except InvalidInput as e:
            self.invalidInputs += 1
            self.log.warn("{role}: {error}", role=self.name, error=e)
            if not self._inBatch:
                self._rearm()
            return e
        self._dispatch(effects)
        if not self._inBatch:
            # Within a batch, once at its end: no timer fires before that.
            self._rearm()
        return None

    def _dispatch(self, effects):
        """
        Carry out C{effects}: Persist effects to the store, the effects
        after the first of them once the store has committed. Within a
        batch (L{batch}) the effects that wait are gathered and committed
        together at its end.
        """
        store = self.store
        if store is None:
            self.execute(effects)
            return
        first = None
        for i, e in enumerate(effects):
            if type(e) is Persist:
                store.put(e.key, e.record)
                if first is None:
                    first = i
        gathered = self._gathered
        waiting = self._holding is not None or bool(gathered)
        if first is None:
            if not waiting:
                self.execute(effects)
                return
        else:
            if first and not waiting:
                self.execute(effects[:first])
                effects = effects[first:]
            effects = [e for e in effects if type(e) is not Persist]
        if gathered is not None:
            gathered.append((effects, self.context))
        elif first is None:
            # Behind what is held already; nothing new to commit.
            self._hold(self._holding, [(effects, self.context)])
        else:
            self._hold(store.commit(), [(effects, self.context)])

    def batch(self, starting):
        """
        Around each batch of inputs read at once (L{MHPort.onBatch}): the
        effects that wait for the store are gathered during the batch and
        wait for one commit asked at its end (one Deferred for the batch,
        not one per message), the core's timer is re-armed once at its end,
        and the role's stream writes are held and written together
        (L{holdWrites}).
        """
        if starting:
            self._inBatch += 1
            if self._inBatch == 1:
                self._gathered = []
                self.holdWrites()
            return
        self._inBatch -= 1
        if self._inBatch:
            # A batch inside another (a transport that delivers at once):
            # the outer one's end does it all.
            return
        gathered, self._gathered = self._gathered, None
        if gathered:
            self._hold(self.store.commit(), gathered)
        self._rearm()
        self.flushWrites()

    def holdWrites(self):
        """Start keeping what goes to stream peers, to write it at L{flushWrites}."""

    def flushWrites(self):
        """Write what was kept since L{holdWrites}."""

    def _hold(self, d, held):
        self.awaitingCommit += len(held)
        self.holdCounters["held"] += len(held)
        self._holding = d
        d.addCallback(self._release, held)

    def _release(self, _, held):
        self.awaitingCommit -= len(held)
        if not self.awaitingCommit:
            self._holding = None
        if self._stopping:
            # Stopped: the change is kept, the answer is not sent; the peer
            # asks again and the restarted daemon answers from its state.
            self.holdCounters["dropped"] += len(held)
            return
        saved = self.context
        self.holdWrites()
        try:
            for effects, context in held:
                self.context = context
                try:
                    self.execute(effects)
                except Exception:
                    self.log.failure("{role}: carrying out held effects failed",
                                     role=self.name)
        finally:
            self.context = saved
            self.flushWrites()

    def execute(self, effects):
        """Carry out the core's effects (each role its own; Persist is not theirs)."""
        raise NotImplementedError

    def observe(self, direction, message, peer):
        """Tell the observer, if any, of a message."""
        if self.observer is not None:
            self.observer(self.name, direction, message, peer)

    def _rearm(self):
        when = self.core.nextTimer()
        timer = self._timer
        if when is None or not self.running:
            if timer is not None and timer.active():
                timer.cancel()
            self._timer = None
            return
        if timer is not None and timer.active():
            if timer.getTime() <= when:
                # Firing early is harmless (the core finds nothing due and
                # the timer is armed again), and leaving it alone keeps this
                # off the per-message path.
                return
            timer.reset(max(0.0, when - self.reactor.seconds()))
        else:
            self._timer = self.reactor.callLater(max(0.0, when - self.reactor.seconds()),
                                                 self._fire)

    def _fire(self):
        self._timer = None
        self.feed(self.core.handleTimer)

    def dataPlaneCall(self, method, *args):
        """
        Call a data-plane method and log, not raise, its failure. Returns a
        Deferred that fires with its result (None when it failed, once
        logged). A synchronous data plane's answer (the memory data plane's,
        once per new binding and per move) is wrapped in an already fired
        Deferred, without maybeDeferred's machinery and errback.
        """
        try:
            result = method(*args)
        except Exception:
            self._dataPlaneFailed(Failure(), method)
            return succeed(None)
        if isinstance(result, Deferred):
            return result.addErrback(self._dataPlaneFailed, method)
        return succeed(result)

    def _dataPlaneFailed(self, failure, method):
        self.log.failure("{role}: data plane {call} failed", failure, role=self.name,
                         call=method.__name__)

    def startService(self):
        self._stopping = False
        super().startService()
        self._rearm()
        if self.store is not None:
            # Deletions staged by loadState.
            self.store.commit()

    def stopService(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._stopping = True
        d = maybeDeferred(self.store.close) if self.store is not None \
            else maybeDeferred(lambda: None)
        d.addCallback(lambda _: super(RoleService, self).stopService())
        return d


def _withoutCounter(entries, counter):
    """
    C{entries} without the RFC 5847 Restart Counter's record, which is
    appended to the list C{counter} instead.
    """
    from netlmm.service.heartbeat import COUNTER_KEY
    for entry in entries:
        if entry[0] == COUNTER_KEY:
            counter.append(entry)
        else:
            yield entry
