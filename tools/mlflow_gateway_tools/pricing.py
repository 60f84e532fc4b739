"""Model prices (data in pricing.yaml, overridable by a user file) and the cost formula."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

TOKENS_PER_PRICE_UNIT = Decimal(1_000_000)
PRICE_FIELDS = ("input", "cached_input", "output")
ROW_FIELDS = (*PRICE_FIELDS, "source", "as_of")

# gpt-4o-mini-2024-07-18, gpt-4-0613, gpt-3.5-turbo-0125 -> gpt-4o-mini, gpt-4, gpt-3.5-turbo
_SNAPSHOT_SUFFIX = re.compile(r"^(?P<alias>.+?)-(?:\d{4}-\d{2}-\d{2}|\d{4})$")


class PricingError(ValueError):
    """A pricing file that cannot be used; the message names the file, model and field."""


@dataclass(frozen=True)
class Price:
    """USD per 1M tokens for one model row."""

    model: str
    input: Decimal
    cached_input: Decimal
    output: Decimal
    source: str | None = None
    as_of: str | None = None

    def cost(self, prompt_tokens: int, cached_tokens: int, completion_tokens: int) -> Decimal:
        """(prompt - cached) x input + cached x cached_input + completion x output.

        `prompt_tokens` already includes the cached ones and `completion_tokens` already
        includes reasoning tokens, which is how OpenAI reports (and bills) them.
        """
        cached = min(cached_tokens, prompt_tokens)
        micro_usd = (
            (prompt_tokens - cached) * self.input
            + cached * self.cached_input
            + completion_tokens * self.output
        )
        return micro_usd / TOKENS_PER_PRICE_UNIT


class PriceTable:
    """Rows by model name plus alias resolution; see pricing.yaml for the rules."""

    def __init__(self, rows: Mapping[str, Price], aliases: Mapping[str, str]) -> None:
        self.rows = dict(rows)
        self.aliases = dict(aliases)
        self.lookup = lru_cache(maxsize=4096)(self._lookup)

    @classmethod
    def load(cls, override: Path | None = None) -> PriceTable:
        """The packaged prices, merged with a user file when one is given."""
        packaged = resources.files(__package__).joinpath("pricing.yaml").read_text()
        raw_rows, raw_aliases = _read_document(yaml.safe_load(packaged), "packaged pricing.yaml")
        if override is not None:
            extra_rows, extra_aliases = _read_document(_load_yaml_file(override), str(override))
            for model, fields in extra_rows.items():
                raw_rows[model] = {**raw_rows.get(model, {}), **fields}
            raw_aliases.update(extra_aliases)
        origin = str(override) if override else "packaged pricing.yaml"
        rows = {model: _build_price(model, fields, origin) for model, fields in raw_rows.items()}
        for alias, target in raw_aliases.items():
            if target not in rows:
                raise PricingError(
                    f"{origin}: alias {alias!r} points to {target!r}, which has no price row; "
                    f"add a row for {target!r} or point the alias at one of: {', '.join(rows)}"
                )
        return cls(rows, raw_aliases)

    def _lookup(self, model: str | None) -> Price | None:
        if not model:
            return None
        name = model.removeprefix("openai/")
        if name in self.rows:
            return self.rows[name]
        if name in self.aliases:
            return self.rows[self.aliases[name]]
        if match := _SNAPSHOT_SUFFIX.match(name):
            return self._lookup(match["alias"])
        return None


def _load_yaml_file(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as error:
        raise PricingError(
            f"cannot read pricing file {path}: {error.strerror}; pass an existing YAML file"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise PricingError(f"pricing file {path} is not valid YAML: {error}") from None


def _read_document(document: Any, origin: str) -> tuple[dict[str, dict], dict[str, str]]:
    if not isinstance(document, Mapping) or not isinstance(document.get("models"), Mapping):
        raise PricingError(
            f"{origin}: expected a mapping with a `models:` section "
            "(models: {gpt-4o: {input: 2.5, cached_input: 1.25, output: 10}})"
        )
    rows: dict[str, dict] = {}
    for model, fields in document["models"].items():
        if not isinstance(fields, Mapping):
            raise PricingError(
                f"{origin}: model {model!r} must map to fields like input/output, got {fields!r}"
            )
        unknown = sorted(set(fields) - set(ROW_FIELDS))
        if unknown:
            raise PricingError(
                f"{origin}: model {model!r} has unknown field(s) {', '.join(map(str, unknown))}; "
                f"allowed: {', '.join(ROW_FIELDS)}"
            )
        rows[str(model)] = dict(fields)
    aliases = document.get("aliases") or {}
    if not isinstance(aliases, Mapping):
        raise PricingError(f"{origin}: `aliases` must map a name to a priced model name")
    return rows, {str(alias): str(target) for alias, target in aliases.items()}


def _decimal_field(model: str, fields: Mapping[str, Any], field: str, origin: str) -> Decimal:
    value = fields[field]
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise PricingError(
            f"{origin}: model {model!r} field {field!r} must be a number >= 0 "
            f"(USD per 1M tokens), got {value!r}"
        )
    return Decimal(str(value))


def _build_price(model: str, fields: Mapping[str, Any], origin: str) -> Price:
    if "input" not in fields:
        raise PricingError(
            f"{origin}: model {model!r} has no `input` price; a new model needs at least "
            "input (and output unless it is an embedding model)"
        )
    input_price = _decimal_field(model, fields, "input", origin)
    present = {field for field in PRICE_FIELDS if fields.get(field) is not None}
    return Price(
        model=model,
        input=input_price,
        cached_input=_decimal_field(model, fields, "cached_input", origin)
        if "cached_input" in present
        else input_price,
        output=_decimal_field(model, fields, "output", origin)
        if "output" in present
        else Decimal(0),
        source=str(fields["source"]) if fields.get("source") is not None else None,
        as_of=str(fields["as_of"]) if fields.get("as_of") is not None else None,
    )
