"""The LMA-assigned strategy (draft Appendix A)."""

from twisted.logger import Logger
from zope.interface import implementer

from netlmm.interfaces import IAddressAssignment
from netlmm.wire.control import AddressMode


@implementer(IAddressAssignment)
class LmaAssignment:
    """
    The MAG asks the PMIP client to bind the mobile without a pHoA; the PBU
    carries the all-zero address and the LMA assigns one in the PBAck, which
    reaches the MAG in the Notification. The MAG then hands the address to
    the mobile (as its DHCPv6 proxy; the DHCP side comes with the DHCP
    strategies). Callables in C{listeners} hear C{(mnId, phoa)} on binding.
    """

    name = "lma-assigned"
    log = Logger()

    def __init__(self):
        self.mag = None
        self.listeners = []

    @classmethod
    def fromConfig(cls, table, **context):
        """No options."""
        table.finish()
        return cls()

    def start(self, mag):
        self.mag = mag

    def stop(self):
        self.mag = None

    def attached(self, event):
        self.mag.addressReady(event.mnId, None, AddressMode.LMA_ASSIGNED)

    def bound(self, mnId, phoa):
        self.log.info("MN {mnId} is assigned {phoa}",
                      mnId=mnId.decode("utf-8", "replace"), phoa=phoa)
        for listener in list(self.listeners):
            listener(mnId, phoa)

    def unbound(self, mnId, phoa, reason):
        pass
