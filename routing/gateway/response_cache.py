"""The exact-match response cache: its key, read and write; every failure is a miss."""

import hashlib
import json
import logging

from routing.db import db_call
from routing.gateway.call import Call, CompletionRequest, RoutePlan
from routing.gateway.outcome import LedgerRow, Outcome
from routing.models import ApiKey
from routing.policy import Arm
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


def response_cache_value(row: LedgerRow, *, content: str, finish_reason: str) -> dict:
    """Return what the cache keeps of an answer: its text, tokens and what it was billed."""
    return {
        "content": content,
        "input_tokens": row.input_tokens,
        "output_tokens": row.output_tokens,
        "finish_reason": finish_reason,
        "sandbox": row.sandbox,
        "cost_usd": str(row.cost_usd),
    }


def response_cache_write(key: str, value: dict, ttl_s: int) -> None:
    """Keep an answer; an unreachable cache leaves it unkept (logged), never an error."""
    try:
        shared_cache().set(key, value, ttl_s)
    except Exception as exc:  # noqa: BLE001 - fails open, as documented
        outage_warning(logger, exc, "response cache unavailable (write); answer not cached")


async def response_cache_keep(call: Call, outcome: Outcome, row: LedgerRow) -> None:
    """Keep the call's answer under its key, for the category's TTL."""
    value = response_cache_value(row, content=outcome.content, finish_reason=outcome.finish_reason)
    ttl_s = call.decision.rule.response_cache_ttl_s
    await db_call(response_cache_write, call.cache_key, value, ttl_s)
