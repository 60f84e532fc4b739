"""analyze-costs: exact totals and groupings, every input kind, every output, bad input."""

from __future__ import annotations

import json
import os
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from mlflow_gateway_tools.costs.aggregate import Aggregator, TimeWindow
from mlflow_gateway_tools.costs.cli import main as analyze_costs
from mlflow_gateway_tools.costs.sources import ParseIssues, fold_log_lines
from mlflow_gateway_tools.pricing import PriceTable


def usage_line(**fields: Any) -> str:
    line = {
        "event": "gateway.request",
        "ts": "2026-11-27T10:00:00.000Z",
        "request_id": None,
        "client": None,
        "method": "POST",
        "path": "/gateway/chat/invocations",
        "route": "gateway",
        "endpoint": "chat",
        "endpoint_type": "llm/v1/chat",
        "provider": "openai",
        "model_configured": "gpt-4o-mini",
        "model_returned": "gpt-4o-mini-2024-07-18",
        "status": 200,
        "latency_ms": 12.5,
        "stream": False,
        "ttfb_ms": None,
        "prompt_tokens": 1000,
        "completion_tokens": 100,
        "total_tokens": 1100,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
        "error": None,
    }
    line.update(fields)
    return json.dumps(line)


def write_log(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def write_results(path: Path, *records: dict[str, Any]) -> Path:
    """A results file in evaluate-gateway's shape (only the fields analyze-costs reads)."""
    path.write_text(json.dumps({"requests": list(records)}))
    return path


# 1000 x 2.50 + 100 x 10.00 = 3500 micro-USD
GPT_4O_RESULT = {
    "ok": True,
    "status": 200,
    "model_returned": "gpt-4o",
    "prompt_tokens": 1000,
    "completion_tokens": 100,
}


# gpt-4o-mini: 1000 x 0.15 + 100 x 0.60 = 210 micro-USD; with 400 cached:
# 600 x 0.15 + 400 x 0.075 + 100 x 0.60 = 90 + 30 + 60 = 180 micro-USD.
# gpt-4o: 1000 x 2.50 + 100 x 10.00 = 3500 micro-USD.
MIXED_LOG = (
    usage_line(client="team-a"),
    usage_line(client="team-a", cached_tokens=400, ts="2026-11-27T11:30:00.000Z"),
    usage_line(
        client="team-b",
        model_returned="gpt-4o-2024-08-06",
        endpoint="big",
        ts="2026-11-28T09:00:00.000Z",
    ),
    usage_line(
        status=429,
        model_returned=None,
        prompt_tokens=None,
        completion_tokens=None,
        total_tokens=None,
        cached_tokens=None,
        error="Rate limit reached",
    ),
)


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert analyze_costs([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_totals_and_groupings_are_exact(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = write_log(tmp_path / "usage.log", *MIXED_LOG)
    report = run_json(capsys, "--log-file", str(log))
    totals = report["totals"]
    assert (totals["requests"], totals["failed"]) == (4, 1)
    assert (totals["prompt_tokens"], totals["cached_tokens"], totals["completion_tokens"]) == (
        3000,
        400,
        300,
    )
    assert totals["cost_usd"] == 0.00389  # 210 + 180 + 3500 micro-USD
    by_model = {row["model"]: row for row in report["by_model"]}
    assert by_model["gpt-4o-mini-2024-07-18"]["priced_as"] == "gpt-4o-mini"
    assert by_model["gpt-4o-mini-2024-07-18"]["cost_usd"] == 0.00039
    assert by_model["gpt-4o-2024-08-06"]["cost_usd"] == 0.0035
    assert {row["client"]: row["cost_usd"] for row in report["by_client"]} == {
        "team-b": 0.0035,
        "team-a": 0.00039,
        "(none)": 0.0,
    }
    assert {row["day"]: row["requests"] for row in report["by_day"]} == {
        "2026-11-27": 3,
        "2026-11-28": 1,
    }
    assert {row["endpoint"] for row in report["by_endpoint"]} == {"chat", "big"}
    assert len(report["requests"]) == 4, "at most 20 requests: each is listed"
    assert report["requests"][1]["cost_usd"] == 0.00018


def test_unknown_models_are_unpriced_never_free(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = write_log(tmp_path / "usage.log", usage_line(), usage_line(model_returned="llama-local"))
    report = run_json(capsys, "--log-file", str(log))
    assert report["totals"]["cost_usd"] == 0.00021  # only the priced request
    assert report["unpriced"] == [
        {
            "model": "llama-local",
            "requests": 1,
            "failed": 0,
            "prompt_tokens": 1000,
            "cached_tokens": 0,
            "completion_tokens": 100,
            "reasoning_tokens": 0,
            "total_tokens": 1100,
        }
    ]
    assert analyze_costs(["--log-file", str(log)]) == 0
    assert "Unpriced (not in the total, which is a lower bound): llama-local" in (
        capsys.readouterr().out.replace("\n", " ")
    )


def test_a_pricing_file_prices_a_new_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = write_log(tmp_path / "usage.log", usage_line(model_returned="llama-local"))
    pricing = tmp_path / "prices.yaml"
    pricing.write_text("models:\n  llama-local: {input: 1.0, output: 1.0}\n")
    report = run_json(capsys, "--log-file", str(log), "--pricing", str(pricing))
    assert report["totals"]["cost_usd"] == 0.0011
    assert report["unpriced"] == []


def test_model_override_reprices_everything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = write_log(tmp_path / "usage.log", usage_line(), usage_line(cached_tokens=400))
    report = run_json(capsys, "--log-file", str(log), "--model", "gpt-4")
    assert report["totals"]["cost_usd"] == 0.072  # 2 x (1000 x 30 + 100 x 60), no cache price


def test_current_models_with_cached_and_reasoning_tokens_are_exact(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = write_log(
        tmp_path / "usage.log",
        # gpt-5-nano 0.05 / 0.005 / 0.40: 6000 x 0.05 + 4000 x 0.005 + 3000 x 0.40 = 1520;
        # the 2500 reasoning tokens are inside the 3000 completion tokens, not added again
        usage_line(
            model_returned="gpt-5-nano-2025-08-07",
            prompt_tokens=10_000,
            cached_tokens=4_000,
            completion_tokens=3_000,
            reasoning_tokens=2_500,
        ),
        # o3-mini 1.10 / 0.55 / 4.40: 3976 x 1.1 + 1024 x 0.55 + 4000 x 4.4 = 22536.8
        usage_line(
            model_returned="o3-mini-2025-01-31",
            prompt_tokens=5_000,
            cached_tokens=1_024,
            completion_tokens=4_000,
            reasoning_tokens=3_500,
        ),
        # gpt-4.1-nano 0.10 / 0.025 / 0.40: 40000 x 0.1 + 60000 x 0.025 + 2000 x 0.4 = 6300
        usage_line(
            model_returned="gpt-4.1-nano-2025-04-14",
            prompt_tokens=100_000,
            cached_tokens=60_000,
            completion_tokens=2_000,
        ),
    )
    report = run_json(capsys, "--log-file", str(log))
    assert report["totals"]["cost_usd_exact"] == "0.0303568"  # 1520 + 22536.8 + 6300
    assert report["unpriced"] == []
    by_model = {row["model"]: row["priced_as"] for row in report["by_model"]}
    assert by_model == {
        "gpt-5-nano-2025-08-07": "gpt-5-nano",
        "o3-mini-2025-01-31": "o3-mini",
        "gpt-4.1-nano-2025-04-14": "gpt-4.1-nano",
    }


def test_a_period_across_a_price_change_bills_each_side_at_its_price(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # gpt-5.6-luna was cut 80 % on 2026-07-30: 1 / 6 before, 0.20 / 1.20 from that day.
    log = write_log(
        tmp_path / "usage.log",
        usage_line(model_returned="gpt-5.6-luna", ts="2026-07-29T23:30:00.000Z"),
        usage_line(model_returned="gpt-5.6-luna", ts="2026-07-30T00:30:00.000Z"),
    )
    report = run_json(capsys, "--log-file", str(log))
    # before: 1000 x 1 + 100 x 6 = 1600; after: 1000 x 0.2 + 100 x 1.2 = 320 micro-USD
    assert report["totals"]["cost_usd_exact"] == "0.00192"
    assert {row["day"]: row["cost_usd_exact"] for row in report["by_day"]} == {
        "2026-07-29": "0.0016",
        "2026-07-30": "0.00032",
    }


def test_a_pricing_file_row_wins_over_the_library(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = write_log(tmp_path / "usage.log", usage_line(), usage_line(cached_tokens=400))
    pricing = tmp_path / "prices.yaml"
    pricing.write_text("models:\n  gpt-4o-mini: {input: 0.10, cached_input: 0.05}\n")
    report = run_json(capsys, "--log-file", str(log), "--pricing", str(pricing))
    # the file's input and cached input, the library's output 0.60:
    # 1000 x 0.1 + 100 x 0.6 = 160; 600 x 0.1 + 400 x 0.05 + 100 x 0.6 = 140
    assert report["totals"]["cost_usd_exact"] == "0.0003"
    assert report["price_source"]["overrides"] == str(pricing)


def test_reports_name_their_price_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import genai_prices

    version = genai_prices.__version__
    log = write_log(tmp_path / "usage.log", usage_line())
    report = run_json(capsys, "--log-file", str(log))
    assert report["price_source"]["name"] == "genai-prices"
    assert report["price_source"]["version"] == version
    page = tmp_path / "costs.html"
    assert analyze_costs(["--log-file", str(log), "--html", str(page)]) == 0
    text = capsys.readouterr().out.replace("\n", " ")
    assert f"genai-prices {version}" in text
    assert f"<th>Prices</th><td>genai-prices {version}" in page.read_text()


def test_a_pricing_file_name_is_data_in_every_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = write_log(tmp_path / "usage.log", usage_line())
    pricing = tmp_path / "[red]<b>x.yaml"
    pricing.write_text("models:\n  gpt-4o-mini: {output: 0.5}\n")
    page = tmp_path / "costs.html"
    argv = ["--log-file", str(log), "--pricing", str(pricing), "--html", str(page)]
    assert analyze_costs(argv) == 0
    assert "[red]<b>x.yaml" in capsys.readouterr().out  # shown as it is, not as markup
    html = page.read_text()
    assert "<b>x" not in html and "[red]&lt;b&gt;x.yaml" in html


def test_malformed_lines_are_counted_and_shown_with_line_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = write_log(
        tmp_path / "usage.log",
        usage_line(),
        "Traceback (most recent call last):",
        '{"event": "gateway.request", "prompt_tokens": "many"}',
        '{"event": "something.else"}',  # another event: skipped, not an error
        "gateway-2  | " + usage_line(),  # a compose-logs prefix is fine
        '{"truncated": ',
    )
    report = run_json(capsys, "--log-file", str(log))
    assert report["totals"]["requests"] == 2
    assert report["malformed"]["count"] == 3
    assert [(e["line"], e["reason"]) for e in report["malformed"]["examples"]] == [
        (2, "not JSON"),
        (3, "prompt_tokens must be a whole number >= 0, got 'many'"),
        (6, "not JSON"),
    ]
    assert analyze_costs(["--log-file", str(log)]) == 0
    errors = capsys.readouterr().err
    assert "3 line(s) could not be used" in errors
    assert f"{log} line 2: not JSON" in errors


def test_since_and_until_select_a_window(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = write_log(tmp_path / "usage.log", *MIXED_LOG)
    report = run_json(
        capsys, "--log-file", str(log), "--since", "2026-11-27T11:00:00Z", "--until", "2026-11-28"
    )
    assert report["totals"]["requests"] == 1
    assert report["totals"]["cost_usd"] == 0.00018
    assert analyze_costs(["--log-file", str(log), "--since", "2030-01-01"]) == 2
    assert "(4 outside --since/--until)" in capsys.readouterr().err


def test_budget_exceeded_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = write_log(tmp_path / "usage.log", *MIXED_LOG)
    assert analyze_costs(["--log-file", str(log), "--budget", "0.01"]) == 0
    assert analyze_costs(["--log-file", str(log), "--budget", "0.001"]) == 1
    assert "Budget exceeded: total cost $0.003890 > --budget $0.00" in capsys.readouterr().err


def test_request_list_only_up_to_20_unless_details(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = write_log(tmp_path / "usage.log", *[usage_line()] * 21)
    assert run_json(capsys, "--log-file", str(log))["requests"] == []
    assert len(run_json(capsys, "--log-file", str(log), "--details")["requests"]) == 21


def test_csv_has_a_row_per_group(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = write_log(tmp_path / "usage.log", *MIXED_LOG)
    assert analyze_costs(["--log-file", str(log), "--csv"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].startswith("group,key,requests,failed,prompt_tokens,cached_tokens")
    assert rows[1] == "total,all,4,1,3000,400,300,0,0.0038900000,0"
    assert "client,team-a,2,0,2000,400,200,0,0.0003900000,0" in rows


def test_html_report_is_one_self_contained_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = write_log(tmp_path / "usage.log", *MIXED_LOG)
    page = tmp_path / "costs.html"
    assert analyze_costs(["--log-file", str(log), "--html", str(page)]) == 0
    html = page.read_text()
    assert html.count("<svg") == 3  # cost over time, cost by model, tokens by model
    for title in ("Cost over time", "Cost by model", "Tokens by model"):
        assert title in html
    assert "<script" not in html and "src=" not in html and "<link" not in html
    assert "$0.003890" in html


def test_results_files_from_evaluate_and_raw_responses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = write_results(
        tmp_path / "results.json",
        {
            "ts": "2026-11-27T10:00:00.000Z",
            "endpoint": "chat",
            "status": 200,
            "ok": True,
            "model_returned": "gpt-4o-mini-2024-07-18",
            "prompt_tokens": 1000,
            "completion_tokens": 100,
            "cached_tokens": 400,
            "error": None,
        },
        {
            "ts": "2026-11-27T10:00:01.000Z",
            "endpoint": "chat",
            "status": None,
            "ok": False,
            "model_returned": None,
            "prompt_tokens": None,
            "error": "timed out after 60s",
        },
    )
    seed_style = tmp_path / "seed.json"
    seed_style.write_text(
        json.dumps(
            [
                {
                    "test": "simple",
                    "response": {
                        "model": "gpt-4o-2024-08-06",
                        "usage": {"prompt_tokens": 1000, "completion_tokens": 100},
                    },
                }
            ]
        )
    )
    report = run_json(capsys, "--response-file", str(results), "--response-file", str(seed_style))
    assert (report["totals"]["requests"], report["totals"]["failed"]) == (3, 1)
    assert report["totals"]["cost_usd"] == 0.00368  # 180 + 3500 micro-USD


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--log-file", "/nonexistent/usage.log"], "cannot read --log-file /nonexistent/usage.log"),
        (
            ["--response-file", "/nonexistent/r.json"],
            "cannot read --response-file /nonexistent/r.json",
        ),
        (["--since", "yesterday"], "'yesterday' is not a time: use an ISO date"),
        (["--since", "2026-11-28", "--until", "2026-11-27"], "is not before --until"),
        (["--budget", "lots"], "--budget 'lots' is not an amount"),
        (["--budget", "-5"], "must be a positive amount"),
    ],
)
def test_bad_options_get_a_clear_message(
    argv: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = write_log(tmp_path / "usage.log", usage_line())
    if not any(option in argv for option in ("--log-file", "--response-file")):
        argv = ["--log-file", str(log), *argv]
    assert analyze_costs(argv) == 2
    assert expected in capsys.readouterr().err


def test_bad_files_get_a_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    not_json = tmp_path / "results.json"
    not_json.write_text("{nope")
    assert analyze_costs(["--response-file", str(not_json)]) == 2
    assert f"--response-file {not_json} is not JSON" in capsys.readouterr().err
    no_list = tmp_path / "other.json"
    no_list.write_text('{"summary": {}}')
    assert analyze_costs(["--response-file", str(no_list)]) == 2
    assert "has no list of requests" in capsys.readouterr().err
    pricing = tmp_path / "prices.yaml"
    pricing.write_text("models:\n  gpt-4o: {input: free}\n")
    assert analyze_costs(["--response-file", str(no_list), "--pricing", str(pricing)]) == 2
    assert "model 'gpt-4o' field 'input' must be a number" in capsys.readouterr().err


def test_streaming_aggregation_matches_a_direct_sum() -> None:
    prices = PriceTable.load()
    lines = [
        usage_line(prompt_tokens=n, completion_tokens=n // 2, cached_tokens=n // 3).encode()
        for n in range(1, 501)
    ]
    aggregator = Aggregator(TimeWindow())
    fold_log_lines("test", lines, ParseIssues(), None, aggregator)
    price = prices.lookup("gpt-4o-mini")
    assert price is not None
    expected = sum(price.cost(n, n // 3, n // 2) for n in range(1, 501))
    assert aggregator.report(prices).cost == expected
    assert isinstance(expected, Decimal)


FAKE_DOCKER = """#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_DOCKER_CALLS"], "a") as calls:
    calls.write(json.dumps(args) + "\\n")
containers = json.loads(os.environ["FAKE_DOCKER_CONTAINERS"])
if args[0] == "inspect":
    if args[-1] not in containers:
        sys.stderr.write("Error: No such container: " + args[-1] + "\\n")
        sys.exit(1)
    print("/" + args[-1])
elif args[0] == "ps":
    wanted = [a.split("=", 1)[1] for a in args if a.startswith("label=")]
    for name, info in containers.items():
        if all(label in info["labels"] for label in wanted):
            print(name)
elif args[0] == "logs":
    sys.stderr.write("[INFO] Booting worker (stderr: not usage)\\n")
    sys.stdout.write(open(containers[args[-1]]["log"]).read())
"""


def container(log: Path, project: str | None = None) -> dict[str, Any]:
    """A canned container for FAKE_DOCKER: a replica of `project`'s gateway service, or a
    plain container when `project` is None."""
    if project is None:
        return {"log": str(log), "labels": []}
    compose = ["com.docker.compose.service=gateway", f"com.docker.compose.project={project}"]
    return {"log": str(log), "labels": compose}


@pytest.fixture
def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `docker` on PATH that serves canned containers; returns the file of its calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(FAKE_DOCKER.format(python=sys.executable))
    docker.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    calls = tmp_path / "docker-calls"
    monkeypatch.setenv("FAKE_DOCKER_CALLS", str(calls))
    replica_log = write_log(tmp_path / "replica.log", usage_line())
    monkeypatch.setenv(
        "FAKE_DOCKER_CONTAINERS",
        json.dumps(
            {
                "mlflow-gateway-gateway-1": container(replica_log, "mlflow-gateway"),
                "mlflow-gateway-gateway-2": container(replica_log, "mlflow-gateway"),
                "other-gateway-1": container(replica_log, "other"),
            }
        ),
    )
    return calls


def test_service_reads_every_replica(fake_docker: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = run_json(
        capsys, "--service", "gateway", "--project", "mlflow-gateway", "--since", "2026-11-27"
    )
    assert report["sources"] == [
        "docker:mlflow-gateway-gateway-1",
        "docker:mlflow-gateway-gateway-2",
    ]
    assert report["totals"]["requests"] == 2
    calls = [json.loads(line) for line in fake_docker.read_text().splitlines()]
    assert [
        "ps",
        "--all",
        "--filter",
        "label=com.docker.compose.service=gateway",
        "--filter",
        "label=com.docker.compose.project=mlflow-gateway",
        "--format",
        "{{.Names}}",
    ] in calls
    assert ["logs", "--since", "2026-11-27T00:00:00.000Z", "mlflow-gateway-gateway-1"] in calls


def test_missing_container_or_service_is_named(
    fake_docker: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert analyze_costs(["--container", "typo-gateway"]) == 2
    assert "no container named 'typo-gateway'; see `docker ps -a`" in capsys.readouterr().err
    assert analyze_costs(["--service", "nginx"]) == 2
    assert "no containers for compose service 'nginx'" in capsys.readouterr().err


def test_auto_detection_falls_back_to_the_results_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "no-docker-here"))
    assert analyze_costs([]) == 2
    assert "no input: no container 'mlflow-gateway' and no ./gateway_results.json" in (
        capsys.readouterr().err
    )
    write_results(tmp_path / "gateway_results.json", GPT_4O_RESULT)
    assert run_json(capsys)["totals"]["cost_usd"] == 0.0035


def test_a_container_without_usage_lines_falls_back_like_the_seed(
    tmp_path: Path,
    fake_docker: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    empty_log = write_log(tmp_path / "empty.log")
    monkeypatch.setenv(
        "FAKE_DOCKER_CONTAINERS",
        json.dumps({"mlflow-gateway": container(empty_log)}),
    )
    monkeypatch.chdir(tmp_path)
    write_results(tmp_path / "gateway_results.json", GPT_4O_RESULT)
    assert analyze_costs(["--container", "mlflow-gateway", "--json"]) == 0
    output = capsys.readouterr()
    assert json.loads(output.out)["sources"] == ["results:gateway_results.json"]
    assert "No usage lines in docker:mlflow-gateway; falling back" in output.err


def _folded(lines: list[bytes], keep_all: bool, window: TimeWindow) -> tuple[Any, ...]:
    aggregator = Aggregator(window, keep_all_requests=keep_all)
    issues = ParseIssues()
    fold_log_lines("test", lines, issues, None, aggregator)
    cells = {key: repr(counters) for key, counters in aggregator.cells.items()}
    return (
        cells,
        aggregator.seen,
        aggregator.skipped_by_time,
        aggregator.first_ts,
        aggregator.last_ts,
        issues.count,
        [example["reason"] for example in issues.examples],
    )


def test_the_fast_path_folds_every_kind_of_line_as_the_general_path_does() -> None:
    """After the request sample fills, canonical lines skip the record object; keeping every
    request sends each line through the general path instead. Both must give the same cells,
    counts and refusals, for good lines and for each way a field can be wrong."""
    variants: list[dict[str, Any]] = [
        {},
        {"status": 500, "prompt_tokens": None, "completion_tokens": None},
        {"status": None},
        {"error": "client left", "status": 200},
        {"client": "team-a", "cached_tokens": 256, "reasoning_tokens": 30},
        {"model_returned": None},
        {"model_returned": None, "model_configured": None, "endpoint": None},
        {"prompt_tokens": 300_000},  # above the long-context tier start
        {"ts": "2026-11-27T11:00:00Z"},  # not the launcher's own format: general path
        {"ts": None},
        {"ts": "2026-11-28T00:00:00.000Z"},  # outside the window below
        {"prompt_tokens": True},  # each refused with its reason, by both paths
        {"prompt_tokens": 1.5},
        {"completion_tokens": -1},
        {"cached_tokens": "3"},
        {"status": "200"},
        {"client": 7},
        {"ts": 5},
    ]
    lines = [usage_line(**variants[n % len(variants)]).encode() for n in range(200)]
    for window in (TimeWindow(), TimeWindow("2026-11-27T00:00:00.000Z", "2026-11-28")):
        fast, general = _folded(lines, False, window), _folded(lines, True, window)
        assert fast == general
        first_bad = variants.index({"prompt_tokens": True})
        assert fast[5] == sum(n % len(variants) >= first_bad for n in range(200))


def test_a_line_with_a_key_twice_counts_its_last_value_on_both_paths() -> None:
    """JSON leaves duplicate keys open; every parser here keeps the last one."""
    line = usage_line().replace('"prompt_tokens": 1000', '"prompt_tokens": 1, "prompt_tokens": 7')
    lines = [line.encode()] * 40
    fast, general = _folded(lines, False, TimeWindow()), _folded(lines, True, TimeWindow())
    assert fast == general
    aggregator = Aggregator()
    fold_log_lines("test", lines, ParseIssues(), None, aggregator)
    assert sum(cell.prompt_tokens for cell in aggregator.cells.values()) == 7 * 40
