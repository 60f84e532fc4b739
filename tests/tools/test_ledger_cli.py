"""`gateway-ledger status` and `housekeep`: the JSON Ansible reads, worker liveness, errors."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlflow_gateway_tools import __version__
from mlflow_gateway_tools.launcher.ledger_cli import main
from mlflow_gateway_tools.launcher.ledger_state import WorkerState, process_start, write_state
from mlflow_gateway_tools.ledger_files import file_name

STATUS_KEYS = [
    *("format", "dir", "writing", "paused_reason", "paused_since", "workers"),
    *("lines_written", "lines_skipped", "files", "bytes", "first_day", "last_day"),
    *("free_bytes", "min_free_bytes"),
]


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "ledger"
    directory.mkdir()
    monkeypatch.setenv("MGW_LEDGER_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("MGW_LEDGER_DIR", raising=False)
    (tmp_path / "state").mkdir()
    return directory


def worker_state(directory: Path, pid: int, state: str = "writing", **fields: object) -> None:
    values: dict = {
        "pid": pid,
        "process_start": process_start(pid),
        "dir": str(directory),
        "state": state,
        "reason": "cannot write x: No space left on device" if state == "paused" else None,
        "since": "2026-12-01T21:00:00.000Z",
        "lines_written": 10,
        "lines_skipped": 2 if state == "paused" else 0,
        "min_free_bytes": 64 * 1024 * 1024,
        "updated": "2026-12-01T21:00:01.000Z",
    }
    write_state(Path(os.environ["MGW_LEDGER_STATE_DIR"]), WorkerState(**(values | fields)))


def dead_pid() -> int:
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(child.stdout)


def status(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main(["status", "--json", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_status_counts_files_and_days_and_reads_live_workers(
    ledger: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (ledger / file_name("2026-11-30", "h", "c1", compressed=True)).write_bytes(
        gzip.compress(b"{}\n")
    )
    (ledger / file_name("2026-12-01", "h", "c1")).write_bytes(b"{}\n{}\n")
    (ledger / "notes.txt").write_text("not a ledger file")
    worker_state(ledger, os.getpid(), lines_written=7)

    document = status(capsys, "--dir", str(ledger))

    assert list(document) == STATUS_KEYS
    sizes = sum(path.stat().st_size for path in ledger.glob("usage-*"))
    assert document | {"free_bytes": None} == {
        "format": 1,
        "dir": str(ledger),
        "writing": True,
        "paused_reason": None,
        "paused_since": None,
        "workers": 1,
        "lines_written": 7,
        "lines_skipped": 0,
        "files": 2,
        "bytes": sizes,
        "first_day": "2026-11-30",
        "last_day": "2026-12-01",
        "free_bytes": None,
        "min_free_bytes": 64 * 1024 * 1024,
    }
    assert document["free_bytes"] > 0


def test_a_live_paused_worker_means_not_writing_and_dead_ones_are_ignored(
    ledger: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    worker_state(ledger, dead_pid(), "paused", reason="an old pause of a dead worker")
    assert status(capsys, "--dir", str(ledger))["writing"] is True

    worker_state(ledger, os.getpid(), "paused")
    document = status(capsys, "--dir", str(ledger))
    assert document["writing"] is False
    assert document["paused_reason"] == "cannot write x: No space left on device"
    assert document["paused_since"] == "2026-12-01T21:00:00.000Z"
    assert (document["workers"], document["lines_skipped"]) == (1, 2)

    assert main(["status", "--dir", str(ledger)]) == 0
    text = capsys.readouterr().out
    assert "writing:     NO, paused since 2026-12-01T21:00:00.000Z: cannot write x" in text
    assert "(the ledger pauses below 64.0 MB)" in text


def test_a_reused_pid_is_not_a_live_worker(
    ledger: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    worker_state(ledger, os.getpid(), "paused", process_start=1)  # another process, same pid
    assert status(capsys, "--dir", str(ledger))["writing"] is True


def test_the_directory_defaults_to_the_one_the_workers_write(
    ledger: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    worker_state(ledger, os.getpid())
    assert status(capsys)["dir"] == str(ledger)


def test_the_directory_defaults_to_mgw_ledger_dir(
    ledger: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MGW_LEDGER_DIR", str(ledger))
    monkeypatch.setenv("MGW_LEDGER_MIN_FREE_MB", "1")
    document = status(capsys)
    assert (document["dir"], document["files"], document["first_day"]) == (str(ledger), 0, None)
    assert document["min_free_bytes"] == 1024 * 1024


def test_housekeep_prints_what_it_did(ledger: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = ledger / file_name("2020-01-01", "h", "c1")
    old.write_bytes(b"{}\n")
    finished = ledger / file_name("2026-01-01", "h", "c1")
    finished.write_bytes(b"{}\n")
    argv = ["housekeep", "--dir", str(ledger), "--retention-days", "1000"]
    assert main(argv) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"compressed {finished.name}",
        f"deleted {old.name} (past the retention)",
    ]
    assert main(argv) == 0
    assert capsys.readouterr().out == f"nothing to do in {ledger}\n"
    assert main([*argv, "--quiet"]) == 0
    assert capsys.readouterr().out == "", "quiet: the launcher's log gets nothing when idle"


def test_housekeep_reports_problems_on_stderr_with_exit_1(
    ledger: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = ledger / file_name("2026-01-01", "h", "c1")
    plain.write_bytes(b"{}\n{}\n")
    (ledger / (plain.name + ".gz")).write_bytes(gzip.compress(b"{}\n"))
    assert main(["housekeep", "--dir", str(ledger)]) == 1
    assert "differ in size; both kept" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["status", "--dir", "/nonexistent"], "--dir /nonexistent is not a directory"),
        (["status"], "give --dir DIR (or set $MGW_LEDGER_DIR); no running worker writes"),
        (["housekeep", "--dir", "{ledger}", "--retention-days", "-1"], "--retention-days -1"),
        (["housekeep", "--dir", "{ledger}", "--grace-seconds", "-5"], "--grace-seconds -5"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(
    ledger: Path, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    assert main([arg.format(ledger=ledger) for arg in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gateway-ledger: error: ")
    assert expected in err
    assert len(err.splitlines()) == 1


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"gateway-ledger {__version__}\n"
