"""
A numbered UDP stream for measuring handovers: a sender at a fixed rate
(1,000 packets/s by default) and a receiver that records when each packet
arrives; L{analyse} says the longest interruption and how many packets were
lost, duplicated and reordered.

    python -m netlmm.lab.flow send ADDRESS PORT RATE COUNTFILE
    python -m netlmm.lab.flow receive PORT RECORDFILE

Both run until SIGTERM or SIGINT. The sender writes how many it sent to
COUNTFILE when it stops; the receiver appends (sequence, arrival time)
records to RECORDFILE, flushed every 50 ms, so a running flow can be read.
Times are the host clock (time.time()), the same in every namespace.
"""

import signal
import socket
import struct
import sys
import time

RECORD = struct.Struct("!Id")
PAYLOAD = 64


def send(address, port, rate, countFile):
    """Send numbered datagrams to [address]:port at C{rate} per second until stopped."""
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *a: stop.append(1))
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    start = time.time()
    n = 0
    pad = bytes(PAYLOAD - RECORD.size)
    while not stop:
        due = start + n / rate
        delay = due - time.time()
        if delay > 0:
            time.sleep(delay)
        try:
            s.sendto(RECORD.pack(n, time.time()) + pad, (address, port))
        except OSError:
            pass  # no route for a moment: counted as sent, and lost
        n += 1
    with open(countFile, "w") as f:
        f.write(str(n))


def receive(port, recordFile):
    """Record every numbered datagram arriving on [::]:port until stopped."""
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *a: stop.append(1))
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        # A burst of held packets must not overflow the socket (root: past rmem_max).
        s.setsockopt(socket.SOL_SOCKET, 33, 1 << 24)  # SO_RCVBUFFORCE
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 24)
    s.bind(("::", port))
    s.settimeout(0.05)
    with open(recordFile, "ab") as out:
        pending = []
        while not stop:
            try:
                data = s.recv(2048)
            except socket.timeout:
                data = None
            except InterruptedError:
                continue
            if data is not None and len(data) >= RECORD.size:
                pending.append(RECORD.pack(RECORD.unpack_from(data)[0], time.time()))
            if pending and (data is None or len(pending) >= 50):
                out.write(b"".join(pending))
                out.flush()
                pending = []
        out.write(b"".join(pending))


def records(path):
    """The (sequence, arrival time) records of a receiver's file."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    usable = len(data) - len(data) % RECORD.size
    return [RECORD.unpack_from(data, i) for i in range(0, usable, RECORD.size)]


def analyse(sent, received, since=None):
    """
    C{sent}: how many were sent; C{received}: (sequence, arrival) records.
    Returns dict(interruption=the longest gap between arrivals after
    C{since} (seconds), lost, duplicated, reordered (arrived after a later
    one), received, sent).
    """
    seen = set()
    duplicated = reordered = 0
    highest = -1
    for seq, _ in received:
        if seq in seen:
            duplicated += 1
            continue
        seen.add(seq)
        if seq < highest:
            reordered += 1
        highest = max(highest, seq)
    times = sorted(t for _, t in received)
    gaps = [b - a for a, b in zip(times, times[1:]) if since is None or b > since]
    lost = len([n for n in range(sent) if n not in seen])
    return dict(interruption=max(gaps) if gaps else float("inf"), lost=lost,
                duplicated=duplicated, reordered=reordered, received=len(seen), sent=sent)


def main(argv):
    if argv[:1] == ["send"] and len(argv) == 5:
        send(argv[1], int(argv[2]), float(argv[3]), argv[4])
    elif argv[:1] == ["receive"] and len(argv) == 3:
        receive(int(argv[1]), argv[2])
    else:
        print(__doc__.strip().splitlines()[3:5], file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
