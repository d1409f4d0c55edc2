"""Idempotency-Key: one upstream call and one ledger row per key and body."""

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import openai
import pytest
from django.db import IntegrityError, OperationalError, connection
from django.utils import timezone

from routing.gateway.idempotency import (
    IDEMPOTENCY_LEASE_MARGIN,
    IdempotencyError,
    idempotency_claim,
    idempotency_lease,
    idempotency_purge,
    idempotency_release,
    idempotency_store,
)
from routing.models import IdempotencyRecord, TaskCategory
from routing.policy_versions import policy_version_create
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


# --- a claim whose worker died: the lease ----------------------------------------------


def _claim(api_key, *, now, claim_id, key="order-42", digest="d" * 64):
    return idempotency_claim(
        api_key=api_key, key=key, request_digest=digest, claim_id=claim_id, now=now
    )


@pytest.mark.django_db
def test_a_duplicate_in_flight_gets_a_409_with_retry_after_until_the_lease_ends(api_client, policy):
    # given a first request whose worker died before its answer was kept
    assert _post(api_client).status_code == 200
    IdempotencyRecord.objects.update(state=IdempotencyRecord.IN_FLIGHT)
    # when the client retries
    response = _post(api_client)
    # then it is told to come back when the lease ends, not in 24 h
    assert response.status_code == 409
    assert 1 <= int(response["Retry-After"]) <= idempotency_lease().total_seconds()


@pytest.mark.django_db
def test_a_claim_whose_lease_passed_is_taken_over_and_runs(api_client, policy, sandbox_state):
    # given a first request whose worker died holding the claim, and its lease passed
    assert _post(api_client).status_code == 200
    IdempotencyRecord.objects.update(
        state=IdempotencyRecord.IN_FLIGHT, lease_until=timezone.now() - timedelta(seconds=1)
    )
    # when the client retries
    response = _post(api_client)
    again = _post(api_client)
    # then the retry ran (a second upstream call), and its answer is the one kept
    assert response.status_code == 200
    assert not response.has_header("Idempotent-Replayed")
    assert sandbox_state.calls == 2
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == response.json()


@pytest.mark.django_db
def test_the_lease_covers_the_longest_enabled_deadline_and_a_margin(policy, settings):
    # given one category with a long deadline, and no fixed lease
    settings.IDEMPOTENCY_LEASE_S = 0
    TaskCategory.objects.filter(slug="legal").update(deadline_s=90)
    policy_version_create(actor="ops")
    # then an in-flight claim outlives that category's whole deadline
    assert idempotency_lease() == timedelta(seconds=90) + IDEMPOTENCY_LEASE_MARGIN


@pytest.mark.django_db
def test_a_worker_whose_claim_was_taken_over_cannot_overwrite_or_release_it(api_key):
    # given a claim taken over after its lease (its first worker was only frozen)
    api_key = api_key[0]
    t0 = timezone.now()
    assert _claim(api_key, now=t0, claim_id="first") is None
    with pytest.raises(IdempotencyError) as refused:
        _claim(api_key, now=t0 + idempotency_lease() - timedelta(seconds=10), claim_id="early")
    assert (refused.value.status, refused.value.retry_after_s) == (409, 10)
    after_lease = t0 + idempotency_lease() + timedelta(seconds=1)
    assert _claim(api_key, now=after_lease, claim_id="second") is None
    # when the first worker wakes up and stores or releases
    idempotency_store(
        api_key=api_key,
        key="order-42",
        claim_id="first",
        status_code=200,
        reply={"body": {"stale": True}, "headers": {}},
        request_id="req_first",
    )
    idempotency_release(api_key=api_key, key="order-42", claim_id="first")
    # then the claim is still the second worker's, in flight
    with pytest.raises(IdempotencyError) as refused:
        _claim(api_key, now=after_lease, claim_id="third")
    assert refused.value.status == 409


# --- the claim loop under races ----------------------------------------------------------


@pytest.mark.django_db
def test_a_claim_released_between_its_insert_and_its_read_is_not_a_500(
    api_client, policy, monkeypatch
):
    # given another request's claim that made our INSERT fail, then was released before we
    # could read it (the row is gone by the time we look)
    create = IdempotencyRecord.objects.create
    conflicts = iter([True])

    def insert_meets_a_claim_released_meanwhile(**fields):
        if next(conflicts, False):
            raise IntegrityError("duplicate key value violates unique constraint")
        return create(**fields)

    monkeypatch.setattr(
        IdempotencyRecord.objects, "create", insert_meets_a_claim_released_meanwhile
    )
    # when
    response = _post(api_client)
    # then our request claims the key on its next try and runs
    assert response.status_code == 200


@pytest.mark.django_db(transaction=True)
def test_racing_claims_and_releases_never_raise_anything_but_409(api_key):
    if connection.vendor == "sqlite":
        pytest.skip("SQLite serialises writers: the race is PostgreSQL's")
    # given 8 threads claiming one key and releasing it at once, 40 times each
    api_key = api_key[0]
    unexpected: list[BaseException] = []

    def claim_release(worker: int) -> None:
        try:
            for n in range(40):
                claim_id = f"{worker}-{n}"
                try:
                    if _claim(api_key, now=timezone.now(), claim_id=claim_id) is None:
                        idempotency_release(api_key=api_key, key="order-42", claim_id=claim_id)
                except IdempotencyError as exc:
                    assert exc.status == 409
        except BaseException as exc:  # noqa: BLE001 - the test reports every other error
            unexpected.append(exc)
        finally:
            connection.close()

    # when
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(claim_release, range(8)))
    # then
    assert unexpected == []


@pytest.mark.django_db
def test_a_database_outage_at_the_claim_is_a_json_503(api_client, policy, monkeypatch):
    # given a database that fails the claim
    def unavailable(**fields):
        raise OperationalError("connection refused")

    monkeypatch.setattr(IdempotencyRecord.objects, "create", unavailable)
    # when
    response = _post(api_client)
    # then the documented fast 503, not a 500
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "database_unavailable"


# --- what makes two requests the same ----------------------------------------------------


@pytest.mark.django_db
def test_other_routing_hint_headers_are_another_request(api_client, policy):
    # given a first answer for the legal category, asked by header
    body = {"model": "auto", "messages": BODY["messages"]}

    def post(category: str):
        return api_client.post(
            "/v1/chat/completions",
            json.dumps(body),
            content_type="application/json",
            HTTP_IDEMPOTENCY_KEY="hinted",
            HTTP_X_HUNTAZE_CATEGORY=category,
        )

    assert post("legal").status_code == 200
    # when the same key and body come with another hint
    response = post("moderation")
    # then it is not the first answer replayed
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"


@pytest.mark.django_db
def test_the_same_key_and_body_on_the_other_endpoint_is_another_request(api_client, policy):
    # given an answer on the native endpoint, to a body both endpoints accept
    body = {"model": "auto", "messages": BODY["messages"]}
    assert _post(api_client, body, key="both").status_code == 200
    # when the same key and body go to the OpenAI-compatible endpoint
    response = api_client.post(
        "/v1/chat/completions",
        json.dumps(body),
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="both",
    )
    # then it does not get the native answer's shape replayed
    assert response.status_code == 422


# --- privacy: nothing readable kept ------------------------------------------------------


@pytest.mark.django_db
def test_a_kept_answer_holds_neither_its_text_nor_the_key_readably(api_client, policy, settings):
    # given text storage off, and an answer kept for its Idempotency-Key
    settings.USAGE_STORE_TEXT = False
    first = _post(api_client, key="order-secret-42")
    answer = first.json()["content"]
    # when a database reader looks at the table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {IdempotencyRecord._meta.db_table}")  # noqa: S608
        stored = repr(cursor.fetchall())
    # then it sees neither the answer nor the key, while the client still gets its replay
    assert answer and answer not in stored and answer[:20] not in stored
    assert "order-secret-42" not in stored
    again = _post(api_client, key="order-secret-42")
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
