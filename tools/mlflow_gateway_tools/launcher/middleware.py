"""Pure ASGI middleware that writes one JSON usage line per gateway request.

It sits in front of MLflow's unmodified gateway app and only observes: the request body
(for the endpoint name and stream flag) and the response (status, model, usage, timing).
Nothing is changed on the way through.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from mlflow_gateway_tools.timeutil import utc_now_iso
from mlflow_gateway_tools.usage import (
    NO_USAGE,
    StreamUsageTracker,
    Usage,
    error_text_from_body,
    model_and_usage,
    short_error_text,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
# Takes one whole JSON line and the UTC day (YYYY-MM-DD) the request arrived on.
UsageWriter = Callable[[bytes, str], None]

LOGGED_PREFIXES = ("/v1/", "/gateway/", "/endpoints/")
MAX_BUFFERED_RESPONSE_BYTES = 8 * 1024 * 1024  # past this, usage of a plain JSON body is skipped
CLIENT_CLOSED_REQUEST = 499  # nginx's status for a client that went away mid-request


@dataclass(frozen=True)
class EndpointInfo:
    """What the gateway config says about one endpoint name."""

    endpoint_type: str | None
    provider: str | None
    model: str | None


def write_to_fd(fd: int) -> UsageWriter:
    """A writer that puts each line on `fd` with one write call (atomic below PIPE_BUF)."""

    def write(line: bytes, _day: str) -> None:
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view) :]

    return write


def write_to_both(first: UsageWriter, second: UsageWriter) -> UsageWriter:
    """Each line to `first`, then to `second` even when `first` raised."""

    def write(line: bytes, day: str) -> None:
        try:
            first(line, day)
        finally:
            second(line, day)

    return write


def _route_and_endpoint(path: str, request_body: Any) -> tuple[str, str | None]:
    if path.startswith("/v1/"):
        model = request_body.get("model") if isinstance(request_body, Mapping) else None
        return "openai", model if isinstance(model, str) else None
    route, _, rest = path[1:].partition("/")
    return route, rest.split("/", 1)[0] or None


class _Exchange:
    """Everything observed about one request/response pair."""

    def __init__(self, scope: Scope) -> None:
        self.started = time.perf_counter()
        self.ts = utc_now_iso()  # when the request arrived, like the start of a trace span
        self.scope = scope
        self.request_chunks: list[bytes] = []
        self.status: int | None = None
        self.streamed = False
        self.first_byte: float | None = None
        self.finished: float | None = None
        self.response_chunks: list[bytes] = []
        self.response_size = 0
        self.tracker: StreamUsageTracker | None = None
        self.failure: str | None = None

    def wrap_receive(self, receive: Receive) -> Receive:
        async def observed_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request" and message.get("body"):
                self.request_chunks.append(message["body"])
            return message

        return observed_receive

    def wrap_send(self, send: Send) -> Send:
        async def observed_send(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.start":
                self.status = message["status"]
                self.streamed = _is_event_stream(message.get("headers", ()))
                if self.streamed:
                    self.tracker = StreamUsageTracker()
            elif message["type"] == "http.response.body":
                self._observe_body(message.get("body", b""), message.get("more_body", False))

        return observed_send

    def _observe_body(self, body: bytes, more_body: bool) -> None:
        if body:
            if self.first_byte is None:
                self.first_byte = time.perf_counter()
            if self.tracker is not None:
                self.tracker.feed(body)
            elif self.response_size + len(body) <= MAX_BUFFERED_RESPONSE_BYTES:
                self.response_chunks.append(body)
            self.response_size += len(body)
        if not more_body:
            self.finished = time.perf_counter()

    def record(self, endpoints: Mapping[str, EndpointInfo]) -> dict[str, Any]:
        request_body = _parse_json(b"".join(self.request_chunks))
        route, endpoint = _route_and_endpoint(self.scope["path"], request_body)
        info = endpoints.get(endpoint or "", EndpointInfo(None, None, None))
        model_returned, usage, error = self._outcome()
        status = self.status
        if status is None:
            status = 500 if self.failure else CLIENT_CLOSED_REQUEST
        elif self.finished is None and error is None:
            error = "response not completed (client disconnected?)"
        ended = self.finished or time.perf_counter()
        headers = _headers(self.scope)
        stream = self.streamed or (
            isinstance(request_body, Mapping) and request_body.get("stream") is True
        )
        return {
            "event": "gateway.request",
            "ts": self.ts,
            "request_id": headers.get("x-request-id"),
            "client": headers.get("x-gateway-client"),
            "method": self.scope.get("method"),
            "path": self.scope["path"],
            "route": route,
            "endpoint": endpoint,
            "endpoint_type": info.endpoint_type,
            "provider": info.provider,
            "model_configured": info.model,
            "model_returned": model_returned,
            "status": status,
            "latency_ms": round((ended - self.started) * 1000, 2),
            "stream": stream,
            "ttfb_ms": round((self.first_byte - self.started) * 1000, 2)
            if stream and self.first_byte is not None
            else None,
            **usage.as_dict(),
            "error": error,
        }

    def _outcome(self) -> tuple[str | None, Usage, str | None]:
        """Returned model, usage and error text, from whichever kind of body was sent."""
        if self.failure:
            return None, NO_USAGE, self.failure
        if self.tracker is not None:
            self.tracker.close()
            return self.tracker.model, self.tracker.usage, self.tracker.error
        body = b"".join(self.response_chunks)
        if self.status is not None and self.status >= 400:
            return None, NO_USAGE, error_text_from_body(body)
        if self.response_size > MAX_BUFFERED_RESPONSE_BYTES:
            return None, NO_USAGE, None
        model, usage = model_and_usage(_parse_json(body))
        return model, usage, None


def describe_failure(error: BaseException) -> str:
    """Name the real cause: an upstream HTTP error inside a started stream surfaces as a
    RuntimeError whose context holds the HTTPException MLflow raised."""
    cause: BaseException | None = error
    while cause is not None:
        status = getattr(cause, "status_code", None)
        if isinstance(status, int):
            detail = short_error_text(getattr(cause, "detail", "") or "")
            return f"upstream error {status} after the response started: {detail}"
        cause = cause.__cause__ or cause.__context__
    return short_error_text(f"{type(error).__name__}: {error}")


def _is_event_stream(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name.lower() == b"content-type":
            return value.startswith(b"text/event-stream")
    return False


def _headers(scope: Scope) -> dict[str, str]:
    wanted = {b"x-request-id", b"x-gateway-client"}
    return {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in scope.get("headers", ())
        if name in wanted
    }


def _parse_json(data: bytes) -> Any:
    if not data:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return None


class UsageLogMiddleware:
    """Wrap an ASGI app; write a usage line for each /v1/*, /gateway/*, /endpoints/* request."""

    def __init__(
        self,
        app: ASGIApp,
        endpoints: Mapping[str, EndpointInfo],
        write: UsageWriter,
    ) -> None:
        self.app = app
        self.endpoints = endpoints
        self.write = write

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(LOGGED_PREFIXES):
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(scope)
        try:
            await self.app(scope, exchange.wrap_receive(receive), exchange.wrap_send(send))
        except Exception as error:
            exchange.failure = describe_failure(error)
            raise
        finally:
            record = exchange.record(self.endpoints)
            line = json.dumps(record, separators=(",", ":")).encode() + b"\n"
            self.write(line, record["ts"][:10])
