"""The ledger's file names: what the launcher writes is what analyze-costs selects."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from mlflow_gateway_tools.ledger_files import file_name, ledger_files, parse_name


def test_a_written_name_parses_back_to_its_parts() -> None:
    name = file_name("2026-12-01", "adt-ml-dify-49-202.example", "3f2a9c1b2d4e")
    parsed = parse_name(Path(name))
    assert parsed is not None
    assert (parsed.day, parsed.host, parsed.container, parsed.compressed) == (
        date(2026, 12, 1),
        "adt-ml-dify-49-202.example",
        "3f2a9c1b2d4e",
        False,
    )


def test_unsafe_characters_in_names_never_leave_the_directory() -> None:
    name = file_name("2026-12-01", "../etc/host name", "a_b")
    assert "/" not in name
    assert parse_name(Path(name)) is not None


def test_a_period_selects_its_days_and_prefers_the_compressed_copy(tmp_path: Path) -> None:
    for day in ("2026-11-29", "2026-11-30", "2026-12-01"):
        (tmp_path / file_name(day, "h", "c1")).write_text("{}\n")
    (tmp_path / file_name("2026-11-30", "h", "c1", compressed=True)).write_bytes(b"")
    (tmp_path / "usage-2026-11-30_h_c1.jsonl.gz.tmp").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a ledger file")

    selected = [
        entry.path.name for entry in ledger_files(tmp_path, date(2026, 11, 30), date(2026, 12, 1))
    ]

    assert selected == ["usage-2026-11-30_h_c1.jsonl.gz", "usage-2026-12-01_h_c1.jsonl"]
