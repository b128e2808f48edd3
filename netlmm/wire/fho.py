"""
The MAG-to-MAG messages of fast handovers for Proxy Mobile IPv6 (RFC 5949),
which carry a mobile's context from the previous MAG to the new one and set
up forwarding between them (draft Appendix D):

    Handover Initiate (HI, MH type 14, RFC 5568 6.2.1.1 + RFC 5949 6.1.1)
      Sequence # (16) | S|U|P|F|Rsvd (8) | Code (8) | options
    Handover Acknowledge (HAck, MH type 15, RFC 5568 6.2.1.2 + RFC 5949 6.1.2)
      Sequence # (16) | U|P|F|Rsvd (8)   | Code (8) | options

and the two RFC 5949 options they need besides the RFC 5213 ones (MN
identifier, Home Network Prefix, MN link-layer identifier):

    Context Request (type 40): Reserved (16), then (Req-type, Req-length,
        Req-option) triples naming the options wanted
    LMA Address (type 41): Option-Code (8: 1 IPv6, 2 IPv4), Reserved (8),
        the address

L{decodeMessage} decodes them (and every other Mobility Header, as
L{netlmm.wire.mh.decodeMessage} does); L{netlmm.wire.mh.encodeMessage}
encodes them. Numbers as in the IANA
registries (MH types 14/15; options 40/41; HI flags S 0x80 U 0x40 P 0x20 F
0x10; HAck flags U 0x80 P 0x40 F 0x20). Nothing here imports Twisted.
"""

import struct
from collections import namedtuple
from ipaddress import IPv4Address, IPv6Address

from netlmm.wire import mh
from netlmm.wire.errors import DecodeError, EncodeError

MH_HI = 14
MH_HACK = 15

#: HI flags (RFC 5568: S assigned address configuration, U buffer; RFC 5949:
#: P proxy, F forwarding).
HI_S = 0x80
HI_U = 0x40
HI_P = 0x20
HI_F = 0x10
#: HAck flags (RFC 5949).
HACK_U = 0x80
HACK_P = 0x40
HACK_F = 0x20


class HiCode:
    """Handover Initiate codes (IANA 'Handover Initiate Status Codes')."""

    #: RFC 5568: FBU with the PCoA as source (a handover request in 5949).
    REQUEST = 0
    #: RFC 5568: FBU whose source is not the PCoA.
    NOT_PCOA = 1
    #: RFC 5949: indicate the completion of forwarding.
    FORWARDING_DONE = 2
    #: RFC 5949: all available context transferred.
    ALL_CONTEXT = 3


class HackCode:
    """Handover Acknowledge codes (IANA 'Handover Acknowledge Status Codes')."""

    ACCEPTED = 0
    UNSOLICITED = 4
    CONTEXT_ACCEPTED = 5
    ALL_CONTEXT = 6
    NOT_ACCEPTED = 128
    PROHIBITED = 129
    INSUFFICIENT_RESOURCES = 130
    CONTEXT_NOT_AVAILABLE = 131
    FORWARDING_NOT_AVAILABLE = 132

    NAMES = {0: "accepted", 4: "unsolicited", 5: "context transfer accepted",
             6: "all available context transferred", 128: "not accepted",
             129: "administratively prohibited", 130: "insufficient resources",
             131: "requested context not available", 132: "forwarding not available"}

    @classmethod
    def name(cls, code):
        return cls.NAMES.get(code, f"code {code}")


class ContextRequest(mh.MobilityOption, namedtuple("_CR", "requests")):
    """
    Context Request (type 40, RFC 5949 6.2.1): the options the sender wants
    in the answer, as a tuple of (option type, request data bytes).
    """

    __slots__ = ()
    TYPE = 40

    def __new__(cls, requests=()):
        out = []
        for kind, data in requests:
            out.append((mh._u8("requested option type", kind),
                        mh._octets("request data", data)))
        return tuple.__new__(cls, (tuple(out),))

    @property
    def types(self):
        """The requested option types."""
        return tuple(kind for kind, _ in self.requests)

    def body(self):
        return b"\x00\x00" + b"".join(bytes((k, len(d))) + d for k, d in self.requests)

    @classmethod
    def fromBody(cls, body):
        if len(body) < 2:
            raise DecodeError(f"Context Request option is {len(body)} octets; "
                              "at least 2 needed")
        pos, requests = 2, []
        while pos < len(body):
            if pos + 2 > len(body):
                raise DecodeError("Context Request option: truncated request")
            kind, length = body[pos], body[pos + 1]
            if pos + 2 + length > len(body):
                raise DecodeError(f"Context Request option: request for type {kind} "
                                  f"runs past the option")
            requests.append((kind, bytes(body[pos + 2:pos + 2 + length])))
            pos += 2 + length
        return tuple.__new__(cls, (tuple(requests),))


class LmaAddress(mh.MobilityOption, namedtuple("_LMAA", "address")):
    """
    Local Mobility Anchor Address (type 41, RFC 5949 6.2.2): the LMA that
    serves the mobile (IPv6, option code 1, or IPv4, code 2).
    """

    __slots__ = ()
    TYPE = 41
    ALIGN = (8, 4)
    IPV6 = 1
    IPV4 = 2

    def __new__(cls, address):
        if isinstance(address, (IPv4Address, IPv6Address)):
            value = address
        else:
            try:
                value = IPv6Address(address)
            except ValueError:
                try:
                    value = IPv4Address(address)
                except ValueError:
                    raise EncodeError(f"LMA address {address!r} is not an IP address") \
                        from None
        return tuple.__new__(cls, (value,))

    def body(self):
        code = self.IPV6 if self.address.version == 6 else self.IPV4
        return bytes((code, 0)) + self.address.packed

    @classmethod
    def fromBody(cls, body):
        if len(body) < 2:
            raise DecodeError("LMA Address option: no option code")
        code, rest = body[0], bytes(body[2:])
        if code == cls.IPV6 and len(rest) == 16:
            return tuple.__new__(cls, (IPv6Address(rest),))
        if code == cls.IPV4 and len(rest) == 4:
            return tuple.__new__(cls, (IPv4Address(rest),))
        raise DecodeError(f"LMA Address option: code {code} with {len(rest)} octets "
                          "of address (expected 1 with 16, or 2 with 4)")


class _Handover(mh.MobilityMessage):
    __slots__ = ()
    FIXED = 4

    def __new__(cls, sequence, flags=None, code=0, options=()):
        return tuple.__new__(cls, (mh._u16("sequence number", sequence),
                                   mh._u8("flags", cls.PROXY if flags is None else flags),
                                   mh._u8("code", code), mh._options(options)))

    def fixed(self):
        return struct.pack("!HBB", self.sequence, self.flags, self.code)

    @classmethod
    def _fromFixed(cls, fixed, options):
        return tuple.__new__(cls, struct.unpack("!HBB", fixed) + (options,))

    def flag(self, mask):
        """True when the flag C{mask} is set."""
        return bool(self.flags & mask)


class HandoverInitiate(_Handover, namedtuple("_HI", "sequence flags code options")):
    """Handover Initiate (MH type 14): asks for or offers a mobile's context."""

    __slots__ = ()
    MH_TYPE = MH_HI
    PROXY = HI_P


class HandoverAcknowledge(_Handover, namedtuple("_HAck", "sequence flags code options")):
    """Handover Acknowledge (MH type 15): the answer to a HI."""

    __slots__ = ()
    MH_TYPE = MH_HACK
    PROXY = HACK_P

    @property
    def accepted(self):
        """True when the code is below 128."""
        return self.code < 128


#: MH type -> message class of this module.
MESSAGE_TYPES = {cls.MH_TYPE: cls for cls in (HandoverInitiate, HandoverAcknowledge)}
#: The option types these messages may carry: the Mobility Header's and RFC 5949's.
OPTION_TYPES = dict(mh.OPTION_TYPES)
OPTION_TYPES.update({cls.TYPE: cls for cls in (ContextRequest, LmaAddress)})


def decodeMessage(data, source=None, destination=None):
    """
    Decode one Mobility Header like L{netlmm.wire.mh.decodeMessage}, and a
    Handover Initiate or Acknowledge (with the RFC 5949 options) as such.
    Raises only L{DecodeError}.
    """
    message = mh.decodeMessage(data, source, destination)
    cls = MESSAGE_TYPES.get(message.MH_TYPE) if type(message) is mh.UnknownMessage else None
    if cls is None:
        return message
    data = bytes(data)
    if len(data) < 6 + cls.FIXED:
        raise DecodeError(f"{cls.__name__} needs {6 + cls.FIXED} octets, header is "
                          f"{len(data)}")
    return cls._fromFixed(data[6:6 + cls.FIXED],
                          mh.decodeOptions(data, 6 + cls.FIXED, OPTION_TYPES))
