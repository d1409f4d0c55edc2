"""The dashboard's cost by line item in a real headless browser (Debian's chromium)."""

from decimal import Decimal

import pytest

from tests.factories import ApiKeyFactory, UsageRecordFactory
from usage.services import usage_rollup_refresh

pytestmark = pytest.mark.django_db(transaction=True)

D = Decimal


def test_the_line_items_add_up_to_the_windows_cost(staff_browser, live_server):
    from selenium.webdriver.support.ui import WebDriverWait

    # given two itemised calls (one flex, one long-context with reasoning) and an older row
    key = ApiKeyFactory()
    flex = {"cost_input_usd": D("0.006"), "cost_cached_usd": D("0.0024"),
            "cost_cache_write_usd": D("0.0075"), "cost_output_usd": D("0.0075"),
            "cost_reasoning_usd": D("0.015"), "cost_tier_usd": D("-0.0192")}  # fmt: skip
    long = {"cost_input_usd": D("0.72"), "cost_output_usd": D("0.0225"),
            "cost_long_context_usd": D("0.74115")}  # fmt: skip
    UsageRecordFactory(api_key=key, cost_usd=sum(flex.values()), service_tier="flex", **flex)
    UsageRecordFactory(api_key=key, cost_usd=sum(long.values()), **long)
    UsageRecordFactory(api_key=key, cost_usd=D("0.00027"))  # billed before the price book
    usage_rollup_refresh()
    # when
    staff_browser.get(f"{live_server.url}/dashboard/?window=today")
    WebDriverWait(staff_browser, 30).until(
        lambda d: d.execute_script("return document.body.dataset.chartsReady")
    )
    # then each item shows with its amount, and they add up to the total shown
    cells = staff_browser.execute_script(
        "return [...document.querySelectorAll('#line-items tbody tr')].map(r =>"
        " [r.dataset.item, r.cells[0].textContent, r.cells[2].dataset.value])"
    )
    shown = {key: D(value) for key, _label, value in cells}
    assert shown == {
        "input": D("0.726"), "cached": D("0.0024"), "cache_write": D("0.0075"),
        "output": D("0.03"), "reasoning": D("0.015"), "long_context": D("0.74115"),
        "tier": D("-0.0192"), "unitemised": D("0.00027"),
    }  # fmt: skip
    total = staff_browser.find_element("id", "line-items-total")
    assert D(total.get_attribute("data-value")) == sum(shown.values()) == D("1.50312")
    assert total.text == "$1.5031"
    labels = [label for _key, label, _value in cells]
    assert "long-context surcharge" in labels and "cache writes" in labels
