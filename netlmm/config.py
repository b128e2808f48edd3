"""
Configuration files: one TOML file per role, validated when the daemon
starts. Every error names the file, the key and the form that was expected.
"""

import tomllib
from ipaddress import IPv6Address, IPv6Network


class ConfigError(Exception):
    """A configuration that cannot be used; the text says which key and why."""


def loadToml(path):
    """The parsed TOML document at C{path}."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None


class Table:
    """
    Typed access to one TOML table; keys that are read are remembered so
    that L{finish} can refuse the ones nobody asked for (typos).

    C{base} is the directory of the config file: L{path} takes relative
    paths from there, for every path key of every role (one rule, whatever
    the working directory of the daemon).
    """

    def __init__(self, data, where, base=None):
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a table, got {type(data).__name__}")
        self.data = data
        self.where = where
        self.base = base
        self._seen = set()

    def _key(self, key):
        return f"{self.where}.{key}" if self.where else key

    def _get(self, key, default, required):
        self._seen.add(key)
        if key in self.data:
            return self.data[key]
        if required:
            raise ConfigError(f"{self._key(key)}: missing (required)")
        return default

    def table(self, key, required=False):
        """A sub-table (an empty one when absent and not required)."""
        return Table(self._get(key, {}, required), self._key(key), self.base)

    def strings(self, key):
        """A list of strings; [] when absent."""
        value = self._get(key, [], False)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{self._key(key)}: expected a list of strings, got {value!r}")
        return value

    def tables(self, key):
        """An array of tables (C{[[where.key]]}), each a L{Table}; [] when absent."""
        value = self._get(key, [], False)
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise ConfigError(f"{self._key(key)}: expected an array of tables "
                              f"([[{self._key(key)}]]), got {value!r}")
        return [Table(v, f"{self._key(key)}[{i}]", self.base) for i, v in enumerate(value)]

    def string(self, key, default=None, required=False, choices=None):
        """A string; with C{choices}, one of them."""
        value = self._get(key, default, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise ConfigError(f"{self._key(key)}: expected a string, got {value!r}")
        if choices is not None and value not in choices:
            raise ConfigError(
                f"{self._key(key)}: expected one of "
                + ", ".join(repr(c) for c in choices) + f", got {value!r}")
        return value

    def path(self, key, default=None, required=False):
        """
        A file or socket path; a relative one is taken from the config
        file's directory (C{base}), not from the working directory.
        """
        value = self.string(key, default, required)
        if value is None:
            return None
        if not value:
            raise ConfigError(f"{self._key(key)}: expected a path, got ''")
        return resolvePath(value, self.base)

    def number(self, key, default=None, required=False, minimum=None,
               maximum=None, integer=False):
        """A number within [minimum, maximum]."""
        value = self._get(key, default, required)
        if value is None:
            return None
        kinds = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            what = "an integer" if integer else "a number"
            raise ConfigError(f"{self._key(key)}: expected {what}, got {value!r}")
        if minimum is not None and value < minimum or maximum is not None and value > maximum:
            raise ConfigError(
                f"{self._key(key)}: expected a value from {minimum} to {maximum}, got {value!r}")
        return value

    def boolean(self, key, default=None, required=False):
        """true or false."""
        value = self._get(key, default, required)
        if value is not None and not isinstance(value, bool):
            raise ConfigError(f"{self._key(key)}: expected true or false, got {value!r}")
        return value

    def address(self, key, default=None, required=False):
        """An IPv6 address."""
        value = self.string(key, default, required)
        if value is None:
            return None
        try:
            return IPv6Address(value)
        except ValueError:
            raise ConfigError(
                f"{self._key(key)}: expected an IPv6 address such as '2001:db8::1', got {value!r}"
            ) from None

    def network(self, key, default=None, required=False):
        """An IPv6 prefix such as 2001:db8::/64."""
        value = self.string(key, default, required)
        if value is None:
            return None
        return _network(value, self._key(key))

    def networks(self, key, default=None, required=False):
        """A list of IPv6 prefixes or addresses (an address means /128)."""
        value = self._get(key, default, required)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(
                f"{self._key(key)}: expected a list of IPv6 prefixes, got {value!r}")
        return [_network(v, self._key(key)) for v in value]

    def endpoint(self, key, default=None, required=False):
        """An address and port written '[addr]:port', as (IPv6Address, int)."""
        value = self.string(key, default, required)
        if value is None:
            return None
        return parseEndpoint(value, self._key(key))

    def endpoints(self, key, required=False, nonEmpty=False):
        """
        A list of '[addr]:port' as (IPv6Address, port) pairs, none listed
        twice; [] when absent (None when absent and C{nonEmpty}).
        """
        value = self._get(key, None, required)
        if value is None:
            return None if nonEmpty else []
        where = self._key(key)
        if (not isinstance(value, list) or (nonEmpty and not value)
                or not all(isinstance(v, str) for v in value)):
            what = "a non-empty list" if nonEmpty else "a list"
            raise ConfigError(f"{where}: expected {what} of '[address]:port', got {value!r}")
        result = []
        for v in value:
            e = parseEndpoint(v, where)
            if e in result:
                raise ConfigError(f"{where}: {v} is listed twice")
            result.append(e)
        return result

    def finish(self):
        """Refuse keys that were never read."""
        unknown = sorted(set(self.data) - self._seen)
        if unknown:
            raise ConfigError(
                f"{self._key(unknown[0])}: unknown key; known keys here are "
                + ", ".join(sorted(self._seen)))


def resolvePath(path, base):
    """C{path}, taken from directory C{base} when it is relative (and base is set)."""
    import os
    path = os.path.expanduser(path)
    if base is None or os.path.isabs(path):
        return path
    return os.path.join(base, path)


def _network(value, key):
    try:
        return IPv6Network(value, strict=True)
    except ValueError as e:
        raise ConfigError(
            f"{key}: expected an IPv6 prefix such as '2001:db8::/64', got {value!r} ({e})"
        ) from None


def parseEndpoint(value, key="endpoint"):
    """'[addr]:port' -> (IPv6Address, port)."""
    form = "expected '[IPv6 address]:port' such as '[::1]:5436'"
    if not value.startswith("[") or "]:" not in value:
        raise ConfigError(f"{key}: {form}, got {value!r}")
    host, _, port = value[1:].rpartition("]:")
    try:
        address = IPv6Address(host)
    except ValueError:
        raise ConfigError(f"{key}: {form}; {host!r} is not an IPv6 address") from None
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{key}: {form}; port {port!r} is not 0..65535")
    return address, int(port)


def formatEndpoint(address, port):
    """(addr, port) -> '[addr]:port'."""
    return f"[{address}]:{port}"
