"""The provider through the SDK: in-process sandbox, and a real HTTP server on 127.0.0.1."""

import asyncio
import json
from unittest import mock

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
    sse_data_batches,
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
            return [chunk async for batch in upstream.batches for chunk in batch.chunks]
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
            return [chunk async for batch in upstream.batches for chunk in batch.chunks]
        finally:
            await clients_close()

    with pytest.raises(ProviderError):
        asyncio.run(stream())


def test_a_call_makes_no_uuid(http_sandbox, sandbox_state, monkeypatch):
    # given no uuid4 to be had (the SDK made one per call: a getrandom() that handed the
    # event loop's GIL to a database thread now and then)
    import uuid

    def no_uuid():
        raise AssertionError("a uuid per call")

    monkeypatch.setattr(uuid, "uuid4", no_uuid)

    async def both():
        try:
            kwargs = {"model": MODEL, "messages": MESSAGES, "max_tokens": 10, "timeout_s": 1.0}
            answer = await achat_complete(**kwargs)
            upstream = await achat_stream_open(**kwargs)
            await upstream.close()
            return answer
        finally:
            await clients_close()

    # when a call and a stream go out
    answer = asyncio.run(both())
    # then both were answered, without the timeout in the body
    assert answer.content
    assert sandbox_state.last_request["stream"] is True
    assert not {"timeout", "timeout_s"} & sandbox_state.last_request.keys()


async def recording_endpoint(answer):
    """An endpoint whose HTTP client records its requests and answers them with `answer`
    (made on the event loop, as the provider makes its endpoints: a header names the loop)."""
    import httpx2
    import openai

    from routing.providers import chat

    sent = []

    def record(request):
        sent.append(request)
        return answer(request)

    http_client = httpx2.AsyncClient(transport=httpx2.MockTransport(record))
    client = openai.AsyncOpenAI(
        api_key="sk-k",
        base_url="http://up.invalid/v1",
        http_client=http_client,
        timeout=30.0,
        max_retries=0,
    )
    return chat._endpoint_build(client, http_client, sandbox=False), sent


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("timeout_s", [None, 12.25])
def test_a_call_sends_what_the_sdks_post_sends(stream, timeout_s):
    # given a body with text beyond ASCII, and an upstream that sets a cookie on the 2nd call
    import httpx2

    from routing.providers import chat

    calls = []

    def answer(request):
        calls.append(request)
        cookie = {"set-cookie": "cf=1; Path=/"} if len(calls) == 2 else {}
        return httpx2.Response(200, json={"ok": True}, headers=cookie)

    body = {"model": "m", "messages": [{"role": "user", "content": "héllo \u2028 ✓"}], "n": 1.5}
    options = {} if timeout_s is None else {"timeout": timeout_s}

    async def sdk_then_ours_twice():
        endpoint, sent = await recording_endpoint(answer)
        for _ in range(2):
            await endpoint.client.post(
                "/chat/completions",
                body=body,
                cast_to=httpx2.Response,
                stream=stream,
                options={**options, "idempotency_key": "k"},
            )
            await chat._post(endpoint, body, timeout_s=timeout_s, stream=stream)
        return sent

    # when the SDK's post and ours each send it, before and after the cookie was set
    sent = asyncio.run(sdk_then_ours_twice())

    # then the requests are the same, byte for byte, and carry the cookie once it was set
    for by_sdk, by_us in (sent[0:2], sent[2:4]):
        assert by_us.method == by_sdk.method
        assert by_us.url == by_sdk.url
        assert by_us.headers.raw == by_sdk.headers.raw
        assert by_us.content == by_sdk.content
        assert by_us.extensions == by_sdk.extensions
    assert "cookie" in sent[3].headers and "cookie" not in sent[1].headers


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, {"error": {"message": "bad temperature", "param": "temperature"}}),
        (413, b"too large"),
        (401, {"error": {"message": "bad key"}}),
        (429, {"error": {"message": "slow down"}}),
        (503, b"<html>down</html>"),
        (302, b""),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_upstream_errors_are_the_sdks_errors(status, body, stream):
    # given an upstream that answers with an error status
    import httpx2
    import openai

    from routing.providers import chat

    def answer(request):
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx2.Response(status, content=content, headers={"retry-after": "2"})

    async def sdk_then_ours():
        endpoint, _ = await recording_endpoint(answer)
        errors = []
        for post in (
            endpoint.client.post(
                "/chat/completions", body={}, cast_to=httpx2.Response, stream=stream
            ),
            chat._post(endpoint, {}, timeout_s=None, stream=stream),
        ):
            with pytest.raises(openai.APIStatusError) as raised:
                await post
            errors.append(raised.value)
        return errors

    # when the SDK's post and ours each send a request
    by_sdk, by_us = asyncio.run(sdk_then_ours())

    # then both raise the same error, and it becomes the same ProviderError
    assert type(by_us) is type(by_sdk)
    assert (by_us.status_code, by_us.message, by_us.body, by_us.param) == (
        by_sdk.status_code,
        by_sdk.message,
        by_sdk.body,
        by_sdk.param,
    )
    ours, theirs = chat._provider_error(by_us, MODEL), chat._provider_error(by_sdk, MODEL)
    assert type(ours) is type(theirs)
    assert vars(ours) == vars(theirs)


def test_transport_failures_are_the_sdks_errors():
    # given an upstream that times out twice, then resets the connection twice
    import httpx2
    import openai

    from routing.providers import chat

    failures = iter([httpx2.ReadTimeout("slow")] * 2 + [httpx2.ReadError("reset")] * 2)

    def answer(request):
        raise next(failures)

    async def sdk_then_ours_twice():
        endpoint, _ = await recording_endpoint(answer)
        raised = []
        for _ in range(2):
            for post in (
                endpoint.client.post("/chat/completions", body={}, cast_to=bytes),
                chat._post(endpoint, {}, timeout_s=None),
            ):
                with pytest.raises(openai.APIConnectionError) as error:
                    await post
                raised.append(error.value)
        return raised

    # when the SDK's post and ours each send a request
    sdk_timeout, our_timeout, sdk_reset, our_reset = asyncio.run(sdk_then_ours_twice())

    # then the errors are the SDK's, of the same kinds, and become the same ProviderErrors
    assert type(our_timeout) is type(sdk_timeout) is openai.APITimeoutError
    assert type(our_reset) is type(sdk_reset) is openai.APIConnectionError
    assert isinstance(chat._provider_error(our_timeout, MODEL), ProviderTimeout)
    assert isinstance(chat._provider_error(our_reset, MODEL), ProviderUnreachable)


def test_an_error_whose_body_breaks_is_a_connection_error():
    # given an upstream that answers 500, then resets the connection in its body
    import httpx2
    import openai

    from routing.providers import chat

    class BrokenBody(httpx2.AsyncByteStream):
        async def __aiter__(self):
            yield b'{"error": '
            raise httpx2.ReadError("reset")

    async def post():
        endpoint, _ = await recording_endpoint(
            lambda request: httpx2.Response(500, stream=BrokenBody())
        )
        await chat._post(endpoint, {}, timeout_s=None, stream=True)

    # when a stream is opened, then it fails as the connection, not as a stray httpx error
    with pytest.raises(openai.APIConnectionError) as raised:
        asyncio.run(post())
    assert isinstance(chat._provider_error(raised.value, MODEL), ProviderUnreachable)


def test_a_lone_surrogate_is_refused_before_anything_is_sent():
    import httpx2

    from routing.providers import chat

    async def post():
        endpoint, sent = await recording_endpoint(lambda request: httpx2.Response(200, json={}))
        try:
            await chat._post(endpoint, {"messages": [{"content": "a\ud800b"}]}, timeout_s=None)
        finally:
            assert sent == []

    with pytest.raises(UnicodeError) as raised:
        asyncio.run(post())
    assert isinstance(chat._provider_error(raised.value, MODEL), chat.ProviderRequestRefused)


def batches_of(*reads: bytes) -> list[list[bytes]]:
    async def body():
        for read in reads:
            yield read

    async def collect():
        return [payloads async for payloads in sse_data_batches(body())]

    return asyncio.run(collect())


def payloads_of(*reads: bytes) -> list[bytes]:
    return [payload for payloads in batches_of(*reads) for payload in payloads]


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


def test_stream_events_are_relayed_as_sent_and_bad_utf8_read_as_before():
    # given an upstream whose events hold U+2028 and, in one, bytes that are not UTF-8
    events = [
        'data: {"choices":[{"delta":{"content":"a\u2028b"}}]}\r\n\r\n'.encode(),
        b'data: {"choices":[{"delta":{"content":"c\xffd"}}]}\n\n',
        b"data: [DONE]\n\n",
    ]

    # when the stream is read
    chunks = [chunk for batch in stream_batches(b"".join(events)) for chunk in batch.chunks]

    # then the first event is passed on byte for byte, and the bad bytes became U+FFFD
    assert chunks[0].raw == events[0][6:-4]
    assert chunks[0].data["choices"][0]["delta"]["content"] == "a\u2028b"
    assert chunks[1].data["choices"][0]["delta"]["content"] == "c\ufffdd"
    assert chunks[1].raw == '{"choices":[{"delta":{"content":"c\ufffdd"}}]}'.encode()
    assert len(chunks) == 2


def test_the_events_of_one_read_are_one_batch_and_done_ends_the_stream():
    # given an upstream whose events come two reads at a time, [DONE] inside the last one
    reads = (
        b'data: {"a":1}\n\ndata: {"b":2}\n\n',
        b'data: {"c":3}\n\ndata: [DONE]\n\ndata: {"d":4}\n\n',
    )
    # then each read's payloads come together, as they were read
    assert batches_of(*reads) == [[b'{"a":1}', b'{"b":2}'], [b'{"c":3}', b"[DONE]", b'{"d":4}']]
    # and the stream's batches stop at [DONE], which the last one says
    batches = stream_batches(*reads)
    assert [[c.data for c in batch.chunks] for batch in batches] == [
        [{"a": 1}, {"b": 2}],
        [{"c": 3}],
    ]
    assert [batch.done for batch in batches] == [False, True]


def test_an_error_event_comes_after_the_events_read_before_it():
    # given a read whose second event is an error event
    reads = (b'data: {"a":1}\n\ndata: {"error":{"message":"overloaded"}}\n\ndata: {"b":2}\n\n',)
    # then the event before it is passed on, then the stream fails
    seen = []
    with pytest.raises(ProviderError, match="overloaded"):
        stream_batches(*reads, into=seen)
    assert [[c.data for c in batch.chunks] for batch in seen] == [[{"a": 1}]]


def stream_batches(*reads: bytes, into: list | None = None) -> list:
    """The batches of a stream whose upstream sends its body in these reads."""
    import httpx2
    import openai

    from routing.providers import chat

    async def body():
        for read in reads:
            yield read

    def answer(request):
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body())

    async def stream():
        http_client = httpx2.AsyncClient(transport=httpx2.MockTransport(answer))
        client = openai.AsyncOpenAI(
            api_key="k", base_url="http://up.invalid/v1", http_client=http_client
        )
        endpoint = chat._endpoint_build(client, http_client, sandbox=False)
        with mock.patch.object(chat, "_endpoint_for", lambda model: endpoint):
            upstream = await achat_stream_open(model=MODEL, messages=MESSAGES, max_tokens=20)
        batches = [] if into is None else into
        async for batch in upstream.batches:
            batches.append(batch)
        return batches

    return asyncio.run(stream())
