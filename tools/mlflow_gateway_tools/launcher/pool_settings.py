"""Settings of the pooled upstream connections (launcher/upstream_pool.py), from the environment.

Environment variables, not options: Docker and the gateway role set them next to MLflow's own
MLFLOW_GATEWAY_* variables. gateway-launcher checks them before it execs gunicorn (a typo
stops the start with one message); each worker reads them again when it builds the app.
This module imports no MLflow: the CLI reads it before MLflow's telemetry is turned off.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

POOL_ENV = "MGW_UPSTREAM_POOL"  # on, or off (the default): MLflow's own connection per request
LIMIT_PER_HOST_ENV = "MGW_UPSTREAM_POOL_PER_HOST"
# Enough for a worker's concurrent calls to one upstream; past it, requests wait for one.
DEFAULT_LIMIT_PER_HOST = 100
_SWITCH = {"on": True, "true": True, "off": False, "false": False}


@dataclass(frozen=True, slots=True)
class PoolSettings:
    enabled: bool
    limit_per_host: int  # connections per worker and upstream host; 0: no limit

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> PoolSettings:
        """The settings; ValueError names the variable and the values it takes."""
        # Off until the lab proves it through rolling operations; the role turns it on per host.
        switch = environ.get(POOL_ENV, "").strip().lower() or "off"
        if switch not in _SWITCH:
            raise ValueError(
                f"{POOL_ENV}={environ[POOL_ENV]!r} is neither on nor off; use on (one pooled "
                "upstream session per worker) or off (a new connection per request)"
            )
        limit = environ.get(LIMIT_PER_HOST_ENV, "").strip() or str(DEFAULT_LIMIT_PER_HOST)
        if not limit.isdigit():
            raise ValueError(
                f"{LIMIT_PER_HOST_ENV}={environ[LIMIT_PER_HOST_ENV]!r} is not a whole number; "
                "give the most connections a worker keeps to one upstream host (0: no limit)"
            )
        return cls(enabled=_SWITCH[switch], limit_per_host=int(limit))
