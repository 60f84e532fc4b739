"""MLflow AI Gateway tools: launcher with a usage log, evaluation, costs, fake upstream."""

__version__ = "0.1.0"
