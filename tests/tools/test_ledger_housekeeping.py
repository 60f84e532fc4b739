"""Ledger housekeeping on real files: compression of finished days, retention, crashes and
two replicas compressing at once."""

from __future__ import annotations

import fcntl
import gzip
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from mlflow_gateway_tools.launcher import ledger_master
from mlflow_gateway_tools.launcher.ledger_housekeeping import housekeep
from mlflow_gateway_tools.launcher.ledger_settings import LedgerSettings
from mlflow_gateway_tools.ledger_files import file_name, ledger_files

NOW = datetime(2026, 12, 10, 1, 30, tzinfo=UTC)  # 1.5 h into the day


def day_file(directory: Path, day: str, container: str = "c1", lines: int = 3) -> Path:
    path = directory / file_name(day, "gw-host-1", container)
    path.write_bytes(b"".join(b'{"event":"gateway.request","n":%d}\n' % n for n in range(lines)))
    return path


def names(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def test_a_finished_day_is_compressed_once_its_grace_is_over(tmp_path: Path) -> None:
    yesterday = day_file(tmp_path, "2026-12-09")
    today = day_file(tmp_path, "2026-12-10")
    content = yesterday.read_bytes()

    early = housekeep(tmp_path, retention_days=400, grace_seconds=2 * 3600, now=NOW)
    assert early.compressed == [], "the day ended 1.5 h ago: within a 2 h grace"
    report = housekeep(tmp_path, retention_days=400, now=NOW)

    assert report.compressed == [yesterday.name]
    assert names(tmp_path) == [yesterday.name + ".gz", today.name]
    assert gzip.decompress((tmp_path / (yesterday.name + ".gz")).read_bytes()) == content
    assert report.lines() == [f"compressed {yesterday.name}"]
    assert not housekeep(tmp_path, retention_days=400, now=NOW).did_something


def test_files_of_every_container_are_compressed(tmp_path: Path) -> None:
    for container in ("removed-replica", "live-replica"):
        day_file(tmp_path, "2026-12-08", container)
    report = housekeep(tmp_path, retention_days=400, now=NOW)
    assert len(report.compressed) == 2
    assert all(entry.compressed for entry in ledger_files(tmp_path))


def test_days_past_the_retention_are_deleted_compressed_or_not(tmp_path: Path) -> None:
    kept = day_file(tmp_path, "2026-12-07")  # 3 days old: kept with a 3-day retention
    plain = day_file(tmp_path, "2026-12-06")
    compressed = tmp_path / file_name("2026-12-05", "gw-host-1", "c1", compressed=True)
    compressed.write_bytes(gzip.compress(b"{}\n"))

    report = housekeep(tmp_path, retention_days=3, now=NOW)

    assert sorted(report.deleted) == sorted([plain.name, compressed.name])
    assert names(tmp_path) == [kept.name + ".gz"]
    forever = day_file(tmp_path, "2020-01-01")
    assert housekeep(tmp_path, retention_days=0, now=NOW).deleted == []
    assert (tmp_path / (forever.name + ".gz")).exists(), "0 keeps files forever"


def test_a_crash_between_rename_and_unlink_never_double_counts(tmp_path: Path) -> None:
    plain = day_file(tmp_path, "2026-12-09")
    (tmp_path / (plain.name + ".gz")).write_bytes(gzip.compress(plain.read_bytes()))
    # What readers see in the meantime: the .gz only.
    assert [entry.path.name for entry in ledger_files(tmp_path)] == [plain.name + ".gz"]

    report = housekeep(tmp_path, retention_days=400, now=NOW)

    assert report.finished == [plain.name]
    assert report.compressed == []
    assert names(tmp_path) == [plain.name + ".gz"]


def test_a_plain_file_that_grew_after_its_gz_was_made_is_kept(tmp_path: Path) -> None:
    plain = day_file(tmp_path, "2026-12-09")
    (tmp_path / (plain.name + ".gz")).write_bytes(gzip.compress(plain.read_bytes()))
    with plain.open("ab") as handle:
        handle.write(b'{"event":"gateway.request","late":true}\n')
    report = housekeep(tmp_path, retention_days=400, now=NOW)
    assert report.finished == []
    assert "differ in size; both kept" in report.problems[0]
    assert plain.exists()


def test_a_file_another_replica_is_compressing_is_skipped(tmp_path: Path) -> None:
    plain = day_file(tmp_path, "2026-12-09")
    with plain.open("rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        report = housekeep(tmp_path, retention_days=400, now=NOW)
        assert report.busy == [plain.name]
        assert names(tmp_path) == [plain.name]
    assert housekeep(tmp_path, retention_days=400, now=NOW).compressed == [plain.name]


RACE = """
import sys
from datetime import UTC, datetime
from pathlib import Path
from mlflow_gateway_tools.launcher import ledger_master
from mlflow_gateway_tools.launcher.ledger_housekeeping import housekeep
from mlflow_gateway_tools.launcher.ledger_settings import LedgerSettings

sys.stdin.readline()  # both start together
report = housekeep(Path(sys.argv[1]), retention_days=400, now=datetime(2026, 12, 10, 2, tzinfo=UTC))
print(len(report.compressed), len(report.problems))
"""


def test_two_replicas_compressing_at_once_compress_each_file_once(tmp_path: Path) -> None:
    days = [day_file(tmp_path, f"2026-11-{day:02d}", lines=20_000) for day in range(1, 29)]
    originals = {path.name: path.read_bytes() for path in days}
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, str(tmp_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for racer in racers:
        assert racer.stdin is not None  # stdin=PIPE
        racer.stdin.write("go\n")
        racer.stdin.flush()
    results = [racer.communicate(timeout=120)[0].split() for racer in racers]

    assert sum(int(compressed) for compressed, _ in results) == len(originals)
    assert all(problems == "0" for _, problems in results)
    assert names(tmp_path) == sorted(name + ".gz" for name in originals)
    for name, content in originals.items():
        assert gzip.decompress((tmp_path / (name + ".gz")).read_bytes()) == content


def test_problems_are_reported_not_raised(tmp_path: Path) -> None:
    report = housekeep(tmp_path / "missing", retention_days=400, now=NOW)
    assert report.problems == [f"cannot list {tmp_path / 'missing'}: No such file or directory"]


@pytest.mark.parametrize("leftover_age_hours", [1, 7])
def test_temporary_files_of_dead_compressions_are_removed_when_stale(
    tmp_path: Path, leftover_age_hours: int
) -> None:
    leftover = tmp_path / ".usage-2026-12-09_gw-host-1_c1.jsonl.gz.0a1b2c3d.tmp"
    leftover.write_bytes(b"half a gzip")
    moment = datetime.now(UTC).timestamp() - leftover_age_hours * 3600
    os.utime(leftover, (moment, moment))
    housekeep(tmp_path, retention_days=400, now=NOW)
    assert leftover.exists() == (leftover_age_hours < 6)


def test_the_master_removes_the_state_file_of_a_worker_it_reaps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = LedgerSettings(tmp_path, "h", "c", 400, 512, tmp_path / "state")
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    settings.state_dir.mkdir()
    (settings.state_dir / "4711.json").write_text("{}")
    (settings.state_dir / "4712.json").write_text("{}")
    ledger_master.child_exit(None, SimpleNamespace(pid=4711))
    assert names(settings.state_dir) == ["4712.json"]
