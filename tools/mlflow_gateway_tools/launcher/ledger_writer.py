"""One gunicorn worker's ledger writer: each usage line appended whole to its day file.

The day is the UTC day of the request's arrival (its `ts`), so a request that started at
23:59:59 lands in that day's file even when it ends after midnight. The file is opened lazily
with O_APPEND, and each line goes out in one os.write: the workers of a container share the
file without interleaving, and nothing sits in a Python buffer when the process dies.

Nothing here may disturb the request it records. Any OSError (full disk, read-only or
vanished mount, EIO, no permission) pauses the ledger: the line is counted as skipped (the
stdout copy still goes out), one JSON line goes to stderr per transition, and a write is
retried at most once per second until one succeeds. Free space is checked at most once per
second as well (statvfs): below the minimum the ledger pauses before the disk is truly full.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from time import monotonic
from typing import Any

from mlflow_gateway_tools.launcher.ledger_settings import MB, LedgerSettings
from mlflow_gateway_tools.launcher.ledger_state import (
    PAUSED,
    WRITING,
    WorkerState,
    process_start,
    write_state,
)
from mlflow_gateway_tools.ledger_files import file_name
from mlflow_gateway_tools.timeutil import utc_now_iso

CHECK_SECONDS = 1.0  # statvfs, retries and the unlinked-file check at most this often
STATE_EVERY_SECONDS = 5.0  # the state file between transitions
RESUME_FACTOR = 1.05  # resume only 5% above the minimum: no flapping at the threshold
MAX_OPEN_DAYS = 2  # around midnight, requests of both days finish side by side
FILE_MODE = 0o640
OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
EVENT = "gateway.ledger"


def free_bytes(directory: Path, statvfs: Callable[[Path], os.statvfs_result] = os.statvfs) -> int:
    """Bytes an unprivileged writer may still use on the disk holding `directory`."""
    stats = statvfs(directory)
    return stats.f_bavail * stats.f_frsize


def to_stderr(line: bytes) -> None:
    # os.write, not print: no buffer or lock shared with anything else in the process.
    os.write(2, line)


def _ends_torn(path: Path, fd: int) -> bool:
    """Whether the file's last byte is not a newline: a line cut short by a killed writer."""
    size = os.fstat(fd).st_size
    if size == 0:
        return False
    reader = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.pread(reader, 1, size - 1) != b"\n"
    finally:
        os.close(reader)


class LedgerWriter:
    """Append usage lines to this container's day files; pause on any trouble, never raise.

    Called from the worker's event loop only (the middleware's `finally`), so no lock.
    """

    def __init__(
        self,
        settings: LedgerSettings,
        *,
        clock: Callable[[], float] = monotonic,
        statvfs: Callable[[Path], os.statvfs_result] = os.statvfs,
        report: Callable[[bytes], None] = to_stderr,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._statvfs = statvfs
        self._report = report
        self._pid = os.getpid()
        self._process_start = process_start(self._pid)
        self._fds: dict[str, int] = {}
        self._paused: str | None = None
        self._retry_due = False
        self._since = utc_now_iso()
        self._written = 0
        self._skipped = 0
        self._next_check = 0.0
        self._next_state = 0.0
        self._state_saved: tuple[str | None, int, int] | None = None
        self._state_trouble: str | None = None
        self._flush_pending = False

    # --- the hot path ---------------------------------------------------------------------

    def write(self, line: bytes, day: str) -> None:
        """Append `line` (one whole JSON line) to the file of `day` (YYYY-MM-DD)."""
        try:
            self._write(line, day)
        except Exception as error:  # a bug here must still never reach the request
            self._skipped += 1
            self._pause(f"ledger writer error: {error!r}")

    def _write(self, line: bytes, day: str) -> None:
        now = self._clock()
        if now >= self._next_check:
            self._check(now)
        if not self._flush_pending:
            self._schedule_flush()
        if self._paused is not None and not self._retry_due:
            self._skipped += 1
            return
        self._retry_due = False
        problem = self._append(line, day)
        if problem is None:
            self._written += 1
            if self._paused is not None:
                self._resume()
        else:
            self._skipped += 1
            self._pause(problem)

    def _append(self, line: bytes, day: str) -> str | None:
        """Write the line; None, or why it did not reach the file whole."""
        try:
            fd = self._fds.get(day)
            if fd is None:
                fd = self._open(day)
            written = os.write(fd, line)
        except OSError as error:
            return f"cannot write {self._name(day)}: {error.strerror or error}"
        if written != len(line):
            # The fragment stays a malformed line: the next open starts with a newline.
            return f"short write to {self._name(day)}: {written} of {len(line)} bytes"
        return None

    # --- files ----------------------------------------------------------------------------

    def _name(self, day: str) -> str:
        return file_name(day, self.settings.host, self.settings.container)

    def _open(self, day: str) -> int:
        path = self.settings.directory / self._name(day)
        fd = os.open(path, OPEN_FLAGS, FILE_MODE)
        try:
            if _ends_torn(path, fd):
                os.write(fd, b"\n")
        except OSError:
            os.close(fd)
            raise
        if len(self._fds) >= MAX_OPEN_DAYS:
            with contextlib.suppress(OSError):
                os.close(self._fds.pop(min(self._fds)))
        self._fds[day] = fd
        return fd

    def _close_files(self) -> None:
        for fd in self._fds.values():
            with contextlib.suppress(OSError):  # EIO on close: the fd is released all the same
                os.close(fd)
        self._fds.clear()

    def _drop_unlinked_files(self) -> None:
        """A file removed or renamed under us (by hand, say) is reopened, not written blind."""
        for day, fd in list(self._fds.items()):
            try:
                unlinked = os.fstat(fd).st_nlink == 0
            except OSError:
                unlinked = True
            if unlinked:
                with contextlib.suppress(OSError):
                    os.close(self._fds.pop(day))

    # --- pausing and resuming -------------------------------------------------------------

    def _check(self, now: float) -> None:
        """At most once per CHECK_SECONDS: free space, retries, the state file."""
        self._next_check = now + CHECK_SECONDS
        low = self._low_space()
        if low is not None:
            self._pause(low)
        elif self._paused is not None:
            self._retry_due = True
        self._drop_unlinked_files()
        if now >= self._next_state:
            self._save_state(now, force=False)

    def _low_space(self) -> str | None:
        minimum = self.settings.min_free_bytes
        if minimum == 0:
            return None
        try:
            free = free_bytes(self.settings.directory, self._statvfs)
        except OSError as error:
            return f"cannot check free space on {self.settings.directory}: {error.strerror}"
        threshold = minimum * RESUME_FACTOR if self._paused is not None else minimum
        if free >= threshold:
            return None
        return (
            f"free space {free / MB:.1f} MB on {self.settings.directory} is below "
            f"--ledger-min-free-mb {self.settings.min_free_mb} MB"
        )

    def _pause(self, reason: str) -> None:
        self._close_files()  # reopened on resume: a torn last line gets its newline then
        if self._paused is None:
            self._paused = reason
            self._since = utc_now_iso()
            self._announce(PAUSED)
            self._save_state(self._clock(), force=True)
        else:
            self._paused = reason  # still paused; the state file shows the latest reason

    def _resume(self) -> None:
        self._paused = None
        self._since = utc_now_iso()
        self._announce(WRITING)
        self._save_state(self._clock(), force=True)

    def _announce(self, state: str) -> None:
        event = {
            "event": EVENT,
            "ts": self._since,
            "state": "resumed" if state == WRITING else state,
            "reason": self._paused,
            "dir": str(self.settings.directory),
            "pid": self._pid,
            "lines_written": self._written,
            "lines_skipped": self._skipped,
        }
        self._emit(event)

    def _emit(self, event: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):  # stderr gone too: nothing left to tell
            self._report(json.dumps(event, separators=(",", ":")).encode() + b"\n")

    # --- the state file -------------------------------------------------------------------

    def state(self) -> WorkerState:
        return WorkerState(
            pid=self._pid,
            process_start=self._process_start,
            dir=str(self.settings.directory),
            state=WRITING if self._paused is None else PAUSED,
            reason=self._paused,
            since=self._since,
            lines_written=self._written,
            lines_skipped=self._skipped,
            min_free_bytes=self.settings.min_free_bytes,
            updated=utc_now_iso(),
        )

    def _schedule_flush(self) -> None:
        """Save the counts a few seconds after a write even when no later request comes:
        `gateway-ledger status` must not show an idle worker's counts from long ago."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # not in a worker's event loop (tests, scripts): saved on later writes
        self._flush_pending = True
        loop.call_later(STATE_EVERY_SECONDS, self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        self._save_state(self._clock(), force=False)

    def _save_state(self, now: float, *, force: bool) -> None:
        self._next_state = now + STATE_EVERY_SECONDS
        snapshot = (self._paused, self._written, self._skipped)
        if not force and snapshot == self._state_saved:
            return
        try:
            self.settings.state_dir.mkdir(parents=True, exist_ok=True)
            write_state(self.settings.state_dir, self.state())
        except OSError as error:
            trouble = f"cannot write the ledger state file in {self.settings.state_dir}: {error}"
            if trouble != self._state_trouble:  # once, not every few seconds
                self._state_trouble = trouble
                event = {"event": EVENT, "ts": utc_now_iso(), "state": "no-state-file"}
                self._emit(event | {"reason": trouble, "pid": self._pid})
            return
        self._state_saved = snapshot
        self._state_trouble = None

    # --- life cycle -----------------------------------------------------------------------

    def start(self) -> None:
        """At worker boot: the first free-space check and the first state file."""
        self._check(self._clock())

    def close(self) -> None:
        self._close_files()
