"""Policy versions: snapshot the routing rows, record each change as a version, restore an
earlier one, move the rollout and seed the defaults. What a version changed is worked out in
routing.policy_diff; a restore writes the rows back through routing.policy_rows."""

import logging
from decimal import Decimal

from django.db import transaction

from routing.experiment_models import Experiment, ExperimentStatus
from routing.learned.runtime import available_artifacts, current_artifact_id, router_status
from routing.model_migration_models import MigrationState, ModelMigration
from routing.models import (
    FeatureFlag,
    Flag,
    ModelProfile,
    PolicyVersion,
    RolloutSetting,
    TaskCategory,
)
from routing.policy_diff import snapshot_changes
from routing.policy_rows import policy_rows_apply
from routing.policy_snapshot import deep_merge
from routing.price_book import price_row
from routing.price_models import ModelPrice
from routing.pricing import price_row_json
from routing.selectors import POLICY_VERSION_CACHE_KEY, policy_cache_expire, published_versions
from routing.shared_cache import shared_cache

logger = logging.getLogger(__name__)


def _model_snapshot(profile: ModelProfile) -> dict:
    return {
        "name": profile.name,
        "tier": profile.tier,
        "base_url": profile.base_url,
        "api_key_env": profile.api_key_env,
        # The whole price book of the model: a request bills at the row in force on its day,
        # so a price dated tomorrow needs no new version to start billing.
        "prices": [
            price_row_json(price_row(row))
            for row in sorted(profile.prices.all(), key=lambda r: r.effective_from)
        ],
        "active": profile.active,
        "supports_prompt_cache_key": profile.supports_prompt_cache_key,
        "token_limit_param": profile.token_limit_param,
        "fixed_temperature": profile.fixed_temperature,
        "unsupported_params": list(profile.unsupported_params),
        "reasoning_effort": profile.reasoning_effort,
    }


def category_snapshot(category: TaskCategory) -> dict:
    """Return one category's routing rule as the policy snapshot stores it."""
    return {
        "full_from_complexity": category.full_from_complexity,
        "always_full": category.always_full,
        "mini_model": category.mini_model.name,
        "full_model": category.full_model.name,
        "system_prompt": category.system_prompt,
        "max_output_tokens": category.max_output_tokens,
        "expected_output_tokens": category.expected_output_tokens,
        "keywords": category.classifier_keywords,
        "triggers": category.critical_triggers,
        "pins": category.pinned_terms,
        "enabled": category.enabled,
        "response_cache_enabled": category.response_cache_enabled,
        "response_cache_ttl_s": category.response_cache_ttl_s,
        "response_cache_shared": category.response_cache_shared,
        "deadline_s": category.deadline_s,
        "fallback_models": category.fallback_models,
        "shadow_sample_percent": str(category.shadow_sample_percent),
        "quality_floor_percent": str(category.quality_floor_percent),
        "private": category.private,
        "deferrable": category.deferrable,
    }


def policy_snapshot_build() -> dict:
    """Return the current policy rows as a JSON-ready snapshot."""
    categories = TaskCategory.objects.select_related("mini_model", "full_model")
    default = next((c.slug for c in categories if c.is_default), "")
    rollout = RolloutSetting.objects.first()
    flags = FeatureFlag.objects.prefetch_related("api_keys")
    snapshot = {
        "default_category": default,
        "models": {
            p.name: _model_snapshot(p) for p in ModelProfile.objects.prefetch_related("prices")
        },
        "categories": {c.slug: category_snapshot(c) for c in categories},
        "rollout": {
            "routed_percent": str(rollout.routed_percent if rollout else Decimal("100.00")),
            "control_behaviour": rollout.control_behaviour if rollout else "legacy_premium",
        },
        "router": {
            "artifact": (rollout.router_artifact if rollout else "") or current_artifact_id(),
            "trial": rollout.trial_router_artifact if rollout else "",
            "trial_percent": str(rollout.trial_router_percent if rollout else Decimal("0")),
        },
        "flags": {
            flag.name: {
                "enabled": flag.enabled,
                "percent": None if flag.percent is None else str(flag.percent),
                "api_key_ids": sorted(k.pk for k in flag.api_keys.all()),
            }
            for flag in flags
        },
        "qualifications": _qualifications_snapshot(),
    }
    running = Experiment.objects.filter(status=ExperimentStatus.RUNNING).first()
    if running is not None:
        # The published policy is the control; this says who gets the treatment instead.
        snapshot["experiment"] = {
            "id": running.pk,
            "name": running.name,
            "treatment_version": running.treatment_version_id,
            "treatment_percent": str(running.treatment_percent),
            "salt": running.salt,
        }
    return snapshot


def _qualifications_snapshot() -> dict:
    """The successors being qualified, by the model they replace: the hot path samples from
    the policy alone (no database read per request)."""
    # Only the columns it reads: a policy version can be written by a data migration's test
    # at an older schema too.
    qualifying = (
        ModelMigration.objects.filter(state__in=[MigrationState.QUALIFYING, MigrationState.STAGED])
        .select_related("old_model", "successor")
        .only("categories", "sample_percent", "old_model__name", "successor__name")
    )
    return {
        migration.old_model.name: {
            "migration": migration.pk,
            "successor": migration.successor.name,
            "sample_percent": str(migration.sample_percent),
            "categories": sorted(migration.categories),
        }
        for migration in qualifying
        if migration.sample_percent > 0
    }


@transaction.atomic
def policy_version_create(*, actor: str, comment: str = "") -> PolicyVersion:
    """Record the current policy as a new version (or return the latest if nothing changed)."""
    latest = published_versions().select_for_update().first()
    _treatment_follow(actor=actor)
    snapshot = policy_snapshot_build()
    changes = snapshot_changes(latest.snapshot if latest else {}, snapshot)
    if latest is not None and not changes:
        return latest
    version = PolicyVersion.objects.create(
        actor=actor, comment=comment, changes=changes, snapshot=snapshot
    )
    # This process sees it at once; the others at their next version check.
    policy_cache_expire()
    transaction.on_commit(lambda: _policy_version_publish(version.pk))
    return version


def _treatment_follow(*, actor: str) -> None:
    """A running experiment's treatment given as changes is the published policy plus those
    changes: after an edit, store it again (a draft version), so both arms get the edit."""
    running = (
        Experiment.objects.select_for_update()
        .select_related("treatment_version")
        .filter(status=ExperimentStatus.RUNNING, treatment_changes__isnull=False)
        .first()
    )
    if running is None:
        return
    current = policy_snapshot_build()
    current.pop("experiment", None)
    treatment = deep_merge(current, running.treatment_changes)
    before = running.treatment_version.snapshot
    if treatment == before:
        return
    version = PolicyVersion.objects.create(
        actor=actor,
        comment=f"treatment of experiment {running.pk}, with the published policy's edit",
        changes=snapshot_changes(before, treatment),
        snapshot=treatment,
        draft=True,
    )
    running.treatment_version = version
    running.save(update_fields=["treatment_version"])


def _policy_version_publish(version_id: int) -> None:
    try:
        shared_cache().set(POLICY_VERSION_CACHE_KEY, version_id, timeout=None)
    except Exception:  # workers fall back to the database check
        logger.warning("cache unavailable; policy version %s not published", version_id)
    policy_cache_expire()


@transaction.atomic
def policy_version_restore(*, version: PolicyVersion, actor: str) -> PolicyVersion:
    """Put the rows back as an earlier version had them, recorded as a new version."""
    comment = policy_rows_apply(snapshot=version.snapshot)
    return policy_version_create(actor=actor, comment=f"restored version {version.pk}{comment}")


@transaction.atomic
def router_artifact_set(*, artifact_id: str, actor: str, comment: str = "") -> PolicyVersion:
    """Publish a router artifact for every worker; ValueError when it does not load."""
    _require_loadable(artifact_id)
    setting, _ = RolloutSetting.objects.select_for_update().get_or_create(pk=1)
    setting.router_artifact = artifact_id
    if setting.trial_router_artifact == artifact_id:  # the trial's router, for everyone now
        setting.trial_router_artifact, setting.trial_router_percent = "", Decimal("0")
    setting.save(
        update_fields=[
            "router_artifact",
            "trial_router_artifact",
            "trial_router_percent",
            "updated_at",
        ]
    )
    return policy_version_create(actor=actor, comment=comment or f"router artifact {artifact_id}")


def _require_loadable(artifact_id: str) -> None:
    """Raise ValueError unless the artifact is on disk and loads (ids come from forms)."""
    if artifact_id not in available_artifacts():
        raise ValueError(f"No router artifact named '{artifact_id}'.")
    problem = router_status(artifact_id)
    if problem:
        raise ValueError(problem)


@transaction.atomic
def router_trial_set(
    *, artifact_id: str, percent: Decimal, actor: str, comment: str = ""
) -> PolicyVersion:
    """Let another artifact decide for a sticky share of routed users (0% or "" ends the
    trial); ValueError when it does not load or the share is outside 0-100."""
    if not Decimal("0") <= percent <= Decimal("100"):
        raise ValueError(f"Trial share {percent} outside 0-100.")
    if artifact_id:
        _require_loadable(artifact_id)
    setting, _ = RolloutSetting.objects.select_for_update().get_or_create(pk=1)
    trying = bool(artifact_id) and percent > 0
    setting.trial_router_artifact = artifact_id if trying else ""
    setting.trial_router_percent = percent if trying else Decimal("0")
    setting.save(update_fields=["trial_router_artifact", "trial_router_percent", "updated_at"])
    note = f"router trial {artifact_id} on {percent:g}%" if trying else "router trial ended"
    return policy_version_create(actor=actor, comment=comment or note)


@transaction.atomic
def policy_seed(*, actor: str = "seed") -> PolicyVersion:
    """Create the default models and categories that are missing; never overwrite edits."""
    from routing.defaults import DEFAULT_CLASSIFIER_KEYWORDS, DEFAULT_CRITICAL_TRIGGERS
    from routing.seed_data import DEFAULT_CATEGORIES, DEFAULT_MODELS

    for model in DEFAULT_MODELS:
        fields = {k: v for k, v in model.items() if k != "prices"}
        profile, created = ModelProfile.objects.get_or_create(name=model["name"], defaults=fields)
        if created:
            for prices in model["prices"]:
                ModelPrice.objects.create(model=profile, **prices)
    mini = ModelProfile.objects.get(name="gpt-4o-mini")
    full = ModelProfile.objects.get(name="gpt-4o")
    has_default = TaskCategory.objects.filter(is_default=True).exists()
    for category in DEFAULT_CATEGORIES:
        slug = category["slug"]
        defaults = {
            **category,
            "is_default": category.get("is_default", False) and not has_default,
            "mini_model": mini,
            "full_model": full,
            "classifier_keywords": DEFAULT_CLASSIFIER_KEYWORDS.get(slug, {}),
            "critical_triggers": DEFAULT_CRITICAL_TRIGGERS.get(slug, []),
        }
        TaskCategory.objects.get_or_create(slug=slug, defaults=defaults)
    RolloutSetting.objects.get_or_create(pk=1)
    for name in Flag.values:
        # Batch and quality sampling are features still to come: off until switched on.
        enabled = name not in {Flag.BATCH, Flag.QUALITY_SAMPLING}
        FeatureFlag.objects.get_or_create(name=name, defaults={"enabled": enabled})
    return policy_version_create(actor=actor, comment="default policy")
