"""
Rate limits for what a hostile or broken peer can make a daemon do: log
lines about its refused input (L{RefusalLog}) and error messages sent back
to it (L{TokenBucket}, for RFC 6275 Binding Errors).

A refusal is logged the first few times for each peer and reason in an
interval; after that the daemon counts instead, and says once per interval
"N more like this from PEER suppressed". Across all peers the lines of an
interval are bounded too, so a flood from spoofed sources (a new peer for
every datagram) cannot fill the disk either. Every refusal is counted per
reason (L{RefusalLog.counters}), logged or not.
"""

import time
from collections import Counter

from twisted.logger import LogLevel


class RefusalLog:
    """
    Bounded logging of refused input, per (peer, reason).

    @param log: the L{twisted.logger.Logger} to log through.
    @param clock: an C{IReactorTime} (the reactor, or a C{task.Clock} in
        tests) for the summaries at the end of each interval; None to use
        the monotonic clock and give the summaries with the next refusal
        after the interval (and at L{flush}).
    @param burst: lines logged per (peer, reason) in an interval.
    @param interval: seconds of an interval.
    @param total: lines logged per interval across all peers and reasons;
        also the number of (peer, reason) pairs remembered in an interval:
        once it is reached, the refusals of pairs not seen yet are only
        counted, and summed up per reason in one line.
    @param level: the level of the lines (warn).
    """

    def __init__(self, log, clock=None, burst=3, interval=60.0, total=30,
                 level=LogLevel.warn):
        self.log = log
        self.clock = clock
        self.burst = burst
        self.interval = interval
        self.total = total
        self.level = level
        #: Refusals per reason since the start, logged or not.
        self.counters = Counter()
        #: Lines written (refusals and summaries), for tests and statistics.
        self.lines = 0
        self._window = None
        self._timer = None
        self._stopped = False
        self._seen = {}
        self._logged = 0
        self._overflow = Counter()

    def _now(self):
        return self.clock.seconds() if self.clock is not None else time.monotonic()

    def refused(self, peer, reason, format, /, **fields):
        """
        A refusal of input from C{peer} (an address; its text is the key)
        for C{reason} (a short fixed text: the key, and the summaries' words):
        log C{format} with C{fields} (which default C{peer} and C{reason} to
        these) unless the bounds are reached. Returns True when the line was
        logged.
        """
        self.counters[reason] += 1
        now = self._now()
        if self._window is None:
            self._open(now)
        elif now >= self._window + self.interval:
            self.flush()
            self._open(now)
        key = (str(peer), reason)
        entry = self._seen.get(key)
        if entry is None:
            if self._logged >= self.total:
                self._overflow[reason] += 1
                return False
            entry = self._seen[key] = [0, 0]
        if entry[0] < self.burst and self._logged < self.total:
            entry[0] += 1
            self._logged += 1
            self._emit(format, **{"peer": peer, "reason": reason, **fields})
            return True
        entry[1] += 1
        return False

    def _open(self, now):
        self._window = now
        if self.clock is not None and self._timer is None and not self._stopped:
            self._timer = self.clock.callLater(self.interval, self._expired)

    def _expired(self):
        self._timer = None
        self.flush()

    def flush(self):
        """Log the summaries of the interval so far and start afresh."""
        if self._window is None:
            return
        elapsed = max(self._now() - self._window, 0.0)
        span = f"{min(elapsed, self.interval):.0f}"
        # At most `total` pairs are remembered, so as many summary lines
        # as refusal lines, plus one per reason for the pairs not remembered.
        for (peer, reason), (_, n) in self._seen.items():
            if n:
                self._emit("{count} more like this from {peer} suppressed in the last "
                           "{seconds} s: {reason}", count=n, peer=peer, reason=reason,
                           seconds=span)
        for reason, n in sorted(self._overflow.items()):
            self._emit("{count} more refusals from further peers suppressed in the "
                       "last {seconds} s: {reason}", count=n, reason=reason, seconds=span)
        self._window = None
        self._seen = {}
        self._logged = 0
        self._overflow = Counter()

    def stop(self):
        """
        Give the pending summaries and cancel the timer (at stop). Refusals
        that come after (a connection that closes late) are still bounded,
        without a timer: their summary comes with a later refusal or stop.
        """
        self._stopped = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self.flush()

    def start(self):
        """Summaries on time again (after L{stop}, for a service started anew)."""
        self._stopped = False

    def _emit(self, format, **fields):
        self.lines += 1
        self.log.emit(self.level, format, **fields)


class Refusing:
    """
    Mixin for a role service that refuses its peers' messages (CONTRACTS 5):
    L{_refused} is the one method every refusal goes through; it counts it
    in C{refusals} and logs it through one L{RefusalLog} on C{self.log}
    (made on first use, on C{self.reactor}), each line starting with
    C{refusalPrefix}. The service calls L{stopRefusing} when it stops.
    """

    #: What each refusal line starts with ("LMA: ").
    refusalPrefix = ""
    #: Refused messages, counted whether logged or not.
    refusals = 0
    _refusalLog = None

    @property
    def refusalLog(self):
        """The L{RefusalLog} of the refusals, made on first use."""
        if self._refusalLog is None:
            self._refusalLog = RefusalLog(self.log, self.reactor)
        return self._refusalLog

    def _refused(self, peer, reason, fmt, /, **fields):
        """
        Log one refused message from C{peer} (C{reason}: the status name or
        a short fixed text, the key of the bound; details go in C{fields}).
        """
        self.refusals += 1
        self.refusalLog.refused(peer, reason, self.refusalPrefix + fmt, **fields)

    def stopRefusing(self):
        """Write the pending summaries; no timer is left behind."""
        if self._refusalLog is not None:
            self._refusalLog.stop()


class TokenBucket:
    """
    A token bucket (RFC 4443 section 2.4 (f), which RFC 6275 section 9.3.3
    applies to Binding Errors): up to C{burst} at once, C{rate} per second
    on average.
    """

    def __init__(self, rate, burst):
        if rate <= 0 or burst < 1:
            raise ValueError(f"a token bucket needs rate > 0 and burst >= 1, "
                             f"not {rate!r}, {burst!r}")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last = None
        #: How many were refused.
        self.refused = 0

    def take(self, now):
        """True when one may be sent at time C{now} (seconds); takes a token."""
        if self._last is not None and now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now if self._last is None else max(now, self._last)
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        self.refused += 1
        return False
