"""A policy experiment on the request path (the official openai client over real HTTP), its
per-arm report from the ledger, and `manage.py experiment`."""

from decimal import Decimal

import openai
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from routing.experiments import experiment_start
from routing.models import PolicyVersion, QualityEvaluation
from tests.factories import ApiKeyFactory, UsageRecordFactory
from tests.routing.test_experiments import users_by_arm
from tests.waits import after_response_settled
from usage.models import UsageRecord

# The migration case: the chatbot's cheap model moves to the seeded successor.
SUCCESSOR_DRAFT = {
    "models": {"gpt-5.4-mini": {"active": True}},
    "categories": {"chatbot": {"mini_model": "gpt-5.4-mini"}},
}
MTOK = Decimal(1_000_000)


def _cost(row: UsageRecord, input_usd: str, cached_usd: str, output_usd: str) -> Decimal:
    """The bill by hand: uncached input, cached input and output at the model's list prices."""
    total = (
        (row.input_tokens - row.cached_tokens) * Decimal(input_usd)
        + row.cached_tokens * Decimal(cached_usd)
        + row.output_tokens * Decimal(output_usd)
    )
    return (total / MTOK).quantize(Decimal("0.0000000001"))


def test_each_arm_is_answered_and_billed_under_its_own_policy_version(asgi_server, policy, api_key):
    # given an experiment moving the chatbot to the successor for half of the users
    experiment = experiment_start(
        name="chatbot on gpt-5.4-mini",
        actor="ops",
        draft=SUCCESSOR_DRAFT,
        percent=Decimal("50"),
    )
    users = users_by_arm(experiment)
    client = openai.OpenAI(
        api_key=api_key[1], base_url=f"{asgi_server}/v1", max_retries=0, timeout=10
    )
    # when a user of each arm asks the same thing
    answers = {
        arm: client.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": "hey, loved the stream today!"}],
            user=user,
            metadata={"category": "chatbot"},
        )
        for arm, user in users.items()
    }
    after_response_settled()
    rows = {row.experiment_arm: row for row in UsageRecord.objects.all()}
    # then the treatment's user got the successor, decided and priced under the treatment
    assert answers["treatment"].model == "gpt-5.4-mini"
    treated = rows["treatment"]
    assert treated.experiment_id == experiment.pk
    assert treated.policy_version_id == experiment.treatment_version_id
    assert (treated.model, treated.price_input_per_mtok_usd) == ("gpt-5.4-mini", Decimal("0.75"))
    assert treated.cost_usd == _cost(treated, "0.75", "0.075", "4.50")
    # and the control's user the published policy's model at its prices
    assert answers["control"].model == "gpt-4o-mini"
    control = rows["control"]
    assert control.experiment_id == experiment.pk
    published = PolicyVersion.objects.filter(draft=False).order_by("-id").first()
    assert control.policy_version_id == published.pk  # the published policy with the split
    assert control.model == "gpt-4o-mini"
    assert control.cost_usd == _cost(control, "0.15", "0.075", "0.60")
    # and both are measured against the same all-premium baseline
    for row in rows.values():
        assert row.baseline_model == "gpt-4o"
        assert row.baseline_cost_usd == _cost(row, "2.50", "2.50", "10.00")


def _verdicts(rows: list[UsageRecord], good: int) -> None:
    QualityEvaluation.objects.bulk_create(
        QualityEvaluation(
            request_id=row.request_id,
            created_at=row.created_at,
            api_key=row.api_key,
            category=row.category,
            complexity=row.complexity,
            cheap_model=row.model,
            premium_model="gpt-4o",
            judge_model="gpt-4o",
            verdict="cheap_better" if n < good else "premium_better",
            verdict_ab="tie",
            verdict_ba="tie",
            extra_cost_usd=Decimal("0.01"),
        )
        for n, row in enumerate(rows)
    )


@pytest.fixture
def measured(policy):
    """An experiment with 4 control and 6 treatment requests (one failed), a QA row that does
    not count, and shadow verdicts: control 2 of 2 kept, treatment 3 of 4."""
    experiment = experiment_start(name="successor", actor="ops", draft=SUCCESSOR_DRAFT)
    key = ApiKeyFactory()
    common = {"experiment": experiment, "api_key": key, "policy_version": policy}
    control = UsageRecordFactory.create_batch(4, experiment_arm="control", latency_ms=300, **common)
    treatment = UsageRecordFactory.create_batch(
        5,
        experiment_arm="treatment",
        model="gpt-5.4-mini",
        cost_usd=Decimal("0.0016500000"),
        latency_ms=500,
        **common,
    )
    treatment.append(
        UsageRecordFactory(
            experiment_arm="treatment",
            status="upstream_error",
            cost_usd=Decimal("0"),
            latency_ms=900,
            **common,
        )
    )
    UsageRecordFactory(experiment_arm="treatment", qa=True, latency_ms=9000, **common)
    _verdicts(control[:2], good=2)
    _verdicts(treatment[:4], good=3)
    return experiment


@pytest.mark.django_db
def test_the_report_gives_each_arms_figures_from_the_ledger(measured):
    from routing.experiment_selectors import experiment_report

    report = experiment_report(experiment=measured)
    control, treatment = report.arms["control"], report.arms["treatment"]
    assert (control.requests, treatment.requests) == (4, 6)
    assert control.cost_usd == Decimal("0.0002700000") * 4
    assert treatment.cost_usd == Decimal("0.0016500000") * 5
    assert treatment.error_percent == Decimal("16.67")
    assert (treatment.p50_latency_ms, treatment.p95_latency_ms) == (500, 900)
    assert control.cost_per_1k_usd == Decimal("0.2700")
    assert treatment.cost_per_1k_usd == Decimal("1.3750")
    assert treatment.savings_usd == Decimal("0.0045") * 6 - Decimal("0.00825")
    assert treatment.savings_percent == Decimal("69.4")
    assert (treatment.retained.good, treatment.retained.n) == (3, 4)
    assert treatment.retained.percent == Decimal("75.0")
    assert treatment.retained.interval == (Decimal("30.1"), Decimal("95.4"))
    assert control.retained.percent == Decimal("100.0")
    assert report.cost_per_1k_change_percent == Decimal("409.3")


@pytest.mark.django_db
def test_the_command_moves_the_experiment_and_prints_its_arms(measured, capsys):
    call_command("experiment", "step")
    assert "on 50%" in capsys.readouterr().out
    call_command("experiment", "back", "--comment", "p95 up")
    call_command("experiment", "status")
    out = capsys.readouterr().out
    assert "running, treatment" in out and "on 10%" in out
    assert "treatment         6" in out and "75.0% (30.1-95.4) n=4" in out
    with pytest.raises(CommandError, match="experiment_running"):
        call_command("experiment", "start", "--name", "other", "--draft", '{"rollout": {}}')
    call_command("experiment", "finish", "--comment", "held up")
    assert "finished" in capsys.readouterr().out
    with pytest.raises(CommandError, match="No experiment is running"):
        call_command("experiment", "status")
    with pytest.raises(CommandError, match="not JSON"):
        call_command("experiment", "start", "--name", "x", "--draft", "{oops")
