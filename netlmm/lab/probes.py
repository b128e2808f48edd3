"""
Small programs the labs run inside namespaces: a TCP echo server and a
client that keeps one connection busy and logs each echo with its time, so
a test can tell whether the connection survived a move and how long the
traffic stopped.
"""

import sys

ECHO_SERVER = r"""
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
print("listening", flush=True)
c, _ = s.accept()
while True:
    data = c.recv(4096)
    if not data:
        break
    c.sendall(data)
"""

#: argv: address port interval logfile. Prints "connected", then one line
#: "TIME N" (monotonic seconds) per echo; "error ..." if the connection breaks.
ECHO_CLIENT = r"""
import select, socket, sys, time
address, port, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.create_connection((address, port), timeout=30)
s.setblocking(False)
print("connected", flush=True)
n, buffer, next = 0, b"", time.monotonic()
try:
    while True:
        now = time.monotonic()
        if now >= next:
            n += 1
            s.sendall(b"%d\n" % n)
            next = now + interval
        r, _, _ = select.select([s], [], [], max(0, next - time.monotonic()))
        if r:
            data = s.recv(4096)
            if not data:
                print("error: closed by the peer", flush=True)
                break
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                print("%.6f %s" % (time.monotonic(), line.decode()), flush=True)
except OSError as e:
    print("error:", e, flush=True)
"""


def echoes(path):
    """(time, number) of each echo a client logged, and its error line or None."""
    rows, error = [], None
    with open(path) as f:
        for line in f:
            words = line.split()
            if line.startswith("error"):
                error = line.strip()
            elif len(words) == 2:
                rows.append((float(words[0]), int(words[1])))
    return rows, error


def command(program, *args):
    """The argv that runs C{program} (one of the texts above) with C{args}."""
    return [sys.executable, "-c", program, *map(str, args)]
