"""The provider through the SDK: in-process sandbox, and a real HTTP server on 127.0.0.1."""

import asyncio
import json

import pytest

from routing.policy import ModelSpec, Tier
from routing.providers.chat import (
    ProviderBadResponse,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnreachable,
    achat_complete,
    achat_stream_open,
    clients_close,
    sse_data_payloads,
)
from routing.seed_data import seeded_price_rows


def chat_complete(**kwargs):
    async def call():
        try:
            return await achat_complete(**kwargs)
        finally:
            await clients_close()

    return asyncio.run(call())


MODEL = ModelSpec("gpt-4o-mini", Tier.MINI, seeded_price_rows("gpt-4o-mini"))
MESSAGES = [{"role": "user", "content": "hello there"}]


@pytest.fixture(params=["aiohttp", "httpx"])
def http_client(request, settings):
    """Live mode goes through either of the SDK's transports (aiohttp in production)."""
    settings.UPSTREAM_HTTP_CLIENT = request.param
    return request.param


@pytest.fixture
def http_sandbox(http_upstream, http_client, settings):
    settings.UPSTREAM_TIMEOUT_S = 1.0
    return http_upstream


def test_sandbox_answer_is_deterministic_and_marked():
    first = chat_complete(model=MODEL, messages=MESSAGES, max_tokens=100)
    second = chat_complete(model=MODEL, messages=MESSAGES, max_tokens=100)
    assert first.content == second.content
    assert first.sandbox is True
    assert first.input_tokens > 0 and first.output_tokens > 0


def test_shared_sandbox_server_is_called_over_http_and_still_marked(settings):
    # given the sandbox as one HTTP server that every process calls (`make run`)
    from routing.providers import sandbox, sandbox_chat

    server = sandbox.serve()
    settings.SANDBOX_URL = f"http://127.0.0.1:{server.server_port}/v1"
    calls_before = sandbox_chat.state.calls

    # when the router calls its sandbox, then once that server is gone
    answer = chat_complete(model=MODEL, messages=MESSAGES, max_tokens=50)
    server.shutdown()
    server.server_close()
    with pytest.raises(ProviderUnreachable):
        chat_complete(model=MODEL, messages=MESSAGES, max_tokens=50)

    # then the calls went over HTTP to that server, and its answer is marked sandbox
    assert answer.sandbox is True and answer.content
    assert sandbox_chat.state.calls == calls_before + 1


def test_max_tokens_bounds_the_sandbox_answer():
    result = chat_complete(model=MODEL, messages=MESSAGES, max_tokens=3)
    assert result.output_tokens <= 3


def test_sandbox_reports_a_cached_prefix_for_a_repeated_long_prompt():
    long_prefix = "You are the creator's assistant. Follow the brand guide carefully. " * 150
    messages = [{"role": "system", "content": long_prefix}, *MESSAGES]
    first = chat_complete(model=MODEL, messages=messages, max_tokens=50)
    other = [{"role": "system", "content": long_prefix}, {"role": "user", "content": "bye now"}]
    second = chat_complete(model=MODEL, messages=other, max_tokens=50)
    assert first.cached_tokens == 0
    assert second.cached_tokens >= 1024
    assert second.cached_tokens % 128 == 0
    assert second.cached_tokens <= second.input_tokens


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("429", ProviderRateLimited),
        ("500", ProviderError),
        ("timeout", ProviderTimeout),
        ("malformed", ProviderBadResponse),
    ],
)
def test_injected_faults_raise_typed_errors(sandbox_state, fault, error):
    sandbox_state.inject(fault)
    with pytest.raises(error):
        chat_complete(model=MODEL, messages=MESSAGES, max_tokens=10)


def test_unknown_fault_name_is_refused(sandbox_state):
    with pytest.raises(ValueError):
        sandbox_state.inject("explode")


def test_live_mode_speaks_http_to_the_profile_endpoint(http_sandbox):
    result = chat_complete(model=MODEL, messages=MESSAGES, max_tokens=50)
    assert result.content.startswith("[sandbox gpt-4o-mini]")
    assert result.sandbox is False  # live mode: not marked, whatever answers


def test_live_mode_real_http_errors_and_timeout(http_sandbox, sandbox_state):
    sandbox_state.inject("500", "429", "timeout")
    with pytest.raises(ProviderError) as server_error:
        chat_complete(model=MODEL, messages=MESSAGES, max_tokens=10)
    assert server_error.value.upstream_status == 500
    with pytest.raises(ProviderRateLimited):
        chat_complete(model=MODEL, messages=MESSAGES, max_tokens=10)
    with pytest.raises(ProviderTimeout):
        chat_complete(model=MODEL, messages=MESSAGES, max_tokens=10)


def test_unreachable_endpoint_is_a_typed_error(settings, http_client):
    settings.UPSTREAM_MODE = "live"
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"  # discard port: nothing listens
    settings.UPSTREAM_TIMEOUT_S = 1.0
    with pytest.raises(ProviderUnreachable):
        chat_complete(model=MODEL, messages=MESSAGES, max_tokens=10)


def test_live_stream_passes_the_upstream_events_through(http_sandbox):
    async def stream():
        try:
            upstream = await achat_stream_open(model=MODEL, messages=MESSAGES, max_tokens=20)
            return [chunk async for chunk in upstream.chunks]
        finally:
            await clients_close()

    chunks = asyncio.run(stream())
    text = "".join(
        (c.data["choices"] or [{}])[0].get("delta", {}).get("content") or "" for c in chunks
    )
    assert text.startswith("[sandbox gpt-4o-mini]")
    assert chunks[-1].data["usage"]["completion_tokens"] > 0  # the usage chunk we asked for
    assert all(json.loads(c.raw) == c.data for c in chunks)  # the bytes as the upstream sent


def test_live_stream_broken_midway_is_a_typed_error(http_sandbox, sandbox_state):
    sandbox_state.inject("midstream")

    async def stream():
        try:
            upstream = await achat_stream_open(model=MODEL, messages=MESSAGES, max_tokens=20)
            return [chunk async for chunk in upstream.chunks]
        finally:
            await clients_close()

    with pytest.raises(ProviderError):
        asyncio.run(stream())


def test_the_callers_key_spares_the_sdk_a_uuid_per_call(http_sandbox, sandbox_state, monkeypatch):
    # given an SDK that may not make a key of its own
    import uuid

    def no_uuid():
        raise AssertionError("the SDK made an idempotency key: a getrandom() per call")

    monkeypatch.setattr(uuid, "uuid4", no_uuid)

    async def both():
        try:
            kwargs = {"model": MODEL, "messages": MESSAGES, "max_tokens": 10, "timeout_s": 1.0}
            answer = await achat_complete(**kwargs, idempotency_key="req_1")
            upstream = await achat_stream_open(**kwargs, idempotency_key="req_2")
            await upstream.close()
            return answer
        finally:
            await clients_close()

    # when a call and a stream pass the request id as the key
    answer = asyncio.run(both())
    # then both went out, without the key or the timeout in the body
    assert answer.content
    assert sandbox_state.last_request["stream"] is True
    assert not {"idempotency_key", "timeout", "timeout_s"} & sandbox_state.last_request.keys()


def payloads_of(*reads: bytes) -> list[bytes]:
    async def body():
        for read in reads:
            yield read

    async def collect():
        return [payload async for payload in sse_data_payloads(body())]

    return asyncio.run(collect())


@pytest.mark.parametrize(
    "reads",
    [
        (b'data: {"a":1}\n\ndata: {"b":2}\n\ndata: [DONE]\n\n',),
        (b'data: {"a":1}\r\n\r\ndata:{"b":2}\r\rdata: [DONE]',),  # CRLF, CR, no last end
        (b'data: {"a"', b":1}\r", b'\n\n: a comment\nevent: x\ndata: {"b":2}\n', b"data: [DONE]\n"),
    ],
)
def test_event_payloads_are_read_whatever_the_line_ends_and_reads(reads):
    assert payloads_of(*reads) == [b'{"a":1}', b'{"b":2}', b"[DONE]"]


def test_a_line_separator_inside_a_json_string_does_not_end_the_line():
    # given an event whose text holds U+2028, unescaped (legal in JSON), split across reads
    event = 'data: {"content":"one\u2028two"}\n\n'.encode()
    # then its payload is the whole line, as sent
    assert payloads_of(event[:20], event[20:]) == [event[6:-2]]


def test_stream_events_are_relayed_as_sent_and_bad_utf8_read_as_before(monkeypatch):
    # given an upstream whose events hold U+2028 and, in one, bytes that are not UTF-8
    import httpx2
    import openai

    from routing.providers import chat

    events = [
        'data: {"choices":[{"delta":{"content":"a\u2028b"}}]}\r\n\r\n'.encode(),
        b'data: {"choices":[{"delta":{"content":"c\xffd"}}]}\n\n',
        b"data: [DONE]\n\n",
    ]

    def answer(request):
        return httpx2.Response(
            200, headers={"content-type": "text/event-stream"}, content=b"".join(events)
        )

    def client_for(model):
        http_client = httpx2.AsyncClient(transport=httpx2.MockTransport(answer))
        return openai.AsyncOpenAI(
            api_key="k", base_url="http://up.invalid/v1", http_client=http_client
        ), False

    monkeypatch.setattr(chat, "_async_client_for", client_for)

    async def stream():
        upstream = await achat_stream_open(model=MODEL, messages=MESSAGES, max_tokens=20)
        return [chunk async for chunk in upstream.chunks]

    # when the stream is read
    chunks = asyncio.run(stream())

    # then the first event is passed on byte for byte, and the bad bytes became U+FFFD
    assert chunks[0].raw == events[0][6:-4]
    assert chunks[0].data["choices"][0]["delta"]["content"] == "a\u2028b"
    assert chunks[1].data["choices"][0]["delta"]["content"] == "c\ufffdd"
    assert chunks[1].raw == '{"choices":[{"delta":{"content":"c\ufffdd"}}]}'.encode()
    assert len(chunks) == 2
