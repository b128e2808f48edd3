"""
RFC 4285 replay protection: the Mobility Message Replay Protection option
(type 10) carries a 64-bit NTP-format timestamp (seconds since 1900-01-01 in
the upper 32 bits, the fraction of a second in the lower 32).

The receiver of a request accepts a timestamp within C{window} seconds of
its own clock and strictly greater than the last one it accepted for the
same security association, so a captured message cannot be played again,
neither late nor early. Nothing here imports Twisted.
"""

#: Seconds from 1900-01-01 (NTP era 0) to 1970-01-01 (POSIX).
NTP_EPOCH_OFFSET = 2208988800
#: The default acceptance window, seconds (RFC 4285 suggests a few seconds).
DEFAULT_WINDOW = 7.0


def toNtp(seconds):
    """POSIX C{seconds} (float) as a 64-bit NTP timestamp."""
    return int(round((seconds + NTP_EPOCH_OFFSET) * (1 << 32))) & ((1 << 64) - 1)


def fromNtp(value):
    """A 64-bit NTP timestamp as POSIX seconds (float)."""
    return value / (1 << 32) - NTP_EPOCH_OFFSET


class ReplayWindow:
    """
    Per-SA acceptance of request timestamps.

    @param window: how far (seconds) a timestamp may be from the local clock.
    """

    def __init__(self, window=DEFAULT_WINDOW, remember=65536):
        if not window > 0:
            raise ValueError("the replay window must be positive")
        self.window = window
        self._last = {}
        self._remember = remember

    def check(self, spi, timestamp, now):
        """
        None if C{timestamp} (NTP) is acceptable for C{spi} at POSIX time
        C{now}, else the reason. Does not record it (see L{accept}).
        """
        skew = fromNtp(timestamp) - now
        if abs(skew) > self.window:
            return (f"timestamp is {skew:+.3f} s from the local clock "
                    f"(window {self.window:g} s)")
        last = self._last.get(spi)
        if last is not None and timestamp <= last:
            return "timestamp is not later than the last one accepted (replay)"
        return None

    def accept(self, spi, timestamp):
        """Remember C{timestamp} as the last accepted for C{spi}."""
        if len(self._last) >= self._remember and spi not in self._last:
            # Forget the oldest half; their timestamps have left the window
            # long ago in any sane deployment.
            for key in list(self._last)[:len(self._last) // 2]:
                del self._last[key]
        self._last[spi] = timestamp


#: How far (seconds) a peer's reported time may set our clock offset by
#: default: NTP keeps hosts within milliseconds; this allows a badly
#: synchronised pair while refusing to follow a far-off time.
DEFAULT_MAX_OFFSET = 60.0


class ClockOffset:
    """
    What a client learns of its LMA's clock from authentic answers that
    carry the LMA's time (RFC 4285 status 144, RFC 5213 status 156): the
    offset to add to its own clock, bounded.

    @param maxOffset: the largest offset (the LMA's time minus ours, either
        sign, seconds) a report may set.
    """

    def __init__(self, maxOffset=DEFAULT_MAX_OFFSET):
        if not maxOffset > 0:
            raise ValueError(f"maxOffset must be positive, not {maxOffset!r}")
        self.maxOffset = maxOffset
        #: The LMA's clock minus ours, seconds.
        self.offset = 0.0
        self._last = None

    def follow(self, lmaTime, now):
        """
        Take the LMA's time C{lmaTime} (POSIX seconds) reported at C{now}:
        None when followed, else why not. A time not later than the last one
        followed is a replay (a captured answer cannot pull the clock back);
        one more than C{maxOffset} from ours is refused.
        """
        if self._last is not None and lmaTime <= self._last:
            return "an LMA time not later than one already followed (replayed?)"
        offset = lmaTime - now
        if abs(offset) > self.maxOffset:
            return (f"the LMA's clock is {offset:+.3f} s from ours, beyond "
                    f"max_clock_offset ({self.maxOffset:g} s); synchronise the clocks")
        self._last = lmaTime
        self.offset = offset
        return None
