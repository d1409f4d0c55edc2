"""REST API: one class per operation: validate, call one service, serialize."""

import logging
import time

from django.db import DatabaseError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from huntaze.money import decimal_str
from routing.auth import ApiKeyAuthentication
from routing.db import db_call
from routing.engine import RoutingError
from routing.gateway.admission import BudgetExceeded, RateLimited, rate_limit_check
from routing.gateway.call import CompletionFailed, CompletionRequest, route_plan
from routing.gateway.completion import completion_create, completion_stream
from routing.gateway.http import (
    bearer_token,
    body_size_error,
    event_stream_response,
    method_not_allowed,
)
from routing.gateway.idempotency import IDEMPOTENCY_HEADER, idempotent
from routing.json_input import InvalidJson, InvalidText, is_json_media_type, json_body_parse
from routing.schema import USER_MESSAGE_REQUIRED, error_responses
from routing.selectors import api_key_remembered

logger = logging.getLogger(__name__)


MISSING_USER_MESSAGE = "missing_user_message"


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body is too large."
    default_code = "payload_too_large"


class MessageSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=["system", "user", "assistant"])
    content = serializers.CharField(allow_blank=True, trim_whitespace=False)


class RouteInputSerializer(serializers.Serializer):
    """The request shared by /completions and /route."""

    # A ListField, not many=True: drf-spectacular documents its min_length as minItems.
    messages = serializers.ListField(
        child=MessageSerializer(),
        allow_empty=False,
        min_length=1,
        help_text=USER_MESSAGE_REQUIRED,
    )
    category = serializers.SlugField(max_length=40, required=False)
    complexity = serializers.FloatField(min_value=0, max_value=10, required=False)
    critical = serializers.BooleanField(required=False)
    user = serializers.CharField(max_length=128, required=False, allow_blank=True)
    max_tokens = serializers.IntegerField(min_value=1, max_value=128_000, required=False)
    temperature = serializers.FloatField(min_value=0, max_value=2, required=False)
    metadata = serializers.DictField(
        child=serializers.CharField(max_length=512, allow_blank=True), required=False
    )

    def validate_messages(self, messages: list) -> list:
        if not any(message["role"] == "user" for message in messages):
            raise serializers.ValidationError(
                "At least one message with role user is required.", code=MISSING_USER_MESSAGE
            )
        return messages

    def validate_metadata(self, metadata: dict) -> dict:
        if len(metadata) > 16:
            raise serializers.ValidationError("At most 16 metadata keys.")
        return metadata


def _check_body_size(request: HttpRequest) -> None:
    too_large = body_size_error(request)
    if too_large is not None:
        raise PayloadTooLarge(too_large)


class JsonBodyParser(JSONParser):
    """DRF's JSON parser with the doors' shared checks: nesting depth, storable text."""

    def parse(self, stream, media_type=None, parser_context=None):
        return json_body_parse(stream.read())


class SizeLimitedApiView(APIView):
    """Refuses bodies over API_MAX_BODY_BYTES before anything is parsed; reads a body as JSON
    (one without a Content-Type too, as the completion endpoints do)."""

    parser_classes = [JsonBodyParser]

    def initialize_request(self, request: HttpRequest, *args, **kwargs) -> Request:
        if not request.META.get("CONTENT_TYPE"):
            request.META["CONTENT_TYPE"] = "application/json"
        return super().initialize_request(request, *args, **kwargs)

    def initial(self, request: Request, *args, **kwargs) -> None:
        _check_body_size(request)
        super().initial(request, *args, **kwargs)


@method_decorator(csrf_exempt, name="dispatch")
class CompletionCreateApi(View):
    """Async (the ASGI hot path): a stream holds no worker thread. Same auth, validation and
    error shape as the DRF views, through the same exception handler."""

    http_method_names = ["post"]

    class InputSerializer(RouteInputSerializer):
        stream = serializers.BooleanField(default=False)
        stream_options = serializers.DictField(required=False)

    class OutputSerializer(serializers.Serializer):
        def to_representation(self, result) -> dict:
            decision = result.decision
            return {
                "id": result.id,
                "content": result.content,
                "model": decision.model.name,
                "tier": decision.tier.value,
                "category": decision.category,
                "complexity": float(decision.complexity),  # JSON 0.0, never 0
                "critical": decision.critical,
                "reason": decision.reason_code,
                "reason_text": decision.reason_text,
                "usage": {
                    "input_tokens": result.input_tokens,
                    "output_tokens": result.output_tokens,
                    "cached_tokens": result.cached_tokens,
                },
                "latency_ms": result.latency_ms,
                "cost_usd": decimal_str(result.cost_usd),
                "estimated_cost_usd": decimal_str(decision.estimated_cost_usd),
                "baseline_cost_usd": decimal_str(result.baseline_cost_usd),
                "policy_version": decision.policy_version,
                "sandbox": result.sandbox,
                "cache_hit": result.cache_hit,
            }

    async def post(self, request: HttpRequest) -> HttpResponse:
        try:
            api_key = await _api_key_from(request)
            body = _json_body(request)
            data = _validated(self.InputSerializer, body)
            stream = data.pop("stream")
            include_usage = bool(data.pop("stream_options", {}).get("include_usage"))
            completion = CompletionRequest(**data)
            if stream:
                if request.headers.get(IDEMPOTENCY_HEADER) is not None:
                    raise exceptions.ValidationError(
                        {"stream": ["Idempotency-Key is not supported for streams."]}
                    )
                start = await completion_stream(
                    api_key=api_key, request=completion, include_usage=include_usage
                )
                return event_stream_response(start.events, headers={"X-Request-Id": start.id})
        except Exception as exc:  # noqa: BLE001 - every error becomes the documented JSON shape
            return _json_error(exc)

        async def produce() -> HttpResponse:
            try:
                result = await completion_create(api_key=api_key, request=completion)
            except Exception as exc:  # noqa: BLE001
                return _json_error(exc)
            body = self.OutputSerializer(result).data
            return JsonResponse(body, headers={"X-Request-Id": result.id})

        def refuse(status: int, code: str, message: str) -> HttpResponse:
            return JsonResponse(_error_body(code, message, IDEMPOTENCY_HEADER), status=status)

        return await idempotent(request, api_key=api_key, body=body, produce=produce, refuse=refuse)

    def http_method_not_allowed(self, request: HttpRequest, *args, **kwargs):
        def error(message: str) -> HttpResponse:
            return JsonResponse(_error_body("method_not_allowed", message), status=405)

        return method_not_allowed(self, request, error)


async def _api_key_from(request: HttpRequest):
    plaintext = bearer_token(request)
    remembered = api_key_remembered(plaintext=plaintext) if plaintext else None
    if remembered is not None:
        await rate_limit_check(api_key=remembered, now=time.time())
        return remembered
    authenticated = await db_call(ApiKeyAuthentication().authenticate, request)
    if authenticated is None:
        raise exceptions.NotAuthenticated()
    await rate_limit_check(api_key=authenticated[0], now=time.time())
    return authenticated[0]


def _json_body(request: HttpRequest) -> object:
    """The body as every door reads it: within the size limit, JSON, storable text."""
    _check_body_size(request)
    content_type = request.headers.get("Content-Type", "")
    if not is_json_media_type(content_type):
        raise exceptions.UnsupportedMediaType(content_type)
    return json_body_parse(request.body)


def _validated(serializer_class, body: object) -> dict:
    serializer = serializer_class(data=body)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _json_error(exc: Exception) -> JsonResponse:
    drf_response = api_exception_handler(exc, {})
    headers = {k: v for k, v in drf_response.items() if k.lower() != "content-type"}
    return JsonResponse(drf_response.data, status=drf_response.status_code, headers=headers)


class ComplexitySignalSerializer(serializers.Serializer):
    name = serializers.CharField()
    points = serializers.FloatField()
    detail = serializers.CharField()


class RoutePreviewApi(SizeLimitedApiView):
    """The decision for a request, without calling any model and without a ledger row."""

    class InputSerializer(RouteInputSerializer):
        pass

    class OutputSerializer(serializers.Serializer):
        model = serializers.CharField(source="decision.model.name")
        tier = serializers.CharField(source="decision.tier.value")
        arm = serializers.CharField(source="decision.arm.value")
        category = serializers.CharField(source="decision.category")
        category_confidence = serializers.SerializerMethodField()
        category_source = serializers.CharField(source="decision.category_source")
        complexity = serializers.FloatField(source="decision.complexity")
        complexity_source = serializers.CharField(source="decision.complexity_source")
        complexity_signals = ComplexitySignalSerializer(
            source="decision.complexity_signals", many=True
        )
        critical = serializers.BooleanField(source="decision.critical")
        reason = serializers.CharField(source="decision.reason_code")
        reason_text = serializers.CharField(source="decision.reason_text")
        prompt_tokens = serializers.IntegerField()
        token_source = serializers.CharField()
        estimated_cost_usd = serializers.DecimalField(
            source="decision.estimated_cost_usd", max_digits=20, decimal_places=10
        )
        policy_version = serializers.IntegerField(source="decision.policy_version")
        router_artifact = serializers.CharField(source="decision.router_artifact")
        explanation = serializers.JSONField(source="decision.explanation")

        def get_category_confidence(self, plan) -> float:
            return round(plan.decision.category_confidence, 3)

    @extend_schema(
        request=InputSerializer,
        responses={200: OutputSerializer, **error_responses(400, 401, 413, 415, 429, 503)},
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        plan = route_plan(
            messages=data["messages"],
            category=data.get("category"),
            complexity=data.get("complexity"),
            critical=data.get("critical"),
            max_tokens=data.get("max_tokens"),
            user=data.get("user", ""),
            api_key_id=request.auth.pk,
        )
        return Response(self.OutputSerializer(plan).data)


# --- errors: {"error": {"code", "message", "field"}} ------------------------------------

_AUTH_CODES = {"not_authenticated": "missing_api_key", "authentication_failed": "invalid_api_key"}


def _error_body(code: str, message: str, field: str | None = None, **extra) -> dict:
    return {"error": {"code": code, "message": message, "field": field, **extra}}


def _first_validation_error(detail, path: str = "") -> tuple[str | None, str, str]:
    """Return (field path, message, DRF code) of the first error in a nested detail."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            if not value:
                continue
            if key == "non_field_errors":
                sub = path
            elif isinstance(key, int):
                sub = f"{path}[{key}]"  # list serializers key item errors by index
            else:
                sub = f"{path}.{key}" if path else str(key)
            return _first_validation_error(value, sub)
    if isinstance(detail, list):
        for index, value in enumerate(detail):
            if isinstance(value, dict | list):
                if value:
                    return _first_validation_error(value, f"{path}[{index}]")
            else:
                return path or None, str(value), getattr(value, "code", "invalid")
    return path or None, str(detail), getattr(detail, "code", "invalid")


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    """Map every API error to one JSON shape with a stable code."""
    if isinstance(exc, CompletionFailed):
        error = exc.error
        field = getattr(error, "param", None)  # a request the model refused may name one
        body = _error_body(error.code, error.message, field, request_id=exc.request_id)
        return Response(body, status=error.status, headers={"X-Request-Id": exc.request_id})
    if isinstance(exc, BudgetExceeded | RateLimited):
        headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, RateLimited) else {}
        return Response(_error_body(exc.code, exc.message), status=429, headers=headers)
    if isinstance(exc, RoutingError):
        code_status = 503 if exc.code in {"no_policy", "no_default_category"} else 400
        return Response(_error_body(exc.code, exc.message, exc.field), status=code_status)
    if isinstance(exc, Http404):
        return Response(_error_body("not_found", "Not found."), status=404)
    if isinstance(exc, InvalidText):
        return Response(_error_body(exc.code, exc.message, exc.field), status=400)
    if isinstance(exc, InvalidJson):
        return Response(_error_body(exc.code, str(exc)), status=400)
    if isinstance(exc, exceptions.ValidationError):
        field, message, drf_code = _first_validation_error(exc.detail)
        code = "missing_field" if drf_code == "required" else "invalid_field"
        if field == "complexity" and drf_code in {"max_value", "min_value"}:
            code = "complexity_out_of_range"
        if field == "messages" and drf_code in {"empty", "min_length"}:
            code = "empty_messages"
        if drf_code == MISSING_USER_MESSAGE:
            code = MISSING_USER_MESSAGE
        text = f"{field}: {message}" if field and field != "non_field_errors" else message
        return Response(_error_body(code, text, field), status=400)
    if isinstance(exc, exceptions.ParseError):
        return Response(_error_body("invalid_json", str(exc.detail)), status=400)
    if isinstance(exc, exceptions.UnsupportedMediaType):
        return Response(_error_body("unsupported_media_type", str(exc.detail)), status=415)
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        code = _AUTH_CODES.get(exc.default_code, "invalid_api_key")
        return Response(
            _error_body(code, str(exc.detail)), status=401, headers={"WWW-Authenticate": "Bearer"}
        )
    if isinstance(exc, exceptions.APIException):
        headers = {}
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))
        code = exc.default_code if isinstance(exc.default_code, str) else "error"
        return Response(_error_body(code, str(exc.detail)), status=exc.status_code, headers=headers)
    if isinstance(exc, DatabaseError):
        logger.error("database unavailable: %s", exc)
        message = "The service's database is unavailable; retry shortly."
        return Response(_error_body("database_unavailable", message), status=503)
    logger.exception("unhandled API error", exc_info=exc)
    return Response(_error_body("internal_error", "Internal error."), status=500)
