"""
The 'hashed' address-assignment strategy: every MAG of the domain derives
the same pHoA for a mobile, with no DHCP server and no state, from the
domain's /64 and a keyed hash of the MN identifier. The address is known to
the MAG by configuration, so the Trigger says "static".

    [mag.assignment]
    strategy = "hashed"
    prefix = "2001:db8:1::/64"
    key = "a domain-wide secret"       # optional
"""

import hashlib
from ipaddress import IPv6Address

from twisted.logger import Logger
from zope.interface import implementer

from netlmm.config import ConfigError
from netlmm.interfaces import IAddressAssignment
from netlmm.wire.control import AddressMode


@implementer(IAddressAssignment)
class HashedAssignment:
    """pHoA = C{prefix} + the first 64 bits of SHA-256(C{key} + MN identifier)."""

    name = "hashed"
    log = Logger()

    def __init__(self, prefix, key=b""):
        if prefix.version != 6 or prefix.prefixlen != 64:
            raise ValueError(f"the prefix must be an IPv6 /64, not {prefix}")
        self.prefix = prefix
        self.key = key
        self.mag = None

    @classmethod
    def fromConfig(cls, table, **context):
        """Options: C{prefix} (an IPv6 /64, required), C{key} (a string)."""
        prefix = table.network("prefix", required=True)
        if prefix.version != 6 or prefix.prefixlen != 64:
            raise ConfigError(f"{table.where}.prefix: expected an IPv6 /64, not {prefix}")
        key = table.string("key", "").encode("utf-8")
        table.finish()
        return cls(prefix, key)

    def addressFor(self, mnId):
        """The pHoA of C{mnId} (bytes)."""
        iid = int.from_bytes(hashlib.sha256(self.key + mnId).digest()[:8], "big")
        # Clear the universal/local bit: the identifier is not an EUI-64; and
        # avoid the subnet-router anycast address (all-zero identifier).
        iid = (iid & ~(1 << 57)) or 1
        return IPv6Address(int(self.prefix.network_address) | iid)

    def start(self, mag):
        self.mag = mag

    def stop(self):
        self.mag = None

    def attached(self, event):
        phoa = self.addressFor(event.mnId)
        self.log.info("hashed assignment: MN {mnId} gets {phoa}",
                      mnId=event.mnId.decode("utf-8", "replace"), phoa=phoa)
        self.mag.addressReady(event.mnId, phoa, AddressMode.STATIC)

    def bound(self, mnId, phoa):
        pass

    def unbound(self, mnId, phoa, reason):
        pass
