"""
Address-assignment strategies (L{netlmm.interfaces.IAddressAssignment}),
selected by name in the MAG config's C{[mag.assignment]} table.
"""

from netlmm.registry import Registry

strategies = Registry("address-assignment strategy")


def _register():
    from netlmm.assignment.static import StaticAssignment
    from netlmm.assignment.lma import LmaAssignment
    strategies.register(StaticAssignment.name, StaticAssignment.fromConfig)
    strategies.register(LmaAssignment.name, LmaAssignment.fromConfig)
    from netlmm.assignment.slaac import SlaacAssignment
    strategies.register(SlaacAssignment.name, SlaacAssignment.fromConfig)


_register()
