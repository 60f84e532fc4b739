"""analyze-costs --costs-json: each host's --json report merged into one exact report."""

from __future__ import annotations

import csv
import json
from decimal import Decimal
from pathlib import Path

import pytest
from test_costs import MIXED_LOG, usage_line, write_log

from mlflow_gateway_tools.costs.cli import main as analyze_costs

HOST_LOGS = {
    "gw-host-1": MIXED_LOG,
    "gw-host-2": (
        usage_line(client="team-a", model_returned="llama-local"),  # unpriced
        usage_line(client="team-c", ts="2026-11-29T08:00:00.000Z", cached_tokens=1000),
        "{torn",
    ),
}


def host_report(tmp_path: Path, host: str, capsys: pytest.CaptureFixture[str]) -> Path:
    """What the cost play does on one host: analyze-costs --json over its own usage."""
    log = write_log(tmp_path / f"{host}.log", *HOST_LOGS[host])
    assert analyze_costs(["--log-file", str(log), "--json"]) == 0
    path = tmp_path / f"{host}.json"
    path.write_text(capsys.readouterr().out)
    return path


@pytest.fixture
def host_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> list[Path]:
    return [host_report(tmp_path, host, capsys) for host in HOST_LOGS]


def test_the_merge_of_two_hosts_equals_one_run_over_both_logs(
    host_reports: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    both = write_log(tmp_path / "both.log", *HOST_LOGS["gw-host-1"], *HOST_LOGS["gw-host-2"])
    assert analyze_costs(["--log-file", str(both), "--json"]) == 0
    direct = json.loads(capsys.readouterr().out)
    argv = [arg for path in host_reports for arg in ("--costs-json", str(path))]
    assert analyze_costs([*argv, "--json"]) == 0
    merged = json.loads(capsys.readouterr().out)

    assert merged["totals"] == direct["totals"]
    for table in ("by_model", "by_endpoint", "by_client", "by_day", "unpriced", "timeline"):
        assert merged[table] == direct[table], table
    assert merged["period"] == direct["period"]
    assert merged["price_source"] == direct["price_source"]  # the hosts agree: named once
    assert merged["malformed"]["count"] == 1
    assert merged["malformed"]["examples"][0]["source"].startswith("gw-host-2:")
    hosts = {row["host"]: row for row in merged["by_host"]}
    assert set(hosts) == {"gw-host-1", "gw-host-2"}
    assert sum(Decimal(row["cost_usd_exact"]) for row in hosts.values()) == Decimal(
        merged["totals"]["cost_usd_exact"]
    )
    assert hosts["gw-host-2"]["unpriced_requests"] == 1


def test_a_merged_run_writes_csv_html_and_checks_the_budget(
    host_reports: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table, page = tmp_path / "costs.csv", tmp_path / "costs.html"
    argv = [f"host-{i}={path}" for i, path in enumerate(host_reports, start=1)]
    argv = [arg for text in argv for arg in ("--costs-json", text)]
    assert (
        analyze_costs([*argv, "--csv", str(table), "--html", str(page), "--budget", "0.001"]) == 1
    )
    output = capsys.readouterr()
    assert "Budget exceeded: total cost $0.004" in output.err
    assert "By host" in output.out and "host-2" in output.out
    rows = list(csv.DictReader(table.open()))
    assert {row["key"] for row in rows if row["group"] == "host"} == {"host-1", "host-2"}
    assert {row["group"] for row in rows} == {"total", "model", "endpoint", "client", "day", "host"}
    assert "<h3>By host</h3>" in page.read_text()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{nope", "is not JSON"),
        ('{"totals": {}}', "is not the --json output of this analyze-costs"),
    ],
)
def test_a_file_that_is_no_report_is_named(
    content: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "host.json"
    path.write_text(content)
    assert analyze_costs(["--costs-json", str(path)]) == 2
    error = capsys.readouterr().err
    assert f"--costs-json {path} {expected}" in error
    assert error.count("\n") == 1


def test_a_tampered_cost_is_refused_not_summed(
    host_reports: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    report = json.loads(host_reports[0].read_text())
    report["by_client"][0]["cost_usd_exact"] = "NaN"
    host_reports[0].write_text(json.dumps(report))
    assert analyze_costs(["--costs-json", str(host_reports[0])]) == 2
    assert "by_client has cost_usd_exact 'NaN', not a finite amount" in capsys.readouterr().err


def test_two_inputs_with_one_label_are_refused(
    host_reports: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(host_reports[0])
    assert analyze_costs(["--costs-json", path, "--costs-json", f"gw-host-1={path}"]) == 2
    assert "label 'gw-host-1' names both" in capsys.readouterr().err


def test_merging_cannot_refilter_or_reprice(
    host_reports: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert analyze_costs(["--costs-json", str(host_reports[0]), "--since", "1d"]) == 2
    assert "--costs-json merges finished reports and cannot take --since" in (
        capsys.readouterr().err
    )
