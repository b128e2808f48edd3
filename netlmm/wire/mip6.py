"""
The two IPv6 extension headers Mobile IPv6 adds around its signalling
(RFC 6275 sections 6.3 and 6.4), as the home registration of a mobile node
with its home agent (the GMA) uses them:

  - a Binding Update travels from the care-of address with a Destination
    Options header holding the Home Address option (type 201): the home
    address being registered;
  - the Binding Acknowledgement travels to the care-of address with a type 2
    Routing header holding the home address (Segments Left 1).

The Mobility Header checksum of such packets covers the home address, not
the care-of address: the pseudo-header's source (BU) or final destination
(BA) is the home address (RFC 6275 6.1.1, 6.3, 6.4; RFC 8200 8.1).

Linux passes these headers to and from a raw socket as ancillary data
(IPV6_DSTOPTS, IPV6_RTHDR) in exactly the layout encoded here, with the Next
Header octet filled in by the kernel. L{packet} builds whole packets for
tests and captures. Nothing here imports Twisted.
"""

import struct
from ipaddress import IPv6Address

from netlmm.wire.errors import DecodeError

IPPROTO_ROUTING = 43
IPPROTO_DSTOPTS = 60
#: Home Address destination option (RFC 6275 6.3): the top bits 11 tell a
#: node that does not know it to drop the packet and send a Parameter Problem.
HOME_ADDRESS_OPTION = 0xC9
#: Type 2 Routing header (RFC 6275 6.4).
ROUTING_TYPE_2 = 2

_PAD1 = 0
_PADN = 1


def destinationOptions(home, nextHeader=0):
    """
    A Destination Options header holding only a Home Address option for
    C{home}: 24 octets, the option at offset 6 (its 8n+6 alignment) after
    a 4-octet PadN.
    """
    return (bytes((nextHeader, 2, _PADN, 2, 0, 0, HOME_ADDRESS_OPTION, 16))
            + IPv6Address(home).packed)


def homeAddressOf(header):
    """
    The address of the Home Address option in the Destination Options
    header C{header} (its first octets), or None when it has none. Raises
    L{DecodeError} when the header or an option in it does not fit.
    """
    header = bytes(header)
    if len(header) < 8:
        raise DecodeError(f"Destination Options header of {len(header)} octets")
    size = (header[1] + 1) * 8
    if size > len(header):
        raise DecodeError(f"Destination Options header says {size} octets, "
                          f"{len(header)} there")
    pos, home = 2, None
    while pos < size:
        kind = header[pos]
        if kind == _PAD1:
            pos += 1
            continue
        if pos + 2 > size:
            raise DecodeError(f"option at offset {pos} is cut off")
        length = header[pos + 1]
        end = pos + 2 + length
        if end > size:
            raise DecodeError(f"option {kind} at offset {pos} runs past the header")
        if kind == HOME_ADDRESS_OPTION:
            if length != 16:
                raise DecodeError(f"Home Address option of {length} octets, expected 16")
            if home is not None:
                raise DecodeError("two Home Address options")
            home = IPv6Address(header[pos + 2:end])
        pos = end
    return home


def routingHeader2(home, nextHeader=0):
    """A type 2 Routing header carrying C{home}, Segments Left 1: 24 octets."""
    return bytes((nextHeader, 2, ROUTING_TYPE_2, 1, 0, 0, 0, 0)) + IPv6Address(home).packed


def routingHeader2Address(header):
    """
    The address in the type 2 Routing header C{header}; L{DecodeError} when
    it is not one (another type, a length other than 2).
    """
    header = bytes(header)
    if len(header) < 24:
        raise DecodeError(f"routing header of {len(header)} octets, a type 2 has 24")
    if header[2] != ROUTING_TYPE_2:
        raise DecodeError(f"routing header type {header[2]}, expected 2")
    if header[1] != 2:
        raise DecodeError(f"type 2 routing header with Hdr Ext Len {header[1]}, expected 2")
    return IPv6Address(header[8:24])


def packet(source, destination, payload, nextHeader, home=None, route=None,
           hopLimit=64):
    """
    A whole IPv6 packet: the fixed header, then a type 2 Routing header for
    C{route} (if given), then a Destination Options header with a Home
    Address option for C{home} (if given), then C{payload} of protocol
    C{nextHeader}. The order is RFC 8200 4.1's (routing before destination
    options for the final destination, as RFC 6275 6.3 asks).
    """
    headers = []
    protocols = []
    if route is not None:
        protocols.append(IPPROTO_ROUTING)
        headers.append(routingHeader2(route))
    if home is not None:
        protocols.append(IPPROTO_DSTOPTS)
        headers.append(destinationOptions(home))
    protocols.append(nextHeader)
    body = b"".join(bytes((protocols[i + 1],)) + h[1:] for i, h in enumerate(headers))
    body += bytes(payload)
    return (struct.pack("!IHBB", 6 << 28, len(body), protocols[0], hopLimit)
            + IPv6Address(source).packed + IPv6Address(destination).packed + body)
