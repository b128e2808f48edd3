"""
Name -> factory registries for the pluggable parts (strategies, detectors,
data planes). The config names a part; the registry finds it or says which
names exist.
"""

from netlmm.config import ConfigError


class Registry:
    """Factories of one kind of plugin, by name."""

    def __init__(self, kind):
        self.kind = kind
        self._factories = {}

    def register(self, name, factory):
        """Make C{factory(options, **context)} available as C{name}."""
        if name in self._factories:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._factories[name] = factory
        return factory

    def names(self):
        """The registered names, sorted."""
        return sorted(self._factories)

    def create(self, name, options, key, **context):
        """
        Build the part named C{name}; C{key} is the config key that named it,
        for the error message.
        """
        factory = self._factories.get(name)
        if factory is None:
            raise ConfigError(
                f"{key}: unknown {self.kind} {name!r}; expected one of "
                + ", ".join(repr(n) for n in self.names())
            )
        return factory(options, **context)
