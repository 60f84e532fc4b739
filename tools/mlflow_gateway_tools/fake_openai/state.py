"""Mutable state of a fake-openai process: queued faults, counters, the fake prompt cache."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

FAULT_BODIES = ("json", "html")
MAX_REMEMBERED_PROMPTS = 100_000


class FaultSpecError(ValueError):
    """A /_fake/faults request body that cannot be used; the message says why."""


@dataclass(frozen=True)
class Fault:
    """What to do to the next request: wait `delay_ms`, then fail with `status` (if set); a
    streamed answer waits `chunk_delay_ms` before each chunk (a slow model, mid-stream)."""

    status: int | None
    body: str
    delay_ms: int
    chunk_delay_ms: int = 0

    @classmethod
    def from_json(cls, spec: Any) -> tuple[Fault, int]:
        """Validate a fault spec; returns the fault and how many requests it applies to."""
        if not isinstance(spec, dict):
            raise FaultSpecError('expected a JSON object like {"status": 429, "count": 1}')
        unknown = sorted(set(spec) - {"status", "count", "body", "delay_ms", "chunk_delay_ms"})
        if unknown:
            raise FaultSpecError(
                f"unknown field(s) {unknown}; use status, count, body, delay_ms, chunk_delay_ms"
            )
        status = spec.get("status")
        if status is not None and (not _is_int(status) or not 400 <= status <= 599):
            raise FaultSpecError(f"status must be an HTTP error code 400-599, got {status!r}")
        count = spec.get("count", 1)
        if not _is_int(count) or count < 1:
            raise FaultSpecError(f"count must be an integer >= 1, got {count!r}")
        body = spec.get("body", "json")
        if body not in FAULT_BODIES:
            raise FaultSpecError(f"body must be one of {FAULT_BODIES}, got {body!r}")
        delay_ms = spec.get("delay_ms", 0)
        chunk_delay_ms = spec.get("chunk_delay_ms", 0)
        for name, value in (("delay_ms", delay_ms), ("chunk_delay_ms", chunk_delay_ms)):
            if not _is_int(value) or value < 0:
                raise FaultSpecError(f"{name} must be an integer >= 0, got {value!r}")
        if status is None and delay_ms == 0 and chunk_delay_ms == 0:
            raise FaultSpecError(
                "give a status (to fail) or a delay_ms or chunk_delay_ms (to be slow), or both"
            )
        fault = cls(status=status, body=body, delay_ms=delay_ms, chunk_delay_ms=chunk_delay_ms)
        return fault, count


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class FakeState:
    faults: deque[Fault] = field(default_factory=deque)
    requests: int = 0
    connections_opened: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    _seen_prompts: set[str] = field(default_factory=set)

    def queue_fault(self, fault: Fault, count: int) -> None:
        self.faults.extend([fault] * count)

    def next_fault(self) -> Fault | None:
        return self.faults.popleft() if self.faults else None

    def seen_before(self, key: str) -> bool:
        """Whether this prompt was sent before (then its tokens count as cached)."""
        if key in self._seen_prompts:
            return True
        if len(self._seen_prompts) >= MAX_REMEMBERED_PROMPTS:
            self._seen_prompts.clear()
        self._seen_prompts.add(key)
        return False

    def stats(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "connections_opened": self.connections_opened,
            "by_status": {str(status): count for status, count in sorted(self.by_status.items())},
            "faults_queued": len(self.faults),
        }

    def reset_stats(self) -> None:
        self.requests = 0
        self.connections_opened = 0
        self.by_status.clear()
        self._seen_prompts.clear()
