"""tests/served_window.py: the overlap proof molecule and the drills rely on must fail when the
loop did not serve through the operation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from served_window import main

BEGAN, ENDED = 1_000.0, 1_010.0


def results(tmp_path: Path, starts: list[float], ok: bool = True) -> Path:
    """evaluate-gateway results with one 100 ms request starting at each of STARTS."""
    path = tmp_path / "results.json"
    requests = [
        {
            "ts": f"1970-01-01T00:{int(start) // 60:02d}:{start % 60:06.3f}Z",
            "latency_ms": 100.0,
            "ok": ok,
        }
        for start in starts
    ]
    path.write_text(json.dumps({"requests": requests}))
    return path


def run(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict, str]:
    code = main([str(path), f"--began={BEGAN}", f"--ended={ENDED}", "--at-least=10"])
    output = capsys.readouterr()
    return code, json.loads(output.out), output.err


def test_a_loop_that_served_through_and_after_the_operation_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    starts = [990 + index * 0.5 for index in range(60)]  # 990 .. 1019.5
    code, counts, _ = run(results(tmp_path, starts), capsys)
    assert code == 0
    assert counts["within"] == 20  # those starting at 1000.0 .. 1009.5
    assert counts["after"] == 19


@pytest.mark.parametrize(
    "starts",
    [
        [990 + index * 0.1 for index in range(90)],  # all before the operation
        [990, 991, 1011, 1012, *[1015 + i for i in range(20)]],  # stalled while it ran
        [1000 + index * 0.5 for index in range(20)],  # nothing after it
    ],
    ids=["before-only", "stalled", "nothing-after"],
)
def test_a_loop_that_did_not_overlap_the_operation_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], starts: list[float]
) -> None:
    code, _, error = run(results(tmp_path, starts), capsys)
    assert code == 1
    assert "the proof needs at least 10 of each" in error


def test_failed_requests_do_not_count_as_served(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    starts = [990 + index * 0.5 for index in range(60)]
    code, counts, _ = run(results(tmp_path, starts, ok=False), capsys)
    assert code == 1
    assert counts["failed"] == 60
