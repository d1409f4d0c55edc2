"""Batch jobs through the API client, with the in-process sandbox's Files and Batches API."""

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from routing import batches as batch_services
from routing.api_keys import api_key_create
from routing.batch_results import provider_batch_collect, provider_batch_poll
from routing.models import BatchItem, BatchJob, FeatureFlag, ProviderBatch
from routing.policy_versions import policy_version_create
from routing.pricing import ServiceTier, TokenUsage, price_tokens, tier_prices_per_mtok
from routing.providers import sandbox_batches, sandbox_chat
from routing.providers.batch import BatchProviderError
from routing.seed_data import seeded_price_rows
from routing.tasks import batch_advance_due
from usage.models import UsageRecord
from usage.selectors import savings_by_layer

pytestmark = pytest.mark.django_db

URL = "/api/v1/batches"


def _req(custom_id: str, text: str, category: str = "analytics", **extra) -> dict:
    return {
        "custom_id": custom_id,
        "category": category,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }


THREE = [
    _req("a", "Summarise last week's subscriber growth in two lines"),
    _req("b", "Which post had the best engagement rate last month?"),
    _req("c", "Model churn by cohort and explain the method", "analytics_plus", complexity=8),
]


@pytest.fixture(autouse=True)
def _batch_sandbox(settings):
    sandbox_batches.batches.reset()
    settings.BATCH_POLL_INTERVAL_S = 0  # every sweep polls: the tests drive the clock
    settings.BATCH_SUBMIT_RETRY_S = 0
    yield
    sandbox_batches.batches.reset()


@pytest.fixture
def batch_on(policy):
    FeatureFlag.objects.filter(name="batch").update(enabled=True)
    return policy_version_create(actor="test", comment="batch on")


def _post(client, body, capture):
    with capture(execute=True):  # the submission is queued on commit (eager Celery: runs now)
        return client.post(URL, data=json.dumps(body), content_type="application/json")


def _advance(times: int = 3) -> None:
    for _ in range(times):
        batch_advance_due()


def _get(client, batch_id: str) -> dict:
    response = client.get(f"{URL}/{batch_id}")
    assert response.status_code == 200
    return response.json()


# --- round trip, pricing, layers --------------------------------------------------------


def test_batch_round_trip_routes_submits_and_bills_at_batch_price(
    api_client, batch_on, django_capture_on_commit_callbacks
):
    # given a job of two cheap-tier analytics requests and one complex deep-analytics one
    response = _post(api_client, {"requests": THREE}, django_capture_on_commit_callbacks)
    assert response.status_code == 202
    created = response.json()
    assert created["status"] == "queued"  # submitted by a worker once the job is committed
    assert {p["model"] for p in created["provider_batches"]} == {"gpt-4o-mini", "gpt-4o"}
    assert _get(api_client, created["id"])["status"] == "in_progress"
    assert sandbox_batches.batches.creates == 2  # one provider batch per model
    # when the beat polls until the provider is done
    _advance()
    # then every result is back, routed like a live request
    body = _get(api_client, created["id"])
    assert body["status"] == "completed"
    assert body["request_counts"] == {
        "total": 3, "pending": 0, "succeeded": 3, "failed": 0, "expired": 0, "cancelled": 0,
    }  # fmt: skip
    results = {r["custom_id"]: r for r in body["results"]}
    assert results["a"]["model"] == "gpt-4o-mini"
    assert results["c"]["model"] == "gpt-4o"
    assert results["c"]["reason"] == "complexity>=7:category=analytics_plus"
    assert results["a"]["content"].startswith("[sandbox gpt-4o-mini]")
    rows = {r.request_id: r for r in UsageRecord.objects.all()}
    assert len(rows) == 3
    for result in body["results"]:
        row = rows[result["request_id"]]
        assert row.batch is True
        assert row.status == "ok"
        assert result["cost_usd"] == format(row.cost_usd, "f")


def test_batch_result_is_billed_at_half_the_list_price_to_the_cent(
    api_client, batch_on, django_capture_on_commit_callbacks
):
    # given
    response = _post(api_client, {"requests": THREE}, django_capture_on_commit_callbacks)
    # when
    _advance()
    # then: gpt-4o-mini at 50% off: 0.075 in, 0.30 out per 1M; list price kept as uncached
    item = BatchItem.objects.get(custom_id="a", job__public_id=response.json()["id"])
    row = UsageRecord.objects.get(request_id=item.request_id)
    expected = (Decimal("0.075") * row.input_tokens + Decimal("0.30") * row.output_tokens) / (
        Decimal(1_000_000)
    )
    assert row.cost_usd == expected.quantize(Decimal("0.0000000001"))
    assert row.price_input_per_mtok_usd == Decimal("0.0750")
    assert row.price_output_per_mtok_usd == Decimal("0.3000")
    assert row.uncached_cost_usd == 2 * row.cost_usd
    baseline = (Decimal("2.50") * row.input_tokens + Decimal("10.00") * row.output_tokens) / (
        Decimal(1_000_000)
    )
    assert row.baseline_cost_usd == baseline.quantize(Decimal("0.0000000001"))
    full = UsageRecord.objects.get(model="gpt-4o")
    assert full.uncached_cost_usd == full.baseline_cost_usd  # no routing saving on gpt-4o
    assert full.cost_usd * 2 == full.uncached_cost_usd


def test_batch_savings_are_their_own_layer(
    api_client, api_key, batch_on, django_capture_on_commit_callbacks
):
    # given
    _post(api_client, {"requests": THREE}, django_capture_on_commit_callbacks)
    _advance()
    rows = UsageRecord.objects.all()
    # when
    now = timezone.now()
    layers = savings_by_layer(start=now - timedelta(hours=1), end=now + timedelta(minutes=1))
    # then: batch = list price - batch price; routing = premium baseline - list price
    assert layers.batch_usd == sum(r.uncached_cost_usd - r.cost_usd for r in rows)
    assert layers.routing_usd == sum(r.baseline_cost_usd - r.uncached_cost_usd for r in rows)
    assert layers.prompt_cache_usd == 0
    assert layers.total_usd == sum(r.baseline_cost_usd - r.cost_usd for r in rows)


def test_batch_prices_come_from_the_price_rows_batch_multiplier():
    # given gpt-4o's row: 2.50 in, 1.25 cached, 10.00 out, batch at 0.5
    price = seeded_price_rows("gpt-4o")[-1]
    # when
    prices = tier_prices_per_mtok(price, ServiceTier.BATCH)
    # then: a batch reads the cache at the (halved) input price
    assert prices == (Decimal("1.2500"), Decimal("1.2500"), Decimal("5.0000"))
    lines = price_tokens(price, TokenUsage(1000, 1000), tier=ServiceTier.BATCH)
    # 1000 x 2.50 + 1000 x 10.00 = 0.0125 listed, the tier line takes half of it off
    assert (lines.input_usd, lines.output_usd) == (Decimal("0.0025"), Decimal("0.01"))
    assert lines.tier_usd == Decimal("-0.00625")
    assert lines.total_usd == Decimal("0.00625")


# --- failures ---------------------------------------------------------------------------


def test_partial_failure_records_the_failed_item_unbilled_and_the_rest_billed(
    api_client, batch_on, django_capture_on_commit_callbacks
):
    # given the provider fails item "b" (an error-file line)
    sandbox_batches.batches.fail_ids = {"b"}
    response = _post(api_client, {"requests": THREE}, django_capture_on_commit_callbacks)
    # when
    _advance()
    # then
    body = _get(api_client, response.json()["id"])
    assert body["status"] == "completed"
    assert body["request_counts"]["succeeded"] == 2
    assert body["request_counts"]["failed"] == 1
    failed = next(r for r in body["results"] if r["custom_id"] == "b")
    assert failed["status"] == "failed"
    assert failed["content"] is None
    assert failed["error"] == {"code": "batch_item_failed", "message": "sandbox: item failed"}
    row = UsageRecord.objects.get(request_id=failed["request_id"])
    assert (row.status, row.error_code, row.cost_usd, row.batch) == (
        "upstream_error", "batch_item_failed", Decimal("0"), True,
    )  # fmt: skip
    assert UsageRecord.objects.filter(status="ok").count() == 2


def test_expired_batch_keeps_what_came_back_and_records_the_rest_expired(
    api_client, batch_on, django_capture_on_commit_callbacks
):
    # given the provider's 24 h window runs out after answering one request per batch
    sandbox_batches.batches.outcome = "expired"
    sandbox_batches.batches.expire_keep = 1
    response = _post(api_client, {"requests": THREE}, django_capture_on_commit_callbacks)
    # when
    _advance()
    # then
    body = _get(api_client, response.json()["id"])
    assert body["status"] == "expired"
    statuses = {r["custom_id"]: r["status"] for r in body["results"]}
    assert statuses == {"a": "succeeded", "b": "expired", "c": "succeeded"}
    row = UsageRecord.objects.get(request_id=body["results"][1]["request_id"])
    assert (row.error_code, row.cost_usd) == ("batch_expired", Decimal("0"))
    assert UsageRecord.objects.count() == 3


def test_whole_batch_failed_at_the_provider_is_visible_and_recorded(
    api_client, batch_on, django_capture_on_commit_callbacks
):
    # given
    sandbox_batches.batches.outcome = "failed"
    response = _post(api_client, {"requests": THREE[:2]}, django_capture_on_commit_callbacks)
    # when
    _advance()
    # then
    body = _get(api_client, response.json()["id"])
    assert body["status"] == "failed"
    assert body["provider_batches"][0]["provider_status"] == "failed"
    assert "sandbox: batch failed" in body["provider_batches"][0]["last_error"]
    assert {r["error"]["code"] for r in body["results"]} == {"batch_failed"}
    assert UsageRecord.objects.filter(error_code="batch_failed", batch=True).count() == 2


def test_provider_error_on_upload_is_retried_and_shown_meanwhile(
    api_client, batch_on, django_capture_on_commit_callbacks
):
    # given the provider answers 500 to the first upload
    sandbox_chat.state.inject("500")
    response = _post(api_client, {"requests": THREE[:2]}, django_capture_on_commit_callbacks)
    body = _get(api_client, response.json()["id"])
    assert body["status"] == "queued"
    assert body["provider_batches"][0]["last_error"] == "file upload: HTTP 500"
    # when the beat retries
    _advance()
    # then
    body = _get(api_client, response.json()["id"])
    assert body["status"] == "completed"
    assert body["provider_batches"][0]["submit_attempts"] == 2
    assert body["provider_batches"][0]["last_error"] == ""
    assert UsageRecord.objects.filter(status="ok").count() == 2


def test_provider_error_on_create_after_the_last_attempt_fails_every_item_once(
    api_client, batch_on, settings, django_capture_on_commit_callbacks
):
    # given two attempts, each upload fine and each create answered 503
    settings.BATCH_SUBMIT_MAX_ATTEMPTS = 2
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sandbox_chat.state, "next_fault", _faults_on_creates("503"))
        response = _post(api_client, {"requests": THREE[:2]}, django_capture_on_commit_callbacks)
        _advance()
    # then
    body = _get(api_client, response.json()["id"])
    assert body["status"] == "failed"
    assert body["provider_batches"][0]["submit_attempts"] == 2
    assert body["provider_batches"][0]["last_error"] == "batch create: HTTP 503"
    assert {r["error"]["code"] for r in body["results"]} == {"batch_submit_failed"}
    assert UsageRecord.objects.filter(error_code="batch_submit_failed").count() == 2
    assert sandbox_batches.batches.uploads == 1  # the uploaded file is reused by the retry


def _faults_on_creates(fault: str):
    """A next_fault that fails every batch create and lets uploads through."""
    calls = {"n": 0}

    def next_fault() -> str | None:
        calls["n"] += 1
        return None if calls["n"] == 1 else fault

    return next_fault


def test_a_create_whose_answer_was_lost_is_found_not_made_twice(
    api_client, batch_on, monkeypatch, django_capture_on_commit_callbacks
):
    # given the first create reaches the provider but its answer is lost
    real_create = batch_services.batch_create
    calls = []

    def create_then_lose(**kwargs):
        calls.append(real_create(**kwargs))
        if len(calls) == 1:
            raise BatchProviderError("batch create: endpoint unreachable", retryable=True)
        return calls[-1]

    monkeypatch.setattr(batch_services, "batch_create", create_then_lose)
    response = _post(api_client, {"requests": THREE[:2]}, django_capture_on_commit_callbacks)
    # when the retry runs
    _advance()
    # then it adopted the batch it had made
    assert sandbox_batches.batches.creates == 1
    assert len(calls) == 1
    assert _get(api_client, response.json()["id"])["status"] == "completed"
    assert UsageRecord.objects.count() == 2


def test_re_polling_a_collected_batch_writes_nothing(
    api_client, batch_on, django_capture_on_commit_callbacks
):
    # given a collected job
    response = _post(api_client, {"requests": THREE}, django_capture_on_commit_callbacks)
    _advance()
    assert UsageRecord.objects.count() == 3
    part = ProviderBatch.objects.filter(job__public_id=response.json()["id"]).first()
    # when it is polled and collected again, as a late or duplicate task would
    ProviderBatch.objects.filter(pk=part.pk).update(next_action_at=timezone.now())
    later = timezone.now() + timedelta(hours=1)
    provider_batch_poll(provider_batch_id=part.pk, now=later)
    info = batch_services.BatchInfo("x", "completed", "", "", "", {})
    written = provider_batch_collect(
        provider_batch_id=part.pk, info=info, output_text="", error_text="", now=later
    )
    _advance()
    # then
    assert written == 0
    assert UsageRecord.objects.count() == 3
    assert BatchJob.objects.get().status == "completed"


def test_a_held_batch_stays_in_progress_until_the_provider_finishes(
    api_client, batch_on, django_capture_on_commit_callbacks
):
    # given
    sandbox_batches.batches.hold = True
    response = _post(api_client, {"requests": THREE[:1]}, django_capture_on_commit_callbacks)
    # when
    _advance(5)
    # then
    body = _get(api_client, response.json()["id"])
    assert body["status"] == "in_progress"
    assert body["provider_batches"][0]["provider_status"] == "in_progress"
    assert UsageRecord.objects.count() == 0
    sandbox_batches.batches.hold = False
    _advance()
    assert _get(api_client, response.json()["id"])["status"] == "completed"


# --- validation and access ---------------------------------------------------------------


def _refused(client, body, capture) -> tuple[int, dict]:
    response = _post(client, body, capture)
    return response.status_code, response.json()["error"]


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"requests": []}, "empty_batch", "requests"),
        ({}, "missing_field", "requests"),
        ({"requests": [{"custom_id": "x", "category": "analytics"}]}, "missing_field",
         "requests[0].messages"),
        ({"requests": [_req("a", "hi"), {**_req("b", "hi"), "complexity": 11}]},
         "complexity_out_of_range", "requests[1].complexity"),
        ({"requests": [_req("a", "hi"), _req("b", "hey babe", "chatbot")]},
         "category_not_deferrable", "requests[1].category"),
        ({"requests": [_req("a", "hi", "nope")]}, "unknown_category", "requests[0].category"),
        ({"requests": [_req("a", "hi"), _req("a", "ho")]}, "duplicate_custom_id",
         "requests[1].custom_id"),
        ({"requests": [{**_req("a", "hi"), "category": None}]}, "invalid_field",
         "requests[0].category"),
        ({"requests": [{**_req("a", "hi"), "messages": [{"role": "system", "content": "hi"}]}]},
         "missing_user_message", "requests[0].messages"),
        ({"requests": [_req("a", "hi", user="fan-\x00")]}, "invalid_text", "requests[0].user"),
        ({"requests": [_req("a", "hi \udfff")]}, "invalid_text", "requests[0].messages[0].content"),
        ({"requests": [_req("a\udfff", "hi")]}, "invalid_text", "requests[0].custom_id"),
        ({"requests": THREE, "metadata": {"run\x00": "nightly"}}, "invalid_text", "metadata"),
        ({"requests": THREE, "metadata": {"run": "\udfff"}}, "invalid_text", "metadata.run"),
        ({"requests": [json.loads("[" * 65 + "]" * 65)]}, "invalid_json", None),
    ],
)  # fmt: skip
def test_invalid_batches_are_refused_whole_with_the_item_named(
    api_client, batch_on, body, code, field, django_capture_on_commit_callbacks
):
    # when
    status, error = _refused(api_client, body, django_capture_on_commit_callbacks)
    # then
    assert (status, error["code"], error["field"]) == (400, code, field)
    assert BatchJob.objects.count() == 0


def test_too_many_requests_are_refused(
    api_client, batch_on, settings, django_capture_on_commit_callbacks
):
    # given
    settings.BATCH_MAX_REQUESTS = 2
    # when
    status, error = _refused(api_client, {"requests": THREE}, django_capture_on_commit_callbacks)
    # then
    assert (status, error["code"]) == (400, "batch_too_large")


def test_batch_flag_off_refuses_with_403(api_client, policy, django_capture_on_commit_callbacks):
    # when (the seed leaves the batch flag off)
    status, error = _refused(api_client, {"requests": THREE}, django_capture_on_commit_callbacks)
    # then
    assert (status, error["code"]) == (403, "batch_disabled")


def test_batch_without_key_is_401(client, batch_on):
    response = client.post(URL, data="{}", content_type="application/json")
    assert response.status_code == 401


def test_another_keys_batch_is_not_found(api_client, batch_on, django_capture_on_commit_callbacks):
    # given a job of another key
    from rest_framework.test import APIClient

    _, other_plaintext = api_key_create(name="other-app")
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {other_plaintext}")
    response = _post(other, {"requests": THREE[:1]}, django_capture_on_commit_callbacks)
    assert response.status_code == 202
    # when / then
    assert api_client.get(f"{URL}/{response.json()['id']}").status_code == 404
    assert api_client.get(f"{URL}/batch_nope").json()["error"]["code"] == "not_found"
    assert other.get(f"{URL}/{response.json()['id']}").status_code == 200


def test_admin_lists_batch_jobs_with_their_provider_batches_and_items(
    admin_client, api_client, batch_on, django_capture_on_commit_callbacks
):
    # given
    response = _post(api_client, {"requests": THREE}, django_capture_on_commit_callbacks)
    _advance()
    job = BatchJob.objects.get(public_id=response.json()["id"])
    # when
    listing = admin_client.get("/admin/routing/batchjob/")
    detail = admin_client.get(f"/admin/routing/batchjob/{job.pk}/change/")
    # then
    assert listing.status_code == 200
    assert job.public_id in listing.content.decode()
    assert detail.status_code == 200
    assert "gpt-4o-mini" in detail.content.decode()


def test_dashboard_shows_the_batch_layer_from_rollups(
    api_client, batch_on, django_capture_on_commit_callbacks
):
    # given collected batch rows, rolled up by the beat's refresh
    from usage.dashboard_selectors import dashboard_metrics
    from usage.services import usage_rollup_refresh

    _post(api_client, {"requests": THREE}, django_capture_on_commit_callbacks)
    _advance()
    now = timezone.now()
    usage_rollup_refresh(now=now)
    rows = UsageRecord.objects.all()
    # when
    layers = dashboard_metrics(window="today", now=now)["savings_by_layer"]
    # then
    assert layers["batch"] == sum(r.uncached_cost_usd - r.cost_usd for r in rows)
    assert layers["prompt_cache"] == 0
    assert layers["routing"] == sum(r.baseline_cost_usd - r.uncached_cost_usd for r in rows)


# --- the response cache inside batches ----------------------------------------------------


def test_identical_items_are_sent_once_and_share_the_answer(
    api_client, batch_on, django_capture_on_commit_callbacks
):
    # given two identical analytics requests (a category with the response cache on)
    same = "Summarise last week's subscriber growth in two lines"
    body = {"requests": [_req("a", same), _req("b", same), _req("c", "Best post last month?")]}
    response = _post(api_client, body, django_capture_on_commit_callbacks)
    # when
    _advance()
    # then the provider saw two lines, and "b" has "a"'s answer, billed nothing
    sent = sandbox_batches.batches.files[ProviderBatch.objects.get().input_file_id].splitlines()
    assert [json.loads(line)["custom_id"] for line in sent] == ["a", "c"]
    results = {r["custom_id"]: r for r in _get(api_client, response.json()["id"])["results"]}
    assert results["b"]["status"] == "succeeded"
    assert results["b"]["content"] == results["a"]["content"]
    first = UsageRecord.objects.get(request_id=results["a"]["request_id"])
    copy = UsageRecord.objects.get(request_id=results["b"]["request_id"])
    assert (copy.cost_usd, copy.cache_hit, copy.batch) == (Decimal("0"), True, True)
    assert copy.avoided_cost_usd == first.cost_usd
    assert copy.uncached_cost_usd == first.uncached_cost_usd
    now = timezone.now()
    layers = savings_by_layer(start=now - timedelta(hours=1), end=now + timedelta(minutes=1))
    assert layers.response_cache_usd == first.cost_usd
    assert layers.total_usd == sum(
        r.baseline_cost_usd - r.cost_usd for r in UsageRecord.objects.all()
    )


def test_a_cached_answer_serves_a_later_batch_without_the_provider(
    api_client, batch_on, django_capture_on_commit_callbacks
):
    # given a live analytics answer in the response cache
    text = "Which post had the best engagement rate last month?"
    live = api_client.post(
        "/api/v1/completions",
        data=json.dumps({"category": "analytics", "messages": [{"role": "user", "content": text}]}),
        content_type="application/json",
    ).json()
    # when a batch asks the same
    response = _post(
        api_client, {"requests": [_req("a", text)]}, django_capture_on_commit_callbacks
    )
    # then it is answered at once, from the cache, with no provider batch
    body = response.json()
    assert body["status"] == "completed"
    assert body["provider_batches"] == []
    assert body["results"][0]["content"] == live["content"]
    assert sandbox_batches.batches.creates == 0
    row = UsageRecord.objects.get(request_id=body["results"][0]["request_id"])
    assert (row.cost_usd, row.cache_hit, row.avoided_cost_usd) == (
        Decimal("0"), True, Decimal(live["cost_usd"]),
    )  # fmt: skip


def test_an_item_stored_before_the_price_book_bills_at_its_stored_batch_prices():
    from routing.batch_results import _ledger_row

    # given an item as batch_job_create stored it before the price book (prices in the row)
    row = {
        "category": "analytics", "category_source": "caller", "complexity": 2.0,
        "complexity_source": "caller", "critical": False, "tier": "mini",
        "model": "gpt-4o-mini", "reason_code": "default:mini", "policy_version_id": 1,
        "baseline_model": "gpt-4o", "arm": "routed", "prefix_fingerprint": "",
        "router_artifact": "", "explanation": {}, "api_key_id": 1, "end_user": "",
        "estimated_cost_usd": "0.0001", "estimate_source": "tiktoken",
        "price_input_per_mtok_usd": "0.0750", "price_cached_input_per_mtok_usd": "0.0750",
        "price_output_per_mtok_usd": "0.3000", "metadata": {}, "prompt_text": "",
    }  # fmt: skip
    prices = {"list_input": "0.15", "list_output": "0.60", "baseline_input": "2.50",
              "baseline_output": "10.00", "prompt_tokens": 10,
              "token_source": "tiktoken"}  # fmt: skip
    item = BatchItem(request_id="req_old", ledger_fields={"row": row, "prices": prices})
    # when its result is collected
    ledger = _ledger_row(item, tokens=TokenUsage(1000, 1000), billed=True, now=timezone.now())
    # then: 1000 x 0.075 + 1000 x 0.30; list 1000 x 0.15 + 1000 x 0.60; 2.50 + 10.00 baseline
    assert ledger.cost_usd == Decimal("0.000375")
    assert ledger.uncached_cost_usd == Decimal("0.00075")
    assert ledger.baseline_cost_usd == Decimal("0.0125")
    assert ledger.price_input_per_mtok_usd == Decimal("0.0750") and ledger.price_id is None
