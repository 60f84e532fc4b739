"""analyze-costs on a generated 1M-line usage log: seconds and peak memory, next to jq.

The log has the launcher's exact line format with a realistic mix: five models (dated
snapshot names), three clients, three endpoints, 30 days, cached and reasoning tokens and
about 2% failed requests. jq computes the same total cost with a price map in one line
(floating point, no grouping), so the two totals can also be compared.

    .venv/bin/python benchmarks/bench_analyze.py [--lines 1000000] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _common import OUT_DIR, print_table

from mlflow_gateway_tools.pricing import PriceTable
from mlflow_gateway_tools.timeutil import format_iso

MODELS = (  # (configured, returned, endpoint, endpoint_type)
    ("gpt-4o-mini", "gpt-4o-mini-2024-07-18", "chat", "llm/v1/chat"),
    ("gpt-4o", "gpt-4o-2024-08-06", "chat-large", "llm/v1/chat"),
    ("gpt-4.1-mini", "gpt-4.1-mini-2025-04-14", "chat", "llm/v1/chat"),
    ("o4-mini", "o4-mini-2025-04-16", "reasoning", "llm/v1/chat"),
    ("text-embedding-3-small", "text-embedding-3-small", "embeddings", "llm/v1/embeddings"),
)
CLIENTS = ("team-a", "team-b", None)
START = datetime(2026, 10, 28, tzinfo=UTC)
SPAN_SECONDS = 30 * 86400
JQ_PROGRAM = (
    'reduce (inputs | select(.event == "gateway.request")) as $r (0; . + '
    '(($p[($r.model_returned // $r.model_configured // "") '
    '| sub("-[0-9]{4}-[0-9]{2}-[0-9]{2}$"; "")] // [0, 0, 0]) as [$i, $c, $o] '
    "| ((($r.prompt_tokens // 0) - ($r.cached_tokens // 0)) * $i "
    "+ ($r.cached_tokens // 0) * $c + ($r.completion_tokens // 0) * $o) / 1000000))"
)


def usage_line(index: int, rng: random.Random) -> str:
    configured, returned, endpoint, endpoint_type = MODELS[index % len(MODELS)]
    failed = rng.random() < 0.02
    prompt = rng.randint(8, 4000)
    cached = (prompt // 128) * 128 if rng.random() < 0.3 else 0
    completion = 0 if endpoint == "embeddings" else rng.randint(1, 800)
    reasoning = completion // 2 if configured == "o4-mini" else 0
    moment = START + timedelta(seconds=SPAN_SECONDS * index / 1_000_000)
    return json.dumps(
        {
            "event": "gateway.request",
            "ts": format_iso(moment),
            "request_id": f"{index:032x}",
            "client": CLIENTS[index % len(CLIENTS)],
            "method": "POST",
            "path": f"/gateway/{endpoint}/invocations",
            "route": "gateway",
            "endpoint": endpoint,
            "endpoint_type": endpoint_type,
            "provider": "openai",
            "model_configured": configured,
            "model_returned": None if failed else returned,
            "status": 429 if failed else 200,
            "latency_ms": round(rng.uniform(20, 900), 2),
            "stream": False,
            "ttfb_ms": None,
            "prompt_tokens": None if failed else prompt,
            "completion_tokens": None if failed else completion,
            "total_tokens": None if failed else prompt + completion,
            "cached_tokens": None if failed else cached,
            "reasoning_tokens": None if failed else reasoning,
            "error": "Rate limit reached for requests" if failed else None,
        },
        separators=(",", ":"),
    )


def generated_log(lines: int) -> Path:
    """The benchmark input, generated once per size and reused."""
    path = OUT_DIR / f"usage-{lines}.log"
    if path.exists():
        return path
    OUT_DIR.mkdir(exist_ok=True)
    rng = random.Random(42)  # noqa: S311 - reproducible test data, not secrets
    partial = path.with_suffix(".partial")
    with partial.open("w") as handle:
        for index in range(lines):
            handle.write(usage_line(index, rng) + "\n")
    partial.replace(path)
    return path


def measure_peak(argv: list[str]) -> tuple[float, float | None, str]:
    """Wall seconds, peak RSS in MB (None without GNU time) and stdout of one command.

    GNU time reports the command's own peak RSS; a child forked from this Python process
    would count the parent's pages as well.
    """
    output, timing = OUT_DIR / "bench-analyze.out", OUT_DIR / "bench-analyze.time"
    gnu_time = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)
    command = [gnu_time, "-f", "%M", "-o", str(timing), *argv] if gnu_time else argv
    started = time.perf_counter()
    with output.open("wb") as out:
        result = subprocess.run(command, stdout=out, stderr=subprocess.PIPE, check=False)  # noqa: S603
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {result.stderr.decode()[-500:]}")
    peak_mb = int(timing.read_text().split()[-1]) / 1024 if gnu_time else None
    return elapsed, peak_mb, output.read_text()


def megabytes(value: float | None) -> str:
    return "n/a (no GNU time)" if value is None else f"{value:.0f}"


def jq_prices(prices: PriceTable) -> str:
    table = {}
    for configured, _returned, _endpoint, _type in MODELS:
        price = prices.lookup(configured)
        assert price is not None
        table[configured] = [float(price.input), float(price.cached_input), float(price.output)]
    return json.dumps(table)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--markdown", action="store_true", help="print markdown rows")
    args = parser.parse_args()
    log = generated_log(args.lines)
    size_mb = log.stat().st_size / 1e6
    analyze = [str(Path(sys.executable).parent / "analyze-costs"), "--log-file", str(log), "--json"]
    seconds, peak_mb, output = measure_peak(analyze)
    report = json.loads(output)
    rows = [
        [
            "analyze-costs (exact decimals; groups by model, endpoint, client, day)",
            f"{seconds:.2f}",
            f"{peak_mb:.0f}",
            f"${report['totals']['cost_usd']:,.6f}",
        ]
    ]
    if shutil.which("jq"):
        jq = ["jq", "-n", "--argjson", "p", jq_prices(PriceTable.load()), JQ_PROGRAM, str(log)]
        jq_seconds, jq_peak_mb, jq_output = measure_peak(jq)
        rows.append(
            [
                "jq one-liner (float sum of the total only)",
                f"{jq_seconds:.2f}",
                f"{jq_peak_mb:.0f}",
                f"${float(jq_output):,.6f}",
            ]
        )
    else:
        rows.append(["jq one-liner", "jq not installed", "-", "-"])
    print_table(
        f"Cost analysis of {args.lines:,} usage-log lines ({size_mb:,.0f} MB)",
        ["tool", "seconds", "peak RSS (MB)", "total cost"],
        rows,
        args.markdown,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
