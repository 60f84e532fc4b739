"""Shared fixtures: a real fake-openai upstream and real launcher-served MLflow gateways.

Everything runs as real processes on free 127.0.0.1 ports; nothing is mocked at the HTTP
level. Helpers poll for a condition with a deadline instead of sleeping.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest
import requests

from mlflow_gateway_tools.ledger_files import ledger_files

# Importing mlflow (the launcher does, in-process in a few tests) must never phone home.
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "true"

LAB_KEY = "sk-lab-fake-key-1"
ROTATED_KEY = "sk-lab-fake-key-2"
T = TypeVar("T")
IN_CI = os.environ.get("CI", "").lower() == "true"


def unmet(reason: str) -> NoReturn:
    """A test's precondition is missing: skip it on a developer's machine, fail it in CI
    (CI=true), where a skip would turn a broken lab, gateway or image into a green run."""
    if IN_CI:
        pytest.fail(f"precondition not met in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(
    check: Callable[[], T | None], what: str, timeout: float = 60.0, every: float = 0.05
) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` at the deadline.

    The deadline is generous (CI machines run loaded, twice as slow): a check that holds
    returns at once, so only a failure waits it out."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except (requests.RequestException, OSError, ValueError) as error:
            last_error = error
        else:
            if result:
                return result
        time.sleep(every)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what} (last error: {last_error})"
    )


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A small tmpfs mounted at `path` for the block (root only: see unmet otherwise)."""
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        unmet(f"cannot mount a small tmpfs here (root needed): {result.stderr!r}")
    try:
        yield path
    finally:
        # Lazy: a process that still has a file open there (a killed gateway's leftovers)
        # must not leave the mount behind.
        subprocess.run(["umount", "--lazy", str(path)], check=False)


def fill_filesystem(directory: Path) -> Path:
    """Write a filler file until the filesystem refuses: truly full, not nearly full."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"x" * 512)
        except OSError as error:
            assert error.errno == errno.ENOSPC, error
    return filler


def ledger_lines(directory: Path) -> list[bytes]:
    """Every line of every ledger file as readers select them (a .gz beats its plain file)."""
    lines: list[bytes] = []
    for entry in ledger_files(directory):
        data = entry.path.read_bytes()
        lines += (gzip.decompress(data) if entry.compressed else data).splitlines()
    return lines


def request_ids(lines: list[bytes]) -> Counter[str]:
    """How often each request id occurs among the well-formed lines."""
    ids: Counter[str] = Counter()
    for raw in lines:
        try:
            ids[json.loads(raw)["request_id"]] += 1
        except (ValueError, KeyError):
            continue  # a torn fragment
    return ids


def _healthy(url: str) -> bool:
    return requests.get(f"{url}/health", timeout=2).status_code == 200


def stop_process(process: subprocess.Popen, timeout: float = 15) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    return process.returncode


@dataclass
class FakeOpenAI:
    url: str
    key: str
    process: subprocess.Popen

    @property
    def api_base(self) -> str:
        return f"{self.url}/v1"

    def control(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        response = requests.request(method, f"{self.url}/_fake/{path}", json=body, timeout=5)
        response.raise_for_status()
        return response.json()

    def stats(self) -> dict[str, Any]:
        return self.control("GET", "stats")

    def reset(self) -> None:
        self.control("DELETE", "faults")
        self.control("POST", "stats/reset")


def start_fake_openai(*extra_args: str, scheme: str = "http") -> FakeOpenAI:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow_gateway_tools.fake_openai",
            "--port",
            str(port),
            *extra_args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"{scheme}://127.0.0.1:{port}"
    if scheme == "http":
        wait_until(lambda: process.poll() is not None or _healthy(url), "fake-openai to start")
    if process.poll() is not None:
        assert process.stderr is not None  # stderr=PIPE
        raise AssertionError(f"fake-openai exited: {process.stderr.read()}")
    return FakeOpenAI(url=url, key=LAB_KEY, process=process)


@pytest.fixture(scope="session")
def fake_openai() -> Iterator[FakeOpenAI]:
    """One fake upstream for the session, accepting the lab key."""
    fake = start_fake_openai("--api-key", LAB_KEY)
    yield fake
    stop_process(fake.process)


@pytest.fixture
def fake(fake_openai: FakeOpenAI) -> FakeOpenAI:
    """The session's fake upstream with no queued faults and zeroed counters."""
    fake_openai.reset()
    return fake_openai


DEFAULT_ENDPOINTS = (
    ("chat", "llm/v1/chat", "gpt-4.1-mini"),
    ("completions", "llm/v1/completions", "davinci-002"),
    ("embeddings", "llm/v1/embeddings", "text-embedding-3-small"),
)


def gateway_config(
    api_base: str, key_file: Path, endpoints: tuple[tuple[str, str, str], ...] = DEFAULT_ENDPOINTS
) -> str:
    """A gateway config YAML in the deployed shape: OpenAI provider, key from a file."""
    config = {
        "endpoints": [
            {
                "name": name,
                "endpoint_type": endpoint_type,
                "model": {
                    "provider": "openai",
                    "name": model,
                    "config": {"openai_api_key": str(key_file), "openai_api_base": api_base},
                },
            }
            for name, endpoint_type, model in endpoints
        ]
    }
    return json.dumps(config, indent=2)  # JSON is YAML, and unambiguous


@dataclass
class LauncherGateway:
    url: str
    config_path: Path
    key_file: Path
    stdout_path: Path
    stderr_path: Path
    process: subprocess.Popen
    _read_offset: int = field(default=0)

    def usage_lines(self) -> list[dict[str, Any]]:
        """Every usage-log line written so far (each must be one JSON object)."""
        return [json.loads(line) for line in self.stdout_path.read_text().splitlines()]

    def mark(self) -> int:
        """Remember how much of the usage log exists, to read only what comes next."""
        self._read_offset = len(self.stdout_path.read_bytes())
        return self._read_offset

    def new_usage_lines(self, count: int, timeout: float = 20) -> list[dict[str, Any]]:
        """Wait until `count` lines were written after the last mark(); return them."""

        def lines_since_mark() -> list[dict[str, Any]] | None:
            text = self.stdout_path.read_bytes()[self._read_offset :].decode()
            lines = [json.loads(line) for line in text.splitlines() if line]
            return lines if len(lines) >= count else None

        return wait_until(lines_since_mark, f"{count} usage-log line(s)", timeout)

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    @property
    def ledger_state_dir(self) -> Path:
        """This gateway's own MGW_LEDGER_STATE_DIR (never the shared default in /tmp)."""
        return self.config_path.parent / "ledger-state"

    def stop(self) -> int:
        return stop_process(self.process, timeout=40)


def start_launcher(
    directory: Path,
    fake: FakeOpenAI,
    *extra_args: str,
    key: str = LAB_KEY,
    workers: int = 1,
    wait: bool = True,
    before_start: Callable[[Path, Path], object] | None = None,
) -> LauncherGateway:
    """Run `gateway-launcher` like the image does, with its config and key in `directory`.

    `before_start(config_path, key_file)` may alter them first (to test refusals).
    """
    directory.mkdir(parents=True, exist_ok=True)
    key_file = directory / "openai_api_key"
    key_file.write_text(key)
    config_path = directory / "config.yaml"
    config_path.write_text(gateway_config(fake.api_base, key_file))
    if before_start is not None:
        before_start(config_path, key_file)
    port = free_port()
    stdout_path, stderr_path = directory / "usage.log", directory / "launcher.err"
    env = {**os.environ, "MGW_LEDGER_STATE_DIR": str(directory / "ledger-state")}
    with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow_gateway_tools.launcher",
                "--config-path",
                str(config_path),
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--reload-check-seconds",
                "0.2",
                "--graceful-timeout",
                "20",
                "--state-dir",
                str(directory),
                *extra_args,
            ],
            stdout=stdout,
            stderr=stderr,
            env=env,
        )
    gateway = LauncherGateway(
        url=f"http://127.0.0.1:{port}",
        config_path=config_path,
        key_file=key_file,
        stdout_path=stdout_path,
        stderr_path=stderr_path,
        process=process,
    )
    if wait:
        try:
            wait_until(
                lambda: process.poll() is not None or _healthy(gateway.url),
                "the launcher-served gateway to answer /health",
                timeout=60,
            )
        except AssertionError:
            stop_process(process)
            raise
        if process.poll() is not None:
            raise AssertionError(f"gateway-launcher exited early:\n{gateway.stderr()}")
    return gateway


@pytest.fixture(scope="session")
def gateway(
    fake_openai: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LauncherGateway]:
    """One launcher-served MLflow gateway (2 workers) in front of the session fake upstream."""
    served = start_launcher(tmp_path_factory.mktemp("gateway"), fake_openai, workers=2)
    yield served
    served.stop()


@pytest.fixture
def launch_gateway(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> Iterator[Callable[..., LauncherGateway]]:
    """Start private gateways (for reload/stop tests); all are stopped at teardown."""
    started: list[LauncherGateway] = []

    def launch(*extra_args: str, **options: Any) -> LauncherGateway:
        directory = tmp_path / f"gateway-{len(started)}"
        served = start_launcher(directory, options.pop("fake", fake_openai), *extra_args, **options)
        started.append(served)
        return served

    yield launch
    for served in started:
        served.stop()


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory no file can be created in: a read-only tmpfs as root (root ignores mode
    bits), mode 0555 otherwise."""
    directory = tmp_path / "read-only"
    directory.mkdir()
    if os.geteuid() != 0:
        directory.chmod(0o555)
        yield directory
        directory.chmod(0o755)
        return
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=16k", "tmpfs", str(directory)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        unmet(f"cannot mount a read-only tmpfs here: {mounted.stderr!r}")
    yield directory
    subprocess.run(["umount", str(directory)], check=False)
