"""
SCTP for the MAG <-> PMIP client channel (draft section 4.9.3).

A one-to-one style socket (C{SOCK_STREAM}, C{IPPROTO_SCTP}) set up as the
draft asks: one outbound and one inbound stream, ordered delivery (the U bit
is never set), and every message sent with the Payload Protocol Identifier
L{PPID_PMIP_MAG}. The socket is created and configured here and then adopted
by the reactor (C{adoptStreamPort} / C{adoptStreamConnection}), so the same
L{ControlProtocol} runs over it as over TCP, and TLS can be layered on top.

The socket calls go through an injected C{socketFactory} so the set-up can be
tested with a fake on kernels without SCTP (L{netlmm.test.test_sctp}).
"""

import errno
import socket
import struct

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectError, ConnectingCancelledError, TimeoutError
from twisted.internet.interfaces import IStreamClientEndpoint, IStreamServerEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from zope.interface import implementer

IPPROTO_SCTP = getattr(socket, "IPPROTO_SCTP", 132)
SOL_SCTP = IPPROTO_SCTP
SCTP_INITMSG = 2             # struct sctp_initmsg
SCTP_NODELAY = 3
SCTP_DEFAULT_SNDINFO = 34    # struct sctp_sndinfo (RFC 6458 8.1.31)

#: The Payload Protocol Identifier for 'PMIP-MAG'. IANA has assigned none
#: (draft section 5.0 leaves it open); this is the ASCII of "PMIP".
PPID_PMIP_MAG = 0x504D4950

#: No IANA port either: the same default as the TCP listener.
DEFAULT_PORT = 5437


def initMsg(streams=1):
    """struct sctp_initmsg: C{streams} out and in, default retries and timeout."""
    return struct.pack("=HHHH", streams, streams, 0, 0)


def sndInfo(ppid=PPID_PMIP_MAG, stream=0):
    """
    struct sctp_sndinfo {u16 sid; u16 flags; u32 ppid; u32 context; u32 assoc_id}.
    The kernel passes the PPID through as is, so it goes in network order.
    Flags 0: ordered delivery.
    """
    return struct.pack("=HH4sII", stream, 0, struct.pack("!I", ppid), 0, 0)


def sctpSocket(socketFactory=socket.socket):
    """
    A non-blocking one-to-one SCTP socket over IPv6, configured for the
    PMIP-MAG protocol. Raises C{OSError} where the kernel has no SCTP.
    """
    s = socketFactory(socket.AF_INET6, socket.SOCK_STREAM, IPPROTO_SCTP)
    try:
        s.setsockopt(SOL_SCTP, SCTP_INITMSG, initMsg(1))
        s.setsockopt(SOL_SCTP, SCTP_NODELAY, 1)
        s.setsockopt(SOL_SCTP, SCTP_DEFAULT_SNDINFO, sndInfo())
        s.setblocking(False)
    except BaseException:
        s.close()
        raise
    return s


def sctpUnavailable(socketFactory=socket.socket):
    """None when this kernel has SCTP for IPv6, else the reason it has not."""
    try:
        s = socketFactory(socket.AF_INET6, socket.SOCK_STREAM, IPPROTO_SCTP)
    except OSError as e:
        return (f"this kernel has no SCTP: socket(AF_INET6, SOCK_STREAM, "
                f"IPPROTO_SCTP) failed: {e.strerror or e}")
    s.close()
    return None


@implementer(IStreamServerEndpoint)
class SCTPServerEndpoint:
    """Listens on an SCTP one-to-one socket and hands it to the reactor."""

    def __init__(self, reactor, port, interface="::", backlog=50,
                 socketFactory=socket.socket):
        self.reactor = reactor
        self.port = port
        self.interface = interface
        self.backlog = backlog
        self.socketFactory = socketFactory

    def listen(self, factory):
        from twisted.internet.defer import execute
        return execute(self._listen, factory)

    def _listen(self, factory):
        s = sctpSocket(self.socketFactory)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((self.interface, self.port))
            s.listen(self.backlog)
            # The reactor dups the descriptor; ours is closed either way.
            return self.reactor.adoptStreamPort(s.fileno(), socket.AF_INET6, factory)
        finally:
            s.close()


class _Capture(Factory):
    """Wraps a factory to hand back the protocol adoptStreamConnection builds."""

    def __init__(self, factory):
        self.factory = factory
        self.protocol = None

    def buildProtocol(self, addr):
        self.protocol = self.factory.buildProtocol(addr)
        return self.protocol

    def doStart(self):
        self.factory.doStart()

    def doStop(self):
        self.factory.doStop()


class _Connecting:
    """Waits, as a reactor writer, for a non-blocking connect() to finish."""

    log = Logger()

    def __init__(self, endpoint, sock, factory, deferred):
        self.endpoint = endpoint
        self.sock = sock
        self.factory = factory
        self.deferred = deferred
        self.timer = None

    def fileno(self):
        return self.sock.fileno()

    def logPrefix(self):
        return "SCTP connect"

    def _finish(self):
        reactor = self.endpoint.reactor
        reactor.removeWriter(self)
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None

    def doWrite(self):
        self._finish()
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self.sock.close()
            self.deferred.errback(ConnectError(osError=OSError(err, _strerror(err))))
            return
        self._adopt()

    def _adopt(self):
        capture = _Capture(self.factory)
        try:
            self.endpoint.reactor.adoptStreamConnection(self.sock.fileno(), socket.AF_INET6,
                                                        capture)
        except Exception as e:
            self.deferred.errback(ConnectError(string=str(e)))
            return
        finally:
            self.sock.close()
        self.deferred.callback(capture.protocol)

    def timedOut(self):
        self.timer = None
        self._finish()
        self.sock.close()
        self.deferred.errback(TimeoutError(string="SCTP association not established "
                                           f"within {self.endpoint.timeout} s"))

    def cancel(self, d):
        self._finish()
        self.sock.close()
        d.errback(ConnectingCancelledError(self.endpoint.address))

    def connectionLost(self, reason):
        """The reactor drops us (shutting down)."""


def _strerror(err):
    import os
    return os.strerror(err)


@implementer(IStreamClientEndpoint)
class SCTPClientEndpoint:
    """Sets up an SCTP association with a non-blocking connect, then adopts it."""

    def __init__(self, reactor, host, port, timeout=5, socketFactory=socket.socket):
        self.reactor = reactor
        self.host = str(host)
        self.port = port
        self.timeout = timeout
        self.socketFactory = socketFactory
        self.address = (self.host, port)

    def connect(self, factory):
        try:
            s = sctpSocket(self.socketFactory)
        except OSError as e:
            from twisted.internet.defer import fail
            return fail(ConnectError(osError=e))
        pending = []
        d = Deferred(lambda d: pending[0].cancel(d))
        connecting = _Connecting(self, s, factory, d)
        pending.append(connecting)
        err = s.connect_ex((self.host, self.port))
        if err == 0:
            connecting._adopt()
        elif err in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY):
            self.reactor.addWriter(connecting)
            connecting.timer = self.reactor.callLater(self.timeout, connecting.timedOut)
        else:
            s.close()
            d.errback(ConnectError(osError=OSError(err, _strerror(err))))
        return d
