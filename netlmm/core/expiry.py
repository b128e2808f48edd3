"""
The lifetime bookkeeping of a binding cache (the LMA's and the GMA's):
when each entry runs out, found cheaply with many entries and frequent
refreshes. Sans-IO, no Twisted.
"""

import heapq
from collections import deque


class Expiries:
    """
    Pending expiries as (time, key) pairs.

    Entries with the same lifetime are scheduled in time order, so one FIFO
    per lifetime stays sorted at O(1) a refresh; a time out of order (a
    clock that went back) goes to a heap. A refreshed entry is simply pushed
    again: the caller's C{current(key, time)} tells which pushes still
    stand, and stale ones are dropped when they come up.
    """

    __slots__ = ("_fifos", "_heap")

    def __init__(self):
        self._fifos = {}
        self._heap = []

    def push(self, lifetime, expiry, key):
        """Entry C{key} (with C{lifetime}) runs out at C{expiry}."""
        fifo = self._fifos.get(lifetime)
        if fifo is None:
            fifo = self._fifos[lifetime] = deque()
        if fifo and fifo[-1][0] > expiry:
            heapq.heappush(self._heap, (expiry, key))
        else:
            fifo.append((expiry, key))

    def entries(self):
        """Every pending (expiry, key) pair, stale ones included (for measuring)."""
        return [e for fifo in self._fifos.values() for e in fifo] + list(self._heap)

    def next(self, current):
        """
        The earliest expiry still standing (C{current(key, expiry)} true),
        or None; stale pushes in front are dropped on the way.
        """
        best = None
        for fifo in self._fifos.values():
            while fifo:
                expiry, key = fifo[0]
                if current(key, expiry):
                    if best is None or expiry < best:
                        best = expiry
                    break
                fifo.popleft()
        heap = self._heap
        while heap:
            expiry, key = heap[0]
            if current(key, expiry):
                if best is None or expiry < best:
                    best = expiry
                break
            heapq.heappop(heap)
        return best

    def due(self, now):
        """
        The (expiry, key) pairs due at C{now}, in time order, taken out;
        stale ones among them are the caller's to skip.
        """
        due = []
        for fifo in self._fifos.values():
            while fifo and fifo[0][0] <= now:
                due.append(fifo.popleft())
        heap = self._heap
        while heap and heap[0][0] <= now:
            due.append(heapq.heappop(heap))
        due.sort()
        return due
