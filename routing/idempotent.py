"""Idempotency-Key handling for the completion views (both API shapes)."""

import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import Awaitable, Callable

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone

from routing.after_response import outlive_the_client
from routing.db import db_call
from routing.gateway.idempotency import (
    IdempotencyError,
    idempotency_claim,
    idempotency_release,
    idempotency_store,
)
from routing.models import ApiKey

logger = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
# Request headers that change the answer (routing hints), so they are part of the request.
DIGESTED_HEADER_PREFIX = "x-huntaze-"
REPLAYED_HEADERS = (
    "X-Request-Id",
    "X-Huntaze-Model",
    "X-Huntaze-Tier",
    "X-Huntaze-Category",
    "X-Huntaze-Reason",
    "X-Huntaze-Cache",
    "X-Huntaze-Cost-Usd",
)


def _request_digest(request: HttpRequest, *, key: str, body: dict) -> str:
    """What makes a retry the same request: the endpoint, the X-Huntaze-* hints and the body.
    Keyed with the Idempotency-Key, so the stored digest confirms no guess at a prompt."""
    hints = {
        name.lower(): value
        for name, value in request.headers.items()
        if name.lower().startswith(DIGESTED_HEADER_PREFIX)
    }
    canonical = json.dumps(
        {"endpoint": request.path, "hints": hints, "body": body},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hmac.new(key.encode(), canonical.encode(), hashlib.sha256).hexdigest()


async def idempotent(
    request: HttpRequest,
    *,
    api_key: ApiKey,
    body: dict,
    produce: Callable[[], Awaitable[HttpResponse]],
    refuse: Callable[[int, str, str], HttpResponse],
) -> HttpResponse:
    """Answer once per Idempotency-Key: the same key and request (endpoint, X-Huntaze-*
    hints, body) replays the first answer (no second upstream call, no second ledger row);
    another request is a 422; a duplicate still running is a 409 with Retry-After until the
    first one's lease ends, then a retry takes the claim over. Answers of 5xx are not kept,
    so a retry runs again. Keys last 24 h."""
    key = request.headers.get(HEADER)
    if key is None:
        return await produce()
    if not key or len(key) > MAX_KEY_LENGTH:
        return refuse(400, "invalid_idempotency_key", f"{HEADER} must be 1 to 255 characters.")
    claim = {"api_key": api_key, "key": key, "claim_id": uuid.uuid4().hex}
    try:
        first = await db_call(
            idempotency_claim,
            **claim,
            request_digest=_request_digest(request, key=key, body=body),
            now=timezone.now(),
        )
    except IdempotencyError as exc:
        response = refuse(exc.status, exc.code, exc.message)
        if exc.retry_after_s is not None:
            response["Retry-After"] = str(exc.retry_after_s)
        return response
    except DatabaseError:
        logger.error("idempotency: claim failed (database unavailable)", exc_info=True)
        message = "The service's database is unavailable; retry shortly."
        return refuse(503, "database_unavailable", message)
    if first is not None:
        reply = first.reply
        response = JsonResponse(reply["body"], status=first.status_code, headers=reply["headers"])
        response["Idempotent-Replayed"] = "true"
        return response

    async def produce_and_keep(client_gone) -> HttpResponse:
        # Kept even when the client hung up meanwhile: its retry replays what it paid for.
        try:
            response = await produce()
        except BaseException:
            await _forget(claim)
            raise
        if response.status_code >= 500 or response.streaming:
            await _forget(claim)
            return response
        headers = {name: response[name] for name in REPLAYED_HEADERS if response.has_header(name)}
        try:
            await db_call(
                idempotency_store,
                **claim,
                status_code=response.status_code,
                reply={"body": json.loads(response.content), "headers": headers},
                request_id=response.get("X-Request-Id", ""),
            )
        except DatabaseError:
            # The client has its answer; unkept, the claim ends with its lease and a retry runs.
            logger.warning("idempotency: answer not kept (database unavailable)", exc_info=True)
        return response

    return await outlive_the_client(produce_and_keep)


async def _forget(claim: dict) -> None:
    try:
        await db_call(idempotency_release, **claim)
    except DatabaseError:
        logger.warning("idempotency: claim not released; its lease ends it", exc_info=True)
