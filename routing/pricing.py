"""Pure Decimal money math. Prices are USD per 1M tokens; amounts never pass through float."""

from decimal import ROUND_HALF_EVEN, Decimal

MTOK = Decimal(1_000_000)
LEDGER_PLACES = Decimal("0.0000000001")  # the ledger's 10 decimal places


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
