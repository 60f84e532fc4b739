"""analyze-costs --ledger DIR: the day files of a period, torn and damaged files, and the
multi-process fold that must equal one process reading every file."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from test_costs import usage_line

from mlflow_gateway_tools.costs import ledger as ledger_module
from mlflow_gateway_tools.costs import parallel
from mlflow_gateway_tools.costs.aggregate import Aggregator, TimeWindow
from mlflow_gateway_tools.costs.cli import main as analyze_costs
from mlflow_gateway_tools.costs.sources import ParseIssues
from mlflow_gateway_tools.ledger_files import file_name
from mlflow_gateway_tools.pricing import PriceTable

DAYS = ("2026-11-28", "2026-11-29", "2026-11-30")


def day_lines(day: str, count: int = 2) -> list[str]:
    return [usage_line(ts=f"{day}T{index % 24:02d}:00:00.000Z") for index in range(count)]


def write_day(
    ledger: Path, day: str, container: str = "c1", *, compressed: bool = False, lines: int = 2
) -> Path:
    path = ledger / file_name(day, "gw-host-1", container, compressed=compressed)
    data = "".join(line + "\n" for line in day_lines(day, lines)).encode()
    path.write_bytes(gzip.compress(data) if compressed else data)
    return path


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    """Three days of two containers; the first day is compressed, as a finished day is."""
    directory = tmp_path / "ledger"
    directory.mkdir()
    for index, day in enumerate(DAYS):
        for container in ("c1", "c2"):
            write_day(directory, day, container, compressed=index == 0)
    return directory


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert analyze_costs([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_ledger_reads_every_day_file_plain_and_gz(
    ledger: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = run_json(capsys, "--ledger", str(ledger))
    assert report["totals"]["requests"] == 12
    assert {row["day"]: row["requests"] for row in report["by_day"]} == dict.fromkeys(DAYS, 4)
    assert report["totals"]["cost_usd_exact"] == "0.00252"  # 12 x 210 micro-USD


def test_a_period_opens_only_its_days_files(
    ledger: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = run_json(
        capsys, "--ledger", str(ledger), "--since", "2026-11-29", "--until", "2026-11-30"
    )
    assert report["totals"]["requests"] == 4
    assert all("2026-11-29" in source for source in report["sources"])
    assert len(report["sources"]) == 2, "--until midnight does not open the next day's files"


def test_a_day_compressed_while_the_ledger_is_read_is_read_from_its_gz(
    ledger: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The launcher compresses a finished day (write .gz, unlink the plain file) at any time,
    also between analyze-costs listing the directory and opening the file."""
    listed = ledger_module.day_files

    def compress_after_listing(directory: Path, window: TimeWindow) -> list[Path]:
        files = listed(directory, window)
        for path in files:
            if path.suffix == ".jsonl":
                path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
                path.unlink()
        return files

    monkeypatch.setattr(ledger_module, "day_files", compress_after_listing)
    assert run_json(capsys, "--ledger", str(ledger))["totals"]["requests"] == 12


def test_a_torn_last_line_is_malformed_and_the_rest_counts(
    ledger: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torn = write_day(ledger, "2026-12-01")
    torn.write_bytes(torn.read_bytes() + usage_line().encode()[:57])  # SIGKILL mid-write
    report = run_json(capsys, "--ledger", str(ledger), "--since", "2026-12-01")
    assert report["totals"]["requests"] == 2
    assert report["malformed"]["count"] == 1
    assert report["malformed"]["examples"][0]["line"] == 3


@pytest.mark.parametrize("damage", ["truncated", "corrupt", "not gzip"])
def test_a_damaged_gz_keeps_the_lines_before_and_is_named(
    damage: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = "".join(line + "\n" for line in day_lines("2026-11-28", 4000)).encode()
    packed = gzip.compress(data)
    broken = {
        "truncated": packed[: len(packed) // 2],
        "corrupt": packed[: len(packed) // 2] + bytes(64) + packed[len(packed) // 2 + 64 :],
        "not gzip": b"this is not gzip at all\n",
    }[damage]
    log = tmp_path / "usage.log.gz"
    log.write_bytes(broken)
    good = tmp_path / "good.log"
    good.write_text(usage_line() + "\n")

    assert analyze_costs(["--log-file", str(log), "--log-file", str(good), "--json"]) == 0
    output = capsys.readouterr()
    report = json.loads(output.out)
    [damaged] = report["malformed"]["damaged_files"]
    assert damaged["source"] == str(log)
    assert damaged["reason"]
    assert report["totals"]["requests"] == damaged["lines"] + 1
    if damage != "not gzip":
        assert 0 < damaged["lines"] < 4000, "the lines before the damage count"
    assert f"{log} is damaged" in output.err
    assert "Traceback" not in output.err


def test_an_empty_period_names_the_directory_and_the_days(
    ledger: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert analyze_costs(["--ledger", str(ledger), "--since", "2027-01-01"]) == 2
    error = capsys.readouterr().err
    assert f"no usage records in ledger {ledger} (0 day file(s) for 2027-01-01" in error
    assert "send some requests through the gateway" in error
    assert error.count("\n") == 1


def test_an_empty_period_is_a_zero_report_with_allow_empty_and_merges(
    ledger: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """playbooks/costs.yml: a host that served nothing in the period costs $0, and the other
    hosts' totals stand."""
    html = tmp_path / "empty.html"
    argv = ["--ledger", str(ledger), "--since", "2026-11-30", "--allow-empty"]
    busy = run_json(capsys, *argv)
    assert (
        analyze_costs(
            [
                "--ledger",
                str(ledger),
                "--since",
                "2027-01-01",
                "--allow-empty",
                "--json",
                "--html",
                str(html),
            ]
        )
        == 0
    )
    output = capsys.readouterr()
    empty = json.loads(output.out)
    assert empty["totals"]["requests"] == 0
    assert empty["totals"]["cost_usd_exact"] == "0"
    assert f"no usage records in ledger {ledger}" in output.err
    assert "the period cost $0 here" in output.err
    assert html.is_file()
    reports = []
    for name, report in (("busy", busy), ("idle", empty)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(report))
        reports += ["--costs-json", f"{name}={path}"]
    merged = run_json(capsys, *reports)
    assert merged["totals"]["requests"] == busy["totals"]["requests"] == 4
    assert merged["totals"]["cost_usd_exact"] == busy["totals"]["cost_usd_exact"]


def test_an_unreadable_ledger_directory_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-ledger"
    assert analyze_costs(["--ledger", str(missing)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"analyze-costs: error: cannot read --ledger {missing}: ")
    assert "give the directory the gateway's usage ledger is written to" in error
    assert error.count("\n") == 1


def test_the_parallel_fold_equals_one_process(ledger: Path) -> None:
    files = sorted(ledger.iterdir())
    extra = write_day(ledger, "2026-12-01", lines=30)
    extra.write_bytes(extra.read_bytes() + b"{torn")
    files.append(extra)
    prices = PriceTable.load()
    reports = []
    for min_bytes in (0, 1 << 62):  # parallel, then in this process
        aggregator, issues = Aggregator(TimeWindow()), ParseIssues()
        parallel.fold_files(files, None, aggregator, issues, min_bytes=min_bytes)
        reports.append((aggregator.report(prices), issues))
    (parallel_report, parallel_issues), (serial_report, serial_issues) = reports
    assert parallel_report == serial_report
    assert parallel_issues == serial_issues
    assert parallel_report.totals.requests == 42
    assert [item.record.ts for item in parallel_report.requests] == [
        item.record.ts for item in serial_report.requests
    ]
