"""
What an LMA hands out: single addresses (Appendix A pHoAs, RFC 5844 IPv4
home addresses) and whole prefixes (draft E.3, RFC 5213 home network
prefixes), lowest free first. Pure bookkeeping, no I/O.
"""

import heapq
from ipaddress import IPv4Address, IPv6Address, IPv6Network, ip_address, ip_network


class _Slots:
    """
    Numbered slots 0..size-1, lowest free first: a counter for the slots
    never handed out and a heap of the ones given back, so a pool of a /48
    split in /64s costs nothing until it is used. Which slots are taken is
    a bitmap in blocks of 512 slots (64 octets), made when a slot in them is first
    taken and dropped when the last is given back: about a bit per slot of
    a pool in use (a set of slot numbers cost about 75 bytes a slot).
    """

    def __init__(self, size):
        self.size = size
        self._next = 0
        self._free = []
        #: Block number -> bytearray of BLOCK bits.
        self._blocks = {}
        self._count = 0

    def allocate(self):
        while self._free:
            slot = heapq.heappop(self._free)
            if self.take(slot):
                return slot
        while self._next < self.size:
            slot = self._next
            self._next += 1
            if self.take(slot):
                return slot
        return None

    def take(self, slot):
        """Mark C{slot} taken; False when it already was."""
        block = self._blocks.get(slot >> 9)
        if block is None:
            block = self._blocks[slot >> 9] = bytearray(64)
        octet, bit = (slot >> 3) & 63, 1 << (slot & 7)
        if block[octet] & bit:
            return False
        block[octet] |= bit
        self._count += 1
        return True

    def release(self, slot):
        block = self._blocks.get(slot >> 9)
        octet, bit = (slot >> 3) & 63, 1 << (slot & 7)
        if block is None or not block[octet] & bit:
            return
        block[octet] &= ~bit & 0xFF
        self._count -= 1
        if not block[octet] and not any(block):
            del self._blocks[slot >> 9]
        if slot < self._next:
            heapq.heappush(self._free, slot)

    def taken(self, slot):
        block = self._blocks.get(slot >> 9)
        return block is not None and bool(block[(slot >> 3) & 63] & (1 << (slot & 7)))

    @property
    def inUse(self):
        return self._count


class AddressPool:
    """
    Addresses an LMA hands out: the range C{first}..C{last} inclusive (IPv6
    for Appendix A pHoAs, IPv4 for RFC 5844 home addresses), lowest free
    address first. C{exclude} are addresses inside the range never handed
    out (an IPv4 default router, say).
    """

    def __init__(self, first, last, exclude=()):
        first, last = ip_address(first), ip_address(last)
        if first.version != last.version:
            raise ValueError(f"address pool {first}-{last} mixes IPv4 and IPv6")
        self.version = first.version
        self._type = IPv6Address if self.version == 6 else IPv4Address
        self.first = int(first)
        self.last = int(last)
        if self.last < self.first:
            raise ValueError(f"address pool {first}-{last} is empty")
        self._slots = _Slots(self.last - self.first + 1)
        for address in exclude:
            if address in self:
                self._slots.take(int(address) - self.first)
        self._excluded = self._slots.inUse

    def __contains__(self, address):
        return (getattr(address, "version", None) == self.version
                and self.first <= int(address) <= self.last)

    def __str__(self):
        return f"{self._type(self.first)}-{self._type(self.last)}"

    @property
    def size(self):
        """How many addresses the pool can hand out."""
        return self._slots.size - self._excluded

    @property
    def inUse(self):
        """How many are handed out or reserved."""
        return self._slots.inUse - self._excluded

    def allocate(self):
        """A free address, or None when the pool is exhausted."""
        slot = self._slots.allocate()
        return None if slot is None else self._type(self.first + slot)

    def reserve(self, address):
        """
        Mark an address bound by other means (DHCP, SLAAC, a PBU that names
        it) as taken; False when it already was.
        """
        return self._slots.take(int(address) - self.first)

    def taken(self, address):
        """True when C{address} is handed out, reserved or excluded."""
        return self._slots.taken(int(address) - self.first)

    def release(self, address):
        """Give an address back."""
        self._slots.release(int(address) - self.first)


class PrefixPool:
    """
    Per-mobile prefixes (draft E.3, RFC 5213): C{network} split into
    prefixes of C{length} bits (/64 by default), lowest free first.
    """

    def __init__(self, network, length=64):
        self.network = ip_network(network)
        if not isinstance(self.network, IPv6Network):
            raise ValueError(f"prefix pool {network} is not an IPv6 network")
        if type(length) is not int or not self.network.prefixlen <= length <= 128:
            raise ValueError(f"prefix length {length!r} must be "
                             f"{self.network.prefixlen}..128 for {self.network}")
        self.length = length
        self._base = int(self.network.network_address)
        self._shift = 128 - length
        self._slots = _Slots(1 << (length - self.network.prefixlen))

    def __str__(self):
        return f"{self.network} in /{self.length}s"

    def __contains__(self, prefix):
        """True for a /length prefix of the pool (not for other lengths)."""
        return (isinstance(prefix, IPv6Network) and prefix.prefixlen == self.length
                and prefix.subnet_of(self.network))

    @property
    def size(self):
        return self._slots.size

    @property
    def inUse(self):
        return self._slots.inUse

    def _slot(self, prefix):
        return (int(prefix.network_address) - self._base) >> self._shift

    def allocate(self):
        """A free prefix (IPv6Network), or None when the pool is exhausted."""
        slot = self._slots.allocate()
        if slot is None:
            return None
        return IPv6Network((self._base + (slot << self._shift), self.length))

    def reserve(self, prefix):
        """Mark C{prefix} (one of the pool's) taken; False when it already was."""
        return self._slots.take(self._slot(prefix))

    def taken(self, prefix):
        return self._slots.taken(self._slot(prefix))

    def release(self, prefix):
        self._slots.release(self._slot(prefix))
