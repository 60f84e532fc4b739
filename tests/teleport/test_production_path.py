"""The README's production commands, in their order, through a stand-in for Teleport.

A copy of inventory/production with its placeholders filled (a made-up cluster, no IP address)
reaches its one host, adt-ml-dify-49-202.<cluster>, only the way production does: the
teleport_session role asks `tsh status` and writes `tsh config`'s OpenSSH config to
.teleport/ssh.cfg, whose `ProxyCommand tsh proxy ssh ... %r@%h:%p` opens the connection. The
`tsh` on PATH is tests/teleport/fake-tsh, whose `proxy ssh` hops through the lab bastion to
gw-host-1; nothing else can resolve the host's name. The key is the lab's fake one, given as
OPENAI_API_KEY as the README says; image source and CA are the lab's (no Docker Hub here).

The deployment is a Compose project of its own on gw-host-1 (port 5100), removed at the end,
so the lab's own deployment (molecule lab_ssh) is left as it was.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab"))  # the lab helper's module
from lab_access import REPO, STATE, Lab, running_lab

pytestmark = pytest.mark.lab

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
CLUSTER = "lab.example.test"
PROXY = f"proxy.{CLUSTER}:443"
NODE = "adt-ml-dify-49-202"
PROJECT = "mlflow-gateway-prodpath"
PORT = 5100
# One directory below the checkout, as inventory/production is: its `{{ inventory_dir }}/../..`
# is then the checkout, and .teleport/ssh.cfg there the file teleport_session writes.
COPY = REPO / ".cache" / "production-path"
SSH_CONFIG = REPO / ".teleport" / "ssh.cfg"
IP_ADDRESS = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")
RECAP = re.compile(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)

# What inventory/lab/group_vars sets for images and CA, and what keeps this deployment apart
# from the lab's own on the same host: a user's group_vars tuning (README step 3).
LAB_SETTINGS = {
    "gateway_image_source": "pull",
    "gateway_image_registry": "registry:5000",
    # The lab registry as the controller pushes to it (a name: no IP address in the copy).
    "gateway_image_push_registry": "localhost:5001",
    "gateway_image_gateway_base": "mgw-lab/debian:bookworm",
    "gateway_image_nginx_base": "mgw-lab/debian:bookworm",
    "gateway_image_extra_ca_files": "{{ [lab_ca_cert_file] + query('ansible.builtin.fileglob',"
    " '/usr/local/share/ca-certificates/*.crt') }}",
    "gateway_upstream_base": "https://upstream:8443",
    "gateway_openai_api_key_check": False,
    "lab_ca_cert_file": str(STATE / "ca" / "ca.crt"),
    "gateway_project_name": PROJECT,
    "gateway_project_dir": f"/opt/{PROJECT}",
    "gateway_port": PORT,
    "gateway_replicas": 2,
    "gateway_workers": 1,
}


def fill_in_the_inventory() -> None:
    """inventory/production, copied, with the placeholders filled and no IP address left."""
    shutil.rmtree(COPY, ignore_errors=True)
    shutil.copytree(REPO / "inventory" / "production", COPY)
    for path in COPY.rglob("*.yml"):
        text = path.read_text().replace("teleport.example.com:443", PROXY)
        text = text.replace("teleport.example.com", CLUSTER)
        # Comments may name the real server's address: drop them, never contact it.
        text = "\n".join(IP_ADDRESS.sub("<address>", line) for line in text.splitlines())
        path.write_text(text + "\n")
    # README step 3: tune group_vars/gateway_hosts/main.yml (its own values would win over
    # another file of the directory, which Ansible reads in name order).
    tuned = COPY / "group_vars" / "gateway_hosts" / "main.yml"
    settings = {**(yaml.safe_load(tuned.read_text()) or {}), **LAB_SETTINGS}
    tuned.write_text("---\n" + yaml.safe_dump(settings, sort_keys=False))
    # README step 4: the vault file made from its example, with a client token; the key comes
    # from OPENAI_API_KEY (the README's other way). Left unencrypted here: `ansible-vault
    # encrypt` changes only how Ansible reads it.
    vaults = COPY / "group_vars" / "gateway_hosts"
    secrets = yaml.safe_load((vaults / "vault.yml.example").read_text())
    secrets.pop("vault_gateway_openai_api_key")
    secrets["vault_gateway_proxy_client_tokens"] = {"production-path": "prod-path-fake-token-0001"}
    (vaults / "vault.yml").write_text("---\n" + yaml.safe_dump(secrets, sort_keys=False))
    everything = "".join(path.read_text() for path in COPY.rglob("*") if path.is_file())
    assert "example.com" not in everything
    assert IP_ADDRESS.search(everything) is None, "no IP address in the production copy"


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment the README's commands run in: tsh on PATH, login and key exported."""
    lab: Lab = running_lab()
    fill_in_the_inventory()
    bin_dir = tmp_path_factory.mktemp("bin")
    (bin_dir / "tsh").symlink_to(HERE / "fake-tsh")
    environment = {
        **os.environ,
        "PATH": f"{bin_dir}:{BIN}:{os.environ['PATH']}",
        "TELEPORT_LOGIN": "deploy",
        "OPENAI_API_KEY": "sk-lab-fake-key-1",
        "FAKE_TSH_CLUSTER": CLUSTER,
        "FAKE_TSH_NODE": NODE,
        "FAKE_TSH_LAB_HOST": "gw-host-1",
        "FAKE_TSH_LAB_DIR": str(STATE),
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
    }
    yield environment
    lab.ssh(
        "gw-host-1",
        f"cd /opt/{PROJECT} 2>/dev/null && docker compose down --remove-orphans --timeout 5;"
        f" sudo rm -rf /opt/{PROJECT}",
        timeout=180,
    )
    shutil.rmtree(COPY, ignore_errors=True)


def readme_command(environment: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`.venv/bin/ansible-playbook -i inventory/production ARGS`, on the filled-in copy."""
    started = time.monotonic()
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(COPY), *args],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    seconds = time.monotonic() - started
    command = " ".join(args)
    print(f"ansible-playbook -i inventory/production {command}: {result.returncode} {seconds:.0f}s")
    return result


def recap(result: subprocess.CompletedProcess) -> dict[str, tuple[int, int, int]]:
    return {
        host: (int(changed), int(unreachable), int(failed))
        for host, changed, unreachable, failed in RECAP.findall(result.stdout)
    }


def test_the_readme_production_commands_work_in_their_order(
    production: dict[str, str], tmp_path: Path
) -> None:
    # A fresh clone has no .teleport/ssh.cfg: --check must write it before the first connection.
    SSH_CONFIG.unlink(missing_ok=True)
    check = readme_command(production, "deploy.yml", "--check", "--diff")
    assert check.returncode == 0, check.stdout[-4000:] + check.stderr[-2000:]
    assert "Can't open user config file" not in check.stdout + check.stderr
    assert f"proxy ssh --cluster={CLUSTER}" in SSH_CONFIG.read_text()
    assert recap(check)[NODE][1:] == (0, 0)

    deploy = readme_command(production, "deploy.yml")
    assert deploy.returncode == 0, deploy.stdout[-4000:] + deploy.stderr[-2000:]
    assert recap(deploy)[NODE][1:] == (0, 0)
    assert f"Smoke evaluation of {NODE}: 3 of 3 chat requests ok" in " ".join(deploy.stdout.split())

    status = readme_command(production, "playbooks/status.yml")
    assert status.returncode == 0, status.stdout[-4000:]
    assert "The gateway is healthy." in status.stdout
    assert "STALE" not in status.stdout

    results = tmp_path / "results"
    evaluate = readme_command(
        production, "playbooks/evaluate.yml", "-e", f"gateway_evaluate_results_dir={results}"
    )
    assert evaluate.returncode == 0, evaluate.stdout[-4000:]
    assert list((results / NODE).glob("2*/costs.json")), "the evaluation's results came back"


def test_the_stand_in_reaches_only_the_production_node(production: dict[str, str]) -> None:
    """Another name in the cluster finds no node: the host resolves only through tsh."""
    other = subprocess.run(
        ["ssh", "-F", str(SSH_CONFIG), "-l", "deploy", f"gw-host-2.{CLUSTER}", "true"],
        env=production,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert other.returncode != 0
    assert "not found in cluster" in other.stderr
