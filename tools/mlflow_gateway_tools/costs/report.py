"""Render a CostReport: rich tables for people, JSON and CSV for machines."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from mlflow_gateway_tools.costs.aggregate import CostReport, Counters, GroupRow, PricedRequest
from mlflow_gateway_tools.costs.display import plain, printable
from mlflow_gateway_tools.costs.sources import ParseIssues

GROUPINGS = ("model", "endpoint", "client", "day")
MIXED = "mixed"  # price_source of a merge whose hosts priced differently
REPORT_FORMAT = 2  # --json: 2 added the exact decimal strings that --costs-json merges
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


def exact(amount: Decimal) -> str:
    """The exact amount as a plain decimal string (never an exponent): what merging reads."""
    return format(amount, "f")


def money(amount: Decimal | None) -> str:
    return "unpriced" if amount is None else f"${amount:,.6f}"


def price_source_text(source: dict[str, Any] | None) -> str:
    """`genai-prices 0.2.3 (latest price change 2026-10-19) + overrides prices.yaml`; every
    part may be a user-given string (a file name, a merged host's report): printable."""
    if not source:
        return "unknown (a report without price_source)"
    if source.get("name") == MIXED:
        hosts = source.get("by_host") or {}
        return "; ".join(
            f"{printable(host)}: {price_source_text(part)}" for host, part in hosts.items()
        )
    text = f"{printable(source.get('name'))} {printable(source.get('version'))}"
    if source.get("latest_price_change"):
        text += f" (latest price change {printable(source['latest_price_change'])})"
    if source.get("overrides"):
        text += f" + overrides {printable(source['overrides'], 400)}"
    return text


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
    entry["cost_usd_exact"] = exact(row.cost)
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
        "cost_usd_exact": exact(item.cost) if item.cost is not None else None,
    }


def as_json(
    report: CostReport, sources: list[str], issues: ParseIssues, budget: Decimal | None
) -> dict[str, Any]:
    """The report for programs; `cost_usd` floats for reading, `cost_usd_exact` decimal
    strings for summing (costs/merge.py reads this document back)."""
    return {
        "report_format": REPORT_FORMAT,
        "price_source": report.price_source,
        "sources": sources,
        "window": {"since": report.window.since, "until": report.window.until},
        "period": {"first": report.first_ts, "last": report.last_ts},
        "totals": {
            **_counter_fields(report.totals),
            "cost_usd": usd(report.cost),
            "cost_usd_exact": exact(report.cost),
            "average_cost_per_priced_request_usd": usd(report.average_cost),
        },
        **{
            f"by_{grouping}": [_group_json(report, grouping, row) for row in rows]
            for grouping, rows in report.groups.items()
        },
        "timeline": [
            {"hour": hour, "model": model, "cost_usd_exact": exact(cost)}
            for hour, model, cost in report.timeline
        ],
        "unpriced": [
            {"model": row.key, **_counter_fields(row.counters)} for row in report.unpriced
        ],
        "requests_listed_all": report.requests_listed_all,
        "requests": [_request_json(item) for item in report.requests],
        "malformed": {
            "count": issues.count,
            "examples": issues.examples,
            "damaged_files": issues.damaged_files,
        },
        "budget": None
        if budget is None
        else {"usd": usd(budget), "exceeded": report.cost > budget},
    }


def as_csv(report: CostReport) -> str:
    """A row for the total and one per model, endpoint, client and day (and host when merged)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    total = GroupRow(
        "all", report.totals, report.cost, sum(r.counters.requests for r in report.unpriced)
    )
    for grouping, rows in (("total", [total]), *report.groups.items()):
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
        cells: list[Text | str] = [plain(row.key)]
        if grouping == "model":
            price = report.price_rows.get(row.key)
            cells.append(plain(price.model) if price else Text("no price", style="red"))
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


def period_text(report: CostReport) -> str:
    """First .. last request time (either may be a client-sent string: made printable)."""
    return f"{printable(report.first_ts or '?')} .. {printable(report.last_ts or '?')}"


def _totals_table(report: CostReport) -> Table:
    totals = report.totals
    table = Table(title="Totals", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    rows = (
        ("period", period_text(report)),
        ("requests", f"{totals.requests:,} ({totals.failed:,} failed)"),
        ("prompt tokens", f"{totals.prompt_tokens:,} ({totals.cached_tokens:,} cached)"),
        (
            "completion tokens",
            f"{totals.completion_tokens:,} ({totals.reasoning_tokens:,} reasoning)",
        ),
        ("total cost", money(report.cost)),
        ("average per priced request", money(report.average_cost)),
        ("prices", price_source_text(report.price_source)),
    )
    for name, value in rows:
        table.add_row(name, Text(value))
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
            plain(record.ts or "?"),
            plain(record.endpoint or "?"),
            plain(record.model or "?"),
            str(record.status) if record.status is not None else "-",
            f"{record.prompt_tokens:,}",
            f"{record.cached_tokens:,}",
            f"{record.completion_tokens:,}",
            money(item.cost),
        )
    return table


def unpriced_summary(report: CostReport) -> str:
    """The unpriced models with their traffic, each name made printable."""
    return ", ".join(
        f"{printable(row.key)} ({row.counters.requests:,} requests, "
        f"{row.counters.prompt_tokens:,} prompt + {row.counters.completion_tokens:,} "
        "completion tokens)"
        for row in report.unpriced
    )


def print_report(console: Console, report: CostReport) -> None:
    console.print(_totals_table(report))
    for grouping in report.groups:
        console.print(_group_table(report, grouping))
    if report.requests:
        console.print(_requests_table(report))
    if report.unpriced:
        console.print(
            Text(
                f"Unpriced (not in the total, which is a lower bound): "
                f"{unpriced_summary(report)}. Add them with --pricing FILE.",
                style="yellow",
            )
        )


def print_issues(console: Console, issues: ParseIssues) -> None:
    for damaged in issues.damaged_files:
        console.print(
            Text(
                f"{printable(damaged['source'], 400)} is damaged ({damaged['reason']}): "
                f"{damaged['lines']:,} line(s) before the damage were read, the rest is lost; "
                "the analysis goes on without it",
                style="yellow",
            )
        )
    if not issues.count:
        return
    console.print(Text(f"{issues.count:,} line(s) could not be used; first ones:", style="yellow"))
    for example in issues.examples:
        console.print(
            Text(
                f"  {printable(example['source'], 400)} line {example['line']}: "
                f"{printable(example['reason'], 400)}: {example['text']!r}"
            ),
            highlight=False,
        )
