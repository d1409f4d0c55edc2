"""The one front door of the completion APIs: what the native API (routing.apis) and the
OpenAI-compatible one (routing.openai_apis) do the same way over HTTP, in the order a request
meets it.

1. The body limit, before anything is read: `BodyLimit`, the ASGI middleware of the API paths,
   answers 413 from a Content-Length over API_MAX_BODY_BYTES, or as soon as a chunked body
   (no Content-Length) passes it. It has to sit in front of Django, whose ASGI handler reads a
   whole body before any view runs. Views check Content-Length again first (`body_size_check`)
   for the servers that call them directly (the test client, WSGI).
2. The Bearer key (`api_key_authenticate`), then the key's rate limit.
3. The body: sent as JSON (415 otherwise), a JSON object, storable text (`json_object_read`).
4. The completion, answered or streamed (`CompletionDoor`), idempotent on request.
5. Every failure mapped once (routing.gateway.wire) and written in the door's wire shape.

A door subclasses `CompletionDoor` with its wire and three methods: how it reads its body,
how it writes an answer, which headers a stream gets. That is all that differs.
"""

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from django.conf import settings
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from huntaze.errors import API_PREFIXES
from routing.api_key_selectors import api_key_get_by_plaintext, api_key_remembered
from routing.db import db_call
from routing.gateway.admission import rate_limit_check
from routing.gateway.call import CompletionRequest, CompletionResult, StreamStart
from routing.gateway.completion import completion_create, completion_stream
from routing.gateway.idempotency import IDEMPOTENCY_HEADER, idempotent
from routing.gateway.wire import Refusal, Wire, wire_for_path
from routing.json_input import is_json_media_type, json_body_parse
from routing.models import ApiKey

# --- the key ------------------------------------------------------------------------------


def bearer_token(request: HttpRequest) -> str | None:
    """Return the key of an `Authorization: Bearer <key>` header, None without the header;
    a header of another form is refused (401 invalid_api_key)."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, plaintext = header.partition(" ")
    if scheme.lower() != "bearer" or not plaintext.strip():
        raise Refusal(401, "invalid_api_key", "Malformed Authorization header: use Bearer <key>.")
    return plaintext.strip()


def key_missing() -> Refusal:
    return Refusal(401, "missing_api_key", "No API key: send Authorization: Bearer <key>.")


def key_refused() -> Refusal:
    return Refusal(401, "invalid_api_key", "Invalid or revoked API key.")


async def api_key_authenticate(request: HttpRequest) -> ApiKey:
    """Return the request's API key; refuse (401) a request without a valid one. A key this
    worker looked up lately costs no thread hop to the database."""
    plaintext = bearer_token(request)
    if plaintext is None:
        raise key_missing()
    api_key = api_key_remembered(plaintext=plaintext) or await db_call(
        api_key_get_by_plaintext, plaintext=plaintext
    )
    if api_key is None:
        raise key_refused()
    return api_key


# --- the body -----------------------------------------------------------------------------


def body_too_large(length: int | str, *, limit: int) -> Refusal:
    message = f"Request body is {length} bytes; the limit is {limit}."
    return Refusal(413, "payload_too_large", message)


def body_size_check(request: HttpRequest) -> None:
    """Refuse (413) a body whose Content-Length is over API_MAX_BODY_BYTES, unread."""
    length = request.META.get("CONTENT_LENGTH") or "0"
    if length.isdigit() and int(length) > settings.API_MAX_BODY_BYTES:
        raise body_too_large(length, limit=settings.API_MAX_BODY_BYTES)


def media_type_check(request: HttpRequest) -> None:
    """Refuse (415) a body that is not sent as JSON (no Content-Type at all reads as JSON)."""
    content_type = request.headers.get("Content-Type", "")
    if not is_json_media_type(content_type):
        message = f"Unsupported media type {content_type!r}: send application/json."
        raise Refusal(415, "unsupported_media_type", message)


def json_object_read(request: HttpRequest) -> dict:
    """Return the body as a JSON object of storable text, sent as JSON (its size is checked
    first of all, before the key: `body_size_check`)."""
    media_type_check(request)
    body = json_body_parse(request.body)  # InvalidJson / InvalidText: refusal_from maps them
    if not isinstance(body, dict):
        raise Refusal(400, "invalid_json", "The body must be a JSON object.")
    return body


# --- the views ----------------------------------------------------------------------------


class DoorView(View):
    """An async view of a door: a method it does not serve is a 405 in its wire shape."""

    wire: Wire

    def http_method_not_allowed(self, request: HttpRequest, *args, **kwargs):
        allowed = ", ".join(self._allowed_methods())
        message = f"Method {request.method} is not allowed here; use {allowed}."
        refusal = Refusal(405, "method_not_allowed", message, headers={"Allow": allowed})

        async def answer() -> HttpResponse:  # an async view's handler must be awaitable
            return self.wire.response(refusal)

        return answer()


@dataclass(frozen=True)
class DoorAsk:
    """What a door read from its body: the completion, and whether and how to stream it."""

    completion: CompletionRequest
    stream: bool = False
    include_usage: bool = False


@method_decorator(csrf_exempt, name="dispatch")
class CompletionDoor(DoorView):
    """POST a completion: key, rate limit, body, then the answer or its event stream."""

    http_method_names = ["post"]

    def ask_parse(self, request: HttpRequest, body: dict) -> DoorAsk:
        raise NotImplementedError

    def answer(self, result: CompletionResult) -> HttpResponse:
        raise NotImplementedError

    def stream_headers(self, start: StreamStart) -> dict:
        raise NotImplementedError

    async def post(self, request: HttpRequest) -> HttpResponse:
        try:
            body_size_check(request)  # first, as BodyLimit does in front of Django
            api_key = await api_key_authenticate(request)
            await rate_limit_check(api_key=api_key, now=time.time())
            body = json_object_read(request)
            ask = self.ask_parse(request, body)
            if ask.stream:
                return await self._stream(request, api_key, ask)
        except Exception as exc:  # noqa: BLE001 - every failure is answered in the wire shape
            return self.wire.error_response(exc)

        async def produce() -> HttpResponse:
            try:
                result = await completion_create(api_key=api_key, request=ask.completion)
            except Exception as exc:  # noqa: BLE001
                return self.wire.error_response(exc)
            return self.answer(result)

        def refuse(status: int, code: str, message: str) -> HttpResponse:
            return self.wire.response(Refusal(status, code, message, field=IDEMPOTENCY_HEADER))

        return await idempotent(request, api_key=api_key, body=body, produce=produce, refuse=refuse)

    async def _stream(self, request: HttpRequest, api_key: ApiKey, ask: DoorAsk) -> HttpResponse:
        if request.headers.get(IDEMPOTENCY_HEADER) is not None:
            message = "stream: Idempotency-Key is not supported for streams."
            raise Refusal(400, self.wire.invalid_code, message, field="stream")
        start = await completion_stream(
            api_key=api_key, request=ask.completion, include_usage=ask.include_usage
        )
        return event_stream_response(start.events, headers=self.stream_headers(start))


class EventStreamResponse(StreamingHttpResponse):
    """Server-sent events. `events` are the writes as the stream relay yields them: the hot-path
    handler (huntaze.asgi) sends them as they are, without Django's two wrapping generators,
    and ends the response with the last (streaming.LastEvents)."""

    def __init__(self, events: AsyncIterator[bytes], *, headers: dict) -> None:
        super().__init__(events, content_type="text/event-stream", headers=headers)
        self.events = events


def event_stream_response(events: AsyncIterator[bytes], *, headers: dict) -> EventStreamResponse:
    """Return the server-sent events as a response no proxy or cache holds back."""
    response = EventStreamResponse(events, headers=headers)
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # proxies must not buffer the stream either
    return response


# --- the body limit, in front of Django ---------------------------------------------------


class BodyLimit:
    """ASGI middleware for the API paths: a body over API_MAX_BODY_BYTES is a 413 as soon as
    that is known (from Content-Length, or while a chunked body arrives), without reading the
    rest; a chunked body within the limit is handed on whole, with a Content-Length, which is
    what Django's views (DRF's among them) go by to read a body at all."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIXES):
            return await self.app(scope, receive, send)
        limit = settings.API_MAX_BODY_BYTES
        length = _header(scope, b"content-length")
        if length is not None:
            if length.isdigit() and int(length) > limit:
                return await _refuse(scope, send, body_too_large(int(length), limit=limit))
            return await self.app(scope, receive, send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left before its body ended
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return await _refuse(scope, send, body_too_large(f"over {limit}", limit=limit))
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        headers = [(k, v) for k, v in scope["headers"] if k != b"transfer-encoding"]
        headers.append((b"content-length", str(len(body)).encode()))
        await self.app({**scope, "headers": headers}, _Replay(body, receive), send)


class _Replay:
    """An ASGI receive that gives the buffered body once, then the client's own events (its
    disconnect)."""

    def __init__(self, body: bytes, receive) -> None:
        self.body, self.receive = body, receive

    async def __call__(self) -> dict:
        if self.body is None:
            return await self.receive()
        body, self.body = self.body, None
        return {"type": "http.request", "body": body, "more_body": False}


def _header(scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


async def _refuse(scope, send, refusal: Refusal) -> None:
    """Send the refusal in the path's wire shape, and close the connection: the server then
    drops it instead of reading the rest of the body."""
    payload = json.dumps(wire_for_path(scope["path"]).body(refusal)).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
