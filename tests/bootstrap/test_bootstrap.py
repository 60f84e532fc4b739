"""scripts/bootstrap explains what to install when it may not install it itself.

Runs the real script as an unprivileged user, with a PATH that has no Docker on it,
and checks it stops with a message naming the missing piece and the fix, having
changed nothing.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP = ROOT / "scripts" / "bootstrap"
DOCKER_COMMANDS = {"docker", "dockerd", "docker-compose"}


def unprivileged_user() -> str:
    for name in ("nobody", "daemon"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    pytest.skip("no unprivileged user on this machine")


@pytest.fixture
def path_without_docker() -> Iterator[str]:
    # Not under pytest's tmp_path: its parent is private to root.
    bin_dir = Path(tempfile.mkdtemp(prefix="bootstrap-path-"))
    bin_dir.chmod(0o755)
    for system_dir in (Path("/usr/sbin"), Path("/usr/bin")):
        for tool in system_dir.iterdir():
            if tool.name not in DOCKER_COMMANDS and not (bin_dir / tool.name).exists():
                (bin_dir / tool.name).symlink_to(tool)
    yield str(bin_dir)
    shutil.rmtree(bin_dir)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to an unprivileged user")
def test_without_docker_and_without_root_it_says_what_to_install(path_without_docker: str) -> None:
    user = unprivileged_user()
    result = subprocess.run(
        [
            "runuser",
            "-u",
            user,
            "--",
            "env",
            f"PATH={path_without_docker}",
            str(BOOTSTRAP),
            "system",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "missing: the Docker engine. This is not root, so nothing was installed" in result.stderr
    assert "apt-get install docker.io" in result.stderr


def test_an_unknown_step_is_named_with_the_valid_ones() -> None:
    result = subprocess.run(
        [str(BOOTSTRAP), "sytem"], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode != 0
    assert "unknown step 'sytem'" in result.stderr
    assert "system, venv, collections, all" in result.stderr
