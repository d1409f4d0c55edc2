"""Shadow evaluation end to end: sampling on the hot path, the background hand-off, the
replay and the judge, the ledger's QA rows, privacy and failures."""

import json
import threading
import time
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync

from routing import shadow, shadow_evaluation, shadow_job
from routing.gateway.call import CompletionRequest
from routing.gateway.completion import completion_stream
from routing.models import FeatureFlag, QualityEvaluation, TaskCategory
from routing.policy_versions import policy_version_create
from routing.providers.chat import ProviderError, ProviderRequestRefused, ProviderResult
from routing.quality import JUDGE_MARKER
from routing.selectors import policy_get
from routing.shadow_evaluation import shadow_evaluate
from routing.shadow_job import ShadowJob, shadow_decrypt
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db

CHAT = {"messages": [{"role": "user", "content": "hey babe how was your day?"}]}


def _shadowing(*, flag: bool = True, percent: str = "100", **category_fields) -> None:
    FeatureFlag.objects.filter(name="quality_sampling").update(enabled=flag)
    TaskCategory.objects.update(shadow_sample_percent=Decimal(percent), **category_fields)
    policy_version_create(actor="test", comment="shadowing")


@pytest.fixture
def dispatched(monkeypatch, policy):
    """Encrypted jobs handed off by the hot path, collected instead of run."""
    tokens: list[str] = []
    monkeypatch.setattr(shadow, "shadow_dispatch", tokens.append)
    return tokens


def _complete(api_client, **body):
    response = api_client.post("/api/v1/completions", {**CHAT, **body}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


# --- sampling on the hot path ------------------------------------------------------------


def test_nothing_is_sampled_while_the_flag_is_off(dispatched, api_client):
    _shadowing(flag=False)
    _complete(api_client, category="chatbot")
    assert dispatched == []


def test_a_sampled_cheap_answer_is_handed_off_encrypted(dispatched, api_client):
    # given shadowing on for every cheap answer
    _shadowing()
    # when
    body = _complete(api_client, category="chatbot", user="fan-1")
    # then one job, unreadable without the key, carrying the request and the cheap answer
    assert len(dispatched) == 1
    assert "how was your day" not in dispatched[0]
    job = shadow_decrypt(dispatched[0])
    assert job.request_id == body["id"]
    assert job.cheap_answer == body["content"]
    assert job.cheap_model == "gpt-4o-mini" and job.premium_model == "gpt-4o"
    assert job.request_text == "hey babe how was your day?"


def test_the_percentage_decides_which_requests_are_sampled(dispatched, api_client):
    _shadowing(percent="0")
    for _ in range(5):
        _complete(api_client, category="chatbot", complexity=1)
    assert dispatched == []


def test_sampled_requests_are_those_whose_id_hashes_inside_the_share(dispatched, api_client):
    # given 30% shadowing
    _shadowing(percent="30")
    # when
    ids = [_complete(api_client, category="marketing")["id"] for _ in range(20)]
    # then exactly the requests the pure check selects were handed off
    from routing.quality import shadow_sampled

    expected = [i for i in ids if shadow_sampled(request_id=i, percent=Decimal("30"))]
    assert [shadow_decrypt(t).request_id for t in dispatched] == expected


def test_a_private_category_is_never_sampled(dispatched, api_client):
    _shadowing(private=True)
    _complete(api_client, category="chatbot")
    assert dispatched == []


def test_premium_tier_answers_are_not_sampled(dispatched, api_client):
    _shadowing()
    body = _complete(api_client, category="strategy", complexity=9)
    assert body["tier"] == "full"
    assert dispatched == []


def test_response_cache_hits_are_not_sampled(dispatched, api_client):
    _shadowing()
    first = _complete(api_client, category="moderation")
    second = _complete(api_client, category="moderation")
    assert second["cache_hit"] and not first["cache_hit"]
    assert [shadow_decrypt(t).request_id for t in dispatched] == [first["id"]]


def test_a_streamed_cheap_answer_is_sampled_when_the_stream_ends(dispatched, api_key):
    # given
    _shadowing()
    request = CompletionRequest(messages=CHAT["messages"], category="chatbot")

    async def stream() -> tuple[str, int]:
        start = await completion_stream(api_key=api_key[0], request=request)
        assert dispatched == []  # nothing before the stream ends
        return start.id, len([event async for event in start.events])

    # when
    request_id, events = async_to_sync(stream)()
    # then
    assert events > 2
    assert [shadow_decrypt(t).request_id for t in dispatched] == [request_id]


def test_the_response_does_not_wait_for_the_evaluation(policy, api_client, monkeypatch):
    # given an evaluation that cannot finish until the test lets it
    release, ran = threading.Event(), []

    def blocked_run(token: str) -> None:
        release.wait(timeout=30)
        ran.append(shadow_decrypt(token).request_id)

    monkeypatch.setattr(shadow, "_dispatch_run", blocked_run)
    _shadowing()
    # when
    body = _complete(api_client, category="chatbot")
    # then the response came back while its evaluation was still held
    assert ran == []
    release.set()
    shadow.shadow_drain(timeout_s=30)
    assert ran == [body["id"]]


# --- the evaluation ------------------------------------------------------------------------


class FakeUpstream:
    """Stands in for achat_complete: 1,000 input and 100 output tokens per call; the judge
    answers with judge(cheap_shown_first)."""

    def __init__(self, judge=lambda cheap_first: '{"verdict": "tie", "reason": "same"}'):
        self.judge = judge
        self.fail: set[str] = set()
        self.refuse: set[str] = set()
        self.calls: list[tuple[str, list[dict]]] = []

    async def __call__(self, *, model, messages, max_tokens, **options):
        self.calls.append((model.name, messages))
        if JUDGE_MARKER in messages[0]["content"]:
            answer_a = messages[1]["content"].partition("[ANSWER A]\n")[2]
            cheap_first = answer_a.startswith("cheap answer")
            kind = "judge_ab" if cheap_first else "judge_ba"
            content = self.judge(cheap_first)
        else:
            kind, content = "shadow", "premium answer"
        if kind in self.fail:
            raise ProviderError(f"{model.name} answered HTTP 500", upstream_status=500)
        if kind in self.refuse:
            raise ProviderRequestRefused(f"{model.name} answered HTTP 400", upstream_status=400)
        return ProviderResult(content, 1000, 0, 100, "stop", "x", True)


@pytest.fixture
def upstream(monkeypatch):
    fake = FakeUpstream()
    monkeypatch.setattr(shadow_evaluation, "achat_complete", fake)
    return fake


@pytest.fixture
def job_token(dispatched, api_client, settings):
    settings.USAGE_STORE_TEXT = False
    _shadowing()
    body = _complete(api_client, category="chatbot", complexity=2)
    job = shadow_decrypt(dispatched[0])
    # The cheap answer as the fake judge recognises it.
    return shadow_job.shadow_encrypt(
        ShadowJob(**{**job.__dict__, "cheap_answer": "cheap answer"})
    ), body["id"]


def _qa_rows(request_id: str):
    return UsageRecord.objects.filter(qa=True, metadata__qa_of=request_id).order_by("id")


def test_an_evaluation_stores_the_verdict_and_bills_qa_rows(job_token, upstream):
    # given a judge that prefers the cheap answer in both orders
    token, request_id = job_token
    upstream.judge = lambda cheap_first: (
        '{"verdict": "%s", "reason": "concise"}' % ("A" if cheap_first else "B")
    )
    # when
    evaluation = shadow_evaluate(token=token)
    # then
    assert evaluation.verdict == "cheap_better"
    assert (evaluation.verdict_ab, evaluation.verdict_ba) == ("cheap_better", "cheap_better")
    assert evaluation.category == "chatbot" and evaluation.complexity == 2
    assert evaluation.judge_model == "gpt-4o" and evaluation.premium_model == "gpt-4o"
    assert "ab: concise" in evaluation.reasoning
    rows = list(_qa_rows(request_id))
    assert [r.reason_code for r in rows] == ["qa:shadow", "qa:judge", "qa:judge"]
    assert {r.metadata.get("judge_order") for r in rows[1:]} == {"ab", "ba"}
    assert all(r.qa and r.model == "gpt-4o" for r in rows)
    # 1,000 in at $2.50 + 100 out at $10 per 1M tokens, three calls
    assert all(r.cost_usd == Decimal("0.0035") for r in rows)
    assert evaluation.extra_cost_usd == Decimal("0.0105")


def test_both_orders_are_asked_with_the_answers_swapped(job_token, upstream):
    token, _ = job_token
    shadow_evaluate(token=token)
    judge_users = [m[1]["content"] for _, m in upstream.calls if JUDGE_MARKER in m[0]["content"]]
    assert len(judge_users) == 2
    firsts = {u.partition("[ANSWER A]\n")[2].split("\n")[0] for u in judge_users}
    assert firsts == {"cheap answer", "premium answer"}


def test_a_judge_that_always_picks_the_first_answer_gives_a_tie(job_token, upstream):
    token, _ = job_token
    upstream.judge = lambda cheap_first: '{"verdict": "A", "reason": "first is better"}'
    evaluation = shadow_evaluate(token=token)
    assert (evaluation.verdict_ab, evaluation.verdict_ba) == ("cheap_better", "premium_better")
    assert evaluation.verdict == "tie"
    assert evaluation.at_least_as_good


def test_a_failed_shadow_call_is_a_qa_row_with_its_error_and_no_verdict(job_token, upstream):
    token, request_id = job_token
    upstream.fail = {"shadow"}
    assert shadow_evaluate(token=token) is None
    rows = list(_qa_rows(request_id))
    assert len(rows) == 1
    assert rows[0].status == "upstream_error" and rows[0].error_code == "upstream_error"
    assert rows[0].cost_usd == 0 and rows[0].qa
    assert not QualityEvaluation.objects.exists()


def test_a_failed_judge_call_leaves_no_verdict(job_token, upstream):
    token, request_id = job_token
    upstream.fail = {"judge_ba"}
    assert shadow_evaluate(token=token) is None
    statuses = sorted(r.status for r in _qa_rows(request_id))
    assert statuses == ["ok", "ok", "upstream_error"]
    assert not QualityEvaluation.objects.exists()


def test_a_shadow_call_the_model_refuses_is_recorded_as_refused_like_a_live_one(
    job_token, upstream
):
    # given the premium model refuses the replayed request (HTTP 400)
    token, request_id = job_token
    upstream.refuse = {"shadow"}
    # when it is evaluated
    assert shadow_evaluate(token=token) is None
    # then its QA row has the same status a refused live call gets, not "upstream_error"
    (row,) = _qa_rows(request_id)
    assert (row.status, row.error_code) == ("request_refused", "request_refused_by_model")
    assert row.cost_usd == 0 and not QualityEvaluation.objects.exists()


def test_an_unreadable_judge_reply_is_billed_and_leaves_no_verdict(job_token, upstream):
    token, request_id = job_token
    upstream.judge = lambda cheap_first: "I would rather not say."
    assert shadow_evaluate(token=token) is None
    judges = [r for r in _qa_rows(request_id) if r.reason_code == "qa:judge"]
    assert [r.error_code for r in judges] == ["judge_unreadable", "judge_unreadable"]
    assert all(r.cost_usd > 0 for r in judges)
    assert not QualityEvaluation.objects.exists()


def test_the_prompt_comes_from_the_job_never_from_the_ledger(job_token, upstream):
    # given prompt storage off: the request's ledger row has no text
    token, request_id = job_token
    assert UsageRecord.objects.get(request_id=request_id).prompt_text == ""
    # when
    shadow_evaluate(token=token)
    # then the replay and the judge still saw the request, and no QA row keeps any text
    shadow_messages = upstream.calls[0][1]
    assert shadow_messages[-1]["content"] == "hey babe how was your day?"
    assert all("hey babe" in m[1]["content"] for _, m in upstream.calls[1:])
    assert not _qa_rows(request_id).exclude(prompt_text="", response_text="").exists()


def test_an_expired_job_is_dropped(job_token, upstream, settings):
    token, _ = job_token
    job = shadow_decrypt(token)
    old = shadow_job._fernet(settings.SECRET_KEY).encrypt_at_time(
        shadow_job.json.dumps(job.__dict__).encode(), int(time.time()) - 7200
    )
    settings.QUALITY_SHADOW_TTL_S = 3600
    assert shadow_decrypt(old.decode()) is None
    assert shadow_evaluate(token=old.decode()) is None
    assert upstream.calls == []


def test_a_redelivered_job_is_not_evaluated_twice(job_token, upstream):
    token, request_id = job_token
    first = shadow_evaluate(token=token)
    second = shadow_evaluate(token=token)
    assert first.pk == second.pk
    assert _qa_rows(request_id).count() == 3


def test_the_sandbox_judge_gives_a_verdict_through_the_celery_task(dispatched, api_client):
    # given shadowing on, with the offline sandbox as every model (judge included)
    _shadowing()
    body = _complete(api_client, category="marketing")
    # when the task runs (eager Celery)
    from routing.tasks import quality_shadow_evaluate

    evaluation_id = quality_shadow_evaluate.delay(dispatched[0]).get()
    # then
    evaluation = QualityEvaluation.objects.get(pk=evaluation_id)
    assert evaluation.request_id == body["id"]
    assert evaluation.sandbox
    assert evaluation.verdict in {"cheap_better", "tie", "premium_better"}
    assert "[sandbox judge]" in evaluation.reasoning
    assert _qa_rows(body["id"]).count() == 3


def test_a_verdict_keeps_the_routers_view_of_the_request_without_its_text(job_token, upstream):
    token, _ = job_token
    job = shadow_decrypt(token)
    evaluation = shadow_evaluate(token=token)
    features = evaluation.features
    router = policy_get().router
    assert features["artifact"] == router.artifact_id
    assert features["ngrams"] and all(len(digest) == 12 for digest, _ in features["ngrams"])
    stored = json.dumps(features)
    for word in job.request_text.split():
        assert f'"{word}"' not in stored  # hashes and numbers only, never a word
    # The same request, read back from its features, gets the complexity it was routed with.
    ngrams = dict(features["ngrams"])
    again = router.needs_premium_from(ngrams, features["signals"])
    assert again == pytest.approx(router.predict(job.request_text).needs_premium, abs=1e-4)
