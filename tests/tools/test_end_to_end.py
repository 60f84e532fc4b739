"""The issue's acceptance run: 200 streamed requests at concurrency 20 through the launcher.

The results file (client side) and the usage log (gateway side) must agree token for
token, and analyze-costs must price both to the same total. Runs the installed console
scripts, as a user would.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import FakeOpenAI, LauncherGateway

SCRIPTS = Path(sys.executable).parent
TOKEN_FIELDS = ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens")


def console_script(name: str, *argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPTS / name), *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        check=False,
    )


def token_sums(records: list[dict[str, Any]]) -> dict[str, int]:
    return {field: sum(record[field] or 0 for record in records) for field in TOKEN_FIELDS}


def analyzed_totals(option: str, path: Path, cwd: Path) -> dict[str, Any]:
    result = console_script("analyze-costs", option, str(path), "--json", cwd=cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["totals"]


def test_results_file_and_usage_log_agree_exactly(
    gateway: LauncherGateway, fake: FakeOpenAI, tmp_path: Path
) -> None:
    gateway.mark()
    results_path = tmp_path / "gateway_results.json"
    evaluation = console_script(
        "evaluate-gateway",
        "--url",
        gateway.url,
        "--requests",
        "200",
        "--concurrency",
        "20",
        "--stream",
        "--output",
        str(results_path),
        cwd=tmp_path,
    )
    assert evaluation.returncode == 0, evaluation.stdout + evaluation.stderr
    results = json.loads(results_path.read_text())["requests"]
    assert len(results) == 200
    assert all(record["ok"] for record in results)
    assert sum(record["stream"] for record in results) == 100  # the two chat cases of four

    usage_lines = gateway.new_usage_lines(200)
    assert len(usage_lines) == 200, "exactly one usage line per request"
    log_path = tmp_path / "usage.log"
    log_path.write_text("".join(json.dumps(line) + "\n" for line in usage_lines))

    assert token_sums(results) == token_sums(usage_lines)
    assert token_sums(results)["cached_tokens"] > 0, "repeated prompts exercise cache pricing"
    from_results = analyzed_totals("--response-file", results_path, tmp_path)
    from_log = analyzed_totals("--log-file", log_path, tmp_path)
    assert from_results == from_log
    assert from_log["requests"] == 200
    assert from_log["cost_usd"] > 0
