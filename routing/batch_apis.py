"""Batch job API: create a job of deferrable requests, read its status and results."""

from decimal import Decimal

from django.conf import settings
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from huntaze.money import decimal_str
from routing.apis import RouteInputSerializer, SizeLimitedApiView, validation_refusal
from routing.batch_models import BatchItemStatus, BatchJob
from routing.batches import BatchRefused, BatchRequest, batch_job_create, batch_job_get
from routing.gateway.call import CompletionRequest
from routing.schema import error_responses


def _refusal(status: int, code: str, message: str, field: str | None = None) -> Response:
    return Response({"error": {"code": code, "message": message, "field": field}}, status=status)


def _item_invalid(index: int, errors: dict) -> Response:
    """The completion endpoint's code for the item's first error, with the item named."""
    refusal = validation_refusal(errors)
    prefix = f"requests[{index}]"
    field = f"{prefix}.{refusal.field}" if refusal.field else prefix
    return _refusal(400, refusal.code, f"{prefix}.{refusal.message}", field)


class BatchJobOutputSerializer(serializers.Serializer):
    def to_representation(self, job: BatchJob) -> dict:
        items = list(job.items.all())
        counts = {status: 0 for status in BatchItemStatus.values}
        for item in items:
            counts[item.status] += 1
        return {
            "id": job.public_id,
            "object": "batch",
            "status": job.status,
            "created_at": job.created_at.isoformat(),
            "completed_at": job.completed_at.isoformat() if job.completed_at else None,
            "metadata": job.metadata,
            "request_counts": {"total": len(items), **counts},
            "cost_usd": decimal_str(sum((i.cost_usd for i in items), Decimal("0"))),
            "provider_batches": [
                {
                    "model": part.model,
                    "state": part.state,
                    "provider_status": part.provider_status,
                    "submit_attempts": part.submit_attempts,
                    "last_error": part.last_error,
                }
                for part in job.provider_batches.all()
            ],
            "results": [_item(item) for item in items],
        }


def _item(item) -> dict:
    row = item.ledger_fields["row"]
    error = None
    if item.error_code:
        error = {"code": item.error_code, "message": item.error_message}
    return {
        "custom_id": item.custom_id,
        "request_id": item.request_id,
        "status": item.status,
        "model": row["model"],
        "tier": row["tier"],
        "category": row["category"],
        "reason": row["reason_code"],
        "content": item.content if item.status == BatchItemStatus.SUCCEEDED else None,
        "finish_reason": item.finish_reason or None,
        "usage": {"input_tokens": item.input_tokens, "output_tokens": item.output_tokens},
        "cost_usd": decimal_str(item.cost_usd),
        "error": error,
    }


class BatchItemInputSerializer(RouteInputSerializer):
    custom_id = serializers.CharField(max_length=64)
    category = serializers.SlugField(max_length=40)  # required: it must be deferrable


class BatchInputSerializer(serializers.Serializer):
    """The envelope; items are validated one by one, so that an error names its item."""

    requests = serializers.ListField(child=serializers.DictField())
    metadata = serializers.DictField(
        child=serializers.CharField(max_length=512, allow_blank=True), required=False
    )


class BatchDocSerializer(BatchInputSerializer):
    """What the schema documents."""

    requests = serializers.ListField(
        child=BatchItemInputSerializer(), min_length=1, max_length=settings.BATCH_MAX_REQUESTS
    )


class BatchJobCreateApi(SizeLimitedApiView):
    """Accept a batch of deferrable requests (202); results come through the Batch API."""

    @extend_schema(
        request=BatchDocSerializer,
        responses={202: OpenApiTypes.OBJECT, **error_responses(400, 401, 403, 413, 415)},
    )
    def post(self, request: Request) -> Response:
        outer = BatchInputSerializer(data=request.data)
        outer.is_valid(raise_exception=True)
        raw = outer.validated_data["requests"]
        if not raw:
            return _refusal(400, "empty_batch", "requests: at least one request.", "requests")
        if len(raw) > settings.BATCH_MAX_REQUESTS:
            message = f"requests: at most {settings.BATCH_MAX_REQUESTS} per batch, got {len(raw)}."
            return _refusal(400, "batch_too_large", message, "requests")
        items, seen = [], set()
        for index, data in enumerate(raw):
            serializer = BatchItemInputSerializer(data=data)
            if not serializer.is_valid():
                return _item_invalid(index, serializer.errors)
            fields = dict(serializer.validated_data)
            custom_id = fields.pop("custom_id")
            if custom_id in seen:
                message = f"requests[{index}].custom_id: '{custom_id}' is used twice."
                return _refusal(400, "duplicate_custom_id", message, f"requests[{index}].custom_id")
            seen.add(custom_id)
            items.append(BatchRequest(custom_id=custom_id, request=CompletionRequest(**fields)))
        try:
            job = batch_job_create(
                api_key=request.auth,
                requests=items,
                metadata=outer.validated_data.get("metadata"),
            )
        except BatchRefused as refused:
            return _refusal(refused.status, refused.code, refused.message)
        job.refresh_from_db()
        return Response(BatchJobOutputSerializer(job).data, status=202)


class BatchJobDetailApi(APIView):
    """A job's status, counts and results; only the key that created it sees it."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT, **error_responses(401, 404)})
    def get(self, request: Request, public_id: str) -> Response:
        job = batch_job_get(public_id=public_id, api_key=request.auth)
        if job is None:
            raise Http404
        return Response(BatchJobOutputSerializer(job).data)
