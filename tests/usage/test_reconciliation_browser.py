"""Reconciliation in a real headless browser (Debian's chromium): the dashboard's red alert
leads to each day's difference, and a provider's bill is uploaded from admin."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from tests.factories import UsageRecordFactory
from tests.waits import element_after_click
from usage.models import ProviderUsage, Reconciliation
from usage.reconciliation import provider_usage_reconcile

pytestmark = pytest.mark.django_db(transaction=True)


def test_red_alert_leads_to_the_difference_and_a_bill_is_uploaded(
    staff_browser, live_server, tmp_path
):
    from selenium.webdriver.common.by import By

    # given: yesterday's ledger, and a provider bill 2% higher on cost
    yesterday = timezone.now().date() - timedelta(days=1)
    noon = datetime(yesterday.year, yesterday.month, yesterday.day, 12, tzinfo=UTC)
    UsageRecordFactory.create_batch(
        4, created_at=noon, model="gpt-4o-mini", input_tokens=1000, cached_tokens=0,
        output_tokens=100, cost_usd=Decimal("0.00021"),
    )  # fmt: skip
    ProviderUsage.objects.create(
        day=yesterday, model="gpt-4o-mini", requests=4, input_tokens=4000, cached_tokens=0,
        output_tokens=400, cost_usd=Decimal("0.0008568"), source="openai_export",
        imported_at=timezone.now(),
    )  # fmt: skip
    provider_usage_reconcile(start=yesterday, end=yesterday, now=timezone.now())
    browser = staff_browser
    # when: the dashboard
    browser.get(f"{live_server.url}/dashboard/")
    alert = browser.find_element(By.ID, "reconciliation-alert")
    # then: a red alert names the day and model
    assert f"{yesterday:%Y-%m-%d} gpt-4o-mini: mismatch" in alert.text
    assert "largest difference 2%" in alert.text
    red, green, blue = _rgb(alert.value_of_css_property("color"))
    assert red > 150 and green < 80 and blue < 80
    # when: its link
    alert.find_element(By.LINK_TEXT, "See each day's difference").click()
    # then: the admin list of differences, filtered to mismatches
    element_after_click(browser, By.ID, "result_list")
    rows = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert len(rows) == 1
    assert "gpt-4o-mini" in rows[0].text and "0.0000168" in rows[0].text
    # when: a bill of another provider, uploaded with a bad row, then fixed
    bill = tmp_path / "bill.csv"
    header = "day,model,requests,input_tokens,cached_tokens,output_tokens,cost_usd\n"
    bill.write_text(header + f"{yesterday},other-model,2,300,0,20,-1\n")
    browser.get(f"{live_server.url}/admin/usage/providerusage/import/")
    browser.find_element(By.NAME, "file").send_keys(str(bill))
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    # then
    errors = element_after_click(browser, By.CLASS_NAME, "import-errors")
    assert "row 2: cost_usd '-1'" in errors.text
    assert not ProviderUsage.objects.filter(model="other-model").exists()
    bill.write_text(header + f"{yesterday},other-model,2,300,0,20,0.001\n")
    browser.find_element(By.NAME, "file").send_keys(str(bill))
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    assert "Imported 1 row(s)" in element_after_click(browser, By.CSS_SELECTOR, ".messagelist").text
    assert Reconciliation.objects.get(model="other-model").status == "missing_ledger"


def _rgb(css: str) -> tuple[int, ...]:
    return tuple(int(part) for part in css[css.index("(") + 1 : -1].split(",")[:3])
