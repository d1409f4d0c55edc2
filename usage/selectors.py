"""Reads of the usage ledger. Sums are Decimal and exact; only templates round."""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Count, DecimalField, Q, QuerySet, Sum, Value
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
    rows = UsageRecord.objects.filter(created_at__gte=start, created_at__lt=end)
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
