"""Migration assistant writes: choose a successor, qualify it on shadow traffic, switch in
stages, finish as one audited policy version. Every step that changes routing is a policy
version (routing.policy_versions), so it shows in the audit trail and can be restored."""

from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from routing.model_migration_models import OPEN_STATES, MigrationState, ModelMigration
from routing.models import ModelProfile, PolicyVersion, TaskCategory
from routing.policy_versions import policy_version_create
from routing.quality import percent_label
from routing.selectors import category_traffic_share

STAGE_TRAFFIC_DAYS = 30


class MigrationError(ValueError):
    """A step that cannot be taken; the message says why, for admin and the command."""


def _tier_field(model: ModelProfile) -> str:
    return "mini_model" if model.tier == "mini" else "full_model"


def categories_on(model: ModelProfile) -> list[str]:
    """Return the enabled categories whose tier uses this model, by slug."""
    field = _tier_field(model)
    return sorted(
        TaskCategory.objects.filter(enabled=True, **{field: model}).values_list("slug", flat=True)
    )


@transaction.atomic
def migration_create(
    *,
    old_model: ModelProfile,
    successor: ModelProfile,
    actor: str,
    categories: list[str] | None = None,
    sample_percent: Decimal = Decimal("5"),
) -> ModelMigration:
    """Choose a successor for `old_model` on its tier, for some categories or (none given)
    every enabled category on it; nothing changes in routing yet."""
    if successor.pk == old_model.pk:
        raise MigrationError("The successor must be another model.")
    if successor.tier != old_model.tier:
        raise MigrationError(
            f"{successor.name} is a {successor.tier} model; {old_model.name} is {old_model.tier}."
        )
    if not Decimal("0") <= sample_percent <= Decimal("100"):
        raise MigrationError(f"Sample share {sample_percent} outside 0-100.")
    if ModelMigration.objects.filter(old_model=old_model, state__in=OPEN_STATES).exists():
        raise MigrationError(f"{old_model.name} already has a migration under way.")
    on_model = categories_on(old_model)
    chosen = sorted(set(categories)) if categories else on_model
    strangers = [slug for slug in chosen if slug not in on_model]
    if strangers:
        raise MigrationError(
            f"Not on {old_model.name} ({old_model.tier} tier): {', '.join(strangers)}."
        )
    if not chosen:
        raise MigrationError(f"No enabled category uses {old_model.name}.")
    return ModelMigration.objects.create(
        old_model=old_model,
        successor=successor,
        categories=chosen,
        sample_percent=sample_percent,
        created_by=actor,
    )


def _locked_open(migration: ModelMigration) -> ModelMigration:
    locked = (
        ModelMigration.objects.select_for_update()
        .select_related("old_model", "successor")
        .get(pk=migration.pk)
    )
    if not locked.is_open:
        raise MigrationError(f"This migration is {locked.state}: nothing more to do.")
    return locked


@transaction.atomic
def migration_qualify_start(
    *, migration: ModelMigration, actor: str, sample_percent: Decimal | None = None
) -> PolicyVersion:
    """Start (or resize) shadow qualification: a sampled share of the old model's live
    answers in the moving categories is also sent to the successor and judged."""
    locked = _locked_open(migration)
    if sample_percent is not None:
        if not Decimal("0") < sample_percent <= Decimal("100"):
            raise MigrationError(f"Sample share {sample_percent} outside 0-100.")
        locked.sample_percent = sample_percent
    if locked.sample_percent <= 0:
        raise MigrationError("Choose a sample share above 0% to qualify.")
    if locked.state == MigrationState.DRAFT:
        locked.state = MigrationState.QUALIFYING
    locked.save(update_fields=["sample_percent", "state", "updated_at"])
    return policy_version_create(
        actor=actor,
        comment=f"qualification of {locked.successor.name} for {locked.old_model.name} on "
        f"{percent_label(locked.sample_percent)}% of {', '.join(locked.categories)}",
    )


def stage_categories(*, categories: list[str], shares: dict[str, Decimal], percent: Decimal):
    """Return the categories on the successor at a stage: the quietest first (the least
    traffic at risk), as many as fit in `percent` of the moving traffic, at least one."""
    if percent <= 0:
        return []
    if percent >= 100:
        return list(categories)
    total = sum((shares.get(slug, Decimal("0")) for slug in categories), Decimal("0"))
    if not total:  # no traffic to weigh by: each category counts the same
        shares, total = {slug: Decimal("1") for slug in categories}, Decimal(len(categories))
    quietest = sorted(categories, key=lambda slug: (shares.get(slug, Decimal("0")), slug))
    moved, running = [quietest[0]], shares.get(quietest[0], Decimal("0"))
    for slug in quietest[1:]:
        running += shares.get(slug, Decimal("0"))
        if running * 100 > percent * total:
            break
        moved.append(slug)
    return moved


def _categories_point(*, migration: ModelMigration, on_successor: list[str]) -> None:
    field = _tier_field(migration.old_model)
    if on_successor and not migration.successor.active:
        # A model that answers traffic is an active one (admin's rule form insists too).
        ModelProfile.objects.filter(pk=migration.successor.pk).update(active=True)
    for category in TaskCategory.objects.select_for_update().filter(slug__in=migration.categories):
        target = migration.successor if category.slug in on_successor else migration.old_model
        setattr(category, field, target)
        # A fallback naming the model being left follows it to the successor (and back).
        leaving, arriving = migration.old_model.name, migration.successor.name
        if category.slug not in on_successor:
            leaving, arriving = arriving, leaving
        category.fallback_models = [
            arriving if name == leaving else name for name in category.fallback_models
        ]
        category.save(update_fields=[field, "fallback_models", "updated_at"])


@transaction.atomic
def migration_stage_set(*, migration: ModelMigration, percent: Decimal, actor: str):
    """Move the staged switch to `percent` (10, 50, 100, or back) of the moving traffic.

    The one place where the switch is staged: until policy experiments exist, a stage moves
    whole categories (the quietest first) as one policy version each; stepping back moves
    them back the same way."""
    if not Decimal("0") <= percent <= Decimal("100"):
        raise MigrationError(f"Stage {percent} outside 0-100.")
    locked = _locked_open(migration)
    shares = category_traffic_share(days=STAGE_TRAFFIC_DAYS, now=timezone.now())
    moved = stage_categories(categories=locked.categories, shares=shares, percent=percent)
    _categories_point(migration=locked, on_successor=moved)
    before = locked.stage_percent
    locked.stage_percent = percent
    if locked.state == MigrationState.DRAFT or percent > 0:
        locked.state = MigrationState.STAGED
    locked.save(update_fields=["stage_percent", "state", "updated_at"])
    names = ", ".join(moved) or "none"
    return policy_version_create(
        actor=actor,
        comment=f"staged switch {locked.old_model.name} -> {locked.successor.name}: "
        f"{percent_label(before)}% -> {percent_label(percent)}% (on the successor: {names})",
    )


@transaction.atomic
def migration_finish(*, migration: ModelMigration, actor: str, comment: str = "") -> PolicyVersion:
    """Move every category of the migration to the successor and end its qualification, in
    one policy version."""
    locked = _locked_open(migration)
    _categories_point(migration=locked, on_successor=list(locked.categories))
    locked.state = MigrationState.SWITCHED
    locked.stage_percent = Decimal("100")
    locked.save(update_fields=["state", "stage_percent", "updated_at"])
    version = policy_version_create(
        actor=actor,
        comment=(
            comment
            or f"switched {', '.join(locked.categories)} from {locked.old_model.name} to "
            f"{locked.successor.name}"
        )[:500],
    )
    locked.switched_version = version
    locked.save(update_fields=["switched_version", "updated_at"])
    return version


@transaction.atomic
def migration_cancel(*, migration: ModelMigration, actor: str) -> PolicyVersion:
    """Give the migration up: staged categories go back to the old model, qualification
    stops, in one policy version."""
    locked = _locked_open(migration)
    _categories_point(migration=locked, on_successor=[])
    locked.state = MigrationState.CANCELLED
    locked.save(update_fields=["state", "updated_at"])
    return policy_version_create(
        actor=actor,
        comment=f"migration {locked.old_model.name} -> {locked.successor.name} cancelled",
    )
