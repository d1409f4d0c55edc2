"""REST API: one class per operation: validate, call one service, serialize."""

from django.http import HttpRequest, HttpResponse, JsonResponse
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from huntaze.money import decimal_str
from routing.gateway.call import CompletionRequest, CompletionResult, StreamStart, route_plan
from routing.gateway.http import (
    CompletionDoor,
    DoorAsk,
    body_size_check,
    key_missing,
    key_refused,
    media_type_check,
)
from routing.gateway.wire import NATIVE, Refusal, refusal_from
from routing.json_input import json_body_parse
from routing.schema import USER_MESSAGE_REQUIRED, error_responses

MISSING_USER_MESSAGE = "missing_user_message"


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


class JsonBodyParser(JSONParser):
    """DRF's JSON parser with the doors' shared checks: nesting depth, storable text."""

    def parse(self, stream, media_type=None, parser_context=None):
        return json_body_parse(stream.read())


class SizeLimitedApiView(APIView):
    """The front door's body checks for a DRF view: a body over API_MAX_BODY_BYTES or not sent
    as JSON is refused before it is parsed; a body without a Content-Type reads as JSON, as at
    the completion endpoints."""

    parser_classes = [JsonBodyParser]

    def initialize_request(self, request: HttpRequest, *args, **kwargs) -> Request:
        if not request.META.get("CONTENT_TYPE"):
            request.META["CONTENT_TYPE"] = "application/json"
        return super().initialize_request(request, *args, **kwargs)

    def initial(self, request: Request, *args, **kwargs) -> None:
        # The front door's order: size, key (DRF's authentication and permissions), media type.
        body_size_check(request)
        super().initial(request, *args, **kwargs)
        media_type_check(request)


class CompletionCreateApi(CompletionDoor):
    """The native completion door (async, the ASGI hot path: a stream holds no worker
    thread); everything but its body and answer is the front door's."""

    wire = NATIVE

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

    def ask_parse(self, request: HttpRequest, body: dict) -> DoorAsk:
        serializer = self.InputSerializer(data=body)
        if not serializer.is_valid():
            raise validation_refusal(serializer.errors)
        data = dict(serializer.validated_data)
        stream = data.pop("stream")
        include_usage = bool(data.pop("stream_options", {}).get("include_usage"))
        return DoorAsk(CompletionRequest(**data), stream=stream, include_usage=include_usage)

    def answer(self, result: CompletionResult) -> HttpResponse:
        body = self.OutputSerializer(result).data
        return JsonResponse(body, headers={"X-Request-Id": result.id})

    def stream_headers(self, start: StreamStart) -> dict:
        return {"X-Request-Id": start.id}


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


def validation_refusal(detail) -> Refusal:
    """The 400 for a serializer's errors: its first error, with a code a client can act on."""
    field, message, drf_code = _first_validation_error(detail)
    code = "missing_field" if drf_code == "required" else "invalid_field"
    if field == "complexity" and drf_code in {"max_value", "min_value"}:
        code = "complexity_out_of_range"
    if field == "messages" and drf_code in {"empty", "min_length"}:
        code = "empty_messages"
    if drf_code == MISSING_USER_MESSAGE:
        code = MISSING_USER_MESSAGE
    text = f"{field}: {message}" if field and field != "non_field_errors" else message
    return Refusal(400, code, text, field=field)


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


def _drf_refusal(exc: Exception) -> Refusal | None:
    """The refusal for DRF's own exceptions (the DRF views' parsing, auth and permissions)."""
    if isinstance(exc, exceptions.ValidationError):
        return validation_refusal(exc.detail)
    if isinstance(exc, exceptions.ParseError):
        return Refusal(400, "invalid_json", str(exc.detail))
    if isinstance(exc, exceptions.NotAuthenticated):
        return key_missing()
    if isinstance(exc, exceptions.AuthenticationFailed):
        return key_refused()
    if isinstance(exc, exceptions.APIException):
        headers = {"Retry-After": str(int(exc.wait))} if getattr(exc, "wait", None) else {}
        code = exc.default_code if isinstance(exc.default_code, str) else "error"
        return Refusal(exc.status_code, code, str(exc.detail), headers=headers)
    return None


def api_exception_handler(exc: Exception, context: dict) -> Response:
    """Map every API error to one JSON shape with a stable code (the DRF views' handler)."""
    refusal = _drf_refusal(exc) or refusal_from(exc)
    return Response(NATIVE.body(refusal), status=refusal.status, headers=refusal.headers)
