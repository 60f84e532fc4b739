"""One self-contained HTML cost report with inline SVG charts (no scripts, no CDN).

Every text that came from data (names, sources, times) goes through `_text`: made printable and
HTML-escaped, quotes included, so it is the same in element content and in attributes. The page
has no <script> at all, so no name can end one."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from html import escape
from importlib import resources
from string import Template

from mlflow_gateway_tools.costs.aggregate import CostReport, GroupRow
from mlflow_gateway_tools.costs.display import printable
from mlflow_gateway_tools.costs.report import money, period_text, price_source_text
from mlflow_gateway_tools.timeutil import utc_now_iso

HOURLY_SPAN_LIMIT = 72  # more hourly buckets than this are drawn per day
MAX_TIME_LABELS = 12
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1")
CHART_WIDTH = 760
LABEL_WIDTH = 220
BAR_HEIGHT = 22


def _text(value: object) -> str:
    """Data as HTML text: printable, bounded, escaped."""
    return escape(printable(value))


def _timeline(report: CostReport) -> list[tuple[str, Decimal]]:
    per_hour: defaultdict[str, Decimal] = defaultdict(Decimal)
    for hour, _model, cost in report.timeline:
        per_hour[hour] += cost
    if len(per_hour) <= HOURLY_SPAN_LIMIT:
        return [(f"{hour[:10]} {hour[11:13]}h", cost) for hour, cost in sorted(per_hour.items())]
    per_day: defaultdict[str, Decimal] = defaultdict(Decimal)
    for hour, cost in per_hour.items():
        per_day[hour[:10]] += cost
    return sorted(per_day.items())


def column_chart(points: list[tuple[str, Decimal]], caption: str) -> str:
    """Vertical bars, one per time bucket; every bar has a tooltip, some have a label."""
    height, top, bottom = 280, 24, 90
    if not points:
        return f"<p>No timed requests for {escape(caption)}.</p>"
    peak = max(cost for _, cost in points) or Decimal(1)
    left = 90  # room for the first rotated label
    slot = (CHART_WIDTH - left - 20) / len(points)
    label_every = math.ceil(len(points) / MAX_TIME_LABELS)
    bars = []
    for index, (label, cost) in enumerate(points):
        bar_height = float(cost / peak) * (height - top - bottom)
        x = left + index * slot
        y = height - bottom - bar_height
        bars.append(
            f'<rect x="{x + slot * 0.1:.1f}" y="{y:.1f}" width="{slot * 0.8:.1f}" '
            f'height="{bar_height:.1f}" fill="{PALETTE[0]}"><title>{_text(label)}: '
            f"{money(cost)}</title></rect>"
        )
        if index % label_every == 0:
            anchor_x, anchor_y = x + slot / 2, height - bottom + 12
            bars.append(
                f'<text x="{anchor_x:.1f}" y="{anchor_y}" font-size="11" text-anchor="end" '
                f'transform="rotate(-40 {anchor_x:.1f} {anchor_y})">{_text(label)}</text>'
            )
    return (
        f'<svg role="img" aria-label="{escape(caption)}" width="{CHART_WIDTH}" '
        f'height="{height}" viewBox="0 0 {CHART_WIDTH} {height}">'
        f'<text x="20" y="14" font-size="12">peak {money(peak)} per bucket</text>'
        + "".join(bars)
        + "</svg>"
    )


def bar_chart(
    rows: list[tuple[str, list[tuple[str, float]]]],
    caption: str,
    show: Callable[[float], str],
) -> str:
    """Horizontal bars; each row may stack several named parts (e.g. token kinds)."""
    rows = [(label, parts) for label, parts in rows if sum(value for _, value in parts) > 0]
    if not rows:
        return f"<p>No data for {escape(caption)}.</p>"
    peak = max(sum(value for _, value in parts) for _, parts in rows)
    height = len(rows) * (BAR_HEIGHT + 8) + 10
    scale = (CHART_WIDTH - LABEL_WIDTH - 170) / peak
    shapes = []
    for index, (label, parts) in enumerate(rows):
        y = 5 + index * (BAR_HEIGHT + 8)
        x = float(LABEL_WIDTH)
        shapes.append(
            f'<text x="{LABEL_WIDTH - 6}" y="{y + 15}" font-size="12" '
            f'text-anchor="end">{_text(label)}</text>'
        )
        for part_index, (part_name, value) in enumerate(parts):
            width = value * scale
            shapes.append(
                f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="{BAR_HEIGHT}" '
                f'fill="{PALETTE[part_index % len(PALETTE)]}"><title>{escape(part_name)}: '
                f"{escape(show(value))}</title></rect>"
            )
            x += width
        total = sum(value for _, value in parts)
        shapes.append(
            f'<text x="{x + 6:.1f}" y="{y + 15}" font-size="12">{escape(show(total))}</text>'
        )
    return (
        f'<svg role="img" aria-label="{escape(caption)}" width="{CHART_WIDTH}" '
        f'height="{height}" viewBox="0 0 {CHART_WIDTH} {height}">' + "".join(shapes) + "</svg>"
    )


def _legend(names: list[str]) -> str:
    return "".join(
        f'<span class="key" style="background:{PALETTE[i % len(PALETTE)]}"></span>{escape(n)} '
        for i, n in enumerate(names)
    )


def _group_table(report: CostReport, grouping: str) -> str:
    header = "".join(
        f"<th>{name}</th>"
        for name in (grouping, "requests", "failed", "prompt", "cached", "completion", "cost")
    )
    body = []
    for row in report.groups[grouping]:
        counters = row.counters
        cost = money(row.cost) + (" + unpriced" if row.unpriced_requests else "")
        cells = (
            counters.requests,
            counters.failed,
            counters.prompt_tokens,
            counters.cached_tokens,
            counters.completion_tokens,
        )
        body.append(
            f"<tr><td>{_text(row.key)}</td>"
            + "".join(f"<td class=n>{value:,}</td>" for value in cells)
            + f"<td class=n>{escape(cost)}</td></tr>"
        )
    return f"<h3>By {grouping}</h3><table><tr>{header}</tr>{''.join(body)}</table>"


def _token_rows(rows: list[GroupRow]) -> list[tuple[str, list[tuple[str, float]]]]:
    return [
        (
            row.key,
            [
                ("uncached prompt", float(row.counters.prompt_tokens - row.counters.cached_tokens)),
                ("cached prompt", float(row.counters.cached_tokens)),
                ("completion", float(row.counters.completion_tokens)),
            ],
        )
        for row in rows
    ]


def render_html(report: CostReport, sources: list[str]) -> str:
    template = Template(resources.files(__package__).joinpath("report_template.html").read_text())
    totals = report.totals
    summary = (
        ("Sources", ", ".join(printable(source, 400) for source in sources)),
        ("Period", period_text(report)),
        ("Requests", f"{totals.requests:,} ({totals.failed:,} failed)"),
        ("Prompt tokens", f"{totals.prompt_tokens:,} ({totals.cached_tokens:,} cached)"),
        ("Completion tokens", f"{totals.completion_tokens:,}"),
        ("Total cost", money(report.cost)),
        ("Average per priced request", money(report.average_cost)),
        ("Prices", price_source_text(report.price_source)),
    )
    unpriced = ""
    if report.unpriced:
        names = ", ".join(_text(row.key) for row in report.unpriced)
        unpriced = (
            f'<p class="warn">Unpriced models (not in the total): {names}. '
            "Add them with <code>--pricing FILE</code>.</p>"
        )
    models = report.groups["model"]
    return template.substitute(
        generated=escape(utc_now_iso()),
        summary_rows="".join(
            f"<tr><th>{escape(name)}</th><td>{escape(value)}</td></tr>" for name, value in summary
        ),
        unpriced=unpriced,
        cost_over_time=column_chart(_timeline(report), "cost over time"),
        cost_by_model=bar_chart(
            [(row.key, [("cost", float(row.cost))]) for row in models],
            "cost by model",
            lambda usd: f"${usd:,.6f}",
        ),
        token_legend=_legend(["uncached prompt", "cached prompt", "completion"]),
        tokens_by_model=bar_chart(
            _token_rows(models), "tokens by model", lambda tokens: f"{tokens:,.0f} tokens"
        ),
        tables="".join(_group_table(report, grouping) for grouping in report.groups),
    )
