"""
The MAG's access link: Router Advertisements for the LMD's prefix and the
sockets that see the mobiles' ND traffic, shared by the 'rs' and 'link'
attachment detectors and the address-assignment strategies.

Every MAG of a local mobility domain advertises the same prefix (draft
section 3), so a mobile that hands over keeps its address (section 4.2 step
1). The RA goes unicast to a soliciting mobile at once, and to all nodes
every ra_interval_min..ra_interval_max seconds; it carries the prefix in a
Prefix Information option with the L and A flags (SLAAC), the MAG's MAC,
and an MTU that leaves room for the 40-octet IPv6-in-IPv6 tunnel header.

Without a shared prefix (per-MN prefixes, draft E.3: the 'prefix'
strategy) the link sends no RA to all nodes: L{advertiseTo} sends each
mobile its own RA in a frame addressed to its MAC (RFC 6085: the IPv6
destination stays all-nodes, the link-layer one is the mobile's), so mobiles
sharing the physical link never see each other's prefixes.

The MAG answers Neighbor Solicitations for its own link-local address (the
default router) through the kernel: the address is configured on the access
interface, which needs accept_dad=0 so that it is usable before the first RS
arrives. Nothing here answers a mobile's DAD Neighbor Solicitation: the
mobile keeps its address across MAGs.

One router on every access link (C{router_mac}, C{router_address}): every
MAG of the domain gives its access interface the same MAC and link-local
address, and sends its RAs from that address. A mobile that hands over then
finds its default router, and its neighbour entry for it, unchanged at the
new MAG: it sends no Router Solicitation and its uplink goes on at once.
"""

import errno
import random
from collections import namedtuple
from ipaddress import IPv6Address

from twisted.logger import Logger

from netlmm.config import ConfigError
from netlmm.daemon import StartupError
from netlmm.wire.errors import DecodeError
from netlmm.wire.icmpv6 import (
    ALL_NODES, PIO_AUTONOMOUS, PIO_ONLINK, RA_MANAGED, RA_OTHER, RS, UNSPECIFIED, MtuOption,
    PrefixInformation, RouterAdvertisement, RouterSolicitation, SourceLinkLayer, decodeFrame,
    decodeMessage, encodeFrame, encodeMessage,
)

#: The tunnel's outer IPv6 header.
TUNNEL_OVERHEAD = 40


def checkPrefix(prefix, key):
    """Refuse (L{ConfigError} naming C{key}) a prefix SLAAC cannot use."""
    if prefix.prefixlen != 64:
        raise ConfigError(f"{key}: SLAAC on Ethernet needs a /64 "
                          f"(RFC 4862, RFC 4291), got {prefix}")
    if prefix.is_link_local or prefix.is_multicast:
        raise ConfigError(f"{key}: expected a global or unique-local prefix, got {prefix}")


class AccessConfig(namedtuple("AccessConfig",
                              "interface prefix routerLifetime validLifetime preferredLifetime "
                              "mtu minInterval maxInterval hopLimit advertise "
                              "managed other autonomous neighborRetrans linkLocal "
                              "routerMac routerAddress",
                              defaults=(False, False, True, 200, None, None, None))):
    """
    The [mag.access] table, validated (see L{fromTable}). C{prefix} is the
    LMD's shared prefix, or None with per-MN prefixes. C{managed} and
    C{other} are the RA's M and O flags (DHCPv6, RFC 4861 4.2); C{autonomous}
    the prefix's A flag: false for the DHCPv6 strategies, so that the mobile
    takes its address from DHCPv6 and does not configure one by SLAAC.
    C{linkLocal} is the source of the RAs sent to one mobile (None: the
    interface's own link-local address). C{routerMac} (6 octets) and
    C{routerAddress} (a link-local IPv6Address), when set, are the domain's
    one router identity (and C{routerAddress} the default C{linkLocal}).
    """

    __slots__ = ()

    @classmethod
    def fromTable(cls, t):
        """Validate [mag.access]; errors name the key."""
        where = t.where
        interface = t.string("interface", required=True)
        if not 1 <= len(interface) <= 15 or "/" in interface or " " in interface:
            raise ConfigError(f"{where}.interface: expected an interface name "
                              f"(1..15 characters), got {interface!r}")
        prefix = t.network("prefix", None)
        if prefix is not None:
            checkPrefix(prefix, f"{where}.prefix")
        maxInterval = t.number("ra_interval_max", 600, minimum=0.07, maximum=1800)
        minInterval = t.number("ra_interval_min", round(0.33 * maxInterval, 3),
                               minimum=0.03, maximum=1800)
        if minInterval > 0.75 * maxInterval:
            raise ConfigError(f"{where}.ra_interval_min: expected at most 0.75 x "
                              f"ra_interval_max = {0.75 * maxInterval:g}, got {minInterval!r}")
        routerLifetime = t.number("router_lifetime", min(9000, max(1, round(3 * maxInterval))),
                                  minimum=0, maximum=9000, integer=True)
        if routerLifetime and routerLifetime < maxInterval:
            raise ConfigError(f"{where}.router_lifetime: expected 0 or at least "
                              f"ra_interval_max ({maxInterval:g}), got {routerLifetime}")
        valid = t.number("valid_lifetime", 86400, minimum=0, maximum=0xFFFFFFFF, integer=True)
        preferred = t.number("preferred_lifetime", min(valid, 14400), minimum=0,
                             maximum=0xFFFFFFFF, integer=True)
        if preferred > valid:
            raise ConfigError(f"{where}.preferred_lifetime: expected at most "
                              f"valid_lifetime ({valid}), got {preferred}")
        mtu = t.number("mtu", 1500 - TUNNEL_OVERHEAD, minimum=1280, maximum=65535, integer=True)
        hopLimit = t.number("hop_limit", 64, minimum=0, maximum=255, integer=True)
        advertise = t.boolean("advertise", True)
        managed = t.boolean("managed", False)
        other = t.boolean("other", False)
        autonomous = t.boolean("autonomous", not managed)
        if not (managed or other or autonomous):
            raise ConfigError(f"{where}.autonomous: with managed and other false the "
                              "mobiles get no address; set one of them")
        # How soon the MAG asks again for a mobile's link-layer address. A
        # mobile that just arrived ignores Neighbor Solicitations while its
        # address is tentative (its DAD, 1 s); with the kernel's 1 s between
        # probes, downlink traffic can wait up to a further second after it.
        retrans = t.number("neighbor_retrans_ms", 200, minimum=0, maximum=10000,
                           integer=True)
        linkLocal = t.address("link_local", None)
        if linkLocal is not None and not linkLocal.is_link_local:
            raise ConfigError(f"{where}.link_local: expected a link-local address "
                              f"(fe80::/10) configured on {interface}, got {linkLocal}")
        routerMac, routerAddress = routerIdentity(t)
        if routerAddress is not None:
            if linkLocal is not None and linkLocal != routerAddress:
                raise ConfigError(f"{where}.link_local: the router identity's address is "
                                  f"{routerAddress} (router_address); leave link_local out")
            linkLocal = routerAddress
        t.finish()
        return cls(interface, prefix, routerLifetime, valid, preferred, mtu, minInterval,
                   maxInterval, hopLimit, advertise, managed, other, autonomous, retrans,
                   linkLocal, routerMac, routerAddress)

    def advertisement(self, mac, routerLifetime=None, prefixes=None, preferred=None,
                      deprecated=()):
        """
        The RA this MAG sends, with its C{mac} as the source link-layer
        address, for C{prefixes} (default: the shared prefix, if any);
        C{preferred} overrides the preferred lifetime (0 deprecates).
        C{deprecated}: (prefix, valid lifetime) pairs advertised with
        preferred lifetime 0 (old prefixes after an anchor move, draft 4.4).
        """
        if prefixes is None:
            prefixes = [] if self.prefix is None else [self.prefix]
        flags = PIO_ONLINK | (PIO_AUTONOMOUS if self.autonomous else 0)
        options = [PrefixInformation(p, flags, self.validLifetime,
                                     self.preferredLifetime if preferred is None else preferred)
                   for p in prefixes]
        options += [PrefixInformation(p, flags, int(valid), 0) for p, valid in deprecated]
        options.append(MtuOption(self.mtu))
        if mac is not None:
            options.insert(0, SourceLinkLayer(mac))
        return RouterAdvertisement(
            hopLimit=self.hopLimit,
            flags=(RA_MANAGED if self.managed else 0) | (RA_OTHER if self.other else 0),
            routerLifetime=self.routerLifetime if routerLifetime is None else routerLifetime,
            options=options)


def routerIdentity(t):
    """
    C{router_mac} and C{router_address} of [mag.access], validated: the MAC
    (6 octets, unicast) and the link-local address (default: the modified
    EUI-64 one of that MAC) every MAG of the domain uses on its access link;
    (None, None) when not configured.
    """
    from netlmm.wire.errors import EncodeError
    from netlmm.wire.icmpv6 import macBytes
    text = t.string("router_mac")
    address = t.address("router_address")
    if text is None:
        if address is not None:
            raise ConfigError(f"{t.where}.router_address: needs router_mac too (the "
                              "domain's router identity is a MAC and a link-local address)")
        return None, None
    try:
        mac = macBytes(text)
    except (EncodeError, ValueError):
        raise ConfigError(f"{t.where}.router_mac: expected a MAC such as "
                          f"'02:00:5e:10:00:01', got {text!r}") from None
    if mac[0] & 1 or mac == bytes(6):
        raise ConfigError(f"{t.where}.router_mac: expected a unicast MAC, got {text!r}")
    if address is None:
        iid = bytes([mac[0] ^ 0x02]) + mac[1:3] + b"\xff\xfe" + mac[3:]
        address = IPv6Address(b"\xfe\x80" + bytes(6) + iid)
    elif not address.is_link_local:
        raise ConfigError(f"{t.where}.router_address: expected a link-local address "
                          f"(fe80::/10), got {address}")
    return mac, address


def snoopingOnly(reactor, interface, system=None):
    """An L{AccessLink} that listens on C{interface} but sends no RA (another router does)."""
    return AccessLink(reactor, AccessConfig(interface, None, 0, 0, 0, 1280, 1, 1, 64, False),
                      system)


def fromConfig(magTable, reactor, system=None):
    """The L{AccessLink} that C{[mag.access]} describes, or None without that table."""
    present = "access" in magTable.data
    t = magTable.table("access")
    if not present:
        return None
    return AccessLink(reactor, AccessConfig.fromTable(t), system)


class AccessLink:
    """
    The access link's shared sockets and the Router Advertisement sender.
    Users (detectors, strategies) call L{start} and L{stop} in pairs; the
    sockets open with the first start and close with the last stop.
    Listeners: C{onSolicitation(mac, source)} for each valid RS (C{mac} its
    Source Link-Layer Address, 6 octets, or None), C{onFrame(frame)} for each
    ICMPv6 frame a mobile sends (a L{netlmm.wire.icmpv6.Frame}).
    """

    log = Logger()

    def __init__(self, reactor, config, system=None, rng=None):
        from netlmm.access.system import System
        self.reactor = reactor
        self.config = config
        self.system = system or System()
        self.random = rng or random.Random()
        self.solicitationListeners = []
        self.frameListeners = []
        self.mac = None
        self.ifindex = None
        self._users = 0
        self._icmp = None
        self._packet = None
        self._timer = None
        self._linkLocal = config.linkLocal
        self.sent = 0
        self.dropped = 0

    @property
    def shared(self):
        """Whether this link advertises one prefix to all nodes (not per-MN prefixes)."""
        return self.config.advertise and self.config.prefix is not None

    # ------------------------------------------------------------ lifecycle

    def start(self):
        """Open the sockets (first user) and begin advertising."""
        from netlmm.access.system import SocketReader
        self._users += 1
        if self._users > 1:
            return
        iface = self.config.interface
        try:
            self.ifindex = self.system.ifindex(iface)
            if self.config.routerMac is not None:
                self.system.setRouterIdentity(iface, self.config.routerMac,
                                              self.config.routerAddress)
            self.mac = self.system.linkAddress(iface)
            icmp = self.system.icmpSocket(iface, (RS,))
            packet = self.system.packetSocket(iface)
        except OSError as e:
            self._users -= 1
            raise StartupError(f"access interface {iface!r}: {e.strerror or e}") from None
        self._icmp = SocketReader(self.reactor, icmp, self._icmpReceived,
                                  f"icmpv6({iface})", ancillary=True)
        self._packet = SocketReader(self.reactor, packet, self._frameReceived,
                                    f"packet({iface})")
        self._icmp.startReading()
        self._packet.startReading()
        retrans = self.config.neighborRetrans
        if retrans and hasattr(self.system, "setNeighborRetrans"):
            try:
                self.system.setNeighborRetrans(iface, retrans)
            except OSError as e:
                self.log.warn("access link {interface}: cannot set neighbor_retrans_ms: "
                              "{error}", interface=iface, error=e)
        if self.shared:
            self.log.info("access link {interface}: advertising {prefix} (MTU {mtu}, "
                          "every {low:g}..{high:g} s)", interface=iface,
                          prefix=self.config.prefix, mtu=self.config.mtu,
                          low=self.config.minInterval, high=self.config.maxInterval)
            self._schedule(0.0)
        elif self.config.advertise:
            self.log.info("access link {interface}: no shared prefix; each mobile gets "
                          "its own RA (MTU {mtu})", interface=iface, mtu=self.config.mtu)

    def stop(self):
        """Close the sockets with the last user; a final RA says the router is gone."""
        if self._users == 0:
            return
        self._users -= 1
        if self._users:
            return
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self.shared:
            # RFC 4861 6.2.5: a router that stops advertising says so.
            self.advertise(ALL_NODES, routerLifetime=0)
        for reader in (self._icmp, self._packet):
            if reader is not None:
                reader.stop()
        self._icmp = self._packet = None

    # ------------------------------------------------------------ advertising

    def _schedule(self, delay=None):
        if delay is None:
            delay = self.random.uniform(self.config.minInterval, self.config.maxInterval)
        self._timer = self.reactor.callLater(delay, self._periodic)

    def _periodic(self):
        self.advertise(ALL_NODES)
        self._schedule()

    #: Seconds after a new port comes up at which it gets an RA: at once, and
    #: twice more in case the mobile's IPv6 was not ready for the first
    #: (RFC 6275 7.5 lets mobility routers advertise this often).
    NEW_PORT_ADVERTISEMENTS = (0.0, 0.2, 0.5)

    def newPort(self):
        """
        A mobile's link just came up on the bridge: advertise at once, so it
        forms its address while its link-local address is still in DAD
        instead of waiting for that DAD and its own Router Solicitation.
        """
        if not self.shared:
            return
        for delay in self.NEW_PORT_ADVERTISEMENTS:
            if delay:
                self.reactor.callLater(delay, self._advertiseIfRunning)
            else:
                self.advertise(ALL_NODES)

    def _advertiseIfRunning(self):
        if self._users:
            self.advertise(ALL_NODES)

    def linkLocal(self):
        """
        The MAG's link-local address on the access interface: C{link_local}
        when configured, else the interface's own (asked once it has one),
        or None while it has none.
        """
        if self._linkLocal is None:
            try:
                self._linkLocal = self.system.linkLocalAddress(self.config.interface,
                                                               self.ifindex)
            except OSError as e:
                self.log.debug("access link {interface}: no link-local address yet: "
                               "{error}", interface=self.config.interface, error=e)
        return self._linkLocal

    def sendFrame(self, frame):
        """Send a whole Ethernet frame on the access link; False when it could not go."""
        if self._packet is None or self._packet.socket is None:
            return False
        try:
            self._packet.socket.sendto(frame, (self.config.interface, 0))
        except OSError as e:
            self.dropped += 1
            self.log.warn("access link {interface}: frame not sent: {error}",
                          interface=self.config.interface, error=e)
            return False
        self.sent += 1
        return True

    def advertiseTo(self, mac, prefixes, routerLifetime=None, preferred=None, deprecated=()):
        """
        Send the mobile with C{mac} (6 octets) an RA of its own for
        C{prefixes}, in a frame addressed to its MAC alone (RFC 6085); the
        IPv6 destination is all-nodes, so it needs no address of the mobile.
        False when it could not go (no link-local address yet, no socket).
        """
        source = self.linkLocal()
        if source is None or self.mac is None:
            self.dropped += 1
            return False
        ra = self.config.advertisement(self.mac, routerLifetime, prefixes, preferred,
                                       deprecated)
        return self.sendFrame(encodeFrame(mac, self.mac, source, ALL_NODES, ra))

    def advertise(self, destination, routerLifetime=None):
        """Send the RA to C{destination} (link scope); False when it could not go."""
        if self._icmp is None or self._icmp.socket is None:
            return False
        ra = self.config.advertisement(self.mac, routerLifetime)
        data = encodeMessage(ra)
        try:
            self._send(data, destination)
        except OSError as e:
            # No carrier yet (a bridge without ports) or the link-local still
            # tentative: the mobile's RS, when it comes, gets its answer.
            self.dropped += 1
            level = self.log.debug if e.errno in (errno.EADDRNOTAVAIL, errno.ENETDOWN,
                                                  errno.ENETUNREACH) else self.log.warn
            level("access link {interface}: RA to {to} not sent: {error}",
                  interface=self.config.interface, to=destination, error=e)
            return False
        self.sent += 1
        return True

    def defend(self, target):
        """
        Send a Neighbor Advertisement for C{target} to all nodes (Override
        flag, the MAG's MAC as Target Link-Layer Address), so that a mobile
        whose DAD has C{target} tentative marks it duplicate (RFC 4862 5.4.4)
        and configures another: the MAG's answer to an address conflict the
        PMIP clients found (Appendix B). False when it could not go.
        """
        from netlmm.wire.icmpv6 import NA_OVERRIDE, NeighborAdvertisement, TargetLinkLayer
        if self._icmp is None or self._icmp.socket is None:
            return False
        options = [TargetLinkLayer(self.mac)] if self.mac is not None else []
        data = encodeMessage(NeighborAdvertisement(NA_OVERRIDE, target, options))
        try:
            self._send(data, ALL_NODES)
        except OSError as e:
            self.log.warn("access link {interface}: NA defending {target} not sent: "
                          "{error}", interface=self.config.interface, target=target, error=e)
            return False
        self.log.info("access link {interface}: defended {target} (NA to all nodes)",
                      interface=self.config.interface, target=target)
        return True

    def _send(self, data, destination):
        """
        Send an ND message on the access link: from the domain's router
        address when one is configured (whatever other link-local address
        the interface has), else from the one the kernel picks.
        """
        target = (str(destination), 0, 0, self.ifindex)
        source = self.config.routerAddress
        if source is None:
            self._icmp.socket.sendto(data, target)
            return
        from netlmm.access.system import IPV6_PKTINFO
        import socket
        import struct
        info = source.packed + struct.pack("@I", self.ifindex)
        self._icmp.socket.sendmsg([data], [(socket.IPPROTO_IPV6, IPV6_PKTINFO, info)], 0,
                                  target)

    def solicit(self, target):
        """
        Send a Neighbor Solicitation for C{target} (a mobile's address) to its
        solicited-node group: its answer says it can take packets (handover,
        L{netlmm.service.handover}). False when it could not go.
        """
        from netlmm.wire.icmpv6 import NeighborSolicitation, solicitedNode
        if self._icmp is None or self._icmp.socket is None:
            return False
        options = [SourceLinkLayer(self.mac)] if self.mac is not None else []
        try:
            self._send(encodeMessage(NeighborSolicitation(target, options)),
                       solicitedNode(target))
        except OSError as e:
            self.log.debug("access link {interface}: NS for {target} not sent: {error}",
                           interface=self.config.interface, target=target, error=e)
            return False
        return True

    # ------------------------------------------------------------ receiving

    def _icmpReceived(self, data, ancillary, address):
        from netlmm.access.system import ancillaryInfo
        source = IPv6Address(address[0].split("%")[0])
        _dst, _index, hopLimit = ancillaryInfo(ancillary)
        if hopLimit is not None and hopLimit != 255:
            self.log.debug("RS from {source} with hop limit {hops}; dropped (RFC 4861 6.1.1)",
                           source=source, hops=hopLimit)
            return
        try:
            rs = decodeMessage(data)
        except DecodeError as e:
            self.log.debug("bad ICMPv6 from {source}: {error}", source=source, error=e)
            return
        if not isinstance(rs, RouterSolicitation):
            return
        mac = rs.sourceLinkLayer
        if source == UNSPECIFIED and mac is not None:
            # RFC 4861 6.1.1: an unspecified source must carry no SLLA.
            return
        self.solicited(mac, source)

    def solicited(self, mac, source):
        """A valid RS from C{source} (C{mac} its link-layer address or None)."""
        for listener in list(self.solicitationListeners):
            listener(mac, source)
        if self.shared:
            # A unicast answer may go at once (RFC 4861 6.2.6 leaves the delay
            # to multicast answers); the mobile configures without waiting.
            self.advertise(ALL_NODES if source == UNSPECIFIED else source)

    def _frameReceived(self, data, ancillary, address):
        from netlmm.access.system import PACKET_OUTGOING
        if len(address) > 2 and address[2] == PACKET_OUTGOING:
            return
        try:
            frame = decodeFrame(data)
        except DecodeError as e:
            self.log.debug("bad frame on {interface}: {error}",
                           interface=self.config.interface, error=e)
            return
        if frame.sourceMac == self.mac:
            return
        for listener in list(self.frameListeners):
            listener(frame)
