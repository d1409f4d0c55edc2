"""Reads of routing policy and keys. Nothing here writes."""

import hashlib
import logging
import threading
import time
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache

from routing.engine import CategoryRule, ModelSpec, Policy, RoutingError, Tier
from routing.models import ApiKey, PolicyVersion
from routing.prompts import prefix_fingerprint
from routing.rollout import FlagRule
from routing.tokens import TOKENS_PER_MESSAGE, count_text_tokens

POLICY_VERSION_CACHE_KEY = "routing:policy:latest-version"

logger = logging.getLogger(__name__)
_memo_lock = threading.Lock()
_memo: dict[str, Policy] = {}
_checked_at: dict[str, float] = {}


def policy_get() -> Policy:
    """Return the latest policy as engine dataclasses.

    Each process keeps the policy in memory and checks the shared cache's version number at
    most every POLICY_REFRESH_S seconds, so an admin change reaches every worker within that
    time without a database read per request; the snapshot is read only when it changed.
    """
    cached = _memo.get("policy")
    now = time.monotonic()
    if cached is not None and now - _checked_at.get("policy", 0) < settings.POLICY_REFRESH_S:
        return cached
    latest_id = _latest_version_id()
    if cached is None or cached.version != latest_id:
        cached = _policy_load()
    with _memo_lock:
        _memo["policy"] = cached
        _checked_at["policy"] = now
    return cached


def _latest_version_id() -> int | None:
    try:
        latest_id = cache.get(POLICY_VERSION_CACHE_KEY)
    except Exception:  # a cache outage must not stop routing: ask the database
        logger.warning("cache unavailable for the policy version; reading the database")
        latest_id = None
    if latest_id is None:
        latest_id = PolicyVersion.objects.order_by("-id").values_list("id", flat=True).first()
    return latest_id


def _policy_load() -> Policy:
    latest = PolicyVersion.objects.order_by("-id").values_list("id", "snapshot").first()
    if latest is None:
        raise RoutingError("no_policy", "No routing policy is configured: run seed_policy.")
    version, snapshot = latest
    try:
        cache.set(POLICY_VERSION_CACHE_KEY, version, timeout=None)
    except Exception:
        logger.warning("cache unavailable; policy version not shared")
    return policy_from_snapshot(version=version, snapshot=snapshot)


def policy_cache_clear() -> None:
    """Forget this process's policy, so the next request reads the latest version."""
    with _memo_lock:
        _memo.clear()
        _checked_at.clear()


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
        routed_percent=Decimal(snapshot.get("rollout", {}).get("routed_percent", "100")),
        flags={
            name: FlagRule(
                name=name,
                enabled=data["enabled"],
                percent=None if data["percent"] is None else Decimal(data["percent"]),
                api_key_ids=frozenset(data["api_key_ids"]),
            )
            for name, data in snapshot.get("flags", {}).items()
        },
    )


def api_key_get_by_plaintext(*, plaintext: str) -> ApiKey | None:
    """Return the active key whose hash matches, or None."""
    digest = hashlib.sha256(plaintext.encode()).hexdigest()
    return ApiKey.objects.filter(key_hash=digest, revoked_at__isnull=True).first()
