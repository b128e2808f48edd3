"""
The MAG <-> PMIP client protocol (draft-singh-netlmm-protocol-02 section 4.9).

Every message starts with the draft's 8-octet header::

    Type (8) | Length (8) | Ver (3) | Reserved (13) | Transaction Number (32)

followed by options ``Type (8) | Len (8) | data``. Length counts the whole
message in octets, so a message can be framed on a byte stream by its header.
The draft defines Trigger (1) and Notification (2) and names three options
(L2-ID, IP address, container) without numbers; netlmm assigns the numbers
below and adds what the flows need. ``doc/protocol.md`` documents them.

This module imports nothing from Twisted.
"""

import struct
from collections import namedtuple
from ipaddress import IPv6Address

from netlmm.wire.errors import DecodeError, EncodeError
from netlmm.wire.mh import _Value, _addr, _octets, _u8, _u32

VERSION = 1
HEADER = 8
MAX_LENGTH = 0xFF

# Message types.
TRIGGER = 1
NOTIFICATION = 2
DETACH = 3
#: Between PMIP clients (Appendix B): is this pHoA used by another mobile?
CONFLICT_REQUEST = 4
CONFLICT_RESPONSE = 5
_TYPES = (TRIGGER, NOTIFICATION, DETACH, CONFLICT_REQUEST, CONFLICT_RESPONSE)

# Option types (assigned by netlmm; the draft leaves them open).
OPT_L2_ID = 1
OPT_IP_ADDRESS = 2
OPT_CONTAINER = 3
OPT_ADDRESS_MODE = 4
OPT_RESULT = 5
OPT_MAG_ADDRESS = 6
_KNOWN_OPTIONS = frozenset(range(OPT_L2_ID, OPT_MAG_ADDRESS + 1))


class AddressMode:
    """How the mobile's pHoA was obtained (Trigger option 4)."""

    #: From a DHCPv6 server, the MAG acting as relay (section 4.1 step 2).
    STATEFUL = 1
    #: Configured by the mobile itself (SLAAC); DAD is needed (Appendix B).
    STATELESS = 2
    #: To be assigned by the LMA in the PBAck (Appendix A).
    LMA_ASSIGNED = 3
    #: Known to the MAG by configuration or context transfer.
    STATIC = 4

    NAMES = {1: "stateful", 2: "stateless", 3: "lma-assigned", 4: "static"}


class Result:
    """Result codes of a Notification (option 5)."""

    SUCCESS = 0
    #: The LMA answered with a status of 128 or more; the container holds it.
    PBACK_REJECTED = 1
    #: The trigger's pHoA is not the one cached for this MN (section 4.7).
    PHOA_MISMATCH = 2
    #: No PBAck came back after every retransmission.
    LMA_UNREACHABLE = 3
    #: Another MN uses this pHoA (Appendix B).
    ADDRESS_CONFLICT = 4
    #: The trigger could not be processed as sent (missing option, bad value).
    MALFORMED = 5
    #: Unsolicited: the MN is now bound through another MAG.
    MOVED = 6
    #: The MAG is not allowed to trigger this PMIP client.
    NOT_AUTHORIZED = 7
    #: A newer trigger for the same MN replaced this one.
    SUPERSEDED = 8
    #: A Detach for an MN the PMIP client does not know.
    UNKNOWN_MN = 9
    #: Unsolicited: the binding ended (lifetime ran out, refresh failed).
    BINDING_LOST = 10

    NAMES = {
        0: "success", 1: "pback-rejected", 2: "phoa-mismatch",
        3: "lma-unreachable", 4: "address-conflict", 5: "malformed",
        6: "moved", 7: "not-authorized", 8: "superseded", 9: "unknown-mn",
        10: "binding-lost",
    }


class Conflict:
    """The result of a Conflict Detection Response (option 5)."""

    NO_CONFLICT = 0
    CONFLICT_DETECTED = 1

    NAMES = {0: "no-conflict", 1: "conflict-detected"}


class ControlMessage(_Value):
    """Base of the MAG <-> PMIP client messages."""

    __slots__ = ()
    TYPE = None


class ExtraOption(_Value, namedtuple("_Extra", "type data")):
    """An option of a type this version does not know, kept for re-encoding."""

    __slots__ = ()

    def __new__(cls, type, data):
        type = _u8("option type", type)
        if type in _KNOWN_OPTIONS:
            # It would decode as the known option, not as an extra one.
            raise EncodeError(f"option type {type} is a known option, not an extra")
        return tuple.__new__(cls, (type, _octets("option data", data)))


def _optAddress(name, value):
    return None if value is None else _addr(name, value)


def _extras(extra):
    extra = tuple(extra)
    for e in extra:
        if not isinstance(e, ExtraOption):
            raise EncodeError(f"not an ExtraOption: {e!r}")
    return extra


class Trigger(
    ControlMessage,
    namedtuple("_Trigger", "transaction mnId magAddress phoa mode extra"),
):
    """
    MAG -> PMIP client: mobile C{mnId} is attached to the MAG whose data-plane
    address (the pCoA) is C{magAddress}. C{phoa} is None when the LMA is to
    assign it.
    """

    __slots__ = ()
    TYPE = TRIGGER

    def __new__(cls, transaction, mnId, magAddress, phoa=None,
                mode=AddressMode.STATIC, extra=()):
        return tuple.__new__(cls, (
            _u32("transaction number", transaction),
            _octets("MN identifier", mnId, 1, 253),
            _addr("MAG address", magAddress),
            _optAddress("pHoA", phoa),
            _u8("address mode", mode),
            _extras(extra),
        ))


class Detach(
    ControlMessage,
    namedtuple("_Detach", "transaction mnId magAddress phoa extra"),
):
    """MAG -> PMIP client: mobile C{mnId} has left the MAG at C{magAddress}."""

    __slots__ = ()
    TYPE = DETACH

    def __new__(cls, transaction, mnId, magAddress, phoa=None, extra=()):
        return tuple.__new__(cls, (
            _u32("transaction number", transaction),
            _octets("MN identifier", mnId, 1, 253),
            _addr("MAG address", magAddress),
            _optAddress("pHoA", phoa),
            _extras(extra),
        ))


class Notification(
    ControlMessage,
    namedtuple("_Notification", "transaction result mnId phoa pback extra"),
):
    """
    PMIP client -> MAG: the outcome of the Trigger or Detach with the same
    transaction number (0 for an unsolicited one). C{pback} is the Proxy
    Binding Acknowledgement exactly as received from the LMA, when there was
    one (the draft's container option).
    """

    __slots__ = ()
    TYPE = NOTIFICATION

    def __new__(cls, transaction, result, mnId=None, phoa=None, pback=None,
                extra=()):
        return tuple.__new__(cls, (
            _u32("transaction number", transaction),
            _u8("result", result),
            None if mnId is None else _octets("MN identifier", mnId, 1, 253),
            _optAddress("pHoA", phoa),
            None if pback is None else _octets("container", pback),
            _extras(extra),
        ))


class ConflictRequest(
    ControlMessage,
    namedtuple("_ConflictRequest", "transaction mnId phoa extra"),
):
    """
    PMIP client -> its peers (Appendix B): mobile C{mnId} has configured
    C{phoa} itself (SLAAC); does another mobile use it?
    """

    __slots__ = ()
    TYPE = CONFLICT_REQUEST

    def __new__(cls, transaction, mnId, phoa, extra=()):
        return tuple.__new__(cls, (
            _u32("transaction number", transaction),
            _octets("MN identifier", mnId, 1, 253),
            _addr("pHoA", phoa),
            _extras(extra),
        ))


class ConflictResponse(
    ControlMessage,
    namedtuple("_ConflictResponse", "transaction result mnId phoa extra"),
):
    """
    A peer's answer to the L{ConflictRequest} with the same transaction:
    C{result} is L{Conflict}.NO_CONFLICT or CONFLICT_DETECTED; C{mnId} and
    C{phoa} repeat the request's.
    """

    __slots__ = ()
    TYPE = CONFLICT_RESPONSE

    def __new__(cls, transaction, result, mnId, phoa, extra=()):
        return tuple.__new__(cls, (
            _u32("transaction number", transaction),
            _u8("result", result),
            _octets("MN identifier", mnId, 1, 253),
            _addr("pHoA", phoa),
            _extras(extra),
        ))


def _opt(kind, data):
    if len(data) > 255:
        raise EncodeError(f"option {kind} data is {len(data)} octets; at most 255 fit")
    return bytes((kind, len(data))) + data


def encodeControl(message):
    """The bytes of a control message; refuses one longer than 255 octets."""
    parts = []
    if isinstance(message, (Trigger, Detach)):
        parts.append(_opt(OPT_L2_ID, message.mnId))
        parts.append(_opt(OPT_MAG_ADDRESS, message.magAddress.packed))
        if message.phoa is not None:
            parts.append(_opt(OPT_IP_ADDRESS, message.phoa.packed))
        if isinstance(message, Trigger):
            parts.append(_opt(OPT_ADDRESS_MODE, bytes((message.mode,))))
    elif isinstance(message, ConflictRequest):
        parts.append(_opt(OPT_L2_ID, message.mnId))
        parts.append(_opt(OPT_IP_ADDRESS, message.phoa.packed))
    elif isinstance(message, ConflictResponse):
        parts.append(_opt(OPT_RESULT, bytes((message.result,))))
        parts.append(_opt(OPT_L2_ID, message.mnId))
        parts.append(_opt(OPT_IP_ADDRESS, message.phoa.packed))
    elif isinstance(message, Notification):
        parts.append(_opt(OPT_RESULT, bytes((message.result,))))
        if message.mnId is not None:
            parts.append(_opt(OPT_L2_ID, message.mnId))
        if message.phoa is not None:
            parts.append(_opt(OPT_IP_ADDRESS, message.phoa.packed))
        if message.pback is not None:
            parts.append(_opt(OPT_CONTAINER, message.pback))
    else:
        raise EncodeError(f"not a control message: {message!r}")
    for e in message.extra:
        parts.append(_opt(e.type, e.data))
    body = b"".join(parts)
    length = HEADER + len(body)
    if length > MAX_LENGTH:
        raise EncodeError(
            f"{type(message).__name__} would be {length} octets; the 8-bit "
            f"Length field allows at most {MAX_LENGTH}"
        )
    return struct.pack("!BBHI", message.TYPE, length, VERSION << 13,
                       message.transaction) + body


def peekLength(data):
    """
    The total length of the message that starts C{data} (at least 2 octets),
    for framing on a stream. Raises L{DecodeError} on an impossible length.
    """
    length = data[1]
    if length < HEADER:
        raise DecodeError(f"Length field is {length}; a message has at least {HEADER} octets")
    return length


def _address(kind, data):
    if len(data) != 16:
        raise DecodeError(f"option {kind}: address of {len(data)} octets, expected 16")
    return IPv6Address(data)


def _oneOctet(kind, data):
    if len(data) != 1:
        raise DecodeError(f"option {kind}: {len(data)} octets, expected 1")
    return data[0]


def decodeControl(data):
    """Decode one whole control message; raises only L{DecodeError}."""
    data = bytes(data)
    if len(data) < HEADER:
        raise DecodeError(f"message is {len(data)} octets; the header alone is {HEADER}")
    kind, length, verword, transaction = struct.unpack_from("!BBHI", data)
    if length != len(data):
        raise DecodeError(f"Length field says {length} octets but {len(data)} were given")
    version = verword >> 13
    if version != VERSION:
        raise DecodeError(f"version {version} is not supported (only {VERSION})")
    if kind not in _TYPES:
        raise DecodeError(f"unknown message type {kind}")
    fields = {}
    extra = []
    pos = HEADER
    while pos < length:
        if pos + 2 > length:
            raise DecodeError(f"option at offset {pos}: truncated option header")
        okind, olen = data[pos], data[pos + 1]
        end = pos + 2 + olen
        if end > length:
            raise DecodeError(f"option {okind} at offset {pos}: length {olen} runs past the message")
        odata = data[pos + 2:end]
        if okind in (OPT_L2_ID, OPT_IP_ADDRESS, OPT_CONTAINER, OPT_ADDRESS_MODE,
                     OPT_RESULT, OPT_MAG_ADDRESS):
            if okind in fields:
                raise DecodeError(f"option {okind} appears twice")
            if okind in (OPT_IP_ADDRESS, OPT_MAG_ADDRESS):
                fields[okind] = _address(okind, odata)
            elif okind in (OPT_ADDRESS_MODE, OPT_RESULT):
                fields[okind] = _oneOctet(okind, odata)
            else:
                fields[okind] = odata
        else:
            extra.append(tuple.__new__(ExtraOption, (okind, odata)))
        pos = end
    extra = tuple(extra)
    if kind == NOTIFICATION:
        if OPT_RESULT not in fields:
            raise DecodeError("Notification without a result option")
        mnId = fields.get(OPT_L2_ID)
        if mnId is not None and not mnId:
            raise DecodeError("empty L2-ID option")
        return tuple.__new__(Notification, (
            transaction, fields[OPT_RESULT], mnId, fields.get(OPT_IP_ADDRESS),
            fields.get(OPT_CONTAINER), extra))
    if kind in (CONFLICT_REQUEST, CONFLICT_RESPONSE):
        name = "Conflict Detection " + ("Request" if kind == CONFLICT_REQUEST else "Response")
        if not fields.get(OPT_L2_ID):
            raise DecodeError(f"{name} without an L2-ID (MN identifier) option")
        if OPT_IP_ADDRESS not in fields:
            raise DecodeError(f"{name} without an IP address (pHoA) option")
        if kind == CONFLICT_REQUEST:
            return tuple.__new__(ConflictRequest, (
                transaction, fields[OPT_L2_ID], fields[OPT_IP_ADDRESS], extra))
        if OPT_RESULT not in fields:
            raise DecodeError(f"{name} without a result option")
        return tuple.__new__(ConflictResponse, (
            transaction, fields[OPT_RESULT], fields[OPT_L2_ID],
            fields[OPT_IP_ADDRESS], extra))
    name = "Trigger" if kind == TRIGGER else "Detach"
    if not fields.get(OPT_L2_ID):
        raise DecodeError(f"{name} without an L2-ID (MN identifier) option")
    if OPT_MAG_ADDRESS not in fields:
        raise DecodeError(f"{name} without a MAG address option")
    if kind == TRIGGER:
        if OPT_ADDRESS_MODE not in fields:
            raise DecodeError("Trigger without an address-mode option")
        return tuple.__new__(Trigger, (
            transaction, fields[OPT_L2_ID], fields[OPT_MAG_ADDRESS],
            fields.get(OPT_IP_ADDRESS), fields[OPT_ADDRESS_MODE], extra))
    return tuple.__new__(Detach, (
        transaction, fields[OPT_L2_ID], fields[OPT_MAG_ADDRESS],
        fields.get(OPT_IP_ADDRESS), extra))


def transactionOf(data):
    """The transaction number of a message's header, or None if too short."""
    if len(data) < HEADER:
        return None
    return struct.unpack_from("!I", data, 4)[0]
