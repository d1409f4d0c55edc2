import random
import uuid
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Sum
from django.utils import timezone

from routing.api_key_selectors import api_key_get_by_plaintext
from routing.models import ApiKey, ModelPrice, ModelProfile, PolicyVersion, TaskCategory
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db


def test_seed_policy_is_idempotent_and_keeps_edits():
    call_command("seed_policy", stdout=StringIO())
    TaskCategory.objects.filter(slug="strategy").update(full_from_complexity=5)
    call_command("seed_policy", stdout=StringIO())
    assert TaskCategory.objects.get(slug="strategy").full_from_complexity == 5
    assert TaskCategory.objects.count() == 9
    assert ModelProfile.objects.filter(active=True).count() == 2
    assert TaskCategory.objects.filter(is_default=True).get().slug == "chatbot"


def test_seeded_prices_are_the_list_prices():
    call_command("seed_policy", stdout=StringIO())
    mini = ModelPrice.objects.get(model__name="gpt-4o-mini")
    assert str(mini.input_per_mtok_usd) == "0.1500"
    assert str(mini.cached_input_per_mtok_usd) == "0.0750"
    assert mini.batch_multiplier == Decimal("0.5")
    assert str(ModelPrice.objects.get(model__name="gpt-4o").output_per_mtok_usd) == "10.0000"
    assert not ModelProfile.objects.get(name="gpt-5.4-nano").active


def test_create_api_key_prints_the_key_once_on_the_last_line():
    out = StringIO()
    call_command("create_api_key", "billing", stdout=out)
    plaintext = out.getvalue().strip().splitlines()[-1]
    assert api_key_get_by_plaintext(plaintext=plaintext).name == "billing"
    with pytest.raises(CommandError):
        call_command("create_api_key", "billing", stdout=StringIO())


def test_simulate_sends_the_mix_and_prints_the_ledger_totals(policy):
    out = StringIO()
    call_command("simulate", requests=200, stdout=out, stderr=StringIO())
    text = out.getvalue()
    assert UsageRecord.objects.count() == 200
    assert "TOTAL" in text and "chatbot" in text
    total_line = next(line for line in text.splitlines() if line.startswith("TOTAL"))
    assert total_line.split()[1] == "200"
    assert PolicyVersion.objects.count() == 1


def test_simulate_reuses_its_api_key_from_run_to_run(policy):
    # given one run already made its key
    call_command("simulate", requests=5, stdout=StringIO(), stderr=StringIO())
    (key,) = ApiKey.objects.all()
    first_hash = key.key_hash
    # when it runs again
    out = StringIO()
    call_command("simulate", requests=5, stdout=out, stderr=StringIO())
    # then the same key sent both runs, under a fresh secret, and the report counts this run
    (again,) = ApiKey.objects.all()
    assert (again.pk, again.name) == (key.pk, "simulate")
    assert again.key_hash != first_hash
    assert UsageRecord.objects.filter(api_key=key).count() == 10
    total_line = next(line for line in out.getvalue().splitlines() if line.startswith("TOTAL"))
    assert total_line.split()[1] == "5"


def test_simulate_refuses_a_revoked_key_name(policy):
    from routing.api_keys import api_key_create, api_key_revoke

    api_key_revoke(api_key=api_key_create(name="simulate")[0])
    with pytest.raises(CommandError, match="revoked"):
        call_command("simulate", requests=5, stdout=StringIO(), stderr=StringIO())


def _whatif_total(out: StringIO) -> dict[str, str]:
    header, *rows = out.getvalue().splitlines()
    total = next(line for line in rows if line.startswith("TOTAL"))
    names = ["category", "replayed", "cache_hits", "failed", "actual", "current", "draft"]
    names += ["change", "cheap_now", "cheap_draft"]
    assert header.split()[-1] == "draft"  # "cheap draft": the last column's name
    return dict(zip(names, total.split(), strict=True))


def test_whatif_command_projects_a_draft_and_saves_nothing(policy, api_client):
    # given three cheap-tier calls under the current policy
    for _ in range(3):
        api_client.post(
            "/api/v1/completions",
            {"messages": [{"role": "user", "content": "hi"}], "category": "chatbot"},
            format="json",
        )
    # when a draft sends everyone back to the premium model
    out = StringIO()
    draft = '{"rollout": {"routed_percent": "0"}}'
    call_command("whatif", draft, "--days", "7", stdout=out)
    # then it costs more than the current policy, which is what was billed
    total = _whatif_total(out)
    assert total["replayed"] == "3"
    assert total["actual"] == total["current"]
    assert float(total["draft"]) > float(total["current"]) * 10
    change = Decimal(total["draft"]) - Decimal(total["current"])  # each rounded apart
    assert abs(Decimal(total["change"]) - change) <= Decimal("0.0001")
    assert (total["cheap_now"], total["cheap_draft"]) == ("100.0%", "0.0%")
    assert PolicyVersion.objects.count() == 1
    with pytest.raises(CommandError):
        call_command("whatif", "{not json", stdout=StringIO())
    with pytest.raises(CommandError):
        call_command("whatif", '{"models": {"gpt-4o": {"input_per_mtok_usd": "x"}}}')


def test_whatif_command_sets_the_draft_against_the_current_policy_and_the_bill(policy, api_client):
    # given two cheap-tier calls and a response-cache hit, then the rollout cut to 0%
    from routing.experiments import rollout_set_percentage
    from routing.selectors import whatif_compare

    body = {"messages": [{"role": "user", "content": "is this spam?"}], "category": "moderation"}
    for _ in range(2):
        api_client.post("/api/v1/completions", body, format="json")
    other = {"messages": [{"role": "user", "content": "hi"}], "category": "chatbot"}
    api_client.post("/api/v1/completions", other, format="json")
    rollout_set_percentage(percent=Decimal("0"), actor="ops")
    # when the draft changes nothing
    out = StringIO()
    call_command("whatif", "{}", "--days", "1", stdout=out)
    # then it is no change against the current policy, although that policy costs more than
    # what was billed (those calls ran routed), and the cache hit is counted apart
    total = _whatif_total(out)
    assert (total["replayed"], total["cache_hits"], total["failed"]) == ("2", "1", "0")
    assert Decimal(total["change"]) == 0
    assert total["draft"] == total["current"]
    assert Decimal(total["current"]) > Decimal(total["actual"]) * 10
    billed = UsageRecord.objects.aggregate(cost=Sum("cost_usd"))["cost"]
    assert Decimal(total["actual"]) == billed.quantize(Decimal("0.0001"))
    # and the figures are the what-if page's
    page = whatif_compare(draft={}, days=1, now=timezone.now())
    assert Decimal(total["current"]) == page.total.current_cost_usd.quantize(Decimal("0.0001"))
    assert "under the current policy (0.00)" in out.getvalue()


def test_simulate_sends_deferrable_traffic_as_batches_and_prints_the_batch_layer(policy):
    # given / when: every categorised analytics request goes through the Batch API
    out = StringIO()
    call_command("simulate", requests=300, batch_percent=100, stdout=out, stderr=StringIO())
    # then
    text = out.getvalue()
    batch_rows = UsageRecord.objects.filter(batch=True)
    assert batch_rows.exists()
    assert not batch_rows.exclude(category__in=["analytics", "analytics_plus"]).exists()
    assert UsageRecord.objects.count() == 300
    layer = next(line for line in text.splitlines() if line.startswith("batch API"))
    assert float(layer.split()[-2]) > 0
    assert "(50.0% off)" in text
    assert not PolicyVersion.objects.order_by("-id").first().snapshot["flags"]["batch"]["enabled"]


def test_simulate_with_shadowing_shows_premium_wins_an_alert_and_a_suggestion(
    policy, settings, monkeypatch
):
    # given the sandbox as every model and judge, and the evaluations a small run can give;
    # the jobs run in the test's thread when simulate drains them (its database transaction)

    from routing import shadow, shadow_evaluation
    from routing.management.commands import simulate
    from routing.models import QualityEvaluation

    settings.QUALITY_MIN_SAMPLES = 20
    tokens: list[str] = []
    monkeypatch.setattr(shadow, "shadow_dispatch", tokens.append)

    def drain(timeout_s: float) -> int:
        for token in tokens:
            shadow_evaluation.shadow_evaluate(token=token)
        return len(tokens)

    monkeypatch.setattr(simulate, "shadow_drain", drain)
    # Which answers are sampled follows their request ids: seeded here, so the run is the same
    # every time (the judge's draws are seeded already).
    request_ids = random.Random(11)
    monkeypatch.setattr(
        "routing.gateway.completion.uuid.uuid4",
        lambda: uuid.UUID(int=request_ids.getrandbits(128), version=4),
    )
    out = StringIO()
    # when a run shadows half of the cheap answers
    call_command(
        "simulate", requests=500, shadow_percent=Decimal("50"), stdout=out, stderr=StringIO()
    )
    # then some premium answers were judged better, a category is below its floor, the
    # calibration suggests another threshold for it, and QA spend is set against the bill
    text = out.getvalue()
    verdicts = set(QualityEvaluation.objects.values_list("verdict", flat=True))
    assert verdicts == {"cheap_better", "tie", "premium_better"}
    alerted = [line.split()[0] for line in text.splitlines() if line.endswith("BELOW FLOOR")]
    assert alerted
    suggestion = next(line for line in text.splitlines() if line.startswith(f"{alerted[0]}:"))
    assert "suggested ≥" in suggestion
    assert "of the routed bill" in text and "WARNING: QA spend is above 25%" in text
    assert "verdicts are synthetic" in text
