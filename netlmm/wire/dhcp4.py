"""
The part of DHCPv4 (RFC 2131, options RFC 2132) a MAG needs to serve its
IPv4 mobiles their home address (RFC 5844 section 3.4, draft E.2).

A L{Message} is the BOOTP fixed part (op, xid, the four addresses, chaddr,
...) and its options, a tuple of L{Option} (code, data) in wire order. The
options the MAG reads or writes are checked for their length both ways
(L{SHAPES}); any other option is kept as it came. An option that appears
more than once is one option whose data are the parts joined (RFC 3396), and
an option longer than 255 octets is split on encoding. The options in the
'file' and 'sname' fields (Option Overload, 52) are read after the main
ones.

L{decode} raises only L{DecodeError}; values check their ranges when built
(L{EncodeError}). Nothing here imports Twisted.
"""

import struct
from collections import namedtuple
from ipaddress import IPv4Address

from netlmm.wire.errors import DecodeError, EncodeError

SERVER_PORT = 67
CLIENT_PORT = 68

BOOTREQUEST = 1
BOOTREPLY = 2
#: The 'flags' bit by which a client asks for broadcast answers (RFC 2131 2).
BROADCAST = 0x8000
HW_ETHERNET = 1
#: op .. file: the BOOTP fixed part (RFC 2131 2).
FIXED = 236
MAGIC_COOKIE = bytes((99, 130, 83, 99))
#: A BOOTP message is at least this long (RFC 1542 2.1); answers are padded.
MIN_LENGTH = 300

# DHCP Message Type values (RFC 2132 9.6).
DISCOVER = 1
OFFER = 2
REQUEST = 3
DECLINE = 4
ACK = 5
NAK = 6
RELEASE = 7
INFORM = 8

MESSAGE_NAMES = {
    DISCOVER: "DHCPDISCOVER", OFFER: "DHCPOFFER", REQUEST: "DHCPREQUEST",
    DECLINE: "DHCPDECLINE", ACK: "DHCPACK", NAK: "DHCPNAK", RELEASE: "DHCPRELEASE",
    INFORM: "DHCPINFORM",
}

# Option codes (RFC 2132).
PAD = 0
SUBNET_MASK = 1
ROUTER = 3
DNS_SERVERS = 6
HOST_NAME = 12
INTERFACE_MTU = 26
BROADCAST_ADDRESS = 28
REQUESTED_ADDRESS = 50
LEASE_TIME = 51
OVERLOAD = 52
MESSAGE_TYPE = 53
SERVER_ID = 54
PARAMETER_LIST = 55
MESSAGE = 56
MAX_MESSAGE_SIZE = 57
RENEWAL_TIME = 58
REBINDING_TIME = 59
CLIENT_ID = 61
END = 255

#: code -> (name, smallest length, largest length, length a multiple of).
SHAPES = {
    SUBNET_MASK: ("Subnet Mask", 4, 4, 1),
    ROUTER: ("Router", 4, 252, 4),
    DNS_SERVERS: ("Domain Name Server", 4, 252, 4),
    HOST_NAME: ("Host Name", 1, 255, 1),
    INTERFACE_MTU: ("Interface MTU", 2, 2, 1),
    BROADCAST_ADDRESS: ("Broadcast Address", 4, 4, 1),
    REQUESTED_ADDRESS: ("Requested IP Address", 4, 4, 1),
    LEASE_TIME: ("IP Address Lease Time", 4, 4, 1),
    OVERLOAD: ("Option Overload", 1, 1, 1),
    MESSAGE_TYPE: ("DHCP Message Type", 1, 1, 1),
    SERVER_ID: ("Server Identifier", 4, 4, 1),
    PARAMETER_LIST: ("Parameter Request List", 1, 255, 1),
    MESSAGE: ("Message", 1, 255, 1),
    MAX_MESSAGE_SIZE: ("Maximum DHCP Message Size", 2, 2, 1),
    RENEWAL_TIME: ("Renewal (T1) Time Value", 4, 4, 1),
    REBINDING_TIME: ("Rebinding (T2) Time Value", 4, 4, 1),
    CLIENT_ID: ("Client-identifier", 2, 255, 1),
}


def _shapeError(code, data):
    """Why C{data} cannot be option C{code}'s, or None."""
    shape = SHAPES.get(code)
    if shape is None:
        return None
    name, low, high, multiple = shape
    n = len(data)
    if not low <= n <= high or n % multiple:
        size = f"{low}" if low == high else f"{low}..{high}"
        every = f" in steps of {multiple}" if multiple > 1 else ""
        return f"option {code} ({name}) is {n} octets, expected {size}{every}"
    if code == MESSAGE_TYPE and not DISCOVER <= data[0] <= INFORM:
        return f"option 53 (DHCP Message Type) {data[0]} is not 1..8"
    if code == OVERLOAD and not 1 <= data[0] <= 3:
        return f"option 52 (Option Overload) {data[0]} is not 1..3"
    if code == MAX_MESSAGE_SIZE and struct.unpack("!H", data)[0] < 576:
        return f"option 57 (Maximum DHCP Message Size) {struct.unpack('!H', data)[0]} < 576"
    if code == INTERFACE_MTU and struct.unpack("!H", data)[0] < 68:
        return f"option 26 (Interface MTU) {struct.unpack('!H', data)[0]} < 68"
    return None


class Option(namedtuple("Option", "code data")):
    """One option: its C{code} (1..254) and C{data} (the parts of RFC 3396 joined)."""

    __slots__ = ()

    def __new__(cls, code, data):
        if not isinstance(code, int) or isinstance(code, bool) or not 1 <= code <= 254:
            raise EncodeError(f"option code: expected 1..254, got {code!r}")
        if not isinstance(data, (bytes, bytearray)):
            raise EncodeError(f"option {code}: data must be bytes, got {data!r}")
        data = bytes(data)
        why = _shapeError(code, data)
        if why is not None:
            raise EncodeError(why)
        return super().__new__(cls, code, data)


def addresses(code, *values):
    """An option holding IPv4 addresses (Router, Server Identifier, ...)."""
    return Option(code, b"".join(IPv4Address(v).packed for v in values))


def seconds(code, value):
    """A 32-bit time option (lease time, T1, T2)."""
    if not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
        raise EncodeError(f"option {code}: expected 0..4294967295 seconds, got {value!r}")
    return Option(code, struct.pack("!I", value))


def messageType(value):
    """The DHCP Message Type option."""
    if value not in MESSAGE_NAMES:
        raise EncodeError(f"DHCP message type: expected 1..8, got {value!r}")
    return Option(MESSAGE_TYPE, bytes((value,)))


def subnetMask(prefixLength):
    """The Subnet Mask option for a prefix length (0..32)."""
    if not isinstance(prefixLength, int) or not 0 <= prefixLength <= 32:
        raise EncodeError(f"prefix length: expected 0..32, got {prefixLength!r}")
    mask = (0xFFFFFFFF << (32 - prefixLength)) & 0xFFFFFFFF
    return Option(SUBNET_MASK, struct.pack("!I", mask))


def _address(value, what):
    try:
        return IPv4Address(value)
    except ValueError:
        raise EncodeError(f"{what}: expected an IPv4 address, got {value!r}") from None


def _u(value, bits, what):
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < (1 << bits):
        raise EncodeError(f"{what}: expected an integer 0..{(1 << bits) - 1}, got {value!r}")
    return value


def _field(value, size, what):
    if not isinstance(value, (bytes, bytearray)) or len(value) > size:
        raise EncodeError(f"{what}: expected at most {size} octets, got {value!r}")
    return bytes(value)


class Message(namedtuple("Message", "op xid chaddr ciaddr yiaddr siaddr giaddr flags "
                                    "secs hops htype sname file options")):
    """
    A DHCP message. C{chaddr} is the client's hardware address (its length
    is the header's hlen; 6 octets on Ethernet); C{sname} and C{file} the
    fixed fields without their zero padding; C{options} a tuple of L{Option}
    in order, no code twice.
    """

    __slots__ = ()

    def __new__(cls, op, xid, chaddr, ciaddr="0.0.0.0", yiaddr="0.0.0.0",
                siaddr="0.0.0.0", giaddr="0.0.0.0", flags=0, secs=0, hops=0,
                htype=HW_ETHERNET, sname=b"", file=b"", options=()):
        if op not in (BOOTREQUEST, BOOTREPLY):
            raise EncodeError(f"op: expected 1 (BOOTREQUEST) or 2 (BOOTREPLY), got {op!r}")
        options = tuple(options)
        seen = set()
        for o in options:
            if not isinstance(o, Option):
                raise EncodeError(f"not an Option: {o!r}")
            if o.code in seen:
                raise EncodeError(f"option {o.code} given twice; join its data instead")
            seen.add(o.code)
        return super().__new__(
            cls, op, _u(xid, 32, "xid"), _field(chaddr, 16, "chaddr"),
            _address(ciaddr, "ciaddr"), _address(yiaddr, "yiaddr"),
            _address(siaddr, "siaddr"), _address(giaddr, "giaddr"),
            _u(flags, 16, "flags"), _u(secs, 16, "secs"), _u(hops, 8, "hops"),
            _u(htype, 8, "htype"), _field(sname, 64, "sname").rstrip(b"\0"),
            _field(file, 128, "file").rstrip(b"\0"), options)

    # ------------------------------------------------------------ reading

    def option(self, code):
        """The data of option C{code}, or None."""
        for o in self.options:
            if o.code == code:
                return o.data
        return None

    @property
    def type(self):
        """The DHCP Message Type (1..8), or None for a plain BOOTP message."""
        data = self.option(MESSAGE_TYPE)
        return None if data is None else data[0]

    @property
    def name(self):
        return MESSAGE_NAMES.get(self.type, "BOOTP")

    def address(self, code):
        """The first IPv4 address in option C{code}, or None."""
        data = self.option(code)
        return None if data is None or len(data) < 4 else IPv4Address(data[:4])

    def seconds(self, code):
        """A 32-bit time option's value, or None."""
        data = self.option(code)
        return None if data is None or len(data) != 4 else struct.unpack("!I", data)[0]

    @property
    def clientId(self):
        """What names the client (RFC 2131 4.2): its Client-identifier, else htype + chaddr."""
        data = self.option(CLIENT_ID)
        return data if data is not None else bytes((self.htype,)) + self.chaddr

    @property
    def broadcast(self):
        """Whether the client asked for broadcast answers."""
        return bool(self.flags & BROADCAST)

    # ------------------------------------------------------------ writing

    def encode(self):
        fixed = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", self.op, self.htype,
                            len(self.chaddr), self.hops, self.xid, self.secs, self.flags,
                            self.ciaddr.packed, self.yiaddr.packed, self.siaddr.packed,
                            self.giaddr.packed, self.chaddr, self.sname, self.file)
        parts = [fixed, MAGIC_COOKIE]
        for o in self.options:
            # RFC 3396: an option longer than 255 octets goes in several parts.
            for start in range(0, max(len(o.data), 1), 255):
                chunk = o.data[start:start + 255]
                parts.append(bytes((o.code, len(chunk))) + chunk)
        parts.append(bytes((END,)))
        data = b"".join(parts)
        return data + bytes(max(0, MIN_LENGTH - len(data)))


def encode(message):
    """A L{Message} -> bytes (the UDP payload)."""
    if not isinstance(message, Message):
        raise EncodeError(f"not a DHCP message: {message!r}")
    return message.encode()


def _sum16(data):
    """The ones-complement sum of C{data} as 16-bit words (RFC 1071), folded."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def udpFrame(destinationMac, sourceMac, source, destination, payload,
             sourcePort=SERVER_PORT, destinationPort=CLIENT_PORT, ttl=64):
    """
    An Ethernet frame carrying C{payload} in UDP over IPv4 (header and UDP
    checksums filled in): how the MAG answers a client that has no address
    yet, addressed to its MAC alone.
    """
    source, destination = IPv4Address(source).packed, IPv4Address(destination).packed
    length = 8 + len(payload)
    pseudo = source + destination + struct.pack("!BBH", 0, 17, length)
    udp = struct.pack("!HHHH", sourcePort, destinationPort, length, 0) + payload
    check = 0xFFFF - _sum16(pseudo + udp)
    udp = udp[:6] + struct.pack("!H", check or 0xFFFF) + udp[8:]
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + length, 0, 0x4000, ttl, 17, 0,
                         source, destination)
    header = header[:10] + struct.pack("!H", 0xFFFF - _sum16(header)) + header[12:]
    return bytes(destinationMac) + bytes(sourceMac) + b"\x08\x00" + header + udp


def _readOptions(data, where, found, order):
    """
    Read the options in C{data} up to END into C{found} (code -> list of
    parts) and C{order}; raise L{DecodeError} if they do not end with END.
    """
    pos = 0
    while pos < len(data):
        code = data[pos]
        if code == END:
            return
        if code == PAD:
            pos += 1
            continue
        if pos + 2 > len(data):
            raise DecodeError(f"{where}: option {code} at offset {pos} has no length octet")
        length = data[pos + 1]
        end = pos + 2 + length
        if end > len(data):
            raise DecodeError(f"{where}: option {code} at offset {pos}: length {length}, "
                              f"only {len(data) - pos - 2} octets left")
        if code not in found:
            order.append(code)
            found[code] = []
        found[code].append(data[pos + 2:end])
        pos = end
    raise DecodeError(f"{where}: no End option (255) after the options")


def decode(data):
    """UDP payload -> L{Message}; raises only L{DecodeError}."""
    data = bytes(data)
    if len(data) < FIXED + len(MAGIC_COOKIE):
        raise DecodeError(f"DHCP message: {len(data)} octets, at least "
                          f"{FIXED + len(MAGIC_COOKIE)} needed")
    (op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr,
     sname, file) = struct.unpack_from("!BBBBIHH4s4s4s4s16s64s128s", data)
    if op not in (BOOTREQUEST, BOOTREPLY):
        raise DecodeError(f"op {op} is neither BOOTREQUEST (1) nor BOOTREPLY (2)")
    if hlen > 16:
        raise DecodeError(f"hlen {hlen} is more than the 16 octets of chaddr")
    if data[FIXED:FIXED + 4] != MAGIC_COOKIE:
        raise DecodeError(f"no DHCP magic cookie (got {data[FIXED:FIXED + 4].hex()})")
    found, order = {}, []
    _readOptions(data[FIXED + 4:], "options", found, order)
    overload = found.get(OVERLOAD)
    if overload is not None:
        value = b"".join(overload)
        why = _shapeError(OVERLOAD, value)
        if why is not None:
            raise DecodeError(why)
        if value[0] & 1:
            _readOptions(file, "file field (overloaded)", found, order)
        if value[0] & 2:
            _readOptions(sname, "sname field (overloaded)", found, order)
        sname = sname if not value[0] & 2 else b""
        file = file if not value[0] & 1 else b""
    options = []
    for code in order:
        joined = b"".join(found[code])
        why = _shapeError(code, joined)
        if why is not None:
            raise DecodeError(why)
        options.append(tuple.__new__(Option, (code, joined)))
    if overload is not None:
        options = [o for o in options if o.code != OVERLOAD]
    try:
        return Message(op, xid, chaddr[:hlen], IPv4Address(ciaddr), IPv4Address(yiaddr),
                       IPv4Address(siaddr), IPv4Address(giaddr), flags, secs, hops, htype,
                       sname, file, options)
    except EncodeError as e:  # pragma: no cover - every field was checked above
        raise DecodeError(str(e)) from None
