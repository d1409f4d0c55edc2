"""OpenAI-compatible endpoint: the product switches by changing base_url and key only.

Async views (the ASGI hot path): parse, authenticate, validate, call one service, shape the
answer as OpenAI does. Routing hints travel in `metadata` or in X-Huntaze-* headers; the
decision comes back in X-Huntaze-* response headers. Errors are OpenAI-shaped, so the SDK
raises its usual exceptions.
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
from routing.gateway.http import (
    bearer_token,
    body_size_error,
    event_stream_response,
    method_not_allowed,
)
from routing.idempotent import HEADER as IDEMPOTENCY_HEADER
from routing.idempotent import idempotent
from routing.json_input import (
    InvalidJson,
    InvalidText,
    is_json_media_type,
    json_body_parse,
    text_check,
)
from routing.selectors import api_key_get_by_plaintext, api_key_remembered, policy_get

logger = logging.getLogger(__name__)

AUTO = "auto"
SAMPLING_PARAMS = ("top_p", "stop", "presence_penalty", "frequency_penalty", "seed")
UNSUPPORTED_PARAMS = ("tools", "functions", "tool_choice", "function_call", "audio", "modalities")


class OpenAIError(Exception):
    def __init__(
        self, status: int, message: str, *, kind: str, code: str, param=None, retry_after_s=None
    ):
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.status, self.message, self.kind, self.code, self.param = (
            status,
            message,
            kind,
            code,
            param,
        )

    def response(self) -> JsonResponse:
        body = {
            "error": {
                "message": self.message,
                "type": self.kind,
                "code": self.code,
                "param": self.param,
            }
        }
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else {}
        if self.retry_after_s is not None:
            headers["Retry-After"] = str(self.retry_after_s)
        return JsonResponse(body, status=self.status, headers=headers)


def _invalid(message: str, *, code: str = "invalid_value", param=None) -> OpenAIError:
    return OpenAIError(400, message, kind="invalid_request_error", code=code, param=param)


ROLES = {"system", "developer", "user", "assistant"}


def _text_content(content, param: str) -> str:
    """Text, or a list of text parts (joined); other part types are not supported."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        for p in content
    ):
        return "".join(p["text"] for p in content)
    raise _invalid(f"{param}: content must be a string or a list of text parts.", param=param)


def _messages(value) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise _invalid("messages: a non-empty list of messages is required.", param="messages")
    messages = []
    for index, message in enumerate(value):
        param = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _invalid(f"{param}: a message must be an object.", param=param)
        role = message.get("role")
        if role not in ROLES:
            roles = ", ".join(sorted(ROLES))
            raise _invalid(f"{param}.role: must be one of {roles}.", param=f"{param}.role")
        if "content" not in message:
            raise _invalid(f"{param}.content: required.", param=f"{param}.content")
        name = message.get("name")
        if name is not None and not (isinstance(name, str) and len(name) <= 64):
            raise _invalid(f"{param}.name: a string of at most 64 characters.", param=param)
        content = _text_content(message["content"], f"{param}.content")
        messages.append({"role": "system" if role == "developer" else role, "content": content})
    if not any(message["role"] == "user" for message in messages):
        text = "messages: at least one message with role user is required."
        raise _invalid(text, code="missing_user_message", param="messages")
    return messages


def _optional_number(body: dict, name: str, *, kind: type, low, high=None):
    value = body.get(name)
    if value is None:
        return None
    # bool is an int to Python, never to JSON schema.
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f"of at least {low}"
        noun = "an integer" if kind is int else "a number"
        raise _invalid(f"{name}: must be {noun} {bound}.", param=name)
    return value


def _chat_request_validated(body: dict) -> dict:
    """Check an OpenAI chat-completion body (the fields we honour); raise a 400 on the first
    problem, naming its parameter as OpenAI does."""
    model = body.get("model")
    if not isinstance(model, str) or not model or len(model) > 140:
        raise _invalid("model: a model name (or auto) is required.", param="model")
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise _invalid("stream: must be true or false.", param="stream")
    stream_options = body.get("stream_options")
    if stream_options is not None and not isinstance(stream_options, dict):
        raise _invalid("stream_options: must be an object.", param="stream_options")
    user = body.get("user", "")
    if not isinstance(user, str) or len(user) > 128:
        raise _invalid("user: a string of at most 128 characters.", param="user")
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(v, str) and len(v) <= 512 for v in metadata.values()
    ):
        message = "metadata: an object of strings of at most 512 characters."
        raise _invalid(message, param="metadata")
    return {
        "model": model,
        "messages": _messages(body.get("messages")),
        "stream": stream,
        "stream_options": stream_options,
        "max_tokens": _optional_number(body, "max_tokens", kind=int, low=1),
        "max_completion_tokens": _optional_number(body, "max_completion_tokens", kind=int, low=1),
        "temperature": _optional_number(body, "temperature", kind=float, low=0, high=2),
        "n": _optional_number(body, "n", kind=int, low=1, high=1),
        "user": user,
        "metadata": metadata,
    }


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


def _parse_body(request: HttpRequest) -> dict:
    too_large = body_size_error(request)
    if too_large is not None:
        raise OpenAIError(413, too_large, kind="invalid_request_error", code="payload_too_large")
    content_type = request.headers.get("Content-Type", "")
    if not is_json_media_type(content_type):
        raise OpenAIError(
            415,
            f"Unsupported media type {content_type!r}: send application/json.",
            kind="invalid_request_error",
            code="unsupported_media_type",
        )
    try:
        body = json_body_parse(request.body)
    except InvalidJson as exc:
        raise _invalid(str(exc), code=exc.code) from None
    except InvalidText as exc:
        raise _invalid(exc.message, code=exc.code, param=exc.field) from None
    if not isinstance(body, dict):
        raise _invalid("The body must be a JSON object.", code="invalid_json")
    return body


def _hint(request: HttpRequest, metadata: dict, name: str) -> str | None:
    header_name = f"X-Huntaze-{name.capitalize()}"
    header = request.headers.get(header_name)
    if header is None:
        return metadata.get(name)  # the body's text is checked when it is parsed
    try:
        return text_check(header, field=header_name)
    except InvalidText as exc:
        raise _invalid(exc.message, code=exc.code, param=exc.field) from None


def _completion_request(request: HttpRequest, body: dict) -> tuple[CompletionRequest, dict]:
    for name in UNSUPPORTED_PARAMS:
        if body.get(name):
            raise _invalid(f"'{name}' is not supported by this router.", param=name)
    data = _chat_request_validated(body)
    metadata = data["metadata"]
    model = data["model"]
    category = _hint(request, metadata, "category")
    if model.startswith(f"{AUTO}:"):
        category = model.split(":", 1)[1]
    pinned = None if model == AUTO or model.startswith(f"{AUTO}:") else model
    complexity = _hint(request, metadata, "complexity")
    critical = _hint(request, metadata, "critical")
    try:
        complexity = None if complexity is None else float(complexity)
    except ValueError:
        raise _invalid("complexity must be a number from 0 to 10.", param="complexity") from None
    if complexity is not None and not 0 <= complexity <= 10:
        raise _invalid("complexity must be a number from 0 to 10.", param="complexity")
    if critical is not None:
        if str(critical).lower() not in {"true", "false", "1", "0"}:
            raise _invalid("critical must be true or false.", param="critical")
        critical = str(critical).lower() in {"true", "1"}
    messages = data["messages"]
    hints = {"category", "complexity", "critical"}
    completion = CompletionRequest(
        messages=messages,
        category=category or None,
        complexity=complexity,
        critical=critical,
        model=pinned,
        user=data["user"],
        max_tokens=data.get("max_completion_tokens") or data.get("max_tokens"),
        temperature=data.get("temperature"),
        sampling={k: body[k] for k in SAMPLING_PARAMS if body.get(k) is not None},
        metadata={k: v for k, v in metadata.items() if k not in hints},
    )
    return completion, data


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
    return _invalid(exc.message, code=exc.code, param=exc.field)


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
            body = _parse_body(request)
            completion, data = _completion_request(request, body)
            if data["stream"]:
                if request.headers.get(IDEMPOTENCY_HEADER) is not None:
                    raise _invalid("Idempotency-Key is not supported for streams.", param="stream")
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
