"""
The 'slaac' strategy (draft Appendix B): the mobile forms its pHoA from the
prefix the MAG advertises, and the MAG learns it by snooping the mobile's
Duplicate Address Detection.

The DAD Neighbor Solicitation (source ::, target the new address, Ethernet
source the mobile's MAC) is not delivered to raw ICMPv6 sockets, so the
access link's AF_PACKET socket reads it. Only addresses inside the advertised
prefix count (the link-local DAD does not). A mobile that arrives with its
address already configured and skips DAD is learned from the first ICMPv6
packet it sends from an address of the prefix. The MAG then triggers the PMIP
client with the stateless flag, which asks the PMIP client for the
uniqueness check of Appendix B.

The MAG never answers the mobile's DAD for an address the PMIP client
accepts: the mobile keeps its address on every MAG of the domain (section
4.2 step 1). When the PMIP client (or one of its peers) finds the address
used by another mobile, the MAG hears 'address-conflict' and L{addressConflict}
defends the address with a Neighbor Advertisement for the tentative target:
the mobile's kernel marks it duplicate (dadfailed) and, with stable-privacy
addresses (RFC 7217, Linux addr_gen_mode=2/3 and idgen_retries), configures
another one, whose DAD is learned and triggered like the first.

The mobile is matched to its attachment by MAC: the MN identifier is the MAC
as text 'aa:bb:cc:dd:ee:ff', as the 'rs' and 'link' detectors name it (an
attachment event's C{linkLayer}, when given, is used instead).
"""

from collections import OrderedDict
from ipaddress import IPv6Address

from twisted.logger import Logger
from zope.interface import implementer

from netlmm.interfaces import IAddressAssignment
from netlmm.wire.control import AddressMode, showMnId
from netlmm.access import macOfEvent
from netlmm.wire.errors import DecodeError
from netlmm.wire.icmpv6 import NeighborSolicitation, UNSPECIFIED, macText

#: How many MAC -> address pairs are remembered (oldest forgotten first).
MAX_REMEMBERED = 4096


@implementer(IAddressAssignment)
class SlaacAssignment:
    """
    Learns each attached mobile's SLAAC address in C{prefix} from the frames
    C{link} (an L{netlmm.access.link.AccessLink}) sees, and calls
    C{mag.addressReady(mnId, address, AddressMode.STATELESS)} once per
    attachment.
    """

    name = "slaac"
    log = Logger()

    def __init__(self, link, prefix):
        self.link = link
        self.prefix = prefix
        self.mag = None
        #: MN identifier -> MAC (6 octets) of the attached mobiles.
        self.attachedMobiles = {}
        #: MN identifiers whose address has gone to the MAG in this attachment.
        self.reported = {}
        #: MAC -> the last address it was seen configuring.
        self.learned = OrderedDict()
        #: MAC -> how that address was learned: 'dad' or 'traffic'.
        self.learnedBy = {}
        #: MN identifier -> addresses found used by another mobile.
        self.conflicts = {}
        #: How many Neighbor Advertisements defended an address.
        self.defended = 0

    @classmethod
    def fromConfig(cls, table, reactor=None, access=None, system=None, **context):
        """
        Uses the [mag.access] link and prefix. Without [mag.access] (another
        router advertises), options C{interface} and C{prefix} are required.
        """
        from netlmm.access.link import snoopingOnly
        from netlmm.config import ConfigError
        if access is not None:
            table.finish()
            if access.config.prefix is None:
                raise ConfigError("mag.access.prefix: the 'slaac' strategy learns addresses "
                                  "in the shared prefix the MAG advertises; it is required")
            return cls(access, access.config.prefix)
        interface = table.string("interface", required=True)
        prefix = table.network("prefix", required=True)
        if prefix.prefixlen != 64:
            raise ConfigError(f"{table.where}.prefix: SLAAC needs a /64, got {prefix}")
        table.finish()
        return cls(snoopingOnly(reactor, interface, system), prefix)

    def start(self, mag):
        self.mag = mag
        self.link.frameListeners.append(self._frame)
        self.link.start()
        self.log.info("slaac strategy: learning addresses in {prefix} on {interface}",
                      prefix=self.prefix, interface=self.link.config.interface)

    def stop(self):
        if self._frame in self.link.frameListeners:
            self.link.frameListeners.remove(self._frame)
            self.link.stop()
        self.mag = None

    # ------------------------------------------------------------ IAddressAssignment

    def attached(self, event):
        mac = macOfEvent(event)
        if mac is None:
            self.log.warn("slaac strategy: MN {mnId} has no MAC to match its DAD by; "
                          "it stays unbound", mnId=showMnId(event.mnId))
            return
        self.attachedMobiles[event.mnId] = mac
        self.reported.pop(event.mnId, None)
        self.conflicts.pop(event.mnId, None)
        address = event.phoa or self.learned.get(mac)
        if address is not None and address in self.prefix:
            self._report(event.mnId, address)

    def bound(self, mnId, phoa):
        pass

    def unbound(self, mnId, phoa, reason):
        self.attachedMobiles.pop(mnId, None)
        self.reported.pop(mnId, None)
        self.conflicts.pop(mnId, None)

    def addressConflict(self, mnId, phoa):
        """
        Another mobile has C{phoa}: defend it on the link and wait for the
        mobile's next address (the attachment stays).
        """
        self.reported.pop(mnId, None)
        self.conflicts.setdefault(mnId, set()).add(phoa)
        mac = self.attachedMobiles.get(mnId)
        if mac is not None and self.learned.get(mac) == phoa:
            del self.learned[mac]
            self.learnedBy.pop(mac, None)
        self.log.warn("slaac strategy: {phoa} of {mnId} is another mobile's; "
                      "defending it so that the mobile picks another",
                      phoa=phoa, mnId=showMnId(mnId))
        self._defend(phoa)

    def _defend(self, phoa):
        if self.link.defend(phoa):
            self.defended += 1

    # ------------------------------------------------------------ snooping

    def _frame(self, frame):
        address = None
        if frame.source == UNSPECIFIED:
            try:
                message = frame.icmp()
            except DecodeError as e:
                self.log.debug("slaac strategy: bad ND from {mac}: {error}",
                               mac=macText(frame.sourceMac), error=e)
                return
            if isinstance(message, NeighborSolicitation):
                address = message.target
            how = "dad"
        elif not frame.source.is_link_local:
            # A mobile that arrived with its address and did no DAD here.
            address = frame.source
            how = "traffic"
        if address is None or address not in self.prefix or address.is_link_local:
            return
        self.learn(frame.sourceMac, address, how)

    def learn(self, mac, address, how="dad"):
        """The mobile with C{mac} (6 octets) configures ('dad') or uses ('traffic') C{address}."""
        address = IPv6Address(address)
        if self.learned.get(mac) != address:
            self.learnedBy[mac] = how
            self.learned[mac] = address
            self.learned.move_to_end(mac)
            while len(self.learned) > MAX_REMEMBERED:
                self.learnedBy.pop(self.learned.popitem(last=False)[0], None)
        for mnId, m in list(self.attachedMobiles.items()):
            if m == mac:
                self._report(mnId, address)

    def _report(self, mnId, address):
        if address in self.conflicts.get(mnId, ()):
            # Still probing the address it may not have: defend it again.
            self._defend(address)
            return
        previous = self.reported.get(mnId)
        if previous == address:
            return
        if previous is not None:
            # One pHoA per mobile: a second address (a privacy address) is
            # not bound; the first one stays.
            self.log.info("slaac strategy: {mnId} also configures {address}; "
                          "keeping {previous}", mnId=showMnId(mnId),
                          address=address, previous=previous)
            return
        self.reported[mnId] = address
        self.log.info("slaac strategy: {mnId} configured {address}",
                      mnId=showMnId(mnId), address=address)
        if self.mag is not None:
            self.mag.addressReady(mnId, address, AddressMode.STATELESS)
