"""Prices: hand-computed costs of current models, the library's rules checked against OpenAI's,
price periods, long-context tiers, the user's file in front, and one lookup per price period.

Hand computations are in micro-USD: tokens x USD per 1M tokens (OpenAI's published prices,
the same as genai-prices 0.2.3's unless a comment says otherwise).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import genai_prices
import pytest
import yaml

from mlflow_gateway_tools import price_source, pricing
from mlflow_gateway_tools.costs.aggregate import Aggregator, UsageRecord
from mlflow_gateway_tools.pricing import PriceTable, PricingError

ROOT = Path(__file__).resolve().parents[2]
NOV_2026 = datetime(2026, 11, 27, 10, tzinfo=UTC)


@pytest.fixture(scope="module")
def prices() -> PriceTable:
    return PriceTable.load()


def cost(
    prices: PriceTable,
    model: str,
    prompt: int,
    cached: int,
    completion: int,
    *,
    when: datetime = NOV_2026,
) -> Decimal:
    price = prices.lookup(model, when)
    assert price is not None, f"{model} should be priced"
    return price.cost(prompt, cached, completion)


# (model, (prompt, cached, completion), expected USD). Completion counts include reasoning
# tokens, as OpenAI reports them: the reasoning share is in the comment and is not added again.
CURRENT_MODELS = [
    # gpt-5-nano 0.05 / 0.005 cached / 0.40: 6000 x 0.05 + 4000 x 0.005 + 3000 x 0.40
    # = 300 + 20 + 1200 = 1520 (2500 of the 3000 completion tokens are reasoning)
    ("gpt-5-nano-2025-08-07", (10_000, 4_000, 3_000), "0.00152"),
    # gpt-5-mini 0.25 / 0.025 / 2.00: 3000 x 0.25 + 1000 x 0.025 + 2000 x 2 = 750 + 25 + 4000
    ("gpt-5-mini-2025-08-07", (4_000, 1_000, 2_000), "0.004775"),
    # gpt-5.1 1.25 / 0.125 / 10: 12000 x 1.25 + 8000 x 0.125 + 1000 x 10 = 15000 + 1000 + 10000
    ("gpt-5.1-2025-11-13", (20_000, 8_000, 1_000), "0.026"),
    # gpt-5.2 1.75 / 0.175 / 14: 8000 x 1.75 + 2000 x 0.175 + 500 x 14 = 14000 + 350 + 7000
    ("gpt-5.2-2025-12-11", (10_000, 2_000, 500), "0.02135"),
    # gpt-4.1-nano 0.10 / 0.025 / 0.40: 40000 x 0.1 + 60000 x 0.025 + 2000 x 0.4 = 4000+1500+800
    ("gpt-4.1-nano-2025-04-14", (100_000, 60_000, 2_000), "0.0063"),
    # gpt-4.1-mini 0.40 / 0.10 / 1.60: 900 x 0.4 + 100 x 0.1 + 200 x 1.6 = 360 + 10 + 320
    ("gpt-4.1-mini-2025-04-14", (1_000, 100, 200), "0.00069"),
    # o3-mini 1.10 / 0.55 / 4.40: 3976 x 1.1 + 1024 x 0.55 + 4000 x 4.4
    # = 4373.6 + 563.2 + 17600 = 22536.8 (3500 reasoning)
    ("o3-mini-2025-01-31", (5_000, 1_024, 4_000), "0.0225368"),
    # o4-mini 1.10 / 0.275 / 4.40: 1000 x 1.1 + 1000 x 0.275 + 1000 x 4.4 = 1100 + 275 + 4400
    ("o4-mini-2025-04-16", (2_000, 1_000, 1_000), "0.005775"),
    # o3 since 2025-06-10 2 / 0.50 / 8: 50 x 2 + 50 x 0.5 + 900 x 8 = 100 + 25 + 7200
    ("o3-2025-04-16", (100, 50, 900), "0.007325"),
    # gpt-5-pro has no cached price: cached tokens cost input. 1000 x 15 + 100 x 120
    ("gpt-5-pro-2025-10-06", (1_000, 500, 100), "0.027"),
    # embeddings: input only. 1000 x 0.02
    ("text-embedding-3-small", (1_000, 0, 0), "0.00002"),
    # the default completions model, davinci-002: 2 / 2. 1000 x 2 + 500 x 2
    ("davinci-002", (1_000, 0, 500), "0.003"),
    # older snapshots keep resolving: gpt-4o-mini 0.15 / 0.075 / 0.60:
    # 976 x 0.15 + 1024 x 0.075 + 300 x 0.6 = 146.4 + 76.8 + 180
    ("gpt-4o-mini-2024-07-18", (2_000, 1_024, 300), "0.0004032"),
    # the first gpt-4o snapshot kept its launch price 5 / 15 and has no cache discount
    ("gpt-4o-2024-05-13", (1_000, 0, 100), "0.0065"),
    ("gpt-4-0613", (100, 0, 100), "0.009"),  # 100 x 30 + 100 x 60
    ("gpt-3.5-turbo-instruct-0914", (1_000, 0, 500), "0.0025"),  # 1000 x 1.5 + 500 x 2
]


@pytest.mark.parametrize(("model", "tokens", "expected_usd"), CURRENT_MODELS)
def test_cost_matches_hand_computation(
    prices: PriceTable, model: str, tokens: tuple[int, int, int], expected_usd: str
) -> None:
    assert cost(prices, model, *tokens) == Decimal(expected_usd)


@pytest.mark.parametrize(("model", "tokens", "expected_usd"), CURRENT_MODELS)
def test_the_library_reads_usage_as_openai_bills_it(
    model: str, tokens: tuple[int, int, int], expected_usd: str
) -> None:
    """genai-prices given OpenAI's counts as they come (prompt including cached, completion
    including reasoning) agrees with the hand computation: it neither adds reasoning tokens
    again nor bills cached ones twice. If an upgrade changes that, this fails first."""
    prompt, cached, completion = tokens
    usage = genai_prices.Usage(
        input_tokens=prompt,
        cache_read_tokens=cached,
        output_tokens=completion,
        output_reasoning_tokens=completion // 2,
    )
    calculated = genai_prices.calc_price(
        usage, model, provider_id="openai", genai_request_timestamp=NOV_2026
    )
    assert calculated.total_price == Decimal(expected_usd)


def test_long_context_bills_the_whole_request_at_the_tier(prices: PriceTable) -> None:
    # gpt-5.4: 2.50 / 0.25 / 15, and above 272K prompt tokens 5 / 0.50 / 22.50 for all of it.
    # 200000 x 2.5 + 1000 x 15 = 500000 + 15000
    assert cost(prices, "gpt-5.4", 200_000, 0, 1_000) == Decimal("0.515")
    # 200000 x 5 + 100000 x 0.5 + 1000 x 22.5 = 1000000 + 50000 + 22500
    assert cost(prices, "gpt-5.4", 300_000, 100_000, 1_000) == Decimal("1.0725")


def test_summed_requests_keep_their_own_tier(prices: PriceTable) -> None:
    """Two 200K-token requests are each below the tier; their 400K sum must not cross it."""
    aggregator = Aggregator()
    for ts in ("2026-11-27T10:00:00.000Z", "2026-11-27T10:05:00.000Z"):
        aggregator.add(UsageRecord(ts, "gpt-5.4", "chat", None, 200, False, 200_000, 1_000))
    aggregator.add(
        UsageRecord("2026-11-27T10:09:00.000Z", "gpt-5.4", "chat", None, 200, False, 300_000, 0)
    )
    # 2 x 0.515 + 300000 x 5 / 1M = 1.03 + 1.5
    assert aggregator.report(prices).cost == Decimal("2.53")


def test_every_tier_in_the_data_is_one_the_aggregation_splits_at() -> None:
    assert price_source.tier_starts_in_data() <= set(pricing.TIER_STARTS)


def test_a_period_across_a_price_change_is_billed_on_both_sides(prices: PriceTable) -> None:
    # gpt-5.6-luna: 1 / 6 until OpenAI's 80 % cut of 2026-07-30, then 0.20 / 1.20.
    aggregator = Aggregator()
    for ts in ("2026-07-29T23:59:59.999Z", "2026-07-30T00:00:00.000Z"):
        aggregator.add(UsageRecord(ts, "gpt-5.6-luna", "chat", None, 200, False, 1_000, 1_000))
    report = aggregator.report(prices)
    # before: 1000 x 1 + 1000 x 6 = 7000; after: 1000 x 0.2 + 1000 x 1.2 = 1400
    assert report.cost == Decimal("0.0084")
    assert [cost for _hour, _model, cost in report.timeline] == [
        Decimal("0.007"),
        Decimal("0.0014"),
    ]
    assert [item.cost for item in report.requests] == [Decimal("0.007"), Decimal("0.0014")]


def test_o3_launch_period_cached_price_is_corrected(prices: PriceTable) -> None:
    """genai-prices 0.2.3 has o3's pre-2025-06-10 cached input at the later $0.50; OpenAI's
    launch price was $2.50 (price_source.CORRECTIONS). 600 x 10 + 400 x 2.50 + 100 x 40."""
    may_2025 = datetime(2025, 5, 1, tzinfo=UTC)
    assert cost(prices, "o3-2025-04-16", 1_000, 400, 100, when=may_2025) == Decimal("0.011")
    library = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=1_000, cache_read_tokens=400, output_tokens=100),
        "o3",
        provider_id="openai",
        genai_request_timestamp=may_2025,
    )
    assert library.total_price == Decimal("0.0102"), "fixed upstream? drop the correction"


def test_every_model_the_deploy_configures_by_default_is_priced(prices: PriceTable) -> None:
    """Otherwise the first evaluation after a default deploy shows NO PRICE for it."""
    defaults = ROOT / "roles" / "gateway" / "defaults" / "main.yml"
    endpoints = yaml.safe_load(defaults.read_text())["gateway_endpoints"]
    unpriced = [e["model"] for e in endpoints if prices.lookup(e["model"]) is None]
    assert unpriced == []
    assert len(endpoints) == 3


def test_unknown_model_is_unpriced_not_free(prices: PriceTable) -> None:
    assert prices.lookup("my-local-llama") is None
    assert prices.lookup("gpt-9-ultra-2031-01-01") is None
    assert prices.lookup("whisper-1") is None  # priced per audio hour, not per token
    assert prices.lookup(None) is None


def test_unknown_model_is_reported_unpriced_not_zero(prices: PriceTable) -> None:
    aggregator = Aggregator()
    aggregator.add(UsageRecord(None, "my-local-llama", "chat", None, 200, False, 1_000, 10))
    aggregator.add(UsageRecord(None, "gpt-4.1-nano", "chat", None, 200, False, 1_000, 10))
    report = aggregator.report(prices)
    assert [row.key for row in report.unpriced] == ["my-local-llama"]
    assert report.price_rows["my-local-llama"] is None
    assert report.cost == Decimal("0.000104")  # 1000 x 0.1 + 10 x 0.4: the priced one only


def test_closest_known_names_for_a_typo() -> None:
    assert price_source.closest_names("gpt-4.1-mni")[0] == "gpt-4.1-mini"
    assert price_source.find_model("gpt-4.1-mni") is None


def test_override_file_wins_changes_one_field_and_adds_models(tmp_path: Path) -> None:
    override = tmp_path / "prices.yaml"
    override.write_text(
        "models:\n"
        "  gpt-4o: {output: 12.0}\n"
        "  gpt-5-nano: {input: 0.04, cached_input: 0.004, output: 0.32}\n"
        "  my-model: {input: 1.0, output: 2.0}\n"
        "aliases:\n"
        "  azure-prod-chat: gpt-4o\n"
    )
    prices = PriceTable.load(override)
    gpt4o = prices.lookup("gpt-4o-2024-11-20")
    assert gpt4o is not None
    assert (gpt4o.input, gpt4o.cached_input, gpt4o.output) == (
        Decimal("2.5"),  # from the library
        Decimal("1.25"),
        Decimal("12.0"),  # from the file
    )
    assert prices.lookup("azure-prod-chat") is gpt4o
    # A negotiated price wins over the library's for the dated snapshot too:
    # 6000 x 0.04 + 4000 x 0.004 + 3000 x 0.32 = 240 + 16 + 960
    assert cost(prices, "gpt-5-nano-2025-08-07", 10_000, 4_000, 3_000) == Decimal("0.001216")
    assert cost(prices, "my-model", 1_000_000, 0, 1_000_000) == Decimal(3)
    # gpt-4o-2024-05-13 is its own model in the library: the gpt-4o row does not reach it
    assert cost(prices, "gpt-4o-2024-05-13", 1_000, 0, 100) == Decimal("0.0065")
    assert prices.source()["overrides"] == str(override)


def test_an_override_is_flat_across_price_periods(tmp_path: Path) -> None:
    override = tmp_path / "prices.yaml"
    override.write_text("models:\n  gpt-5.6-luna: {input: 0.5, output: 3}\n")
    prices = PriceTable.load(override)
    before, after = datetime(2026, 7, 29, tzinfo=UTC), datetime(2026, 7, 31, tzinfo=UTC)
    for when in (before, after):  # 1000 x 0.5 + 1000 x 3
        assert cost(prices, "gpt-5.6-luna", 1_000, 0, 1_000, when=when) == Decimal("0.0035")


def test_lookups_are_made_once_per_model_and_price_period(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = {"find_model": 0, "rates": 0}

    def counted(name: str) -> object:
        original = getattr(price_source, name)

        def wrapper(*args: object) -> object:
            calls[name] += 1
            return original(*args)

        return wrapper

    for name in calls:
        monkeypatch.setattr(price_source, name, counted(name))
    table = PriceTable()  # a fresh one: nothing cached yet
    aggregator = Aggregator()
    for index in range(20_000):  # 48 hours across luna's price change, 3 clients, 2 models
        hour = index % 48
        day = 29 + hour // 24
        ts = f"2026-07-{day}T{hour % 24:02d}:{index % 60:02d}:00.000Z"
        model = ("gpt-5.6-luna", "gpt-4.1-mini-2025-04-14")[index % 2]
        client = ("a", "b", "c")[index % 3]
        aggregator.add(UsageRecord(ts, model, "chat", client, 200, False, 100, 10))
    report = aggregator.report(table)
    assert report.totals.requests == 20_000
    assert calls == {"find_model": 2, "rates": 3}  # luna twice (two periods), gpt-4.1-mini once


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


def test_the_price_source_is_named_with_its_version(prices: PriceTable) -> None:
    source = prices.source()
    assert source["name"] == "genai-prices"
    assert source["version"] == genai_prices.__version__
    assert source["latest_price_change"] >= "2026-10-01"
    assert source["overrides"] is None


def test_price_check_names_unknown_models_with_the_closest_known(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    from mlflow_gateway_tools import price_check

    assert price_check.main(["gpt-4.1-mini", "gpt-4.1-mni", "gpt-4.1-mni", "davinci-002"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["source"] == f"genai-prices {genai_prices.__version__}"
    assert [entry["model"] for entry in result["unknown"]] == ["gpt-4.1-mni"]
    assert result["unknown"][0]["closest"][0] == "gpt-4.1-mini"
