"""The dashboard in a real headless browser (Debian's chromium): figures against the ledger."""

from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.db.models import Sum
from django.utils import timezone

from tests.factories import ApiKeyFactory, UsageRecordFactory
from usage.models import UsageRecord
from usage.services import usage_rollup_refresh

pytestmark = pytest.mark.django_db(transaction=True)


def _usd(amount: Decimal) -> str:
    return f"${amount.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,}"


def _text(driver, metric: str) -> str:
    return driver.find_element("css selector", f'[data-metric="{metric}"]').text


def test_dashboard_shows_the_ledger_and_refreshes_in_place(staff_browser, live_server, settings):
    from selenium.webdriver.support.ui import WebDriverWait

    # given a day of traffic: 18 mini calls, 2 premium, 1 error, rolled up, and a staff login
    settings.DASHBOARD_REFRESH_S = 1
    key = ApiKeyFactory()
    mini = {"cost_usd": Decimal("0.0123456789"), "uncached_cost_usd": Decimal("0.0123456789")}
    UsageRecordFactory.create_batch(18, api_key=key, baseline_cost_usd=Decimal("0.2"), **mini)
    UsageRecordFactory.create_batch(
        2,
        api_key=key,
        tier="full",
        category="strategy",
        cost_usd=Decimal("0.0333333333"),
        uncached_cost_usd=Decimal("0.0333333333"),
        baseline_cost_usd=Decimal("0.035"),
        latency_ms=1800,
    )
    UsageRecordFactory(
        api_key=key, status="upstream_error", cost_usd=0, uncached_cost_usd=0, baseline_cost_usd=0
    )
    usage_rollup_refresh()
    browser = staff_browser
    # when
    browser.get(f"{live_server.url}/dashboard/?window=today")
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: d.execute_script("return document.body.dataset.chartsReady"))
    browser.execute_script("window.__sameDocument = true;")
    # then the figures are the ledger's
    ledger = UsageRecord.objects.aggregate(cost=Sum("cost_usd"), baseline=Sum("baseline_cost_usd"))
    assert _text(browser, "requests") == "21"
    assert _text(browser, "mini_share_percent") == "90.5%"
    assert _text(browser, "error_rate_percent") == "4.8%"
    assert _text(browser, "cost_usd") == _usd(ledger["cost"]) == "$0.29"
    assert _text(browser, "p95_latency_ms") == "2,000 ms"
    assert _text(browser, "today_cost_usd") == _usd(ledger["cost"])
    assert _text(browser, "savings_usd") == _usd(ledger["baseline"] - ledger["cost"])
    charts = browser.execute_script("return Object.keys(Chart.instances).length")
    assert charts == 4
    # and the page says what it shows, in words a person reads
    assert "What the router did in this window" in browser.find_element("id", "page-purpose").text
    assert browser.find_element("id", "refresh-every").text == "1 s"
    assert "p95 latency (at most)" in browser.page_source
    # and the requests-per-minute chart has a point for every hour of today, from midnight
    labels = browser.execute_script(
        "return Object.values(Chart.instances).find(c => c.canvas.id === 'chart-tiers').data.labels"
    )
    assert labels == [f"{hour:02d}:00" for hour in range(len(labels))]
    assert labels[-1] == timezone.now().strftime("%H:00")
    # when more calls land and the rollups refresh, the page updates without reloading
    UsageRecordFactory.create_batch(4, api_key=key, cost_usd=Decimal("1"), uncached_cost_usd=1)
    usage_rollup_refresh()
    wait.until(lambda d: _text(d, "requests") == "25")
    assert browser.execute_script("return window.__sameDocument") is True
    assert _text(browser, "cost_usd") == _usd(ledger["cost"] + 4) == "$4.29"
    assert _text(browser, "savings_usd") == "-$0.60"  # 4 calls dearer than the baseline
    refreshes = int(browser.execute_script("return document.body.dataset.refreshes"))
    wait.until(
        lambda d: int(d.execute_script("return document.body.dataset.refreshes")) > refreshes
    )
    assert not browser.execute_script("return document.body.dataset.refreshError")
