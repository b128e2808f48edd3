"""
The MAG <-> PMIP client protocol over a byte stream: TCP, TLS over TCP
(L{netlmm.transport.tls}) or SCTP (L{netlmm.transport.sctp}). Messages are
framed by the Length field of their own header.

A listener is guarded (L{Gate}, L{ControlFactory.admit}) before any byte is
read and before any TLS handshake: the peer's address must be allowed, and
connections are capped per peer address and in total. Accepted connections
have a handshake timeout (TLS) and an idle timeout (L{ControlProtocol}).
What a peer gets refused for is logged with bounds
(L{netlmm.ratelimit.RefusalLog}), per peer and reason.
"""

from collections import Counter
from ipaddress import IPv6Address

from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from zope.interface import implementer

from netlmm.ratelimit import RefusalLog

from netlmm.wire import DecodeError, EncodeError
from netlmm.wire.control import (
    HEADER, Notification, Result, decodeControl, encodeControl, peekLength,
    transactionOf, NOTIFICATION, CONFLICT_RESPONSE,
)


@implementer(IHandshakeListener)
class ControlProtocol(Protocol):
    """
    One MAG <-> PMIP client connection. Decoded messages go to
    C{self.factory.messageReceived(message, self)}; a message that does not
    decode is logged and answered with a Notification (result MALFORMED) when
    it was not itself a Notification. A broken frame (Length below 8) closes
    the connection, since the stream cannot be resynchronised.

    When the factory's C{tls} is true the connection only counts once the TLS
    handshake has authenticated the peer (L{handshakeCompleted}); before that
    the factory hears nothing of it. A connection that ends before (a plain
    TCP peer, no certificate, a certificate from another CA, the wrong role,
    or no handshake within C{factory.handshakeTimeout}) is logged with the
    peer's address and the reason, and counted as C{refused}.

    With C{factory.idleTimeout}, a connection that has sent no complete
    message for that long is closed when it stopped in the middle of one
    (stalled), or when its peer has a newer connection that is up (a
    restarted MAG, or a peer holding connections open); the one connection
    a MAG keeps to its PMIP client stays, however quiet.

    @ivar identity: (role, name) of the authenticated TLS peer, else None.
    """

    log = Logger()

    def __init__(self):
        self._buffer = b""
        #: Encoded messages held back by L{hold} until L{flush}, else None.
        self._held = None
        self.peer = None
        self.identity = None
        self.authenticated = False
        #: Why this end gave up on the peer before authentication.
        self.refusal = None
        self._handshakeTimer = None
        self._idleTimer = None
        #: When the last complete message arrived (or the connection came up).
        self.lastMessage = None
        self.upSince = None

    def connectionMade(self):
        peer = self.transport.getPeer()
        self.peer = (IPv6Address(peer.host.partition("%")[0]), peer.port)
        self.factory.registered(self)
        if not self.factory.tls:
            self._up()
            return
        clock = self.factory.clock
        if clock is not None:
            self._handshakeTimer = clock.callLater(self.factory.handshakeTimeout,
                                                   self._handshakeTimedOut)

    def _up(self):
        self.authenticated = True
        clock = self.factory.clock
        if clock is not None:
            self.upSince = self.lastMessage = clock.seconds()
            if self.factory.idleTimeout:
                self._idleTimer = clock.callLater(self.factory.idleTimeout, self._idleCheck)
        self.factory.connectionMade(self)

    def _idleCheck(self):
        self._idleTimer = None
        clock, timeout = self.factory.clock, self.factory.idleTimeout
        idle = clock.seconds() - self.lastMessage
        if idle < timeout:
            self._idleTimer = clock.callLater(timeout - idle, self._idleCheck)
            return
        if self._buffer:
            why = f"stalled in the middle of a message for {timeout:g} s"
        elif self.factory.hasNewer(self):
            why = f"idle for {timeout:g} s while a newer connection from it is up"
        else:
            self._idleTimer = clock.callLater(timeout, self._idleCheck)
            return
        self.factory.counters["idle"] += 1
        self.refused("idle", "{side}: closing the connection of {peer}: {why}",
                     side=self.factory.side, why=why)
        self.transport.abortConnection()

    def _handshakeTimedOut(self):
        self._handshakeTimer = None
        if self.refusal is None:
            self.refusal = (f"no TLS handshake within {self.factory.handshakeTimeout:g} s "
                            "(not a TLS peer?)")
        self.transport.abortConnection()

    def handshakeCompleted(self):
        """The TLS peer is authenticated: now the connection counts."""
        from netlmm.transport.tls import peerIdentity
        self._cancelTimer()
        self.identity = peerIdentity(self.transport)
        if self.identity is None:
            # The verify callback checked the role already; this cannot
            # happen unless the TLS layer was set up without it.
            self.refusal = "no authenticated netlmm identity after the handshake"
            self.transport.abortConnection()
            return
        self._up()

    def _cancelTimer(self):
        for name in ("_handshakeTimer", "_idleTimer"):
            timer = getattr(self, name)
            if timer is not None and timer.active():
                timer.cancel()
            setattr(self, name, None)

    def connectionLost(self, reason):
        self._cancelTimer()
        self.factory.unregistered(self)
        if self.authenticated:
            self.factory.connectionLost(self, reason)
            return
        self.factory.counters["refused"] += 1
        why = (self.refusal or getattr(self.transport, "netlmmRefusal", None)
               or _tlsReason(reason))
        # Bounded per peer and kind: the reason itself may name details.
        kind = "no TLS handshake" if why.startswith("no TLS handshake") else "TLS refused"
        self.refused(kind, "{side}: refused {expected} {peer}: {why}",
                     side=self.factory.side, expected=self.factory.expected, why=why)
        self.factory.connectionRefused(self, why)

    def refused(self, reason, format, **fields):
        """
        Log that this peer's input or connection was refused for C{reason},
        bounded per peer address and reason (the factory's L{RefusalLog});
        C{format} may use C{{peer}} (this connection, described).
        """
        self.factory.refusals.refused(self.peer[0] if self.peer else "?", reason,
                                      format, **dict(fields, peer=self.describe()))

    def dataReceived(self, data):
        if not self.authenticated:
            return
        self._buffer += data
        if len(self._buffer) < 2:
            return
        batch = self.factory.batch
        batch(True)
        try:
            self._frames()
        finally:
            batch(False)

    def _frames(self):
        """Handle every whole message in the buffer (one batch of them)."""
        while len(self._buffer) >= 2:
            try:
                length = peekLength(self._buffer)
            except DecodeError as e:
                self.refused("broken stream", "broken stream from {peer}: {error}; closing",
                             error=e)
                self.factory.counters["malformed"] += 1
                self._buffer = b""
                self.transport.loseConnection()
                return
            if len(self._buffer) < length:
                return
            frame, self._buffer = self._buffer[:length], self._buffer[length:]
            self._frame(frame)

    def _frame(self, frame):
        if self.factory.clock is not None:
            self.lastMessage = self.factory.clock.seconds()
        try:
            message = decodeControl(frame)
        except DecodeError as e:
            self.factory.counters["malformed"] += 1
            self.refused("malformed message", "malformed message from {peer}: {error}",
                         error=e)
            if len(frame) >= HEADER and frame[0] not in (NOTIFICATION,
                                                         CONFLICT_RESPONSE):
                self.send(Notification(transactionOf(frame), Result.MALFORMED))
            return
        self.factory.counters["received"] += 1
        try:
            self.factory.messageReceived(message, self)
        except Exception:
            self.log.failure("handling {kind} from {peer}",
                             kind=type(message).__name__, peer=self.describe())

    def send(self, message):
        """Encode and send one message."""
        try:
            data = encodeControl(message)
        except EncodeError as e:
            self.log.error("cannot encode {kind}: {error}",
                           kind=type(message).__name__, error=e)
            return False
        if self._held is not None:
            self._held.append(data)
        else:
            self.transport.write(data)
        self.factory.counters["sent"] += 1
        return True

    def hold(self):
        """
        Keep what L{send} sends until L{flush}: the messages of one batch of
        work (several PBAcks read at once) then go in one write, one TLS
        record, instead of one each.
        """
        if self._held is None:
            self._held = []

    def flush(self):
        """Write what was held, in one write, and stop holding."""
        held, self._held = self._held, None
        if held and self.transport is not None:
            self.transport.write(b"".join(held))

    def describe(self):
        """The peer as '[addr]:port', with its TLS identity once authenticated."""
        if self.peer is None:
            return "?"
        text = f"[{self.peer[0]}]:{self.peer[1]}"
        if self.identity is not None:
            text += f" ({self.identity[0]}:{self.identity[1]}, TLS)"
        return text


def _tlsReason(reason):
    """A short text for why a connection ended before authentication."""
    value = reason.value
    try:
        from OpenSSL.SSL import Error
    except ImportError:  # pragma: no cover
        Error = ()
    if isinstance(value, Error) and value.args and isinstance(value.args[0], list):
        parts = [e[2] for e in value.args[0] if len(e) == 3 and e[2]]
        if parts:
            return "TLS handshake failed: " + "; ".join(parts)
    return f"closed before the TLS handshake completed ({value.__class__.__name__})"


class ControlFactory(Factory):
    """
    Base factory for both ends; subclasses override the three callbacks.

    A listener's factory also says whom it takes (L{admit}): C{allowed}
    networks (None: any address), at most C{maxConnections} connections at
    once and C{maxPerPeer} from one address.
    """

    protocol = ControlProtocol
    #: No "Starting factory" lines in the logs.
    noisy = False
    #: True when the connections run over TLS (set by the service).
    tls = False
    #: An IReactorTime for the timeouts, or None for no timeout.
    clock = None
    handshakeTimeout = 10.0
    #: Seconds without a complete message before a stalled connection, or a
    #: quiet one whose peer has a newer one up, is closed (None: never).
    idleTimeout = None
    #: Networks a listener takes connections from (None: any address).
    allowed = None
    maxConnections = None
    maxPerPeer = None
    #: For the logs: this end, and the peer it expects.
    side = "control"
    expected = "peer"

    def __init__(self):
        self.counters = {"received": 0, "sent": 0, "malformed": 0, "refused": 0,
                         "idle": 0}
        #: The connections up or being set up (TLS handshakes included).
        self.live = set()
        self._perPeer = Counter()
        self._refusals = None

    @property
    def refusals(self):
        """The L{RefusalLog} of this end's refusals (made on first use)."""
        if self._refusals is None:
            self._refusals = RefusalLog(ControlProtocol.log, self.clock)
        return self._refusals

    def stopRefusals(self):
        """
        Give the refusals' pending summaries and leave no timer (the owning
        service calls it at stop; a listener's L{Gate} when it stops).
        """
        # Made if need be: a refusal after this (a connection that ends
        # late) must find it stopped, not start a timer of its own.
        self.refusals.stop()

    def limit(self, allowed=None, maxConnections=None, maxPerPeer=None,
              idleTimeout=None, handshakeTimeout=None):
        """Set whom a listener takes and its timeouts (see the class)."""
        self.allowed = None if allowed is None else tuple(allowed)
        self.maxConnections = maxConnections
        self.maxPerPeer = maxPerPeer
        self.idleTimeout = idleTimeout
        if handshakeTimeout is not None:
            self.handshakeTimeout = handshakeTimeout

    def admit(self, addr):
        """
        Whether a listener takes a connection from C{addr} (an IPv6Address
        of Twisted): checked before any byte is read or TLS handshake made.
        A refusal is counted, logged (bounded) and answered by closing.
        """
        address = IPv6Address(addr.host.partition("%")[0])
        if self.allowed is not None and not any(address in n for n in self.allowed):
            why, reason = "not an allowed address", "address not allowed"
        elif self.maxPerPeer is not None and self._perPeer[address] >= self.maxPerPeer:
            why = f"it has {self.maxPerPeer} connections already (the most per peer)"
            reason = "too many connections"
        elif self.maxConnections is not None and len(self.live) >= self.maxConnections:
            why = f"{self.maxConnections} connections are up (the most in all)"
            reason = "connection limit"
        else:
            return True
        self.counters["refused"] += 1
        self.refusals.refused(address, reason, "{side}: refused a connection from "
                              "[{address}]:{port} before reading it: {why}",
                              side=self.side, address=address, port=addr.port, why=why)
        return False

    def registered(self, proto):
        """A connection came up (not yet authenticated over TLS)."""
        self.live.add(proto)
        self._perPeer[proto.peer[0]] += 1

    def unregistered(self, proto):
        """A connection went away, whatever its state."""
        if proto in self.live:
            self.live.discard(proto)
            self._perPeer[proto.peer[0]] -= 1
            if self._perPeer[proto.peer[0]] <= 0:
                del self._perPeer[proto.peer[0]]

    def hasNewer(self, proto):
        """
        True when C{proto}'s peer has a newer connection that is up: from
        the same address and, over TLS, the same authenticated identity
        (two MAGs behind one address keep one connection each).
        """
        return any(other is not proto and other.peer[0] == proto.peer[0]
                   and other.identity == proto.identity
                   and other.authenticated and other.upSince is not None
                   and other.upSince > proto.upSince for other in self.live)

    def connectionMade(self, proto):
        """A connection is up (and authenticated, over TLS)."""

    def connectionLost(self, proto, reason):
        """A connection went away."""

    def connectionRefused(self, proto, why):
        """A TLS peer was refused (or left) before it was authenticated."""

    def messageReceived(self, message, proto):
        """A decoded message arrived on C{proto}."""

    def batch(self, starting):
        """
        Before (C{starting}) and after the messages of one read of a
        connection: its owner may handle them as a batch (the PMIP client's
        L{netlmm.service.base.RoleService.batch}).
        """


class Gate(Factory):
    """
    The outermost factory of a listener: asks C{policy} (a
    L{ControlFactory}) to L{ControlFactory.admit} each connection and
    closes the refused ones at once, before TLS (C{inner}, a
    TLSMemoryBIOFactory around the policy) or anything else sees them.
    """

    noisy = False

    def __init__(self, policy, inner=None):
        self.policy = policy
        self.inner = inner if inner is not None else policy

    def buildProtocol(self, addr):
        if not self.policy.admit(addr):
            return None
        return self.inner.buildProtocol(addr)

    def doStart(self):
        self.inner.doStart()

    def doStop(self):
        self.inner.doStop()
        self.policy.stopRefusals()

    def logPrefix(self):
        return self.inner.logPrefix()
