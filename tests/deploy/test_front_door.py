"""The front nginx as rendered, running for real in the role's nginx image with a stand-in
replica: tokens compared exactly, only the API passed on, per-client limits with 429s.

No lab: the rendered nginx.conf gets one extra server, the "replica", that answers with the
headers it received (so the test also sees the token removed and the client named); the
container publishes the front port on 127.0.0.1 only.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from test_templates import nginx_image, render

from conftest import free_port, wait_until

pytestmark = pytest.mark.docker

REPLICA = "mlflow-gateway-gateway-1"
REPLICA_PORT = 5002
STAND_IN = """
    # Test only: the stand-in replica (slow.json is served at 400 bytes/s: 2.5 s).
    server {
        listen 5002;
        location = /v1/slow {
            limit_rate 400;
            alias /etc/nginx/mlflow-gateway/slow.json;
        }
        location / {
            set $c $http_x_gateway_client;
            set $s $http_x_gateway_peer_secret;
            return 200 '{"client":"$c","authorization":"$http_authorization","peer_secret":"$s"}';
        }
    }
}
"""
TOKENS = {
    "upper": "Lab-Fake-Token-0123.ab+c",
    "lower": "lab-fake-token-0123.ab+c",
    "single": "lab-fake-token-single-0123",
}
# One request in flight is one: a sequential client's next request can reach another nginx
# worker a moment before the worker that answered the previous one has counted it done.
LIMITS = {
    "lower": {"rate": "2r/s", "burst": 2, "in_flight": 4},
    "single": {"rate": "100r/s", "burst": 100, "in_flight": 1},
}


@contextmanager
def front_door(directory: Path, peer_port: int | None = None, **settings: object) -> Iterator[str]:
    """nginx as rendered with SETTINGS, its front port on 127.0.0.1 (and its peer listener on
    127.0.0.1:PEER_PORT when given); yields the front URL."""
    image = nginx_image()
    out = render(
        directory,
        gateway_proxy_replica_port=REPLICA_PORT,
        gateway_proxy_replicas=[REPLICA],
        **settings,
    )
    conf = (out / "nginx.conf").read_text().rstrip()
    assert conf.endswith("}")
    (out / "nginx.conf").write_text(conf[:-1] + STAND_IN)
    (out / "slow.json").write_text("x" * 1000)
    out.chmod(0o755)
    for path in out.iterdir():
        path.chmod(0o644)
    name = f"mgw-test-front-{uuid.uuid4().hex[:8]}"
    port = free_port()
    started = subprocess.run(
        ["docker", "run", "--detach", "--name", name, f"--add-host={REPLICA}:127.0.0.1",
         "--publish", f"127.0.0.1:{port}:5000",
         *(["--publish", f"127.0.0.1:{peer_port}:5001"] if peer_port else []),
         "--volume", f"{out}:/etc/nginx/mlflow-gateway:ro", image,
         "nginx", "-c", "/etc/nginx/mlflow-gateway/nginx.conf", "-g", "daemon off;"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_until(lambda: requests.get(f"{url}/nginx-health", timeout=2).ok, "nginx", 30)
        except AssertionError as error:
            logs = subprocess.run(
                ["docker", "logs", name], capture_output=True, text=True, check=False
            )
            raise AssertionError(f"{error}; nginx said: {logs.stderr[-2000:]}") from None
        yield url
    finally:
        subprocess.run(["docker", "rm", "--force", name], capture_output=True, check=False)


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with front_door(
        tmp_path_factory.mktemp("front"),
        gateway_proxy_client_tokens=TOKENS,
        gateway_proxy_client_limits=LIMITS,
    ) as url:
        yield url


def get(url: str, path: str, token: str | None = None, scheme: str = "Bearer") -> requests.Response:
    headers = {"Authorization": f"{scheme} {token}"} if token else {}
    return requests.get(url + path, headers=headers, timeout=10)


def test_tokens_differing_only_in_case_are_two_clients_and_no_third(url: str) -> None:
    assert get(url, "/v1/chat/completions", TOKENS["upper"]).json()["client"] == "upper"
    assert get(url, "/gateway/chat/invocations", TOKENS["lower"]).json()["client"] == "lower"
    for near in (
        "LAB-FAKE-TOKEN-0123.AB+C",
        "lab-fake-token-0123Xab+c",
        "Lab-fake-Token-0123.ab+c",
    ):
        answer = get(url, "/v1/chat/completions", near)
        assert answer.status_code == 401, near
        assert answer.json()["error"]["code"] == "invalid_api_key"
    # The scheme in any case; the token never reaches the replica.
    answer = get(url, "/endpoints/chat/invocations", TOKENS["upper"], scheme="bearer")
    assert answer.json() == {"client": "upper", "authorization": "", "peer_secret": ""}


def test_only_the_api_reaches_the_replicas(url: str) -> None:
    for path in ("/v1/models", "/gateway/chat/invocations", "/api/2.0/endpoints/"):
        assert get(url, path).status_code == 401, path
        assert get(url, path, TOKENS["upper"]).status_code == 200, path
    assert get(url, "/health").json()["client"] == ""  # open, as before
    for path in ("/", "/docs", "/openapi.json", "/gateway/chat", "/api/2.0/gateway/routes/"):
        answer = get(url, path, TOKENS["upper"])
        assert answer.status_code == 404, path
        assert answer.json()["error"]["code"] == "unknown_url"


def test_a_client_over_its_rate_gets_429_and_another_client_does_not(url: str) -> None:
    time.sleep(1.5)  # the earlier tests' requests of client lower are forgotten
    flooded = [get(url, "/v1/chat/completions", TOKENS["lower"]) for _ in range(10)]
    other = [get(url, "/v1/chat/completions", TOKENS["upper"]) for _ in range(10)]
    statuses = [answer.status_code for answer in flooded]
    # 2 r/s with a burst of 2: the first three pass, the rest within the same second do not.
    assert statuses.count(200) in (3, 4), statuses
    assert statuses.count(429) >= 6, statuses
    refused = flooded[-1]
    assert refused.headers["Retry-After"] == "1"
    assert re.fullmatch(r"[0-9a-f]{32}", refused.headers["X-Request-ID"])
    assert refused.json()["error"] == {
        "message": "Rate limit exceeded: this client sent more requests than its rate allows."
        " Retry after 1 s.",
        "type": "rate_limit_error",
        "code": "rate_limit_exceeded",
    }
    assert [answer.status_code for answer in other] == [200] * 10


def test_a_client_over_its_requests_in_flight_gets_429(url: str) -> None:
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(get, url, "/v1/slow", TOKENS["single"])
        time.sleep(0.5)
        second = get(url, "/v1/chat/completions", TOKENS["single"])
        assert second.status_code == 429
        assert "too many requests in flight" in second.json()["error"]["message"]
        assert get(url, "/v1/chat/completions", TOKENS["upper"]).status_code == 200
        assert slow.result().status_code == 200


def test_anonymous_requests_are_limited_per_address(tmp_path: Path) -> None:
    with front_door(
        tmp_path,
        gateway_proxy_allow_anonymous=True,
        gateway_proxy_client_limit_default={"rate": "60r/m", "burst": 1, "in_flight": 4},
    ) as url:
        statuses = [get(url, "/v1/chat/completions").status_code for _ in range(5)]
        assert statuses[:2] == [200, 200] and statuses[2:] == [429] * 3, statuses
        assert get(url, "/v1/chat/completions").headers["Retry-After"] == "1"


PEER_SECRET = "0123456789abcdef0123456789abcdef"  # a stand-in of openssl rand -hex 16's shape


def docker_bridge_gateway() -> str:
    """The address requests to a port Docker publishes on 127.0.0.1 come from, inside."""
    inspected = subprocess.run(
        ["docker", "network", "inspect", "bridge", "--format", "{{json .IPAM.Config}}"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    config = json.loads(inspected.stdout)[0]
    # Some engines (Debian's docker.io 20.10 on a fresh start) leave Gateway out of the
    # default bridge's IPAM config; Docker gives the bridge the subnet's first address.
    return config.get("Gateway") or str(ipaddress.ip_network(config["Subnet"])[1])


def test_the_peer_port_answers_only_requests_with_the_hosts_shared_secret(tmp_path: Path) -> None:
    """The peer listener trusts a forwarded client name only with the secret, from an allowed
    address; the front door sends the secret, and no replica ever receives it."""
    peer_port = free_port()
    with front_door(
        tmp_path,
        peer_port=peer_port,
        gateway_proxy_client_tokens=TOKENS,
        # The "peer" is where the test's requests come from, so the address check lets them in
        # and only the secret decides.
        gateway_proxy_peers=[{"host": "gw-other", "address": docker_bridge_gateway(), "weight": 1}],
        gateway_proxy_peer_secret=PEER_SECRET,
    ) as url:
        peer = f"http://127.0.0.1:{peer_port}/v1/chat/completions"
        forged = {"X-Gateway-Client": "someone-else"}
        for headers in (
            forged,
            {**forged, "X-Gateway-Peer-Secret": PEER_SECRET.upper()},
            {**forged, "X-Gateway-Peer-Secret": PEER_SECRET[:-1]},
            {**forged, "X-Gateway-Peer-Secret": PEER_SECRET + "0"},
        ):
            answer = requests.get(peer, headers=headers, timeout=10)
            assert answer.status_code == 403, headers
            assert answer.json()["error"]["code"] == "peer_secret_mismatch"
        trusted = requests.get(
            peer, headers={**forged, "X-Gateway-Peer-Secret": PEER_SECRET}, timeout=10
        )
        assert trusted.json() == {"client": "someone-else", "authorization": "", "peer_secret": ""}
        # A client at the front door reaches the replicas through the peer listeners (this
        # host's, since the other "peer" does not listen), named by its token, not its header.
        answer = requests.get(
            f"{url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {TOKENS['upper']}", **forged},
            timeout=10,
        )
        assert answer.json() == {"client": "upper", "authorization": "", "peer_secret": ""}
