"""Fault drills against the deployed lab (make drills: lab up, deploy prod mode, then these).

Each runs under a steady request loop sent from the controller through the bastion to
gw-host-1's nginx, and reports failed requests and recovery time (results/drills/<day>.md).
They change the lab's deployment and put it back as it was: run them when nobody else is
deploying to the lab.

    .venv/bin/pytest -m drill tests/drills
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from drill_support import (
    HOST,
    LAB_KEY,
    NEXT_KEY,
    PROJECT,
    RequestLoop,
    client_token,
    deploy,
    host_docker,
    inventory_vars,
    next_key_accepted,
    only_when_asked_for,
    report,
    running_replicas,
    tool,
    tunnel,
    upstream_control,
    wait_for,
)
from lab_access import Lab, running_lab

from conftest import unmet

pytestmark = [pytest.mark.drill, pytest.mark.lab]
# Fixtures imported to apply here: an autouse one, and one the rotation test asks for.
__all__ = ["next_key_accepted", "only_when_asked_for"]

HOSTS = ("gw-host-1", "gw-host-2")
NGINX = f"{PROJECT}-nginx-1"
NGINX_CONF = f"/opt/{PROJECT}/nginx/nginx.conf"
KEY_FILE = f"/opt/{PROJECT}/secrets/openai_api_key"
REJECTED_KEY = "sk-lab-fake-key-9"
ENGINE_RESTART_LIMIT_S = 60
BURST = 5


@pytest.fixture(scope="module")
def lab() -> Lab:
    lab = running_lab()
    if not running_replicas(lab):
        unmet(f"nothing deployed on {HOST}: run ansible-playbook deploy.yml (make drills does)")
    return lab


@pytest.fixture(scope="module")
def gateway_url(lab: Lab) -> Iterator[str]:
    with tunnel(lab) as url:
        yield url


@pytest.fixture(scope="module")
def token(lab: Lab) -> str | None:
    return client_token()


def key_fingerprint(lab: Lab) -> str:
    """The key file's checksum on the host (the key itself is never read here)."""
    result = lab.ssh(HOST, f"sudo sha256sum {KEY_FILE}")
    assert result.returncode == 0, result.stderr
    return result.stdout.split()[0]


def assert_deployed(result: subprocess.CompletedProcess[str], what: str) -> None:
    assert result.returncode == 0, f"{what} failed:\n{result.stdout[-3000:]}"


def test_rolling_restart_fails_no_request(lab: Lab, gateway_url: str, token: str | None) -> None:
    with RequestLoop(gateway_url, token) as loop, loop.during("the rolling restart"):
        started = time.monotonic()
        result = deploy("--tags", "restart")
        seconds = time.monotonic() - started
    report("rolling restart (deploy.yml --tags restart)", loop, None, f"took {seconds:.0f} s")
    assert_deployed(result, "the rolling restart")
    assert loop.failures() == []


@pytest.mark.usefixtures("next_key_accepted")
def test_key_rotation_fails_no_request(lab: Lab, gateway_url: str, token: str | None) -> None:
    before = key_fingerprint(lab)
    with RequestLoop(gateway_url, token) as loop:
        with loop.during("the rotation to the next key"):
            to_next = deploy("--tags", "rotate-key", "-e", f"gateway_openai_api_key={NEXT_KEY}")
        rotated = key_fingerprint(lab)
        with loop.during("the rotation back"):
            back = deploy("--tags", "rotate-key", "-e", f"gateway_openai_api_key={LAB_KEY}")
    report("rotate the key to an accepted one and back", loop, None)
    assert_deployed(to_next, "rotating to the next key")
    assert_deployed(back, "rotating back to the lab key")
    assert rotated != before
    assert key_fingerprint(lab) == before
    assert loop.failures() == []


@pytest.mark.parametrize("checked_first", [True, False], ids=["key-checked", "key-unchecked"])
def test_a_key_the_upstream_rejects_is_refused_and_the_old_key_serves(
    lab: Lab, gateway_url: str, token: str | None, checked_first: bool
) -> None:
    """Checked first: refused before anything changes. Unchecked: refused by the first
    restarted replica's proof; the previous key goes back."""
    if checked_first and inventory_vars().get("gateway_openai_api_key_check") is False:
        pytest.skip("the lab inventory turns the host-side key check off (hosts lack the lab CA)")
    before = key_fingerprint(lab)
    extra = ("-e", f"gateway_openai_api_key_check={str(checked_first).lower()}")
    with RequestLoop(gateway_url, token) as loop, loop.during("the refused rotation"):
        result = deploy(
            "--tags", "rotate-key", "-e", f"gateway_openai_api_key={REJECTED_KEY}", *extra
        )
    where = "by the key check" if checked_first else "by the first replica's proof, rolled back"
    report(f"rotate to a key the upstream rejects ({where})", loop, None)
    output = result.stdout + result.stderr
    assert result.returncode != 0, "a rejected key must stop the rotation"
    if checked_first:  # refused before anything changed
        assert "refused the OpenAI key (HTTP" in output, output[-3000:]
    else:  # written, refused by the proof, then rolled back
        assert "Rotating the OpenAI key FAILED at" in output, output[-3000:]
        assert "The previous key is back in place and every replica was restarted" in output
    assert REJECTED_KEY not in output, "the key must never be printed"
    assert key_fingerprint(lab) == before, "the previous key must stay in place"
    assert loop.failures() == []


def test_killing_a_replica_fails_only_requests_in_flight(
    lab: Lab, gateway_url: str, token: str | None
) -> None:
    replicas = running_replicas(lab)
    victim = replicas[-1]
    # Back to back (no rate): as many requests in flight as possible when the replica dies.
    with RequestLoop(gateway_url, token, concurrency=8, rate=None) as loop:
        killed_from = time.time()
        assert host_docker(lab, "kill", victim).returncode == 0
        killed = time.time()
        wait_for(lambda: loop.ok_after(killed, count=50), "50 answers after the kill", 60)
        redeploy_from = time.time()
        restored = deploy()
        redeploy_seconds = time.time() - redeploy_from
    assert_deployed(restored, "the deploy that brings the replica back")
    before_kill = loop.failures(until=killed_from)
    in_flight = [r for r in loop.failures(until=killed) if r.ended >= killed_from]
    late = loop.failures(since=killed, until=redeploy_from)
    during_redeploy = loop.failures(since=redeploy_from)
    report(
        f"docker kill one replica ({victim}), then deploy.yml brings it back",
        loop,
        redeploy_seconds,
        f"{len(in_flight)} failed in flight {dict(Counter(r.status for r in in_flight))}, "
        f"{len(late)} after the kill, {len(during_redeploy)} during the redeploy; recovery = "
        "the redeploy (Docker does not restart a container killed by hand)",
    )
    assert before_kill == []
    assert late == [], "no request may fail once the replica is dead"
    assert during_redeploy == []
    assert len(running_replicas(lab)) == len(replicas)


def test_docker_engine_restart_service_back_within_60s(
    lab: Lab, gateway_url: str, token: str | None
) -> None:
    """The lab's hosts run dockerd under their start script, which stops the host when dockerd
    exits; restarting the host container restarts its engine (and sshd): the lab's nearest
    thing to `systemctl restart docker`. The loop's tunnel ends at the bastion, so it lives on.
    The containers come back by their restart policy, not by a deploy."""
    with RequestLoop(gateway_url, token) as loop:
        restarted = time.time()
        # Time enough for the engine's own graceful stop (the replicas' 40 s), as a service
        # manager gives it; a kill half-way through is a crash, not a restart.
        assert lab.docker("restart", "--time", "90", f"mgw-lab-{HOST}").returncode == 0
        wait_for(lambda: loop.steady_for(15), "15 s without a failed request", 240)
    back = (loop.clean_since() or restarted) - restarted
    failed = loop.failures(since=restarted)
    statuses = dict(Counter(r.status for r in failed))
    report("restart the Docker engine on the host", loop, back, f"{len(failed)} failed {statuses}")
    assert loop.failures(until=restarted) == []
    assert back <= ENGINE_RESTART_LIMIT_S
    assert len(running_replicas(lab)) >= 1


def usage_lines_since(lab: Lab, since: str) -> list[dict]:
    """Every replica's usage-log lines since `since`, on every host (nginx spreads requests
    over all of them)."""
    lines = []
    for host in HOSTS:
        for replica in running_replicas(lab, host):
            result = lab.ssh(host, f"docker logs --since {since} {replica} 2>/dev/null")
            lines += [
                json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")
            ]
    return lines


def test_upstream_429_and_500_bursts_reach_clients_and_cost_nothing(
    lab: Lab, gateway_url: str, token: str | None, tmp_path: Path
) -> None:
    with RequestLoop(gateway_url, token) as loop:
        since = lab.ssh(HOST, "date -u +%Y-%m-%dT%H:%M:%S.%NZ").stdout.strip()
        queued = time.time()
        upstream_control(lab, "POST", "faults", {"status": 429, "count": BURST})
        upstream_control(lab, "POST", "faults", {"status": 500, "count": BURST})
        wait_for(lambda: len(loop.failures()) >= 2 * BURST, "both bursts to reach clients", 60)
        wait_for(lambda: loop.steady_for(3), "answers after the bursts", 60)
    seen = Counter(r.status for r in loop.failures())
    back = (loop.clean_since() or queued) - queued
    report(
        "upstream 429 x5 then 500 x5 (lab, TLS upstream behind egress)", loop, back, f"{dict(seen)}"
    )
    assert seen == {429: BURST, 500: BURST}

    errors = [line for line in usage_lines_since(lab, since) if line["status"] >= 400]
    assert Counter(line["status"] for line in errors) == {429: BURST, 500: BURST}
    error_log = tmp_path / "errors.log"
    error_log.write_text("".join(json.dumps(line) + "\n" for line in errors))
    totals = json.loads(
        tool("analyze-costs", "--log-file", str(error_log), "--json", check=True).stdout
    )["totals"]
    assert totals["failed"] == 2 * BURST
    assert totals["cost_usd"] == 0


def nginx_conf_sum(lab: Lab) -> str:
    return lab.ssh(HOST, f"sha256sum {NGINX_CONF}").stdout.split()[0]


def test_an_invalid_nginx_config_on_the_host_is_not_loaded_and_deploy_restores_it(
    lab: Lab, gateway_url: str, token: str | None
) -> None:
    good = nginx_conf_sum(lab)
    with RequestLoop(gateway_url, token) as loop:
        broken_at = time.time()
        broken = lab.ssh(HOST, f"echo 'this is not nginx;' | sudo tee -a {NGINX_CONF} >/dev/null")
        assert broken.returncode == 0, broken.stderr
        # What an admin's reload would do: nginx refuses the file and keeps its workers.
        assert host_docker(lab, "kill", "--signal", "HUP", NGINX).returncode == 0
        hupped = time.time()
        wait_for(lambda: loop.ok_after(hupped, count=20), "answers after the refused reload", 60)
        redeploy_from = time.time()
        restored = deploy()
        seconds = time.time() - redeploy_from
    refused = host_docker(lab, "logs", "--since", str(int(broken_at)), NGINX).stderr
    report(
        "nginx config made invalid on the host, reload attempted, then deploy.yml",
        loop,
        seconds,
        f"{len(loop.failures(since=broken_at, until=redeploy_from))} failed before the deploy, "
        f"{len(loop.failures(since=redeploy_from))} during it; recovery = the deploy restoring it",
    )
    assert "emerg" in refused, "nginx must have refused the broken file"
    assert_deployed(restored, "the deploy that restores the nginx config")
    assert nginx_conf_sum(lab) == good
    conf = "/etc/nginx/mlflow-gateway/nginx.conf"
    assert host_docker(lab, "exec", NGINX, "nginx", "-t", "-q", "-c", conf).returncode == 0
    assert loop.failures() == []


def test_a_deploy_that_would_write_an_invalid_nginx_config_is_refused(
    lab: Lab, gateway_url: str, token: str | None
) -> None:
    good = nginx_conf_sum(lab)
    with RequestLoop(gateway_url, token) as loop:
        # One word nginx -t rejects ("32x" is not a size).
        result = deploy("-e", "gateway_proxy_client_max_body_size=32x")
    changed = nginx_conf_sum(lab) != good
    if changed or result.returncode == 0:
        deploy()  # never leave the lab with a config that was let through
    report(
        "deploy with a value nginx -t refuses",
        loop,
        None,
        "previous files kept, nginx not reloaded",
    )
    assert result.returncode != 0
    assert '"client_max_body_size" directive invalid value' in result.stdout
    assert not changed
    assert loop.failures() == []
