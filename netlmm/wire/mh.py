"""
The Mobility Header (RFC 6275 section 6.1) and the messages and mobility
options that Proxy Mobile IPv6 signalling uses.

Messages and options are immutable values that check their ranges when built.
L{encodeMessage} lays the options out with the alignment each one asks for and
pads the header to a multiple of 8 octets; L{decodeMessage} reads a header
inside the bounds its Header Len field declares and raises only
L{DecodeError}.

Decoding is lenient about option bodies: a known option whose data does not
follow its layout (a wrong length, a prefix length out of range) decodes to
a L{MalformedOption} kept in the message's options, so the receiver can
still match the message and answer as the RFCs say. Only a broken header,
fixed part or option layout (an option running past the end) raises.

Addresses are L{ipaddress.IPv6Address} (L{ipaddress.IPv4Address} in the RFC
5844 options); identifiers and authenticators are L{bytes}. This module
imports nothing from Twisted.
"""

import struct
from collections import namedtuple
from ipaddress import IPv4Address, IPv6Address

from netlmm.wire.checksum import mhChecksum
from netlmm.wire.errors import DecodeError, EncodeError

IPPROTO_MH = 135
IPPROTO_NONE = 59

# MH types (RFC 6275 section 6.1.2 and the IANA registry).
MH_BRR = 0
MH_BU = 5
MH_BA = 6
MH_BE = 7
MH_HEARTBEAT = 13
MH_BINDING_REVOCATION = 16

# Binding Revocation (RFC 5846 6.1): the B.R. Type octet after the checksum.
BR_INDICATION = 1
BR_ACKNOWLEDGEMENT = 2

# Binding Revocation flags, the top bits of the 16-bit word after the
# sequence number (RFC 5846 6.1, 6.2): P proxy binding, V IPv4 home address
# bindings only, G global (all the bindings of a peer).
BR_P = 0x8000
BR_V = 0x4000
BR_G = 0x2000

# Heartbeat flags, the last two bits of the 16-bit word after the checksum
# (RFC 5847 5.1): U unsolicited Response, R Response (clear: a Request).
HB_U = 0x0002
HB_R = 0x0001

# Binding Update flags (16-bit word, RFC 6275 6.1.7, RFC 5213 8.1).
BU_A = 0x8000
BU_H = 0x4000
BU_L = 0x2000
BU_K = 0x1000
BU_M = 0x0800
BU_R = 0x0400
BU_P = 0x0200

# Binding Acknowledgement flags (8 bits, RFC 6275 6.1.8, RFC 5213 8.2).
BA_K = 0x80
BA_R = 0x40
BA_P = 0x20

# Binding Error status (RFC 6275 6.1.9).
BE_UNKNOWN_HOA = 1
BE_UNKNOWN_MH_TYPE = 2

# Mobile Node Identifier subtype (RFC 4283).
MNID_NAI = 1

#: Lifetime field unit, seconds.
LIFETIME_UNIT = 4
MAX_LIFETIME_UNITS = 0xFFFF


class Status:
    """Binding Acknowledgement status codes (RFC 6275, 4285, 5213, 5844)."""

    ACCEPTED = 0
    ACCEPTED_PREFIX_DISCOVERY = 1
    UNSPECIFIED = 128
    ADMINISTRATIVELY_PROHIBITED = 129
    INSUFFICIENT_RESOURCES = 130
    HOME_REGISTRATION_NOT_SUPPORTED = 131
    NOT_HOME_SUBNET = 132
    NOT_HOME_AGENT_FOR_MN = 133
    DAD_FAILED = 134
    SEQUENCE_OUT_OF_WINDOW = 135
    REGISTRATION_TYPE_CHANGE_DISALLOWED = 139
    MIPV6_ID_MISMATCH = 144
    MIPV6_MESG_ID_REQD = 145
    MIPV6_AUTH_FAIL = 146
    PROXY_REG_NOT_ENABLED = 152
    NOT_LMA_FOR_THIS_MN = 153
    MAG_NOT_AUTHORIZED_FOR_PROXY_REG = 154
    NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX = 155
    TIMESTAMP_MISMATCH = 156
    TIMESTAMP_LOWER_THAN_PREV_ACCEPTED = 157
    MISSING_HOME_NETWORK_PREFIX_OPTION = 158
    BCE_PBU_PREFIX_SET_DO_NOT_MATCH = 159
    MISSING_MN_IDENTIFIER_OPTION = 160
    MISSING_HANDOFF_INDICATOR_OPTION = 161
    MISSING_ACCESS_TECH_TYPE_OPTION = 162
    NOT_AUTHORIZED_FOR_IPV4_MOBILITY_SERVICE = 170
    NOT_AUTHORIZED_FOR_IPV4_HOME_ADDRESS = 171
    NOT_AUTHORIZED_FOR_IPV6_MOBILITY_SERVICE = 172
    MULTIPLE_IPV4_HOME_ADDRESS_ASSIGNMENT_NOT_SUPPORTED = 173

    @classmethod
    def name(cls, code):
        """The symbolic name of a status code, or its number as text."""
        for key, value in vars(cls).items():
            if value == code and key.isupper():
                return key
        return str(code)


class RevocationTrigger:
    """Revocation Trigger values of a BRI (RFC 5846 6.1.1, IANA registry)."""

    UNSPECIFIED = 0
    ADMINISTRATIVE_REASON = 1
    INTER_MAG_HANDOVER_SAME_ACCESS_TYPE = 2
    INTER_MAG_HANDOVER_DIFFERENT_ACCESS_TYPE = 3
    INTER_MAG_HANDOVER_UNKNOWN = 4
    USER_INITIATED_SESSION_TERMINATION = 5
    ACCESS_NETWORK_SESSION_TERMINATION = 6
    POSSIBLE_OUT_OF_SYNC_BCE_STATE = 7
    PER_PEER_POLICY = 128
    REVOKING_MOBILITY_NODE_LOCAL_POLICY = 129

    name = classmethod(Status.name.__func__)


class RevocationStatus:
    """Status values of a BRA (RFC 5846 6.2, IANA registry): below 128 success."""

    SUCCESS = 0
    PARTIAL_SUCCESS = 1
    BINDING_DOES_NOT_EXIST = 128
    IPV4_HOME_ADDRESS_OPTION_REQUIRED = 129
    GLOBAL_REVOCATION_NOT_AUTHORIZED = 130
    REVOKED_MOBILE_NODES_IDENTITY_REQUIRED = 131
    REVOCATION_FAILED_MN_IS_ATTACHED = 132
    REVOCATION_TRIGGER_NOT_SUPPORTED = 133
    REVOCATION_FUNCTION_NOT_SUPPORTED = 134
    PROXY_BINDING_REVOCATION_NOT_SUPPORTED = 135

    name = classmethod(Status.name.__func__)


_UNSPECIFIED = IPv6Address("::")
_UNSPECIFIED4 = IPv4Address("0.0.0.0")


# ---------------------------------------------------------------- helpers


def _u8(name, value):
    if type(value) is not int or not 0 <= value <= 0xFF:
        raise EncodeError(f"{name} must be an integer 0..255, not {value!r}")
    return value


def _u16(name, value):
    if type(value) is not int or not 0 <= value <= 0xFFFF:
        raise EncodeError(f"{name} must be an integer 0..65535, not {value!r}")
    return value


def _u32(name, value):
    if type(value) is not int or not 0 <= value <= 0xFFFFFFFF:
        raise EncodeError(f"{name} must be an integer 0..2**32-1, not {value!r}")
    return value


def _u64(name, value):
    if type(value) is not int or not 0 <= value < 1 << 64:
        raise EncodeError(f"{name} must be an integer 0..2**64-1, not {value!r}")
    return value


def _addr(name, value):
    if isinstance(value, IPv6Address):
        return value
    try:
        return IPv6Address(value)
    except (ValueError, TypeError) as e:
        raise EncodeError(f"{name} must be an IPv6 address, not {value!r}") from e


def _addr4(name, value):
    if isinstance(value, IPv4Address):
        return value
    try:
        return IPv4Address(value)
    except (ValueError, TypeError) as e:
        raise EncodeError(f"{name} must be an IPv4 address, not {value!r}") from e


def _ipv4PrefixLength(value):
    if type(value) is not int or not 0 <= value <= 32:
        raise EncodeError(f"IPv4 prefix length must be an integer 0..32, not {value!r}")
    return value


def _octets(name, value, minimum=0, maximum=255):
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise EncodeError(f"{name} must be bytes, not {type(value).__name__}")
    value = bytes(value)
    if not minimum <= len(value) <= maximum:
        raise EncodeError(
            f"{name} must be {minimum}..{maximum} octets long, not {len(value)}"
        )
    return value


def _packed(address):
    """16 octets of an address given as IPv6Address, text or bytes."""
    if type(address) is bytes and len(address) == 16:
        return address
    if isinstance(address, (bytes, bytearray)) and len(address) == 16:
        return bytes(address)
    return IPv6Address(address).packed


class _Value:
    """
    Equality and hashing by type and fields, for the tuple-based values below
    (two options with the same fields but different types must not be equal).
    """

    __slots__ = ()

    def __eq__(self, other):
        return type(self) is type(other) and tuple.__eq__(self, other)

    def __ne__(self, other):
        return not self.__eq__(other)

    def __hash__(self):
        return hash((type(self), tuple.__hash__(self)))


# ---------------------------------------------------------------- options


class MobilityOption(_Value):
    """
    Base of the mobility options. C{TYPE} is the option type; C{ALIGN} is the
    alignment requirement (x, y) meaning the type octet must sit at an offset
    x*n + y from the start of the Mobility Header.
    """

    __slots__ = ()
    TYPE = None
    ALIGN = (1, 0)
    #: True for an option that must end the message (RFC 4285 section 5).
    LAST = False

    def body(self):
        """The option data (without type and length octets)."""
        raise NotImplementedError

    @classmethod
    def fromBody(cls, body):
        """Build the option from its data; raise L{DecodeError} if invalid."""
        raise NotImplementedError


def _fixedLength(cls, body, length):
    if len(body) != length:
        raise DecodeError(
            f"{cls.__name__} option: length {len(body)}, expected {length}"
        )


class BindingRefreshAdvice(MobilityOption, namedtuple("_BRA", "interval")):
    """Refresh interval in 4-second units (RFC 6275 6.2.4)."""

    __slots__ = ()
    TYPE = 2
    ALIGN = (2, 0)

    def __new__(cls, interval):
        return tuple.__new__(cls, (_u16("refresh interval", interval),))

    def body(self):
        return struct.pack("!H", self.interval)

    @classmethod
    def fromBody(cls, body):
        _fixedLength(cls, body, 2)
        return tuple.__new__(cls, struct.unpack("!H", body))


class AlternateCareOfAddress(MobilityOption, namedtuple("_ACoA", "address")):
    """The care-of address to bind, here the MAG's address (RFC 6275 6.2.5)."""

    __slots__ = ()
    TYPE = 3
    ALIGN = (8, 6)

    def __new__(cls, address):
        return tuple.__new__(cls, (_addr("alternate care-of address", address),))

    def body(self):
        return self.address.packed

    @classmethod
    def fromBody(cls, body):
        if len(body) != 16:
            _fixedLength(cls, body, 16)
        return tuple.__new__(cls, (IPv6Address(body),))


class BindingAuthorizationData(
    MobilityOption, namedtuple("_BAD", "authenticator")
):
    """Return-routability authenticator (RFC 6275 6.2.7); carried, not used."""

    __slots__ = ()
    TYPE = 5
    ALIGN = (8, 2)

    def __new__(cls, authenticator):
        return tuple.__new__(
            cls, (_octets("authenticator", authenticator),)
        )

    def body(self):
        return self.authenticator

    @classmethod
    def fromBody(cls, body):
        return tuple.__new__(cls, (bytes(body),))


class MobileNodeIdentifier(
    MobilityOption, namedtuple("_MNID", "identifier subtype")
):
    """The mobile's identifier, by default an NAI (RFC 4283)."""

    __slots__ = ()
    TYPE = 8

    def __new__(cls, identifier, subtype=MNID_NAI):
        return tuple.__new__(
            cls,
            (
                _octets("MN identifier", identifier, 1, 254),
                _u8("MN identifier subtype", subtype),
            ),
        )

    def body(self):
        return bytes((self.subtype,)) + self.identifier

    @classmethod
    def fromBody(cls, body):
        if len(body) < 2:
            raise DecodeError(
                f"MobileNodeIdentifier option: length {len(body)}, expected at least 2"
            )
        return tuple.__new__(cls, (bytes(body[1:]), body[0]))


class MobilityMessageAuthentication(
    MobilityOption, namedtuple("_MMA", "subtype spi authenticator")
):
    """
    RFC 4285 authentication option: subtype (1 MN-HA, 2 MN-AAA), SPI and
    authenticator. It must be the last option of the message.
    """

    __slots__ = ()
    TYPE = 9
    ALIGN = (4, 1)
    LAST = True
    MN_HA = 1
    MN_AAA = 2

    def __new__(cls, subtype, spi, authenticator):
        return tuple.__new__(
            cls,
            (
                _u8("authentication subtype", subtype),
                _u32("SPI", spi),
                _octets("authenticator", authenticator, 0, 250),
            ),
        )

    def body(self):
        return struct.pack("!BI", self.subtype, self.spi) + self.authenticator

    @classmethod
    def fromBody(cls, body):
        if len(body) < 5:
            raise DecodeError(
                f"MobilityMessageAuthentication option: length {len(body)}, "
                "expected at least 5"
            )
        subtype, spi = struct.unpack_from("!BI", body)
        return tuple.__new__(cls, (subtype, spi, bytes(body[5:])))


class MobilityMessageReplayProtection(
    MobilityOption, namedtuple("_MMRP", "timestamp")
):
    """RFC 4285 replay protection: a 64-bit NTP-format timestamp."""

    __slots__ = ()
    TYPE = 10
    ALIGN = (8, 2)

    def __new__(cls, timestamp):
        return tuple.__new__(cls, (_u64("replay timestamp", timestamp),))

    def body(self):
        return struct.pack("!Q", self.timestamp)

    @classmethod
    def fromBody(cls, body):
        _fixedLength(cls, body, 8)
        return tuple.__new__(cls, struct.unpack("!Q", body))


class HomeNetworkPrefix(
    MobilityOption, namedtuple("_HNP", "prefix prefixLength")
):
    """
    A home network prefix (RFC 5213 8.3). netlmm carries the pHoA in it with
    prefix length 128; the all-zero prefix asks the LMA to assign one.
    """

    __slots__ = ()
    TYPE = 22
    ALIGN = (8, 4)

    def __new__(cls, prefix, prefixLength=128):
        prefixLength = _u8("prefix length", prefixLength)
        if prefixLength > 128:
            raise EncodeError(f"prefix length must be 0..128, not {prefixLength}")
        return tuple.__new__(cls, (_addr("home network prefix", prefix), prefixLength))

    def body(self):
        return bytes((0, self.prefixLength)) + self.prefix.packed

    @classmethod
    def fromBody(cls, body):
        if len(body) != 18:
            _fixedLength(cls, body, 18)
        if body[1] > 128:
            raise DecodeError(f"HomeNetworkPrefix option: prefix length {body[1]}")
        return tuple.__new__(cls, (IPv6Address(bytes(body[2:])), body[1]))

    @property
    def unspecified(self):
        """True when the prefix is all zeros (an assignment request)."""
        return self.prefix == _UNSPECIFIED


class _OneOctetOption(MobilityOption):
    """Layout shared by options whose body is a reserved octet and a value."""

    __slots__ = ()

    def __new__(cls, value):
        return tuple.__new__(cls, (_u8(cls.__name__, value),))

    def body(self):
        return bytes((0, self.value))

    @classmethod
    def fromBody(cls, body):
        _fixedLength(cls, body, 2)
        return tuple.__new__(cls, (body[1],))


class HandoffIndicator(_OneOctetOption, namedtuple("_HI", "value")):
    """Handoff Indicator (RFC 5213 8.4); values 1..5."""

    __slots__ = ()
    TYPE = 23
    ATTACHMENT_OVER_NEW_INTERFACE = 1
    HANDOFF_BETWEEN_DIFFERENT_INTERFACES = 2
    HANDOFF_BETWEEN_MAGS_SAME_INTERFACE = 3
    UNKNOWN = 4
    NOT_CHANGED = 5


class AccessTechnologyType(_OneOctetOption, namedtuple("_ATT", "value")):
    """Access Technology Type (RFC 5213 8.5)."""

    __slots__ = ()
    TYPE = 24
    VIRTUAL = 1
    PPP = 2
    ETHERNET = 3
    WLAN = 4
    WIMAX = 5


class MobileNodeLinkLayerIdentifier(
    MobilityOption, namedtuple("_MNLLID", "identifier")
):
    """
    The mobile's link-layer identifier, e.g. its MAC (RFC 5213 8.6).

    RFC 5213 gives this option no fixed alignment: it "MUST be aligned
    appropriately" for the size of the identifier, by the natural-boundary
    rule of RFC 6275 6.2. The identifier starts 4 octets after the type
    octet, so an 8-octet identifier needs 8n+4, a 4-octet one 4n, and any
    other size 2n (which keeps the 16-bit Reserved field aligned).
    """

    __slots__ = ()
    TYPE = 25

    @property
    def ALIGN(self):  # noqa: N802 - mirrors the class attribute of other options
        size = len(self.identifier)
        if size == 8:
            return (8, 4)
        if size == 4:
            return (4, 0)
        return (2, 0)

    def __new__(cls, identifier):
        return tuple.__new__(
            cls, (_octets("link-layer identifier", identifier, 1, 253),)
        )

    def body(self):
        return b"\x00\x00" + self.identifier

    @classmethod
    def fromBody(cls, body):
        if len(body) < 3:
            raise DecodeError(
                f"MobileNodeLinkLayerIdentifier option: length {len(body)}, "
                "expected at least 3"
            )
        return tuple.__new__(cls, (bytes(body[2:]),))


class LinkLocalAddress(MobilityOption, namedtuple("_LLA", "address")):
    """The MAG's link-local address on the access link (RFC 5213 8.7)."""

    __slots__ = ()
    TYPE = 26
    ALIGN = (8, 6)

    def __new__(cls, address):
        return tuple.__new__(cls, (_addr("link-local address", address),))

    def body(self):
        return self.address.packed

    @classmethod
    def fromBody(cls, body):
        _fixedLength(cls, body, 16)
        return tuple.__new__(cls, (IPv6Address(bytes(body)),))


class Timestamp(MobilityOption, namedtuple("_TS", "value")):
    """
    RFC 5213 8.8 timestamp: 64 bits, the upper 48 seconds since 1970-01-01
    and the lower 16 fractions of a second (1/65536).
    """

    __slots__ = ()
    TYPE = 27
    ALIGN = (8, 2)

    def __new__(cls, value):
        return tuple.__new__(cls, (_u64("timestamp", value),))

    @classmethod
    def fromSeconds(cls, seconds):
        """A timestamp for a POSIX time in seconds."""
        return cls(int(round(seconds * 65536)))

    @property
    def seconds(self):
        """The timestamp as POSIX seconds (float)."""
        return self.value / 65536

    def body(self):
        return struct.pack("!Q", self.value)

    @classmethod
    def fromBody(cls, body):
        _fixedLength(cls, body, 8)
        return tuple.__new__(cls, struct.unpack("!Q", body))


class IPv4HomeAddressRequest(
    MobilityOption, namedtuple("_V4HAReq", "address prefixLength")
):
    """
    The MAG asks for an IPv4 home address for the mobile (RFC 5844 3.3.1):
    Prefix-len (6 bits) and 10 reserved bits, then the address; 0.0.0.0
    asks the LMA to assign one. Alignment 4n, so the address is 4-aligned.
    """

    __slots__ = ()
    TYPE = 36
    ALIGN = (4, 0)

    def __new__(cls, address=_UNSPECIFIED4, prefixLength=0):
        return tuple.__new__(cls, (_addr4("IPv4 home address", address),
                                   _ipv4PrefixLength(prefixLength)))

    def body(self):
        return struct.pack("!H", self.prefixLength << 10) + self.address.packed

    @classmethod
    def fromBody(cls, body):
        _fixedLength(cls, body, 6)
        # The 10 reserved bits are ignored on receipt (RFC 5844 3.3.1).
        prefixLength = body[0] >> 2
        if prefixLength > 32:
            raise DecodeError(f"IPv4HomeAddressRequest option: prefix length {prefixLength}")
        return tuple.__new__(cls, (IPv4Address(bytes(body[2:])), prefixLength))

    @property
    def unspecified(self):
        """True for 0.0.0.0: the LMA is to assign the address."""
        return self.address == _UNSPECIFIED4


class IPv4HomeAddressReply(
    MobilityOption, namedtuple("_V4HARep", "status address prefixLength")
):
    """
    The LMA's answer to an IPv4 Home Address Request (RFC 5844 3.3.2):
    Status (8), Pref-len (6 bits) and 2 reserved bits, then the assigned
    address. Status below 128 is success. Alignment 4n.
    """

    __slots__ = ()
    TYPE = 37
    ALIGN = (4, 0)
    SUCCESS = 0
    UNSPECIFIED = 128
    ADMINISTRATIVELY_PROHIBITED = 129
    INCORRECT_IPV4_HOME_ADDRESS = 130
    INVALID_IPV4_ADDRESS = 131
    DYNAMIC_IPV4_HOME_ADDRESS_ASSIGNMENT_NOT_AVAILABLE = 132

    def __new__(cls, status, address=_UNSPECIFIED4, prefixLength=0):
        return tuple.__new__(cls, (_u8("IPv4 home address reply status", status),
                                   _addr4("IPv4 home address", address),
                                   _ipv4PrefixLength(prefixLength)))

    def body(self):
        return bytes((self.status, self.prefixLength << 2)) + self.address.packed

    @classmethod
    def fromBody(cls, body):
        _fixedLength(cls, body, 6)
        prefixLength = body[1] >> 2
        if prefixLength > 32:
            raise DecodeError(f"IPv4HomeAddressReply option: prefix length {prefixLength}")
        return tuple.__new__(cls, (body[0], IPv4Address(bytes(body[2:])), prefixLength))

    @property
    def accepted(self):
        """True when the status is below 128."""
        return self.status < 128


class IPv4DefaultRouterAddress(MobilityOption, namedtuple("_V4DRA", "address")):
    """
    The mobile's IPv4 default router (RFC 5844 3.3.3): 16 reserved bits,
    then the address. Alignment 4n.
    """

    __slots__ = ()
    TYPE = 38
    ALIGN = (4, 0)

    def __new__(cls, address):
        return tuple.__new__(cls, (_addr4("IPv4 default-router address", address),))

    def body(self):
        return b"\x00\x00" + self.address.packed

    @classmethod
    def fromBody(cls, body):
        _fixedLength(cls, body, 6)
        return tuple.__new__(cls, (IPv4Address(bytes(body[2:])),))


class IPv4DhcpSupportMode(MobilityOption, namedtuple("_V4DSM", "server")):
    """
    Whether the MAG serves the mobile's DHCPv4 (S flag set) or relays it
    (RFC 5844 3.3.4): 15 reserved bits and the S flag, the last bit. No
    alignment requirement.
    """

    __slots__ = ()
    TYPE = 39
    S = 0x0001

    def __new__(cls, server):
        if type(server) is not bool:
            raise EncodeError(f"DHCP support mode: server must be True or False, not {server!r}")
        return tuple.__new__(cls, (server,))

    def body(self):
        return struct.pack("!H", self.S if self.server else 0)

    @classmethod
    def fromBody(cls, body):
        _fixedLength(cls, body, 2)
        return tuple.__new__(cls, (bool(body[1] & cls.S),))


class RestartCounter(MobilityOption, namedtuple("_RC", "value")):
    """
    The sender's restart counter (RFC 5847 5.2), carried in Heartbeat
    Responses: a 32-bit number that changes only when the node restarted
    and lost its PMIPv6 state. Alignment 4n+2, so the counter is 4-aligned.
    """

    __slots__ = ()
    TYPE = 28
    ALIGN = (4, 2)

    def __new__(cls, value):
        return tuple.__new__(cls, (_u32("restart counter", value),))

    def body(self):
        return struct.pack("!I", self.value)

    @classmethod
    def fromBody(cls, body):
        _fixedLength(cls, body, 4)
        return tuple.__new__(cls, struct.unpack("!I", body))


class UnknownOption(MobilityOption, namedtuple("_UO", "type data")):
    """An option netlmm does not know: kept so it re-encodes byte for byte."""

    __slots__ = ()

    def __new__(cls, type, data):
        type = _u8("option type", type)
        if type in (0, 1):
            raise EncodeError("option types 0 and 1 are padding")
        if type in OPTION_TYPES:
            # It would decode as the known option, not as itself.
            raise EncodeError(
                f"option type {type} is {OPTION_TYPES[type].__name__}; use that class"
            )
        return tuple.__new__(cls, (type, _octets("option data", data)))

    @property
    def TYPE(self):  # noqa: N802 - mirrors the class attribute of known options
        return self.type

    def body(self):
        return self.data


class MalformedOption(MobilityOption, namedtuple("_MO", "type data reason")):
    """
    A known option whose data does not follow its layout (a wrong length, a
    value out of range), with the decoder's C{reason}. It stays among the
    message's options, so the receiver can still match the message and
    answer as the RFCs say; receivers check for it where an option matters
    to them (L{MobilityMessage.malformed}). It re-encodes byte for byte.
    """

    __slots__ = ()

    def __new__(cls, type, data, reason):
        type = _u8("option type", type)
        if type not in OPTION_TYPES:
            raise EncodeError(f"option type {type} is not a known option; use UnknownOption")
        if not isinstance(reason, str):
            raise EncodeError(f"reason must be text, not {reason!r}")
        return tuple.__new__(cls, (type, _octets("option data", data), reason))

    @property
    def TYPE(self):  # noqa: N802 - mirrors the class attribute of known options
        return self.type

    @property
    def kind(self):
        """The option class this should have been."""
        return OPTION_TYPES[self.type]

    def body(self):
        return self.data


OPTION_TYPES = {
    cls.TYPE: cls
    for cls in (
        BindingRefreshAdvice,
        AlternateCareOfAddress,
        BindingAuthorizationData,
        MobileNodeIdentifier,
        MobilityMessageAuthentication,
        MobilityMessageReplayProtection,
        HomeNetworkPrefix,
        HandoffIndicator,
        AccessTechnologyType,
        MobileNodeLinkLayerIdentifier,
        LinkLocalAddress,
        Timestamp,
        IPv4HomeAddressRequest,
        IPv4HomeAddressReply,
        IPv4DefaultRouterAddress,
        IPv4DhcpSupportMode,
        RestartCounter,
    )
}


# ---------------------------------------------------------------- messages


class MobilityMessage(_Value):
    """Base of the Mobility Header messages; C{MH_TYPE} is the MH type."""

    __slots__ = ()
    MH_TYPE = None
    #: Octets of fixed message data after the 6-octet MH header.
    FIXED = 0

    def fixed(self):
        """The fixed message data between the checksum and the options."""
        raise NotImplementedError

    def option(self, optionType):
        """The first option of class C{optionType}, or None."""
        for o in self.options:
            if type(o) is optionType:
                return o
        return None

    def malformed(self, optionType=None):
        """
        The L{MalformedOption}s of this message: all of them, or those that
        should have been of class C{optionType}.
        """
        return tuple(o for o in self.options if type(o) is MalformedOption
                     and (optionType is None or o.type == optionType.TYPE))


def _options(options):
    options = tuple(options)
    for o in options:
        if not isinstance(o, MobilityOption):
            raise EncodeError(f"not a mobility option: {o!r}")
    for o in options[:-1]:
        if o.LAST:
            raise EncodeError(f"{type(o).__name__} must be the last option")
    return options


class BindingRefreshRequest(MobilityMessage, namedtuple("_BRR", "options")):
    """Binding Refresh Request (MH type 0, RFC 6275 6.1.2)."""

    __slots__ = ()
    MH_TYPE = MH_BRR
    FIXED = 2

    def __new__(cls, options=()):
        return tuple.__new__(cls, (_options(options),))

    def fixed(self):
        return b"\x00\x00"

    @classmethod
    def _fromFixed(cls, fixed, options):
        return tuple.__new__(cls, (options,))


class BindingUpdate(
    MobilityMessage, namedtuple("_BU", "sequence flags lifetime options")
):
    """
    Binding Update (MH type 5, RFC 6275 6.1.7); with the P flag a Proxy
    Binding Update (RFC 5213). C{lifetime} is in units of 4 seconds; 0
    deregisters.
    """

    __slots__ = ()
    MH_TYPE = MH_BU
    FIXED = 6

    def __new__(cls, sequence, flags=BU_A | BU_H | BU_P, lifetime=0, options=()):
        return tuple.__new__(
            cls,
            (
                _u16("sequence number", sequence),
                _u16("flags", flags),
                _u16("lifetime", lifetime),
                _options(options),
            ),
        )

    def fixed(self):
        return struct.pack("!HHH", self.sequence, self.flags, self.lifetime)

    @classmethod
    def _fromFixed(cls, fixed, options):
        return tuple.__new__(cls, struct.unpack("!HHH", fixed) + (options,))

    @property
    def lifetimeSeconds(self):
        """The requested lifetime in seconds."""
        return self.lifetime * LIFETIME_UNIT

    @property
    def proxy(self):
        """True for a Proxy Binding Update (P flag)."""
        return bool(self.flags & BU_P)


class BindingAcknowledgement(
    MobilityMessage,
    namedtuple("_BA", "status flags sequence lifetime options"),
):
    """
    Binding Acknowledgement (MH type 6, RFC 6275 6.1.8); C{lifetime} is the
    granted lifetime in units of 4 seconds.
    """

    __slots__ = ()
    MH_TYPE = MH_BA
    FIXED = 6

    def __new__(cls, status, flags=0, sequence=0, lifetime=0, options=()):
        return tuple.__new__(
            cls,
            (
                _u8("status", status),
                _u8("flags", flags),
                _u16("sequence number", sequence),
                _u16("lifetime", lifetime),
                _options(options),
            ),
        )

    def fixed(self):
        return struct.pack(
            "!BBHH", self.status, self.flags, self.sequence, self.lifetime
        )

    @classmethod
    def _fromFixed(cls, fixed, options):
        return tuple.__new__(cls, struct.unpack("!BBHH", fixed) + (options,))

    @property
    def accepted(self):
        """True when the status is below 128."""
        return self.status < 128

    @property
    def lifetimeSeconds(self):
        """The granted lifetime in seconds."""
        return self.lifetime * LIFETIME_UNIT


class BindingError(
    MobilityMessage, namedtuple("_BE", "status homeAddress options")
):
    """Binding Error (MH type 7, RFC 6275 6.1.9)."""

    __slots__ = ()
    MH_TYPE = MH_BE
    FIXED = 18

    def __new__(cls, status, homeAddress=_UNSPECIFIED, options=()):
        return tuple.__new__(
            cls,
            (
                _u8("status", status),
                _addr("home address", homeAddress),
                _options(options),
            ),
        )

    def fixed(self):
        return bytes((self.status, 0)) + self.homeAddress.packed

    @classmethod
    def _fromFixed(cls, fixed, options):
        return tuple.__new__(cls, (fixed[0], IPv6Address(bytes(fixed[2:])), options))


class Heartbeat(MobilityMessage, namedtuple("_HB", "sequence flags options")):
    """
    Heartbeat (MH type 13, RFC 5847 5.1): 14 reserved bits, the U and R
    flags (L{HB_U}, L{HB_R}), a 32-bit sequence number, options (a
    Response carries the sender's L{RestartCounter}). A Request has R
    clear; its Response repeats its sequence number. Reserved bits are
    sent as zero and ignored on receipt.
    """

    __slots__ = ()
    MH_TYPE = MH_HEARTBEAT
    FIXED = 6

    def __new__(cls, sequence, flags=0, options=()):
        flags = _u16("flags", flags)
        if flags & ~(HB_U | HB_R):
            raise EncodeError(f"Heartbeat flags {flags:#06x}: only U (0x2) and R (0x1) exist")
        return tuple.__new__(cls, (_u32("sequence number", sequence), flags,
                                   _options(options)))

    def fixed(self):
        return struct.pack("!HI", self.flags, self.sequence)

    @classmethod
    def _fromFixed(cls, fixed, options):
        flags, sequence = struct.unpack("!HI", fixed)
        return tuple.__new__(cls, (sequence, flags & (HB_U | HB_R), options))

    @property
    def response(self):
        """True for a Heartbeat Response (R flag), False for a Request."""
        return bool(self.flags & HB_R)

    @property
    def unsolicited(self):
        """True for an unsolicited Response (U flag)."""
        return bool(self.flags & HB_U)


class BindingRevocation:
    """
    The Binding Revocation message (MH type 16, RFC 5846 6.1): its first
    octet, the B.R. Type, says whether it is a L{RevocationIndication} (1)
    or a L{RevocationAcknowledgement} (2); both then carry an 8-bit code
    (the Revocation Trigger or the Status), a 16-bit sequence number, the P,
    V and G flags (L{BR_P}, L{BR_V}, L{BR_G}) over 13 reserved bits, and
    options. Reserved bits are sent as zero and ignored on receipt; another
    B.R. Type is a L{DecodeError}.
    """

    MH_TYPE = MH_BINDING_REVOCATION
    FIXED = 6
    _FLAGS = BR_P | BR_V | BR_G

    @classmethod
    def _fromFixed(cls, fixed, options):
        kind, code, sequence, flags = struct.unpack("!BBHH", fixed)
        message = _REVOCATIONS.get(kind)
        if message is None:
            raise DecodeError(f"Binding Revocation type {kind}: only 1 (Indication) and "
                              "2 (Acknowledgement) exist")
        return tuple.__new__(message, (code, sequence, flags & cls._FLAGS, options))


class _Revocation(MobilityMessage):
    """What a Binding Revocation Indication and Acknowledgement share."""

    __slots__ = ()
    MH_TYPE = MH_BINDING_REVOCATION
    FIXED = 6

    @classmethod
    def _make(cls, code, sequence, flags, options):
        flags = _u16("flags", flags)
        if flags & ~BindingRevocation._FLAGS:
            raise EncodeError(f"Binding Revocation flags {flags:#06x}: only P (0x8000), "
                              "V (0x4000) and G (0x2000) exist")
        return tuple.__new__(cls, (_u8(cls._CODE, code), _u16("sequence number", sequence),
                                   flags, _options(options)))

    def fixed(self):
        return struct.pack("!BBHH", self.BR_TYPE, self[0], self.sequence, self.flags)

    @property
    def proxy(self):
        """True for a proxy binding (P flag)."""
        return bool(self.flags & BR_P)

    @property
    def ipv4Only(self):
        """True when only the IPv4 home address bindings are meant (V flag)."""
        return bool(self.flags & BR_V)

    @property
    def globalRevocation(self):
        """True for all the bindings of the peer (G flag)."""
        return bool(self.flags & BR_G)


class RevocationIndication(_Revocation, namedtuple("_BRI", "trigger sequence flags options")):
    """
    Binding Revocation Indication (RFC 5846 6.1): the revoking node asks
    its peer to end the bindings the options name, for C{trigger} (a
    L{RevocationTrigger} value).
    """

    __slots__ = ()
    BR_TYPE = BR_INDICATION
    _CODE = "revocation trigger"

    def __new__(cls, trigger, sequence, flags=BR_P, options=()):
        return cls._make(trigger, sequence, flags, options)


class RevocationAcknowledgement(
        _Revocation, namedtuple("_BRA", "status sequence flags options")):
    """
    Binding Revocation Acknowledgement (RFC 5846 6.2): the answer to a
    L{RevocationIndication}, with its sequence number and a
    L{RevocationStatus} value.
    """

    __slots__ = ()
    BR_TYPE = BR_ACKNOWLEDGEMENT
    _CODE = "status"

    def __new__(cls, status, sequence, flags=BR_P, options=()):
        return cls._make(status, sequence, flags, options)

    @property
    def accepted(self):
        """True when the status is below 128 (success, partial success)."""
        return self.status < 128


_REVOCATIONS = {BR_INDICATION: RevocationIndication,
                BR_ACKNOWLEDGEMENT: RevocationAcknowledgement}


class UnknownMessage(MobilityMessage, namedtuple("_UM", "mhType data")):
    """
    A Mobility Header of a type netlmm does not process: the message data
    after the checksum, kept so the receiver can answer with a Binding Error.
    """

    __slots__ = ()

    def __new__(cls, mhType, data):
        mhType = _u8("MH type", mhType)
        if mhType in MESSAGE_TYPES:
            # It would decode as the known message, not as itself.
            raise EncodeError(
                f"MH type {mhType} is {MESSAGE_TYPES[mhType].__name__}; use that class"
            )
        return tuple.__new__(cls, (mhType, _octets("data", data, 0, 2042)))

    @property
    def MH_TYPE(self):  # noqa: N802
        return self.mhType

    options = ()

    def fixed(self):
        return self.data


MESSAGE_TYPES = {
    cls.MH_TYPE: cls
    for cls in (BindingRefreshRequest, BindingUpdate, BindingAcknowledgement, BindingError,
                Heartbeat, BindingRevocation)
}


# ---------------------------------------------------------------- codec


def _padding(count):
    """Pad1 or PadN for C{count} octets."""
    if count == 1:
        return b"\x00"
    return bytes((1, count - 2)) + bytes(count - 2)


def _pad(out, count):
    if count:
        out.append(_PADDING[count] if count < 8 else _padding(count))


_PADDING = [b""] + [_padding(n) for n in range(1, 8)]
_HEADER = struct.Struct("!BBBBH").pack
_CHECKSUM = struct.Struct("!H").pack


def encodeMessage(message, source=None, destination=None):
    """
    The Mobility Header for C{message}. With C{source} and C{destination}
    (the IPv6 addresses of the packet) the checksum is computed; without them
    it is left zero for the kernel to fill (raw sockets, IPV6_CHECKSUM).
    """
    if not isinstance(message, MobilityMessage):
        raise EncodeError(f"not a mobility message: {message!r}")
    out = [b"", message.fixed()]
    pos = 6 + len(out[1])
    for option in message.options:
        body = option.body()
        if len(body) > 255:
            raise EncodeError(
                f"{type(option).__name__} option data is {len(body)} octets; at most 255 fit"
            )
        x, y = option.ALIGN
        pad = (y - pos) % x
        if option.LAST:
            # The last option must end the header on an 8-octet boundary
            # with no padding after it. Some lengths can never do that
            # (4n+1 with an authenticator that is not a multiple of 4
            # octets); refuse them rather than loop.
            for _ in range(8):
                if (pos + pad + 2 + len(body)) % 8 == 0:
                    break
                pad += x
            else:
                raise EncodeError(
                    f"{type(option).__name__} with {len(body)} octets of data "
                    "cannot end the header on an 8-octet boundary"
                )
        if pad:
            _pad(out, pad)
            pos += pad
        out.append(bytes((option.TYPE, len(body))) + body)
        pos += 2 + len(body)
    pad = (-pos) % 8
    if pad:
        _pad(out, pad)
        pos += pad
    if pos > 2048:
        raise EncodeError(f"message is {pos} octets; at most 2048 fit in Header Len")
    out[0] = _HEADER(IPPROTO_NONE, pos // 8 - 1, message.MH_TYPE, 0, 0)
    data = b"".join(out)
    if source is not None and destination is not None:
        checksum = mhChecksum(_packed(source), _packed(destination), data)
        data = data[:4] + _CHECKSUM(checksum) + data[6:]
    return data


def decodeOptions(data, start, types=None):
    """
    The mobility options in C{data} from offset C{start} to its end, padding
    left out. Unknown types become L{UnknownOption}, known ones whose data
    is not valid L{MalformedOption}. Raises L{DecodeError} only when the
    layout is broken (an option runs past the end). C{types}: option type ->
    class, by default L{OPTION_TYPES}.
    """
    options = []
    append = options.append
    types = OPTION_TYPES if types is None else types
    pos = start
    end = len(data)
    while pos < end:
        kind = data[pos]
        if kind == 0:
            pos += 1
            continue
        if pos + 2 > end:
            raise DecodeError(f"option at offset {pos}: truncated option header")
        length = data[pos + 1]
        bodyEnd = pos + 2 + length
        if bodyEnd > end:
            raise DecodeError(
                f"option type {kind} at offset {pos}: length {length} runs past the header"
            )
        if kind != 1:
            body = data[pos + 2:bodyEnd]
            cls = types.get(kind)
            if cls is None:
                append(tuple.__new__(UnknownOption, (kind, bytes(body))))
            else:
                try:
                    append(cls.fromBody(body))
                except DecodeError as e:
                    append(tuple.__new__(MalformedOption, (kind, bytes(body), str(e))))
        pos = bodyEnd
    return tuple(options)


def decodeMessage(data, source=None, destination=None):
    """
    Decode one Mobility Header. With C{source} and C{destination} the
    checksum is verified. Raises only L{DecodeError}: a known option with
    invalid data does not, it decodes to a L{MalformedOption}.
    """
    data = bytes(data)
    if len(data) < 8:
        raise DecodeError(f"Mobility Header is {len(data)} octets; at least 8 needed")
    proto, hdrLen, mhType = data[0], data[1], data[2]
    declared = (hdrLen + 1) * 8
    if declared != len(data):
        raise DecodeError(
            f"Header Len says {declared} octets but {len(data)} were received"
        )
    if proto != IPPROTO_NONE:
        raise DecodeError(f"Payload Proto is {proto}, expected {IPPROTO_NONE}")
    if source is not None and destination is not None:
        if mhChecksum(_packed(source), _packed(destination), data) != 0:
            raise DecodeError("Mobility Header checksum is wrong")
    cls = MESSAGE_TYPES.get(mhType)
    if cls is None:
        return tuple.__new__(UnknownMessage, (mhType, data[6:]))
    if 6 + cls.FIXED > len(data):
        raise DecodeError(
            f"{cls.__name__} needs {6 + cls.FIXED} octets, header is {len(data)}"
        )
    fixed = data[6:6 + cls.FIXED]
    return cls._fromFixed(fixed, decodeOptions(data, 6 + cls.FIXED))


def checksumValid(data, source, destination):
    """True when C{data} (a whole Mobility Header) has a correct checksum."""
    return mhChecksum(_packed(source), _packed(destination), data) == 0
