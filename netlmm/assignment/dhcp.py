"""
DHCPv6 on the MAG's access link: the 'dhcp-relay' strategy (draft section
4.1 step 2) and the proxy server that the 'lma-assigned' strategy runs
(Appendix A).

Both listen on UDP port 547 on the access interface (the mobiles send to
ff02::1:2 from their link-local address) and answer on port 546. A mobile is
named as the 'rs' and 'link' detectors name it, by its MAC as text
'aa:bb:cc:dd:ee:ff'; the MAC of a DHCPv6 client is found, in this order,
from the frames the access link saw from its link-local address (its RS, NS),
its DUID-LL / DUID-LLT, or its modified EUI-64 link-local address.

'dhcp-relay' is an RFC 8415 relay agent: each client message goes to the
configured server in a Relay-Forward (hop count 0, link-address an address
of the LMD prefix so that the server picks that subnet, peer-address the
mobile's link-local, Interface-ID naming the access link); each Relay-Reply
with that Interface-ID is unwrapped and its message sent to the
peer-address. A Reply that assigns an address (to a Request, Renew, Rebind,
a rapid-commit Solicit, or a successful Confirm of the client's addresses)
triggers the PMIP client in stateful mode. A server that does not answer or
answers with a failure status leaves the mobile unbound, and the log says so.
"""

import socket
import struct
import uuid
from collections import OrderedDict
from ipaddress import IPv6Address

from twisted.logger import Logger
from zope.interface import implementer

from netlmm.interfaces import IAddressAssignment
from netlmm.wire import dhcp6
from netlmm.wire.control import AddressMode
from netlmm.wire.dhcp6 import (
    ClientId, IaAddress, IaNa, InterfaceId, Message, Preference, RapidCommit, RelayMessage,
    RelayMessageOption, ServerId, StatusCode,
)
from netlmm.wire.errors import DecodeError, EncodeError, WireError
from netlmm.wire.icmpv6 import macBytes, macText

#: How many link-local -> MAC pairs, learned addresses and pending messages are kept.
MAX_REMEMBERED = 4096
#: Client messages whose answer carries (or confirms) addresses.
_ASKING = (dhcp6.SOLICIT, dhcp6.REQUEST, dhcp6.CONFIRM, dhcp6.RENEW, dhcp6.REBIND)
#: What a relay agent passes on from clients.
_CLIENT_TYPES = _ASKING + (dhcp6.RELEASE, dhcp6.DECLINE, dhcp6.INFORMATION_REQUEST)


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


class _MacBook:
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


def _eventMac(event):
    for candidate in (event.linkLayer, event.mnId.decode("utf-8", "replace")):
        if isinstance(candidate, bytes) and len(candidate) == 6:
            return candidate
        try:
            return macBytes(candidate)
        except (EncodeError, TypeError):
            continue
    return None


def _show(mnId):
    return mnId.decode("utf-8", "replace")


class _AccessDhcp:
    """
    The shared part: the socket on the access link, the MAC book, and the
    attached mobiles (MN identifier -> MAC).
    """

    log = Logger()

    def __init__(self, reactor, link, interface=None, system=None):
        self.reactor = reactor
        self.link = link
        self.interface = interface or link.config.interface
        self.system = system or link.system
        self.macs = _MacBook()
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
            raise RuntimeError(f"DHCPv6 on {self.interface!r}: {e.strerror or e}") from None
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
            if not isinstance(message, Message) or message.type not in _CLIENT_TYPES:
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


class _Pending:
    __slots__ = ("type", "mac", "peer", "addresses", "timer")

    def __init__(self, type, mac, peer, addresses, timer):
        self.type = type
        self.mac = mac
        self.peer = peer
        self.addresses = addresses
        self.timer = timer


@implementer(IAddressAssignment)
class DhcpRelayAssignment(_AccessDhcp):
    """
    The MAG relays its mobiles' DHCPv6 to C{server} and learns their pHoA
    from the server's Reply (stateful mode).

    @param link: the L{netlmm.access.link.AccessLink} (its frames map
        link-local addresses to MACs).
    @param server: the DHCPv6 server's address (unicast).
    @param linkAddress: the Relay-Forward's link-address (an address of the
        LMD prefix: the server picks its subnet by it).
    @param interfaceId: the Interface-ID option's value (bytes).
    @param timeout: seconds to wait for the server's answer before logging
        that the mobile stays unbound.
    """

    name = "dhcp-relay"

    def __init__(self, reactor, link, server, linkAddress, interfaceId=None,
                 serverPort=dhcp6.SERVER_PORT, timeout=10.0, interface=None, system=None):
        super().__init__(reactor, link, interface, system)
        self.server = IPv6Address(server)
        self.serverPort = serverPort
        self.linkAddress = IPv6Address(linkAddress)
        self.interfaceId = interfaceId if interfaceId is not None \
            else self.interface.encode("utf-8")
        self.timeout = timeout
        #: (transaction, client DUID) -> _Pending, for messages awaiting the server.
        self.pending = OrderedDict()
        #: MAC -> (address, expiry) the server assigned.
        self.learned = OrderedDict()
        #: MN identifier -> the address reported to the MAG in this attachment.
        self.reported = {}
        self.relayed = 0
        self.replies = 0

    @classmethod
    def fromConfig(cls, table, reactor=None, access=None, system=None, **context):
        """
        Options: C{server} (the DHCPv6 server's address, required),
        C{server_port} (547), C{link_address} (default: the [mag.access]
        prefix's first address), C{interface_id} (default: the access
        interface's name), C{timeout} (10 s), C{interface} (without
        [mag.access]: the access interface, whose RAs another router sends).
        """
        from netlmm.access.link import snoopingOnly
        from netlmm.config import ConfigError
        server = table.address("server", required=True)
        if server.is_multicast or server.is_unspecified:
            raise ConfigError(f"{table.where}.server: expected a unicast address, got {server}")
        port = table.number("server_port", dhcp6.SERVER_PORT, minimum=1, maximum=65535,
                            integer=True)
        default = str(access.config.prefix.network_address) if access is not None else None
        linkAddress = table.address("link_address", default, required=default is None)
        if linkAddress.is_link_local or linkAddress.is_multicast:
            raise ConfigError(f"{table.where}.link_address: expected a global address of the "
                              f"LMD prefix, got {linkAddress}")
        if access is not None:
            interface = table.string("interface", access.config.interface)
            if interface != access.config.interface:
                raise ConfigError(f"{table.where}.interface: must be [mag.access] interface "
                                  f"({access.config.interface!r}), got {interface!r}")
            link = access
        else:
            interface = table.string("interface", required=True)
            link = snoopingOnly(reactor, interface, system)
        interfaceId = table.string("interface_id", interface)
        if not 1 <= len(interfaceId.encode("utf-8")) <= 255:
            raise ConfigError(f"{table.where}.interface_id: expected 1..255 octets")
        timeout = table.number("timeout", 10, minimum=0.1, maximum=600)
        table.finish()
        return cls(reactor, link, server, linkAddress, interfaceId.encode("utf-8"), port,
                   timeout, interface)

    # ------------------------------------------------------------ IAddressAssignment

    def start(self, mag):
        self.mag = mag
        self._open()
        self.log.info("dhcp-relay strategy: relaying DHCPv6 on {interface} to "
                      "[{server}]:{port}, link-address {link}", interface=self.interface,
                      server=self.server, port=self.serverPort, link=self.linkAddress)

    def stop(self):
        for p in self.pending.values():
            if p.timer is not None and p.timer.active():
                p.timer.cancel()
        self.pending.clear()
        self._close()
        self.mag = None

    def attached(self, event):
        mac = _eventMac(event)
        if mac is None:
            self.log.warn("dhcp-relay strategy: MN {mnId} has no MAC to match its DHCPv6 "
                          "client by; it stays unbound", mnId=_show(event.mnId))
            return
        self.attachedMobiles[event.mnId] = mac
        self.reported.pop(event.mnId, None)
        known = self.learned.get(mac)
        if known is not None and known[1] > self.reactor.seconds():
            self._report(event.mnId, known[0])

    def bound(self, mnId, phoa):
        pass

    def unbound(self, mnId, phoa, reason):
        self.attachedMobiles.pop(mnId, None)
        self.reported.pop(mnId, None)

    # ------------------------------------------------------------ relaying

    def clientMessage(self, message, data, peer, mac):
        forward = RelayMessage(dhcp6.RELAY_FORW, 0, self.linkAddress, peer,
                               [InterfaceId(self.interfaceId), RelayMessageOption(data)])
        try:
            self.reader.socket.sendto(dhcp6.encode(forward),
                                      (str(self.server), self.serverPort, 0, 0))
        except (OSError, WireError) as e:
            self.log.warn("dhcp-relay: could not relay {kind} from {peer} to {server}: "
                          "{error}", kind=message.name, peer=peer, server=self.server, error=e)
            return
        self.relayed += 1
        self.log.debug("dhcp-relay: {kind} from {peer} relayed", kind=message.name, peer=peer)
        if message.type not in _ASKING:
            return
        key = (message.transaction, message.clientDuid)
        old = self.pending.pop(key, None)
        if old is not None and old.timer is not None and old.timer.active():
            old.timer.cancel()
        addresses = [a.address for _, a in dhcp6.iaAddresses(message, success=False)]
        timer = self.reactor.callLater(self.timeout, self._noAnswer, key)
        self.pending[key] = _Pending(message.type, mac, peer, addresses, timer)
        while len(self.pending) > MAX_REMEMBERED:
            _, p = self.pending.popitem(last=False)
            if p.timer is not None and p.timer.active():
                p.timer.cancel()

    def _noAnswer(self, key):
        p = self.pending.pop(key, None)
        if p is None:
            return
        who = macText(p.mac) if p.mac is not None else str(p.peer)
        self.log.warn("dhcp-relay: the DHCPv6 server [{server}] did not answer the "
                      "{kind} of {who} within {timeout} s; it stays unbound",
                      server=self.server, kind=dhcp6.MESSAGE_NAMES[p.type], who=who,
                      timeout=self.timeout)

    def otherMessage(self, data, source, port, ifindex):
        if source != self.server:
            self.log.debug("dhcp-relay: a message from {source} (not the server) ignored",
                           source=source)
            return
        try:
            reply = dhcp6.decode(data)
            if not isinstance(reply, RelayMessage) or reply.type != dhcp6.RELAY_REPL:
                raise DecodeError(f"a {reply.name} from the server, not a Relay-reply")
            if reply.interfaceId != self.interfaceId:
                raise DecodeError(f"Interface-ID {reply.interfaceId!r} is not ours")
            if reply.relayed is None:
                raise DecodeError("no Relay Message option")
            inner = dhcp6.decode(reply.relayed)
            if not isinstance(inner, Message):
                raise DecodeError("a relay message inside, for another relay agent")
        except DecodeError as e:
            self.log.warn("dhcp-relay: bad answer from the server {source}: {error}",
                          source=source, error=e)
            return
        if not reply.peerAddress.is_link_local:
            self.log.warn("dhcp-relay: Relay-reply for {peer}, not a link-local client; "
                          "dropped", peer=reply.peerAddress)
            return
        self.replies += 1
        self.toClient(reply.relayed, reply.peerAddress)
        self._inspect(inner, reply.peerAddress)

    def _inspect(self, message, peer):
        key = (message.transaction, message.clientDuid)
        if message.type == dhcp6.ADVERTISE:
            status = message.status
            p = self.pending.get(key)
            if status is not None and status.status != dhcp6.SUCCESS and p is not None:
                self.log.warn("dhcp-relay: the server advertises no address to {peer}: "
                              "{status} {text}", peer=peer, status=status.name,
                              text=status.message)
            return
        if message.type != dhcp6.REPLY:
            return
        p = self.pending.pop(key, None)
        if p is not None and p.timer is not None and p.timer.active():
            p.timer.cancel()
        mac = (p.mac if p is not None else None) or self.macs.macOf(peer, message.clientDuid)
        kind = dhcp6.MESSAGE_NAMES[p.type] if p is not None else "message"
        status = message.status
        if status is not None and status.status != dhcp6.SUCCESS:
            self.log.warn("dhcp-relay: the server answered the {kind} of {peer} with "
                          "{status} ({text}); it stays unbound", kind=kind, peer=peer,
                          status=status.name, text=status.message)
            return
        if p is not None and p.type == dhcp6.CONFIRM:
            # RFC 8415 18.3.3: Success means the client's addresses are on this link.
            valid = 300
            assigned = p.addresses
        else:
            pairs = dhcp6.iaAddresses(message)
            assigned = [a.address for _, a in pairs]
            valid = max([a.valid for _, a in pairs], default=0)
            if not assigned:
                statuses = [f"{s.name} ({s.message})" for s in
                            (ia.status for ia in message.all(IaNa)) if s is not None]
                self.log.warn("dhcp-relay: the server's Reply to the {kind} of {peer} "
                              "assigns no address{why}; it stays unbound", kind=kind,
                              peer=peer, why=(": " + ", ".join(statuses)) if statuses else "")
                return
        if mac is None:
            self.log.warn("dhcp-relay: {peer} got {address} but its MAC is unknown; "
                          "it stays unbound", peer=peer, address=assigned[0])
            return
        self.learn(mac, assigned[0], valid)

    def learn(self, mac, address, valid=3600):
        """The server assigned C{address} to the mobile with C{mac} for C{valid} s."""
        address = IPv6Address(address)
        self.learned[mac] = (address, self.reactor.seconds() + valid)
        self.learned.move_to_end(mac)
        while len(self.learned) > MAX_REMEMBERED:
            self.learned.popitem(last=False)
        mnId = self.mnIdOf(mac)
        if mnId is None:
            self.log.info("dhcp-relay: {mac} was assigned {address}; not attached here "
                          "(yet)", mac=macText(mac), address=address)
            return
        self._report(mnId, address)

    def _report(self, mnId, address):
        previous = self.reported.get(mnId)
        if previous == address:
            return
        if previous is not None:
            self.log.info("dhcp-relay: {mnId} was also assigned {address}; keeping "
                          "{previous}", mnId=_show(mnId), address=address, previous=previous)
            return
        self.reported[mnId] = address
        self.log.info("dhcp-relay: {mnId} was assigned {address}", mnId=_show(mnId),
                      address=address)
        if self.mag is not None:
            self.mag.addressReady(mnId, address, AddressMode.STATEFUL)


class DhcpProxyServer(_AccessDhcp):
    """
    The MAG as the mobile's DHCPv6 server (draft Appendix A), for the
    'lma-assigned' strategy: a client's Solicit, Request, Renew, Rebind or
    Confirm makes C{trigger(mnId)} run (once per attachment); the answer goes
    when L{bound} tells the pHoA the LMA assigned. Every MAG of the domain
    uses the same server DUID (a DUID-UUID derived from the LMD prefix), so a
    Renew that names the first MAG's server is answered by the next.
    """

    def __init__(self, reactor, link, trigger, serverDuid=None, preferred=1800, valid=3600,
                 t1=None, t2=None, interface=None, system=None):
        super().__init__(reactor, link, interface, system)
        self.trigger = trigger
        prefix = getattr(link.config, "prefix", None)
        self.serverDuid = serverDuid or dhcp6.duidUUID(
            uuid.uuid5(uuid.NAMESPACE_URL, f"netlmm:lmd:{prefix or self.interface}"))
        self.preferred = preferred
        self.valid = valid
        self.t1 = int(preferred * 0.5) if t1 is None else t1
        self.t2 = int(preferred * 0.8) if t2 is None else t2
        #: MN identifier -> [(message, peer)] waiting for the pHoA.
        self.waiting = {}
        #: MN identifier -> the bound pHoA.
        self.addresses = {}
        #: MN identifiers triggered in this attachment.
        self.triggered = set()
        #: Messages from clients not (yet) attached: MAC -> [(message, peer)].
        self.early = OrderedDict()

    def start(self):
        self._open()
        self.log.info("lma-assigned strategy: DHCPv6 server on {interface}",
                      interface=self.interface)

    def stop(self):
        self._close()

    def attached(self, mnId, mac):
        self.attachedMobiles[mnId] = mac
        self.triggered.discard(mnId)
        self.addresses.pop(mnId, None)
        for message, peer in self.early.pop(mac, []):
            self._ask(mnId, message, peer)

    def bound(self, mnId, phoa):
        self.addresses[mnId] = phoa
        for message, peer in self.waiting.pop(mnId, []):
            self._answer(message, peer, phoa)

    def unbound(self, mnId):
        self.attachedMobiles.pop(mnId, None)
        self.triggered.discard(mnId)
        self.addresses.pop(mnId, None)
        left = self.waiting.pop(mnId, [])
        if left:
            self.log.warn("lma-assigned: {mnId} is not bound; {n} DHCPv6 message(s) stay "
                          "unanswered", mnId=_show(mnId), n=len(left))

    def clientMessage(self, message, data, peer, mac):
        if message.type == dhcp6.REQUEST and message.serverDuid != self.serverDuid:
            self.log.debug("lma-assigned: a Request for another server ignored")
            return
        if message.type == dhcp6.SOLICIT and message.serverDuid is not None:
            return
        if message.type in (dhcp6.RELEASE, dhcp6.DECLINE, dhcp6.INFORMATION_REQUEST):
            # The binding stays until the mobile detaches (the LMA owns the address).
            self.toClient(dhcp6.encode(self._reply(dhcp6.REPLY, message, [])), peer)
            return
        mnId = self.mnIdOf(mac) if mac is not None else None
        if mnId is None:
            if mac is None:
                self.log.warn("lma-assigned: DHCPv6 {kind} from {peer} whose MAC is unknown; "
                              "ignored", kind=message.name, peer=peer)
                return
            self.log.info("lma-assigned: DHCPv6 {kind} from {mac}, not attached yet",
                          kind=message.name, mac=macText(mac))
            self.early.setdefault(mac, []).append((message, peer))
            del self.early[mac][:-4]
            while len(self.early) > MAX_REMEMBERED:
                self.early.popitem(last=False)
            return
        self._ask(mnId, message, peer)

    def _ask(self, mnId, message, peer):
        phoa = self.addresses.get(mnId)
        if phoa is not None:
            self._answer(message, peer, phoa)
            return
        queue = self.waiting.setdefault(mnId, [])
        queue.append((message, peer))
        del queue[:-4]
        if mnId not in self.triggered:
            self.triggered.add(mnId)
            self.log.info("lma-assigned: DHCPv6 {kind} from {mnId}; asking the LMA for "
                          "an address", kind=message.name, mnId=_show(mnId))
            self.trigger(mnId)

    def _reply(self, kind, message, options):
        out = [ServerId(self.serverDuid)]
        if message.clientDuid is not None:
            out.append(ClientId(message.clientDuid))
        return Message(kind, message.transaction, out + list(options))

    def _answer(self, message, peer, phoa):
        if message.type == dhcp6.CONFIRM:
            addresses = [a.address for _, a in dhcp6.iaAddresses(message, success=False)]
            ok = all(a == phoa for a in addresses)
            status = StatusCode(dhcp6.SUCCESS if ok else dhcp6.NOT_ON_LINK,
                                "confirmed" if ok else "not the address of this mobile")
            self.toClient(dhcp6.encode(self._reply(dhcp6.REPLY, message, [status])), peer)
            return
        ias = []
        for ia in message.all(IaNa):
            options = [IaAddress(phoa, self.preferred, self.valid)]
            # Addresses the client still holds that are not its pHoA: lifetime 0.
            options += [IaAddress(a.address, 0, 0) for a in ia.addresses
                        if a.address != phoa]
            ias.append(IaNa(ia.iaid, self.t1, self.t2, options))
        if not ias:
            ias = [StatusCode(dhcp6.NO_ADDRS_AVAIL, "no IA_NA in the request")]
        if message.type == dhcp6.SOLICIT and message.option(RapidCommit) is None:
            kind, extra = dhcp6.ADVERTISE, [Preference(255)]
        else:
            kind = dhcp6.REPLY
            extra = [RapidCommit()] if message.type == dhcp6.SOLICIT else []
        answer = self._reply(kind, message, ias + extra)
        self.log.info("lma-assigned: {kind} with {phoa} to {peer}",
                      kind=dhcp6.MESSAGE_NAMES[kind], phoa=phoa, peer=peer)
        self.toClient(dhcp6.encode(answer), peer)
