"""
DHCPv6 on the MAG's access link, as the 'dhcp-relay' strategy
(L{netlmm.assignment.dhcp6relay}) and the 'lma-assigned' strategy's server
(L{netlmm.assignment.dhcp6server}) share it: a UDP socket on port 547 of the
access interface (the mobiles send to ff02::1:2 from their link-local
address; answers go to their port 546), and the MAC of each client.

A mobile is named as the 'rs' and 'link' detectors name it, by its MAC as
text 'aa:bb:cc:dd:ee:ff'; the MAC of a DHCPv6 client is found, in this
order, from the frames the access link saw from its link-local address (its
RS, NS), its DUID-LL / DUID-LLT, or its modified EUI-64 link-local address.
"""

import socket
import struct
from collections import OrderedDict
from ipaddress import IPv6Address

from twisted.logger import Logger

from netlmm.daemon import StartupError, reasonOf
from netlmm.wire import dhcp6
from netlmm.wire.dhcp6 import Message
from netlmm.wire.errors import DecodeError

#: How many link-local -> MAC pairs (and, in the strategies, learned
#: addresses and pending messages) are kept.
MAX_REMEMBERED = 4096
#: Client messages whose answer carries (or confirms) addresses.
ASKING = (dhcp6.SOLICIT, dhcp6.REQUEST, dhcp6.CONFIRM, dhcp6.RENEW, dhcp6.REBIND)
#: What a client sends (and a relay agent passes on).
CLIENT_TYPES = ASKING + (dhcp6.RELEASE, dhcp6.DECLINE, dhcp6.INFORMATION_REQUEST)


def openDhcpSocket(system, interface, port=dhcp6.SERVER_PORT):
    """
    A non-blocking UDP socket on [::]:C{port} with packet info, joined to
    All_DHCP_Relay_Agents_and_Servers on C{interface}, made in
    C{system.netns}.
    """
    from netlmm.access.system import IPV6_RECVPKTINFO, inNamespace
    with inNamespace(getattr(system, "netns", None)):
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
        s.bind(("::", port))
        index = system.ifindex(interface)
        mreq = dhcp6.ALL_AGENTS.packed + struct.pack("@I", index)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
        s.setblocking(False)
    except BaseException:
        s.close()
        raise
    return s


class MacBook:
    """Who is who on the access link: link-local address -> MAC, from frames."""

    def __init__(self):
        self.byLinkLocal = OrderedDict()

    def frame(self, frame):
        if frame.source.is_link_local:
            self.byLinkLocal[frame.source] = frame.sourceMac
            self.byLinkLocal.move_to_end(frame.source)
            while len(self.byLinkLocal) > MAX_REMEMBERED:
                self.byLinkLocal.popitem(last=False)

    def macOf(self, peer, duid):
        """The MAC (6 octets) of the client at C{peer} with C{duid}, or None."""
        return (self.byLinkLocal.get(peer) or dhcp6.macOfDuid(duid)
                or dhcp6.macOfLinkLocal(peer))


class AccessDhcp6:
    """
    What the DHCPv6 strategies share: the socket on the access link, the MAC
    book, and the attached mobiles (MN identifier -> MAC). Subclasses get
    each client message in L{clientMessage} and anything else in
    L{otherMessage}.
    """

    log = Logger()

    def __init__(self, reactor, link, interface=None, system=None):
        self.reactor = reactor
        self.link = link
        self.interface = interface or link.config.interface
        self.system = system or link.system
        self.macs = MacBook()
        self.mag = None
        self.reader = None
        self.accessIndex = None
        #: MN identifier -> MAC of the attached mobiles.
        self.attachedMobiles = {}
        self.sent = 0

    def _open(self):
        from netlmm.access.system import SocketReader
        self.link.frameListeners.append(self.macs.frame)
        self.link.start()
        try:
            self.accessIndex = self.system.ifindex(self.interface)
            sock = openDhcpSocket(self.system, self.interface)
        except OSError as e:
            self._close()
            raise StartupError(f"DHCPv6 on {self.interface!r}: {reasonOf(e)}") from None
        self.reader = SocketReader(self.reactor, sock, self._received,
                                   f"dhcpv6({self.interface})", ancillary=True)
        self.reader.startReading()

    def _close(self):
        if self.reader is not None:
            self.reader.stop()
            self.reader = None
        if self.macs.frame in self.link.frameListeners:
            self.link.frameListeners.remove(self.macs.frame)
            self.link.stop()

    def _received(self, data, ancillary, address):
        from netlmm.access.system import ancillaryInfo
        _dst, ifindex, _hops = ancillaryInfo(ancillary)
        source = IPv6Address(address[0].split("%")[0])
        if ifindex == self.accessIndex and address[1] == dhcp6.CLIENT_PORT:
            try:
                message = dhcp6.decode(data)
            except DecodeError as e:
                self.log.debug("DHCPv6: bad message from {source}: {error}",
                               source=source, error=e)
                return
            if not isinstance(message, Message) or message.type not in CLIENT_TYPES:
                self.log.debug("DHCPv6: {kind} from {source} on the access link ignored",
                               kind=message.name, source=source)
                return
            mac = self.macs.macOf(source, message.clientDuid)
            self.clientMessage(message, data, source, mac)
        else:
            self.otherMessage(data, source, address[1], ifindex)

    def clientMessage(self, message, data, peer, mac):
        raise NotImplementedError

    def otherMessage(self, data, source, port, ifindex):
        pass

    def toClient(self, data, peer):
        """Send C{data} to the client at link-local C{peer} (port 546)."""
        if self.reader is None or self.reader.socket is None:
            return False
        try:
            self.reader.socket.sendto(data, (str(peer), dhcp6.CLIENT_PORT, 0, self.accessIndex))
        except OSError as e:
            self.log.warn("DHCPv6: could not answer {peer}: {error}", peer=peer, error=e)
            return False
        self.sent += 1
        return True

    def mnIdOf(self, mac):
        """The attached mobile with C{mac}, or None."""
        for mnId, m in self.attachedMobiles.items():
            if m == mac:
                return mnId
        return None

