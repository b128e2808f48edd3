"""
scapy for the cross-checks against an independent decoder: a test module
that lacks it skips its scapy tests, saying so; a scapy that is installed but
does not import (a broken install, an incompatible version) fails loudly
instead of passing for a skip.
"""

import importlib
import importlib.util

#: Why the scapy tests skip, or None when scapy is there.
MISSING = None if importlib.util.find_spec("scapy") is not None else (
    "scapy is not installed (pip install '.[test]'); cannot cross-check")


def scapyModule(name):
    """
    The scapy module C{name} (e.g. "scapy.layers.inet6"), or None when scapy
    is not installed; any error importing an installed scapy propagates.
    """
    if MISSING is not None:
        return None
    return importlib.import_module(name)
