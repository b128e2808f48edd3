"""
Address-assignment strategies (L{netlmm.interfaces.IAddressAssignment}),
selected by name in the MAG config's C{[mag.assignment]} table.
"""

from netlmm.interfaces import IAddressAssignment, IAddressAssignmentFactory
from netlmm.registry import Registry

#: Filled from the plugins (netlmm's own are in netlmm/plugins/netlmm_parts.py).
strategies = Registry("address-assignment strategy", IAddressAssignmentFactory,
                      IAddressAssignment)


def _register():
    """
    Strategies registered directly, besides the plugins: still accepted, but
    a new strategy is best declared in netlmm/plugins/netlmm_parts.py.
    """


_register()
