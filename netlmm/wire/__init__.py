"""
Pure codecs: the Mobility Header (L{netlmm.wire.mh}) and the MAG <-> PMIP
client protocol (L{netlmm.wire.control}). Nothing here imports Twisted.
"""

from netlmm.wire.errors import DecodeError, EncodeError, WireError

__all__ = ["DecodeError", "EncodeError", "WireError"]
