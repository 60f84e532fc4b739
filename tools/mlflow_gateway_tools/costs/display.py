"""Text that came from clients (model, endpoint and client names, timestamps, file names) as it
may be shown to a person: printable, bounded, and never markup.

Names in the usage log are whatever a request carried (an endpoint from the URL, a client from
a header), so a name must not recolour or rewrite the terminal (ANSI escapes, carriage returns),
be read as Rich markup (`[/x]` makes Rich raise) or as HTML. JSON and CSV keep the exact value:
they are data for programs; this module is for eyes only.
"""

from __future__ import annotations

import re

from rich.text import Text

MAX_NAME_CHARS = 80  # a table cell, not a dump: the exact value is in --json and --csv

# C0 and C1 controls and DEL (escape sequences, newlines, backspace), and the Unicode format
# characters that reorder or hide text (bidi overrides, zero-width marks).
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def printable(value: object, limit: int = MAX_NAME_CHARS) -> str:
    """`value` with every control character written as a visible escape (`\\x1b`, `\\n`) and
    cut to `limit` characters with a note of the full length."""
    text = _UNPRINTABLE.sub(_escape, str(value))
    if len(text) > limit:
        return f"{text[: limit - 1]}… ({len(text):,} chars)"
    return text


def plain(value: object, limit: int = MAX_NAME_CHARS) -> Text:
    """A Rich Text of `printable(value)`: shown as it is, never parsed as markup or emoji."""
    return Text(printable(value, limit))
