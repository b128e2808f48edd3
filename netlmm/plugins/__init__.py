"""
netlmm's plugin package: address-assignment strategies, attachment detectors
and data planes, found with L{twisted.plugin.getPlugins} (see
L{netlmm.registry} and doc/plugins.md).

Like C{twisted/plugins}, this package spans every C{netlmm/plugins/}
directory on C{sys.path} that has no C{__init__.py}, so a vendor's
distribution can ship a module into C{netlmm/plugins/} of its own install
location (another site-packages, a C{pip install --target} directory)
without shipping, or clobbering, netlmm's packages. Put nothing else here:
every module of this package is imported when plugins are looked for.
"""

from twisted.plugin import pluginPackagePaths

__path__.extend(pluginPackagePaths(__name__))  # noqa: F821 (set by the import system)
__all__ = []
