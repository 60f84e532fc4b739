"""--costs-json [LABEL=]FILE: analyze-costs' own --json reports (one per gateway host) merged
into one CostReport. Counts are integers and costs are read from the exact decimal strings
(`cost_usd_exact`), so every total and table of the merge is an exact sum of the hosts'."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from mlflow_gateway_tools.cli_support import CommandError
from mlflow_gateway_tools.costs.aggregate import (
    CostReport,
    Counters,
    GroupRow,
    PriceName,
    TimeWindow,
    by_cost,
)
from mlflow_gateway_tools.costs.report import GROUPINGS, MIXED, REPORT_FORMAT
from mlflow_gateway_tools.costs.sources import ParseIssues
from mlflow_gateway_tools.input_files import read_json

OPTION = "--costs-json"
COUNTER_FIELDS = (
    "requests",
    "failed",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
)
HOST = "host"
BOUNDS = {"first": "period", "last": "period", "since": "window", "until": "window"}


@dataclass(frozen=True)
class PricedAs:
    """The name of the price row a host used (the merge has no price table of its own)."""

    model: str


@dataclass(frozen=True)
class CostsInput:
    label: str
    path: Path


def parse_input(text: str) -> CostsInput:
    """`[LABEL=]FILE`; without a label the file's stem (gw-host-1.json -> gw-host-1)."""
    label, separator, file = text.partition("=")
    if not separator or Path(text).is_file():  # a file whose name has "=" is still a file
        return CostsInput(Path(text).stem, Path(text))
    if not label or not file:
        raise CommandError(f"{OPTION} {text!r}: give FILE or LABEL=FILE, e.g. gw-host-1=a.json")
    return CostsInput(label, Path(file))


class _Document:
    """One input report, with reads that name the file and the field when they fail."""

    def __init__(self, source: CostsInput) -> None:
        self.source = source
        path = source.path
        document = read_json(path, OPTION, "fetch each host's `analyze-costs --json` output first")
        if not isinstance(document, dict) or document.get("report_format") != REPORT_FORMAT:
            raise CommandError(
                f"{OPTION} {path} is not the --json output of this analyze-costs (report_format "
                f"{REPORT_FORMAT}); produce it on the host with `analyze-costs --json` of the "
                "same version"
            )
        self.data = document

    def fail(self, where: str, problem: str) -> CommandError:
        return CommandError(
            f"{OPTION} {self.source.path}: {where} {problem}; give analyze-costs --json output "
            "as it was written"
        )

    def get(self, where: str, row: Any, name: str, check: Callable[[Any], bool]) -> Any:
        if not isinstance(row, dict) or name not in row or not check(row[name]):
            raise self.fail(where, f"has no valid {name!r}")
        return row[name]

    def rows(self, name: str) -> list[Any]:
        rows = self.data.get(name, [])
        if not isinstance(rows, list):
            raise self.fail(name, "is not a list")
        return rows

    def counters(self, where: str, row: Any) -> Counters:
        def count(value: Any) -> bool:
            return type(value) is int and value >= 0

        return Counters(**{name: self.get(where, row, name, count) for name in COUNTER_FIELDS})

    def cost(self, where: str, row: Any) -> Decimal:
        text = self.get(where, row, "cost_usd_exact", lambda value: isinstance(value, str))
        try:
            amount = Decimal(text)
        except InvalidOperation:
            raise self.fail(where, f"has cost_usd_exact {text!r}, not a decimal") from None
        if not amount.is_finite():
            raise self.fail(where, f"has cost_usd_exact {text!r}, not a finite amount")
        return amount

    def group_row(self, where: str, row: Any, key_field: str) -> GroupRow:
        key = self.get(where, row, key_field, lambda value: isinstance(value, str))
        unpriced = self.get(where, row, "unpriced_requests", lambda value: type(value) is int)
        return GroupRow(key, self.counters(where, row), self.cost(where, row), unpriced)


def _add(rows: dict[str, GroupRow], row: GroupRow) -> None:
    total = rows.setdefault(row.key, GroupRow(row.key))
    total.counters.merge(row.counters)
    total.cost += row.cost
    total.unpriced_requests += row.unpriced_requests


def _bound(values: Iterable[str | None], pick: Callable[[list[str]], str]) -> str | None:
    """The widest window bound: open (None) if any input was open."""
    values = list(values)
    return None if not values or None in values else pick([v for v in values if v is not None])


@dataclass
class Merged:
    report: CostReport
    sources: list[str]
    issues: ParseIssues


class _Merger:
    """The running sums of the reports read so far."""

    def __init__(self) -> None:
        self.totals, self.cost = Counters(), Decimal(0)
        self.groups: dict[str, dict[str, GroupRow]] = {name: {} for name in (*GROUPINGS, HOST)}
        self.unpriced: dict[str, GroupRow] = {}
        self.price_rows: dict[str, PriceName | None] = {}
        self.timeline: defaultdict[tuple[str, str], Decimal] = defaultdict(Decimal)
        self.bounds: dict[str, list[str | None]] = {
            "first": [],
            "last": [],
            "since": [],
            "until": [],
        }
        self.sources: list[str] = []
        # host label -> what priced its report
        self.price_sources: dict[str, dict[str, Any] | None] = {}
        self.issues = ParseIssues()

    def add(self, document: _Document) -> None:
        label, data = document.source.label, document.data
        host_totals = document.counters("totals", data.get("totals"))
        host_cost = document.cost("totals", data.get("totals"))
        self.totals.merge(host_totals)
        self.cost += host_cost
        for grouping in GROUPINGS:
            for row in document.rows(f"by_{grouping}"):
                _add(self.groups[grouping], document.group_row(f"by_{grouping}", row, grouping))
        for row in document.rows("by_model"):
            priced_as = row.get("priced_as")
            if isinstance(priced_as, str):
                self.price_rows[row["model"]] = PricedAs(priced_as)
            else:
                self.price_rows.setdefault(row["model"], None)
        host_unpriced = 0
        for row in document.rows("unpriced"):
            model = document.get("unpriced", row, "model", lambda value: isinstance(value, str))
            counters = document.counters("unpriced", row)
            self.unpriced.setdefault(model, GroupRow(model)).counters.merge(counters)
            host_unpriced += counters.requests
        if "by_host" in data:  # an input that is itself a merge keeps its hosts
            for row in document.rows("by_host"):
                _add(self.groups[HOST], document.group_row("by_host", row, HOST))
        else:
            _add(self.groups[HOST], GroupRow(label, host_totals, host_cost, host_unpriced))
        for row in document.rows("timeline"):
            hour = document.get("timeline", row, "hour", lambda value: isinstance(value, str))
            model = document.get("timeline", row, "model", lambda value: isinstance(value, str))
            self.timeline[(hour, model)] += document.cost("timeline", row)
        period, window = data.get("period") or {}, data.get("window") or {}
        for name, part in (
            ("first", period),
            ("last", period),
            ("since", window),
            ("until", window),
        ):
            value = part.get(name)
            self.bounds[name].append(value if isinstance(value, str) else None)
        self.sources += [f"{label}:{source}" for source in data.get("sources", [])]
        price_source = data.get("price_source")
        self.price_sources[label] = price_source if isinstance(price_source, dict) else None
        self.issues.merge(self._issues(document))

    @staticmethod
    def _issues(document: _Document) -> ParseIssues:
        label = document.source.label
        malformed = document.data.get("malformed") or {}

        def labelled(entries: Any) -> list[dict[str, Any]]:
            entries = entries if isinstance(entries, list) else []
            return [
                {**entry, "source": f"{label}:{entry.get('source')}"}
                for entry in entries
                if isinstance(entry, dict)
            ]

        return ParseIssues(
            count=document.get("malformed", malformed, "count", lambda v: type(v) is int),
            examples=labelled(malformed.get("examples")),
            damaged_files=labelled(malformed.get("damaged_files")),
        )

    def price_source(self) -> dict[str, Any] | None:
        """The hosts' price source when they agree, else each host's (a merge reprices
        nothing: it says what each host priced with)."""
        distinct = {json.dumps(source, sort_keys=True) for source in self.price_sources.values()}
        if len(distinct) == 1:
            return next(iter(self.price_sources.values()))
        return {"name": MIXED, "by_host": dict(self.price_sources)}

    def report(self) -> CostReport:
        bounds = self.bounds
        return CostReport(
            totals=self.totals,
            cost=self.cost,
            groups={name: by_cost(rows.values()) for name, rows in self.groups.items()},
            timeline=sorted((hour, model, cost) for (hour, model), cost in self.timeline.items()),
            unpriced=sorted(self.unpriced.values(), key=lambda row: row.key),
            price_rows=self.price_rows,
            requests=[],  # per-request rows stay in each host's report
            requests_listed_all=False,
            first_ts=min((ts for ts in bounds["first"] if ts), default=None),
            last_ts=max((ts for ts in bounds["last"] if ts), default=None),
            window=TimeWindow(_bound(bounds["since"], min), _bound(bounds["until"], max)),
            price_source=self.price_source(),
        )


def _labelled_inputs(texts: list[str]) -> list[CostsInput]:
    inputs = [parse_input(text) for text in texts]
    seen: dict[str, Path] = {}
    for item in inputs:
        if item.label in seen:
            raise CommandError(
                f"{OPTION} label {item.label!r} names both {seen[item.label]} and {item.path}; "
                f"label them, e.g. {OPTION} gw-host-1={seen[item.label]}"
            )
        seen[item.label] = item.path
    return inputs


def merge_reports(texts: list[str]) -> Merged:
    """One report from the --costs-json inputs; every file is checked before any is summed."""
    documents = [_Document(item) for item in _labelled_inputs(texts)]
    merger = _Merger()
    for document in documents:
        merger.add(document)
    return Merged(merger.report(), merger.sources, merger.issues)
