"""What both completion doors do the same way over HTTP: read the Bearer key, refuse an
oversized body, answer a method they do not serve, and send an event stream. Each door
keeps its own wire shape (errors, bodies); these take it as an argument."""

from collections.abc import AsyncIterator, Awaitable, Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.views import View


def bearer_token(request: HttpRequest) -> str:
    """Return the key of an `Authorization: Bearer <key>` header, or "" without one."""
    scheme, _, plaintext = request.headers.get("Authorization", "").partition(" ")
    return plaintext.strip() if scheme.lower() == "bearer" else ""


def body_size_error(request: HttpRequest) -> str | None:
    """Return why the body is too large to read (its Content-Length is over
    API_MAX_BODY_BYTES), or None."""
    length = request.META.get("CONTENT_LENGTH") or "0"
    if length.isdigit() and int(length) > settings.API_MAX_BODY_BYTES:
        return f"Request body is {length} bytes; the limit is {settings.API_MAX_BODY_BYTES}."
    return None


def method_not_allowed(
    view: View, request: HttpRequest, error: Callable[[str], HttpResponse]
) -> Awaitable[HttpResponse]:
    """Return the 405 `error(message)` makes, naming the methods the view serves, as an async
    view's handler must: awaitable."""
    allowed = ", ".join(view._allowed_methods())
    response = error(f"Method {request.method} is not allowed here; use {allowed}.")
    response["Allow"] = allowed

    async def answer() -> HttpResponse:
        return response

    return answer()


def event_stream_response(events: AsyncIterator[bytes], *, headers: dict) -> StreamingHttpResponse:
    """Return the server-sent events as a response no proxy or cache holds back."""
    response = StreamingHttpResponse(events, content_type="text/event-stream", headers=headers)
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # proxies must not buffer the stream either
    return response
