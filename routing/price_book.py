"""The price book read and written: rows as plain data (pricing.PriceRow), as JSON (policy
snapshots, batch items, import and export files), and the one question every biller asks:
"what do these tokens cost on model M as of day D"."""

from dataclasses import replace
from datetime import date
from decimal import Decimal

from routing.price_models import ModelPrice
from routing.pricing import (
    PRICE_COLUMNS,
    CostLines,
    PriceRow,
    ServiceTier,
    TokenUsage,
    parsed_price,
    price_on,
    price_row_from_json,
    price_tokens,
)


def price_row(row: ModelPrice) -> PriceRow:
    """The database row as the pure billing code takes it."""
    return PriceRow(
        id=row.pk,
        effective_from=row.effective_from,
        **{column: getattr(row, column) for column in PRICE_COLUMNS},
    )


def model_price_rows(model_name: str) -> list[PriceRow]:
    """Every price row of a model, oldest first."""
    rows = ModelPrice.objects.filter(model__name=model_name).order_by("effective_from")
    return [price_row(r) for r in rows]


def model_price_on(model_name: str, day: date) -> PriceRow:
    """The row in force for a model on a UTC day (pricing.NO_PRICE when it has none)."""
    return price_on(model_price_rows(model_name), day)


def tokens_price(
    *, model_name: str, day: date, usage: TokenUsage, tier: ServiceTier = ServiceTier.DEFAULT
) -> CostLines:
    """What these tokens cost on model M as of day D, line by line (what-if, migration
    assistant): the price book's row in force that day, every rule applied."""
    return price_tokens(model_price_on(model_name, day), usage, tier=tier)


def snapshot_prices(model_data: dict) -> tuple[PriceRow, ...]:
    """A policy snapshot's price rows for one model, oldest first.

    Price columns next to "prices" (a what-if draft, e.g. {"input_per_mtok_usd": "2.00"})
    override that column in every row. A snapshot from before the price book has the three
    prices only: one row, effective from its prices_effective_from."""
    overrides = {c: parsed_price(c, model_data[c]) for c in PRICE_COLUMNS if c in model_data}
    if "prices" in model_data:
        rows = [price_row_from_json(p) for p in model_data["prices"]]
    elif {"input_per_mtok_usd", "output_per_mtok_usd"} <= overrides.keys():
        discount = Decimal(model_data.get("batch_discount_percent", "50"))
        legacy = PriceRow(
            input_per_mtok_usd=overrides["input_per_mtok_usd"],
            cached_input_per_mtok_usd=overrides.get(
                "cached_input_per_mtok_usd", overrides["input_per_mtok_usd"]
            ),
            output_per_mtok_usd=overrides["output_per_mtok_usd"],
            effective_from=date.fromisoformat(
                model_data.get("prices_effective_from", "0001-01-01")
            ),
            batch_multiplier=(100 - discount) / 100,
        )
        rows = [legacy]
    else:
        rows = []
    return tuple(replace(row, **overrides) for row in sorted(rows, key=lambda r: r.effective_from))
