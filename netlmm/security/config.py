"""The [lma.security] and [pmip.security] tables of the role configs."""

import os

from netlmm.config import ConfigError
from netlmm.security.keystore import KeyFileError, loadKeyFile
from netlmm.security.replay import DEFAULT_WINDOW


def securityConfig(table, configPath, client=False):
    """
    Validate C{table}'s C{security} sub-table. Returns None (mode 'none') or
    a dict with the loaded key store and, at the LMA, the replay window
    (C{window}: how far a PBU's timestamp may be from the LMA's clock). A
    PMIP client (C{client}) has no window: its bound on the clock offset a
    144 may set is C{max_clock_offset} in its main table.
    """
    t = table.table("security")
    if t.base is None and configPath:
        # A table read without its file's directory (older callers).
        t.base = os.path.dirname(os.path.abspath(configPath))
    mode = t.string("mode", "none", choices=("none", "rfc4285"))
    keys = t.path("keys")
    if client:
        if "replay_window" in t.data:
            raise ConfigError(f"{t.where}.replay_window: only the LMA checks PBU "
                              "timestamps against a window; a PMIP client's bound "
                              "is max_clock_offset in its main table")
        bound = {}
    else:
        bound = dict(window=t.number("replay_window", DEFAULT_WINDOW, minimum=0.1,
                                     maximum=3600))
    radius = t.table("radius")
    t.finish()
    if mode == "none":
        if keys is not None or radius.data:
            raise ConfigError(f"{t.where}.mode: keys are configured but mode is "
                              "'none'; set mode = 'rfc4285' or remove them")
        return None
    result = dict(bound, keys=None, radius=None)
    if keys is None and not radius.data:
        raise ConfigError(f"{t.where}.keys: missing: mode 'rfc4285' needs a key "
                          f"file or a [{t.where}.radius] table (keys from AAA)")
    if keys is not None:
        try:
            result["keys"] = loadKeyFile(keys)
        except KeyFileError as e:
            raise ConfigError(f"{t.where}.keys: {e}") from None
    if radius.data:
        from netlmm.security.radius import radiusConfig
        result["radius"] = radiusConfig(radius)
        secretFile = result["radius"]["secretFile"]
        if secretFile is not None:
            try:
                from netlmm.security.keystore import checkPermissions
                checkPermissions(secretFile)
                with open(secretFile, "rb") as f:
                    result["radius"]["secret"] = f.read().strip()
            except (KeyFileError, OSError) as e:
                raise ConfigError(f"{radius.where}.secret_file: {e}") from None
    return result


def buildKeys(security, reactor):
    """The key store the guards use: the key file, AAA in front of it, or both."""
    radius = security.get("radius")
    if radius is None:
        return security["keys"]
    from netlmm.security.radius import AaaKeys, RadiusKeyClient
    client = RadiusKeyClient(reactor, radius["servers"], radius["secret"],
                             radius["timeout"], radius["retries"], radius["algorithm"],
                             radius["nasIdentifier"], radius.get("nasAddress"))
    static = list(security["keys"]) if security["keys"] is not None else ()
    return AaaKeys(client, radius["lifetime"], reactor, static)
