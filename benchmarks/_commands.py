"""External commands the benchmarks run (wrk, docker, ansible-playbook, evaluate-gateway).

Every argv is built by the benchmarks themselves from constants and measured values, never
from outside input, hence the one security waiver here.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence


def run(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command and capture its text output; raise with its stderr tail on failure."""
    result = subprocess.run(  # noqa: S603 - argv built by the benchmarks, no shell
        list(argv),
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[:4])} ... exited {result.returncode}: "
            f"{(result.stderr or result.stdout)[-800:]}"
        )
    return result


def docker(*args: str, check: bool = True) -> str:
    """`docker ARGS`; its stdout."""
    return run(["docker", *args], check=check).stdout
