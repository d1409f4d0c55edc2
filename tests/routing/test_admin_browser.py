"""The decision matrix and the rollout page in a real headless browser (Debian's chromium)."""

import os
from decimal import Decimal

import pytest
from django.utils import timezone

from routing.experiments import rollout_set_percentage
from routing.selectors import rollout_arm_metrics
from tests.factories import UsageRecordFactory
from tests.waits import element_after_click

pytestmark = pytest.mark.django_db(transaction=True)
SCREENSHOTS = os.environ.get("SCREENSHOT_DIR")  # set it to keep PNGs of the pages


def _shot(driver, name: str) -> None:
    if SCREENSHOTS:
        driver.save_screenshot(os.path.join(SCREENSHOTS, f"{name}.png"))


def _cells(driver, selector: str) -> list[list[str]]:
    rows = driver.find_elements("css selector", selector)
    return [[c.text for c in r.find_elements("css selector", "td, th")] for r in rows]


def test_matrix_page_shows_each_category_its_share_and_its_tiers(
    staff_browser, live_server, policy
):
    # given 30 days of traffic: 6 chatbot and 2 strategy requests
    UsageRecordFactory.create_batch(6, category="chatbot", policy_version=policy)
    UsageRecordFactory.create_batch(2, category="strategy", policy_version=policy)
    # when
    staff_browser.get(f"{live_server.url}/admin/routing/taskcategory/")
    _shot(staff_browser, "matrix")
    # then one row per category, with its share and an 11-cell strip
    rows = {r[1]: r for r in _cells(staff_browser, "#result_list tbody tr")}
    assert set(rows) >= {"chatbot", "strategy", "legal", "compliance", "moderation"}
    assert rows["chatbot"][2] == "75.0%"
    assert rows["strategy"][2] == "25.0%"
    assert rows["strategy"][3] == "≥ 7"
    assert rows["legal"][3] == "always"
    strategy = staff_browser.find_element(
        "xpath", "//tr[.//a[text()='strategy']]//span[@class='matrix-strip']"
    )
    tiers = [
        c.get_attribute("class").split("-")[-1]
        for c in strategy.find_elements("css selector", ".matrix-cell")
    ]
    assert tiers == ["mini"] * 7 + ["full"] * 4
    assert "shuts down on 2027-01-14" in staff_browser.page_source


def test_rollout_page_shows_both_arms_as_the_ledger_has_them(staff_browser, live_server, policy):
    # given a 10% launch with traffic in both arms
    rollout_set_percentage(percent=Decimal("10"), actor="ops")
    UsageRecordFactory.create_batch(
        9, arm="routed", cost_usd=Decimal("0.0003"), latency_ms=400, policy_version=policy
    )
    UsageRecordFactory.create_batch(
        3,
        arm="control",
        tier="full",
        model="gpt-4o",
        cost_usd=Decimal("0.0045"),
        latency_ms=900,
        policy_version=policy,
    )
    # when
    staff_browser.get(f"{live_server.url}/admin/routing/rolloutsetting/?window=24h")
    _shot(staff_browser, "rollout")
    # then the page says where the launch stands and each arm's figures
    assert staff_browser.find_element("id", "rollout-percent").text == "10%"
    now = timezone.now()
    expected = rollout_arm_metrics(start=now - timezone.timedelta(hours=24), end=now)
    rows = {r[0]: r for r in _cells(staff_browser, "#arms tbody tr")}
    assert rows["routed"][1] == "9" and rows["control"][1] == "3"
    assert rows["routed"][3] == f"${expected['routed']['cost_per_1k_usd']}"
    assert rows["control"][2] == "0.0%"
    assert rows["routed"][7] == f"{expected['routed']['savings_vs_control_percent']}%"
    assert rows["routed"][5] == "400 ms"
    # and the advance button leads to a confirmation, not a change
    staff_browser.find_element("partial link text", "Advance to 50%").click()
    confirm = element_after_click(staff_browser, "css selector", "input[type=submit][value^=Yes]")
    assert confirm.get_attribute("value") == "Yes, advance to 50%"


def test_matrix_fits_1400_px_and_its_figures_are_the_ledgers(staff_browser, live_server, policy):
    # given 30 days of traffic (a QA row and an older row that do not count) and verdicts
    from datetime import timedelta

    from django.db.models import Count

    from routing.models import QualityEvaluation
    from routing.quality import wilson_interval
    from tests.routing.test_calibration import _evaluations
    from usage.models import UsageRecord

    UsageRecordFactory.create_batch(5, category="chatbot", policy_version=policy)
    UsageRecordFactory.create_batch(2, category="marketing", policy_version=policy)
    UsageRecordFactory(category="marketing", qa=True, policy_version=policy)
    UsageRecordFactory(
        category="strategy", created_at=timezone.now() - timedelta(days=31), policy_version=policy
    )
    _evaluations("marketing", 3.0, good=7, bad=3)
    # when the matrix is shown in a 1,400 px window
    staff_browser.set_window_size(1400, 1000)
    staff_browser.get(f"{live_server.url}/admin/routing/taskcategory/")
    _shot(staff_browser, "matrix-1400")
    # then nothing scrolls sideways and the model columns are in view
    results = staff_browser.find_element("css selector", "#changelist .results")
    assert results.get_property("scrollWidth") <= results.get_property("clientWidth")
    viewport = staff_browser.execute_script("return document.documentElement.clientWidth")
    models = staff_browser.find_element("css selector", "td.field-models")
    assert models.rect["x"] + models.rect["width"] <= viewport
    assert models.text.splitlines() == ["gpt-4o-mini", "gpt-4o"]
    # and the legend shows cells as the strip does: a complexity digit in the tier's colour
    legend = staff_browser.find_elements("css selector", "#matrix-legend .matrix-cell")
    assert [(c.text, c.get_attribute("class")) for c in legend] == [
        ("3", "matrix-cell matrix-mini"),
        ("8", "matrix-cell matrix-full"),
    ]
    # and each category's traffic share and quality retained are the ledger's
    since = timezone.now() - timedelta(days=30)
    counts = dict(
        UsageRecord.objects.filter(created_at__gte=since, qa=False)
        .values_list("category")
        .annotate(n=Count("id"))
    )
    rows = {r[1]: r for r in _cells(staff_browser, "#result_list tbody tr")}
    total = sum(counts.values())
    for slug, row in rows.items():
        share = Decimal(counts.get(slug, 0)) * 100 / total
        assert row[2] == f"{share.quantize(Decimal('0.1'))}%", slug
    good = QualityEvaluation.objects.filter(
        category="marketing", verdict__in=["cheap_better", "tie"]
    ).count()
    low, high = wilson_interval(good=good, n=10)
    assert rows["marketing"][5].startswith(f"{good * 10:.1f}% ({low * 100:.1f}-{high * 100:.1f}")
    assert rows["chatbot"][5] == "-"


def test_rollout_figures_are_the_ledgers_and_advance_does_not_look_like_step_back(
    staff_browser, live_server, policy
):
    # given a 50% launch: both arms in the last 24 hours, with errors, fast and slow calls, a
    # QA call and a call two days ago that do not count
    from datetime import timedelta

    from routing.models import QualityEvaluation
    from usage.models import UsageRecord

    rollout_set_percentage(percent=Decimal("50"), actor="ops")
    artifact = policy.snapshot["router"]["artifact"]
    for n in range(14):
        UsageRecordFactory(
            arm="routed",
            router_artifact=artifact if n % 2 else "",
            tier="full" if n % 5 == 0 else "mini",
            cost_usd=Decimal("0.0001") * (n + 1),
            latency_ms=1 + n % 4 if n < 12 else 800,
            status="ok" if n % 7 else "upstream_error",
            policy_version=policy,
        )
    for n in range(6):
        UsageRecordFactory(
            arm="control",
            tier="full",
            model="gpt-4o",
            cost_usd=Decimal("0.0045"),
            latency_ms=600 + 100 * n,
            policy_version=policy,
        )
    UsageRecordFactory(arm="routed", qa=True, latency_ms=9000, policy_version=policy)
    from tests.routing.test_calibration import _evaluations

    _evaluations("chatbot", 1.0, good=1, bad=1, tie=1)
    QualityEvaluation.objects.update(
        features={"artifact": artifact}, created_at=timezone.now() - timedelta(hours=1)
    )
    UsageRecordFactory(
        arm="control", created_at=timezone.now() - timedelta(days=2), policy_version=policy
    )
    # when
    staff_browser.get(f"{live_server.url}/admin/routing/rolloutsetting/?window=24h")
    _shot(staff_browser, "rollout-50")
    # then each arm's figures are the ledger's over the same 24 hours
    since = timezone.now() - timedelta(hours=24)
    figures = {}
    for arm in ("routed", "control"):
        row = staff_browser.find_element("css selector", f"#arms tr.arm-{arm}")
        cells = row.find_elements("css selector", "[data-figure]")
        figures[arm] = {c.get_attribute("data-figure"): c.text for c in cells}
    cost_per_1k = {}
    for arm in ("routed", "control"):
        rows = list(UsageRecord.objects.filter(arm=arm, qa=False, created_at__gte=since))
        n = len(rows)
        latencies = sorted(r.latency_ms for r in rows)
        cost_per_1k[arm] = (sum(r.cost_usd for r in rows) * 1000 / n).quantize(Decimal("0.0001"))
        mini = Decimal(sum(r.tier == "mini" for r in rows) * 100) / n
        errors = Decimal(sum(r.status != "ok" for r in rows) * 100) / n
        assert figures[arm]["requests"] == str(n)
        assert figures[arm]["mini_percent"] == f"{mini.quantize(Decimal('0.1'))}%"
        assert figures[arm]["error_percent"] == f"{errors.quantize(Decimal('0.01'))}%"
        assert figures[arm]["cost_per_1k_usd"] == f"${cost_per_1k[arm]}"
        assert figures[arm]["p50_latency_ms"] == f"{latencies[n // 2]} ms"
        assert figures[arm]["p95_latency_ms"] == f"{latencies[int(n * 0.95)]} ms"
    saving = (1 - cost_per_1k["routed"] / cost_per_1k["control"]) * 100
    assert figures["routed"]["savings_vs_control_percent"] == f"{saving.quantize(Decimal('0.1'))}%"
    # and the router artifact's: the routed requests it decided, and the verdicts on them
    decided = list(
        UsageRecord.objects.filter(router_artifact=artifact, qa=False, created_at__gte=since)
    )
    row = staff_browser.find_element("id", f"artifact-{artifact}")
    shown = {
        c.get_attribute("data-figure"): c.text
        for c in row.find_elements("css selector", "[data-figure]")
    }
    n = len(decided)
    assert shown["requests"] == str(n) == "7"
    mini = Decimal(sum(r.tier == "mini" for r in decided) * 100) / n
    assert shown["mini_percent"] == f"{mini.quantize(Decimal('0.1'))}%"
    per_1k = (sum(r.cost_usd for r in decided) * 1000 / n).quantize(Decimal("0.0001"))
    assert shown["cost_per_1k_usd"] == f"${per_1k}"
    errors = Decimal(sum(r.status != "ok" for r in decided) * 100) / n
    assert shown["error_percent"] == f"{errors.quantize(Decimal('0.01'))}%"
    assert shown["retained"] == "66.7% (3)"
    # and the page says what it is for, and moving forward does not look like moving back
    assert "staged launch" in staff_browser.find_element("id", "page-purpose").text
    advance = staff_browser.find_element("css selector", "a.rollout-advance")
    back = staff_browser.find_element("css selector", "a.rollout-step-back")
    assert advance.text.startswith("▲ Advance to 100") and back.text.startswith("▼ Step back")
    assert advance.value_of_css_property("background-color") != back.value_of_css_property(
        "background-color"
    )
    assert advance.value_of_css_property("color") != back.value_of_css_property("color")


def _luminance(css_color: str) -> float:
    """Relative luminance (WCAG) of an rgb()/rgba() colour."""
    import re

    channels = [int(v) / 255 for v in re.findall(r"[\d.]+", css_color)[:3]]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(one: str, two: str) -> float:
    high, low = sorted((_luminance(one), _luminance(two)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_whatif_inputs_read_as_fields_and_its_counts_and_costs_are_the_ledgers(
    staff_browser, live_server, policy
):
    # given chatbot traffic of the last days: 6 answered on the routed arm (cheap), 4 on the
    # control arm of an earlier 10% rollout (premium), 3 cache hits and 2 failures; a QA call
    from datetime import timedelta

    from usage.models import UsageRecord

    earlier = timezone.now() - timedelta(days=3)
    common = {"category": "chatbot", "policy_version": policy, "created_at": earlier}
    UsageRecordFactory.create_batch(6, arm="routed", **common)
    premium = {"tier": "full", "model": "gpt-4o", "cost_usd": Decimal("0.0045")}
    UsageRecordFactory.create_batch(4, arm="control", reason_code="control", **premium, **common)
    UsageRecordFactory.create_batch(3, cache_hit=True, cost_usd=0, **common)
    UsageRecordFactory.create_batch(2, status="upstream_error", cost_usd=0, **common)
    UsageRecordFactory(qa=True, **common)
    chatbot = policy.snapshot["categories"]["chatbot"]
    assert chatbot["full_from_complexity"] is None  # so the saved form is no change at all
    # when the team opens chatbot's form and asks what if, changing nothing
    from routing.models import TaskCategory

    pk = TaskCategory.objects.get(slug="chatbot").pk
    staff_browser.get(f"{live_server.url}/admin/routing/taskcategory/{pk}/change/")
    # then the what-if inputs are light fields with readable placeholders, not dark buttons
    for field_id in ("id__whatif_days", "id__whatif_routed_percent", "id__whatif_models"):
        field = staff_browser.find_element("id", field_id)
        background = field.value_of_css_property("background-color")
        assert _luminance(background) > 0.6, (field_id, background)
        placeholder = staff_browser.execute_script(
            "return getComputedStyle(arguments[0], '::placeholder').color", field
        )
        assert _contrast(placeholder, background) >= 3, (field_id, placeholder, background)
    staff_browser.find_element("css selector", "input[name=_whatif]").click()
    row = element_after_click(
        staff_browser, "css selector", '#whatif-result tr[data-category="chatbot"]'
    )
    _shot(staff_browser, "whatif")
    # then the draft changes nothing: the control arm's past premium calls are not its saving
    shown = {
        c.get_attribute("data-figure"): c.get_attribute("data-value") or c.text
        for c in row.find_elements("css selector", "[data-figure]")
    }
    assert Decimal(shown["change_usd"]) == 0
    assert staff_browser.find_element("id", "whatif-change").text == "$0.00"
    # and the counts and costs are the ledger's for the window
    window = UsageRecord.objects.filter(category="chatbot", qa=False)
    replayed = window.filter(status="ok", cache_hit=False)
    assert shown["requests"] == str(replayed.count()) == "10"
    assert shown["cache_hits"] == str(window.filter(cache_hit=True).count()) == "3"
    assert shown["failed"] == "2"
    assert Decimal(shown["actual_cost_usd"]) == sum(r.cost_usd for r in replayed)
    mini_cost = Decimal("0.15") * 1000 / 10**6 + Decimal("0.60") * 200 / 10**6
    assert Decimal(shown["current_cost_usd"]) == 10 * mini_cost  # all ten on the cheap tier now
    assert Decimal(shown["projected_cost_usd"]) == 10 * mini_cost
    assert staff_browser.find_element("id", "whatif-cache-hits").text == "3"
