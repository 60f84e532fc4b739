"""What the gateway roles write: the nginx front, the egress proxy, the Compose file, config.yaml.

Templates are rendered by Ansible as the roles render them; the nginx files are then checked
by `nginx -t` and the Compose file by `docker compose config` when those are available.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

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


def nginx_image() -> str | None:
    """An nginx image the gateway_image role built, if this machine has one."""
    if shutil.which("docker") is None:
        return None
    listed = subprocess.run(
        ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", "mlflow-gateway/nginx"],
        capture_output=True,
        text=True,
        check=False,
    )
    images = listed.stdout.split()
    return images[0] if listed.returncode == 0 and images else None


def nginx_t(directory: Path, config: str, hosts: list[str]) -> subprocess.CompletedProcess:
    image = nginx_image()
    if image is None:
        pytest.skip("no mlflow-gateway/nginx image on this machine (built by a deploy)")
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
    # No client tokens configured: nobody is turned away.
    assert "return 401" not in conf


def test_client_tokens_turn_unknown_callers_away(tmp_path: Path) -> None:
    out = render(tmp_path, gateway_proxy_client_tokens={"alice": "alice-token-0123456789"})
    assert 'return 401 \'{"error":' in (out / "nginx.conf").read_text()
    assert '"Bearer alice-token-0123456789" "alice";' in (out / "clients.map").read_text()


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
        gateway_proxy_client_tokens={"alice": "alice-token-0123456789"},
        gateway_proxy_peers=peers,
        gateway_proxy_egress_upstream_base="https://upstream:8443",
    )
    front = nginx_t(out, "nginx.conf", list(BASE["gateway_proxy_replicas"]))
    assert front.returncode == 0, front.stderr
    egress = nginx_t(out, "egress.conf", ["upstream"])
    assert egress.returncode == 0, egress.stderr


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
    assert gateway["deploy"]["resources"]["limits"] == {"cpus": "1.0", "memory": "1g"}
    # Directories, never the key itself: nothing secret in the environment or arguments.
    assert gateway["volumes"] == [
        "/opt/mlflow-gateway/config:/etc/mlflow-gateway:ro",
        "/opt/mlflow-gateway/secrets:/run/secrets/gateway:ro",
    ]
    assert set(gateway["environment"]) == {"MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK"}


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
