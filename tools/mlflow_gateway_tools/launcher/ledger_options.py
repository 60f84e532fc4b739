"""gateway-launcher's --ledger-* options: parsing, validation, and the environment they become."""

from __future__ import annotations

import argparse
import errno
import os
import socket
import sys
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

from mlflow_gateway_tools.cli_support import CommandError
from mlflow_gateway_tools.launcher.ledger_settings import (
    DEFAULT_MIN_FREE_MB,
    DEFAULT_RETENTION_DAYS,
    DIR_ENV,
    HOST_ENV,
    LedgerSettings,
    state_dir,
)
from mlflow_gateway_tools.ledger_files import safe_part


def add_ledger_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "usage ledger", "a durable copy of every usage line, one file per container and UTC day"
    )
    group.add_argument(
        "--ledger-dir",
        type=Path,
        metavar="DIR",
        help="directory for the ledger files (a host directory mounted into every replica); "
        "off when not given. Usage lines go to stdout in any case",
    )
    group.add_argument(
        "--ledger-host",
        metavar="NAME",
        help=f"gateway host name in the file names (default: ${HOST_ENV}, else the hostname)",
    )
    group.add_argument(
        "--ledger-container",
        metavar="NAME",
        help="container name in the file names (default: the hostname, in Docker the container id)",
    )
    group.add_argument(
        "--ledger-retention-days",
        type=int,
        metavar="N",
        default=DEFAULT_RETENTION_DAYS,
        help="delete ledger files older than this many days; 0 keeps them forever",
    )
    group.add_argument(
        "--ledger-min-free-mb",
        type=int,
        metavar="N",
        default=DEFAULT_MIN_FREE_MB,
        help="pause the ledger (not the gateway) below this much free disk; 0: no check",
    )


def _checked_name(option: str, value: str, origin: str) -> str:
    if safe_part(value) != value:
        raise CommandError(
            f"{option} {value!r}{origin} cannot stand in a ledger file name; use letters, "
            "digits, '.' and '-' only (e.g. gw-host-1)"
        )
    return value


def _process_user() -> str:
    uid = os.getuid()
    try:
        import pwd  # noqa: PLC0415 - POSIX only, and only on this error path

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def _check_directory(directory: Path) -> None:
    """Refuse a directory this user cannot write; a full one only warns (the ledger pauses
    until there is room, the gateway serves regardless)."""
    option = f"--ledger-dir {directory}"
    if not directory.exists():
        raise CommandError(
            f"{option} does not exist; create it (in Docker: mount the host's ledger "
            "directory there)"
        )
    if not directory.is_dir():
        raise CommandError(f"{option} is not a directory; give the ledger's directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".gateway-launcher-probe-", dir=directory)
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            print(
                f"gateway-launcher: warning: {option} is full; the ledger stays paused until "
                "there is room (usage lines still go to stdout)",
                file=sys.stderr,
            )
            return
        user = _process_user()
        raise CommandError(
            f"{option} is not writable by {user}: {error.strerror}; make it writable for "
            f"that user (e.g. chown {os.getuid()} {directory}) or mount it read-write"
        ) from None
    os.close(fd)
    Path(probe).unlink()


def ledger_settings(args: argparse.Namespace) -> LedgerSettings | None:
    """The validated ledger settings; None when --ledger-dir is not given (ledger off)."""
    if args.ledger_retention_days < 0:
        raise CommandError(
            f"--ledger-retention-days {args.ledger_retention_days} is negative; give the days "
            "to keep (0 keeps the files forever)"
        )
    if args.ledger_min_free_mb < 0:
        raise CommandError(
            f"--ledger-min-free-mb {args.ledger_min_free_mb} is negative; give the megabytes "
            "to keep free on the ledger's disk (0 turns the check off)"
        )
    if args.ledger_dir is None:
        return None
    if args.ledger_host is not None:
        host = _checked_name("--ledger-host", args.ledger_host, "")
    elif os.environ.get(HOST_ENV):
        host = _checked_name("--ledger-host", os.environ[HOST_ENV], f" (from ${HOST_ENV})")
    else:
        host = _checked_name("--ledger-host", socket.gethostname(), " (the hostname)")
    container = _checked_name(
        "--ledger-container",
        args.ledger_container or socket.gethostname(),
        "" if args.ledger_container else " (the hostname)",
    )
    directory = args.ledger_dir.absolute()
    _check_directory(directory)
    return LedgerSettings(
        directory=directory,
        host=host,
        container=container,
        retention_days=args.ledger_retention_days,
        min_free_mb=args.ledger_min_free_mb,
        state_dir=state_dir(),
    )


def ledger_environment(settings: LedgerSettings | None, environ: MutableMapping[str, str]) -> None:
    """Export the settings for gunicorn's master and workers."""
    if settings is None:
        environ.pop(DIR_ENV, None)  # an inherited MGW_LEDGER_DIR must not turn the ledger on
    else:
        environ.update(settings.to_env())
