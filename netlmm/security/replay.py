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
