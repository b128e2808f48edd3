"""
Mobility Header transports: MH over UDP (port 5436, the encapsulation RFC
5844 uses) and MH over raw IPv6 sockets (protocol 135, needs CAP_NET_RAW).

Both read with C{recvmsg} and IPV6_PKTINFO, so the receiver knows the
destination address the packet was sent to: over UDP the Mobility Header
checksum (computed over the IPv6 pseudo-header, as if MH were carried
natively) is checked against it. Over raw sockets the kernel computes and
checks the checksum itself.

A datagram that does not decode is logged with the peer's address, counted
and dropped; it never raises into the reactor.
"""

import errno
import socket
import struct
from ipaddress import IPv6Address

from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from zope.interface import implementer

from netlmm.wire import DecodeError, mh
from netlmm.wire.checksum import mhChecksum

MH_UDP_PORT = 5436
_PKTINFO = struct.Struct("16sI")
_CHECKSUM = struct.Struct("!H").pack
_BATCH = 64
#: Most peers remembered by the address caches of an L{MHPort}.
_CACHE = 4096


@implementer(IReadDescriptor)
class MHPort:
    """
    One socket that sends and receives Mobility Header messages.

    @param handler: called as C{handler(message, raw, source, now)} for each
        valid message; C{source} is (IPv6Address, port) (port 0 for raw).
    @param kind: C{"udp"} or C{"raw"}.
    @param observer: optional callable C{(direction, message, peer)} told of
        every message sent and received (for ladders and tracing).
    """

    log = Logger()

    def __init__(self, reactor, handler, address, port=MH_UDP_PORT, kind="udp",
                 observer=None):
        if kind not in ("udp", "raw"):
            raise ValueError(f"MH transport must be 'udp' or 'raw', not {kind!r}")
        self.reactor = reactor
        self.handler = handler
        self.address = IPv6Address(address)
        self.port = port
        self.kind = kind
        self.observer = observer
        self.socket = None
        #: Optional callable told C{True} before each batch of datagrams
        #: read at once and C{False} after it (to coalesce what the batch
        #: makes the daemon write elsewhere).
        self.onBatch = None
        self._sources = {}
        # Peer address text -> IPv6Address and IPv6Address -> (text, packed),
        # so that the per-datagram path parses and formats each peer's
        # address once, not every time.
        self._parsed = {}
        self._peers = {}
        self.counters = {"received": 0, "sent": 0, "malformed": 0, "dropped": 0}
        from netlmm.ratelimit import RefusalLog
        #: Lines about malformed datagrams and failed sends, bounded per peer.
        self.refusals = RefusalLog(self.log, reactor)

    # ------------------------------------------------------------ lifecycle

    def startListening(self):
        """
        Open and bind the socket and start reading; a socket that cannot be
        opened raises L{netlmm.daemon.StartupError} naming the address.
        """
        try:
            if self.kind == "udp":
                s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            else:
                s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, mh.IPPROTO_MH)
        except OSError as e:
            from netlmm.daemon import StartupError, reasonOf
            raise StartupError(f"cannot open a {self.kind} Mobility Header socket: "
                               f"{reasonOf(e)}") from None
        try:
            if self.kind == "udp":
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            s.bind((str(self.address), self.port if self.kind == "udp" else 0))
            s.setblocking(False)
        except OSError as e:
            s.close()
            from netlmm.daemon import StartupError, reasonOf
            what = (f"[{self.address}]:{self.port}/udp" if self.kind == "udp"
                    else f"{self.address} (raw, protocol 135)")
            raise StartupError(f"MH socket {what}: {reasonOf(e)}") from None
        self.socket = s
        if self.kind == "udp":
            self.port = s.getsockname()[1]
        self.reactor.addReader(self)

    def stopListening(self):
        """Stop reading and close the socket."""
        self.refusals.stop()
        if self.socket is not None:
            self.reactor.removeReader(self)
            self.socket.close()
            self.socket = None

    # ------------------------------------------------------------ IReadDescriptor

    def fileno(self):
        return self.socket.fileno() if self.socket is not None else -1

    def logPrefix(self):
        return f"MH/{self.kind}"

    def connectionLost(self, reason):
        self.stopListening()

    def doRead(self):
        onBatch = self.onBatch
        if onBatch is None:
            return self._read()
        onBatch(True)
        try:
            return self._read()
        finally:
            onBatch(False)

    def _read(self):
        """Read and handle up to L{_BATCH} datagrams waiting on the socket."""
        recvmsg = self.socket.recvmsg
        space = socket.CMSG_SPACE(_PKTINFO.size)
        now = self.reactor.seconds()
        address = self.address.packed
        for _ in range(_BATCH):
            try:
                data, ancillary, flags, addr = recvmsg(2048, space)
            except BlockingIOError:
                return
            except OSError as e:
                # ICMP errors surface as ECONNREFUSED and friends on the next
                # read: note them and go on.
                self.log.debug("MH socket error {err}", err=e)
                if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    return
                continue
            destination = address
            for level, kind, value in ancillary:
                if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
                    destination = value[:16]
            self._datagram(data, addr, destination, now)

    def _datagram(self, data, addr, destination, now):
        """C{destination}: the address the datagram was sent to, packed."""
        self.counters["received"] += 1
        parsed = self._parsed.get(addr[0])
        if parsed is None:
            parsed = IPv6Address(addr[0].partition("%")[0])
            parsed = (parsed, parsed.packed)
            if len(self._parsed) < _CACHE:
                self._parsed[addr[0]] = parsed
        source = parsed[0]
        try:
            if self.kind == "udp":
                message = mh.decodeMessage(data, parsed[1], destination)
            else:
                message = mh.decodeMessage(data)
        except DecodeError as e:
            self.counters["malformed"] += 1
            self.refusals.refused(source, "malformed Mobility Header",
                                  "malformed Mobility Header from [{source}]:{port}: "
                                  "{error}", source=source, port=addr[1], error=e)
            return
        if self.observer is not None:
            self.observer("received", message, (source, addr[1]))
        try:
            self.handler(message, data, (source, addr[1]), now)
        except Exception:
            self.log.failure("handling {kind} from [{source}]:{port}",
                             kind=type(message).__name__, source=source, port=addr[1])

    # ------------------------------------------------------------ sending

    def _sourceFor(self, destination):
        """The address the kernel uses to reach C{destination}."""
        if not self.address.is_unspecified:
            return self.address
        source = self._sources.get(destination)
        if source is None:
            probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            try:
                probe.connect((str(destination), 9))
                source = IPv6Address(probe.getsockname()[0].partition("%")[0])
            finally:
                probe.close()
            self._sources[destination] = source
        return source

    def send(self, message, destination, port=None, octets=None):
        """
        Encode C{message} and send it to C{destination} (IPv6Address).
        C{octets}: C{message} already encoded, checksum field zero (a signed
        message, L{netlmm.security.auth.SignedOctets}): sent as they are,
        with the checksum filled in over UDP.
        """
        if type(destination) is not IPv6Address:
            destination = IPv6Address(destination)
        # Keyed by the integer: IPv6Address hashes through hex(). The entry
        # holds what each send needs: the text, and both packed addresses.
        key = int(destination)
        peer = self._peers.get(key)
        if peer is None:
            source = self._sourceFor(destination) if self.kind == "udp" else None
            peer = (str(destination), destination.packed,
                    None if source is None else source.packed)
            if len(self._peers) < _CACHE:
                self._peers[key] = peer
        text = peer[0]
        if self.kind == "udp":
            if octets is None:
                data = mh.encodeMessage(message, peer[2], peer[1])
            else:
                data = octets[:4] + _CHECKSUM(mhChecksum(peer[2], peer[1], octets)) \
                    + octets[6:]
            target = (text, MH_UDP_PORT if port is None else port)
        else:
            data = mh.encodeMessage(message) if octets is None else octets
            target = (text, 0)
        self.sendRaw(data, target)
        if self.observer is not None:
            self.observer("sent", message, (destination, target[1]))

    def metricFamilies(self, prefix):
        """This socket's counters as Prometheus metrics named C{prefix}_mh_..."""
        from netlmm.metrics import counter
        c = self.counters
        yield counter(f"{prefix}_mh_datagrams_received",
                      "Mobility Header datagrams received", c["received"])
        yield counter(f"{prefix}_mh_datagrams_malformed",
                      "Mobility Header datagrams that did not decode", c["malformed"])
        yield counter(f"{prefix}_mh_datagrams_sent", "Mobility Header datagrams sent",
                      c["sent"])
        yield counter(f"{prefix}_mh_datagrams_send_failed",
                      "Mobility Header datagrams the socket refused (buffer full)",
                      c["dropped"])

    def sendRaw(self, data, target):
        """Send bytes as they are; a full socket buffer drops and counts."""
        try:
            self.socket.sendto(data, target)
            self.counters["sent"] += 1
        except (BlockingIOError, OSError) as e:
            self.counters["dropped"] += 1
            self.refusals.refused(target[0], "cannot send",
                                  "cannot send to [{host}]:{port}: {error}",
                                  host=target[0], port=target[1], error=e)
