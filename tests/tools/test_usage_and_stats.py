"""Usage extraction shared by the middleware, evaluate and analyze; percentiles."""

from __future__ import annotations

import json

import pytest

from mlflow_gateway_tools.stats import percentile, summarize
from mlflow_gateway_tools.usage import (
    StreamUsageTracker,
    Usage,
    error_text_from_body,
    model_and_usage,
)

USAGE = {
    "prompt_tokens": 20,
    "completion_tokens": 9,
    "total_tokens": 29,
    "prompt_tokens_details": {"cached_tokens": 10},
    "completion_tokens_details": {"reasoning_tokens": 6},
}


def test_usage_and_model_from_a_response_body() -> None:
    model, usage = model_and_usage({"model": "o3-2025-04-16", "usage": USAGE})
    assert model == "o3-2025-04-16"
    assert usage == Usage(20, 9, 29, 10, 6)


def test_missing_or_odd_usage_parts_become_none() -> None:
    _, usage = model_and_usage({"usage": {"prompt_tokens": 5, "prompt_tokens_details": None}})
    assert usage == Usage(prompt_tokens=5)
    assert model_and_usage("not a body") == (None, Usage())
    _, usage = model_and_usage({"usage": {"prompt_tokens": True, "completion_tokens": "7"}})
    assert usage == Usage()


def sse(*chunks: object) -> bytes:
    return b"".join(b"data: " + json.dumps(chunk).encode() + b"\n\n" for chunk in chunks)


def test_stream_tracker_survives_arbitrary_splits() -> None:
    stream = (
        sse(
            {"model": "gpt-4o-mini-2024-07-18", "choices": [{"delta": {"role": "assistant"}}]},
            {"model": "gpt-4o-mini-2024-07-18", "choices": [{"delta": {"content": "Hi"}}]},
            {"model": "gpt-4o-mini-2024-07-18", "choices": [], "usage": USAGE},
        )
        + b"data: [DONE]\n\n"
    )
    for piece_size in (1, 7, 64, len(stream)):
        tracker = StreamUsageTracker()
        content_seen = [
            tracker.feed(stream[i : i + piece_size]) for i in range(0, len(stream), piece_size)
        ]
        tracker.close()
        assert tracker.model == "gpt-4o-mini-2024-07-18"
        assert tracker.usage == Usage(20, 9, 29, 10, 6)
        assert content_seen.count(True) == 1, "exactly one piece completes the content chunk"


def test_stream_tracker_reports_an_error_chunk() -> None:
    tracker = StreamUsageTracker()
    tracker.feed(sse({"error": {"message": "upstream said no"}}))
    assert tracker.error == "upstream said no"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"detail": "Rate limit reached"}', "Rate limit reached"),
        (b'{"error": {"message": "Incorrect API key"}}', "Incorrect API key"),
        (
            b'{"detail": [{"loc": ["body", "messages"], "msg": "Field required"}]}',
            "body.messages: Field required",
        ),
        (b"<html><body><h1>502 Bad Gateway</h1></body></html>", "502 Bad Gateway"),
        (b"Internal Server Error", "Internal Server Error"),
        (b"", "(empty body)"),
    ],
)
def test_error_text_is_one_short_line(body: bytes, expected: str) -> None:
    assert error_text_from_body(body) == expected


def test_percentiles_interpolate_like_numpy() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 0.5) == 50.5
    assert percentile(values, 0.99) == pytest.approx(99.01)
    summary = summarize([3.0, 1.0, 2.0])
    assert summary is not None
    assert (summary.count, summary.p50, summary.min, summary.max) == (3, 2.0, 1.0, 3.0)
    assert summarize([]) is None
