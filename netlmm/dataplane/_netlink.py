"""
What the kernel data planes share: a serial runner that keeps netlink work off
the reactor thread and in order, pyroute2 helpers that tolerate leftovers, and
the validation of their common config options.

Everything the daemon installs is tagged with one route/rule protocol number
(C{protocol}, default 213 after RFC 5213), so a restarted daemon can find its
leftovers and a stopping one can remove exactly what it installed.

A mobile's I{home} (what a route or a tunnel carries; see
L{netlmm.interfaces.IDataPlane}) is one of an C{IPv6Address} (one pHoA), an
C{IPv6Network} (a per-MN prefix, draft E.3) or an C{IPv4Address} (an RFC 5844
IPv4 home address, carried IPv4-in-IPv6); L{home} checks it.
"""

import errno
import re
from ipaddress import IPv4Address, IPv6Address, IPv6Network, ip_address, ip_network
from socket import AF_INET, AF_INET6

from twisted.internet.defer import maybeDeferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from netlmm.config import ConfigError

#: Default route and rule protocol tag ("proto 213" in `ip route` / `ip rule`).
PROTOCOL = 213

#: Priority of the rule that looks up the local table once it is moved from 0.
LOCAL_PRIORITY = 50

#: Routing tables the kernel reserves (unspec, default, main, local).
RESERVED_TABLES = (0, 253, 254, 255)

#: seg6 reduced encapsulation: one segment gives plain IPv6-in-IPv6.
SEG6_IPTUN_MODE_ENCAP_RED = 3

_IFNAME = re.compile(r"^[^\s/:]{1,15}$")


class DataPlaneError(Exception):
    """The kernel refused or lacks something the data plane needs."""


#: The kinds of home a data plane carries.
HOME_TYPES = (IPv6Address, IPv6Network, IPv4Address)


def home(value, plane):
    """
    C{value} as a home: an C{IPv6Address}, C{IPv6Network} or C{IPv4Address}
    (text is parsed: 'a/len' is a prefix). Anything else raises
    L{DataPlaneError} naming the data plane C{plane}.
    """
    if isinstance(value, HOME_TYPES):
        return value
    if isinstance(value, str):
        try:
            value = ip_network(value) if "/" in value else ip_address(value)
        except ValueError:
            raise DataPlaneError(f"{plane} data plane: {value!r} is not an address or "
                                 "prefix") from None
        if isinstance(value, HOME_TYPES):
            return value
    raise DataPlaneError(
        f"{plane} data plane: cannot carry {value!r}: a home is an IPv6 address, an "
        "IPv6 prefix or an IPv4 address")


def family(h):
    """The address family (AF_INET or AF_INET6) of home C{h}."""
    return AF_INET if h.version == 4 else AF_INET6


def prefix(h):
    """(address text, prefix length) of home C{h}: /128 or /32 for an address."""
    if isinstance(h, IPv6Network):
        return str(h.network_address), h.prefixlen
    return str(h), h.max_prefixlen


def destination(h):
    """Home C{h} as a route destination 'address/length'."""
    return "%s/%d" % prefix(h)


def anyDestination(f):
    """The default route's destination in family C{f}."""
    return "0.0.0.0/0" if f == AF_INET else "::/0"


def supportReducedEncap():
    """
    Teach pyroute2 the seg6 mode name 'encap.red' (value 3). pyroute2 0.9.7
    knows only 'inline' and 'encap' and silently encodes any other name (and
    any number) as 'encap', which would put a routing header on the wire.
    """
    from pyroute2.netlink.rtnl.rtmsg import rtmsg_base
    header = rtmsg_base.seg6_encap_info.ipv6_sr_hdr
    header.encapmodes.setdefault("encap.red", SEG6_IPTUN_MODE_ENCAP_RED)
    header.r_encapmodes.setdefault(SEG6_IPTUN_MODE_ENCAP_RED, "encap.red")
    if header.encapmodes["encap.red"] != SEG6_IPTUN_MODE_ENCAP_RED:
        raise DataPlaneError("pyroute2 maps seg6 mode 'encap.red' to "
                             f"{header.encapmodes['encap.red']}, expected 3")


def defaultNetlink():
    """A pyroute2 IPRoute in the daemon's own network namespace."""
    from pyroute2 import IPRoute
    return IPRoute()


class SerialRunner:
    """
    Runs blocking callables one at a time, in submission order, on one
    dedicated thread, and returns Deferreds fired on the reactor thread.
    pyroute2's synchronous API runs an asyncio loop of its own, so it must
    never run on the reactor thread.
    """

    def __init__(self, reactor, name="netlmm-netlink"):
        self.reactor = reactor
        self.name = name
        self._pool = None

    def start(self):
        from twisted.python.threadpool import ThreadPool
        if self._pool is None:
            self._pool = ThreadPool(1, 1, self.name)
            self._pool.start()
            self._trigger = self.reactor.addSystemEventTrigger(
                "during", "shutdown", self.stop)

    def run(self, f, *args, **kw):
        """C{f(*args, **kw)} on the worker thread, after all earlier calls."""
        if self._pool is None:
            self.start()
        return deferToThreadPool(self.reactor, self._pool, f, *args, **kw)

    def stop(self):
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                self.reactor.removeSystemEventTrigger(self._trigger)
            except (ValueError, KeyError, TypeError):
                pass
            pool.stop()


class ImmediateRunner:
    """Runs calls at once on the caller's thread: for tests with fakes."""

    def start(self):
        pass

    def run(self, f, *args, **kw):
        return maybeDeferred(f, *args, **kw)

    def stop(self):
        pass


# ----------------------------------------------------------------- netlink


def _code(e):
    return getattr(e, "code", None)


def ignoring(*codes):
    """Run C{f(*a, **kw)}; swallow a netlink error whose code is in C{codes}."""
    def call(f, *args, **kw):
        try:
            return f(*args, **kw)
        except Exception as e:
            if _code(e) in codes:
                return None
            raise
    return call


ignoreMissing = ignoring(errno.ENOENT, errno.ESRCH, errno.EADDRNOTAVAIL)


def routeTable(msg):
    """The table of a route message (the header holds only 8 bits of it)."""
    return msg.get("RTA_TABLE") or msg.get("table")


def ruleTable(msg):
    """The table of a rule message."""
    return msg.get("FRA_TABLE") or msg.get("table")


def ifindex(ipr, name, what):
    """The index of interface C{name}; C{what} names the config key."""
    found = ipr.link_lookup(ifname=name)
    if not found:
        raise DataPlaneError(f"{what}: no interface named {name!r}")
    return found[0]


def ownRoutes(ipr, protocol):
    """Every IPv6 and IPv4 route tagged with C{protocol}, in any table."""
    return [r for f in (AF_INET6, AF_INET) for r in ipr.route("dump", family=f)
            if r.get("proto") == protocol]


def deleteRoute(ipr, msg):
    """Delete a route as dumped (gone already is fine)."""
    f = msg.get("family") or AF_INET6
    dst = msg.get("dst") or ("0.0.0.0" if f == AF_INET else "::")
    ignoreMissing(ipr.route, "del", family=f,
                  dst=f"{dst}/{msg.get('dst_len') or 0}",
                  table=routeTable(msg), proto=msg.get("proto"))


def ownRules(ipr, protocol):
    """Every IPv6 and IPv4 rule tagged with C{protocol}."""
    return [r for f in (AF_INET6, AF_INET) for r in ipr.rule("dump", family=f)
            if r.get("FRA_PROTOCOL") == protocol]


def sourceRule(h, priority, table, protocol, iif=None):
    """
    The spec of the rule that sends what home C{h} sends to C{table}; with
    C{iif}, only what arrives on that interface (a MAG's access link: the
    packets it decapsulates for a mobile there, which may come from another
    of its mobiles, must not go back into the tunnel).
    """
    src, length = prefix(h)
    spec = dict(family=family(h), priority=priority, src=src, src_len=length,
                table=table, protocol=protocol)
    if iif is not None:
        spec["iifname"] = iif
    return spec


def ruleSpec(msg):
    """The keyword arguments that select the dumped rule C{msg}."""
    spec = dict(family=msg.get("family") or AF_INET6, priority=msg.get("priority") or 0,
                table=ruleTable(msg))
    for key in ("src", "dst"):
        if msg.get(key):
            spec[key] = msg.get(key)
            spec[key + "_len"] = msg.get(key + "_len")
    if msg.get("ip_proto"):
        spec["ip_proto"] = msg.get("ip_proto")
    if msg.get("FRA_IIFNAME"):
        spec["iifname"] = msg.get("FRA_IIFNAME")
    if msg.get("FRA_PROTOCOL"):
        spec["protocol"] = msg.get("FRA_PROTOCOL")
    return spec


def deleteRule(ipr, msg):
    """Delete a rule as dumped (gone already is fine)."""
    ignoreMissing(ipr.rule, "del", **ruleSpec(msg))


def addRule(ipr, **spec):
    """
    Add an IPv6 rule unless one with the same selectors (and the same
    protocol, when C{spec} names one) is present. Returns whether it added.
    """
    spec.setdefault("family", AF_INET6)
    want = _selectors(spec)
    for r in ipr.rule("dump", family=spec["family"]):
        have = ruleSpec(r)
        if _selectors(have) == want and (
                not spec.get("protocol") or have.get("protocol") == spec["protocol"]):
            return False
    ignoring(errno.EEXIST)(ipr.rule, "add", **spec)
    return True


def _selectors(spec):
    out = [spec.get("priority") or 0, spec.get("table")]
    for key in ("src", "dst"):
        if spec.get(key):
            address = ip_address(str(spec[key]))
            out += [str(address), spec.get(key + "_len", address.max_prefixlen)]
        else:
            out += [None, None]
    out.append(spec.get("ip_proto") or None)
    out.append(spec.get("iifname") or None)
    return tuple(out)


def moveLocalRule(ipr, priority, protocol):
    """
    Make the local table be looked up at C{priority} instead of 0, so that a
    rule before it can send tunnelled packets addressed to this node to a
    seg6local route. The new rule is added before the old one goes so local
    delivery never stops.
    """
    addRule(ipr, priority=priority, table=255, protocol=protocol)
    for r in ipr.rule("dump", family=AF_INET6):
        if (ruleTable(r) == 255 and not (r.get("priority") or 0)
                and not r.get("src") and not r.get("dst")):
            deleteRule(ipr, r)


def restoreLocalRule(ipr, protocol):
    """Put the local table back at priority 0 and drop the moved rule."""
    addRule(ipr, priority=0, table=255)
    for r in ownRules(ipr, protocol):
        if ruleTable(r) == 255:
            deleteRule(ipr, r)


def removeOwn(ipr, protocol, log=None, what="leftover"):
    """
    Remove every route and rule tagged with C{protocol}, except the moved
    local-table rule (L{restoreLocalRule} handles that one). Returns how many
    were removed.
    """
    count = 0
    for r in ownRules(ipr, protocol):
        if ruleTable(r) == 255:
            continue
        deleteRule(ipr, r)
        count += 1
        if log is not None:
            log.info("removed {what} rule {rule}", what=what, rule=_showRule(r))
    for r in ownRoutes(ipr, protocol):
        deleteRoute(ipr, r)
        count += 1
        if log is not None:
            log.info("removed {what} route {dst}/{len} table {table}", what=what,
                     dst=r.get("dst") or "::", len=r.get("dst_len") or 0,
                     table=routeTable(r))
    return count


def _showRule(r):
    parts = [f"pref {r.get('priority') or 0}"]
    if r.get("src"):
        parts.append(f"from {r.get('src')}/{r.get('src_len')}")
    if r.get("dst"):
        parts.append(f"to {r.get('dst')}/{r.get('dst_len')}")
    if r.get("ip_proto"):
        parts.append(f"ipproto {r.get('ip_proto')}")
    if r.get("FRA_IIFNAME"):
        parts.append(f"iif {r.get('FRA_IIFNAME')}")
    parts.append(f"lookup {ruleTable(r)}")
    return " ".join(parts)


# ------------------------------------------------------------------ config


def interfaceName(table, key, required=True):
    """A network interface name (1 to 15 characters, no '/', ':' or spaces)."""
    name = table.string(key, required=required)
    if name is not None and not _IFNAME.match(name):
        raise ConfigError(f"{table._key(key)}: expected an interface name such as "
                          f"'eth0' (1 to 15 characters, no '/', ':' or spaces), got {name!r}")
    return name


def routingTable(table, key, default):
    """A routing table number that is not one the kernel reserves."""
    value = table.number(key, default, minimum=1, maximum=2**32 - 1, integer=True)
    if value in RESERVED_TABLES:
        raise ConfigError(f"{table._key(key)}: table {value} is reserved by the kernel "
                          "(253 default, 254 main, 255 local); choose another")
    return value


def rulePriority(table, key, default):
    """An ip rule priority between the local (0) and main (32766) rules."""
    return table.number(key, default, minimum=1, maximum=32765, integer=True)


def routeProtocol(table, key="protocol", default=PROTOCOL):
    """The tag put on every route and rule (5..255; 0..4 are the kernel's)."""
    return table.number(key, default, minimum=5, maximum=255, integer=True)


def checkRole(role, kind):
    """The data plane's role, 'lma' or 'mag'."""
    if role not in ("lma", "mag"):
        raise ConfigError(f"data plane {kind!r}: role must be 'lma' or 'mag', got {role!r}")
    return role


def readEndpointOptions(table, role, kind, interface=True):
    """
    The options every kernel data plane reads, validated: the role, the core
    C{interface} (when the kind has one), the node's tunnel C{address}, and
    C{access_interface} (required at a MAG, refused at the LMA).
    """
    o = dict(role=checkRole(role, kind))
    if interface:
        o["interface"] = interfaceName(table, "interface")
    o["address"] = table.address("address", required=True)
    access = interfaceName(table, "access_interface", required=(o["role"] == "mag"))
    if o["role"] == "lma" and access is not None:
        raise ConfigError(f"{table._key('access_interface')}: only a MAG has an "
                          "access interface; leave it out at the LMA")
    o["accessInterface"] = access
    return o


def readUplinkOptions(table, o):
    """At a MAG: C{uplink_table} and C{uplink_priority} into C{o}."""
    if o["role"] == "mag":
        o["uplinkTable"] = routingTable(table, "uplink_table", 5213)
        o["uplinkPriority"] = rulePriority(table, "uplink_priority", 100)
    return o


class NetlinkWork:
    """
    Base of the data planes that talk netlink: owns the serial runner and a
    netlink object made on the worker thread by C{netlink()} (an IPRoute, or
    a fake with the same methods).
    """

    log = Logger()

    def __init__(self, reactor=None, netlink=defaultNetlink, runner=None):
        if runner is None:
            runner = SerialRunner(reactor)
        self.runner = runner
        self._netlinkFactory = netlink
        self._ipr = None

    def _ipRoute(self):
        if self._ipr is None:
            self._ipr = self._netlinkFactory()
        return self._ipr

    def _uplinkRule(self, h, table):
        """
        MAG: the rule that sends what home C{h} sends from the access link to
        C{table} (the data plane's C{uplinkPriority}, C{protocol} and
        C{accessInterface}).
        """
        return sourceRule(h, self.uplinkPriority, table, self.protocol, self.accessInterface)

    def _do(self, f, *args):
        """Run C{f(ipr, *args)} on the worker thread, in order."""
        return self.runner.run(lambda: f(self._ipRoute(), *args))

    def _closeNetlink(self):
        ipr, self._ipr = self._ipr, None
        if ipr is not None:
            ipr.close()

    def _finish(self, d):
        """After C{d}: close netlink on the worker, then stop the runner."""
        def close(result):
            c = self.runner.run(self._closeNetlink)
            c.addErrback(lambda f: None)
            return c.addCallback(lambda _: result)

        def stop(result):
            self.runner.stop()
            return result
        return d.addBoth(close).addBoth(stop)
