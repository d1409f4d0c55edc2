"""Migration assistant writes: choose a successor, qualify it on shadow traffic, switch in
stages, finish as one audited policy version. Every step that changes routing is a policy
version (routing.policy_versions), so it shows in the audit trail and can be restored."""

from decimal import Decimal

from django.db import transaction

from routing.experiment_models import Experiment, ExperimentStatus
from routing.experiments import (
    ExperimentError,
    experiment_finish,
    experiment_start,
    experiment_step,
    experiment_stop,
)
from routing.model_migration_models import OPEN_STATES, MigrationState, ModelMigration
from routing.models import ModelProfile, PolicyVersion, TaskCategory
from routing.policy_versions import policy_version_create
from routing.quality import percent_label
from routing.selectors import published_versions


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


def treatment_draft(migration: ModelMigration) -> dict:
    """Return the experiment's treatment as a draft (the shape of a what-if draft): the
    migration's categories on the successor for its tier, a fallback naming the old model
    following it to the successor, the successor active (a model that answers is)."""
    field = _tier_field(migration.old_model)
    leaving, arriving = migration.old_model.name, migration.successor.name
    categories = {}
    for category in TaskCategory.objects.filter(slug__in=migration.categories).order_by("slug"):
        categories[category.slug] = {
            field: arriving,
            "fallback_models": [
                arriving if name == leaving else name for name in category.fallback_models
            ],
        }
    return {"models": {arriving: {"active": True}}, "categories": categories}


def _own_running(migration: ModelMigration) -> Experiment | None:
    """The migration's experiment when it is the running one (locked), else None."""
    running = Experiment.objects.select_for_update().filter(status=ExperimentStatus.RUNNING).first()
    if running is not None and running.pk == migration.experiment_id:
        return running
    return None


def _experiment_name(migration: ModelMigration) -> str:
    return f"Migration {migration.pk}: {migration.old_model.name} -> {migration.successor.name}"


@transaction.atomic
def migration_stage_set(*, migration: ModelMigration, percent: Decimal, actor: str):
    """Move the staged switch to `percent` (10, 50, 100, or back) of the moving traffic.

    The stages are a policy experiment: the first stage starts one whose treatment moves the
    migration's categories to the successor, for a sticky share of users; later stages step
    it (up or back), 0% stops it (everyone on the old model). Each move is one policy
    version. MigrationError (nothing written) while another experiment runs."""
    if not Decimal("0") <= percent <= Decimal("100"):
        raise MigrationError(f"Stage {percent} outside 0-100.")
    locked = _locked_open(migration)
    own = _own_running(locked)
    before = locked.stage_percent
    note = (
        f"staged switch {locked.old_model.name} -> {locked.successor.name}: "
        f"{percent_label(before)}% -> {percent_label(percent)}%"
    )
    moved = True  # each branch below publishes one policy version
    try:
        if own is None and percent > 0:
            locked.state = MigrationState.STAGED  # before the start: its treatment snapshot
            locked.save(update_fields=["state", "updated_at"])  # keeps the qualification
            locked.experiment = experiment_start(
                name=_experiment_name(locked),
                actor=actor,
                draft=treatment_draft(locked),
                percent=percent,
                comment=note,
            )
        elif own is not None and percent == 0:
            experiment_stop(actor=actor, comment=f"{note}: everyone back on the old model")
        elif own is not None and percent != own.treatment_percent:
            experiment_step(actor=actor, percent=percent, comment=f"{note} (experiment {own.pk})")
        else:
            moved = False
    except ExperimentError as error:
        raise MigrationError(error.message) from error
    locked.stage_percent = percent
    if locked.state == MigrationState.DRAFT or percent > 0:
        locked.state = MigrationState.STAGED
    locked.save(update_fields=["stage_percent", "state", "experiment", "updated_at"])
    if not moved:
        # Nothing to move in routing: recorded as a version all the same (the audit trail).
        return policy_version_create(actor=actor, comment=note)
    return published_versions().first()


def _legacy_categories_back(migration: ModelMigration) -> None:
    """Categories a migration staged before its stages were experiments (whole categories
    moved) go back to the old model."""
    _categories_point(migration=migration, on_successor=[])


@transaction.atomic
def migration_finish(*, migration: ModelMigration, actor: str, comment: str = "") -> PolicyVersion:
    """Move every category of the migration to the successor and end its qualification, in
    one policy version: the staging experiment finished (its treatment published), or with
    no experiment running for it, the categories moved directly."""
    locked = _locked_open(migration)
    note = (
        comment
        or f"switched {', '.join(locked.categories)} from {locked.old_model.name} to "
        f"{locked.successor.name}"
    )[:500]
    own = _own_running(locked)
    # The migration is closed first, so the one version below no longer qualifies it.
    locked.state = MigrationState.SWITCHED
    locked.stage_percent = Decimal("100")
    locked.save(update_fields=["state", "stage_percent", "updated_at"])
    if own is not None:
        try:
            experiment_finish(actor=actor, comment=note)
        except ExperimentError as error:
            raise MigrationError(error.message) from error
        version = published_versions().first()
    else:
        _categories_point(migration=locked, on_successor=list(locked.categories))
        version = policy_version_create(actor=actor, comment=note)
    locked.switched_version = version
    locked.save(update_fields=["switched_version", "updated_at"])
    return version


@transaction.atomic
def migration_cancel(*, migration: ModelMigration, actor: str) -> PolicyVersion:
    """Give the migration up: its staging experiment stops (everyone on the old model),
    qualification stops, in one policy version."""
    locked = _locked_open(migration)
    own = _own_running(locked)
    locked.state = MigrationState.CANCELLED
    locked.save(update_fields=["state", "updated_at"])
    comment = f"migration {locked.old_model.name} -> {locked.successor.name} cancelled"
    if own is not None:
        try:
            experiment_stop(actor=actor, comment=comment)
        except ExperimentError as error:
            raise MigrationError(error.message) from error
        return published_versions().first()
    _legacy_categories_back(locked)
    return policy_version_create(actor=actor, comment=comment)
