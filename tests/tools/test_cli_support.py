"""Result files are written whole or not at all, and a refusal names the path and the fix.

The real full and read-only filesystems are in tests/drills/test_local_drills.py (tmpfs
mounts need root); here the failure is injected at the flush to disk.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from mlflow_gateway_tools.cli_support import CommandError, check_writable, write_file_atomically


def test_a_result_file_replaces_the_earlier_one_with_ordinary_permissions(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text("earlier")
    umask = os.umask(0o022)
    try:
        write_file_atomically(path, "new results\n", "--output")
    finally:
        os.umask(umask)
    assert path.read_text() == "new results\n"
    assert path.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_a_failed_write_keeps_the_earlier_file_and_leaves_no_partial_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "report.html"
    path.write_text("earlier report")

    def disk_full(_fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", disk_full)  # the process's, which cli_support calls
    with pytest.raises(CommandError) as error:
        write_file_atomically(path, "x" * 100_000, "--html")
    assert path.read_text() == "earlier report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]
    message = str(error.value)
    assert f"cannot write --html {path}: No space left on device" in message
    assert f"free space on the disk holding {tmp_path}" in message


@pytest.mark.parametrize("write", [False, True], ids=["checked-first", "written"])
def test_a_missing_directory_is_named_with_the_fix(tmp_path: Path, write: bool) -> None:
    path = tmp_path / "no-such-dir" / "results.json"
    with pytest.raises(CommandError) as error:
        if write:
            write_file_atomically(path, "{}", "--output")
        else:
            check_writable(path, "--output")
    assert f"cannot write --output {path}: No such file or directory" in str(error.value)
    assert f"create {path.parent}" in str(error.value)


def test_checking_a_writable_directory_leaves_nothing_behind(tmp_path: Path) -> None:
    check_writable(tmp_path / "results.json", "--output")
    assert list(tmp_path.iterdir()) == []
