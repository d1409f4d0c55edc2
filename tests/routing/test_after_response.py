"""The ledger row is written just after the answer leaves, and never lost on the way."""

import asyncio
import threading
from datetime import timedelta
from decimal import Decimal

import httpx2
import pytest
from django.db import OperationalError
from django.utils import timezone

from routing import after_response
from routing.gateway import ledger
from routing.gateway.admission import inflight_sweep
from routing.models import InFlightRequest
from tests.waits import after_response_settled
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = {"model": "auto", "messages": [{"role": "user", "content": "hello there"}]}


@pytest.fixture
def held_ledger_writes(monkeypatch):
    """Ledger writes wait until the test releases them."""
    release = threading.Event()
    write = ledger.call_record

    def held(call, fields):
        assert release.wait(timeout=10), "the test never released the write"
        return write(call, fields)

    monkeypatch.setattr(ledger, "call_record", held)
    yield release
    release.set()


def _post(url: str, key: str, body: dict) -> httpx2.Response:
    # A client of its own that hangs up at once: the row must not depend on the connection.
    with httpx2.Client(timeout=10) as http:
        return http.post(url, json=body, headers={"Authorization": f"Bearer {key}"})


def test_the_answer_does_not_wait_for_its_ledger_row(
    asgi_server, policy, api_key, held_ledger_writes
):
    # when the ledger write is held back
    response = _post(f"{asgi_server}/v1/chat/completions", api_key[1], HELLO)
    # then the client has its answer, cost included, before the row exists
    assert response.status_code == 200
    cost = response.headers["X-Huntaze-Cost-Usd"]
    assert after_response.pending() == 1
    assert not UsageRecord.objects.exists()
    # and the row is written once the write may go on, though the client has gone
    held_ledger_writes.set()
    after_response_settled()
    row = UsageRecord.objects.get()
    assert row.request_id == response.headers["X-Request-Id"]
    assert row.cost_usd == Decimal(cost) > 0
    assert not InFlightRequest.objects.exists()


def test_a_stream_ends_before_its_ledger_row_is_written(
    asgi_server, policy, api_key, held_ledger_writes
):
    response = _post(f"{asgi_server}/v1/chat/completions", api_key[1], {**HELLO, "stream": True})
    assert response.status_code == 200
    assert response.text.endswith("data: [DONE]\n\n")
    assert not UsageRecord.objects.exists()
    held_ledger_writes.set()
    after_response_settled()
    assert UsageRecord.objects.get().streamed


def test_a_failed_deferred_write_is_retried(asgi_server, policy, api_key, monkeypatch):
    # given a database that refuses the first two writes
    monkeypatch.setattr(ledger, "LEDGER_WRITE_RETRY_WAITS_S", (0.01, 0.01, 0.01))
    write, failures = ledger.call_record, []

    def flaky(call, fields):
        if len(failures) < 2:
            failures.append(call.request_id)
            raise OperationalError("server closed the connection unexpectedly")
        return write(call, fields)

    monkeypatch.setattr(ledger, "call_record", flaky)
    # when
    response = _post(f"{asgi_server}/api/v1/completions", api_key[1], HELLO)
    # then
    assert response.status_code == 200
    after_response_settled()
    assert len(failures) == 2
    assert UsageRecord.objects.get().request_id == response.json()["id"]


def test_a_row_that_cannot_be_written_is_left_whole_for_the_sweep(
    asgi_server, policy, api_key, monkeypatch, settings
):
    # given a ledger that refuses every write (the in-flight store still answers)
    settings.REDIS_URL = ""  # the in-flight record in the table, which this test reads
    monkeypatch.setattr(ledger, "LEDGER_WRITE_RETRY_WAITS_S", (0.01,))

    def refused(call, fields):
        raise OperationalError("could not write")

    monkeypatch.setattr(ledger, "call_record", refused)
    response = _post(f"{asgi_server}/api/v1/completions", api_key[1], HELLO)
    assert response.status_code == 200
    after_response_settled()
    assert not UsageRecord.objects.exists()
    # when the sweep runs past the request's deadline
    monkeypatch.undo()
    assert inflight_sweep(now=timezone.now() + timedelta(days=1)) == 1
    # then the row it writes is the answered call, priced, not a lost one
    row = UsageRecord.objects.get()
    assert row.request_id == response.json()["id"]
    assert row.status == "ok"
    assert row.cost_usd == Decimal(response.json()["cost_usd"]) > 0


def test_without_the_hot_path_handler_the_row_is_written_before_the_answer(policy, api_client):
    response = api_client.post("/api/v1/completions", HELLO, format="json")
    assert response.status_code == 200
    assert after_response.pending() == 0
    assert UsageRecord.objects.get().request_id == response.json()["id"]


def test_a_job_offered_after_its_request_ended_is_refused():
    ran = []

    async def job() -> None:
        ran.append(1)

    async def request() -> tuple[bool, bool]:
        jobs = after_response.open_jobs()
        accepted = after_response.defer(job)
        await after_response.run_jobs(jobs)
        return accepted, after_response.defer(job)

    accepted, late = asyncio.run(request())
    assert (accepted, late, ran) == (True, False, [1])
    assert after_response.pending() == 0


def test_switched_off_the_row_is_written_before_the_answer_leaves(
    asgi_server, policy, api_key, settings
):
    settings.LEDGER_WRITE_AFTER_RESPONSE = False
    response = _post(f"{asgi_server}/api/v1/completions", api_key[1], HELLO)
    assert response.status_code == 200
    assert after_response.pending() == 0
    assert UsageRecord.objects.get().request_id == response.json()["id"]
