"""The example files in templates/ are what the tools accept: copying one is a working start."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from mlflow_gateway_tools.evaluate.cases import KINDS, load_cases
from mlflow_gateway_tools.pricing import PriceTable

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
ENDPOINTS = {"chat": "chat", "completions": "completions", "embeddings": "embeddings"}


def test_the_example_test_cases_load_and_cover_every_kind() -> None:
    cases = load_cases(TEMPLATES / "test_cases.example.yaml", ENDPOINTS)
    assert {case.kind for case in cases} == set(KINDS)
    assert len({case.name for case in cases}) == len(cases)


def test_the_example_pricing_overrides_extends_and_aliases() -> None:
    library = PriceTable.load()
    example = PriceTable.load(TEMPLATES / "pricing.example.yaml")
    override = example.lookup("gpt-4.1-mini-2025-04-14")
    assert override is not None
    assert override.input != library.lookup("gpt-4.1-mini").input  # type: ignore[union-attr]
    fine_tuned = "ft:gpt-4.1-mini-2025-04-14:acme::example"
    assert library.lookup(fine_tuned) is None
    added = example.lookup(fine_tuned)
    assert added is not None
    assert added.cost(1_000_000, 0, 1_000_000) == Decimal("4.0")  # 0.80 + 3.20
    assert example.lookup("my-chat-deployment") == override
