from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing.pricing import (
    Prices,
    baseline_cost_usd,
    call_cost_usd,
    ledger_costs,
    savings_percent,
)

MINI = {
    "input_per_mtok_usd": Decimal("0.15"),
    "cached_input_per_mtok_usd": Decimal("0.075"),
    "output_per_mtok_usd": Decimal("0.60"),
}
FULL = {
    "input_per_mtok_usd": Decimal("2.50"),
    "cached_input_per_mtok_usd": Decimal("1.25"),
    "output_per_mtok_usd": Decimal("10.00"),
}


def test_cached_tokens_are_billed_once_at_the_cached_rate():
    # given 2,000 prompt tokens of which 1,024 cached (OpenAI counts them inside prompt_tokens)
    # when
    cost = call_cost_usd(**FULL, input_tokens=2000, cached_tokens=1024, output_tokens=300)
    # then: 976 x 2.50 + 1024 x 1.25 + 300 x 10.00, per million
    assert cost == Decimal("0.0067200000")


def test_mini_call_cost_is_exact():
    cost = call_cost_usd(**MINI, input_tokens=1000, cached_tokens=0, output_tokens=500)
    assert cost == Decimal("0.0004500000")


def test_single_cached_token_keeps_its_fraction_of_a_cent():
    cost = call_cost_usd(**MINI, input_tokens=1, cached_tokens=1, output_tokens=0)
    assert cost == Decimal("0.0000000750")


def test_baseline_ignores_cache_and_uses_premium_prices():
    baseline = baseline_cost_usd(
        input_per_mtok_usd=FULL["input_per_mtok_usd"],
        output_per_mtok_usd=FULL["output_per_mtok_usd"],
        input_tokens=2000,
        output_tokens=300,
    )
    assert baseline == Decimal("0.0080000000")


def test_more_cached_than_input_tokens_is_refused():
    with pytest.raises(ValueError):
        call_cost_usd(**MINI, input_tokens=10, cached_tokens=11, output_tokens=0)


@given(
    input_tokens=st.integers(0, 200_000),
    cached_share=st.floats(0, 1),
    output_tokens=st.integers(0, 16_000),
)
def test_cost_never_exceeds_uncached_cost_and_is_exact(input_tokens, cached_share, output_tokens):
    cached = int(input_tokens * cached_share)
    cost = call_cost_usd(
        **MINI, input_tokens=input_tokens, cached_tokens=cached, output_tokens=output_tokens
    )
    uncached = call_cost_usd(
        **MINI, input_tokens=input_tokens, cached_tokens=0, output_tokens=output_tokens
    )
    assert cost <= uncached
    # four-place prices over a million tokens fit the ledger's ten places exactly
    exact = (
        (input_tokens - cached) * MINI["input_per_mtok_usd"]
        + cached * MINI["cached_input_per_mtok_usd"]
        + output_tokens * MINI["output_per_mtok_usd"]
    ) / Decimal(1_000_000)
    assert cost == exact


def test_savings_percent():
    assert savings_percent(cost_usd=Decimal("17"), baseline_usd=Decimal("100")) == Decimal("83.0")
    assert savings_percent(cost_usd=Decimal("0"), baseline_usd=Decimal("0")) == Decimal("0.0")


def test_ledger_costs_bill_the_cache_discount_and_keep_both_undiscounted_amounts():
    # given a mini call with half its prompt cached, against the full model as baseline
    mini, full = Prices(**MINI), Prices(**FULL)
    # when
    costs = ledger_costs(
        billed=mini,
        listed=mini,
        baseline=full,
        input_tokens=2000,
        cached_tokens=1000,
        output_tokens=500,
    )
    # then: 1000 x 0.15 + 1000 x 0.075 + 500 x 0.60, 2000 x 0.15 + 500 x 0.60, 2000 x 2.5 + 500 x 10
    assert costs.cost_usd == Decimal("0.0005250000")
    assert costs.uncached_cost_usd == Decimal("0.0006000000")
    assert costs.baseline_cost_usd == Decimal("0.0100000000")


def test_a_free_answer_costs_nothing_but_keeps_what_it_would_have_cost():
    mini, full = Prices(**MINI), Prices(**FULL)
    costs = ledger_costs(
        billed=mini,
        listed=mini,
        baseline=full,
        input_tokens=1000,
        cached_tokens=0,
        output_tokens=500,
        free=True,
    )
    assert costs.cost_usd == 0
    assert costs.uncached_cost_usd == Decimal("0.0004500000")
    assert costs.baseline_cost_usd == Decimal("0.0075000000")
