"""Our retry loop, the fallback chain, the deadline and the circuit breaker."""

import json
import random
import time
from decimal import Decimal

import pytest

from routing.models import TaskCategory
from routing.policy_versions import policy_version_create
from routing.retry import backoff_s
from usage.models import UsageRecord

HELLO = {"messages": [{"role": "user", "content": "hey there"}]}


def _post(client, body):
    return client.post("/api/v1/completions", json.dumps(body), content_type="application/json")


def test_backoff_grows_with_jitter_and_honours_retry_after():
    rng = random.Random(1)
    waits = [
        backoff_s(attempt=n, retry_after_s=None, base_s=0.25, cap_s=4, rng=rng)
        for n in (1, 2, 3, 6)
    ]
    assert 0.125 <= waits[0] <= 0.25
    assert 0.25 <= waits[1] <= 0.5
    assert 0.5 <= waits[2] <= 1.0
    assert 2 <= waits[3] <= 4  # capped
    assert backoff_s(attempt=1, retry_after_s=3.0, base_s=0.25, cap_s=4, rng=rng) == 3.0


@pytest.mark.django_db
def test_a_retry_on_the_same_model_can_succeed(api_client, policy, sandbox_state, settings):
    settings.ROUTER_ATTEMPTS_PER_MODEL = 3
    sandbox_state.inject("429", "503")
    response = _post(api_client, {**HELLO, "category": "chatbot"})
    assert response.status_code == 200
    row = UsageRecord.objects.get()
    assert (row.attempts, row.model, row.fallback_from) == (3, "gpt-4o-mini", "")


@pytest.mark.django_db
def test_fallback_bills_the_model_that_answered(api_client, policy, sandbox_state, settings):
    # given the cheap model fails twice and the category falls back to the premium one
    settings.ROUTER_ATTEMPTS_PER_MODEL = 2
    sandbox_state.inject("500", "500")
    # when
    data = _post(api_client, {**HELLO, "category": "chatbot"}).json()
    # then
    assert data["model"] == "gpt-4o"
    assert "Fell back to gpt-4o after 3 attempts" in data["reason_text"]
    row = UsageRecord.objects.get()
    assert (row.model, row.tier, row.fallback_from, row.attempts) == (
        "gpt-4o",
        "full",
        "gpt-4o-mini",
        3,
    )
    assert row.reason_code == "default:mini"  # what the policy decided
    expected = (row.input_tokens * Decimal("2.50") + row.output_tokens * Decimal("10")) / 10**6
    assert row.cost_usd == expected
    assert sandbox_state.calls_by_model == {"gpt-4o-mini": 2, "gpt-4o": 1}


@pytest.mark.django_db
def test_configured_fallback_chain_is_followed(api_client, policy, sandbox_state):
    TaskCategory.objects.filter(slug="legal").update(fallback_models=["gpt-4o-mini"])
    policy_version_create(actor="ops")
    sandbox_state.inject("500")
    data = _post(api_client, {**HELLO, "category": "legal"}).json()
    assert data["model"] == "gpt-4o-mini"


@pytest.mark.django_db
def test_a_client_error_upstream_is_not_retried_nor_fallen_back(
    api_client, policy, sandbox_state, settings
):
    settings.ROUTER_ATTEMPTS_PER_MODEL = 3
    sandbox_state.inject("400")
    response = _post(api_client, {**HELLO, "category": "chatbot"})
    assert response.status_code == 400  # the model refused the request: the caller's error
    assert response.json()["error"]["code"] == "request_refused_by_model"
    assert sandbox_state.calls == 1
    assert UsageRecord.objects.get().attempts == 1


@pytest.mark.django_db
def test_a_hanging_upstream_cannot_hold_a_request_past_the_deadline(
    api_client, policy, sandbox_state, http_upstream
):
    # given a 1-second deadline and an upstream that hangs on every attempt
    TaskCategory.objects.filter(slug="legal").update(deadline_s=1)
    policy_version_create(actor="ops")
    sandbox_state.inject("timeout", "timeout", "timeout")
    # when
    started = time.monotonic()
    response = _post(api_client, {**HELLO, "category": "legal"})
    elapsed = time.monotonic() - started
    # then a JSON 504 within the deadline plus a second
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"
    assert elapsed < 2.0
    assert UsageRecord.objects.get().status == "upstream_timeout"


@pytest.mark.django_db
def test_circuit_opens_after_the_threshold_then_probes_after_cooldown(
    api_client, policy, sandbox_state, settings, time_machine
):
    # given a breaker that opens after 2 failures for 1 second; legal has no fallback
    time_machine.move_to(time.time(), tick=True)
    settings.CIRCUIT_FAILURE_THRESHOLD = 2
    settings.CIRCUIT_COOLDOWN_S = 1
    sandbox_state.inject("500", "500")
    legal = {**HELLO, "category": "legal"}
    assert _post(api_client, legal).status_code == 502
    assert _post(api_client, legal).status_code == 502
    calls = sandbox_state.calls
    # when the circuit is open, no call reaches the broken model
    response = _post(api_client, legal)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_unreachable"
    assert sandbox_state.calls == calls
    # then after the cooldown (the wall clock moved on) one probe goes through and closes it
    time_machine.shift(1.1)
    assert _post(api_client, legal).status_code == 200
    assert _post(api_client, legal).status_code == 200
    assert UsageRecord.objects.filter(status="ok").count() == 2


@pytest.mark.django_db
def test_admin_shows_each_models_circuit(admin_client, policy, api_client, sandbox_state, settings):
    settings.CIRCUIT_FAILURE_THRESHOLD = 1
    sandbox_state.inject("500")
    _post(api_client, {**HELLO, "category": "legal"})
    page = admin_client.get("/admin/routing/modelprofile/").content.decode()
    assert page.count(">open<") == 1 and ">closed<" in page


@pytest.mark.django_db
def test_database_outage_is_a_fast_json_503(api_client, api_key, policy, monkeypatch):
    from django.db import OperationalError

    from routing import api_key_selectors

    def down(**kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(api_key_selectors.ApiKey.objects, "filter", down)
    response = _post(api_client, HELLO)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "database_unavailable"


@pytest.mark.django_db
def test_metrics_show_each_models_circuit(client, policy, api_client, sandbox_state, settings):
    settings.CIRCUIT_FAILURE_THRESHOLD = 1
    sandbox_state.inject("500")
    _post(api_client, {**HELLO, "category": "legal"})
    text = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
    assert 'huntaze_circuit_open{model="gpt-4o"} 1.0' in text
    assert 'huntaze_circuit_open{model="gpt-4o-mini"} 0.0' in text
