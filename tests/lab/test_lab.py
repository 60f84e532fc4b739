"""The lab behaves like production seen from the controller: hosts only through the bastion,
and containers on the hosts resolve lab names, trust the lab CA and pull what the controller
pushed to the lab registry."""

from __future__ import annotations

import io
import socket
import tarfile
import uuid
from collections.abc import Iterator

import pytest
from lab_access import HOST_REGISTRY, PUSH_REGISTRY, Lab, lab_ca, running_lab

pytestmark = pytest.mark.lab

HOSTS = ("gw-host-1", "gw-host-2")
# A lab image with python3 and ssl, shipped to the hosts through the registry.
PROBE_IMAGE = "mgw-lab/upstream:latest"

# Runs in a container on a host: GET https://upstream:8443/health trusting only the CA given
# on stdin, or the image's system CAs when stdin is empty.
TLS_PROBE = """
import ssl, sys, urllib.error, urllib.request
ca = sys.stdin.read()
context = ssl.create_default_context(cadata=ca) if ca else ssl.create_default_context()
try:
    with urllib.request.urlopen("https://upstream:8443/health", context=context, timeout=10) as r:
        print(r.status, r.read().decode())
except urllib.error.URLError as error:
    if not isinstance(error.reason, ssl.SSLCertVerificationError):
        raise
    print("untrusted:", error.reason.verify_message)
"""


@pytest.fixture(scope="module")
def lab() -> Lab:
    return running_lab()


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.strip().lstrip("v").split("-")[0].split("."))


def push(lab: Lab, local_image: str, repository: str) -> str:
    """Push a controller image to the lab registry; return its name as the hosts see it."""
    tag = uuid.uuid4().hex[:12]
    pushed = f"{PUSH_REGISTRY}/{repository}:{tag}"
    assert lab.docker("tag", local_image, pushed).returncode == 0
    try:
        result = lab.docker("push", pushed)
        assert result.returncode == 0, result.stderr
    finally:
        lab.docker("image", "rm", pushed)
    return f"{HOST_REGISTRY}/{repository}:{tag}"


@pytest.mark.parametrize("host", HOSTS)
def test_host_runs_docker_and_compose_v2_through_the_bastion(lab: Lab, host: str) -> None:
    info = lab.ssh(host, "docker info --format '{{.ServerVersion}}'")
    assert info.returncode == 0, info.stderr
    assert info.stdout.strip()

    compose = lab.ssh(host, "docker compose version --short")
    assert compose.returncode == 0, compose.stderr
    assert version_tuple(compose.stdout) >= (2, 18)


def test_host_is_not_reachable_directly_from_the_controller(lab: Lab) -> None:
    # Control: the controller does route to the lab network (the bastion answers on its
    # container address), so it is the host's own rule that keeps the controller out.
    with socket.create_connection((lab.container_ip("bastion"), 22), timeout=5):
        pass

    host_ip = lab.container_ip("gw-host-1")
    with pytest.raises(OSError), socket.create_connection((host_ip, 22), timeout=3):
        pass

    direct = lab.ssh(
        "gw-host-1",
        "true",
        timeout=30,
        options=("ProxyCommand=none", f"HostName={host_ip}", "ConnectTimeout=3"),
    )
    assert direct.returncode != 0


def test_host_accepts_ssh_logins_only_from_the_bastion(lab: Lab) -> None:
    # From gw-host-2, with the right key, gw-host-1's sshd still refuses: only the bastion's
    # address may log in.
    key = (lab.ssh_config.parent / "id_ed25519").read_text()
    attempt = lab.ssh(
        "gw-host-2",
        "umask 077; key=$(mktemp); cat >$key;"
        " ssh -i $key -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
        " -o ConnectTimeout=5 deploy@gw-host-1 true; status=$?; rm -f $key; exit $status",
        stdin=key,
    )
    assert attempt.returncode != 0
    assert "Permission denied" in attempt.stderr


@pytest.fixture
def host_network(lab: Lab) -> Iterator[str]:
    """A user-defined network on gw-host-1, as compose makes (Docker's embedded DNS)."""
    name = f"lab-test-{uuid.uuid4().hex[:8]}"
    created = lab.ssh("gw-host-1", f"docker network create {name}")
    assert created.returncode == 0, created.stderr
    yield name
    lab.ssh("gw-host-1", f"docker network rm {name}")


def test_container_on_a_host_reaches_upstream_over_tls_with_the_lab_ca(
    lab: Lab, host_network: str
) -> None:
    image = push(lab, PROBE_IMAGE, "lab-tests/probe")
    run_probe = f"docker run --rm -i --network {host_network} {image} python3 -c '{TLS_PROBE}'"
    try:
        trusted = lab.ssh("gw-host-1", run_probe, stdin=lab_ca())
        assert trusted.returncode == 0, trusted.stderr
        assert trusted.stdout.strip() == '200 {"status": "ok"}'

        # The certificate really comes from the lab CA: without it, verification fails.
        untrusted = lab.ssh("gw-host-1", run_probe, stdin="")
        assert untrusted.returncode == 0, untrusted.stderr
        assert untrusted.stdout.startswith("untrusted:")
    finally:
        lab.ssh("gw-host-1", f"docker image rm {image}")


def test_host_pulls_an_image_the_controller_pushed(lab: Lab) -> None:
    content = uuid.uuid4().hex.encode()
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        member = tarfile.TarInfo("marker")
        member.size = len(content)
        tar.addfile(member, io.BytesIO(content))
    tiny = f"lab-tests/tiny:{content.decode()[:12]}"
    imported = lab.docker("import", "-", tiny, stdin=archive.getvalue())
    assert imported.returncode == 0, imported.stderr
    try:
        image = push(lab, tiny, "lab-tests/tiny")
    finally:
        lab.docker("image", "rm", tiny)

    pulled = lab.ssh("gw-host-1", f"docker pull -q {image} && docker image rm {image}")
    assert pulled.returncode == 0, pulled.stderr
    assert image in pulled.stdout
