"""The staff dashboard's figures, read from the rollups (never the ledger): a window's totals,
per-tier series, latency percentiles and the month so far."""

from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db.models import F, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncHour

from huntaze.money import LEDGER_PLACES, ZERO
from routing.pricing import savings_percent
from usage.line_items import cost_line_items
from usage.models import LATENCY_BOUNDS_MS, Granularity, UsageRollup
from usage.selectors import (
    month_projection,
    month_range,
    per_1k_requests,
    percent_of,
    report_measures,
    unprefixed,
)

WINDOWS = ("hour", "today", "month")


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
    totals = unprefixed(
        rows.aggregate(
            **report_measures(),
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
    daily = [unprefixed(day) for day in daily]
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
        "mini_share_percent": percent_of(totals["mini_requests"], requests),
        "response_cache_hit_rate_percent": percent_of(totals["response_cache_hits"], requests),
        "prompt_cache_hit_rate_percent": percent_of(totals["prompt_cache_hits"], requests),
        "avg_latency_ms": round(totals["latency_ms_sum"] / requests) if requests else None,
        "p95_latency_ms": _p95_ms(cumulative, requests),
        "cost_per_1k_requests_usd": per_1k_requests(totals["cost_usd"], requests),
        "error_rate_percent": percent_of(totals["errors"], requests),
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
        "month_projected_cost_usd": month_projection(
            month_cost, start=month_start, end=month_end, now=now
        ),
        "savings_by_layer": {
            "routing": totals["baseline_cost_usd"] - totals["uncached_cost_usd"],
            "prompt_cache": totals["prompt_cache_savings_usd"],
            "response_cache": totals["avoided_cost_usd"],
            "batch": totals["batch_savings_usd"],
        },
        "cost_by_line_item": [asdict(item) for item in cost_line_items(rows)],
        "category_mix": [
            {
                "category": c["category"],
                "requests": c["t_requests"],
                "share_percent": percent_of(c["t_requests"], requests),
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
