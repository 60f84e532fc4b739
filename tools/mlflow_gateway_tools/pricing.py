"""Model prices for evaluate-gateway and analyze-costs, and the cost formula.

Where a price comes from, first match wins:

1. the user's pricing file (`--pricing FILE`; `gateway_evaluate_pricing_file` in the
   gateway_evaluate role): a row for the exact name, then an alias (an Azure deployment name,
   say), then the row of a dated snapshot's undated name (gpt-4.1-mini for
   gpt-4.1-mini-2025-04-14) unless the library prices that snapshot as a different model. A row
   that sets only some fields (a negotiated output price) takes the others from the library;
2. pydantic's genai-prices (price_source.py): more than 100 OpenAI models with their dated
   snapshot names and their price history, read offline from the installed package.

A name neither knows is unpriced: reports name it and leave it out of the total, never $0.

Every request is priced at its own time (`ts`): a period across a price change is billed at the
old price before it and the new one after. Prices are looked up once per (model, price period)
and kept; never once per request.

Cost = (prompt - cached) x input + cached x cached_input + completion x output, per 1M tokens;
`prompt_tokens` already includes the cached ones and `completion_tokens` the reasoning ones,
which is how OpenAI reports and bills them. Long-context models bill the whole request at the
tier's rates when its prompt has more than the tier's start (see price_source.TIER_STARTS).
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from genai_prices import types

from mlflow_gateway_tools import price_source
from mlflow_gateway_tools.pricing_file import PricingError, PricingFile, Row, load

__all__ = ["TIER_STARTS", "Price", "PriceTable", "PricingError", "band_of", "band_prompt"]

TOKENS_PER_PRICE_UNIT = Decimal(1_000_000)
TIER_STARTS = price_source.TIER_STARTS

# gpt-4o-mini-2024-07-18, gpt-4-0613, gpt-3.5-turbo-0125 -> gpt-4o-mini, gpt-4, gpt-3.5-turbo
_SNAPSHOT_SUFFIX = re.compile(r"^(?P<alias>.+?)-(?:\d{4}-\d{2}-\d{2}|\d{4})$")


def band_of(prompt_tokens: int) -> int:
    """How many tier starts a request's prompt is above: requests of one band share rates."""
    return bisect_left(TIER_STARTS, prompt_tokens)


def band_prompt(band: int) -> int:
    """A prompt size in `band` (what picks the band's rates)."""
    return 0 if band == 0 else TIER_STARTS[band - 1] + 1


@dataclass(frozen=True)
class Price:
    """USD per 1M tokens for one model in one price period."""

    model: str
    input: Decimal
    cached_input: Decimal
    output: Decimal
    source: str | None = None
    as_of: str | None = None
    tiers: tuple[price_source.TierRates, ...] = field(default=(), repr=False)

    def cost(
        self,
        prompt_tokens: int,
        cached_tokens: int,
        completion_tokens: int,
        request_prompt: int | None = None,
    ) -> Decimal:
        """(prompt - cached) x input + cached x cached_input + completion x output.

        `request_prompt` is the prompt size of one of the requests summed here (they share a
        band); it picks a long-context tier. Left out: the counts are one request's.
        """
        size = prompt_tokens if request_prompt is None else request_prompt
        input_rate, cached_rate, output_rate = self.input, self.cached_input, self.output
        for tier in self.tiers:
            if size > tier.start:
                input_rate, cached_rate, output_rate = tier.input, tier.cached_input, tier.output
        cached = min(cached_tokens, prompt_tokens)
        micro_usd = (
            (prompt_tokens - cached) * input_rate
            + cached * cached_rate
            + completion_tokens * output_rate
        )
        return micro_usd / TOKENS_PER_PRICE_UNIT


@lru_cache(maxsize=1)
def _library_source() -> str:
    described = price_source.describe()
    return f"{described['name']} {described['version']}"


def _price(row: Row | None, rates: price_source.Rates | None, origin: str) -> Price | None:
    """A row's prices over the library's: each field the row sets holds in every period and
    tier; the fields it leaves out are the library's (or, for a model the library does not
    price per token, cached = input and output = 0)."""
    if row is None:
        if rates is None:
            return None
        return Price(
            rates.model,
            rates.input,
            rates.cached_input,
            rates.output,
            source=_library_source(),
            tiers=rates.tiers,
        )
    if rates is None:
        if row.input is None:  # a partial row over a model not priced per token: unpriced
            return None
        rates = price_source.Rates(row.model, row.input, row.input, Decimal(0))

    def mine(value: Decimal | None, library: Decimal) -> Decimal:
        return library if value is None else value

    tiers = tuple(
        price_source.TierRates(
            tier.start,
            mine(row.input, tier.input),
            mine(row.cached_input, tier.cached_input),
            mine(row.output, tier.output),
        )
        for tier in rates.tiers
    )
    return Price(
        row.model,
        mine(row.input, rates.input),
        mine(row.cached_input, rates.cached_input),
        mine(row.output, rates.output),
        row.source or origin,
        row.as_of,
        tiers=tiers,
    )


class PriceTable:
    """The user's rows in front of the library; see the module docstring for the order."""

    def __init__(self, user: PricingFile | None = None) -> None:
        self.user = user or PricingFile("", {}, {})
        self._resolve = lru_cache(maxsize=4096)(self._resolve_name)
        self._prices: dict[tuple[str | None, str | None, int], Price | None] = {}
        self._check()

    @classmethod
    def load(cls, override: Path | None = None) -> PriceTable:
        """The library's prices, with a user file in front when one is given."""
        return cls(load(override) if override is not None else None)

    @property
    def rows(self) -> Mapping[str, Row]:
        return self.user.rows

    def source(self) -> dict[str, Any]:
        """What reports name as their prices: the library, its version, and the user's file."""
        return {**price_source.describe(), "overrides": self.user.origin or None}

    def _check(self) -> None:
        origin, rows = self.user.origin, self.user.rows
        for row in rows.values():
            if not row.complete and price_source.find_model(row.model) is None:
                raise PricingError(
                    f"{origin}: model {row.model!r} has no `input` price and "
                    f"{price_source.NAME} does not know it; a new model needs at least input "
                    "(and output unless it is an embedding model)"
                )
        for alias, target in self.user.aliases.items():
            if target not in rows and price_source.find_model(target) is None:
                raise PricingError(
                    f"{origin}: alias {alias!r} points to {target!r}, which has no price row "
                    f"and which {price_source.NAME} does not know; add a row for {target!r} or "
                    "point the alias at a priced model"
                )

    def _resolve_name(self, name: str) -> tuple[str | None, types.ModelInfo | None]:
        """(the user's row, the library's model) that price `name`; both None: unpriced."""
        rows, aliases = self.user.rows, self.user.aliases
        if name in rows:
            return name, price_source.find_model(name)
        if name in aliases:
            return self._resolve(aliases[name])
        library = price_source.find_model(name)
        if (match := _SNAPSHOT_SUFFIX.match(name)) and match["alias"] in rows:
            undated = price_source.find_model(match["alias"])
            if library is None or library is undated:
                return match["alias"], library or undated
        return None, library

    def lookup(self, model: str | None, when: datetime | None = None) -> Price | None:
        """The price of `model` for a request at `when` (None: now)."""
        if not model:
            return None
        row_name, library = self._resolve(model.removeprefix("openai/"))
        period = price_source.period_of(library, when or datetime.now(UTC)) if library else 0
        key = (row_name, library.id if library else None, period)
        if key not in self._prices:
            row = self.user.rows[row_name] if row_name is not None else None
            rates = price_source.rates(library, period) if library else None
            self._prices[key] = _price(row, rates, self.user.origin)
        return self._prices[key]
