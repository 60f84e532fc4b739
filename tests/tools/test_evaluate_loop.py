"""evaluate-gateway's open-ended runs (--duration, --until-stopped, --stop-file, --progress)
and the background loop the drills use, against the launcher-served gateway and the fake."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import FakeOpenAI, LauncherGateway, stop_process, wait_until
from mlflow_gateway_tools.evaluate.cases import builtin_cases
from mlflow_gateway_tools.evaluate.cli import main as evaluate
from mlflow_gateway_tools.evaluate.loop import LOOP_BATCH, BackgroundLoop
from mlflow_gateway_tools.evaluate.runner import RunSettings

ENDPOINTS = {"chat": "chat", "completions": "completions", "embeddings": "embeddings"}


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def test_duration_sends_back_to_back_for_that_long_mixing_streamed_requests(
    gateway: LauncherGateway, fake: FakeOpenAI, tmp_path: Path
) -> None:
    output, progress = tmp_path / "results.json", tmp_path / "progress.json"
    argv = ["--url", gateway.url, "--duration", "2", "--stream", "alternate"]
    code = evaluate([*argv, "--progress", str(progress), "--output", str(output)])
    assert code == 0
    results = read_json(output)
    summary, records = results["summary"], results["requests"]
    assert 2.0 <= summary["wall_seconds"] < 6.0
    assert results["settings"]["stopped_by"] == "--duration 2 s passed"
    assert summary["requests"] == len(records) >= 20
    assert summary["failed"] == 0
    assert [r["index"] for r in records] == list(range(len(records)))
    assert {r["case"] for r in records} == {"simple_chat", "multi_turn", "completion", "embedding"}
    chats = [r for r in records if r["kind"] == "chat"]
    assert 0 < summary["streamed"] < len(chats), "streamed and plain chats are mixed"
    assert all(r["ttft_ms"] is not None for r in chats if r["stream"])
    assert fake.stats()["requests"] == len(records)
    assert read_json(progress) == {
        "requests": len(records),
        "failed": 0,
        "seconds": pytest.approx(summary["wall_seconds"], abs=1),
        "finished": True,
    }


def test_rate_paces_an_open_ended_run_instead_of_sending_back_to_back(
    gateway: LauncherGateway, fake: FakeOpenAI, tmp_path: Path
) -> None:
    output = tmp_path / "results.json"
    argv = ["--url", gateway.url, "--duration", "3", "--rate", "10", "--output", str(output)]
    assert evaluate(argv) == 0
    results = read_json(output)
    summary = results["summary"]
    assert results["settings"]["rate_per_s"] == 10
    assert summary["failed"] == 0
    # Batches of LOOP_BATCH start no sooner than the rate allows: at most one batch ahead of
    # 10 a second (a back-to-back run sends hundreds in 3 s), and still steady traffic.
    assert 20 <= summary["requests"] <= 10 * summary["wall_seconds"] + LOOP_BATCH
    assert fake.stats()["requests"] == summary["requests"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--duration", "2", "--rate", "0"], "--rate 0 must be more than 0 requests a second"),
        (["--duration", "2", "--rate", "nan"], "--rate nan must be more than 0"),
        (["--requests", "5", "--rate", "3"], "--rate 3 paces an open-ended run: add --duration"),
    ],
)
def test_a_bad_rate_is_refused_naming_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    output = tmp_path / "out.json"
    assert evaluate([*argv, "--output", str(output)]) == 2
    assert message in capsys.readouterr().err
    assert not output.exists()


def start_cli(tmp_path: Path, *argv: str) -> subprocess.Popen:
    """evaluate-gateway in a process of its own (signals, stop files), as a script runs it."""
    return subprocess.Popen(
        [sys.executable, "-m", "mlflow_gateway_tools.evaluate", *argv],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_progress(progress: Path, failed: int = 0) -> None:
    """Until the progress file shows requests flowing (and at least `failed` failures)."""

    def flowing() -> bool:
        state = read_json(progress)
        return state["requests"] > 0 and state["failed"] >= failed

    wait_until(flowing, f"the progress file to show requests ({failed}+ failed)", timeout=30)


def test_a_stop_file_ends_the_run_and_upstream_faults_are_counted(
    gateway: LauncherGateway, fake: FakeOpenAI, tmp_path: Path
) -> None:
    stop, progress, output = tmp_path / "stop", tmp_path / "progress.json", tmp_path / "out.json"
    run = start_cli(
        tmp_path,
        *("--url", gateway.url, "--cases", "simple_chat"),
        *("--stop-file", str(stop), "--progress", str(progress), "--output", str(output)),
    )
    try:
        wait_for_progress(progress)
        fake.control("POST", "faults", {"status": 500, "count": 3})
        wait_for_progress(progress, failed=3)
        stop.touch()
        _, stderr = run.communicate(timeout=30)
    finally:
        stop_process(run)
    assert run.returncode == 1, "exit 1: requests failed (--max-error-rate 0)"
    results = read_json(output)
    assert results["settings"]["stopped_by"] == f"--stop-file {stop} appeared"
    assert results["summary"]["failed"] == 3
    assert results["summary"]["errors_by_status"] == {"500": 3}
    assert results["summary"]["requests"] > 3
    assert read_json(progress)["finished"] is True
    assert f"--stop-file {stop} appeared" in stderr


def test_sigterm_ends_an_until_stopped_run_with_its_results(
    gateway: LauncherGateway, fake: FakeOpenAI, tmp_path: Path
) -> None:
    progress, output = tmp_path / "progress.json", tmp_path / "out.json"
    run = start_cli(
        tmp_path,
        *("--url", gateway.url, "--until-stopped"),
        *("--progress", str(progress), "--output", str(output)),
    )
    try:
        wait_for_progress(progress)
        run.send_signal(signal.SIGTERM)
        run.communicate(timeout=30)
    finally:
        stop_process(run)
    assert run.returncode == 0
    results = read_json(output)
    assert results["settings"]["stopped_by"] == "SIGTERM received"
    assert results["summary"]["requests"] > 0
    assert results["summary"]["failed"] == 0


def test_a_stop_file_that_exists_already_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stop = tmp_path / "stop"
    stop.touch()
    assert evaluate(["--stop-file", str(stop), "--output", str(tmp_path / "out.json")]) == 2
    assert f"--stop-file {stop} exists already" in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists()


def test_the_background_loop_records_while_the_caller_acts(
    gateway: LauncherGateway, fake: FakeOpenAI
) -> None:
    cases = [case for case in builtin_cases(ENDPOINTS) if case.kind == "chat"]
    settings = RunSettings(gateway.url, "gateway", concurrency=4, timeout_s=30, token=None)
    with BackgroundLoop(cases, settings, batch=8) as loop:
        wait_until(lambda: len(loop.records) >= 20, "20 answers")
        fake.control("POST", "faults", {"status": 429, "count": 2})
        wait_until(lambda: sum(not r.ok for r in loop.records) == 2, "the 429s to arrive")
    finished = len(loop.records)
    assert [r.status for r in loop.records if not r.ok] == [429, 429]
    assert sorted(r.index for r in loop.records) == list(range(finished))
    # Leaving the block waited for the thread: every request it sent is recorded.
    assert fake.stats()["requests"] == finished
