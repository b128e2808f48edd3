"""
The Neighbor Discovery messages a MAG's access link needs (RFC 4861):
Router Solicitation and Advertisement, Neighbor Solicitation and
Advertisement, with the Source / Target Link-Layer Address, Prefix
Information and MTU options; plus the Ethernet + IPv6 framing an AF_PACKET
socket hands over (L{decodeFrame}).

Messages and options are immutable values that check their ranges when built.
L{encodeMessage} produces the ICMPv6 message (type onwards) with the checksum
field zero unless source and destination are given (a raw ICMPv6 socket
fills it in itself); L{decodeMessage} reads a message and its options inside
their declared lengths and raises only L{DecodeError}. Unknown options decode
to L{UnknownOption}, which re-encodes byte for byte.

Link-layer addresses are 6-octet L{bytes} on the wire; L{macText} /
L{macBytes} convert to the text form "aa:bb:cc:dd:ee:ff". This module imports
nothing from Twisted.
"""

import struct
from collections import namedtuple
from ipaddress import IPv6Address, IPv6Network

from netlmm.wire.errors import DecodeError, EncodeError

IPPROTO_ICMPV6 = 58
ETH_P_IPV6 = 0x86DD

RS = 133
RA = 134
NS = 135
NA = 136

OPT_SOURCE_LL = 1
OPT_TARGET_LL = 2
OPT_PREFIX = 3
OPT_MTU = 5

# Flags.
RA_MANAGED = 0x80
RA_OTHER = 0x40
PIO_ONLINK = 0x80
PIO_AUTONOMOUS = 0x40
NA_ROUTER = 0x80
NA_SOLICITED = 0x40
NA_OVERRIDE = 0x20

#: Lifetime value meaning "forever" (RFC 4861 4.6.2).
INFINITY = 0xFFFFFFFF

UNSPECIFIED = IPv6Address("::")
ALL_NODES = IPv6Address("ff02::1")
ALL_ROUTERS = IPv6Address("ff02::2")


def macText(mac):
    """6 octets -> 'aa:bb:cc:dd:ee:ff' (lower case)."""
    if not isinstance(mac, (bytes, bytearray)) or len(mac) != 6:
        raise EncodeError(f"a MAC address is 6 octets, not {mac!r}")
    return ":".join(f"{b:02x}" for b in mac)


def macBytes(text):
    """'aa:bb:cc:dd:ee:ff' (either case) -> 6 octets."""
    parts = text.split(":") if isinstance(text, str) else []
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise EncodeError(f"expected a MAC address such as 'aa:bb:cc:dd:ee:ff', got {text!r}")
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise EncodeError(f"expected a MAC address such as 'aa:bb:cc:dd:ee:ff', "
                          f"got {text!r}") from None


def solicitedNode(address):
    """The solicited-node multicast address of C{address} (RFC 4291 2.7.1)."""
    low = int(IPv6Address(address)) & 0xFFFFFF
    return IPv6Address(int(IPv6Address("ff02::1:ff00:0")) | low)


def checksum(source, destination, message):
    """The ICMPv6 checksum of C{message} (checksum field zero) from C{source} to C{destination}."""
    data = (IPv6Address(source).packed + IPv6Address(destination).packed
            + struct.pack("!IxxxB", len(message), IPPROTO_ICMPV6) + bytes(message))
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _u(value, bits, what):
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
        raise EncodeError(f"{what} must be an integer 0..{(1 << bits) - 1}, not {value!r}")
    return value


# ---------------------------------------------------------------- options


class LinkLayerOption(namedtuple("LinkLayerOption", "type address")):
    """Source (type 1) or Target (type 2) Link-Layer Address; C{address} is 6 octets."""

    __slots__ = ()

    def __new__(cls, type, address):
        if type not in (OPT_SOURCE_LL, OPT_TARGET_LL):
            raise EncodeError(f"link-layer option type must be 1 or 2, not {type!r}")
        if not isinstance(address, (bytes, bytearray)) or len(address) != 6:
            raise EncodeError(f"link-layer address must be 6 octets, not {address!r}")
        return super().__new__(cls, type, bytes(address))

    def body(self):
        return self.address

    @classmethod
    def fromBody(cls, type, body):
        # 6 octets of Ethernet address, padded to the 8-octet unit.
        if len(body) != 6:
            raise DecodeError(f"option {type}: {len(body)} octets of link-layer address; "
                              "only 6-octet (Ethernet) addresses are understood")
        return cls(type, body)


def SourceLinkLayer(address):
    """A Source Link-Layer Address option (6-octet C{address})."""
    return LinkLayerOption(OPT_SOURCE_LL, address)


def TargetLinkLayer(address):
    """A Target Link-Layer Address option (6-octet C{address})."""
    return LinkLayerOption(OPT_TARGET_LL, address)


class PrefixInformation(namedtuple("PrefixInformation",
                                   "prefix flags validLifetime preferredLifetime")):
    """Prefix Information (RFC 4861 4.6.2); C{prefix} an IPv6Network."""

    __slots__ = ()
    type = OPT_PREFIX

    def __new__(cls, prefix, flags=PIO_ONLINK | PIO_AUTONOMOUS, validLifetime=86400,
                preferredLifetime=14400):
        prefix = IPv6Network(prefix)
        _u(flags, 8, "prefix flags")
        _u(validLifetime, 32, "valid lifetime")
        _u(preferredLifetime, 32, "preferred lifetime")
        if preferredLifetime > validLifetime:
            raise EncodeError(f"preferred lifetime {preferredLifetime} exceeds the "
                              f"valid lifetime {validLifetime}")
        return super().__new__(cls, prefix, flags, validLifetime, preferredLifetime)

    def body(self):
        return struct.pack("!BBIII", self.prefix.prefixlen, self.flags, self.validLifetime,
                           self.preferredLifetime, 0) + self.prefix.network_address.packed

    @classmethod
    def fromBody(cls, type, body):
        if len(body) != 30:
            raise DecodeError(f"prefix information: body of {len(body)} octets, expected 30")
        length, flags, valid, preferred, _ = struct.unpack_from("!BBIII", body)
        if length > 128:
            raise DecodeError(f"prefix information: prefix length {length} > 128")
        address = int.from_bytes(body[14:30], "big")
        # Bits past the prefix length are ignored by receivers (RFC 4861 4.6.2).
        mask = ((1 << length) - 1) << (128 - length) if length else 0
        try:
            return cls(IPv6Network((address & mask, length)), flags, valid, preferred)
        except EncodeError as e:
            raise DecodeError(f"prefix information: {e}") from None


class MtuOption(namedtuple("MtuOption", "mtu")):
    """The MTU option (RFC 4861 4.6.4)."""

    __slots__ = ()
    type = OPT_MTU

    def __new__(cls, mtu):
        return super().__new__(cls, _u(mtu, 32, "MTU"))

    def body(self):
        return struct.pack("!xxI", self.mtu)

    @classmethod
    def fromBody(cls, type, body):
        if len(body) != 6:
            raise DecodeError(f"MTU option: body of {len(body)} octets, expected 6")
        return cls(struct.unpack("!xxI", body)[0])


class UnknownOption(namedtuple("UnknownOption", "type data")):
    """An option of a type this codec does not know; re-encodes byte for byte."""

    __slots__ = ()

    def __new__(cls, type, data):
        _u(type, 8, "option type")
        data = bytes(data)
        if (len(data) + 2) % 8:
            raise EncodeError(f"option {type}: {len(data)} octets of data; "
                              "2 + data must be a multiple of 8")
        return super().__new__(cls, type, data)

    def body(self):
        return self.data

    @classmethod
    def fromBody(cls, type, body):
        return cls(type, body)


_OPTIONS = {OPT_SOURCE_LL: LinkLayerOption, OPT_TARGET_LL: LinkLayerOption,
            OPT_PREFIX: PrefixInformation, OPT_MTU: MtuOption}


def encodeOptions(options):
    """The options laid out as on the wire (each already a multiple of 8 octets)."""
    out = []
    for option in options:
        body = option.body()
        whole = 2 + len(body)
        padded = (whole + 7) // 8 * 8
        if padded // 8 > 255:
            raise EncodeError(f"option {option.type}: too long ({padded} octets)")
        out.append(struct.pack("!BB", option.type, padded // 8) + body
                   + bytes(padded - whole))
    return b"".join(out)


def decodeOptions(data):
    """A tuple of options from C{data}, which must hold whole options only."""
    options = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < 2:
            raise DecodeError(f"option at offset {offset}: truncated header")
        kind, units = data[offset], data[offset + 1]
        if units == 0:
            raise DecodeError(f"option {kind} at offset {offset}: length zero")
        end = offset + units * 8
        if end > len(data):
            raise DecodeError(f"option {kind} at offset {offset}: {units * 8} octets "
                              f"declared, {len(data) - offset} present")
        body = data[offset + 2:end]
        cls = _OPTIONS.get(kind, UnknownOption)
        if cls is LinkLayerOption:
            # Ethernet: 6 octets of address, then padding to the 8-octet unit.
            if units != 1:
                raise DecodeError(f"option {kind}: {units * 8} octets; an Ethernet "
                                  "link-layer address option is 8")
            body = body[:6]
        options.append(cls.fromBody(kind, bytes(body)))
        offset = end
    return tuple(options)


def _option(options, cls, type=None):
    for o in options:
        if isinstance(o, cls) and (type is None or o.type == type):
            return o
    return None


# ---------------------------------------------------------------- messages


class _Message:
    __slots__ = ()

    def option(self, cls, type=None):
        """The first option of class C{cls} (and C{type}), or None."""
        return _option(self.options, cls, type)

    @property
    def sourceLinkLayer(self):
        """The Source Link-Layer Address (6 octets) or None."""
        o = self.option(LinkLayerOption, OPT_SOURCE_LL)
        return None if o is None else o.address


def _checkOptions(options):
    options = tuple(options)
    for o in options:
        if not isinstance(o, (LinkLayerOption, PrefixInformation, MtuOption, UnknownOption)):
            raise EncodeError(f"not an ND option: {o!r}")
    return options


class RouterSolicitation(_Message, namedtuple("RouterSolicitation", "options")):
    """Router Solicitation (RFC 4861 4.1)."""

    __slots__ = ()
    type = RS

    def __new__(cls, options=()):
        return super().__new__(cls, _checkOptions(options))

    def fields(self):
        return bytes(4)

    @classmethod
    def fromFields(cls, fields, options):
        return cls(options)


class RouterAdvertisement(_Message, namedtuple(
        "RouterAdvertisement",
        "hopLimit flags routerLifetime reachableTime retransTimer options")):
    """Router Advertisement (RFC 4861 4.2)."""

    __slots__ = ()
    type = RA

    def __new__(cls, hopLimit=64, flags=0, routerLifetime=1800, reachableTime=0,
                retransTimer=0, options=()):
        _u(hopLimit, 8, "cur hop limit")
        _u(flags, 8, "RA flags")
        _u(routerLifetime, 16, "router lifetime")
        _u(reachableTime, 32, "reachable time")
        _u(retransTimer, 32, "retrans timer")
        return super().__new__(cls, hopLimit, flags, routerLifetime, reachableTime,
                               retransTimer, _checkOptions(options))

    def fields(self):
        return struct.pack("!BBHII", self.hopLimit, self.flags, self.routerLifetime,
                           self.reachableTime, self.retransTimer)

    @classmethod
    def fromFields(cls, fields, options):
        if len(fields) < 12:
            raise DecodeError(f"router advertisement: {4 + len(fields)} octets, at least 16 needed")
        return cls(*struct.unpack_from("!BBHII", fields), options=options)

    @property
    def prefixes(self):
        """The Prefix Information options."""
        return tuple(o for o in self.options if isinstance(o, PrefixInformation))

    @property
    def mtu(self):
        """The advertised MTU or None."""
        o = self.option(MtuOption)
        return None if o is None else o.mtu


class NeighborSolicitation(_Message, namedtuple("NeighborSolicitation", "target options")):
    """Neighbor Solicitation (RFC 4861 4.3)."""

    __slots__ = ()
    type = NS

    def __new__(cls, target, options=()):
        return super().__new__(cls, IPv6Address(target), _checkOptions(options))

    def fields(self):
        return bytes(4) + self.target.packed

    @classmethod
    def fromFields(cls, fields, options):
        if len(fields) < 20:
            raise DecodeError(f"neighbor solicitation: {4 + len(fields)} octets, at least 24 needed")
        return cls(IPv6Address(fields[4:20]), options)


class NeighborAdvertisement(_Message, namedtuple("NeighborAdvertisement",
                                                 "flags target options")):
    """Neighbor Advertisement (RFC 4861 4.4); C{flags} the R/S/O octet."""

    __slots__ = ()
    type = NA

    def __new__(cls, flags, target, options=()):
        if _u(flags, 8, "NA flags") & 0x1F:
            raise EncodeError(f"NA flags {flags:#04x}: only R, S and O (0xe0) exist")
        return super().__new__(cls, flags, IPv6Address(target), _checkOptions(options))

    def fields(self):
        return struct.pack("!Bxxx", self.flags) + self.target.packed

    @classmethod
    def fromFields(cls, fields, options):
        if len(fields) < 20:
            raise DecodeError(f"neighbor advertisement: {4 + len(fields)} octets, at least 24 needed")
        return cls(fields[0] & 0xE0, IPv6Address(fields[4:20]), options)


_MESSAGES = {RS: (RouterSolicitation, 4), RA: (RouterAdvertisement, 12),
             NS: (NeighborSolicitation, 20), NA: (NeighborAdvertisement, 20)}


def encodeMessage(message, source=None, destination=None):
    """
    The ICMPv6 message (from the type octet on). The checksum is filled in
    when C{source} and C{destination} are given, else left zero.
    """
    data = bytearray(struct.pack("!BBH", message.type, 0, 0) + message.fields()
                     + encodeOptions(message.options))
    if source is not None and destination is not None:
        struct.pack_into("!H", data, 2, checksum(source, destination, data))
    return bytes(data)


def decodeMessage(data, source=None, destination=None):
    """
    One of the four ND messages from C{data} (ICMPv6, type onwards). With
    C{source} and C{destination}, the checksum is verified too. Raises
    L{DecodeError} for anything else, including other ICMPv6 types.
    """
    data = bytes(data)
    if len(data) < 4:
        raise DecodeError(f"ICMPv6: {len(data)} octets, at least 4 needed")
    kind, code = data[0], data[1]
    entry = _MESSAGES.get(kind)
    if entry is None:
        raise DecodeError(f"ICMPv6 type {kind} is not a Neighbor Discovery message here")
    if code != 0:
        raise DecodeError(f"ICMPv6 type {kind}: code {code}, must be 0")
    cls, fixed = entry
    if len(data) < 4 + fixed:
        raise DecodeError(f"ICMPv6 type {kind}: {len(data)} octets, at least "
                          f"{4 + fixed} needed")
    if source is not None and destination is not None:
        copy = bytearray(data)
        copy[2:4] = b"\x00\x00"
        expected = checksum(source, destination, copy)
        got = struct.unpack_from("!H", data, 2)[0]
        if got != expected:
            raise DecodeError(f"ICMPv6 type {kind}: checksum {got:#06x}, expected {expected:#06x}")
    options = decodeOptions(data[4 + fixed:])
    try:
        return cls.fromFields(data[4:4 + fixed], options)
    except EncodeError as e:
        raise DecodeError(f"ICMPv6 type {kind}: {e}") from None


# ---------------------------------------------------------------- frames


class Frame(namedtuple("Frame", "destinationMac sourceMac source destination hopLimit "
                                "nextHeader payload")):
    """
    An IPv6 packet in an Ethernet frame, as an AF_PACKET socket reads it:
    MACs are 6 octets, addresses IPv6Address, C{payload} what follows the
    fixed IPv6 header (bounded by its Payload Length).
    """

    __slots__ = ()

    def icmp(self):
        """The ND message this frame carries (checksum verified) or None if it carries none."""
        if self.nextHeader != IPPROTO_ICMPV6:
            return None
        if self.payload[:1] and self.payload[0] not in _MESSAGES:
            return None
        return decodeMessage(self.payload, self.source, self.destination)


def decodeFrame(data):
    """
    An Ethernet II frame holding IPv6 -> L{Frame}; raises L{DecodeError} for
    other ethertypes, truncation, or a version other than 6. Extension
    headers are not walked: C{nextHeader} is the fixed header's.
    """
    data = bytes(data)
    if len(data) < 14:
        raise DecodeError(f"Ethernet: {len(data)} octets, at least 14 needed")
    ethertype = struct.unpack_from("!H", data, 12)[0]
    if ethertype != ETH_P_IPV6:
        raise DecodeError(f"Ethernet type {ethertype:#06x} is not IPv6")
    ip = data[14:]
    if len(ip) < 40:
        raise DecodeError(f"IPv6: {len(ip)} octets, at least 40 needed")
    if ip[0] >> 4 != 6:
        raise DecodeError(f"IPv6: version {ip[0] >> 4}")
    length, nextHeader, hopLimit = struct.unpack_from("!HBB", ip, 4)
    if 40 + length > len(ip):
        raise DecodeError(f"IPv6: payload length {length}, {len(ip) - 40} octets present")
    return Frame(data[0:6], data[6:12], IPv6Address(ip[8:24]), IPv6Address(ip[24:40]),
                 hopLimit, nextHeader, ip[40:40 + length])


def encodeFrame(destinationMac, sourceMac, source, destination, message, hopLimit=255):
    """An Ethernet frame carrying the ND C{message} (checksum filled in)."""
    icmp = encodeMessage(message, source, destination)
    header = struct.pack("!IHBB", 6 << 28, len(icmp), IPPROTO_ICMPV6, hopLimit)
    return (bytes(destinationMac) + bytes(sourceMac) + struct.pack("!H", ETH_P_IPV6)
            + header + IPv6Address(source).packed + IPv6Address(destination).packed + icmp)
