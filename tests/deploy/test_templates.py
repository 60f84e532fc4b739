"""What the gateway roles write: the nginx front, the egress proxy, the Compose file, config.yaml.

Templates are rendered by Ansible as the roles render them; the nginx files are then checked
by `nginx -t` and the Compose file by `docker compose config` when those are available.
"""

from __future__ import annotations

import functools
import hashlib
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import unmet
from playbook_runner import run_local_playbook

ROOT = Path(__file__).resolve().parents[2]
PLAY = Path(__file__).with_name("render.yml")
BASE = {
    "gateway_service_image": "mlflow-gateway/gateway:test",
    "gateway_nginx_image": "mlflow-gateway/nginx:test",
    "gateway_proxy_replicas": ["mlflow-gateway-gateway-1", "mlflow-gateway-gateway-2"],
}


def render(tmp_path: Path, **settings: Any) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    variables = {**BASE, **settings, "out_dir": str(tmp_path)}
    result = run_local_playbook(PLAY, variables, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return tmp_path


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files as the defaults (prod mode, egress on, no client tokens) render them."""
    return render(tmp_path_factory.mktemp("defaults"))


NGINX_CONTEXT = ROOT / "roles" / "gateway_image" / "files" / "nginx"
# Bases the role's nginx Dockerfile builds on here: the lab's own Debian (scripts/lab images,
# offline) or the official image (where Docker Hub answers).
CHECK_IMAGE_BASES = ("mgw-lab/debian:bookworm", "nginx:1.28-bookworm")


def _docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def _image_exists(name: str) -> bool:
    return _docker("image", "inspect", name).returncode == 0


@functools.cache
def _nginx_image_or_reason() -> tuple[str | None, str]:
    """An nginx image as the gateway_image role builds it: one a deploy built, else one built
    here once from the role's own build context (about 45 s) on a base this machine has; or
    None and why not."""
    if shutil.which("docker") is None or _docker("info").returncode != 0:
        return None, "no Docker engine answers (make bootstrap starts one)"
    listed = _docker("images", "--format", "{{.Repository}}:{{.Tag}}", "mlflow-gateway/nginx")
    images = listed.stdout.split()
    if listed.returncode == 0 and images:
        return images[0], ""
    files = sorted(path for path in NGINX_CONTEXT.iterdir() if path.is_file())
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in files)).hexdigest()[:12]
    tag = f"mlflow-gateway-test/nginx-check:{digest}"
    if _image_exists(tag):
        return tag, ""
    bases = [base for base in CHECK_IMAGE_BASES if _image_exists(base)]
    if not bases:
        return None, (
            f"no base to build it from ({' or '.join(CHECK_IMAGE_BASES)}; "
            "scripts/lab images debian builds the first)"
        )
    with tempfile.TemporaryDirectory() as scratch:
        context = Path(scratch) / "context"
        shutil.copytree(NGINX_CONTEXT, context)  # the role's whole context: Dockerfile and files
        (context / "ca").mkdir()
        built = _docker(
            "build", "--quiet", "--build-arg", f"BASE_IMAGE={bases[0]}", "--tag", tag,
            str(context), timeout=600,
        )  # fmt: skip
    if built.returncode != 0:
        return None, f"building it on {bases[0]} failed: {built.stderr.strip()[-800:]}"
    return tag, ""


def nginx_image() -> str:
    """The nginx image for `nginx -t` and the front-door tests; unmet (a failure in CI) when
    there is none, saying why."""
    image, reason = _nginx_image_or_reason()
    if image is None:
        unmet(f"no nginx image for the nginx checks: {reason}")
    return image


def nginx_t(directory: Path, config: str, hosts: list[str]) -> subprocess.CompletedProcess:
    image = nginx_image()
    add_hosts = [f"--add-host={host}:127.0.0.1" for host in hosts]
    return subprocess.run(
        ["docker", "run", "--rm", "--network=none", *add_hosts,
         "--volume", f"{directory}:/etc/nginx/mlflow-gateway:ro",
         image, "nginx", "-t", "-q", "-c", f"/etc/nginx/mlflow-gateway/{config}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip


def test_nginx_sends_to_every_replica_and_strips_the_token(rendered: Path) -> None:
    conf = (rendered / "nginx.conf").read_text()
    assert "server mlflow-gateway-gateway-1:5000" in conf
    assert "server mlflow-gateway-gateway-2:5000" in conf
    assert 'proxy_set_header Authorization "";' in conf
    assert "proxy_set_header X-Gateway-Client $gateway_client;" in conf
    assert "proxy_buffering off;" in conf
    assert "proxy_next_upstream error timeout http_502 http_503;" in conf
    assert "non_idempotent" not in conf.replace("(no non_idempotent)", "")
    # Reload safety: no client keep-alive, no upstream keep-alive by default.
    assert "keepalive_timeout 0;" in conf
    assert "proxy_set_header Connection close;" in conf
    assert re.search(r"^\s*keepalive \d+;", conf, re.MULTILINE) is None


def test_without_tokens_the_file_is_closed_unless_anonymous_on_purpose(
    rendered: Path, tmp_path: Path
) -> None:
    # The preflight refuses it first; should a file be rendered anyway, it lets nobody in.
    assert (rendered / "nginx.conf").read_text().count("return 401") == 3
    anonymous = render(tmp_path, gateway_proxy_allow_anonymous=True)
    assert "return 401" not in (anonymous / "nginx.conf").read_text()


def test_client_tokens_turn_unknown_callers_away(tmp_path: Path) -> None:
    out = render(tmp_path, gateway_proxy_client_tokens={"alice": "alice-token-0123456789"})
    assert 'return 401 \'{"error":' in (out / "nginx.conf").read_text()
    assert (
        '"~^(?i:bearer) alice\\-token\\-0123456789$" "alice";' in (out / "clients.map").read_text()
    )


CASE_TWINS = {"upper": "Lab-Fake-Token-0123.ab+c", "lower": "lab-fake-token-0123.ab+c"}


def token_entries(clients_map: str) -> list[tuple[str, str]]:
    """The (regex, client) entries of a rendered clients.map."""
    return re.findall(r'^"~(.+)" "(.+)";$', clients_map, re.MULTILINE)


def client_of(entries: list[tuple[str, str]], header: str) -> str:
    """The client nginx's map gives for an Authorization header ("" for none), matched as
    nginx does: the regex entries in order, the first that matches."""
    return next((name for regex, name in entries if re.search(regex, header)), "")


def test_tokens_are_compared_exactly_letter_case_included(tmp_path: Path) -> None:
    out = render(tmp_path, gateway_proxy_client_tokens=CASE_TWINS)
    entries = token_entries((out / "clients.map").read_text())
    assert [name for _, name in entries] == ["lower", "upper"]
    assert client_of(entries, "Bearer Lab-Fake-Token-0123.ab+c") == "upper"
    assert client_of(entries, "Bearer lab-fake-token-0123.ab+c") == "lower"
    assert client_of(entries, "bearer lab-fake-token-0123.ab+c") == "lower"  # the scheme: any case
    for near_miss in (
        "Bearer LAB-FAKE-TOKEN-0123.AB+C",
        "Bearer lab-fake-token-0123Xab+c",  # "." is no wildcard
        "Bearer lab-fake-token-0123.ab+cc",
        "Bearer xlab-fake-token-0123.ab+c",
        "lab-fake-token-0123.ab+c",
        "Basic lab-fake-token-0123.ab+c",
    ):
        assert client_of(entries, near_miss) == "", near_miss


def test_the_access_log_never_carries_the_token(rendered: Path) -> None:
    conf = (rendered / "nginx.conf").read_text()
    log_format = conf[conf.index("log_format") : conf.index("access_log")]
    assert "$http_" not in log_format
    # The header is read in one place only (the map) and removed before the replicas.
    assert conf.count("$http_authorization") == 1
    assert "map $http_authorization $gateway_client" in conf


LIMITS = {"batch.job": {"rate": "30r/m", "in_flight": 3}, "batch-job": {"burst": 7}}


def test_every_client_has_its_limits_once_at_the_front_door(tmp_path: Path) -> None:
    tokens = {"batch.job": "batch-token-0123456789", "batch-job": "batch2-token-0123456789"}
    peers = [{"host": "gw-host-2", "address": "10.0.0.2", "weight": 3}]
    conf = (
        render(
            tmp_path,
            gateway_proxy_client_tokens={**tokens, "other": "other-token-0123456789"},
            gateway_proxy_client_limits=LIMITS,
            gateway_proxy_peers=peers,
        )
        / "nginx.conf"
    ).read_text()
    # The default zone: every client by name, requests without a client by address.
    assert (
        "limit_req_zone $gateway_limit_key_default zone=gateway_req_default:10m rate=1000r/s;"
        in conf
    )
    assert '"client=" "@$binary_remote_addr";' in conf
    # A zone per client with limits of its own; a-b and a.b do not share one.
    zones = re.findall(r"limit_req_zone \$gateway_limit_key_(\w+) zone=gateway_req_(\w+):", conf)
    assert len(zones) == 3 and all(key == zone for key, zone in zones)
    own = set(re.findall(r'"client=([\w.-]+)" \$gateway_client;', conf))
    assert set(own) == {"batch.job", "batch-job"}
    for client in own:
        assert f'"client={client}" "";' in conf  # not counted by the default zone as well
    assert re.search(r"zone=gateway_req_batch_job_\w+:1m rate=30r/m;", conf)
    assert re.search(r"limit_req zone=gateway_req_batch_job_\w+ burst=200 nodelay;", conf)
    assert re.search(r"limit_conn gateway_conn_batch_job_\w+ 3;", conf)
    assert re.search(r"limit_req zone=gateway_req_batch_job_\w+ burst=7 nodelay;", conf)
    assert "limit_req zone=gateway_req_default burst=200 nodelay;" in conf
    assert "limit_conn gateway_conn_default 32;" in conf
    # 429 with Retry-After (60 s / 30 requests = 2 s) and an OpenAI-shaped body.
    assert '"client=batch.job" 2;' in conf
    assert "limit_req_status 429;" in conf and "limit_conn_status 429;" in conf
    assert "add_header Retry-After $gateway_retry_after always;" in conf
    assert '"type":"rate_limit_error","code":"rate_limit_exceeded"' in conf
    # Peers forward requests already counted at their front door: the peer server counts none.
    peer_server = conf[conf.index("listen 5001;") :]
    assert "limit_req" not in peer_server and "limit_conn" not in peer_server


def locations(conf: str) -> list[str]:
    return re.findall(r"^\s*location (.+?) \{", conf, re.MULTILINE)


def test_only_the_api_is_proxied(tmp_path: Path) -> None:
    conf = (
        render(tmp_path, gateway_proxy_client_tokens={"a": "a-token-0123456789abc"}) / "nginx.conf"
    ).read_text()
    front = conf[: conf.rindex("server {")] if "listen 5001;" in conf else conf
    assert locations(front) == [
        "= /nginx-health",
        "@gateway_rate_limited",
        "= /health",
        "~ ^/(gateway|endpoints)/[^/]+/invocations$",
        "/v1/",
        "/api/2.0/endpoints/",
        "/",
    ]
    catch_all = front[front.rindex("location / {") :]
    assert "proxy_pass" not in catch_all
    assert 'return 404 \'{"error":' in catch_all


def test_no_running_replica_still_gives_a_valid_file(tmp_path: Path) -> None:
    conf = (render(tmp_path, gateway_proxy_replicas=[]) / "nginx.conf").read_text()
    assert "server 127.0.0.1:9 down;" in conf


def test_peers_share_their_replicas_through_their_nginx(tmp_path: Path) -> None:
    peers = [{"host": "gw-host-2", "address": "10.0.0.2", "weight": 3}]
    conf = (render(tmp_path, gateway_proxy_peers=peers) / "nginx.conf").read_text()
    assert "server 10.0.0.2:5001 weight=3" in conf
    assert "server 127.0.0.1:5001 weight=2;" in conf
    assert "allow 10.0.0.2;" in conf
    assert "deny all;" in conf


def test_egress_verifies_the_upstream_by_name_and_pools_connections(tmp_path: Path) -> None:
    conf = (
        render(tmp_path, gateway_proxy_egress_upstream_base="https://upstream:8443") / "egress.conf"
    ).read_text()
    assert "server upstream:8443;" in conf
    assert "proxy_ssl_verify on;" in conf
    assert "proxy_ssl_server_name on;" in conf
    assert "proxy_ssl_name upstream;" in conf
    assert "proxy_set_header Host upstream:8443;" in conf
    assert "proxy_ssl_session_reuse on;" in conf
    assert "keepalive 32;" in conf


@pytest.mark.docker
def test_nginx_accepts_the_rendered_files(tmp_path: Path) -> None:
    peers = [{"host": "gw-host-2", "address": "10.0.0.2", "weight": 3}]
    out = render(
        tmp_path,
        gateway_proxy_client_tokens={**CASE_TWINS, "batch.job": "b.token+0123456789/=~_"},
        gateway_proxy_client_limits={"batch.job": LIMITS["batch.job"], "upper": {"burst": 0}},
        gateway_proxy_peers=peers,
        gateway_proxy_egress_upstream_base="https://upstream:8443",
    )
    # No burst is no burst= at all (nginx refuses burst=0).
    assert re.search(
        r"limit_req zone=gateway_req_upper_\w+ nodelay;", (out / "nginx.conf").read_text()
    )
    front = nginx_t(out, "nginx.conf", list(BASE["gateway_proxy_replicas"]))
    assert front.returncode == 0, front.stderr
    egress = nginx_t(out, "egress.conf", ["upstream"])
    assert egress.returncode == 0, egress.stderr


@pytest.mark.docker
def test_nginx_accepts_the_anonymous_file(tmp_path: Path) -> None:
    out = render(tmp_path / "anonymous", gateway_proxy_allow_anonymous=True)
    front = nginx_t(out, "nginx.conf", list(BASE["gateway_proxy_replicas"]))
    assert front.returncode == 0, front.stderr


def compose(directory: Path) -> dict:
    return yaml.safe_load((directory / "docker-compose.yml").read_text())


def test_prod_mode_runs_replicas_behind_nginx(rendered: Path) -> None:
    services = compose(rendered)["services"]
    gateway = services["gateway"]
    assert "container_name" not in gateway
    assert gateway["scale"] == "${GATEWAY_REPLICAS:-1}"
    assert "ports" not in gateway
    assert services["nginx"]["ports"] == ["0.0.0.0:5000:5000"]
    assert "--workers=4" in gateway["command"]
    assert gateway["init"] is True
    assert gateway["restart"] == "unless-stopped"
    assert gateway["logging"]["options"] == {"max-size": "10m", "max-file": "5"}
    assert gateway["deploy"]["resources"]["limits"] == {"cpus": "1.0", "memory": "1g", "pids": 512}
    # Directories, never the key itself: nothing secret in the environment or arguments. The
    # usage ledger is the one directory a replica writes on the host.
    assert gateway["volumes"] == [
        "/opt/mlflow-gateway/config:/etc/mlflow-gateway:ro",
        "/opt/mlflow-gateway/secrets:/run/secrets/gateway:ro",
        "/opt/mlflow-gateway/usage:/var/lib/mlflow-gateway/usage",
    ]
    assert "--ledger-dir=/var/lib/mlflow-gateway/usage" in gateway["command"]
    assert gateway["environment"] == {
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "MGW_UPSTREAM_POOL": "off",
    }


def test_every_container_is_hardened_and_limited(rendered: Path) -> None:
    services = compose(rendered)["services"]
    assert set(services) == {"gateway", "egress", "nginx"}
    for name, service in services.items():
        assert service["read_only"] is True, name
        assert service["security_opt"] == ["no-new-privileges:true"], name
        assert service["cap_drop"] == ["ALL"], name
        limits = service["deploy"]["resources"]["limits"]
        assert {"cpus", "memory", "pids"} <= set(limits), name
        assert any(mount.startswith("/tmp:") for mount in service["tmpfs"]), name
    assert "cap_add" not in services["gateway"]
    assert (
        services["nginx"]["cap_add"]
        == services["egress"]["cap_add"]
        == [
            "CHOWN",
            "SETGID",
            "SETUID",
        ]
    )


def test_dev_mode_is_one_named_container_on_the_port(tmp_path: Path) -> None:
    services = compose(render(tmp_path, gateway_mode="dev"))["services"]
    assert set(services) == {"gateway", "egress"}
    assert services["gateway"]["container_name"] == "mlflow-gateway"
    assert services["gateway"]["ports"] == ["0.0.0.0:5000:5000"]
    assert services["gateway"]["logging"]["options"]["max-file"] == "3"


def test_egress_off_sends_the_gateway_straight_to_the_upstream(tmp_path: Path) -> None:
    out = render(tmp_path, gateway_egress_enabled=False)
    assert "egress" not in compose(out)["services"]
    config = yaml.safe_load((out / "config.yaml").read_text())
    bases = {e["model"]["config"]["openai_api_base"] for e in config["endpoints"]}
    assert bases == {"https://api.openai.com/v1"}


def test_the_upstream_pool_can_be_turned_on(tmp_path: Path) -> None:
    out = render(tmp_path, gateway_upstream_pool=True)
    assert compose(out)["services"]["gateway"]["environment"]["MGW_UPSTREAM_POOL"] == "on"


def test_the_config_points_at_the_key_file_and_the_egress_proxy(rendered: Path) -> None:
    config = yaml.safe_load((rendered / "config.yaml").read_text())
    assert [e["name"] for e in config["endpoints"]] == ["chat", "completions", "embeddings"]
    for endpoint in config["endpoints"]:
        assert endpoint["model"]["config"] == {
            "openai_api_key": "/run/secrets/gateway/openai_api_key",
            "openai_api_base": "http://egress:8080/v1",
        }


@pytest.mark.docker
@pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker CLI")
def test_compose_accepts_both_modes(tmp_path: Path, rendered: Path) -> None:
    for out in (render(tmp_path, gateway_mode="dev"), rendered):
        checked = subprocess.run(
            ["docker", "compose", "--file", str(out / "docker-compose.yml"), "config", "--quiet"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert checked.returncode == 0, checked.stderr
