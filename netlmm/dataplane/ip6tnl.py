"""
The classic kernel data plane: ip6ip6 tunnel devices (ip6tnl) and policy
routing, as deployed Linux PMIPv6 gateways do it.

LMA: one device per peer MAG and a host route per pHoA into it::

    ip -6 tunnel add pmip0 mode ip6ip6 local LMA remote MAG encaplimit none dev CORE
    ip -6 route replace PHOA/128 dev pmip0 proto 213

MAG: one device to the LMA, a source rule per pHoA into a table whose default
route is that device, and a host route to the pHoA on the access side::

    ip -6 tunnel add pmip0 mode ip6ip6 local MAG remote LMA encaplimit none dev CORE
    ip -6 route replace default dev pmip0 table 5213 proto 213
    ip -6 rule add pref 100 from PHOA/128 lookup 5213 proto 213
    ip -6 route replace PHOA/128 dev ACCESS proto 213

The devices decapsulate what their peer sends; the kernel forwards the inner
packets. C{encaplimit none} keeps the Tunnel Encapsulation Limit destination
option off the wire, so the packets are plain IPv6-in-IPv6 as from a seg6 or
userspace peer. Devices are named C{tunnel_prefix} + a number; at start every
ip6tnl device with that prefix and every route and rule tagged with
C{protocol} is removed (leftovers of an earlier run).

Needs the ip6_tunnel module; the build machines' kernel lacks it, so this
data plane is tested with a fake netlink object there and for real under
kernel-lab (see doc/deployment.md).
"""

import errno
from ipaddress import IPv6Address
from socket import AF_INET6

from twisted.logger import Logger
from zope.interface import implementer

from netlmm.config import ConfigError
from netlmm.dataplane import _netlink as nl
from netlmm.interfaces import IDataPlane

#: IFLA_IP6TNL_FLAGS: do not add the Tunnel Encapsulation Limit option.
IP6_TNL_F_IGN_ENCAP_LIMIT = 0x1
IPPROTO_IPV6 = 41


@implementer(IDataPlane)
class Ip6tnlDataPlane(nl.NetlinkWork):
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
        #: LMA: pHoA -> pCoA; MAG: pHoA -> LMA.
        self.peers = {}
        #: peer address -> [device name, number of pHoAs through it]
        self.devices = {}
        #: MAG: LMA -> uplink table
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
        """LMA: pHoA -> pCoA."""
        return self.peers

    @property
    def tunnels(self):
        """MAG: pHoA -> LMA."""
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
                 ip6tnl_remote=remote, ip6tnl_proto=IPPROTO_IPV6,
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

    # ----------------------------------------------------------------- LMA

    def addRoute(self, phoa, pcoa):
        """Route C{phoa} into the device to C{pcoa} (made on first use)."""
        phoa, pcoa = IPv6Address(phoa), IPv6Address(pcoa)
        old = self.peers.get(phoa)
        if old is not None and old != pcoa:
            return self.moveRoute(phoa, old, pcoa)
        if old == pcoa:
            name, _ = self.devices[pcoa]
            return self._do(self._route, str(phoa), name, None, str(pcoa), None)
        self.peers[phoa] = pcoa
        name, new = self._acquire(pcoa)
        return self._do(self._route, str(phoa), name, new and str(pcoa), str(pcoa), None)

    def moveRoute(self, phoa, old, new):
        """Point C{phoa}'s route at the device to C{new}; drop the old if unused."""
        phoa, new = IPv6Address(phoa), IPv6Address(new)
        current = self.peers.get(phoa)
        if current is None:
            return self.addRoute(phoa, new)
        if current == new:
            return self.addRoute(phoa, new)
        self.peers[phoa] = new
        name, made = self._acquire(new)
        gone = self._release(current)
        return self._do(self._route, str(phoa), name, made and str(new), str(new), gone)

    def _route(self, ipr, phoa, name, makeTo, peer, deleteDevice):
        if makeTo:
            self._makeDevice(ipr, name, makeTo)
        index = nl.ifindex(ipr, name, f"tunnel device to {peer}")
        ipr.route("replace", family=AF_INET6, dst=f"{phoa}/128", oif=index,
                  proto=self.protocol)
        if deleteDevice:
            self._deleteDevice(ipr, deleteDevice)

    def removeRoute(self, phoa, pcoa):
        """Delete C{phoa}'s route; the device goes with its last route."""
        phoa = IPv6Address(phoa)
        current = self.peers.pop(phoa, None)
        if current is None:
            return None
        gone = self._release(current)
        return self._do(self._unroute, str(phoa), gone)

    def _unroute(self, ipr, phoa, deleteDevice):
        nl.ignoreMissing(ipr.route, "del", family=AF_INET6, dst=f"{phoa}/128",
                         table=254, proto=self.protocol)
        if deleteDevice:
            self._deleteDevice(ipr, deleteDevice)

    # ----------------------------------------------------------------- MAG

    def tunnelUp(self, mnId, phoa, lma):
        """Source rule for C{phoa} into the device to C{lma}; host route on access."""
        phoa, lma = IPv6Address(phoa), IPv6Address(lma)
        current = self.peers.get(phoa)
        steps = None
        if current is not None and current != lma:
            steps = self.tunnelDown(mnId, phoa, current)
            current = None
        if current == lma:
            name, _ = self.devices[lma]
            made = False
        else:
            self.peers[phoa] = lma
            name, made = self._acquire(lma)
        table = self._tables.get(lma)
        if table is None:
            table = self.uplinkTable
            while table in self._tables.values() or table in nl.RESERVED_TABLES:
                table += 1
            self._tables[lma] = table
        d = self._do(self._tunnelUp, str(phoa), name, made and str(lma), table)
        return d if steps is None else steps.addCallback(lambda _: d)

    def _tunnelUp(self, ipr, phoa, name, makeTo, table):
        if makeTo:
            index = self._makeDevice(ipr, name, makeTo)
            ipr.route("replace", family=AF_INET6, dst="::/0", table=table, oif=index,
                      proto=self.protocol)
        nl.addRule(ipr, priority=self.uplinkPriority, src=phoa, src_len=128, table=table,
                   protocol=self.protocol)
        ipr.route("replace", family=AF_INET6, dst=f"{phoa}/128", oif=self._access,
                  proto=self.protocol)

    def tunnelDown(self, mnId, phoa, lma):
        """Drop C{phoa}'s rule and host route; the device goes with its last pHoA."""
        phoa = IPv6Address(phoa)
        current = self.peers.pop(phoa, None)
        if current is None:
            return None
        gone = self._release(current)
        table = self._tables[current]
        if gone:
            del self._tables[current]
        return self._do(self._tunnelDown, str(phoa), table, gone)

    def _tunnelDown(self, ipr, phoa, table, deleteDevice):
        nl.ignoreMissing(ipr.rule, "del", family=AF_INET6, priority=self.uplinkPriority,
                         src=phoa, src_len=128, table=table, protocol=self.protocol)
        nl.ignoreMissing(ipr.route, "del", family=AF_INET6, dst=f"{phoa}/128",
                         table=254, proto=self.protocol)
        if deleteDevice:
            self._deleteDevice(ipr, deleteDevice)  # the default route goes with it


def _kind(link):
    """The IFLA_INFO_KIND of a link message (or a fake's 'kind')."""
    if "kind" in link:
        return link["kind"]
    info = link.get("IFLA_LINKINFO")
    if info is None:
        return None
    return info.get("IFLA_INFO_KIND")
