"""The fake OpenAI upstream as an aiohttp application: /v1/* API, /health, /_fake/ control."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import web

from mlflow_gateway_tools.fake_openai import responses
from mlflow_gateway_tools.fake_openai.keys import KeyRing, mask_key
from mlflow_gateway_tools.fake_openai.state import FakeState, Fault, FaultSpecError

STATE = web.AppKey("state", FakeState)
KEYS = web.AppKey("keys", KeyRing)
LATENCY_MS = web.AppKey("latency_ms", int)
CHUNK_DELAY_MS = "chunk_delay_ms"  # a request's own wait before each streamed chunk
# text-embedding-3-large's size, the most OpenAI serves; a bigger ask would build a huge reply.
MAX_DIMENSIONS = 3072

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
HTML_ERROR = (
    "<html><head><title>{status}</title></head><body><h1>{status} {reason}</h1>"
    "<hr><center>fake-openai (injected fault)</center></body></html>"
)


class BadRequest(Exception):
    """An API request the real OpenAI would reject with 400; carries the message and param."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def openai_error(status: int, message: str, error_type: str, code: str | None) -> web.Response:
    return web.json_response(responses.error_body(message, error_type, code), status=status)


def _auth_failure(request: web.Request) -> web.Response | None:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer ") or not header[7:].strip():
        return openai_error(
            401,
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            "invalid_request_error",
            None,
        )
    token = header[7:].strip()
    if request.app[KEYS].accepts(token):
        return None
    return openai_error(
        401,
        f"Incorrect API key provided: {mask_key(token)}. This fake upstream accepts the keys "
        "given by --api-key or listed in --api-key-file.",
        "invalid_request_error",
        "invalid_api_key",
    )


def _fault_response(fault: Fault) -> web.Response:
    status = fault.status or 500
    if fault.body == "html":
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Error"
        return web.Response(
            status=status,
            text=HTML_ERROR.format(status=status, reason=reason),
            content_type="text/html",
        )
    if status == 401:
        return openai_error(
            401,
            "Incorrect API key provided (injected by fake-openai).",
            "invalid_request_error",
            "invalid_api_key",
        )
    if status == 429:
        return openai_error(
            429,
            "Rate limit reached for requests (injected by fake-openai).",
            "requests",
            "rate_limit_exceeded",
        )
    return openai_error(
        status, f"Injected fault: HTTP {status} from fake-openai.", "server_error", None
    )


@web.middleware
async def upstream_behaviour(request: web.Request, handler: Handler) -> web.StreamResponse:
    """On /v1/*: count, check the key, apply queued faults and the configured latency."""
    if not request.path.startswith("/v1/"):
        return await handler(request)
    state = request.app[STATE]
    state.requests += 1
    response: web.StreamResponse | None = _auth_failure(request)
    if response is None and (fault := state.next_fault()) is not None:
        await asyncio.sleep(fault.delay_ms / 1000)
        request[CHUNK_DELAY_MS] = fault.chunk_delay_ms
        if fault.status is not None:
            response = _fault_response(fault)
    if response is None:
        if request.app[LATENCY_MS]:
            await asyncio.sleep(request.app[LATENCY_MS] / 1000)
        try:
            response = await handler(request)
        except BadRequest as error:
            response = web.json_response(
                {
                    "error": {
                        "message": str(error),
                        "type": "invalid_request_error",
                        "param": error.param,
                        "code": None,
                    }
                },
                status=400,
            )
    state.by_status[response.status] += 1
    return response


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as error:  # not JSON, or not UTF-8
        raise BadRequest(f"We could not parse the JSON body of your request: {error}") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    return body


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("you must provide a model parameter", "model")
    return model


def _reply_limit(body: dict[str, Any]) -> int | None:
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if limit is None:
        return None
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise BadRequest(f"Invalid 'max_tokens': {limit!r}; expected an integer >= 1", "max_tokens")
    return limit


def _include_usage(body: dict[str, Any]) -> bool:
    # The real API sends the usage chunk only when asked; this fake also sends it by
    # default so a gateway that does not ask still passes usage through.
    options = body.get("stream_options")
    return not isinstance(options, dict) or options.get("include_usage", True) is not False


async def _stream(request: web.Request, chunks: list[dict[str, Any]]) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    chunk_delay = request.get(CHUNK_DELAY_MS, 0) / 1000
    for chunk in chunks:
        if chunk_delay:
            await asyncio.sleep(chunk_delay)
        await response.write(
            b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"
        )
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


def _cached_tokens(state: FakeState, model: str, prompt: Any, prompt_tokens: int) -> int:
    """A repeated prompt is 'served from the cache': half of its tokens count as cached."""
    return prompt_tokens // 2 if state.seen_before(responses.prompt_key(model, prompt)) else 0


@dataclass(frozen=True)
class _Shape:
    """How one endpoint's answer looks: whole, or as the chunks of a stream."""

    whole: Callable[[str, list[str], dict[str, Any]], dict[str, Any]]
    chunks: Callable[[str, list[str], dict[str, Any] | None], list[dict[str, Any]]]


CHAT = _Shape(responses.chat_completion, responses.chat_chunks)
TEXT = _Shape(responses.text_completion, responses.text_completion_chunks)


async def _answer(
    request: web.Request,
    body: dict[str, Any],
    shape: _Shape,
    *,
    prompt: Any,
    prompt_tokens: int,
    reply_to: str,
) -> web.StreamResponse:
    """Reply words and usage (a repeated `prompt` is partly cached), streamed when asked."""
    model = _model(body)
    words = responses.reply_words(reply_to, _reply_limit(body))
    usage = responses.usage_block(
        prompt_tokens,
        len(words),
        _cached_tokens(request.app[STATE], model, prompt, prompt_tokens),
        responses.is_reasoning_model(model),
    )
    if body.get("stream"):
        stream_usage = usage if _include_usage(body) else None
        return await _stream(request, shape.chunks(model, words, stream_usage))
    return web.json_response(shape.whole(model, words, usage))


async def chat_completions(request: web.Request) -> web.StreamResponse:
    body = await _json_object(request)
    _model(body)  # a missing model is named before a bad input
    messages = body.get("messages")
    if (
        not isinstance(messages, list)
        or not messages
        or not all(isinstance(message, dict) for message in messages)
    ):
        raise BadRequest("'messages' must be a non-empty list of message objects", "messages")
    return await _answer(
        request,
        body,
        CHAT,
        prompt=messages,
        prompt_tokens=responses.prompt_tokens_of_messages(messages),
        reply_to=responses.text_of_content(messages[-1].get("content")),
    )


async def completions(request: web.Request) -> web.StreamResponse:
    body = await _json_object(request)
    _model(body)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and all(isinstance(part, str) for part in prompt):
        prompt = "\n".join(prompt)
    if not isinstance(prompt, str):
        raise BadRequest("'prompt' must be a string or a list of strings", "prompt")
    return await _answer(
        request,
        body,
        TEXT,
        prompt=prompt,
        prompt_tokens=responses.count_tokens(prompt),
        reply_to=prompt,
    )


async def embeddings(request: web.Request) -> web.StreamResponse:
    body = await _json_object(request)
    model = _model(body)
    inputs = body.get("input")
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) for i in inputs):
        raise BadRequest("'input' must be a string or a non-empty list of strings", "input")
    dimensions = body.get("dimensions")
    if dimensions is not None and (
        not isinstance(dimensions, int)
        or isinstance(dimensions, bool)
        or not 1 <= dimensions <= MAX_DIMENSIONS
    ):
        raise BadRequest(
            f"'dimensions' must be an integer from 1 to {MAX_DIMENSIONS}, got {dimensions!r}",
            "dimensions",
        )
    return web.json_response(responses.embeddings(model, inputs, dimensions))


async def list_models(_request: web.Request) -> web.StreamResponse:
    return web.json_response(responses.model_list())


async def health(_request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok"})


async def queue_faults(request: web.Request) -> web.StreamResponse:
    try:
        spec = await request.json()
        fault, count = Fault.from_json(spec)
    except (json.JSONDecodeError, UnicodeDecodeError, FaultSpecError) as error:
        return web.json_response({"error": f"bad fault spec: {error}"}, status=400)
    request.app[STATE].queue_fault(fault, count)
    return web.json_response({"queued": len(request.app[STATE].faults)})


async def clear_faults(request: web.Request) -> web.StreamResponse:
    cleared = len(request.app[STATE].faults)
    request.app[STATE].faults.clear()
    return web.json_response({"cleared": cleared})


async def show_stats(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[STATE].stats())


async def reset_stats(request: web.Request) -> web.StreamResponse:
    request.app[STATE].reset_stats()
    return web.json_response(request.app[STATE].stats())


def create_app(
    keys: KeyRing, latency_ms: int = 0, state: FakeState | None = None
) -> web.Application:
    app = web.Application(middlewares=[upstream_behaviour], client_max_size=64 * 1024 * 1024)
    app[STATE] = state or FakeState()
    app[KEYS] = keys
    app[LATENCY_MS] = latency_ms
    app.router.add_get("/health", health)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/v1/models", list_models)
    app.router.add_post("/_fake/faults", queue_faults)
    app.router.add_delete("/_fake/faults", clear_faults)
    app.router.add_get("/_fake/stats", show_stats)
    app.router.add_post("/_fake/stats/reset", reset_stats)
    return app
