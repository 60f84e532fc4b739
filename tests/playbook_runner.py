"""Run a test playbook on localhost as a user runs ansible-playbook, with the project config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))


def run_local_playbook(
    play: Path,
    variables: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    timeout: int = 180,
    options: Sequence[str] = (),
) -> subprocess.CompletedProcess:
    """ansible-playbook PLAY on localhost with VARIABLES as extra vars (and OPTIONS such as
    --check); never raises on failure."""
    environment = env if env is not None else os.environ
    return subprocess.run(
        [
            ANSIBLE_PLAYBOOK,
            "-i",
            "localhost,",
            "-c",
            "local",
            str(play),
            "-e",
            json.dumps(variables),
            *options,
        ],
        cwd=ROOT,
        env={**environment, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
