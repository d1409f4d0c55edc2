"""The staff dashboard's quality panel: figures per category and band, and the alert."""

import pytest
from django.contrib.auth import get_user_model

from tests.routing.test_calibration import _evaluations

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw-for-tests")
    client.force_login(user)
    return client


def test_dashboard_shows_quality_retained_with_interval_and_alert(staff_client, policy, settings):
    # given marketing under its 95% floor with enough evaluations, chatbot above it
    settings.QUALITY_MIN_SAMPLES = 10
    _evaluations("marketing", 5.0, good=8, bad=2)
    _evaluations("chatbot", 2.0, good=10, bad=0)
    # when
    page = staff_client.get("/dashboard/").content.decode()
    # then
    assert 'id="quality-panel"' in page
    assert "Quality alert: <strong>marketing</strong>" in page
    assert "80.0%" in page and "49.0-94.3%" in page
    assert 'data-category="chatbot"' in page and "72.2-100.0%" in page
    assert "below floor" in page


def test_dashboard_explains_how_to_switch_shadowing_on_without_evaluations(staff_client, policy):
    page = staff_client.get("/dashboard/").content.decode()
    assert "No evaluations yet" in page and "quality_sampling" in page


def _figure(page: str, name: str) -> str:
    import re

    match = re.search(rf'data-figure="{name}" data-value="([^"]*)"', page)
    assert match, f"no figure {name}"
    return match.group(1)


@pytest.mark.parametrize(("qa_rows", "warned"), [(2, False), (8, True)])
def test_qa_spend_is_shown_beside_the_routed_bill_with_a_warning_over_the_ratio(
    staff_client, policy, settings, qa_rows, warned
):
    from datetime import timedelta
    from decimal import Decimal

    from django.db.models import Sum
    from django.utils import timezone

    from tests.factories import UsageRecordFactory
    from usage.models import UsageRecord

    # given $1.00 of routed traffic and $0.125 per QA call, one routed row outside the window,
    # and a warning level of 25% of the routed bill
    settings.QUALITY_QA_SPEND_WARN_PERCENT = 25
    UsageRecordFactory.create_batch(4, cost_usd=Decimal("0.25"))
    UsageRecordFactory(cost_usd=Decimal("7"), created_at=timezone.now() - timedelta(days=31))
    UsageRecordFactory.create_batch(qa_rows, qa=True, cost_usd=Decimal("0.125"))
    # when
    page = staff_client.get("/dashboard/").content.decode()
    # then the figures are the ledger's over the panel's window, and the warning follows the ratio
    since = timezone.now() - timedelta(days=settings.QUALITY_WINDOW_DAYS)
    window = UsageRecord.objects.filter(created_at__gte=since)
    qa = window.filter(qa=True).aggregate(s=Sum("cost_usd"))["s"]
    routed = window.filter(qa=False).aggregate(s=Sum("cost_usd"))["s"]
    assert Decimal(_figure(page, "qa_cost_usd")) == qa
    assert Decimal(_figure(page, "routed_cost_usd")) == routed == Decimal("1")
    assert int(_figure(page, "qa_calls")) == qa_rows
    assert Decimal(_figure(page, "qa_percent_of_bill")) == qa * 100 / routed
    assert (f'data-too-high="{str(warned).lower()}"' in page) is True
    assert ("Above the 25% warning level" in page) is warned
