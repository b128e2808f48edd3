"""The Internet checksum over an IPv6 pseudo-header (RFC 8200 section 8.1)."""

import sys
from array import array

_BIG = sys.byteorder == "big"


def _sum16(data):
    """Ones-complement sum (not folded) of data as big-endian 16-bit words."""
    if len(data) % 2:
        data = bytes(data) + b"\x00"
    words = array("H", data)
    if not _BIG:
        words.byteswap()
    return sum(words)


def mhChecksum(source, destination, mh, nextHeader=135):
    """
    Checksum of a Mobility Header (checksum field zero) sent from C{source} to
    C{destination}, both 16-octet packed IPv6 addresses.
    """
    total = _sum16(source) + _sum16(destination) + len(mh) + nextHeader
    total += _sum16(mh)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    # Unlike UDP, the Mobility Header sends a computed zero as zero (the
    # kernel's raw-socket checksum does the same).
    return ~total & 0xFFFF
