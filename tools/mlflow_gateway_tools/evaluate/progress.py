"""How a run is going: a live line on a terminal, and a JSON file a script can wait on."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from mlflow_gateway_tools.cli_support import write_file_atomically
from mlflow_gateway_tools.evaluate.runner import RequestRecord

PROGRESS_EVERY_S = 1.0


class ProgressFile:
    """`--progress PATH`: {"requests": N, "failed": M, "seconds": S, "finished": false},
    rewritten whole (never half-written) at the start, at the first answer, then at most
    once a second, and at the end with "finished": true."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.requests = 0
        self.failed = 0
        self._started = time.monotonic()
        self._written_at: float | None = None

    def write(self, finished: bool = False) -> None:
        now = time.monotonic()
        document = {
            "requests": self.requests,
            "failed": self.failed,
            "seconds": round(now - self._started, 1),
            "finished": finished,
        }
        write_file_atomically(self.path, json.dumps(document) + "\n", "--progress")
        self._written_at = now

    def add(self, record: RequestRecord) -> None:
        self.requests += 1
        self.failed += not record.ok
        if self.requests == 1 or time.monotonic() - (self._written_at or 0) >= PROGRESS_EVERY_S:
            self.write()


@contextmanager
def terminal_progress(total: int | None) -> Iterator[Callable[[RequestRecord], None]]:
    """A transient progress bar (a count when there is no total) on a terminal; nothing in
    a pipe. Yields the callback to call for each finished request."""
    if not sys.stdout.isatty():
        yield lambda _record: None
        return
    columns: tuple[ProgressColumn, ...] = (
        (TextColumn("requests"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        if total is not None
        else (
            SpinnerColumn(),
            TextColumn("{task.completed:,.0f} requests, {task.fields[failed]:,} failed"),
            TimeElapsedColumn(),
        )
    )
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task("requests", total=total, failed=0)
        failed = 0

        def advance(record: RequestRecord) -> None:
            nonlocal failed
            failed += not record.ok
            progress.update(task, advance=1, failed=failed)

        yield advance
