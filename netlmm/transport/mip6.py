"""
Mobile IPv6 signalling as RFC 6275 puts it on the wire, over a raw IPv6
socket for the Mobility Header (protocol 135), for both ends of a home
registration:

  - the home agent (the GMA) receives Binding Updates that carry a Home
    Address destination option and answers with a type 2 routing header;
  - the mobile (`netlmm mn`) sends Binding Updates from its care-of address
    with a Home Address option and receives answers through a type 2
    routing header.

Linux processes both headers only when built with CONFIG_IPV6_MIP6 (module
mip6, in the stock kernels of Debian and most distributions); without it a
packet with either header is dropped with an ICMPv6 Parameter Problem.
Even then it accepts them only where an xfrm state says so
(L{Xfrm}: `ip xfrm state ... proto hao` / `proto route2`, mode ro, and an
inbound policy with an optional template for them). On receipt the kernel
swaps the addresses: the socket sees the home address as the source of a
Binding Update, and the care-of address in its Home Address option; a BA
arrives addressed to the home address, the care-of address in its routing
header. L{MIP6Port} undoes that and reports (care-of, home) as they were
on the wire.

Sending uses ancillary data (IPV6_DSTOPTS, IPV6_RTHDR, IPV6_PKTINFO). The
Mobility Header checksum covers the home address (RFC 6275 6.1.1): the home
agent lets the kernel compute it (the routing header's final destination is
the home address); the mobile computes it itself, as the kernel would use
the care-of address.
"""

import errno
import socket
import struct
import subprocess
from ipaddress import IPv6Address

from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from zope.interface import implementer

from netlmm.wire import DecodeError, mh, mip6
from netlmm.wire.checksum import mhChecksum

_PKTINFO = struct.Struct("16sI")
_BATCH = 64


@implementer(IReadDescriptor)
class MIP6Port:
    """
    One raw Mobility Header socket with RFC 6275's extension headers.

    @param handler: called as C{handler(message, raw, careOf, home,
        destination, now)} for each valid message: C{careOf} the address it
        came from (a care-of address when it had a Home Address option or a
        routing header), C{home} the home address of that header or None,
        C{destination} the address it was sent to.
    @param address: the address to bind (the GMA's; :: for the mobile).
    @param mobile: True for the mobile's end (checksums computed here).
    @param system: opens the socket (tests pass a fake).
    """

    log = Logger()

    def __init__(self, reactor, handler, address="::", mobile=False, observer=None,
                 system=None):
        self.reactor = reactor
        self.handler = handler
        self.address = IPv6Address(address)
        self.mobile = mobile
        self.observer = observer
        self.system = system if system is not None else _socket
        self.socket = None
        self.counters = {"received": 0, "sent": 0, "malformed": 0, "dropped": 0}
        from netlmm.ratelimit import RefusalLog
        #: Lines about malformed datagrams and failed sends, bounded per peer.
        self.refusals = RefusalLog(self.log, reactor)

    def startListening(self):
        """Open and bind the socket and start reading."""
        s = self.system()
        try:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVDSTOPTS, 1)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVRTHDR, 1)
            if self.mobile:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_CHECKSUM, -1)
            s.bind((str(self.address), 0))
            s.setblocking(False)
        except OSError:
            s.close()
            raise
        self.socket = s
        self.reactor.addReader(self)

    def stopListening(self):
        self.refusals.stop()
        if self.socket is not None:
            self.reactor.removeReader(self)
            self.socket.close()
            self.socket = None

    # ------------------------------------------------------------ IReadDescriptor

    def fileno(self):
        return self.socket.fileno() if self.socket is not None else -1

    def logPrefix(self):
        return "MIP6"

    def connectionLost(self, reason):
        self.stopListening()

    def doRead(self):
        space = socket.CMSG_SPACE(_PKTINFO.size) + 2 * socket.CMSG_SPACE(256)
        now = self.reactor.seconds()
        for _ in range(_BATCH):
            try:
                data, ancillary, flags, addr = self.socket.recvmsg(2048, space)
            except BlockingIOError:
                return
            except OSError as e:
                self.log.debug("MIP6 socket error {err}", err=e)
                if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    return
                continue
            self.datagram(data, ancillary, addr[0], now)

    def datagram(self, data, ancillary, sourceText, now):
        """One received Mobility Header with its ancillary data."""
        self.counters["received"] += 1
        source = IPv6Address(sourceText.partition("%")[0])
        destination = self.address
        options = route = None
        for level, kind, value in ancillary:
            if level != socket.IPPROTO_IPV6:
                continue
            if kind == socket.IPV6_PKTINFO:
                destination = IPv6Address(value[:16])
            elif kind == socket.IPV6_DSTOPTS:
                options = value
            elif kind == socket.IPV6_RTHDR:
                route = value
        try:
            careOf, home = source, None
            if options is not None:
                # The kernel put the care-of address into the option.
                hao = mip6.homeAddressOf(options)
                if hao is not None:
                    careOf, home = hao, source
            elif route is not None:
                # A BA to our home address; the care-of address it went to
                # is in the routing header now.
                home = destination
                destination = mip6.routingHeader2Address(route)
            if self.mobile:
                # Checksum over the final destination (the home address).
                message = mh.decodeMessage(data, source, home or destination)
            else:
                message = mh.decodeMessage(data)
        except DecodeError as e:
            self.counters["malformed"] += 1
            self.refusals.refused(source, "malformed Mobility Header",
                                  "malformed Mobility Header from {source}: {error}",
                                  source=source, error=e)
            return
        if self.observer is not None:
            self.observer("received", message, (careOf, 0))
        try:
            self.handler(message, data, careOf, home, destination, now)
        except Exception:
            self.log.failure("handling {kind} from {source}", kind=type(message).__name__,
                             source=source)

    # ------------------------------------------------------------ sending

    def sendToMobile(self, message, careOf, home, octets=None):
        """
        Home agent: C{message} to C{careOf} with a type 2 routing header
        for C{home} (None: plainly to C{careOf}); the kernel adds the
        checksum over the home address. C{octets}: the message encoded
        already (signed, L{netlmm.security.auth.SignedOctets}).
        """
        data = mh.encodeMessage(message) if octets is None else octets
        if home is None:
            return self._send(data, [], careOf, message)
        # The routing header's address becomes the first destination; the
        # address given to sendmsg is the final one.
        ancillary = [(socket.IPPROTO_IPV6, socket.IPV6_RTHDR, mip6.routingHeader2(careOf))]
        return self._send(data, ancillary, home, message, careOf)

    def sendToHomeAgent(self, message, homeAgent, careOf, home, octets=None):
        """
        Mobile: C{message} to C{homeAgent} from C{careOf} with a Home
        Address option for C{home} (C{careOf} None: from C{home}, without
        it); the checksum is computed here, over the home address.
        C{octets}: the message encoded already, checksum field zero.
        """
        if octets is None:
            data = mh.encodeMessage(message, home, homeAgent)
        else:
            data = octets[:4] + struct.pack("!H", mhChecksum(
                IPv6Address(home).packed, IPv6Address(homeAgent).packed, octets)) + octets[6:]
        source = home if careOf is None else careOf
        ancillary = [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO,
                      _PKTINFO.pack(IPv6Address(source).packed, 0))]
        if careOf is not None:
            ancillary.append((socket.IPPROTO_IPV6, socket.IPV6_DSTOPTS,
                              mip6.destinationOptions(home)))
        return self._send(data, ancillary, homeAgent, message)

    def _send(self, data, ancillary, destination, message, via=None):
        try:
            self.socket.sendmsg([data], ancillary, 0, (str(destination), 0))
        except OSError as e:
            self.counters["dropped"] += 1
            self.refusals.refused(str(via or destination), "cannot send",
                                  "cannot send {kind} to {destination}: {error}",
                                  kind=type(message).__name__,
                                  destination=via or destination, error=e)
            return False
        self.counters["sent"] += 1
        if self.observer is not None:
            self.observer("sent", message, (via or destination, 0))
        return True


def _socket():
    return socket.socket(socket.AF_INET6, socket.SOCK_RAW, mh.IPPROTO_MH)


class XfrmError(Exception):
    """The kernel refused an xfrm state or policy; the text says which and why."""


class Xfrm:
    """
    The xfrm states and policies that let the kernel take the Home Address
    option (home agent) or the type 2 routing header (mobile), installed
    with iproute2 (pyroute2 has no xfrm) and removed again.

    Home agent: a wildcard state of protocol hao (any care-of address) and
    an inbound policy for Binding Updates with an optional hao template.
    Mobile: a state of protocol route2 for its home address and an inbound
    policy for Binding Acknowledgements with an optional route2 template.
    """

    def __init__(self, run=None):
        self._run = run if run is not None else _ip
        self._installed = []

    @staticmethod
    def homeAgentCommands():
        return [
            (["xfrm", "state", "add", "src", "::", "dst", "::", "proto", "hao",
              "coa", "::", "mode", "ro", "flag", "wildrecv"],
             ["xfrm", "state", "delete", "src", "::", "dst", "::", "proto", "hao"]),
            (["xfrm", "policy", "add", "dir", "in", "src", "::/0", "dst", "::/0",
              "proto", "mobility-header", "type", "5", "tmpl", "src", "::", "dst", "::",
              "proto", "hao", "mode", "ro", "level", "use"],
             ["xfrm", "policy", "delete", "dir", "in", "src", "::/0", "dst", "::/0",
              "proto", "mobility-header", "type", "5"]),
        ]

    @staticmethod
    def mobileCommands(home):
        home = str(home)
        return [
            (["xfrm", "state", "add", "src", "::", "dst", home, "proto", "route2",
              "coa", "::", "mode", "ro", "flag", "wildrecv"],
             ["xfrm", "state", "delete", "src", "::", "dst", home, "proto", "route2"]),
            (["xfrm", "policy", "add", "dir", "in", "src", "::/0", "dst", f"{home}/128",
              "proto", "mobility-header", "type", "6", "tmpl", "src", "::", "dst", home,
              "proto", "route2", "mode", "ro", "level", "use"],
             ["xfrm", "policy", "delete", "dir", "in", "src", "::/0", "dst", f"{home}/128",
              "proto", "mobility-header", "type", "6"]),
        ]

    def install(self, commands):
        """
        Remove leftovers of an earlier run, then add each state and policy;
        L{XfrmError} naming the one the kernel refused (nothing left behind).
        """
        for add, delete in commands:
            self._run(delete, check=False)
        for add, delete in commands:
            try:
                self._run(add)
            except XfrmError:
                self.remove()
                raise
            self._installed.append(delete)

    def remove(self):
        """Take away what L{install} added."""
        installed, self._installed = self._installed, []
        for delete in reversed(installed):
            self._run(delete, check=False)


def _ip(argv, check=True):
    try:
        result = subprocess.run(["ip"] + argv, capture_output=True, text=True, timeout=10)
    except FileNotFoundError:
        raise XfrmError("iproute2's 'ip' is needed for the xfrm states") from None
    if check and result.returncode:
        reason = (result.stderr or result.stdout).strip()
        raise XfrmError(f"'ip {' '.join(argv[:4])} ...' failed: {reason}")
    return result
