"""The ledger's part of gunicorn's master: periodic housekeeping, and removing the state file
of each worker it reaps.

Each housekeeping pass runs as its own `gateway-ledger housekeep` process, started from a
daemon thread: the master's loop never waits on a slow disk, compression never competes with
it for the GIL, and workers the master forks mid-pass never inherit a compressor's open
files (a locked or already-unlinked day file would stay held open by a worker for days).
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import threading
from typing import Any

from mlflow_gateway_tools.launcher.ledger_settings import LedgerSettings
from mlflow_gateway_tools.launcher.ledger_state import remove_state

HOUSEKEEPING_EVERY_SECONDS = 600.0
PASS_TIMEOUT_SECONDS = 540.0  # a pass hung on a dead mount is killed before the next starts
EXIT_WAIT_SECONDS = 5.0
_started = threading.Event()
_stopping = threading.Event()
_running: list[subprocess.Popen[bytes]] = []  # the pass in progress, for the exit to stop


def _log(message: str) -> None:
    os.write(2, f"gateway-launcher: ledger housekeeping: {message}\n".encode())


def housekeeping_argv(settings: LedgerSettings) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mlflow_gateway_tools.launcher.ledger_cli",
        "housekeep",
        "--dir",
        str(settings.directory),
        "--retention-days",
        str(settings.retention_days),
        "--quiet",
    ]


def run_pass(settings: LedgerSettings) -> None:
    """One housekeeping pass in a child process; its report goes to the master's stderr."""
    try:
        process = subprocess.Popen(  # noqa: S603 - our own module, argv built here
            housekeeping_argv(settings),
            stdin=subprocess.DEVNULL,
            stdout=2,  # fd 1 of the master is the usage log's spare; reports belong on stderr
            stderr=2,
        )
    except Exception as error:  # the thread must outlive any failure
        _log(f"cannot run a pass: {error!r}")
        return
    _running.append(process)
    try:
        returncode = process.wait(PASS_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        _log(f"a pass took over {PASS_TIMEOUT_SECONDS:g}s and was stopped; next one as planned")
        return
    finally:
        _running.remove(process)
    if returncode not in (0, 1) and not _stopping.is_set():  # 1: it reported its problems
        _log(f"a pass exited with {returncode}")


def _keep_house(settings: LedgerSettings) -> None:
    while not _stopping.is_set():
        run_pass(settings)
        _stopping.wait(HOUSEKEEPING_EVERY_SECONDS)


def _stop_at_exit(thread: threading.Thread, master_pid: int) -> None:
    """Let the thread end before the interpreter does: a daemon thread still inside a call
    when the master finalizes can abort it ("FATAL: exception not rethrown")."""
    if os.getpid() != master_pid:
        return  # a forked worker inherited the registration, not the thread
    _stopping.set()
    for process in list(_running):
        process.terminate()
    thread.join(EXIT_WAIT_SECONDS)


def when_ready(_server: Any) -> None:
    """Start the housekeeping thread: a pass now, then one every 10 minutes."""
    settings = LedgerSettings.from_env()
    if settings is None or _started.is_set():
        return
    _started.set()
    thread = threading.Thread(
        target=_keep_house, args=(settings,), name="ledger-housekeeping", daemon=True
    )
    thread.start()
    atexit.register(_stop_at_exit, thread, os.getpid())


def child_exit(_server: Any, worker: Any) -> None:
    """A reaped worker (stopped, reloaded or killed) leaves no state file behind."""
    settings = LedgerSettings.from_env()
    if settings is not None:
        remove_state(settings.state_dir, worker.pid)
