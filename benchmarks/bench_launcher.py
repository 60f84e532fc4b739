"""Usage-log middleware overhead: launcher-served gateway vs the bare MLflow gateway app.

Both serve the same config in front of the same zero-latency fake upstream, one uvicorn
worker each under gunicorn. Requests are sent one at a time over keep-alive, alternating
between the two servers (order flipped every round) so drift hits both equally; the
difference of the percentiles is the middleware's cost per request.

    .venv/bin/python benchmarks/bench_launcher.py [--requests 2000] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import requests
from _common import LAB_KEY, OUT_DIR, free_port, print_table, start, start_fake_openai, stop

from mlflow_gateway_tools.stats import Summary, summarize

WARMUP_REQUESTS = 50
CHAT = {"messages": [{"role": "user", "content": "How much does one request cost?"}]}
SCENARIOS = (("chat", False), ("chat, streamed", True))
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


def start_bare_mlflow(config: Path) -> tuple[object, str]:
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


def start_launcher(config: Path, usage_log: Path) -> tuple[object, str]:
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
    ]
    url = f"http://127.0.0.1:{port}"
    return start(argv, url, env=GATEWAY_ENV, stdout_path=usage_log), url


def timed_request(session: requests.Session, url: str, stream: bool) -> float:
    body = {**CHAT, "stream": True} if stream else CHAT
    started = time.perf_counter()
    response = session.post(f"{url}/gateway/chat/invocations", json=body, stream=stream, timeout=30)
    _ = response.content  # the whole body, streamed or not
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:200]}")
    return elapsed * 1000


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
    usage_log = work / "usage.log"
    fake, fake_url = start_fake_openai()
    processes = [fake]
    try:
        config = write_config(work, f"{fake_url}/v1")
        bare, bare_url = start_bare_mlflow(config)
        processes.append(bare)
        launcher, launcher_url = start_launcher(config, usage_log)
        processes.append(launcher)
        urls = {"bare MLflow app": bare_url, "launcher (usage log)": launcher_url}
        rows = []
        for scenario, stream in SCENARIOS:
            result = compare(urls, args.requests, stream)
            bare_stats, launcher_stats = result["bare MLflow app"], result["launcher (usage log)"]
            rows.append(
                [
                    scenario,
                    f"{bare_stats.p50:.2f}",
                    f"{launcher_stats.p50:.2f}",
                    f"{launcher_stats.p50 - bare_stats.p50:+.2f}",
                    f"{bare_stats.p99:.2f}",
                    f"{launcher_stats.p99:.2f}",
                    f"{launcher_stats.p99 - bare_stats.p99:+.2f}",
                ]
            )
    finally:
        for process in reversed(processes):
            stop(process)
    logged = len(usage_log.read_text().splitlines())
    expected = len(SCENARIOS) * (args.requests + WARMUP_REQUESTS)
    print_table(
        f"Usage-log middleware overhead, ms per request ({args.requests} sequential requests "
        "per server and scenario, 1 worker, fake upstream at 0 ms)",
        [
            "scenario",
            "bare p50",
            "launcher p50",
            "overhead p50",
            "bare p99",
            "launcher p99",
            "overhead p99",
        ],
        rows,
        args.markdown,
    )
    if logged != expected:
        print(f"usage log has {logged} lines, expected {expected}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
