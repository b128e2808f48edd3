"""
The part of DHCPv6 (RFC 8415) a MAG needs as a relay agent (section 4.1
step 2) and as the mobile's proxy server (Appendix A).

Client/server messages (Solicit ... Reply) are L{Message}; Relay-Forward and
Relay-Reply are L{RelayMessage}. Options: Client and Server Identifier,
IA_NA with IA Address, Relay Message, Interface-ID, Status Code, Rapid
Commit, Preference, Elapsed Time and Option Request; any other option
decodes to L{UnknownOption}, which re-encodes byte for byte.

L{decode} reads a message inside its length and raises only
L{DecodeError}; options nest (IA_NA > IA Address > Status Code) at most
L{MAX_DEPTH} deep. A Relay Message option keeps the relayed message as
bytes (C{RelayMessageOption.data}); decode it with L{decode} when needed, so
relay nesting costs nothing until it is read. Values check their ranges when
built (L{EncodeError}). Nothing here imports Twisted.
"""

import struct
from collections import namedtuple
from ipaddress import IPv6Address

from netlmm.wire.errors import DecodeError, EncodeError

CLIENT_PORT = 546
SERVER_PORT = 547
ALL_AGENTS = IPv6Address("ff02::1:2")

# Message types (RFC 8415 7.3).
SOLICIT = 1
ADVERTISE = 2
REQUEST = 3
CONFIRM = 4
RENEW = 5
REBIND = 6
REPLY = 7
RELEASE = 8
DECLINE = 9
RECONFIGURE = 10
INFORMATION_REQUEST = 11
RELAY_FORW = 12
RELAY_REPL = 13

MESSAGE_NAMES = {
    SOLICIT: "Solicit", ADVERTISE: "Advertise", REQUEST: "Request", CONFIRM: "Confirm",
    RENEW: "Renew", REBIND: "Rebind", REPLY: "Reply", RELEASE: "Release",
    DECLINE: "Decline", RECONFIGURE: "Reconfigure",
    INFORMATION_REQUEST: "Information-request", RELAY_FORW: "Relay-forward",
    RELAY_REPL: "Relay-reply",
}

# Option codes (RFC 8415 21).
OPT_CLIENTID = 1
OPT_SERVERID = 2
OPT_IA_NA = 3
OPT_IAADDR = 5
OPT_ORO = 6
OPT_PREFERENCE = 7
OPT_ELAPSED_TIME = 8
OPT_RELAY_MSG = 9
OPT_STATUS_CODE = 13
OPT_RAPID_COMMIT = 14
OPT_INTERFACE_ID = 18

# Status codes (RFC 8415 21.13).
SUCCESS = 0
UNSPEC_FAIL = 1
NO_ADDRS_AVAIL = 2
NO_BINDING = 3
NOT_ON_LINK = 4
USE_MULTICAST = 5
NO_PREFIX_AVAIL = 6

STATUS_NAMES = {
    SUCCESS: "Success", UNSPEC_FAIL: "UnspecFail", NO_ADDRS_AVAIL: "NoAddrsAvail",
    NO_BINDING: "NoBinding", NOT_ON_LINK: "NotOnLink", USE_MULTICAST: "UseMulticast",
    NO_PREFIX_AVAIL: "NoPrefixAvail",
}

#: RFC 8415 7.6: HOP_COUNT_LIMIT.
HOP_COUNT_LIMIT = 8
#: How deep options may nest (IA_NA > IA Address > Status Code is 3).
MAX_DEPTH = 4
#: A DUID is at most 128 octets after its type (RFC 8415 11.1).
MAX_DUID = 130

DUID_LLT = 1
DUID_EN = 2
DUID_LL = 3
DUID_UUID = 4
HW_ETHERNET = 1


def _u(value, bits, what):
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < (1 << bits):
        raise EncodeError(f"{what}: expected an integer 0..{(1 << bits) - 1}, got {value!r}")
    return value


def _bytes(value, what, maximum=0xFFFF):
    if not isinstance(value, (bytes, bytearray)) or len(value) > maximum:
        raise EncodeError(f"{what}: expected at most {maximum} octets, got {value!r}")
    return bytes(value)


def _duid(value, what):
    value = _bytes(value, what, MAX_DUID)
    if len(value) < 3:
        raise EncodeError(f"{what}: a DUID is 3..{MAX_DUID} octets, got {len(value)}")
    return value


# ---------------------------------------------------------------- options


class _Option:
    """Base: C{code} and C{body()}; L{encodeOption} adds the header."""

    __slots__ = ()
    code = None

    def body(self):
        raise NotImplementedError


class ClientId(_Option, namedtuple("ClientId", "duid")):
    """Client Identifier (21.2): the client's DUID."""

    __slots__ = ()
    code = OPT_CLIENTID

    def __new__(cls, duid):
        return super().__new__(cls, _duid(duid, "client DUID"))

    def body(self):
        return self.duid

    @classmethod
    def fromBody(cls, body, depth):
        if not 3 <= len(body) <= MAX_DUID:
            raise DecodeError(f"client identifier: DUID of {len(body)} octets")
        return cls(body)


class ServerId(_Option, namedtuple("ServerId", "duid")):
    """Server Identifier (21.3): the server's DUID."""

    __slots__ = ()
    code = OPT_SERVERID

    def __new__(cls, duid):
        return super().__new__(cls, _duid(duid, "server DUID"))

    def body(self):
        return self.duid

    @classmethod
    def fromBody(cls, body, depth):
        if not 3 <= len(body) <= MAX_DUID:
            raise DecodeError(f"server identifier: DUID of {len(body)} octets")
        return cls(body)


class IaAddress(_Option, namedtuple("IaAddress", "address preferred valid options")):
    """IA Address (21.6): an address with its lifetimes, and options (Status Code)."""

    __slots__ = ()
    code = OPT_IAADDR

    def __new__(cls, address, preferred, valid, options=()):
        try:
            address = IPv6Address(address)
        except ValueError as e:
            raise EncodeError(f"IA address: {e}") from None
        _u(preferred, 32, "preferred lifetime")
        _u(valid, 32, "valid lifetime")
        return super().__new__(cls, address, preferred, valid, _checkOptions(options))

    def body(self):
        return (self.address.packed + struct.pack("!II", self.preferred, self.valid)
                + encodeOptions(self.options))

    @classmethod
    def fromBody(cls, body, depth):
        if len(body) < 24:
            raise DecodeError(f"IA address: {len(body)} octets, at least 24 needed")
        preferred, valid = struct.unpack_from("!II", body, 16)
        return cls(IPv6Address(body[:16]), preferred, valid,
                   decodeOptions(body[24:], depth + 1))

    @property
    def status(self):
        return _statusOf(self.options)


class IaNa(_Option, namedtuple("IaNa", "iaid t1 t2 options")):
    """IA_NA (21.4): identity association for non-temporary addresses."""

    __slots__ = ()
    code = OPT_IA_NA

    def __new__(cls, iaid, t1=0, t2=0, options=()):
        _u(iaid, 32, "IAID")
        _u(t1, 32, "T1")
        _u(t2, 32, "T2")
        return super().__new__(cls, iaid, t1, t2, _checkOptions(options))

    def body(self):
        return struct.pack("!III", self.iaid, self.t1, self.t2) + encodeOptions(self.options)

    @classmethod
    def fromBody(cls, body, depth):
        if len(body) < 12:
            raise DecodeError(f"IA_NA: {len(body)} octets, at least 12 needed")
        return cls(*struct.unpack_from("!III", body), options=decodeOptions(body[12:], depth + 1))

    @property
    def addresses(self):
        """The IA Address options."""
        return [o for o in self.options if isinstance(o, IaAddress)]

    @property
    def status(self):
        return _statusOf(self.options)


class OptionRequest(_Option, namedtuple("OptionRequest", "codes")):
    """Option Request (21.7): the option codes the client asks for."""

    __slots__ = ()
    code = OPT_ORO

    def __new__(cls, codes=()):
        codes = tuple(codes)
        for c in codes:
            _u(c, 16, "requested option code")
        if len(codes) > 0x7FFF:
            raise EncodeError("option request: too many codes")
        return super().__new__(cls, codes)

    def body(self):
        return struct.pack(f"!{len(self.codes)}H", *self.codes)

    @classmethod
    def fromBody(cls, body, depth):
        if len(body) % 2:
            raise DecodeError(f"option request: odd length {len(body)}")
        return cls(struct.unpack(f"!{len(body) // 2}H", body))


class Preference(_Option, namedtuple("Preference", "value")):
    """Preference (21.8): 0..255."""

    __slots__ = ()
    code = OPT_PREFERENCE

    def __new__(cls, value):
        return super().__new__(cls, _u(value, 8, "preference"))

    def body(self):
        return bytes([self.value])

    @classmethod
    def fromBody(cls, body, depth):
        if len(body) != 1:
            raise DecodeError(f"preference: {len(body)} octets, 1 expected")
        return cls(body[0])


class ElapsedTime(_Option, namedtuple("ElapsedTime", "value")):
    """Elapsed Time (21.9), in hundredths of a second."""

    __slots__ = ()
    code = OPT_ELAPSED_TIME

    def __new__(cls, value=0):
        return super().__new__(cls, _u(value, 16, "elapsed time"))

    def body(self):
        return struct.pack("!H", self.value)

    @classmethod
    def fromBody(cls, body, depth):
        if len(body) != 2:
            raise DecodeError(f"elapsed time: {len(body)} octets, 2 expected")
        return cls(struct.unpack("!H", body)[0])


class RelayMessageOption(_Option, namedtuple("RelayMessageOption", "data")):
    """Relay Message (21.10): the relayed message, as bytes (L{decode} reads it)."""

    __slots__ = ()
    code = OPT_RELAY_MSG

    def __new__(cls, data):
        if isinstance(data, (Message, RelayMessage)):
            data = encode(data)
        return super().__new__(cls, _bytes(data, "relay message"))

    def body(self):
        return self.data

    @classmethod
    def fromBody(cls, body, depth):
        return cls(body)


class StatusCode(_Option, namedtuple("StatusCode", "status message")):
    """Status Code (21.13): a code and a UTF-8 message."""

    __slots__ = ()
    code = OPT_STATUS_CODE

    def __new__(cls, status, message=""):
        _u(status, 16, "status code")
        if not isinstance(message, str):
            raise EncodeError(f"status message: expected text, got {message!r}")
        _bytes(message.encode("utf-8"), "status message", 0xFFFF - 2)
        return super().__new__(cls, status, message)

    def body(self):
        return struct.pack("!H", self.status) + self.message.encode("utf-8")

    @classmethod
    def fromBody(cls, body, depth):
        if len(body) < 2:
            raise DecodeError(f"status code: {len(body)} octets, at least 2 needed")
        return cls(struct.unpack_from("!H", body)[0],
                   body[2:].decode("utf-8", "replace"))

    @property
    def name(self):
        return STATUS_NAMES.get(self.status, str(self.status))


class RapidCommit(_Option, namedtuple("RapidCommit", "")):
    """Rapid Commit (21.14): no data."""

    __slots__ = ()
    code = OPT_RAPID_COMMIT

    def body(self):
        return b""

    @classmethod
    def fromBody(cls, body, depth):
        if body:
            raise DecodeError(f"rapid commit: {len(body)} octets, none expected")
        return cls()


class InterfaceId(_Option, namedtuple("InterfaceId", "value")):
    """Interface-ID (21.18): opaque, echoed back by the server."""

    __slots__ = ()
    code = OPT_INTERFACE_ID

    def __new__(cls, value):
        if isinstance(value, str):
            value = value.encode("utf-8")
        return super().__new__(cls, _bytes(value, "interface-id"))

    def body(self):
        return self.value

    @classmethod
    def fromBody(cls, body, depth):
        return cls(body)


class UnknownOption(_Option, namedtuple("UnknownOption", "optionCode data")):
    """An option this codec does not interpret; kept as it came."""

    __slots__ = ()

    def __new__(cls, optionCode, data):
        _u(optionCode, 16, "option code")
        return super().__new__(cls, optionCode, _bytes(data, "option data"))

    @property
    def code(self):
        return self.optionCode

    def body(self):
        return self.data


OPTIONS = {c.code: c for c in (ClientId, ServerId, IaNa, IaAddress, OptionRequest, Preference,
                               ElapsedTime, RelayMessageOption, StatusCode, RapidCommit,
                               InterfaceId)}


def _checkOptions(options):
    options = tuple(options)
    for o in options:
        if not isinstance(o, _Option):
            raise EncodeError(f"not a DHCPv6 option: {o!r}")
    return options


def _statusOf(options):
    for o in options:
        if isinstance(o, StatusCode):
            return o
    return None


def encodeOption(option):
    """One option with its 4-octet header."""
    body = option.body()
    if len(body) > 0xFFFF:
        raise EncodeError(f"option {option.code}: {len(body)} octets do not fit")
    return struct.pack("!HH", option.code, len(body)) + body


def encodeOptions(options):
    return b"".join(encodeOption(o) for o in options)


def decodeOptions(data, depth=0):
    """The options in C{data}, which they must fill exactly."""
    if depth > MAX_DEPTH:
        raise DecodeError(f"options nested more than {MAX_DEPTH} deep")
    options = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < 4:
            raise DecodeError(f"option header at offset {offset}: "
                              f"{len(data) - offset} octets left, 4 needed")
        code, length = struct.unpack_from("!HH", data, offset)
        body = bytes(data[offset + 4:offset + 4 + length])
        if len(body) != length:
            raise DecodeError(f"option {code} at offset {offset}: length {length}, "
                              f"only {len(body)} octets left")
        kind = OPTIONS.get(code)
        try:
            options.append(UnknownOption(code, body) if kind is None
                           else kind.fromBody(body, depth))
        except EncodeError as e:
            raise DecodeError(f"option {code}: {e}") from None
        offset += 4 + length
    return tuple(options)


# ---------------------------------------------------------------- messages


class _Options:
    """Look-ups shared by both message kinds."""

    __slots__ = ()

    def option(self, kind):
        """The first option of class C{kind}, or None."""
        for o in self.options:
            if isinstance(o, kind):
                return o
        return None

    def all(self, kind):
        return [o for o in self.options if isinstance(o, kind)]

    @property
    def name(self):
        return MESSAGE_NAMES.get(self.type, str(self.type))

    @property
    def status(self):
        """The message-level Status Code option, or None (which means Success)."""
        return _statusOf(self.options)


class Message(_Options, namedtuple("Message", "type transaction options")):
    """A client/server message (RFC 8415 8): type, 24-bit transaction id, options."""

    __slots__ = ()

    def __new__(cls, type, transaction, options=()):
        _u(type, 8, "message type")
        if type in (RELAY_FORW, RELAY_REPL):
            raise EncodeError("relay messages are RelayMessage")
        _u(transaction, 24, "transaction id")
        return super().__new__(cls, type, transaction, _checkOptions(options))

    def encode(self):
        return (bytes([self.type]) + self.transaction.to_bytes(3, "big")
                + encodeOptions(self.options))

    @property
    def clientDuid(self):
        o = self.option(ClientId)
        return None if o is None else o.duid

    @property
    def serverDuid(self):
        o = self.option(ServerId)
        return None if o is None else o.duid


class RelayMessage(_Options, namedtuple(
        "RelayMessage", "type hopCount linkAddress peerAddress options")):
    """Relay-Forward / Relay-Reply (RFC 8415 9)."""

    __slots__ = ()

    def __new__(cls, type, hopCount, linkAddress, peerAddress, options=()):
        if type not in (RELAY_FORW, RELAY_REPL):
            raise EncodeError(f"relay message type must be 12 or 13, got {type!r}")
        _u(hopCount, 8, "hop count")
        try:
            linkAddress, peerAddress = IPv6Address(linkAddress), IPv6Address(peerAddress)
        except ValueError as e:
            raise EncodeError(f"relay message: {e}") from None
        return super().__new__(cls, type, hopCount, linkAddress, peerAddress,
                               _checkOptions(options))

    def encode(self):
        return (struct.pack("!BB", self.type, self.hopCount) + self.linkAddress.packed
                + self.peerAddress.packed + encodeOptions(self.options))

    @property
    def relayed(self):
        """The Relay Message option's bytes, or None."""
        o = self.option(RelayMessageOption)
        return None if o is None else o.data

    @property
    def interfaceId(self):
        o = self.option(InterfaceId)
        return None if o is None else o.value


def encode(message):
    """A L{Message} or L{RelayMessage} -> bytes (the UDP payload)."""
    if not isinstance(message, (Message, RelayMessage)):
        raise EncodeError(f"not a DHCPv6 message: {message!r}")
    return message.encode()


def decode(data):
    """UDP payload -> L{Message} or L{RelayMessage}; raises only L{DecodeError}."""
    data = bytes(data)
    if not data:
        raise DecodeError("empty DHCPv6 message")
    kind = data[0]
    if kind in (RELAY_FORW, RELAY_REPL):
        if len(data) < 34:
            raise DecodeError(f"relay message: {len(data)} octets, at least 34 needed")
        return RelayMessage(kind, data[1], IPv6Address(data[2:18]), IPv6Address(data[18:34]),
                            decodeOptions(data[34:]))
    if len(data) < 4:
        raise DecodeError(f"DHCPv6 message: {len(data)} octets, at least 4 needed")
    return Message(kind, int.from_bytes(data[1:4], "big"), decodeOptions(data[4:]))


# ---------------------------------------------------------------- DUIDs


def duidLL(mac):
    """DUID-LL (RFC 8415 11.4) for an Ethernet MAC (6 octets)."""
    if not isinstance(mac, (bytes, bytearray)) or len(mac) != 6:
        raise EncodeError(f"a MAC address is 6 octets, not {mac!r}")
    return struct.pack("!HH", DUID_LL, HW_ETHERNET) + bytes(mac)


def duidUUID(uuid):
    """DUID-UUID (RFC 6355) for a L{uuid.UUID}."""
    return struct.pack("!H", DUID_UUID) + uuid.bytes


def macOfDuid(duid):
    """The Ethernet MAC inside a DUID-LL or DUID-LLT, or None."""
    if duid is None or len(duid) < 4:
        return None
    kind, hw = struct.unpack_from("!HH", duid)
    if hw != HW_ETHERNET:
        return None
    if kind == DUID_LL and len(duid) == 10:
        return bytes(duid[4:10])
    if kind == DUID_LLT and len(duid) == 14:
        return bytes(duid[8:14])
    return None


def macOfLinkLocal(address):
    """The MAC of a modified EUI-64 link-local address (fe80::xxff:fexx:xxxx), or None."""
    address = IPv6Address(address)
    if not address.is_link_local:
        return None
    iid = address.packed[8:]
    if iid[3:5] != b"\xff\xfe":
        return None
    return bytes([iid[0] ^ 2]) + iid[1:3] + iid[5:8]


def iaAddresses(message, success=True):
    """
    The (IA_NA, IA Address) pairs in C{message} with a non-zero valid
    lifetime, whose IA_NA and address carry no failure status (with
    C{success}; every pair otherwise).
    """
    found = []
    for ia in message.all(IaNa):
        if success and ia.status is not None and ia.status.status != SUCCESS:
            continue
        for a in ia.addresses:
            if success and (a.valid == 0 or (a.status is not None
                                             and a.status.status != SUCCESS)):
                continue
            found.append((ia, a))
    return found
