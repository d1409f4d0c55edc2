"""Reads of the usage ledger. Sums are Decimal and exact; only templates round."""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Count, DecimalField, F, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce

from routing.pricing import savings_percent
from usage.models import Status, UsageRecord

ZERO = Value(Decimal("0"), output_field=DecimalField(max_digits=20, decimal_places=10))


@dataclass(frozen=True)
class UsageSummary:
    requests: int
    mini_requests: int
    errors: int
    cost_usd: Decimal
    baseline_cost_usd: Decimal

    @property
    def mini_share_percent(self) -> Decimal:
        if not self.requests:
            return Decimal("0.0")
        return (Decimal(self.mini_requests) * 100 / self.requests).quantize(Decimal("0.1"))

    @property
    def savings_usd(self) -> Decimal:
        return self.baseline_cost_usd - self.cost_usd

    @property
    def savings_percent(self) -> Decimal:
        return savings_percent(cost_usd=self.cost_usd, baseline_usd=self.baseline_cost_usd)


_AGGREGATES = {
    "requests": Count("id"),
    "mini_requests": Count("id", filter=Q(tier="mini")),
    "errors": Count("id", filter=~Q(status=Status.OK)),
    "cost_usd": Coalesce(Sum("cost_usd"), ZERO),
    "baseline_cost_usd": Coalesce(Sum("baseline_cost_usd"), ZERO),
}


def _window(*, start: datetime, end: datetime, api_key_id: int | None) -> QuerySet:
    # Quality-assurance calls (shadow, judge) are spend, not traffic: never in the KPIs.
    rows = UsageRecord.objects.filter(created_at__gte=start, created_at__lt=end, qa=False)
    return rows if api_key_id is None else rows.filter(api_key_id=api_key_id)


def usage_summary(*, start: datetime, end: datetime, api_key_id: int | None = None) -> UsageSummary:
    """Return totals over [start, end)."""
    return UsageSummary(
        **_window(start=start, end=end, api_key_id=api_key_id).aggregate(**_AGGREGATES)
    )


def usage_by_category(
    *, start: datetime, end: datetime, api_key_id: int | None = None
) -> dict[str, UsageSummary]:
    """Return totals over [start, end) per category, largest first."""
    rows = (
        _window(start=start, end=end, api_key_id=api_key_id)
        .values("category")
        .annotate(**_AGGREGATES)
        .order_by("-requests", "category")
    )
    return {row.pop("category"): UsageSummary(**row) for row in rows}


@dataclass(frozen=True)
class SavingsByLayer:
    routing_usd: Decimal
    prompt_cache_usd: Decimal
    response_cache_usd: Decimal
    batch_usd: Decimal

    @property
    def total_usd(self) -> Decimal:
        return self.routing_usd + self.prompt_cache_usd + self.response_cache_usd + self.batch_usd


def _sum(expression) -> Coalesce:
    return Coalesce(Sum(expression), ZERO)


def savings_by_layer(
    *, start: datetime, end: datetime, api_key_id: int | None = None
) -> SavingsByLayer:
    """Return savings against all-premium uncached, split by the layer that earned them.

    Per row: routing = baseline - uncached; response cache = avoided (what the cached answer
    was billed first time); the rest, uncached - cost - avoided, is the provider prompt cache,
    or the batch discount on batch rows. The layers add up to baseline - cost exactly.
    """
    rows = _window(start=start, end=end, api_key_id=api_key_id)
    remainder = F("uncached_cost_usd") - F("cost_usd") - F("avoided_cost_usd")
    totals = rows.aggregate(
        routing=_sum(F("baseline_cost_usd") - F("uncached_cost_usd")),
        prompt_cache=Coalesce(Sum(remainder, filter=Q(batch=False)), ZERO),
        batch=Coalesce(Sum(remainder, filter=Q(batch=True)), ZERO),
        response_cache=_sum("avoided_cost_usd"),
    )
    return SavingsByLayer(
        routing_usd=totals["routing"],
        prompt_cache_usd=totals["prompt_cache"],
        response_cache_usd=totals["response_cache"],
        batch_usd=totals["batch"],
    )
