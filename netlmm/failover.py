"""
Active/standby LMAs sharing one service address (issue 12 item 3): the pair
keeps its binding cache in Redis (L{netlmm.redisstore}), and a lease in
Redis says which one is active.

Each daemon of the pair starts as a candidate: it tries to take the lease
(C{SET PREFIX+kind:owner TOKEN NX PX lease}); the one that gets it is the
active, the other stays standby and tries again every C{lease / 5}. The
active renews the lease every C{lease / 3} (only while it still holds it, one
Lua script), and its store writes only while it holds it (the store's
fencing token), so an active that was paused and comes back cannot
overwrite its successor's state.

Taking over: load the bindings from Redis (the store's L{load}), add the
service address to the configured interface (no DAD: the address is the
pair's), announce it with unsolicited Neighbor Advertisements (RFC 4861
7.2.6, Override flag set) so that the peers on the link send to the new
owner at once, then start the LMA: its data plane gets a route per binding
before it listens. PMIP clients and MAGs keep talking to the same address;
nothing changes for them.

An active that cannot renew its lease within C{lease} (Redis away, or the
lease taken after a pause) stops serving at once and exits with status 1:
its supervisor starts it again, as a standby. A clean stop gives the lease
up, so the standby takes over within one poll.
"""

import os
import socket
import struct
from ipaddress import IPv6Address, IPv6Interface

from twisted.application.service import Service
from twisted.internet.defer import inlineCallbacks, maybeDeferred
from twisted.logger import Logger

#: Renews the lease while this daemon holds it (1); takes it again when it
#: ran out and nobody took it meanwhile (2: nobody else can have served,
#: e.g. while a takeover blocked on loading); 0 when another holds it.
RENEW_SCRIPT = b"""
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0
"""

RELEASE_SCRIPT = b"""
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def failoverConfig(table):
    """The [state.failover] table: the service address, its interface, the lease."""
    from netlmm.config import ConfigError
    text = table.string("address", required=True)
    try:
        address = IPv6Interface(text)
    except ValueError as e:
        raise ConfigError(f"{table.where}.address: expected an IPv6 address with its "
                          f"prefix length such as '2001:db8:f::1/64', got {text!r} "
                          f"({e})") from None
    interface = table.string("interface", required=True)
    lease = table.number("lease", 1.0, minimum=0.1, maximum=60)
    name = table.string("name", f"{socket.gethostname()}:{os.getpid()}")
    table.finish()
    return dict(address=address, interface=interface, lease=lease, name=name)


class FailoverService(Service):
    """
    Runs C{role} (an L{netlmm.service.lma.LmaService} whose store is a
    L{netlmm.redisstore.RedisStore}) only while this daemon holds the
    lease; see the module's docstring.

    @param address: the service address (an IPv6Interface) to add to
        C{interface} when taking over; None to leave addresses alone (tests
        on loopback).
    @param exit: how to end the process once the reactor stopped (status 1
        after the lease is lost).
    """

    log = Logger()

    def __init__(self, reactor, role, store, lease=1.0, name=None, address=None,
                 interface=None, exit=os._exit):
        self.reactor = reactor
        self.role = role
        self.store = store
        self.lease = lease
        # The role's name, for the control socket; this daemon's in the pair.
        self.name = role.name
        self.node = name or f"{socket.gethostname()}:{os.getpid()}"
        self.token = (self.node + ":" + os.urandom(8).hex()).encode()
        self.ownerKey = store.hash + b":owner"
        self.address = address
        self.interface = interface
        self._exit = exit
        self.state = "standby"
        self._call = None
        self._renewed = None
        self._addressAdded = False
        #: When this daemon took over (reactor time), or None.
        self.tookOverAt = None

    # ------------------------------------------------------------ running

    def startService(self):
        Service.startService(self)
        self.log.info("{role}: failover candidate {me}: trying for the lease {key} "
                      "({lease:g} s)", role=self.role.name, me=self.node,
                      key=self.ownerKey.decode(), lease=self.lease)
        self._schedule(0, self._try)

    def _schedule(self, delay, f):
        self._call = self.reactor.callLater(delay, f)

    def _redis(self):
        return self.store._client()

    @inlineCallbacks
    def _try(self):
        self._call = None
        try:
            got = yield self._redis().set(self.ownerKey, self.token,
                                          pexpire=int(self.lease * 1000),
                                          only_if_not_exists=True).addTimeout(
                                              self.lease, self.reactor)
        except Exception as e:
            if not self.running:
                return
            if self.state != "unreachable":
                self.state = "unreachable"
                self.log.warn("{role}: standby cannot reach Redis ({error}); trying "
                              "every {poll:g} s", role=self.role.name,
                              error=_describe(e, self.lease), poll=self.lease / 5)
            self._schedule(self.lease / 5, self._try)
            return
        if not self.running:
            return
        if not got:
            if self.state != "waiting":
                self.state = "waiting"
                holder = None
                try:
                    holder = yield self._redis().get(self.ownerKey)
                except Exception:
                    pass
                self.log.info("{role}: standby; {holder} is active", role=self.role.name,
                              holder=holder if holder is not None else "nobody")
            self._schedule(self.lease / 5, self._try)
            return
        self._renewed = self.reactor.seconds()
        yield self._takeOver()

    @inlineCallbacks
    def _takeOver(self):
        self.state = "active"
        self.store.owner = (self.ownerKey, self.token)
        started = self.reactor.seconds()
        self._schedule(self.lease / 3, self._renew)
        try:
            # Blocking, as at any start: the standby serves nothing meanwhile.
            self.role.loadState()
            if self.address is not None:
                addServiceAddress(self.interface, self.address)
                self._addressAdded = True
                announce(self.interface, self.address.ip)
            yield maybeDeferred(self.role.startService)
        except Exception as e:
            self.log.critical("{role}: cannot take over: {error}", role=self.role.name,
                              error=e)
            self._stepDown()
            return
        self.tookOverAt = self.reactor.seconds()
        self.log.info("{role}: active ({me}): took over in {ms:.0f} ms with {n} bindings",
                      role=self.role.name, me=self.node,
                      ms=(self.tookOverAt - started) * 1000,
                      n=len(self.role.core.bindings))
        if self.address is not None:
            # Announced again once listening: a peer that asked meanwhile
            # may have cached the old owner's link-layer address.
            self.reactor.callLater(0.2, self._announce)

    def _announce(self):
        if self.state == "active" and self._addressAdded:
            try:
                announce(self.interface, self.address.ip)
            except OSError as e:
                self.log.warn("{role}: cannot announce {address}: {error}",
                              role=self.role.name, address=self.address.ip, error=e)

    @inlineCallbacks
    def _renew(self):
        self._call = None
        if self.state != "active" or not self.running:
            return
        asked = self.reactor.seconds()
        try:
            kept = yield self._redis().eval(
                RENEW_SCRIPT, [self.ownerKey], [self.token, int(self.lease * 1000)]
            ).addTimeout(self.lease / 3, self.reactor)
        except Exception as e:
            kept = None
            if asked - self._renewed + self.lease / 3 < self.lease:
                self.log.warn("{role}: cannot renew the lease: {error}",
                              role=self.role.name, error=_describe(e, self.lease / 3))
        if self.state != "active" or not self.running:
            return
        if kept:
            if kept == 2:
                self.log.warn("{role}: the lease had run out (nobody took it): taken "
                              "again", role=self.role.name)
            self._renewed = asked
        elif kept == 0 or self.reactor.seconds() - self._renewed >= self.lease:
            why = "another daemon holds it" if kept == 0 else \
                f"not renewed for {self.reactor.seconds() - self._renewed:.1f} s"
            self.log.critical("{role}: lost the lease ({why}): no longer active; "
                              "exiting", role=self.role.name, why=why)
            self._stepDown()
            return
        self._schedule(max(0.0, self.lease / 3 - (self.reactor.seconds() - asked)),
                       self._renew)

    def _stepDown(self):
        """Stop serving at once and end the process with status 1."""
        self.state = "stepped down"
        self._removeAddress()
        if self.role.running:
            # No answer leaves any more, held ones included.
            self.role.port.stopListening()
            self.role._stopping = True
        self.lost()

    def lost(self):
        """What stepping down ends with: the process, status 1 (tests replace it)."""
        self.reactor.addSystemEventTrigger("after", "shutdown", self._exit, 1)
        self.reactor.stop()

    def _removeAddress(self):
        if self._addressAdded:
            self._addressAdded = False
            try:
                removeServiceAddress(self.interface, self.address)
            except OSError as e:
                self.log.warn("{role}: cannot remove {address}: {error}",
                              role=self.role.name, address=self.address, error=e)

    @inlineCallbacks
    def stopService(self):
        Service.stopService(self)
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        wasActive = self.state == "active"
        self.state = "stopped"
        if self.role.running:
            self._removeAddress()
            yield maybeDeferred(self.role.stopService)
        elif self.role.store is not None:
            yield maybeDeferred(self.role.store.close)
        if wasActive:
            try:
                yield self._redis().eval(RELEASE_SCRIPT, [self.ownerKey], [self.token]
                                         ).addTimeout(self.lease, self.reactor)
                self.log.info("{role}: lease given up", role=self.role.name)
            except Exception:
                pass
        redis, self.store._redis = self.store._redis, None
        if redis is not None:
            yield redis.disconnect()

    # ------------------------------------------------------------ management

    def command(self, words):
        """The control socket's commands: the role's while active."""
        if self.state == "active":
            return self.role.command(words)
        return f"standby ({self.state}): not serving; the active LMA answers\n"

    def metricFamilies(self):
        from netlmm.metrics import gauge
        yield gauge("netlmm_failover_active", "1 while this daemon holds the lease "
                    "and serves, 0 as standby", 1 if self.state == "active" else 0)
        if self.state == "active":
            yield from self.role.metricFamilies()


def _describe(error, timeout):
    """An exception of a Redis call as a line for the log."""
    from twisted.internet.defer import TimeoutError
    if isinstance(error, TimeoutError):
        return f"no answer within {timeout:g} s"
    return str(error) or type(error).__name__


# ------------------------------------------------------------ the address

IFA_F_NODAD = 0x02


def addServiceAddress(interface, address):
    """Add C{address} (IPv6Interface) to C{interface}, without DAD; present already is fine."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError
    with IPRoute() as ip:
        index = _index(ip, interface)
        try:
            ip.addr("add", index=index, address=str(address.ip),
                    prefixlen=address.network.prefixlen, flags=IFA_F_NODAD)
        except NetlinkError as e:
            if e.code != 17:  # EEXIST
                raise OSError(e.code, f"cannot add {address} to {interface}: {e}") from None


def removeServiceAddress(interface, address):
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError
    with IPRoute() as ip:
        try:
            ip.addr("del", index=_index(ip, interface), address=str(address.ip),
                    prefixlen=address.network.prefixlen)
        except NetlinkError as e:
            if e.code not in (99, 19):  # EADDRNOTAVAIL, ENODEV
                raise OSError(e.code, f"cannot remove {address}: {e}") from None


def _index(ip, interface):
    found = ip.link_lookup(ifname=interface)
    if not found:
        raise OSError(19, f"no interface {interface!r}")
    return found[0]


def announce(interface, address, count=1):
    """
    Unsolicited Neighbor Advertisements for C{address} on C{interface} to
    all-nodes (RFC 4861 7.2.6): Override set, Solicited clear, Router as
    the interface forwards; with the interface's link-layer address.
    """
    index = socket.if_nametoindex(interface)
    with open(f"/sys/class/net/{interface}/address") as f:
        mac = bytes.fromhex(f.read().strip().replace(":", ""))
    try:
        with open(f"/proc/sys/net/ipv6/conf/{interface}/forwarding") as f:
            router = f.read().strip() != "0"
    except OSError:
        router = False
    flags = (0x80000000 if router else 0) | 0x20000000
    # Type 136, code 0, checksum (the kernel fills it in), flags, target,
    # then the Target Link-Layer Address option (type 2, length 1 = 8 octets).
    na = struct.pack("!BBHI16s", 136, 0, 0, flags, IPv6Address(address).packed)
    na += struct.pack("!BB6s", 2, 1, mac)
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    try:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
        for _ in range(count):
            s.sendto(na, ("ff02::1", 0, 0, index))
    finally:
        s.close()
