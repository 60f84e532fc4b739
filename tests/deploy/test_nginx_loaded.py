"""nginx-loaded, the nginx image's record of what nginx loaded, tells it from the files.

The deploy reloads a front nginx or egress proxy whose files changed after it loaded them, even
when another run wrote them (roles/gateway_proxy/tasks/loaded.yml asks `nginx-loaded check`).
Runs the script itself with `true` standing in for nginx and the record in a temporary file.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "roles/gateway_image/files/nginx/nginx-loaded"


@pytest.fixture
def nginx_loaded(tmp_path: Path) -> Path:
    """The script with its record moved from /run into tmp_path."""
    script = tmp_path / "nginx-loaded"
    record = tmp_path / "nginx-loaded.sha256"
    script.write_text(SCRIPT.read_text().replace("/run/nginx-loaded.sha256", str(record)))
    script.chmod(0o755)
    return script


def run(script: Path, *args: str) -> int:
    return subprocess.run([str(script), *args], check=False, timeout=30).returncode


def test_the_record_follows_what_nginx_loaded_not_what_is_on_disk(
    nginx_loaded: Path, tmp_path: Path
) -> None:
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    (conf_dir / "nginx.conf").write_text("events {}\n")
    (conf_dir / "clients.map").write_text("")
    assert run(nginx_loaded, "check", str(conf_dir)) == 2, "nothing recorded yet"

    # The entrypoint records the directory of -c, then runs nginx (here: true).
    assert run(nginx_loaded, "start", "true", "-c", str(conf_dir / "nginx.conf")) == 0
    assert run(nginx_loaded, "check", str(conf_dir)) == 0

    # Ansible's backup copies (name~) are not what nginx serves.
    (conf_dir / "nginx.conf.123.2026-12-01@22:00:00~").write_text("old\n")
    assert run(nginx_loaded, "check", str(conf_dir)) == 0

    # A file written after the load (and never reloaded) is told apart, until a reload records it.
    (conf_dir / "clients.map").write_text('"token" "team";\n')
    assert run(nginx_loaded, "check", str(conf_dir)) == 1
    assert run(nginx_loaded, "record", str(conf_dir)) == 0
    assert run(nginx_loaded, "check", str(conf_dir)) == 0
