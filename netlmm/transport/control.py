"""
The MAG <-> PMIP client protocol over a byte stream (TCP in this release).
Messages are framed by the Length field of their own header.
"""

from ipaddress import IPv6Address

from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from netlmm.wire import DecodeError, EncodeError
from netlmm.wire.control import (
    HEADER, Notification, Result, decodeControl, encodeControl, peekLength,
    transactionOf, NOTIFICATION,
)


class ControlProtocol(Protocol):
    """
    One MAG <-> PMIP client connection. Decoded messages go to
    C{self.factory.messageReceived(message, self)}; a message that does not
    decode is logged and answered with a Notification (result MALFORMED) when
    it was not itself a Notification. A broken frame (Length below 8) closes
    the connection, since the stream cannot be resynchronised.
    """

    log = Logger()

    def __init__(self):
        self._buffer = b""
        self.peer = None

    def connectionMade(self):
        peer = self.transport.getPeer()
        self.peer = (IPv6Address(peer.host.partition("%")[0]), peer.port)
        self.factory.connectionMade(self)

    def connectionLost(self, reason):
        self.factory.connectionLost(self, reason)

    def dataReceived(self, data):
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
            if len(frame) >= HEADER and frame[0] != NOTIFICATION:
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
        self.transport.write(data)
        self.factory.counters["sent"] += 1
        return True

    def describe(self):
        """The peer as '[addr]:port'."""
        if self.peer is None:
            return "?"
        return f"[{self.peer[0]}]:{self.peer[1]}"


class ControlFactory(Factory):
    """
    Base factory for both ends; subclasses override the three callbacks.
    """

    protocol = ControlProtocol

    def __init__(self):
        self.counters = {"received": 0, "sent": 0, "malformed": 0}

    def connectionMade(self, proto):
        """A connection is up."""

    def connectionLost(self, proto, reason):
        """A connection went away."""

    def messageReceived(self, message, proto):
        """A decoded message arrived on C{proto}."""
