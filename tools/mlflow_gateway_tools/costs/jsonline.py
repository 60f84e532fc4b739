"""The JSON value of one usage-log line, the hot path of a million-line ledger.

decode_usage_line reads only the fields costs need, straight into a typed struct (msgspec
skips the other fields without building them and checks the types in C): the fast path for
the lines the launcher writes. Any line it cannot take whole goes to parse_from.

orjson, when installed, parses a line several times faster than the standard library. It is
stricter (no NaN, no integers past 64 bits, no trailing text, valid UTF-8 only), so a line it
refuses goes to the standard library's scanner, which decides: the result is the same with or
without orjson, only the time differs."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import msgspec

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


class UsageLine(msgspec.Struct, gc=False):
    """The fields of a usage-log line that costs need, typed as the launcher writes them
    (absent = None). Counts are ints, never bools or floats: msgspec refuses those, so such a
    line is not decoded here and the general path names what is wrong with it."""

    event: str | None = None
    ts: str | None = None
    status: int | None = None
    client: str | None = None
    endpoint: str | None = None
    model_configured: str | None = None
    model_returned: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None
    error: Any = None


_decode_usage = msgspec.json.Decoder(UsageLine).decode


def decode_usage_line(raw: bytes) -> UsageLine | None:
    """The line as a UsageLine, or None when it is not one JSON object whose fields have
    those types (a prefix, junk, another type, invalid UTF-8): parse_from decides then."""
    try:
        return _decode_usage(raw)
    # ValidationError (a field of another type) is a DecodeError; RecursionError: nested
    # too deeply for msgspec, which parse_from then refuses in turn.
    except (msgspec.DecodeError, RecursionError):
        return None


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
