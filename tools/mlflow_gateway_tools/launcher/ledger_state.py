"""Each ledger-writing worker's state in a small JSON file, read by `gateway-ledger status`.

A worker writes `$MGW_LEDGER_STATE_DIR/<pid>.json` (default /tmp/mgw-ledger-state, inside the
container and not on the ledger disk, so it still works when that disk is full) at start, on
every writing/paused transition and at most every few seconds otherwise, always whole
(temporary file + rename):

    {"format": 1, "pid": 4711, "process_start": 1234567, "dir": "/var/lib/mgw-ledger",
     "state": "paused", "reason": "free space 310.2 MB ... is below --ledger-min-free-mb 512",
     "since": "2026-12-01T21:00:00.000Z", "lines_written": 1200, "lines_skipped": 3,
     "min_free_bytes": 536870912, "updated": "2026-12-01T21:00:04.000Z"}

`state` is "writing" or "paused"; `since` is the last transition (or the worker's start);
the line counts are the worker's own since its start. `process_start` (the kernel's start
time of the pid) tells a live worker from a later process that reuses a dead one's pid.
The master removes a worker's file when it reaps the worker.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

FORMAT = 1
WRITING = "writing"
PAUSED = "paused"
# /proc/<pid>/stat after the ")" closing the command name: state is field 3, starttime 22.
_STARTTIME_INDEX = 22 - 3


@dataclass(frozen=True, slots=True)
class WorkerState:
    pid: int
    process_start: int | None
    dir: str
    state: str
    reason: str | None
    since: str
    lines_written: int
    lines_skipped: int
    min_free_bytes: int
    updated: str

    def to_json(self) -> bytes:
        return json.dumps({"format": FORMAT, **asdict(self)}, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> WorkerState:
        """Parse a state file; ValueError when it is not one."""
        document: Any = json.loads(data)
        if not isinstance(document, dict) or document.pop("format", None) != FORMAT:
            raise ValueError("not a ledger worker state file")
        try:
            return cls(**document)
        except TypeError as error:
            raise ValueError(f"not a ledger worker state file: {error}") from None


def process_start(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot); None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    try:
        return int(stat[stat.rindex(b")") + 2 :].split()[_STARTTIME_INDEX])
    except (ValueError, IndexError):
        return None


def state_path(directory: Path, pid: int) -> Path:
    return directory / f"{pid}.json"


def write_state(directory: Path, state: WorkerState) -> None:
    """Replace the worker's state file whole; OSError for the caller to report."""
    path = state_path(directory, state.pid)
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, state.to_json())
    finally:
        os.close(fd)
    temporary.replace(path)


def remove_state(directory: Path, pid: int) -> None:
    with contextlib.suppress(OSError):
        state_path(directory, pid).unlink()


def is_alive(state: WorkerState) -> bool:
    started = process_start(state.pid)
    return started is not None and started == state.process_start


def live_states(directory: Path) -> list[WorkerState]:
    """The states of the workers still running; files of dead pids and junk are ignored."""
    states = []
    try:
        paths = sorted(directory.glob("*.json"))
    except OSError:
        return []
    for path in paths:
        try:
            state = WorkerState.from_json(path.read_bytes())
        except (OSError, ValueError):
            continue
        if is_alive(state):
            states.append(state)
    return states
