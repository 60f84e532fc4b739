"""Gunicorn server hooks for the launcher; they run in the gunicorn master process.

on_starting validates the config (refusing to start on a bad one), when_ready starts the
config watcher, on_reload adopts the newest valid config before new workers boot (so an
outside `kill -HUP` reloads too), on_exit removes the launcher's private state.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from mlflow_gateway_tools.cli_support import EXIT_USAGE
from mlflow_gateway_tools.launcher.config_keeper import ConfigKeeper, ConfigRejected, log

SOURCE_CONFIG_ENV = "MGW_LAUNCHER_SOURCE_CONFIG"
ACTIVE_CONFIG_ENV = "MLFLOW_GATEWAY_CONFIG"
STATE_DIR_ENV = "MGW_LAUNCHER_STATE_DIR"
RELOAD_CHECK_ENV = "MGW_LAUNCHER_RELOAD_CHECK_SECONDS"

_keeper: ConfigKeeper | None = None
_watcher_stop = threading.Event()


def _watch_config(keeper: ConfigKeeper, interval: float) -> None:
    while not _watcher_stop.wait(interval):
        try:
            if keeper.refresh():
                os.kill(os.getpid(), signal.SIGHUP)  # gunicorn's own graceful reload
        except Exception as error:  # the watcher must never die silently
            log(f"config watcher error (will retry): {error!r}")


def on_starting(_server: Any) -> None:
    global _keeper  # noqa: PLW0603 - one keeper per master process, shared by the hooks
    _keeper = ConfigKeeper(
        source=Path(os.environ[SOURCE_CONFIG_ENV]), active=Path(os.environ[ACTIVE_CONFIG_ENV])
    )
    try:
        _keeper.install_initial()
    except ConfigRejected as error:
        log(f"error: cannot start: config {_keeper.source} is invalid: {error}")
        on_exit(_server)  # gunicorn will not call it when startup is refused
        sys.exit(EXIT_USAGE)
    interval = float(os.environ.get(RELOAD_CHECK_ENV, "2"))
    watching = f"checked every {interval:g}s" if interval > 0 else "not watched (SIGHUP reloads)"
    log(f"serving config {_keeper.source} ({watching}); usage log: JSON lines on stdout")


def when_ready(_server: Any) -> None:
    interval = float(os.environ.get(RELOAD_CHECK_ENV, "2"))
    if _keeper is not None and interval > 0:
        threading.Thread(
            target=_watch_config, args=(_keeper, interval), name="config-watcher", daemon=True
        ).start()


def on_reload(_server: Any) -> None:
    if _keeper is not None:
        _keeper.refresh()


def on_exit(_server: Any) -> None:
    _watcher_stop.set()
    if state_dir := os.environ.get(STATE_DIR_ENV):
        shutil.rmtree(state_dir, ignore_errors=True)
