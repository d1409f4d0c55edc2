"""Only a model's own faults count against it: a tenant's bad request is that tenant's 400,
never another tenant's outage; a hung model falls back within the deadline, and the row names
the models that were really called."""

import json
import time

import openai
import pytest
from asgiref.sync import async_to_sync

from routing.api_keys import api_key_create
from routing.circuit import circuit_states
from routing.gateway.call import CompletionFailed, CompletionRequest
from routing.gateway.completion import completion_create
from routing.models import TaskCategory
from routing.policy_versions import policy_version_create
from tests.waits import after_response_settled
from usage.models import UsageRecord

HELLO = [{"role": "user", "content": "hey, loved the stream today!"}]
MODELS = ["gpt-4o-mini", "gpt-4o"]


def _sdk(base_url: str, plaintext: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=plaintext, base_url=base_url, max_retries=0, timeout=10)


def test_a_parameter_the_model_refuses_is_the_callers_400_and_no_one_elses_outage(
    asgi_server, policy, api_key, sandbox_state, settings
):
    # given a breaker that would open after 2 failures, and a tenant sending top_p=5
    settings.CIRCUIT_FAILURE_THRESHOLD = 2
    base_url = f"{asgi_server}/v1"
    attacker = _sdk(base_url, api_key[1])
    # when it sends five such requests
    for _ in range(5):
        with pytest.raises(openai.BadRequestError) as refused:
            attacker.chat.completions.create(model="auto:chatbot", messages=HELLO, top_p=5)
    # then each is its own 400, naming the parameter as the model did
    assert refused.value.code == "request_refused_by_model"
    assert refused.value.param == "top_p"
    assert "top_p" in refused.value.message
    # and another tenant's cheap traffic still goes to the cheap model
    other = _sdk(base_url, api_key_create(name="other tenant")[1])
    answer = other.chat.completions.with_raw_response.create(model="auto:chatbot", messages=HELLO)
    assert answer.headers["x-huntaze-model"] == "gpt-4o-mini"
    assert circuit_states(MODELS, now=time.time()) == {"gpt-4o-mini": "closed", "gpt-4o": "closed"}
    # one call each: no retry, no fallback to the premium model
    assert sandbox_state.calls_by_model == {"gpt-4o-mini": 6}
    after_response_settled()
    refused_rows = UsageRecord.objects.filter(api_key=api_key[0])
    assert set(refused_rows.values_list("status", "attempts", "model", "cost_usd")) == {
        ("request_refused", 1, "gpt-4o-mini", 0)
    }
    assert refused_rows.count() == 5


@pytest.mark.django_db
def test_text_that_cannot_be_encoded_is_refused_before_any_call_and_blames_no_model(
    api_key, policy, sandbox_state, settings
):
    # given a breaker that opens at the first failure, and a lone surrogate past the door
    settings.CIRCUIT_FAILURE_THRESHOLD = 1
    request = CompletionRequest(
        messages=[{"role": "user", "content": "hello \udfff"}], category="chatbot"
    )
    # when
    with pytest.raises(CompletionFailed) as failed:
        # on this thread (async_to_sync): the test's own database connection
        async_to_sync(completion_create)(api_key=api_key[0], request=request)
    # then the caller's 400, nothing sent, both models still in rotation
    assert (failed.value.error.status, failed.value.error.code) == (
        400,
        "request_refused_by_model",
    )
    assert sandbox_state.calls == 0
    assert circuit_states(MODELS, now=time.time()) == {"gpt-4o-mini": "closed", "gpt-4o": "closed"}
    assert UsageRecord.objects.get().status == "request_refused"


def _post(client, body):
    return client.post("/api/v1/completions", json.dumps(body), content_type="application/json")


@pytest.mark.django_db
def test_a_hung_cheap_model_falls_back_to_the_premium_one_within_the_deadline(
    api_client, policy, sandbox_state, http_upstream, settings
):
    # given a 2-second deadline, the cheap model hanging, the premium one healthy
    settings.ROUTER_ATTEMPTS_PER_MODEL = 3
    TaskCategory.objects.filter(slug="chatbot").update(deadline_s=2)
    policy_version_create(actor="ops")
    sandbox_state.fail_model("gpt-4o-mini", "timeout")
    # when
    started = time.monotonic()
    response = _post(api_client, {"messages": HELLO, "category": "chatbot"})
    elapsed = time.monotonic() - started
    # then the premium model answers inside the deadline
    assert response.status_code == 200, response.json()
    assert response.json()["model"] == "gpt-4o"
    assert elapsed < 2.0
    row = UsageRecord.objects.get()
    assert (row.status, row.model, row.fallback_from) == ("ok", "gpt-4o", "gpt-4o-mini")


@pytest.mark.django_db
def test_a_timeout_row_names_the_model_that_was_called_not_the_next_in_line(
    api_client, policy, sandbox_state, http_upstream, settings
):
    # given a 1-second deadline, a fallback reserve of 0 s and the cheap model hanging
    settings.ROUTER_FALLBACK_RESERVE_S = 0
    TaskCategory.objects.filter(slug="chatbot").update(deadline_s=1)
    policy_version_create(actor="ops")
    sandbox_state.fail_model("gpt-4o-mini", "timeout")
    # when the cheap model uses the whole deadline
    response = _post(api_client, {"messages": HELLO, "category": "chatbot"})
    # then the 504's row blames the cheap model, the only one called
    assert response.status_code == 504
    row = UsageRecord.objects.get()
    assert (row.status, row.model, row.fallback_from) == ("upstream_timeout", "gpt-4o-mini", "")
    assert sandbox_state.calls_by_model == {"gpt-4o-mini": 1}
