"""
The data plane of a handover between MAGs (draft Appendix D): forwarding a
mobile's downlink to another MAG, holding it until the mobile can take it,
delivering it in order.

While a mobile is in handover its downlink is steered by a route in a table
of its own, looked up ahead of the data plane's routes; everything else
falls through it (a 'throw' default)::

    ip -6 rule add pref 90 lookup 5220 proto 213           (once, at start)
    ip -6 route replace throw default table 5220 proto 213 (once, at start)
    ip -6 route replace PHOA/128 <how> table 5220 proto 213

where <how> is one of:

  - forward (previous MAG): into the tunnel to the new MAG; seg6:
    C{encap seg6 mode encap.red segs PEER dev CORE}; ip6tnl: the device to
    PEER; userspace: the TUN device, whose reader sends it to PEER;
  - hold (new MAG): into the buffer's TUN device (L{PacketBuffer}), where the
    daemon keeps it, bounded in packets, octets and time;
  - deliver (new MAG): on the access interface, with a neighbour entry for
    the mobile's MAC so that nothing waits for neighbour discovery.

When the handover is over the route goes (L{HandoverRoutes.restore})
and the data plane's own routes apply again. Packets that another MAG
tunnels here are decapsulated as the LMA's are (seg6 accepts any source;
ip6tnl needs a device to the peer, userspace to know the peer: L{acceptFrom}).

A packet decapsulated here is routed by the same rule: the previous MAG
forwards only mobiles that left it, and the new MAG never forwards a mobile
it holds or delivers (L{netlmm.core.handover}), so nothing is forwarded
twice.
"""

import collections
import errno
import socket
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from socket import AF_INET, AF_INET6

from twisted.logger import Logger

from netlmm.dataplane import _netlink as nl

#: Defaults of the handover table and the priority of its rules.
HANDOVER_TABLE = 5220
HANDOVER_PRIORITY = 90
NUD_REACHABLE = 0x02


class HandoverRoutes:
    """
    Mixin of the netlink data planes (seg6, ip6tnl, userspace): per-mobile
    handover routing at a MAG. A data plane provides C{_forwardRoute(ipr,
    peer)} (the route keywords that send into the tunnel to C{peer}) and may
    override L{acceptFrom} / L{refuseFrom}.
    """

    handoverTable = HANDOVER_TABLE
    handoverPriority = HANDOVER_PRIORITY

    def _handover(self):
        if not hasattr(self, "_handoverState"):
            #: phoa -> ('forward', peer) | ('hold', ifname) | ('deliver', mac)
            self._handoverState = {}
        return self._handoverState

    @property
    def handovers(self):
        """pHoA -> how its downlink goes while in handover."""
        return dict(self._handover())

    def handoverStart(self):
        """The rule and the fall-through route of the handover table (at start)."""
        return self._do(self._handoverSetup, True)

    def _handoverSetup(self, ipr, again=False):
        if getattr(self, "_handoverReady", False) and not again:
            return
        for family, default in ((AF_INET6, "::/0"), (AF_INET, "0.0.0.0/0")):
            ipr.route("replace", family=family, dst=default, table=self.handoverTable,
                      type="throw", proto=self.protocol)
            nl.addRule(ipr, family=family, priority=self.handoverPriority,
                       table=self.handoverTable, protocol=self.protocol)
        self._handoverReady = True

    def forward(self, phoa, peer):
        """Send C{phoa}'s downlink through the tunnel to the MAG C{peer}."""
        phoa, peer = nl.home(phoa, self.name), IPv6Address(peer)
        self._handover()[phoa] = ("forward", peer)
        self._handoverPeer(peer)
        self._forwarding(phoa, peer)
        return self._do(self._steer, phoa, lambda ipr: self._forwardRoute(ipr, peer))

    def hold(self, phoa, device):
        """Send C{phoa}'s downlink into C{device} (the buffer: a name or an ifindex)."""
        phoa = nl.home(phoa, self.name)
        self._handover()[phoa] = ("hold", device)
        if isinstance(device, int):
            return self._do(self._steer, phoa, lambda ipr: dict(oif=device))
        return self._do(self._steer, phoa, lambda ipr: dict(
            oif=nl.ifindex(ipr, device, "handover buffer device")))

    def deliver(self, phoa, mac=None):
        """Send C{phoa}'s downlink on the access link (to C{mac}, 6 octets, when known)."""
        phoa = nl.home(phoa, self.name)
        self._handover()[phoa] = ("deliver", mac)
        return self._do(self._deliver, phoa, mac)

    def restore(self, phoa):
        """C{phoa} is out of handover: its route goes."""
        phoa = nl.home(phoa, self.name)
        if self._handover().pop(phoa, None) is None:
            return None
        self._forwarding(phoa, None)
        return self._do(self._restore, phoa)

    def acceptFrom(self, peer):
        """Decapsulate what the MAG C{peer} tunnels here (seg6 does without asking)."""

    def refuseFrom(self, peer):
        """Stop decapsulating what C{peer} tunnels here."""

    def _handoverPeer(self, peer):
        """A hook: the data plane needs to reach C{peer} (ip6tnl makes its device)."""

    def _forwarding(self, phoa, peer):
        """A hook: C{phoa} is now forwarded to C{peer} (None: no longer forwarded)."""

    # ------------------------------------------------------------ netlink (worker)

    def _steer(self, ipr, phoa, route):
        self._handoverSetup(ipr)
        ipr.route("replace", family=nl.family(phoa), dst=nl.destination(phoa),
                  table=self.handoverTable, proto=self.protocol, **route(ipr))

    def _deliver(self, ipr, phoa, mac):
        access = self._access
        if mac is not None and not isinstance(phoa, IPv6Network):
            from netlmm.wire.icmpv6 import macText
            ipr.neigh("replace", family=nl.family(phoa), dst=str(phoa), lladdr=macText(mac),
                      ifindex=access, state=NUD_REACHABLE)
        self._steer(ipr, phoa, lambda ipr: dict(oif=access))

    def _restore(self, ipr, phoa):
        nl.ignoreMissing(ipr.route, "del", family=nl.family(phoa), dst=nl.destination(phoa),
                         table=self.handoverTable, proto=self.protocol)


def _home(value):
    """
    A held home: an IPv6Address, an IPv6Network for a per-MN prefix, or the
    IPv4Address of a dual-stack mobile (RFC 5844).
    """
    if isinstance(value, (IPv6Address, IPv6Network, IPv4Address)):
        return value
    text = str(value)
    if "/" in text:
        return IPv6Network(text)
    return IPv4Address(text) if ":" not in text else IPv6Address(text)


def _destination(packet):
    """The destination of an IPv6 or IPv4 packet, or None when it is neither (or short)."""
    version = packet[0] >> 4 if packet else 0
    if version == 6 and len(packet) >= 40:
        return IPv6Address(packet[24:40])
    if version == 4 and len(packet) >= 20:
        return IPv4Address(packet[16:20])
    return None


class PacketBuffer:
    """
    The mobiles' held downlink packets, per destination, in arrival order,
    bounded: at most C{maxPackets} packets and C{maxBytes} octets in all, and
    none older than C{maxAge} seconds. When a bound is hit the C{policy}
    decides: 'drop-new' (tail drop, the arriving packet goes) or 'drop-old'
    (the oldest held packet goes). Every drop is counted by reason. Sans-IO:
    the caller gives the time.
    """

    POLICIES = ("drop-new", "drop-old")

    def __init__(self, maxPackets=2048, maxBytes=4 << 20, maxAge=3.0, policy="drop-new"):
        if policy not in self.POLICIES:
            raise ValueError(f"buffer policy must be one of {', '.join(self.POLICIES)}, "
                             f"not {policy!r}")
        self.maxPackets = maxPackets
        self.maxBytes = maxBytes
        self.maxAge = maxAge
        self.policy = policy
        #: destination (IPv6Address) -> deque of (arrival time, packet)
        self.queues = {}
        #: destinations whose packets came early (L{add}), not held for yet
        self.unclaimed = set()
        self.packets = 0
        self.bytes = 0
        self.counters = dict(held=0, delivered=0, droppedPackets=0, droppedBytes=0,
                             droppedAge=0, droppedUnknown=0, droppedFreed=0)

    def add(self, destination, packet, now, early=False):
        """
        Hold C{packet} for C{destination} (held with L{open}); False when it
        is dropped (not held for, or a bound with policy 'drop-new').
        C{early}: a packet another MAG forwarded before this one holds for
        C{destination} (its context is on its way): kept, within the same
        bounds, for the L{open} that follows, or dropped by age.
        """
        if not early and (destination not in self.queues or destination in self.unclaimed):
            self.counters["droppedUnknown"] += 1
            return False
        self.expire(now)
        queue = self.queues.get(destination)
        if queue is None:
            queue = self.queues[destination] = collections.deque()
            self.unclaimed.add(destination)
        size = len(packet)
        while self.packets + 1 > self.maxPackets or self.bytes + size > self.maxBytes:
            reason = "droppedPackets" if self.packets + 1 > self.maxPackets else "droppedBytes"
            if self.policy == "drop-new" or not self._dropOldest():
                self.counters[reason] += 1
                return False
            self.counters[reason] += 1
        queue.append((now, packet))
        self.packets += 1
        self.bytes += size
        self.counters["held"] += 1
        return True

    def _dropOldest(self):
        oldest = None
        for destination, queue in self.queues.items():
            if queue and (oldest is None or queue[0][0] < self.queues[oldest][0][0]):
                oldest = destination
        if oldest is None:
            return False
        _, packet = self.queues[oldest].popleft()
        self.packets -= 1
        self.bytes -= len(packet)
        return True

    def open(self, destination):
        """
        Begin holding for C{destination} (an address, or a per-MN prefix),
        with what arrived early for it, in arrival order.
        """
        home = _home(destination)
        queue = self.queues.setdefault(home, collections.deque())
        self.unclaimed.discard(home)
        if isinstance(home, IPv6Network):
            early = [a for a in self.unclaimed if a in home]
            for address in early:
                self.unclaimed.discard(address)
                queue.extend(self.queues.pop(address))
            if early:
                self.queues[home] = collections.deque(sorted(queue, key=lambda e: e[0]))

    def holding(self, destination):
        return destination in self.queues and destination not in self.unclaimed

    def take(self, destination, now):
        """Stop holding for C{destination}; its packets, oldest first, not expired."""
        home = _home(destination)
        self.unclaimed.discard(home)
        queue = self.queues.pop(home, None)
        if queue is None:
            return []
        out = []
        for arrived, packet in queue:
            self.packets -= 1
            self.bytes -= len(packet)
            if now - arrived > self.maxAge:
                self.counters["droppedAge"] += 1
            else:
                out.append(packet)
        self.counters["delivered"] += len(out)
        return out

    def free(self, destination):
        """Stop holding for C{destination} and drop what is held (the mobile never came)."""
        home = _home(destination)
        self.unclaimed.discard(home)
        queue = self.queues.pop(home, None)
        for _, packet in queue or ():
            self.packets -= 1
            self.bytes -= len(packet)
            self.counters["droppedFreed"] += 1

    def expire(self, now):
        """Drop the packets older than C{maxAge} (and what nobody claimed in that time)."""
        for destination, queue in list(self.queues.items()):
            while queue and now - queue[0][0] > self.maxAge:
                _, packet = queue.popleft()
                self.packets -= 1
                self.bytes -= len(packet)
                self.counters["droppedAge"] += 1
            if not queue and destination in self.unclaimed:
                del self.queues[destination]
                self.unclaimed.discard(destination)


#: Socket buffers of the hold (SO_SNDBUFFORCE / SO_RCVBUFFORCE, root): a
#: second of held packets goes out in one burst.
BUFFER_SOCKET = 16 << 20
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33


#: The hold's TUN transmit queue when the kernel refuses one of the bound's size.
QUEUE_FALLBACK = 2048


def setUp(name, queue=None):
    """
    Bring interface C{name} up, with a transmit queue of C{queue} packets
    when given (SIOCSIFFLAGS, SIOCSIFTXQLEN: no netlink, nothing blocks).
    """
    import fcntl
    import struct
    with socket.socket(AF_INET6, socket.SOCK_DGRAM) as s:
        if queue is not None:
            fcntl.ioctl(s, 0x8943, struct.pack("16si20x", name.encode(), queue))
        request = struct.pack("16sH22x", name.encode(), 0)
        flags = struct.unpack_from("16sH", fcntl.ioctl(s, 0x8913, request))[1]  # SIOCGIFFLAGS
        fcntl.ioctl(s, 0x8914, struct.pack("16sH22x", name.encode(), flags | 0x1))


def bigBuffers(sock, send=True, receive=True):
    """Make C{sock}'s buffers hold a burst (forced past the sysctl limits as root)."""
    for wanted, forced, plain in ((send, SO_SNDBUFFORCE, socket.SO_SNDBUF),
                                  (receive, SO_RCVBUFFORCE, socket.SO_RCVBUF)):
        if not wanted:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, forced, BUFFER_SOCKET)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, plain, BUFFER_SOCKET)


class BufferDevice:
    """
    The hold of a new MAG: a TUN device (C{name}) the handover routes send
    held mobiles' downlink into; the daemon reads it into a L{PacketBuffer}
    and, when a mobile can take its packets, sends them as Ethernet frames to
    its MAC on the access interface, in order (an AF_PACKET socket: no
    routing, no neighbour discovery on the way). Packets for a mobile that is
    released while some are still in the TUN queue go the same way.
    """

    log = Logger()

    def __init__(self, reactor, buffer, accessInterface, name="nlbuf0", system=None):
        #: Sends held packets through an IPv6-in-IPv6 tunnel to another MAG
        #: (a raw IPPROTO_RAW socket: the outer header is made here).
        self.tunnel = None
        self.address = None
        self.index = None
        from netlmm.dataplane.userspace import LinuxSystem
        self.reactor = reactor
        self.buffer = buffer
        self.accessInterface = accessInterface
        self.name = name
        self.system = system or LinuxSystem()
        self.tun = None
        self.frames = None
        self.sourceMac = None
        #: destination -> MAC of the mobiles released whose stragglers go straight out
        self.released = {}
        self._reader = None

    def start(self, sourceMac, address=None):
        """
        Open the TUN device and the access socket; C{sourceMac}: the router's
        MAC; C{address}: this MAG's (the outer source of what it forwards).
        """
        from netlmm.dataplane.userspace import _Reader
        self.sourceMac = sourceMac
        if address is not None:
            self.address = IPv6Address(address)
            self.tunnel = socket.socket(AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
            bigBuffers(self.tunnel, receive=False)
            self.tunnel.setblocking(False)
        self.tun = self.system.openTun(self.name)
        self.name = self.tun.name
        self._queueUp()
        #: The device's index (routes name it without a netlink lookup).
        self.index = socket.if_nametoindex(self.name)
        self.frames = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        bigBuffers(self.frames, receive=False)
        self.frames.bind((self.accessInterface, 0))
        self.frames.setblocking(False)
        self._reader = _Reader(self.tun, self._read, "netlmm-buffer")
        self.reactor.addReader(self._reader)
        return self.name

    def _queueUp(self):
        """
        Bring the TUN device up. The kernel queues what it routes into the
        hold until the daemon reads it: room for the hold's whole bound if
        the kernel allows (Debian's 6.1 refuses 65,536 with ERANGE), else for
        L{QUEUE_FALLBACK} packets, what the daemon reads in a busy moment.
        """
        queue = max(1000, self.buffer.maxPackets)
        try:
            setUp(self.name, queue=queue)
        except OSError as e:
            if queue <= QUEUE_FALLBACK:
                raise
            self.log.warn("buffer: {name}: a transmit queue of {queue} packets refused "
                          "({error}); {fallback} instead", name=self.name, queue=queue,
                          error=e.strerror or e, fallback=QUEUE_FALLBACK)
            setUp(self.name, queue=QUEUE_FALLBACK)

    def stop(self):
        if self._reader is not None:
            self.reactor.removeReader(self._reader)
            self._reader = None
        for thing in (self.tun, self.frames, self.tunnel):
            if thing is not None:
                thing.close()
        self.tun = self.frames = self.tunnel = None

    def _read(self):
        for _ in range(256):
            try:
                packet = self.tun.read()
            except BlockingIOError:
                return
            except OSError as e:
                self.log.warn("buffer: read failed: {error}", error=e)
                return
            self.received(packet, self.reactor.seconds())

    def received(self, packet, now, early=False):
        """
        One packet routed into the hold (C{early}: one a neighbour MAG
        forwarded here, maybe before this MAG holds for it: see L{PacketBuffer.add}).
        """
        destination = _destination(packet)
        if destination is None:
            return
        destination = self._home(destination)
        if destination in self.released:
            how, to = self.released[destination]
            if how == "mac":
                self.send(packet, to)
            else:
                self.forward(packet, to)
            return
        self.buffer.add(destination, packet, now, early)

    def divert(self, packet):
        """
        A packet the data plane hands over without routing it here (the
        userspace one's C{toHold}): for a mobile this MAG holds, or one a
        neighbour forwards before this MAG holds for it (the HAck with its
        context may come later, and the hold's route a worker-thread turn
        after it).
        """
        self.received(packet, self.reactor.seconds(), early=True)

    def _home(self, address):
        """The home (an address, or a per-MN prefix holding it) held for C{address}."""
        if address in self.released or address in self.buffer.queues:
            return address
        for home in list(self.released) + list(self.buffer.queues):
            if isinstance(home, IPv6Network) and address.version == 6 and address in home:
                return home
        return address

    def release(self, destination, mac, now):
        """The mobile at C{mac} can take its packets: send them, in order."""
        destination = _home(destination)
        packets = self.buffer.take(destination, now)
        self.released[destination] = ("mac", mac)
        for packet in packets:
            self.send(packet, mac)
        return len(packets)

    def forwardTo(self, destination, peer, now):
        """
        The mobile C{destination} is at the MAG C{peer}: send what is held
        for it there, in order, through an IPv6-in-IPv6 tunnel, and what still
        arrives after it, so that nothing overtakes anything.
        """
        destination = _home(destination)
        packets = self.buffer.take(destination, now)
        self.released[destination] = ("peer", IPv6Address(peer))
        for packet in packets:
            self.forward(packet, IPv6Address(peer))
        return len(packets)

    def forward(self, packet, peer):
        """
        One packet to the MAG C{peer}, inside an outer IPv6 header (next
        header 41, or 4 for an IPv4 packet).
        """
        import struct
        inner = 4 if packet[0] >> 4 == 4 else 41
        outer = struct.pack("!IHBB", 6 << 28, len(packet), inner, 64) + self.address.packed \
            + peer.packed
        try:
            self.tunnel.sendto(outer + packet, (str(peer), 0))
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ENOBUFS):
                self.log.warn("buffer: forwarding to {peer} failed: {error}", peer=peer,
                              error=e)
            self.buffer.counters["droppedPackets"] += 1

    def forget(self, destination):
        """Nothing more is routed into the hold for C{destination}."""
        self.released.pop(_home(destination), None)

    def send(self, packet, mac):
        """One IPv6 (or IPv4) packet as an Ethernet frame to C{mac} on the access interface."""
        kind = b"\x08\x00" if packet[0] >> 4 == 4 else b"\x86\xdd"
        frame = mac + self.sourceMac + kind + packet
        try:
            self.frames.send(frame)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ENOBUFS):
                self.log.warn("buffer: sending to the mobile failed: {error}", error=e)
            self.buffer.counters["droppedPackets"] += 1


