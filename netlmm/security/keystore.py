"""
Where security associations come from: a static key file (TOML), or keys
fetched from AAA and cached (L{netlmm.security.radius}). Lookups are
synchronous so the sans-IO parts can call them.

A key file holds one C{[[sa]]} table per security association:

    [[sa]]
    spi = 1000                      # 256..4294967295, unique in the file
    algorithm = "hmac-sha1-96"      # or "hmac-sha256-128"
    key = "00112233..."             # hex, at least 16 octets
    mn = "mn1@example.net"          # a per-MN SA (draft 4.3) ...
    # client = "2001:db8::10"       # ... or a per-PMIP-client SA
    # clients = ["2001:db8::/64"]   # per-MN: which PMIP clients may use it
    # mobiles = ["mn1@example.net"] # per-client: which mobiles it covers

When a mobile has several SAs (key rollover), the last one in the file is the
one used for sending; all of them are accepted on receipt.

The file must not be readable or writable by group or others: a key file
with a wider mode is refused with an error naming the file and its mode.
"""

import os
import secrets
import stat
import tomllib

from netlmm.security.auth import ALGORITHMS, SecurityAssociation


class KeyFileError(Exception):
    """A key file that cannot be used; the text names the file and the entry."""


class KeyStore:
    """
    Security associations by SPI, by mobile and by PMIP client.

    Entries added later win for sending (key rollover); every entry is
    accepted on receipt until removed.
    """

    def __init__(self, associations=()):
        self._bySpi = {}
        self._byMn = {}
        self._clientSas = []
        for sa in associations:
            self.add(sa)

    def __len__(self):
        return len(self._bySpi)

    def __iter__(self):
        return iter(list(self._bySpi.values()))

    def add(self, sa):
        """Add C{sa} (replacing an SA with the same SPI)."""
        old = self._bySpi.get(sa.spi)
        if old is not None:
            self.remove(old.spi)
        self._bySpi[sa.spi] = sa
        if sa.mnId is not None:
            self._byMn.setdefault(sa.mnId, []).append(sa)
        else:
            self._clientSas.append(sa)

    def remove(self, spi):
        """Forget the SA with C{spi}, if any."""
        sa = self._bySpi.pop(spi, None)
        if sa is None:
            return
        if sa.mnId is not None:
            sas = self._byMn.get(sa.mnId, [])
            if sa in sas:
                sas.remove(sa)
            if not sas:
                self._byMn.pop(sa.mnId, None)
        elif sa in self._clientSas:
            self._clientSas.remove(sa)

    def bySpi(self, spi):
        """The SA with this SPI, or None."""
        return self._bySpi.get(spi)

    def forMobile(self, mnId, client=None):
        """
        The SA to send with for mobile C{mnId}: its newest per-MN SA, else
        the newest per-client SA that covers it (and C{client}, if given).
        """
        sas = self._byMn.get(mnId)
        if sas:
            return sas[-1]
        for sa in reversed(self._clientSas):
            if sa.allowsMobile(mnId) and (client is None or sa.allowsClient(client)):
                return sa
        return None

    def hasMobile(self, mnId):
        """True when a per-MN SA for C{mnId} is stored."""
        return bool(self._byMn.get(mnId))


def checkPermissions(path):
    """Refuse a key file that group or others may read or write."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no such key file") from None
    except OSError as e:
        raise KeyFileError(f"{path}: cannot read: {e.strerror}") from None
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise KeyFileError(
            f"{path}: mode {mode:04o} lets group or others read the keys; "
            f"refusing it (run: chmod 600 {path})")


def readKeyDocument(path):
    """The parsed TOML of the key file at C{path}, permissions checked."""
    checkPermissions(path)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise KeyFileError(f"{path}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise KeyFileError(f"{path}: not valid TOML: {e}") from None


def loadKeyFile(path):
    """The L{KeyStore} in the key file at C{path}, permissions checked."""
    return parseKeys(readKeyDocument(path), path)


def parseKeys(document, path="keys"):
    """A L{KeyStore} from a parsed key document; errors name the entry."""
    unknown = set(document) - {"sa"}
    if unknown:
        raise KeyFileError(f"{path}: unknown key {sorted(unknown)[0]!r}; "
                           "expected [[sa]] tables")
    entries = document.get("sa", [])
    if not isinstance(entries, list):
        raise KeyFileError(f"{path}: 'sa' must be an array of tables ([[sa]])")
    store = KeyStore()
    for i, entry in enumerate(entries):
        where = f"{path}: sa[{i}]"
        if not isinstance(entry, dict):
            raise KeyFileError(f"{where}: expected a table")
        extra = set(entry) - {"spi", "algorithm", "key", "mn", "client", "clients",
                              "mobiles"}
        if extra:
            raise KeyFileError(f"{where}.{sorted(extra)[0]}: unknown key")
        spi = entry.get("spi")
        if isinstance(spi, bool) or not isinstance(spi, int):
            raise KeyFileError(f"{where}.spi: expected an integer 256..4294967295")
        if store.bySpi(spi) is not None:
            raise KeyFileError(f"{where}.spi: SPI {spi} appears twice")
        algorithm = entry.get("algorithm", "hmac-sha1-96")
        if algorithm not in ALGORITHMS:
            raise KeyFileError(f"{where}.algorithm: expected one of "
                               + ", ".join(repr(a) for a in ALGORITHMS)
                               + f", got {algorithm!r}")
        keyText = entry.get("key")
        try:
            key = bytes.fromhex(keyText)
        except (TypeError, ValueError):
            raise KeyFileError(f"{where}.key: expected hexadecimal octets") from None
        mn = entry.get("mn")
        client = entry.get("client")
        if (mn is None) == (client is None):
            raise KeyFileError(f"{where}: give exactly one of 'mn' (a per-MN SA) "
                               "or 'client' (a per-PMIP-client SA)")
        clients = entry.get("clients", [])
        if client is not None:
            clients = [client]
        mobiles = entry.get("mobiles", [])
        for name, value in (("clients", clients), ("mobiles", mobiles)):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise KeyFileError(f"{where}.{name}: expected a list of strings")
        if mn is not None and not isinstance(mn, str):
            raise KeyFileError(f"{where}.mn: expected a string (the MN's NAI)")
        try:
            sa = SecurityAssociation(spi, key, algorithm, mn, clients, mobiles)
        except ValueError as e:
            raise KeyFileError(f"{where}: {e}") from None
        store.add(sa)
    return store


def generateKey(algorithm="hmac-sha1-96"):
    """A fresh random key as long as the algorithm's hash output."""
    return secrets.token_bytes(20 if algorithm == "hmac-sha1-96" else 32)


def writeKeyFile(path, associations):
    """Write C{associations} as a key file created with mode 0600."""
    lines = ["# netlmm security associations (RFC 4285 MN-HA). Keep this file mode 0600.\n"]
    for sa in associations:
        lines.append("\n[[sa]]\n")
        lines.append(f"spi = {sa.spi}\n")
        lines.append(f'algorithm = "{sa.algorithm}"\n')
        lines.append(f'key = "{sa.key.hex()}"\n')
        if sa.mnId is not None:
            lines.append(f'mn = "{sa.mnId.decode()}"\n')
            if sa.clients:
                lines.append("clients = [" + ", ".join(f'"{c}"' for c in sa.clients) + "]\n")
        else:
            lines.append(f'client = "{sa.clients[0]}"\n')
            if sa.mobiles:
                lines.append("mobiles = [" + ", ".join(
                    f'"{m.decode()}"' for m in sorted(sa.mobiles)) + "]\n")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write("".join(lines))
