"""The only exceptions the codecs raise."""


class WireError(ValueError):
    """Base of every codec error."""


class DecodeError(WireError):
    """Bytes that are not a valid message; the text says what and where."""


class EncodeError(WireError):
    """A value that cannot be put on the wire (out of range, too long)."""
