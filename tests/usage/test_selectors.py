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
