"""Every answered or partly answered call ends as exactly one ledger row, whatever the client,
the worker or the database does, and the in-flight sweep never stops on one bad record."""

import json
import time
from datetime import timedelta
from decimal import Decimal

import httpx2
import pytest
from asgiref.sync import async_to_sync
from django.db import OperationalError, connection
from django.db.models import QuerySet
from django.utils import timezone

from huntaze.metrics import metrics_render
from routing.gateway.admission import inflight_sweep
from routing.gateway.call import CompletionRequest
from routing.gateway.completion import call_prepare, completion_create
from routing.gateway.ledger import call_record, leave_for_sweep
from routing.gateway.outcome import Outcome, ledger_row
from routing.models import BudgetPeriod, InFlightRequest
from usage.models import UsageRecord

HELLO = [{"role": "user", "content": "hey there"}]


def _budgeted(api_key, usd: str = "5"):
    key = api_key[0]
    key.monthly_budget_usd = Decimal(usd)
    key.save()
    return key


def _wait_for_row(request_filter: dict, timeout_s: float = 10) -> UsageRecord:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        row = UsageRecord.objects.filter(**request_filter).first()
        if row is not None:
            return row
        time.sleep(0.02)
    raise AssertionError("no ledger row")


def test_a_client_that_hangs_up_on_a_completion_still_leaves_its_billed_row(
    asgi_server, policy, api_key, settings
):
    # given a budgeted key and a model that takes a second to answer
    settings.SANDBOX_LATENCY_MS = 1000
    _budgeted(api_key)
    body = {"messages": HELLO, "category": "chatbot"}
    headers = {"Authorization": f"Bearer {api_key[1]}"}
    with httpx2.Client(timeout=10) as http:  # policy and router loaded: no slow first call
        assert http.post(f"{asgi_server}/api/v1/route", json=body, headers=headers).is_success
    # when the client gives up after 300 ms, while the model is still at work
    with pytest.raises(httpx2.TimeoutException), httpx2.Client(timeout=0.3) as http:
        http.post(f"{asgi_server}/api/v1/completions", json=body, headers=headers)
    # then the call runs to its end: one row at its real cost, the reservation settled
    row = _wait_for_row({"api_key": api_key[0]})
    assert (row.status, row.token_source) == ("client_cancelled", "provider")
    assert row.cost_usd > 0 and row.output_tokens > 0
    deadline = time.monotonic() + 5
    while InFlightRequest.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    period = BudgetPeriod.objects.get()
    assert (period.reserved_usd, period.spent_usd) == (0, row.cost_usd)


def test_a_retry_after_hanging_up_replays_the_answer_it_paid_for(
    asgi_server, policy, api_key, sandbox_state, settings
):
    # given a model that takes a second, and a client that gives up after 300 ms
    settings.SANDBOX_LATENCY_MS = 1000
    url = f"{asgi_server}/api/v1/completions"
    body = {"messages": HELLO, "category": "chatbot"}
    headers = {"Authorization": f"Bearer {api_key[1]}", "Idempotency-Key": "order-7"}
    with httpx2.Client(timeout=10) as http:  # policy and router loaded: no slow first call
        assert http.post(f"{asgi_server}/api/v1/route", json=body, headers=headers).is_success
    with pytest.raises(httpx2.TimeoutException), httpx2.Client(timeout=0.3) as http:
        http.post(url, json=body, headers=headers)
    row = _wait_for_row({"api_key": api_key[0]})
    # when it retries with the same key once the first call has ended
    with httpx2.Client(timeout=10) as http:
        deadline = time.monotonic() + 5
        retry = http.post(url, json=body, headers=headers)
        while retry.status_code == 409 and time.monotonic() < deadline:
            time.sleep(0.1)
            retry = http.post(url, json=body, headers=headers)
    # then it gets the answer it paid for: no second call, no second row
    assert retry.status_code == 200
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json()["id"] == row.request_id
    assert sandbox_state.calls == 1
    assert UsageRecord.objects.count() == 1


@pytest.mark.django_db
def test_text_the_database_refuses_is_recorded_cleaned_not_lost(api_key, policy):
    # given a NUL and a lone surrogate that got past the door, for a key with a budget
    key = _budgeted(api_key)
    request = CompletionRequest(
        messages=HELLO, category="chatbot", user="fan\x00-1", metadata={"k\x00": "v\udfff"}
    )
    # when
    async_to_sync(completion_create)(api_key=key, request=request)
    # then one row, cleaned where the database cannot store the text as it was
    row = UsageRecord.objects.get()
    assert row.status == "ok"
    if connection.vendor == "postgresql":
        assert row.end_user == "fan-1"
        assert row.metadata == {"k": "v\ufffd"}
    assert not InFlightRequest.objects.exists()


@pytest.mark.django_db
def test_one_bad_in_flight_record_never_stops_the_sweep(admin_client, api_key, policy):
    # given a request lost by its worker (budgeted: its record in the table) and, older, a
    # record that is not a row at all
    call = call_prepare(api_key=_budgeted(api_key), request=CompletionRequest(messages=HELLO))
    InFlightRequest.objects.create(
        request_id="req_broken",
        api_key=api_key[0],
        deadline_at=timezone.now() - timedelta(hours=1),
        ledger_fields={"request_id": "req_broken", "created_at": "not a date"},
    )
    # when the sweep runs twice past both deadlines
    later = timezone.now() + timedelta(hours=1)
    swept = [inflight_sweep(now=later) for _ in range(2)]
    # then the lost request is recorded, the broken record quarantined, and skipped after
    assert swept == [1, 0]
    assert list(UsageRecord.objects.values_list("request_id", flat=True)) == [call.request_id]
    assert BudgetPeriod.objects.get().reserved_usd == 0
    quarantined = InFlightRequest.objects.get()
    assert quarantined.request_id == "req_broken"
    assert quarantined.quarantined_at is not None
    assert "not a date" in quarantined.quarantine_reason
    # and an operator sees it, in admin and in the metrics
    page = admin_client.get("/admin/routing/inflightrequest/?quarantined=yes").content.decode()
    assert "req_broken" in page
    metrics = metrics_render(multiprocess_dir="")[0].decode()
    assert "huntaze_inflight_quarantined 1.0" in metrics


@pytest.mark.django_db
def test_in_redis_a_nul_is_swept_cleaned_and_a_broken_record_quarantined(api_key, policy, settings):
    from routing.inflight import DATA_KEY, DEADLINES_KEY, QUARANTINE_KEY
    from routing.shared_cache import shared_redis

    if not settings.REDIS_URL:
        pytest.skip("needs REDIS_URL (the PostgreSQL + Redis pass of .ci/run)")
    redis = shared_redis()
    redis.delete(DATA_KEY, DEADLINES_KEY, QUARANTINE_KEY)
    # given a lost request of a key without a budget (in Redis), and beside it, older, one
    # with a NUL in its row and one that is not JSON
    call = call_prepare(api_key=api_key[0], request=CompletionRequest(messages=HELLO))
    assert call.remembered_in == "redis"
    row = json.loads(redis.hget(DATA_KEY, call.request_id))
    past = (timezone.now() - timedelta(hours=1)).timestamp()
    for request_id, value in [
        ("req_broken", "{not json"),
        ("req_nul", json.dumps({**row, "request_id": "req_nul", "end_user": "fan\x00"})),
    ]:
        redis.hset(DATA_KEY, request_id, value)
        redis.zadd(DEADLINES_KEY, {request_id: past})
    # when the sweep runs twice past every deadline
    later = timezone.now() + timedelta(hours=1)
    swept = [inflight_sweep(now=later) for _ in range(2)]
    # then two rows (the NUL one cleaned), the broken one set aside, nothing left to retry
    assert swept == [2, 0]
    rows = dict(UsageRecord.objects.values_list("request_id", "end_user"))
    assert set(rows) == {call.request_id, "req_nul"}
    if connection.vendor == "postgresql":
        assert rows["req_nul"] == "fan"
    assert redis.hkeys(QUARANTINE_KEY) == [b"req_broken"]
    assert redis.zcard(DEADLINES_KEY) == 0
    redis.delete(QUARANTINE_KEY)


@pytest.mark.django_db
def test_a_stream_that_outlives_the_sweep_replaces_its_abandoned_row(api_key, policy):
    # given a budgeted request swept as lost while it was in fact still running
    key = _budgeted(api_key)
    call = call_prepare(api_key=key, request=CompletionRequest(messages=HELLO))
    assert inflight_sweep(now=timezone.now() + timedelta(hours=1)) == 1
    assert UsageRecord.objects.get().status == "abandoned"
    # when its real row arrives
    outcome = Outcome(input_tokens=1000, output_tokens=500, streamed=True)
    real = ledger_row(call, outcome)
    call_record(call, real)
    # then it replaces the estimate, and the budget counts its real cost
    row = UsageRecord.objects.get()
    assert (row.status, row.output_tokens, row.cost_usd) == ("ok", 500, real.cost_usd)
    period = BudgetPeriod.objects.get()
    assert (period.reserved_usd, period.spent_usd) == (0, real.cost_usd)


@pytest.mark.django_db
def test_an_answered_row_left_in_redis_while_the_database_is_down_is_swept_at_its_price(
    api_key, policy, settings, monkeypatch
):
    if not settings.REDIS_URL:
        pytest.skip("needs REDIS_URL (the PostgreSQL + Redis pass of .ci/run)")
    # given a budgeted request, answered, whose row and in-flight record cannot be written
    key = _budgeted(api_key)
    call = call_prepare(api_key=key, request=CompletionRequest(messages=HELLO))
    real = ledger_row(call, Outcome(input_tokens=900, output_tokens=90))

    def database_down(*args, **kwargs):
        raise OperationalError("the database is down")

    with monkeypatch.context() as patched:
        patched.setattr(QuerySet, "update", database_down)
        assert leave_for_sweep(call, real) is True  # into Redis
    # when the database is back and the sweep runs past the deadline
    assert inflight_sweep(now=timezone.now() + timedelta(hours=1)) == 1
    # then the row is the answered call at its price, and the reservation became that spend
    row = UsageRecord.objects.get()
    assert (row.status, row.cost_usd) == ("ok", real.cost_usd)
    period = BudgetPeriod.objects.get()
    assert (period.reserved_usd, period.spent_usd) == (0, real.cost_usd)
    assert inflight_sweep(now=timezone.now() + timedelta(hours=2)) == 0
