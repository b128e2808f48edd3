"""The static strategy: the pHoA is given by the attachment event or config."""

from ipaddress import IPv6Address

from twisted.logger import Logger
from zope.interface import implementer

from netlmm.interfaces import IAddressAssignment
from netlmm.wire.control import AddressMode, showMnId


@implementer(IAddressAssignment)
class StaticAssignment:
    """
    The pHoA comes with the attachment (as a DHCP relay or a context transfer
    would learn it) or from a configured table MN identifier -> address. A
    mobile with neither is left unbound, and the log says why.
    """

    name = "static"
    log = Logger()

    def __init__(self, addresses=None):
        self.addresses = dict(addresses or {})
        self.mag = None

    @classmethod
    def fromConfig(cls, table, **context):
        """Options: C{addresses}, a table of MN identifier = pHoA."""
        raw = table.table("addresses")
        addresses = {}
        for mnId in list(raw.data):
            addresses[mnId.encode("utf-8")] = raw.address(mnId)
        raw.finish()
        table.finish()
        return cls(addresses)

    def start(self, mag):
        self.mag = mag

    def stop(self):
        self.mag = None

    def attached(self, event):
        phoa = event.phoa or self.addresses.get(event.mnId)
        if phoa is None:
            self.log.warn("static assignment: no pHoA known for MN {mnId}; "
                          "it stays unbound", mnId=showMnId(event.mnId))
            return
        self.mag.addressReady(event.mnId, IPv6Address(phoa), AddressMode.STATIC)

    def bound(self, mnId, phoa):
        pass

    def unbound(self, mnId, phoa, reason):
        pass

