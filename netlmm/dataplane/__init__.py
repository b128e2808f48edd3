"""
Data planes (L{netlmm.interfaces.IDataPlane}), selected by name in the
config: netlmm's own are declared as plugins in
netlmm/plugins/netlmm_parts.py, and found with the others in
L{netlmm.registry.dataplanes}.
"""

from netlmm.registry import dataplanes

__all__ = ["dataplanes"]
