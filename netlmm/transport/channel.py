"""
How a MAG and its PMIP client reach each other: the transport of the
MAG <-> PMIP client protocol, chosen by name in the config ([pmip.tls] and
[mag.tls] C{transport}), and the credentials when it is authenticated.

    tls        TLS 1.2+ over TCP, both ends authenticated by the domain CA
    sctp+tls   the same TLS over an SCTP association (draft 4.9.3 + 4.9.4)
    sctp       SCTP, unauthenticated (draft 4.9.3; trusted networks only)
    tcp        TCP, unauthenticated (trusted networks only)
"""

import os

from twisted.internet import endpoints
from twisted.protocols.tls import TLSMemoryBIOFactory

from netlmm.config import ConfigError
from netlmm.pki import ROLES
from netlmm.transport.control import Gate

TRANSPORTS = ("tls", "sctp+tls", "tcp", "sctp")

#: The listen() backlog of the MAG and peer listeners.
BACKLOG = 1024


class Channel:
    """
    One end's view of the channel: C{transport} (one of L{TRANSPORTS}),
    its L{netlmm.transport.tls.Credentials} when TLS is on, and for a MAG
    the PMIP client's expected certificate name (C{peerName}, or None for
    any PMIP client of the domain).
    """

    def __init__(self, transport="tcp", credentials=None, peerName=None):
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}, got {transport!r}")
        if transport.endswith("tls") != (credentials is not None):
            raise ValueError(f"transport {transport!r} and credentials disagree")
        self.transport = transport
        self.credentials = credentials
        self.peerName = peerName

    @property
    def tls(self):
        return self.credentials is not None

    @property
    def sctp(self):
        return self.transport.startswith("sctp")

    def describe(self):
        """For the logs: 'TLS over TCP as MAG MAG1', 'plain TCP (unauthenticated)'..."""
        under = "SCTP" if self.sctp else "TCP"
        if not self.tls:
            return f"plain {under} (unauthenticated)"
        return f"TLS over {under}, mutually authenticated as {self.credentials.describe()}"

    def prepare(self, factory, reactor, side, expectRole):
        """Tell a L{ControlFactory} what its connections run over."""
        factory.tls = self.tls
        factory.clock = reactor
        factory.side = side
        factory.expected = ROLES[expectRole]

    def serverEndpoint(self, reactor, address, port):
        # A deep accept queue: a flood of connections is taken and refused
        # (or admitted) at once, not left to the kernel's SYN-ACK retries.
        if self.sctp:
            from netlmm.transport.sctp import SCTPServerEndpoint
            return SCTPServerEndpoint(reactor, port, interface=str(address),
                                      backlog=BACKLOG)
        return endpoints.TCP6ServerEndpoint(reactor, port, backlog=BACKLOG,
                                            interface=str(address))

    def listen(self, reactor, address, port, factory, expectRole="mag"):
        """
        Listen for the peers (MAGs, for a PMIP client): Deferred[IListeningPort].
        C{factory} (a L{ControlFactory}) admits or refuses each connection
        before TLS sees it (L{Gate}).
        """
        inner = factory
        if self.tls:
            inner = TLSMemoryBIOFactory(
                self.credentials.serverCreator(expectRole, None), False, factory)
            inner.noisy = False
        return self.serverEndpoint(reactor, address, port).listen(Gate(factory, inner))

    def clientEndpoint(self, reactor, address, port, expectRole="pmip", timeout=5):
        """The endpoint a MAG connects to its PMIP client with."""
        if self.sctp:
            from netlmm.transport.sctp import SCTPClientEndpoint
            endpoint = SCTPClientEndpoint(reactor, address, port, timeout=timeout)
        else:
            endpoint = endpoints.TCP6ClientEndpoint(reactor, str(address), port,
                                                    timeout=timeout)
        if self.tls:
            endpoint = endpoints.wrapClientTLS(
                self.credentials.clientCreator(expectRole, self.peerName), endpoint)
        return endpoint


def channelFromTable(table, role, base=None):
    """
    The L{Channel} described by a role's C{tls} sub-table (C{[pmip.tls]} or
    C{[mag.tls]}). The table is required: the channel is mutually
    authenticated TLS unless it says C{transport = "tcp"} (or "sctp")
    explicitly. Relative paths are taken from the config file's directory.
    """
    from netlmm.transport.tls import loadCredentials
    if "tls" not in table.data:
        where = f"{table.where}.tls" if table.where else "tls"
        raise ConfigError(
            f"{where}: missing: the MAG <-> PMIP client channel is mutually authenticated "
            f"TLS (draft 4.9.4): give [{where}] ca, certificate and key (`netlmm pki init` "
            f"and `netlmm pki issue` make them), or transport = 'tcp' to run it "
            "unauthenticated on a network you trust")
    t = table.table("tls")
    transport = t.string("transport", "tls", choices=TRANSPORTS)
    keys = ("ca", "certificate", "key")
    peerName = None
    if role == "mag":
        peerName = t.string("pmip_name")
    if not transport.endswith("tls"):
        for k in keys + (("pmip_name",) if role == "mag" else ()):
            if t._get(k, None, False) is not None:
                raise ConfigError(f"{t.where}.{k}: only used with transport 'tls' or "
                                  f"'sctp+tls' (transport is {transport!r})")
        t.finish()
        return Channel(transport)
    if t.base is None:
        t.base = base
    paths = []
    for k in keys:
        path = t.path(k, required=True)
        if not os.path.exists(path):
            raise ConfigError(
                f"{t.where}.{k}: {path}: no such file; the domain's PKI makes it: "
                f"`netlmm pki init --dir DIR --domain DOMAIN`, then `netlmm pki issue --dir "
                f"DIR --role {role} --name NAME` (`./dev setup` makes etc/netlmm/pki for "
                "the shipped examples)")
        paths.append(path)
    if peerName is not None:
        from netlmm.pki import PkiError, checkName
        try:
            checkName(peerName, "pmip_name")
        except PkiError as e:
            raise ConfigError(f"{t.where}.pmip_name: {e}") from None
    credentials = loadCredentials(*paths, role=role, where=t.where)
    t.finish()
    return Channel(transport, credentials, peerName)
