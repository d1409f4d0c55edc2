"""Shadow qualification of a successor against the sandbox: the hot path samples the old
model's live answers (never private categories), the successor answers off-path, the
sandbox judge compares it with today's answer, and its QA spend stays apart."""

from datetime import date
from decimal import Decimal

import pytest

from routing import qualification, shadow
from routing.experiments import rollout_set_percentage
from routing.model_migration import migration_create, migration_qualify_start, migration_stage_set
from routing.model_migration_models import SuccessorVerdict
from routing.model_migration_selectors import qualification_results
from routing.models import ModelPrice, ModelProfile, QualityEvaluation, TaskCategory
from routing.pricing import call_cost_usd
from routing.qualification import qualification_sampled
from routing.shadow_job import shadow_decrypt
from routing.tasks import quality_shadow_evaluate, successor_qualify
from tests.routing.test_experiments import users_by_arm
from usage.models import UsageRecord
from usage.selectors import usage_summary

pytestmark = pytest.mark.django_db

CHAT = [{"role": "user", "content": "hey babe how was your day?"}]


@pytest.fixture
def dispatched(monkeypatch, policy):
    """Encrypted jobs handed off by the hot path, collected instead of run."""
    tokens: list[str] = []
    monkeypatch.setattr(shadow, "shadow_dispatch", tokens.append)
    monkeypatch.setattr(qualification, "shadow_dispatch", lambda token, task: tokens.append(token))
    return tokens


def _qualifying(*, old="gpt-4o-mini", successor="gpt-5.4-mini", categories=None, percent="100"):
    migration = migration_create(
        old_model=ModelProfile.objects.get(name=old),
        successor=ModelProfile.objects.get(name=successor),
        categories=categories,
        actor="ops",
    )
    migration_qualify_start(migration=migration, sample_percent=Decimal(percent), actor="ops")
    return migration


def _complete(api_client, **body) -> dict:
    response = api_client.post("/api/v1/completions", {"messages": CHAT, **body}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def test_a_sampled_answer_of_the_old_model_is_handed_to_the_successor(dispatched, api_client):
    # given qualification of gpt-5.4-mini on every chatbot answer of gpt-4o-mini
    migration = _qualifying(categories=["chatbot"])
    # when
    body = _complete(api_client, category="chatbot")
    # then one encrypted job for the successor, with today's answer as the reference
    assert len(dispatched) == 1 and "how was your day" not in dispatched[0]
    job = shadow_decrypt(dispatched[0])
    assert (job.qualifying, job.successor_model) == (migration.pk, "gpt-5.4-mini")
    assert job.request_id == body["id"] and job.cheap_answer == body["content"]
    assert job.cheap_model == "gpt-4o-mini"


def test_qualification_does_not_need_the_quality_sampling_flag(dispatched, api_client):
    # given the seeded policy: quality_sampling off, so shadow evaluation sends nothing
    migration = _qualifying(categories=["chatbot"])
    # when
    _complete(api_client, category="chatbot")
    # then the one job is the qualification's
    assert [shadow_decrypt(t).qualifying for t in dispatched] == [migration.pk]


def test_a_private_category_is_never_sampled(dispatched, api_client):
    TaskCategory.objects.filter(slug="chatbot").update(private=True)
    _qualifying(categories=["chatbot"])
    _complete(api_client, category="chatbot")
    assert dispatched == []


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"category": "marketing"}, "a category that does not move"),
        ({"category": "strategy", "complexity": 9}, "the other tier's model"),
    ],
)
def test_answers_outside_the_migration_are_not_sampled(dispatched, api_client, body, why):
    _qualifying(categories=["chatbot", "strategy"])
    _complete(api_client, **body)
    assert dispatched == [], why


def test_while_the_switch_is_staged_the_control_arm_is_still_sampled(dispatched, api_client):
    # given the switch staged at 50%: an experiment, treatment users on the successor
    migration = _qualifying(categories=["chatbot"])
    migration_stage_set(migration=migration, percent=Decimal("50"), actor="ops")
    migration.refresh_from_db()
    users = users_by_arm(migration.experiment)
    # when a user of each arm asks
    bodies = {arm: _complete(api_client, category="chatbot", user=u) for arm, u in users.items()}
    # then the control user's answer (on the old model) is replayed on the successor, and
    # the treatment user's (already on the successor) is not
    assert bodies["control"]["model"] == "gpt-4o-mini"
    assert bodies["treatment"]["model"] == "gpt-5.4-mini"
    jobs = [shadow_decrypt(t) for t in dispatched]
    assert [(j.request_id, j.qualifying) for j in jobs] == [(bodies["control"]["id"], migration.pk)]


def test_the_rollout_control_arm_is_not_sampled(dispatched, api_client):
    # given routing on for nobody (the rollout's control arm: legacy premium, not routed)
    _qualifying(categories=["chatbot"])
    rollout_set_percentage(percent=Decimal("0"), actor="ops")
    _complete(api_client, category="chatbot")
    assert dispatched == []


def test_the_sample_share_decides_which_requests_are_replayed(dispatched, api_client):
    _qualifying(categories=["marketing"], percent="30")
    ids = [_complete(api_client, category="marketing", user=f"u{i}")["id"] for i in range(20)]
    expected = [i for i in ids if qualification_sampled(request_id=i, percent=Decimal("30"))]
    assert 0 < len(expected) < 20
    assert [shadow_decrypt(t).request_id for t in dispatched] == expected


def test_the_successor_answers_in_the_sandbox_and_the_judge_compares(dispatched, api_client):
    # given a full-tier migration, gpt-4o -> a strict premium successor
    full = ModelProfile.objects.create(
        name="gpt-5.4", tier="full", token_limit_param="max_completion_tokens", active=False
    )
    ModelPrice.objects.create(
        model=full,
        effective_from=date(2026, 3, 1),
        input_per_mtok_usd=Decimal("2.50"),
        cached_input_per_mtok_usd=Decimal("0.25"),
        output_per_mtok_usd=Decimal("15.00"),
    )
    from routing.providers.sandbox_chat import state

    state.strict_model("gpt-5.4")
    migration = _qualifying(old="gpt-4o", successor=full.name, categories=["legal"])
    body = _complete(api_client, category="legal")
    assert body["model"] == "gpt-4o"
    # when the task runs (eager Celery), as the background hand-off would run it
    verdict_id = successor_qualify.delay(dispatched[0]).get()
    # then a verdict from the successor's point of view, from the sandbox's judge
    verdict = SuccessorVerdict.objects.get(pk=verdict_id)
    assert verdict.migration == migration and verdict.request_id == body["id"]
    assert verdict.verdict in {"cheap_better", "tie", "premium_better"} and verdict.sandbox
    assert "[sandbox judge]" in verdict.reasoning
    assert not QualityEvaluation.objects.exists()  # shadow evaluation's table untouched
    # and three QA rows: the successor's answer (billed at its prices) and two judge calls
    rows = UsageRecord.objects.filter(metadata__qualification=migration.pk).order_by("id")
    assert [r.reason_code for r in rows] == ["qa:qualify", "qa:judge", "qa:judge"]
    assert all(r.qa and r.metadata["qa_of"] == body["id"] for r in rows)
    replay = rows[0]
    assert replay.model == "gpt-5.4" and replay.status == "ok"
    assert replay.cost_usd == call_cost_usd(
        input_per_mtok_usd=Decimal("2.50"),
        cached_input_per_mtok_usd=Decimal("0.25"),
        output_per_mtok_usd=Decimal("15.00"),
        input_tokens=replay.input_tokens,
        cached_tokens=replay.cached_tokens,
        output_tokens=replay.output_tokens,
    )
    assert verdict.qa_cost_usd == sum(r.cost_usd for r in rows)
    # the QA spend is shown apart, and the product's spend is the answer alone
    results = qualification_results(migration=migration)
    assert results.qa_cost_usd == verdict.qa_cost_usd and results.qa_calls == 3
    assert results.categories[0].retained.n == 1
    product = UsageRecord.objects.get(request_id=body["id"])
    summary = usage_summary(start=product.created_at, end=product.created_at.replace(year=2100))
    assert (summary.requests, summary.cost_usd) == (1, product.cost_usd)


def test_a_qualification_job_is_never_taken_for_shadow_evaluation(dispatched, api_client):
    _qualifying(categories=["chatbot"])
    _complete(api_client, category="chatbot")
    assert quality_shadow_evaluate.delay(dispatched[0]).get() is None
    assert not UsageRecord.objects.filter(qa=True).exists()


def test_the_hot_path_queues_the_qualification_task(policy, api_client, monkeypatch):
    # given the real hand-off, with the task's publish recorded instead of run
    queued = []
    monkeypatch.setattr(successor_qualify, "delay", queued.append)
    migration = _qualifying(categories=["chatbot"])
    # when
    body = _complete(api_client, category="chatbot")
    shadow.shadow_drain(timeout_s=30)
    # then
    assert [shadow_decrypt(t).request_id for t in queued] == [body["id"]]
    assert shadow_decrypt(queued[0]).qualifying == migration.pk


def test_a_redelivered_qualification_job_is_not_judged_twice(dispatched, api_client):
    migration = _qualifying(categories=["chatbot"])
    _complete(api_client, category="chatbot")
    first = successor_qualify.delay(dispatched[0]).get()
    second = successor_qualify.delay(dispatched[0]).get()
    assert first == second
    assert UsageRecord.objects.filter(metadata__qualification=migration.pk).count() == 3


def test_a_failing_successor_is_a_qa_row_and_no_verdict(dispatched, api_client):
    from routing.providers.sandbox_chat import state

    migration = _qualifying(categories=["chatbot"])
    _complete(api_client, category="chatbot")
    state.fail_model("gpt-5.4-mini", "500")
    assert successor_qualify.delay(dispatched[0]).get() is None
    rows = UsageRecord.objects.filter(metadata__qualification=migration.pk)
    assert [(r.reason_code, r.cost_usd) for r in rows] == [("qa:qualify", Decimal("0"))]
    assert rows[0].status != "ok"
    assert not SuccessorVerdict.objects.exists()
