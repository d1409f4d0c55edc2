"""The REST API as a client meets it, through Django's full request stack."""

import json
from decimal import Decimal

import pytest

from routing.models import TaskCategory
from tests.waits import after_response_settled
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db

URL = "/api/v1/completions"
HELLO = {"messages": [{"role": "user", "content": "hey babe, how was your day?"}]}


def _post(client, body, url=URL, **extra):
    return client.post(url, data=json.dumps(body), content_type="application/json", **extra)


def test_completion_answers_with_decision_usage_and_cost(api_client, policy):
    # when
    response = _post(api_client, {**HELLO, "category": "chatbot", "user": "fan-42"})
    # then
    assert response.status_code == 200
    body = response.json()
    assert body["content"].startswith("[sandbox gpt-4o-mini]")
    assert body["model"] == "gpt-4o-mini"
    assert body["tier"] == "mini"
    assert body["reason"] == "default:mini"
    assert body["usage"]["input_tokens"] > 0
    assert body["sandbox"] is True
    row = UsageRecord.objects.get(request_id=body["id"])
    assert response["X-Request-Id"] == body["id"]
    assert row.status == "ok"
    assert row.end_user == "fan-42"
    assert row.policy_version_id == policy.pk
    assert row.token_source == "provider"
    assert body["cost_usd"] == format(row.cost_usd, "f")
    assert body["baseline_cost_usd"] == format(row.baseline_cost_usd, "f")
    assert Decimal(body["cost_usd"]) < Decimal(body["baseline_cost_usd"])
    expected = (
        row.input_tokens * Decimal("0.15") + row.output_tokens * Decimal("0.60")
    ) / 1_000_000
    assert row.cost_usd == expected
    assert row.prompt_text == ""  # text is not stored by default


def test_critical_category_goes_full_and_is_billed_at_premium_prices(api_client, policy):
    body = {"messages": [{"role": "user", "content": "Review this NDA clause."}]}
    response = _post(api_client, {**body, "category": "legal"})
    data = response.json()
    assert data["tier"] == "full"
    assert data["model"] == "gpt-4o"
    assert data["reason"] == "critical:category=legal"
    row = UsageRecord.objects.get(request_id=data["id"])
    assert row.cost_usd == row.baseline_cost_usd  # same model, no cache: no saving


def test_complexity_is_always_a_float_even_when_the_estimator_scores_nothing(api_client, settings):
    # given the keyword fallback (no artifact), whose estimator scores a bare greeting 0
    from routing.policy_versions import policy_seed

    settings.ROUTER_ARTIFACT = "router-19990101-gone"
    settings.ROUTER_KEYWORD_FALLBACK = True
    policy_seed()
    # when a greeting and a caller's whole number are routed
    greeting = _post(api_client, {"messages": [{"role": "user", "content": "hi"}]}).json()
    hinted = _post(api_client, {**HELLO, "category": "strategy", "complexity": 8}).json()
    # then both read as JSON floats: 0.0 and 8.0, never 0
    assert greeting["complexity"] == 0 and isinstance(greeting["complexity"], float)
    assert hinted["complexity"] == 8 and isinstance(hinted["complexity"], float)


def test_text_is_stored_truncated_when_enabled(api_client, policy, settings):
    settings.USAGE_STORE_TEXT = True
    settings.USAGE_STORE_TEXT_MAX_CHARS = 10
    data = _post(api_client, HELLO).json()
    row = UsageRecord.objects.get(request_id=data["id"])
    assert row.prompt_text == "hey babe, "
    assert len(row.response_text) == 10


def test_route_preview_returns_decision_without_ledger_row(api_client, policy):
    body = {
        "messages": [{"role": "user", "content": "Plan our growth strategy for Q3."}],
        "category": "strategy",
        "complexity": 8,
    }
    response = _post(api_client, body, url="/api/v1/route")
    assert response.status_code == 200
    data = response.json()
    assert data["tier"] == "full"
    assert data["reason"] == "complexity>=7:category=strategy"
    assert data["policy_version"] == policy.pk
    assert Decimal(data["estimated_cost_usd"]) > 0
    assert UsageRecord.objects.count() == 0


def test_route_preview_infers_category_and_explains_the_decision(api_client, policy):
    text = "Is this message hateful or spam? Should we remove it and ban the user?"
    data = _post(api_client, {"messages": [{"role": "user", "content": text}]}, "/api/v1/route")
    data = data.json()
    assert data["category"] == "moderation"
    assert data["category_source"] in {"safety", "model"}
    assert 0 <= data["category_confidence"] <= 1
    assert data["complexity_source"] == "router"
    assert abs(data["complexity"] - 10 * data["explanation"]["needs_premium"]) <= 0.06
    assert data["router_artifact"] == policy.snapshot["router"]["artifact"]
    assert data["router_artifact"].startswith("router-")
    features = data["explanation"]["features"]
    assert set(features) == {"category", "safety", "needs_premium"}
    assert all({"feature", "weight"} <= set(f) for f in features["category"])
    assert isinstance(data["complexity_signals"], list)


# --- authentication ---------------------------------------------------------------------


def test_missing_key_is_401(client, policy):
    response = _post(client, HELLO)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_api_key"
    assert UsageRecord.objects.count() == 0


def test_wrong_key_is_401(client, policy):
    response = _post(client, HELLO, HTTP_AUTHORIZATION="Bearer hz_not-a-key")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_revoked_key_is_401(api_client, api_key, policy):
    from routing.api_keys import api_key_revoke

    api_key_revoke(api_key=api_key[0])
    assert _post(api_client, HELLO).status_code == 401


def test_key_is_stored_hashed(api_key):
    record, plaintext = api_key
    assert plaintext not in (record.key_hash, record.prefix)
    assert len(record.key_hash) == 64


# --- validation: 400 with a code, nothing written ---------------------------------------


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({}, "missing_field", "messages"),
        ({"messages": []}, "empty_messages", "messages"),
        ({"messages": "hello"}, "invalid_field", "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "invalid_field", "messages[0].role"),
        ({"messages": [{"role": "user"}]}, "missing_field", "messages[0].content"),
        ({**HELLO, "category": "astrology"}, "unknown_category", "category"),
        ({**HELLO, "complexity": 11}, "complexity_out_of_range", "complexity"),
        ({**HELLO, "complexity": -1}, "complexity_out_of_range", "complexity"),
        ({**HELLO, "complexity": "high"}, "invalid_field", "complexity"),
        ({**HELLO, "critical": "maybe"}, "invalid_field", "critical"),
        ({**HELLO, "max_tokens": 0}, "invalid_field", "max_tokens"),
        ({**HELLO, "metadata": {"a": {"nested": 1}}}, "invalid_field", "metadata.a"),
    ],
)
def test_bad_input_is_a_400_with_a_code_and_no_ledger_row(api_client, policy, body, code, field):
    response = _post(api_client, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == code
    assert error["field"] == field
    assert error["message"]
    assert UsageRecord.objects.count() == 0


@pytest.mark.parametrize("bad", ["\udfff", "\x00"], ids=["surrogate", "nul"])
@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"user": "fan-<bad>"}, "user"),
        ({"messages": [{"role": "user", "content": "hi <bad>"}]}, "messages[0].content"),
        ({"metadata": {"topic": "<bad>"}}, "metadata.topic"),
        ({"metadata": {"to<bad>pic": "x"}}, "metadata"),
        ({"category": "chatbot<bad>"}, "category"),
    ],
)
@pytest.mark.parametrize("url", [URL, "/api/v1/route"])
def test_text_that_cannot_be_stored_or_sent_is_a_400_before_any_call(
    api_client, policy, sandbox_state, url, fields, field, bad
):
    # given a body whose field holds a lone surrogate or a NUL (json.dumps escapes both)
    body = json.loads(json.dumps({**HELLO, **fields}).replace("<bad>", json.dumps(bad)[1:-1]))
    # when
    response = _post(api_client, body, url=url)
    # then
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_text", field)
    assert sandbox_state.calls == 0
    assert UsageRecord.objects.count() == 0


@pytest.mark.parametrize("url", [URL, "/api/v1/route"])
def test_deeply_nested_json_is_a_400_invalid_json(api_client, policy, url):
    nested = "[" * 100_000 + "]" * 100_000
    response = api_client.post(url, data=nested, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


@pytest.mark.parametrize("url", [URL, "/api/v1/route"])
def test_a_request_without_a_user_message_is_a_400(api_client, policy, sandbox_state, url):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "assistant", "content": "Ok"}]
    body = {"messages": messages}
    response = _post(api_client, body, url=url)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("missing_user_message", "messages")
    assert sandbox_state.calls == 0
    assert UsageRecord.objects.count() == 0


@pytest.mark.parametrize(
    ("content_type", "data"),
    [("text/plain", json.dumps(HELLO)), ("application/x-www-form-urlencoded", "messages=hi")],
)
@pytest.mark.parametrize("url", [URL, "/api/v1/route"])
def test_a_body_that_is_not_json_is_a_415(api_client, policy, url, content_type, data):
    response = api_client.post(url, data=data, content_type=content_type)
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"
    assert UsageRecord.objects.count() == 0


def test_get_on_completions_is_a_json_405_with_allow(api_client, policy):
    response = api_client.get(URL)
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_disabled_category_is_a_400(api_client, policy):
    from routing.policy_versions import policy_version_create

    TaskCategory.objects.filter(slug="code").update(enabled=False)
    policy_version_create(actor="test")
    response = _post(api_client, {**HELLO, "category": "code"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "category_disabled"


def test_malformed_json_is_a_400(api_client, policy):
    response = api_client.post(URL, data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


def test_body_over_the_limit_is_a_413(api_client, policy, settings):
    settings.API_MAX_BODY_BYTES = 1000
    body = {"messages": [{"role": "user", "content": "x" * 2000}]}
    response = _post(api_client, body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert UsageRecord.objects.count() == 0


# --- upstream failures: recorded, then 502/504 -------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ("429", 502, "upstream_rate_limited"),
        ("500", 502, "upstream_error"),
        ("timeout", 504, "upstream_timeout"),
        ("malformed", 502, "upstream_bad_response"),
    ],
)
def test_upstream_failure_is_recorded_then_answered(
    api_client, policy, sandbox_state, fault, status, code
):
    # given the chosen model and its fallback both fail
    sandbox_state.inject(fault, fault)
    # when
    response = _post(api_client, {**HELLO, "category": "chatbot"})
    # then
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code
    row = UsageRecord.objects.get(request_id=error["request_id"])
    assert row.status == code
    assert row.error_code == code
    assert row.cost_usd == 0
    assert row.output_tokens == 0
    assert row.input_tokens > 0
    assert row.token_source == "tiktoken"
    assert row.attempts == 2
    assert (row.model, row.fallback_from) == ("gpt-4o", "gpt-4o-mini")


def test_stream_true_relays_openai_chunks_and_records_the_row(
    asgi_server, policy, api_key, transactional_db
):
    import httpx2

    body = {**HELLO, "stream": True, "stream_options": {"include_usage": True}}
    headers = {"Authorization": f"Bearer {api_key[1]}"}
    with httpx2.Client(timeout=10) as http:
        response = http.post(f"{asgi_server}{URL}", json=body, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text.startswith("[sandbox gpt-4o-mini]")
    after_response_settled()
    row = UsageRecord.objects.get(request_id=response.headers["X-Request-Id"])
    assert row.streamed and row.status == "ok"
    assert row.output_tokens == chunks[-1]["usage"]["completion_tokens"]


def test_openapi_schema_and_docs_are_served_locally(client, db):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    assert {"/api/v1/completions", "/api/v1/route"} <= set(schema["paths"])
    assert schema["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    docs = client.get("/api/docs/").content.decode()
    assert "swagger-ui" in docs
    assert "cdn" not in docs.lower()


def test_the_schema_requires_at_least_one_message_and_one_batch_request(client, db):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()

    def request_schema(path: str) -> dict:
        body = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        return resolve(body["schema"])

    def resolve(node: dict) -> dict:
        name = node.get("$ref", "").rpartition("/")[2]
        return schema["components"]["schemas"][name] if name else node

    for path in ("/api/v1/completions", "/api/v1/route"):
        assert request_schema(path)["properties"]["messages"]["minItems"] == 1
    requests = request_schema("/api/v1/batches")["properties"]["requests"]
    assert requests["minItems"] == 1
    assert resolve(requests["items"])["properties"]["messages"]["minItems"] == 1


def test_unknown_api_paths_answer_json_404(client, db):
    response = client.get("/api/v1/reports/monthly/2026-11.pdf")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert "text/html" in client.get("/no-such-page/")["Content-Type"]


def test_a_routed_call_costs_three_statements_once_the_key_is_known(api_client, policy):
    """One with Redis: the in-flight record goes there for a key without a budget."""
    from django.conf import settings
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    # given the key already looked up once (workers remember it for API_KEY_CACHE_S)
    _post(api_client, HELLO)
    # when
    with CaptureQueriesContext(connection) as captured:
        assert _post(api_client, HELLO).status_code == 200
    # then: the in-flight INSERT, the ledger INSERT and the in-flight DELETE; no read
    verbs = [q["sql"].split()[0].upper() for q in captured.captured_queries]
    assert verbs.count("SELECT") == 0, captured.captured_queries
    expected = (1, 0) if settings.REDIS_URL else (2, 1)
    assert (verbs.count("INSERT"), verbs.count("DELETE")) == expected
