"""What every console script shares: clear errors, exit codes, telemetry off for MLflow."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

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
