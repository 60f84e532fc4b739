"""Access to the running lab (scripts/lab up): SSH through the bastion, Docker on the controller.

A helper module rather than a conftest.py: tests import the top-level tests/conftest.py as
`conftest`, and a second conftest.py would shadow it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from conftest import unmet

REPO = Path(__file__).resolve().parents[2]
STATE = REPO / ".lab"
MEMBERS = ("bastion", "gw-host-1", "gw-host-2", "upstream", "registry")
PUSH_REGISTRY = "127.0.0.1:5001"
HOST_REGISTRY = "registry:5000"


def run(
    args: list[str], stdin: str | bytes | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run a command, capturing text output; never raises on a non-zero exit. Ansible's
    output comes without colour (make exports ANSIBLE_FORCE_COLOR), so tests can parse it."""
    text = not isinstance(stdin, bytes)
    return subprocess.run(
        args,
        input=stdin,
        capture_output=True,
        text=text,
        timeout=timeout,
        check=False,
        env={**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"},
    )


@dataclass(frozen=True)
class Lab:
    ssh_config: Path

    def ssh(
        self,
        host: str,
        command: str,
        stdin: str | None = None,
        timeout: float = 120,
        options: tuple[str, ...] = (),
    ) -> subprocess.CompletedProcess:
        """Run `command` on a lab host as the deploy user (through the bastion unless
        `options` say otherwise, e.g. ProxyCommand=none)."""
        option_args = [arg for option in options for arg in ("-o", option)]
        return run(["ssh", "-F", str(self.ssh_config), *option_args, host, command], stdin, timeout)

    def docker(
        self, *args: str, stdin: bytes | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess:
        """Run the controller's docker CLI."""
        return run(["docker", *args], stdin, timeout)

    def container_ip(self, member: str) -> str:
        result = self.docker(
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            f"mgw-lab-{member}",
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()


def _why_lab_is_not_up() -> str | None:
    if shutil.which("docker") is None or shutil.which("ssh") is None:
        return "docker or ssh is not installed"
    if not (STATE / "ssh_config").is_file():
        return "no .lab/ssh_config: the lab was never started here (make lab-up)"
    for member in MEMBERS:
        state = run(["docker", "inspect", "-f", "{{.State.Health.Status}}", f"mgw-lab-{member}"])
        if state.returncode != 0 or state.stdout.strip() != "healthy":
            return f"mgw-lab-{member} is not running and healthy (make lab-up)"
    return None


def running_lab() -> Lab:
    """The running lab, or `unmet` naming why the lab is not usable."""
    reason = _why_lab_is_not_up()
    if reason:
        unmet(f"the lab is not up: {reason}")
    return Lab(ssh_config=STATE / "ssh_config")


def lab_ca() -> str:
    """The lab CA certificate (PEM) that signed the upstream's certificate."""
    return (STATE / "ca" / "ca.crt").read_text()
