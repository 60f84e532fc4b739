"""Keep sending requests to a gateway until told to stop; report every failure.

evaluate-gateway sends a fixed number of requests, but the zero-failure proofs (rolling
restart, key rotation, scaling) need traffic for exactly as long as the operation runs. This
wraps the package's own runner (the same requests and the same error accounting as
evaluate-gateway) in short batches, alternating plain and streamed chats with the other
built-in cases, until --stop-file appears or --max-seconds pass.

    python tests/deploy/request_loop.py --url http://HOST:5000 --token T \
        --stop-file /tmp/stop --progress /tmp/progress.json --output /tmp/loop.json

--progress is rewritten after every batch ({"requests": N, "failed": M}), so a caller can
wait for traffic to flow before it starts the operation. The summary (--output and stdout)
lists the status counts and the first failures; exit code 0 means zero failed requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path

from mlflow_gateway_tools.evaluate.cases import builtin_cases
from mlflow_gateway_tools.evaluate.runner import RequestRecord, RunSettings, run_plan

ENDPOINTS = {"chat": "chat", "completions": "completions", "embeddings": "embeddings"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="gateway base URL, e.g. http://host:5000")
    parser.add_argument("--token", default=None, help="client token (Authorization: Bearer)")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    parser.add_argument("--batch", type=int, default=24, help="requests per batch")
    parser.add_argument("--timeout", type=float, default=60.0, help="per-request timeout")
    parser.add_argument("--stop-file", type=Path, required=True, help="stop once this exists")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="stop after this long")
    parser.add_argument("--progress", type=Path, default=None, help="running counts (JSON)")
    parser.add_argument("--output", type=Path, required=True, help="summary (JSON)")
    return parser


def summarize(records: list[RequestRecord], seconds: float) -> dict:
    failures = [record for record in records if not record.ok]
    return {
        "requests": len(records),
        "failed": len(failures),
        "seconds": round(seconds, 1),
        "by_status": dict(Counter(str(record.status) for record in records)),
        "streamed": sum(record.stream for record in records),
        "first_failures": [
            {"ts": r.ts, "case": r.case, "status": r.status, "error": r.error}
            for r in failures[:10]
        ],
    }


def run(args: argparse.Namespace) -> dict:
    cases = builtin_cases(ENDPOINTS)
    plan = [cases[index % len(cases)] for index in range(args.batch)]
    records: list[RequestRecord] = []
    started = time.monotonic()
    batch_number = 0
    while not args.stop_file.exists() and time.monotonic() - started < args.max_seconds:
        settings = RunSettings(
            base_url=args.url.rstrip("/"),
            route="gateway",
            stream=batch_number % 2 == 1,  # every other batch streams its chats (SSE)
            concurrency=args.concurrency,
            timeout_s=args.timeout,
            token=args.token,
        )
        records += asyncio.run(run_plan(plan, settings))
        batch_number += 1
        if args.progress:
            progress = {"requests": len(records), "failed": sum(not r.ok for r in records)}
            args.progress.write_text(json.dumps(progress))
    return summarize(records, time.monotonic() - started)


def main() -> int:
    args = build_parser().parse_args()
    summary = run(args)
    args.output.write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))
    return 0 if summary["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
