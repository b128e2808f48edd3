"""
RFC 4285 message authentication of Mobility Headers (the MN-HA
Mobility Message Authentication option, type 9), without kernel IPsec.

    Authenticator = First(N, HMAC(key, care-of address | home address | MH data))

MH data runs from the first octet of the Mobility Header through the SPI
field of the authentication option, with the checksum field zero. The
authentication option is the last option and ends the header (the encoder in
L{netlmm.wire.mh} aligns it so no padding follows), so the authenticator is
always the last N octets of the header.

netlmm carries the addresses of a Proxy Binding Update inside the message
(there is no Home Address destination option, see doc/protocol.md), so the
two addresses of the formula are taken from the message itself:

  - home address: the address in the Home Network Prefix option; :: when the
    option is absent or all zeros (an assignment request);
  - care-of address: the address in the Alternate Care-of Address option;
    :: when the option is absent (a deregistration, every PBAck).

Both are covered by the MH data anyway; putting them in front keeps the
input exactly in the form RFC 4285 defines. A mobile's own Binding Update to
its home agent (the GMA) does carry them in its IPv6 headers: there the
caller gives them (C{coaHoa}): the packet's care-of address and the home
address of its Home Address option (BU) or type 2 routing header (BA).

One layer, the same at every role (LMA, PMIP client, GMA), working on the
encoded octets: a sender encodes the message once with a zero authenticator,
computes the authenticator over those octets and writes it in place
(L{signEncoded}; the octets go to the transport through L{SignedOctets}, so
nothing encodes the message again); a receiver checks the authenticator on
the octets it received (L{locate}, then L{verifyLocated}), never on a
re-encoding of what it decoded.

Nothing here imports Twisted.
"""

import hashlib
import hmac
import struct
from collections import namedtuple
from ipaddress import IPv6Address, IPv6Network

from netlmm.wire import mh
from netlmm.wire.checksum import mhChecksum
from netlmm.wire.errors import DecodeError
from netlmm.wire.mh import MobilityMessageAuthentication as Auth

_ZERO = IPv6Address("::")
_CHECKSUM = struct.Struct("!H").pack

#: algorithm name -> (hash constructor, authenticator length in octets).
#: hmac-sha1-96 is RFC 4285's algorithm (interoperable); hmac-sha256-128 is
#: the stronger choice, truncated to 128 bits as RFC 4868 does for IPsec: a
#: 128-bit tag is ample against forgery, and 16 octets keep the option's
#: 4n+1 alignment ending the header without extra padding.
ALGORITHMS = {
    "hmac-sha1-96": (hashlib.sha1, 12),
    "hmac-sha256-128": (hashlib.sha256, 16),
}

#: SPIs 0..255 are reserved (RFC 4285 section 5.1).
MIN_SPI = 256


class AuthenticationError(Exception):
    """A message whose authentication cannot be accepted; the text says why."""


class SecurityAssociation(namedtuple(
        "SecurityAssociation", "spi key algorithm mnId clients mobiles")):
    """
    One MN-HA security association.

    @ivar spi: 256..2**32-1.
    @ivar key: the shared key, bytes.
    @ivar algorithm: a key of L{ALGORITHMS}.
    @ivar mnId: the mobile (NAI bytes) of a per-MN SA (draft 4.3), or None
        for a per-PMIP-client SA.
    @ivar clients: networks whose PMIP clients may use the SA; empty means
        any (a per-MN SA obtained from AAA authorizes its holder, Appendix C).
    @ivar mobiles: for a per-client SA, the mobiles the client may act for;
        empty means any.
    """

    __slots__ = ()

    def __new__(cls, spi, key, algorithm="hmac-sha1-96", mnId=None, clients=(),
                mobiles=()):
        if type(spi) is not int or not MIN_SPI <= spi <= 0xFFFFFFFF:
            raise ValueError(f"SPI must be an integer {MIN_SPI}..4294967295 "
                             f"(0..255 are reserved), not {spi!r}")
        if not isinstance(key, (bytes, bytearray)) or len(key) < 16:
            raise ValueError("key must be at least 16 octets")
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}, "
                             f"not {algorithm!r}")
        if mnId is not None and not isinstance(mnId, bytes):
            mnId = mnId.encode("utf-8")
        clients = tuple(IPv6Network(c) for c in clients)
        mobiles = frozenset(m if isinstance(m, bytes) else m.encode("utf-8")
                            for m in mobiles)
        return tuple.__new__(cls, (spi, bytes(key), algorithm, mnId, clients,
                                   mobiles))

    def __repr__(self):
        # Never print the key.
        return (f"SecurityAssociation(spi={self.spi}, algorithm={self.algorithm}, "
                f"mnId={self.mnId!r}, clients={[str(c) for c in self.clients]})")

    @property
    def size(self):
        """The authenticator length in octets."""
        return ALGORITHMS[self.algorithm][1]

    def allowsClient(self, address):
        """True when a PMIP client at C{address} may use this SA."""
        return not self.clients or any(address in n for n in self.clients)

    def allowsMobile(self, mnId):
        """True when this SA may protect signalling for mobile C{mnId}."""
        if self.mnId is not None:
            return mnId == self.mnId
        return not self.mobiles or mnId in self.mobiles


def addresses(message):
    """The (care-of, home) addresses of C{message} for the authenticator."""
    coa = hoa = _ZERO
    for o in message.options:
        t = type(o)
        if t is mh.AlternateCareOfAddress:
            coa = o.address
        elif t is mh.HomeNetworkPrefix:
            hoa = o.prefix
    return coa, hoa


#: (algorithm, key) -> (inner hash state, outer hash state, size).
_PREPARED = {}
#: At most this many keys' hash states are kept (each a few hundred octets).
_PREPARED_MAX = 4096


def _prepared(sa):
    """
    The HMAC (RFC 2104) of C{sa}'s key with both padded-key blocks hashed
    once. With OpenSSL 3, C{hmac.new} and C{hmac.digest} look the algorithm
    up on every call (2.5 to 6 us per message here), more than hashing a
    message takes; copying a prepared state costs a tenth of that.
    """
    cacheKey = (sa.algorithm, sa.key)
    prepared = _PREPARED.get(cacheKey)
    if prepared is None:
        constructor, size = ALGORITHMS[sa.algorithm]
        block = constructor().block_size
        key = sa.key if len(sa.key) <= block else constructor(sa.key).digest()
        key = key.ljust(block, b"\x00")
        prepared = (constructor(bytes(b ^ 0x36 for b in key)),
                    constructor(bytes(b ^ 0x5C for b in key)), size)
        if len(_PREPARED) >= _PREPARED_MAX:
            _PREPARED.clear()
        _PREPARED[cacheKey] = prepared
    return prepared


def _address(value):
    """16 octets of an address given packed, as IPv6Address or as text."""
    kind = type(value)
    if kind is bytes and len(value) == 16:
        return value
    if kind is IPv6Address:
        return value.packed
    return IPv6Address(value).packed


def authenticator(sa, coa, hoa, mhData):
    """RFC 4285: the first N octets of HMAC(key, coa | hoa | MH data)."""
    inner0, outer0, size = _prepared(sa)
    inner = inner0.copy()
    inner.update(_address(coa) + _address(hoa))
    inner.update(mhData)
    outer = outer0.copy()
    outer.update(inner.digest())
    return outer.digest()[:size]


def _withoutAuth(message):
    return tuple(o for o in message.options if type(o) is not Auth)


def _withOptions(message, options):
    """C{message} with C{options} (valid options), without re-validating its fields."""
    return tuple.__new__(type(message), message[:-1] + (options,))


def signEncoded(message, sa, coaHoa=None):
    """
    Sign C{message} with C{sa} in one encoding: (the message with an MN-HA
    authentication option for C{sa} as its last option, replacing any it
    had; its octets, checksum field zero). The octets are those
    L{mh.encodeMessage} gives for the returned message: it is encoded once,
    with a placeholder authenticator, which is then computed over those
    octets and written in place.

    C{coaHoa}: the (care-of, home) addresses of the formula when the packet
    carries them in its IPv6 headers (a mobile's own Binding Update, RFC
    6275), instead of L{addresses} of the message.
    """
    if message._fields[-1] != "options":
        raise TypeError(f"{type(message).__name__} carries no mobility options")
    options = _withoutAuth(message)
    size = sa.size
    draft = _withOptions(message, options + (
        tuple.__new__(Auth, (Auth.MN_HA, sa.spi, bytes(size))),))
    data = mh.encodeMessage(draft)
    end = len(data) - size
    coa, hoa = addresses(draft) if coaHoa is None else coaHoa
    mac = authenticator(sa, coa, hoa, memoryview(data)[:end])
    signed = _withOptions(message, options + (
        tuple.__new__(Auth, (Auth.MN_HA, sa.spi, mac)),))
    return signed, data[:end] + mac


def sign(message, sa, coaHoa=None):
    """
    C{message} with an MN-HA authentication option for C{sa} as its last
    option (replacing any it had). Because L{mh.encodeMessage} is
    deterministic, encoding the result gives a header whose authenticator
    is right for those exact octets; L{signEncoded} gives both at once.
    C{coaHoa} as for L{signEncoded}.
    """
    return signEncoded(message, sa, coaHoa)[0]


def withChecksum(data, source, destination):
    """C{data} (a Mobility Header, checksum field zero) with its checksum filled in."""
    checksum = mhChecksum(mh._packed(source), mh._packed(destination), data)
    return data[:4] + _CHECKSUM(checksum) + data[6:]


def encodeSigned(message, sa, source=None, destination=None, coaHoa=None):
    """
    The octets of C{message} signed with C{sa} (L{signEncoded}), and then,
    with C{source} and C{destination}, the checksum computed.
    """
    data = signEncoded(message, sa, coaHoa)[1]
    if source is not None and destination is not None:
        data = withChecksum(data, source, destination)
    return data


def locate(message, raw):
    """
    The authentication option of C{message} (decoded from C{raw}) and the
    MH data it covers, or raise L{AuthenticationError}: missing, not the
    last option, not MN-HA, or not ending the header.
    """
    options = message.options
    option = options[-1] if options else None
    if type(option) is not Auth or any(type(o) is Auth for o in options[:-1]):
        if not any(type(o) is Auth for o in options):
            raise AuthenticationError("no authentication option")
        raise AuthenticationError("the authentication option is not the last option")
    if option.subtype != Auth.MN_HA:
        raise AuthenticationError(f"authentication subtype {option.subtype}, "
                                  "expected 1 (MN-HA)")
    size = len(option.authenticator)
    start = len(raw) - size - 7
    if start < 8 or raw[start] != Auth.TYPE or raw[start + 1] != size + 5:
        raise AuthenticationError("the authentication option does not end the header")
    end = len(raw) - size
    mhData = bytes(raw[:4]) + b"\x00\x00" + bytes(raw[6:end])
    return option, mhData


def verifyLocated(message, option, mhData, sa, coaHoa=None):
    """
    L{verify} for an authentication option L{locate} has found already
    (C{option} covering C{mhData}), so that a receiver that looked the SA up
    by the option's SPI does not locate it twice.
    """
    if option.spi != sa.spi:
        raise AuthenticationError(f"SPI {option.spi} is not the SA's {sa.spi}")
    if len(option.authenticator) != sa.size:
        raise AuthenticationError(
            f"authenticator is {len(option.authenticator)} octets, "
            f"{sa.algorithm} makes {sa.size}")
    coa, hoa = addresses(message) if coaHoa is None else coaHoa
    expected = authenticator(sa, coa, hoa, mhData)
    if not hmac.compare_digest(expected, option.authenticator):
        raise AuthenticationError("authenticator is wrong")


def verify(message, raw, sa, coaHoa=None):
    """
    Check the authenticator of C{message}, decoded from the octets C{raw},
    against C{sa}; raise L{AuthenticationError} if it is wrong. C{coaHoa}
    as for L{signEncoded}.
    """
    option, mhData = locate(message, raw)
    verifyLocated(message, option, mhData, sa, coaHoa)


class SignedOctets:
    """
    The octets the security layer signed, kept by message until the
    transport sends that message, so that a signed message is encoded once
    (L{signEncoded}) and never again by the transport. Messages are matched
    by identity; at most C{size} are kept (the oldest go first: a message
    that is sent later than that is simply encoded again, to the same
    octets).
    """

    def __init__(self, size=256):
        self.size = size
        self._kept = {}

    def keep(self, message, data):
        kept = self._kept
        if len(kept) >= self.size:
            del kept[next(iter(kept))]
        # The message is kept with its octets: its id cannot be reused
        # while the entry exists.
        kept[id(message)] = (message, data)

    def take(self, message):
        """The octets signed for C{message} (checksum zero), or None."""
        entry = self._kept.pop(id(message), None)
        if entry is None:
            return None
        if entry[0] is not message:  # pragma: no cover - ids are unique while kept
            return None
        return entry[1]


__all__ = ["ALGORITHMS", "AuthenticationError", "DecodeError", "SecurityAssociation",
           "SignedOctets", "addresses", "authenticator", "encodeSigned", "locate",
           "sign", "signEncoded", "verify", "verifyLocated", "withChecksum"]
