"""The exact-match response cache: its key, read and write; every failure is a miss."""

import hashlib
import json
import logging

from routing.db import db_call
from routing.engine import Arm
from routing.gateway.call import Call, CompletionRequest, RoutePlan
from routing.models import ApiKey
from routing.shared_cache import outage_warning, shared_cache

logger = logging.getLogger(__name__)


def response_cache_key(
    *, plan: RoutePlan, request: CompletionRequest, api_key: ApiKey
) -> str | None:
    """Return the exact-match key of this answer, or None when the category does not cache."""
    rule = plan.decision.rule
    if not rule.response_cache_enabled or not plan.feature_on("response_cache"):
        return None
    if plan.decision.arm is not Arm.ROUTED:
        return None  # the control arm is the legacy behaviour: no cache either
    normalised = json.dumps(
        {
            "category": plan.decision.category,
            "tier": plan.decision.tier.value,
            "model": plan.decision.model.name,
            "messages": plan.messages,
            "max_tokens": plan.decision.max_output_tokens,
            "temperature": request.temperature,
            "sampling": request.sampling,
        },
        sort_keys=True,
        ensure_ascii=False,
    )
    scope = "shared" if rule.response_cache_shared else f"key{api_key.pk}"
    return f"respcache:{scope}:{hashlib.sha256(normalised.encode()).hexdigest()}"


def response_cache_read(key: str) -> dict | None:
    """Read the response cache; an unreachable cache is a miss (logged), never an error."""
    try:
        return shared_cache().get(key)
    except Exception as exc:  # noqa: BLE001 - fails open, as documented
        outage_warning(logger, exc, "response cache unavailable (read); answering without it")
        return None


async def response_cache_write(call: Call, value: dict) -> None:
    try:
        ttl_s = call.decision.rule.response_cache_ttl_s
        await db_call(shared_cache().set, call.cache_key, value, ttl_s)
    except Exception as exc:  # noqa: BLE001 - fails open, as documented
        outage_warning(logger, exc, "response cache unavailable (write); answer not cached")
