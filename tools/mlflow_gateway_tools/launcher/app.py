"""App factory gunicorn's workers load: MLflow's own gateway app inside the usage-log middleware."""

from __future__ import annotations

import os
from typing import Any

from mlflow_gateway_tools.cli_support import disable_mlflow_telemetry
from mlflow_gateway_tools.launcher.middleware import EndpointInfo, UsageLogMiddleware, write_to_fd

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


def create_app() -> UsageLogMiddleware:
    """Build MLflow's gateway from MLFLOW_GATEWAY_CONFIG, exactly as `mlflow gateway start` does."""
    disable_mlflow_telemetry()
    # Imported here, after telemetry is off: importing mlflow starts its telemetry client.
    from mlflow.gateway.app import create_app_from_env  # noqa: PLC0415

    gateway = create_app_from_env()
    usage_fd = int(os.environ.get(USAGE_LOG_FD_ENV, "1"))
    return UsageLogMiddleware(gateway, describe_endpoints(gateway), write_to_fd(usage_fd))
