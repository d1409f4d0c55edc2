"""The job of one sampled answer, as it travels to the worker that evaluates it: encrypted.

Shadow evaluation (routing.shadow) and a successor's qualification (routing.qualification)
hand the same job to a background thread and on to the Celery broker. It carries the prompt
and the answer given, Fernet-encrypted with a key derived from SECRET_KEY and readable for
QUALITY_SHADOW_TTL_S only: nothing sits in the broker in clear text, and the stored ledger
text (USAGE_STORE_TEXT) is never read.
"""

import base64
import hashlib
import json
from dataclasses import asdict, dataclass
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


@dataclass(frozen=True)
class ShadowJob:
    """What the evaluation needs from the original request; travels encrypted."""

    request_id: str
    api_key_id: int
    policy_version: int
    category: str
    complexity: float
    complexity_source: str
    cheap_model: str
    premium_model: str
    messages: list[dict]  # as sent to the cheap model (system prefix included)
    request_text: str  # the user turns, for the judge
    cheap_answer: str
    max_tokens: int
    temperature: float | None
    qualifying: int = 0  # a migration's id: replay on successor_model (routing.qualification)
    successor_model: str = ""


def shadow_job(*, call, outcome, premium_model: str, **qualification) -> ShadowJob:
    """Return the job of one answered request: what its evaluation needs, nothing more."""
    decision = call.decision
    return ShadowJob(
        request_id=call.request_id,
        api_key_id=call.api_key.pk,
        policy_version=decision.policy_version,
        category=decision.category,
        complexity=decision.complexity,
        complexity_source=decision.complexity_source,
        cheap_model=decision.model.name,
        premium_model=premium_model,
        messages=call.plan.messages,
        request_text=call.plan.text,
        cheap_answer=outcome.content,
        max_tokens=decision.max_output_tokens,
        temperature=call.request.temperature,
        **qualification,
    )


@lru_cache(maxsize=4)
def _fernet(secret_key: str) -> Fernet:
    digest = hashlib.sha256(b"huntaze-shadow-v1:" + secret_key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def shadow_encrypt(job: ShadowJob) -> str:
    """Return the job as a Fernet token (encrypted and authenticated, timestamped)."""
    payload = json.dumps(asdict(job), separators=(",", ":")).encode()
    return _fernet(settings.SECRET_KEY).encrypt(payload).decode()


def shadow_decrypt(token: str) -> ShadowJob | None:
    """Return the job, or None when the token is expired (QUALITY_SHADOW_TTL_S) or forged."""
    try:
        payload = _fernet(settings.SECRET_KEY).decrypt(
            token.encode(), ttl=settings.QUALITY_SHADOW_TTL_S
        )
    except InvalidToken:
        return None
    return ShadowJob(**json.loads(payload))
