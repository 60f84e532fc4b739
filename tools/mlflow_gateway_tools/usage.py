"""Read the model name and token usage out of OpenAI-style responses and SSE streams.

The one implementation used by the launcher's usage log, evaluate-gateway and
analyze-costs, so the three can never disagree on what a response cost.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_HTML_TAG = re.compile(r"<[^>]*>")

USAGE_FIELDS = (
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cached_tokens",
    "reasoning_tokens",
)


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one response; None means the response did not say."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None

    def as_dict(self) -> dict[str, int | None]:
        return {field: getattr(self, field) for field in USAGE_FIELDS}


NO_USAGE = Usage()


def _int_or_none(value: Any) -> int | None:
    # bool is an int subclass; a JSON true is not a token count.
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def usage_from_dict(usage: Any) -> Usage:
    """Turn an OpenAI `usage` object into Usage (tolerates missing and null parts)."""
    if not isinstance(usage, Mapping):
        return NO_USAGE
    prompt_details = usage.get("prompt_tokens_details")
    completion_details = usage.get("completion_tokens_details")
    return Usage(
        prompt_tokens=_int_or_none(usage.get("prompt_tokens")),
        completion_tokens=_int_or_none(usage.get("completion_tokens")),
        total_tokens=_int_or_none(usage.get("total_tokens")),
        cached_tokens=_int_or_none(prompt_details.get("cached_tokens"))
        if isinstance(prompt_details, Mapping)
        else None,
        reasoning_tokens=_int_or_none(completion_details.get("reasoning_tokens"))
        if isinstance(completion_details, Mapping)
        else None,
    )


def model_and_usage(body: Any) -> tuple[str | None, Usage]:
    """The `model` and `usage` of a parsed (non-streamed) response body."""
    if not isinstance(body, Mapping):
        return None, NO_USAGE
    model = body.get("model")
    return (model if isinstance(model, str) else None), usage_from_dict(body.get("usage"))


def _chunk_has_content(chunk: Mapping[str, Any]) -> bool:
    choices = chunk.get("choices")
    if not isinstance(choices, list):
        return False
    for choice in choices:
        if not isinstance(choice, Mapping):
            continue
        delta = choice.get("delta")
        if isinstance(delta, Mapping) and delta.get("content"):
            return True
        if choice.get("text"):  # completions streams carry text, not a delta
            return True
    return False


class StreamUsageTracker:
    """Follow an SSE stream fed in arbitrary byte pieces.

    Keeps the first model name seen and the last usage object (OpenAI sends usage in
    the final chunk). `feed` tells whether the piece carried generated content, which
    is what time-to-first-token measures.
    """

    def __init__(self) -> None:
        self._pending = b""
        self.model: str | None = None
        self.usage: Usage = NO_USAGE
        self.error: str | None = None
        self.content_seen = False

    def feed(self, data: bytes) -> bool:
        self._pending += data
        if b"\n" not in data:
            return False
        *lines, self._pending = self._pending.split(b"\n")
        carried_content = False
        for line in lines:
            carried_content |= self._handle_line(line.strip())
        return carried_content

    def close(self) -> None:
        """Handle a last line that was not newline-terminated."""
        if self._pending:
            self._handle_line(self._pending.strip())
            self._pending = b""

    def _handle_line(self, line: bytes) -> bool:
        if not line.startswith(b"data:"):
            return False
        payload = line[5:].strip()
        if not payload or payload == b"[DONE]":
            return False
        if (
            self.content_seen
            and self.model is not None
            and b'"prompt_tokens"' not in payload
            and b'"error"' not in payload
        ):
            return False  # a plain content chunk after the first one: nothing left to learn
        try:
            chunk = json.loads(payload)
        except ValueError:
            return False
        if not isinstance(chunk, Mapping):
            return False
        if self.model is None and isinstance(chunk.get("model"), str):
            self.model = chunk["model"]
        if chunk.get("usage"):
            self.usage = usage_from_dict(chunk["usage"])
        if "error" in chunk:
            self.error = short_error_text(chunk["error"])
        has_content = _chunk_has_content(chunk)
        self.content_seen |= has_content
        return has_content


def short_error_text(detail: Any, limit: int = 300) -> str:
    """One line of error text from an error body in any of the shapes gateways return."""
    if isinstance(detail, Mapping):
        if "msg" in detail:  # one pydantic validation error
            location = ".".join(str(part) for part in detail.get("loc", ()))
            return short_error_text(f"{location}: {detail['msg']}" if location else detail["msg"])
        for key in ("message", "detail", "error"):
            if key in detail:
                return short_error_text(detail[key], limit)
        detail = json.dumps(detail, separators=(",", ":"))
    elif isinstance(detail, list):
        detail = "; ".join(short_error_text(item, limit) for item in detail)
    text = " ".join(str(detail).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def error_text_from_body(body: bytes, limit: int = 300) -> str:
    """Short error text from a raw error response body (JSON or plain text/HTML)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        text = _HTML_TAG.sub(" ", body.decode("utf-8", "replace"))
        parsed = " ".join(text.split()) or "(empty body)"
    return short_error_text(parsed, limit)
