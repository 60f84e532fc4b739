"""Keep sending requests until a stop condition: a duration, a stop file, a signal, or the
caller saying so. The zero-failure proofs (rolling restart, key rotation, scaling, fault
drills) need traffic for exactly as long as an operation runs, with the same requests and
the same error accounting as a fixed evaluate-gateway run: this is that run, open-ended.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from mlflow_gateway_tools.evaluate.cases import Case
from mlflow_gateway_tools.evaluate.runner import (
    PlannedRequest,
    RequestRecord,
    RunSettings,
    schedule,
    send_all,
)

# Requests per connection pool. Each batch opens fresh connections, as the loops behind
# the lab's zero-failure proofs always did: the proofs measure the gateway, not a client
# that keeps one idle keep-alive connection for minutes.
LOOP_BATCH = 24


class Stopper:
    """The stop conditions of a run, checked before every request: `seconds` after start(),
    `stop_file` existing, or stop() called (a signal handler, another thread)."""

    def __init__(self, seconds: float | None = None, stop_file: Path | None = None) -> None:
        self.seconds = seconds
        self.stop_file = stop_file
        self.reason: str | None = None
        self._deadline = float("inf")

    def start(self) -> None:
        if self.seconds is not None:
            self._deadline = time.monotonic() + self.seconds

    def stop(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason

    def __call__(self) -> bool:
        if self.reason is None:
            if time.monotonic() >= self._deadline:
                self.stop(f"--duration {self.seconds:g} s passed")
            elif self.stop_file is not None and self.stop_file.exists():
                self.stop(f"--stop-file {self.stop_file} appeared")
        return self.reason is not None


@contextmanager
def stopping_on_signals(stopped: Stopper) -> Iterator[None]:
    """The first Ctrl-C or SIGTERM ends the run the normal way (requests in flight finish,
    results are written); a second Ctrl-C interrupts at once. Main thread only."""

    def handle(signum: int, _frame: FrameType | None) -> None:
        stopped.stop(f"{signal.Signals(signum).name} received")
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = {signum: signal.signal(signum, handle) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _until(requests: Iterator[PlannedRequest], stopped: Stopper) -> Iterator[PlannedRequest]:
    for planned in requests:
        if stopped():
            return
        yield planned


async def run_batches(
    requests: Iterator[PlannedRequest],
    settings: RunSettings,
    stopped: Stopper,
    batch: int | None = LOOP_BATCH,
    on_done: Callable[[RequestRecord], None] = lambda _record: None,
    *,
    rate: float | None = None,
) -> list[RequestRecord]:
    """Send `requests` (endless or not) in batches until they run out or `stopped` says so;
    requests in flight at the stop are finished and recorded. batch=None sends everything
    over one pool (a fixed-count run). Batches follow each other at once, or, with `rate`
    (requests a second), no sooner than that rate allows on average: a proof that watches an
    operation needs steady traffic, not a client that takes the CPU the operation runs on."""
    stopped.start()
    pending = _until(requests, stopped)
    records: list[RequestRecord] = []
    began = time.monotonic()
    while sent := await send_all(itertools.islice(pending, batch), settings, on_done):
        records += sent
        if rate is not None:
            await asyncio.sleep(max(0.0, began + len(records) / rate - time.monotonic()))
    return records


class BackgroundLoop:
    """The endless loop in a thread of its own, for a caller that acts while traffic flows
    (the fault drills). `records` fills in as requests finish; leaving the `with` block stops
    the loop and waits for the requests in flight."""

    def __init__(
        self,
        cases: Sequence[Case],
        settings: RunSettings,
        stream_mode: str = "off",
        batch: int = LOOP_BATCH,
        on_done: Callable[[RequestRecord], None] = lambda _record: None,
        *,
        rate: float | None = None,
    ) -> None:
        self.records: list[RequestRecord] = []
        self.stopped = Stopper()
        self._run_args = (schedule(cases, stream_mode), settings, self.stopped, batch)
        self._rate = rate
        self._on_done = on_done
        self._failure: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="request-loop", daemon=True)

    def _record(self, record: RequestRecord) -> None:
        self.records.append(record)
        self._on_done(record)

    def _run(self) -> None:
        try:
            asyncio.run(run_batches(*self._run_args, on_done=self._record, rate=self._rate))
        except Exception as error:  # handed to the caller's thread by stop()
            self._failure = error

    def start(self) -> BackgroundLoop:
        self._thread.start()
        return self

    def stop(self, timeout: float = 120) -> None:
        self.stopped.stop("stopped by the caller")
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the request loop did not finish within {timeout:g} s")
        if self._failure is not None:
            raise RuntimeError("the request loop failed") from self._failure

    def __enter__(self) -> BackgroundLoop:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
