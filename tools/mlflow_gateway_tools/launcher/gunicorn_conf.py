"""Gunicorn settings for gateway-launcher (loaded with `-c python:<this module>`)."""

from mlflow_gateway_tools.launcher.hooks import on_exit, on_reload, on_starting, when_ready

__all__ = ["on_exit", "on_reload", "on_starting", "when_ready"]

worker_class = "uvicorn.workers.UvicornWorker"
# The usage log owns stdout; gunicorn's own messages go to stderr, no access log.
errorlog = "-"
accesslog = None
# One gateway per container: no control socket in $HOME shared between instances.
control_socket_disable = True
