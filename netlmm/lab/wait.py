"""
Waiting for a condition in tests: with the reactor running (L{until}) or
blocking (L{waitFor}); both stretch their timeout by L{timeScale} (kernel-lab's
emulated CPU is slow).
"""

import time

from netlmm.lab.kernel import timeScale
from netlmm.lab.netns import CommandFailed


def until(predicate, timeout=5.0, what="condition", reactor=None, interval=0.005):
    """
    A Deferred that fires when C{predicate()} is true, polled every
    C{interval} seconds (make it longer when the predicate runs a command);
    fails after C{timeout} seconds.
    """
    from twisted.internet.defer import Deferred
    if reactor is None:
        from twisted.internet import reactor
    d = Deferred()
    deadline = reactor.seconds() + timeout * timeScale()

    def check():
        if predicate():
            d.callback(None)
        elif reactor.seconds() > deadline:
            d.errback(AssertionError(f"timed out after {timeout} s waiting for {what}"))
        else:
            reactor.callLater(interval, check)
    check()
    return d


def waitFor(predicate, what, timeout=20.0, alive=None, details=str):
    """
    Poll C{predicate} every 50 ms until it is true. Raises L{CommandFailed}
    after C{timeout} seconds, or as soon as C{alive()} (if given) returns a
    false value; the message ends with C{details()}.
    """
    deadline = time.monotonic() + timeout * timeScale()
    while time.monotonic() < deadline:
        if predicate():
            return
        if alive is not None and not alive():
            raise CommandFailed(f"a process exited while waiting for {what}\n{details()}")
        time.sleep(0.05)
    raise CommandFailed(f"timed out after {timeout} s waiting for {what}\n{details()}")
