"""What the three role services share: feeding a core and driving its timer."""

from twisted.application.service import MultiService
from twisted.internet.defer import maybeDeferred
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from netlmm.core.effects import InvalidInput


class RoleService(MultiService):
    """
    A service around a sans-IO core. Every input goes through L{feed}, which
    runs the core, carries out the effects it returns and re-arms the one
    C{callLater} that drives the core's timers.

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
        #: A L{netlmm.statefile.StateFile} for what must survive a restart
        #: (the core's snapshot()/restore()), saved every C{saveInterval} s
        #: when something changed, and on stop.
        self.stateFile = None
        self.saveInterval = 5.0
        self._dirty = False
        self._saver = None
        self._saving = None

    def restoreState(self):
        """Load the state file, if any, into the core (before serving)."""
        if self.stateFile is None:
            return
        records = self.stateFile.load()
        try:
            effects = self.core.restore(records, self.reactor.seconds())
        except ValueError as e:
            from netlmm.statefile import StateFileError
            raise StateFileError(f"{self.stateFile.path}: {e}") from None
        self.log.info("{role}: restored {n} entries from {path}", role=self.name,
                      n=len(records), path=self.stateFile.path)
        self.execute(effects)

    def saveState(self, blocking=False):
        """
        Write the core's snapshot if anything changed since the last save.
        The snapshot is taken here, on the reactor thread (records of
        immutable values); encoding and writing it, which for many bindings
        takes a while and an fsync, happen in the reactor's thread pool
        unless C{blocking} (at stop). Returns a Deferred when writing.
        """
        if self.stateFile is None or not self._dirty or self._saving is not None:
            return self._saving
        self._dirty = False
        records = [p.record for p in self.core.snapshot()]
        pool = getattr(self.reactor, "getThreadPool", None)
        if blocking or pool is None:
            try:
                self.stateFile.save(records)
            except OSError as e:
                self._saveFailed(e)
            return None
        d = deferToThreadPool(self.reactor, pool(), self.stateFile.save, records)
        self._saving = d

        def done(result):
            self._saving = None
            return None

        def failed(f):
            self._saving = None
            self._saveFailed(f.value)
        return d.addCallbacks(done, failed)

    def _saveFailed(self, error):
        self._dirty = True
        self.log.error("{role}: cannot save state to {path}: {error}",
                       role=self.name, path=self.stateFile.path, error=error)

    def feed(self, method, *args):
        """
        Run C{method(*args, now)} on the core and carry out its effects. An
        input not valid in its state is logged and counted; the caller gets
        the L{InvalidInput} back to answer it.
        """
        self._dirty = True
        try:
            effects = method(*args, self.reactor.seconds())
        except InvalidInput as e:
            self.invalidInputs += 1
            self.log.warn("{role}: {error}", role=self.name, error=e)
            self._rearm()
            return e
        self.execute(effects)
        self._rearm()
        return None

    def execute(self, effects):
        """Carry out the core's effects (each role its own)."""
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
        """Call a data-plane method and log, not raise, its failure."""
        d = maybeDeferred(method, *args)
        d.addErrback(lambda f: self.log.failure(
            "{role}: data plane {call} failed", f, role=self.name,
            call=method.__name__))
        return d

    def startService(self):
        super().startService()
        self._rearm()
        if self.stateFile is not None:
            self._saver = LoopingCall(self.saveState)
            self._saver.clock = self.reactor
            self._saver.start(self.saveInterval, now=False)

    def stopService(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._saver is not None and self._saver.running:
            self._saver.stop()
        # Let a save in progress finish, then write the final state.
        d = maybeDeferred(lambda: self._saving)
        d.addCallback(lambda _: self.saveState(blocking=True))
        d.addCallback(lambda _: super(RoleService, self).stopService())
        return d
