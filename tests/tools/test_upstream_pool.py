"""The pooled upstream session (MGW_UPSTREAM_POOL): fewer connections, nothing else changed.

Two kinds of test, all over real HTTP. Through the launcher: the same requests to a gateway
with the pool on and one with it off must give the client the same answers, while the fake
upstream counts the connections each opens. In-process: MLflow's own `_aiohttp_post` and
the pooled one send the same requests to a recording upstream, side by side.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import requests
from aiohttp import web
from fastapi import FastAPI, HTTPException
from mlflow.gateway.providers import utils
from mlflow.gateway.ssrf import upstream_ssrf_protection

from conftest import LAB_KEY, ROTATED_KEY, FakeOpenAI, LauncherGateway, start_launcher
from mlflow_gateway_tools.fake_openai.keys import mask_key
from mlflow_gateway_tools.launcher import upstream_pool
from mlflow_gateway_tools.launcher.app import closing_at_shutdown, with_upstream_pool
from mlflow_gateway_tools.launcher.cli import main as launcher_main
from mlflow_gateway_tools.launcher.middleware import Message
from mlflow_gateway_tools.launcher.pool_settings import LIMIT_PER_HOST_ENV, POOL_ENV, PoolSettings

CHAT_BODY = {"messages": [{"role": "user", "content": "How much does this cost?"}]}
ROUTE_TIMEOUT_SECONDS = 2
SEQUENTIAL_REQUESTS = 12

# --- through the launcher: a gateway with the pool on next to one with it off ---------------


def with_second_key(config_path: Path, key_file: Path) -> None:
    """Add endpoint `chat-other-key`, whose key (ROTATED_KEY) the session's fake refuses."""
    other_key = key_file.with_name("other_api_key")
    other_key.write_text(ROTATED_KEY)
    config = json.loads(config_path.read_text())
    [chat] = [endpoint for endpoint in config["endpoints"] if endpoint["name"] == "chat"]
    other = json.loads(json.dumps(chat))
    other["name"] = "chat-other-key"
    other["model"]["config"]["openai_api_key"] = str(other_key)
    config["endpoints"].append(other)
    config_path.write_text(json.dumps(config, indent=2))


@pytest.fixture(scope="module")
def gateways(
    fake_openai: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, LauncherGateway]]:
    """One single-worker gateway with the pool on and one with it off, same config."""
    started: dict[str, LauncherGateway] = {}
    try:
        for switch in ("on", "off"):
            with pytest.MonkeyPatch.context() as env:
                env.setenv(POOL_ENV, switch)
                env.setenv("MLFLOW_GATEWAY_ROUTE_TIMEOUT_SECONDS", str(ROUTE_TIMEOUT_SECONDS))
                started[switch] = start_launcher(
                    tmp_path_factory.mktemp(f"pool-{switch}"),
                    fake_openai,
                    before_start=with_second_key,
                )
        yield started
    finally:
        for served in started.values():
            served.stop()


def chat(gateway: LauncherGateway, endpoint: str = "chat", **extra: Any) -> requests.Response:
    return requests.post(
        f"{gateway.url}/gateway/{endpoint}/invocations", json={**CHAT_BODY, **extra}, timeout=20
    )


def upstream_connections_for(fake: FakeOpenAI, send: Callable[[], object]) -> int:
    """New connections the fake accepted while `send` ran (not counting the stats calls)."""
    before = fake.stats()["connections_opened"]
    send()
    return fake.stats()["connections_opened"] - before - 1  # the second stats call's own


@pytest.mark.parametrize(
    ("switch", "fewest", "most"),
    [("on", 0, 1), ("off", SEQUENTIAL_REQUESTS, SEQUENTIAL_REQUESTS)],
)
def test_sequential_requests_share_one_upstream_connection_only_with_the_pool_on(
    gateways: dict[str, LauncherGateway], fake: FakeOpenAI, switch: str, fewest: int, most: int
) -> None:
    """Pool on: at most one new connection (the last may have idled out between tests)."""

    def send() -> None:
        for _ in range(SEQUENTIAL_REQUESTS):
            assert chat(gateways[switch]).status_code == 200

    opened = upstream_connections_for(fake, send)
    assert fewest <= opened <= most, f"{opened} connections for {SEQUENTIAL_REQUESTS} requests"


def stream_events(gateway: LauncherGateway) -> list[dict[str, Any]]:
    """The streamed chat's events, without the parts that differ per request (id, time)."""
    with requests.post(
        f"{gateway.url}/gateway/chat/invocations",
        json={**CHAT_BODY, "stream": True},
        stream=True,
        timeout=20,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in response.iter_lines() if line[6:7] == b"{"]
    return [{k: v for k, v in event.items() if k not in ("id", "created")} for event in events]


def test_a_stream_delivers_the_same_chunks_with_the_pool_on(
    gateways: dict[str, LauncherGateway], fake: FakeOpenAI
) -> None:
    pooled = stream_events(gateways["on"])
    fake.reset()  # a repeated prompt would count as cached the second time
    assert pooled == stream_events(gateways["off"])
    assert len(pooled) > 3, "a role chunk, words, a stop chunk"
    # The pooled connection is reusable after a stream: the next stream needs no new one.
    assert upstream_connections_for(fake, lambda: stream_events(gateways["on"])) == 0


def failed_chat(
    gateway: LauncherGateway, fake: FakeOpenAI, fault: dict[str, Any]
) -> tuple[int, str | None, str]:
    """Status, content type and body the client gets when the upstream misbehaves so."""
    fake.control("POST", "faults", fault)
    response = chat(gateway)
    return response.status_code, response.headers.get("content-type"), response.text


@pytest.mark.parametrize(
    "fault",
    [{"status": 429}, {"status": 500}, {"status": 503, "body": "html"}],
    ids=["429", "500", "503-html"],
)
def test_an_upstream_error_reaches_the_client_as_with_the_pool_off(
    gateways: dict[str, LauncherGateway], fake: FakeOpenAI, fault: dict[str, Any]
) -> None:
    pooled = failed_chat(gateways["on"], fake, fault)
    assert pooled == failed_chat(gateways["off"], fake, fault)
    assert pooled[0] == (502 if fault.get("body") == "html" else fault["status"])
    assert chat(gateways["on"]).status_code == 200, "the pool still serves after an error"


def test_an_upstream_timeout_reaches_the_client_as_with_the_pool_off(
    gateways: dict[str, LauncherGateway], fake: FakeOpenAI
) -> None:
    slow = {"delay_ms": (ROUTE_TIMEOUT_SECONDS + 2) * 1000}
    pooled = failed_chat(gateways["on"], fake, slow)
    assert pooled == failed_chat(gateways["off"], fake, slow)
    assert pooled[0] >= 500
    assert chat(gateways["on"]).status_code == 200, "a timed-out connection is not reused"


def test_two_keys_on_one_pooled_connection_never_mix(
    gateways: dict[str, LauncherGateway], fake: FakeOpenAI
) -> None:
    """Alternating endpoints with different keys share the connection, never the header."""
    gateway = gateways["on"]
    answers: list[requests.Response] = []

    def send() -> None:
        for _ in range(4):
            answers.append(chat(gateway, "chat"))
            answers.append(chat(gateway, "chat-other-key"))

    assert upstream_connections_for(fake, send) <= 1
    for good, refused in zip(answers[::2], answers[1::2], strict=True):
        assert good.status_code == 200
        assert refused.status_code == 401
        assert mask_key(ROTATED_KEY) in refused.json()["detail"]
        assert mask_key(LAB_KEY) not in refused.text


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({POOL_ENV: "maybe"}, f"{POOL_ENV}='maybe' is neither on nor off"),
        ({LIMIT_PER_HOST_ENV: "-1"}, f"{LIMIT_PER_HOST_ENV}='-1' is not a whole number"),
    ],
)
def test_the_launcher_refuses_a_bad_pool_setting(
    env: dict[str, str],
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("endpoints: []\n")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert launcher_main(["--config-path", str(config)]) == 2
    assert expected in capsys.readouterr().err


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, PoolSettings(enabled=False, limit_per_host=100)),
        ({POOL_ENV: "ON"}, PoolSettings(enabled=True, limit_per_host=100)),
        ({POOL_ENV: "true", LIMIT_PER_HOST_ENV: "0"}, PoolSettings(True, 0)),
    ],
)
def test_pool_settings_default_to_off(env: dict[str, str], expected: PoolSettings) -> None:
    assert PoolSettings.from_env(env) == expected


# --- in-process: MLflow's function and the pooled one, side by side ---------------------------


@pytest.fixture
def pool() -> Iterator[upstream_pool.UpstreamPool]:
    """A pool installed into MLflow for the test; MLflow's own function again afterwards."""
    installed = upstream_pool.UpstreamPool(limit_per_host=100)
    upstream_pool.install(installed)
    yield installed
    upstream_pool.uninstall()


async def no_app(_scope: Any, _receive: Any, _send: Any) -> None:
    raise AssertionError("never called")


def test_off_leaves_mlflows_function_and_on_replaces_it() -> None:
    original = utils._aiohttp_post
    assert original is upstream_pool.mlflow_aiohttp_post
    try:
        assert with_upstream_pool(no_app, PoolSettings(False, 100)) is no_app
        assert utils._aiohttp_post is original
        assert with_upstream_pool(no_app, PoolSettings(True, 100)) is not no_app
        assert utils._aiohttp_post is not original
    finally:
        upstream_pool.uninstall()
    assert utils._aiohttp_post is original


@dataclass
class Recorder:
    """A real upstream that answers JSON and records what each request carried."""

    url: str = ""
    seen: list[dict[str, Any]] = field(default_factory=list)

    @property
    def netloc(self) -> str:
        return self.url.removeprefix("http://")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.seen.append(
            {
                # The Host header names this upstream's port, which differs per run.
                "headers": [
                    (k.decode().lower(), "<upstream>" if v.decode() == self.netloc else v.decode())
                    for k, v in request.raw_headers
                ],
                "body": await request.read(),
                "connection": peer,
            }
        )
        if request.path == "/redirect":
            return web.json_response({"moved": True}, status=302, headers={"Location": "/x"})
        response = web.json_response({"ok": True})
        response.set_cookie("session", "of-whoever-came-first")
        return response


@asynccontextmanager
async def recorder() -> AsyncIterator[Recorder]:
    recording = Recorder()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recording.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    recording.url = f"http://localhost:{runner.addresses[0][1]}"
    try:
        yield recording
    finally:
        await runner.cleanup()


HEADER_CASES = [
    {"Authorization": "Bearer sk-1", "Content-Type": "application/json"},
    # Stripped: what the client compressed with, its Accept-Encoding, MLflow's own credential.
    {"Accept-Encoding": "br", "content-encoding": "zstd", "X-MLflow-Authorization": "t"},
    # A client's header next to the provider's, names differing in case only: MLflow sends both.
    {"authorization": "Bearer client", "Authorization": "Bearer server", "X-Extra": "1"},
]


def run_both(call: Callable[[], Awaitable[Any]], pool: upstream_pool.UpstreamPool) -> list[Any]:
    """`call` with MLflow's function installed, then with the pool's (in one event loop)."""

    async def both() -> list[Any]:
        results = []
        for post in (upstream_pool.mlflow_aiohttp_post, pool.post):
            utils._aiohttp_post = post
            try:
                results.append(await call())
            except Exception as error:  # the outcome to compare, whatever it is
                results.append(error)
        await pool.close()
        return results

    return asyncio.run(both())


def test_the_upstream_receives_the_same_headers_and_body(
    pool: upstream_pool.UpstreamPool,
) -> None:
    async def send_all() -> list[dict[str, Any]]:
        async with recorder() as upstream:
            for headers in HEADER_CASES:
                await utils.send_request(headers, upstream.url, "v1/chat", {"n": 1})
            await utils.send_request(HEADER_CASES[0], upstream.url, "v1/chat", {"n": 1})
        return upstream.seen

    mlflow_seen, pooled_seen = run_both(send_all, pool)
    assert [r["headers"] for r in pooled_seen] == [r["headers"] for r in mlflow_seen]
    assert [r["body"] for r in pooled_seen] == [r["body"] for r in mlflow_seen]
    _, stripped, both_cases, again = pooled_seen
    assert ("accept-encoding", "gzip, deflate, identity") in stripped["headers"]
    assert not {"content-encoding", "x-mlflow-authorization"} & {k for k, _ in stripped["headers"]}
    assert [v for k, v in both_cases["headers"] if k == "authorization"] == [
        "Bearer client",
        "Bearer server",
    ]
    assert "cookie" not in dict(again["headers"]), "no cookie of an earlier answer is replayed"
    assert len({r["connection"] for r in pooled_seen}) == 1, "one pooled connection"
    assert len({r["connection"] for r in mlflow_seen}) == len(mlflow_seen)


def test_redirects_are_not_followed(pool: upstream_pool.UpstreamPool) -> None:
    async def redirected() -> tuple[Any, int]:
        async with recorder() as upstream:
            answer = await utils.send_request({}, upstream.url, "redirect", {})
            return answer, len(upstream.seen)

    assert run_both(redirected, pool) == [({"moved": True}, 1)] * 2


def test_ssrf_protection_blocks_the_same_upstreams(
    pool: upstream_pool.UpstreamPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With protection on, a private upstream is refused by IP literal and by hostname (at
    connect time), even right after a call that opted out (ssrf_protect=False, as MLflow's
    calls to itself do) has left a pooled connection to that very host."""
    monkeypatch.delenv("MLFLOW_GATEWAY_API_BASE_ALLOW_PRIVATE_IPS", raising=False)

    async def calls(host: str) -> tuple[Any, tuple[int, str], int]:
        async with recorder() as upstream:
            url = upstream.url.replace("localhost", host)
            token = upstream_ssrf_protection.set(True)
            try:
                opted_out = await utils.send_request({}, url, "v1/chat", {}, ssrf_protect=False)
                with pytest.raises(HTTPException) as refused:
                    await utils.send_request({}, url, "v1/chat", {})
            finally:
                upstream_ssrf_protection.reset(token)
            return opted_out, (refused.value.status_code, refused.value.detail), len(upstream.seen)

    for host in ("127.0.0.1", "localhost"):
        mlflow_outcome, pooled_outcome = run_both(partial(calls, host), pool)
        assert pooled_outcome == mlflow_outcome
        opted_out, (status, detail), arrived = pooled_outcome
        assert opted_out == {"ok": True}
        assert status == 502 and "not a public IP address" in detail
        assert arrived == 1, "only the call that opted out reached the upstream"


def test_the_limit_per_host_caps_a_workers_connections(fake: FakeOpenAI) -> None:
    pool = upstream_pool.UpstreamPool(limit_per_host=1)
    headers = {"Authorization": f"Bearer {fake.key}"}
    body = {"model": "text-embedding-3-small", "input": "x"}

    async def concurrent() -> None:
        upstream_pool.install(pool)
        try:
            await asyncio.gather(
                *(utils.send_request(headers, fake.api_base, "embeddings", body) for _ in range(6))
            )
        finally:
            upstream_pool.uninstall()
            await pool.close()

    assert upstream_connections_for(fake, lambda: asyncio.run(concurrent())) == 1


def test_each_event_loop_gets_its_own_session_closed_by_close() -> None:
    pool = upstream_pool.UpstreamPool(limit_per_host=100)
    sessions = []

    async def use() -> None:
        session = pool.session(guarded=False)
        assert pool.session(guarded=False) is session, "one per loop and kind"
        assert pool.session(guarded=True) is not session, "SSRF-guarded: a pool of its own"
        sessions.append(session)
        await pool.close()
        assert session.closed

    asyncio.run(use())
    thread = threading.Thread(target=asyncio.run, args=(use(),))
    thread.start()
    thread.join(10)
    assert len(sessions) == 2 and sessions[0] is not sessions[1]


def test_the_sessions_close_when_the_worker_shuts_down() -> None:
    """At the lifespan shutdown (uvicorn runs it after the last request), before the server
    hears that the app is done; MLflow's gateway is a FastAPI app like this one."""
    pool = upstream_pool.UpstreamPool(limit_per_host=100)
    sent: list[tuple[str, bool]] = []

    async def lifespan() -> None:
        session = pool.session(guarded=False)
        messages: asyncio.Queue[Message] = asyncio.Queue()
        for phase in ("startup", "shutdown"):
            messages.put_nowait({"type": f"lifespan.{phase}"})

        async def send(message: Message) -> None:
            sent.append((message["type"], session.closed))

        app = closing_at_shutdown(FastAPI(), pool.close)
        await app({"type": "lifespan", "asgi": {"version": "3.0"}}, messages.get, send)

    asyncio.run(lifespan())
    assert sent == [("lifespan.startup.complete", False), ("lifespan.shutdown.complete", True)]
