"""End to end in the sandbox: the seeded pair, gpt-4o-mini and gpt-4o, migrated to
successors through the REST API's traffic: choose, re-price, qualify on shadow traffic, stage
10/50/100 as a policy experiment (a user of each arm asking), switch; the ledger bills every
answer at the model that gave it, to the cent."""

from datetime import date
from decimal import Decimal

import pytest
from django.utils import timezone

from routing import qualification, shadow
from routing.model_migration import (
    migration_create,
    migration_finish,
    migration_qualify_start,
    migration_stage_set,
)
from routing.model_migration_selectors import (
    migration_repricing,
    qualification_results,
    shutdowns_ahead,
)
from routing.models import ModelPrice, ModelProfile, PolicyVersion
from routing.providers.sandbox_chat import state
from routing.shadow_job import shadow_decrypt
from routing.tasks import successor_qualify
from tests.routing.test_experiments import users_by_arm
from usage.models import UsageRecord
from usage.selectors import usage_summary

pytestmark = pytest.mark.django_db

MTOK = Decimal(1_000_000)
# (input, cached input, output) USD per 1M tokens
PRICES = {
    "gpt-4o-mini": (Decimal("0.15"), Decimal("0.075"), Decimal("0.60")),
    "gpt-4o": (Decimal("2.50"), Decimal("1.25"), Decimal("10.00")),
    "gpt-5.4-mini": (Decimal("0.75"), Decimal("0.075"), Decimal("4.50")),
    "gpt-5.4": (Decimal("2.50"), Decimal("0.25"), Decimal("15.00")),
}
TRAFFIC = [
    {"category": "chatbot"},
    {"category": "marketing"},
    {"category": "moderation"},
    {"category": "strategy", "complexity": 9},
    {"category": "legal"},
]


def _by_hand(model: str, input_tokens: int, cached_tokens: int, output_tokens: int) -> Decimal:
    price_in, price_cached, price_out = PRICES[model]
    return (
        (input_tokens - cached_tokens) * price_in
        + cached_tokens * price_cached
        + output_tokens * price_out
    ) / MTOK


def _send(api_client, round_no: int) -> list[dict]:
    bodies = []
    for i, hints in enumerate(TRAFFIC):
        text = f"Round {round_no}, request {i}: write two short lines for my fans about {hints}."
        response = api_client.post(
            "/api/v1/completions",
            {"messages": [{"role": "user", "content": text}], "user": f"fan-{i}", **hints},
            format="json",
        )
        assert response.status_code == 200, response.content
        bodies.append(response.json())
    return bodies


def _send_one(api_client, user: str, text: str) -> dict:
    response = api_client.post(
        "/api/v1/completions",
        {"messages": [{"role": "user", "content": text}], "user": user, "category": "chatbot"},
        format="json",
    )
    assert response.status_code == 200, response.content
    return response.json()


def _ledger_is_exact() -> int:
    """Every product row billed at its own model's list prices; returns how many rows."""
    rows = UsageRecord.objects.filter(qa=False)
    for row in rows:
        assert row.cost_usd == _by_hand(
            row.model, row.input_tokens, row.cached_tokens, row.output_tokens
        ), row.request_id
        assert row.price_input_per_mtok_usd == PRICES[row.model][0]
    return rows.count()


def test_the_seeded_pair_moves_to_successors_end_to_end(policy, api_client, monkeypatch):
    # given the seeded pair serving traffic, and a strict premium successor
    jobs: list[str] = []
    shadow_jobs: list[str] = []
    monkeypatch.setattr(shadow, "shadow_dispatch", shadow_jobs.append)
    monkeypatch.setattr(qualification, "shadow_dispatch", lambda token, task: jobs.append(token))
    successor = ModelProfile.objects.create(
        name="gpt-5.4",
        tier="full",
        token_limit_param="max_completion_tokens",
        fixed_temperature=1,
        active=False,
    )
    ModelPrice.objects.create(
        model=successor,
        effective_from=date(2026, 3, 1),
        input_per_mtok_usd=PRICES["gpt-5.4"][0],
        cached_input_per_mtok_usd=PRICES["gpt-5.4"][1],
        output_per_mtok_usd=PRICES["gpt-5.4"][2],
    )
    state.strict_model("gpt-5.4")  # refuses max_tokens and other temperatures, as newer models do
    before = _send(api_client, 0)
    assert {b["model"] for b in before} == {"gpt-4o-mini", "gpt-4o"}

    # when successors are chosen for both tiers
    mini = migration_create(
        old_model=ModelProfile.objects.get(name="gpt-4o-mini"),
        successor=ModelProfile.objects.get(name="gpt-5.4-mini"),
        actor="ops",
    )
    full = migration_create(
        old_model=ModelProfile.objects.get(name="gpt-4o"),
        successor=ModelProfile.objects.get(name="gpt-5.4"),
        actor="ops",
    )
    # then the last 30 days re-priced on them match the ledger's tokens at their prices
    later = timezone.now() + timezone.timedelta(seconds=1)
    repriced = migration_repricing(
        old_model=mini.old_model, successor=mini.successor, categories=mini.categories, now=later
    )
    cheap_rows = UsageRecord.objects.filter(model="gpt-4o-mini", qa=False)
    assert repriced.total.projected_cost_usd == sum(
        _by_hand("gpt-5.4-mini", r.input_tokens, r.cached_tokens, r.output_tokens)
        for r in cheap_rows
    )
    assert repriced.total.actual_cost_usd == sum(r.cost_usd for r in cheap_rows)

    # when both are qualified on every sampled answer, and traffic flows
    migration_qualify_start(migration=mini, sample_percent=Decimal("100"), actor="ops")
    migration_qualify_start(migration=full, sample_percent=Decimal("100"), actor="ops")
    _send(api_client, 1)
    for token in jobs:
        successor_qualify.delay(token).get()
    # then every answer was replayed on its successor and judged, QA spend apart
    assert shadow_jobs == []  # quality_sampling is off: shadow evaluation sent nothing
    mini_results = qualification_results(migration=mini)
    full_results = qualification_results(migration=full)
    assert mini_results.overall.n == 3  # chatbot, marketing, moderation on gpt-4o-mini
    assert full_results.overall.n == 2  # strategy at 9 and legal on gpt-4o
    qa_rows = UsageRecord.objects.filter(qa=True)
    assert qa_rows.count() == 3 * 5  # a replay and two judge calls each
    assert mini_results.qa_cost_usd + full_results.qa_cost_usd == sum(r.cost_usd for r in qa_rows)
    for row in qa_rows.filter(reason_code="qa:qualify"):
        assert row.cost_usd == _by_hand(
            row.model, row.input_tokens, row.cached_tokens, row.output_tokens
        )
    assert {r.model for r in qa_rows.filter(reason_code="qa:qualify")} == {
        "gpt-5.4-mini",
        "gpt-5.4",
    }

    # when the cheap tier is switched in stages (an experiment: a sticky share of users on
    # the successor), a user of each arm asking at 10% and 50%
    jobs.clear()
    staged_rows = []
    for percent in ("10", "50", "100"):
        migration_stage_set(migration=mini, percent=Decimal(percent), actor="ops")
        mini.refresh_from_db()
        experiment = mini.experiment
        assert (experiment.status, experiment.treatment_percent) == ("running", Decimal(percent))
        if percent == "100":
            break
        for arm, user in users_by_arm(experiment).items():
            body = _send_one(api_client, user, f"stage {percent}, {arm}")
            row = UsageRecord.objects.get(request_id=body["id"])
            # then the treatment's user is answered and billed on the successor, the
            # control's on the old model, each under its arm's policy version
            expected = "gpt-5.4-mini" if arm == "treatment" else "gpt-4o-mini"
            assert (body["model"], row.model, row.experiment_arm) == (expected, expected, arm)
            assert row.experiment_id == experiment.pk
            if arm == "treatment":
                assert row.policy_version_id == experiment.treatment_version_id
            staged_rows.append(row)
    # and the control's answers on the old model are still qualified, the treatment's not
    sampled = [shadow_decrypt(token) for token in jobs]
    control_ids = {r.request_id for r in staged_rows if r.experiment_arm == "control"}
    assert {job.request_id for job in sampled} == control_ids
    assert {job.qualifying for job in sampled} == {mini.pk}
    # when the cheap tier is finished (the experiment's treatment published), the premium
    # one switched at once
    versions = PolicyVersion.objects.count()
    migration_finish(migration=mini, actor="ops")
    assert PolicyVersion.objects.count() == versions + 1
    mini.refresh_from_db()
    assert mini.experiment.status == "finished"
    versions = PolicyVersion.objects.count()
    switch = migration_finish(migration=full, actor="ops", comment="gpt-4o retires")
    after = _send(api_client, 2)

    # then one version moved every premium slot, traffic runs on the successors, the strict
    # one included, and every row is billed exactly at the model that answered it
    assert PolicyVersion.objects.count() == versions + 1
    assert sum("'gpt-4o' -> 'gpt-5.4'" in c for c in switch.changes) == len(full.categories)
    assert {b["model"] for b in after} == {"gpt-5.4-mini", "gpt-5.4"}
    assert state.calls_by_model.get("gpt-5.4", 0) >= 2 + 2  # two replays, two answers
    rows = _ledger_is_exact()
    assert rows == 15 + 4  # three rounds, and one user of each arm at 10% and 50%
    summary = usage_summary(
        start=timezone.now() - timezone.timedelta(hours=1), end=later.replace(year=2100)
    )
    assert summary.requests == 15 + 4  # QA calls are spend, not traffic
    assert summary.cost_usd == sum(r.cost_usd for r in UsageRecord.objects.filter(qa=False))
    # and nothing is left on the models being shut down
    assert all(not s.categories for s in shutdowns_ahead(today=timezone.now().date()))
    assert not ModelProfile.objects.get(name="gpt-5.4").shutdown_on
