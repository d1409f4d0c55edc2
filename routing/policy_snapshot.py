"""A stored policy snapshot read into the engine's values (routing.policy.Policy).

A policy version stores its snapshot as JSON (routing.policy_versions builds it from the
rows); `policy_from_snapshot` turns one into the frozen `Policy` the engine decides under,
counting each system prompt's tokens and loading the version's router once, so the request
path does neither. `deep_merge` puts a draft (a snapshot with only what changes) into one, for
experiments and what-if replays. No database read here: the selectors pass the snapshot in.
"""

import logging
from decimal import Decimal

from django.conf import settings

from routing.learned.runtime import current_artifact_id, router_get, router_status
from routing.policy import CategoryRule, ModelSpec, Policy, Qualification, Tier
from routing.price_book import snapshot_prices
from routing.prompts import prefix_fingerprint
from routing.rollout import FlagRule
from routing.tokens import TOKENS_PER_MESSAGE, count_text_tokens

logger = logging.getLogger(__name__)


def _model_from(data: dict) -> ModelSpec:
    return ModelSpec(
        name=data["name"],
        tier=Tier(data["tier"]),
        prices=snapshot_prices(data),
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
            pins=tuple(t.lower() for t in data.get("pins", ())),
            enabled=data["enabled"],
            prefix_fingerprint=prefix_fingerprint(data["system_prompt"]),
            response_cache_enabled=data.get("response_cache_enabled", False),
            response_cache_ttl_s=data.get("response_cache_ttl_s", 3600),
            response_cache_shared=data.get("response_cache_shared", False),
            deadline_s=float(data.get("deadline_s", 30)),
            fallback_names=tuple(data.get("fallback_models", ())),
            shadow_sample_percent=Decimal(data.get("shadow_sample_percent", "0")),
            quality_floor_percent=Decimal(data.get("quality_floor_percent", "95")),
            private=data.get("private", False),
            deferrable=data.get("deferrable", False),
        )
        for slug, data in snapshot["categories"].items()
    }
    router_section = snapshot.get("router", {})
    router = _policy_router(router_section.get("artifact") or current_artifact_id())
    trial = router_section.get("trial", "")
    trial_percent = Decimal(router_section.get("trial_percent", "0"))
    if trial and trial_percent > 0 and router_status(trial):
        logger.error("router trial %s does not load; no trial: %s", trial, router_status(trial))
        trial = ""
    return Policy.build(
        version=version,
        router=router,
        router_artifact=router.artifact_id if router else "",
        trial_router=router_get(trial) if trial and trial_percent > 0 else None,
        trial_router_percent=trial_percent,
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
        qualifications={
            old: Qualification(
                migration_id=data["migration"],
                successor=data["successor"],
                sample_percent=Decimal(data["sample_percent"]),
                categories=frozenset(data["categories"]),
            )
            for old, data in snapshot.get("qualifications", {}).items()
            if data["successor"] in models
        },
    )


def _policy_router(artifact: str):
    """Return the version's router; if its file is gone or broken, the current artifact's
    (logged, and admin shows it), so a deleted file never turns into an error per request."""
    problem = router_status(artifact)
    if problem and artifact != current_artifact_id():
        logger.error("router %s does not load, the current one decides: %s", artifact, problem)
        return router_get(current_artifact_id())
    return router_get(artifact)


def deep_merge(base: dict, draft: dict) -> dict:
    """Return `base` with `draft`'s values put in, section by section (a policy draft)."""
    merged = dict(base)
    for key, value in draft.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merged[key] = deep_merge(base[key], value)
        else:
            merged[key] = value
    return merged
