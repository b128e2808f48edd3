"""The [lma.security] and [pmip.security] tables of the role configs."""

import os

from netlmm.config import ConfigError
from netlmm.security.keystore import KeyFileError, loadKeyFile
from netlmm.security.replay import DEFAULT_WINDOW


def securityConfig(table, configPath):
    """
    Validate C{table}'s C{security} sub-table. Returns None (mode 'none') or
    a dict with the loaded key store and the replay window.
    """
    t = table.table("security")
    mode = t.string("mode", "none", choices=("none", "rfc4285"))
    keys = t.string("keys")
    window = t.number("replay_window", DEFAULT_WINDOW, minimum=0.1, maximum=3600)
    t.finish()
    if mode == "none":
        if keys is not None:
            raise ConfigError(f"{t.where}.mode: keys are configured but mode is "
                              "'none'; set mode = 'rfc4285' or remove them")
        return None
    result = dict(window=window, keys=None, radius=None)
    if keys is None:
        raise ConfigError(f"{t.where}.keys: missing: mode 'rfc4285' needs a key file")
    if keys is not None:
        path = keys
        if not os.path.isabs(path) and configPath:
            path = os.path.join(os.path.dirname(os.path.abspath(configPath)), path)
        try:
            result["keys"] = loadKeyFile(path)
        except KeyFileError as e:
            raise ConfigError(f"{t.where}.keys: {e}") from None
    return result
