"""Summarise an evaluation run: success, errors, latency, throughput, tokens, cost by model."""

from __future__ import annotations

from collections import Counter
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from mlflow_gateway_tools.costs.aggregate import Aggregator
from mlflow_gateway_tools.costs.display import plain
from mlflow_gateway_tools.costs.report import price_source_text, usd
from mlflow_gateway_tools.costs.sources import record_from_result
from mlflow_gateway_tools.evaluate.runner import RequestRecord
from mlflow_gateway_tools.pricing import PriceTable
from mlflow_gateway_tools.stats import summarize
from mlflow_gateway_tools.usage import USAGE_FIELDS


def error_key(record: RequestRecord) -> str:
    return str(record.status) if record.status is not None else "no response"


def summarize_run(
    records: list[RequestRecord], wall_seconds: float, prices: PriceTable
) -> dict[str, Any]:
    succeeded = [record for record in records if record.ok]
    failed = [record for record in records if not record.ok]
    latency = summarize(record.latency_ms for record in (succeeded or records))
    ttft = summarize(record.ttft_ms for record in succeeded if record.ttft_ms is not None)
    aggregator = Aggregator()
    aggregator.add_all(record_from_result(record.as_dict(), "run", None) for record in records)
    costs = aggregator.report(prices)
    return {
        "requests": len(records),
        "succeeded": len(succeeded),
        "failed": len(failed),
        "streamed": sum(record.stream for record in records),
        "success_rate": len(succeeded) / len(records) if records else 0.0,
        "error_rate": len(failed) / len(records) if records else 0.0,
        "errors_by_status": dict(Counter(error_key(record) for record in failed).most_common()),
        "first_errors": [
            {"case": record.case, "status": record.status, "error": record.error}
            for record in failed[:5]
        ],
        "wall_seconds": round(wall_seconds, 3),
        "throughput_rps": round(len(records) / wall_seconds, 2) if wall_seconds > 0 else None,
        "latency_ms": latency.as_dict() if latency else None,
        "ttft_ms": ttft.as_dict() if ttft else None,
        "tokens": {
            field: sum(getattr(record, field) or 0 for record in records) for field in USAGE_FIELDS
        },
        "cost": {
            "total_usd": usd(costs.cost),
            "by_model": [
                {
                    "model": row.key,
                    "priced_as": price.model if (price := costs.price_rows.get(row.key)) else None,
                    "requests": row.counters.requests,
                    "prompt_tokens": row.counters.prompt_tokens,
                    "cached_tokens": row.counters.cached_tokens,
                    "completion_tokens": row.counters.completion_tokens,
                    "cost_usd": usd(row.cost),
                    "unpriced": bool(row.unpriced_requests),
                }
                for row in costs.groups["model"]
                if row.counters.has_tokens
            ],
            "unpriced_models": [row.key for row in costs.unpriced],
            "price_source": costs.price_source,
        },
    }


def _timing_row(table: Table, name: str, values: dict[str, Any] | None) -> None:
    if values:
        table.add_row(
            name, *(f"{values[key]:,.1f}" for key in ("p50", "p95", "p99", "mean", "max"))
        )


def print_summary(console: Console, summary: dict[str, Any], url: str) -> None:
    overview = Table(title=f"Gateway evaluation: {url}", title_justify="left", show_header=False)
    overview.add_column("what")
    overview.add_column("value", justify="right")
    overview.add_row(
        "requests",
        f"{summary['requests']:,} ({summary['succeeded']:,} ok, {summary['failed']:,} failed)",
    )
    if summary["streamed"]:
        overview.add_row("streamed", f"{summary['streamed']:,}")
    overview.add_row("success rate", f"{summary['success_rate']:.1%}")
    for status, count in summary["errors_by_status"].items():
        overview.add_row(f"errors: {status}", f"{count:,}")
    if summary["throughput_rps"] is not None:
        overview.add_row("throughput", f"{summary['throughput_rps']:,.1f} req/s")
    tokens = summary["tokens"]
    overview.add_row(
        "tokens",
        f"{tokens['prompt_tokens']:,} prompt ({tokens['cached_tokens']:,} cached), "
        f"{tokens['completion_tokens']:,} completion",
    )
    console.print(overview)

    timing = Table(title="Latency (ms, successful requests)", title_justify="left")
    for column in ("", "p50", "p95", "p99", "mean", "max"):
        timing.add_column(column, justify="right" if column else "left")
    _timing_row(timing, "total", summary["latency_ms"])
    _timing_row(timing, "first token", summary["ttft_ms"])
    console.print(timing)

    cost = Table(title="Cost by model", title_justify="left")
    for column in ("model", "priced as", "requests", "prompt", "cached", "completion", "cost"):
        cost.add_column(column, justify="left" if column in ("model", "priced as") else "right")
    for row in summary["cost"]["by_model"]:
        cost.add_row(
            plain(row["model"]),  # the upstream's name for it: data, never markup
            plain(row["priced_as"]) if row["priced_as"] else Text("no price", style="red"),
            f"{row['requests']:,}",
            f"{row['prompt_tokens']:,}",
            f"{row['cached_tokens']:,}",
            f"{row['completion_tokens']:,}",
            "unpriced" if row["unpriced"] else f"${row['cost_usd']:,.6f}",
        )
    console.print(cost)
    console.print(f"Total cost: [bold]${summary['cost']['total_usd']:,.6f}[/bold]")
    console.print(
        f"Prices: {price_source_text(summary['cost'].get('price_source'))}",
        markup=False,
        highlight=False,
    )
    for problem in summary["first_errors"]:
        console.print(
            f"  failed {problem['case']}: {problem['status'] or 'no response'}: {problem['error']}",
            markup=False,
            highlight=False,
        )
