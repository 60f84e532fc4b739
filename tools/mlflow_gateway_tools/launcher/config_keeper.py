"""Validate the gateway config with MLflow's own loader and keep the last good copy.

Workers always boot from the *active* copy, which is written only after validation. So an
invalid edit of the watched file, a worker respawn or a `docker kill -s HUP` can never make
the gateway load a broken config: it keeps serving the last one that validated.
"""

from __future__ import annotations

import hashlib
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

PROG = "gateway-launcher"


class ConfigRejected(Exception):
    """The config (or a key it points to) cannot be served; the message says why and the fix."""


@dataclass(frozen=True)
class CheckedConfig:
    raw: bytes
    fingerprint: str  # covers resolved keys too, so a rotated key file counts as a change


def _key_whitespace_problems(config: object) -> list[str]:
    """MLflow accepts a key with a trailing newline, then every request fails with 500."""
    problems = []
    for endpoint in getattr(config, "endpoints", []):
        provider_config = endpoint.model.config
        fields = provider_config.model_dump() if hasattr(provider_config, "model_dump") else {}
        for field, value in fields.items():
            if field.endswith("api_key") and isinstance(value, str) and value != value.strip():
                problems.append(
                    f"endpoint {endpoint.name!r}: {field} has leading/trailing whitespace "
                    "(a key file ending in a newline?); every request would fail with 500. "
                    "Write the key without a newline, e.g. printf '%s' \"$KEY\" > FILE"
                )
    return problems


def check_config(path: Path) -> CheckedConfig:
    """Load `path` exactly as MLflow's gateway will; raise ConfigRejected on any problem."""
    # Lazy: mlflow takes a second to import and only the gunicorn master needs it here.
    from mlflow.gateway.config import _load_gateway_config  # noqa: PLC0415

    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ConfigRejected(f"cannot read {path}: {error.strerror}") from None
    try:
        config = _load_gateway_config(path)
    except Exception as error:  # MLflow raises MlflowException, pydantic, yaml errors
        message = getattr(error, "message", None) or str(error)
        if error.__cause__ is not None:  # e.g. the YAML parser's line and column
            message = f"{message}: {error.__cause__}"
        raise ConfigRejected(" ".join(message.split())) from None
    if problems := _key_whitespace_problems(config):
        raise ConfigRejected("; ".join(problems))
    fingerprint = hashlib.sha256(raw + config.model_dump_json().encode()).hexdigest()
    return CheckedConfig(raw=raw, fingerprint=fingerprint)


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    temporary.replace(path)


def log(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


class ConfigKeeper:
    """Owns the active copy of the config that workers load."""

    def __init__(self, source: Path, active: Path) -> None:
        self.source = source
        self.active = active
        self._lock = threading.Lock()
        self._active_fingerprint: str | None = None
        self._refused_fingerprint: str | None = None

    def install_initial(self) -> None:
        """Validate the source at start; ConfigRejected means the launcher must not start."""
        with self._lock:
            checked = check_config(self.source)
            _write_atomically(self.active, checked.raw)
            self._active_fingerprint = checked.fingerprint

    def refresh(self) -> bool:
        """Adopt the source if it changed and validates. True when a new config became active."""
        with self._lock:
            try:
                checked = check_config(self.source)
            except ConfigRejected as error:
                fingerprint = self._source_fingerprint()
                if fingerprint != self._refused_fingerprint:
                    # One line per bad version, not one per poll.
                    self._refused_fingerprint = fingerprint
                    log(
                        f"refused new config {self.source}: {error}. "
                        "Still serving the previous valid config."
                    )
                return False
            self._refused_fingerprint = None
            if checked.fingerprint == self._active_fingerprint:
                return False
            _write_atomically(self.active, checked.raw)
            self._active_fingerprint = checked.fingerprint
            log(f"config {self.source} changed and is valid; reloading workers gracefully")
            return True

    def _source_fingerprint(self) -> str:
        try:
            return hashlib.sha256(self.source.read_bytes()).hexdigest()
        except OSError:
            return "unreadable"
