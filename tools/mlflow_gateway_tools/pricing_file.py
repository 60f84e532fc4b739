"""Read and check a user's pricing file (--pricing FILE, gateway_evaluate_pricing_file).

One job: YAML in, validated rows and aliases out, or a PricingError naming the file, the model
and the field. What the rows mean next to the library's prices is pricing.py's business.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from mlflow_gateway_tools.cli_support import CommandError
from mlflow_gateway_tools.input_files import read_text

PRICE_FIELDS = ("input", "cached_input", "output")
ROW_FIELDS = (*PRICE_FIELDS, "source", "as_of")


class PricingError(CommandError, ValueError):
    """A price that cannot be used; the message names the file, model and field (a
    CommandError: a CLI that meets one prints it as one line)."""


@dataclass(frozen=True)
class Row:
    """One model of a pricing file: the prices it sets (USD per 1M tokens), None = not set."""

    model: str
    input: Decimal | None
    cached_input: Decimal | None
    output: Decimal | None
    source: str | None
    as_of: str | None

    @property
    def complete(self) -> bool:
        """Prices a model the library does not know (it needs at least an input price)."""
        return self.input is not None


@dataclass(frozen=True)
class PricingFile:
    origin: str
    rows: Mapping[str, Row]
    aliases: Mapping[str, str]


def load(path: Path) -> PricingFile:
    rows, aliases = _read_document(_load_yaml_file(path), str(path))
    return PricingFile(str(path), rows, aliases)


def _load_yaml_file(path: Path) -> Any:
    text = read_text(
        path, "pricing file", "pass an existing YAML file", PricingError, "save it as UTF-8 YAML"
    )
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise PricingError(f"pricing file {path} is not valid YAML: {error}") from None


def _read_document(document: Any, origin: str) -> tuple[dict[str, Row], dict[str, str]]:
    if not isinstance(document, Mapping) or not isinstance(document.get("models"), Mapping):
        raise PricingError(
            f"{origin}: expected a mapping with a `models:` section "
            "(models: {gpt-4.1-mini: {input: 0.4, cached_input: 0.1, output: 1.6}})"
        )
    rows: dict[str, Row] = {}
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
        rows[str(model)] = _row(str(model), fields, origin)
    aliases = document.get("aliases") or {}
    if not isinstance(aliases, Mapping):
        raise PricingError(f"{origin}: `aliases` must map a name to a priced model name")
    return rows, {str(alias): str(target) for alias, target in aliases.items()}


def _decimal_field(model: str, fields: Mapping[str, Any], field: str, origin: str) -> Decimal:
    value = fields[field]
    # YAML's .nan and .inf are floats too: a NaN price would make every total NaN.
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise PricingError(
            f"{origin}: model {model!r} field {field!r} must be a number >= 0 "
            f"(USD per 1M tokens), got {value!r}"
        )
    return Decimal(str(value))


def _row(model: str, fields: Mapping[str, Any], origin: str) -> Row:
    prices = {
        field: _decimal_field(model, fields, field, origin)
        if fields.get(field) is not None
        else None
        for field in PRICE_FIELDS
    }
    return Row(
        model=model,
        **prices,
        source=str(fields["source"]) if fields.get("source") is not None else None,
        as_of=str(fields["as_of"]) if fields.get("as_of") is not None else None,
    )
