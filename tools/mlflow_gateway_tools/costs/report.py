"""Render a CostReport: rich tables for people, JSON and CSV for machines."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table

from mlflow_gateway_tools.costs.aggregate import CostReport, Counters, GroupRow, PricedRequest
from mlflow_gateway_tools.costs.sources import ParseIssues

GROUPINGS = ("model", "endpoint", "client", "day")
CSV_COLUMNS = (
    "group",
    "key",
    "requests",
    "failed",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cost_usd",
    "unpriced_requests",
)


def usd(amount: Decimal) -> float:
    """A JSON-friendly dollar amount; exact decimals are rounded only here, at the edge."""
    return float(amount.quantize(Decimal("1e-10")))


def money(amount: Decimal | None) -> str:
    return "unpriced" if amount is None else f"${amount:,.6f}"


def _counter_fields(counters: Counters) -> dict[str, int]:
    return {
        "requests": counters.requests,
        "failed": counters.failed,
        "prompt_tokens": counters.prompt_tokens,
        "cached_tokens": counters.cached_tokens,
        "completion_tokens": counters.completion_tokens,
        "reasoning_tokens": counters.reasoning_tokens,
        "total_tokens": counters.prompt_tokens + counters.completion_tokens,
    }


def _group_json(report: CostReport, grouping: str, row: GroupRow) -> dict[str, Any]:
    entry: dict[str, Any] = {grouping: row.key, **_counter_fields(row.counters)}
    if grouping == "model":
        price = report.price_rows.get(row.key)
        entry["priced_as"] = price.model if price else None
    entry["cost_usd"] = usd(row.cost)
    entry["unpriced_requests"] = row.unpriced_requests
    return entry


def _request_json(item: PricedRequest) -> dict[str, Any]:
    record = item.record
    return {
        "ts": record.ts,
        "source": record.origin,
        "endpoint": record.endpoint,
        "client": record.client,
        "model": record.model,
        "priced_as": item.price.model if item.price else None,
        "status": record.status,
        "failed": record.failed,
        "prompt_tokens": record.prompt_tokens,
        "cached_tokens": record.cached_tokens,
        "completion_tokens": record.completion_tokens,
        "reasoning_tokens": record.reasoning_tokens,
        "cost_usd": usd(item.cost) if item.cost is not None else None,
    }


def as_json(
    report: CostReport, sources: list[str], issues: ParseIssues, budget: Decimal | None
) -> dict[str, Any]:
    return {
        "sources": sources,
        "period": {"first": report.first_ts, "last": report.last_ts},
        "totals": {
            **_counter_fields(report.totals),
            "cost_usd": usd(report.cost),
            "average_cost_per_priced_request_usd": usd(report.average_cost),
        },
        **{
            f"by_{grouping}": [
                _group_json(report, grouping, row) for row in report.groups[grouping]
            ]
            for grouping in GROUPINGS
        },
        "unpriced": [
            {"model": row.key, **_counter_fields(row.counters)} for row in report.unpriced
        ],
        "requests": [_request_json(item) for item in report.requests],
        "malformed": {"count": issues.count, "examples": issues.examples},
        "budget": None
        if budget is None
        else {"usd": usd(budget), "exceeded": report.cost > budget},
    }


def as_csv(report: CostReport) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    total = GroupRow(
        "all", report.totals, report.cost, sum(r.counters.requests for r in report.unpriced)
    )
    for grouping, rows in (("total", [total]), *((g, report.groups[g]) for g in GROUPINGS)):
        for row in rows:
            counters = row.counters
            writer.writerow(
                (
                    grouping,
                    row.key,
                    counters.requests,
                    counters.failed,
                    counters.prompt_tokens,
                    counters.cached_tokens,
                    counters.completion_tokens,
                    counters.reasoning_tokens,
                    f"{row.cost:.10f}",
                    row.unpriced_requests,
                )
            )
    return buffer.getvalue()


def _group_table(report: CostReport, grouping: str) -> Table:
    table = Table(title=f"By {grouping}", title_justify="left")
    table.add_column(grouping)
    if grouping == "model":
        table.add_column("priced as")
    for column in ("requests", "failed", "prompt", "cached", "completion", "cost"):
        table.add_column(column, justify="right")
    for row in report.groups[grouping]:
        counters = row.counters
        cells = [row.key]
        if grouping == "model":
            price = report.price_rows.get(row.key)
            cells.append(price.model if price else "[red]no price[/red]")
        cost = money(row.cost) + (" + unpriced" if row.unpriced_requests else "")
        cells += [
            f"{counters.requests:,}",
            f"{counters.failed:,}",
            f"{counters.prompt_tokens:,}",
            f"{counters.cached_tokens:,}",
            f"{counters.completion_tokens:,}",
            cost,
        ]
        table.add_row(*cells)
    return table


def _totals_table(report: CostReport) -> Table:
    totals = report.totals
    table = Table(title="Totals", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    rows = (
        ("period", f"{report.first_ts or '?'} .. {report.last_ts or '?'}"),
        ("requests", f"{totals.requests:,} ({totals.failed:,} failed)"),
        ("prompt tokens", f"{totals.prompt_tokens:,} ({totals.cached_tokens:,} cached)"),
        (
            "completion tokens",
            f"{totals.completion_tokens:,} ({totals.reasoning_tokens:,} reasoning)",
        ),
        ("total cost", money(report.cost)),
        ("average per priced request", money(report.average_cost)),
    )
    for name, value in rows:
        table.add_row(name, value)
    return table


def _requests_table(report: CostReport) -> Table:
    table = Table(title="Per request", title_justify="left")
    for column in ("ts", "endpoint", "model", "status"):
        table.add_column(column)
    for column in ("prompt", "cached", "completion", "cost"):
        table.add_column(column, justify="right")
    for item in report.requests:
        record = item.record
        table.add_row(
            record.ts or "?",
            record.endpoint or "?",
            record.model or "?",
            str(record.status) if record.status is not None else "-",
            f"{record.prompt_tokens:,}",
            f"{record.cached_tokens:,}",
            f"{record.completion_tokens:,}",
            money(item.cost),
        )
    return table


def print_report(console: Console, report: CostReport) -> None:
    console.print(_totals_table(report))
    for grouping in GROUPINGS:
        console.print(_group_table(report, grouping))
    if report.requests:
        console.print(_requests_table(report))
    if report.unpriced:
        models = ", ".join(
            f"{row.key} ({row.counters.requests:,} requests, {row.counters.prompt_tokens:,} "
            f"prompt + {row.counters.completion_tokens:,} completion tokens)"
            for row in report.unpriced
        )
        console.print(
            f"[yellow]Unpriced (not in the total, which is a lower bound): {models}. "
            "Add them with --pricing FILE.[/yellow]"
        )


def print_issues(console: Console, issues: ParseIssues) -> None:
    if not issues.count:
        return
    console.print(f"[yellow]{issues.count:,} line(s) could not be used; first ones:[/yellow]")
    for example in issues.examples:
        console.print(
            f"  {example['source']} line {example['line']}: {example['reason']}: "
            f"{example['text']!r}",
            markup=False,
            highlight=False,
        )
