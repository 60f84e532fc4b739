"""analyze-costs on a generated 1M-line usage log: seconds and peak memory, next to jq.

The log has the launcher's exact line format with a realistic mix: five models (dated
snapshot names), three clients, three endpoints, 30 days, cached and reasoning tokens and
about 2% failed requests. jq computes the same total cost with a price map in one line
(floating point, no grouping), so the two totals can also be compared. The same lines are
also read as a usage ledger: one file per UTC day and container (two containers, 30 days),
as the launcher writes them, which analyze-costs folds on every core.

Peak memory is that of the whole process tree (analyze-costs' worker processes included),
sampled every 10 ms: the sum of their resident sets, an upper bound as forked workers share
pages with their parent.

    .venv/bin/python benchmarks/bench_analyze.py [--lines 1000000] [--markdown]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import resource
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import psutil
from _common import OUT_DIR, print_table

from mlflow_gateway_tools.ledger_files import file_name
from mlflow_gateway_tools.pricing import PriceTable
from mlflow_gateway_tools.timeutil import format_iso

MODELS = (  # (configured, returned, endpoint, endpoint_type)
    ("gpt-5-nano", "gpt-5-nano-2025-08-07", "chat", "llm/v1/chat"),
    ("gpt-4o", "gpt-4o-2024-08-06", "chat-large", "llm/v1/chat"),
    ("gpt-4.1-mini", "gpt-4.1-mini-2025-04-14", "chat", "llm/v1/chat"),
    ("o4-mini", "o4-mini-2025-04-16", "reasoning", "llm/v1/chat"),
    ("text-embedding-3-small", "text-embedding-3-small", "embeddings", "llm/v1/embeddings"),
)
CLIENTS = ("team-a", "team-b", None)
CONTAINERS = ("3f2a9c1b2d4e", "9b1c0d2e3f4a")
SAMPLE_SECONDS = 0.01
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
    reasoning = completion // 2 if configured in {"o4-mini", "gpt-5-nano"} else 0
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


def generated_ledger(log: Path) -> Path:
    """The log's lines as a ledger directory: a file per UTC day and container."""
    directory = log.with_name(log.stem + "-ledger")
    if directory.exists():
        return directory
    partial = directory.with_name(directory.name + ".partial")
    partial.mkdir()
    handles: dict[str, IO[bytes]] = {}
    with log.open("rb") as lines:
        for index, line in enumerate(lines):
            day = line[line.index(b'"ts":"') + 6 :][:10].decode()
            name = file_name(day, "gw-host-1", CONTAINERS[index % len(CONTAINERS)])
            if name not in handles:
                handles[name] = (partial / name).open("wb")
            handles[name].write(line)
    for handle in handles.values():
        handle.close()
    partial.replace(directory)
    return directory


def _tree_rss(process: psutil.Process) -> int:
    total = 0
    for member in (process, *process.children(recursive=True)):
        with contextlib.suppress(psutil.Error):  # ended between the listing and the reading
            total += member.memory_info().rss
    return total


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure_peak(argv: list[str]) -> tuple[float, float, float, str]:
    """Wall seconds, CPU seconds (all processes, so a busy machine shows in wall but less in
    CPU), peak RSS of the process tree in MB and stdout of one command."""
    output = OUT_DIR / "bench-analyze.out"
    peak = 0
    cpu_before = _children_cpu()
    started = time.perf_counter()
    with output.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE)  # noqa: S603
        watched = psutil.Process(process.pid)
        while process.poll() is None:
            with contextlib.suppress(psutil.Error):
                peak = max(peak, _tree_rss(watched))
            time.sleep(SAMPLE_SECONDS)
        stderr = process.stderr.read() if process.stderr else b""
    elapsed = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {stderr.decode()[-500:]}")
    return elapsed, _children_cpu() - cpu_before, peak / 1e6, output.read_text()


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
    ledger = generated_ledger(log)
    size_mb = log.stat().st_size / 1e6
    analyze = str(Path(sys.executable).parent / "analyze-costs")
    rows = []
    for what, argv in (
        ("one file", ["--log-file", str(log)]),
        (f"ledger directory, {len(list(ledger.iterdir()))} day files", ["--ledger", str(ledger)]),
    ):
        seconds, cpu, peak_mb, output = measure_peak([analyze, *argv, "--json"])
        rows.append(
            [
                f"analyze-costs, {what} (exact decimals; by model, endpoint, client, day)",
                f"{seconds:.2f}",
                f"{cpu:.2f}",
                f"{peak_mb:.0f}",
                f"${json.loads(output)['totals']['cost_usd']:,.6f}",
            ]
        )
    if shutil.which("jq"):
        jq = ["jq", "-n", "--argjson", "p", jq_prices(PriceTable.load()), JQ_PROGRAM, str(log)]
        jq_seconds, jq_cpu, jq_peak_mb, jq_output = measure_peak(jq)
        rows.append(
            [
                "jq one-liner (float sum of the total only)",
                f"{jq_seconds:.2f}",
                f"{jq_cpu:.2f}",
                f"{jq_peak_mb:.0f}",
                f"${float(jq_output):,.6f}",
            ]
        )
    else:
        rows.append(["jq one-liner", "jq not installed", "-", "-", "-"])
    print_table(
        f"Cost analysis of {args.lines:,} usage-log lines ({size_mb:,.0f} MB)",
        ["tool", "seconds", "CPU seconds", "peak RSS (MB)", "total cost"],
        rows,
        args.markdown,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
