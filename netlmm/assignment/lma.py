"""The LMA-assigned strategy (draft Appendix A)."""

from twisted.logger import Logger
from zope.interface import implementer

from netlmm.interfaces import IAddressAssignment
from netlmm.wire.control import AddressMode, showMnId


@implementer(IAddressAssignment)
class LmaAssignment:
    """
    The MAG asks the PMIP client to bind the mobile without a pHoA; the PBU
    carries the all-zero address and the LMA assigns one in the PBAck, which
    reaches the MAG in the Notification. The MAG then hands the address to
    the mobile as its DHCPv6 proxy server (C{dhcp}, a
    L{netlmm.assignment.dhcp6server.DhcpProxyServer}): then the mobile's Solicit,
    Request, Renew or Rebind triggers the PMIP client, and the Notification's
    pHoA answers it. Without C{dhcp} the attachment triggers at once.
    Callables in C{listeners} hear C{(mnId, phoa)} on binding.
    """

    name = "lma-assigned"
    log = Logger()

    def __init__(self, dhcp=None):
        self.mag = None
        self.listeners = []
        self.dhcp = dhcp

    @classmethod
    def fromConfig(cls, table, reactor=None, access=None, system=None, **context):
        """
        Options: C{dhcp} (serve DHCPv6 on the access link: true by default
        with [mag.access] or C{interface}), C{interface} (without
        [mag.access]), C{preferred_lifetime} (1800) and C{valid_lifetime}
        (3600) of the address in the answers.
        """
        from netlmm.config import ConfigError
        interface = table.string("interface", access.config.interface
                                 if access is not None else None)
        dhcp = table.boolean("dhcp", interface is not None)
        preferred = table.number("preferred_lifetime", 1800, minimum=1, maximum=0xFFFFFFFE,
                                 integer=True)
        valid = table.number("valid_lifetime", max(3600, preferred), minimum=1,
                             maximum=0xFFFFFFFE, integer=True)
        if preferred > valid:
            raise ConfigError(f"{table.where}.preferred_lifetime: expected at most "
                              f"valid_lifetime ({valid}), got {preferred}")
        table.finish()
        if not dhcp:
            return cls()
        if interface is None:
            raise ConfigError(f"{table.where}.interface: the DHCPv6 server needs the access "
                              "interface ([mag.access] or this option)")
        from netlmm.access.link import snoopingOnly
        from netlmm.assignment.dhcp6server import DhcpProxyServer
        if access is not None and interface != access.config.interface:
            raise ConfigError(f"{table.where}.interface: must be [mag.access] interface "
                              f"({access.config.interface!r}), got {interface!r}")
        link = access if access is not None else snoopingOnly(reactor, interface, system)
        strategy = cls()
        strategy.dhcp = DhcpProxyServer(reactor, link, strategy._trigger, preferred=preferred,
                                        valid=valid, interface=interface)
        return strategy

    def start(self, mag):
        self.mag = mag
        if self.dhcp is not None:
            self.dhcp.start()

    def stop(self):
        if self.dhcp is not None:
            self.dhcp.stop()
        self.mag = None

    def _trigger(self, mnId):
        if self.mag is not None:
            self.mag.addressReady(mnId, None, AddressMode.LMA_ASSIGNED)

    def attached(self, event):
        if self.dhcp is None:
            self.mag.addressReady(event.mnId, None, AddressMode.LMA_ASSIGNED)
            return
        from netlmm.access import macOfEvent
        mac = macOfEvent(event)
        if mac is None:
            self.log.warn("lma-assigned: MN {mnId} has no MAC to match its DHCPv6 client by; "
                          "it stays unbound", mnId=showMnId(event.mnId))
            return
        self.dhcp.attached(event.mnId, mac)

    def bound(self, mnId, phoa):
        self.log.info("MN {mnId} is assigned {phoa}",
                      mnId=showMnId(mnId), phoa=phoa)
        for listener in list(self.listeners):
            listener(mnId, phoa)
        if self.dhcp is not None:
            self.dhcp.bound(mnId, phoa)

    def unbound(self, mnId, phoa, reason):
        if self.dhcp is not None:
            self.dhcp.unbound(mnId)
