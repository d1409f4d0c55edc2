"""Idempotency-Key: claims (a lease while the first request runs), kept answers (encrypted
under the client's key) and their purge; and, at the door, `idempotent()`, which both
completion views wrap their answer in (replay, 409, 422, release on a 5xx)."""

import base64
import hashlib
import hmac
import json
import logging
import math
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone

from routing.after_response import outlive_the_client
from routing.db import db_call
from routing.models import ApiKey
from routing.request_state_models import IdempotencyRecord
from routing.selectors import policy_get

logger = logging.getLogger(__name__)

IDEMPOTENCY_TTL = timedelta(hours=24)
# An in-flight claim outlives its request's whole deadline by this much (admission, the ledger
# write, a slow database), so only a claim whose worker died is ever taken over.
IDEMPOTENCY_LEASE_MARGIN = timedelta(seconds=30)
IDEMPOTENCY_CLAIM_TRIES = 5


class IdempotencyError(Exception):
    """An Idempotency-Key the request cannot use now: its HTTP status, code and message."""

    def __init__(
        self, status: int, code: str, message: str, *, retry_after_s: int | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class IdempotencyReplay:
    """A kept first answer: its status and the reply given to idempotency_store."""

    status_code: int
    reply: dict


def idempotency_lease() -> timedelta:
    """Return how long an in-flight claim holds: IDEMPOTENCY_LEASE_S when set, else the
    longest deadline of the enabled categories plus IDEMPOTENCY_LEASE_MARGIN."""
    if settings.IDEMPOTENCY_LEASE_S:
        return timedelta(seconds=settings.IDEMPOTENCY_LEASE_S)
    try:
        rules = policy_get().categories.values()
    except Exception:  # noqa: BLE001 - no policy: the request itself is refused next
        rules = ()
    deadline_s = max((rule.deadline_s for rule in rules if rule.enabled), default=30.0)
    return timedelta(seconds=deadline_s) + IDEMPOTENCY_LEASE_MARGIN


def _idempotency_key_sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _idempotency_cipher(key: str) -> Fernet:
    # Derived from the client's key too: a database reader (even one with SECRET_KEY) cannot
    # read a kept answer without the Idempotency-Key, which is stored only as its hash.
    secret = hmac.new(
        settings.SECRET_KEY.encode(), b"huntaze-idempotency-v1:" + key.encode(), hashlib.sha256
    )
    return Fernet(base64.urlsafe_b64encode(secret.digest()))


def _idempotency_replay(row: IdempotencyRecord, key: str) -> IdempotencyReplay | None:
    try:
        reply = _idempotency_cipher(key).decrypt(row.reply_encrypted.encode())
    except InvalidToken:
        return None  # SECRET_KEY changed since: the answer is lost, the request runs again
    return IdempotencyReplay(status_code=row.status_code, reply=json.loads(reply))


def idempotency_claim(
    *, api_key: ApiKey, key: str, request_digest: str, claim_id: str, now: datetime
) -> IdempotencyReplay | None:
    """Claim the key for this request as `claim_id` (None: go ahead), or return the kept
    first answer. A claim whose lease has passed (its worker died) is taken over.

    Raises IdempotencyError: 422 when the key was used with another request, 409 (with the
    seconds left of the lease) while the first request with it is still running."""
    key_sha256 = _idempotency_key_sha256(key)
    claim = {
        "request_digest": request_digest,
        "state": IdempotencyRecord.IN_FLIGHT,
        "claim_id": claim_id,
        "lease_until": now + idempotency_lease(),
        "expires_at": now + IDEMPOTENCY_TTL,
        "status_code": None,
        "reply_encrypted": "",
        "request_id": "",
    }
    # Between our failed INSERT and our read the row may be released, purged or taken over
    # by a racing duplicate: look again a few times rather than fail the request.
    for _ in range(IDEMPOTENCY_CLAIM_TRIES):
        try:
            with transaction.atomic():
                IdempotencyRecord.objects.create(api_key=api_key, key_sha256=key_sha256, **claim)
            return None
        except IntegrityError:
            pass
        row = IdempotencyRecord.objects.filter(api_key=api_key, key_sha256=key_sha256).first()
        if row is None:
            continue
        if row.expires_at > now:
            if row.request_digest != request_digest:
                raise IdempotencyError(
                    422,
                    "idempotency_key_reused",
                    "This Idempotency-Key was used with another request.",
                )
            if row.state == IdempotencyRecord.IN_FLIGHT and row.lease_until > now:
                raise IdempotencyError(
                    409,
                    "idempotency_in_flight",
                    "A request with this Idempotency-Key is still running.",
                    retry_after_s=max(1, math.ceil((row.lease_until - now).total_seconds())),
                )
            if row.state == IdempotencyRecord.DONE:
                replay = _idempotency_replay(row, key)
                if replay is not None:
                    return replay
        # Expired, its lease passed, or unreadable: take it over unless another did first.
        taken = IdempotencyRecord.objects.filter(
            pk=row.pk, claim_id=row.claim_id, state=row.state
        ).update(**claim)
        if taken:
            return None
    raise IdempotencyError(
        409,
        "idempotency_in_flight",
        "Requests with this Idempotency-Key are racing; retry shortly.",
        retry_after_s=1,
    )


def idempotency_store(
    *, api_key: ApiKey, key: str, claim_id: str, status_code: int, reply: dict, request_id: str
) -> None:
    """Keep the answer for replays, encrypted; a claim taken over meanwhile is left alone."""
    token = _idempotency_cipher(key).encrypt(json.dumps(reply, separators=(",", ":")).encode())
    IdempotencyRecord.objects.filter(
        api_key=api_key,
        key_sha256=_idempotency_key_sha256(key),
        claim_id=claim_id,
        state=IdempotencyRecord.IN_FLIGHT,
    ).update(
        state=IdempotencyRecord.DONE,
        status_code=status_code,
        reply_encrypted=token.decode(),
        request_id=request_id,
    )


def idempotency_release(*, api_key: ApiKey, key: str, claim_id: str) -> None:
    """Forget this request's claim (it failed transiently), so a retry may run it again."""
    IdempotencyRecord.objects.filter(
        api_key=api_key,
        key_sha256=_idempotency_key_sha256(key),
        claim_id=claim_id,
        state=IdempotencyRecord.IN_FLIGHT,
    ).delete()


def idempotency_purge(*, now: datetime) -> int:
    """Delete expired keys; return how many."""
    return IdempotencyRecord.objects.filter(expires_at__lte=now).delete()[0]


# --- at the door: the completion views ------------------------------------------------

IDEMPOTENCY_HEADER = "Idempotency-Key"
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
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return await produce()
    if not key or len(key) > MAX_KEY_LENGTH:
        return refuse(
            400, "invalid_idempotency_key", f"{IDEMPOTENCY_HEADER} must be 1 to 255 characters."
        )
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
