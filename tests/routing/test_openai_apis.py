"""The OpenAI-compatible endpoint with the official openai client, sync and async, against a
live uvicorn server of ours."""

import asyncio
import json
import time
from decimal import Decimal

import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletion

from routing.models import TaskCategory
from routing.policy_versions import policy_version_create
from tests.waits import after_response_settled
from usage.models import UsageRecord

HELLO = [{"role": "user", "content": "hey, loved the stream today!"}]


@pytest.fixture
def base_url(asgi_server, policy):
    return f"{asgi_server}/v1"


@pytest.fixture
def client(base_url, api_key):
    return openai.OpenAI(api_key=api_key[1], base_url=base_url, max_retries=0, timeout=10)


@pytest.fixture
def async_client(base_url, api_key):
    return openai.AsyncOpenAI(api_key=api_key[1], base_url=base_url, max_retries=0, timeout=10)


def _rows():
    after_response_settled()  # the server writes a row just after its answer
    return list(UsageRecord.objects.order_by("created_at"))


def test_sync_client_gets_an_openai_shaped_routed_answer(client):
    # when
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=HELLO, user="fan-7", metadata={"category": "chatbot"}
    )
    completion = raw.parse()
    # then
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-mini"
    assert completion.choices[0].message.content.startswith("[sandbox gpt-4o-mini]")
    assert completion.usage.prompt_tokens_details.cached_tokens == 0
    assert raw.headers["X-Huntaze-Tier"] == "mini"
    assert raw.headers["X-Huntaze-Reason"] == "default:mini"
    (row,) = _rows()
    assert raw.headers["X-Huntaze-Cost-Usd"] == format(row.cost_usd, "f")
    assert row.end_user == "fan-7"
    assert row.input_tokens == completion.usage.prompt_tokens
    assert row.streamed is False


def test_an_inferred_decision_is_explained_in_its_ledger_row(client, policy):
    client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "why does my python loop never end?"}]
    )
    (row,) = _rows()
    assert row.category_source in {"model", "safety", "uncertain"}
    assert row.complexity_source == "router"
    assert row.router_artifact == policy.snapshot["router"]["artifact"]
    assert set(row.explanation["features"]) == {"category", "safety", "needs_premium"}
    assert abs(row.complexity - 10 * row.explanation["needs_premium"]) <= 0.06


def test_category_in_model_name_and_hints_in_headers(client):
    raw = client.chat.completions.with_raw_response.create(
        model="auto:strategy",
        messages=[{"role": "user", "content": "Plan next quarter."}],
        extra_headers={"X-Huntaze-Complexity": "8"},
    )
    assert raw.headers["X-Huntaze-Tier"] == "full"
    assert raw.headers["X-Huntaze-Reason"] == "complexity>=7:category=strategy"
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=HELLO, extra_headers={"X-Huntaze-Critical": "true"}
    )
    assert raw.headers["X-Huntaze-Reason"] == "critical:caller"


def test_concrete_model_is_not_routed_but_recorded(client):
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=HELLO)
    assert raw.parse().model == "gpt-4o"
    assert raw.headers["X-Huntaze-Reason"] == "pinned:model=gpt-4o"
    assert _rows()[0].reason_code == "pinned:model=gpt-4o"


def test_models_lists_routable_names(client):
    names = {m.id for m in client.models.list()}
    assert {"auto", "auto:chatbot", "auto:legal", "gpt-4o-mini", "gpt-4o"} <= names
    assert "gpt-5.4-nano" not in names  # inactive profile


def test_models_retrieve_answers_each_listed_id_openai_shaped(client):
    # given every id the list shows
    names = [m.id for m in client.models.list()]
    # when the SDK retrieves each, then each comes back as a model object
    for name in names:
        model = client.models.retrieve(name)
        assert (model.id, model.object, model.owned_by) == (name, "model", "huntaze")
    # and an id the list does not show is the SDK's NotFoundError, OpenAI-shaped
    with pytest.raises(openai.NotFoundError) as error:
        client.models.retrieve("gpt-5.4-nano")
    assert (error.value.code, error.value.param) == ("model_not_found", "model")


def test_prompt_cache_key_is_sent_per_category(client, sandbox_state):
    client.chat.completions.create(model="auto:marketing", messages=HELLO)
    assert sandbox_state.last_request["prompt_cache_key"] == "huntaze:marketing"
    assert sandbox_state.last_request["messages"][0]["role"] == "system"  # stable prefix first


# --- errors: the SDK raises its usual exceptions -----------------------------------------


def test_bad_key_raises_authentication_error(base_url):
    bad = openai.OpenAI(api_key="hz_wrong", base_url=base_url, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="auto", messages=HELLO)


def test_a_key_over_its_requests_per_minute_raises_rate_limit_error(client, api_key, minute_start):
    # given a key allowed two requests a minute
    key = api_key[0]
    key.rate_limit_per_minute = 2
    key.save()
    for _ in range(2):
        client.chat.completions.create(model="auto", messages=HELLO)
    # when it asks a third time
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="auto", messages=HELLO)
    # then a 429 with when to retry, and nothing written for it
    assert raised.value.code == "rate_limited"
    assert 1 <= int(raised.value.response.headers["Retry-After"]) <= 60
    assert len(_rows()) == 2


def test_unknown_model_raises_not_found(client):
    with pytest.raises(openai.NotFoundError) as error:
        client.chat.completions.create(model="gpt-9-ultra", messages=HELLO)
    assert error.value.code == "model_not_found"


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"model": "auto", "messages": []}, "messages"),
        ({"model": "auto:astrology", "messages": HELLO}, "category"),
        ({"model": "auto", "messages": HELLO, "temperature": 3}, "temperature"),
        ({"model": "auto", "messages": HELLO, "n": 2}, "n"),
        (
            {"model": "auto", "messages": HELLO, "extra_headers": {"X-Huntaze-Complexity": "12"}},
            "complexity",
        ),
    ],
)
def test_bad_requests_raise_bad_request_error(client, kwargs, param):
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(**kwargs)
    assert error.value.param == param
    after_response_settled()
    assert UsageRecord.objects.count() == 0


@pytest.mark.parametrize(("fault", "status"), [("500", 502), ("429", 502), ("timeout", 504)])
def test_upstream_failure_raises_server_error_after_recording(client, sandbox_state, fault, status):
    sandbox_state.inject(fault, fault)  # the chosen model and its fallback
    with pytest.raises(openai.InternalServerError) as error:
        client.chat.completions.create(model="auto", messages=HELLO)
    assert error.value.status_code == status
    (row,) = _rows()
    assert row.status != "ok"
    assert error.value.response.headers["X-Request-Id"] == row.request_id


# --- input refused at the door: a 400 (415, 405) before any call, nothing written ----------

PLACEHOLDER = "<bad>"
ESCAPES = {"surrogate": "\\udfff", "nul": "\\u0000"}  # as sent on the wire: JSON escapes


def _raw_body(fields: dict, escape: str) -> bytes:
    """The request as JSON text with `escape` where the placeholder was: the SDK's own encoder
    cannot write a lone surrogate, so the body goes through its raw `post` as bytes."""
    body = {"model": "auto", "messages": HELLO, **fields}
    return json.dumps(body).replace(PLACEHOLDER, escape).encode()


@pytest.mark.parametrize("escape", ESCAPES.values(), ids=ESCAPES.keys())
@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"user": "fan-<bad>"}, "user"),
        ({"messages": [{"role": "user", "content": "hi <bad>"}]}, "messages[0].content"),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "<bad>"}]}]},
            "messages[0].content[0].text",
        ),
        ({"metadata": {"topic": "<bad>"}}, "metadata.topic"),
        ({"metadata": {"category": "chatbot<bad>"}}, "metadata.category"),
        ({"metadata": {"to<bad>pic": "x"}}, "metadata"),
        ({"model": "auto:chatbot<bad>"}, "model"),
    ],
)
def test_text_that_cannot_be_stored_or_sent_is_a_400_before_any_call(
    client, sandbox_state, fields, param, escape
):
    with pytest.raises(openai.BadRequestError) as error:
        client.post("/chat/completions", cast_to=ChatCompletion, content=_raw_body(fields, escape))
    assert error.value.code == "invalid_text"
    assert error.value.param == param
    assert sandbox_state.calls == 0
    assert _rows() == []


def test_a_routing_hint_header_with_a_nul_is_a_400(client, api_key, sandbox_state):
    """Servers refuse a NUL in a header themselves; the view does not rely on it."""
    from django.test import Client

    response = Client().post(
        "/v1/chat/completions",
        data={"model": "auto", "messages": HELLO},
        content_type="application/json",
        headers={"Authorization": f"Bearer {api_key[1]}", "X-Huntaze-Category": "chat\x00bot"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_text"
    assert response.json()["error"]["param"] == "X-Huntaze-Category"
    assert sandbox_state.calls == 0


def test_deeply_nested_json_is_a_400_invalid_json(client):
    nested = b"[" * 100_000 + b"]" * 100_000
    body = b'{"model": "auto", "messages": ' + nested + b"}"
    with pytest.raises(openai.BadRequestError) as error:
        client.post("/chat/completions", cast_to=ChatCompletion, content=body)
    assert error.value.code == "invalid_json"
    assert _rows() == []


@pytest.mark.parametrize("number", ["NaN", "Infinity", "1e999"])
def test_a_number_the_upstream_call_could_not_encode_is_a_400(client, sandbox_state, number):
    body = _raw_body({"temperature": PLACEHOLDER}, "").replace(b'""', number.encode())
    with pytest.raises(openai.BadRequestError) as error:
        client.post("/chat/completions", cast_to=ChatCompletion, content=body)
    assert error.value.code == "invalid_json"
    assert sandbox_state.calls == 0
    assert _rows() == []


def test_a_request_without_a_user_message_is_a_400(client, sandbox_state):
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(
            model="auto", messages=[{"role": "system", "content": "You are terse."}]
        )
    assert error.value.code == "missing_user_message"
    assert error.value.param == "messages"
    assert sandbox_state.calls == 0
    assert _rows() == []


@pytest.mark.parametrize(
    ("content_type", "content"),
    [
        ("text/plain", b'{"model": "auto", "messages": [{"role": "user", "content": "hi"}]}'),
        ("application/x-www-form-urlencoded", b"model=auto&messages=hi"),
    ],
)
def test_a_body_that_is_not_json_is_a_415(client, content_type, content):
    with pytest.raises(openai.APIStatusError) as error:
        client.post(
            "/chat/completions",
            cast_to=ChatCompletion,
            content=content,
            options={"headers": {"Content-Type": content_type}},
        )
    assert error.value.status_code == 415
    assert error.value.code == "unsupported_media_type"
    assert _rows() == []


def test_a_body_without_a_content_type_is_read_as_json(base_url, api_key):
    body = json.dumps({"model": "auto", "messages": HELLO}).encode()
    headers = {"Authorization": f"Bearer {api_key[1]}"}
    response = httpx2.post(f"{base_url}/chat/completions", content=body, headers=headers)
    assert response.status_code == 200


def test_get_on_chat_completions_is_an_openai_shaped_405_with_allow(base_url, api_key):
    headers = {"Authorization": f"Bearer {api_key[1]}"}
    response = httpx2.get(f"{base_url}/chat/completions", headers=headers)
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert response.json()["error"]["type"] == "invalid_request_error"


# --- streaming ---------------------------------------------------------------------------


def test_stream_relays_chunks_and_records_usage_from_the_final_chunk(client):
    plain = client.chat.completions.create(model="auto:chatbot", messages=HELLO)
    stream = client.chat.completions.create(
        model="auto:chatbot", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    after_response_settled()
    streamed = UsageRecord.objects.get(streamed=True)
    assert streamed.status == "ok"
    assert streamed.token_source == "provider"
    assert streamed.output_tokens == plain.usage.completion_tokens
    assert streamed.cost_usd > 0


def test_stream_without_include_usage_has_no_usage_chunk(client):
    chunks = list(client.chat.completions.create(model="auto", messages=HELLO, stream=True))
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)
    after_response_settled()
    assert UsageRecord.objects.get().token_source == "provider"  # we asked upstream anyway


def test_async_client_plain_and_streamed(async_client):
    async def run():
        plain = await async_client.chat.completions.create(model="auto", messages=HELLO)
        stream = await async_client.chat.completions.create(
            model="auto", messages=HELLO, stream=True
        )
        parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        await async_client.close()
        return plain, "".join(parts)

    plain, streamed = asyncio.run(run())
    assert streamed == plain.choices[0].message.content
    after_response_settled()
    assert UsageRecord.objects.count() == 2


def test_upstream_error_before_first_byte_is_a_plain_error_response(client, sandbox_state):
    sandbox_state.inject("500", "500")
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="auto", messages=HELLO, stream=True)
    assert _rows()[0].status == "upstream_error"


def test_upstream_break_mid_stream_sends_an_error_event_and_records_estimates(
    client, sandbox_state
):
    # given the upstream cuts the connection after two content chunks
    sandbox_state.inject("midstream")
    received = []
    # when
    with pytest.raises(openai.APIError) as error:
        for chunk in client.chat.completions.create(model="auto", messages=HELLO, stream=True):
            received.append(chunk)
    # then
    assert received  # the first chunks were relayed before the break
    assert "upstream_unreachable" in str(error.value.body) or error.value.code
    (row,) = _rows()
    assert row.status == "upstream_error"
    assert row.error_code == "upstream_stream_broken"
    assert row.token_source == "estimate"
    assert row.output_tokens > 0


def test_client_disconnect_mid_stream_still_writes_the_row(
    asgi_server, policy, api_key, sandbox_state
):
    # given a slow upstream stream (50 ms between chunks)
    sandbox_state.chunk_delay_ms = 50
    body = {"model": "auto", "messages": HELLO, "stream": True}
    headers = {"Authorization": f"Bearer {api_key[1]}"}
    # when the client reads the first chunk and hangs up
    with httpx2.Client(timeout=10) as http:
        with http.stream(
            "POST", f"{asgi_server}/v1/chat/completions", json=body, headers=headers
        ) as r:
            assert r.status_code == 200
            first = next(r.iter_raw())
            assert first.startswith(b"data: ")
    # then the row is written, as client_cancelled with estimated tokens
    deadline = time.monotonic() + 5
    while not UsageRecord.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    row = UsageRecord.objects.get()
    assert row.status == "client_cancelled"
    assert row.token_source == "estimate"
    assert row.streamed


# --- caches ------------------------------------------------------------------------------


def test_response_cache_hit_costs_nothing_and_records_what_it_avoided(client, api_key):
    ask = [{"role": "user", "content": "Is this spam? 'FREE followers click here'"}]
    first = client.chat.completions.with_raw_response.create(model="auto:moderation", messages=ask)
    second = client.chat.completions.with_raw_response.create(model="auto:moderation", messages=ask)
    assert first.headers["X-Huntaze-Cache"] == "miss"
    assert second.headers["X-Huntaze-Cache"] == "hit"
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
    miss, hit = _rows()
    assert hit.cache_hit and not miss.cache_hit
    assert hit.cost_usd == 0
    assert hit.avoided_cost_usd == miss.cost_usd
    assert hit.baseline_cost_usd == miss.baseline_cost_usd


def test_response_cache_is_not_shared_across_keys_and_off_for_chatbot(client, base_url):
    from routing.api_keys import api_key_create

    ask = [{"role": "user", "content": "Moderate: 'great stream today'"}]
    client.chat.completions.create(model="auto:moderation", messages=ask)
    other = openai.OpenAI(api_key=api_key_create(name="other")[1], base_url=base_url)
    raw = other.chat.completions.with_raw_response.create(model="auto:moderation", messages=ask)
    assert raw.headers["X-Huntaze-Cache"] == "miss"
    client.chat.completions.create(model="auto:chatbot", messages=HELLO)
    raw = client.chat.completions.with_raw_response.create(model="auto:chatbot", messages=HELLO)
    assert raw.headers["X-Huntaze-Cache"] == "miss"


def test_streamed_request_can_be_served_from_the_response_cache(client):
    ask = [{"role": "user", "content": "Summarise: 12,400 views, 830 new subscribers."}]
    plain = client.chat.completions.create(model="auto:analytics", messages=ask)
    chunks = list(
        client.chat.completions.create(
            model="auto:analytics",
            messages=ask,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    assert _rows()[1].cache_hit


def test_provider_cached_tokens_are_billed_at_the_cached_price(client):
    shared = "Brand guide: warm, playful, never explicit, always thank the fan. " * 120
    for question in ("first question?", "second question?"):
        client.chat.completions.create(
            model="auto:chatbot",
            messages=[{"role": "system", "content": shared}, {"role": "user", "content": question}],
        )
    first, second = _rows()
    assert first.cached_tokens == 0
    assert second.cached_tokens >= 1024
    expected = (
        (second.input_tokens - second.cached_tokens) * Decimal("0.15")
        + second.cached_tokens * Decimal("0.075")
        + second.output_tokens * Decimal("0.60")
    ) / 1_000_000
    assert second.cost_usd == expected
    assert second.cost_usd < second.uncached_cost_usd


def test_prefix_fingerprint_changes_when_the_category_prompt_changes(client):
    client.chat.completions.create(model="auto:marketing", messages=HELLO)
    TaskCategory.objects.filter(slug="marketing").update(system_prompt="A new brand voice.")
    policy_version_create(actor="test")
    client.chat.completions.create(model="auto:marketing", messages=HELLO)
    before, after = _rows()
    assert before.prefix_fingerprint and after.prefix_fingerprint
    assert before.prefix_fingerprint != after.prefix_fingerprint
