"""The lab's gateway is closed by default: only clients with a token get in (letter case
included), only the API is exposed, and one client flooding it is held to its own limits at the
front door while another client sees no failure.

Runs against the deployment on gw-host-1 (ansible-playbook deploy.yml -e
gateway_evaluate_smoke=false first, under the lab lock), reached through the bastion the way a
client reaches production through Teleport. The clients and their limits are the lab
inventory's (inventory/lab/group_vars/gateway_hosts/main.yml).
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "drills"))  # the lab drills' helpers
from drill_support import (
    HOST,
    RequestLoop,
    deployed_lab,
    host_docker,
    inventory_vars,
    running_replicas,
    tunnel,
)
from lab_access import Lab

pytestmark = pytest.mark.lab

CHAT = {"messages": [{"role": "user", "content": "closed by default"}]}
API_ROUTES = [
    ("POST", "/gateway/chat/invocations", CHAT),
    ("POST", "/endpoints/chat/invocations", CHAT),
    ("POST", "/v1/chat/completions", {**CHAT, "model": "chat"}),
    ("POST", "/v1/embeddings", {"input": "closed", "model": "embeddings"}),
    ("GET", "/api/2.0/endpoints/", None),
]
HIDDEN = ["/", "/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect", "/metrics"]
FLOOD_CLIENT, STEADY_CLIENT = "limit-flood", "limit-steady"
FLOOD_SECONDS, FLOOD_CONCURRENCY = 8.0, 8


@pytest.fixture(scope="module")
def lab() -> Lab:
    return deployed_lab()


@pytest.fixture(scope="module")
def inventory() -> dict:
    return inventory_vars()


@pytest.fixture(scope="module")
def tokens(inventory: dict) -> dict[str, str]:
    tokens = inventory.get("gateway_proxy_client_tokens") or {}
    missing = {FLOOD_CLIENT, STEADY_CLIENT, "lab-demo"} - set(tokens)
    assert not missing, f"the lab inventory gives no token to {sorted(missing)}"
    return tokens


@pytest.fixture(scope="module")
def url(lab: Lab, tokens: dict[str, str]) -> Iterator[str]:
    with tunnel(lab) as url:
        # A deployment of an older checkout serves /openapi.json: these tests would say nothing.
        answer = requests.get(f"{url}/openapi.json", timeout=10)
        if answer.status_code != 404 or "unknown_url" not in answer.text:
            pytest.fail(
                f"{HOST} runs an nginx config from before closed-by-default (/openapi.json "
                f"answered {answer.status_code}): deploy this checkout first (ansible-playbook "
                "deploy.yml -e gateway_evaluate_smoke=false, under flock /tmp/mgw-lab.lock)"
            )
        yield url


def call(url: str, method: str, path: str, body: object, token: str | None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.request(method, url + path, json=body, headers=headers, timeout=30)


def test_without_a_token_every_api_route_but_health_answers_401(url: str) -> None:
    for method, path, body in API_ROUTES:
        answer = call(url, method, path, body, None)
        assert answer.status_code == 401, (path, answer.status_code, answer.text[:200])
        assert answer.json()["error"]["code"] == "invalid_api_key"
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert requests.get(f"{url}/health", timeout=10).status_code == 200


def test_a_token_in_other_letter_case_is_refused(url: str, tokens: dict[str, str]) -> None:
    token = tokens["lab-demo"]
    variants = {token.upper(), token.swapcase(), token[0].swapcase() + token[1:]} - {token}
    assert variants
    for variant in sorted(variants):
        answer = call(url, "POST", "/gateway/chat/invocations", CHAT, variant)
        assert answer.status_code == 401, (variant == token.upper(), answer.status_code)
    assert call(url, "POST", "/gateway/chat/invocations", CHAT, token).status_code == 200
    # The scheme, not the token, may come in any case (HTTP says so; the SDKs send "Bearer").
    answer = requests.post(
        f"{url}/gateway/chat/invocations",
        json=CHAT,
        headers={"Authorization": f"bearer {token}"},
        timeout=30,
    )
    assert answer.status_code == 200


def test_only_the_api_is_exposed(lab: Lab, url: str, tokens: dict[str, str]) -> None:
    for path in HIDDEN:
        for token in (None, tokens["lab-demo"]):
            answer = requests.get(
                url + path,
                headers={"Authorization": f"Bearer {token}"} if token else {},
                timeout=10,
            )
            assert answer.status_code == 404, (path, answer.status_code, answer.text[:200])
            assert answer.json()["error"]["code"] == "unknown_url"
            assert "mlflow" not in answer.text.lower()
    # Not because MLflow lacks them: a replica itself still serves its API description.
    replica = running_replicas(lab)[0]
    inside = host_docker(
        lab,
        "exec",
        replica,
        "python3",
        "-c",
        "'import urllib.request; print(urllib.request.urlopen("
        '"http://127.0.0.1:5000/openapi.json").status)\'',
    )
    assert inside.stdout.strip() == "200", inside.stdout + inside.stderr


def test_health_and_the_endpoint_list_work_with_a_token(url: str, tokens: dict[str, str]) -> None:
    token = tokens["lab-demo"]
    assert call(url, "GET", "/health", None, token).status_code == 200
    answer = call(url, "GET", "/api/2.0/endpoints/", None, token)
    assert answer.status_code == 200, answer.text[:200]
    names = {endpoint["name"] for endpoint in answer.json()["endpoints"]}
    assert {"chat", "completions", "embeddings"} <= names


@dataclass(frozen=True)
class Answer:
    status: int
    retry_after: str | None
    body: dict | None


def flood(url: str, token: str, seconds: float, concurrency: int) -> list[Answer]:
    """`concurrency` threads sending chats as fast as answers come, for `seconds`."""
    answers: list[Answer] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker() -> None:
        with requests.Session() as session:
            while time.monotonic() < deadline:
                response = session.post(
                    f"{url}/gateway/chat/invocations",
                    json=CHAT,
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=30,
                )
                try:
                    body = response.json()
                except ValueError:
                    body = None
                with lock:
                    answers.append(
                        Answer(response.status_code, response.headers.get("Retry-After"), body)
                    )

    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    return answers


def test_a_flooding_client_gets_429_while_another_client_has_no_failure(
    url: str, tokens: dict[str, str], inventory: dict
) -> None:
    limit = inventory["gateway_proxy_client_limits"][FLOOD_CLIENT]
    rate = int(str(limit["rate"]).removesuffix("r/s"))
    # The steady client is evaluate-gateway's own loop at the concurrency of the project's
    # zero-failure proofs (molecule, drills), back to back, on the default limits.
    with RequestLoop(
        url, tokens[STEADY_CLIENT], concurrency=4, stream_mode="alternate", rate=None
    ) as steady:
        started = time.monotonic()
        answers = flood(url, tokens[FLOOD_CLIENT], FLOOD_SECONDS, FLOOD_CONCURRENCY)
        elapsed = time.monotonic() - started
        steady_during = len(steady.records)
    statuses = [answer.status for answer in answers]
    limited = [answer for answer in answers if answer.status == 429]
    served = statuses.count(200)
    steady_rate = steady_during / elapsed
    print(
        f"\nflood as {FLOOD_CLIENT} ({limit}): {len(answers)} requests in {elapsed:.1f} s, "
        f"{served} answered 200, {len(limited)} answered 429, others "
        f"{sorted(s for s in statuses if s not in (200, 429))}; {STEADY_CLIENT}: "
        f"{len(steady.records)} requests ({steady_rate:.0f}/s during the flood), "
        f"{len(steady.failures())} failed"
    )
    assert set(statuses) <= {200, 429}, statuses
    assert limited, "the flooding client was never held back"
    for answer in limited:
        assert answer.retry_after is not None and int(answer.retry_after) >= 1
        assert answer.body is not None
        assert answer.body["error"]["type"] == "rate_limit_error"
        assert answer.body["error"]["code"] == "rate_limit_exceeded"
    # Counted once for the host (its 3 replicas x 4 workers share one count): at most the
    # rate over the flood plus the burst, where per-worker counting would allow 12 times that.
    assert served <= math.ceil(rate * elapsed) + int(limit["burst"]) + 2, served
    assert served >= rate * elapsed * 0.5, served
    assert steady.failures() == [], steady.failures()[:5]
    assert steady_during >= 20


PEER_PROBE = """
import sys, urllib.error, urllib.request
request = urllib.request.Request(sys.argv[1], data=b"{}", method="POST", headers={
    "Content-Type": "application/json", "X-Gateway-Client": "lab-demo"})
try:
    print(urllib.request.urlopen(request, timeout=10).status)
except urllib.error.HTTPError as error:
    print(error.code, error.read().decode())
"""


def test_the_peer_port_listens_on_the_advertised_address_and_wants_the_secret(lab: Lab) -> None:
    """gw-host-1 publishes its peer port on the address gw-host-2 knows it by, not on every
    address; from gw-host-2 (an allowed address), a forged client name without the hosts'
    shared secret is refused."""
    inspected = host_docker(
        lab, "inspect", "--format", "'{{json .HostConfig.PortBindings}}'", "mlflow-gateway-nginx-1"
    )
    assert inspected.returncode == 0, inspected.stderr
    bindings = json.loads(inspected.stdout)
    peer_ips = [binding["HostIp"] for binding in bindings.get("5001/tcp", [])]
    assert len(peer_ips) == 1 and peer_ips[0] not in ("", "0.0.0.0", "::"), bindings
    probe = lab.ssh(
        "gw-host-2",
        f"python3 -c '{PEER_PROBE}' http://{peer_ips[0]}:5001/v1/chat/completions",
    )
    assert probe.returncode == 0, probe.stderr
    status, _, body = probe.stdout.strip().partition(" ")
    assert status == "403", probe.stdout
    assert json.loads(body)["error"]["code"] == "peer_secret_mismatch"
