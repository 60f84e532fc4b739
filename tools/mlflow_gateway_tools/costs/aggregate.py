"""Streaming, constant-memory cost aggregation.

Records are folded into integer token counters per (model, endpoint, client, hour, band)
cell; nothing per request is kept beyond a short sample. Costs are computed once per cell at
the end with exact decimals, at the prices valid in the cell's hour (OpenAI's prices change on
whole UTC days, so an hour never spans a change). The band keeps requests above a
long-context tier start apart from the others (pricing.band_of). Within a cell cost is linear
in tokens, so a cell's cost equals the sum of its requests' costs, and every grouping (model,
endpoint, client, day, time) is an exact sum of cells.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from mlflow_gateway_tools.costs.jsonline import UsageLine
from mlflow_gateway_tools.pricing import TIER_STARTS, Price, PriceTable, band_of, band_prompt
from mlflow_gateway_tools.timeutil import format_iso, parse_iso

UNKNOWN = "(unknown)"
NO_CLIENT = "(none)"
REQUEST_SAMPLE_SIZE = 20  # the seed's rule: list each request when there are at most 20
CANONICAL_TS_LENGTH = len("2026-11-27T12:00:00.000Z")  # the usage log's own time format
# A count no response has; past 64 bits orjson reads a number as a float, so beyond this
# bound a line is malformed with or without it (and costs stay exact in 28 digits).
TOKEN_LIMIT = 2**63


@dataclass(slots=True)
class UsageRecord:
    """One request, normalised from a usage-log line or a results-file entry."""

    ts: str | None
    model: str | None
    endpoint: str | None
    client: str | None
    status: int | None
    failed: bool
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    origin: str = ""


@dataclass(slots=True)
class Counters:
    requests: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    def merge(self, other: Counters) -> None:
        self.requests += other.requests
        self.failed += other.failed
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cached_tokens += other.cached_tokens
        self.reasoning_tokens += other.reasoning_tokens

    @property
    def has_tokens(self) -> bool:
        return bool(self.prompt_tokens or self.completion_tokens)


@dataclass
class GroupRow:
    """Totals for one value of a grouping (a model, an endpoint, a client, a day)."""

    key: str
    counters: Counters = field(default_factory=Counters)
    cost: Decimal = Decimal(0)
    unpriced_requests: int = 0


@dataclass
class TimeWindow:
    """--since/--until as ISO strings in the usage log's own format (compare as text)."""

    since: str | None = None
    until: str | None = None

    @classmethod
    def of(cls, since: datetime | None, until: datetime | None) -> TimeWindow:
        return cls(format_iso(since) if since else None, format_iso(until) if until else None)

    def days(self) -> tuple[date | None, date | None]:
        """The first and last UTC day the window touches (None: open), for day files."""
        first = date.fromisoformat(self.since[:10]) if self.since else None
        last = None
        if self.until:
            last = date.fromisoformat(self.until[:10])
            if self.until[10:] == "T00:00:00.000Z":  # exclusive: midnight ends the day before
                last -= timedelta(days=1)
        return first, last

    def describe(self) -> str:
        if self.since is None and self.until is None:
            return "all days"
        return f"{self.since or 'the start'} .. {self.until or 'now'}"

    def contains(self, ts: str | None) -> bool:
        if ts is None:
            return self.since is None and self.until is None
        return (self.since is None or ts >= self.since) and (self.until is None or ts < self.until)


class PriceName(Protocol):
    """What a report shows of a price row: its name (a merged report knows only that)."""

    @property
    def model(self) -> str: ...


@dataclass
class PricedRequest:
    record: UsageRecord
    price: Price | None
    cost: Decimal | None


@dataclass
class CostReport:
    totals: Counters
    cost: Decimal
    groups: dict[str, list[GroupRow]]  # model, endpoint, client, day (and host when merged)
    timeline: list[tuple[str, str, Decimal]]  # (hour, model, cost)
    unpriced: list[GroupRow]
    price_rows: Mapping[str, PriceName | None]  # model as seen -> the price row, None: no price
    requests: list[PricedRequest]
    requests_listed_all: bool
    first_ts: str | None
    last_ts: str | None
    window: TimeWindow = field(default_factory=TimeWindow)
    price_source: dict[str, Any] | None = None  # what priced it: library, version, overrides

    @property
    def average_cost(self) -> Decimal:
        priced = self.totals.requests - sum(row.counters.requests for row in self.unpriced)
        return self.cost / priced if priced else Decimal(0)


def request_time(ts: str | None) -> datetime | None:
    """When a request ran, for its price period; None (priced at today's prices) when the
    time is absent or unreadable."""
    if not ts:
        return None
    try:
        return parse_iso(ts)
    except (ValueError, OverflowError):
        return None


def hour_time(hour: str) -> datetime | None:
    """The start of a cell's hour (`2026-11-27T10`), or None for UNKNOWN / unreadable."""
    if hour == UNKNOWN:
        return None
    try:
        return datetime.fromisoformat(hour + ":00:00").replace(tzinfo=UTC)
    except ValueError:
        return None


def by_cost(rows: Iterable[GroupRow]) -> list[GroupRow]:
    """A grouping's rows as reports list them: most expensive first, then by name."""
    return sorted(rows, key=lambda row: (-row.cost, row.key))


class Aggregator:
    """Fold UsageRecords in; `report()` prices them at the end."""

    def __init__(self, window: TimeWindow | None = None, keep_all_requests: bool = False) -> None:
        self.window = window or TimeWindow()
        self.keep_all_requests = keep_all_requests
        self.cells: defaultdict[tuple[str, str, str, str, int], Counters] = defaultdict(Counters)
        self.sample: list[UsageRecord] = []
        self.seen = 0
        self.skipped_by_time = 0
        self.first_ts: str | None = None
        self.last_ts: str | None = None

    def add(self, record: UsageRecord) -> None:
        """Once per request read from a results file, or kept in the request sample."""
        counted = self._tally(
            record.ts,
            record.model,
            record.endpoint,
            record.client,
            record.failed,
            record.prompt_tokens,
            record.completion_tokens,
            record.cached_tokens,
            record.reasoning_tokens,
        )
        if counted and (self.keep_all_requests or len(self.sample) <= REQUEST_SAMPLE_SIZE):
            self.sample.append(record)

    def add_usage_line(self, line: UsageLine, model_override: str | None) -> bool:
        """Fold a usage-log line decoded with the launcher's own field types: the hot path of
        a million-line ledger, with no record object per line. False, folding nothing, for a
        time not in the launcher's format, a count out of range, and while the request sample
        still fills: that line takes the general path (sources.record_from_log_entry, then
        add), which validates every field and names what is wrong. A line both paths accept
        is folded the same by either."""
        if self.keep_all_requests or len(self.sample) <= REQUEST_SAMPLE_SIZE:
            return False
        ts = line.ts
        prompt = line.prompt_tokens or 0
        completion = line.completion_tokens or 0
        cached = line.cached_tokens or 0
        reasoning = line.reasoning_tokens or 0
        if not (
            ts is not None
            and len(ts) == CANONICAL_TS_LENGTH
            and ts[-1] == "Z"
            # The OR is negative if any count is, and >= the bound if any count is.
            and 0 <= (prompt | completion | cached | reasoning) < TOKEN_LIMIT
        ):
            return False
        status = line.status
        self._tally(
            ts,
            model_override or line.model_returned or line.model_configured,
            line.endpoint,
            line.client,
            status is None or status >= 400 or line.error is not None,
            prompt,
            completion,
            cached,
            reasoning,
        )
        return True

    def _tally(  # noqa: PLR0917 - the hot path: positional arguments, no record object
        self,
        ts: str | None,
        model: str | None,
        endpoint: str | None,
        client: str | None,
        failed: bool,
        prompt: int,
        completion: int,
        cached: int,
        reasoning: int,
    ) -> bool:
        """Count one request in its cell; False when it falls outside the window."""
        window = self.window
        if (window.since is not None or window.until is not None) and not window.contains(ts):
            self.skipped_by_time += 1
            return False
        self.seen += 1
        if ts is not None:
            first = self.first_ts
            if first is None or ts < first:
                self.first_ts = ts
            last = self.last_ts
            if last is None or ts > last:
                self.last_ts = ts
        key = (
            model or UNKNOWN,
            endpoint or UNKNOWN,
            client or NO_CLIENT,
            ts[:13] if ts else UNKNOWN,
            # bisect_left(TIER_STARTS, prompt), inlined for the one start OpenAI has
            (prompt > TIER_STARTS[0]) if len(TIER_STARTS) == 1 else band_of(prompt),
        )
        cell = self.cells[key]
        cell.requests += 1
        cell.failed += failed
        cell.prompt_tokens += prompt
        cell.completion_tokens += completion
        cell.cached_tokens += cached
        cell.reasoning_tokens += reasoning
        return True

    def add_all(self, records: Iterable[UsageRecord]) -> None:
        for record in records:
            self.add(record)

    def merge(self, other: Aggregator) -> None:
        """Fold in another Aggregator of the same window (one that read other files): integer
        counters add up exactly, so the merged report equals one that read everything."""
        cells = self.cells
        for key, counters in other.cells.items():
            cells[key].merge(counters)
        self.seen += other.seen
        self.skipped_by_time += other.skipped_by_time
        for ts in (other.first_ts, other.last_ts):
            if ts is not None:
                self.first_ts = ts if self.first_ts is None else min(self.first_ts, ts)
                self.last_ts = ts if self.last_ts is None else max(self.last_ts, ts)
        if self.keep_all_requests:
            self.sample += other.sample
        else:  # add() keeps one more than listed, to know the list would be cut
            self.sample += other.sample[: REQUEST_SAMPLE_SIZE + 1 - len(self.sample)]

    def report(self, prices: PriceTable) -> CostReport:
        totals = Counters()
        total_cost = Decimal(0)
        groupings: dict[str, dict[str, GroupRow]] = {
            name: {} for name in ("model", "endpoint", "client", "day")
        }
        timeline: defaultdict[tuple[str, str], Decimal] = defaultdict(Decimal)
        unpriced: dict[str, GroupRow] = {}
        price_rows: dict[str, Price | None] = {}
        times: dict[str, datetime | None] = {}
        for (model, endpoint, client, hour, band), counters in self.cells.items():
            if hour not in times:
                times[hour] = hour_time(hour)
            price = prices.lookup(model if model != UNKNOWN else None, times[hour])
            if price is not None or model not in price_rows:
                price_rows[model] = price  # a priced cell names the row, whichever period
            totals.merge(counters)
            cost = Decimal(0)
            is_unpriced = price is None and counters.has_tokens
            if price is not None:
                cost = price.cost(
                    counters.prompt_tokens,
                    counters.cached_tokens,
                    counters.completion_tokens,
                    band_prompt(int(band)),
                )
            if is_unpriced:
                unpriced.setdefault(model, GroupRow(model)).counters.merge(counters)
            total_cost += cost
            timeline[(hour, model)] += cost
            for name, value in (
                ("model", model),
                ("endpoint", endpoint),
                ("client", client),
                ("day", hour[:10]),
            ):
                row = groupings[name].setdefault(value, GroupRow(value))
                row.counters.merge(counters)
                row.cost += cost
                row.unpriced_requests += counters.requests if is_unpriced else 0
        listed_all = self.keep_all_requests or self.seen <= REQUEST_SAMPLE_SIZE
        requests = [self._priced(record, prices) for record in self.sample] if listed_all else []
        return CostReport(
            totals=totals,
            cost=total_cost,
            groups={name: by_cost(rows.values()) for name, rows in groupings.items()},
            timeline=sorted((hour, model, cost) for (hour, model), cost in timeline.items()),
            unpriced=sorted(unpriced.values(), key=lambda row: row.key),
            price_rows=price_rows,
            requests=requests,
            requests_listed_all=listed_all,
            first_ts=self.first_ts,
            last_ts=self.last_ts,
            window=self.window,
            price_source=prices.source(),
        )

    @staticmethod
    def _priced(record: UsageRecord, prices: PriceTable) -> PricedRequest:
        price = prices.lookup(record.model, request_time(record.ts))
        cost = (
            price.cost(record.prompt_tokens, record.cached_tokens, record.completion_tokens)
            if price is not None
            else (Decimal(0) if not (record.prompt_tokens or record.completion_tokens) else None)
        )
        return PricedRequest(record, price, cost)
