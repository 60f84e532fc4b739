"""The cost formula on hand-computed cases, snapshot names, and the pricing override file."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from mlflow_gateway_tools.pricing import PriceTable, PricingError


@pytest.fixture(scope="module")
def prices() -> PriceTable:
    return PriceTable.load()


def cost(prices: PriceTable, model: str, prompt: int, cached: int, completion: int) -> Decimal:
    price = prices.lookup(model)
    assert price is not None, f"{model} should be priced"
    return price.cost(prompt, cached, completion)


@pytest.mark.parametrize(
    ("model", "tokens", "expected_usd"),
    [
        # (1000-400) x 2.50 + 400 x 1.25 + 500 x 10.00 = 1500 + 500 + 5000 = 7000 micro-USD
        ("gpt-4o", (1000, 400, 500), "0.007"),
        # the seed's 5/15 belongs to the first snapshot, which has no cache discount
        ("gpt-4o-2024-05-13", (1000, 0, 100), "0.0065"),
        # snapshot -> alias: 976 x 0.15 + 1024 x 0.075 + 300 x 0.60 = 146.4 + 76.8 + 180
        ("gpt-4o-mini-2024-07-18", (2000, 1024, 300), "0.0004032"),
        ("gpt-4-0613", (100, 0, 100), "0.009"),  # 100 x 30 + 100 x 60
        ("gpt-3.5-turbo-0125", (1_000_000, 0, 1_000_000), "2.00"),  # 0.50 + 1.50
        ("gpt-3.5-turbo-instruct", (1_000_000, 0, 1_000_000), "3.50"),  # 1.50 + 2.00
        ("gpt-3.5-turbo-instruct-0914", (1000, 0, 500), "0.0025"),  # 1000 x 1.50 + 500 x 2
        ("gpt-4-turbo-2024-04-09", (10, 0, 10), "0.0004"),
        # reasoning tokens are inside completion_tokens; they are not added again
        ("o3-2025-04-16", (100, 50, 900), "0.007325"),  # 50 x 2 + 50 x 0.5 + 900 x 8
        ("o4-mini", (1000, 0, 1000), "0.0055"),  # 1.10 + 4.40 per 1M, x 1000
        ("gpt-5-mini-2025-08-07", (1000, 1000, 0), "0.000025"),  # all cached: 1000 x 0.025
        ("gpt-4.1", (500, 0, 250), "0.003"),  # 500 x 2 + 250 x 8
        ("text-embedding-3-small", (1000, 0, 0), "0.00002"),
        ("text-embedding-3-large", (1000, 0, 0), "0.00013"),
    ],
)
def test_cost_matches_hand_computation(
    prices: PriceTable, model: str, tokens: tuple[int, int, int], expected_usd: str
) -> None:
    prompt, cached, completion = tokens
    assert cost(prices, model, prompt, cached, completion) == Decimal(expected_usd)


def test_cached_tokens_are_cheaper_than_uncached(prices: PriceTable) -> None:
    assert cost(prices, "gpt-4o", 1000, 1000, 0) == cost(prices, "gpt-4o", 1000, 0, 0) / 2


def test_model_without_cache_price_charges_cached_tokens_at_input_price(
    prices: PriceTable,
) -> None:
    assert cost(prices, "gpt-4", 1000, 600, 0) == cost(prices, "gpt-4", 1000, 0, 0)


def test_every_model_the_deploy_configures_by_default_is_priced(prices: PriceTable) -> None:
    """Otherwise the first evaluation after a default deploy shows NO PRICE for it."""
    defaults = Path(__file__).resolve().parents[2] / "roles" / "gateway" / "defaults" / "main.yml"
    endpoints = yaml.safe_load(defaults.read_text())["gateway_endpoints"]
    unpriced = [e["model"] for e in endpoints if prices.lookup(e["model"]) is None]
    assert unpriced == []
    assert len(endpoints) == 3


def test_unknown_model_is_unpriced_not_free(prices: PriceTable) -> None:
    assert prices.lookup("my-local-llama") is None
    assert prices.lookup("gpt-4-1106-preview") is None  # not a dated snapshot of a priced row
    assert prices.lookup(None) is None


def test_every_row_records_source_and_date(prices: PriceTable) -> None:
    for name, price in prices.rows.items():
        assert price.source and price.source.startswith("https://"), name
        assert price.as_of, name


def test_override_file_changes_one_field_and_adds_models(tmp_path: Path) -> None:
    override = tmp_path / "prices.yaml"
    override.write_text(
        "models:\n"
        "  gpt-4o: {output: 12.0}\n"
        "  my-model: {input: 1.0, output: 2.0}\n"
        "aliases:\n"
        "  azure-prod-chat: gpt-4o\n"
    )
    prices = PriceTable.load(override)
    gpt4o = prices.lookup("gpt-4o-2024-11-20")
    assert gpt4o is not None
    assert (gpt4o.input, gpt4o.cached_input, gpt4o.output) == (
        Decimal("2.5"),
        Decimal("1.25"),
        Decimal("12.0"),
    )
    assert prices.lookup("azure-prod-chat") is gpt4o
    assert cost(prices, "my-model", 1_000_000, 0, 1_000_000) == Decimal(3)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("models:\n  gpt-4o: {input: cheap}\n", "model 'gpt-4o' field 'input' must be a number"),
        ("models:\n  gpt-4o: {inptu: 1}\n", "unknown field(s) inptu"),
        ("models:\n  new-model: {output: 1}\n", "model 'new-model' has no `input` price"),
        ("models:\n  gpt-4o: {input: -1}\n", "must be a number >= 0"),
        ("prices: {}\n", "expected a mapping with a `models:` section"),
        ("models: [\n", "is not valid YAML"),
        ("models: {}\naliases: {x: nothing}\n", "alias 'x' points to 'nothing'"),
    ],
)
def test_bad_override_file_is_refused_with_the_field_named(
    tmp_path: Path, content: str, expected: str
) -> None:
    override = tmp_path / "prices.yaml"
    override.write_text(content)
    with pytest.raises(PricingError) as error:
        PriceTable.load(override)
    assert expected in str(error.value)
    assert str(override) in str(error.value)


def test_missing_override_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(PricingError, match=r"cannot read pricing file .*nope\.yaml"):
        PriceTable.load(tmp_path / "nope.yaml")
