"""Idempotency-Key: one upstream call and one ledger row per key and body."""

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import openai
import pytest
from django.utils import timezone

from routing.models import IdempotencyRecord
from routing.services import idempotency_purge
from tests.waits import after_response_settled
from usage.models import UsageRecord

BODY = {"messages": [{"role": "user", "content": "Caption for my beach photos"}]}


def _post(client, body=BODY, key="order-42"):
    return client.post(
        "/api/v1/completions",
        json.dumps(body),
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=key,
    )


@pytest.mark.django_db
def test_same_key_and_body_replays_the_first_answer(api_client, policy, sandbox_state):
    first = _post(api_client)
    again = [_post(api_client) for _ in range(4)]
    assert first.status_code == 200
    assert all(r.json() == first.json() for r in again)
    assert all(r["Idempotent-Replayed"] == "true" for r in again)
    assert sandbox_state.calls == 1
    assert UsageRecord.objects.count() == 1


@pytest.mark.django_db
def test_same_key_with_another_body_is_a_422(api_client, policy):
    _post(api_client)
    other = {"messages": [{"role": "user", "content": "something else"}]}
    response = _post(api_client, other)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"


@pytest.mark.django_db
def test_a_duplicate_in_flight_is_a_409(api_client, policy):
    # given a first request whose claim is still in flight (its answer not kept yet)
    assert _post(api_client).status_code == 200
    IdempotencyRecord.objects.update(state=IdempotencyRecord.IN_FLIGHT)
    # when the same request comes again
    response = _post(api_client)
    # then
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_in_flight"


@pytest.mark.django_db
def test_an_upstream_failure_is_not_kept_so_a_retry_runs(api_client, policy, sandbox_state):
    sandbox_state.inject("500", "500")
    assert _post(api_client).status_code == 502
    assert _post(api_client).status_code == 200
    assert UsageRecord.objects.filter(status="ok").count() == 1


@pytest.mark.django_db
def test_keys_expire_after_a_day(api_client, policy, sandbox_state):
    _post(api_client)
    assert idempotency_purge(now=timezone.now() + timedelta(hours=25)) == 1
    _post(api_client)
    assert sandbox_state.calls == 2


@pytest.mark.django_db(transaction=True)
def test_five_at_once_make_one_call_and_one_row(
    asgi_server, policy, api_key, settings, sandbox_state
):
    # given a slow upstream, five identical requests race with one key
    settings.SANDBOX_LATENCY_MS = 300
    client = openai.OpenAI(
        api_key=api_key[1], base_url=f"{asgi_server}/v1", max_retries=0, timeout=10
    )

    def one(_):
        try:
            client.chat.completions.create(
                model="auto",
                messages=BODY["messages"],
                extra_headers={"Idempotency-Key": "race-1"},
            )
            return 200
        except openai.APIStatusError as exc:
            return exc.status_code

    with ThreadPoolExecutor(max_workers=5) as pool:
        statuses = sorted(pool.map(one, range(5)))
    # then one ran; the others saw it in flight (409); one call, one row
    assert statuses.count(200) >= 1
    assert set(statuses) <= {200, 409}
    assert sandbox_state.calls == 1
    after_response_settled()
    assert UsageRecord.objects.count() == 1
