"""Gunicorn settings for gateway-launcher (loaded with `-c python:<this module>`)."""

from typing import Any

from mlflow_gateway_tools.launcher import ledger_master
from mlflow_gateway_tools.launcher.hooks import on_exit, on_reload, on_starting
from mlflow_gateway_tools.launcher.hooks import when_ready as _config_when_ready
from mlflow_gateway_tools.launcher.ledger_master import child_exit

__all__ = ["child_exit", "on_exit", "on_reload", "on_starting", "when_ready"]


def when_ready(server: Any) -> None:
    _config_when_ready(server)
    ledger_master.when_ready(server)


worker_class = "uvicorn.workers.UvicornWorker"
# The usage log owns stdout; gunicorn's own messages go to stderr, no access log.
errorlog = "-"
accesslog = None
# One gateway per container: no control socket in $HOME shared between instances.
control_socket_disable = True
