"""Ledger housekeeping: compress finished days, delete days past the retention.

One pass looks at every ledger file in the directory, whichever container wrote it, so the
files of removed replicas are handled too. Replicas sharing the directory may run passes at
the same time: compression takes a non-blocking flock on the plain file and re-checks under
it, so a file is compressed once, and a lost race is just a file skipped.

Compressing `X.jsonl` writes `X.jsonl.gz` through a hidden temporary file in the same
directory (fsync, rename, fsync of the directory), then unlinks `X.jsonl`. A crash between
the rename and the unlink leaves both; readers take the .gz (ledger_files), and the next pass
removes the plain file once the .gz is known to hold all of it.

Nothing raises out of housekeep(): every problem is a line in the report's `problems`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gzip
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from mlflow_gateway_tools.ledger_files import COMPRESSED_SUFFIX, PREFIX, LedgerFile, parse_name

DEFAULT_GRACE_SECONDS = 3600  # longer than any request: no line of a finished day is pending
STALE_TEMPORARY_SECONDS = 6 * 3600  # a compression's temporary file is surely abandoned then
GZIP_LEVEL = 6  # most of level 9's gain on JSON lines at a fraction of the CPU
_TEMPORARY_PREFIX = f".{PREFIX}"
_TEMPORARY_SUFFIX = ".tmp"
_GZIP_SIZE_MODULO = 2**32  # a gzip member's trailer keeps the input size modulo 2**32


@dataclass
class HousekeepingReport:
    compressed: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)  # plain copies left by a crash, removed
    deleted: list[str] = field(default_factory=list)  # past the retention
    busy: list[str] = field(default_factory=list)  # another replica is compressing them
    problems: list[str] = field(default_factory=list)

    @property
    def did_something(self) -> bool:
        return bool(self.compressed or self.finished or self.deleted or self.problems)

    def lines(self) -> list[str]:
        """What the pass did, one line per file, for people."""
        return [
            *(f"compressed {name}" for name in self.compressed),
            *(f"removed {name} (its .gz is complete)" for name in self.finished),
            *(f"deleted {name} (past the retention)" for name in self.deleted),
            *(f"skipped {name} (another replica is compressing it)" for name in self.busy),
            *(f"problem: {problem}" for problem in self.problems),
        ]


def _day_end(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _gzip_input_size(path: Path) -> int:
    """The uncompressed size (modulo 2**32) a single-member gzip file records last."""
    with path.open("rb") as handle:
        handle.seek(-4, os.SEEK_END)
        return int.from_bytes(handle.read(4), "little")


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = path.stat()
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (opened.st_dev, opened.st_ino)


def _write_compressed(fd: int, target: Path) -> None:
    """Compress what `fd` has open into `target`, whole or not at all."""
    # Hidden and not a ledger name: readers never see it.
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}{_TEMPORARY_SUFFIX}")
    try:
        with temporary.open("xb") as raw:
            # mtime=0 and no name: the same day file always compresses to the same bytes.
            with (
                gzip.GzipFile("", "wb", GZIP_LEVEL, raw, mtime=0) as compressed,
                os.fdopen(os.dup(fd), "rb") as source,
            ):
                source.seek(0)
                shutil.copyfileobj(source, compressed, 1024 * 1024)
            raw.flush()
            os.fsync(raw.fileno())
        temporary.rename(target)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    _fsync_directory(target.parent)


def _compress(plain: LedgerFile, report: HousekeepingReport) -> None:
    target = plain.path.with_name(plain.stem + COMPRESSED_SUFFIX)
    try:
        fd = os.open(plain.path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return  # another replica finished it since the listing
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            report.busy.append(plain.path.name)
            return
        # Under the lock: the file may have been compressed and unlinked since we opened it.
        if not _same_file(fd, plain.path):
            return
        if target.exists():
            _finish(fd, plain, target, report)
            return
        _write_compressed(fd, target)
        plain.path.unlink()
        _fsync_directory(plain.path.parent)
        report.compressed.append(plain.path.name)
    finally:
        os.close(fd)  # releases the lock


def _finish(fd: int, plain: LedgerFile, target: Path, report: HousekeepingReport) -> None:
    """Both X.jsonl and X.jsonl.gz: remove the plain copy if the .gz holds every byte of it."""
    size = os.fstat(fd).st_size
    if _gzip_input_size(target) != size % _GZIP_SIZE_MODULO:
        report.problems.append(
            f"{plain.path.name} and {target.name} differ in size; both kept for a person "
            "to compare (readers use the .gz)"
        )
        return
    plain.path.unlink()
    report.finished.append(plain.path.name)


def _delete(entry: LedgerFile, report: HousekeepingReport) -> None:
    try:
        entry.path.unlink()
    except FileNotFoundError:
        return  # another replica deleted it first
    report.deleted.append(entry.path.name)


def _remove_stale_temporaries(directory: Path, now: float, report: HousekeepingReport) -> None:
    """Temporary files of compressions that died (a killed replica, a full disk)."""
    try:
        temporaries = list(directory.glob(f"{_TEMPORARY_PREFIX}*{_TEMPORARY_SUFFIX}"))
    except OSError as error:
        report.problems.append(f"cannot list {directory}: {error.strerror or error}")
        return
    for path in temporaries:
        try:
            if now - path.stat().st_mtime > STALE_TEMPORARY_SECONDS:
                path.unlink()
        except FileNotFoundError:
            continue
        except OSError as error:
            report.problems.append(f"cannot remove {path.name}: {error.strerror}")


def housekeep(
    directory: Path,
    *,
    retention_days: int,
    grace_seconds: float = DEFAULT_GRACE_SECONDS,
    now: datetime | None = None,
) -> HousekeepingReport:
    """One pass over `directory`; retention_days 0 keeps files forever."""
    report = HousekeepingReport()
    moment = now or datetime.now(UTC)
    oldest_kept = moment.date() - timedelta(days=retention_days) if retention_days else None
    try:
        entries = sorted(
            (entry for entry in map(parse_name, directory.iterdir()) if entry is not None),
            key=lambda entry: entry.path.name,
        )
    except OSError as error:
        report.problems.append(f"cannot list {directory}: {error.strerror or error}")
        return report
    for entry in entries:
        try:
            if oldest_kept is not None and entry.day < oldest_kept:
                _delete(entry, report)
            elif not entry.compressed and (
                (moment - _day_end(entry.day)).total_seconds() > grace_seconds
            ):
                _compress(entry, report)
        except OSError as error:
            if error.errno == errno.ENOSPC:
                detail = "no space left for the compressed copy"
            else:
                detail = error.strerror or str(error)
            report.problems.append(f"{entry.path.name}: {detail}")
        except Exception as error:  # never out of a pass: the next file still gets its turn
            report.problems.append(f"{entry.path.name}: {type(error).__name__}: {error}")
    _remove_stale_temporaries(directory, time.time(), report)
    return report
