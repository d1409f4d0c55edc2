"""ASGI entry point: the completion endpoints on a lean handler, everything else on Django's,
and the API paths behind a body-size limit that holds whatever way the body is sent.

Under ASGI, Django runs each sync hook of every middleware (all of its built-ins) in a thread
and back, and creates that thread for each request: a dozen thread hops per call, which was
most of the gateway's CPU. The completion endpoints (settings.HOT_PATH_PREFIXES) are async
views called with a Bearer key: they need no session, user, messages or CSRF, so they are
served by the same Django with only the security headers, applied on the event loop. Admin,
dashboard and the rest keep the full middleware stack.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "huntaze.settings")

django_application = get_asgi_application()


def _router_ready() -> None:
    """Refuse to start without a loadable router artifact (unless the keyword fallback is on):
    one clear message at start-up, never a failure per request."""
    from django.core.exceptions import ImproperlyConfigured

    from routing.learned.runtime import router_artifact_check

    for problem in router_artifact_check():
        if problem.is_serious():
            raise ImproperlyConfigured(f"{problem.msg} {problem.hint}")


_router_ready()

import asyncio  # noqa: E402
import json  # noqa: E402

from django.conf import settings  # noqa: E402  (after setup)
from django.core.exceptions import RequestAborted  # noqa: E402
from django.core.handlers.asgi import ASGIHandler, get_script_prefix  # noqa: E402
from django.core.handlers.exception import convert_exception_to_response  # noqa: E402
from django.middleware.security import SecurityMiddleware  # noqa: E402
from django.urls import set_script_prefix  # noqa: E402

from huntaze.errors import API_PREFIXES  # noqa: E402
from routing.after_response import open_jobs, run_jobs  # noqa: E402


class HotPathHandler(ASGIHandler):
    """Django's ASGI handler with SecurityMiddleware as its only middleware, run inline, and
    without the request_started / request_finished signals: their receivers manage the
    database connections of a request's own thread, and these views have none (their
    database work runs on routing.db's threads, which keep theirs). Sending them cost a
    thread made for the request and two hops to it."""

    async def handle(self, scope, receive, send) -> None:
        # Django's ASGIHandler.handle, less the two signals.
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            await self.send_response(error_response, send)
            error_response.close()
            return

        async def respond():
            response = await self.run_get_response(request)
            try:
                await self.send_response(response, send)
            except asyncio.CancelledError:
                pass  # the client went away during the send
            return response

        # Work the response need not wait for (its ledger row) runs after it is sent.
        jobs = open_jobs()
        try:
            await self._respond_or_abort(body_file, receive, respond)
        finally:
            await run_jobs(jobs)

    async def _respond_or_abort(self, body_file, receive, respond) -> None:
        # A client that disconnects cancels the response (a stream records it as cancelled).
        listener = asyncio.create_task(self.listen_for_disconnect(receive))
        responder = asyncio.create_task(respond())
        await asyncio.wait([listener, responder], return_when=asyncio.FIRST_COMPLETED)
        for task in (listener, responder):
            if task.done():
                # exception(), not result(): re-raised here, the listener's RequestAborted
                # (every request: the server reports the disconnect once the response is
                # sent) would get this frame in its traceback, and this frame holds the task
                # that holds the exception, a cycle that kept each request's objects alive
                # until the next garbage collection.
                error = task.exception()  # a cancelled task raises CancelledError, as before
                if error is None or isinstance(error, RequestAborted):
                    continue
                if isinstance(error, AssertionError):
                    body_file.close()
                raise error
            else:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        if not responder.cancelled():
            responder.result().close()
        body_file.close()

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        view = convert_exception_to_response(self._get_response_async)
        # Its hooks only read settings and set headers: nothing to send to a thread.
        security = SecurityMiddleware(view)

        async def chain(request):
            response = security.process_request(request) or await view(request)
            return security.process_response(request, response)

        self._middleware_chain = chain


hot_path_application = HotPathHandler()


async def _lifespan(receive, send) -> None:
    """Answer the server's start and stop events. There is nothing to set up or tear down
    here (the router check ran at import), but Django's handler refuses the lifespan scope,
    and uvicorn then logs at every start that the protocol "appears unsupported"."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _dispatch(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    if scope["type"] == "http" and scope["path"].startswith(settings.HOT_PATH_PREFIXES):
        return await hot_path_application(scope, receive, send)
    return await django_application(scope, receive, send)


class ApiBodyLimit:
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
                return await _too_large(scope, send, f"Request body is {int(length)} bytes")
            return await self.app(scope, receive, send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left before its body ended
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return await _too_large(scope, send, f"Request body is over {limit} bytes")
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


async def _too_large(scope, send, what: str) -> None:
    message = f"{what}; the limit is {settings.API_MAX_BODY_BYTES}."
    if scope["path"].startswith("/v1/"):  # OpenAI's error shape, as the SDK expects there
        error = {"message": message, "type": "invalid_request_error", "param": None}
        body = {"error": {**error, "code": "payload_too_large"}}
    else:
        body = {"error": {"code": "payload_too_large", "message": message, "field": None}}
    payload = json.dumps(body).encode()
    # Connection: close, so the server drops the connection instead of reading the rest.
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


application = ApiBodyLimit(_dispatch)
