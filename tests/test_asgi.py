"""The ASGI layer: the hot-path handler leaves nothing for the garbage collector, and the API
paths hold their body limit however a body is sent."""

import contextlib
import gc
import json
import socket

import httpx2
import pytest
from django.http import HttpRequest, HttpResponseBase

from routing.models import FeatureFlag
from routing.policy_versions import policy_version_create
from tests.waits import after_response_settled
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = {"model": "auto", "messages": [{"role": "user", "content": "hello there"}]}


@pytest.fixture
def saved_garbage():
    """Collection off while the test runs; then every unreachable cycle is kept in gc.garbage
    for the test to read, instead of freed."""
    gc.collect()
    gc.disable()
    try:
        yield _collect_saving_all
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def _collect_saving_all() -> list:
    gc.set_debug(gc.DEBUG_SAVEALL)
    gc.collect()
    return list(gc.garbage)


def test_served_requests_are_freed_without_the_collector(
    asgi_server, policy, api_key, saved_garbage
):
    # given requests served to the end, answered and streamed
    headers = {"Authorization": f"Bearer {api_key[1]}"}
    with httpx2.Client(timeout=10) as http:
        for body in (HELLO, {**HELLO, "stream": True}, HELLO):
            response = http.post(f"{asgi_server}/v1/chat/completions", json=body, headers=headers)
            assert response.status_code == 200
    after_response_settled()
    # then no request or response of ours was left in a reference cycle: each was freed as
    # soon as it was done with, not by a collection (which walks every young object, and
    # made a request now and then a millisecond slower)
    garbage = saved_garbage()
    leftovers = [o for o in garbage if isinstance(o, HttpRequest | HttpResponseBase)]
    assert leftovers == []


def test_the_hot_path_closes_its_responses_without_request_finished(
    asgi_server, policy, api_key, monkeypatch
):
    # given a count of request_finished, and a record of the responses the handler closes
    from django.core.signals import request_finished

    import huntaze.asgi

    finished = []

    def count(**kwargs):
        finished.append(kwargs)

    closed = []
    close = huntaze.asgi._response_close

    def record(response):
        close(response)
        closed.append(response)

    monkeypatch.setattr(huntaze.asgi, "_response_close", record)
    request_finished.connect(count)
    try:
        # when an answer and a stream are served on the hot path
        headers = {"Authorization": f"Bearer {api_key[1]}"}
        with httpx2.Client(timeout=10) as http:
            for body in (HELLO, {**HELLO, "stream": True}):
                response = http.post(
                    f"{asgi_server}/v1/chat/completions", json=body, headers=headers
                )
                assert response.status_code == 200
        after_response_settled()
    finally:
        request_finished.disconnect(count)

    # then both responses were closed, with their closers run, and no signal was sent (its
    # receivers would look on the event loop for connections and caches it never has)
    assert len(closed) == 2
    assert all(r.closed and not r._resource_closers for r in closed)
    assert finished == []


def _read_chunks(sock: socket.socket) -> tuple[bytes, list[bytes]]:
    """Read one chunked HTTP response: its head, then each chunk as framed on the wire."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, data = data.split(b"\r\n\r\n", 1)
    chunks = []
    while True:
        while b"\r\n" not in data:
            data += sock.recv(65536)
        size_line, data = data.split(b"\r\n", 1)
        size = int(size_line, 16)
        while len(data) < size + 2:
            data += sock.recv(65536)
        chunk, data = data[:size], data[size + 2 :]
        if size == 0:
            assert data == b"", "bytes after the end of the body"
            return head, chunks
        chunks.append(chunk)


def test_a_stream_sends_each_upstream_read_in_a_chunk_of_its_own_and_ends_at_done(
    asgi_server, policy, api_key
):
    # given a keep-alive connection to the server
    host, port = asgi_server.removeprefix("http://").split(":")
    body = json.dumps({**HELLO, "stream": True}).encode()
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {api_key[1]}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        # when a stream is asked for twice on it
        for _ in range(2):
            sock.sendall(request)
            head, chunks = _read_chunks(sock)

            # then each event came in a chunk of its own (the sandbox sends one a read: the
            # events of one read go together), [DONE] last, and the body ended
            assert head.startswith(b"HTTP/1.1 200")
            assert all(c.startswith(b"data: {") and c.endswith(b"\n\n") for c in chunks[:-1])
            assert all(c.count(b"\n\n") == 1 for c in chunks)
            assert chunks[-1] == b"data: [DONE]\n\n"
    after_response_settled()
    assert UsageRecord.objects.filter(streamed=True).count() == 2


# --- body limit and chunked bodies (no Content-Length) -----------------------------------

MiB = 1024 * 1024


def _chunked(payload: bytes, chunk_bytes: int = 7):
    """A generator body: httpx sends it with Transfer-Encoding: chunked, no Content-Length."""
    for start in range(0, len(payload), chunk_bytes):
        yield payload[start : start + chunk_bytes]


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/api/v1/route", {"messages": HELLO["messages"]}, 200),
        ("/api/v1/completions", {"messages": HELLO["messages"]}, 200),
        ("/v1/chat/completions", HELLO, 200),
        (
            "/api/v1/batches",
            {"requests": [{"custom_id": "a", "category": "analytics", **HELLO}]},
            202,
        ),
    ],
)
def test_a_small_chunked_body_is_read_by_every_view(
    asgi_server, policy, api_key, path, body, status
):
    # given batches on, and a body sent in chunks without a Content-Length
    FeatureFlag.objects.filter(name="batch").update(enabled=True)
    policy_version_create(actor="test", comment="batch on")
    headers = {"Authorization": f"Bearer {api_key[1]}", "Content-Type": "application/json"}
    # when
    with httpx2.Client(timeout=10) as http:
        content = _chunked(json.dumps(body).encode())
        response = http.post(f"{asgi_server}{path}", content=content, headers=headers)
    # then
    assert response.status_code == status, response.text


@pytest.mark.parametrize(
    ("path", "shape"),
    [("/api/v1/completions", {"code", "message", "field"}),
     ("/api/v1/route", {"code", "message", "field"}),
     ("/v1/chat/completions", {"code", "message", "type", "param"})],
)  # fmt: skip
def test_a_chunked_body_over_the_limit_is_a_413_without_reading_the_rest(
    asgi_server, policy, api_key, settings, sandbox_state, path, shape
):
    # given a 300 MiB body sent in chunks, against a 100 kB limit
    settings.API_MAX_BODY_BYTES = 100_000
    sent = []
    chunk = b" " * MiB

    def body():
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(300):
            sent.append(len(chunk))
            yield chunk

    headers = {"Authorization": f"Bearer {api_key[1]}", "Content-Type": "application/json"}
    # when
    with httpx2.Client(timeout=30) as http:
        response = http.post(f"{asgi_server}{path}", content=body(), headers=headers)
    # then a 413 in the path's error shape, long before the client could send it all
    assert response.status_code == 413
    error = response.json()["error"]
    assert set(error) == shape
    assert error["code"] == "payload_too_large"
    assert sum(sent) < 100 * MiB
    assert sandbox_state.calls == 0
    assert UsageRecord.objects.count() == 0


def test_a_declared_length_over_the_limit_is_a_413_before_the_body_is_sent(
    asgi_server, policy, api_key
):
    # given a request that announces 300 MiB and sends none of it
    host, port = asgi_server.removeprefix("http://").split(":")
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\n"
        f"Host: {host}\r\nAuthorization: Bearer {api_key[1]}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {300 * MiB}\r\n\r\n"
    )
    # when
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(head.encode())
        answer = conn.recv(65536).decode()
    # then the answer comes at once, and the server closes the connection
    status_line, _, rest = answer.partition("\r\n")
    assert status_line == "HTTP/1.1 413 Request Entity Too Large"
    assert "connection: close" in rest.lower()
    assert json.loads(rest.partition("\r\n\r\n")[2])["error"]["code"] == "payload_too_large"


def test_a_body_without_a_content_type_is_read_as_json(asgi_server, policy, api_key):
    headers = {"Authorization": f"Bearer {api_key[1]}"}
    body = json.dumps({"messages": HELLO["messages"]}).encode()
    with httpx2.Client(timeout=10) as http:
        for path in ("/api/v1/route", "/api/v1/completions"):
            response = http.post(f"{asgi_server}{path}", content=body, headers=headers)
            assert response.status_code == 200, (path, response.text)


# --- start-up and static files: no warnings in the server's log ---------------------------


def test_the_server_starts_with_the_lifespan_protocol_answered():
    # given uvicorn as `make run` starts it (lifespan "auto"), logging at INFO
    import threading
    import time

    import uvicorn

    from huntaze.asgi import application

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    import logging

    config = uvicorn.Config(application, log_level="info", lifespan="auto")
    server = uvicorn.Server(config)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    # when it starts and stops
    config.load()  # its logging set up first, then our handler beside uvicorn's own
    logging.getLogger("uvicorn.error").addHandler(handler)
    try:
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        server.should_exit = True
        thread.join(timeout=10)
    finally:
        logging.getLogger("uvicorn.error").removeHandler(handler)
        sock.close()
    # then it went through start-up and shut-down, and never said the protocol is unsupported
    messages = [record.getMessage() for record in records]
    assert "Application startup complete." in messages
    assert "Application shutdown complete." in messages
    assert not [m for m in messages if "unsupported" in m.lower()]


def test_a_static_file_is_served_without_the_sync_iterator_warning(settings, tmp_path):
    # given a collected static file, served by our async WhiteNoise
    import asyncio
    import warnings

    from django.test import RequestFactory

    from huntaze.middleware import AsyncWhiteNoiseMiddleware

    (tmp_path / "hello.txt").write_bytes(b"static hello\n" * 1000)
    settings.STATIC_ROOT = tmp_path

    async def not_static(request):
        raise AssertionError("a static file reached the views")

    middleware = AsyncWhiteNoiseMiddleware(not_static)

    async def fetch() -> tuple[object, bytes]:
        response = await middleware(RequestFactory().get("/static/hello.txt"))
        return response, b"".join([chunk async for chunk in response])

    # when it is read as Django's ASGI handler reads it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        response, body = asyncio.run(fetch())
    # then the whole file comes back, from an async iterator, with no warning
    assert response.status_code == 200 and response.is_async
    assert body == b"static hello\n" * 1000
    assert [str(w.message) for w in caught] == []


def test_the_hot_path_keeps_the_match_of_a_fixed_path_and_only_that(monkeypatch):
    # given the hot-path handler with nothing kept, and a count of top-level URL matchings
    from django.test import RequestFactory
    from django.urls import Resolver404
    from django.urls.resolvers import URLResolver

    import huntaze.asgi

    monkeypatch.setattr(huntaze.asgi, "_resolved", {})
    matched = []
    resolve = URLResolver.resolve

    def counting(self, path):
        if path.startswith("/"):  # the root resolver's call; included ones get the rest
            matched.append(path)
        return resolve(self, path)

    monkeypatch.setattr(URLResolver, "resolve", counting)
    handler, factory = huntaze.asgi.hot_path_application, RequestFactory()
    # when a fixed path, a path with an argument and an unknown path come twice each
    names = []
    for path in ["/v1/chat/completions", "/v1/models/gpt-4o-mini"] * 2:
        request = factory.post(path)
        names.append(handler.resolve_request(request).url_name)
        assert request.resolver_match.url_name == names[-1]
    for _ in range(2):
        with pytest.raises(Resolver404):
            handler.resolve_request(factory.post("/v1/no-such-thing"))
    # then each resolves as Django resolves it, and only the fixed path is matched once
    assert names == ["openai-chat-completions", "openai-model"] * 2
    assert matched == [
        "/v1/chat/completions",
        "/v1/models/gpt-4o-mini",
        "/v1/models/gpt-4o-mini",
        "/v1/no-such-thing",
        "/v1/no-such-thing",
    ]


def _messages_sent_for(events, *, cancel_after: int | None = None, handler=None) -> list[dict]:
    """The ASGI messages the hot-path handler (or this handler) sends for an event stream of
    these writes; with cancel_after, the client goes away (the send is cancelled) at that
    message."""
    import asyncio

    import huntaze.asgi
    from routing.gateway.http import event_stream_response

    handler = handler or huntaze.asgi.hot_path_application

    sent = []

    async def send(message: dict) -> None:
        sent.append(message)
        if cancel_after is not None and len(sent) == cancel_after:
            raise asyncio.CancelledError

    response = event_stream_response(events, headers={"X-Request-Id": "req_1"})
    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(handler.send_response(response, send))
    return sent


def test_the_hot_path_ends_a_stream_with_its_last_events_and_sends_no_empty_end():
    from routing.gateway.streaming import LastEvents

    # given a stream of two writes, the second its last
    async def events():
        yield b"data: {}\n\n"
        yield LastEvents(b"data: {}\n\ndata: [DONE]\n\n")

    # when the hot path sends it
    sent = _messages_sent_for(events())

    # then the head, then each write as it is, the last one ending the body
    start, *bodies = sent
    assert start["type"] == "http.response.start" and start["status"] == 200
    headers = dict(start["headers"])
    assert headers[b"Content-Type"] == b"text/event-stream"
    assert headers[b"Cache-Control"] == b"no-cache" and headers[b"X-Request-Id"] == b"req_1"
    assert [(b["body"], b["more_body"]) for b in bodies] == [
        (b"data: {}\n\n", True),
        (b"data: {}\n\ndata: [DONE]\n\n", False),
    ]


def test_the_hot_path_ends_events_that_stop_without_a_last_write_as_django_does():
    async def events():
        yield b"data: {}\n\n"

    bodies = _messages_sent_for(events())[1:]
    assert bodies == [
        {"type": "http.response.body", "body": b"data: {}\n\n", "more_body": True},
        {"type": "http.response.body"},
    ]


def test_the_hot_path_closes_the_events_of_a_client_gone_midway():
    # given events that note when they are closed
    closed = []

    async def events():
        try:
            yield b"data: {}\n\n"
            yield b"data: {}\n\n"
        finally:
            closed.append(True)

    # when the client goes away at the first write
    sent = _messages_sent_for(events(), cancel_after=2)

    # then nothing more is sent, and the events were closed (the relay records the stream)
    assert len(sent) == 2 and closed == [True]


def test_djangos_own_handler_sends_the_same_stream():
    # given the events of a stream, sent by Django's handler (the paths off the hot path)
    import huntaze.asgi
    from routing.gateway.streaming import LastEvents

    def events():
        async def writes():
            yield b"data: {}\n\n"
            yield LastEvents(b"data: [DONE]\n\n")

        return writes()

    django_sent = _messages_sent_for(events(), handler=huntaze.asgi.django_application)
    hot_sent = _messages_sent_for(events())

    # then the head and the bytes are the same; Django only ends with an empty message
    def body(sent):
        return b"".join(m.get("body", b"") for m in sent[1:])

    assert django_sent[0] == hot_sent[0]
    assert body(django_sent) == body(hot_sent) == b"data: {}\n\ndata: [DONE]\n\n"
    assert django_sent[-1] == {"type": "http.response.body"}
