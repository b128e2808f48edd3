"""
What [metrics] adds to a message, measured on the statements themselves:
the services' counting (always on) and the PMIP client's Trigger ->
Notification timing (on with [metrics]), each the best of several timeit
repeats (the minimum is what a busy machine disturbs least), next to the
whole per-message path they ride on.

    python bench/metrics_cost.py

The whole paths for the ratio: bench/lma_breakdown.py ("MHPort._datagram,
whole path") and bench/pmip_breakdown.py ("PMIP client"), which on a loaded
machine vary far more than these additions; doc/performance.md quotes both.
"""

import timeit

SETUP = """
from netlmm.metrics import Histogram
from netlmm.wire import mh
ba = mh.BindingAcknowledgement(0, 1, lifetime=100)
statuses = {}
results = {}
triggered = {}
latency = Histogram()
proto = object()
import time
seconds = time.time
class S:
    triggers = 0
s = S()
"""

CASES = {
    # LmaService.execute, per PBAck sent (always).
    "LMA: PBAck counted by status": """
if type(ba) is mh.BindingAcknowledgement:
    statuses[ba.status] = statuses.get(ba.status, 0) + 1
""",
    # PmipService, per Trigger and its Notification, metrics off.
    "PMIP client: Trigger and Notification counted (metrics off)": """
s.triggers += 1
if None is not None:
    pass
results[0] = results.get(0, 0) + 1
if None is not None:
    pass
""",
    # The same with [metrics]: the Trigger timed to its Notification.
    "PMIP client: ... and timed (metrics on)": """
s.triggers += 1
if latency is not None:
    if len(triggered) >= 65536:
        triggered.clear()
    triggered[(proto, 7)] = seconds()
results[0] = results.get(0, 0) + 1
if latency is not None:
    started = triggered.pop((proto, 7), None)
    if started is not None:
        latency.observe(seconds() - started)
""",
}


def main():
    n = 200_000
    print("nanoseconds per message (best of 7 x 200,000):")
    for name, statement in CASES.items():
        best = min(timeit.repeat(statement, SETUP, number=n, repeat=7)) / n
        print(f"  {name:62} {best * 1e9:6.0f}")


if __name__ == "__main__":
    main()
