"""What every console script shares: clear errors, exit codes, telemetry off for MLflow."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from rich.console import Console

PIPE_WIDTH = 160
EXIT_OK = 0
EXIT_THRESHOLD = 1  # the run worked but a limit (error rate, budget) was exceeded
EXIT_USAGE = 2  # bad input or an unusable environment; nothing was changed


class CommandError(Exception):
    """A problem the user can fix; the message names the bad value and the fix."""


def run_command(prog: str, body: Callable[[], int]) -> int:
    """Run a command body, turning CommandError into one stderr line and exit code 2."""
    try:
        return body()
    except CommandError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def disable_mlflow_telemetry() -> None:
    """MLflow's telemetry client calls an outside host on import; never let it."""
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ["DO_NOT_TRACK"] = "true"


def stdout_console() -> Console:
    """Rich output: the terminal's width on a terminal, wide enough for tables in a pipe."""
    return Console() if sys.stdout.isatty() else Console(width=PIPE_WIDTH)


def stderr_console() -> Console:
    return Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=PIPE_WIDTH)
