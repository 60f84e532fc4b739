"""Pooled upstream connections for MLflow's gateway: one aiohttp session per event loop.

MLflow's `mlflow.gateway.providers.utils._aiohttp_post` is the one egress point of every
provider call (send_request, send_stream_request, send_proxy_request). It builds a new
`aiohttp.ClientSession`, and so a new connector and a new TCP (and TLS) connection, for every
upstream request and closes it afterwards: about 0.75 ms of CPU per request at a 0 ms
upstream, plus a handshake per request over a real network.

`UpstreamPool.post` is a drop-in replacement that keeps one long-lived session per event loop
(a gunicorn/uvicorn worker has one) with a keep-alive connector, and changes nothing else:
the same header stripping and forced Accept-Encoding, the same read buffer, timeout,
redirect policy, SSRF protection and exception mapping. Headers go with each request and
cookies are never kept, so requests of different clients and keys share connections only,
never state. `install()` swaps it in; `uninstall()` restores MLflow's own function.

SSRF protection (mlflow.gateway.ssrf) is kept by a second pool, not by falling back to a
session per request. MLflow checks IP literals before the request (assert_public_upstream_url,
still called per request here) and hostnames at connect time, in the connector's resolver
(SSRFGuardedResolver). A pooled connection was dialled through that resolver, so it leads to
an address that was public when it was dialled; reusing it reaches that same address, which
no later DNS answer (rebinding) can change. What must never happen is a protected request
reusing a connection dialled without the check, so protected requests use their own session,
built on the guarded resolver, and unprotected ones the plain session.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from fastapi import HTTPException
from mlflow.environment_variables import MLFLOW_GATEWAY_ROUTE_TIMEOUT_SECONDS
from mlflow.gateway.providers import utils
from mlflow.gateway.ssrf import (
    GatewaySSRFProtectionError,
    SSRFGuardedResolver,
    assert_public_upstream_url,
    upstream_protection_enabled,
)
from mlflow.utils.uri import append_to_uri_path
from multidict import CIMultiDict

# MLflow's own value: large SSE `data:` lines of some providers must fit the read buffer.
READ_BUFSIZE = 2**20

# MLflow's function as imported, whatever install() does later.
mlflow_aiohttp_post = utils._aiohttp_post


def outgoing_headers(headers: Mapping[str, str]) -> CIMultiDict[str]:
    """The headers MLflow sends for `headers`: the same ones stripped, Accept-Encoding forced.

    MLflow passes them as the session's default headers, which keep every name of the dict.
    Given per request, aiohttp would keep only the last of names that differ in case only
    (a client's `authorization` next to the provider's `Authorization`), so each name is
    given one spelling here and all of them still go out, as MLflow sends them.
    """
    kept = {k: v for k, v in headers.items() if k.lower() not in utils._STRIPPED_HEADERS}
    kept["Accept-Encoding"] = utils.SUPPORTED_ACCEPT_ENCODING
    spelling: dict[str, str] = {}
    result: CIMultiDict[str] = CIMultiDict()
    for name, value in kept.items():
        result.add(spelling.setdefault(name.lower(), name), value)
    return result


class UpstreamPool:
    """Long-lived upstream sessions, made lazily in each running event loop, one per kind
    (SSRF-guarded or not)."""

    def __init__(self, *, limit_per_host: int) -> None:
        self.limit_per_host = limit_per_host  # 0: no limit, as in aiohttp
        # Weak: a session belongs to its loop and cannot outlive it; the loop's end drops it.
        self._sessions: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[bool, aiohttp.ClientSession]
        ] = weakref.WeakKeyDictionary()

    def session(self, *, guarded: bool) -> aiohttp.ClientSession:
        """This loop's session of that kind; must be called inside the running loop."""
        sessions = self._sessions.setdefault(asyncio.get_running_loop(), {})
        session = sessions.get(guarded)
        if session is None or session.closed:
            session = sessions[guarded] = self._new_session(guarded)
        return session

    def _new_session(self, guarded: bool) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            # No overall cap (MLflow's connector per request had none in effect); the cap per
            # host bounds what one worker opens to one upstream, beyond it requests wait.
            limit=0,
            limit_per_host=self.limit_per_host,
            resolver=SSRFGuardedResolver() if guarded else None,
        )
        return aiohttp.ClientSession(
            connector=connector,
            read_bufsize=READ_BUFSIZE,
            # A shared jar would send one client's upstream cookies with everyone's requests;
            # MLflow's session per request never sends any (it follows no redirect).
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def close(self) -> None:
        """Close this loop's sessions and their connections (at the worker's shutdown)."""
        sessions = self._sessions.pop(asyncio.get_running_loop(), {})
        for session in sessions.values():
            await session.close()

    @asynccontextmanager
    async def post(
        self,
        headers: dict[str, str],
        base_url: str,
        path: str,
        payload: dict[str, Any],
        *,
        ssrf_protect: bool = True,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """`_aiohttp_post` on a pooled connection; same signature, same behaviour."""
        request_headers = outgoing_headers(headers)
        url = append_to_uri_path(base_url, path)  # type: ignore[no-untyped-call]  # MLflow's
        try:
            if ssrf_protect:
                assert_public_upstream_url(url)  # IP literals: aiohttp skips the resolver
            session = self.session(guarded=ssrf_protect and upstream_protection_enabled())
            seconds = MLFLOW_GATEWAY_ROUTE_TIMEOUT_SECONDS.get()  # type: ignore[no-untyped-call]
            timeout = aiohttp.ClientTimeout(total=seconds)
            async with session.post(
                url,
                headers=request_headers,
                json=payload,
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                yield response
        except GatewaySSRFProtectionError as e:
            raise HTTPException(status_code=502, detail=str(e)) from e


def install(pool: UpstreamPool) -> None:
    """Route every MLflow provider call through `pool` (send_* look the function up per call)."""
    utils._aiohttp_post = pool.post


def uninstall() -> None:
    """Restore MLflow's own session-per-request function."""
    utils._aiohttp_post = mlflow_aiohttp_post
