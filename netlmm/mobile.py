"""
What `netlmm mn` runs on a Linux mobile besides its core (L{netlmm.core.mn}):

  - L{AddressWatcher}: the host's IPv6 addresses from rtnetlink (a dump,
    then RTM_NEWADDR / RTM_DELADDR events on one non-blocking socket read
    by the reactor), reduced to the care-of address to register;
  - L{HomeTunnel}: the ip6ip6 tunnel device to the home agent that carries
    the home address (RFC 6275 11.3.1, bidirectional tunnelling), moved to
    each new care-of address in place;
  - L{MobileService}: the two with the signalling socket and RFC 4285.
"""

import socket
from collections import OrderedDict
from ipaddress import IPv6Address

from pyroute2.netlink import NLMSG_DONE, NLMSG_ERROR
from pyroute2.netlink.rtnl import (
    RTM_DELADDR, RTM_DELLINK, RTM_GETADDR, RTM_NEWADDR, RTM_NEWLINK)
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.threads import deferToThread

from netlmm.access.netlink import RTMGRP_LINK, RtnetlinkWatcher
from netlmm.core.effects import HomeTunnel as HomeTunnelEffect
from netlmm.core.effects import SendToHomeAgent
from netlmm.daemon import StartupError, reasonOf, startupStep
from netlmm.dataplane import _netlink as nl
from netlmm.dataplane.ip6tnl import IP6_TNL_F_IGN_ENCAP_LIMIT
from netlmm.ratelimit import Refusing
from netlmm.service.base import RoleService
from netlmm.transport.mip6 import Xfrm, XfrmError
from netlmm.wire import mh

RTMGRP_IPV6_IFADDR = 0x100
IFA_F_DADFAILED = 0x08
IFA_F_HOMEADDRESS = 0x10
IFA_F_DEPRECATED = 0x20
IFA_F_TENTATIVE = 0x40
IFA_F_NODAD = 0x02
_UNUSABLE = IFA_F_DADFAILED | IFA_F_HOMEADDRESS | IFA_F_DEPRECATED | IFA_F_TENTATIVE
RT_SCOPE_UNIVERSE = 0


class AddressWatcher(RtnetlinkWatcher):
    """
    Follows the host's global IPv6 addresses and calls C{changed(address)}
    with the care-of address to use (None: none) whenever it changes: the
    newest usable global address (not tentative, deprecated, DAD-failed or a
    home address) on C{interfaces} (names; empty: every interface but
    loopback and those in C{exclude}).
    """

    groups = RTMGRP_LINK | RTMGRP_IPV6_IFADDR
    label = "netlink(addresses)"

    def __init__(self, reactor, changed, interfaces=(), exclude=(), system=None):
        if system is None:
            from netlmm.access.system import System
            system = System()
        super().__init__(reactor, system)
        self.changed = changed
        self.interfaces = frozenset(interfaces)
        self.exclude = frozenset(exclude) | {"lo"}
        #: ifindex -> name
        self.links = {}
        #: (ifindex, address) -> None, oldest first
        self.candidates = OrderedDict()
        self.current = None

    def _dumpRequests(self):
        return [self._linkDump, self._addressDump]

    def _failure(self):
        self._choose()
        return None

    def _addressDump(self):
        m = ifaddrmsg()
        m["family"] = socket.AF_INET6
        self._request(m, RTM_GETADDR)

    def handle(self, msg):
        """One decoded rtnetlink message (event or dump part)."""
        kind = msg["header"]["type"]
        if kind == NLMSG_DONE:
            self._nextDump()
        elif kind == NLMSG_ERROR:
            self._nextDump()
        elif kind in (RTM_NEWLINK, RTM_DELLINK):
            index = msg["index"]
            if kind == RTM_DELLINK:
                self.links.pop(index, None)
                for key in [k for k in self.candidates if k[0] == index]:
                    del self.candidates[key]
            else:
                self.links[index] = msg.get_attr("IFLA_IFNAME")
            self._choose()
        elif kind in (RTM_NEWADDR, RTM_DELADDR) and msg["family"] == socket.AF_INET6:
            self._address(msg, kind == RTM_DELADDR)

    def _address(self, msg, deleted):
        text = msg.get_attr("IFA_ADDRESS")
        if text is None:
            return
        key = (msg["index"], IPv6Address(text))
        flags = msg.get_attr("IFA_FLAGS")
        flags = msg["flags"] if flags is None else flags
        usable = (not deleted and msg["scope"] == RT_SCOPE_UNIVERSE
                  and not flags & _UNUSABLE)
        if usable:
            if key not in self.candidates:
                self.candidates[key] = None
        else:
            self.candidates.pop(key, None)
        self._choose()

    def _eligible(self, index):
        name = self.links.get(index)
        if name is None or name in self.exclude:
            return False
        return not self.interfaces or name in self.interfaces

    def _choose(self):
        if self._ready is not None:
            return
        choice = None
        for index, address in reversed(self.candidates):
            if self._eligible(index):
                choice = address
                break
        if choice != self.current:
            self.current = choice
            self.changed(choice)


class HomeTunnel(nl.NetlinkWork):
    """
    The mobile's end of the bidirectional tunnel (RFC 6275 11.3.1)::

        ip -6 tunnel add NAME mode ip6ip6 local COA remote HA encaplimit none
        ip -6 addr add HOA/128 dev NAME home nodad
        ip -6 route replace default dev NAME table TABLE proto 213
        ip -6 rule add pref PRIORITY from HOA/128 lookup TABLE proto 213

    A new care-of address changes the device's local address in place, so
    the home address and the sockets bound to it stay. Everything is removed
    at stop (and leftovers of an earlier run at start).
    """

    def __init__(self, name="mip6tnl0", table=5216, priority=100, mtu=1400,
                 protocol=nl.PROTOCOL, reactor=None, netlink=nl.defaultNetlink, runner=None):
        super().__init__(reactor, netlink, runner)
        self.name = name
        self.table = table
        self.priority = priority
        self.mtu = mtu
        self.protocol = protocol
        self.state = None

    def start(self):
        self.runner.start()
        return self._do(self._clean)

    def stop(self):
        return self._finish(self._do(self._clean))

    def _clean(self, ipr):
        nl.removeOwn(ipr, self.protocol)
        found = ipr.link_lookup(ifname=self.name)
        for index in found:
            ipr.link("del", index=index)

    def set(self, home, homeAgent, careOf):
        """Point the tunnel at C{careOf} (None: take it down)."""
        state = None if careOf is None else (str(home), str(homeAgent), str(careOf))
        previous, self.state = self.state, state
        return self._do(self._set, previous, state)

    def _set(self, ipr, previous, state):
        if state is None:
            self._clean(ipr)
            return
        home, homeAgent, careOf = state
        found = ipr.link_lookup(ifname=self.name)
        params = dict(kind="ip6tnl", ip6tnl_local=careOf, ip6tnl_remote=homeAgent,
                      ip6tnl_proto=socket.IPPROTO_IPV6,
                      ip6tnl_flags=IP6_TNL_F_IGN_ENCAP_LIMIT)
        if found and previous is not None:
            ipr.link("set", index=found[0], **params)
            return
        if found:
            ipr.link("del", index=found[0])
        ipr.link("add", ifname=self.name, **params)
        index = ipr.link_lookup(ifname=self.name)[0]
        ipr.link("set", index=index, mtu=self.mtu, state="up")
        ipr.addr("add", index=index, address=home, prefixlen=128,
                 flags=IFA_F_HOMEADDRESS | IFA_F_NODAD)
        ipr.route("replace", family=socket.AF_INET6, dst="::/0", table=self.table,
                  oif=index, proto=self.protocol)
        nl.addRule(ipr, priority=self.priority, src=home, src_len=128, table=self.table,
                   protocol=self.protocol)


class MobileService(Refusing, RoleService):
    """
    Keeps the mobile's home registration: care-of addresses from C{watcher}
    go to the core, its Binding Updates out through C{port} (a mobile
    L{netlmm.transport.mip6.MIP6Port}), its tunnel changes to C{tunnel}.

    @param security: None, or a L{netlmm.security.guard.PmipGuard} over the
        mobile's MN-HA SA: it signs each BU (RFC 4285, with the packet's
        care-of and home addresses) and checks each BA.
    """

    refusalPrefix = "MN: "

    def __init__(self, reactor, core, port, watcher, tunnel, security=None, xfrm=None,
                 observer=None, name="MN"):
        super().__init__(reactor, core, observer)
        self.setName(name)
        self.port = port
        port.handler = self._received
        self.watcher = watcher
        watcher.changed = self._careOf
        self.tunnel = tunnel
        self.security = security
        self.xfrm = xfrm
        self._stopped = None
        self.dropped = 0

    def startService(self):
        d = succeed(None)
        if self.xfrm is not None:
            d.addCallback(lambda _: deferToThread(
                self.xfrm.install, Xfrm.mobileCommands(self.core.home)))
            d.addErrback(self._xfrmFailed)
        d.addCallback(lambda _: startupStep(f"MN: home tunnel {getattr(self.tunnel, 'name', '?')!r}",
                                            self.tunnel.start))

        def listen(_):
            try:
                self.port.startListening()
            except OSError as e:
                raise StartupError(f"MN: cannot open a raw Mobility Header socket: "
                                   f"{reasonOf(e)}") from None
            RoleService.startService(self)
            self.log.info("MN {mnId}: home address {home} at home agent {ha}",
                          mnId=self.core.mnId.decode("utf-8", "replace"),
                          home=self.core.home, ha=self.core.homeAgent)
            return self.watcher.start()
        return d.addCallback(listen)

    def _xfrmFailed(self, failure):
        failure.trap(XfrmError)
        raise StartupError(
            "MN: this kernel does not take type 2 routing headers (it needs "
            f"CONFIG_IPV6_MIP6, module mip6): {failure.value}")

    def stopService(self):
        """Deregister (waiting for the answer or giving up), then clean up."""
        self.watcher.stop()
        self._stopped = Deferred()
        self.feed(self.core.stop)
        d = self._stopped if not self.core.done else succeed(None)

        def cleanUp(_):
            self.port.stopListening()
            self.stopRefusing()
            if self.xfrm is not None:
                self.xfrm.remove()
            return maybeDeferred(RoleService.stopService, self)
        d.addCallback(cleanUp)
        return d.addCallback(lambda _: self.tunnel.stop())

    def _careOf(self, address):
        self.log.info("MN: care-of address {address}", address=address)
        self.feed(self.core.careOf, address)

    def _received(self, message, raw, source, home, careOf, now):
        if type(message) is mh.BindingRefreshRequest:
            self.feed(self.core.receive, message, source)
            return
        if type(message) is not mh.BindingAcknowledgement:
            return
        if self.security is not None:
            from netlmm.security.guard import OK, RESYNC
            why = self.security.accept(message, raw, self.core.mnId, now,
                                       (careOf, home or careOf))
            if why is RESYNC:
                self.feed(self.core.resend)
                return
            if why is not OK:
                self.dropped += 1
                self._refused(source, "BA dropped", "BA from {source} dropped: {why}",
                              source=source, why=why)
                return
        if message.status >= 128:
            self.log.warn("MN: home agent {source} refused: {status}", source=source,
                          status=mh.Status.name(message.status))
        core = self.core
        before = (core.bound, core.acceptedAt)
        self.feed(self.core.receive, message, source)
        if core.bound is not None and core.bound != before[0] and core.movedAt is not None:
            self.log.info("MN: bound {home} -> {careOf}, {ms:.0f} ms after the address "
                          "appeared", home=core.home, careOf=core.bound,
                          ms=(core.acceptedAt - core.movedAt) * 1000)

    def execute(self, effects):
        for e in effects:
            kind = type(e)
            if kind is SendToHomeAgent:
                message = e.message
                if self.security is not None:
                    signed = self.security.protect(message, self.core.mnId,
                                                   self.reactor.seconds(),
                                                   (e.careOf or e.home, e.home))
                    if signed is None:
                        self.log.error("MN: no security association for {mnId}",
                                       mnId=self.core.mnId)
                        continue
                    self.port.sendToHomeAgent(signed, e.homeAgent, e.careOf, e.home,
                                              octets=self.security.octets.take(signed))
                    continue
                self.port.sendToHomeAgent(message, e.homeAgent, e.careOf, e.home)
            elif kind is HomeTunnelEffect:
                self.dataPlaneCall(self.tunnel.set, e.home, e.homeAgent, e.careOf)
        if self._stopped is not None and self.core.done:
            d, self._stopped = self._stopped, None
            self.reactor.callLater(0, d.callback, None)
