"""OpenAI-compatible endpoint: the product switches by changing base_url and key only.

Async views (the ASGI hot path): parse, authenticate, validate, call one service, shape the
answer as OpenAI does. Routing hints travel in `metadata` or in X-Huntaze-* headers; the
decision comes back in X-Huntaze-* response headers. Errors are OpenAI-shaped, so the SDK
raises its usual exceptions. The request side (body, checks, hints) is routing.openai_input.
"""

import logging
import time

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from huntaze.money import decimal_str
from routing.db import db_call
from routing.engine import Decision, RoutingError
from routing.gateway.admission import BudgetExceeded, RateLimited, rate_limit_check
from routing.gateway.call import CompletionFailed, CompletionRequest, CompletionResult
from routing.gateway.completion import completion_create, completion_stream
from routing.gateway.http import bearer_token, event_stream_response, method_not_allowed
from routing.gateway.idempotency import IDEMPOTENCY_HEADER, idempotent
from routing.openai_input import AUTO, OpenAIError, body_parse, completion_request_parse, invalid
from routing.selectors import api_key_get_by_plaintext, api_key_remembered, policy_get

logger = logging.getLogger(__name__)


async def _authenticate(request: HttpRequest):
    plaintext = bearer_token(request)
    if not plaintext:
        raise OpenAIError(
            401,
            "You didn't provide an API key (Authorization: Bearer <key>).",
            kind="invalid_request_error",
            code="invalid_api_key",
        )
    api_key = api_key_remembered(plaintext=plaintext) or await db_call(
        api_key_get_by_plaintext, plaintext=plaintext
    )
    if api_key is None:
        raise OpenAIError(
            401,
            "Incorrect or revoked API key.",
            kind="invalid_request_error",
            code="invalid_api_key",
        )
    return api_key


def _decision_headers(request_id: str, decision: Decision, cache_hit: bool) -> dict:
    return {
        "X-Request-Id": request_id,
        "X-Huntaze-Model": decision.model.name,
        "X-Huntaze-Tier": decision.tier.value,
        "X-Huntaze-Category": decision.category,
        "X-Huntaze-Reason": decision.reason_code,
        "X-Huntaze-Cache": "hit" if cache_hit else "miss",
    }


def _completion_body(result: CompletionResult) -> dict:
    return {
        "id": "chatcmpl-" + result.id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": result.decision.model.name,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.content, "refusal": None},
                "finish_reason": result.finish_reason or "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": result.input_tokens,
            "completion_tokens": result.output_tokens,
            "total_tokens": result.input_tokens + result.output_tokens,
            "prompt_tokens_details": {"cached_tokens": result.cached_tokens},
        },
    }


def _error_from_failure(exc: CompletionFailed) -> OpenAIError:
    error = exc.error
    return OpenAIError(
        error.status,
        f"{error.message} (request {exc.request_id})",
        kind="invalid_request_error" if error.status < 500 else "server_error",
        code=error.code,
        param=getattr(error, "param", None),
    )


def _error_from_routing(exc: RoutingError) -> OpenAIError:
    if exc.code == "model_not_found":
        return OpenAIError(
            404, exc.message, kind="invalid_request_error", code="model_not_found", param="model"
        )
    if exc.code in {"no_policy", "no_default_category"}:
        return OpenAIError(503, exc.message, kind="server_error", code=exc.code)
    return invalid(exc.message, code=exc.code, param=exc.field)


def _error_response(exc: Exception) -> HttpResponse:
    """Answer any failure OpenAI-shaped, so the SDK raises its usual exception class."""
    if isinstance(exc, OpenAIError):
        return exc.response()
    if isinstance(exc, RoutingError):
        return _error_from_routing(exc).response()
    if isinstance(exc, BudgetExceeded):
        return OpenAIError(429, exc.message, kind="insufficient_quota", code=exc.code).response()
    if isinstance(exc, RateLimited):
        return OpenAIError(
            429, exc.message, kind="requests", code=exc.code, retry_after_s=exc.retry_after_s
        ).response()
    if isinstance(exc, CompletionFailed):
        response = _error_from_failure(exc).response()
        response["X-Request-Id"] = exc.request_id
        return response
    if isinstance(exc, DatabaseError):
        logger.error("database unavailable: %s", exc)
        message = "The service's database is unavailable; retry shortly."
        return OpenAIError(
            503, message, kind="server_error", code="database_unavailable"
        ).response()
    logger.exception("unhandled error in the OpenAI-compatible endpoint", exc_info=exc)
    return OpenAIError(
        500, "Internal error.", kind="server_error", code="internal_error"
    ).response()


class OpenAIView(View):
    """An async view of this endpoint: a method it does not serve is an OpenAI-shaped 405."""

    def http_method_not_allowed(self, request: HttpRequest, *args, **kwargs):
        def error(message: str) -> HttpResponse:
            kind = "invalid_request_error"
            return OpenAIError(405, message, kind=kind, code="method_not_allowed").response()

        return method_not_allowed(self, request, error)


@method_decorator(csrf_exempt, name="dispatch")
class ChatCompletionsView(OpenAIView):
    http_method_names = ["post"]

    async def post(self, request: HttpRequest) -> HttpResponse:
        try:
            api_key = await _authenticate(request)
            await rate_limit_check(api_key=api_key, now=time.time())
            body = body_parse(request)
            completion, data = completion_request_parse(request, body)
            if data["stream"]:
                if request.headers.get(IDEMPOTENCY_HEADER) is not None:
                    raise invalid("Idempotency-Key is not supported for streams.", param="stream")
                include_usage = bool((data.get("stream_options") or {}).get("include_usage"))
                return await self._stream(api_key, completion, include_usage)
        except Exception as exc:  # noqa: BLE001 - every error is answered OpenAI-shaped
            return _error_response(exc)

        def refuse(status: int, code: str, message: str) -> HttpResponse:
            kind = "invalid_request_error"
            return OpenAIError(status, message, kind=kind, code=code, param=None).response()

        return await idempotent(
            request,
            api_key=api_key,
            body=body,
            produce=lambda: self._complete(api_key, completion),
            refuse=refuse,
        )

    async def _complete(self, api_key, completion: CompletionRequest) -> HttpResponse:
        try:
            result = await completion_create(api_key=api_key, request=completion)
        except Exception as exc:  # noqa: BLE001
            return _error_response(exc)
        headers = _decision_headers(result.id, result.decision, result.cache_hit)
        headers["X-Huntaze-Cost-Usd"] = decimal_str(result.cost_usd)
        return JsonResponse(_completion_body(result), headers=headers)

    async def _stream(self, api_key, completion, include_usage: bool) -> HttpResponse:
        start = await completion_stream(
            api_key=api_key, request=completion, include_usage=include_usage
        )
        headers = _decision_headers(start.id, start.decision, start.cache_hit)
        return event_stream_response(start.events, headers=headers)


def _model_object(name: str) -> dict:
    return {"id": name, "object": "model", "created": 0, "owned_by": "huntaze"}


def _routable_names(policy) -> list[str]:
    """`auto`, `auto:<category>` per enabled category, then each active model profile."""
    names = [AUTO]
    names += [f"{AUTO}:{slug}" for slug, rule in policy.categories.items() if rule.enabled]
    names += [name for name, model in policy.models.items() if model.active]
    return names


async def _routable_policy(request: HttpRequest):
    await _authenticate(request)
    return await db_call(policy_get)


class ModelListView(OpenAIView):
    http_method_names = ["get"]

    async def get(self, request: HttpRequest) -> HttpResponse:
        try:
            policy = await _routable_policy(request)
        except OpenAIError as exc:
            return exc.response()
        except RoutingError as exc:
            return _error_from_routing(exc).response()
        data = [_model_object(name) for name in _routable_names(policy)]
        return JsonResponse({"object": "list", "data": data})


class ModelRetrieveView(OpenAIView):
    """`GET /v1/models/<id>` (the SDK's models.retrieve): each id the list shows."""

    http_method_names = ["get"]

    async def get(self, request: HttpRequest, model: str) -> HttpResponse:
        try:
            policy = await _routable_policy(request)
        except OpenAIError as exc:
            return exc.response()
        except RoutingError as exc:
            return _error_from_routing(exc).response()
        if model not in _routable_names(policy):
            message = f"The model '{model}' does not exist."
            kind = "invalid_request_error"
            error = OpenAIError(404, message, kind=kind, code="model_not_found", param="model")
            return error.response()
        return JsonResponse(_model_object(model))
