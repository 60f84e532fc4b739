"""The usage ledger's settings as the launcher hands them to gunicorn's master and workers.

gateway-launcher validates its --ledger-* options and exports them as environment variables
before it execs gunicorn; the workers (which write), the master (which keeps house) and
`gateway-ledger` (inside the container) read them back with from_env().
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DIR_ENV = "MGW_LEDGER_DIR"  # unset: the ledger is off
HOST_ENV = "MGW_LEDGER_HOST"
CONTAINER_ENV = "MGW_LEDGER_CONTAINER"
RETENTION_DAYS_ENV = "MGW_LEDGER_RETENTION_DAYS"
MIN_FREE_MB_ENV = "MGW_LEDGER_MIN_FREE_MB"
# Worker state files live inside the container, not on the ledger disk: they must still be
# writable when that disk is full.
STATE_DIR_ENV = "MGW_LEDGER_STATE_DIR"

DEFAULT_STATE_DIR = Path("/tmp/mgw-ledger-state")  # noqa: S108 - the container's own /tmp
DEFAULT_RETENTION_DAYS = 400
DEFAULT_MIN_FREE_MB = 512
MB = 1024 * 1024


def state_dir(environ: Mapping[str, str] = os.environ) -> Path:
    return Path(environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)


@dataclass(frozen=True, slots=True)
class LedgerSettings:
    directory: Path
    host: str
    container: str
    retention_days: int  # 0: keep forever
    min_free_mb: int
    state_dir: Path

    @property
    def min_free_bytes(self) -> int:
        return self.min_free_mb * MB

    def to_env(self) -> dict[str, str]:
        return {
            DIR_ENV: str(self.directory),
            HOST_ENV: self.host,
            CONTAINER_ENV: self.container,
            RETENTION_DAYS_ENV: str(self.retention_days),
            MIN_FREE_MB_ENV: str(self.min_free_mb),
            STATE_DIR_ENV: str(self.state_dir),
        }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> LedgerSettings | None:
        """The settings the launcher exported; None when the ledger is off."""
        directory = environ.get(DIR_ENV)
        if not directory:
            return None
        return cls(
            directory=Path(directory),
            host=environ.get(HOST_ENV, "unknown"),
            container=environ.get(CONTAINER_ENV, "unknown"),
            retention_days=int(environ.get(RETENTION_DAYS_ENV, DEFAULT_RETENTION_DAYS)),
            min_free_mb=int(environ.get(MIN_FREE_MB_ENV, DEFAULT_MIN_FREE_MB)),
            state_dir=state_dir(environ),
        )
