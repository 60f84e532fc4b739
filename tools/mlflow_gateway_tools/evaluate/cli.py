"""`evaluate-gateway`: send real requests through the gateway and measure them."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from mlflow_gateway_tools import __version__
from mlflow_gateway_tools.cli_support import (
    ArgumentParser,
    CommandError,
    check_writable,
    exit_status,
    run_command,
    stderr_console,
    stdout_console,
    write_file_atomically,
)
from mlflow_gateway_tools.evaluate.cases import (
    KINDS,
    Case,
    CaseFileError,
    builtin_cases,
    endpoint_name_problem,
    load_cases,
)
from mlflow_gateway_tools.evaluate.health import check_health, list_endpoints
from mlflow_gateway_tools.evaluate.loop import LOOP_BATCH, Stopper, run_batches, stopping_on_signals
from mlflow_gateway_tools.evaluate.progress import ProgressFile, terminal_progress
from mlflow_gateway_tools.evaluate.report import print_summary, summarize_run
from mlflow_gateway_tools.evaluate.runner import (
    ROUTES,
    STREAM_MODES,
    PlannedRequest,
    RequestRecord,
    RunSettings,
    schedule,
)
from mlflow_gateway_tools.pricing import PriceTable, PricingError
from mlflow_gateway_tools.timeutil import utc_now_iso

PROG = "evaluate-gateway"
DEFAULT_URL = "http://localhost:5000"
DEFAULT_OUTPUT = Path("gateway_results.json")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog=PROG,
        description="Evaluate an MLflow AI Gateway: health check, then real requests with "
        "latency, time to first token, errors, tokens and cost; writes a results file that "
        "analyze-costs reads.",
    )
    parser.add_argument(
        "--url",
        default=os.environ.get("GATEWAY_URL", DEFAULT_URL),
        help=f"gateway base URL (env GATEWAY_URL, default {DEFAULT_URL})",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("GATEWAY_TOKEN"),
        help="client token sent as Authorization: Bearer (env GATEWAY_TOKEN)",
    )
    parser.add_argument(
        "--test-file",
        type=Path,
        metavar="FILE",
        help="JSON or YAML list of cases instead of the built-in ones",
    )
    parser.add_argument(
        "--cases", metavar="NAMES", help="comma-separated case names to run (default: all)"
    )
    parser.add_argument(
        "--route",
        choices=ROUTES,
        default="gateway",
        help="URL style: /gateway/<ep>/invocations (default), /endpoints/..., "
        "or OpenAI-style /v1/... with model=<ep>",
    )
    parser.add_argument(
        "--chat-endpoint",
        default="chat",
        metavar="NAME",
        help="endpoint for built-in chat cases (default chat)",
    )
    parser.add_argument("--completions-endpoint", default="completions", metavar="NAME")
    parser.add_argument("--embeddings-endpoint", default="embeddings", metavar="NAME")
    how_many = parser.add_argument_group(
        "how many requests, or for how long (default: --repeat 1)",
        "Pick one of --requests, --repeat, --duration, --until-stopped. --duration, "
        "--until-stopped and a lone --stop-file keep sending until stopped: a "
        "first Ctrl-C or SIGTERM then ends the run normally (requests in flight finish, the "
        "results are written, the exit code is as usual); a second Ctrl-C aborts.",
    )
    amount = how_many.add_mutually_exclusive_group()
    amount.add_argument(
        "--requests",
        type=int,
        metavar="N",
        help="send N requests in total, cycling through the cases",
    )
    amount.add_argument(
        "--repeat", type=int, metavar="N", help="send every case N times (default 1)"
    )
    amount.add_argument(
        "--duration",
        type=float,
        metavar="SECONDS",
        help="send requests back to back (or at --rate), cycling through the cases, for SECONDS",
    )
    amount.add_argument(
        "--until-stopped",
        action="store_true",
        help="send requests back to back (or at --rate) until Ctrl-C, SIGTERM or --stop-file",
    )
    how_many.add_argument(
        "--stop-file",
        type=Path,
        metavar="PATH",
        help="stop sending once PATH exists (checked before every request); alone it means "
        "--until-stopped. PATH must not exist at the start",
    )
    parser.add_argument(
        "--progress",
        type=Path,
        metavar="PATH",
        help='rewrite PATH about once a second with {"requests": N, "failed": M, "seconds": '
        'S, "finished": false} (never half-written), so a script can wait for traffic',
    )
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    parser.add_argument(
        "--rate",
        type=float,
        metavar="PER_SECOND",
        help="with --duration, --until-stopped or --stop-file: send about PER_SECOND requests "
        "a second on average instead of back to back (steady traffic through an operation, "
        "leaving the host's CPU to the operation)",
    )
    parser.add_argument(
        "--stream",
        nargs="?",
        choices=STREAM_MODES,
        const="all",
        default="off",
        help="stream the chat cases and measure time to first token: every one (a bare "
        "--stream), or every other pass through the cases (alternate: plain and streamed "
        "requests mixed)",
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, metavar="SECONDS", help="per-request timeout"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        metavar="FILE",
        help=f"results JSON with per-request records (default {DEFAULT_OUTPUT})",
    )
    parser.add_argument(
        "--max-error-rate",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="exit 1 when the failed fraction is above this (default 0)",
    )
    parser.add_argument(
        "--pricing",
        type=Path,
        metavar="FILE",
        help="YAML prices that win over genai-prices' (see templates/pricing.example.yaml)",
    )
    return parser


def _check_url(url: str) -> str:
    """The base URL without a trailing slash; refused unless requests can be sent to it."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError as error:
        raise CommandError(f"--url {url!r} is not a URL ({error}); e.g. {DEFAULT_URL}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CommandError(
            f"--url {url!r} must start with http:// or https:// and name a host; e.g. {DEFAULT_URL}"
        )
    if parts.query or parts.fragment or any(char.isspace() for char in url):
        raise CommandError(
            f"--url {url!r} must be a base URL without spaces, ?query or #fragment; "
            f"e.g. {DEFAULT_URL}"
        )
    return url.rstrip("/")


def _check_token(token: str | None) -> None:
    """An HTTP header carries only printable ASCII; the token itself is never echoed."""
    for position, char in enumerate(token or ""):
        if not char.isascii() or not char.isprintable() or char.isspace():
            raise CommandError(
                f"--token (GATEWAY_TOKEN) has {char!r} at position {position}, which an "
                "Authorization header cannot carry; copy the token again without spaces, "
                "line breaks or non-ASCII characters"
            )


def _positive(seconds: float) -> bool:
    return math.isfinite(seconds) and seconds > 0


def _check_numbers(args: argparse.Namespace) -> None:
    for option, count in (
        ("--concurrency", args.concurrency),
        ("--repeat", args.repeat),
        ("--requests", args.requests),
    ):
        if count is not None and count < 1:
            raise CommandError(f"{option} {count} must be at least 1")
    # NaN passes a `<= 0` test and infinity never ends: a --duration of either sends forever.
    if args.duration is not None and not _positive(args.duration):
        raise CommandError(
            f"--duration {args.duration:g} must be more than 0 seconds (a finite number); "
            "use --until-stopped to run until stopped"
        )
    if args.rate is not None:
        if not _positive(args.rate):
            raise CommandError(
                f"--rate {args.rate:g} must be more than 0 requests a second (a finite number)"
            )
        if not _open_ended(args):
            raise CommandError(
                f"--rate {args.rate:g} paces an open-ended run: add --duration, --until-stopped "
                "or --stop-file, or drop --rate"
            )
    if not _positive(args.timeout):
        raise CommandError(
            f"--timeout {args.timeout:g} must be more than 0 seconds (a finite number)"
        )
    if not 0 <= args.max_error_rate <= 1:
        raise CommandError(
            f"--max-error-rate {args.max_error_rate:g} is a fraction from 0 to 1 (0.05 = 5%)"
        )


def _check_endpoint_options(args: argparse.Namespace) -> None:
    for kind in KINDS:
        option = f"--{kind}-endpoint"
        if (problem := endpoint_name_problem(getattr(args, f"{kind}_endpoint"))) is not None:
            raise CommandError(f"{option} {problem}")


def _check_stop_file(stop_file: Path | None) -> None:
    if stop_file is None:
        return
    if stop_file.exists():
        raise CommandError(
            f"--stop-file {stop_file} exists already, so no request would be sent; remove it first"
        )
    if not stop_file.parent.is_dir():
        raise CommandError(
            f"--stop-file {stop_file}: there is no directory {stop_file.parent}, "
            "so the file could never appear; create it or choose another path"
        )


def _check_distinct_paths(args: argparse.Namespace) -> None:
    """Each file option names its own file: results written over the test file destroy it,
    and a --stop-file that is the --progress file stops the run before its first request."""
    named = [
        (option, path.resolve())
        for option, path in (
            ("--output", args.output),
            ("--progress", args.progress),
            ("--stop-file", args.stop_file),
            ("--test-file", args.test_file),
            ("--pricing", args.pricing),
        )
        if path is not None
    ]
    for position, (option, path) in enumerate(named):
        for other_option, other_path in named[position + 1 :]:
            if path == other_path:
                raise CommandError(
                    f"{option} and {other_option} both name {path}; give each its own file"
                )


def _validate(args: argparse.Namespace) -> None:
    """Every check that needs no network, so a bad input costs no request."""
    args.url = _check_url(args.url)
    _check_token(args.token)
    _check_numbers(args)
    _check_endpoint_options(args)
    _check_stop_file(args.stop_file)
    _check_distinct_paths(args)


def _select_cases(args: argparse.Namespace) -> tuple[list[Case], bool]:
    """The cases to run and whether they are the built-in ones."""
    endpoints = {
        "chat": args.chat_endpoint,
        "completions": args.completions_endpoint,
        "embeddings": args.embeddings_endpoint,
    }
    try:
        cases = (
            load_cases(args.test_file, endpoints) if args.test_file else builtin_cases(endpoints)
        )
    except CaseFileError as error:
        raise CommandError(str(error)) from None
    if args.cases is not None:
        wanted = [name.strip() for name in args.cases.split(",") if name.strip()]
        if not wanted:
            raise CommandError(
                f"--cases {args.cases!r} names no case; give names separated by commas "
                f"(available: {', '.join(sorted(case.name for case in cases))})"
            )
        known = {case.name for case in cases}
        if unknown := [name for name in wanted if name not in known]:
            raise CommandError(
                f"--cases {', '.join(unknown)} not found; available: {', '.join(sorted(known))}"
            )
        cases = [case for case in cases if case.name in wanted]
    return cases, args.test_file is None


def _drop_unserved(cases: list[Case], served: set[str] | None, builtin: bool) -> list[Case]:
    """Skip built-in cases whose endpoint the gateway lacks; warn about user cases."""
    if served is None:
        return cases
    errors = stderr_console()
    kept = []
    for case in cases:
        if case.endpoint in served:
            kept.append(case)
        elif builtin:
            errors.print(
                f"Skipping built-in case {case.name!r}: the gateway has no endpoint "
                f"{case.endpoint!r} (it has: {', '.join(sorted(served)) or 'none'}); "
                f"map it with --{case.kind}-endpoint NAME."
            )
        else:
            errors.print(
                f"Warning: case {case.name!r} uses endpoint {case.endpoint!r}, "
                "which the gateway does not list; it will fail."
            )
            kept.append(case)
    if not kept:
        raise CommandError(
            f"none of the cases' endpoints exist on the gateway (it has: "
            f"{', '.join(sorted(served)) or 'none'}); use --chat-endpoint etc. or --test-file"
        )
    return kept


def _open_ended(args: argparse.Namespace) -> bool:
    """Whether the run goes on until a stop condition rather than for a count."""
    lone_stop_file = args.stop_file is not None and args.requests is None and args.repeat is None
    return args.duration is not None or args.until_stopped or lone_stop_file


def _planned(
    cases: list[Case], args: argparse.Namespace
) -> tuple[Iterator[PlannedRequest], int | None]:
    """The requests to send, and how many when that is known in advance."""
    endless = schedule(cases, args.stream)
    if _open_ended(args):
        return endless, None
    total = args.requests if args.requests is not None else (args.repeat or 1) * len(cases)
    return itertools.islice(endless, total), total


def _execute(
    cases: list[Case], settings: RunSettings, args: argparse.Namespace
) -> tuple[list[RequestRecord], float, Stopper]:
    requests, total = _planned(cases, args)
    stopped = Stopper(args.duration, args.stop_file)
    progress_file = ProgressFile(args.progress) if args.progress else None
    batch = LOOP_BATCH if total is None else None
    on_signal = stopping_on_signals(stopped) if total is None else contextlib.nullcontext()
    started = time.perf_counter()
    with on_signal, terminal_progress(total) as show:
        if progress_file:
            progress_file.write()

        def on_done(record: RequestRecord) -> None:
            show(record)
            if progress_file:
                progress_file.add(record)

        records = asyncio.run(
            run_batches(requests, settings, stopped, batch, on_done, rate=args.rate)
        )
    if progress_file:
        progress_file.write(finished=True)
    return records, time.perf_counter() - started, stopped


def _one_line(message: str) -> str:
    """A multi-line message (PyYAML's quotes the bad line and points a caret) as one line."""
    return "; ".join(line.strip() for line in message.splitlines() if line.strip(" ^"))


def _load_prices(path: Path | None) -> PriceTable:
    try:
        return PriceTable.load(path)
    except PricingError as error:
        raise CommandError(_one_line(str(error))) from None


def _run(args: argparse.Namespace) -> int:
    _validate(args)
    prices = _load_prices(args.pricing)
    cases, builtin = _select_cases(args)
    for option, path in (("--output", args.output), ("--progress", args.progress)):
        if path is not None:
            check_writable(path, option)  # before the load, not after it
    check_health(args.url, args.token)
    cases = _drop_unserved(cases, list_endpoints(args.url, args.token), builtin)
    settings = RunSettings(
        base_url=args.url,
        route=args.route,
        concurrency=args.concurrency,
        timeout_s=args.timeout,
        token=args.token,
    )
    started_at = utc_now_iso()
    records, wall_seconds, stopped = _execute(cases, settings, args)
    summary = summarize_run(records, wall_seconds, prices)
    document = {
        "tool": PROG,
        "version": __version__,
        "gateway_url": args.url,
        "started_at": started_at,
        "finished_at": utc_now_iso(),
        "settings": {
            "route": args.route,
            "stream": args.stream,
            "concurrency": args.concurrency,
            "rate_per_s": args.rate,
            "requests": len(records),
            "duration_s": args.duration,
            "stop_file": str(args.stop_file) if args.stop_file else None,
            "stopped_by": stopped.reason,
            "timeout_s": args.timeout,
            "cases": [case.name for case in cases],
        },
        "summary": summary,
        "requests": [record.as_dict() for record in records],
    }
    print_summary(stdout_console(), summary, args.url)  # shown even when the file cannot be written
    write_file_atomically(args.output, json.dumps(document, indent=2) + "\n", "--output")
    errors = stderr_console()
    if stopped.reason:
        errors.print(f"Stopped after {len(records):,} requests: {stopped.reason}", markup=False)
    errors.print(f"Results written to {args.output}")
    return exit_status(
        summary["error_rate"] > args.max_error_rate,
        lambda: (
            f"Error rate {summary['error_rate']:.1%} exceeds --max-error-rate "
            f"{args.max_error_rate:.1%}"
        ),
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(PROG, lambda: _run(args))
