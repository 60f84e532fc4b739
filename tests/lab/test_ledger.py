"""The usage ledger outlives every container: what one client spent stays exact through the
operations of weeks of production, and playbooks/costs.yml reports it for the period.

One client of its own (`ledger-proof`, a token of the lab inventory) sends plain and streamed
chats through gw-host-1's nginx (which spreads them over both hosts' replicas) while the lab is
scaled 3 -> 2, its replicas recreated (and the third brought back) by a Compose change,
restarted one by one and moved to another key; then a few requests the gateway answers with an
error (an unknown endpoint, a bad body, an upstream 500) and one whose client goes away before
the answer; then gw-host-1 is restarted (its Docker engine with it) and the deploy that
restores the lab runs under a second loop. Afterwards the costs playbook counts exactly the
client's requests, at evaluate-gateway's own cost to the last decimal.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "drills"))  # the lab drills' helpers
from drill_support import (
    HOST,
    NEXT_KEY,
    VENV_BIN,
    RequestLoop,
    deploy,
    deployed_lab,
    host_docker,
    inventory_vars,
    next_key_accepted,
    tunnel,
    upstream_control,
    wait_for,
)
from lab_access import REPO, Lab, run

from mlflow_gateway_tools.costs.aggregate import Aggregator
from mlflow_gateway_tools.costs.sources import record_from_result
from mlflow_gateway_tools.pricing import PriceTable
from mlflow_gateway_tools.timeutil import format_iso

pytestmark = pytest.mark.lab
__all__ = ["next_key_accepted"]  # a fixture the test asks for

CLIENT = "ledger-proof"
REPLICAS = 3


@pytest.fixture(scope="module")
def lab() -> Lab:
    return deployed_lab()


def own_token() -> str:
    tokens = inventory_vars().get("gateway_proxy_client_tokens") or {}
    assert CLIENT in tokens, f"the lab inventory gives no token to the client {CLIENT!r}"
    return tokens[CLIENT]


def evaluated_cost(loop: RequestLoop) -> Decimal:
    """What evaluate-gateway itself counts for the loop's requests (its own pricing path)."""
    aggregator = Aggregator()
    aggregator.add_all(record_from_result(r.as_dict(), "loop", None) for r in loop.requests)
    return aggregator.report(PriceTable.load()).cost


def healthy_replicas(lab: Lab) -> int:
    """Healthy gateway replicas on gw-host-1; 0 while its sshd or engine is still starting."""
    result = host_docker(
        lab,
        "ps",
        "--filter",
        "label=com.docker.compose.service=gateway",
        "--filter",
        "health=healthy",
        "--quiet",
    )
    return len(result.stdout.split()) if result.returncode == 0 else 0


def operate(*args: str) -> None:
    result = deploy(*args)
    assert result.returncode == 0, f"deploy.yml {' '.join(args)} failed:\n{result.stdout[-3000:]}"


def answered_with_errors(url: str, token: str, lab: Lab) -> int:
    """Requests the gateway answers with an error status, and one whose client leaves before
    the (slow) streamed answer comes: each is a request the ledger must hold once."""
    auth = {"Authorization": f"Bearer {token}"}
    chat = {"messages": [{"role": "user", "content": "ledger proof"}]}
    statuses = [
        requests.post(
            f"{url}/gateway/no-such-endpoint/invocations", json=chat, headers=auth
        ).status_code,
        requests.post(
            f"{url}/gateway/chat/invocations", json={"messages": 7}, headers=auth
        ).status_code,
    ]
    upstream_control(lab, "POST", "faults", {"status": 500, "count": 1})
    statuses.append(
        requests.post(f"{url}/gateway/chat/invocations", json=chat, headers=auth).status_code
    )
    assert statuses == [404, 422, 500], statuses
    # The client leaves before the upstream answers (late, and with an error, so the request
    # costs nothing whoever reads the answer): the gateway still answered it.
    upstream_control(lab, "POST", "faults", {"status": 500, "delay_ms": 3000, "count": 1})
    # Gone before the first byte of the body, or before the headers: either way the client left.
    with pytest.raises((requests.Timeout, requests.ConnectionError)):
        requests.post(
            f"{url}/gateway/chat/invocations",
            json={**chat, "stream": True},
            headers=auth,
            timeout=0.5,
        )
    return len(statuses) + 1


def costs_playbook(since: str, until: str, *options: str) -> tuple[int, str]:
    """playbooks/costs.yml as the README runs it (its default results directory): the exit
    code and the output."""
    result = run(
        [
            str(VENV_BIN / "ansible-playbook"),
            str(REPO / "playbooks" / "costs.yml"),
            "-e",
            f"costs_since={since}",
            "-e",
            f"costs_until={until}",
            *options,
        ],
        timeout=600,
    )
    return result.returncode, result.stdout + result.stderr


def merged_report(output: str) -> dict:
    """The all-hosts costs.json of the run whose output this is (it names its directory)."""
    match = re.search(r"Reports: (\S+)/ \(costs.json", output)
    assert match, f"the run names no reports directory:\n{output[-3000:]}"
    return json.loads((Path(match[1]) / "costs.json").read_text())


def client_row(report: dict) -> dict:
    rows = [row for row in report["by_client"] if row.get("client") == CLIENT]
    assert len(rows) == 1, f"no single row for {CLIENT!r} in {report['by_client']}"
    return rows[0]


@pytest.mark.usefixtures("next_key_accepted")
def test_costs_count_every_request_of_a_client_through_every_operation(lab: Lab) -> None:
    token = own_token()
    since = format_iso(datetime.now(UTC))
    restored = False
    try:
        with tunnel(lab) as url:
            with RequestLoop(url, token, stream_mode="alternate") as during_operations:
                for operation in (
                    ("--tags", "scale", "-e", "gateway_replicas=2"),
                    # A Compose change: every replica is recreated, and the third one is back.
                    ("-e", "gateway_cpus=0.9"),
                    ("--tags", "restart"),
                    ("--tags", "rotate-key", "-e", f"gateway_openai_api_key={NEXT_KEY}"),
                ):
                    with during_operations.during(f"deploy.yml {' '.join(operation)}"):
                        operate(*operation)
            assert during_operations.failures() == []
            extra = answered_with_errors(url, token, lab)

        # A reboot of gw-host-1: its Docker engine stops every container gracefully (the time
        # a service manager gives it) and brings them back by their restart policy.
        assert lab.docker("restart", "--time", "90", f"mgw-lab-{HOST}").returncode == 0
        wait_for(
            lambda: healthy_replicas(lab) == REPLICAS, "the replicas back after the reboot", 240
        )
        with (
            tunnel(lab) as url,
            RequestLoop(url, token) as after_reboot,
            after_reboot.during("the deploy back to the inventory"),
        ):
            operate()  # back to the inventory: the replicas recreated again, the key rotated back
            restored = True
        assert after_reboot.failures() == []
    finally:
        if not restored:  # leave the lab as the inventory says for the tests after this one
            deploy()
    until = format_iso(datetime.now(UTC) + timedelta(minutes=1))  # exclusive; nothing comes after

    returncode, output = costs_playbook(since, until)
    assert returncode == 0, output[-3000:]
    report = merged_report(output)

    loops = (during_operations, after_reboot)
    sent = sum(len(loop.requests) for loop in loops) + extra
    row = client_row(report)
    assert row["requests"] == sent
    assert Decimal(row["cost_usd_exact"]) == sum(evaluated_cost(loop) for loop in loops)
    assert report["malformed"]["count"] == 0

    # A budget below what the period cost fails the play and says by how much.
    budget = Decimal(report["totals"]["cost_usd_exact"]) / 2
    assert budget >= Decimal("0.01"), "enough was spent for a budget below it"
    returncode, output = costs_playbook(since, until, "-e", f"costs_budget={budget:.2f}")
    assert returncode != 0
    assert "Budget exceeded: total cost $" in output
    assert f"> --budget ${budget:,.2f}. The reports were kept in" in output
