"""ASGI entry point: the completion endpoints on a lean handler, everything else on Django's,
and the API paths behind the front door's body limit (routing.gateway.http.BodyLimit), which
holds whatever way the body is sent.

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
import contextlib  # noqa: E402

from django.conf import settings  # noqa: E402  (after setup)
from django.core.exceptions import RequestAborted  # noqa: E402
from django.core.handlers.asgi import ASGIHandler, get_script_prefix  # noqa: E402
from django.core.handlers.exception import convert_exception_to_response  # noqa: E402
from django.middleware.security import SecurityMiddleware  # noqa: E402
from django.urls import get_resolver, set_script_prefix  # noqa: E402

from routing.after_response import open_jobs, run_jobs  # noqa: E402
from routing.gateway.http import BodyLimit, EventStreamResponse  # noqa: E402
from routing.gateway.streaming import LastEvents  # noqa: E402


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
            _response_close(error_response)
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
            _response_close(responder.result())
        body_file.close()

    async def send_response(self, response, send) -> None:
        """Django's send_response, but a stream of events is sent as the relay yields it: each
        write one ASGI message (Django passed it through two generators of its own first), the
        last (LastEvents) ending the response, where Django asked the events for more and then
        sent an empty end, a message and a socket write of its own."""
        if not isinstance(response, EventStreamResponse):
            return await super().send_response(response, send)
        # As Django's: the events are closed however the sending ends (a client gone cancels
        # it), so the relay records the stream.
        async with contextlib.aclosing(response.events) as events:
            await send(_response_start(response))
            async for part in events:
                last = isinstance(part, LastEvents)
                for chunk, last_chunk in self.chunk_bytes(part):
                    more = not (last and last_chunk)
                    await send({"type": "http.response.body", "body": chunk, "more_body": more})
                if last:
                    return
        await send({"type": "http.response.body"})  # events that ended without LastEvents

    def resolve_request(self, request):
        """Django's resolve_request, with the match of a fixed path kept: matching
        /v1/chat/completions walked the URL patterns with their regexes for every request
        (about 18 us). Only a match without arguments is kept (a path such as a batch's,
        with an id in it, is matched each time, so the kept ones are bounded by the URLconf),
        per resolver (a new URLconf, as tests set, has a resolver of its own); a 404 raises."""
        if hasattr(request, "urlconf"):  # set by a middleware: this handler has none
            return super().resolve_request(request)
        resolver = get_resolver()
        key = (resolver, request.path_info)
        match = _resolved.get(key)
        if match is None:
            match = resolver.resolve(request.path_info)
            if not (match.args or match.kwargs) and len(_resolved) < HOT_PATH_MATCHES_KEPT:
                _resolved[key] = match
        request.resolver_match = match
        return match

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


# Matches of hot paths, shared by requests: Django reads a ResolverMatch, never changes it,
# and the view gets copies of its args and kwargs.
HOT_PATH_MATCHES_KEPT = 256
_resolved: dict = {}


def _response_start(response) -> dict:
    """The http.response.start message of a response, as Django's send_response makes it."""
    headers = [
        (header.encode("ascii"), value.encode("latin1")) for header, value in response.items()
    ]
    for cookie in response.cookies.values():
        headers.append((b"Set-Cookie", cookie.output(header="").encode("ascii").strip()))
    return {"type": "http.response.start", "status": response.status_code, "headers": headers}


def _response_close(response) -> None:
    """What response.close() does, less its request_finished signal (see HotPathHandler):
    sent here, on the event loop, its receivers looked for database connections and caches
    of the request's context, which has none, and reset the URLconf, which it never set
    (about 30 us of CPU per request)."""
    for closer in response._resource_closers:  # the request's body, a stream's iterator
        with contextlib.suppress(Exception):  # as close() does: closing is best effort
            closer()
    response._resource_closers.clear()
    response.closed = True


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


application = BodyLimit(_dispatch)  # the front door's body limit, before Django reads a body
