"""`analyze-costs`: exact costs from the gateway usage log, Docker logs or evaluation results."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from mlflow_gateway_tools.cli_support import (
    CommandError,
    check_writable,
    exit_status,
    run_command,
    stderr_console,
    stdout_console,
    write_file_atomically,
)
from mlflow_gateway_tools.costs import sources
from mlflow_gateway_tools.costs.aggregate import Aggregator, TimeWindow, UsageRecord
from mlflow_gateway_tools.costs.html import render_html
from mlflow_gateway_tools.costs.report import as_csv, as_json, print_issues, print_report, usd
from mlflow_gateway_tools.pricing import PriceTable, PricingError
from mlflow_gateway_tools.timeutil import parse_time_bound

PROG = "analyze-costs"
DEFAULT_CONTAINER = "mlflow-gateway"
DEFAULT_RESULTS_FILE = Path("gateway_results.json")


@dataclass
class Source:
    label: str
    from_docker: bool
    records: Callable[[sources.ParseIssues], Iterator[UsageRecord]]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Exact OpenAI costs per model, endpoint, client and day from the gateway "
        "usage log (files or Docker logs) or from evaluate-gateway results. With no input "
        f"option: the logs of container {DEFAULT_CONTAINER!r}, else ./{DEFAULT_RESULTS_FILE}.",
    )
    source = parser.add_argument_group("inputs (repeatable, combinable)")
    source.add_argument(
        "--response-file",
        action="append",
        type=Path,
        default=[],
        metavar="FILE",
        help="evaluate-gateway results JSON",
    )
    source.add_argument(
        "--log-file",
        action="append",
        type=Path,
        default=[],
        metavar="FILE",
        help="usage log, one JSON line per request (.gz ok, - for stdin)",
    )
    source.add_argument(
        "--container",
        action="append",
        default=[],
        metavar="NAME",
        help="read the usage log from this container's stdout",
    )
    source.add_argument(
        "--service",
        action="append",
        default=[],
        metavar="NAME",
        help="read every replica of this compose service",
    )
    source.add_argument("--project", metavar="NAME", help="limit --service to this compose project")
    parser.add_argument("--model", help="price every request as this model (what-if)")
    parser.add_argument("--since", help="ISO date/time or age (30m, 24h, 7d); inclusive")
    parser.add_argument("--until", help="ISO date/time or age; exclusive")
    parser.add_argument(
        "--pricing",
        type=Path,
        metavar="FILE",
        help="YAML prices that override or extend the packaged table",
    )
    parser.add_argument(
        "--details",
        action="store_true",
        help="list every request (default: only when there are at most 20)",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the report as JSON")
    output.add_argument("--csv", action="store_true", help="print the groupings as CSV")
    parser.add_argument(
        "--html",
        type=Path,
        metavar="FILE",
        help="also write a self-contained HTML report with charts",
    )
    parser.add_argument(
        "--budget", metavar="USD", help="exit with code 1 when the total cost exceeds this"
    )
    return parser


def _time_window(args: argparse.Namespace) -> TimeWindow:
    try:
        since = parse_time_bound(args.since) if args.since else None
        until = parse_time_bound(args.until) if args.until else None
    except ValueError as error:
        raise CommandError(f"--since/--until: {error}") from None
    if since and until and since >= until:
        raise CommandError(f"--since {args.since} is not before --until {args.until}; swap them")
    return TimeWindow.of(since, until)


def _budget(text: str | None) -> Decimal | None:
    if text is None:
        return None
    try:
        budget = Decimal(text.lstrip("$"))
    except InvalidOperation:
        raise CommandError(
            f"--budget {text!r} is not an amount; use USD like 25 or 12.50"
        ) from None
    if not budget.is_finite() or budget < 0:
        raise CommandError(f"--budget {text!r} must be a positive amount of USD")
    return budget


def _docker_source(name: str, model: str | None, window: TimeWindow) -> Source:
    def records(issues: sources.ParseIssues) -> Iterator[UsageRecord]:
        return sources.iter_docker_logs(name, issues, model, window.since, window.until)

    return Source(f"docker:{name}", True, records)


def _file_source(kind: str, path: Path, model: str | None) -> Source:
    reader = sources.iter_results_file if kind == "results" else sources.iter_log_file

    def records(issues: sources.ParseIssues) -> Iterator[UsageRecord]:
        return reader(path, issues, model)

    return Source(f"{kind}:{path}", False, records)


def _plan(args: argparse.Namespace, window: TimeWindow) -> list[Source]:
    plan = [_file_source("results", path, args.model) for path in args.response_file]
    plan += [_file_source("log", path, args.model) for path in args.log_file]
    plan += [_docker_source(name, args.model, window) for name in args.container]
    for service in args.service:
        replicas = sources.containers_of_service(service, args.project)
        if not replicas:
            raise CommandError(
                f"no containers for compose service {service!r}"
                + (f" in project {args.project!r}" if args.project else "")
                + "; check the name with `docker compose ps`"
            )
        plan += [_docker_source(name, args.model, window) for name in replicas]
    if plan:
        return plan
    # Auto-detection, as the seed did: the gateway container's logs, else the results file.
    if shutil.which("docker") and sources.container_exists(DEFAULT_CONTAINER):
        return [_docker_source(DEFAULT_CONTAINER, args.model, window)]
    if DEFAULT_RESULTS_FILE.is_file():
        return [_file_source("results", DEFAULT_RESULTS_FILE, args.model)]
    raise CommandError(
        f"no input: no container {DEFAULT_CONTAINER!r} and no ./{DEFAULT_RESULTS_FILE}; "
        "pass --log-file, --container, --service or --response-file "
        "(or run evaluate-gateway first)"
    )


def _aggregate(plan: list[Source], aggregator: Aggregator, issues: sources.ParseIssues) -> None:
    for source in plan:
        aggregator.add_all(source.records(issues))


def _run(args: argparse.Namespace) -> int:
    window = _time_window(args)
    budget = _budget(args.budget)
    try:
        prices = PriceTable.load(args.pricing)
    except PricingError as error:
        raise CommandError(str(error)) from None
    if args.html:
        check_writable(args.html, "--html")  # before reading what may be a long log
    plan = _plan(args, window)
    issues = sources.ParseIssues()
    aggregator = Aggregator(window, keep_all_requests=args.details)
    _aggregate(plan, aggregator, issues)
    errors = stderr_console()
    if aggregator.seen == 0 and all(s.from_docker for s in plan) and DEFAULT_RESULTS_FILE.is_file():
        errors.print(
            f"No usage lines in {', '.join(s.label for s in plan)}; "
            f"falling back to ./{DEFAULT_RESULTS_FILE}."
        )
        plan = [_file_source("results", DEFAULT_RESULTS_FILE, args.model)]
        _aggregate(plan, aggregator, issues)
    labels = [source.label for source in plan]
    print_issues(errors, issues)
    if aggregator.seen == 0:
        outside = (
            f" ({aggregator.skipped_by_time:,} outside --since/--until)"
            if aggregator.skipped_by_time
            else ""
        )
        raise CommandError(
            f"no usage records in {', '.join(labels)}{outside}; send some requests through "
            "the gateway (evaluate-gateway) or check the input"
        )
    report = aggregator.report(prices)
    if args.json:
        print(json.dumps(as_json(report, labels, issues, budget), indent=2))
    elif args.csv:
        sys.stdout.write(as_csv(report))
    else:
        print_report(stdout_console(), report)
    if args.html:
        write_file_atomically(args.html, render_html(report, labels), "--html")
        errors.print(f"Wrote {args.html}")
    return exit_status(
        budget is not None and report.cost > budget,
        lambda: (
            f"Budget exceeded: total cost ${usd(report.cost):,.6f} > --budget ${usd(budget):,.2f}"
        ),
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(PROG, lambda: _run(args))
