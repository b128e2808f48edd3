"""
The daemons as twistd runs them: a start that fails loudly, and the log level.

twistd starts an application's services and ignores the Deferreds their
C{startService} returns, so a daemon whose socket is busy or whose state
cannot be loaded used to log a traceback "Unhandled error in Deferred" (or
nothing) and keep running without the socket; daemonized, twistd even exited
0. L{DaemonService} is the one service twistd runs for a role: it starts the
role's services in order, each once the previous one has started, and when
one fails it logs ONE line naming the cause, reports it to the waiting twistd
parent when daemonized, and makes the process exit non-zero.

A service reports a start-up failure by raising (or failing its Deferred
with) L{StartupError} with a one-line text naming the cause ("LMA: cannot
listen for Mobility Headers on [::1]:5436 (UDP): address already in use").
Other exceptions are described as well as L{describeFailure} can, so nothing
escapes as a traceback, but a StartupError says best what went wrong.
"""

import errno
import os
import re

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.logger import (
    FilteringLogObserver, ILogObserver, LogLevel, LogLevelFilterPredicate, Logger,
    PredicateResult, globalLogPublisher,
)
from twisted.python.failure import Failure
from zope.interface import implementer


class StartupError(RuntimeError):
    """
    A daemon cannot do its job: raise it from C{startService} (or fail the
    Deferred it returns with it). C{str()} is one line naming the cause.
    (A RuntimeError, so code that raised RuntimeError for this can switch.)
    """


#: Levels of the netlmm loggers made by L{roleLogger}; C{--log-level} sets
#: the level of the "netlmm" namespace.
logLevels = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
_levelObserver = FilteringLogObserver(globalLogPublisher, [logLevels])


class RoleLogger(Logger):
    """
    A Logger whose events below the configured level are dropped where they
    are made, and that says whether its debug events are kept
    (L{debugging}), so that the cores build a per-binding line (addresses
    as text, the event, the filter's walk) only when someone reads it.
    """

    @property
    def debugging(self):
        """True when this logger's debug events are logged."""
        return debugEnabled(self.namespace)


def roleLogger(namespace):
    """
    A L{RoleLogger} for C{namespace} whose events below the configured level
    (info by default) are dropped where they are made: per-binding events
    are logged at debug level and cost nothing unless asked for.
    """
    return RoleLogger(namespace=namespace, observer=_levelObserver)


def setLogLevel(name):
    """Log netlmm's events from level C{name} ('debug', 'info', ...) upwards."""
    logLevels.setLogLevelForNamespace("netlmm", LogLevel.levelWithName(name))
    _debugging.clear()


#: namespace -> whether its debug events are logged; cleared by setLogLevel.
_debugging = {}


def debugEnabled(namespace="netlmm"):
    """True when debug events of C{namespace} are logged (to skip costly ones)."""
    on = _debugging.get(namespace)
    if on is None:
        on = _debugging[namespace] = \
            logLevels.logLevelForNamespace(namespace) <= LogLevel.debug
    return on


#: What Twisted says of every port and factory it starts and stops (with
#: class names and memory addresses); the daemons say it in their own words.
_NOISE = re.compile(r"^(Starting|Stopping) factory |^\S.* starting on \S+$"
                    r"|^\((TCP|UDP|UNIX|SCTP) Port .* Closed\)$")


def isNoise(event):
    """True for Twisted's per-port and per-factory chatter (legacy log lines)."""
    if event.get("log_namespace") != "log_legacy" or event.get("isError"):
        return False
    text = event.get("log_text")
    return isinstance(text, str) and _NOISE.search(text) is not None


@implementer(ILogObserver)
class DaemonLogObserver:
    """
    The log observer of a daemon under twistd: twistd's own (the file,
    stdout or syslog its options name), without Twisted's per-port chatter
    and without events below the configured level (L{setLogLevel}).

    @param config: twistd's options.
    """

    def __init__(self, config):
        # Made now, as twistd would: before it points sys.stdout at the log.
        from twisted.scripts._twistd_unix import UnixAppLogger
        self._inner = UnixAppLogger(config)._getLogObserver()

    def __call__(self, event):
        if isNoise(event) or logLevels(event) is PredicateResult.no:
            return
        self._inner(event)


def reasonOf(error):
    """The text of an OSError, lower-cased as in the middle of a sentence."""
    text = error.strerror or errno.errorcode.get(error.errno) or str(error)
    if text[1:2].islower():
        # "Address already in use" -> "address already in use", as in a
        # sentence; "AF_UNIX path too long" stays.
        text = text[:1].lower() + text[1:]
    return text


def describeFailure(failure):
    """
    One line saying why a start failed, for a Failure or an exception: the
    text of a L{StartupError} (or of the config and state errors, which name
    their file and key); for socket errors, the address and the reason.
    """
    error = failure.value if isinstance(failure, Failure) else failure
    from twisted.internet.defer import FirstError
    from twisted.internet.error import CannotListenError
    while isinstance(error, FirstError):
        error = error.subFailure.value
    if isinstance(error, CannotListenError):
        where = error.interface or "*"
        if ":" in where or where == "*":
            where = f"[{where}]"
        reason = error.socketError
        reason = reasonOf(reason) if isinstance(reason, OSError) else str(reason)
        if isinstance(error.port, (bytes, str)):
            # A UNIX socket: the port is its path.
            return f"cannot listen on {os.fsdecode(error.port)}: {reason}"
        return f"cannot listen on {where}:{error.port}: {reason}"
    if isinstance(error, OSError) and not isinstance(error, StartupError):
        if error.filename:
            return f"{error.filename}: {reasonOf(error)}"
        return reasonOf(error)
    if isinstance(error, StartupError):
        return str(error)
    from netlmm.config import ConfigError
    from netlmm.store import StateError
    if isinstance(error, (ConfigError, StateError)):
        return str(error)
    code = getattr(error, "code", None)
    if type(error).__name__ == "NetlinkError" and isinstance(code, int):
        # pyroute2's kernel refusals: (95, 'Operation not supported').
        return f"the kernel refused a netlink request: {reasonOf(OSError(code, os.strerror(code)))}"
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def startupStep(what, start):
    """
    C{start()} (a value or a Deferred) with its failure named as C{what}:
    a L{StartupError} "WHAT: CAUSE", for a service's start-up steps.
    """
    def failed(f):
        raise StartupError(f"{what}: {describeFailure(f)}")
    return maybeDeferred(start).addErrback(failed)


class DaemonService(MultiService):
    """
    The service twistd runs for a role (C{name}, e.g. "netlmm-lma"): starts
    C{services} in order, each after the previous one's start completed.

    When a start fails, it logs "NAME cannot start: CAUSE" at critical
    level, stops what had started, and ends the process with status 1.
    Under twistd without C{-n} it also holds twistd's status pipe until the
    start is complete, so the waiting parent exits 0 only once every socket
    is open, and 1 with the cause otherwise.

    @param config: twistd's options (the L{usage.Options} the role's options
        are a sub-command of), or None outside twistd.
    @param exit: ends the process with a status, once the reactor has stopped.
    """

    log = Logger()

    def __init__(self, name, services, config=None, reactor=None, exit=os._exit):
        super().__init__()
        self.setName(name)
        self.ordered = list(services)
        for service in self.ordered:
            service.setServiceParent(self)
        self.config = config
        self._reactor = reactor
        self._exit = exit
        self._started = []
        #: Why the start failed (one line), or None.
        self.failure = None
        #: Fires with None when every service has started (not on failure).
        self.ready = Deferred()

    @property
    def reactor(self):
        if self._reactor is None:
            from twisted.internet import reactor
            self._reactor = reactor
        return self._reactor

    def setServiceParent(self, parent):
        """
        Under twistd the parent is the application: give it the log observer
        (L{DaemonLogObserver}) twistd then logs through, unless it has one.
        """
        from twisted.python.components import Componentized
        if (self.config is not None and isinstance(parent, Componentized)
                and parent.getComponent(ILogObserver, None) is None):
            parent.setComponent(ILogObserver, DaemonLogObserver(self.config))
        return super().setServiceParent(parent)

    def privilegedStartService(self):
        # Nothing of netlmm needs privileges before the start proper.
        pass

    def startService(self):
        """Start the services in order; a failure ends the process (see class)."""
        self.running = 1
        pipe = None
        if self.config is not None and self.config.get("statusPipe") is not None:
            # twistd writes "0" to its parent once startService returns;
            # take the pipe so that only a complete start reports success.
            pipe, self.config["statusPipe"] = self.config["statusPipe"], None
        self._pipe = pipe
        self._returned = False
        d = succeed(None)
        for service in self.ordered:
            d.addCallback(self._startOne, service)
        d.addCallbacks(self._startedAll, self._failed)
        self._returned = True
        if self.failure is not None:
            if not self.reactor.running:
                # twistd's own call, before the reactor runs: end here,
                # without the lines of a reactor that starts only to stop.
                self._removePidfile()
                self._reportFailure()
                raise SystemExit(1)
            self._shutDown()
        return None

    def _startOne(self, _, service):
        self._started.append(service)
        return maybeDeferred(service.startService)

    def _startedAll(self, _):
        # Tell the waiting parent only once the reactor runs: before that
        # (twistd starts the services in a "before startup" trigger) its
        # SIGTERM handler is not installed, and a SIGTERM sent as soon as the
        # parent exited would kill the daemon without its stop (pid file
        # left behind).
        self.reactor.callWhenRunning(self._report, b"0")
        self.ready.callback(None)

    def _failed(self, failure):
        self.failure = describeFailure(failure)
        self.log.critical("{name} cannot start: {cause}", name=self.name,
                          cause=self.failure)
        if self._returned:
            self._shutDown()

    def _reportFailure(self):
        # Last, once the pid file is gone: twistd's parent exits when it reads this.
        self._report(b"1 " + self.failure.encode("ascii", "backslashreplace"))

    def _shutDown(self):
        # twistd stops the services (stopService below) when the reactor
        # stops; then the process ends with status 1.
        self.reactor.addSystemEventTrigger("after", "shutdown", self._end)
        self.reactor.stop()

    def _end(self):
        self._removePidfile()
        self._reportFailure()
        self._exit(1)

    def _report(self, message):
        pipe, self._pipe = getattr(self, "_pipe", None), None
        if pipe is None:
            return
        try:
            # twistd's parent reads at most 100 octets.
            os.write(pipe, message[:100])
            os.close(pipe)
        except OSError:
            pass

    def _removePidfile(self):
        path = self.config.get("pidfile") if self.config is not None else None
        if not path:
            return
        try:
            with open(path, "rb") as f:
                mine = f.read().strip() == str(os.getpid()).encode()
            if mine:
                os.unlink(path)
        except OSError:
            pass

    def stopService(self):
        """Stop the services that were started, in reverse order."""
        self.running = 0
        started, self._started = self._started, []
        d = succeed(None)
        for service in reversed(started):
            d.addCallback(lambda _, s=service: maybeDeferred(s.stopService))
            d.addErrback(lambda f, s=service: self.log.failure(
                "{name}: stopping {service} failed", f, name=self.name,
                service=s.name or type(s).__name__))
        return d
