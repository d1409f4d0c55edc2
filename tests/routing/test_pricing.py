"""The price book's rules, each checked against hand arithmetic (USD per 1M tokens)."""

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing.pricing import (
    NO_PRICE,
    PriceRow,
    ServiceTier,
    TokenUsage,
    call_cost_usd,
    ledger_costs,
    price_on,
    price_row_from_json,
    price_row_json,
    price_tokens,
    savings_percent,
    served_tier,
)

D = Decimal
MINI = PriceRow(D("0.15"), D("0.075"), D("0.60"))
FULL = PriceRow(D("2.50"), D("1.25"), D("10.00"))
# A model of the newer kind: cache reads at 10%, writes at 1.25x (5 min) and 2x (1 h) input,
# reasoning at its own price, 2x input / 1.5x output above 200k input tokens, flex at half,
# priority at 1.8x.
RICH = PriceRow(
    D("3.00"),
    D("0.30"),
    D("15.00"),
    cache_write_5m_per_mtok_usd=D("3.75"),
    cache_write_1h_per_mtok_usd=D("6.00"),
    reasoning_per_mtok_usd=D("20.00"),
    long_context_threshold_tokens=200_000,
    long_context_input_multiplier=D("2"),
    long_context_output_multiplier=D("1.5"),
    batch_multiplier=D("0.5"),
    flex_multiplier=D("0.5"),
    priority_multiplier=D("1.8"),
)


def test_cached_tokens_are_billed_once_at_the_cached_rate():
    # given 2,000 prompt tokens of which 1,024 cached (OpenAI counts them inside prompt_tokens)
    lines = price_tokens(FULL, TokenUsage(2000, 300, cached_tokens=1024))
    # then: 976 x 2.50, 1024 x 1.25, 300 x 10.00, per million
    assert lines.input_usd == D("0.00244")
    assert lines.cached_usd == D("0.00128")
    assert lines.output_usd == D("0.003")
    assert lines.total_usd == D("0.00672")


def test_a_90_percent_cache_discount_comes_from_the_row():
    lines = price_tokens(RICH, TokenUsage(10_000, 0, cached_tokens=8_000))
    # 2,000 x 3.00 + 8,000 x 0.30
    assert (lines.input_usd, lines.cached_usd) == (D("0.006"), D("0.0024"))


def test_cache_writes_bill_per_lifetime():
    usage = TokenUsage(10_000, 0, cache_write_5m_tokens=4_000, cache_write_1h_tokens=1_000)
    lines = price_tokens(RICH, usage)
    # 5,000 plain x 3.00 = 0.015; 4,000 x 3.75 + 1,000 x 6.00 = 0.015 + 0.006
    assert lines.input_usd == D("0.015")
    assert lines.cache_write_usd == D("0.021")
    assert lines.total_usd == D("0.036")


def test_without_a_cache_write_price_writes_bill_as_input():
    lines = price_tokens(FULL, TokenUsage(10_000, 0, cache_write_5m_tokens=4_000))
    # OpenAI: 6,000 x 2.50 plain, 4,000 x 2.50 written
    assert (lines.input_usd, lines.cache_write_usd) == (D("0.015"), D("0.01"))


def test_reasoning_at_its_own_price_or_as_output():
    usage = TokenUsage(1_000, 1_500, reasoning_tokens=1_000)
    own = price_tokens(RICH, usage)
    # 500 visible x 15.00 = 0.0075; 1,000 reasoning x 20.00 = 0.02; 1,000 in x 3.00 = 0.003
    assert (own.output_usd, own.reasoning_usd, own.total_usd) == (
        D("0.0075"),
        D("0.02"),
        D("0.0305"),
    )
    as_output = price_tokens(FULL, usage)
    # 500 x 10.00 and 1,000 x 10.00
    assert (as_output.output_usd, as_output.reasoning_usd) == (D("0.005"), D("0.01"))


def test_long_context_multiplies_the_whole_request_above_the_threshold():
    usage = TokenUsage(250_000, 2_000, cached_tokens=50_000, reasoning_tokens=1_000)
    lines = price_tokens(RICH, usage)
    # listed: 200,000 x 3.00 = 0.6; 50,000 x 0.30 = 0.015; 1,000 x 15 = 0.015; 1,000 x 20 = 0.02
    # surcharge: (0.6 + 0.015) x (2 - 1) + (0.015 + 0.02) x (1.5 - 1) = 0.615 + 0.0175
    assert lines.long_context_usd == D("0.6325")
    assert lines.total_usd == D("0.6") + D("0.015") + D("0.015") + D("0.02") + D("0.6325")


def test_at_the_threshold_no_surcharge():
    assert price_tokens(RICH, TokenUsage(200_000, 10)).long_context_usd == 0


@pytest.mark.parametrize(
    ("tier", "effect"),
    [
        (ServiceTier.DEFAULT, D("0")),
        (ServiceTier.FLEX, D("-0.0105")),  # 0.021 x (0.5 - 1)
        (ServiceTier.PRIORITY, D("0.0168")),  # 0.021 x (1.8 - 1)
        (ServiceTier.BATCH, D("-0.0105")),
    ],
)
def test_service_tier_multiplies_the_whole_bill(tier, effect):
    lines = price_tokens(RICH, TokenUsage(2_000, 1_000), tier=tier)
    # listed: 2,000 x 3.00 + 1,000 x 15.00 = 0.021
    assert lines.tier_usd == effect
    assert lines.total_usd == D("0.021") + effect


def test_batch_reads_the_cache_at_the_input_price():
    lines = price_tokens(MINI, TokenUsage(2_000, 0, cached_tokens=1_000), tier=ServiceTier.BATCH)
    # 1,000 x 0.15 + 1,000 x 0.15 (not 0.075) = 0.0003, half off
    assert (lines.cached_usd, lines.tier_usd, lines.total_usd) == (
        D("0.00015"),
        D("-0.00015"),
        D("0.00015"),
    )


def test_long_context_and_tier_compose():
    lines = price_tokens(RICH, TokenUsage(300_000, 0), tier=ServiceTier.FLEX)
    # 300,000 x 3.00 = 0.9, doubled = 1.8, flex halves it: -0.9
    assert (lines.long_context_usd, lines.tier_usd, lines.total_usd) == (
        D("0.9"),
        D("-0.9"),
        D("0.9"),
    )


def test_ledger_costs_keep_the_undiscounted_amounts_beside_the_bill():
    # given a call with writes, reads and reasoning on RICH, against FULL as baseline
    usage = TokenUsage(
        10_000, 2_000, cached_tokens=4_000, cache_write_5m_tokens=2_000, reasoning_tokens=500
    )
    costs = ledger_costs(price=RICH, baseline=FULL, usage=usage, tier=ServiceTier.FLEX)
    # bill: 4,000 x 3 + 4,000 x 0.30 + 2,000 x 3.75 + 1,500 x 15 + 500 x 20 = 0.0532, flex halves
    assert costs.lines.total_usd == costs.cost_usd == D("0.0266")
    # uncached: no cache, default tier: 10,000 x 3 + 1,500 x 15 + 500 x 20 = 0.0625
    assert costs.uncached_cost_usd == D("0.0625")
    # baseline (FULL, reasoning as its output): 10,000 x 2.50 + 2,000 x 10.00 = 0.045
    assert costs.baseline_cost_usd == D("0.045")


def test_a_free_answer_costs_nothing_but_keeps_what_it_would_have_cost():
    costs = ledger_costs(price=MINI, baseline=FULL, usage=TokenUsage(1000, 500), free=True)
    assert costs.cost_usd == 0 and costs.lines.total_usd == 0
    assert costs.uncached_cost_usd == D("0.00045")
    assert costs.baseline_cost_usd == D("0.0075")


def test_single_cached_token_keeps_its_fraction_of_a_cent():
    assert price_tokens(MINI, TokenUsage(1, 0, cached_tokens=1)).total_usd == D("0.000000075")


def test_impossible_counts_are_refused():
    with pytest.raises(ValueError):
        TokenUsage(10, 0, cached_tokens=6, cache_write_5m_tokens=5)
    with pytest.raises(ValueError):
        TokenUsage(10, 5, reasoning_tokens=6)
    with pytest.raises(ValueError):
        call_cost_usd(
            input_per_mtok_usd=D(1), cached_input_per_mtok_usd=D(1), output_per_mtok_usd=D(1),
            input_tokens=10, cached_tokens=11, output_tokens=0,
        )  # fmt: skip


@given(
    input_tokens=st.integers(0, 400_000),
    shares=st.tuples(st.floats(0, 0.5), st.floats(0, 0.25), st.floats(0, 0.25)),
    output_tokens=st.integers(0, 16_000),
    reasoning_share=st.floats(0, 1),
    tier=st.sampled_from(list(ServiceTier)),
)
def test_line_items_sum_to_the_bill_and_match_exact_arithmetic(
    input_tokens, shares, output_tokens, reasoning_share, tier
):
    cached, w5, w1 = (int(input_tokens * s) for s in shares)
    reasoning = int(output_tokens * reasoning_share)
    usage = TokenUsage(input_tokens, output_tokens, cached, w5, w1, reasoning)
    lines = price_tokens(RICH, usage, tier=tier)
    cached_price = RICH.input_per_mtok_usd if tier is ServiceTier.BATCH else D("0.30")
    in_side = (input_tokens - cached - w5 - w1) * D(3) + cached * cached_price
    in_side += w5 * D("3.75") + w1 * D(6)
    out_side = (output_tokens - reasoning) * D(15) + reasoning * D(20)
    if input_tokens > 200_000:
        in_side, out_side = in_side * 2, out_side * D("1.5")
    exact = (in_side + out_side) * RICH.tier_multiplier(tier) / D(1_000_000)
    # every line is rounded to 10 places, so the sum is within 7 half-units of exact
    assert abs(lines.total_usd - exact) <= D("0.00000000035")


def test_the_row_in_force_is_the_newest_effective_on_the_day():
    old = PriceRow(D(1), D(1), D(1), effective_from=date(2026, 1, 1), id=1)
    new = PriceRow(D(2), D(1), D(2), effective_from=date(2026, 6, 1), id=2)
    assert price_on([new, old], date(2026, 5, 31)) is old
    assert price_on([new, old], date(2026, 6, 1)) is new
    assert price_on([new, old], date(2025, 1, 1)) is old  # before them all: the oldest
    assert price_on([], date(2026, 1, 1)) is NO_PRICE


def test_price_rows_survive_json():
    assert price_row_from_json(price_row_json(RICH)) == RICH


def test_served_tier_reads_the_providers_word():
    assert served_tier("flex") is ServiceTier.FLEX
    assert served_tier("priority") is ServiceTier.PRIORITY
    assert served_tier("auto") is ServiceTier.DEFAULT
    assert served_tier(None) is ServiceTier.DEFAULT


def test_savings_percent():
    assert savings_percent(cost_usd=D("17"), baseline_usd=D("100")) == D("83.0")
    assert savings_percent(cost_usd=D("0"), baseline_usd=D("0")) == D("0.0")
