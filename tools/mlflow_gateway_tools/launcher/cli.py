"""`gateway-launcher`: serve MLflow's gateway under gunicorn with a per-request usage log.

The process execs gunicorn, so gunicorn's master is what receives signals: SIGTERM stops
gracefully (no orphans), SIGHUP reloads gracefully. Before the exec, stdout is moved aside:
the usage log keeps the real stdout, and everything else written to fd 1 lands on stderr.

With --ledger-dir, each worker also appends every usage line to a durable per-day file there
(launcher/ledger_writer.py), and the master compresses finished days and applies the
retention (launcher/ledger_master.py); `gateway-ledger status` reports on it.

MLflow's upstream calls share one pooled session per worker (launcher/upstream_pool.py);
MGW_UPSTREAM_POOL=off gives back MLflow's own new connection per request.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

from mlflow_gateway_tools.cli_support import CommandError, disable_mlflow_telemetry, run_command
from mlflow_gateway_tools.launcher.app import USAGE_LOG_FD_ENV
from mlflow_gateway_tools.launcher.hooks import (
    ACTIVE_CONFIG_ENV,
    RELOAD_CHECK_ENV,
    SOURCE_CONFIG_ENV,
    STATE_DIR_ENV,
)
from mlflow_gateway_tools.launcher.ledger_options import (
    add_ledger_options,
    ledger_environment,
    ledger_settings,
)
from mlflow_gateway_tools.launcher.pool_settings import PoolSettings

PROG = "gateway-launcher"
APP_FACTORY = "mlflow_gateway_tools.launcher.app:create_app()"
GUNICORN_CONF = "python:mlflow_gateway_tools.launcher.gunicorn_conf"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Serve the MLflow AI Gateway (YAML config) with gunicorn + uvicorn workers, "
        "one JSON usage line per request on stdout, graceful reload on config change or SIGHUP.",
    )
    parser.add_argument("--config-path", required=True, type=Path, help="gateway config YAML")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 in Docker)")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument(
        "--timeout", type=int, default=120, help="seconds before a silent worker is restarted"
    )
    parser.add_argument(
        "--graceful-timeout",
        type=int,
        default=30,
        help="seconds in-flight requests get to finish on reload or stop",
    )
    parser.add_argument(
        "--keep-alive",
        type=int,
        default=65,
        help="idle keep-alive seconds; keep it above the proxy's upstream keepalive_timeout",
    )
    parser.add_argument(
        "--reload-check-seconds",
        type=float,
        default=2.0,
        help="how often to check the config (and key files) for changes; 0 disables",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(tempfile.gettempdir()),
        help="where the last valid config copy is kept while running",
    )
    add_ledger_options(parser)
    return parser


def _validate(args: argparse.Namespace) -> None:
    if not args.config_path.is_file():
        raise CommandError(
            f"--config-path {args.config_path} does not exist or is not a file; "
            "give the gateway config YAML (mount its directory, not the file, in Docker)"
        )
    if not 0 <= args.port <= 65535:
        raise CommandError(f"--port {args.port} is not a TCP port; use 1-65535")
    for option, value in (
        ("--workers", args.workers),
        ("--timeout", args.timeout),
        ("--graceful-timeout", args.graceful_timeout),
        ("--keep-alive", args.keep_alive),
    ):
        if value < 1:
            raise CommandError(f"{option} {value} must be at least 1")
    if args.reload_check_seconds < 0:
        raise CommandError(
            f"--reload-check-seconds {args.reload_check_seconds} is negative; use 0 to disable"
        )
    if not args.state_dir.is_dir():
        raise CommandError(f"--state-dir {args.state_dir} is not a directory; create it first")
    args.ledger = ledger_settings(args)
    try:
        PoolSettings.from_env()  # the workers read it; a bad value must stop the start here
    except ValueError as error:
        raise CommandError(str(error)) from None


def gunicorn_argv(args: argparse.Namespace) -> list[str]:
    host = f"[{args.host}]" if ":" in args.host else args.host
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        GUNICORN_CONF,
        "--bind",
        f"{host}:{args.port}",
        "--workers",
        str(args.workers),
        "--timeout",
        str(args.timeout),
        "--graceful-timeout",
        str(args.graceful_timeout),
        "--keep-alive",
        str(args.keep_alive),
        APP_FACTORY,
    ]


def _prepare_environment(args: argparse.Namespace) -> None:
    state_dir = Path(tempfile.mkdtemp(prefix="gateway-launcher-", dir=args.state_dir))
    disable_mlflow_telemetry()
    os.environ.update(
        {
            SOURCE_CONFIG_ENV: str(args.config_path.resolve()),
            ACTIVE_CONFIG_ENV: str(state_dir / "active-config.yaml"),
            STATE_DIR_ENV: str(state_dir),
            RELOAD_CHECK_ENV: str(args.reload_check_seconds),
            # What `mlflow gateway start` enables: keys from $VAR or from a file path.
            "MLFLOW_GATEWAY_RESOLVE_API_KEY_FROM_ENV": "true",
            "MLFLOW_GATEWAY_RESOLVE_API_KEY_FROM_FILE": "true",
        }
    )
    ledger_environment(args.ledger, os.environ)


def _move_stdout_aside() -> None:
    """Keep the real stdout for the usage log only; send every other fd-1 write to stderr."""
    sys.stdout.flush()
    usage_fd = os.dup(1)
    os.set_inheritable(usage_fd, True)
    os.dup2(2, 1)
    os.environ[USAGE_LOG_FD_ENV] = str(usage_fd)


def _run(args: argparse.Namespace) -> NoReturn:
    _validate(args)
    _prepare_environment(args)
    _move_stdout_aside()
    argv = gunicorn_argv(args)
    os.execv(argv[0], argv)  # noqa: S606 - exec, so gunicorn becomes the signalled process


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(PROG, lambda: _run(args))
