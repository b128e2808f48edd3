"""The MAG's access link: attachment events and detectors."""

from collections import namedtuple
from ipaddress import IPv6Address

from netlmm.wire.control import mnIdProblem, showMnId


class AttachmentEvent(namedtuple("AttachmentEvent", "mnId phoa linkLayer")):
    """
    A mobile appeared on the access link. C{mnId} is its identifier (bytes,
    an NAI or the link-layer address as text; L{mnIdProblem} says which are
    refused); C{phoa} is its address when the
    detector already knows it (context transfer, configuration), else None;
    C{linkLayer} its link-layer address when known.
    """

    __slots__ = ()

    def __new__(cls, mnId, phoa=None, linkLayer=None):
        if isinstance(mnId, str):
            mnId = mnId.encode("utf-8", "surrogateescape")
        problem = mnIdProblem(mnId)
        if problem is not None:
            raise ValueError(f"MN identifier {showMnId(mnId)} {problem}")
        if phoa is not None:
            try:
                phoa = IPv6Address(phoa)
            except ValueError:
                raise ValueError(f"pHoA {phoa!r} is not an IPv6 address") from None
        return super().__new__(cls, mnId, phoa, linkLayer)


def macOfEvent(event):
    """
    The mobile's MAC (6 octets) from an L{AttachmentEvent}: its C{linkLayer}
    (6 octets or text), else an MN identifier that is a MAC as text; None
    when neither is one. Strategies that match a mobile's frames or DHCP
    messages to its attachment use it.
    """
    from netlmm.wire.errors import EncodeError
    from netlmm.wire.icmpv6 import macBytes
    for candidate in (event.linkLayer, event.mnId.decode("utf-8", "replace")):
        if isinstance(candidate, bytes) and len(candidate) == 6:
            return candidate
        try:
            return macBytes(candidate)
        except (EncodeError, TypeError):
            continue
    return None


def getDetectors():
    """The registry of attachment detectors (L{netlmm.registry.detectors})."""
    from netlmm.registry import detectors
    return detectors
