"""The staff dashboard and /metrics, through Django's test client."""

from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from tests.factories import ApiKeyFactory, UsageRecordFactory
from usage.services import usage_rollup_refresh

pytestmark = pytest.mark.django_db


@pytest.fixture
def today_ledger():
    key = ApiKeyFactory()
    UsageRecordFactory.create_batch(9, api_key=key)
    UsageRecordFactory(api_key=key, tier="full", category="legal", cost_usd=Decimal("0.0045"))
    usage_rollup_refresh(now=timezone.now())


def test_dashboard_page_shows_the_figures_and_the_local_chart_library(staff_client, today_ledger):
    response = staff_client.get("/dashboard/?window=today")
    assert response.status_code == 200
    body = response.content.decode()
    assert 'data-metric="mini_share_percent"' in body
    assert "/static/js/Chart.min.js" in body
    assert '<script src="http' not in body  # no CDN: the machine has no internet
    assert '"requests": 10,' in body


def test_dashboard_data_is_json_for_the_chosen_window(staff_client, today_ledger):
    data = staff_client.get("/dashboard/data.json?window=hour").json()
    assert data["window"] == "hour"
    assert data["requests"] == 10
    assert data["mini_share_percent"] == "90.0"
    assert Decimal(data["today_cost_usd"]) == 9 * Decimal("0.00027") + Decimal("0.0045")
    assert set(data["series"]) == {"requests_per_minute_by_tier", "daily_cost"}
    assert data["savings_by_layer"]["batch"] == "0.0000000000"  # plain, never "0E-10"


def test_the_chart_library_is_served_from_the_package(client):
    from django.contrib.staticfiles import finders

    path = finders.find("js/Chart.min.js")
    assert path and "site-packages" in path
    assert Path(path).read_text()[:200].count("Chart.js v2")


@pytest.mark.parametrize("url", ["/dashboard/", "/dashboard/data.json"])
def test_dashboard_refuses_non_staff_and_anonymous(client, member_client, url):
    assert member_client.get(url).status_code == 302
    client.logout()
    response = client.get(url)
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_admin_links_to_the_dashboard(staff_client):
    get_user_model().objects.filter(username="ops").update(is_superuser=True)
    assert "/dashboard/" in staff_client.get("/admin/usage/").content.decode()
    assert "/dashboard/" in staff_client.get("/admin/usage/usagerecord/").content.decode()


def test_metrics_are_served_to_allowed_addresses(client, settings, today_ledger):
    settings.METRICS_ALLOWED_IPS = ["127.0.0.1"]
    response = client.get("/metrics")
    assert response.status_code == 200
    body = response.content.decode()
    assert "# TYPE huntaze_llm_requests_total counter" in body
    assert "# TYPE huntaze_llm_latency_seconds histogram" in body


def test_metrics_refuse_other_addresses_unless_the_token_is_sent(client, settings):
    settings.METRICS_ALLOWED_IPS = []
    settings.METRICS_BEARER_TOKEN = "s3cret"
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret").status_code == 200
