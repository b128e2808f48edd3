"""
The kernel data plane built from SRv6 lightweight tunnels in reduced mode.

With one segment, C{seg6 mode encap.red} puts plain IPv6-in-IPv6 on the wire
(next header 41, no routing header): the RFC 2473 tunnel that RFC 5213 uses,
so the peer may be an ip6tnl gateway. No tunnel device is needed.

LMA (a home is a pHoA /128, a per-MN prefix or an IPv4 home address /32)::

    ip -6 route replace HOME encap seg6 mode encap.red segs PCOA dev CORE proto 213
    ip route replace V4/32 encap seg6 mode encap.red segs PCOA dev CORE proto 213
    ip -6 rule add pref 10 to SELF/128 ipproto 41 lookup 5214 proto 213
    ip -6 route replace SELF/128 encap seg6local action End.DT6 table 254 dev CORE table 5214
    ip -6 rule add pref 10 to SELF/128 ipproto 4 lookup 5215 proto 213
    ip -6 route replace SELF/128 encap seg6local action End.DX4 nh4 0.0.0.0 dev CORE table 5215

MAG::

    ip -6 rule add pref 100 from HOME iif ACCESS lookup 5213 proto 213
    ip -6 route replace default encap seg6 mode encap.red segs LMA dev CORE table 5213
    ip -6 route replace HOME dev ACCESS proto 213
    ip rule add pref 100 from V4/32 iif ACCESS lookup 5213 proto 213
    ip route replace default encap seg6 mode encap.red segs LMA dev CORE table 5213
    ip route replace V4/32 dev ACCESS proto 213
    ip -6 rule add pref 10 to SELF/128 ipproto 41 lookup 5214 proto 213
    ip -6 route replace SELF/128 encap seg6local action End.DX6 nh6 :: dev ACCESS table 5214
    ip -6 rule add pref 10 to SELF/128 ipproto 4 lookup 5215 proto 213
    ip -6 route replace SELF/128 encap seg6local action End.DX4 nh4 0.0.0.0 dev ACCESS table 5215

and on both, the local table moves from rule priority 0 to 50 so that the
decapsulation rules come first. The IPv4 packets of a mobile travel
IPv4-in-IPv6 (outer next header 4, RFC 5844 and RFC 2473); End.DX4 with next
hop 0.0.0.0 routes the inner packet by its destination in the main table (at
the LMA towards the correspondent, at the MAG to the mobile on the access
link), which needs IPv4 forwarding on. The rules' ipproto is what follows
any extension headers, so a peer's Tunnel Encapsulation Limit option (RFC
2473) does not stop decapsulation. Everything carries C{proto 213}
(configurable): L{Seg6DataPlane.start} removes what an earlier run left,
L{Seg6DataPlane.stop} removes everything and puts the local rule back at 0.
"""

import subprocess
from ipaddress import IPv6Address
from socket import AF_INET, AF_INET6

from twisted.logger import Logger
from zope.interface import implementer

from netlmm.config import ConfigError
from netlmm.daemon import StartupError
from netlmm.dataplane import _netlink as nl
from netlmm.dataplane.handover import HandoverRoutes
from netlmm.interfaces import IDataPlane

MAIN_TABLE = 254


def readCommonOptions(table, role, kind):
    """
    The options the kernel data planes share, validated: C{interface},
    C{address}, C{access_interface} (MAG only), C{decap_table},
    C{decap4_table}, C{decap_priority}, C{local_priority}, C{uplink_table}
    and C{uplink_priority} (MAG only), C{protocol}.
    """
    o = nl.readEndpointOptions(table, role, kind)
    o["decapTable"] = nl.routingTable(table, "decap_table", 5214)
    o["decap4Table"] = nl.routingTable(table, "decap4_table", o["decapTable"] + 1)
    if o["decap4Table"] == o["decapTable"]:
        raise ConfigError(f"{table._key('decap4_table')}: must differ from decap_table "
                          f"({o['decapTable']}): one holds End.DT6/DX6, the other End.DX4")
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
        for key, name in (("decapTable", "decap_table"), ("decap4Table", "decap4_table")):
            if o["uplinkTable"] == o[key]:
                raise ConfigError(f"{table._key('uplink_table')}: must differ from "
                                  f"{name} ({o[key]})")
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
        raise StartupError("seg6 data plane: iproute2's 'ip' is needed to set the "
                           "tunnel source address") from None
    except subprocess.CalledProcessError as e:
        raise StartupError(f"seg6 data plane: 'ip sr tunsrc set {address}' failed: "
                           f"{e.stderr.strip()}") from None


@implementer(IDataPlane)
class Seg6DataPlane(HandoverRoutes, nl.NetlinkWork):
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
                 decapTable=5214, decap4Table=None, decapPriority=10,
                 localPriority=nl.LOCAL_PRIORITY,
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
        self.decap4Table = decapTable + 1 if decap4Table is None else decap4Table
        self.decapPriority = decapPriority
        self.localPriority = localPriority
        self.uplinkTable = uplinkTable
        self.uplinkPriority = uplinkPriority
        self.protocol = protocol
        #: LMA: home -> pCoA of the routes installed.
        self.routes = {}
        #: MAG: home -> LMA of the tunnels up.
        self.tunnels = {}
        #: MAG: LMA -> its uplink table and how many homes of each family use it.
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
        if self.role == "lma":
            encap6 = {"type": "seg6local", "action": "End.DT6", "table": MAIN_TABLE}
            oif = self._core
        else:
            encap6 = {"type": "seg6local", "action": "End.DX6", "nh6": "::"}
            oif = self._access
        # End.DX4 with next hop 0.0.0.0 routes the inner IPv4 packet by its
        # destination (End.DT4 would need a VRF device).
        encap4 = {"type": "seg6local", "action": "End.DX4", "nh4": "0.0.0.0"}
        for proto, table, encap in ((41, self.decapTable, encap6),
                                    (4, self.decap4Table, encap4)):
            nl.addRule(ipr, priority=self.decapPriority, dst=str(self.address),
                       dst_len=128, ip_proto=proto, table=table, protocol=self.protocol)
            ipr.route("replace", family=AF_INET6, dst=f"{self.address}/128",
                      table=table, oif=oif, proto=self.protocol, encap=encap)

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

    def _forwardRoute(self, ipr, peer):
        """Handover: into the tunnel to another MAG (see L{HandoverRoutes})."""
        return dict(oif=self._core, encap=self._encap(peer))

    def addRoute(self, phoa, pcoa):
        """Tunnel traffic for home C{phoa} to the MAG at C{pcoa}."""
        h = nl.home(phoa, self.name)
        self.routes[h] = IPv6Address(pcoa)
        return self._do(self._homeRoute, h, str(pcoa))

    def moveRoute(self, phoa, old, new):
        """Replace the route: the tunnel for C{phoa} now ends at C{new}."""
        h = nl.home(phoa, self.name)
        self.routes[h] = IPv6Address(new)
        return self._do(self._homeRoute, h, str(new))

    def removeRoute(self, phoa, pcoa):
        """Delete the route for C{phoa}."""
        h = nl.home(phoa, self.name)
        self.routes.pop(h, None)
        return self._do(self._deleteHomeRoute, h)

    def _homeRoute(self, ipr, h, pcoa):
        ipr.route("replace", family=nl.family(h), dst=nl.destination(h), oif=self._core,
                  proto=self.protocol, encap=self._encap(pcoa))

    def _deleteHomeRoute(self, ipr, h):
        nl.ignoreMissing(ipr.route, "del", family=nl.family(h), dst=nl.destination(h),
                         table=MAIN_TABLE, proto=self.protocol)

    # ----------------------------------------------------------------- MAG

    def tunnelUp(self, mnId, phoa, lma):
        """Send what home C{phoa} sends to C{lma}; deliver to it on the access link."""
        h, lma = nl.home(phoa, self.name), IPv6Address(lma)
        previous = self.tunnels.get(h)
        if previous == lma:
            return self._do(self._tunnelUp, h, str(lma), self._uplinks[lma]["table"], False)
        steps = []
        if previous is not None:
            steps.append(self.tunnelDown(mnId, h, previous))
        self.tunnels[h] = lma
        uplink = self._uplinks.get(lma)
        if uplink is None:
            used = {u["table"] for u in self._uplinks.values()}
            table = self.uplinkTable
            while (table in used or table in nl.RESERVED_TABLES
                   or table in (self.decapTable, self.decap4Table)):
                table += 1
            uplink = self._uplinks[lma] = {"table": table, AF_INET6: 0, AF_INET: 0}
        f = nl.family(h)
        uplink[f] += 1
        return self._do(self._tunnelUp, h, str(lma), uplink["table"], uplink[f] == 1)

    def _tunnelUp(self, ipr, h, lma, table, first):
        f = nl.family(h)
        if first:
            ipr.route("replace", family=f, dst=nl.anyDestination(f), table=table,
                      oif=self._core, proto=self.protocol, encap=self._encap(lma))
        nl.addRule(ipr, **self._uplinkRule(h, table))
        ipr.route("replace", family=f, dst=nl.destination(h), oif=self._access,
                  proto=self.protocol)

    def tunnelDown(self, mnId, phoa, lma):
        """Stop carrying C{phoa}'s traffic; drop the LMA's route when unused."""
        h = nl.home(phoa, self.name)
        lma = self.tunnels.pop(h, None)
        if lma is None:
            return None
        uplink = self._uplinks[lma]
        f = nl.family(h)
        uplink[f] -= 1
        last = uplink[f] == 0
        if not (uplink[AF_INET6] or uplink[AF_INET]):
            del self._uplinks[lma]
        return self._do(self._tunnelDown, h, uplink["table"], last)

    def _tunnelDown(self, ipr, h, table, last):
        f = nl.family(h)
        nl.ignoreMissing(ipr.rule, "del", **self._uplinkRule(h, table))
        self._deleteHomeRoute(ipr, h)
        if last:
            nl.ignoreMissing(ipr.route, "del", family=f, dst=nl.anyDestination(f),
                             table=table, proto=self.protocol)
