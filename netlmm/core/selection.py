"""
Which PMIP client serves a mobile (draft sections 4.1 step 3, 4.2, 4.5).

A local mobility domain may have several PMIP clients, but the client of a
mobile is fixed for as long as the mobile stays in the domain: its keys and
sequence numbers live there. Every MAG of the domain must therefore make the
same choice for the same mobile, with nothing but its configuration and the
MN identifier. L{ClientSelector} does it with an explicit map first, then a
stable hash: SHA-256 of the MN identifier, taken as a big-endian integer,
modulo the number of clients, indexing the clients sorted by their text
'[address]:port' (compressed IPv6 form). The order the list is written in
does not matter; Python's salted C{hash()} is never used.

All MAGs of a domain must be configured with the same client list (and the
same map): a MAG with another list chooses differently for some mobiles.

When the chosen client has failed or is drained (draft E.1, PMIP client
relocation), the MAG takes the next one in L{ClientSelector.ranking}: after
the first choice come the other clients by rendezvous hashing (highest
SHA-256 of the MN identifier, a zero octet and the client's text first), so
every MAG picks the same successor for a mobile and one client's mobiles are
spread over all the others rather than piled on one.

This module imports nothing from Twisted.
"""

import hashlib
from ipaddress import IPv6Address


def endpointText(endpoint):
    """(address, port) -> '[address]:port', the canonical form sorted on."""
    address, port = endpoint
    return f"[{IPv6Address(address)}]:{int(port)}"


def _canonical(endpoint):
    address, port = endpoint
    return (IPv6Address(address), int(port))


class ClientSelector:
    """
    @param clients: the domain's PMIP clients, (address, port) pairs, in
        any order; at least one.
    @param explicit: optional mapping MN identifier (bytes) -> (address,
        port), which wins over the hash; every endpoint in it must also be
        in C{clients}.
    """

    def __init__(self, clients, explicit=None):
        clients = {endpointText(c): _canonical(c) for c in clients}
        if not clients:
            raise ValueError("at least one PMIP client is needed")
        #: The clients in their canonical order (sorted by text).
        self.clients = tuple(clients[k] for k in sorted(clients))
        self.explicit = {}
        for mnId, endpoint in (explicit or {}).items():
            endpoint = _canonical(endpoint)
            if endpoint not in self.clients:
                raise ValueError(f"the map sends {mnId!r} to {endpointText(endpoint)}, "
                                 "which is not one of the PMIP clients")
            self.explicit[bytes(mnId)] = endpoint

    def choose(self, mnId, excluded=()):
        """
        The (address, port) of the PMIP client for C{mnId} (bytes): the
        first of L{ranking} not in C{excluded}, or None when all are.
        """
        if not excluded:
            return self._first(mnId)
        for endpoint in self.ranking(mnId):
            if endpoint not in excluded:
                return endpoint
        return None

    def ranking(self, mnId):
        """
        Every client in the order the MAGs try them for C{mnId}: the map's
        or the hash's choice, then the others by rendezvous hashing.
        """
        first = self._first(mnId)
        mnId = bytes(mnId)

        def weight(endpoint):
            text = endpointText(endpoint).encode("ascii")
            return hashlib.sha256(mnId + b"\0" + text).digest()
        rest = sorted((c for c in self.clients if c != first), key=weight, reverse=True)
        return [first] + rest

    def _first(self, mnId):
        chosen = self.explicit.get(mnId)
        if chosen is not None:
            return chosen
        if len(self.clients) == 1:
            return self.clients[0]
        digest = hashlib.sha256(bytes(mnId)).digest()
        return self.clients[int.from_bytes(digest, "big") % len(self.clients)]
