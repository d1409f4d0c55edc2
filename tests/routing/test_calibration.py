"""Quality retained from stored verdicts, calibration on a constructed data set, and their
admin pages and command."""

import uuid
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone

from routing.models import PolicyVersion, QualityEvaluation, TaskCategory
from routing.quality_selectors import category_calibration, quality_panel
from tests.factories import ApiKeyFactory, UsageRecordFactory

pytestmark = pytest.mark.django_db


def _evaluations(category: str, complexity: float, *, good: int, bad: int, tie: int = 0):
    key = ApiKeyFactory()
    when = timezone.now() - timedelta(days=1)
    verdicts = ["cheap_better"] * good + ["premium_better"] * bad + ["tie"] * tie
    QualityEvaluation.objects.bulk_create(
        QualityEvaluation(
            request_id=f"req_{uuid.uuid4().hex}",
            created_at=when,
            api_key=key,
            category=category,
            complexity=complexity,
            cheap_model="gpt-4o-mini",
            premium_model="gpt-4o",
            judge_model="gpt-4o",
            verdict=verdict,
            verdict_ab=verdict,
            verdict_ba=verdict,
            extra_cost_usd=Decimal("0.01"),
        )
        for verdict in verdicts
    )


@pytest.fixture
def strategy_data(policy, settings):
    """Strategy (premium from 7): 40 evaluations at each level 0-6, quality falling with
    complexity (bad: level 4 one, level 5 four, level 6 ten), and traffic at levels 0-9."""
    settings.QUALITY_MIN_SAMPLES = 30
    for level, bad in enumerate([0, 0, 0, 0, 1, 4, 10]):
        _evaluations("strategy", level + 0.5, good=40 - bad - 5, bad=bad, tie=5)
    key = ApiKeyFactory()
    version = PolicyVersion.objects.first()
    for level in range(10):
        full = level >= 7
        UsageRecordFactory.create_batch(
            10,
            api_key=key,
            policy_version=version,
            created_at=timezone.now() - timedelta(days=1),
            category="strategy",
            complexity=level + 0.5,
            tier="full" if full else "mini",
            model="gpt-4o" if full else "gpt-4o-mini",
            reason_code="complexity>=7:category=strategy" if full else "default:mini",
            input_tokens=100_000,
            output_tokens=10_000,
        )
    return TaskCategory.objects.get(slug="strategy")


# --- quality retained ----------------------------------------------------------------------


def test_quality_retained_per_category_and_band_from_known_verdicts(policy, settings):
    # given chatbot: 9 of 10 at least as good in band 0-3 (one a tie), 20 of 20 in band 4-6
    settings.QUALITY_MIN_SAMPLES = 10
    _evaluations("chatbot", 2.0, good=8, tie=1, bad=1)
    _evaluations("chatbot", 5.0, good=20, bad=0)
    _evaluations("moderation", 1.0, good=3, bad=0)
    # when
    panel = quality_panel(now=timezone.now())
    # then
    chatbot = next(c for c in panel.categories if c.category == "chatbot")
    assert (chatbot.overall.good, chatbot.overall.n) == (29, 30)
    assert chatbot.overall.percent == Decimal("96.7")
    assert chatbot.overall.interval == (Decimal("83.3"), Decimal("99.4"))
    low = chatbot.bands["0-3"]
    assert (low.good, low.n, low.percent, low.interval) == (
        9,
        10,
        Decimal("90.0"),
        (Decimal("59.6"), Decimal("98.2")),
    )
    assert chatbot.bands["4-6"].percent == Decimal("100.0")
    assert chatbot.bands["7-10"].n == 0
    assert not chatbot.overall.below_floor  # 96.7% against a 95% floor
    assert panel.evaluations == 33


def test_a_category_below_its_floor_raises_the_alert_once_there_are_enough(policy, settings):
    settings.QUALITY_MIN_SAMPLES = 10
    _evaluations("marketing", 3.0, good=8, bad=2)
    _evaluations("analytics", 3.0, good=8, bad=1)  # 9 evaluations: too few to alert
    panel = quality_panel(now=timezone.now())
    assert [c.category for c in panel.alerts] == ["marketing"]


# --- calibration ---------------------------------------------------------------------------


def test_calibration_picks_the_cheapest_threshold_meeting_the_floor(strategy_data):
    # when
    calibration = category_calibration(category=strategy_data, now=timezone.now())
    # then: 7 (current) keeps 265/280 = 94.6% < 95%; 6 keeps 275/280 = 98.2%
    rows = {row.threshold: row for row in calibration.rows}
    assert rows[7].retained.percent == Decimal("94.6") and not rows[7].meets_floor
    assert rows[6].retained.percent == Decimal("98.2") and rows[6].meets_floor
    assert calibration.suggestion.threshold == 6
    # costs fall as the threshold rises (more goes cheap)
    assert rows[5].projected_monthly_usd > rows[6].projected_monthly_usd
    assert rows[6].projected_monthly_usd > rows[7].projected_monthly_usd
    # evaluations stop at level 6 while traffic reaches 9: higher thresholds are unsupported
    assert not rows[8].supported and not rows[None].supported
    assert calibration.changes
    assert calibration.monthly_saving_usd < 0  # quality costs money here


def test_calibration_projected_cost_is_the_whatif_replay(strategy_data):
    from routing.selectors import whatif_report

    calibration = category_calibration(category=strategy_data, now=timezone.now(), days=30)
    draft = {"categories": {"strategy": {"full_from_complexity": 6}}}
    whatif = whatif_report(draft=draft, days=30, now=timezone.now())
    strategy = next(c for c in whatif.categories if c.category == "strategy")
    expected = (strategy.projected_cost_usd * 30 / 30).quantize(Decimal("0.0001"))
    assert calibration.suggestion.projected_monthly_usd == expected


def test_calibrate_command_prints_the_table_and_applies(strategy_data):
    out = StringIO()
    call_command("calibrate", "--category", "strategy", stdout=out)
    text = out.getvalue()
    assert "strategy: full from ≥ 7 now" in text and "suggested ≥ 6" in text
    assert "current" in text and "not covered by evaluations" in text
    assert TaskCategory.objects.get(slug="strategy").full_from_complexity == 7
    # when applied
    out = StringIO()
    call_command("calibrate", "--category", "strategy", "--apply", stdout=out)
    # then a policy version records it
    assert "applied: strategy full from ≥ 6" in out.getvalue()
    assert TaskCategory.objects.get(slug="strategy").full_from_complexity == 6
    version = PolicyVersion.objects.first()
    assert version.actor == "calibrate"
    assert "categories.strategy.full_from_complexity: 7 -> 6" in version.changes


# --- admin ---------------------------------------------------------------------------------


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw-for-tests")
    client.force_login(user)
    return client


def test_matrix_shows_quality_retained_and_the_alert(staff_client, policy, settings):
    settings.QUALITY_MIN_SAMPLES = 10
    _evaluations("marketing", 3.0, good=8, bad=2)
    _evaluations("chatbot", 3.0, good=10, bad=0)
    page = staff_client.get("/admin/routing/taskcategory/").content.decode()
    assert "Quality retained" in page
    assert "80.0% (49.0-94.3, n=10)" in page
    assert "quality-alert" in page and "Quality alert: marketing" in page
    assert "100.0% (72.2-100.0, n=10)" in page


def test_form_shows_the_suggestion_and_applies_it_after_confirmation(staff_client, strategy_data):
    # given
    url = f"/admin/routing/taskcategory/{strategy_data.pk}/change/"
    form = staff_client.get(url).content.decode()
    assert 'id="calibration-suggested">≥ 6<' in form
    assert "complexity 4-6:" in form and "n=120" in form  # quality retained per band
    assert f"/admin/routing/taskcategory/{strategy_data.pk}/calibrate/?to=6" in form
    # when the team asks, it is asked to confirm first
    calibrate = f"/admin/routing/taskcategory/{strategy_data.pk}/calibrate/"
    confirm = staff_client.get(calibrate, {"to": "6"}).content.decode()
    assert 'id="calibrate-target">≥ 6<' in confirm
    assert TaskCategory.objects.get(pk=strategy_data.pk).full_from_complexity == 7
    # and confirms
    versions = PolicyVersion.objects.count()
    response = staff_client.post(calibrate, {"to": "6", "confirm": "yes", "comment": "cal"})
    # then
    assert response.status_code == 302
    assert TaskCategory.objects.get(pk=strategy_data.pk).full_from_complexity == 6
    assert PolicyVersion.objects.count() == versions + 1
    assert PolicyVersion.objects.first().comment == "cal"


def test_apply_refuses_a_threshold_outside_the_scale(staff_client, strategy_data):
    calibrate = f"/admin/routing/taskcategory/{strategy_data.pk}/calibrate/"
    response = staff_client.post(calibrate, {"to": "11", "confirm": "yes"})
    assert response.status_code == 302
    assert TaskCategory.objects.get(pk=strategy_data.pk).full_from_complexity == 7


def test_apply_can_set_never(staff_client, strategy_data):
    calibrate = f"/admin/routing/taskcategory/{strategy_data.pk}/calibrate/"
    staff_client.post(calibrate, {"to": "never", "confirm": "yes"})
    assert TaskCategory.objects.get(pk=strategy_data.pk).full_from_complexity is None


def test_evaluations_are_listed_read_only_in_admin(staff_client, policy):
    _evaluations("chatbot", 3.0, good=1, bad=0)
    page = staff_client.get("/admin/routing/qualityevaluation/")
    assert page.status_code == 200
    assert "cheap_better" in page.content.decode() or "cheap answer better" in page.content.decode()
    assert staff_client.get("/admin/routing/qualityevaluation/add/").status_code == 403
