"""playbooks/evaluate.yml against the deployed lab: what a user runs after a deploy.

Needs the lab with the gateway deployed (make lab-up && ansible-playbook deploy.yml);
skipped otherwise. Every run sends real requests to the lab's fake upstream.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab"))  # the lab helper's module
from lab_access import REPO, Lab, lab_or_skip, run

pytestmark = pytest.mark.lab

PLAYBOOK = REPO / "playbooks" / "evaluate.yml"
SMOKE_PLAYBOOK = Path(__file__).resolve().parent / "smoke.yml"
HOSTS = ("gw-host-1", "gw-host-2")
BIN = Path(sys.executable).parent
HEALTH_PROBE = "import urllib.request as u; u.urlopen('http://127.0.0.1:5000/health', timeout=5)"


@pytest.fixture(scope="module")
def lab() -> Lab:
    lab = lab_or_skip()
    for host in HOSTS:
        health = lab.ssh(host, f"python3 -c {HEALTH_PROBE!r}")
        if health.returncode != 0:
            pytest.skip(f"the gateway is not deployed on {host}: ansible-playbook deploy.yml")
    return lab


def play(playbook: Path, results: Path, *args: str) -> subprocess.CompletedProcess:
    return run(
        [
            str(BIN / "ansible-playbook"),
            str(playbook),
            "-e",
            f"gateway_evaluate_results_dir={results}",
            *args,
        ],
        timeout=600,
    )


RECAP = re.compile(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", re.MULTILINE)


def changed_by_host(stdout: str) -> dict[str, int]:
    return {host: int(changed) for host, changed in RECAP.findall(stdout)}


def runs_of(results: Path, host: str) -> list[Path]:
    return sorted(path for path in (results / host).glob("2*") if path.is_dir())


def test_evaluates_every_host_and_fetches_results_that_agree(lab: Lab, tmp_path: Path) -> None:
    result = play(
        PLAYBOOK,
        tmp_path,
        "-e",
        "gateway_evaluate_requests=12",
        "-e",
        "gateway_evaluate_stream=true",
    )
    assert result.returncode == 0, result.stdout[-3000:]
    own_cost = logged_cost = 0.0
    requests = logged = 0
    for host in HOSTS:
        (run_dir,) = runs_of(tmp_path, host)
        assert (tmp_path / host / "latest").resolve() == run_dir
        files = {path.name for path in run_dir.iterdir()}
        assert {"results.json", "costs.json", "report.html", "summary.txt"} <= files
        assert any(name.startswith("usage-") for name in files)
        summary = json.loads((run_dir / "results.json").read_text())["summary"]
        costs = json.loads((run_dir / "costs.json").read_text())
        assert summary["failed"] == 0
        requests += summary["requests"]
        logged += costs["totals"]["requests"]
        own_cost += summary["cost"]["total_usd"]
        logged_cost += costs["totals"]["cost_usd"]
        assert f"HTML report: {run_dir}/report.html" in result.stdout
        assert "<svg" in (run_dir / "report.html").read_text()
    # nginx spreads each host's requests over every host's replicas: the totals agree.
    assert logged == requests == 12 * len(HOSTS)
    assert logged_cost == pytest.approx(own_cost, abs=1e-9)
    assert logged_cost > 0


def test_a_budget_overrun_fails_the_play_after_keeping_the_results(
    lab: Lab, tmp_path: Path
) -> None:
    result = play(
        PLAYBOOK,
        tmp_path,
        "-e",
        "gateway_evaluate_requests=4",
        "-e",
        "gateway_evaluate_budget=0.0000001",
    )
    assert result.returncode != 0
    assert "Budget exceeded" in result.stdout
    assert all(runs_of(tmp_path, host) for host in HOSTS)


def test_an_unreachable_gateway_stops_before_anything_is_sent(lab: Lab, tmp_path: Path) -> None:
    result = play(PLAYBOOK, tmp_path, "-e", "gateway_evaluate_url=http://127.0.0.1:5999")
    assert result.returncode != 0
    assert "is not healthy" in result.stdout
    assert "Nothing was sent" in result.stdout
    assert not any(runs_of(tmp_path, host) for host in HOSTS if (tmp_path / host).exists())


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("gateway_evaluate_requests=0", "gateway_evaluate_requests=0"),
        ("gateway_evaluate_route=graphql", "graphql"),
        ("gateway_evaluate_budget=-1", "gateway_evaluate_budget is '-1'"),
        ("gateway_evaluate_test_file=missing.yaml", "which is not a file on the controller"),
    ],
)
def test_bad_settings_are_named_with_the_fix(
    lab: Lab, tmp_path: Path, setting: str, named: str
) -> None:
    result = play(PLAYBOOK, tmp_path, "-e", setting)
    assert result.returncode != 0
    assert named in result.stdout


def test_check_mode_sends_nothing(lab: Lab, tmp_path: Path) -> None:
    result = play(PLAYBOOK, tmp_path, "--check")
    assert result.returncode == 0, result.stdout[-3000:]
    assert not (tmp_path / HOSTS[0]).exists()


def test_the_post_deploy_smoke_evaluation_prints_its_cost_and_changes_nothing(
    lab: Lab, tmp_path: Path
) -> None:
    result = play(SMOKE_PLAYBOOK, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Smoke evaluation of gw-host-1: 3 of 3 chat requests ok" in result.stdout
    changed = changed_by_host(result.stdout)
    assert all(changed[host] == 0 for host in HOSTS), changed
    skipped = play(SMOKE_PLAYBOOK, tmp_path, "--skip-tags", "gateway_evaluate_smoke")
    assert "Smoke evaluation" not in skipped.stdout
    switched_off = play(SMOKE_PLAYBOOK, tmp_path, "-e", "gateway_evaluate_smoke=false")
    assert "Smoke evaluation" not in switched_off.stdout
