"""Data planes (L{netlmm.interfaces.IDataPlane}), selected by name in the config."""

from netlmm.registry import Registry

dataplanes = Registry("data plane")


def _register():
    from netlmm.dataplane.memory import MemoryDataPlane
    dataplanes.register(MemoryDataPlane.name, MemoryDataPlane.fromConfig)
    from netlmm.dataplane.seg6 import Seg6DataPlane
    dataplanes.register(Seg6DataPlane.name, Seg6DataPlane.fromConfig)
    from netlmm.dataplane.userspace import UserspaceDataPlane
    dataplanes.register(UserspaceDataPlane.name, UserspaceDataPlane.fromConfig)
    from netlmm.dataplane.ip6tnl import Ip6tnlDataPlane
    dataplanes.register(Ip6tnlDataPlane.name, Ip6tnlDataPlane.fromConfig)


_register()
