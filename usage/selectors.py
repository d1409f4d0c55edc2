"""Reads of the usage ledger. Sums are Decimal and exact; only templates round."""

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import Coalesce

from huntaze.money import LEDGER_PLACES, ZERO
from routing.pricing import savings_percent
from routing.quality import QaSpend
from routing.whatif import LeftOut
from usage.line_items import cost_line_items
from usage.models import (
    Granularity,
    Status,
    UsageEndUserDay,
    UsageRecord,
    UsageRollup,
)


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


def replay_left_out(*, start: datetime, end: datetime) -> dict[str, LeftOut]:
    """Per category, the requests over [start, end) that the what-if replay does not
    re-decide: response-cache hits and failed calls (as routing.selectors.replay_groups
    leaves them out)."""
    rows = (
        _window(start=start, end=end, api_key_id=None)
        .filter(Q(cache_hit=True) | ~Q(status=Status.OK))
        .values("category")
        .annotate(
            hits=Count("id", filter=Q(cache_hit=True)),
            failed=Count("id", filter=Q(cache_hit=False)),
        )
        .order_by()
    )
    return {row["category"]: LeftOut(row["hits"], row["failed"]) for row in rows}


# --- Rollup readers: the monthly report (and usage.dashboard_selectors) never scan the ledger.


def month_range(*, year: int, month: int) -> tuple[datetime, datetime]:
    """Return the month as the UTC range [first day, first day of next month)."""
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def percent_of(part: Decimal | int, whole: Decimal | int) -> Decimal:
    """Return part / whole in percent, one decimal (0 without a whole)."""
    if not whole:
        return Decimal("0.0")
    return (Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.1"))


def per_1k_requests(amount: Decimal, requests: int) -> Decimal:
    """Return the amount per 1,000 requests (0 without requests)."""
    if not requests:
        return Decimal("0")
    return (amount * 1000 / requests).quantize(LEDGER_PLACES)


@dataclass(frozen=True)
class ReportLine:
    """One row of the monthly report: a total, a category, a model, a tier, a key or a user."""

    key: str
    requests: int
    mini_requests: int
    errors: int
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    cost_usd: Decimal
    baseline_cost_usd: Decimal

    @property
    def savings_usd(self) -> Decimal:
        return self.baseline_cost_usd - self.cost_usd

    @property
    def savings_percent(self) -> Decimal:
        return savings_percent(cost_usd=self.cost_usd, baseline_usd=self.baseline_cost_usd)

    @property
    def cost_per_1k_requests_usd(self) -> Decimal:
        return per_1k_requests(self.cost_usd, self.requests)

    @property
    def mini_share_percent(self) -> Decimal:
        return percent_of(self.mini_requests, self.requests)


@dataclass(frozen=True)
class MonthlyCostReport:
    year: int
    month: int
    api_key_id: int | None
    complete: bool
    total: ReportLine
    by_category: list[ReportLine]
    by_model: list[ReportLine]
    by_tier: list[ReportLine]
    by_api_key: list[ReportLine]
    top_end_users: list[ReportLine]
    qa_cost_usd: Decimal
    projected_cost_usd: Decimal
    projected_baseline_cost_usd: Decimal
    line_items: list  # usage.line_items.LineItem: the total's cost by line item

    @property
    def label(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def qa_spend(self) -> QaSpend:
        """QA spend beside the month's routed bill, with the warning level of the settings."""
        return QaSpend(
            qa_cost_usd=self.qa_cost_usd,
            routed_cost_usd=self.total.cost_usd,
            warn_percent=Decimal(settings.QUALITY_QA_SPEND_WARN_PERCENT),
        )


def report_measures() -> dict:
    """Return the sums a report line is made of, prefixed t_ (see unprefixed())."""
    # Prefixed: an aggregate named like a rollup field would shadow it in the next one.
    return {
        "t_requests": Coalesce(Sum("requests"), 0),
        "t_mini_requests": Coalesce(Sum("requests", filter=Q(tier="mini")), 0),
        "t_errors": Coalesce(Sum("errors"), 0),
        "t_input_tokens": Coalesce(Sum("input_tokens"), 0),
        "t_cached_tokens": Coalesce(Sum("cached_tokens"), 0),
        "t_output_tokens": Coalesce(Sum("output_tokens"), 0),
        "t_cost_usd": Coalesce(Sum("cost_usd"), ZERO),
        "t_baseline_cost_usd": Coalesce(Sum("baseline_cost_usd"), ZERO),
    }


def unprefixed(row: dict) -> dict:
    """Strip the prefix; money to the ledger's ten places (the backends differ in scale)."""
    return {
        key.removeprefix("t_"): value.quantize(LEDGER_PLACES) if key.endswith("_usd") else value
        for key, value in row.items()
    }


def _grouped(rows: QuerySet, field: str, measures: dict) -> list[ReportLine]:
    groups = rows.values(field).annotate(**measures).order_by("-t_cost_usd", field)
    return [ReportLine(key=str(group.pop(field)), **unprefixed(group)) for group in groups]


def month_projection(amount: Decimal, *, start: datetime, end: datetime, now: datetime) -> Decimal:
    """Return the amount spent so far projected over the whole [start, end) at its pace."""
    if now >= end:
        return amount
    elapsed = Decimal((max(now, start) - start).total_seconds())
    if not elapsed:
        return Decimal("0")
    return (amount * Decimal((end - start).total_seconds()) / elapsed).quantize(LEDGER_PLACES)


def monthly_cost_report(
    *,
    year: int,
    month: int,
    now: datetime,
    api_key_id: int | None = None,
    top_end_users: int = 20,
) -> MonthlyCostReport:
    """Return the month's cost report from the daily rollups, with a month-end projection."""
    start, end = month_range(year=year, month=month)
    upto = max(start, min(end, now))  # month to date: what has happened by `now`
    days = UsageRollup.objects.filter(
        granularity=Granularity.DAY, bucket_start__gte=start, bucket_start__lt=upto
    )
    last_day = upto.date() if upto.time() == time(0) else upto.date() + timedelta(days=1)
    users = UsageEndUserDay.objects.filter(day__gte=start.date(), day__lt=last_day)
    if api_key_id is not None:
        days, users = days.filter(api_key_id=api_key_id), users.filter(api_key_id=api_key_id)
    qa_cost = days.filter(qa=True).aggregate(cost=Coalesce(Sum("cost_usd"), ZERO))["cost"]
    qa_cost = qa_cost.quantize(LEDGER_PLACES)
    days = days.filter(qa=False)
    measures = report_measures()
    total = ReportLine(key="total", **unprefixed(days.aggregate(**measures)))
    user_measures = {**measures, "t_mini_requests": Coalesce(Sum("mini_requests"), 0)}
    top_users = users.values("end_user").annotate(**user_measures)
    top_users = top_users.order_by("-t_cost_usd", "end_user")[:top_end_users]
    return MonthlyCostReport(
        year=year,
        month=month,
        api_key_id=api_key_id,
        complete=now >= end,
        total=total,
        by_category=_grouped(days, "category", measures),
        by_model=_grouped(days, "model", measures),
        by_tier=_grouped(days, "tier", measures),
        by_api_key=_grouped(days, "api_key__name", measures),
        top_end_users=[ReportLine(key=u.pop("end_user"), **unprefixed(u)) for u in top_users],
        qa_cost_usd=qa_cost,
        line_items=cost_line_items(days),
        projected_cost_usd=month_projection(total.cost_usd, start=start, end=end, now=now),
        projected_baseline_cost_usd=month_projection(
            total.baseline_cost_usd, start=start, end=end, now=now
        ),
    )
