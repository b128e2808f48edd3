"""A data plane that only remembers: for tests, the demo, and dry runs."""

from collections import deque

from twisted.logger import Logger
from zope.interface import implementer

from netlmm.interfaces import IDataPlane


@implementer(IDataPlane)
class MemoryDataPlane:
    """
    Keeps the routes (LMA: home -> pCoA) and tunnels (MAG: home -> LMA) it
    was asked for in dictionaries, and the last L{CHANGES_KEPT} changes in
    C{changes} (oldest first). A home is whatever it is given (a pHoA, a
    per-MN prefix, an IPv4 address).
    """

    #: Changes kept in C{changes}: the shipped LMA runs on this data plane,
    #: and a list of every change grew by a tuple a binding, forever.
    CHANGES_KEPT = 1000

    name = "memory"
    log = Logger()

    def __init__(self):
        self.routes = {}
        self.tunnels = {}
        #: Handover: pHoA -> how its downlink goes; the neighbours accepted.
        self.handovers = {}
        self.accepted = set()
        self.changes = deque(maxlen=self.CHANGES_KEPT)
        self.running = False

    @classmethod
    def fromConfig(cls, table, **context):
        """No options."""
        table.finish()
        return cls()

    def start(self):
        self.running = True

    def stop(self):
        self.running = False
        self.routes.clear()
        self.tunnels.clear()

    def addRoute(self, phoa, pcoa):
        self.routes[phoa] = pcoa
        self.changes.append(("add", phoa, pcoa))

    def moveRoute(self, phoa, old, new):
        self.routes[phoa] = new
        self.changes.append(("move", phoa, old, new))

    def removeRoute(self, phoa, pcoa):
        self.routes.pop(phoa, None)
        self.changes.append(("remove", phoa, pcoa))

    def tunnelUp(self, mnId, phoa, lma):
        self.tunnels[phoa] = lma
        self.changes.append(("up", phoa, lma))

    def tunnelDown(self, mnId, phoa, lma):
        self.tunnels.pop(phoa, None)
        self.changes.append(("down", phoa, lma))

    # Handover (see netlmm.dataplane.handover.HandoverRoutes).

    def forward(self, phoa, peer):
        self.handovers[phoa] = ("forward", peer)
        self.changes.append(("forward", phoa, peer))

    def hold(self, phoa, ifname):
        self.handovers[phoa] = ("hold", ifname)
        self.changes.append(("hold", phoa, ifname))

    def deliver(self, phoa, mac=None):
        self.handovers[phoa] = ("deliver", mac)
        self.changes.append(("deliver", phoa, mac))

    def restore(self, phoa):
        if self.handovers.pop(phoa, None) is not None:
            self.changes.append(("restore", phoa))

    def acceptFrom(self, peer):
        self.accepted.add(peer)

    def refuseFrom(self, peer):
        self.accepted.discard(peer)
