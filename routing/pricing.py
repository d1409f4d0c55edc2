"""Pure Decimal money math. Prices are USD per 1M tokens; amounts never pass through float."""

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Protocol

from huntaze.money import LEDGER_PLACES

MTOK = Decimal(1_000_000)


def call_cost_usd(
    *,
    input_per_mtok_usd: Decimal,
    cached_input_per_mtok_usd: Decimal,
    output_per_mtok_usd: Decimal,
    input_tokens: int,
    cached_tokens: int,
    output_tokens: int,
) -> Decimal:
    """Return what one call is billed: cached tokens are part of input_tokens, billed once."""
    if not 0 <= cached_tokens <= input_tokens:
        raise ValueError(f"cached_tokens {cached_tokens} outside 0..input_tokens {input_tokens}")
    uncached_tokens = input_tokens - cached_tokens
    total = (
        uncached_tokens * input_per_mtok_usd
        + cached_tokens * cached_input_per_mtok_usd
        + output_tokens * output_per_mtok_usd
    )
    return (total / MTOK).quantize(LEDGER_PLACES, rounding=ROUND_HALF_EVEN)


def baseline_cost_usd(
    *,
    input_per_mtok_usd: Decimal,
    output_per_mtok_usd: Decimal,
    input_tokens: int,
    output_tokens: int,
) -> Decimal:
    """Return what the same tokens cost on the premium model with no cache discount."""
    total = input_tokens * input_per_mtok_usd + output_tokens * output_per_mtok_usd
    return (total / MTOK).quantize(LEDGER_PLACES, rounding=ROUND_HALF_EVEN)


class Priced(Protocol):
    """A model's USD prices per 1M tokens (routing.engine.ModelSpec is one)."""

    input_per_mtok_usd: Decimal
    cached_input_per_mtok_usd: Decimal
    output_per_mtok_usd: Decimal


@dataclass(frozen=True)
class Prices:
    """Prices that are no model's own, e.g. a batch's discounted ones."""

    input_per_mtok_usd: Decimal
    cached_input_per_mtok_usd: Decimal
    output_per_mtok_usd: Decimal


@dataclass(frozen=True)
class LedgerCosts:
    """A ledger row's three amounts for the same tokens."""

    cost_usd: Decimal  # what was billed
    uncached_cost_usd: Decimal  # the listed prices without any discount
    baseline_cost_usd: Decimal  # the premium model's prices without any discount


NOT_BILLED = LedgerCosts(Decimal("0"), Decimal("0"), Decimal("0"))


def ledger_costs(
    *,
    billed: Priced,
    listed: Priced,
    baseline: Priced,
    input_tokens: int,
    cached_tokens: int,
    output_tokens: int,
    free: bool = False,
) -> LedgerCosts:
    """Return a row's cost at the `billed` prices (nothing when `free`: a response-cache
    answer), and the same tokens at the `listed` and the `baseline` prices, undiscounted."""
    uncached = baseline_cost_usd(
        input_per_mtok_usd=listed.input_per_mtok_usd,
        output_per_mtok_usd=listed.output_per_mtok_usd,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
    )
    cost = Decimal("0")
    if not free:
        cost = call_cost_usd(
            input_per_mtok_usd=billed.input_per_mtok_usd,
            cached_input_per_mtok_usd=billed.cached_input_per_mtok_usd,
            output_per_mtok_usd=billed.output_per_mtok_usd,
            input_tokens=input_tokens,
            cached_tokens=cached_tokens,
            output_tokens=output_tokens,
        )
    baseline_usd = baseline_cost_usd(
        input_per_mtok_usd=baseline.input_per_mtok_usd,
        output_per_mtok_usd=baseline.output_per_mtok_usd,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
    )
    return LedgerCosts(cost, uncached, baseline_usd)


def savings_percent(*, cost_usd: Decimal, baseline_usd: Decimal) -> Decimal:
    """Return the saving against the baseline in percent, one decimal (0 when no baseline)."""
    if baseline_usd == 0:
        return Decimal("0.0")
    return ((baseline_usd - cost_usd) * 100 / baseline_usd).quantize(Decimal("0.1"))


def batch_prices_per_mtok(
    *, input_per_mtok_usd: Decimal, output_per_mtok_usd: Decimal, discount_percent: Decimal
) -> tuple[Decimal, Decimal]:
    """Return the model's (input, output) batch prices per 1M tokens.

    Batch input gets no extra prompt-cache discount: the batch price is the one billed for
    every input token, so on batch rows the whole saving below list price is the batch layer."""
    factor = (Decimal(100) - discount_percent) / Decimal(100)
    places = Decimal("0.0001")  # the price fields' 4 places: stored prices reproduce the cost
    return (
        (input_per_mtok_usd * factor).quantize(places, rounding=ROUND_HALF_EVEN),
        (output_per_mtok_usd * factor).quantize(places, rounding=ROUND_HALF_EVEN),
    )
