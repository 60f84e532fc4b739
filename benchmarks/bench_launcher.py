"""Usage-log middleware overhead and the pooled upstream session's saving, per request.

All serve the same config in front of the same zero-latency fake upstream, one uvicorn
worker each under gunicorn: the bare app, the launcher (usage log on stdout), the launcher
with the durable ledger on too (--ledger-dir), and the launcher with its pooled upstream
session. The first three run with MGW_UPSTREAM_POOL=off, MLflow's own connection per request
as in the bare app, so their difference is the middleware's cost alone; the last against the
launcher with the pool off is what the pool saves. Requests are sent one at a time over
keep-alive, rotating between the servers (order flipped every round) so drift hits all
equally.

    .venv/bin/python benchmarks/bench_launcher.py [--requests 2000] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import requests
from _common import LAB_KEY, OUT_DIR, free_port, print_table, start, start_fake_openai, stop

from mlflow_gateway_tools.stats import Summary, summarize

WARMUP_REQUESTS = 50
CHAT = {"messages": [{"role": "user", "content": "How much does one request cost?"}]}
SCENARIOS = (("chat", False), ("chat, streamed", True))
BARE, LAUNCHER, LEDGER_ON = "bare MLflow app", "launcher (usage log)", "launcher + ledger"
POOL_ON = "launcher, pool on"
GATEWAY_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "MLFLOW_GATEWAY_RESOLVE_API_KEY_FROM_ENV": "true",
    "MLFLOW_GATEWAY_RESOLVE_API_KEY_FROM_FILE": "true",
}


def write_config(directory: Path, api_base: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    key_file = directory / "openai_api_key"
    key_file.write_text(LAB_KEY)
    config = directory / "config.yaml"
    config.write_text(
        json.dumps(
            {
                "endpoints": [
                    {
                        "name": "chat",
                        "endpoint_type": "llm/v1/chat",
                        "model": {
                            "provider": "openai",
                            "name": "gpt-4o-mini",
                            "config": {
                                "openai_api_key": str(key_file),
                                "openai_api_base": api_base,
                            },
                        },
                    }
                ]
            }
        )
    )
    return config


def start_bare_mlflow(config: Path) -> tuple[subprocess.Popen[bytes], str]:
    """MLflow's own app exactly as `mlflow gateway start` serves it (minus its file watcher)."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "1",
        "--worker-class",
        "uvicorn.workers.UvicornWorker",
        "--keep-alive",
        "65",
        "--no-control-socket",
        "mlflow.gateway.app:create_app_from_env()",
    ]
    url = f"http://127.0.0.1:{port}"
    return start(argv, url, env={**GATEWAY_ENV, "MLFLOW_GATEWAY_CONFIG": str(config)}), url


def start_launcher(
    config: Path, usage_log: Path, *extra: str, pool: str = "off"
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "mlflow_gateway_tools.launcher",
        "--config-path",
        str(config),
        "--port",
        str(port),
        "--workers",
        "1",
        "--reload-check-seconds",
        "0",
        *extra,
    ]
    url = f"http://127.0.0.1:{port}"
    env = {**GATEWAY_ENV, "MGW_UPSTREAM_POOL": pool}
    return start(argv, url, env=env, stdout_path=usage_log), url


def ledger_line_count(directory: Path) -> int:
    return sum(len(path.read_bytes().splitlines()) for path in directory.glob("usage-*.jsonl"))


def timed_request(session: requests.Session, url: str, stream: bool) -> float:
    body = {**CHAT, "stream": True} if stream else CHAT
    started = time.perf_counter()
    response = session.post(f"{url}/gateway/chat/invocations", json=body, stream=stream, timeout=30)
    _ = response.content  # the whole body, streamed or not
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:200]}")
    return elapsed * 1000


def difference_row(scenario: str, base: Summary, other: Summary) -> list[str]:
    """p50 and p99 of both, and how much more (+) or less (-) `other` takes."""
    return [
        scenario,
        f"{base.p50:.2f}",
        f"{other.p50:.2f}",
        f"{other.p50 - base.p50:+.2f}",
        f"{base.p99:.2f}",
        f"{other.p99:.2f}",
        f"{other.p99 - base.p99:+.2f}",
    ]


def columns(base: str, other: str, difference: str) -> list[str]:
    names = (base, other, difference)
    return ["scenario", *(f"{name} {p}" for p in ("p50", "p99") for name in names)]


def compare(urls: dict[str, str], requests_per_server: int, stream: bool) -> dict[str, Summary]:
    sessions = {name: requests.Session() for name in urls}
    for name, url in urls.items():
        for _ in range(WARMUP_REQUESTS):
            timed_request(sessions[name], url, stream)
    samples: dict[str, list[float]] = {name: [] for name in urls}
    names = list(urls)
    for round_number in range(requests_per_server):
        for name in names if round_number % 2 == 0 else reversed(names):
            samples[name].append(timed_request(sessions[name], urls[name], stream))
    summaries = {name: summarize(values) for name, values in samples.items()}
    return {name: summary for name, summary in summaries.items() if summary is not None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="per server and scenario")
    parser.add_argument("--markdown", action="store_true", help="print markdown rows")
    args = parser.parse_args()
    os.environ.update(GATEWAY_ENV)
    work = OUT_DIR / "bench-launcher"
    usage_log, ledger_log = work / "usage.log", work / "usage-ledger-on.log"
    pool_log = work / "usage-pool-on.log"
    ledger = work / "ledger"
    shutil.rmtree(ledger, ignore_errors=True)
    ledger.mkdir(parents=True)
    fake, fake_url = start_fake_openai()
    processes = [fake]
    try:
        config = write_config(work, f"{fake_url}/v1")
        bare, bare_url = start_bare_mlflow(config)
        processes.append(bare)
        urls = {BARE: bare_url}
        for name, log, extra, pool in (
            (LAUNCHER, usage_log, (), "off"),
            (LEDGER_ON, ledger_log, ("--ledger-dir", str(ledger)), "off"),
            (POOL_ON, pool_log, (), "on"),
        ):
            process, urls[name] = start_launcher(config, log, *extra, pool=pool)
            processes.append(process)
        overhead, pooling = [], []
        for scenario, stream in SCENARIOS:
            result = compare(urls, args.requests, stream)
            overhead.append(difference_row(scenario, result[BARE], result[LAUNCHER]))
            overhead.append(
                difference_row(f"{scenario}, ledger on", result[BARE], result[LEDGER_ON])
            )
            pooling.append(difference_row(scenario, result[LAUNCHER], result[POOL_ON]))
    finally:
        for process in reversed(processes):
            stop(process)
    expected = len(SCENARIOS) * (args.requests + WARMUP_REQUESTS)
    counts = {
        "usage log": len(usage_log.read_text().splitlines()),
        "usage log (ledger on)": len(ledger_log.read_text().splitlines()),
        "usage log (pool on)": len(pool_log.read_text().splitlines()),
        "ledger": ledger_line_count(ledger),
    }
    setup = (
        f"{args.requests} sequential requests per server and scenario, 1 worker, "
        "fake upstream at 0 ms"
    )
    print_table(
        f"Usage-log middleware overhead, ms per request ({setup}; upstream pool off as in "
        "the bare app; ledger on: --ledger-dir too)",
        columns("bare", "launcher", "overhead"),
        overhead,
        args.markdown,
    )
    print_table(
        f"Pooled upstream session, ms per request ({setup}; the launcher with "
        "MGW_UPSTREAM_POOL off, then on)",
        columns("pool off", "pool on", "difference"),
        pooling,
        args.markdown,
    )
    wrong = {name: count for name, count in counts.items() if count != expected}
    if wrong:
        print(f"line counts {wrong}, expected {expected} each", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
