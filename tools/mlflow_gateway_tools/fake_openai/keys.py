"""The bearer keys fake-openai accepts; a key file is re-read when it changes (key rotation)."""

from __future__ import annotations

import hmac
import sys
from pathlib import Path


def key_problem(key: str) -> str | None:
    """Why `key` could never arrive in an Authorization header intact, or None."""
    if not key:
        return "is empty (an empty key would leave the fake open to any key)"
    for position, char in enumerate(key):
        if not char.isascii() or not char.isprintable() or char.isspace():
            return f"has {char!r} at position {position}; a key is printable ASCII without spaces"
    return None


def _as_bytes(text: str) -> bytes:
    # A header's non-UTF-8 bytes arrive as surrogates; hmac compares only ASCII str, any bytes.
    return text.encode("utf-8", "surrogateescape")


def mask_key(key: str) -> str:
    """How OpenAI echoes a wrong key: enough to recognise it, not enough to use it."""
    return key[:6] + "*" * max(len(key) - 10, 3) + key[-4:] if len(key) > 10 else "***"


class KeyRing:
    """Keys given on the command line plus the lines of a key file (blank and # lines skipped)."""

    def __init__(self, keys: list[str], key_file: Path | None) -> None:
        self._fixed = [key for key in keys if key]
        self._key_file = key_file
        self._file_keys: list[str] = []
        self._file_signature: tuple[int, int, int] | None = None
        if key_file is not None:
            self._file_keys = self._read_file(key_file)
            self._file_signature = self._signature(key_file)

    @property
    def keys(self) -> tuple[str, ...]:
        """Every key accepted now: the fixed ones, then the key file's."""
        return (*self._fixed, *self._file_keys)

    @property
    def open(self) -> bool:
        """No keys configured at all: every request is accepted."""
        return not self._fixed and self._key_file is None

    def accepts(self, token: str) -> bool:
        if self.open:
            return True
        self._refresh()
        # Constant-time compare: the fake should not teach a bad habit.
        token_bytes = _as_bytes(token)
        return any(hmac.compare_digest(token_bytes, _as_bytes(key)) for key in self.keys)

    @staticmethod
    def _signature(path: Path) -> tuple[int, int, int]:
        status = path.stat()
        return (status.st_ino, status.st_mtime_ns, status.st_size)

    @staticmethod
    def _read_file(path: Path) -> list[str]:
        lines = path.read_text(encoding="utf-8").splitlines()
        return [line.strip() for line in lines if line.strip() and not line.startswith("#")]

    def _refresh(self) -> None:
        if self._key_file is None:
            return
        try:
            signature = self._signature(self._key_file)
            if signature != self._file_signature:
                self._file_keys = self._read_file(self._key_file)
                self._file_signature = signature
        except OSError as error:
            # Keep the last keys we read: a rename-in-progress must not lock everyone out.
            print(
                f"fake-openai: cannot re-read key file {self._key_file}: {error}", file=sys.stderr
            )
