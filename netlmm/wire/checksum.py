"""The Internet checksum over an IPv6 pseudo-header (RFC 8200 section 8.1)."""

_fromBytes = int.from_bytes


def _value(data):
    """C{data} as one big-endian integer, padded to whole 16-bit words."""
    if len(data) % 2:
        data = bytes(data) + b"\x00"
    return _fromBytes(data, "big")


def mhChecksum(source, destination, mh, nextHeader=135):
    """
    Checksum of a Mobility Header (checksum field zero) sent from C{source} to
    C{destination}, both 16-octet packed IPv6 addresses.
    """
    # Since 2**16 = 1 (mod 0xFFFF), the ones-complement sum of the 16-bit
    # words of a string of octets is the string read as one big integer,
    # modulo 0xFFFF, with 0xFFFF standing for a non-zero multiple of it:
    # one int.from_bytes instead of a Python-level sum over every word.
    total = (_value(source) + _value(destination) + _value(mh) + len(mh)
             + nextHeader)
    folded = total % 0xFFFF
    if folded:
        return 0xFFFF - folded
    # Unlike UDP, the Mobility Header sends a computed zero as zero (the
    # kernel's raw-socket checksum does the same).
    return 0 if total else 0xFFFF
