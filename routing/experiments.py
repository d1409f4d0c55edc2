"""Policy experiments: a sticky share of subjects decided and priced under a treatment policy
version, the rest under the published one (the control), moved 10% -> 50% -> 100%, stepped
back, stopped (control kept) or finished (treatment published). Every move is one policy
version, so each worker picks it up at its next version check, like any admin edit.

The staged rollout of routing is an experiment too: control = routing off for everyone,
treatment = routing on for everyone, driven by `rollout_set_percentage` (the rollout page).
"""

import copy
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from routing.engine import RoutingError
from routing.experiment_models import Experiment, ExperimentStatus
from routing.learned.model import ArtifactError
from routing.models import PolicyVersion, RolloutSetting
from routing.policy import Tier
from routing.policy_diff import snapshot_changes
from routing.policy_rows import policy_rows_apply
from routing.policy_snapshot import deep_merge, policy_from_snapshot
from routing.policy_versions import policy_snapshot_build, policy_version_create
from routing.quality import percent_label
from routing.selectors import published_versions

STEPS = (Decimal("10"), Decimal("50"), Decimal("100"))
ROLLOUT_NAME = "Staged rollout: routing on"
ROLLOUT_DRAFT = {"rollout": {"routed_percent": "100"}}


class ExperimentError(Exception):
    """A move the experiments cannot make; `code` is stable, `message` says what to do."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _percent_checked(percent: Decimal) -> Decimal:
    if not Decimal("0") < percent <= Decimal("100"):
        raise ExperimentError(
            "invalid_percent", f"A treatment share is above 0 and at most 100 (not {percent})."
        )
    return percent.quantize(Decimal("0.01"))


def _running_locked() -> Experiment | None:
    return Experiment.objects.select_for_update().filter(status=ExperimentStatus.RUNNING).first()


def _running_required() -> Experiment:
    running = _running_locked()
    if running is None:
        raise ExperimentError("no_running_experiment", "No experiment is running.")
    return running


def _published_snapshot() -> tuple[PolicyVersion, dict]:
    latest = published_versions().first()
    if latest is None:
        raise ExperimentError("no_policy", "No routing policy is configured: run seed_policy.")
    current = policy_snapshot_build()
    current.pop("experiment", None)
    return latest, current


def _draft_version_create(*, current: dict, draft: dict, actor: str, name: str) -> PolicyVersion:
    snapshot = deep_merge(current, draft)
    _loadable(snapshot)
    return PolicyVersion.objects.create(
        actor=actor,
        comment=f"treatment of experiment '{name}'"[:500],
        changes=snapshot_changes(current, snapshot),
        snapshot=snapshot,
        draft=True,
    )


def _loadable(snapshot: dict) -> None:
    """Raise ExperimentError unless the engine can route with this snapshot, each enabled
    category on active models of the right tiers (as the category form demands)."""
    try:
        policy = policy_from_snapshot(version=0, snapshot=snapshot)
    except (KeyError, TypeError, ValueError, ArithmeticError, ArtifactError, RoutingError) as exc:
        raise ExperimentError(
            "invalid_treatment", f"The treatment does not fit the policy: {exc!r}"
        ) from exc
    for rule in policy.categories.values():
        for tier, model in ((Tier.MINI, rule.mini), (Tier.FULL, rule.full)):
            if rule.enabled and (model.tier is not tier or not model.active):
                raise ExperimentError(
                    "invalid_treatment",
                    f"Category '{rule.slug}' would use {model.name} as its {tier} model: "
                    f"it is {'inactive' if not model.active else f'a {model.tier} model'}.",
                )


def _history_add(experiment: Experiment, *, actor: str, move: str, comment: str) -> None:
    experiment.history = [
        *experiment.history,
        {
            "at": timezone.now().isoformat(),
            "actor": actor,
            "move": move,
            "percent": str(experiment.treatment_percent),
            "comment": comment,
        },
    ]


@transaction.atomic
def experiment_start(
    *,
    name: str,
    actor: str,
    treatment: PolicyVersion | None = None,
    draft: dict | None = None,
    percent: Decimal = STEPS[0],
    comment: str = "",
    is_rollout: bool = False,
) -> Experiment:
    """Start an experiment of the published policy against `treatment` (a stored version)
    or `draft` (the published snapshot with these changes, stored as a draft version); the
    treatment gets `percent` of subjects. ExperimentError when one is running already."""
    running = _running_locked()
    if running is not None:
        raise ExperimentError(
            "experiment_running",
            f"Experiment {running.pk} ('{running.name}') is running: finish or stop it "
            "before starting another (one at a time, so each arm's figures are its own).",
        )
    percent = _percent_checked(percent)
    control, current = _published_snapshot()
    if (treatment is None) == (draft is None):
        raise ExperimentError("no_treatment", "Give either a treatment version or a draft.")
    if draft is not None:
        treatment = _draft_version_create(current=current, draft=draft, actor=actor, name=name)
    else:
        _loadable(treatment.snapshot)
    if not snapshot_changes(current, treatment.snapshot):
        raise ExperimentError(
            "same_policy", f"Policy v{treatment.pk} routes exactly like the published policy."
        )
    experiment = Experiment(
        name=name,
        control_version=control,
        treatment_version=treatment,
        treatment_changes=draft,
        treatment_percent=percent,
        is_rollout=is_rollout,
        started_at=timezone.now(),
        started_by=actor,
        comment=comment[:500],
    )
    _history_add(experiment, actor=actor, move="start", comment=comment)
    try:
        with transaction.atomic():
            experiment.save()
    except IntegrityError as exc:  # another start won the race past our lock
        raise ExperimentError("experiment_running", "Another experiment has just started.") from exc
    if not is_rollout:
        # Salted per experiment: each picks its own subjects. The rollout keeps the unsalted
        # hash it always had, so nobody changes arm when it becomes an experiment.
        experiment.salt = f"experiment-{experiment.pk}:"
        experiment.save(update_fields=["salt"])
    share = percent_label(percent)
    _publish(actor, f"experiment {experiment.pk} started: v{treatment.pk} on {share}%")
    return experiment


def _publish(actor: str, comment: str) -> PolicyVersion:
    return policy_version_create(actor=actor, comment=comment[:500])


@transaction.atomic
def experiment_step(*, actor: str, percent: Decimal | None = None, comment: str = "") -> Experiment:
    """Move the running experiment's treatment share to `percent`, or to the next step of
    10 -> 50 -> 100 (raising the share only adds subjects to the treatment)."""
    experiment = _running_required()
    current = experiment.treatment_percent
    if percent is None:
        ahead = [step for step in STEPS if step > current]
        if not ahead:
            raise ExperimentError(
                "last_step", "The treatment has every subject already: finish or step back."
            )
        percent = ahead[0]
    return _experiment_move(experiment, _percent_checked(percent), actor=actor, comment=comment)


@transaction.atomic
def experiment_back(*, actor: str, comment: str = "") -> Experiment:
    """Step the running experiment back to the previous step (100 -> 50 -> 10)."""
    experiment = _running_required()
    behind = [step for step in STEPS if step < experiment.treatment_percent]
    if not behind:
        raise ExperimentError(
            "first_step", "The treatment is at its first step: stop the experiment to end it."
        )
    return _experiment_move(experiment, behind[-1], actor=actor, comment=comment)


def _experiment_move(
    experiment: Experiment, percent: Decimal, *, actor: str, comment: str
) -> Experiment:
    before = experiment.treatment_percent
    experiment.treatment_percent = percent
    move = "step" if percent > before else "back"
    _history_add(experiment, actor=actor, move=move, comment=comment)
    experiment.save(update_fields=["treatment_percent", "history"])
    move_note = f"{percent_label(before)}% -> {percent_label(percent)}%"
    _publish(actor, comment or f"experiment {experiment.pk}: {move_note}")
    return experiment


def _experiment_end(
    experiment: Experiment, status: str, *, actor: str, comment: str, note: str
) -> Experiment:
    experiment.status = status
    experiment.ended_at = timezone.now()
    experiment.ended_by = actor
    _history_add(experiment, actor=actor, move=status, comment=comment)
    experiment.save(update_fields=["status", "ended_at", "ended_by", "history"])
    _publish(actor, f"experiment {experiment.pk} {note}" + (f": {comment}" if comment else ""))
    return experiment


@transaction.atomic
def experiment_stop(*, actor: str, comment: str = "") -> Experiment:
    """End the running experiment keeping the control: everyone on the published policy."""
    experiment = _running_required()
    return _experiment_end(
        experiment, ExperimentStatus.STOPPED, actor=actor, comment=comment, note="stopped"
    )


@transaction.atomic
def experiment_finish(*, actor: str, comment: str = "") -> Experiment:
    """End the running experiment by publishing its treatment for everyone, as one policy
    version (the rows are written as the treatment version has them)."""
    experiment = _running_required()
    problem = policy_rows_apply(snapshot=copy.deepcopy(experiment.treatment_version.snapshot))
    note = f"finished: v{experiment.treatment_version_id} published{problem}"
    return _experiment_end(
        experiment, ExperimentStatus.FINISHED, actor=actor, comment=comment, note=note
    )


@transaction.atomic
def rollout_set_percentage(*, percent: Decimal, actor: str, comment: str = "") -> PolicyVersion:
    """Move the staged rollout to a routed share; returns the policy version it made.

    Between 0 and 100% the rollout is an experiment (control: routing off; treatment:
    routing on); 100% finishes it and 0% stops it. ExperimentError while another
    experiment runs."""
    if not Decimal("0") <= percent <= Decimal("100"):
        raise ExperimentError("invalid_percent", f"Rollout percentage {percent} outside 0-100.")
    running = _running_locked()
    if running is not None and running.is_rollout:
        if percent == 100:
            experiment_finish(actor=actor, comment=comment)
        elif percent == 0:
            experiment_stop(actor=actor, comment=comment)
        elif percent != running.treatment_percent:
            experiment_step(actor=actor, percent=percent, comment=comment)
        return published_versions().first()
    if running is None and Decimal("0") < percent < Decimal("100"):
        setting, _ = RolloutSetting.objects.select_for_update().get_or_create(pk=1)
        setting.routed_percent = Decimal("0")  # the control: the legacy behaviour
        setting.save(update_fields=["routed_percent", "updated_at"])
        experiment_start(
            name=ROLLOUT_NAME,
            actor=actor,
            draft=ROLLOUT_DRAFT,
            percent=percent,
            comment=comment,
            is_rollout=True,
        )
        return published_versions().first()
    if running is not None and Decimal("0") < percent < Decimal("100"):
        raise ExperimentError(
            "experiment_running",
            f"Experiment {running.pk} ('{running.name}') is running: finish or stop it before "
            "a partial rollout.",
        )
    setting, _ = RolloutSetting.objects.select_for_update().get_or_create(pk=1)
    before = setting.routed_percent
    setting.routed_percent = percent
    setting.save(update_fields=["routed_percent", "updated_at"])
    move_note = f"{percent_label(before)}% -> {percent_label(percent)}%"
    return _publish(actor, comment or f"rollout {move_note}")


# The moves after the start, by name (the admin buttons and `manage.py experiment`).
EXPERIMENT_MOVES = {
    "step": experiment_step,
    "back": experiment_back,
    "stop": experiment_stop,
    "finish": experiment_finish,
}
