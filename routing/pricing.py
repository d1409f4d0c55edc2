"""Pure Decimal money math. Prices are USD per 1M tokens; amounts never pass through float.

A model's prices are rows of its price book (routing.price_models.ModelPrice), each effective
from a date; `PriceRow` is one of them as plain data, `price_on()` picks the one in force on
a day, and `price_tokens()` bills one request's tokens with it, line item by line item."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum

from huntaze.money import LEDGER_PLACES

MTOK = Decimal(1_000_000)
ONE = Decimal(1)


class ServiceTier(StrEnum):
    """The processing tier a call was served at; each has a multiplier in the price book."""

    DEFAULT = "default"
    FLEX = "flex"
    PRIORITY = "priority"
    BATCH = "batch"


def served_tier(reported: object) -> ServiceTier:
    """The tier a provider says it served ("auto", "scale", none: the default tier)."""
    try:
        return ServiceTier(str(reported))
    except ValueError:
        return ServiceTier.DEFAULT


@dataclass(frozen=True)
class PriceRow:
    """One price book row. None for a cache-write price = written tokens bill as ordinary
    input (OpenAI charges nothing extra); None for reasoning = reasoning bills as output."""

    input_per_mtok_usd: Decimal
    cached_input_per_mtok_usd: Decimal
    output_per_mtok_usd: Decimal
    effective_from: date = date.min
    id: int | None = None
    cache_write_5m_per_mtok_usd: Decimal | None = None
    cache_write_1h_per_mtok_usd: Decimal | None = None
    reasoning_per_mtok_usd: Decimal | None = None
    long_context_threshold_tokens: int | None = None  # above it, the whole request is dearer
    long_context_input_multiplier: Decimal = ONE
    long_context_output_multiplier: Decimal = ONE
    batch_multiplier: Decimal = Decimal("0.5")
    flex_multiplier: Decimal = ONE
    priority_multiplier: Decimal = ONE

    def tier_multiplier(self, tier: ServiceTier) -> Decimal:
        if tier is ServiceTier.DEFAULT:
            return ONE
        if tier is ServiceTier.BATCH:
            return self.batch_multiplier
        return self.flex_multiplier if tier is ServiceTier.FLEX else self.priority_multiplier

    def cached_price(self, tier: ServiceTier) -> Decimal:
        """Cache reads' price before the tier multiplier: a batch bills every input token at
        the input price (the batch price leaves no prompt-cache discount on top)."""
        return (
            self.input_per_mtok_usd if tier is ServiceTier.BATCH else self.cached_input_per_mtok_usd
        )


# The columns of a price row, in the order of the export files (model and date first).
PRICE_COLUMNS = (
    "input_per_mtok_usd",
    "cached_input_per_mtok_usd",
    "output_per_mtok_usd",
    "cache_write_5m_per_mtok_usd",
    "cache_write_1h_per_mtok_usd",
    "reasoning_per_mtok_usd",
    "long_context_threshold_tokens",
    "long_context_input_multiplier",
    "long_context_output_multiplier",
    "batch_multiplier",
    "flex_multiplier",
    "priority_multiplier",
)
OPTIONAL_COLUMNS = frozenset(
    {
        "cache_write_5m_per_mtok_usd",
        "cache_write_1h_per_mtok_usd",
        "reasoning_per_mtok_usd",
        "long_context_threshold_tokens",
    }
)
INTEGER_COLUMNS = frozenset({"long_context_threshold_tokens"})


def parsed_price(column: str, value) -> Decimal | int | None:
    if value is None:
        return None
    return int(value) if column in INTEGER_COLUMNS else Decimal(str(value))


def price_row_json(price: PriceRow) -> dict:
    """A row as JSON: Decimals as strings, digit for digit; blanks as null."""
    data = {"id": price.id, "effective_from": price.effective_from.isoformat()}
    for column in PRICE_COLUMNS:
        value = getattr(price, column)
        data[column] = value if value is None or column in INTEGER_COLUMNS else str(value)
    return data


def price_row_from_json(data: dict) -> PriceRow:
    """The inverse of price_row_json."""
    values = {}
    for column in PRICE_COLUMNS:
        if column not in data:
            continue  # a default of PriceRow (rows stored before a column existed)
        value = data[column]
        values[column] = parsed_price(column, value)
    return PriceRow(
        id=data.get("id"), effective_from=date.fromisoformat(data["effective_from"]), **values
    )


NO_PRICE = PriceRow(Decimal(0), Decimal(0), Decimal(0))


def price_on(rows: Sequence[PriceRow], day: date) -> PriceRow:
    """The newest row effective on `day`; the oldest row when `day` precedes them all (a
    model priced only from a later date); NO_PRICE when the model has no row at all."""
    effective = [r for r in rows if r.effective_from <= day]
    if effective:
        return max(effective, key=lambda r: r.effective_from)
    return min(rows, key=lambda r: r.effective_from) if rows else NO_PRICE


@dataclass(frozen=True)
class TokenUsage:
    """One call's tokens as the provider counts them: cached and cache-write tokens are part
    of input_tokens, reasoning tokens part of output_tokens (OpenAI's usage block)."""

    input_tokens: int
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0

    def __post_init__(self) -> None:
        read_or_written = (
            self.cached_tokens + self.cache_write_5m_tokens + self.cache_write_1h_tokens
        )
        if min(self.cached_tokens, self.cache_write_5m_tokens, self.cache_write_1h_tokens) < 0:
            raise ValueError("token counts cannot be negative")
        if not 0 <= read_or_written <= self.input_tokens:
            raise ValueError(
                f"cached + cache-write tokens {read_or_written} outside 0..input_tokens "
                f"{self.input_tokens}"
            )
        if not 0 <= self.reasoning_tokens <= self.output_tokens:
            raise ValueError(
                f"reasoning_tokens {self.reasoning_tokens} outside 0..output_tokens "
                f"{self.output_tokens}"
            )

    @classmethod
    def of(cls, counts: object) -> "TokenUsage":
        """The counts of anything with these attributes (an outcome, a provider result) or
        keys (a parsed usage block)."""
        if isinstance(counts, Mapping):
            return cls(**{f.name: counts[f.name] for f in fields(cls)})
        return cls(**{f.name: getattr(counts, f.name) for f in fields(cls)})

    @property
    def cache_write_tokens(self) -> int:
        return self.cache_write_5m_tokens + self.cache_write_1h_tokens

    def without_cache(self) -> "TokenUsage":
        """The same call had no prompt cache: every input token an ordinary one."""
        return TokenUsage(
            self.input_tokens, self.output_tokens, reasoning_tokens=self.reasoning_tokens
        )


LINE_ITEMS = ("input", "cached", "cache_write", "output", "reasoning", "long_context", "tier")


@dataclass(frozen=True)
class CostLines:
    """A bill's line items, each rounded to the ledger's places; the bill is their sum, so
    line items summed over any set of rows add up to the rows' cost exactly."""

    input_usd: Decimal = Decimal(0)  # input tokens neither read from nor written to the cache
    cached_usd: Decimal = Decimal(0)
    cache_write_usd: Decimal = Decimal(0)
    output_usd: Decimal = Decimal(0)  # output tokens other than reasoning
    reasoning_usd: Decimal = Decimal(0)
    long_context_usd: Decimal = Decimal(0)  # the surcharge above the long-context threshold
    tier_usd: Decimal = Decimal(0)  # the service tier's discount (negative) or premium

    @property
    def total_usd(self) -> Decimal:
        return (
            self.input_usd
            + self.cached_usd
            + self.cache_write_usd
            + self.output_usd
            + self.reasoning_usd
            + self.long_context_usd
            + self.tier_usd
        )


NOTHING = CostLines()


ZERO_USD = Decimal("0E-10")  # an amount of nothing, at the ledger's places


def _usd(amount_per_mtok: Decimal) -> Decimal:
    if not amount_per_mtok:
        return ZERO_USD  # most calls write no cache, reason not, pay no surcharge
    return (amount_per_mtok / MTOK).quantize(LEDGER_PLACES, rounding=ROUND_HALF_EVEN)


def _or(price: Decimal | None, otherwise: Decimal) -> Decimal:
    return otherwise if price is None else price


def _amounts(price: PriceRow, usage: TokenUsage, tier: ServiceTier) -> tuple[Decimal, ...]:
    """The bill's items unrounded, in USD per 1M tokens, in LINE_ITEMS order."""
    input_price = price.input_per_mtok_usd
    cached = usage.cached_tokens * price.cached_price(tier)
    written = usage.cache_write_5m_tokens, usage.cache_write_1h_tokens
    plain = (usage.input_tokens - usage.cached_tokens - written[0] - written[1]) * input_price
    cache_write = ZERO_USD
    if written[0] or written[1]:
        cache_write = written[0] * _or(price.cache_write_5m_per_mtok_usd, input_price) + written[
            1
        ] * _or(price.cache_write_1h_per_mtok_usd, input_price)
    output = (usage.output_tokens - usage.reasoning_tokens) * price.output_per_mtok_usd
    reasoning = ZERO_USD
    if usage.reasoning_tokens:
        reasoning = usage.reasoning_tokens * _or(
            price.reasoning_per_mtok_usd, price.output_per_mtok_usd
        )
    input_side, output_side = plain + cached + cache_write, output + reasoning
    surcharge = ZERO_USD
    threshold = price.long_context_threshold_tokens
    if threshold is not None and usage.input_tokens > threshold:
        surcharge = input_side * (price.long_context_input_multiplier - ONE) + output_side * (
            price.long_context_output_multiplier - ONE
        )
    multiplier = price.tier_multiplier(tier)
    tier_effect = ZERO_USD
    if multiplier != ONE:
        tier_effect = (input_side + output_side + surcharge) * (multiplier - ONE)
    return plain, cached, cache_write, output, reasoning, surcharge, tier_effect


def price_tokens(
    price: PriceRow, usage: TokenUsage, *, tier: ServiceTier = ServiceTier.DEFAULT
) -> CostLines:
    """Bill one request's tokens with one price row, at a service tier, line by line.

    Rules, in order: each kind of token at its own price; above the long-context threshold
    (input tokens) every input-side amount times the input multiplier and every output-side
    amount times the output multiplier (the surcharge line); then the whole times the service
    tier's multiplier (the tier line). A batch reads the cache at the input price
    (PriceRow.cached_price)."""
    return CostLines(*(_usd(amount) for amount in _amounts(price, usage, tier)))


def call_cost_usd(
    *,
    input_per_mtok_usd: Decimal,
    cached_input_per_mtok_usd: Decimal,
    output_per_mtok_usd: Decimal,
    input_tokens: int,
    cached_tokens: int,
    output_tokens: int,
) -> Decimal:
    """Return a quick three-price figure (the pre-call estimate and its worst case): cached
    tokens are part of input_tokens, billed once."""
    if not 0 <= cached_tokens <= input_tokens:
        raise ValueError(f"cached_tokens {cached_tokens} outside 0..input_tokens {input_tokens}")
    uncached_tokens = input_tokens - cached_tokens
    total = (
        uncached_tokens * input_per_mtok_usd
        + cached_tokens * cached_input_per_mtok_usd
        + output_tokens * output_per_mtok_usd
    )
    return _usd(total)


@dataclass(frozen=True)
class LedgerCosts:
    """A ledger row's amounts for the same tokens, and the bill's line items."""

    cost_usd: Decimal  # what was billed
    uncached_cost_usd: Decimal  # the model's list prices, no prompt cache, default tier
    baseline_cost_usd: Decimal  # the premium model's list prices, likewise
    lines: CostLines = field(default=NOTHING)


NOT_BILLED = LedgerCosts(Decimal("0"), Decimal("0"), Decimal("0"))


def list_cost_usd(price: PriceRow, usage: TokenUsage) -> Decimal:
    """What the tokens cost at a row's list prices with no prompt cache and the default tier:
    cache-write tokens as ordinary input (no cache, nothing written), reasoning at the row's
    reasoning price, the long-context rule applied (a price rule, not a discount). One
    amount, not itemised: rounded once."""
    return _usd(sum(_amounts(price, usage.without_cache(), ServiceTier.DEFAULT)))


def ledger_costs(
    *,
    price: PriceRow,
    baseline: PriceRow,
    usage: TokenUsage,
    tier: ServiceTier = ServiceTier.DEFAULT,
    free: bool = False,
) -> LedgerCosts:
    """Return a row's bill at `price` and `tier` (nothing when `free`: a response-cache
    answer), and the same tokens at `price`'s and `baseline`'s list prices, undiscounted."""
    lines = NOTHING if free else price_tokens(price, usage, tier=tier)
    return LedgerCosts(
        cost_usd=lines.total_usd,
        uncached_cost_usd=list_cost_usd(price, usage),
        baseline_cost_usd=list_cost_usd(baseline, usage),
        lines=lines,
    )


def savings_percent(*, cost_usd: Decimal, baseline_usd: Decimal) -> Decimal:
    """Return the saving against the baseline in percent, one decimal (0 when no baseline)."""
    if baseline_usd == 0:
        return Decimal("0.0")
    return ((baseline_usd - cost_usd) * 100 / baseline_usd).quantize(Decimal("0.1"))


PRICE_PLACES = Decimal("0.0001")  # the price fields' 4 places


def tier_prices_per_mtok(price: PriceRow, tier: ServiceTier) -> tuple[Decimal, Decimal, Decimal]:
    """Return the (input, cached input, output) prices a tier bills per 1M tokens, as the
    ledger row shows them (a batch: the batch input price for cached tokens too)."""
    factor = price.tier_multiplier(tier)
    cached = price.cached_price(tier)
    return tuple(
        (p * factor).quantize(PRICE_PLACES, rounding=ROUND_HALF_EVEN)
        for p in (price.input_per_mtok_usd, cached, price.output_per_mtok_usd)
    )
