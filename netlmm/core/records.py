"""
Reading back the records cores keep through L{netlmm.core.effects.Persist}:
each field checked, and the first bad one named in a L{BadRecord}.
"""

import math
import re
from ipaddress import IPv6Address

from netlmm.core.effects import BadRecord


def fields(index, record, **readers):
    """
    The fields of C{record} (the C{index}th given to C{restore}) named by the
    keywords, each passed through its reader (a callable that raises
    TypeError or ValueError on a bad value), in keyword order.
    """
    if not isinstance(record, dict):
        raise BadRecord(index, f"not a record but {type(record).__name__}")
    values = []
    for name, reader in readers.items():
        if name not in record:
            raise BadRecord(index, f"'{name}' is missing")
        try:
            values.append(reader(record[name]))
        except (TypeError, ValueError) as e:
            raise BadRecord(index, f"'{name}': {e}") from None
    return values


#: The full form the stores write (netlmm.store): eight groups, no "::".
_FULL = re.compile(r"[0-9a-fA-F]{1,4}(?::[0-9a-fA-F]{1,4}){7}\Z").match


def address(value):
    """An IPv6 address written as text (or kept as one, by a store that can)."""
    if type(value) is IPv6Address:
        return value
    if isinstance(value, str):
        if _FULL(value):
            # Twice as fast as ipaddress's parser, which restoring a large
            # state (three addresses a binding) spent most of its time in.
            number = 0
            for group in value.split(":"):
                number = number << 16 | int(group, 16)
            return IPv6Address(number)
        try:
            return IPv6Address(value)
        except ValueError:
            pass
    raise ValueError(f"{value!r} is not an IPv6 address")


def identifier(value):
    """An MN identifier written as hex."""
    if not isinstance(value, str) or not value:
        raise TypeError(f"{value!r} is not a hex MN identifier")
    return bytes.fromhex(value)


def sequence(value):
    """A 16-bit sequence number."""
    if type(value) is not int or not 0 <= value <= 0xFFFF:
        raise ValueError(f"{value!r} is not a sequence number (0..65535)")
    return value


def seconds(value):
    """A finite, non-negative time in seconds."""
    if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{value!r} is not a time in seconds")
    return float(value)


def flag(value):
    """true or false."""
    if type(value) is not bool:
        raise TypeError(f"{value!r} is not true or false")
    return value
