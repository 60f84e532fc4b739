"""What every fault drill needs: a steady request loop, the lab's gateway reached through the
bastion, the deployment on a host, and a report of failed requests and recovery time.

A helper module rather than a conftest.py (tests import the top-level tests/conftest.py as
`conftest`; a second one would shadow it).
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from mlflow_gateway_tools.evaluate.cases import builtin_cases
from mlflow_gateway_tools.evaluate.loop import BackgroundLoop
from mlflow_gateway_tools.evaluate.runner import RequestRecord, RunSettings
from mlflow_gateway_tools.timeutil import parse_iso

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab"))  # the lab helper's module
from lab_access import REPO, Lab, run, running_lab

from conftest import unmet
from served_window import answered_after, answered_within

VENV_BIN = Path(sys.executable).parent
REPORT_DIR = REPO / "results" / "drills"
HOST = "gw-host-1"
PROJECT = "mlflow-gateway"
GATEWAY_PORT = 5000
LOOP_CASES = ("simple_chat", "multi_turn")
# Requests a second of every drill loop: hundreds of requests per operation, steady.
LOOP_RATE = 40.0
LAB_KEY, NEXT_KEY = "sk-lab-fake-key-1", "sk-lab-fake-key-2"
UPSTREAM_KEYS = REPO / ".lab" / "upstream" / "keys" / "api_keys"


@pytest.fixture(autouse=True)
def only_when_asked_for(request: pytest.FixtureRequest) -> None:
    """Drills break things on purpose (kill replicas, restart a host's engine): they run only
    when selected with -m drill (make drills), never as part of a plain pytest run."""
    if "drill" not in (request.config.option.markexpr or ""):
        pytest.skip("a fault drill: run it with -m drill (make drills)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check: Callable[[], object], what: str, timeout: float, every: float = 0.2) -> float:
    """Poll `check` until it returns something truthy; the seconds it took. Fails at the
    deadline naming `what`."""
    started = time.monotonic()
    last_error: Exception | None = None
    while time.monotonic() - started < timeout:
        try:
            if check():
                return time.monotonic() - started
        except (requests.RequestException, OSError, ValueError) as error:
            last_error = error
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what} (last: {last_error})")


# --- the request loop ---------------------------------------------------------------------


@dataclass(frozen=True)
class TimedRecord:
    """One request of the loop with its wall-clock interval (controller clock, epoch seconds)."""

    started: float
    ended: float
    ok: bool
    status: int | None
    error: str | None

    @classmethod
    def of(cls, record: RequestRecord) -> TimedRecord:
        started = parse_iso(record.ts).timestamp()
        return cls(
            started, started + record.latency_ms / 1000, record.ok, record.status, record.error
        )


class RequestLoop:
    """evaluate-gateway's own loop (the package's BackgroundLoop: same requests, same error
    accounting) in a thread while a drill breaks something; the methods below read its
    timing. Small batches: fresh connections every 8 requests, at most LOOP_RATE a second
    (steady traffic through the operation: on a 2-core machine a back-to-back loop takes the
    CPU the replicas being restarted need, and only makes every operation slower)."""

    def __init__(
        self,
        url: str,
        token: str | None,
        concurrency: int = 4,
        batch: int = 8,
        stream_mode: str = "off",
        *,
        rate: float | None = LOOP_RATE,
    ) -> None:
        cases = [case for case in builtin_cases(_ENDPOINTS) if case.name in LOOP_CASES]
        settings = RunSettings(
            base_url=url, route="gateway", concurrency=concurrency, timeout_s=30.0, token=token
        )
        self.records: list[TimedRecord] = []
        self._loop = BackgroundLoop(
            cases,
            settings,
            stream_mode=stream_mode,
            batch=batch,
            on_done=lambda r: self.records.append(TimedRecord.of(r)),
            rate=rate,
        )

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request as evaluate-gateway recorded it (tokens and all)."""
        return self._loop.records

    def __enter__(self) -> RequestLoop:
        self._loop.start()
        try:
            wait_for(
                lambda: sum(r.ok for r in self.records) >= 20, "the loop's first 20 answers", 60
            )
        except AssertionError:
            self._loop.stop()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self._loop.stop()

    def ok_after(self, moment: float, count: int = 5) -> bool:
        """Whether `count` requests that started after `moment` succeeded."""
        return answered_after(self.records, moment) >= count

    @contextmanager
    def during(self, what: str, at_least: int = 10) -> Iterator[None]:
        """The block is an operation the loop must overlap: afterwards at least `at_least`
        requests started and succeeded while it ran, and `at_least` more after it (a loop
        that only ran before or stalled through it proves nothing)."""
        began = time.time()
        yield
        ended = time.time()
        inside = answered_within(self.records, began, ended)
        assert inside >= at_least, (
            f"{what}: only {inside} requests started and succeeded while it ran "
            f"({ended - began:.1f} s); at least {at_least} prove it served throughout"
        )
        wait_for(lambda: self.ok_after(ended, at_least), f"{at_least} answers after {what}", 60)

    def failures(self, since: float = 0.0, until: float = float("inf")) -> list[TimedRecord]:
        """Failed requests that started in [since, until)."""
        return [r for r in self.records if not r.ok and since <= r.started < until]

    def clean_since(self) -> float | None:
        """When the final run of successful requests began (by start time); None while the
        latest request failed."""
        ordered = sorted(self.records, key=lambda record: record.started)
        if not ordered or not ordered[-1].ok:
            return None
        failed = [record.started for record in ordered if not record.ok]
        later = [
            record.started
            for record in ordered
            if record.ok and record.started > max(failed, default=0)
        ]
        return min(later)

    def steady_for(self, seconds: float) -> bool:
        """Whether every request of the last `seconds` (and at least 10) succeeded."""
        since = self.clean_since()
        clean = [r for r in self.records if since is not None and r.started >= since]
        return since is not None and len(clean) >= 10 and clean[-1].started - since >= seconds


_ENDPOINTS = {"chat": "chat", "completions": "completions", "embeddings": "embeddings"}


# --- the lab deployment ---------------------------------------------------------------------


@contextmanager
def tunnel(lab: Lab, host: str = HOST, port: int = GATEWAY_PORT) -> Iterator[str]:
    """A local port forwarded through the bastion to `host`:`port` (as `tsh ssh -L` would);
    it does not depend on the host's own sshd, so it survives a restart of the host."""
    local = free_port()
    process = subprocess.Popen(
        [
            "ssh",
            "-F",
            str(lab.ssh_config),
            "-N",
            "-o",
            "ExitOnForwardFailure=yes",
            "-L",
            f"127.0.0.1:{local}:{host}:{port}",
            "bastion",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{local}"
    try:
        wait_for(
            lambda: requests.get(f"{url}/health", timeout=5).status_code == 200,
            f"{host}:{port}/health through the bastion",
            30,
        )
        yield url
    finally:
        process.terminate()
        process.wait(10)


def tool(name: str, *args: str, check: bool = False) -> subprocess.CompletedProcess:
    """One of the package's console scripts from the project venv."""
    result = run([str(VENV_BIN / name), *args], timeout=300)
    if check:
        assert result.returncode == 0, f"{name} failed: {result.stderr[-800:]}"
    return result


def deploy(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """`ansible-playbook deploy.yml ARGS` from the repository root (the lab inventory), after
    the arguments in $LAB_DEPLOY_ARGS (e.g. "-e @my-lab-vars.yml")."""
    extra = shlex.split(os.environ.get("LAB_DEPLOY_ARGS", ""))
    playbook = [str(VENV_BIN / "ansible-playbook"), str(REPO / "deploy.yml")]
    return run([*playbook, "-e", "gateway_evaluate_smoke=false", *extra, *args], timeout=timeout)


def host_docker(lab: Lab, *args: str, host: str = HOST) -> subprocess.CompletedProcess:
    return lab.ssh(host, " ".join(["docker", *args]))


def running_replicas(lab: Lab, host: str = HOST) -> list[str]:
    result = host_docker(
        lab,
        "ps",
        "--filter",
        f"label=com.docker.compose.project={PROJECT}",
        "--filter",
        "label=com.docker.compose.service=gateway",
        "--filter",
        "health=healthy",
        "--format",
        "'{{.Names}}'",
        host=host,
    )
    assert result.returncode == 0, result.stderr
    return sorted(result.stdout.split())


def deployed_lab() -> Lab:
    """The running lab with the gateway deployed on gw-host-1, or skip naming what is missing."""
    lab = running_lab()
    if not running_replicas(lab):
        unmet(f"nothing deployed on {HOST}: run ansible-playbook deploy.yml first")
    return lab


def inventory_vars(host: str = HOST) -> dict:
    """The lab inventory's variables of `host`, as written (templates not resolved)."""
    result = run([str(VENV_BIN / "ansible-inventory"), "--host", host], timeout=60)
    return json.loads(result.stdout or "{}")


def client_token() -> str | None:
    """The first client token of the lab inventory, when nginx asks for one."""
    hostvars = inventory_vars()
    tokens = (
        hostvars.get("gateway_proxy_client_tokens")
        or hostvars.get("vault_gateway_proxy_client_tokens")
        or {}
    )
    if not isinstance(tokens, dict):  # still a template (the gateway_proxy default)
        tokens = hostvars.get("vault_gateway_proxy_client_tokens") or {}
    return next(iter(tokens.values()), None)


# --- the lab upstream -----------------------------------------------------------------------


@pytest.fixture
def next_key_accepted() -> Iterator[None]:
    """The lab upstream accepts the next key too (rewritten by rename, as it re-reads it)."""
    original = UPSTREAM_KEYS.read_text()
    staged = UPSTREAM_KEYS.with_name("api_keys.drill")
    staged.write_text(f"{LAB_KEY}\n{NEXT_KEY}\n")
    staged.replace(UPSTREAM_KEYS)
    yield
    staged.write_text(original)
    staged.replace(UPSTREAM_KEYS)


def upstream_control(lab: Lab, method: str, path: str, body: object = None) -> dict:
    """The lab upstream's /_fake/ control API, called inside its container (its certificate
    is for the names upstream and localhost, under the lab CA)."""
    script = (
        "import json, ssl, sys, urllib.request\n"
        "context = ssl.create_default_context(cafile='/etc/fake-openai/tls/ca.crt')\n"
        "data = sys.argv[3].encode() if sys.argv[3] != 'null' else None\n"
        "request = urllib.request.Request('https://localhost:8443/_fake/' + sys.argv[2], "
        "data=data, method=sys.argv[1], headers={'Content-Type': 'application/json'})\n"
        "print(urllib.request.urlopen(request, context=context, timeout=10).read().decode())\n"
    )
    result = lab.docker(
        "exec", "mgw-lab-upstream", "python3", "-c", script, method, path, json.dumps(body)
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout or "{}")


# --- reporting ------------------------------------------------------------------------------


@dataclass
class DrillReport:
    drill: str
    requests: int
    failed: int
    recovery_seconds: float | None
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        recovery = "-" if self.recovery_seconds is None else f"{self.recovery_seconds:.1f} s"
        notes = "; ".join(self.notes)
        return f"| {self.drill} | {self.requests} | {self.failed} | {recovery} | {notes} |"


def report(drill: str, loop: RequestLoop | None, recovery: float | None, *notes: str) -> None:
    """Print one drill's figures (even when the test passes) and add them to
    results/drills/<day>.md."""
    records = loop.records if loop else []
    entry = DrillReport(drill, len(records), sum(not r.ok for r in records), recovery, list(notes))
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    path = REPORT_DIR / f"{datetime.now(UTC):%Y-%m-%d}.md"
    if not path.exists():
        path.write_text("| drill | requests | failed | recovery | notes |\n|---|---|---|---|---|\n")
    with path.open("a") as handle:
        handle.write(entry.line() + "\n")
    if sys.__stdout__ is not None:  # the real stdout, past pytest's capture; None without one
        sys.__stdout__.write(f"\nDRILL {entry.line()}\n")
