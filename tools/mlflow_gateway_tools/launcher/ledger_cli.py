"""`gateway-ledger`: the usage ledger's state, and one housekeeping pass by hand.

    gateway-ledger status [--dir DIR] [--json]
    gateway-ledger housekeep [--dir DIR] [--retention-days N] [--grace-seconds S] [--json]

--dir defaults to $MGW_LEDGER_DIR, else to the directory the running launcher's workers write
(read from their state files, so `docker exec <replica> gateway-ledger status` needs no
option). Run it inside the replica: worker liveness is judged by the container's pids.

`status --json` prints one object; Ansible's status report reads it, so its keys are stable
(new keys may be added, none renamed or removed without a new "format"):

    {
      "format": 1,
      "dir": "/var/lib/mgw-ledger",        the ledger directory
      "writing": true,                      false when any live worker has paused its ledger
      "paused_reason": null,                the paused worker's reason (first by pid), or null
      "paused_since": null,                 when the earliest paused worker paused (ISO, UTC)
      "workers": 2,                         live workers writing this directory
      "lines_written": 1200,                their lines written since they started
      "lines_skipped": 0,                   their lines skipped while paused (stdout has them)
      "files": 3,                           ledger files as readers count them
      "bytes": 123456,                      their size on disk
      "first_day": "2026-11-30",            first and last UTC day covered, null when empty
      "last_day": "2026-12-01",
      "free_bytes": 8000000000,             free on the ledger's disk (null: cannot tell)
      "min_free_bytes": 536870912           below this the workers pause the ledger
    }

"writing" is true when no live worker says otherwise: a state file of a pid that no longer
runs is ignored. The exit code is 0 whether or not the ledger is writing; read "writing".

`housekeep` compresses the finished days and deletes days past the retention (what the
launcher's master does at start and every 10 minutes) and prints what it did; exit code 1
when it met a problem (each is printed), 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mlflow_gateway_tools import __version__
from mlflow_gateway_tools.cli_support import EXIT_OK, EXIT_THRESHOLD, CommandError, run_command
from mlflow_gateway_tools.launcher.ledger_housekeeping import DEFAULT_GRACE_SECONDS, housekeep
from mlflow_gateway_tools.launcher.ledger_settings import (
    DEFAULT_MIN_FREE_MB,
    DEFAULT_RETENTION_DAYS,
    DIR_ENV,
    MB,
    MIN_FREE_MB_ENV,
    RETENTION_DAYS_ENV,
    state_dir,
)
from mlflow_gateway_tools.launcher.ledger_state import PAUSED, WorkerState, live_states
from mlflow_gateway_tools.launcher.ledger_writer import free_bytes
from mlflow_gateway_tools.ledger_files import ledger_files

PROG = "gateway-ledger"
STATUS_FORMAT = 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise CommandError(f"${name} is {value!r}, not a whole number; fix or unset it") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="The gateway's usage ledger: its state, and housekeeping by hand.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    dir_help = f"ledger directory (default: ${DIR_ENV}, else the running workers' directory)"

    status = commands.add_parser("status", help="is the ledger writing, and what it holds")
    status.add_argument("--dir", type=Path, help=dir_help)
    status.add_argument("--json", action="store_true", help="one JSON object (stable keys)")

    keep = commands.add_parser("housekeep", help="compress finished days, apply the retention")
    keep.add_argument("--dir", type=Path, help=dir_help)
    keep.add_argument(
        "--retention-days",
        type=int,
        help=f"delete files older than this; 0 keeps them forever (default: "
        f"${RETENTION_DAYS_ENV}, else {DEFAULT_RETENTION_DAYS})",
    )
    keep.add_argument(
        "--grace-seconds",
        type=float,
        default=DEFAULT_GRACE_SECONDS,
        help="compress a day this long after it ended (longer than any request)",
    )
    keep.add_argument("--json", action="store_true", help="what was done, as one JSON object")
    keep.add_argument(
        "--quiet",
        action="store_true",
        help="print nothing when nothing was done, and prefix lines with the command name "
        "(the launcher's periodic passes write to its log)",
    )
    return parser


def _directory(given: Path | None, workers: list[WorkerState]) -> Path:
    if given is None and os.environ.get(DIR_ENV):
        given = Path(os.environ[DIR_ENV])
    if given is None:
        written = sorted({state.dir for state in workers})
        if len(written) != 1:
            found = "no running worker writes a ledger" if not written else f"{written}"
            raise CommandError(f"give --dir DIR (or set ${DIR_ENV}); {found} here")
        given = Path(written[0])
    if not given.is_dir():
        raise CommandError(f"--dir {given} is not a directory; give the ledger directory")
    return given.absolute()


def status_document(directory: Path, workers: list[WorkerState]) -> dict[str, Any]:
    """The `status --json` object (see the module docstring)."""
    mine = [state for state in workers if Path(state.dir).absolute() == directory]
    paused = sorted((state for state in mine if state.state == PAUSED), key=lambda s: s.pid)
    try:
        files = list(ledger_files(directory))
    except OSError as error:
        raise CommandError(f"cannot list --dir {directory}: {error.strerror}") from None
    size = 0
    for entry in files:
        try:
            size += entry.path.stat().st_size
        except FileNotFoundError:
            continue  # compressed or deleted since the listing
    try:
        free: int | None = free_bytes(directory)
    except OSError:
        free = None
    if mine:
        min_free = max(state.min_free_bytes for state in mine)
    else:
        min_free = _env_int(MIN_FREE_MB_ENV, DEFAULT_MIN_FREE_MB) * MB
    return {
        "format": STATUS_FORMAT,
        "dir": str(directory),
        "writing": not paused,
        "paused_reason": paused[0].reason if paused else None,
        "paused_since": min(state.since for state in paused) if paused else None,
        "workers": len(mine),
        "lines_written": sum(state.lines_written for state in mine),
        "lines_skipped": sum(state.lines_skipped for state in mine),
        "files": len(files),
        "bytes": size,
        "first_day": min(entry.day for entry in files).isoformat() if files else None,
        "last_day": max(entry.day for entry in files).isoformat() if files else None,
        "free_bytes": free,
        "min_free_bytes": min_free,
    }


def _megabytes(value: int | None) -> str:
    return "unknown" if value is None else f"{value / MB:,.1f} MB"


def status_lines(document: dict[str, Any]) -> list[str]:
    if document["writing"]:
        writing = "yes"
    else:
        writing = f"NO, paused since {document['paused_since']}: {document['paused_reason']}"
    days = f"{document['first_day']} to {document['last_day']}" if document["files"] else "none yet"
    return [
        f"directory:   {document['dir']}",
        f"writing:     {writing}",
        f"workers:     {document['workers']} live, {document['lines_written']} lines written, "
        f"{document['lines_skipped']} skipped while paused",
        f"files:       {document['files']} ({document['bytes']:,} bytes), days {days}",
        f"free disk:   {_megabytes(document['free_bytes'])} "
        f"(the ledger pauses below {_megabytes(document['min_free_bytes'])})",
    ]


def _status(args: argparse.Namespace) -> int:
    workers = live_states(state_dir())
    document = status_document(_directory(args.dir, workers), workers)
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        print("\n".join(status_lines(document)))
    return EXIT_OK


def _housekeep(args: argparse.Namespace) -> int:
    directory = _directory(args.dir, live_states(state_dir()))
    retention = args.retention_days
    if retention is None:
        retention = _env_int(RETENTION_DAYS_ENV, DEFAULT_RETENTION_DAYS)
    if retention < 0:
        raise CommandError(
            f"--retention-days {retention} is negative; give the days to keep (0: forever)"
        )
    if args.grace_seconds < 0:
        raise CommandError(f"--grace-seconds {args.grace_seconds:g} is negative; use 0 or more")
    report = housekeep(directory, retention_days=retention, grace_seconds=args.grace_seconds)
    if args.json:
        print(json.dumps({"dir": str(directory), **asdict(report)}, indent=2))
    elif report.did_something or not args.quiet:
        prefix = f"{PROG}: " if args.quiet else ""
        for line in report.lines() or [f"nothing to do in {directory}"]:
            problem = line.startswith("problem: ")
            print(prefix + line, file=sys.stderr if problem else sys.stdout, flush=True)
    return EXIT_THRESHOLD if report.problems else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = _status if args.command == "status" else _housekeep
    return run_command(PROG, lambda: command(args))


if __name__ == "__main__":
    sys.exit(main())
