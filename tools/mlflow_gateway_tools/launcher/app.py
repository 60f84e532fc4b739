"""App factory gunicorn's workers load: MLflow's own gateway app inside the usage-log middleware,
its upstream calls on pooled connections unless MGW_UPSTREAM_POOL=off."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

from mlflow_gateway_tools.cli_support import disable_mlflow_telemetry
from mlflow_gateway_tools.launcher.ledger_settings import LedgerSettings
from mlflow_gateway_tools.launcher.ledger_writer import LedgerWriter
from mlflow_gateway_tools.launcher.middleware import (
    ASGIApp,
    EndpointInfo,
    Message,
    Receive,
    Scope,
    Send,
    UsageLogMiddleware,
    UsageWriter,
    write_to_both,
    write_to_fd,
)
from mlflow_gateway_tools.launcher.pool_settings import PoolSettings

USAGE_LOG_FD_ENV = "MGW_USAGE_LOG_FD"


def _enum_value(value: Any) -> str | None:
    return None if value is None else str(getattr(value, "value", value))


def describe_endpoints(gateway: Any) -> dict[str, EndpointInfo]:
    """Endpoint type, provider and configured model per endpoint (and traffic route) name."""
    described = {
        name: EndpointInfo(
            endpoint_type=_enum_value(endpoint.endpoint_type),
            provider=_enum_value(endpoint.model.provider),
            model=endpoint.model.name,
        )
        for name, endpoint in gateway.dynamic_endpoints.items()
    }
    for name, route in gateway.traffic_routes.items():
        described[name] = EndpointInfo(_enum_value(route.task_type), "traffic_route", None)
    return described


def create_app() -> ASGIApp:
    """Build MLflow's gateway from MLFLOW_GATEWAY_CONFIG, exactly as `mlflow gateway start` does."""
    disable_mlflow_telemetry()
    # Imported here, after telemetry is off: importing mlflow starts its telemetry client.
    from mlflow.gateway.app import create_app_from_env  # noqa: PLC0415

    gateway = create_app_from_env()
    app = UsageLogMiddleware(gateway, describe_endpoints(gateway), usage_writer())
    return with_upstream_pool(app, PoolSettings.from_env())


def with_upstream_pool(app: ASGIApp, settings: PoolSettings) -> ASGIApp:
    """Send MLflow's upstream calls through one pooled session per worker when the pool is on
    (off: MLflow's own function, untouched); the sessions close at the worker's shutdown."""
    if not settings.enabled:
        return app
    from mlflow_gateway_tools.launcher import upstream_pool  # noqa: PLC0415 - imports mlflow

    pool = upstream_pool.UpstreamPool(limit_per_host=settings.limit_per_host)
    upstream_pool.install(pool)
    return closing_at_shutdown(app, pool.close)


def closing_at_shutdown(app: ASGIApp, close: Callable[[], Awaitable[None]]) -> ASGIApp:
    """Await `close` in the worker's event loop once `app` has finished its lifespan shutdown
    (uvicorn runs it after the in-flight requests), before the server is told it is done."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return

        async def send_after_close(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await close()
            await send(message)

        await app(scope, receive, send_after_close)

    return wrapped


def usage_writer() -> UsageWriter:
    """Usage lines to the launcher's stdout, and to the ledger when --ledger-dir is set."""
    stdout = write_to_fd(int(os.environ.get(USAGE_LOG_FD_ENV, "1")))
    settings = LedgerSettings.from_env()
    if settings is None:
        return stdout
    ledger = LedgerWriter(settings)
    ledger.start()
    return write_to_both(stdout, ledger.write)
