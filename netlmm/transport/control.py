"""
The MAG <-> PMIP client protocol over a byte stream: TCP, TLS over TCP
(L{netlmm.transport.tls}) or SCTP (L{netlmm.transport.sctp}). Messages are
framed by the Length field of their own header.
"""

from ipaddress import IPv6Address

from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from zope.interface import implementer

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

    def connectionMade(self):
        peer = self.transport.getPeer()
        self.peer = (IPv6Address(peer.host.partition("%")[0]), peer.port)
        if not self.factory.tls:
            self.authenticated = True
            self.factory.connectionMade(self)
            return
        clock = self.factory.clock
        if clock is not None:
            self._handshakeTimer = clock.callLater(self.factory.handshakeTimeout,
                                                   self._handshakeTimedOut)

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
        self.authenticated = True
        self.factory.connectionMade(self)

    def _cancelTimer(self):
        if self._handshakeTimer is not None and self._handshakeTimer.active():
            self._handshakeTimer.cancel()
        self._handshakeTimer = None

    def connectionLost(self, reason):
        self._cancelTimer()
        if self.authenticated:
            self.factory.connectionLost(self, reason)
            return
        self.factory.counters["refused"] += 1
        why = (self.refusal or getattr(self.transport, "netlmmRefusal", None)
               or _tlsReason(reason))
        self.log.warn("{side}: refused {expected} {peer}: {reason}",
                      side=self.factory.side, expected=self.factory.expected,
                      peer=self.describe(), reason=why)
        self.factory.connectionRefused(self, why)

    def dataReceived(self, data):
        if not self.authenticated:
            return
        self._buffer += data
        while len(self._buffer) >= 2:
            try:
                length = peekLength(self._buffer)
            except DecodeError as e:
                self.log.warn("broken stream from {peer}: {error}; closing",
                              peer=self.describe(), error=e)
                self.factory.counters["malformed"] += 1
                self._buffer = b""
                self.transport.loseConnection()
                return
            if len(self._buffer) < length:
                return
            frame, self._buffer = self._buffer[:length], self._buffer[length:]
            self._frame(frame)

    def _frame(self, frame):
        try:
            message = decodeControl(frame)
        except DecodeError as e:
            self.factory.counters["malformed"] += 1
            self.log.warn("malformed message from {peer}: {error}",
                          peer=self.describe(), error=e)
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
    """

    protocol = ControlProtocol
    #: No "Starting factory" lines in the logs.
    noisy = False
    #: True when the connections run over TLS (set by the service).
    tls = False
    #: An IReactorTime for the handshake timeout, or None for no timeout.
    clock = None
    handshakeTimeout = 10.0
    #: For the logs: this end, and the peer it expects.
    side = "control"
    expected = "peer"

    def __init__(self):
        self.counters = {"received": 0, "sent": 0, "malformed": 0, "refused": 0}

    def connectionMade(self, proto):
        """A connection is up (and authenticated, over TLS)."""

    def connectionLost(self, proto, reason):
        """A connection went away."""

    def connectionRefused(self, proto, why):
        """A TLS peer was refused (or left) before it was authenticated."""

    def messageReceived(self, message, proto):
        """A decoded message arrived on C{proto}."""
