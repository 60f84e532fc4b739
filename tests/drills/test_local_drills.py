"""Fault drills that need no lab (the reduced form CI runs): a launcher-served gateway in front
of fake-openai on this machine, under a steady request loop.

    .venv/bin/pytest -m "drill and not lab" tests/drills
"""

from __future__ import annotations

import errno
import json
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from drill_support import RequestLoop, only_when_asked_for, report, tool, wait_for

from conftest import FakeOpenAI, LauncherGateway

pytestmark = pytest.mark.drill
__all__ = ["only_when_asked_for"]  # an autouse fixture, imported to apply here

BURST = 5


def test_upstream_429_and_500_bursts_reach_clients_and_cost_nothing(
    launch_gateway: object, fake: FakeOpenAI, tmp_path: Path
) -> None:
    gateway: LauncherGateway = launch_gateway(workers=2)  # type: ignore[operator]
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
    launch_gateway: object, fake: FakeOpenAI
) -> None:
    gateway: LauncherGateway = launch_gateway(workers=2)  # type: ignore[operator]
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


def _fill(directory: Path) -> None:
    """Write until the filesystem refuses: truly full, not nearly full."""
    with (directory / "filler").open("wb", buffering=0) as filler:
        try:
            while True:
                filler.write(b"x" * 512)
        except OSError as error:
            assert error.errno == errno.ENOSPC, error


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[dict[str, Path]]:
    """A full filesystem and a read-only one (tmpfs mounts: needs root, else skipped), each
    already holding the report.html of an earlier run."""
    full, read_only = tmp_path / "full", tmp_path / "read-only"
    mounted = []
    for path in (full, read_only):
        path.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(path)],
            capture_output=True,
            check=False,
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here (root needed): {result.stderr!r}")
        mounted.append(path)
        (path / "report.html").write_bytes(EARLIER_REPORT)
    _fill(full)
    subprocess.run(["mount", "-o", "remount,ro", str(read_only)], check=True)
    yield {"full": full, "read-only": read_only}
    for path in mounted:
        subprocess.run(["umount", str(path)], check=False)


def _contents(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in directory.iterdir()}


@pytest.mark.parametrize("where", ["full", "read-only"])
def test_results_that_cannot_be_written_fail_clearly_and_leave_nothing(
    fake: FakeOpenAI, small_disk: dict[str, Path], where: str, tmp_path: Path
) -> None:
    directory = small_disk[where]
    before = _contents(directory)
    output, html = directory / "results.json", directory / "report.html"
    request = ("--url", fake.url, "--route", "openai", "--token", fake.key)
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
