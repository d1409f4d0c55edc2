"""Reads of routing policy and keys. Nothing here writes."""

import hashlib
import threading
from decimal import Decimal

from django.conf import settings

from routing.engine import CategoryRule, ModelSpec, Policy, RoutingError, Tier
from routing.models import ApiKey, PolicyVersion
from routing.prompts import prefix_fingerprint
from routing.tokens import TOKENS_PER_MESSAGE, count_text_tokens

_memo_lock = threading.Lock()
_memo: dict[str, Policy] = {}


def policy_get() -> Policy:
    """Return the latest policy version as engine dataclasses (one small query when unchanged)."""
    latest_id = PolicyVersion.objects.order_by("-id").values_list("id", flat=True).first()
    if latest_id is None:
        raise RoutingError("no_policy", "No routing policy is configured: run seed_policy.")
    cached = _memo.get("policy")
    if cached is not None and cached.version == latest_id:
        return cached
    snapshot = PolicyVersion.objects.values_list("snapshot", flat=True).get(id=latest_id)
    policy = policy_from_snapshot(version=latest_id, snapshot=snapshot)
    with _memo_lock:
        _memo["policy"] = policy
    return policy


def policy_cache_clear() -> None:
    """Forget the memoised policy (tests roll back versions and may reuse their ids)."""
    with _memo_lock:
        _memo.clear()


def _model_from(data: dict) -> ModelSpec:
    return ModelSpec(
        name=data["name"],
        tier=Tier(data["tier"]),
        input_per_mtok_usd=Decimal(data["input_per_mtok_usd"]),
        cached_input_per_mtok_usd=Decimal(data["cached_input_per_mtok_usd"]),
        output_per_mtok_usd=Decimal(data["output_per_mtok_usd"]),
        base_url=data["base_url"],
        api_key_env=data["api_key_env"],
        supports_prompt_cache_key=data.get("supports_prompt_cache_key", True),
        active=data.get("active", True),
    )


def _system_prompt_tokens(system_prompt: str) -> int:
    if not system_prompt:
        return 0
    tokens, _ = count_text_tokens(system_prompt)
    return tokens + TOKENS_PER_MESSAGE + 1


def policy_from_snapshot(*, version: int, snapshot: dict) -> Policy:
    """Return the engine policy described by a stored snapshot."""
    models = {name: _model_from(data) for name, data in snapshot["models"].items()}
    categories = {
        slug: CategoryRule(
            slug=slug,
            mini=models[data["mini_model"]],
            full=models[data["full_model"]],
            full_from=data["full_from_complexity"],
            always_full=data["always_full"],
            system_prompt=data["system_prompt"],
            system_prompt_tokens=_system_prompt_tokens(data["system_prompt"]),
            max_output_tokens=data["max_output_tokens"],
            expected_output_tokens=data["expected_output_tokens"],
            keywords=tuple(sorted((k.lower(), float(w)) for k, w in data["keywords"].items())),
            triggers=tuple(t.lower() for t in data["triggers"]),
            enabled=data["enabled"],
            prefix_fingerprint=prefix_fingerprint(data["system_prompt"]),
            response_cache_enabled=data.get("response_cache_enabled", False),
            response_cache_ttl_s=data.get("response_cache_ttl_s", 3600),
            response_cache_shared=data.get("response_cache_shared", False),
        )
        for slug, data in snapshot["categories"].items()
    }
    return Policy.build(
        version=version,
        categories=categories,
        default_category=snapshot["default_category"],
        min_confidence=settings.ROUTER_MIN_CATEGORY_CONFIDENCE,
        models=models,
    )


def api_key_get_by_plaintext(*, plaintext: str) -> ApiKey | None:
    """Return the active key whose hash matches, or None."""
    digest = hashlib.sha256(plaintext.encode()).hexdigest()
    return ApiKey.objects.filter(key_hash=digest, revoked_at__isnull=True).first()
