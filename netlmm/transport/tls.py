"""
Mutually authenticated TLS for the MAG <-> PMIP client channel.

Draft section 4.9.4 asks for authenticated (and optionally encrypted)
Trigger and Notification messages. netlmm does it with TLS 1.2 or later,
both ends presenting a certificate from the domain's CA (L{netlmm.pki}):
the PMIP client accepts only certificates that name a MAG
(C{netlmm:mag:NAME}), the MAG only one that names a PMIP client
(C{netlmm:pmip:NAME}, and that exact name when configured).

The check runs inside OpenSSL's verify callback, so a wrong peer fails the
handshake itself (it gets a TLS alert) and no application byte is exchanged
with it. The reason is kept on the connection for the log line that names
the peer's address (L{netlmm.transport.control.ControlProtocol}).
"""

import datetime
import os
import stat

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL, crypto
from twisted.internet import ssl
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator, IOpenSSLServerConnectionCreator,
)
from zope.interface import implementer

from netlmm.config import ConfigError
from netlmm.pki import ROLES, identityOf

# OpenSSL X509_V_ERR_* codes worth a readable line in the log.
_VERIFY_ERRORS = {
    2: "the issuer certificate is unknown",
    7: "certificate signature failure",
    9: "the certificate is not yet valid",
    10: "the certificate has expired",
    18: "self-signed certificate, not from this domain's CA",
    19: "self-signed certificate in the chain, not this domain's CA",
    20: "not issued by this domain's CA",
    21: "not issued by this domain's CA",
    24: "the issuer is not a CA",
    26: "certificate not meant for this purpose (extendedKeyUsage)",
}


def describeVerifyError(errno):
    """A readable reason for an OpenSSL certificate verification error."""
    return _VERIFY_ERRORS.get(errno, f"certificate verification error {errno}")


def _read(path, key, what):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise ConfigError(f"{key}: {path}: no such file ({what})") from None
    except OSError as e:
        raise ConfigError(f"{key}: {path}: cannot read: {e.strerror}") from None


def _certificate(path, key):
    data = _read(path, key, "a PEM certificate")
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise ConfigError(f"{key}: {path}: not a PEM certificate") from None


def _privateKey(path, key):
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ConfigError(f"{key}: {path}: no such file (a PEM private key)") from None
    except OSError as e:
        raise ConfigError(f"{key}: {path}: cannot read: {e.strerror}") from None
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        raise ConfigError(
            f"{key}: {path}: the private key is accessible to every user (mode "
            f"{stat.S_IMODE(mode):04o}); refused: chmod 600 {path}")
    data = _read(path, key, "a PEM private key")
    try:
        return serialization.load_pem_private_key(data, None)
    except TypeError:
        raise ConfigError(f"{key}: {path}: the private key is encrypted; netlmm needs "
                          "it unencrypted (protect it with file permissions)") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(f"{key}: {path}: not a PEM private key") from None


def _publicBytes(k):
    return k.public_bytes(serialization.Encoding.DER,
                          serialization.PublicFormat.SubjectPublicKeyInfo)


class Credentials:
    """
    A node's TLS identity in its domain: the domain CA, its own certificate
    and key (C{cryptography} objects), and its C{role} and C{name} as the
    certificate states them.

    Build one with L{loadCredentials} (from files, validated) or directly
    from objects (the demo and the tests).
    """

    def __init__(self, ca, certificate, key, role=None, name=None):
        self.ca = ca
        self.certificate = certificate
        self.key = key
        identity = identityOf(certificate)
        self.role, self.name = identity if identity else (role, name)

    def describe(self):
        return f"{ROLES.get(self.role, self.role)} {self.name}"

    def serverCreator(self, expectRole, expectName=None, log=None):
        """The connection creator for a TLS listener that accepts only C{expectRole}."""
        return DomainTLS(self, expectRole, expectName, server=True, log=log)

    def clientCreator(self, expectRole, expectName=None, log=None):
        """The connection creator for a TLS client that accepts only C{expectRole}."""
        return DomainTLS(self, expectRole, expectName, server=False, log=log)


def loadCredentials(caPath, certPath, keyPath, role, where, now=None):
    """
    Read and check a node's credentials; every problem is a L{ConfigError}
    naming the key (C{where}.ca, C{where}.certificate, C{where}.key).

    Refused: missing or unreadable files, a private key readable or writable
    by every user, a key that does not match the certificate, a certificate
    not issued by the CA, expired or not yet valid, or not for C{role}.
    """
    ca = _certificate(caPath, f"{where}.ca")
    try:
        basic = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        basic = None
    if basic is None or not basic.ca:
        raise ConfigError(f"{where}.ca: {caPath}: not a CA certificate")
    cert = _certificate(certPath, f"{where}.certificate")
    key = _privateKey(keyPath, f"{where}.key")
    if _publicBytes(key.public_key()) != _publicBytes(cert.public_key()):
        raise ConfigError(f"{where}.key: {keyPath} does not match the certificate "
                          f"{certPath} ({where}.certificate)")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise ConfigError(f"{where}.certificate: {certPath} was not issued by the CA "
                          f"in {where}.ca ({caPath})") from None
    now = now or datetime.datetime.now(datetime.timezone.utc)
    for which, c, path in (("ca", ca, caPath), ("certificate", cert, certPath)):
        if c.not_valid_after_utc < now:
            raise ConfigError(f"{where}.{which}: {path} expired on "
                              f"{c.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
        if c.not_valid_before_utc > now:
            raise ConfigError(f"{where}.{which}: {path} is not valid before "
                              f"{c.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")
    identity = identityOf(cert)
    if identity is None:
        raise ConfigError(f"{where}.certificate: {certPath} names no netlmm role "
                          "(subjectAltName URI netlmm:ROLE:NAME); issue it with "
                          "`netlmm pki issue`")
    if identity[0] != role:
        raise ConfigError(f"{where}.certificate: {certPath} is a {ROLES[identity[0]]} "
                          f"certificate ({identity[0]}:{identity[1]}); this daemon is "
                          f"a {ROLES[role]} and needs a '{role}' certificate")
    return Credentials(ca, cert, key)


@implementer(IOpenSSLServerConnectionCreator, IOpenSSLClientConnectionCreator)
class DomainTLS:
    """
    Makes the OpenSSL connections of one end of the channel: TLS 1.2 or
    later, our certificate, the domain CA as the only trust root, a peer
    certificate required, and L{checkPeer} run on the peer's certificate.

    A refusal is recorded as C{netlmmRefusal} on the TLS protocol, where
    the L{ControlProtocol} above it finds it to log with the peer's address.
    """

    def __init__(self, credentials, expectRole, expectName=None, server=True, log=None):
        self.credentials = credentials
        self.expectRole = expectRole
        self.expectName = expectName
        self.server = server
        options = ssl.CertificateOptions(
            privateKey=crypto.PKey.from_cryptography_key(credentials.key),
            certificate=crypto.X509.from_cryptography(credentials.certificate),
            trustRoot=ssl.trustRootFromCertificates(
                [ssl.Certificate(crypto.X509.from_cryptography(credentials.ca))]),
            raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
            enableSessions=False,
        )
        self.context = options.getContext()
        self.context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT,
                                self._verify)
        self.context.set_verify_depth(2)

    def checkPeer(self, certificate):
        """
        The reason to refuse a peer certificate that chains to the domain
        CA (a C{cryptography} certificate), or None to accept it.
        """
        identity = identityOf(certificate)
        want = ROLES[self.expectRole]
        if identity is None:
            return f"the certificate names no netlmm role; a {want} is expected"
        role, name = identity
        if role != self.expectRole:
            return f"the certificate is a {ROLES[role]}'s ({role}:{name}); a {want} is expected"
        if self.expectName is not None and name != self.expectName:
            return f"the certificate is {want} {name!r}; {self.expectName!r} is expected"
        return None

    def _verify(self, connection, x509cert, errno, depth, ok):
        protocol = connection.get_app_data()
        reason = None
        if depth == 0:
            reason = self.checkPeer(x509cert.to_cryptography())
        if not ok:
            # A wrong role also fails OpenSSL's extendedKeyUsage check (26):
            # say which role it was rather than only that.
            if errno != 26 or reason is None:
                reason = describeVerifyError(errno)
        if reason is not None:
            _refuse(protocol, reason)
            return False
        return True

    def _connection(self, protocol):
        connection = SSL.Connection(self.context, None)
        connection.set_app_data(protocol)
        return connection

    def serverConnectionForTLS(self, protocol):
        connection = self._connection(protocol)
        connection.set_accept_state()
        return connection

    def clientConnectionForTLS(self, protocol):
        connection = self._connection(protocol)
        connection.set_connect_state()
        return connection


def _refuse(tlsProtocol, reason):
    # Kept on the TLS layer, which is the ControlProtocol's transport (the
    # protocol itself may sit behind a proxy, as under ClientService).
    if tlsProtocol is not None and getattr(tlsProtocol, "netlmmRefusal", None) is None:
        tlsProtocol.netlmmRefusal = reason


def peerIdentity(transport):
    """The (role, name) of the authenticated TLS peer on C{transport}, or None."""
    getCert = getattr(transport, "getPeerCertificate", None)
    if getCert is None:
        return None
    cert = getCert()
    if cert is None:
        return None
    return identityOf(cert.to_cryptography())
