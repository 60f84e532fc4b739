"""The JSON value of one usage-log line, the hot path of a million-line ledger.

orjson, when installed, parses a line several times faster than the standard library. It is
stricter (no NaN, no integers past 64 bits, no trailing text, valid UTF-8 only), so a line it
refuses goes to the standard library's scanner, which decides: the result is the same with or
without orjson, only the time differs."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

_fast_loads: Callable[[bytes], Any] | None
_FastError: type[ValueError]
try:
    import orjson
except ImportError:  # pragma: no cover - the package depends on orjson; a bare install works
    _fast_loads = None
    _FastError = ValueError
else:
    _fast_loads = orjson.loads
    _FastError = orjson.JSONDecodeError

# The C scanner json.loads ends in, called directly: no per-call encoding checks, and it
# tolerates text after the value (a line is parsed from its first "{"). JSONDecoder.__init__
# sets scan_once; typeshed does not declare the attribute, hence the ignore.
_scan: Callable[[str, int], tuple[Any, int]]
_scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


class NotJSON(ValueError):
    """The line holds no JSON value where its first `{` is."""


def parse_from(raw: bytes, start: int) -> Any:
    """The JSON value starting at byte `start` (the line's first `{`) of `raw`."""
    if _fast_loads is not None:
        try:
            return _fast_loads(raw if start == 0 else raw[start:])
        except _FastError:
            pass
    line = raw.decode("utf-8", "replace")
    try:
        return _scan(line, line.find("{"))[0]
    # StopIteration: the scanner's "no value here"; RecursionError: nested too deeply.
    except (StopIteration, ValueError, RecursionError):
        raise NotJSON from None
