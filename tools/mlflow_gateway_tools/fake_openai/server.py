"""Serve the fake upstream, counting TCP connections at accept (proves egress pooling)."""

from __future__ import annotations

import asyncio
import signal
import ssl
import sys
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from mlflow_gateway_tools.fake_openai.app import STATE


class CountingTCPSite(web.BaseSite):
    """A TCP site whose protocol factory counts every accepted connection."""

    __slots__ = ("_host", "_on_accept", "_port")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None,
        on_accept: Callable[[], None],
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._host = host
        self._port = port
        self._on_accept = on_accept

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        make_handler = self._runner.server
        assert make_handler is not None

        def accept() -> asyncio.Protocol:
            self._on_accept()
            return make_handler()

        self._server = await asyncio.get_running_loop().create_server(
            accept, self._host, self._port, ssl=self._ssl_context, reuse_address=True
        )
        self._port = self._server.sockets[0].getsockname()[1]


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def serve(
    app: web.Application, host: str, port: int, ssl_context: ssl.SSLContext | None
) -> None:
    """Listen until SIGTERM/SIGINT, then close cleanly."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5)
    await runner.setup()
    state = app[STATE]

    def count_connection() -> None:
        state.connections_opened += 1

    site = CountingTCPSite(runner, host, port, ssl_context=ssl_context, on_accept=count_connection)
    try:
        await site.start()
        print(f"fake-openai listening on {site.name}", file=sys.stderr, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
