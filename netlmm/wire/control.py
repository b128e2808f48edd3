"""
The MAG <-> PMIP client protocol (draft-singh-netlmm-protocol-02 section 4.9).

Every message starts with the draft's 8-octet header::

    Type (8) | Length (8) | Ver (3) | Reserved (13) | Transaction Number (32)

followed by options ``Type (8) | Len (8) | data``. Length counts the whole
message in octets, so a message can be framed on a byte stream by its header.
The draft defines Trigger (1) and Notification (2) and names three options
(L2-ID, IP address, container) without numbers; netlmm assigns the numbers
below and adds what the flows need. ``doc/protocol.md`` section 3 documents
them, and the length limits (L{MAX_MN_ID}, L{MAX_LINK_LAYER_ID}) that the
8-bit Length imposes.

Each message class validates its fields when built (L{EncodeError}); the
decoder reads the options through one table (L{_OPTIONS}) and builds the
message with the same constructor, so a value the constructor refuses is a
L{DecodeError} on receipt, with the same text.

This module imports nothing from Twisted.
"""

import struct
from collections import namedtuple
from ipaddress import (
    IPv4Address, IPv4Interface, IPv6Address, IPv6Network,
)

from netlmm.wire.errors import DecodeError, EncodeError
from netlmm.wire.mh import _Value, _addr, _octets, _u8, _u32

VERSION = 1
HEADER = 8
MAX_LENGTH = 0xFF

#: The longest MN identifier (L2-ID option), octets. The 8-bit Length of
#: every message is the limit: a success Notification carries the
#: identifier twice (its L2-ID option, and the MN Identifier option the LMA
#: echoes inside the PBAck in the container). With 64 octets the
#: Notification with its container fits in 255 octets for netlmm's own LMA
#: in the netlmm dialect with RFC 4285 (HMAC-SHA256-128) and a pHoA or a
#: prefix; 64 also holds every 3GPP NAI ("0<IMSI>@nai.epc.mncXXX.mccXXX.
#: 3gppnetwork.org" is 53 octets). doc/protocol.md 3.5 has the arithmetic.
MAX_MN_ID = 64
#: The longest link-layer identifier (a MAC is 6 or 8 octets).
MAX_LINK_LAYER_ID = 32

# Message types.
TRIGGER = 1
NOTIFICATION = 2
DETACH = 3
#: Between PMIP clients (Appendix B): is this pHoA used by another mobile?
CONFLICT_REQUEST = 4
CONFLICT_RESPONSE = 5

# Option types (assigned by netlmm; the draft leaves them open).
OPT_L2_ID = 1
OPT_IP_ADDRESS = 2
OPT_CONTAINER = 3
OPT_ADDRESS_MODE = 4
OPT_RESULT = 5
OPT_MAG_ADDRESS = 6
#: A per-MN home network prefix (draft E.3, RFC 5213).
OPT_PREFIX = 7
#: An IPv4 home address (draft E.2, RFC 5844).
OPT_IPV4 = 8
#: The mobile's IPv4 default router (RFC 5844).
OPT_IPV4_ROUTER = 9
#: The mobile's link-layer identifier (its MAC on Ethernet and Wi-Fi).
OPT_LINK_LAYER_ID = 10
#: The access technology of the mobile's link (RFC 5213 8.5 values).
OPT_ACCESS_TECHNOLOGY = 11
#: The address of the LMA that anchors the mobile, where the MAG's tunnel
#: goes (draft 4.4: a MAG with tunnels to several LMAs).
OPT_LMA_ADDRESS = 12
#: The other MAG of a handoff (16 octets): in the Notification that answers
#: a handoff's Trigger, the MAG the binding moved from; in a MOVED, the MAG
#: it moved to. The MAGs learn their neighbours from it (draft Appendix D).
OPT_PEER_MAG = 13


class AddressMode:
    """How the mobile's home address or prefix is obtained (Trigger option 4)."""

    #: From a DHCPv6 server, the MAG acting as relay (section 4.1 step 2).
    STATEFUL = 1
    #: Configured by the mobile itself (SLAAC); DAD is needed (Appendix B).
    STATELESS = 2
    #: To be assigned by the LMA in the PBAck (Appendix A).
    LMA_ASSIGNED = 3
    #: Known to the MAG by configuration or context transfer.
    STATIC = 4
    #: A prefix of its own for the mobile (draft E.3, RFC 5213): the LMA
    #: assigns it (or confirms the one the Trigger names), the mobile forms
    #: its addresses in it. No IP address option.
    PREFIX = 5

    NAMES = {1: "stateful", 2: "stateless", 3: "lma-assigned", 4: "static",
             5: "prefix"}


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
    #: The LMA accepted, but its answer cannot be used (a prefix where an
    #: address was asked, no home assigned...): the PMIP client deregisters
    #: what the LMA bound. The container holds the PBAck.
    PBACK_UNUSABLE = 11
    #: Unsolicited: the mobile is anchored at another LMA now (draft 4.4);
    #: the Notification names the new home (C{prefix}) and LMA (C{lma}). The
    #: MAG advertises the new prefix, deprecates the old one and keeps its
    #: tunnel to the old LMA until it releases the old home (a Detach naming
    #: it).
    REANCHORED = 12

    NAMES = {
        0: "success", 1: "pback-rejected", 2: "phoa-mismatch",
        3: "lma-unreachable", 4: "address-conflict", 5: "malformed",
        6: "moved", 7: "not-authorized", 8: "superseded", 9: "unknown-mn",
        10: "binding-lost", 11: "pback-unusable", 12: "reanchored",
    }


class Conflict:
    """The result of a Conflict Detection Response (option 5)."""

    NO_CONFLICT = 0
    CONFLICT_DETECTED = 1
    #: The same mobile (same MN identifier and pHoA) is bound through the
    #: answering client: it took the mobile over (draft E.1). An answerer
    #: that does not know it says NO_CONFLICT instead.
    HELD_HERE = 2

    NAMES = {0: "no-conflict", 1: "conflict-detected", 2: "held-here"}


# ---------------------------------------------------------------- field checks


def mnIdProblem(mnId):
    """
    Why C{mnId} (bytes) cannot be an MN identifier, or None when it can: 1 to
    L{MAX_MN_ID} octets of UTF-8 text without control characters (an NAI,
    RFC 4283 subtype 1; RFC 7542 allows no control characters). This is the
    one rule every entry point applies (the MAG's detectors and control
    socket, the MAG channel, the PMIP client's PBAs).
    """
    if not isinstance(mnId, (bytes, bytearray)):
        return f"must be bytes, not {type(mnId).__name__}"
    if not 1 <= len(mnId) <= MAX_MN_ID:
        return f"is {len(mnId)} octets; 1..{MAX_MN_ID} are allowed"
    try:
        text = bytes(mnId).decode("utf-8")
    except UnicodeDecodeError as e:
        return f"is not valid UTF-8 (octet {e.start})"
    for i, c in enumerate(text):
        if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0:
            return f"has control character U+{ord(c):04X} at character {i}"
    return None


def showMnId(mnId):
    """An MN identifier for a log line: the text, or a hex dump of bad octets."""
    if isinstance(mnId, (bytes, bytearray)) and mnIdProblem(mnId) is None:
        return bytes(mnId).decode("utf-8")
    if isinstance(mnId, (bytes, bytearray)):
        shown = bytes(mnId[:MAX_MN_ID]).hex()
        return f"<{len(mnId)} octets: {shown}{'...' if len(mnId) > MAX_MN_ID else ''}>"
    return repr(mnId)


def _mnId(value):
    problem = mnIdProblem(value)
    if problem is not None:
        raise EncodeError(f"MN identifier {showMnId(value)} {problem}")
    return bytes(value)


def _optional(check, name, value):
    return None if value is None else check(name, value)


def _prefix(name, value):
    if isinstance(value, IPv6Network):
        return value
    try:
        return IPv6Network(value)
    except (ValueError, TypeError) as e:
        raise EncodeError(f"{name} must be an IPv6 prefix without host bits, "
                          f"not {value!r} ({e})") from None


def _ipv4(name, value):
    try:
        return value if isinstance(value, IPv4Interface) else IPv4Interface(value)
    except (ValueError, TypeError) as e:
        raise EncodeError(f"{name} must be an IPv4 address/length, not {value!r}") from e


def _ipv4Address(name, value):
    try:
        return value if isinstance(value, IPv4Address) else IPv4Address(value)
    except (ValueError, TypeError) as e:
        raise EncodeError(f"{name} must be an IPv4 address, not {value!r}") from e


def _linkLayerId(name, value):
    return _octets(name, value, 1, MAX_LINK_LAYER_ID)


def _accessTechnology(name, value):
    value = _u8(name, value)
    if value == 0:
        raise EncodeError(f"{name} 0 is reserved (RFC 5213 8.5)")
    return value


def _mode(name, value):
    value = _u8(name, value)
    if value not in AddressMode.NAMES:
        raise EncodeError(f"{name} {value} is not defined "
                          f"({min(AddressMode.NAMES)}..{max(AddressMode.NAMES)})")
    return value


def _container(name, value):
    value = _octets(name, value, 0, MAX_LENGTH)
    # A Mobility Header is a whole number of 8-octet units (RFC 6275 6.1.1).
    if len(value) < 8 or len(value) % 8:
        raise EncodeError(f"{name} of {len(value)} octets is not a Mobility "
                          "Header (a multiple of 8 octets, at least 8)")
    return value


def _extras(extra):
    extra = tuple(extra)
    for e in extra:
        if not isinstance(e, ExtraOption):
            raise EncodeError(f"not an ExtraOption: {e!r}")
    return extra


# ---------------------------------------------------------------- messages


class ControlMessage(_Value):
    """
    Base of the MAG <-> PMIP client messages. C{OPTIONS} lists the option
    types the message carries, in the order the encoder writes them;
    C{REQUIRED} those it must carry.
    """

    __slots__ = ()
    TYPE = None
    OPTIONS = ()
    REQUIRED = ()


class ExtraOption(_Value, namedtuple("_Extra", "type data")):
    """An option of a type this version does not know, kept for re-encoding."""

    __slots__ = ()

    def __new__(cls, type, data):
        type = _u8("option type", type)
        if type in _OPTIONS:
            # It would decode as the known option, not as an extra one.
            raise EncodeError(f"option type {type} is a known option, not an extra")
        return tuple.__new__(cls, (type, _octets("option data", data)))


class Trigger(
    ControlMessage,
    namedtuple("_Trigger", "transaction mnId magAddress phoa mode extra "
                           "prefix ipv4 linkLayerId accessTechnology"),
):
    """
    MAG -> PMIP client: mobile C{mnId} is attached to the MAG whose data-plane
    address (the pCoA) is C{magAddress}. C{phoa} is None when the LMA is to
    assign it, and always in the PREFIX mode, where C{prefix} may name the
    prefix the MAG knows (None: the LMA assigns one). C{ipv4} present means
    the mobile wants IPv4: C{0.0.0.0/0} asks for an address, another value
    names the one it has. C{linkLayerId} and C{accessTechnology} describe the
    mobile's link (RFC 5213's MN Link-layer Identifier and ATT).
    """

    __slots__ = ()
    TYPE = TRIGGER
    OPTIONS = (OPT_L2_ID, OPT_MAG_ADDRESS, OPT_IP_ADDRESS, OPT_ADDRESS_MODE,
               OPT_PREFIX, OPT_IPV4, OPT_LINK_LAYER_ID, OPT_ACCESS_TECHNOLOGY)
    REQUIRED = (OPT_L2_ID, OPT_MAG_ADDRESS, OPT_ADDRESS_MODE)

    def __new__(cls, transaction, mnId, magAddress, phoa=None,
                mode=AddressMode.STATIC, extra=(), prefix=None, ipv4=None,
                linkLayerId=None, accessTechnology=None):
        mode = _mode("address mode", mode)
        phoa = _optional(_addr, "pHoA", phoa)
        prefix = _optional(_prefix, "home network prefix", prefix)
        if mode == AddressMode.PREFIX and phoa is not None:
            raise EncodeError("a Trigger in address mode prefix carries no pHoA "
                              "(IP address option)")
        if mode != AddressMode.PREFIX and prefix is not None:
            raise EncodeError(f"a Trigger in address mode {AddressMode.NAMES[mode]} "
                              "carries no home network prefix (only mode prefix does)")
        return tuple.__new__(cls, (
            _u32("transaction number", transaction),
            _mnId(mnId),
            _addr("MAG address", magAddress),
            phoa,
            mode,
            _extras(extra),
            prefix,
            _optional(_ipv4, "IPv4 home address", ipv4),
            _optional(_linkLayerId, "link-layer identifier", linkLayerId),
            _optional(_accessTechnology, "access technology type", accessTechnology),
        ))


class Detach(
    ControlMessage,
    namedtuple("_Detach", "transaction mnId magAddress phoa extra linkLayerId prefix"),
):
    """
    MAG -> PMIP client: mobile C{mnId} has left the MAG at C{magAddress}.
    With C{prefix} (an old home a REANCHORED Notification deprecated) it
    releases only that home: the mobile stays, the old binding is
    deregistered.
    """

    __slots__ = ()
    TYPE = DETACH
    OPTIONS = (OPT_L2_ID, OPT_MAG_ADDRESS, OPT_IP_ADDRESS, OPT_LINK_LAYER_ID, OPT_PREFIX)
    REQUIRED = (OPT_L2_ID, OPT_MAG_ADDRESS)

    def __new__(cls, transaction, mnId, magAddress, phoa=None, extra=(),
                linkLayerId=None, prefix=None):
        return tuple.__new__(cls, (
            _u32("transaction number", transaction),
            _mnId(mnId),
            _addr("MAG address", magAddress),
            _optional(_addr, "pHoA", phoa),
            _extras(extra),
            _optional(_linkLayerId, "link-layer identifier", linkLayerId),
            _optional(_prefix, "home network prefix", prefix),
        ))


class Notification(
    ControlMessage,
    namedtuple("_Notification", "transaction result mnId phoa pback extra "
                                "prefix ipv4 ipv4Router lma peerMag"),
):
    """
    PMIP client -> MAG: the outcome of the Trigger or Detach with the same
    transaction number (0 for an unsolicited one). C{pback} is the Proxy
    Binding Acknowledgement exactly as received from the LMA, when there was
    one and it fits (the draft's container option; see L{withContainer}).
    On SUCCESS C{prefix}, C{ipv4} and C{ipv4Router} carry what the LMA
    assigned, when it did, and C{lma} the tunnel address of the LMA that
    anchors the mobile when the PMIP client has several (draft 4.4; None:
    the MAG's configured LMA). C{peerMag}: the other MAG of a handoff (the
    previous one in a SUCCESS, the new one in a MOVED), else None.
    """

    __slots__ = ()
    TYPE = NOTIFICATION
    OPTIONS = (OPT_RESULT, OPT_L2_ID, OPT_IP_ADDRESS, OPT_PREFIX, OPT_IPV4,
               OPT_IPV4_ROUTER, OPT_LMA_ADDRESS, OPT_PEER_MAG, OPT_CONTAINER)
    REQUIRED = (OPT_RESULT,)

    def __new__(cls, transaction, result, mnId=None, phoa=None, pback=None,
                extra=(), prefix=None, ipv4=None, ipv4Router=None, lma=None, peerMag=None):
        return tuple.__new__(cls, (
            _u32("transaction number", transaction),
            _u8("result", result),
            None if mnId is None else _mnId(mnId),
            _optional(_addr, "pHoA", phoa),
            _optional(_container, "container", pback),
            _extras(extra),
            _optional(_prefix, "home network prefix", prefix),
            _optional(_ipv4, "IPv4 home address", ipv4),
            _optional(_ipv4Address, "IPv4 default router", ipv4Router),
            _optional(_addr, "LMA address", lma),
            _optional(_addr, "peer MAG", peerMag),
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
    OPTIONS = (OPT_L2_ID, OPT_IP_ADDRESS)
    REQUIRED = OPTIONS

    def __new__(cls, transaction, mnId, phoa, extra=()):
        return tuple.__new__(cls, (
            _u32("transaction number", transaction),
            _mnId(mnId),
            _addr("pHoA", phoa),
            _extras(extra),
        ))


class ConflictResponse(
    ControlMessage,
    namedtuple("_ConflictResponse", "transaction result mnId phoa extra"),
):
    """
    A peer's answer to the L{ConflictRequest} with the same transaction:
    C{result} is L{Conflict}.NO_CONFLICT, CONFLICT_DETECTED or HELD_HERE;
    C{mnId} and C{phoa} repeat the request's.
    """

    __slots__ = ()
    TYPE = CONFLICT_RESPONSE
    OPTIONS = (OPT_RESULT, OPT_L2_ID, OPT_IP_ADDRESS)
    REQUIRED = OPTIONS

    def __new__(cls, transaction, result, mnId, phoa, extra=()):
        return tuple.__new__(cls, (
            _u32("transaction number", transaction),
            _u8("result", result),
            _mnId(mnId),
            _addr("pHoA", phoa),
            _extras(extra),
        ))


MESSAGES = {cls.TYPE: cls for cls in (Trigger, Notification, Detach,
                                      ConflictRequest, ConflictResponse)}
_NAMES = {TRIGGER: "Trigger", NOTIFICATION: "Notification", DETACH: "Detach",
          CONFLICT_REQUEST: "Conflict Detection Request",
          CONFLICT_RESPONSE: "Conflict Detection Response"}


# ---------------------------------------------------------------- options


def _fixed(size):
    def decode(name, data):
        if len(data) != size:
            raise DecodeError(f"{name}: {len(data)} octets, expected {size}")
        return data
    return decode


def _decodeAddress(name, data):
    return IPv6Address(_fixed(16)(name, data))


def _decodeOctet(name, data):
    return _fixed(1)(name, data)[0]


def _lengthAndAddress(addressType, bits):
    """A decoder for 'prefix length (8) | address' of C{addressType}."""

    def decode(name, data):
        _fixed(1 + bits // 8)(name, data)
        if data[0] > bits:
            raise DecodeError(f"{name}: prefix length {data[0]} (at most {bits})")
        return f"{addressType(data[1:])}/{data[0]}"
    return decode


def _encodePrefix(prefix):
    return bytes((prefix.prefixlen,)) + prefix.network_address.packed


def _encodeIpv4(interface):
    return bytes((interface.network.prefixlen,)) + interface.ip.packed


def _raw(name, data):
    return data


class _Option(namedtuple("_Option", "name field decode encode")):
    """How one known option maps to a message field."""

    __slots__ = ()


#: Option type -> its name (for errors), the message field it fills, and
#: how its data decodes (to what the constructor takes) and encodes.
_OPTIONS = {
    OPT_L2_ID: _Option("L2-ID (MN identifier)", "mnId", _raw, bytes),
    OPT_IP_ADDRESS: _Option("IP address (pHoA)", "phoa", _decodeAddress,
                            lambda a: a.packed),
    OPT_CONTAINER: _Option("container", "pback", _raw, bytes),
    OPT_ADDRESS_MODE: _Option("address-mode", "mode", _decodeOctet,
                              lambda v: bytes((v,))),
    OPT_RESULT: _Option("result", "result", _decodeOctet, lambda v: bytes((v,))),
    OPT_MAG_ADDRESS: _Option("MAG address", "magAddress", _decodeAddress,
                             lambda a: a.packed),
    OPT_PREFIX: _Option("home network prefix", "prefix", _lengthAndAddress(IPv6Address, 128),
                        _encodePrefix),
    OPT_IPV4: _Option("IPv4 home address", "ipv4", _lengthAndAddress(IPv4Address, 32),
                      _encodeIpv4),
    OPT_IPV4_ROUTER: _Option("IPv4 default router", "ipv4Router",
                             lambda name, data: IPv4Address(_fixed(4)(name, data)),
                             lambda a: a.packed),
    OPT_LINK_LAYER_ID: _Option("link-layer identifier", "linkLayerId", _raw, bytes),
    OPT_ACCESS_TECHNOLOGY: _Option("access technology type", "accessTechnology",
                                   _decodeOctet, lambda v: bytes((v,))),
    OPT_LMA_ADDRESS: _Option("LMA address", "lma", _decodeAddress, lambda a: a.packed),
    OPT_PEER_MAG: _Option("peer MAG", "peerMag", _decodeAddress, lambda a: a.packed),
}


def _opt(kind, data):
    if len(data) > 255:
        raise EncodeError(f"option {kind} data is {len(data)} octets; at most 255 fit")
    return bytes((kind, len(data))) + data


def encodedLength(message):
    """The octets L{encodeControl} would produce for C{message} (may exceed 255)."""
    size = HEADER
    for kind in message.OPTIONS:
        value = getattr(message, _OPTIONS[kind].field)
        if value is not None:
            size += 2 + len(_OPTIONS[kind].encode(value))
    return size + sum(2 + len(e.data) for e in message.extra)


def withContainer(notification, pback):
    """
    C{notification} with C{pback} in its container when the result still
    fits in 255 octets; else C{notification} unchanged (the container is
    the only optional part a Notification can do without: its own options
    carry the result and whatever was assigned).
    """
    if encodedLength(notification) + 2 + len(pback) > MAX_LENGTH:
        return notification
    return notification._replace(pback=_container("container", pback))


def withLma(notification, lma):
    """
    C{notification} naming C{lma} (an IPv6 address) as the mobile's anchor;
    its container is left out when both would not fit in 255 octets (the
    MAG needs the anchor, the container is informational).
    """
    named = notification._replace(lma=_addr("LMA address", lma))
    if named.pback is not None and encodedLength(named) > MAX_LENGTH:
        named = named._replace(pback=None)
    return named


def withPeerMag(notification, mag):
    """
    C{notification} naming C{mag} (an IPv6 address) as the other MAG of a
    handoff; like L{withLma}, its container is left out when both would not
    fit in 255 octets.
    """
    named = notification._replace(peerMag=_addr("peer MAG", mag))
    if named.pback is not None and encodedLength(named) > MAX_LENGTH:
        named = named._replace(pback=None)
    return named


def encodeControl(message):
    """The bytes of a control message; refuses one longer than 255 octets."""
    if not isinstance(message, ControlMessage):
        raise EncodeError(f"not a control message: {message!r}")
    parts = []
    for kind in message.OPTIONS:
        option = _OPTIONS[kind]
        value = getattr(message, option.field)
        if value is not None:
            parts.append(_opt(kind, option.encode(value)))
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
    cls = MESSAGES.get(kind)
    if cls is None:
        raise DecodeError(f"unknown message type {kind}")
    name = _NAMES[kind]
    fields = {}
    extra = []
    pos = HEADER
    while pos < length:
        if pos + 2 > length:
            raise DecodeError(f"option at offset {pos}: truncated option header")
        okind, olen = data[pos], data[pos + 1]
        end = pos + 2 + olen
        if end > length:
            raise DecodeError(f"option {okind} at offset {pos}: length {olen} runs "
                              f"past the message by {end - length}")
        odata = data[pos + 2:end]
        option = _OPTIONS.get(okind)
        if option is None:
            extra.append(tuple.__new__(ExtraOption, (okind, odata)))
        elif okind not in cls.OPTIONS:
            raise DecodeError(f"option {okind} ({option.name}) does not belong in a {name}")
        elif option.field in fields:
            raise DecodeError(f"option {okind} appears twice")
        else:
            fields[option.field] = option.decode(f"option {okind} ({option.name})", odata)
        pos = end
    for okind in cls.REQUIRED:
        if _OPTIONS[okind].field not in fields:
            raise DecodeError(f"{name} without the {_OPTIONS[okind].name} option")
    try:
        return cls(transaction=transaction, extra=extra, **fields)
    except EncodeError as e:
        raise DecodeError(f"{name}: {e}") from None


def transactionOf(data):
    """The transaction number of a message's header, or None if too short."""
    if len(data) < HEADER:
        return None
    return struct.unpack_from("!I", data, 4)[0]
