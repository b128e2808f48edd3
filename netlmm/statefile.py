"""
State files: what a daemon must not lose when it restarts, written
atomically (temporary file, fsync, rename) so a crash mid-write leaves the
previous version intact.
"""

import json
import os

FORMAT = 1


class StateFileError(Exception):
    """A state file that exists but cannot be used; the text names it."""


class StateFile:
    """Records of one kind (C{kind}, e.g. "pmip-bindings") kept at C{path}."""

    def __init__(self, path, kind):
        self.path = path
        self.kind = kind

    def load(self):
        """The saved records, or [] when there is no file yet."""
        try:
            with open(self.path, "rb") as f:
                document = json.load(f)
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as e:
            raise StateFileError(f"{self.path}: cannot read state: {e}") from None
        if (not isinstance(document, dict) or document.get("format") != FORMAT
                or document.get("kind") != self.kind
                or not isinstance(document.get("records"), list)):
            raise StateFileError(
                f"{self.path}: not a netlmm {self.kind} state file (format {FORMAT}); "
                "move it away to start with an empty state")
        return document["records"]

    def save(self, records):
        """Replace the file's content with C{records}."""
        directory = os.path.dirname(os.path.abspath(self.path))
        tmp = os.path.join(directory, f".{os.path.basename(self.path)}.{os.getpid()}.tmp")
        # Addresses in the records are written as their text (default=str).
        data = json.dumps({"format": FORMAT, "kind": self.kind, "records": records},
                          separators=(",", ":"), default=str).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
