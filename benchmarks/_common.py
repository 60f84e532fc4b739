"""Helpers shared by the benchmark scripts: processes on free ports, timing, output tables."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import requests
from rich.console import Console
from rich.table import Table

OUT_DIR = Path(__file__).resolve().parent / "out"
LAB_KEY = "sk-lab-fake-key-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            command = process.args  # start() passes a list; name its first words
            shown = command[:4] if isinstance(command, list) else command
            raise RuntimeError(f"{shown!r} exited with {process.returncode}")
        try:
            if requests.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url}/health did not answer within {timeout}s")


def start(
    argv: Sequence[str],
    url: str,
    *,
    env: dict[str, str] | None = None,
    stdout_path: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a server process and wait for its /health; its stderr goes to a file in OUT_DIR."""
    OUT_DIR.mkdir(exist_ok=True)
    name = Path(argv[2] if argv[1] == "-m" else argv[0]).name.replace(".", "-")
    with (OUT_DIR / f"{name}.err").open("ab") as stderr:
        stdout = stdout_path.open("wb") if stdout_path else subprocess.DEVNULL
        process = subprocess.Popen(  # noqa: S603 - argv built here, no shell
            list(argv), stdout=stdout, stderr=stderr, env={**os.environ, **(env or {})}
        )
    wait_healthy(url, process)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_fake_openai(latency_ms: int = 0) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        sys.executable,
        "-m",
        "mlflow_gateway_tools.fake_openai",
        "--port",
        str(port),
        "--api-key",
        LAB_KEY,
        "--latency-ms",
        str(latency_ms),
    ]
    return start(argv, url), url


def print_table(
    title: str, columns: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool
) -> None:
    """A rich table on the terminal, or markdown rows for benchmarks/results.md."""
    if markdown:
        print(f"\n### {title}\n")
        print("| " + " | ".join(columns) + " |")
        print("|" + "|".join("---" for _ in columns) + "|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    table = Table(title=title, title_justify="left")
    for index, column in enumerate(columns):
        table.add_column(column, justify="left" if index == 0 else "right")
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def bench_main(
    description: str, title: str, columns: Sequence[str], measure: Callable[[], list[list[str]]]
) -> int:
    """main() of a benchmark whose only option is --markdown: measure, then print the table."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--markdown", action="store_true", help="print markdown rows")
    args = parser.parse_args()
    print_table(title, columns, measure(), args.markdown)
    return 0
