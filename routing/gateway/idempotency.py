"""Idempotency-Key claims, kept answers (encrypted) and their purge; the HTTP half is
routing.idempotent."""

import base64
import hashlib
import hmac
import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.db import IntegrityError, transaction

from routing.models import ApiKey, IdempotencyRecord
from routing.selectors import policy_get

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
