"""`analyze-costs`: exact costs from the gateway usage log, Docker logs or evaluation results."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from mlflow_gateway_tools.cli_support import (
    EXIT_OK,
    CommandError,
    check_writable,
    exit_status,
    run_command,
    stderr_console,
    stdout_console,
    write_file_atomically,
)
from mlflow_gateway_tools.costs import ledger, merge, parallel, sources
from mlflow_gateway_tools.costs.aggregate import Aggregator, CostReport, TimeWindow
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
    fold: Callable[[sources.ParseIssues, Aggregator], None]  # read it into the aggregator
    log_path: Path | None = None  # a usage-log file: may be folded in a worker process


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
    source.add_argument(
        "--ledger",
        action="append",
        type=Path,
        default=[],
        metavar="DIR",
        help="usage ledger directory (per-container, per-day .jsonl/.jsonl.gz files); "
        "with --since/--until only the files of those days are read",
    )
    source.add_argument(
        "--costs-json",
        action="append",
        default=[],
        metavar="[LABEL=]FILE",
        help="merge analyze-costs --json reports (one per host; LABEL defaults to the file "
        "name without .json) into one report with a table by host; not combinable with the "
        "other inputs, --model, --pricing, --since or --until",
    )
    parser.add_argument("--model", help="price every request as this model (what-if)")
    parser.add_argument("--since", help="ISO date/time or age (30m, 24h, 7d); inclusive")
    parser.add_argument("--until", help="ISO date/time or age; exclusive")
    parser.add_argument(
        "--pricing",
        type=Path,
        metavar="FILE",
        help="YAML prices that win over genai-prices' (fine-tunes, deployment names, "
        "negotiated prices; see templates/pricing.example.yaml)",
    )
    parser.add_argument(
        "--allow-empty",
        action="store_true",
        help="an input with no usage record in the period is a $0 report, not an error "
        "(playbooks/costs.yml: a host that served nothing in the period)",
    )
    parser.add_argument(
        "--details",
        action="store_true",
        help="list every request (default: only when there are at most 20)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--csv",
        nargs="?",
        const="-",
        metavar="FILE",
        help="the total and one row per model, endpoint, client and day (and host) as CSV: "
        "written to FILE, or printed instead of the tables when no FILE is given",
    )
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


def _time_bound(option: str, text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_time_bound(text)
    except ValueError as error:
        raise CommandError(f"{option}: {error}") from None


def _time_window(args: argparse.Namespace) -> TimeWindow:
    since, until = _time_bound("--since", args.since), _time_bound("--until", args.until)
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
    def fold(issues: sources.ParseIssues, aggregator: Aggregator) -> None:
        sources.fold_docker_logs(name, issues, model, window, aggregator)

    return Source(f"docker:{name}", True, fold)


def _file_source(kind: str, path: Path, model: str | None) -> Source:
    def fold(issues: sources.ParseIssues, aggregator: Aggregator) -> None:
        if kind == "results":
            aggregator.add_all(sources.iter_results_file(path, issues, model))
        else:
            sources.fold_log_file(path, issues, model, aggregator)

    return Source(f"{kind}:{path}", False, fold, path if kind != "results" else None)


@dataclass
class Plan:
    sources: list[Source]
    read: list[str]  # what was read, for the message that found no usage


def _plan(args: argparse.Namespace, window: TimeWindow) -> Plan:
    plan = [_file_source("results", path, args.model) for path in args.response_file]
    plan += [_file_source("log", path, args.model) for path in args.log_file]
    read = [source.label for source in plan]
    for directory in args.ledger:
        files = ledger.day_files(directory, window)
        plan += [_file_source("ledger", path, args.model) for path in files]
        read.append(ledger.describe(directory, files, window))
    containers = [_docker_source(name, args.model, window) for name in args.container]
    for service in args.service:
        replicas = sources.containers_of_service(service, args.project)
        if not replicas:
            raise CommandError(
                f"no containers for compose service {service!r}"
                + (f" in project {args.project!r}" if args.project else "")
                + "; check the name with `docker compose ps`"
            )
        containers += [_docker_source(name, args.model, window) for name in replicas]
    plan += containers
    read += [source.label for source in containers]
    if read:
        return Plan(plan, read)
    # Auto-detection, as the seed did: the gateway container's logs, else the results file.
    if shutil.which("docker") and sources.container_exists(DEFAULT_CONTAINER):
        source = _docker_source(DEFAULT_CONTAINER, args.model, window)
        return Plan([source], [source.label])
    if DEFAULT_RESULTS_FILE.is_file():
        source = _file_source("results", DEFAULT_RESULTS_FILE, args.model)
        return Plan([source], [source.label])
    raise CommandError(
        f"no input: no container {DEFAULT_CONTAINER!r} and no ./{DEFAULT_RESULTS_FILE}; "
        "pass --ledger, --log-file, --container, --service or --response-file "
        "(or run evaluate-gateway first)"
    )


def _aggregate(
    plan: list[Source], model: str | None, aggregator: Aggregator, issues: sources.ParseIssues
) -> None:
    """Log files (the bulk of a ledger) on every core, then the streams in turn."""
    files = [source.log_path for source in plan if source.log_path is not None]
    parallel.fold_files(files, model, aggregator, issues)
    for source in plan:
        if source.log_path is None:
            source.fold(issues, aggregator)


def _check_options(args: argparse.Namespace) -> None:
    """Combinations that cannot work, refused before anything is read."""
    if args.project and not args.service:
        raise CommandError("--project limits --service; add --service NAME or drop --project")
    if args.json and args.csv == "-":
        raise CommandError("--json and --csv without FILE both print to stdout; give --csv a FILE")
    if args.costs_json:
        others = [
            option
            for option, given in (
                ("--log-file", args.log_file),
                ("--ledger", args.ledger),
                ("--response-file", args.response_file),
                ("--container", args.container),
                ("--service", args.service),
                ("--model", args.model),
                ("--pricing", args.pricing),
                ("--since", args.since),
                ("--until", args.until),
                ("--details", args.details),
            )
            if given
        ]
        if others:
            raise CommandError(
                f"--costs-json merges finished reports and cannot take {', '.join(others)}; "
                "give those to analyze-costs on each host and merge its --json output"
            )


def _output_paths(args: argparse.Namespace) -> list[tuple[Path, str]]:
    paths = [(Path(args.csv), "--csv")] if args.csv not in (None, "-") else []
    return paths + ([(args.html, "--html")] if args.html else [])


def _analyze(args: argparse.Namespace, issues: sources.ParseIssues) -> tuple[CostReport, list[str]]:
    window = _time_window(args)
    try:
        prices = PriceTable.load(args.pricing)
    except PricingError as error:
        raise CommandError(str(error)) from None
    plan = _plan(args, window)
    aggregator = Aggregator(window, keep_all_requests=args.details)
    _aggregate(plan.sources, args.model, aggregator, issues)
    sources_read = plan.sources
    if (
        aggregator.seen == 0
        and sources_read
        and all(s.from_docker for s in sources_read)
        and DEFAULT_RESULTS_FILE.is_file()
    ):
        stderr_console().print(
            f"No usage lines in {', '.join(s.label for s in sources_read)}; "
            f"falling back to ./{DEFAULT_RESULTS_FILE}.",
            markup=False,
        )
        sources_read = [_file_source("results", DEFAULT_RESULTS_FILE, args.model)]
        plan.read = [sources_read[0].label]
        _aggregate(sources_read, args.model, aggregator, issues)
    if aggregator.seen == 0:
        outside = (
            f" ({aggregator.skipped_by_time:,} outside --since/--until)"
            if aggregator.skipped_by_time
            else ""
        )
        empty = f"no usage records in {', '.join(plan.read)}{outside}"
        if not args.allow_empty:
            print_issues(stderr_console(), issues)
            raise CommandError(
                f"{empty}; send some requests through the gateway (evaluate-gateway) or "
                "check the input"
            )
        stderr_console().print(f"{empty}: the period cost $0 here.", markup=False, soft_wrap=True)
    return aggregator.report(prices), [source.label for source in sources_read]


def _run(args: argparse.Namespace) -> int:
    _check_options(args)
    budget = _budget(args.budget)
    for path, option in _output_paths(args):
        check_writable(path, option)  # before reading what may be a long log
    issues = sources.ParseIssues()
    if args.costs_json:
        merged = merge.merge_reports(args.costs_json)
        report, labels, issues = merged.report, merged.sources, merged.issues
    else:
        report, labels = _analyze(args, issues)
    errors = stderr_console()
    print_issues(errors, issues)
    if args.json:
        print(json.dumps(as_json(report, labels, issues, budget), indent=2))
    elif args.csv == "-":
        sys.stdout.write(as_csv(report))
    else:
        print_report(stdout_console(), report)
    if args.csv not in (None, "-"):
        write_file_atomically(Path(args.csv), as_csv(report), "--csv")
        errors.print(f"Wrote {args.csv}", markup=False)
    if args.html:
        write_file_atomically(args.html, render_html(report, labels), "--html")
        errors.print(f"Wrote {args.html}", markup=False)
    if budget is None:
        return EXIT_OK
    return exit_status(
        report.cost > budget,
        lambda: (
            f"Budget exceeded: total cost ${usd(report.cost):,.6f} > --budget ${usd(budget):,.2f}"
        ),
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(PROG, lambda: _run(args))
