"""Deploy timings against the lab (both gateway hosts, through the bastion): cold, no-op
rerun, rolling restart, scale 3 to 5, and back to 3.

"Cold" starts from hosts without the deployment: the Compose project, /opt/mlflow-gateway and
the gateway images are removed first, so the run creates everything and pulls the images
from the lab registry. The controller's image build is cached by content hash and not part
of it. The post-deploy smoke evaluation is switched off so that only the deploy is timed.

    .venv/bin/python benchmarks/bench_deploy.py [--markdown]
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from _commands import run
from _common import bench_main

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PROJECT = "mlflow-gateway"
PLAYBOOK_TIMEOUT_S = 600
RECAP_LINE = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")
NO_SMOKE = ("-e", "gateway_evaluate_smoke=false")
STEPS = (  # (what, extra ansible-playbook arguments); every host of the lab at once
    ("cold deploy (3 replicas per host)", ("-e", "gateway_replicas=3")),
    ("no-op rerun", ("-e", "gateway_replicas=3")),
    ("rolling restart (3 replicas per host)", ("--tags", "restart", "-e", "gateway_replicas=3")),
    ("scale 3 to 5", ("--tags", "scale", "-e", "gateway_replicas=5")),
    ("scale 5 to 3", ("--tags", "scale", "-e", "gateway_replicas=3")),
)
COLUMNS = ("step", "seconds", "changed", "failed", "hosts")
# Everything a deploy makes on a host, for the cold start; compose down works from labels.
TEARDOWN = (
    f"docker compose --project-name {PROJECT} down --volumes --remove-orphans --timeout 30; "
    f"rm -rf /opt/{PROJECT}; "
    f"docker images --quiet --filter 'reference=*/{PROJECT}/*' --filter 'reference={PROJECT}/*' "
    "| sort -u | xargs -r docker image rm --force >/dev/null"
)


@dataclass(frozen=True)
class PlaybookRun:
    seconds: float
    changed: int
    failed: int
    hosts: int


def lab_is_up() -> bool:
    result = run([str(ROOT / "scripts/lab"), "status"], check=False)
    return result.returncode == 0 and "gw-host-1" in result.stdout and "running" in result.stdout


def tear_down() -> None:
    ad_hoc = [str(BIN / "ansible"), "gateway_hosts", "--become", "-m", "ansible.builtin.shell"]
    run([*ad_hoc, "-a", TEARDOWN], timeout=PLAYBOOK_TIMEOUT_S)


def playbook(*args: str) -> subprocess.CompletedProcess[str]:
    """`ansible-playbook ARGS` against the lab, uncoloured so its recap can be read."""
    return run(
        [str(BIN / "ansible-playbook"), *args],
        env={"ANSIBLE_FORCE_COLOR": "0"},
        timeout=PLAYBOOK_TIMEOUT_S,
    )


def deploy(*args: str) -> PlaybookRun:
    """One deploy.yml run, after the arguments in $LAB_DEPLOY_ARGS (e.g. "-e @vars.yml")."""
    extra = shlex.split(os.environ.get("LAB_DEPLOY_ARGS", ""))
    started = time.perf_counter()
    result = playbook("deploy.yml", *NO_SMOKE, *extra, *args)
    seconds = time.perf_counter() - started
    recap = [match for line in result.stdout.splitlines() if (match := RECAP_LINE.match(line))]
    gateway_hosts = [match for match in recap if match[1] != "localhost"]
    return PlaybookRun(
        seconds=seconds,
        changed=sum(int(match[3]) for match in gateway_hosts),
        failed=sum(int(match[5]) + int(match[4]) for match in gateway_hosts),
        hosts=len(gateway_hosts),
    )


def measure() -> list[list[str]]:
    if not lab_is_up():
        return [["skipped: the lab is not running (make lab-up)", "-", "-", "-", "-"]]
    tear_down()
    rows = []
    for step, args in STEPS:
        result = deploy(*args)
        rows.append(
            [
                step,
                f"{result.seconds:.1f}",
                str(result.changed),
                str(result.failed),
                str(result.hosts),
            ]
        )
    return rows


def title() -> str:
    return "Deploy to the lab through the bastion (ansible-playbook deploy.yml, wall seconds)"


def main() -> int:
    return bench_main(__doc__.splitlines()[0], title(), COLUMNS, measure)


if __name__ == "__main__":
    sys.exit(main())
