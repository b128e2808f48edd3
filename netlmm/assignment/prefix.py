"""
The 'prefix' strategy (draft Appendix E.3, RFC 5213's model): every mobile
gets a prefix of its own, and the MAG makes the shared physical access link
look like a link of the mobile's own.

On the mobile's L2 attachment the MAG triggers the PMIP client in address
mode PREFIX (no address: the LMA assigns the prefix, or gives back the one
the mobile has when it hands over). Once the Notification brings the
prefix, the MAG sends the mobile Router Advertisements carrying that prefix
alone, each in a frame addressed to the mobile's MAC
(L{netlmm.access.link.AccessLink.advertiseTo}): at once and twice more in
the next two seconds, in answer to each of its Router Solicitations, and
every ra_interval_min..ra_interval_max seconds while it is bound. No RA goes
to all nodes, so no mobile learns another's prefix.

The Prefix Information option carries the L (on-link) and A (SLAAC) flags:
the prefix is on-link for its mobile only, since no other node on the link
has an address in it. Addresses of another mobile's prefix are not on-link,
so a mobile sends to them through its default router, the MAG, whose source
rule for the prefix puts the packet into the tunnel to the LMA (the data
plane's uplink rule comes before the main table): mobiles reach each other
only through the LMA, and never run DAD or address resolution for each
other's addresses. Every address the mobile forms in its prefix works (the
data plane routes the whole prefix). When a binding ends while the mobile
is still here (moved elsewhere, lost) its RA deprecates the prefix and
withdraws the default router.

After an anchor move (draft 4.4) the mobile's RA carries its new prefix and,
until the MAG releases them, its old prefixes with preferred lifetime 0 and
the valid lifetime they have left: the mobile forms a new address for new
connections, and those open on the old address go on through the old LMA.
"""

from twisted.logger import Logger
from zope.interface import implementer

from netlmm.access import macOfEvent
from netlmm.interfaces import IAddressAssignment
from netlmm.wire.control import AddressMode, mnIdProblem, showMnId
from netlmm.wire.icmpv6 import macText

#: Seconds after binding at which the mobile gets its RA: at once, and again
#: in case its IPv6 was not ready yet (RFC 6275 7.5 allows such rates).
FIRST_ADVERTISEMENTS = (0.0, 0.5, 2.0)


@implementer(IAddressAssignment)
class PrefixAssignment:
    """
    Per-MN prefixes on the access link C{link} (an
    L{netlmm.access.link.AccessLink} without a shared prefix).
    """

    name = "prefix"
    log = Logger()

    def __init__(self, reactor, link, configured=None):
        self.reactor = reactor
        self.link = link
        #: MN identifier -> the prefix the Trigger names for it (config).
        self.configured = dict(configured or {})
        self.mag = None
        #: MN identifier -> MAC (6 octets) of the attached mobiles.
        self.attachedMobiles = {}
        #: MN identifier -> the prefix it is bound with here.
        self.prefixes = {}
        self._timer = None
        self._pending = []
        #: RAs sent to single mobiles.
        self.advertised = 0

    @classmethod
    def fromConfig(cls, table, reactor=None, access=None, **context):
        """
        Needs [mag.access] without a shared C{prefix} (its RA settings
        apply to each mobile's RA). Option C{prefixes}: a table MN
        identifier = "prefix/64" naming a mobile's prefix in its Trigger
        (an LMA that assigns none, e.g. one that echoes the prefix a PBU
        asks for, as OPMIP does); the others ask the LMA for one.
        """
        from netlmm.access.link import checkPrefix
        from netlmm.config import ConfigError
        raw = table.table("prefixes")
        configured = {}
        for mnId in list(raw.data):
            prefix = raw.network(mnId, required=True)
            checkPrefix(prefix, f"{raw.where}.{mnId}")
            problem = mnIdProblem(mnId.encode("utf-8"))
            if problem is not None:
                raise ConfigError(f"{raw.where}: the MN identifier {mnId!r} {problem}")
            configured[mnId.encode("utf-8")] = prefix
        raw.finish()
        table.finish()
        if access is None:
            raise ConfigError(f"{table.where}.strategy: 'prefix' sends each mobile its own "
                              "Router Advertisements; it needs [mag.access]")
        if access.config.prefix is not None:
            raise ConfigError(
                "mag.access.prefix: the 'prefix' strategy gives each mobile a prefix of its "
                "own; leave out the shared prefix (it would be advertised to all)")
        if not access.config.advertise:
            raise ConfigError("mag.access.advertise: the 'prefix' strategy advertises each "
                              "mobile's prefix; it cannot be false")
        return cls(reactor, access, configured)

    # ------------------------------------------------------------ IAddressAssignment

    def start(self, mag):
        self.mag = mag
        self.link.solicitationListeners.append(self._solicited)
        self.link.start()
        self._schedule()
        self.log.info("prefix strategy: a prefix of its own for each mobile on {interface}",
                      interface=self.link.config.interface)

    def stop(self):
        # RFC 4861 6.2.5: a router that stops tells its hosts.
        for mnId in list(self.prefixes):
            self._advertise(mnId, routerLifetime=0)
        for call in [self._timer] + self._pending:
            if call is not None and call.active():
                call.cancel()
        self._timer = None
        self._pending = []
        if self._solicited in self.link.solicitationListeners:
            self.link.solicitationListeners.remove(self._solicited)
            self.link.stop()
        self.mag = None

    def attached(self, event):
        mac = macOfEvent(event)
        if mac is None:
            self.log.warn("prefix strategy: MN {mnId} has no MAC to send its Router "
                          "Advertisements to; it stays unbound",
                          mnId=showMnId(event.mnId))
            return
        self.attachedMobiles[event.mnId] = mac
        self.mag.addressReady(event.mnId, None, AddressMode.PREFIX,
                              prefix=self.configured.get(event.mnId))

    def bound(self, mnId, phoa):
        prefix = self.mag.homes(mnId).prefix
        if prefix is None or mnId not in self.attachedMobiles:
            self.log.warn("prefix strategy: {mnId} is bound without a prefix; nothing to "
                          "advertise", mnId=showMnId(mnId))
            return
        self.prefixes[mnId] = prefix
        self.log.info("prefix strategy: {mnId} has {prefix}",
                      mnId=showMnId(mnId), prefix=prefix)
        for delay in FIRST_ADVERTISEMENTS:
            if delay:
                self._pending.append(self.reactor.callLater(delay, self._again, mnId, prefix))
            else:
                self._advertise(mnId)
        self._pending = [c for c in self._pending if c.active()]

    def unbound(self, mnId, phoa, reason):
        if mnId in self.prefixes and reason != "detached":
            # Still on the link: its addresses must stop being used.
            self._advertise(mnId, routerLifetime=0, preferred=0)
        self.prefixes.pop(mnId, None)
        self.attachedMobiles.pop(mnId, None)

    # ------------------------------------------------------------ advertising

    def _advertise(self, mnId, routerLifetime=None, preferred=None):
        mac = self.attachedMobiles.get(mnId)
        prefix = self.prefixes.get(mnId)
        if mac is None or prefix is None:
            return False
        deprecated = ()
        oldHomes = getattr(self.mag, "oldHomes", None)
        if oldHomes is not None:
            now = self.reactor.seconds()
            deprecated = [(o.prefix, max(0, o.deadline - now)) for o in oldHomes(mnId)]
        if self.link.advertiseTo(mac, [prefix], routerLifetime, preferred, deprecated):
            self.advertised += 1
            return True
        return False

    def _again(self, mnId, prefix):
        if self.prefixes.get(mnId) == prefix:
            self._advertise(mnId)

    def _solicited(self, mac, source):
        for mnId, m in self.attachedMobiles.items():
            if m == mac:
                if not self._advertise(mnId):
                    self.log.debug("prefix strategy: RS from {mac}, not bound yet",
                                   mac=macText(mac))
                return

    def _schedule(self):
        config = self.link.config
        delay = self.link.random.uniform(config.minInterval, config.maxInterval)
        self._timer = self.reactor.callLater(delay, self._periodic)

    def _periodic(self):
        for mnId in list(self.prefixes):
            self._advertise(mnId)
        self._schedule()
