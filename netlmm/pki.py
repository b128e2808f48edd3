"""
A local mobility domain's public-key infrastructure for the MAG <-> PMIP
client channel (draft section 4.9.4, done with mutually authenticated TLS).

One CA per domain signs one certificate per node. The node's role and name
are in the certificate as a subjectAltName URI::

    netlmm:mag:NAME      a Mobile Access Gateway
    netlmm:pmip:NAME     a PMIP client

That URI is what a peer checks (L{identityOf}); the extendedKeyUsage agrees
with it (a MAG is a TLS client: clientAuth; a PMIP client is a TLS server:
serverAuth), so a stock TLS stack also refuses a certificate used in the
wrong direction. Only certificates issued by the domain's CA are trusted, so
"of this domain" means "issued by this CA".

Keys are ECDSA P-256. Private key files are written with mode 0600.
"""

import datetime
import os
import re
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: The roles a certificate can carry, with the label used in logs.
ROLES = {"mag": "MAG", "pmip": "PMIP client"}

URI_PREFIX = "netlmm:"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")

CA_CERT = "ca.pem"
CA_KEY = "ca.key"


class PkiError(Exception):
    """A PKI operation that cannot be done; the text says why."""


def roleURI(role, name):
    """The subjectAltName URI naming a node: C{netlmm:ROLE:NAME}."""
    checkRole(role)
    checkName(name)
    return f"{URI_PREFIX}{role}:{name}"


def checkRole(role):
    if role not in ROLES:
        raise PkiError(f"role must be one of {', '.join(sorted(ROLES))}, got {role!r}")


def checkName(name, what="name"):
    if not _NAME.match(name or ""):
        raise PkiError(f"{what} must be 1 to 63 letters, digits, '.', '_' or '-' "
                       f"(starting with a letter or digit), got {name!r}")


def identityOf(certificate):
    """
    The (role, name) a C{cryptography} certificate carries in its
    C{netlmm:ROLE:NAME} subjectAltName URI, or None when it has none (or
    several, which a domain CA never issues).
    """
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    found = []
    for uri in san.value.get_values_for_type(x509.UniformResourceIdentifier):
        if not uri.startswith(URI_PREFIX):
            continue
        role, sep, name = uri[len(URI_PREFIX):].partition(":")
        if sep and role in ROLES and _NAME.match(name):
            found.append((role, name))
    return found[0] if len(found) == 1 else None


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def newKey():
    """A fresh ECDSA P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def makeCA(domain, days=3650, key=None, now=None):
    """
    A self-signed CA certificate for the domain C{domain}: (certificate, key).
    """
    checkName(domain, "domain")
    key = key or newKey()
    now = now or _now()
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, domain),
        x509.NameAttribute(NameOID.COMMON_NAME, f"netlmm domain CA {domain}"),
    ])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True,
            crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def issue(caCert, caKey, role, name, days=825, key=None, notBefore=None, notAfter=None):
    """
    A certificate for the node C{name} in C{role} ('mag' or 'pmip'), signed
    by the CA: (certificate, key). C{notBefore}/C{notAfter} override the
    validity (tests use them to make expired certificates).
    """
    uri = roleURI(role, name)
    key = key or newKey()
    now = _now()
    notBefore = notBefore or now - datetime.timedelta(minutes=5)
    notAfter = notAfter or now + datetime.timedelta(days=days)
    domain = caCert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, f"{role}:{name}")]
    if domain:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, domain[0].value))
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if role == "mag" else ExtendedKeyUsageOID.SERVER_AUTH
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attributes)).issuer_name(caCert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(notBefore).not_valid_after(notAfter)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False,
            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName(
            [x509.UniformResourceIdentifier(uri)]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            caKey.public_key()), critical=False)
        .sign(caKey, hashes.SHA256())
    )
    return cert, key


def certificatePEM(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def keyPEM(key):
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def writeSecret(path, data):
    """Write a private key readable by its owner only (created 0600)."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def writePublic(path, data):
    Path(path).write_bytes(data)


def nodeFiles(directory, role, name):
    """The (certificate, key) paths for a node in a PKI directory."""
    directory = Path(directory)
    return directory / f"{role}-{name}.pem", directory / f"{role}-{name}.key"


def initDomain(directory, domain, days=3650):
    """C{netlmm pki init}: create C{directory}/ca.pem and ca.key."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    certPath, keyPath = directory / CA_CERT, directory / CA_KEY
    for p in (certPath, keyPath):
        if p.exists():
            raise PkiError(f"{p} exists; refusing to replace the domain's CA")
    cert, key = makeCA(domain, days)
    writeSecret(keyPath, keyPEM(key))
    writePublic(certPath, certificatePEM(cert))
    return certPath, keyPath


def loadCA(directory):
    """The CA (certificate, key) of a PKI directory."""
    directory = Path(directory)
    try:
        cert = x509.load_pem_x509_certificate((directory / CA_CERT).read_bytes())
        key = serialization.load_pem_private_key((directory / CA_KEY).read_bytes(), None)
    except FileNotFoundError as e:
        raise PkiError(f"{e.filename}: no such file; run `netlmm pki init` first") from None
    except (OSError, ValueError, TypeError) as e:
        raise PkiError(f"cannot load the CA in {directory}: {e}") from None
    return cert, key


def issueFiles(directory, role, name, days=825, force=False):
    """C{netlmm pki issue}: write ROLE-NAME.pem and ROLE-NAME.key."""
    checkRole(role)
    checkName(name)
    caCert, caKey = loadCA(directory)
    certPath, keyPath = nodeFiles(directory, role, name)
    for p in (certPath, keyPath):
        if p.exists():
            if not force:
                raise PkiError(f"{p} exists; use --force to replace it")
            p.unlink()
    cert, key = issue(caCert, caKey, role, name, days)
    writeSecret(keyPath, keyPEM(key))
    writePublic(certPath, certificatePEM(cert))
    return certPath, keyPath


#: The nodes of the shipped example configs (etc/netlmm), made by `./dev setup`.
EXAMPLE_NODES = (("pmip", "pmip1"), ("mag", "MAG1"), ("mag", "MAG2"))


def ensureDomain(directory, domain, nodes=EXAMPLE_NODES):
    """
    A PKI in C{directory} with a CA for C{domain} and a certificate for each
    C{(role, name)} of C{nodes}: what is missing is made, what is there is
    kept. Returns the paths written.
    """
    directory = Path(directory)
    made = []
    if not (directory / CA_CERT).exists():
        made += initDomain(directory, domain)
    for role, name in nodes:
        if not all(p.exists() for p in nodeFiles(directory, role, name)):
            made += issueFiles(directory, role, name, force=True)
    return made


def main(args, out):
    """The C{netlmm pki} sub-command; C{args} from argparse."""
    try:
        if args.pki == "init":
            cert, key = initDomain(args.dir, args.domain, args.days or 3650)
            print(f"domain CA for {args.domain}: {cert} (key {key}, mode 0600)", file=out)
        else:
            cert, key = issueFiles(args.dir, args.role, args.name, args.days or 825,
                                   args.force)
            print(f"{ROLES[args.role]} {args.name} ({roleURI(args.role, args.name)}): "
                  f"{cert} (key {key}, mode 0600)", file=out)
    except PkiError as e:
        print(f"netlmm pki: {e}", file=sys.stderr)
        return 1
    return 0


def addParser(sub):
    """Add C{pki init} and C{pki issue} to an argparse sub-parser set."""
    pki = sub.add_parser("pki", help="create a domain CA and certificates for the "
                         "MAG <-> PMIP client TLS channel")
    actions = pki.add_subparsers(dest="pki", required=True)
    init = actions.add_parser("init", help="create DIR/ca.pem and DIR/ca.key")
    init.add_argument("--dir", required=True, help="the PKI directory")
    init.add_argument("--domain", required=True, help="the local mobility domain's name")
    init.add_argument("--days", type=int, help="validity in days (3650)")
    iss = actions.add_parser("issue", help="issue DIR/ROLE-NAME.pem and DIR/ROLE-NAME.key")
    iss.add_argument("--dir", required=True, help="the PKI directory (with ca.pem, ca.key)")
    iss.add_argument("--role", required=True, choices=sorted(ROLES))
    iss.add_argument("--name", required=True, help="the node's name (MAG1, pmip1, ...)")
    iss.add_argument("--days", type=int, help="validity in days (825)")
    iss.add_argument("--force", action="store_true", help="replace existing files")
    return pki
