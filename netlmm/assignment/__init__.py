"""
Address-assignment strategies (L{netlmm.interfaces.IAddressAssignment}),
selected by name in the MAG config's C{[mag.assignment]} table: netlmm's own
are declared as plugins in netlmm/plugins/netlmm_parts.py, and found with the
others in L{netlmm.registry.strategies}.
"""

from netlmm.registry import strategies

__all__ = ["strategies"]
