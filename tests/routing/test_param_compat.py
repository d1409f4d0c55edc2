"""Parameter compatibility end to end: a strict (newer) model behind the router takes the
requests callers already send, once its profile says how to shape them."""

import json

import httpx2
import openai
import pytest
from django.contrib.auth import get_user_model

from routing.gateway.outcome import PARAM_CHANGES_KEY
from routing.models import BatchItem, FeatureFlag, ModelProfile, PolicyVersion
from routing.policy_versions import policy_version_create
from routing.providers import sandbox, sandbox_batches
from routing.tasks import batch_advance_due
from tests.waits import after_response_settled
from usage.models import UsageRecord

HELLO = [{"role": "user", "content": "hey, loved the stream today!"}]
STRICT_RULES = {"token_limit_param": "max_completion_tokens", "fixed_temperature": 1.0}


def _sdk(base_url: str, plaintext: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=plaintext, base_url=base_url, max_retries=0, timeout=10)


def _profile_set(name: str, **rules) -> None:
    ModelProfile.objects.filter(name=name).update(**rules)
    policy_version_create(actor="test", comment="successor's parameter rules")


def test_a_strict_model_answers_old_style_requests_once_its_profile_shapes_them(
    asgi_server, policy, api_key, sandbox_state
):
    # given the routed cheap model refuses max_tokens and temperatures but the default,
    # and its profile says so
    sandbox_state.strict_model("gpt-4o-mini")
    _profile_set("gpt-4o-mini", **STRICT_RULES, unsupported_params=["presence_penalty"])
    client = _sdk(f"{asgi_server}/v1", api_key[1])
    # when a caller sends what the old model took
    answer = client.chat.completions.with_raw_response.create(
        model="auto:chatbot",
        messages=HELLO,
        max_tokens=50,
        temperature=0.2,
        presence_penalty=0.5,
    )
    # then it is answered by that model, which saw the parameters in the form it takes
    assert answer.headers["x-huntaze-model"] == "gpt-4o-mini"
    assert answer.parse().choices[0].message.content
    sent = sandbox_state.last_request
    assert "max_tokens" not in sent
    assert "presence_penalty" not in sent
    assert sent["max_completion_tokens"] == 50
    assert sent["temperature"] == 1.0
    # and the ledger row says what was changed
    after_response_settled()
    row = UsageRecord.objects.get()
    assert (row.status, row.model) == ("ok", "gpt-4o-mini")
    assert row.metadata[PARAM_CHANGES_KEY] == [
        "renamed:max_tokens->max_completion_tokens",
        "set:temperature=1",
        "dropped:presence_penalty",
    ]


def test_without_the_profile_rules_the_strict_model_refuses_the_same_request(
    asgi_server, policy, api_key, sandbox_state
):
    # given the same strict model, its profile left as for the old models
    sandbox_state.strict_model("gpt-4o-mini")
    client = _sdk(f"{asgi_server}/v1", api_key[1])
    # when
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="auto:chatbot", messages=HELLO, max_tokens=50, temperature=0.2
        )
    # then the caller gets the model's refusal, naming the parameter
    assert refused.value.code == "request_refused_by_model"
    assert refused.value.param == "max_tokens"
    assert "max_completion_tokens" in refused.value.message
    after_response_settled()
    assert UsageRecord.objects.get().status == "request_refused"


def test_a_fallback_is_shaped_for_the_model_it_falls_back_to(
    asgi_server, policy, api_key, sandbox_state
):
    # given the cheap model down, and the premium model it falls back to strict, with its
    # rules; the cheap one keeps the old form
    sandbox_state.fail_model("gpt-4o-mini", "500")
    sandbox_state.strict_model("gpt-4o")
    _profile_set("gpt-4o", **STRICT_RULES)
    client = _sdk(f"{asgi_server}/v1", api_key[1])
    # when a request routed to gpt-4o-mini falls back
    answer = client.chat.completions.with_raw_response.create(
        model="auto:chatbot", messages=HELLO, max_tokens=40, temperature=0.2
    )
    # then the request that reached gpt-4o was shaped for it
    assert answer.headers["x-huntaze-model"] == "gpt-4o"
    assert sandbox_state.calls_by_model == {"gpt-4o-mini": 1, "gpt-4o": 1}
    assert sandbox_state.last_request["max_completion_tokens"] == 40
    assert "max_tokens" not in sandbox_state.last_request
    after_response_settled()
    row = UsageRecord.objects.get()
    assert (row.model, row.fallback_from) == ("gpt-4o", "gpt-4o-mini")
    assert row.metadata[PARAM_CHANGES_KEY] == [
        "renamed:max_tokens->max_completion_tokens",
        "set:temperature=1",
    ]


def test_the_sandbox_is_made_strict_over_http(sandbox_state):
    # given the shared sandbox server
    server = sandbox.serve()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        # when a model is made strict through the control endpoint
        control = {"model": "gpt-5", "strict": True}
        assert httpx2.post(f"{base}/_sandbox/strict", json=control).status_code == 204
        client = openai.OpenAI(api_key="sandbox", base_url=f"{base}/v1", max_retries=0)
        # then it refuses max_tokens as OpenAI does, and takes max_completion_tokens
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model="gpt-5", messages=HELLO, max_tokens=5)
        assert (refused.value.code, refused.value.param) == ("unsupported_parameter", "max_tokens")
        assert refused.value.body["message"] == (
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead."
        )
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model="gpt-5", messages=HELLO, temperature=0.2)
        assert (refused.value.code, refused.value.param) == ("unsupported_value", "temperature")
        answer = client.chat.completions.create(
            model="gpt-5", messages=HELLO, max_completion_tokens=5, temperature=1
        )
        assert answer.choices[0].message.content
        # and another model still takes the old form
        assert client.chat.completions.create(model="gpt-4o", messages=HELLO, max_tokens=5)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.django_db
def test_admin_sets_a_models_parameter_rules_as_a_policy_version(client, policy):
    # given a staff user on gpt-4o-mini's change form
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw-for-tests")
    client.force_login(user)
    profile = ModelProfile.objects.get(name="gpt-4o-mini")
    url = f"/admin/routing/modelprofile/{profile.pk}/change/"
    page = client.get(url).content.decode()
    assert "max_completion_tokens" in page
    form = {
        "name": profile.name,
        "tier": profile.tier,
        "base_url": "",
        "api_key_env": profile.api_key_env,
        # the price book inline: its existing row is read-only, no new one
        "prices-TOTAL_FORMS": "1",
        "prices-INITIAL_FORMS": "1",
        "prices-0-id": profile.prices.get().pk,
        "prices-0-model": profile.pk,
        "context_window_tokens": profile.context_window_tokens,
        "supports_prompt_cache_key": "on",
        "active": "on",
        "token_limit_param": "max_completion_tokens",
        "fixed_temperature": "1",
        "unsupported_params": '["logprobs", "presence_penalty"]',
        "reasoning_effort": "low",
    }
    # when a bad list is sent, then nothing is saved
    bad = client.post(url, {**form, "unsupported_params": '"logprobs"'})
    assert bad.status_code == 200
    assert "A list of parameter names" in bad.content.decode()
    # when the rules are saved
    response = client.post(url, form)
    # then the profile and a new policy version hold them
    assert response.status_code == 302
    profile.refresh_from_db()
    assert profile.token_limit_param == "max_completion_tokens"
    assert profile.fixed_temperature == 1.0
    assert profile.unsupported_params == ["logprobs", "presence_penalty"]
    assert profile.reasoning_effort == "low"
    version = PolicyVersion.objects.first()
    assert version.pk != policy.pk
    assert version.snapshot["models"]["gpt-4o-mini"]["token_limit_param"] == (
        "max_completion_tokens"
    )
    assert "models.gpt-4o-mini.reasoning_effort: '' -> 'low'" in version.changes


def test_seeded_models_keep_todays_parameters(policy, sandbox_state):
    # given the seeded profiles, then they shape nothing
    for profile in ModelProfile.objects.all():
        assert profile.token_limit_param == "max_tokens"
        assert profile.fixed_temperature is None
        assert profile.unsupported_params == []
        assert profile.reasoning_effort == ""


@pytest.mark.django_db
def test_a_batch_item_is_shaped_for_its_strict_model(
    api_client, policy, sandbox_state, django_capture_on_commit_callbacks, settings
):
    # given batches on, and the cheap model strict with its rules
    sandbox_batches.batches.reset()
    settings.BATCH_POLL_INTERVAL_S = 0
    FeatureFlag.objects.filter(name="batch").update(enabled=True)
    sandbox_state.strict_model("gpt-4o-mini")
    _profile_set("gpt-4o-mini", **STRICT_RULES)
    request = {"custom_id": "a", "category": "analytics", "messages": HELLO, "temperature": 0.2}
    # when a job is submitted and collected
    with django_capture_on_commit_callbacks(execute=True):
        body = json.dumps({"requests": [request]})
        response = api_client.post("/api/v1/batches", data=body, content_type="application/json")
    assert response.status_code == 202
    for _ in range(3):
        batch_advance_due()
    # then the item was sent in the form the model takes, and answered
    item = BatchItem.objects.get(custom_id="a")
    assert "max_tokens" not in item.body
    assert (item.body["temperature"], item.body["model"]) == (1.0, "gpt-4o-mini")
    assert "max_completion_tokens" in item.body
    assert UsageRecord.objects.get().status == "ok"
    sandbox_batches.batches.reset()
