"""
Per-MN keys from AAA (draft Appendix C) over RADIUS (RFC 2865).

L{RadiusKeyClient} asks a RADIUS server for a mobile's MN-HA security
association with an Access-Request (User-Name = the MN's NAI, with a
Message-Authenticator) and reads the 3GPP2 vendor attributes
(vendor 5535) MN-HA-SPI (57) and MN-HA-Shared-Key (58, salt-encrypted),
which FreeRADIUS and other servers carry in their stock dictionaries. An
Access-Reject means the mobile is not authorized (L{KeyRejected}). An
Access-Accept may also name the mobile's LMA (RFC 6572
PMIP6-Home-LMA-IPv6-Address, 147): L{AaaKeys.homeLma} keeps it for the
'aaa' anchor policy (L{netlmm.core.anchors.AaaAnchors}).

Packets are built and parsed with pyrad's codec; the transport is a
Twisted UDP port. Each request is retransmitted C{retries} times, C{timeout}
seconds apart, to one server, then to the next one in the list (failover);
after the last one it fails with L{AAAUnavailable}.

L{AaaKeys} caches what the server returned, with a lifetime, in a
L{KeyStore} that the guards read synchronously.

Which PMIP client a key is for (draft Appendix C and E.1): every request
names it in NAS-IPv6-Address (RFC 3162). A PMIP client names itself
(C{nasAddress}); the LMA names the client whose PBU it checks, and the SA it
gets back is good for that client only. The server authorizes a client for a
mobile by answering Access-Accept for that pair (a FreeRADIUS users entry
with the check item C{NAS-IPv6-Address == ...}), and should give each pair an
SPI of its own.
"""

import os
from ipaddress import IPv6Address

from pyrad import packet as radpacket
from pyrad.dictionary import Dictionary
from twisted.internet.defer import Deferred, fail
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from netlmm.config import ConfigError
from netlmm.security.auth import ALGORITHMS, SecurityAssociation
from netlmm.security.keystore import KeyStore

DICTIONARY = os.path.join(os.path.dirname(__file__), "dictionary.radius")


class KeyRejected(Exception):
    """The AAA server refused the mobile (Access-Reject)."""


class AAAUnavailable(Exception):
    """No configured AAA server answered, or the answer carried no usable key."""


class _Request:
    __slots__ = ("packet", "data", "deferred", "server", "attempt", "timer", "mnId",
                 "client")


class RadiusKeyClient(DatagramProtocol):
    """
    @param servers: [(address, port), ...] tried in order.
    @param secret: the shared secret (bytes).
    """

    log = Logger()

    def __init__(self, reactor, servers, secret, timeout=1.0, retries=3,
                 algorithm="hmac-sha1-96", nasIdentifier="netlmm", nasAddress=None):
        if not servers:
            raise ValueError("at least one RADIUS server is needed")
        self.reactor = reactor
        self.servers = [(str(a), int(p)) for a, p in servers]
        self.secret = secret if isinstance(secret, bytes) else secret.encode()
        self.timeout = timeout
        self.retries = retries
        self.algorithm = algorithm
        self.nasIdentifier = nasIdentifier
        #: The PMIP client this one asks for when a fetch names none (an
        #: IPv6Address, or None to send no NAS-IPv6-Address).
        self.nasAddress = nasAddress
        self.dictionary = Dictionary(DICTIONARY)
        self._pending = {}
        self._nextId = int.from_bytes(os.urandom(1), "big")
        self.port = None
        self.counters = {"requests": 0, "accepts": 0, "rejects": 0, "timeouts": 0,
                         "retransmissions": 0, "failovers": 0, "invalid": 0}
        #: MN identifier -> the LMA its last Access-Accept named (RFC 6572),
        #: taken by L{AaaKeys} when the fetch completes.
        self.homeLmas = {}

    def start(self):
        """Open the UDP port (an ephemeral one on ::)."""
        if self.port is None:
            self.port = self.reactor.listenUDP(0, self, interface="::")
        return self.port

    def stop(self):
        """Close the port; pending fetches fail with L{AAAUnavailable}."""
        for rid, r in list(self._pending.items()):
            self._finish(rid, AAAUnavailable("RADIUS client stopped"))
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()

    def fetch(self, mnId, client=None):
        """
        A Deferred firing with the L{SecurityAssociation} for C{mnId}; with
        C{client} (an IPv6 address), the SA of that PMIP client, good for it
        only.
        """
        if self.port is None:
            self.start()
        if len(self._pending) >= 256:
            return fail(AAAUnavailable("too many RADIUS requests outstanding"))
        rid = self._nextId
        while rid in self._pending:
            rid = (rid + 1) & 0xFF
        self._nextId = (rid + 1) & 0xFF
        p = radpacket.AuthPacket(code=radpacket.AccessRequest, id=rid,
                                 secret=self.secret, dict=self.dictionary)
        p["User-Name"] = mnId.decode("utf-8", "replace")
        p["NAS-Identifier"] = self.nasIdentifier
        nas = client if client is not None else self.nasAddress
        if nas is not None:
            p["NAS-IPv6-Address"] = str(nas)
        p.add_message_authenticator()
        r = _Request()
        r.packet = p
        r.data = p.RequestPacket()
        r.deferred = Deferred()
        r.server = 0
        r.attempt = 0
        r.timer = None
        r.mnId = mnId
        r.client = client
        self._pending[rid] = r
        self.counters["requests"] += 1
        self._send(rid)
        return r.deferred

    def _send(self, rid):
        r = self._pending[rid]
        self.port.write(r.data, self.servers[r.server])
        r.timer = self.reactor.callLater(self.timeout, self._timedOut, rid)

    def _timedOut(self, rid):
        r = self._pending.get(rid)
        if r is None:
            return
        r.timer = None
        r.attempt += 1
        if r.attempt < self.retries:
            self.counters["retransmissions"] += 1
        else:
            self.counters["timeouts"] += 1
            self.log.warn("RADIUS server [{host}]:{port} did not answer for {mnId}",
                          host=self.servers[r.server][0], port=self.servers[r.server][1],
                          mnId=r.mnId.decode("utf-8", "replace"))
            r.server += 1
            r.attempt = 0
            if r.server >= len(self.servers):
                self._finish(rid, AAAUnavailable(
                    f"no RADIUS server answered for {r.mnId.decode('utf-8', 'replace')}"))
                return
            self.counters["failovers"] += 1
        self._send(rid)

    def datagramReceived(self, data, addr):
        if len(data) < 20:
            self.counters["invalid"] += 1
            return
        r = self._pending.get(data[1])
        if r is None:
            self.counters["invalid"] += 1
            return
        try:
            reply = r.packet.CreateReply(packet=data)
            valid = r.packet.VerifyReply(reply, data, enforce_ma=False)
        except Exception as e:  # pyrad raises several kinds on bad input
            self.counters["invalid"] += 1
            self.log.warn("malformed RADIUS reply from {peer}: {error}", peer=addr,
                          error=e)
            return
        if not valid:
            self.counters["invalid"] += 1
            self.log.warn("RADIUS reply from {peer} fails verification; dropped",
                          peer=addr)
            return
        reply.request_authenticator = r.packet.authenticator
        rid = data[1]
        if reply.code == radpacket.AccessReject:
            self.counters["rejects"] += 1
            self._finish(rid, KeyRejected(
                f"the AAA server rejected {r.mnId.decode('utf-8', 'replace')}"))
            return
        if reply.code != radpacket.AccessAccept:
            self._finish(rid, AAAUnavailable(f"unexpected RADIUS code {reply.code}"))
            return
        try:
            spi = reply["3GPP2-MN-HA-SPI"][0]
            key = reply["3GPP2-MN-HA-Shared-Key"][0]
            if isinstance(key, str):
                key = key.encode("utf-8")
            clients = () if r.client is None else (f"{r.client}/128",)
            sa = SecurityAssociation(spi, key, self.algorithm, r.mnId, clients)
        except (KeyError, IndexError, ValueError, TypeError, radpacket.PacketError) as e:
            self._finish(rid, AAAUnavailable(
                f"Access-Accept for {r.mnId.decode('utf-8', 'replace')} has no usable "
                f"3GPP2 MN-HA SPI/key: {e}"))
            return
        self.counters["accepts"] += 1
        try:
            lma = reply["PMIP6-Home-LMA-IPv6-Address"][0]
        except (KeyError, IndexError):
            lma = None
        except Exception as e:  # pyrad's decoding of a malformed value
            lma = None
            self.log.warn("Access-Accept for {mnId}: unusable PMIP6-Home-LMA-IPv6-Address: "
                          "{error}", mnId=r.mnId.decode("utf-8", "replace"), error=e)
        if lma is not None:
            try:
                self.homeLmas[r.mnId] = IPv6Address(lma)
            except ValueError:
                self.log.warn("Access-Accept for {mnId}: PMIP6-Home-LMA-IPv6-Address {lma!r} "
                              "is not an IPv6 address", mnId=r.mnId.decode("utf-8", "replace"),
                              lma=lma)
        self._finish(rid, sa)

    def _finish(self, rid, result):
        r = self._pending.pop(rid)
        if r.timer is not None and r.timer.active():
            r.timer.cancel()
        if isinstance(result, Exception):
            r.deferred.errback(result)
        else:
            r.deferred.callback(result)


class AaaKeys(KeyStore):
    """
    A key store filled from AAA: L{fetch} asks once per mobile (concurrent
    asks share one request) and keeps the SA for C{lifetime} seconds, after
    which L{fresh} is False and the next attachment asks again. Older SAs of
    the mobile stay accepted on receipt (rollover); static entries may be
    added too.
    """

    def __init__(self, client, lifetime=3600.0, clock=None, associations=()):
        super().__init__(associations)
        self.client = client
        self.lifetime = lifetime
        self.clock = clock or client.reactor
        self._expiry = {}
        self._inflight = {}
        self._homeLmas = {}

    def homeLma(self, mnId):
        """The LMA (IPv6Address) the AAA server named for C{mnId} (RFC 6572), or None."""
        return self._homeLmas.get(mnId)

    def fresh(self, mnId):
        """True when an SA for C{mnId} is cached and not expired."""
        expiry = self._expiry.get(mnId)
        return (self.hasMobile(mnId) and expiry is not None
                and expiry > self.clock.seconds())

    def fetch(self, mnId, client=None):
        """
        A Deferred firing with the (new) SA of C{mnId}, cached on success;
        with C{client}, the SA AAA gives that PMIP client (the LMA's ask).
        """
        key = (mnId, client)
        d = self._inflight.get(key)
        if d is None:
            d = self.client.fetch(mnId) if client is None else self.client.fetch(mnId, client)
            self._inflight[key] = d

            def done(result):
                self._inflight.pop(key, None)
                lma = self.client.homeLmas.pop(mnId, None)
                if isinstance(result, SecurityAssociation):
                    self.add(result)
                    self._expiry[mnId] = self.clock.seconds() + self.lifetime
                    if lma is None:
                        self._homeLmas.pop(mnId, None)
                    else:
                        self._homeLmas[mnId] = lma
                return result
            d.addBoth(done)
        # Every caller gets its own Deferred with the same outcome.
        mine = Deferred()

        def relay(result):
            if isinstance(result, SecurityAssociation):
                mine.callback(result)
            else:
                mine.errback(result)
            return result
        d.addBoth(relay)
        d.addErrback(lambda f: None)
        return mine


def radiusConfig(t):
    """Validate a [*.security.radius] table."""
    servers = t._get("servers", None, True)
    if not isinstance(servers, list) or not servers or not all(
            isinstance(s, str) for s in servers):
        raise ConfigError(f"{t.where}.servers: expected a list of '[address]:port'")
    from netlmm.config import parseEndpoint
    parsed = [parseEndpoint(s, f"{t.where}.servers") for s in servers]
    secret = t.string("secret")
    secretFile = t.path("secret_file")
    if (secret is None) == (secretFile is None):
        raise ConfigError(f"{t.where}: give exactly one of secret or secret_file")
    timeout = t.number("timeout", 1.0, minimum=0.05, maximum=60)
    retries = t.number("retries", 3, minimum=1, maximum=10, integer=True)
    lifetime = t.number("key_lifetime", 3600, minimum=1, maximum=86400 * 30)
    algorithm = t.string("algorithm", "hmac-sha1-96", choices=tuple(ALGORITHMS))
    nasId = t.string("nas_identifier", "netlmm")
    nasAddress = t.address("nas_address")
    t.finish()
    return dict(servers=parsed, secret=secret, secretFile=secretFile, timeout=timeout,
                retries=retries, lifetime=lifetime, algorithm=algorithm,
                nasIdentifier=nasId, nasAddress=nasAddress)
