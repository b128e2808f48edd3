"""
What the PMIP client puts in a Proxy Binding Update, per profile (the dialect
it speaks to its LMA; doc/protocol.md section 2), sans-IO.

  - L{NetlmmDialect}, the draft's: flags A|H|P; one Home Network Prefix
    option naming the pHoA with length 128 (C{::/128} asks the LMA for one,
    Appendix A) or, in the per-MN prefix mode (E.3), the prefix (C{::/0}
    asks for one); an Alternate Care-of Address naming the MAG (the PBU
    comes from the PMIP client, section 4.1 step 4); the MN Identifier only
    while the LMA has no binding (section 4.2 step 3); sequence numbers.
  - L{Rfc5213Profile}, for a standard LMA: flags A|P; the MN Identifier in
    every PBU; the Home Network Prefix (ALL_ZERO C{::/0} asks, the known
    prefix afterwards); the Handoff Indicator, chosen from what the client
    knows; the Access Technology Type and MN Link-layer Identifier the MAG
    reported; a Timestamp (RFC 5213 5.5) unless sequence numbers are
    configured; an Alternate Care-of Address only when the PBU's source is
    not the MAG's address (RFC 5213 6.9.1.5 takes the source as Proxy-CoA).

Both ask for an IPv4 home address (RFC 5844 IPv4 Home Address Request) when
the MAG's Trigger asks for one. RFC 4285 protection, when configured, is
added afterwards by the security layer.
"""

from ipaddress import IPv4Interface, IPv6Address, IPv6Network

from netlmm.wire import mh
from netlmm.wire.control import AddressMode

NETLMM = "netlmm"
RFC5213 = "rfc5213"
#: How PBUs are ordered at the LMA (RFC 5213 5.5).
SEQUENCE = "sequence"
TIMESTAMP = "timestamp"

HI = mh.HandoffIndicator
_ZERO = IPv6Address("::")
#: ALL_ZERO (RFC 5213 2.2): a Home Network Prefix option asking for one.
ASK_PREFIX = mh.HomeNetworkPrefix(_ZERO, 0)
#: netlmm's request for a pHoA (Appendix A): the all-zero address, /128.
ASK_ADDRESS = mh.HomeNetworkPrefix(_ZERO, 128)
_ASK_IPV4 = IPv4Interface("0.0.0.0/0")


#: What an LMA means by the statuses a PMIP client may hear (RFC 5213 8.9,
#: RFC 5844 3.2.1 and 3.3.2), for the logs.
_MEANINGS = {
    128: "reason unspecified",
    129: "administratively prohibited (is this PMIP client allowed at the LMA?)",
    130: "insufficient resources",
    131: "home registration not supported (the LMA wants the H flag: "
         "try profile = \"netlmm\")",
    132: "the pHoA is outside the LMA's home prefix",
    133: "the LMA has no binding to change",
    134: "the home is bound to another mobile (duplicate address)",
    135: "sequence number out of window",
    144: "timestamp refused (RFC 4285 replay protection)",
    145: "the LMA wants RFC 4285 replay protection",
    146: "RFC 4285 authentication failed (keys, or [pmip.security] off?)",
    152: "proxy registration is not enabled for this mobile",
    153: "this LMA is not the mobile's LMA",
    154: "the LMA does not take proxy registrations from this MAG (is the PBU's "
         "source or Alternate Care-of Address a MAG it knows?)",
    155: "the mobile may not use the prefix the PBU names",
    156: "the PBU's timestamp is outside the LMA's window (clocks out of sync)",
    157: "the PBU's timestamp is older than one the LMA accepted",
    158: "the LMA wants a Home Network Prefix option",
    159: "the prefixes named are not those of the LMA's binding",
    160: "the LMA wants the MN Identifier option",
    161: "the LMA wants a Handoff Indicator option (it speaks RFC 5213: "
         "profile = \"rfc5213\"?)",
    162: "the LMA wants an Access Technology Type option (it speaks RFC 5213: "
         "profile = \"rfc5213\"?)",
    170: "the mobile may not have IPv4 mobility service",
    171: "the mobile may not use the IPv4 home address the PBU names",
    172: "the mobile may not have IPv6 mobility service",
    173: "the LMA does not assign several IPv4 home addresses",
}
#: IPv4 Home Address Reply statuses (RFC 5844 3.3.2).
_IPV4_MEANINGS = {
    128: "reason unspecified",
    129: "administratively prohibited",
    130: "incorrect IPv4 home address",
    131: "invalid IPv4 address",
    132: "dynamic IPv4 home address assignment not available",
}


def describeStatus(status, ipv4=False):
    """What a PBA status (or, C{ipv4}, an IPv4 Home Address Reply status) means."""
    table = _IPV4_MEANINGS if ipv4 else _MEANINGS
    return table.get(status, "accepted" if status < 128 else "no meaning known here")


def homeOption(home, mode):
    """The Home Network Prefix option naming C{home}, or asking for one."""
    if isinstance(home, IPv6Network):
        return mh.HomeNetworkPrefix(home.network_address, home.prefixlen)
    if home is not None:
        return mh.HomeNetworkPrefix(home, 128)
    return ASK_PREFIX if mode == AddressMode.PREFIX else ASK_ADDRESS


def ipv4Option(m):
    """The IPv4 Home Address Request for mobile C{m}, or None when it wants none."""
    wanted = m.ipv4 if m.ipv4 is not None else m.ipv4Request
    if wanted is None:
        return None
    if wanted == _ASK_IPV4:
        return mh.IPv4HomeAddressRequest()
    return mh.IPv4HomeAddressRequest(wanted.ip, wanted.network.prefixlen)


class NetlmmDialect:
    """The draft's PBU (see the module docstring)."""

    name = NETLMM
    flags = mh.BU_A | mh.BU_H | mh.BU_P
    ordering = SEQUENCE

    def refusal(self, trigger):
        """Why this profile cannot serve C{trigger}, or None: it serves all modes."""
        return None

    def options(self, m, p, stamp):
        """The options of the PBU for mobile C{m} and pending operation C{p}."""
        options = [homeOption(m.home, m.mode)]
        if p.kind != "deregister":
            options.append(mh.AlternateCareOfAddress(p.pcoa))
        if m.pcoa is None or p.withMnId or m.restored or p.kind == "deregister":
            # Initial attachment: the LMA needs the MN identifier (4.1 step 4).
            # After a restart too, until acknowledged: the LMA may have given
            # the home to another mobile, whose binding must not move. And
            # leaving: a deregistration sent again after the LMA deleted the
            # binding (its PBAck lost, or the LMA killed before sending it)
            # may find the home given to another mobile since, whose binding
            # it must not end.
            options.append(mh.MobileNodeIdentifier(m.mnId))
        v4 = ipv4Option(m)
        if v4 is not None:
            options.append(v4)
        return options


class Rfc5213Profile:
    """
    RFC 5213's PBU (see the module docstring).

    @param ordering: L{TIMESTAMP} (RFC 5213's default) or L{SEQUENCE}, as the
        LMA is configured for this MAG.
    @param accessTechnology: the Access Technology Type sent when the MAG's
        Trigger names none (RFC 5213 8.5; 3 is IEEE 802.3).
    @param source: the address PBUs are sent from, or None when unknown: a
        PBU whose pCoA is its source carries no Alternate Care-of Address.
    """

    name = RFC5213
    flags = mh.BU_A | mh.BU_P

    def __init__(self, ordering=TIMESTAMP, accessTechnology=mh.AccessTechnologyType.ETHERNET,
                 source=None):
        if ordering not in (TIMESTAMP, SEQUENCE):
            raise ValueError(f"ordering must be {TIMESTAMP!r} or {SEQUENCE!r}, not {ordering!r}")
        if not 1 <= accessTechnology <= 255:
            raise ValueError(f"access technology must be 1..255, not {accessTechnology}")
        self.ordering = ordering
        self.accessTechnology = accessTechnology
        self.source = None if source is None or IPv6Address(source) == _ZERO \
            else IPv6Address(source)

    def refusal(self, trigger):
        """RFC 5213 LMAs delegate prefixes: only the per-MN prefix mode fits."""
        if trigger.mode != AddressMode.PREFIX:
            return (f"address mode {AddressMode.NAMES[trigger.mode]}: the rfc5213 "
                    "profile binds per-MN prefixes only (address mode prefix)")
        return None

    def handoffIndicator(self, m, p):
        """RFC 5213 8.4's value for what the client knows of this PBU."""
        if p.kind == "deregister" or p.withMnId:
            # Leaving, or the LMA has lost track of the binding: the client
            # cannot say what the LMA should take this for.
            return HI.UNKNOWN
        if p.kind == "attach":
            # No binding known here. When the MAG names a prefix (context
            # transfer), the mobile may be bound elsewhere: unknown;
            # otherwise a new attachment.
            return HI.UNKNOWN if m.home is not None else HI.ATTACHMENT_OVER_NEW_INTERFACE
        if p.kind == "handoff":
            return HI.HANDOFF_BETWEEN_MAGS_SAME_INTERFACE
        return HI.NOT_CHANGED

    def options(self, m, p, stamp):
        """The options of the PBU for mobile C{m} and pending operation C{p}."""
        options = [mh.MobileNodeIdentifier(m.mnId), homeOption(m.home, m.mode),
                   HI(self.handoffIndicator(m, p)),
                   mh.AccessTechnologyType(m.accessTechnology or self.accessTechnology)]
        if m.linkLayerId is not None:
            options.append(mh.MobileNodeLinkLayerIdentifier(m.linkLayerId))
        if p.pcoa is not None and p.pcoa != self.source:
            options.append(mh.AlternateCareOfAddress(p.pcoa))
        if self.ordering == TIMESTAMP:
            options.append(mh.Timestamp.fromSeconds(stamp))
        v4 = ipv4Option(m)
        if v4 is not None:
            options.append(v4)
        return options
