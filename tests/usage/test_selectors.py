from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from tests.factories import UsageRecordFactory
from usage.selectors import savings_by_layer, usage_by_category, usage_summary

pytestmark = pytest.mark.django_db


@pytest.fixture
def window():
    now = timezone.now()
    return {"start": now - timedelta(hours=1), "end": now + timedelta(hours=1)}


def test_summary_sums_exactly_and_counts_tiers_and_errors(window):
    # given two mini calls, one premium call and one failure
    UsageRecordFactory.create_batch(2)
    UsageRecordFactory(tier="full", cost_usd=Decimal("0.0045"), uncached_cost_usd=Decimal("0.0045"))
    UsageRecordFactory(
        status="upstream_error", cost_usd=0, uncached_cost_usd=0, baseline_cost_usd=0
    )
    # when
    summary = usage_summary(**window)
    # then
    assert summary.requests == 4
    assert summary.mini_requests == 3
    assert summary.errors == 1
    assert summary.cost_usd == Decimal("0.0050400000")
    assert summary.baseline_cost_usd == Decimal("0.0135000000")
    assert summary.savings_usd == Decimal("0.0084600000")
    assert summary.mini_share_percent == Decimal("75.0")


def test_window_excludes_rows_outside_and_qa_spend(window):
    UsageRecordFactory(created_at=window["start"] - timedelta(seconds=1))
    UsageRecordFactory(qa=True)
    UsageRecordFactory()
    assert usage_summary(**window).requests == 1


def test_by_category_groups_rows(window):
    UsageRecordFactory.create_batch(3)
    UsageRecordFactory(category="legal", tier="full")
    per_category = usage_by_category(**window)
    assert list(per_category) == ["chatbot", "legal"]
    assert per_category["legal"].mini_share_percent == Decimal("0.0")


def test_savings_layers_add_up_to_the_total_saving(window):
    # given a prompt-cached call, a response-cache hit and a batch call
    UsageRecordFactory(cost_usd=Decimal("0.0002"), uncached_cost_usd=Decimal("0.00027"))
    UsageRecordFactory(
        cache_hit=True,
        cost_usd=0,
        uncached_cost_usd=Decimal("0.00027"),
        avoided_cost_usd=Decimal("0.00027"),
    )
    UsageRecordFactory(batch=True, cost_usd=Decimal("0.000135"))
    # when
    layers = savings_by_layer(**window)
    summary = usage_summary(**window)
    # then
    assert layers.routing_usd == 3 * (Decimal("0.0045") - Decimal("0.00027"))
    assert layers.prompt_cache_usd == Decimal("0.00007")
    assert layers.response_cache_usd == Decimal("0.00027")
    assert layers.batch_usd == Decimal("0.000135")
    assert layers.total_usd == summary.savings_usd


# --- Monthly cost report and dashboard, read from rollups -----------------------------------

from datetime import UTC, datetime  # noqa: E402

from django.db.models import Count, Q, Sum  # noqa: E402

from tests.usage.conftest import OCTOBER  # noqa: E402
from usage.dashboard_selectors import dashboard_metrics  # noqa: E402
from usage.models import UsageRecord  # noqa: E402
from usage.selectors import monthly_cost_report  # noqa: E402
from usage.services import usage_rollup_rebuild  # noqa: E402

RAW = {
    "requests": Count("id"),
    "mini_requests": Count("id", filter=Q(tier="mini")),
    "errors": Count("id", filter=~Q(status="ok")),
    "input_tokens": Sum("input_tokens"),
    "cached_tokens": Sum("cached_tokens"),
    "output_tokens": Sum("output_tokens"),
    "cost": Sum("cost_usd"),
    "baseline": Sum("baseline_cost_usd"),
}
CENT = Decimal("0.01")


def _raw_october(**filters):
    return UsageRecord.objects.filter(
        created_at__gte=OCTOBER[0], created_at__lt=OCTOBER[1], qa=False, **filters
    )


def _as_raw(line) -> dict:
    return {
        "requests": line.requests,
        "mini_requests": line.mini_requests,
        "errors": line.errors,
        "input_tokens": line.input_tokens,
        "cached_tokens": line.cached_tokens,
        "output_tokens": line.output_tokens,
        "cost": line.cost_usd,
        "baseline": line.baseline_cost_usd,
    }


@pytest.fixture
def october_report(october_ledger):
    usage_rollup_rebuild(start=OCTOBER[0], end=OCTOBER[1])
    return monthly_cost_report(year=2026, month=10, now=datetime(2026, 11, 2, tzinfo=UTC))


def test_report_total_equals_the_raw_ledger_exactly(october_report):
    raw = _raw_october().aggregate(**RAW)
    assert _as_raw(october_report.total) == raw
    assert october_report.total.cost_usd.quantize(CENT) == raw["cost"].quantize(CENT)
    assert october_report.total.savings_usd == raw["baseline"] - raw["cost"]
    assert october_report.complete
    assert october_report.projected_cost_usd == october_report.total.cost_usd


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ("by_category", "category"),
        ("by_model", "model"),
        ("by_tier", "tier"),
        ("by_api_key", "api_key__name"),
    ],
)
def test_report_sections_equal_the_raw_ledger_per_group(october_report, section, field):
    raw = {row.pop(field): row for row in _raw_october().values(field).annotate(**RAW)}
    lines = getattr(october_report, section)
    assert {line.key: _as_raw(line) for line in lines} == raw
    assert sum(line.cost_usd for line in lines) == october_report.total.cost_usd


def test_report_top_end_users_equal_the_raw_ledger(october_report):
    raw = {
        row.pop("end_user"): row
        for row in _raw_october().exclude(end_user="").values("end_user").annotate(**RAW)
    }
    lines = october_report.top_end_users
    assert {line.key: _as_raw(line) for line in lines} == raw
    assert [line.cost_usd for line in lines] == sorted(
        (r["cost"] for r in raw.values()), reverse=True
    )


def test_report_keeps_qa_spend_apart(october_report):
    qa = UsageRecord.objects.filter(
        created_at__gte=OCTOBER[0], created_at__lt=OCTOBER[1], qa=True
    ).aggregate(cost=Sum("cost_usd"))
    assert october_report.qa_cost_usd == qa["cost"]


def test_report_for_one_api_key_sees_only_its_rows(october_report, october_ledger):
    key = october_ledger[0].api_key
    report = monthly_cost_report(year=2026, month=10, now=OCTOBER[1], api_key_id=key.id)
    assert _as_raw(report.total) == _raw_october(api_key=key).aggregate(**RAW)
    assert [line.key for line in report.by_api_key] == [key.name]


def test_current_month_projects_the_month_end(october_report):
    # given ten days of October seen, a third of the month (31 days)
    report = monthly_cost_report(year=2026, month=10, now=datetime(2026, 10, 11, tzinfo=UTC))
    # then
    ten_days = _raw_october().filter(created_at__lt=datetime(2026, 10, 11, tzinfo=UTC))
    cost = ten_days.aggregate(cost=Sum("cost_usd"))["cost"]
    assert not report.complete
    assert report.projected_cost_usd == (cost * 31 / 10).quantize(Decimal("0.0000000001"))


def test_dashboard_month_window_matches_the_ledger(october_report):
    # when
    metrics = dashboard_metrics(window="month", now=datetime(2026, 10, 31, 12, tzinfo=UTC))
    # then
    raw = _raw_october().aggregate(
        **RAW, hits=Count("id", filter=Q(cache_hit=True)), latency=Sum("latency_ms")
    )
    prompt_hits = _raw_october().filter(cached_tokens__gt=0).count()
    assert metrics["requests"] == raw["requests"]
    assert metrics["cost_usd"] == raw["cost"]
    assert metrics["savings_usd"] == raw["baseline"] - raw["cost"]
    assert metrics["month_cost_usd"] == raw["cost"]
    assert metrics["mini_share_percent"] == (
        Decimal(raw["mini_requests"] * 100) / raw["requests"]
    ).quantize(Decimal("0.1"))
    assert metrics["response_cache_hit_rate_percent"] == (
        Decimal(raw["hits"] * 100) / raw["requests"]
    ).quantize(Decimal("0.1"))
    assert metrics["prompt_cache_hit_rate_percent"] == (
        Decimal(prompt_hits * 100) / raw["requests"]
    ).quantize(Decimal("0.1"))
    assert metrics["avg_latency_ms"] == round(raw["latency"] / raw["requests"])
    assert sum(c["requests"] for c in metrics["category_mix"]) == raw["requests"]
    layers = metrics["savings_by_layer"]
    assert sum(layers.values()) == metrics["savings_usd"]
    assert sum(metrics["series"]["daily_cost"]["cost_usd"]) == raw["cost"]


def test_dashboard_hour_window_counts_requests_per_minute_by_tier():
    # given 30 mini and 6 full calls within the last hour
    now = datetime(2026, 11, 24, 12, 0, 30, tzinfo=UTC)
    key = UsageRecordFactory(created_at=now - timedelta(minutes=5)).api_key
    UsageRecordFactory.create_batch(29, created_at=now - timedelta(minutes=5), api_key=key)
    UsageRecordFactory.create_batch(
        6, created_at=now - timedelta(minutes=2), api_key=key, tier="full", latency_ms=2000
    )
    UsageRecordFactory(created_at=now - timedelta(minutes=70), api_key=key)
    usage_rollup_rebuild(start=now - timedelta(hours=2), end=now)
    # when
    metrics = dashboard_metrics(window="hour", now=now)
    # then
    assert metrics["requests"] == 36
    assert metrics["requests_per_minute"] == Decimal("0.60")
    assert metrics["mini_share_percent"] == Decimal("83.3")
    series = metrics["series"]["requests_per_minute_by_tier"]
    # a point for each minute of the hour, 11:01 to 12:00, zero where nothing ran
    assert len(series["labels"]) == 60
    assert (series["labels"][0], series["labels"][-1]) == ("11:01", "12:00")
    tiers = zip(series["mini"], series["full"], strict=True)
    points = dict(zip(series["labels"], tiers, strict=True))
    assert points["11:55"] == (Decimal("30.0"), Decimal("0.0"))
    assert points["11:58"] == (Decimal("0.0"), Decimal("6.0"))
    assert sum(series["mini"]) + sum(series["full"]) == 36
    assert 1500 <= metrics["p95_latency_ms"] <= 2000
    assert metrics["today_cost_usd"] == 37 * Decimal("0.00027")


def test_dashboard_today_window_averages_requests_per_minute_per_hour():
    # given 120 calls at 09:10 and 30 at 11:05 today
    now = datetime(2026, 11, 24, 11, 30, tzinfo=UTC)
    key = UsageRecordFactory(created_at=datetime(2026, 11, 24, 9, 10, tzinfo=UTC)).api_key
    UsageRecordFactory.create_batch(
        119, created_at=datetime(2026, 11, 24, 9, 10, tzinfo=UTC), api_key=key
    )
    UsageRecordFactory.create_batch(
        30, created_at=datetime(2026, 11, 24, 11, 5, tzinfo=UTC), api_key=key, tier="full"
    )
    usage_rollup_rebuild(start=datetime(2026, 11, 24, tzinfo=UTC), end=now)
    # when
    metrics = dashboard_metrics(window="today", now=now)
    # then
    series = metrics["series"]["requests_per_minute_by_tier"]
    # an hour a point, 00:00 to 11:00; the running hour's rate is over its 30 minutes so far
    assert series["labels"] == [f"{h:02d}:00" for h in range(12)]
    assert series["mini"] == [Decimal("0.0")] * 9 + [Decimal("2.0"), Decimal("0.0"), Decimal("0.0")]
    assert series["full"] == [Decimal("0.0")] * 11 + [Decimal("1.0")]
    assert metrics["requests_per_minute"] == Decimal("0.22")  # 150 calls in 690 minutes
