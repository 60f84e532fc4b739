"""The Teleport preflight fails fast with the fix, and writes tsh's ssh config when all is well.

A stand-in `tsh` (a shell script on PATH) answers `version`, `status --format=json` and
`config` the way the real client does, so the role runs for real on localhost.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from playbook_runner import run_local_playbook

ROOT = Path(__file__).resolve().parents[2]
PLAY = Path(__file__).with_name("play.yml")
PROXY = "proxy.lab.test:443"
CLUSTER = "lab.test"
SSH_CONFIG = f"Host *.{CLUSTER}\n    ProxyCommand tsh proxy ssh --cluster={CLUSTER} %r@%h:%p"


def fake_tsh(tmp_path: Path, status: dict | None, status_rc: int = 0) -> Path:
    """Write a tsh stand-in whose `status` prints `status` (or fails with status_rc)."""
    status_json = json.dumps(status) if status is not None else ""
    script = tmp_path / "tsh"
    script.write_text(
        "#!/bin/sh\n"
        'case "$1" in\n'
        '  version) echo "Teleport v17.0.0 go1.23";;\n'
        f"  status) [ {status_rc} -eq 0 ] ||"
        f" {{ echo 'ERROR: Not logged in.' >&2; exit {status_rc}; }}\n"
        f"          echo '{status_json}';;\n"
        f"  config) printf '%s\\n' '{SSH_CONFIG}';;\n"
        "  *) exit 2;;\n"
        "esac\n"
    )
    script.chmod(0o755)
    return script


def login(cluster: str = CLUSTER, minutes_left: int = 600) -> dict:
    valid_until = datetime.now(UTC) + timedelta(minutes=minutes_left)
    stamp = valid_until.strftime("%Y-%m-%dT%H:%M:%S.123456789Z")
    return {"active": {"cluster": cluster, "username": "alice", "valid_until": stamp}}


def run_preflight(
    tmp_path: Path, tsh: str, *options: str, **extra: str
) -> subprocess.CompletedProcess:
    ssh_config = tmp_path / "teleport" / "ssh.cfg"
    variables = {
        "teleport_session_proxy": PROXY,
        "teleport_session_cluster": CLUSTER,
        "teleport_session_tsh": tsh,
        "teleport_session_ssh_config": str(ssh_config),
        **extra,
    }
    return run_local_playbook(PLAY, variables, timeout=120, options=options)


def test_a_fresh_login_writes_the_ssh_config(tmp_path: Path) -> None:
    tsh = fake_tsh(tmp_path, login())
    result = run_preflight(tmp_path, str(tsh))
    assert result.returncode == 0, result.stdout + result.stderr
    written = tmp_path / "teleport" / "ssh.cfg"
    assert written.read_text() == SSH_CONFIG + "\n"
    assert oct(written.stat().st_mode & 0o777) == "0o600"


def test_check_mode_on_a_fresh_clone_writes_the_ssh_config_too(tmp_path: Path) -> None:
    """`deploy.yml --check` reads the file on its first connection: it must exist."""
    tsh = fake_tsh(tmp_path, login())
    result = run_preflight(tmp_path, str(tsh), "--check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "teleport" / "ssh.cfg").read_text() == SSH_CONFIG + "\n"


def test_a_second_run_changes_nothing(tmp_path: Path) -> None:
    tsh = fake_tsh(tmp_path, login())
    run_preflight(tmp_path, str(tsh))
    result = run_preflight(tmp_path, str(tsh))
    assert result.returncode == 0, result.stdout
    assert "changed=0" in result.stdout


@pytest.mark.parametrize(
    ("status", "status_rc", "expected"),
    [
        # The logins are made when the test runs, not when pytest collects it: a login due to
        # expire in 5 minutes has expired by then on a slow run.
        (lambda: None, 1, "No Teleport login found"),
        (lambda: login(minutes_left=-5), 0, "The Teleport login has expired"),
        (lambda: login(minutes_left=5), 0, "expires in"),
        (lambda: login(cluster="other.test"), 0, "is for cluster 'other.test', not 'lab.test'"),
    ],
    ids=["not-logged-in", "expired", "expires-soon", "other-cluster"],
)
def test_a_missing_or_stale_login_stops_with_the_tsh_login_command(
    tmp_path: Path, status: Callable[[], dict | None], status_rc: int, expected: str
) -> None:
    tsh = fake_tsh(tmp_path, status(), status_rc)
    result = run_preflight(tmp_path, str(tsh))
    assert result.returncode != 0
    assert expected in result.stdout, result.stdout[-2000:]
    assert f"tsh login --proxy={PROXY}" in result.stdout
    assert not (tmp_path / "teleport" / "ssh.cfg").exists()


def test_missing_tsh_says_to_install_it(tmp_path: Path) -> None:
    result = run_preflight(tmp_path, str(tmp_path / "no-such-tsh"))
    assert result.returncode != 0
    assert "install tsh" in result.stdout


def test_the_placeholder_proxy_is_refused(tmp_path: Path) -> None:
    tsh = fake_tsh(tmp_path, login())
    result = run_preflight(tmp_path, str(tsh), teleport_session_proxy="teleport.example.com:443")
    assert result.returncode != 0
    assert "still the example placeholder" in result.stdout
