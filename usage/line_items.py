"""The bill by line item (input, cached input, cache writes, output, reasoning, long-context
surcharge, service tier), read from the rollups for the monthly report and the dashboard.
The items add up to the cost to the last stored place: each ledger row's cost is the sum of
its own line items, and rows billed before the price book (no breakdown) show as one item."""

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import F, QuerySet, Sum
from django.db.models.functions import Coalesce

from huntaze.money import LEDGER_PLACES, ZERO
from routing.pricing import LINE_ITEMS

LABELS = {
    "input": "input",
    "cached": "cached input (cache reads)",
    "cache_write": "cache writes",
    "output": "output",
    "reasoning": "reasoning",
    "long_context": "long-context surcharge",
    "tier": "service tier (batch, flex discount; priority premium)",
    "unitemised": "not itemised (billed before the price book)",
}


@dataclass(frozen=True)
class LineItem:
    key: str
    label: str
    tokens: int | None  # the tokens the item bills (None for the surcharge and tier lines)
    cost_usd: Decimal


def _measures() -> dict:
    return {
        **{f"li_{item}": Coalesce(Sum(f"cost_{item}_usd"), ZERO) for item in LINE_ITEMS},
        "li_cost": Coalesce(Sum("cost_usd"), ZERO),
        "li_plain_tokens": Coalesce(
            Sum(F("input_tokens") - F("cached_tokens") - F("cache_write_tokens")), 0
        ),
        "li_cached_tokens": Coalesce(Sum("cached_tokens"), 0),
        "li_cache_write_tokens": Coalesce(Sum("cache_write_tokens"), 0),
        "li_visible_tokens": Coalesce(Sum(F("output_tokens") - F("reasoning_tokens")), 0),
        "li_reasoning_tokens": Coalesce(Sum("reasoning_tokens"), 0),
    }


TOKENS_OF = {
    "input": "plain",
    "cached": "cached",
    "cache_write": "cache_write",
    "output": "visible",
    "reasoning": "reasoning",
}


def cost_line_items(rollups: QuerySet) -> list[LineItem]:
    """The rollups' cost by line item, and what no line item explains (older rows)."""
    sums = rollups.aggregate(**_measures())
    items = [
        LineItem(
            key=item,
            label=LABELS[item],
            tokens=sums[f"li_{TOKENS_OF[item]}_tokens"] if item in TOKENS_OF else None,
            cost_usd=sums[f"li_{item}"].quantize(LEDGER_PLACES),
        )
        for item in LINE_ITEMS
    ]
    rest = sums["li_cost"].quantize(LEDGER_PLACES) - sum((i.cost_usd for i in items), Decimal(0))
    if rest:
        items.append(LineItem("unitemised", LABELS["unitemised"], None, rest))
    return items
