"""
The kernel data plane built from SRv6 lightweight tunnels in reduced mode.

With one segment, C{seg6 mode encap.red} puts plain IPv6-in-IPv6 on the wire
(next header 41, no routing header): the RFC 2473 tunnel that RFC 5213 uses,
so the peer may be an ip6tnl gateway. No tunnel device is needed.

LMA::

    ip -6 route replace PHOA/128 encap seg6 mode encap.red segs PCOA dev CORE proto 213
    ip -6 rule add pref 10 to SELF/128 ipproto 41 lookup 5214 proto 213
    ip -6 route replace SELF/128 encap seg6local action End.DT6 table 254 dev CORE table 5214

MAG::

    ip -6 rule add pref 100 from PHOA/128 lookup 5213 proto 213
    ip -6 route replace default encap seg6 mode encap.red segs LMA dev CORE table 5213
    ip -6 route replace PHOA/128 dev ACCESS proto 213
    ip -6 rule add pref 10 to SELF/128 ipproto 41 lookup 5214 proto 213
    ip -6 route replace SELF/128 encap seg6local action End.DX6 nh6 :: dev ACCESS table 5214

and on both, the local table moves from rule priority 0 to 50 so that the
decapsulation rule comes first. Everything carries C{proto 213} (configurable):
L{Seg6DataPlane.start} removes what an earlier run left, L{Seg6DataPlane.stop}
removes everything and puts the local rule back at 0.
"""

import subprocess
from ipaddress import IPv6Address
from socket import AF_INET6

from twisted.logger import Logger
from zope.interface import implementer

from netlmm.config import ConfigError
from netlmm.dataplane import _netlink as nl
from netlmm.interfaces import IDataPlane

MAIN_TABLE = 254


def readCommonOptions(table, role, kind):
    """
    The options the kernel data planes share, validated: C{interface},
    C{address}, C{access_interface} (MAG only), C{decap_table},
    C{decap_priority}, C{local_priority}, C{uplink_table} and
    C{uplink_priority} (MAG only), C{protocol}.
    """
    o = nl.readEndpointOptions(table, role, kind)
    o["decapTable"] = nl.routingTable(table, "decap_table", 5214)
    o["decapPriority"] = nl.rulePriority(table, "decap_priority", 10)
    o["localPriority"] = nl.rulePriority(table, "local_priority", nl.LOCAL_PRIORITY)
    if o["decapPriority"] >= o["localPriority"]:
        raise ConfigError(
            f"{table._key('decap_priority')}: must be lower than local_priority "
            f"({o['localPriority']}), or tunnelled packets are delivered to the local "
            f"stack before they can be decapsulated; got {o['decapPriority']}")
    nl.readUplinkOptions(table, o)
    if o["role"] == "mag":
        if o["uplinkPriority"] <= o["localPriority"]:
            raise ConfigError(
                f"{table._key('uplink_priority')}: must be higher than local_priority "
                f"({o['localPriority']}), or a mobile's packets to this MAG itself go "
                f"into the tunnel; got {o['uplinkPriority']}")
        if o["uplinkTable"] == o["decapTable"]:
            raise ConfigError(f"{table._key('uplink_table')}: must differ from "
                              f"decap_table ({o['decapTable']})")
    o["protocol"] = nl.routeProtocol(table)
    return o


def setTunnelSource(address):
    """
    Set this network namespace's seg6 tunnel source (`ip sr tunsrc set`);
    pyroute2 has no SEG6 generic-netlink family, so iproute2 does it.
    """
    try:
        subprocess.run(["ip", "sr", "tunsrc", "set", address], check=True,
                       capture_output=True, text=True, timeout=10)
    except FileNotFoundError:
        raise RuntimeError("seg6 data plane: iproute2's 'ip' is needed to set the "
                           "tunnel source address") from None
    except subprocess.CalledProcessError as e:
        raise RuntimeError(f"seg6 data plane: 'ip sr tunsrc set {address}' failed: "
                           f"{e.stderr.strip()}") from None


@implementer(IDataPlane)
class Seg6DataPlane(nl.NetlinkWork):
    """
    IPv6-in-IPv6 tunnels from seg6/seg6local lightweight tunnels (see the
    module docstring for the exact routes and rules).

    @param netlink: makes the IPRoute-like object (called on the worker
        thread); tests pass a fake, the netns tests an IPRoute(netns=...).
    @param runner: runs the netlink work in order off the reactor thread
        (default: a dedicated one-thread pool).
    """

    name = "seg6"
    log = Logger()

    def __init__(self, role, interface, address, accessInterface=None,
                 decapTable=5214, decapPriority=10, localPriority=nl.LOCAL_PRIORITY,
                 uplinkTable=5213, uplinkPriority=100, protocol=nl.PROTOCOL,
                 reactor=None, netlink=nl.defaultNetlink, runner=None,
                 tunnelSource=None):
        super().__init__(reactor, netlink, runner)
        if tunnelSource is None and netlink is nl.defaultNetlink:
            tunnelSource = setTunnelSource
        #: Sets the outer source address of seg6 encapsulation (called on the
        #: worker thread); None leaves it to the kernel's source selection.
        self._tunnelSource = tunnelSource
        if role == "mag" and accessInterface is None:
            raise ValueError("a MAG data plane needs an access interface")
        self.role = role
        self.interface = interface
        self.address = IPv6Address(address)
        self.accessInterface = accessInterface
        self.decapTable = decapTable
        self.decapPriority = decapPriority
        self.localPriority = localPriority
        self.uplinkTable = uplinkTable
        self.uplinkPriority = uplinkPriority
        self.protocol = protocol
        #: LMA: pHoA -> pCoA of the routes installed.
        self.routes = {}
        #: MAG: pHoA -> LMA of the tunnels up.
        self.tunnels = {}
        #: MAG: LMA -> [uplink table, number of pHoAs using it].
        self._uplinks = {}
        self._core = self._access = None

    @classmethod
    def fromConfig(cls, table, reactor=None, role=None, **context):
        """Build from the [lma.dataplane] / [mag.dataplane] table."""
        options = readCommonOptions(table, role, cls.name)
        table.finish()
        return cls(reactor=reactor, **options)

    # ---------------------------------------------------------------- life

    def start(self):
        """Check the interfaces, remove leftovers, install decapsulation."""
        nl.supportReducedEncap()
        self.runner.start()
        return self._do(self._start)

    def _start(self, ipr):
        self._core = nl.ifindex(ipr, self.interface, f"{self.role}.dataplane.interface")
        if self.role == "mag":
            self._access = nl.ifindex(ipr, self.accessInterface,
                                      "mag.dataplane.access_interface")
        if self._tunnelSource is not None:
            # The outer source must be the tunnel end point (the pCoA or the
            # LMA address), not whatever the core interface has: ip6tnl peers
            # match the pair of end points.
            self._tunnelSource(str(self.address))
        removed = nl.removeOwn(ipr, self.protocol, self.log)
        if removed:
            self.log.info("seg6: removed {count} routes and rules left by an earlier run",
                          count=removed)
        nl.moveLocalRule(ipr, self.localPriority, self.protocol)
        nl.addRule(ipr, priority=self.decapPriority, dst=str(self.address), dst_len=128,
                   ip_proto=41, table=self.decapTable, protocol=self.protocol)
        if self.role == "lma":
            encap = {"type": "seg6local", "action": "End.DT6", "table": MAIN_TABLE}
            oif = self._core
        else:
            encap = {"type": "seg6local", "action": "End.DX6", "nh6": "::"}
            oif = self._access
        ipr.route("replace", family=AF_INET6, dst=f"{self.address}/128",
                  table=self.decapTable, oif=oif, proto=self.protocol, encap=encap)

    def stop(self):
        """Remove every route and rule installed; restore the local rule."""
        self.routes.clear()
        self.tunnels.clear()
        self._uplinks.clear()
        return self._finish(self._do(self._stop))

    def _stop(self, ipr):
        nl.removeOwn(ipr, self.protocol)
        nl.restoreLocalRule(ipr, self.protocol)
        if self._tunnelSource is not None:
            self._tunnelSource("::")

    # ----------------------------------------------------------------- LMA

    def _encap(self, segment):
        return {"type": "seg6", "mode": "encap.red", "segs": [str(segment)]}

    def addRoute(self, phoa, pcoa):
        """Tunnel traffic for C{phoa} to the MAG at C{pcoa}."""
        self.routes[IPv6Address(phoa)] = IPv6Address(pcoa)
        return self._do(self._hostRoute, str(phoa), str(pcoa))

    def moveRoute(self, phoa, old, new):
        """Replace the route: the tunnel for C{phoa} now ends at C{new}."""
        self.routes[IPv6Address(phoa)] = IPv6Address(new)
        return self._do(self._hostRoute, str(phoa), str(new))

    def removeRoute(self, phoa, pcoa):
        """Delete the route for C{phoa}."""
        self.routes.pop(IPv6Address(phoa), None)
        return self._do(self._deleteHostRoute, str(phoa), MAIN_TABLE)

    def _hostRoute(self, ipr, phoa, pcoa):
        ipr.route("replace", family=AF_INET6, dst=f"{phoa}/128", oif=self._core,
                  proto=self.protocol, encap=self._encap(pcoa))

    def _deleteHostRoute(self, ipr, phoa, table):
        nl.ignoreMissing(ipr.route, "del", family=AF_INET6, dst=f"{phoa}/128",
                         table=table, proto=self.protocol)

    # ----------------------------------------------------------------- MAG

    def tunnelUp(self, mnId, phoa, lma):
        """Send what C{phoa} sends to C{lma}; deliver to it on the access link."""
        phoa, lma = IPv6Address(phoa), IPv6Address(lma)
        previous = self.tunnels.get(phoa)
        if previous == lma:
            return self._do(self._tunnelUp, str(phoa), str(lma),
                            self._uplinks[lma][0], False)
        steps = []
        if previous is not None:
            steps.append(self.tunnelDown(mnId, phoa, previous))
        self.tunnels[phoa] = lma
        uplink = self._uplinks.get(lma)
        if uplink is None:
            used = {t for t, _ in self._uplinks.values()}
            table = self.uplinkTable
            while table in used or table in nl.RESERVED_TABLES or table == self.decapTable:
                table += 1
            uplink = self._uplinks[lma] = [table, 0]
        uplink[1] += 1
        return self._do(self._tunnelUp, str(phoa), str(lma), uplink[0], uplink[1] == 1)

    def _tunnelUp(self, ipr, phoa, lma, table, first):
        if first:
            ipr.route("replace", family=AF_INET6, dst="::/0", table=table,
                      oif=self._core, proto=self.protocol, encap=self._encap(lma))
        nl.addRule(ipr, priority=self.uplinkPriority, src=phoa, src_len=128,
                   table=table, protocol=self.protocol)
        ipr.route("replace", family=AF_INET6, dst=f"{phoa}/128", oif=self._access,
                  proto=self.protocol)

    def tunnelDown(self, mnId, phoa, lma):
        """Stop carrying C{phoa}'s traffic; drop the LMA's route when unused."""
        phoa = IPv6Address(phoa)
        lma = self.tunnels.pop(phoa, None)
        if lma is None:
            return None
        uplink = self._uplinks[lma]
        uplink[1] -= 1
        last = uplink[1] == 0
        if last:
            del self._uplinks[lma]
        return self._do(self._tunnelDown, str(phoa), uplink[0], last)

    def _tunnelDown(self, ipr, phoa, table, last):
        nl.ignoreMissing(ipr.rule, "del", family=AF_INET6, priority=self.uplinkPriority,
                         src=phoa, src_len=128, table=table, protocol=self.protocol)
        self._deleteHostRoute(ipr, phoa, MAIN_TABLE)
        if last:
            nl.ignoreMissing(ipr.route, "del", family=AF_INET6, dst="::/0",
                             table=table, proto=self.protocol)
