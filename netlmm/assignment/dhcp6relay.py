"""
The 'dhcp-relay' strategy (draft section 4.1 step 2): the MAG is an RFC 8415
relay agent for its mobiles' DHCPv6 and learns their pHoA from the server.

Each client message goes to the configured server in a Relay-Forward (hop
count 0, link-address an address of the LMD prefix so that the server picks
that subnet, peer-address the mobile's link-local, Interface-ID naming the
access link); each Relay-Reply with that Interface-ID is unwrapped and its
message sent to the peer-address, which must be link-local (the relay never
sends to anyone but a client on the access link). A Reply that assigns an
address (to a Request, Renew, Rebind, a rapid-commit Solicit, or a
successful Confirm of the client's addresses) triggers the PMIP client in
stateful mode. A server that does not answer or answers with a failure
status leaves the mobile unbound, and the log says so.
"""

from collections import OrderedDict
from ipaddress import IPv6Address

from zope.interface import implementer

from netlmm.access import macOfEvent
from netlmm.access.dhcp6 import ASKING, MAX_REMEMBERED, AccessDhcp6
from netlmm.interfaces import IAddressAssignment
from netlmm.wire import dhcp6
from netlmm.wire.control import AddressMode, showMnId
from netlmm.wire.dhcp6 import IaNa, InterfaceId, Message, RelayMessage, RelayMessageOption
from netlmm.wire.errors import DecodeError, WireError
from netlmm.wire.icmpv6 import macText


class _Pending:
    __slots__ = ("type", "mac", "peer", "addresses", "timer")

    def __init__(self, type, mac, peer, addresses, timer):
        self.type = type
        self.mac = mac
        self.peer = peer
        self.addresses = addresses
        self.timer = timer


@implementer(IAddressAssignment)
class DhcpRelayAssignment(AccessDhcp6):
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
        default = (str(access.config.prefix.network_address)
                   if access is not None and access.config.prefix is not None else None)
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
        mac = macOfEvent(event)
        if mac is None:
            self.log.warn("dhcp-relay strategy: MN {mnId} has no MAC to match its DHCPv6 "
                          "client by; it stays unbound", mnId=showMnId(event.mnId))
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
        if message.type not in ASKING:
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
                          "{previous}", mnId=showMnId(mnId), address=address, previous=previous)
            return
        self.reported[mnId] = address
        self.log.info("dhcp-relay: {mnId} was assigned {address}", mnId=showMnId(mnId),
                      address=address)
        if self.mag is not None:
            self.mag.addressReady(mnId, address, AddressMode.STATEFUL)
