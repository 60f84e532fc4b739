"""Egress pooling on and off, on the lab deployment: how many TLS connections the upstream saw
per 1,000 requests, and what that did to throughput and latency.

MLflow's gateway opens a new upstream connection (a full TLS handshake) for every request; the
deployment's egress proxy keeps a verified, pooled connection set instead. For each setting the
lab is deployed with it (deploy.yml, gateway_egress_enabled), the fake upstream's counters are
reset, and the evaluate playbook sends the requests from gw-host-1 through its nginx (the
path a client takes), fanned out over every replica of both hosts. The upstream's own count
(/_fake/stats, read inside its container) is the figure; the lab is left with egress on.

    .venv/bin/python benchmarks/bench_egress.py [--requests 1000] [--concurrency 64] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from _commands import docker
from _common import print_table
from bench_deploy import deploy, lab_is_up, playbook

EVALUATED_HOST = "gw-host-1"
UPSTREAM_CONTAINER = "mgw-lab-upstream"
COLUMNS = (
    "egress pooling",
    "requests",
    "failed",
    "upstream TLS connections",
    "per 1,000 requests",
    "req/s",
    "p50 / p95 ms",
)
# Run inside the upstream container, with the check its healthcheck uses (the lab CA).
STATS_SCRIPT = """
import json, ssl, sys, urllib.request
context = ssl.create_default_context(cafile="/etc/fake-openai/tls/ca.crt")
method = "POST" if sys.argv[1] == "reset" else "GET"
path = "/_fake/stats/reset" if method == "POST" else "/_fake/stats"
request = urllib.request.Request("https://localhost:8443" + path, method=method)
print(urllib.request.urlopen(request, context=context, timeout=10).read().decode())
"""


def upstream_stats(action: str = "read") -> dict:
    output = docker("exec", UPSTREAM_CONTAINER, "python3", "-c", STATS_SCRIPT, action)
    return json.loads(output) if action == "read" else {}


def evaluate(requests: int, concurrency: int) -> dict:
    """The evaluate playbook from EVALUATED_HOST; its results.json summary."""
    with tempfile.TemporaryDirectory(prefix="mgw-bench-egress-") as results_dir:
        playbook(
            "playbooks/evaluate.yml",
            "--limit",
            EVALUATED_HOST,
            "-e",
            f"gateway_evaluate_requests={requests}",
            "-e",
            f"gateway_evaluate_concurrency={concurrency}",
            "-e",
            f"gateway_evaluate_results_dir={results_dir}",
            "-e",
            "gateway_evaluate_budget=0",
        )
        results = Path(results_dir) / EVALUATED_HOST / "latest" / "results.json"
        return json.loads(results.read_text())["summary"]


def measure_setting(enabled: bool, requests: int, concurrency: int) -> list[str]:
    setting = "true" if enabled else "false"
    deployed = deploy("-e", f"gateway_egress_enabled={setting}")
    if deployed.failed:
        return [f"{'on' if enabled else 'off'}: deploy failed", "-", "-", "-", "-", "-", "-"]
    upstream_stats("reset")
    summary = evaluate(requests, concurrency)
    connections = upstream_stats()["connections_opened"]
    latency = summary["latency_ms"] or {}
    return [
        "on" if enabled else "off",
        str(summary["requests"]),
        str(summary["failed"]),
        str(connections),
        f"{connections * 1000 / summary['requests']:.0f}",
        f"{summary['throughput_rps']:.0f}",
        f"{latency.get('p50', 0):.0f} / {latency.get('p95', 0):.0f}",
    ]


def measure(requests: int = 1000, concurrency: int = 64) -> list[list[str]]:
    if not lab_is_up():
        return [["skipped: the lab is not running (make lab-up)", *["-"] * 6]]
    # Off first, so that the lab ends as deployed by default (egress on).
    return [measure_setting(enabled, requests, concurrency) for enabled in (False, True)]


def title(requests: int = 1000, concurrency: int = 64) -> str:
    return (
        f"Egress pooling on the lab: {requests} requests at concurrency {concurrency} from "
        f"{EVALUATED_HOST} through nginx to the TLS upstream"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests per setting")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    parser.add_argument("--markdown", action="store_true", help="print markdown rows")
    args = parser.parse_args()
    rows = measure(args.requests, args.concurrency)
    print_table(title(args.requests, args.concurrency), COLUMNS, rows, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
