"""Data planes (L{netlmm.interfaces.IDataPlane}), selected by name in the config."""

from netlmm.interfaces import IDataPlane, IDataPlaneFactory
from netlmm.registry import Registry

#: Filled from the plugins (netlmm's own are in netlmm/plugins/netlmm_parts.py).
dataplanes = Registry("data plane", IDataPlaneFactory, IDataPlane)


def _register():
    """
    Data planes registered directly, besides the plugins: still accepted, but
    a new data plane is best declared in netlmm/plugins/netlmm_parts.py.
    """


_register()
