"""OpenAI prices from pydantic's genai-prices, read offline from the data bundled in the wheel.

One job: turn a model name and a request time into per-1M-token rates. Nothing here knows about
pricing files or reports (pricing.py puts the user's rows in front of this).

Checked against OpenAI's usage rules (what a usage object means and how it is billed):

* `prompt_tokens` includes `prompt_tokens_details.cached_tokens`. genai-prices agrees: its
  `input_tokens` is the total and `cache_read_tokens` a part of it, billed at `cache_read_mtok`
  (a model without that price bills cached tokens at the input price, as OpenAI does).
* `completion_tokens` includes `completion_tokens_details.reasoning_tokens`, billed at the output
  price. genai-prices agrees: no OpenAI model has an `output_reasoning_mtok`, so reasoning tokens
  are billed inside `output_tokens` and never added again.
* Long-context tiers (gpt-5.4 and later: more than 272K prompt tokens bill the whole request at
  the tier's rates) are decided per request. genai-prices decides from the `input_tokens` it is
  given, so summed counters would cross the tier; this layer never hands it sums: it reads the
  rates and the aggregation keeps requests of each tier apart (see TIER_STARTS).

Where the bundled data is wrong, CORRECTIONS fixes it here, visibly, with the reason.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from importlib.metadata import version

from genai_prices import types
from genai_prices.data_snapshot import get_snapshot

from mlflow_gateway_tools.pricing_file import PricingError

NAME = "genai-prices"
PROVIDER = "openai"

# The prompt sizes at which some model's price changes (OpenAI: "more than 272K input tokens").
# The aggregation splits requests at exactly these sizes; a tier elsewhere is refused when it is
# read (TierError) and a test checks the bundled data, so an upgrade cannot bill it silently.
TIER_STARTS: tuple[int, ...] = (272_000,)


class TierError(PricingError):
    """The library has a long-context tier this layer does not split requests at."""


@dataclass(frozen=True)
class Correction:
    """Rates (USD per 1M tokens) that replace the bundled data for one model and price period."""

    model_id: str
    period_start: date | None  # the StartDateConstraint of the period; None: the first period
    rates: Mapping[str, Decimal]  # genai-prices price keys: input_mtok, cache_read_mtok, ...
    reason: str


CORRECTIONS: tuple[Correction, ...] = (
    Correction(
        "o3",
        None,
        {"cache_read_mtok": Decimal("2.5")},
        # genai-prices 0.2.3 gives o3's launch period (before the 80 % cut of 2025-06-10) the
        # cut price of cached input, $0.50; OpenAI launched o3 on 2025-04-16 at $10 input,
        # $2.50 cached input, $40 output per 1M tokens. Cached tokens of that period were
        # billed 5x lower than OpenAI charged.
        "o3 cached input before 2025-06-10 was $2.50/1M (genai-prices 0.2.3 has $0.50)",
    ),
)


@dataclass(frozen=True)
class TierRates:
    """The rates of requests whose prompt has more than `start` tokens."""

    start: int
    input: Decimal
    cached_input: Decimal
    output: Decimal


@dataclass(frozen=True)
class Rates:
    """USD per 1M tokens of one model in one price period."""

    model: str  # the library's model id: what "priced as" shows
    input: Decimal
    cached_input: Decimal
    output: Decimal
    tiers: tuple[TierRates, ...] = ()


def describe() -> dict[str, str]:
    """What reports name as their price source."""
    return {
        "name": NAME,
        "version": version(NAME),
        "data": "bundled with the package (offline)",
        "latest_price_change": latest_price_change().isoformat(),
    }


@cache
def _provider() -> types.Provider:
    provider = next((p for p in get_snapshot().providers if p.id == PROVIDER), None)
    if provider is None:  # pragma: no cover - the bundled data always has it
        raise LookupError(f"{NAME} {version(NAME)} has no provider {PROVIDER!r}")
    return provider


def find_model(name: str) -> types.ModelInfo | None:
    """The library's model for a name as the API returns it (dated snapshots match)."""
    try:
        _, model = get_snapshot().find_provider_model(name, None, PROVIDER, None)
    except LookupError:
        return None
    return model


def period_of(model: types.ModelInfo, when: datetime) -> int:
    """Which of the model's price periods `when` falls in (the library's own rule: the last
    period whose constraint holds, else the first)."""
    prices = model.prices
    if isinstance(prices, types.ModelPrice):
        return 0
    for index in range(len(prices) - 1, -1, -1):
        constraint = prices[index].constraint
        if constraint is None or constraint.active(when):
            return index
    return 0


def _period_start(model: types.ModelInfo, period: int) -> date | None:
    if isinstance(model.prices, types.ModelPrice):
        return None
    constraint = model.prices[period].constraint
    return constraint.start_date if isinstance(constraint, types.StartDateConstraint) else None


def _model_price(model: types.ModelInfo, period: int) -> types.ModelPrice:
    prices = model.prices
    return prices if isinstance(prices, types.ModelPrice) else prices[period].prices


def _base(value: Decimal | types.TieredPrices | None) -> Decimal | None:
    return value.base if isinstance(value, types.TieredPrices) else value


def _tier_price(value: Decimal | types.TieredPrices | None, start: int) -> Decimal | None:
    """The rate of a price for prompts above `start` (its base if it has no such tier)."""
    if not isinstance(value, types.TieredPrices):
        return value
    applicable = value.base
    for tier in value.tiers:
        if tier.start <= start:
            applicable = tier.price
    return applicable


def rates(model: types.ModelInfo, period: int) -> Rates | None:
    """The token rates of one model in one period; None when it is not priced per token
    (audio hours, characters): such a model is unpriced, never free."""
    price = _model_price(model, period)
    keys = {
        "input_mtok": price.input_mtok,
        "cache_read_mtok": price.cache_read_mtok,
        "output_mtok": price.output_mtok,
    }
    start = _period_start(model, period)
    for correction in CORRECTIONS:
        if correction.model_id == model.id and correction.period_start == start:
            keys.update(correction.rates)
    if _base(keys["input_mtok"]) is None:
        return None
    starts = sorted(
        {
            tier.start
            for value in keys.values()
            if isinstance(value, types.TieredPrices)
            for tier in value.tiers
        }
    )
    unknown = [start for start in starts if start not in TIER_STARTS]
    if unknown:
        raise TierError(
            f"{NAME} {version(NAME)} prices {model.id} differently above {unknown[0]:,} prompt "
            f"tokens; analyze-costs splits requests only at {', '.join(map(str, TIER_STARTS))}: "
            "add the size to price_source.TIER_STARTS"
        )

    def at(start: int | None) -> tuple[Decimal, Decimal, Decimal]:
        pick = _base if start is None else (lambda value: _tier_price(value, start))
        input_rate = pick(keys["input_mtok"])
        assert input_rate is not None
        cached = pick(keys["cache_read_mtok"])
        output = pick(keys["output_mtok"])
        return (
            input_rate,
            input_rate if cached is None else cached,
            Decimal(0) if output is None else output,
        )

    return Rates(
        model.id,
        *at(None),
        tiers=tuple(TierRates(start, *at(start)) for start in starts),
    )


def _all_prices(model: types.ModelInfo) -> Iterator[types.ModelPrice]:
    if isinstance(model.prices, types.ModelPrice):
        yield model.prices
    else:
        yield from (conditional.prices for conditional in model.prices)


def tier_starts_in_data() -> set[int]:
    """Every tier start of every OpenAI model in the bundled data (the test checks them)."""
    return {
        tier.start
        for model in _provider().models
        for price in _all_prices(model)
        for value in vars(price).values()
        if isinstance(value, types.TieredPrices)
        for tier in value.tiers
    }


@cache
def latest_price_change() -> date:
    """The newest start date of an OpenAI price in the data: how recent the data is."""
    starts = [
        conditional.constraint.start_date
        for model in _provider().models
        if not isinstance(model.prices, types.ModelPrice)
        for conditional in model.prices
        if isinstance(conditional.constraint, types.StartDateConstraint)
    ]
    return max(starts)


def _names_of(clause: object) -> Iterator[str]:
    if isinstance(clause, types.ClauseEquals):
        yield clause.equals
    elif isinstance(clause, types.ClauseStartsWith):
        yield clause.starts_with.rstrip("-")
    elif isinstance(clause, types.ClauseOr):
        for part in clause.or_:
            yield from _names_of(part)


@cache
def known_names() -> tuple[str, ...]:
    """The model names the data matches by name (ids and listed snapshot names)."""
    names = {model.id for model in _provider().models}
    for model in _provider().models:
        names.update(_names_of(model.match))
    return tuple(sorted(names))


def closest_names(name: str, count: int = 3) -> list[str]:
    """Known names that look like `name`, best first (for 'did you mean')."""
    return difflib.get_close_matches(name.lower(), known_names(), n=count, cutoff=0.6)
