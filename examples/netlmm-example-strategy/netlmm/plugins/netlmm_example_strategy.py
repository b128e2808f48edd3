"""
The plugin module of netlmm-example-strategy: it declares the strategy and
nothing else (netlmm imports every module of netlmm.plugins when it looks
for plugins, so keep this cheap; the implementation is imported when a MAG
config selects it). Name the module after the distribution so that it cannot
collide with another vendor's.
"""

from netlmm.registry import AddressAssignmentPlugin

hashed = AddressAssignmentPlugin(
    "hashed",                                   # [mag.assignment] strategy = "hashed"
    "netlmm_example_strategy.hashed",           # the module that implements it
    "HashedAssignment.fromConfig",              # the callable (table, **context)
    "pHoA = the configured /64 + a keyed hash of the MN identifier (example plugin)")
