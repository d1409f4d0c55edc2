"""Quality-assurance spend (shadow and judge calls) is kept out of every traffic KPI."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY

from routing.selectors import category_traffic_share, rollout_arm_metrics, whatif_report
from tests.factories import ApiKeyFactory, PolicyVersionFactory, UsageRecordFactory
from usage.dashboard_selectors import dashboard_metrics
from usage.models import UsageEndUserDay, UsageRecord
from usage.selectors import monthly_cost_report, savings_by_layer, usage_by_category, usage_summary
from usage.services import usage_record, usage_rollup_rebuild

pytestmark = pytest.mark.django_db


def _fields(record: UsageRecord) -> dict:
    return {
        f.attname: getattr(record, f.attname)
        for f in UsageRecord._meta.concrete_fields
        if f.name != "id"
    }


def _kpis(now, start, end) -> dict:
    usage_rollup_rebuild(start=start, end=end)
    dashboard = dashboard_metrics(window="today", now=now)
    report = monthly_cost_report(year=now.year, month=now.month, now=now)
    return {
        "summary": usage_summary(start=start, end=end),
        "by_category": usage_by_category(start=start, end=end),
        "layers": savings_by_layer(start=start, end=end),
        "dashboard": {k: v for k, v in dashboard.items() if k not in ("now", "start")},
        "report_total": report.total,
        "report_categories": report.by_category,
        "end_user_days": list(UsageEndUserDay.objects.values_list("end_user", "requests")),
        "traffic_share": category_traffic_share(days=1, now=end),
        "arms": rollout_arm_metrics(start=start, end=end),
    }


def test_qa_rows_change_no_traffic_kpi_and_are_reported_apart(
    policy, django_capture_on_commit_callbacks
):
    # given an hour of traffic
    now = timezone.now().replace(second=30, microsecond=0)
    start, end = now - timedelta(minutes=5), now + timedelta(minutes=1)
    key, version = ApiKeyFactory(), PolicyVersionFactory()
    for i in range(6):
        UsageRecordFactory(
            api_key=key,
            policy_version=version,
            created_at=now - timedelta(seconds=i),
            end_user="fan-1",
            category="chatbot" if i % 2 else "strategy",
        )
    before = _kpis(now, start, end)
    whatif_before = whatif_report(draft={}, days=1, now=end).total
    labels = {"tier": "full", "category": "chatbot", "model": "gpt-4o", "status": "ok"}
    metric_before = REGISTRY.get_sample_value("huntaze_llm_requests_total", labels) or 0
    # when shadow and judge calls of the same key, category and end user are recorded
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(3):
            qa = UsageRecordFactory.build(
                api_key=key,
                policy_version=version,
                created_at=now - timedelta(seconds=2),
                end_user="fan-1",
                category="chatbot",
                tier="full",
                model="gpt-4o",
                qa=True,
                cost_usd=Decimal("0.5"),
                baseline_cost_usd=Decimal("0.5"),
                uncached_cost_usd=Decimal("0.5"),
                metadata={"qa": "judge", "qa_of": "req_x"},
            )
            usage_record(**_fields(qa))
    # then every traffic figure is unchanged
    after = _kpis(now, start, end)
    for name in before:
        assert after[name] == before[name], name
    assert whatif_report(draft={}, days=1, now=end).total == whatif_before
    assert (REGISTRY.get_sample_value("huntaze_llm_requests_total", labels) or 0) == metric_before
    # and the spend is reported apart
    report = monthly_cost_report(year=now.year, month=now.month, now=now)
    assert report.qa_cost_usd == Decimal("1.5")
