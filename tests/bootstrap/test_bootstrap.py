"""scripts/bootstrap explains what to install when it may not install it itself.

Runs the real script as an unprivileged user, with a PATH that has no Docker on it,
and checks it stops with a message naming the missing piece and the fix, having
changed nothing. That user runs a copy in a world-readable temporary directory: the
checkout may sit where only its owner can enter.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import unmet

ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP = ROOT / "scripts" / "bootstrap"
DOCKER_COMMANDS = {"docker", "dockerd", "docker-compose"}
TEMP_BASES = (Path(tempfile.gettempdir()), Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"))


def unprivileged_user() -> str:
    for name in ("nobody", "daemon"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    unmet("no unprivileged user on this machine")


def others_can_enter(directory: Path) -> bool:
    """Whether every directory from / down to `directory` lets other users through."""
    resolved = directory.resolve()
    return all(part.stat().st_mode & stat.S_IXOTH for part in (resolved, *resolved.parents))


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the unprivileged user can read. The checkout may be private (a clone
    in /root, a 0700 temporary directory), and so are pytest's tmp_path and a TMPDIR."""
    base = next((path for path in TEMP_BASES if path.is_dir() and others_can_enter(path)), None)
    if base is None:
        unmet(f"none of {[str(path) for path in TEMP_BASES]} is open to other users")
    directory = Path(tempfile.mkdtemp(prefix="bootstrap-test-", dir=base))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory)


@pytest.fixture
def bootstrap_copy(shared_dir: Path) -> Path:
    """scripts/bootstrap where the other user can run it; the `system` step reads nothing
    else from the checkout."""
    copy = shared_dir / "checkout" / "scripts" / "bootstrap"
    copy.parent.mkdir(mode=0o755, parents=True)
    shutil.copy(BOOTSTRAP, copy)
    copy.chmod(0o755)
    return copy


@pytest.fixture
def path_without_docker(shared_dir: Path) -> str:
    bin_dir = shared_dir / "bin"
    bin_dir.mkdir(mode=0o755)
    for system_dir in (Path("/usr/sbin"), Path("/usr/bin")):
        for tool in system_dir.iterdir():
            if tool.name not in DOCKER_COMMANDS and not (bin_dir / tool.name).exists():
                (bin_dir / tool.name).symlink_to(tool)
    return str(bin_dir)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to an unprivileged user")
def test_without_docker_and_without_root_it_says_what_to_install(
    bootstrap_copy: Path, path_without_docker: str
) -> None:
    user = unprivileged_user()
    as_user = ("runuser", "-u", user, "--", "env", f"PATH={path_without_docker}")
    result = subprocess.run(
        [*as_user, str(bootstrap_copy), "system"],
        cwd=bootstrap_copy.parent,  # the test's own directory may be closed to the user
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
