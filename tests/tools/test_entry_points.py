"""`pip install -e .` gives the five commands, each also runnable with `python -m`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

COMMANDS = {
    "evaluate-gateway": "evaluate",
    "analyze-costs": "costs",
    "fake-openai": "fake_openai",
    "gateway-launcher": "launcher",
    "gateway-ledger": "launcher.ledger_cli",
}


@pytest.mark.parametrize(("script", "module"), COMMANDS.items())
def test_console_script_and_module_both_answer_help(script: str, module: str) -> None:
    for argv in (
        [str(Path(sys.executable).parent / script), "--help"],
        [sys.executable, "-m", f"mlflow_gateway_tools.{module}", "--help"],
    ):
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"usage: {script}")
