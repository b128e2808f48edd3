"""Data planes (L{netlmm.interfaces.IDataPlane}), selected by name in the config."""

from netlmm.registry import Registry

dataplanes = Registry("data plane")


def _register():
    from netlmm.dataplane.memory import MemoryDataPlane
    dataplanes.register(MemoryDataPlane.name, MemoryDataPlane.fromConfig)


_register()
