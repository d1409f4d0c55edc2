"""Idempotency-Key handling for the completion views (both API shapes)."""

import hashlib
import json
from collections.abc import Awaitable, Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone

from routing.db import db_call
from routing.models import ApiKey
from routing.services import (
    IdempotencyError,
    idempotency_claim,
    idempotency_release,
    idempotency_store,
)

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
REPLAYED_HEADERS = (
    "X-Request-Id",
    "X-Huntaze-Model",
    "X-Huntaze-Tier",
    "X-Huntaze-Category",
    "X-Huntaze-Reason",
    "X-Huntaze-Cache",
    "X-Huntaze-Cost-Usd",
)


async def idempotent(
    request: HttpRequest,
    *,
    api_key: ApiKey,
    body: dict,
    produce: Callable[[], Awaitable[HttpResponse]],
    refuse: Callable[[int, str, str], HttpResponse],
) -> HttpResponse:
    """Answer once per Idempotency-Key: the same key and body replays the first answer (no
    second upstream call, no second ledger row); another body is a 422; a duplicate still
    running is a 409. Answers of 5xx are not kept, so a retry runs again. Keys last 24 h."""
    key = request.headers.get(HEADER)
    if key is None:
        return await produce()
    if not key or len(key) > MAX_KEY_LENGTH:
        return refuse(400, "invalid_idempotency_key", f"{HEADER} must be 1 to 255 characters.")
    digest = hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    try:
        first = await db_call(
            idempotency_claim, api_key=api_key, key=key, body_sha256=digest, now=timezone.now()
        )
    except IdempotencyError as exc:
        return refuse(exc.status, exc.code, exc.message)
    if first is not None:
        stored = first.response_body
        response = JsonResponse(stored["body"], status=first.status_code, headers=stored["headers"])
        response["Idempotent-Replayed"] = "true"
        return response
    try:
        response = await produce()
    except BaseException:
        await db_call(idempotency_release, api_key=api_key, key=key)
        raise
    if response.status_code >= 500 or response.streaming:
        await db_call(idempotency_release, api_key=api_key, key=key)
        return response
    headers = {name: response[name] for name in REPLAYED_HEADERS if response.has_header(name)}
    await db_call(
        idempotency_store,
        api_key=api_key,
        key=key,
        status_code=response.status_code,
        body={"body": json.loads(response.content), "headers": headers},
        request_id=response.get("X-Request-Id", ""),
    )
    return response
