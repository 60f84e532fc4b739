"""What every console script shares: clear errors, exit codes, telemetry off for MLflow."""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from rich.console import Console

PIPE_WIDTH = 160
EXIT_OK = 0
EXIT_THRESHOLD = 1  # the run worked but a limit (error rate, budget) was exceeded
EXIT_USAGE = 2  # bad input or an unusable environment; nothing was changed


class CommandError(Exception):
    """A problem the user can fix; the message names the bad value and the fix."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (not the usage block first): the bad value,
    argparse's own hint (the valid choices, the expected type) and where to read more."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def run_command(prog: str, body: Callable[[], int]) -> int:
    """Run a command body, turning CommandError into one stderr line and exit code 2."""
    try:
        return body()
    except CommandError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def exit_status(over_limit: bool, describe: Callable[[], str]) -> int:
    """EXIT_OK, or EXIT_THRESHOLD after naming the exceeded limit in red on stderr: the run
    itself worked (its output is complete) but a limit the user set was crossed."""
    if not over_limit:
        return EXIT_OK
    stderr_console().print(f"[red]{describe()}[/red]")
    return EXIT_THRESHOLD


def disable_mlflow_telemetry() -> None:
    """MLflow's telemetry client calls an outside host on import; never let it."""
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ["DO_NOT_TRACK"] = "true"


def stdout_console() -> Console:
    """Rich output: the terminal's width on a terminal, wide enough for tables in a pipe."""
    return Console() if sys.stdout.isatty() else Console(width=PIPE_WIDTH)


def stderr_console() -> Console:
    return Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=PIPE_WIDTH)


def _unwritable(path: Path, option: str, error: OSError) -> str:
    """One line naming the file, the reason and what to do about it."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = f"free space on the disk holding {path.parent} or give {option} another directory"
    elif error.errno == errno.ENOENT:
        fix = f"create {path.parent} or give {option} an existing directory"
    elif error.errno == errno.EISDIR:
        fix = f"give {option} a file name, not a directory"
    else:  # read-only filesystem, no permission, ...
        fix = f"give {option} a path in a writable directory"
    return (
        f"cannot write {option} {path}: {error.strerror or error}; nothing was written "
        f"there (an earlier {path.name} is left as it was). Fix: {fix}"
    )


def _partial_name(path: Path) -> Path:
    """A hidden file beside `path`: same filesystem, so the final rename is atomic."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")


def check_writable(path: Path, option: str) -> None:
    """Fail before any work when `path`'s directory cannot take a file (missing, read-only,
    no permission); a full disk can only show at the real write."""
    if path.is_dir():  # the probe beside it would succeed, the final rename would not
        error = IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        raise CommandError(_unwritable(path, option, error))
    probe = _partial_name(path)
    try:
        if path.is_dir():  # the probe beside it would pass; only the final rename would fail
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        probe.open("x").close()
        probe.unlink()
    except OSError as error:
        raise CommandError(_unwritable(path, option, error)) from None


def write_file_atomically(path: Path, text: str, option: str) -> None:
    """Write `text` to `path` whole or not at all: into a temporary file in the same
    directory, flushed to disk, then renamed over `path`. A full disk, a read-only directory
    or a crash leaves no half-written file, and an earlier file at `path` stays intact.
    Raises CommandError naming `option`, the path and the fix."""
    partial = _partial_name(path)
    created = False
    try:
        with partial.open("x", encoding="utf-8") as handle:
            created = True
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        partial.replace(path)
    except OSError as error:
        if created:
            with contextlib.suppress(OSError):
                partial.unlink()
        raise CommandError(_unwritable(path, option, error)) from None
