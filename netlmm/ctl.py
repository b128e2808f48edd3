"""
The daemons' local command socket: an operator (or a script, or a test)
sends one command line over a UNIX socket and reads the reply; the daemon
closes the connection after it. A reply starts "ok ..." (then rows) or
"error ...". The MAG's 'control' attachment detector (attach/detach/list,
L{netlmm.access.control}) and the LMA's and PMIP client's [control] table
(list/show bindings; deregister one) serve it; `netlmm ctl --socket PATH WORDS...` is the
client (`netlmm mag-ctl` the same for the MAG).

Who may command: the socket is created mode 0600, and each connection's
peer credentials (SO_PEERCRED) must be root's or the daemon's own user;
anyone else is answered "error" and nothing runs.
"""

import os
import re
import socket
import struct
import sys

from twisted.application.service import Service
from twisted.internet import endpoints
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver


class _CommandProtocol(LineOnlyReceiver):
    delimiter = b"\n"
    MAX_LENGTH = 1024

    def connectionMade(self):
        uid = peerUid(self.transport)
        self.allowed = uid is None or uid in (0, os.geteuid())
        if not self.allowed:
            self.factory.server.log.warn("{what}: refused a command from uid {uid}",
                                         what=self.factory.server.what, uid=uid)

    def lineReceived(self, line):
        server = self.factory.server
        if not self.allowed:
            reply = ["error not allowed: only root and the daemon's user may command it"]
        else:
            try:
                reply = server.command(words(line))
            except ValueError as e:
                server.log.warn("{what}: refused {command!r}: {error}", what=server.what,
                                command=line[:100], error=e)
                reply = [f"error {e}"]
        for r in reply:
            self.sendLine(r.encode("utf-8"))
        # One command per connection keeps clients trivial.
        self.transport.loseConnection()


def peerUid(transport):
    """The user id of a UNIX socket's peer (SO_PEERCRED), None if unknown."""
    try:
        handle = transport.getHandle()
        creds = handle.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                  struct.calcsize("3i"))
    except (AttributeError, OSError):
        return None
    return struct.unpack("3i", creds)[1]


def words(line):
    """
    The words of a command line; its octets must be UTF-8 (identifiers are).
    Only spaces and tabs separate words: other characters str.split() takes
    for white space (U+0085, U+001C...) stay in the word, to be refused.
    """
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"the command is not valid UTF-8 (octet {e.start})") from None
    return [w for w in re.split(r"[ \t\r]+", text) if w]


class CommandSocket:
    """
    Listens on the UNIX socket C{path} and answers each command line with
    C{command(words)} -> reply lines (raising ValueError for "error ...").
    C{what} names the daemon part in logs.
    """

    log = Logger()

    def __init__(self, reactor, path, command, what):
        self.reactor = reactor
        self.path = path
        self.command = command
        self.what = what
        self.port = None

    def start(self):
        """Listen (a Deferred); a socket left by a dead daemon is replaced."""
        if os.path.exists(self.path):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(self.path)
            except OSError:
                os.unlink(self.path)
            else:
                raise RuntimeError(f"{self.path}: another daemon is listening there")
            finally:
                probe.close()
        factory = Factory.forProtocol(_CommandProtocol)
        factory.server = self
        d = endpoints.UNIXServerEndpoint(self.reactor, self.path, mode=0o600).listen(factory)

        def listening(port):
            self.port = port
            self.log.info("{what}: commands on {path}", what=self.what, path=self.path)
        return d.addCallback(listening)

    def stop(self):
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()


def clientMain(path, command, prog="netlmm ctl", out=None):
    """Send one command (a list of words) to C{path}; print the reply."""
    out = sys.stdout if out is None else out
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect(path)
    except OSError as e:
        print(f"{prog}: cannot connect to {path}: {e.strerror}", file=sys.stderr)
        return 1
    with s:
        s.sendall(" ".join(command).encode("utf-8") + b"\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    text = data.decode("utf-8", "replace")
    out.write(text)
    return 0 if text.startswith("ok") else 1


#: The most rows `list` prints; a million bindings are counted, not listed.
LIST_LIMIT = 10000


def bindingCommand(words, entries, count, find, row, detail, deregister=None):
    """
    The LMA's and PMIP client's commands on their bindings:

        list        ->  ok N [of TOTAL]  then one row per binding (at most
                        L{LIST_LIMIT}): MNID STATE PCOA HOMES
        show KEY    ->  ok N  then, per binding KEY names (an MN identifier,
                        a home address, a pCoA), its fields as 'name value'
                        lines, a blank line between bindings
        deregister KEY  ->  ok 1  then one line saying what was done, when
                        KEY names one binding

    C{entries()} iterates the bindings, C{count} is how many there are,
    C{find(key)} returns those KEY names, C{row(entry)} and C{detail(entry)}
    format one, C{deregister(entry)} (None: the role cannot) ends one and
    returns the line (ValueError: why it cannot).
    """
    usage = "'list', 'show KEY'" + (" or 'deregister KEY'" if deregister else "")
    if not words:
        raise ValueError(f"empty command; expected {usage}")
    verb, args = words[0], words[1:]
    if verb == "deregister" and deregister is None:
        raise ValueError("deregister: not here")
    if verb == "deregister" and len(args) == 1:
        found = find(args[0])
        if len(found) != 1:
            raise ValueError(f"no binding for {args[0]!r}" if not found else
                             f"{args[0]!r} names {len(found)} bindings; name one by its "
                             "MN identifier or home address")
        return ["ok 1", deregister(found[0])]
    if verb == "list" and not args:
        rows = []
        for entry in entries():
            if len(rows) == LIST_LIMIT:
                break
            rows.append(row(entry))
        head = f"ok {len(rows)}" + (f" of {count}" if count > len(rows) else "")
        return [head] + rows
    if verb == "show" and len(args) == 1:
        found = find(args[0])
        if not found:
            raise ValueError(f"no binding for {args[0]!r}")
        lines = []
        for entry in found:
            if lines:
                lines.append("")
            lines.extend(detail(entry))
        return [f"ok {len(lines)}"] + lines
    raise ValueError(f"cannot parse {' '.join(words)!r}; expected {usage} "
                     "(KEY: an MN identifier, a home address or a pCoA)")


def addressOrNone(text):
    """C{text} as an IPv6 or IPv4 address, or None when it is not one."""
    from ipaddress import ip_address
    try:
        return ip_address(text)
    except ValueError:
        return None


class ControlService(Service):
    """
    Serves C{role.command(words)} on the UNIX socket C{path} (the [control]
    table of the LMA and the PMIP client).
    """

    def __init__(self, reactor, path, role):
        self.socket = CommandSocket(reactor, path, role.command, f"{role.name} control")

    def startService(self):
        super().startService()
        return self.socket.start()

    def stopService(self):
        super().stopService()
        return self.socket.stop()


def controlConfig(document, configDir):
    """The [control] table of a daemon's config: the socket path, or None."""
    table = document.table("control")
    if not table.data:
        return None
    path = table.string("socket", required=True)
    table.finish()
    return os.path.join(configDir, path)
