"""The routing rows written back as a policy snapshot has them.

The inverse of routing.policy_versions.policy_snapshot_build: models, categories (and which
one is the default), the rollout setting with its router artifact, and the feature flags are
updated or created from a stored snapshot. Restoring a version and finishing an experiment
(its treatment becomes the rows) both go through here, then record a new version themselves.
"""

from decimal import Decimal

from routing.learned.runtime import router_status
from routing.models import ApiKey, FeatureFlag, ModelProfile, RolloutSetting, TaskCategory


def policy_rows_apply(*, snapshot: dict) -> str:
    """Write the policy rows as `snapshot` has them (no version recorded: the caller does);
    returns a note for the version's comment when something could not come back."""
    comment = ""
    for name, data in snapshot["models"].items():
        ModelProfile.objects.update_or_create(
            name=name,
            defaults={
                "tier": data["tier"],
                "base_url": data["base_url"],
                "api_key_env": data["api_key_env"],
                "active": data["active"],
                "supports_prompt_cache_key": data.get("supports_prompt_cache_key", True),
                "token_limit_param": data.get("token_limit_param", "max_tokens"),
                "fixed_temperature": data.get("fixed_temperature"),
                "unsupported_params": data.get("unsupported_params", []),
                "reasoning_effort": data.get("reasoning_effort", ""),
            },
        )
    models = {m.name: m for m in ModelProfile.objects.all()}
    TaskCategory.objects.update(is_default=False)
    for slug, data in snapshot["categories"].items():
        rule = {
            "full_from_complexity": data["full_from_complexity"],
            "always_full": data["always_full"],
            "mini_model": models[data["mini_model"]],
            "full_model": models[data["full_model"]],
            "system_prompt": data["system_prompt"],
            "max_output_tokens": data["max_output_tokens"],
            "expected_output_tokens": data["expected_output_tokens"],
            "classifier_keywords": data["keywords"],
            "critical_triggers": data["triggers"],
            "pinned_terms": data.get("pins", []),
            "enabled": data["enabled"],
            "response_cache_enabled": data.get("response_cache_enabled", False),
            "response_cache_ttl_s": data.get("response_cache_ttl_s", 3600),
            "response_cache_shared": data.get("response_cache_shared", False),
            "deadline_s": data.get("deadline_s", 30),
            "fallback_models": data.get("fallback_models", []),
            "shadow_sample_percent": Decimal(data.get("shadow_sample_percent", "2.00")),
            "quality_floor_percent": Decimal(data.get("quality_floor_percent", "95.00")),
            "private": data.get("private", False),
            "deferrable": data.get("deferrable", False),
        }
        TaskCategory.objects.update_or_create(
            slug=slug,
            defaults=rule,
            create_defaults={**rule, "name": slug.replace("_", " ").capitalize()},
        )
    TaskCategory.objects.filter(slug=snapshot["default_category"]).update(is_default=True)
    # The router artifact that version used comes back with it, if it is still on disk.
    artifact = snapshot.get("router", {}).get("artifact", "")
    if artifact and router_status(artifact):
        comment = f" (its router {artifact} no longer loads: the current one kept)"
        artifact = ""
    if "rollout" in snapshot:
        RolloutSetting.objects.update_or_create(
            pk=1,
            defaults={
                "routed_percent": Decimal(snapshot["rollout"]["routed_percent"]),
                "control_behaviour": snapshot["rollout"]["control_behaviour"],
                "router_artifact": artifact,
                # A trial is not restored: it was an experiment of its own time.
                "trial_router_artifact": "",
                "trial_router_percent": Decimal("0"),
            },
        )
    for name, data in snapshot.get("flags", {}).items():
        flag, _ = FeatureFlag.objects.update_or_create(
            name=name,
            defaults={
                "enabled": data["enabled"],
                "percent": None if data["percent"] is None else Decimal(data["percent"]),
            },
        )
        flag.api_keys.set(ApiKey.objects.filter(pk__in=data["api_key_ids"]))
    # A running experiment is not restored either: it lives in its own row.
    return comment
