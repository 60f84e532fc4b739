"""--ledger DIR: the day files of a usage ledger directory that a period needs (names and
selection are ledger_files' contract with the launcher that writes them)."""

from __future__ import annotations

from pathlib import Path

from mlflow_gateway_tools.cli_support import CommandError
from mlflow_gateway_tools.costs.aggregate import TimeWindow
from mlflow_gateway_tools.ledger_files import ledger_files


def day_files(directory: Path, window: TimeWindow) -> list[Path]:
    """The ledger files of `directory` for the days `window` touches, in name order."""
    first_day, last_day = window.days()
    try:
        return [entry.path for entry in ledger_files(directory, first_day, last_day)]
    except OSError as error:
        raise CommandError(
            f"cannot read --ledger {directory}: {error.strerror or error}; give the directory "
            "the gateway's usage ledger is written to (its usage-DAY_HOST_CONTAINER.jsonl "
            "files), readable by this user"
        ) from None


def describe(directory: Path, files: list[Path], window: TimeWindow) -> str:
    """What one --ledger read, for the message that found no usage."""
    return f"ledger {directory} ({len(files)} day file(s) for {window.describe()})"
