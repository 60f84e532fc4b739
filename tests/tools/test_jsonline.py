"""A usage-log line parses to the same value with orjson (the fast path) as without it."""

from __future__ import annotations

import pytest
from test_costs import usage_line

from mlflow_gateway_tools.costs import jsonline
from mlflow_gateway_tools.costs.aggregate import Aggregator
from mlflow_gateway_tools.costs.sources import ParseIssues, fold_log_lines

LINES = [
    b'{"event": "gateway.request", "prompt_tokens": 12}\n',
    b'gateway-1  | {"event": "gateway.request"}\n',  # a compose prefix
    b'{"prompt_tokens": NaN}\n',  # the standard library reads NaN, orjson does not
    b'{"a": 1} trailing text\n',
    b'{"client": "caf\xe9"}\n',  # not UTF-8
    b'{"client": "\\ud800"}\n',  # a lone surrogate escape
    b'{"truncated": ',
    b"{" * 5000,  # nested past both parsers' depth
]


def parse(raw: bytes) -> object:
    try:
        return jsonline.parse_from(raw, raw.find(b"{"))
    except jsonline.NotJSON:
        return jsonline.NotJSON


@pytest.mark.parametrize("raw", LINES)
def test_the_fast_path_changes_nothing_but_the_time(
    raw: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_fast = parse(raw)
    monkeypatch.setattr(jsonline, "_fast_loads", None)
    without = parse(raw)
    assert repr(with_fast) == repr(without)  # repr: NaN != NaN


def test_a_count_past_64_bits_is_malformed_with_or_without_orjson(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """orjson reads such a number as a float, the standard library as an int: both refused."""
    raw = usage_line(prompt_tokens=2**70).encode()
    for fast in (jsonline._fast_loads, None):
        monkeypatch.setattr(jsonline, "_fast_loads", fast)
        issues = ParseIssues()
        aggregator = Aggregator()
        fold_log_lines("log", [raw], issues, None, aggregator)
        assert aggregator.seen == 0
        assert issues.count == 1
        assert issues.examples[0]["reason"].startswith("prompt_tokens must be a whole number")
