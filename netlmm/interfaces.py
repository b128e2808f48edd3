"""
Every interface of netlmm, in one place: what a plugin (address-assignment
strategy, attachment detector, data plane) must provide, and what the
daemons offer to it.
"""

from twisted.plugin import IPlugin
from zope.interface import Attribute, Interface


class IAddressAssignment(Interface):
    """
    How a MAG learns (or has assigned) a mobile's pHoA (draft 4.1 step 2,
    Appendix A, Appendix B). One instance serves one MAG.

    The strategy is told of attachments and calls
    C{mag.addressReady(mnId, phoa, mode)} when the Trigger can go: at once
    (static, LMA-assigned) or later (when a DHCP relay sees the server's
    Reply, or DAD snooping sees the mobile's Neighbor Solicitation).
    """

    name = Attribute("The name that selects this strategy in the MAG config.")

    def start(mag):
        """
        Begin serving. C{mag} provides L{IMagControl}. May return a Deferred.
        """

    def stop():
        """Stop serving and release what start() took. May return a Deferred."""

    def attached(event):
        """A mobile attached; C{event} is an L{netlmm.access.AttachmentEvent}."""

    def bound(mnId, phoa):
        """
        The mobile is bound at the LMA with C{phoa} (answer it now);
        C{mag.homes(mnId)} has its prefix and IPv4 home address as well.
        """

    def unbound(mnId, phoa, reason):
        """The mobile is not bound through this MAG any more (or never was)."""

    # Optional: a strategy may also provide
    #
    #   def addressConflict(mnId, phoa):
    #       """
    #       The PMIP client found C{phoa}, which the mobile configured itself
    #       (stateless mode), used by another mobile (Appendix B: Notification
    #       'address-conflict'). The mobile stays attached: defend the address
    #       on the access link so the mobile picks another, and call
    #       C{mag.addressReady} again with the new one.
    #       """
    #
    # A strategy without it gets unbound(mnId, phoa, "address-conflict")
    # instead (it is not part of the interface, so that strategies written
    # before it still validate).


class IMagControl(Interface):
    """What a MAG service offers to its strategy and attachment detector."""

    address = Attribute("The MAG's data-plane address (the pCoA), IPv6Address.")

    def addressReady(mnId, phoa, mode, prefix=None):
        """
        Trigger the PMIP client for C{mnId} with C{phoa} (None: the LMA
        assigns the address, mode LMA_ASSIGNED, or a prefix of the mobile's
        own, mode PREFIX, where C{prefix} may name one already known).
        """

    def homes(mnId):
        """
        What C{mnId} is bound with through this MAG: a
        L{netlmm.core.mag.Homes} (pHoA, per-MN prefix, IPv4 home address and
        default router; all None when it is not bound).
        """

    def attached(event):
        """A mobile appeared on the access link (L{AttachmentEvent})."""

    def detached(mnId):
        """A mobile left the access link."""


class IAttachmentDetector(Interface):
    """
    Tells a MAG when mobiles attach and detach: link events, Router
    Solicitation snooping, or an operator's commands.
    """

    name = Attribute("The name that selects this detector in the MAG config.")

    def start(mag):
        """Begin reporting to C{mag} (an L{IMagControl}). May return a Deferred."""

    def stop():
        """Stop reporting. May return a Deferred."""


class IDataPlane(Interface):
    """
    Moves the mobiles' packets: at the LMA a route per home towards the MAG's
    address; at a MAG the tunnel to the LMA for the mobiles it serves. Every
    method may return a Deferred; blocking work must not run on the reactor
    thread.

    A I{home} (C{phoa} below) is one of: an C{IPv6Address} (one pHoA), an
    C{IPv6Network} (a whole per-MN prefix, draft E.3: every address in it is
    the mobile's) or an C{IPv4Address} (an RFC 5844 IPv4 home address,
    carried IPv4-in-IPv6). One call per home: a mobile with a prefix and an
    IPv4 address gets two. A data plane that cannot carry a kind of home
    fails the call with an error that names the data plane.
    """

    name = Attribute("The name that selects this data plane in the config.")

    def start():
        """Prepare (and reconcile leftovers of an earlier run)."""

    def stop():
        """Remove everything this data plane installed."""

    def addRoute(phoa, pcoa):
        """LMA: tunnel traffic for home C{phoa} to the MAG at C{pcoa}."""

    def moveRoute(phoa, old, new):
        """LMA: the tunnel for home C{phoa} now ends at C{new} instead of C{old}."""

    def removeRoute(phoa, pcoa):
        """LMA: stop tunnelling traffic for home C{phoa}."""

    def tunnelUp(mnId, phoa, lma):
        """
        MAG: carry what home C{phoa} sends through the tunnel with C{lma}, and
        deliver what comes back for it on the access link.
        """

    def tunnelDown(mnId, phoa, lma):
        """MAG: stop carrying home C{phoa}'s traffic."""


class IStateStore(Interface):
    """
    Where a daemon keeps what must survive a restart (L{netlmm.store}): one
    record per entry (a binding, a bound mobile) under a key of bytes (the
    MN identifier), written before the answer that acknowledges the change
    leaves. The role service stages the core's
    L{netlmm.core.effects.Persist} effects with L{put} and holds the answers
    that follow them until L{commit} fires; a store writes everything staged
    while its previous write ran in one go (group commit). L{load} and
    L{rewrite} block and are for start-up only.
    """

    location = Attribute("Text naming where the state is (a path), for logs and errors.")
    counters = Attribute(
        "A dict of ints for the metrics: 'commits' (transactions written), "
        "'entries' (entries they carried), 'failures' (writes that failed).")
    latency = Attribute(
        "A L{netlmm.metrics.Histogram} of the seconds each committed write took "
        "from its start until it was durable.")
    pending = Attribute("How many entries are staged or being written.")

    def load():
        """
        Every entry kept, as an iterable of (key, record) pairs with the
        records decoded: a list, or an iterator that reads and decodes them
        as it goes (the service restores a chunk at a time, so a large
        state is never held whole). An entry of an older format whose key
        the store cannot tell comes with key None (the service then has the
        core make the records again and calls L{rewrite}). Raises
        L{netlmm.store.StateError} when the state cannot be read, at once
        or while iterating.
        """

    def put(key, record):
        """
        Stage C{record} (a dict of JSON values and ipaddress objects) under
        C{key}, or the deletion of C{key} when C{record} is None. A later
        put of the same key replaces an earlier one not yet written. A
        record that cannot be kept raises TypeError or ValueError at once.
        """

    def commit():
        """
        A Deferred that fires once everything put so far is durable. It
        does not fail: a store that cannot write says so in the log and
        keeps trying, and what waits for it keeps waiting.
        """

    def rewrite(persists):
        """Make the store hold exactly these L{Persist} effects (at start-up)."""

    def close():
        """Write what is staged and release the store; may return a Deferred."""


class IPartFactory(IPlugin):
    """
    A plugin that builds one kind of pluggable part from its config table.
    Plugins are found with L{twisted.plugin.getPlugins} in the package
    C{netlmm.plugins}: a module-level object there that provides one of the
    interfaces below (they extend L{IPlugin}, which is how Twisted's
    plugin cache recognises a plugin) is available by its C{name}. See
    doc/plugins.md.
    """

    name = Attribute(
        "The name that selects the part in the config (str). Two plugins of "
        "the same kind may not claim the same name.")

    description = Attribute("One line saying what the part is, for `netlmm plugins`.")

    module = Attribute(
        "The dotted name of the module that implements the part, for "
        "`netlmm plugins` and error messages.")

    def fromConfig(table, **context):
        """
        Build the part. C{table} is a L{netlmm.config.Table} of the part's
        config table (C{[mag.assignment]}, ...): read options with its typed
        getters and call C{table.finish()} so unknown keys are reported; raise
        L{netlmm.config.ConfigError} naming the key for a bad value.
        C{context} holds what the daemon offers (see each interface); accept
        and ignore keywords you do not use, new ones may be added.
        """


class IAddressAssignmentFactory(IPartFactory):
    """
    Builds an L{IAddressAssignment} for a MAG, selected by
    C{[mag.assignment] strategy = NAME}. Context: C{reactor}, and C{access}
    (the MAG's access link, L{netlmm.access.link.AccessLink}, or None when the config
    has no C{[mag.access]}).
    """


class IAttachmentDetectorFactory(IPartFactory):
    """
    Builds an L{IAttachmentDetector} for a MAG, selected by
    C{[mag.attachment] detector = NAME}. Context: C{reactor}, C{access}.
    """


class IDataPlaneFactory(IPartFactory):
    """
    Builds an L{IDataPlane}, selected by C{[mag.dataplane] kind = NAME} or
    C{[lma.dataplane] kind = NAME}. Context: C{reactor}, C{role}
    (C{"mag"} or C{"lma"}).
    """


class IAnchorPolicy(Interface):
    """
    Chooses which LMA anchors a mobile when a PMIP client has several
    (draft 4.4; L{netlmm.core.anchors}). Asked once per mobile the client
    does not know yet; a known mobile stays with its LMA. Sans-IO: it must
    answer at once.
    """

    anchors = Attribute("The L{netlmm.core.anchors.Anchor}s it chooses among.")

    def choose(mnId, home):
        """
        The L{netlmm.core.anchors.Anchor} for C{mnId} (bytes), whose Trigger
        names C{home} (an IPv6 address or prefix, or None); None refuses the
        mobile (the MAG is told not-authorized).
        """


class IAnchorPolicyFactory(IPartFactory):
    """
    Builds an L{IAnchorPolicy} for a PMIP client with several LMAs, selected
    by C{[pmip.anchor] policy = NAME}. Context: C{anchors}, the configured
    L{netlmm.core.anchors.Anchor}s in config order.
    """
