"""
What a role core asks its adapter to do. Cores return lists of these from
every input; the Twisted services carry them out.
"""

from collections import namedtuple


class SendMH(namedtuple("SendMH", "message destination")):
    """Send a Mobility Header message to an IPv6 address (LMA or PMIP client)."""

    __slots__ = ()


class SendToMobile(namedtuple("SendToMobile", "message careOf home")):
    """
    GMA: send a Mobility Header message to a mobile at C{careOf}, with a type
    2 routing header naming its home address C{home} (RFC 6275 6.4, 9.5.4);
    C{home} None: a plain packet to C{careOf}.
    """

    __slots__ = ()


class SendToHomeAgent(namedtuple("SendToHomeAgent", "message homeAgent careOf home")):
    """
    Mobile node: send a Mobility Header message to its home agent from
    C{careOf}, with a Home Address option naming C{home} (RFC 6275 6.3,
    11.7.1); C{careOf} None: from C{home} itself, without the option.
    """

    __slots__ = ()


class HomeTunnel(namedtuple("HomeTunnel", "home homeAgent careOf")):
    """
    Mobile node: carry the traffic of home address C{home} through an
    IPv6-in-IPv6 tunnel between C{careOf} and the home agent (RFC 6275
    11.3.1); C{careOf} None: take the tunnel down.
    """

    __slots__ = ()


class Notify(namedtuple("Notify", "notification mag")):
    """PMIP client: send a Notification to the MAG whose address is C{mag}."""

    __slots__ = ()


class SendControl(namedtuple("SendControl", "message")):
    """MAG: send a Trigger or Detach to this MAG's PMIP client."""

    __slots__ = ()


class AskPeers(namedtuple("AskPeers", "request peers")):
    """
    PMIP client: send the L{netlmm.wire.control.ConflictRequest} C{request}
    to each of C{peers} (the other PMIP clients, as configured) and feed
    their answers back (Appendix B).
    """

    __slots__ = ()


class AddressConflict(namedtuple("AddressConflict", "mnId phoa")):
    """
    MAG: the PMIP client found C{phoa} used by another mobile; defend it on
    the access link so that the mobile configures another (Appendix B).
    """

    __slots__ = ()


class RouteAdd(namedtuple("RouteAdd", "phoa pcoa")):
    """LMA data plane: tunnel traffic for C{phoa} to the MAG at C{pcoa}."""

    __slots__ = ()


class RouteMove(namedtuple("RouteMove", "phoa old new")):
    """LMA data plane: the tunnel for C{phoa} moves from C{old} to C{new}."""

    __slots__ = ()


class RouteRemove(namedtuple("RouteRemove", "phoa pcoa")):
    """LMA data plane: stop tunnelling C{phoa}."""

    __slots__ = ()


class TunnelUp(namedtuple("TunnelUp", "mnId phoa lma")):
    """
    MAG data plane: forward the traffic of home C{phoa} (a pHoA, a per-MN
    prefix or an IPv4 address) through the tunnel to C{lma}.
    """

    __slots__ = ()


class TunnelDown(namedtuple("TunnelDown", "mnId phoa lma")):
    """MAG data plane: stop forwarding for home C{phoa}."""

    __slots__ = ()


class Bound(namedtuple("Bound", "mnId phoa prefix ipv4 ipv4Router peerMag",
                       defaults=(None, None, None, None))):
    """
    MAG: the mobile is bound; the address strategy may now answer it. Besides
    its pHoA: its per-MN prefix (IPv6Network), its IPv4 home address
    (IPv4Interface) and IPv4 default router (IPv4Address), each None when
    the binding has none; C{peerMag}: the MAG the binding moved from, when
    the PMIP client names it (a handoff), else None.
    """

    __slots__ = ()


class Unbound(namedtuple("Unbound", "mnId phoa result reason")):
    """
    MAG: the mobile is not (or no longer) bound through this MAG; C{result}
    is the Notification result code or None for a local reason.
    """

    __slots__ = ()


class Persist(namedtuple("Persist", "key record")):
    """
    Keep C{record} (a dict of JSON values and ipaddress objects, made by the
    core's one record function) under C{key} (bytes, unique per entry of one
    core) where it survives a restart; C{record} None deletes the entry.

    A core emits it for every change that must survive a restart, in the
    effects list BEFORE the message that acknowledges that change (a PBAck,
    a Notification): the service holds what follows until the store has
    committed the record, so nothing is acknowledged that a crash can lose.
    C{restore(records, now)} on the core takes the records back.
    """

    __slots__ = ()


class BadRecord(ValueError):
    """
    A record that C{restore} cannot use: C{index} is its position in the
    list given to C{restore}, C{reason} says what is wrong with it.
    """

    def __init__(self, index, reason):
        self.index = index
        self.reason = reason
        super().__init__(f"record {index}: {reason}")


class InvalidInput(Exception):
    """
    An input that is not valid in the state it arrived in. Cores raise it
    before changing anything; adapters log it and answer where they can.
    """

    def __init__(self, what, state, reason=""):
        self.what = what
        self.state = state
        self.reason = reason
        super().__init__(f"{what} is not valid in state {state}" + (f": {reason}" if reason else ""))


def debugging(log):
    """
    True when a core should build a debug event for C{log}: its logger is
    there and keeps debug events. Per-binding lines (a new binding, a move,
    a mobile bound) are debug events whose fields (addresses as text) cost
    more than the rest of a refresh's logging; a daemon's logger
    (L{netlmm.daemon.RoleLogger}) says whether anyone reads them. A logger
    that does not say (a plain Logger in tests) gets them all.
    """
    return log is not None and getattr(log, "debugging", True)
