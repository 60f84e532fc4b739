"""evaluate-gateway's own speed: 1,000 requests at concurrency 50 against a 50 ms upstream.

The target is fake-openai itself (OpenAI route), so the wall time is the tool's and not a
gateway's: the ideal is requests / concurrency x delay (1,000 / 50 x 50 ms = 1.0 s). The
process wall time includes Python start-up and the health check; the request phase is what
evaluate-gateway itself reports.

    .venv/bin/python benchmarks/bench_evaluate.py [--markdown]
"""

from __future__ import annotations

import json
import sys
import time

from _commands import run
from _common import LAB_KEY, OUT_DIR, bench_main, start_fake_openai, stop
from bench_http import BIN

REQUESTS = 1000
CONCURRENCY = 50
DELAY_MS = 50
COLUMNS = (
    "run",
    "ideal s",
    "request phase s",
    "process wall s",
    "req/s",
    "p50 / p99 ms",
    "failed",
)


def evaluate(url: str, stream: bool) -> tuple[float, dict]:
    """Process wall seconds and the summary of one evaluate-gateway run."""
    output = OUT_DIR / f"bench-evaluate-{'stream' if stream else 'plain'}.json"
    argv = [
        str(BIN / "evaluate-gateway"),
        "--url",
        url,
        "--route",
        "openai",
        "--token",
        LAB_KEY,
        "--cases",
        "simple_chat",
        "--requests",
        str(REQUESTS),
        "--concurrency",
        str(CONCURRENCY),
        "--output",
        str(output),
    ]
    if stream:
        argv.append("--stream")
    started = time.perf_counter()
    run(argv)
    wall = time.perf_counter() - started
    return wall, json.loads(output.read_text())["summary"]


def measure() -> list[list[str]]:
    ideal = REQUESTS / CONCURRENCY * DELAY_MS / 1000
    fake, url = start_fake_openai(DELAY_MS)
    rows = []
    try:
        for stream in (False, True):
            wall, summary = evaluate(url, stream)
            latency = summary["latency_ms"]
            rows.append(
                [
                    "streamed" if stream else "plain",
                    f"{ideal:.2f}",
                    f"{summary['wall_seconds']:.2f}",
                    f"{wall:.2f}",
                    f"{summary['throughput_rps']:,.0f}",
                    f"{latency['p50']:.1f} / {latency['p99']:.1f}",
                    str(summary["failed"]),
                ]
            )
    finally:
        stop(fake)
    return rows


def title() -> str:
    return (
        f"evaluate-gateway: {REQUESTS:,} chat requests at concurrency {CONCURRENCY} "
        f"against fake-openai answering after {DELAY_MS} ms"
    )


def main() -> int:
    return bench_main(__doc__.splitlines()[0], title(), COLUMNS, measure)


if __name__ == "__main__":
    sys.exit(main())
