"""
The MAG as its IPv4 mobiles' DHCPv4 server (RFC 5844 section 3.4, draft
E.2): the address it hands out is the IPv4 home address the LMA assigned in
the binding, the router is the IPv4 default router the LMA named.

With the MAG's C{[mag.ipv4]} policy on, every Trigger asks the LMA for an
IPv4 home address; when the Notification brings one (and its default
router), L{Dhcp4Server.bound} learns it, puts the router address on the
access interface (so the MAG answers ARP for it, receives the mobile's
unicast renewals, and is its first hop), and answers the mobile's
DHCPDISCOVER with a DHCPOFFER and its DHCPREQUEST with a DHCPACK of that
address (a DHCPNAK for any other). Messages that come before the binding
wait for it. The server identifier is the router address, which every MAG
serving the mobile holds, so a renewal sent to it after a handoff is
answered by the new MAG; the mobile keeps its address.

Answers go in frames addressed to the mobile's MAC alone (the client has no
address yet; on a shared link no other mobile sees them). With C{subnet =
"host"} (the default) the mask is 255.255.255.255: each mobile sees only
itself and its router on the link, as with per-MN prefixes, so mobiles
reach each other only through the MAG, which sends their packets into the
tunnel to the LMA; C{"home"} gives the home network's prefix length (on a
point-to-point link, or where mobiles may talk directly).

An IPv4-only mobile sends no Router Solicitation: attach it with the 'link'
detector (bridge events), not 'rs'.
"""

import errno
from collections import OrderedDict
from ipaddress import IPv4Address
from socket import AF_INET

from twisted.logger import Logger

from netlmm.daemon import StartupError, reasonOf
from netlmm.dataplane import _netlink as nl
from netlmm.wire import dhcp4
from netlmm.wire.dhcp4 import Message, Option, addresses, messageType, seconds, subnetMask
from netlmm.wire.control import showMnId
from netlmm.wire.errors import DecodeError
from netlmm.wire.icmpv6 import macText

#: Messages kept per mobile while its binding is pending.
QUEUED = 4
#: Mobiles not attached yet whose messages are kept.
MAX_EARLY = 1024


class RouterAddresses(nl.NetlinkWork):
    """
    The IPv4 default routers of the bound mobiles, as /32 addresses on the
    access interface, counted by how many mobiles use each. They carry the
    label C{interface}:nl, so a restarted MAG removes what a killed one left.
    """

    log = Logger()

    def __init__(self, interface, reactor=None, netlink=nl.defaultNetlink, runner=None):
        super().__init__(reactor, netlink, runner)
        self.interface = interface
        self.label = f"{interface}:nl"
        #: router address -> how many mobiles use it.
        self.users = {}
        self._index = None

    def start(self):
        self.runner.start()
        return self._do(self._start)

    def _start(self, ipr):
        self._index = nl.ifindex(ipr, self.interface, "mag.ipv4.interface")
        for address in self._own(ipr):
            self._delete(ipr, address)

    def _own(self, ipr):
        return [a.get("address") for a in ipr.addr("dump", family=AF_INET)
                if a.get("label") == self.label and a.get("index") == self._index]

    def _delete(self, ipr, address):
        nl.ignoring(errno.EADDRNOTAVAIL, errno.ENODEV)(
            ipr.addr, "del", index=self._index, address=str(address), prefixlen=32)

    def stop(self):
        self.users.clear()

        def stop(ipr):
            for address in self._own(ipr):
                self._delete(ipr, address)
        return self._finish(self._do(stop))

    def use(self, router):
        """One more mobile has C{router}: put it on the interface with the first."""
        self.users[router] = self.users.get(router, 0) + 1
        if self.users[router] == 1:
            return self._do(lambda ipr: nl.ignoring(errno.EEXIST)(
                ipr.addr, "add", index=self._index, address=str(router), prefixlen=32,
                label=self.label))
        return None

    def release(self, router):
        """One mobile less has C{router}: remove it with the last."""
        n = self.users.get(router, 0) - 1
        if n > 0:
            self.users[router] = n
            return None
        self.users.pop(router, None)
        return self._do(self._delete, router)


class Lease:
    """What one bound mobile is served: its address, home prefix length, router."""

    __slots__ = ("address", "prefixLength", "router")

    def __init__(self, ipv4, router):
        self.address = ipv4.ip
        self.prefixLength = ipv4.network.prefixlen
        self.router = router


class Dhcp4Server:
    """
    DHCPv4 for the IPv4 mobiles on C{link} (an
    L{netlmm.access.link.AccessLink}, whose packet socket sends the answers).

    @param leaseTime: seconds of the leases (T1 at half, T2 at 7/8).
    @param subnet: "host" (mask /32) or "home" (the home network's prefix length).
    @param routers: the L{RouterAddresses} (made on C{interface} when None).
    """

    log = Logger()

    def __init__(self, reactor, link, leaseTime=3600, subnet="host", interface=None,
                 system=None, routers=None):
        self.reactor = reactor
        self.link = link
        self.leaseTime = leaseTime
        self.subnet = subnet
        self.interface = interface or link.config.interface
        self.system = system or link.system
        self.routers = routers if routers is not None else RouterAddresses(
            self.interface, reactor)
        self.mag = None
        self.reader = None
        #: MN identifier -> MAC of the attached mobiles.
        self.attachedMobiles = {}
        #: MN identifier -> L{Lease} of the bound ones.
        self.leases = {}
        #: MN identifier -> [message] waiting for the binding.
        self.waiting = {}
        #: MAC -> [message] from mobiles not attached (yet).
        self.early = OrderedDict()
        self.counters = dict(offers=0, acks=0, naks=0, ignored=0)

    @classmethod
    def fromTable(cls, table, reactor, access):
        """
        C{[mag.ipv4]}: C{dhcp} ("server", the only mode), C{lease_time}
        (3600 s), C{subnet} ("host" or "home"); needs [mag.access].
        """
        from netlmm.config import ConfigError
        mode = table.string("dhcp", "server")
        if mode != "server":
            raise ConfigError(
                f"{table._key('dhcp')}: only 'server' is supported (the MAG answers "
                f"with the address the LMA assigned, RFC 5844 3.4), got {mode!r}")
        lease = table.number("lease_time", 3600, minimum=60, maximum=0xFFFFFFFE,
                             integer=True)
        subnet = table.string("subnet", "host", choices=("host", "home"))
        table.finish()
        if access is None:
            raise ConfigError(f"{table.where}: the DHCPv4 server runs on the access link; "
                              "it needs [mag.access]")
        return cls(reactor, access, lease, subnet)

    # ------------------------------------------------------------ life

    def start(self, mag):
        """Open the socket, clean router addresses a killed run left."""
        from netlmm.access.system import SocketReader
        self.mag = mag
        self.link.start()
        try:
            sock = self.system.dhcp4ServerSocket(self.interface)
        except OSError as e:
            self.link.stop()
            raise StartupError(f"DHCPv4 on {self.interface!r}: {reasonOf(e)}") from None
        self.reader = SocketReader(self.reactor, sock, self._received,
                                   f"dhcpv4({self.interface})")
        self.reader.startReading()
        self.log.info("DHCPv4 server on {interface}: leases of {lease} s, mask {subnet}",
                      interface=self.interface, lease=self.leaseTime, subnet=self.subnet)
        return self.routers.start()

    def stop(self):
        if self.reader is not None:
            self.reader.stop()
            self.reader = None
            self.link.stop()
        self.mag = None
        return self.routers.stop()

    # ------------------------------------------------------------ the MAG's news

    def attached(self, event):
        """A mobile appeared: its messages are matched to it by MAC."""
        from netlmm.access import macOfEvent
        mac = macOfEvent(event)
        if mac is None:
            return
        self.attachedMobiles[event.mnId] = mac
        for message in self.early.pop(mac, []):
            self._handle(event.mnId, message)

    def bound(self, mnId, homes):
        """C{mnId} is bound with C{homes}: serve its IPv4 address, if it has one."""
        old = self.leases.pop(mnId, None)
        if homes.ipv4 is not None and homes.ipv4Router is not None:
            lease = self.leases[mnId] = Lease(homes.ipv4, homes.ipv4Router)
            self.routers.use(lease.router)
        if old is not None:
            self.routers.release(old.router)
        if mnId not in self.leases:
            dropped = self.waiting.pop(mnId, [])
            if dropped:
                self.log.warn("DHCPv4: {mnId} is bound without an IPv4 home address; "
                              "{n} message(s) unanswered", mnId=showMnId(mnId), n=len(dropped))
            return
        for message in self.waiting.pop(mnId, []):
            self._handle(mnId, message)

    def unbound(self, mnId):
        """C{mnId} is not bound here any more."""
        self.attachedMobiles.pop(mnId, None)
        self.waiting.pop(mnId, None)
        lease = self.leases.pop(mnId, None)
        if lease is not None:
            self.routers.release(lease.router)

    # ------------------------------------------------------------ messages

    def _received(self, data, ancillary, address):
        try:
            message = dhcp4.decode(data)
        except DecodeError as e:
            self.log.debug("DHCPv4: bad message from {source}: {error}",
                           source=address[0], error=e)
            return
        if message.op != dhcp4.BOOTREQUEST or message.type is None:
            return
        if message.htype != dhcp4.HW_ETHERNET or len(message.chaddr) != 6:
            self.log.debug("DHCPv4: {kind} with hardware type {htype}, length {hlen}: "
                           "ignored", kind=message.name, htype=message.htype,
                           hlen=len(message.chaddr))
            return
        mac = message.chaddr
        mnId = self._mnIdOf(mac)
        if mnId is None:
            early = self.early.setdefault(mac, [])
            early.append(message)
            del early[:-QUEUED]
            while len(self.early) > MAX_EARLY:
                self.early.popitem(last=False)
            self.log.info("DHCPv4: {kind} from {mac}, not attached (yet)",
                          kind=message.name, mac=macText(mac))
            return
        self._handle(mnId, message)

    def _mnIdOf(self, mac):
        for mnId, m in self.attachedMobiles.items():
            if m == mac:
                return mnId
        return None

    def _handle(self, mnId, message):
        kind = message.type
        if kind == dhcp4.RELEASE:
            # The LMA owns the address; the binding lasts until the mobile leaves.
            self.log.info("DHCPv4: {mnId} released its address", mnId=showMnId(mnId))
            return
        if kind == dhcp4.DECLINE:
            self.log.warn("DHCPv4: {mnId} declined {address} (in use on its link?)",
                          mnId=showMnId(mnId), address=message.address(dhcp4.REQUESTED_ADDRESS))
            return
        if kind not in (dhcp4.DISCOVER, dhcp4.REQUEST, dhcp4.INFORM):
            self.counters["ignored"] += 1
            return
        lease = self.leases.get(mnId)
        if lease is None:
            queue = self.waiting.setdefault(mnId, [])
            queue.append(message)
            del queue[:-QUEUED]
            self.log.info("DHCPv4: {kind} from {mnId}; waiting for its binding",
                          kind=message.name, mnId=showMnId(mnId))
            return
        if kind == dhcp4.DISCOVER:
            self._answer(message, dhcp4.OFFER, lease)
        elif kind == dhcp4.INFORM:
            self._answer(message, dhcp4.ACK, lease, inform=True)
        else:
            self._request(mnId, message, lease)

    def _request(self, mnId, message, lease):
        """RFC 2131 4.3.2: SELECTING, INIT-REBOOT, RENEWING / REBINDING."""
        server = message.address(dhcp4.SERVER_ID)
        if server is not None and server != lease.router:
            # The client chose another server's offer.
            self.counters["ignored"] += 1
            return
        wanted = message.address(dhcp4.REQUESTED_ADDRESS) or message.ciaddr
        if wanted == lease.address:
            self._answer(message, dhcp4.ACK, lease)
            return
        self.log.warn("DHCPv4: {mnId} asks for {wanted}, its address is {address}; NAK",
                      mnId=showMnId(mnId), wanted=wanted, address=lease.address)
        self._nak(message, lease)

    def _options(self, message, kind, lease, inform=False):
        options = [messageType(kind), addresses(dhcp4.SERVER_ID, lease.router)]
        if not inform:
            options += [seconds(dhcp4.LEASE_TIME, self.leaseTime),
                        seconds(dhcp4.RENEWAL_TIME, self.leaseTime // 2),
                        seconds(dhcp4.REBINDING_TIME, self.leaseTime * 7 // 8)]
        length = 32 if self.subnet == "host" else lease.prefixLength
        options += [subnetMask(length), addresses(dhcp4.ROUTER, lease.router)]
        asked = message.option(dhcp4.PARAMETER_LIST) or b""
        if dhcp4.INTERFACE_MTU in asked:
            options.append(Option(dhcp4.INTERFACE_MTU, self.link.config.mtu.to_bytes(2, "big")))
        if self.subnet == "home" and dhcp4.BROADCAST_ADDRESS in asked and length < 31:
            from ipaddress import IPv4Network
            network = IPv4Network((lease.address, length), strict=False)
            options.append(addresses(dhcp4.BROADCAST_ADDRESS, network.broadcast_address))
        return options

    def _answer(self, message, kind, lease, inform=False):
        answer = Message(dhcp4.BOOTREPLY, message.xid, message.chaddr,
                         ciaddr=message.ciaddr if inform else "0.0.0.0",
                         yiaddr="0.0.0.0" if inform else lease.address,
                         flags=message.flags, giaddr=message.giaddr,
                         options=self._options(message, kind, lease, inform))
        # RFC 2131 4.1: to ciaddr when the client has one, else to yiaddr,
        # or broadcast when it asks; always in a frame to its MAC.
        if message.ciaddr != IPv4Address(0):
            destination = message.ciaddr
        elif message.broadcast:
            destination = IPv4Address("255.255.255.255")
        else:
            destination = lease.address
        if self._send(answer, lease.router, destination):
            self.counters["offers" if kind == dhcp4.OFFER else "acks"] += 1
            self.log.info("DHCPv4: {kind} {address} to {mac}", kind=answer.name,
                          address=answer.yiaddr if not inform else answer.ciaddr,
                          mac=macText(message.chaddr))

    def _nak(self, message, lease):
        answer = Message(dhcp4.BOOTREPLY, message.xid, message.chaddr, flags=message.flags,
                         giaddr=message.giaddr,
                         options=[messageType(dhcp4.NAK),
                                  addresses(dhcp4.SERVER_ID, lease.router)])
        if self._send(answer, lease.router, IPv4Address("255.255.255.255")):
            self.counters["naks"] += 1

    def _send(self, answer, source, destination):
        if self.link.mac is None:
            return False
        frame = dhcp4.udpFrame(answer.chaddr, self.link.mac, source, destination,
                               dhcp4.encode(answer))
        return self.link.sendFrame(frame)

