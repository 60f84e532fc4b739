"""playbooks/evaluate.yml against the deployed lab: what a user runs after a deploy.

Needs the lab with the gateway deployed (make lab-up && ansible-playbook deploy.yml);
skipped otherwise. Every run sends real requests to the lab's fake upstream.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab"))  # the lab helper's module
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "drills"))  # the lab drills' helpers
from drill_support import client_token, tunnel
from lab_access import REPO, Lab, run, running_lab

from conftest import unmet

pytestmark = pytest.mark.lab

PLAYBOOK = REPO / "playbooks" / "evaluate.yml"
SMOKE_PLAYBOOK = Path(__file__).resolve().parent / "smoke.yml"
HOSTS = ("gw-host-1", "gw-host-2")
BIN = Path(sys.executable).parent
HEALTH_PROBE = "import urllib.request as u; u.urlopen('http://127.0.0.1:5000/health', timeout=5)"


@pytest.fixture(scope="module")
def lab() -> Lab:
    lab = running_lab()
    for host in HOSTS:
        health = lab.ssh(host, f"python3 -c {HEALTH_PROBE!r}")
        if health.returncode != 0:
            unmet(f"the gateway is not deployed on {host}: ansible-playbook deploy.yml")
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
        summary = json.loads((run_dir / "results.json").read_text())["summary"]
        costs = json.loads((run_dir / "costs.json").read_text())
        assert summary["failed"] == 0
        requests += summary["requests"]
        logged += costs["totals"]["requests"]
        own_cost += summary["cost"]["total_usd"]
        logged_cost += costs["totals"]["cost_usd"]
        assert f"HTML report: {run_dir}/report.html" in result.stdout
        assert "<svg" in (run_dir / "report.html").read_text()
    # nginx spreads each host's requests over every host's replicas: the ledgers' totals agree.
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


HOSTILE_ENDPOINT = "[/x]<script>alert(1)</script>[bold red]"


def test_names_a_client_sends_are_shown_as_text_in_the_cost_report(
    lab: Lab, tmp_path: Path
) -> None:
    """A client names its endpoint in the URL or the body, so any client can put markup there:
    the gateway answers 404 and the ledger records the name, which the cost report of
    playbooks/costs.yml then shows. It must neither die on it (Rich markup) nor let it into the
    HTML. (A test file of evaluate.yml refuses such a name up front: it is not an endpoint.)"""
    since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    token = client_token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    chat = {"messages": [{"role": "user", "content": "hi"}]}
    # Six through the body, so that both hosts' replicas get some (nginx spreads requests over
    # the group) and each host's report shows the name, not only the merged one.
    with tunnel(lab) as url:
        sent = [
            *(
                requests.post(
                    f"{url}/v1/chat/completions",
                    json={**chat, "model": HOSTILE_ENDPOINT},
                    headers=headers,
                    timeout=30,
                )
                for _ in range(6)
            ),
            requests.post(
                f"{url}/gateway/{quote(HOSTILE_ENDPOINT, safe='')}/invocations",
                json=chat,
                headers=headers,
                timeout=30,
            ),
        ]
    # The body's name reaches the gateway (which refuses it: MLflow answers 500 to this one);
    # nginx answers the URL's itself (404 unknown_url: not an API path), so only the first is
    # in the ledger.
    assert sent[0].status_code >= 400 and "unknown_url" not in sent[0].text, sent[0].text
    assert sent[-1].status_code == 404, sent[-1].text
    result = play(
        REPO / "playbooks" / "costs.yml",
        tmp_path,
        "-e",
        f"costs_since={since}",
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    # nginx may have sent the request to either host's replicas: the merged report has it.
    (run_dir,) = (tmp_path / "costs" / "all-hosts").glob("2*/")
    costs = json.loads((run_dir / "costs.json").read_text())
    assert HOSTILE_ENDPOINT in {row["endpoint"] for row in costs["by_endpoint"]}
    html = (run_dir / "report.html").read_text()
    assert "<script>alert(1)" not in html
    assert "[/x]&lt;script&gt;alert(1)&lt;/script&gt;[bold red]" in html
    assert "[bold red]" in result.stdout, "the name is printed as it is, not as markup"
