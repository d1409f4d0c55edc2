"""Reads of the usage ledger. Sums are Decimal and exact; only templates round."""

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncHour

from huntaze.money import LEDGER_PLACES, ZERO
from routing.pricing import savings_percent
from routing.quality import QaSpend
from routing.whatif import LeftOut
from usage.models import (
    LATENCY_BOUNDS_MS,
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


# --- Rollup readers: the dashboard and the monthly report never scan the ledger. ---

WINDOWS = ("hour", "today", "month")


def month_range(*, year: int, month: int) -> tuple[datetime, datetime]:
    """Return the month as the UTC range [first day, first day of next month)."""
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def _percent(part: Decimal | int, whole: Decimal | int) -> Decimal:
    if not whole:
        return Decimal("0.0")
    return (Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.1"))


def _per_1k(amount: Decimal, requests: int) -> Decimal:
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
        return _per_1k(self.cost_usd, self.requests)

    @property
    def mini_share_percent(self) -> Decimal:
        return _percent(self.mini_requests, self.requests)


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


def _report_measures() -> dict:
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


def _unprefixed(row: dict) -> dict:
    """Strip the prefix; money to the ledger's ten places (the backends differ in scale)."""
    return {
        key.removeprefix("t_"): value.quantize(LEDGER_PLACES) if key.endswith("_usd") else value
        for key, value in row.items()
    }


def _grouped(rows: QuerySet, field: str, measures: dict) -> list[ReportLine]:
    groups = rows.values(field).annotate(**measures).order_by("-t_cost_usd", field)
    return [ReportLine(key=str(group.pop(field)), **_unprefixed(group)) for group in groups]


def _projection(amount: Decimal, *, start: datetime, end: datetime, now: datetime) -> Decimal:
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
    measures = _report_measures()
    total = ReportLine(key="total", **_unprefixed(days.aggregate(**measures)))
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
        top_end_users=[ReportLine(key=u.pop("end_user"), **_unprefixed(u)) for u in top_users],
        qa_cost_usd=qa_cost,
        projected_cost_usd=_projection(total.cost_usd, start=start, end=end, now=now),
        projected_baseline_cost_usd=_projection(
            total.baseline_cost_usd, start=start, end=end, now=now
        ),
    )


def _p95_ms(cumulative: list[int], requests: int) -> int | None:
    """Return the upper bound of the histogram bucket holding the 95th percentile.

    An upper bound, not an interpolation: the dashboard never shows latency better than it is.
    """
    if not requests:
        return None
    target = Decimal(requests) * Decimal("0.95")
    for bound, count in zip(LATENCY_BOUNDS_MS, cumulative, strict=True):
        if count >= target:
            return bound
    return LATENCY_BOUNDS_MS[-1]


def _histogram(counts: list[int]) -> list[int]:
    """A rollup's cumulative counts against today's bounds. A rollup written before the finer
    bounds were added has only the last ones: what fell under the new bounds is unknown, so
    it counts as over them (the p95 stays an upper bound, as it read then)."""
    missing = len(LATENCY_BOUNDS_MS) - len(counts)
    return [0] * missing + list(counts) if missing > 0 else list(counts)


def _window_start(*, window: str, now: datetime) -> tuple[datetime, str]:
    minute = now.replace(second=0, microsecond=0)
    if window == "hour":
        return minute - timedelta(minutes=59), Granularity.MINUTE
    midnight = minute.replace(hour=0, minute=0)
    if window == "today":
        return midnight, Granularity.DAY
    return midnight.replace(day=1), Granularity.DAY


SERIES_STEP = {
    "hour": timedelta(minutes=1),
    "today": timedelta(hours=1),
    "month": timedelta(days=1),
}
SERIES_LABEL = {"hour": "%H:%M", "today": "%H:00", "month": "%d %b"}


def _tier_series(
    *, window: str, start: datetime, now: datetime, rows: QuerySet, rollups: QuerySet
) -> dict:
    """Requests per minute by tier: a point for every minute of the hour, every hour of today
    or every day of the month so far, zero where nothing ran. A point's rate is over its
    minutes, or, for the one still running, over its minutes so far (at least one)."""
    step = SERIES_STEP[window]
    if window == "today":  # hours from the minute rollups (the window's rows are days)
        source = rollups.filter(
            granularity=Granularity.MINUTE, bucket_start__gte=start, bucket_start__lte=now
        ).annotate(point=TruncHour("bucket_start", tzinfo=UTC))
    else:
        source = rows.annotate(point=F("bucket_start"))
    counts = {
        (row["point"], row["tier"]): row["t_requests"]
        for row in source.values("point", "tier").annotate(t_requests=Sum("requests")).order_by()
    }
    points = []
    point = start
    while point <= now:
        points.append(point)
        point += step
    series: dict[str, list] = {"labels": [], "mini": [], "full": []}
    for point in points:
        seconds = min(step, now - point).total_seconds()
        minutes = max(Decimal(seconds) / 60, Decimal(1))
        series["labels"].append(point.strftime(SERIES_LABEL[window]))
        for tier in ("mini", "full"):
            rate = Decimal(counts.get((point, tier), 0)) / minutes
            series[tier].append(rate.quantize(Decimal("0.1")))
    return series


def dashboard_metrics(*, window: str, now: datetime, api_key_id: int | None = None) -> dict:
    """Return the dashboard's figures and chart series for one window, from rollups only."""
    if window not in WINDOWS:
        raise ValueError(f"window must be one of {WINDOWS}")
    now = now.astimezone(UTC)
    start, granularity = _window_start(window=window, now=now)
    rollups = UsageRollup.objects.filter(qa=False)
    if api_key_id is not None:
        rollups = rollups.filter(api_key_id=api_key_id)
    rows = rollups.filter(granularity=granularity, bucket_start__gte=start, bucket_start__lte=now)
    totals = _unprefixed(
        rows.aggregate(
            **_report_measures(),
            t_response_cache_hits=Coalesce(Sum("response_cache_hits"), 0),
            t_prompt_cache_hits=Coalesce(Sum("prompt_cache_hits"), 0),
            t_latency_ms_sum=Coalesce(Sum("latency_ms_sum"), 0),
            t_uncached_cost_usd=Coalesce(Sum("uncached_cost_usd"), ZERO),
            t_avoided_cost_usd=Coalesce(Sum("avoided_cost_usd"), ZERO),
            t_prompt_cache_savings_usd=Coalesce(Sum("prompt_cache_savings_usd"), ZERO),
            t_batch_savings_usd=Coalesce(Sum("batch_savings_usd"), ZERO),
        )
    )
    requests = totals["requests"]
    cumulative = [0] * len(LATENCY_BOUNDS_MS)
    for histogram in rows.values_list("latency_cumulative", flat=True):
        cumulative = [a + b for a, b in zip(cumulative, _histogram(histogram), strict=True)]
    categories = (
        rows.values("category")
        .annotate(t_requests=Sum("requests"), t_cost_usd=Sum("cost_usd"))
        .order_by("-t_requests", "category")
    )
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    daily = (
        rollups.filter(granularity=Granularity.DAY, bucket_start__gte=month_start)
        .values("bucket_start")
        .annotate(t_cost_usd=Sum("cost_usd"), t_baseline_cost_usd=Sum("baseline_cost_usd"))
        .order_by("bucket_start")
    )
    daily = [_unprefixed(day) for day in daily]
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    month_cost = sum((d["cost_usd"] for d in daily), Decimal("0")).quantize(LEDGER_PLACES)
    month_end = month_range(year=now.year, month=now.month)[1]
    elapsed_minutes = max(Decimal((now - start).total_seconds()) / 60, Decimal(1))
    if window == "hour":
        elapsed_minutes = Decimal(60)
    savings = totals["baseline_cost_usd"] - totals["cost_usd"]
    return {
        "window": window,
        "start": start,
        "now": now,
        "requests": requests,
        "requests_per_minute": (requests / elapsed_minutes).quantize(Decimal("0.01")),
        "mini_share_percent": _percent(totals["mini_requests"], requests),
        "response_cache_hit_rate_percent": _percent(totals["response_cache_hits"], requests),
        "prompt_cache_hit_rate_percent": _percent(totals["prompt_cache_hits"], requests),
        "avg_latency_ms": round(totals["latency_ms_sum"] / requests) if requests else None,
        "p95_latency_ms": _p95_ms(cumulative, requests),
        "cost_per_1k_requests_usd": _per_1k(totals["cost_usd"], requests),
        "error_rate_percent": _percent(totals["errors"], requests),
        "cost_usd": totals["cost_usd"],
        "baseline_cost_usd": totals["baseline_cost_usd"],
        "savings_usd": savings,
        "savings_percent": savings_percent(
            cost_usd=totals["cost_usd"], baseline_usd=totals["baseline_cost_usd"]
        ),
        "today_cost_usd": next(
            (d["cost_usd"] for d in daily if d["bucket_start"] == today), Decimal("0")
        ),
        "month_cost_usd": month_cost,
        "month_projected_cost_usd": _projection(
            month_cost, start=month_start, end=month_end, now=now
        ),
        "savings_by_layer": {
            "routing": totals["baseline_cost_usd"] - totals["uncached_cost_usd"],
            "prompt_cache": totals["prompt_cache_savings_usd"],
            "response_cache": totals["avoided_cost_usd"],
            "batch": totals["batch_savings_usd"],
        },
        "category_mix": [
            {
                "category": c["category"],
                "requests": c["t_requests"],
                "share_percent": _percent(c["t_requests"], requests),
                "cost_usd": c["t_cost_usd"].quantize(LEDGER_PLACES),
            }
            for c in categories
        ],
        "series": {
            "requests_per_minute_by_tier": _tier_series(
                window=window, start=start, now=now, rows=rows, rollups=rollups
            ),
            "daily_cost": {
                "labels": [d["bucket_start"].strftime("%d %b") for d in daily],
                "cost_usd": [d["cost_usd"] for d in daily],
                "baseline_cost_usd": [d["baseline_cost_usd"] for d in daily],
            },
        },
    }
