"""One worker's ledger writer on real files: whole lines, day files, pausing and resuming.

The clock and statvfs are injected so that "at most once per second" and "below the minimum"
are tested without waiting or filling a disk; everything else is the real filesystem.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import stat
from collections.abc import Callable, Container
from pathlib import Path

import pytest

from mlflow_gateway_tools.launcher import ledger_writer
from mlflow_gateway_tools.launcher.ledger_settings import MB, LedgerSettings
from mlflow_gateway_tools.launcher.ledger_state import WorkerState, state_path
from mlflow_gateway_tools.launcher.ledger_writer import LedgerWriter
from mlflow_gateway_tools.launcher.middleware import write_to_both
from mlflow_gateway_tools.ledger_files import file_name

DAY = "2026-12-01"
NEXT_DAY = "2026-12-02"


def line(number: int, day: str = DAY) -> bytes:
    record = {"event": "gateway.request", "ts": f"{day}T12:00:00.000Z", "request_id": f"r{number}"}
    return json.dumps(record).encode() + b"\n"


class Rig:
    """A writer on tmp_path with a hand-driven clock, free space and a captured stderr."""

    def __init__(self, tmp_path: Path, min_free_mb: int = 512) -> None:
        self.directory = tmp_path / "ledger"
        self.directory.mkdir(exist_ok=True)
        self.settings = LedgerSettings(
            self.directory, "gw-host-1", "3f2a9c1b2d4e", 400, min_free_mb, tmp_path / "state"
        )
        self.now = 100.0
        self.free_mb = 10_000.0
        self.statvfs_calls = 0
        self.statvfs_error: Exception | None = None
        self.events: list[dict] = []
        self.writer = LedgerWriter(
            self.settings,
            clock=lambda: self.now,
            statvfs=self._statvfs,
            report=lambda data: self.events.append(json.loads(data)),
        )

    def _statvfs(self, _path: Path) -> os.statvfs_result:
        self.statvfs_calls += 1
        if self.statvfs_error is not None:
            raise self.statvfs_error
        # bsize, frsize, blocks, bfree, bavail (what free_bytes reads), files, ffree, favail, flag,
        # namemax
        blocks = int(self.free_mb * MB) // 4096
        return os.statvfs_result((4096, 4096, blocks, blocks, blocks, 0, 0, 0, 0, 255))

    def path(self, day: str = DAY) -> Path:
        return self.directory / file_name(day, "gw-host-1", "3f2a9c1b2d4e")

    def state(self) -> WorkerState:
        return WorkerState.from_json(state_path(self.settings.state_dir, os.getpid()).read_bytes())

    def later(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


def open_files_in(directory: Path) -> dict[int, str]:
    """The fds of this process open on files in `directory`, with the files' names."""
    found = {}
    for link in Path("/proc/self/fd").iterdir():
        try:
            target = link.readlink()
        except OSError:
            continue
        if target.parent == directory:
            found[int(link.name)] = target.name
    return found


def open_ledger_fds(directory: Path) -> list[str]:
    return sorted(open_files_in(directory).values())


def test_each_line_goes_whole_to_the_file_of_its_day(rig: Rig) -> None:
    rig.writer.write(line(1), DAY)
    assert rig.path().read_bytes() == line(1), "on disk at once: no Python buffer"
    rig.writer.write(line(2, NEXT_DAY), NEXT_DAY)
    rig.writer.write(line(3), DAY)  # a request that arrived before midnight ends after it
    assert rig.path().read_bytes() == line(1) + line(3)
    assert rig.path(NEXT_DAY).read_bytes() == line(2, NEXT_DAY)
    assert stat.S_IMODE(rig.path().stat().st_mode) == 0o640 & ~current_umask()


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_workers_of_one_container_append_to_the_same_file(tmp_path: Path) -> None:
    first, second = Rig(tmp_path), Rig(tmp_path)
    for number in range(100):
        (first if number % 2 else second).writer.write(line(number), DAY)
    assert first.path().read_bytes().splitlines(keepends=True) == [line(n) for n in range(100)]


def test_the_file_stays_open_until_the_day_changes(rig: Rig) -> None:
    for number in range(3):
        rig.writer.write(line(number), DAY)
    assert open_ledger_fds(rig.directory) == [rig.path().name]
    rig.writer.write(line(3, NEXT_DAY), NEXT_DAY)
    assert open_ledger_fds(rig.directory) == [rig.path().name, rig.path(NEXT_DAY).name]
    rig.writer.write(line(4, "2026-12-03"), "2026-12-03")
    assert open_ledger_fds(rig.directory) == [rig.path(NEXT_DAY).name, rig.path("2026-12-03").name]
    rig.writer.close()
    assert open_ledger_fds(rig.directory) == []


def test_a_torn_last_line_is_closed_before_the_next_line(rig: Rig) -> None:
    fragment = line(1)[:25]  # what a SIGKILL in the middle of a write leaves
    rig.path().write_bytes(line(0) + fragment)
    rig.writer.write(line(2), DAY)
    assert rig.path().read_bytes() == line(0) + fragment + b"\n" + line(2)
    lines = rig.path().read_bytes().splitlines()
    assert [json.loads(text)["request_id"] for text in (lines[0], lines[2])] == ["r0", "r2"]


def test_a_file_ending_cleanly_gets_no_extra_newline(rig: Rig) -> None:
    rig.path().write_bytes(line(0))
    rig.writer.write(line(1), DAY)
    assert rig.path().read_bytes() == line(0) + line(1)


def test_a_vanished_directory_pauses_the_ledger_once_and_a_later_write_resumes_it(
    rig: Rig, tmp_path: Path
) -> None:
    rig.writer.start()
    rig.directory.rename(tmp_path / "moved")  # an unmounted or removed ledger disk
    for number in range(5):
        rig.writer.write(line(number), DAY)
    [paused] = rig.events
    assert paused["event"] == "gateway.ledger"
    assert paused["state"] == "paused"
    assert "No such file or directory" in paused["reason"]
    assert rig.path().name in paused["reason"]
    state = rig.state()
    assert (state.state, state.lines_written, state.lines_skipped) == ("paused", 0, 1)

    (tmp_path / "moved").rename(rig.directory)
    rig.writer.write(line(5), DAY)
    assert len(rig.events) == 1, "no retry before a second has passed"
    rig.later(1.1)
    rig.writer.write(line(6), DAY)
    assert [event["state"] for event in rig.events] == ["paused", "resumed"]
    assert rig.path().read_bytes() == line(6)
    state = rig.state()
    assert (state.state, state.reason, state.lines_written, state.lines_skipped) == (
        "writing",
        None,
        1,
        6,
    )


def failing_writes(code: int, fds: Callable[[], Container[int]]) -> Callable[[int, bytes], int]:
    real_write = os.write

    def write(fd: int, data: bytes) -> int:
        if fd in fds():
            raise OSError(code, os.strerror(code))
        return real_write(fd, data)

    return write


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EIO])
def test_any_oserror_pauses_without_raising_and_retries_once_a_second(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    rig.writer.write(line(0), DAY)
    # os.write of the whole process (the writer calls it as os.write)
    monkeypatch.setattr(os, "write", failing_writes(code, lambda: open_files_in(rig.directory)))
    rig.writer.write(line(1), DAY)
    rig.later(0.5)
    rig.writer.write(line(2), DAY)
    assert [event["state"] for event in rig.events] == ["paused"]
    assert os.strerror(code) in rig.events[0]["reason"]
    rig.later(1.0)
    rig.writer.write(line(3), DAY)  # the retry fails again: still paused, no second line
    assert [event["state"] for event in rig.events] == ["paused"]
    monkeypatch.undo()
    rig.later(1.0)
    rig.writer.write(line(4), DAY)
    assert [event["state"] for event in rig.events] == ["paused", "resumed"]
    assert rig.path().read_bytes() == line(0) + line(4)
    assert (rig.state().lines_written, rig.state().lines_skipped) == (2, 3)


def test_low_free_space_pauses_before_the_disk_is_full_and_resumes_above_a_margin(
    rig: Rig,
) -> None:
    rig.writer.write(line(0), DAY)
    rig.free_mb = 500.0
    rig.later(1.0)
    rig.writer.write(line(1), DAY)
    [paused] = rig.events
    assert paused["reason"] == (
        f"free space 500.0 MB on {rig.directory} is below --ledger-min-free-mb 512 MB"
    )
    rig.free_mb = 520.0  # above the minimum, within the 5% margin: no flapping
    rig.later(1.0)
    rig.writer.write(line(2), DAY)
    assert len(rig.events) == 1
    rig.free_mb = 540.0
    rig.later(1.0)
    rig.writer.write(line(3), DAY)
    assert [event["state"] for event in rig.events] == ["paused", "resumed"]
    assert rig.path().read_bytes() == line(0) + line(3)


def test_free_space_is_checked_at_most_once_a_second(rig: Rig) -> None:
    for number in range(1000):
        rig.writer.write(line(number), DAY)
    assert rig.statvfs_calls == 1
    rig.later(1.0)
    rig.writer.write(line(1000), DAY)
    assert rig.statvfs_calls == 2


def test_min_free_zero_never_checks_free_space(tmp_path: Path) -> None:
    rig = Rig(tmp_path, min_free_mb=0)
    rig.free_mb = 0.0
    rig.writer.write(line(0), DAY)
    assert rig.events == []
    assert rig.statvfs_calls == 0


def test_the_state_file_follows_transitions_at_once_and_counts_every_few_seconds(
    rig: Rig,
) -> None:
    rig.writer.start()
    started = rig.state()
    assert (started.state, started.lines_written, started.pid) == ("writing", 0, os.getpid())
    assert started.dir == str(rig.directory)
    assert started.min_free_bytes == 512 * MB
    for number in range(10):
        rig.writer.write(line(number), DAY)
    rig.later(1.0)
    rig.writer.write(line(10), DAY)
    assert rig.state().lines_written == 0, "counts are not rewritten on every line"
    rig.later(5.0)
    rig.writer.write(line(11), DAY)
    assert rig.state().lines_written == 11, "the count as of the check before line 11"
    rig.free_mb = 1.0
    rig.later(1.0)
    rig.writer.write(line(12), DAY)
    paused = rig.state()
    assert paused.state == "paused", "written at the transition, not seconds later"
    assert paused.reason is not None
    assert "below --ledger-min-free-mb 512 MB" in paused.reason
    rig.later(5.0)
    rig.writer.write(line(13), DAY)
    assert rig.state().lines_skipped == 1


def test_an_idle_worker_saves_its_counts_soon_after_its_last_line(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ledger_writer, "STATE_EVERY_SECONDS", 0.05)

    async def one_line_then_idle() -> int:
        rig.writer.start()
        rig.writer.write(line(0), DAY)  # no later write: only the event loop's timer saves
        deadline = asyncio.get_running_loop().time() + 10
        while rig.state().lines_written == 0 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        return rig.state().lines_written

    assert asyncio.run(one_line_then_idle()) == 1


def test_an_unwritable_state_directory_is_reported_once_and_the_ledger_still_writes(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path)
    rig.settings.state_dir.write_text("a file where the state directory should be")
    rig.writer.start()
    for number in range(3):
        rig.later(6.0)
        rig.writer.write(line(number), DAY)
    assert [event["state"] for event in rig.events] == ["no-state-file"]
    assert rig.path().read_bytes() == b"".join(line(n) for n in range(3))


def test_a_file_removed_under_the_writer_is_reopened(rig: Rig) -> None:
    rig.writer.write(line(0), DAY)
    rig.path().unlink()
    rig.later(1.0)
    rig.writer.write(line(1), DAY)
    assert rig.path().read_bytes() == line(1)


def test_the_ledger_gets_every_line_even_when_stdout_fails() -> None:
    written: list[bytes] = []

    def broken_stdout(_line: bytes, _day: str) -> None:
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    both = write_to_both(broken_stdout, lambda data, _day: written.append(data))
    with pytest.raises(BrokenPipeError):
        both(line(0), DAY)
    assert written == [line(0)]


def test_an_unexpected_error_in_the_writer_pauses_it_and_never_reaches_the_caller(
    rig: Rig,
) -> None:
    rig.statvfs_error = ValueError("a bug, not a disk problem")
    rig.writer.write(line(0), DAY)  # must not raise
    assert rig.events[0]["state"] == "paused"
    assert rig.events[0]["reason"] == "ledger writer error: ValueError('a bug, not a disk problem')"
    rig.statvfs_error = None
    rig.later(1.0)
    rig.writer.write(line(1), DAY)
    assert [event["state"] for event in rig.events] == ["paused", "resumed"]
    assert rig.path().read_bytes() == line(1)
