"""
The 'control' attachment detector: an operator (or a script, or a test) tells
the MAG over a local UNIX socket that a mobile attached or left. One command
per connection; the MAG closes it after the reply:

    attach MNID [PHOA]   ->  ok attached MNID
    detach MNID          ->  ok detached MNID
    list                 ->  ok N  then one line per mobile: MNID STATE HOMES...
    drain [A]:P          ->  ok drained [A]:P, N mobiles moved (draft E.1)
    undrain [A]:P        ->  ok undrained [A]:P

HOMES are what a bound mobile has (pHoA, per-MN prefix, IPv4 home address
with its prefix length), else the pHoA it asked for, else '-'.

`netlmm mag-ctl --socket PATH attach mn1@example.net` is the client.
"""

import os
import socket
import sys

from twisted.internet import endpoints
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from zope.interface import implementer

from netlmm.access import AttachmentEvent
from netlmm.interfaces import IAttachmentDetector
from netlmm.ctl import words
from netlmm.wire.control import mnIdProblem, showMnId


#: The longest UNIX socket path the kernel takes (sun_path, less the NUL).
_SUN_PATH = 107


def socketName(path):
    """
    The name to bind or connect the UNIX socket at C{path} by: the path, or
    the same file relative to the working directory when only that fits the
    kernel's 107 octets (a deep test directory, say). None when neither fits.
    """
    candidates = [path, os.path.relpath(path)]
    fitting = [c for c in candidates if len(os.fsencode(c)) <= _SUN_PATH]
    return min(fitting, key=len) if fitting else None


class _CommandProtocol(LineOnlyReceiver):
    delimiter = b"\n"
    MAX_LENGTH = 1024

    def lineReceived(self, line):
        try:
            reply = self.factory.detector.command(words(line))
        except ValueError as e:
            self.factory.detector.log.warn("control detector: refused {command!r}: {error}",
                                           command=line[:100], error=e)
            reply = [f"error {e}"]
        for r in reply:
            self.sendLine(r.encode("utf-8"))
        # One command per connection keeps clients trivial.
        self.transport.loseConnection()


@implementer(IAttachmentDetector)
class ControlDetector:
    """Attachments and detachments commanded over a UNIX socket at C{path}."""

    name = "control"
    log = Logger()

    def __init__(self, reactor, path):
        self.reactor = reactor
        self.path = path
        self.mag = None
        self.port = None

    @classmethod
    def fromConfig(cls, table, reactor, **context):
        """
        Options: C{socket}, the path of the UNIX socket (required; relative
        to the config file's directory).
        """
        path = table.path("socket", required=True)
        table.finish()
        return cls(reactor, path)

    def start(self, mag):
        """
        Listen on the socket; a missing directory, a socket another MAG
        serves or any other failure to listen is a
        L{netlmm.daemon.StartupError} naming the path.
        """
        from netlmm.daemon import StartupError, describeFailure
        self.mag = mag
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise StartupError(f"control socket {self.path}: the directory {directory} "
                               "does not exist")
        name = socketName(self.path)
        if name is None:
            raise StartupError(f"control socket {self.path}: the path is too long for "
                               f"a UNIX socket (at most {_SUN_PATH} octets)")
        if os.path.exists(self.path):
            # A socket left by a daemon that did not stop cleanly.
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(name)
            except OSError:
                os.unlink(self.path)
            else:
                raise StartupError(f"control socket {self.path}: another MAG is "
                                   "listening there")
            finally:
                probe.close()
        factory = Factory.forProtocol(_CommandProtocol)
        factory.noisy = False
        factory.detector = self
        d = endpoints.UNIXServerEndpoint(self.reactor, name, mode=0o600).listen(factory)

        def listening(port):
            self.port = port
            self.log.info("control detector: commands on {path}", path=self.path)

        def failed(f):
            raise StartupError(f"control socket {self.path}: {describeFailure(f)}")
        return d.addCallbacks(listening, failed)

    def stop(self):
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()

    def command(self, words):
        """Run one command; returns the reply lines."""
        if not words:
            raise ValueError("empty command; expected attach, detach or list")
        verb, args = words[0], words[1:]
        if verb == "attach" and len(args) in (1, 2):
            # AttachmentEvent names a bad identifier or pHoA in words.
            event = AttachmentEvent(args[0], args[1] if len(args) == 2 else None)
            self.mag.attached(event)
            return [f"ok attached {args[0]}"]
        if verb == "detach" and len(args) == 1:
            mnId = args[0].encode("utf-8")
            problem = mnIdProblem(mnId)
            if problem is not None:
                raise ValueError(f"MN identifier {showMnId(mnId)} {problem}")
            self.mag.detached(mnId)
            return [f"ok detached {args[0]}"]
        if verb in ("drain", "undrain") and len(args) == 1:
            from netlmm.config import ConfigError, parseEndpoint
            try:
                endpoint = parseEndpoint(args[0], verb)
            except ConfigError as e:
                raise ValueError(str(e)) from None
            if verb == "drain":
                moved = self.mag.drainClient(endpoint)
                return [f"ok drained {args[0]}, {moved} mobiles moved"]
            self.mag.undrainClient(endpoint)
            return [f"ok undrained {args[0]}"]
        if verb == "list" and not args:
            rows = [" ".join([showMnId(a.mnId), str(a.state.value), *_homes(a)])
                    for a in self.mag.core.attachments.values()]
            return [f"ok {len(rows)}"] + rows
        raise ValueError(f"cannot parse {' '.join(words)!r}; expected "
                         "'attach MNID [PHOA]', 'detach MNID', 'list', 'drain [A]:P' or "
                         "'undrain [A]:P'")


def _homes(a):
    """The homes a `list` row shows for the attachment C{a}."""
    homes = [h for h in (a.homes.phoa, a.homes.prefix, a.homes.ipv4) if h is not None]
    if not homes and a.phoa is not None:
        homes = [a.phoa]
    return [str(h) for h in homes] or ["-"]


def clientMain(path, words, out=None, err=None):
    """
    `netlmm mag-ctl`: send one command and print the answer: for list, one
    line per mobile (MNID STATE and its homes); for attach and detach, what was done;
    an error on stderr with status 1.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect(socketName(os.path.abspath(path)) or path)
    except OSError as e:
        print(f"netlmm mag-ctl: cannot connect to {path}: {e.strerror}", file=err)
        return 1
    with s:
        s.sendall(" ".join(words).encode("utf-8") + b"\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    lines = data.decode("utf-8", "replace").splitlines()
    status = lines[0] if lines else "error the MAG closed the connection without an answer"
    if not status.startswith("ok"):
        print(f"netlmm mag-ctl: {status.removeprefix('error').strip()}", file=err)
        return 1
    if words and words[0] == "list":
        # "ok N" counts the lines that follow; only the mobiles are printed.
        rows = lines[1:]
    else:
        rows = [status.removeprefix("ok").strip()]
    for row in rows:
        print(row, file=out)
    return 0
