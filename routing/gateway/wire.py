"""What a door answers when it refuses a request, and the two ways of spelling it.

Every failure at either completion door becomes one `Refusal` (status, stable code, message,
the field it names) through one mapping, `refusal_from`; the native API and the OpenAI-compatible
one then differ only in how they write it: `NATIVE` as `{"error": {code, message, field}}`,
`OPENAI` as OpenAI's `{"error": {message, type, code, param}}`, so its SDK raises its usual
exception classes.
"""

import logging

from django.db import DatabaseError
from django.http import Http404, JsonResponse

from routing.engine import RoutingError
from routing.gateway.admission import BudgetExceeded, RateLimited
from routing.gateway.call import CompletionFailed
from routing.json_input import InvalidJson, InvalidText

logger = logging.getLogger(__name__)

# Routing errors that are the service's state, not the request: retry later.
_UNAVAILABLE_CODES = {"no_policy", "no_default_category"}


class Refusal(Exception):
    """A request answered with an error: HTTP status, stable code, message, the field it
    names (a body path such as `messages[0].content`, a header, or None), extra headers."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers = dict(headers or {})
        self.request_id = request_id  # set when a ledger row names this failure
        if status == 401:
            self.headers.setdefault("WWW-Authenticate", "Bearer")


def refusal_from(exc: Exception) -> Refusal:
    """Return the refusal a door answers for any exception of the request path."""
    if isinstance(exc, Refusal):
        return exc
    if isinstance(exc, CompletionFailed):
        error = exc.error
        return Refusal(
            error.status,
            error.code,
            error.message,
            field=getattr(error, "param", None),  # a request the model refused may name one
            headers={"X-Request-Id": exc.request_id},
            request_id=exc.request_id,
        )
    if isinstance(exc, RateLimited):
        headers = {"Retry-After": str(exc.retry_after_s)}
        return Refusal(429, exc.code, exc.message, headers=headers)
    if isinstance(exc, BudgetExceeded):
        return Refusal(429, exc.code, exc.message)
    if isinstance(exc, RoutingError):
        status = 503 if exc.code in _UNAVAILABLE_CODES else 400
        status = 404 if exc.code == "model_not_found" else status
        return Refusal(status, exc.code, exc.message, field=exc.field)
    if isinstance(exc, InvalidText):
        return Refusal(400, exc.code, exc.message, field=exc.field)
    if isinstance(exc, InvalidJson):
        return Refusal(400, exc.code, str(exc))
    if isinstance(exc, Http404):
        return Refusal(404, "not_found", "Not found.")
    if isinstance(exc, DatabaseError):
        logger.error("database unavailable: %s", exc)
        message = "The service's database is unavailable; retry shortly."
        return Refusal(503, "database_unavailable", message)
    logger.exception("unhandled API error", exc_info=exc)
    return Refusal(500, "internal_error", "Internal error.")


class Wire:
    """How one door writes a refusal. `invalid_code` is its code for a field it refuses."""

    invalid_code = "invalid_field"

    def body(self, refusal: Refusal) -> dict:
        raise NotImplementedError

    def response(self, refusal: Refusal) -> JsonResponse:
        return JsonResponse(self.body(refusal), status=refusal.status, headers=refusal.headers)

    def error_response(self, exc: Exception) -> JsonResponse:
        """Answer any failure in this wire's shape."""
        return self.response(refusal_from(exc))


class NativeWire(Wire):
    """`{"error": {"code", "message", "field"}}`, plus `request_id` when a row names it."""

    def body(self, refusal: Refusal) -> dict:
        error = {"code": refusal.code, "message": refusal.message, "field": refusal.field}
        if refusal.request_id is not None:
            error["request_id"] = refusal.request_id
        return {"error": error}


# OpenAI's `type` for the codes whose type is not the plain client/server split.
_OPENAI_TYPES = {"budget_exceeded": "insufficient_quota", "rate_limited": "requests"}


class OpenAIWire(Wire):
    """OpenAI's `{"error": {"message", "type", "code", "param"}}`; a failure with a ledger row
    names its request in the message, where OpenAI's own errors carry theirs."""

    invalid_code = "invalid_value"

    def body(self, refusal: Refusal) -> dict:
        kind = "invalid_request_error" if refusal.status < 500 else "server_error"
        message = refusal.message
        if refusal.request_id is not None:
            message = f"{message} (request {refusal.request_id})"
        return {
            "error": {
                "message": message,
                "type": _OPENAI_TYPES.get(refusal.code, kind),
                "code": refusal.code,
                "param": refusal.field,
            }
        }


NATIVE = NativeWire()
OPENAI = OpenAIWire()


def wire_for_path(path: str) -> Wire:
    """The wire of the door that serves `path`: OpenAI's under /v1/, ours elsewhere."""
    return OPENAI if path.startswith("/v1/") else NATIVE
