"""Reading a file the user named: one message per way it fails, naming the option, the file and
the fix, raised as the caller's error class (a CommandError, or a ValueError of its own layer).

One place decides these messages, so every tool words a missing, unreadable, non-UTF-8 or
non-JSON file the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlflow_gateway_tools.cli_support import CommandError


def not_utf8(
    label: str, path: Path, error: UnicodeDecodeError, fix: str = "save it as UTF-8"
) -> str:
    """'<label> <path> is not UTF-8 text (byte 0xff at offset 8); <fix>'."""
    byte = error.object[error.start]
    return f"{label} {path} is not UTF-8 text (byte {byte:#04x} at offset {error.start}); {fix}"


def read_text(
    path: Path,
    label: str,
    fix: str,
    error_class: type[Exception] = CommandError,
    utf8_fix: str = "save it as UTF-8",
) -> str:
    """The file's UTF-8 text. LABEL names it in messages ('--test-file', 'pricing file'); FIX
    says what to give instead when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise error_class(f"cannot read {label} {path}: {error.strerror}; {fix}") from None
    except UnicodeDecodeError as error:
        raise error_class(not_utf8(label, path, error, utf8_fix)) from None


def read_json(path: Path, label: str, fix: str, error_class: type[Exception] = CommandError) -> Any:
    """The file's JSON document (any value; the caller checks its shape)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise error_class(f"cannot read {label} {path}: {error.strerror}; {fix}") from None
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as error:  # recursion: nested too deeply
        raise error_class(f"{label} {path} is not JSON: {error}") from None
