"""Send the planned requests concurrently (aiohttp) and record what each one returned."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp

from mlflow_gateway_tools.evaluate.cases import Case
from mlflow_gateway_tools.timeutil import utc_now_iso
from mlflow_gateway_tools.usage import (
    NO_USAGE,
    StreamUsageTracker,
    Usage,
    error_text_from_body,
    model_and_usage,
)

ROUTES = ("gateway", "endpoints", "openai")
OPENAI_PATHS = {
    "chat": "/v1/chat/completions",
    "completions": "/v1/completions",
    "embeddings": "/v1/embeddings",
}
# Only chat is streamed: MLflow 3.17.2's OpenAI provider parses streamed /v1/completions
# chunks as chat deltas (KeyError 'delta'), so every streamed completion fails there.
STREAMABLE = ("chat",)
# off: no streaming; all: every chat streams; alternate: every other pass through the cases.
STREAM_MODES = ("off", "all", "alternate")


@dataclass
class RequestRecord:
    """One request as sent and answered; the results file lists these."""

    index: int
    case: str
    kind: str
    endpoint: str
    route: str
    path: str
    stream: bool
    ts: str
    status: int | None
    ok: bool
    latency_ms: float
    ttft_ms: float | None
    model_returned: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    cached_tokens: int | None
    reasoning_tokens: int | None
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RunSettings:
    base_url: str
    route: str
    concurrency: int
    timeout_s: float
    token: str | None


@dataclass(frozen=True)
class PlannedRequest:
    index: int
    case: Case
    stream: bool  # asked for; only STREAMABLE kinds are actually streamed


def schedule(cases: Sequence[Case], stream_mode: str) -> Iterator[PlannedRequest]:
    """Every case in turn, over and over (slice it for a fixed count). `alternate` streams
    the odd passes, so plain and streamed requests are mixed all along."""
    for index in itertools.count():
        passes, position = divmod(index, len(cases))
        stream = stream_mode == "all" or (stream_mode == "alternate" and passes % 2 == 1)
        yield PlannedRequest(index, cases[position], stream)


def request_path(case: Case, route: str) -> str:
    if route == "openai":
        return OPENAI_PATHS[case.kind]
    return f"/{route}/{case.endpoint}/invocations"


def request_body(case: Case, route: str, stream: bool) -> dict[str, Any]:
    body = dict(case.body)
    if route == "openai":
        body["model"] = case.endpoint  # MLflow's OpenAI-style routes take the endpoint name here
    if stream and case.kind in STREAMABLE:
        body["stream"] = True
    return body


@dataclass
class _Outcome:
    status: int | None = None
    ttft: float | None = None
    model: str | None = None
    usage: Usage = NO_USAGE
    error: str | None = None


async def _read_stream(response: aiohttp.ClientResponse, started: float, outcome: _Outcome) -> None:
    tracker = StreamUsageTracker()
    async for piece in response.content.iter_any():
        if tracker.feed(piece) and outcome.ttft is None:
            outcome.ttft = time.perf_counter() - started
    tracker.close()
    outcome.model, outcome.usage, outcome.error = tracker.model, tracker.usage, tracker.error


async def _send(
    session: aiohttp.ClientSession, settings: RunSettings, planned: PlannedRequest
) -> RequestRecord:
    case = planned.case
    path = request_path(case, settings.route)
    stream = planned.stream and case.kind in STREAMABLE
    body = json.dumps(request_body(case, settings.route, planned.stream))
    ts = utc_now_iso()
    started = time.perf_counter()
    outcome = _Outcome()
    try:
        async with session.post(settings.base_url + path, data=body) as response:
            outcome.status = response.status
            if response.status >= 400:
                outcome.error = error_text_from_body(await response.read())
            elif response.content_type == "text/event-stream":
                await _read_stream(response, started, outcome)
            else:
                outcome.model, outcome.usage = model_and_usage(json.loads(await response.read()))
    except TimeoutError:
        outcome.error = f"timed out after {settings.timeout_s:g}s"
    except aiohttp.ClientError as error:
        outcome.error = f"{type(error).__name__}: {error}"
    except ValueError as error:
        outcome.error = f"response is not JSON: {error}"
    latency = time.perf_counter() - started
    usage = outcome.usage
    return RequestRecord(
        index=planned.index,
        case=case.name,
        kind=case.kind,
        endpoint=case.endpoint,
        route=settings.route,
        path=path,
        stream=stream,
        ts=ts,
        status=outcome.status,
        ok=outcome.status == 200 and outcome.error is None,
        latency_ms=round(latency * 1000, 2),
        ttft_ms=round(outcome.ttft * 1000, 2) if outcome.ttft is not None else None,
        model_returned=outcome.model,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
        cached_tokens=usage.cached_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        error=outcome.error,
    )


async def send_all(
    requests: Iterable[PlannedRequest],
    settings: RunSettings,
    on_done: Callable[[RequestRecord], None] = lambda _record: None,
) -> list[RequestRecord]:
    """Send `requests` over one connection pool with at most `concurrency` in flight; the
    iterable is read lazily, so it may end early (a stop condition). Records in plan order."""
    headers = {"Content-Type": "application/json"}
    if settings.token:
        headers["Authorization"] = f"Bearer {settings.token}"
    records: list[RequestRecord] = []
    pending = iter(requests)

    async def worker(session: aiohttp.ClientSession) -> None:
        for planned in pending:  # one shared iterator: each request is taken exactly once
            record = await _send(session, settings, planned)
            records.append(record)
            on_done(record)

    connector = aiohttp.TCPConnector(limit=settings.concurrency)
    timeout = aiohttp.ClientTimeout(total=settings.timeout_s)
    async with aiohttp.ClientSession(
        headers=headers, connector=connector, timeout=timeout
    ) as session:
        await asyncio.gather(*(worker(session) for _ in range(settings.concurrency)))
    return sorted(records, key=lambda record: record.index)
