"""The ledger under the real launcher: MLflow's gateway under gunicorn, real HTTP, real files.

Each request carries its own X-Request-Id, so "exactly one line per answered request" is
checked id by id, across a graceful reload (SIGHUP) and a graceful stop (SIGTERM).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from test_launcher import CHAT_BODY, children_of

from conftest import (
    FakeOpenAI,
    LauncherGateway,
    fill_filesystem,
    ledger_lines,
    request_ids,
    tmpfs,
    wait_until,
)
from mlflow_gateway_tools.launcher.cli import main as launcher_main
from mlflow_gateway_tools.ledger_files import file_name

NO_ANSWER = -1
SLOW_STREAM = {"chunk_delay_ms": 100}  # ~2.5 s per stream: long enough to straddle a signal


class Traffic:
    """Requests with known ids against one gateway; what each one got back."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.outcomes: dict[str, int] = {}
        self.errors: dict[str, str] = {}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def _record(self, request_id: str, status: int) -> None:
        with self._lock:
            self.outcomes[request_id] = status

    def send(self, request_id: str, *, stream: bool = False, drop_after: int | None = None) -> int:
        """One request on a fresh connection; drop_after: read that many lines, then hang up."""
        body = {**CHAT_BODY, "stream": True} if stream else CHAT_BODY
        status = NO_ANSWER
        try:
            with requests.post(
                f"{self.url}/gateway/chat/invocations",
                json=body,
                headers={"X-Request-Id": request_id},
                stream=stream,
                timeout=30,
            ) as response:
                status = response.status_code
                if drop_after is None:
                    _ = response.content
                else:
                    lines = response.iter_lines()
                    for _ in range(drop_after):
                        next(lines)
        except requests.RequestException as error:
            self.errors[request_id] = repr(error)  # NO_ANSWER, unless the status had arrived
        self._record(request_id, status)
        return status

    def in_background(self, request_id: str, **options: Any) -> None:
        thread = threading.Thread(target=self.send, args=(request_id,), kwargs=options)
        thread.start()
        self._threads.append(thread)

    def loop(self, prefix: str, stop: threading.Event) -> None:
        """Plain and streamed requests one after another until `stop` is set."""
        number = 0
        while not stop.is_set():
            self.send(f"{prefix}-{number}", stream=number % 3 == 0)
            number += 1

    def join(self) -> None:
        for thread in self._threads:
            thread.join(40)

    def answered(self) -> set[str]:
        return {rid for rid, status in self.outcomes.items() if status != NO_ANSWER}


def slow_streams_in_flight(traffic: Traffic, fake: FakeOpenAI, *options: dict[str, Any]) -> None:
    """Start one slow stream per options dict; return once all reached the upstream."""
    before = fake.stats()["requests"]
    fake.control("POST", "faults", {**SLOW_STREAM, "count": len(options)})
    for index, option in enumerate(options):
        traffic.in_background(f"slow-{before + index}", stream=True, **option)
    wait_until(
        lambda: fake.stats()["requests"] >= before + len(options), "the slow streams to start"
    )


def test_exactly_one_line_per_answered_request_through_reload_and_stop(
    launch_gateway: Callable[..., LauncherGateway], fake: FakeOpenAI, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    served = launch_gateway("--ledger-dir", str(ledger), workers=2)
    wait_until(lambda: len(children_of(served.process.pid)) == 2, "both workers to start")
    traffic = Traffic(served.url)

    # Streams that straddle the reload: one read to the end, one dropped mid-stream.
    slow_streams_in_flight(traffic, fake, {}, {"drop_after": 2})
    fake.control("POST", "faults", {"status": 429})
    fake.control("POST", "faults", {"status": 500})
    assert [traffic.send("upstream-429"), traffic.send("upstream-500")] == [429, 500]
    stop_loop = threading.Event()
    loop = threading.Thread(target=traffic.loop, args=("loop", stop_loop))
    loop.start()
    wait_until(lambda: len(traffic.outcomes) >= 10, "requests before the reload")

    old_workers = children_of(served.process.pid)
    os.kill(served.process.pid, signal.SIGHUP)
    wait_until(
        lambda: (
            len(children_of(served.process.pid) - old_workers) == 2
            and children_of(served.process.pid).isdisjoint(old_workers)
        ),
        "new workers to replace the old ones",
        timeout=40,
    )
    answered_before = len(traffic.outcomes)
    wait_until(lambda: len(traffic.outcomes) >= answered_before + 10, "answers after it")
    stop_loop.set()
    loop.join(30)

    # A stream in flight when the stop comes: the graceful stop lets it finish.
    slow_streams_in_flight(traffic, fake, {})
    served.process.send_signal(signal.SIGTERM)
    traffic.join()
    assert served.process.wait(40) == 0

    in_ledger = request_ids(ledger_lines(ledger))
    stdout = request_ids(served.stdout_path.read_bytes().splitlines())
    assert in_ledger == stdout, "the ledger and the usage log on stdout hold the same lines"
    missing_or_doubled = {rid: in_ledger[rid] for rid in traffic.answered() if in_ledger[rid] != 1}
    assert missing_or_doubled == {}, "exactly one line per answered request"
    assert set(in_ledger) <= set(traffic.outcomes)
    # A connection an old worker accepted but had not read when the reload stopped it is
    # closed unanswered (uvicorn; nginx retries those): at most one line, never two.
    unanswered = set(traffic.outcomes) - traffic.answered()
    assert all(in_ledger[rid] <= 1 for rid in unanswered), traffic.errors
    assert all("Connection" in traffic.errors[rid] for rid in unanswered), traffic.errors
    expected = traffic.answered()
    records = {json.loads(raw)["request_id"]: json.loads(raw) for raw in ledger_lines(ledger)}
    assert all(records[rid]["status"] == traffic.outcomes[rid] for rid in expected)
    slow = [record for rid, record in records.items() if rid.startswith("slow-")]
    assert len(slow) == 3
    [dropped] = [record for record in slow if record["error"]]
    assert dropped["error"].startswith("response not completed"), dropped
    assert not list(served.ledger_state_dir.glob("*.json")), "reaped workers leave no state"


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def test_a_torn_last_line_left_by_a_killed_worker_is_closed_before_new_lines(
    launch_gateway: Callable[..., LauncherGateway], fake: FakeOpenAI, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    day_file = ledger / file_name(today(), "gw-test", "c1")
    fragment = b'{"event":"gateway.request","ts":"' + today().encode() + b"T00:00"
    day_file.write_bytes(fragment)
    served = launch_gateway(
        "--ledger-dir", str(ledger), "--ledger-host", "gw-test", "--ledger-container", "c1"
    )
    assert Traffic(served.url).send("after-the-kill") == 200
    lines = wait_until(lambda: ledger_lines(ledger)[1:], "the new line").copy()
    assert day_file.read_bytes().startswith(fragment + b"\n")
    assert [json.loads(raw)["request_id"] for raw in lines] == ["after-the-kill"]

    costs = subprocess.run(
        [str(Path(sys.executable).parent / "analyze-costs"), "--log-file", str(day_file), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert costs.returncode == 0, costs.stderr
    summary = json.loads(costs.stdout)
    assert (summary["totals"]["requests"], summary["malformed"]["count"]) == (1, 1)


def ledger_status(served: LauncherGateway, ledger: Path) -> dict[str, Any]:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "gateway-ledger"), "status", "--json"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "MGW_LEDGER_STATE_DIR": str(served.ledger_state_dir)},
    )
    document = json.loads(result.stdout)
    assert document["dir"] == str(ledger), "found through the workers' state files"
    return document


@pytest.fixture
def small_ledger_disk(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "ledger", "256k") as directory:
        yield directory


def test_a_full_ledger_disk_pauses_the_ledger_not_the_gateway_and_it_resumes(
    launch_gateway: Callable[..., LauncherGateway], fake: FakeOpenAI, small_ledger_disk: Path
) -> None:
    ledger = small_ledger_disk
    served = launch_gateway("--ledger-dir", str(ledger), "--ledger-min-free-mb", "0")
    traffic = Traffic(served.url)
    assert traffic.send("before-0") == 200
    # The line is written once the answer is complete, a moment after the client has it.
    wait_until(lambda: "before-0" in request_ids(ledger_lines(ledger)), "the line of before-0")
    filler = fill_filesystem(ledger)

    number = 0

    def paused() -> bool:
        nonlocal number
        assert traffic.send(f"full-{number}") == 200, "the gateway keeps answering"
        number += 1
        return '"state":"paused"' in served.stderr()

    wait_until(paused, "the ledger to pause on the full disk")
    event = next(
        json.loads(line) for line in served.stderr().splitlines() if '"gateway.ledger"' in line
    )
    assert event["state"] == "paused"
    assert "No space left on device" in event["reason"] or "short write" in event["reason"]
    status = ledger_status(served, ledger)
    assert (status["writing"], status["paused_reason"]) == (False, event["reason"])

    filler.unlink()

    def resumed() -> bool:
        nonlocal number
        assert traffic.send(f"freed-{number}") == 200
        number += 1
        return '"state":"resumed"' in served.stderr()

    wait_until(resumed, "the ledger to resume once there is room")
    assert ledger_status(served, ledger)["writing"] is True
    assert traffic.send("after-0") == 200
    served.stop()

    in_ledger = request_ids(ledger_lines(ledger))
    assert max(in_ledger.values()) == 1, "never doubled"
    assert {"before-0", "after-0"} <= set(in_ledger)
    on_stdout = request_ids(served.stdout_path.read_bytes().splitlines())
    assert on_stdout == Counter(list(traffic.outcomes)), "stdout lost nothing meanwhile"


def test_the_master_compresses_finished_days_and_applies_the_retention_at_start(
    launch_gateway: Callable[..., LauncherGateway], fake: FakeOpenAI, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    day = datetime.now(UTC).date()
    finished = ledger / file_name((day - timedelta(days=2)).isoformat(), "gone", "replica")
    finished.write_bytes(b'{"event":"gateway.request"}\n')
    expired = ledger / file_name((day - timedelta(days=30)).isoformat(), "gone", "replica")
    expired.write_bytes(b'{"event":"gateway.request"}\n')
    served = launch_gateway("--ledger-dir", str(ledger), "--ledger-retention-days", "7")
    wait_until(
        lambda: sorted(path.name for path in ledger.iterdir()) == [finished.name + ".gz"],
        "the housekeeping pass at start",
    )
    wait_until(lambda: f"gateway-ledger: compressed {finished.name}" in served.stderr(), "its log")
    assert f"gateway-ledger: deleted {expired.name} (past the retention)" in served.stderr()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--ledger-dir", "/nonexistent"], "--ledger-dir /nonexistent does not exist; create"),
        (["--ledger-dir", "{config}"], "is not a directory"),
        (["--ledger-retention-days", "-1"], "--ledger-retention-days -1 is negative"),
        (["--ledger-min-free-mb", "-5"], "--ledger-min-free-mb -5 is negative"),
        (["--ledger-dir", "{tmp}", "--ledger-host", "gw host/1"], "--ledger-host 'gw host/1'"),
        (["--ledger-dir", "{tmp}", "--ledger-container", "a_b"], "--ledger-container 'a_b'"),
    ],
)
def test_cli_refuses_bad_ledger_options(
    argv: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("endpoints: []\n")
    argv = [arg.format(config=config, tmp=tmp_path) for arg in argv]
    assert launcher_main(["--config-path", str(config), *argv]) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert len(err.splitlines()) == 1


def test_cli_refuses_a_ledger_dir_it_cannot_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("endpoints: []\n")
    with tmpfs(tmp_path / "ro", "16k") as read_only:
        subprocess.run(["mount", "-o", "remount,ro", str(read_only)], check=True)
        assert launcher_main(["--config-path", str(config), "--ledger-dir", str(read_only)]) == 2
    err = capsys.readouterr().err
    assert f"--ledger-dir {read_only} is not writable by" in err
    assert "Read-only file system" in err
    assert "or mount it read-write" in err
