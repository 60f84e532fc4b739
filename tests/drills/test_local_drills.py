"""Fault drills that need no lab (the reduced form CI runs): a launcher-served gateway in front
of fake-openai on this machine, under a steady request loop.

    .venv/bin/pytest -m "drill and not lab" tests/drills
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest
import requests
from drill_support import (
    VENV_BIN,
    RequestLoop,
    only_when_asked_for,
    report,
    tool,
    wait_for,
)

from conftest import (
    FakeOpenAI,
    LauncherGateway,
    fill_filesystem,
    ledger_lines,
    request_ids,
    tmpfs,
)
from mlflow_gateway_tools.ledger_files import file_name

pytestmark = pytest.mark.drill
__all__ = ["only_when_asked_for"]  # an autouse fixture, imported to apply here

BURST = 5


def test_upstream_429_and_500_bursts_reach_clients_and_cost_nothing(
    launch_gateway: Callable[..., LauncherGateway], fake: FakeOpenAI, tmp_path: Path
) -> None:
    gateway: LauncherGateway = launch_gateway(workers=2)
    with RequestLoop(gateway.url, token=None) as loop:
        gateway.mark()
        queued = time.time()
        fake.control("POST", "faults", {"status": 429, "count": BURST})
        fake.control("POST", "faults", {"status": 500, "count": BURST})
        wait_for(lambda: len(loop.failures()) >= 2 * BURST, "both bursts to reach clients", 30)
        last_failure = max(record.ended for record in loop.failures())
        wait_for(lambda: loop.ok_after(last_failure), "answers after the bursts", 30)
    seen = Counter(record.status for record in loop.failures())
    recovery = min(r.started for r in loop.records if r.ok and r.started > last_failure) - queued
    report(
        "upstream 429 x5 then 500 x5 (local launcher)",
        loop,
        recovery,
        f"client statuses {dict(seen)}",
    )
    assert seen == {429: BURST, 500: BURST}, "each upstream error reaches the client as itself"

    logged = [line for line in gateway.usage_lines()[-len(loop.records) :] if line["status"] >= 400]
    assert Counter(line["status"] for line in logged) == {429: BURST, 500: BURST}
    assert all(line["prompt_tokens"] is None and line["error"] for line in logged)
    error_log = tmp_path / "errors.log"
    error_log.write_text("".join(json.dumps(line) + "\n" for line in logged))
    costs = tool("analyze-costs", "--log-file", str(error_log), "--json", check=True)
    totals = json.loads(costs.stdout)["totals"]
    assert totals["requests"] == totals["failed"] == 2 * BURST
    assert totals["cost_usd"] == 0


def test_an_invalid_config_is_refused_while_serving(
    launch_gateway: Callable[..., LauncherGateway], fake: FakeOpenAI
) -> None:
    gateway: LauncherGateway = launch_gateway(workers=2)
    good = gateway.config_path.read_text()
    with RequestLoop(gateway.url, token=None) as loop:
        written = time.time()
        gateway.config_path.write_text("endpoints: [{name: chat}]\n")  # no type, no model
        wait_for(lambda: "refus" in gateway.stderr().lower(), "the launcher to refuse it", 30)
        refused_at = time.time()
        wait_for(lambda: loop.ok_after(refused_at), "answers with the old config", 30)
        gateway.config_path.write_text(good)
    refused = f"refused {refused_at - written:.1f} s after it was written; old config served on"
    report("invalid gateway config while serving (local launcher)", loop, None, refused)
    assert loop.failures() == []


EARLIER_REPORT = b"<p>the report of an earlier run</p>\n"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[dict[str, Path]]:
    """A full filesystem and a read-only one (tmpfs mounts: needs root, else skipped), each
    already holding the report.html of an earlier run."""
    full, read_only = tmp_path / "full", tmp_path / "read-only"
    with tmpfs(full, "16k"), tmpfs(read_only, "16k"):
        for path in (full, read_only):
            (path / "report.html").write_bytes(EARLIER_REPORT)
        fill_filesystem(full)
        subprocess.run(["mount", "-o", "remount,ro", str(read_only)], check=True)
        yield {"full": full, "read-only": read_only}


def _contents(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in directory.iterdir()}


@pytest.mark.parametrize("where", ["full", "read-only"])
def test_results_that_cannot_be_written_fail_clearly_and_leave_nothing(
    fake: FakeOpenAI, small_disk: dict[str, Path], where: str, tmp_path: Path
) -> None:
    directory = small_disk[where]
    before = _contents(directory)
    output, html = directory / "results.json", directory / "report.html"
    request: tuple[str, ...] = ("--url", fake.url, "--route", "openai", "--token", fake.key)
    request += ("--cases", "simple_chat", "--requests", "40")
    evaluate = tool("evaluate-gateway", *request, "--output", str(output))
    results = tmp_path / "results.json"
    tool("evaluate-gateway", *request, "--output", str(results), check=True)
    analyze = tool("analyze-costs", "--response-file", str(results), "--html", str(html))
    exits = f"evaluate-gateway exit {evaluate.returncode}, analyze-costs exit {analyze.returncode}"
    report(f"results directory {where}", None, None, exits)
    for result, path in ((evaluate, output), (analyze, html)):
        assert result.returncode == 2, result.stderr
        assert f"cannot write --{'output' if path == output else 'html'} {path}" in result.stderr
        assert ("No space left" if where == "full" else "Read-only") in result.stderr
        assert ("free space" if where == "full" else "writable directory") in result.stderr
    after = _contents(directory)
    assert after.keys() == before.keys(), f"files left behind: {sorted(after - before.keys())}"
    assert after["report.html"] == EARLIER_REPORT, "the earlier report was damaged"


# --- the usage ledger -------------------------------------------------------------------------


def _ledger_gateway(
    launch_gateway: Callable[..., LauncherGateway], ledger: Path, *extra: str
) -> LauncherGateway:
    gateway: LauncherGateway = launch_gateway("--ledger-dir", str(ledger), *extra, workers=2)
    wait_for(lambda: len(worker_pids(gateway)) == 2, "both workers to start", 30)
    return gateway


def worker_pids(gateway: LauncherGateway) -> set[int]:
    return {child.pid for child in psutil.Process(gateway.process.pid).children()}


def _ledger_status(gateway: LauncherGateway) -> dict:
    """`gateway-ledger status --json` as `docker exec` runs it: no option, the workers' state
    files (this gateway's own state directory) name the ledger."""
    result = subprocess.run(
        [str(VENV_BIN / "gateway-ledger"), "status", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "MGW_LEDGER_STATE_DIR": str(gateway.ledger_state_dir)},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _lines_accounted(gateway: LauncherGateway) -> int:
    status = _ledger_status(gateway)
    return status["lines_written"] + status["lines_skipped"]


def _stream_slowly(url: str, outcomes: list[str]) -> None:
    body = {"messages": [{"role": "user", "content": "Stream me a long answer"}], "stream": True}
    try:
        with requests.post(
            f"{url}/gateway/chat/invocations", json=body, stream=True, timeout=30
        ) as response:
            _ = response.content
        outcomes.append("complete")
    except requests.RequestException:
        outcomes.append("cut")


def test_workers_killed_mid_stream_leave_a_ledger_that_analyze_costs_reads(
    launch_gateway: Callable[..., LauncherGateway], fake: FakeOpenAI, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    names = ("--ledger-host", "gw-drill", "--ledger-container", "replica-1")
    gateway = _ledger_gateway(launch_gateway, ledger, *names)
    streams = 6
    outcomes: list[str] = []
    fake.control("POST", "faults", {"chunk_delay_ms": 200, "count": streams})
    threads = [
        threading.Thread(target=_stream_slowly, args=(gateway.url, outcomes))
        for _ in range(streams)
    ]
    for thread in threads:
        thread.start()
    wait_for(lambda: fake.stats()["requests"] >= streams, "the streams in flight", 30)
    killed = worker_pids(gateway)
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    killed_at = time.time()
    # What a kill inside one write() leaves (the kernel may cut a write at a page boundary).
    # A kill cannot be timed into a syscall, so the fragment is put there the moment the
    # writers are dead, before their replacements open the file.
    day_file = ledger / file_name(datetime.now(UTC).date().isoformat(), "gw-drill", "replica-1")
    with day_file.open("ab") as handle:
        handle.write(b'{"event":"gateway.request","ts":"2026-12-01T12:00:00.0')
    for thread in threads:
        thread.join(30)
    wait_for(lambda: len(worker_pids(gateway) - killed) == 2, "replacement workers", 60)
    with RequestLoop(gateway.url, token=None) as after:
        wait_for(lambda: after.ok_after(killed_at, 20), "answers from the new workers", 60)
    recovery = min(r.started for r in after.records if r.ok) - killed_at
    assert gateway.stop() == 0

    results = []
    for path in sorted(ledger.glob("usage-*")):
        costs = tool("analyze-costs", "--log-file", str(path), "--json")
        assert costs.returncode == 0, costs.stderr
        results.append(json.loads(costs.stdout))
    counted = sum(result["totals"]["requests"] for result in results)
    malformed = sum(result["malformed"]["count"] for result in results)
    stdout_lines = len(gateway.usage_lines())
    report(
        "workers SIGKILLed mid-stream, ledger on (local launcher)",
        after,
        recovery,
        f"{outcomes.count('cut')} of {streams} streams cut by the kill",
        f"ledger: {counted} requests, {malformed} malformed line (the torn one)",
    )
    assert outcomes.count("cut") == streams, "the streams were in flight on the killed workers"
    assert malformed == 1, "the torn fragment stays one malformed line"
    assert counted == stdout_lines == len(after.records)
    assert after.failures() == []


def test_a_full_ledger_disk_stops_the_ledger_not_the_gateway(
    launch_gateway: Callable[..., LauncherGateway], fake: FakeOpenAI, tmp_path: Path
) -> None:
    with tmpfs(tmp_path / "ledger", "4m") as ledger:
        gateway = _ledger_gateway(launch_gateway, ledger, "--ledger-min-free-mb", "1")
        with RequestLoop(gateway.url, token=None) as loop:
            filler = fill_filesystem(ledger)
            paused_after = wait_for(
                lambda: _ledger_status(gateway)["writing"] is False, "the ledger to pause", 30
            )
            # A disk filled at once may first show as ENOSPC on a write; the once-a-second
            # check then puts the free and minimum figures in the reason.
            wait_for(
                lambda: (_ledger_status(gateway)["paused_reason"] or "").startswith("free space"),
                "the free-space figures in the reason",
                20,
            )
            paused = _ledger_status(gateway)
            paused_at = time.time()
            wait_for(lambda: loop.ok_after(paused_at, 20), "answers while paused", 60)
            filler.unlink()
            wait_for(lambda: _ledger_status(gateway)["writing"], "the ledger to resume", 30)
            resumed_at = time.time()
            wait_for(lambda: loop.ok_after(resumed_at, 10), "answers after it", 60)
        requests_sent = len(loop.records)
        wait_for(
            lambda: _lines_accounted(gateway) == requests_sent,
            "the workers' counts to cover every request",
            20,
        )
        counts = _ledger_status(gateway)
        in_ledger = ledger_lines(ledger)
        assert gateway.stop() == 0
    stdout_lines = len(gateway.usage_lines())
    report(
        "ledger disk full, --ledger-min-free-mb 1 (local launcher)",
        loop,
        None,
        f"paused {paused_after:.1f} s after the disk filled: {paused['paused_reason']}",
        f"{counts['lines_skipped']} ledger lines skipped, all {stdout_lines} on stdout",
    )
    assert loop.failures() == [], "the gateway kept serving"
    assert paused["paused_reason"].startswith("free space ")
    assert f"on {ledger} is below --ledger-min-free-mb 1 MB" in paused["paused_reason"]
    assert paused["free_bytes"] < paused["min_free_bytes"] == 1024 * 1024
    assert stdout_lines == requests_sent, "every usage line still on stdout"
    assert counts["lines_skipped"] > 0
    well_formed = request_ids(in_ledger).total()
    assert well_formed == counts["lines_written"]
    # A disk filled at once may cut one write short before the once-a-second check pauses
    # the ledger: that fragment is one malformed line, the next open starts a new line.
    assert len(in_ledger) - well_formed <= 1
