"""Validate the gateway config with MLflow's own loader and keep the last good copy.

Workers always boot from the *active* copy, which is written only after validation. So an
invalid edit of the watched file, a worker respawn or a `docker kill -s HUP` can never make
the gateway load a broken config: it keeps serving the last one that validated.

Next to the active copy, `active-state.json` records what is served: the sha256 of the
config file and of each key file the config points to, as loaded. A deploy compares them with
the files on the host to find replicas that serve something else, without reading a key.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

PROG = "gateway-launcher"


class ConfigRejected(Exception):
    """The config (or a key it points to) cannot be served; the message says why and the fix."""


STATE_FILE = "active-state.json"


@dataclass(frozen=True)
class CheckedConfig:
    raw: bytes
    fingerprint: str  # covers resolved keys too, so a rotated key file counts as a change
    key_sha256: dict[str, str]  # key file path (as the config names it) -> sha256 of the key

    def state(self) -> dict[str, object]:
        """What active-state.json records: hashes only, never a key."""
        return {
            "config_sha256": hashlib.sha256(self.raw).hexdigest(),
            "key_sha256": self.key_sha256,
        }


def _key_file_hashes(raw: bytes, config: object) -> dict[str, str]:
    """sha256 of each key MLflow read from a file: path as written in the config -> hash.

    A key given as `$VAR` or inline is not a file and is not recorded.
    """
    import yaml  # noqa: PLC0415 - an MLflow dependency, loaded with it

    try:
        written = {
            endpoint.get("name"): (endpoint.get("model") or {}).get("config") or {}
            for endpoint in (yaml.safe_load(raw) or {}).get("endpoints") or []
            if isinstance(endpoint, dict)
        }
    except (yaml.YAMLError, AttributeError):
        return {}
    hashes = {}
    for endpoint in getattr(config, "endpoints", []):
        provider_config = endpoint.model.config
        loaded = provider_config.model_dump() if hasattr(provider_config, "model_dump") else {}
        for field, path in written.get(endpoint.name, {}).items():
            value = loaded.get(field)
            if (
                field.endswith("api_key")
                and isinstance(path, str)
                and isinstance(value, str)
                and not path.startswith("$")
                and value != path
            ):
                hashes[path] = hashlib.sha256(value.encode()).hexdigest()
    return hashes


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
    return CheckedConfig(raw=raw, fingerprint=fingerprint, key_sha256=_key_file_hashes(raw, config))


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

    @property
    def state_file(self) -> Path:
        return self.active.with_name(STATE_FILE)

    def _activate(self, checked: CheckedConfig) -> None:
        _write_atomically(self.active, checked.raw)
        _write_atomically(self.state_file, json.dumps(checked.state(), sort_keys=True).encode())
        self._active_fingerprint = checked.fingerprint

    def install_initial(self) -> None:
        """Validate the source at start; ConfigRejected means the launcher must not start."""
        with self._lock:
            self._activate(check_config(self.source))

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
            self._activate(checked)
            log(f"config {self.source} changed and is valid; reloading workers gracefully")
            return True

    def _source_fingerprint(self) -> str:
        try:
            return hashlib.sha256(self.source.read_bytes()).hexdigest()
        except OSError:
            return "unreadable"
