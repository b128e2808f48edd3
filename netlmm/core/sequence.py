"""Sequence number arithmetic modulo 2**16 (RFC 6275 section 9.5.1)."""


def seqGreater(received, last):
    """
    True when C{received} is greater than C{last}: not within C{last} and the
    32768 values before it.
    """
    return 0 < ((received - last) & 0xFFFF) < 0x8000
