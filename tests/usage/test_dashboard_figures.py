"""Every figure of the dashboard, for each window, against the ledger of the same window: the
rollups it reads must say what the raw rows say."""

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db.models import Count, F, Q, Sum

from routing.models import ApiKey
from tests.factories import UsageRecordFactory
from tests.usage.conftest import ledger_rows
from usage.dashboard_selectors import dashboard_metrics
from usage.models import LATENCY_BOUNDS_MS, UsageRecord
from usage.services import usage_rollup_rebuild

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 24, 11, 30, tzinfo=UTC)
MONTH_START = datetime(2026, 11, 1, tzinfo=UTC)
MIDNIGHT = datetime(2026, 11, 24, tzinfo=UTC)
STARTS = {"hour": NOW - timedelta(minutes=59), "today": MIDNIGHT, "month": MONTH_START}
TENTH = Decimal("0.1")
PLACES = Decimal("0.0000000001")  # the ledger's; SQLite sums decimals as floats


def _usd(amount) -> Decimal:
    return Decimal(amount).quantize(PLACES)


@pytest.fixture
def ledger():
    """A varied month to date (keys, tiers, caches, batch, QA, errors), October's last day and
    a burst of fast sandbox-like calls (1-3 ms) in the last hour, rolled up."""
    spans = [
        (MONTH_START - timedelta(days=1), MONTH_START, 20),
        (MONTH_START, MIDNIGHT, 150),
        (MIDNIGHT, NOW - timedelta(hours=1), 120),
        (NOW - timedelta(minutes=59), NOW, 80),
    ]
    for seed, (start, end, count) in enumerate(spans):
        rows = ledger_rows(start=start, end=end, count=count, seed=seed)
        for key in {row.api_key for row in rows}:  # the helper names its keys the same
            ApiKey.objects.filter(pk=key.pk).update(name=f"{key.name}-{seed}")
    for n in range(40):
        UsageRecordFactory(
            api_key=key, created_at=NOW - timedelta(minutes=n % 50, seconds=7), latency_ms=1 + n % 3
        )
    usage_rollup_rebuild(start=MONTH_START - timedelta(days=1), end=NOW)


def _pct(part, whole) -> Decimal:
    return (Decimal(part) * 100 / Decimal(whole)).quantize(TENTH) if whole else Decimal("0.0")


def _p95_bound(latencies: list[int]) -> int:
    """The smallest histogram bound at or above the nearest-rank 95th percentile."""
    p95 = sorted(latencies)[math.ceil(0.95 * len(latencies)) - 1]
    return next((b for b in LATENCY_BOUNDS_MS if b >= p95), LATENCY_BOUNDS_MS[-1])


@pytest.mark.parametrize("window", ["hour", "today", "month"])
def test_every_dashboard_figure_is_the_ledgers_for_the_same_window(ledger, window):
    # when
    shown = dashboard_metrics(window=window, now=NOW)
    # then each figure is what the ledger says over [start, now), QA calls left out
    start = STARTS[window]
    rows = UsageRecord.objects.filter(created_at__gte=start, created_at__lt=NOW, qa=False)
    remainder = F("uncached_cost_usd") - F("cost_usd") - F("avoided_cost_usd")
    raw = rows.aggregate(
        n=Count("id"),
        mini=Count("id", filter=Q(tier="mini")),
        errors=Count("id", filter=~Q(status="ok")),
        hits=Count("id", filter=Q(cache_hit=True)),
        prompt_hits=Count("id", filter=Q(cached_tokens__gt=0)),
        latency=Sum("latency_ms"),
        cost=Sum("cost_usd"),
        baseline=Sum("baseline_cost_usd"),
        uncached=Sum("uncached_cost_usd"),
        avoided=Sum("avoided_cost_usd"),
        prompt=Sum(remainder, filter=Q(batch=False)),
        batch=Sum(remainder, filter=Q(batch=True)),
    )
    raw = {k: _usd(v) if isinstance(v, Decimal | float) else v for k, v in raw.items()}
    n = raw["n"]
    minutes = Decimal(60) if window == "hour" else Decimal((NOW - start).total_seconds()) / 60
    assert shown["requests"] == n > 0
    assert shown["requests_per_minute"] == (n / minutes).quantize(Decimal("0.01"))
    assert shown["mini_share_percent"] == _pct(raw["mini"], n)
    assert shown["response_cache_hit_rate_percent"] == _pct(raw["hits"], n)
    assert shown["prompt_cache_hit_rate_percent"] == _pct(raw["prompt_hits"], n)
    assert shown["error_rate_percent"] == _pct(raw["errors"], n)
    assert shown["avg_latency_ms"] == round(raw["latency"] / n)
    assert shown["p95_latency_ms"] == _p95_bound(list(rows.values_list("latency_ms", flat=True)))
    assert shown["cost_usd"] == raw["cost"]
    assert shown["baseline_cost_usd"] == raw["baseline"]
    assert shown["savings_usd"] == raw["baseline"] - raw["cost"]
    saved = (raw["baseline"] - raw["cost"]) * 100 / raw["baseline"]
    assert shown["savings_percent"] == saved.quantize(TENTH)
    assert shown["cost_per_1k_requests_usd"] == (raw["cost"] * 1000 / n).quantize(PLACES)
    assert shown["savings_by_layer"] == {
        "routing": raw["baseline"] - raw["uncached"],
        "prompt_cache": raw["prompt"],
        "response_cache": raw["avoided"],
        "batch": raw["batch"],
    }
    mix = {c["category"]: (c["requests"], c["cost_usd"]) for c in shown["category_mix"]}
    by_category = rows.values("category").annotate(n=Count("id"), cost=Sum("cost_usd"))
    assert mix == {c["category"]: (c["n"], _usd(c["cost"])) for c in by_category}
    # the month's figures, whatever the window
    month = UsageRecord.objects.filter(created_at__gte=MONTH_START, created_at__lt=NOW, qa=False)
    today = month.filter(created_at__gte=MIDNIGHT)
    month_cost = _usd(month.aggregate(s=Sum("cost_usd"))["s"])
    assert shown["month_cost_usd"] == month_cost
    assert shown["today_cost_usd"] == _usd(today.aggregate(s=Sum("cost_usd"))["s"])
    elapsed = Decimal((NOW - MONTH_START).total_seconds())
    projected = month_cost * Decimal(30 * 86400) / elapsed
    assert shown["month_projected_cost_usd"] == projected.quantize(PLACES)
    daily = shown["series"]["daily_cost"]
    assert _usd(sum(daily["cost_usd"])) == month_cost and len(daily["labels"]) == 24


@pytest.mark.parametrize(
    ("window", "points", "step", "first", "last"),
    [
        ("hour", 60, timedelta(minutes=1), "10:31", "11:30"),
        ("today", 12, timedelta(hours=1), "00:00", "11:00"),
        ("month", 24, timedelta(days=1), "01 Nov", "24 Nov"),
    ],
)
def test_the_requests_per_minute_chart_has_a_point_per_minute_hour_or_day(
    ledger, window, points, step, first, last
):
    # when
    series = dashboard_metrics(window=window, now=NOW)["series"]["requests_per_minute_by_tier"]
    # then one point per step of the window, each the ledger's count over its minutes (the
    # running one over its minutes so far)
    assert len(series["labels"]) == points
    assert (series["labels"][0], series["labels"][-1]) == (first, last)
    rows = UsageRecord.objects.filter(qa=False, created_at__lt=NOW)
    for index in range(points):
        begin = STARTS[window] + index * step
        end = min(begin + step, NOW)
        minutes = max(Decimal((end - begin).total_seconds()) / 60, Decimal(1))
        bucket = rows.filter(created_at__gte=begin, created_at__lt=begin + step)
        for tier in ("mini", "full"):
            count = bucket.filter(tier=tier).count()
            assert series[tier][index] == (count / minutes).quantize(TENTH), (window, index)


def test_fast_calls_read_their_p95_in_milliseconds_not_the_old_25_ms_bucket():
    # given only sandbox-fast calls, 1-3 ms
    for latency in [1] * 10 + [2] * 9 + [3]:
        UsageRecordFactory(created_at=NOW - timedelta(seconds=30), latency_ms=latency)
    usage_rollup_rebuild(start=NOW - timedelta(minutes=5), end=NOW)
    # then the p95 is 2 ms, as the rollout page's ledger percentile reads it
    assert dashboard_metrics(window="hour", now=NOW)["p95_latency_ms"] == 2


def test_a_rollup_written_before_the_finer_bounds_still_reads_as_it_did():
    # given a minute rolled up with the 20 bounds from 25 ms (all 30 calls under 25 ms)
    from usage.models import Granularity, UsageRollup

    row = UsageRecordFactory(created_at=NOW - timedelta(seconds=30), latency_ms=2)
    usage_rollup_rebuild(start=NOW - timedelta(minutes=5), end=NOW)
    UsageRollup.objects.filter(granularity=Granularity.MINUTE).update(
        requests=30, latency_cumulative=[30] * 20
    )
    # then its p95 is read from its own bounds: at most 25 ms, as before (not an error)
    assert row.latency_ms == 2
    assert dashboard_metrics(window="hour", now=NOW)["p95_latency_ms"] == 25
