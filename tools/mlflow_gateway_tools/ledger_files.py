"""Names of the usage ledger's files: the one contract between the launcher that writes them and
analyze-costs (and Ansible) that read them.

The ledger is a host directory mounted into every replica. Each replica container writes one
file per UTC day, named after the day of the request's arrival (its `ts`), the gateway host and
the container:

    usage-2026-12-01_gw-host-1_3f2a9c1b2d4e.jsonl       the day being written
    usage-2026-11-30_gw-host-1_3f2a9c1b2d4e.jsonl.gz    a finished day, compressed

The container id is new on every recreate and the host name differs between hosts, so two
writers never share a name, except the workers of one container, which append whole lines to
the same file through O_APPEND. A day file is the unit of selection: a period opens only the
files of its days. When both `X.jsonl` and `X.jsonl.gz` exist (compression stopped between the
rename and the unlink) the `.gz` is the complete one and the plain file is ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

PREFIX = "usage-"
PLAIN_SUFFIX = ".jsonl"
COMPRESSED_SUFFIX = ".jsonl.gz"
# Anything else in a host or container name becomes "-": names stay one path component.
_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")
_NAME = re.compile(
    r"^usage-(?P<day>\d{4}-\d{2}-\d{2})_(?P<host>[A-Za-z0-9.-]+)_(?P<container>[A-Za-z0-9.-]+)"
    r"(?P<suffix>\.jsonl(?:\.gz)?)$"
)


def safe_part(text: str) -> str:
    """A host or container name as it may stand in a ledger file name."""
    return _UNSAFE.sub("-", text).strip("-") or "unknown"


def file_name(day: str, host: str, container: str, *, compressed: bool = False) -> str:
    """The ledger file of one container's requests that arrived on `day` (YYYY-MM-DD, UTC)."""
    suffix = COMPRESSED_SUFFIX if compressed else PLAIN_SUFFIX
    return f"{PREFIX}{day}_{safe_part(host)}_{safe_part(container)}{suffix}"


@dataclass(frozen=True, slots=True)
class LedgerFile:
    path: Path
    day: date
    host: str
    container: str
    compressed: bool

    @property
    def stem(self) -> str:
        """The name without its suffix: the same for a day file and its compressed copy."""
        return f"{PREFIX}{self.day.isoformat()}_{self.host}_{self.container}"


def parse_name(path: Path) -> LedgerFile | None:
    """The parts of a ledger file name; None for anything else (temporary files included)."""
    match = _NAME.match(path.name)
    if match is None:
        return None
    try:
        day = date.fromisoformat(match["day"])
    except ValueError:
        return None
    return LedgerFile(
        path=path,
        day=day,
        host=match["host"],
        container=match["container"],
        compressed=match["suffix"] == COMPRESSED_SUFFIX,
    )


def ledger_files(
    directory: Path, first_day: date | None = None, last_day: date | None = None
) -> Iterator[LedgerFile]:
    """The ledger files of `directory` whose day lies in [first_day, last_day], sorted by name;
    a plain file whose compressed copy exists is skipped (the copy holds every line of it)."""
    found = sorted(
        (entry for entry in map(parse_name, directory.iterdir()) if entry is not None),
        key=lambda entry: entry.path.name,
    )
    compressed = {entry.stem for entry in found if entry.compressed}
    for entry in found:
        if first_day is not None and entry.day < first_day:
            continue
        if last_day is not None and entry.day > last_day:
            continue
        if not entry.compressed and entry.stem in compressed:
            continue
        yield entry
