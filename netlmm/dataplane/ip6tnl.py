"""
The classic kernel data plane: ip6ip6 tunnel devices (ip6tnl) and policy
routing, as deployed Linux PMIPv6 gateways do it.

LMA: one device per peer MAG and a route per home (a pHoA /128, a per-MN
prefix, an IPv4 home address /32) into it::

    ip -6 tunnel add pmip0 mode any local LMA remote MAG encaplimit none dev CORE
    ip -6 route replace HOME dev pmip0 proto 213
    ip route replace V4/32 dev pmip0 proto 213

MAG: one device to the LMA, a source rule per home into a table whose
default route (of the home's family) is that device, and a route to the home
on the access side::

    ip -6 tunnel add pmip0 mode any local MAG remote LMA encaplimit none dev CORE
    ip -6 route replace default dev pmip0 table 5213 proto 213
    ip -6 rule add pref 100 from HOME iif ACCESS lookup 5213 proto 213
    ip -6 route replace HOME dev ACCESS proto 213
    ip route replace default dev pmip0 table 5213 proto 213
    ip rule add pref 100 from V4/32 iif ACCESS lookup 5213 proto 213
    ip route replace V4/32 dev ACCESS proto 213

The devices decapsulate what their peer sends; the kernel forwards the inner
packets. Mode C{any} carries IPv6 (next header 41) and IPv4 (next header 4,
RFC 5844) inside IPv6. C{encaplimit none} keeps the Tunnel Encapsulation
Limit destination option off the wire, so the packets are plain
IPv6-in-IPv6 as from a seg6 or userspace peer; what a peer sends with that
option is accepted. Devices are named C{tunnel_prefix} + a number; at start every
ip6tnl device with that prefix and every route and rule tagged with
C{protocol} is removed (leftovers of an earlier run).

Needs the ip6_tunnel module; the build machines' kernel lacks it, so this
data plane is tested with a fake netlink object there and for real under
kernel-lab (see doc/deployment.md).
"""

import errno
from ipaddress import IPv6Address
from socket import AF_INET, AF_INET6

from twisted.logger import Logger
from zope.interface import implementer

from netlmm.config import ConfigError
from netlmm.dataplane import _netlink as nl
from netlmm.dataplane.handover import HandoverRoutes
from netlmm.interfaces import IDataPlane

#: IFLA_IP6TNL_FLAGS: do not add the Tunnel Encapsulation Limit option.
IP6_TNL_F_IGN_ENCAP_LIMIT = 0x1
#: IFLA_IP6TNL_PROTO 0: mode "any", IPv6 and IPv4 inside IPv6.
TUNNEL_ANY = 0


@implementer(IDataPlane)
class Ip6tnlDataPlane(HandoverRoutes, nl.NetlinkWork):
    """
    ip6ip6 tunnel devices plus routes and rules (see the module docstring).

    @param netlink: makes the IPRoute-like object (on the worker thread).
    """

    name = "ip6tnl"
    log = Logger()

    def __init__(self, role, interface, address, accessInterface=None,
                 tunnelPrefix="pmip", mtu=None, uplinkTable=5213, uplinkPriority=100,
                 protocol=nl.PROTOCOL, reactor=None, netlink=nl.defaultNetlink,
                 runner=None):
        super().__init__(reactor, netlink, runner)
        if role == "mag" and accessInterface is None:
            raise ValueError("a MAG data plane needs an access interface")
        self.role = role
        self.interface = interface
        self.address = IPv6Address(address)
        self.accessInterface = accessInterface
        self.tunnelPrefix = tunnelPrefix
        self.mtu = mtu
        self.uplinkTable = uplinkTable
        self.uplinkPriority = uplinkPriority
        self.protocol = protocol
        #: LMA: home -> pCoA; MAG: home -> LMA.
        self.peers = {}
        #: peer address -> [device name, number of homes through it]
        self.devices = {}
        #: MAG: LMA -> its uplink table and how many homes of each family use it.
        self._tables = {}
        self._core = self._access = None

    @classmethod
    def fromConfig(cls, table, reactor=None, role=None, **context):
        """Build from the [lma.dataplane] / [mag.dataplane] table."""
        o = nl.readEndpointOptions(table, role, cls.name)
        prefix = table.string("tunnel_prefix", "pmip")
        if not prefix.isalnum() or not 1 <= len(prefix) <= 10:
            raise ConfigError(f"{table._key('tunnel_prefix')}: expected 1 to 10 letters "
                              f"or digits (device names are prefix + number), got {prefix!r}")
        o["tunnelPrefix"] = prefix
        o["mtu"] = table.number("mtu", None, minimum=1280, maximum=65535, integer=True)
        nl.readUplinkOptions(table, o)
        o["protocol"] = nl.routeProtocol(table)
        table.finish()
        return cls(reactor=reactor, **o)

    @property
    def routes(self):
        """LMA: home -> pCoA."""
        return self.peers

    @property
    def tunnels(self):
        """MAG: home -> LMA."""
        return self.peers

    # ---------------------------------------------------------------- life

    def start(self):
        """Check the interfaces; remove leftover devices, routes and rules."""
        self.runner.start()
        return self._do(self._start)

    def _ours(self, link):
        name = link.get("ifname") or ""
        suffix = name[len(self.tunnelPrefix):]
        return (name.startswith(self.tunnelPrefix) and suffix.isdigit()
                and _kind(link) == "ip6tnl")

    def _removeDevices(self, ipr):
        count = 0
        for link in ipr.get_links():
            if self._ours(link):
                nl.ignoring(errno.ENODEV)(ipr.link, "del", index=link.get("index"))
                count += 1
        return count

    def _start(self, ipr):
        self._core = nl.ifindex(ipr, self.interface, f"{self.role}.dataplane.interface")
        if self.role == "mag":
            self._access = nl.ifindex(ipr, self.accessInterface,
                                      "mag.dataplane.access_interface")
        removed = self._removeDevices(ipr) + nl.removeOwn(ipr, self.protocol, self.log)
        if removed:
            self.log.info("ip6tnl: removed {count} devices, routes and rules left by an "
                          "earlier run", count=removed)

    def stop(self):
        """Remove the devices (their routes go with them) and the rules."""
        self.peers.clear()
        self.devices.clear()
        self._tables.clear()

        def stop(ipr):
            nl.removeOwn(ipr, self.protocol)
            self._removeDevices(ipr)
        return self._finish(self._do(stop))

    # ------------------------------------------------------------- devices

    def _acquire(self, peer):
        """The device to C{peer} (made on first use): (name, made now)."""
        entry = self.devices.get(peer)
        if entry is None:
            used = {name for name, _ in self.devices.values()}
            n = 0
            while f"{self.tunnelPrefix}{n}" in used:
                n += 1
            entry = self.devices[peer] = [f"{self.tunnelPrefix}{n}", 0]
            entry[1] += 1
            return entry[0], True
        entry[1] += 1
        return entry[0], False

    def _release(self, peer):
        """Drop one use of the device to C{peer}: its name if it must go."""
        entry = self.devices[peer]
        entry[1] -= 1
        if entry[1] == 0:
            del self.devices[peer]
            return entry[0]
        return None

    def _makeDevice(self, ipr, name, remote):
        ipr.link("add", ifname=name, kind="ip6tnl", ip6tnl_local=str(self.address),
                 ip6tnl_remote=remote, ip6tnl_proto=TUNNEL_ANY,
                 ip6tnl_flags=IP6_TNL_F_IGN_ENCAP_LIMIT, ip6tnl_link=self._core)
        index = nl.ifindex(ipr, name, "tunnel device")
        if self.mtu is not None:
            ipr.link("set", index=index, mtu=self.mtu)
        ipr.link("set", index=index, state="up")
        return index

    def _deleteDevice(self, ipr, name):
        found = ipr.link_lookup(ifname=name)
        if found:
            nl.ignoring(errno.ENODEV)(ipr.link, "del", index=found[0])

    # ------------------------------------------------------------ handover

    def acceptFrom(self, peer):
        """A device to the MAG C{peer}: it decapsulates what that MAG forwards here."""
        peer = IPv6Address(peer)
        peers = self.__dict__.setdefault("_handoverPeers", set())
        if peer in peers:
            return None
        peers.add(peer)
        name, made = self._acquire(peer)
        if not made:
            return None
        return self._do(lambda ipr: self._makeDevice(ipr, name, str(peer)))

    _handoverPeer = acceptFrom

    def refuseFrom(self, peer):
        """Drop the device to C{peer} once nothing else uses it."""
        peer = IPv6Address(peer)
        if peer not in self.__dict__.get("_handoverPeers", ()):
            return None
        self._handoverPeers.discard(peer)
        gone = self._release(peer)
        return self._do(lambda ipr: gone and self._deleteDevice(ipr, gone))

    def _forwardRoute(self, ipr, peer):
        name, _ = self.devices[peer]
        return dict(oif=nl.ifindex(ipr, name, f"tunnel device to {peer}"))

    # ----------------------------------------------------------------- LMA

    def addRoute(self, phoa, pcoa):
        """Route home C{phoa} into the device to C{pcoa} (made on first use)."""
        h, pcoa = nl.home(phoa, self.name), IPv6Address(pcoa)
        old = self.peers.get(h)
        if old is not None and old != pcoa:
            return self.moveRoute(h, old, pcoa)
        if old == pcoa:
            name, _ = self.devices[pcoa]
            return self._do(self._route, h, name, None, str(pcoa), None)
        self.peers[h] = pcoa
        name, new = self._acquire(pcoa)
        return self._do(self._route, h, name, new and str(pcoa), str(pcoa), None)

    def moveRoute(self, phoa, old, new):
        """Point C{phoa}'s route at the device to C{new}; drop the old if unused."""
        h, new = nl.home(phoa, self.name), IPv6Address(new)
        current = self.peers.get(h)
        if current is None or current == new:
            return self.addRoute(h, new)
        self.peers[h] = new
        name, made = self._acquire(new)
        gone = self._release(current)
        return self._do(self._route, h, name, made and str(new), str(new), gone)

    def _route(self, ipr, h, name, makeTo, peer, deleteDevice):
        if makeTo:
            self._makeDevice(ipr, name, makeTo)
        index = nl.ifindex(ipr, name, f"tunnel device to {peer}")
        ipr.route("replace", family=nl.family(h), dst=nl.destination(h), oif=index,
                  proto=self.protocol)
        if deleteDevice:
            self._deleteDevice(ipr, deleteDevice)

    def removeRoute(self, phoa, pcoa):
        """Delete C{phoa}'s route; the device goes with its last route."""
        h = nl.home(phoa, self.name)
        current = self.peers.pop(h, None)
        if current is None:
            return None
        gone = self._release(current)
        return self._do(self._unroute, h, gone)

    def _unroute(self, ipr, h, deleteDevice):
        nl.ignoreMissing(ipr.route, "del", family=nl.family(h), dst=nl.destination(h),
                         table=254, proto=self.protocol)
        if deleteDevice:
            self._deleteDevice(ipr, deleteDevice)

    # ----------------------------------------------------------------- MAG

    def tunnelUp(self, mnId, phoa, lma):
        """Source rule for home C{phoa} into the device to C{lma}; route on access."""
        h, lma = nl.home(phoa, self.name), IPv6Address(lma)
        current = self.peers.get(h)
        steps = None
        if current is not None and current != lma:
            steps = self.tunnelDown(mnId, h, current)
            current = None
        uplink = self._tables.get(lma)
        if uplink is None:
            used = {u["table"] for u in self._tables.values()}
            table = self.uplinkTable
            while table in used or table in nl.RESERVED_TABLES:
                table += 1
            uplink = self._tables[lma] = {"table": table, AF_INET6: 0, AF_INET: 0}
        f = nl.family(h)
        if current == lma:
            name, _ = self.devices[lma]
            made = firstOfFamily = False
        else:
            self.peers[h] = lma
            name, made = self._acquire(lma)
            uplink[f] += 1
            firstOfFamily = uplink[f] == 1
        d = self._do(self._tunnelUp, h, name, made and str(lma), uplink["table"],
                     firstOfFamily)
        return d if steps is None else steps.addCallback(lambda _: d)

    def _tunnelUp(self, ipr, h, name, makeTo, table, firstOfFamily):
        f = nl.family(h)
        if makeTo:
            self._makeDevice(ipr, name, makeTo)
        if firstOfFamily:
            index = nl.ifindex(ipr, name, "tunnel device to the LMA")
            ipr.route("replace", family=f, dst=nl.anyDestination(f), table=table,
                      oif=index, proto=self.protocol)
        nl.addRule(ipr, **self._uplinkRule(h, table))
        ipr.route("replace", family=f, dst=nl.destination(h), oif=self._access,
                  proto=self.protocol)

    def tunnelDown(self, mnId, phoa, lma):
        """Drop C{phoa}'s rule and route; the device goes with its last home."""
        h = nl.home(phoa, self.name)
        current = self.peers.pop(h, None)
        if current is None:
            return None
        gone = self._release(current)
        uplink = self._tables[current]
        f = nl.family(h)
        uplink[f] -= 1
        if gone:
            del self._tables[current]
        return self._do(self._tunnelDown, h, uplink["table"], gone, uplink[f] == 0)

    def _tunnelDown(self, ipr, h, table, deleteDevice, lastOfFamily):
        f = nl.family(h)
        nl.ignoreMissing(ipr.rule, "del", **self._uplinkRule(h, table))
        nl.ignoreMissing(ipr.route, "del", family=f, dst=nl.destination(h),
                         table=254, proto=self.protocol)
        if deleteDevice:
            self._deleteDevice(ipr, deleteDevice)  # its default routes go with it
        elif lastOfFamily:
            nl.ignoreMissing(ipr.route, "del", family=f, dst=nl.anyDestination(f),
                             table=table, proto=self.protocol)


def _kind(link):
    """The IFLA_INFO_KIND of a link message (or a fake's 'kind')."""
    if "kind" in link:
        return link["kind"]
    info = link.get("IFLA_LINKINFO")
    if info is None:
        return None
    return info.get("IFLA_INFO_KIND")
