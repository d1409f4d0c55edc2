"""The staged rollout becomes the first experiment: a rollout between 0 and 100% is now an
experiment whose control routes nobody and whose treatment routes everyone, with the same
unsalted assignment, so every user keeps the arm they had."""

import copy
from decimal import Decimal

from django.db import migrations
from django.utils import timezone

NAME = "Staged rollout: routing on"


def _rollout_snapshot(snapshot: dict, percent: str) -> dict:
    changed = copy.deepcopy(snapshot)
    changed.setdefault("rollout", {"control_behaviour": "legacy_premium"})["routed_percent"] = (
        percent
    )
    changed.pop("experiment", None)
    return changed


def rollout_to_experiment(apps, schema_editor):
    RolloutSetting = apps.get_model("routing", "RolloutSetting")
    PolicyVersion = apps.get_model("routing", "PolicyVersion")
    Experiment = apps.get_model("routing", "Experiment")
    setting = RolloutSetting.objects.filter(pk=1).first()
    latest = PolicyVersion.objects.filter(draft=False).order_by("-id").first()
    if setting is None or latest is None or not 0 < setting.routed_percent < 100:
        return  # routing on for everyone or for nobody: nothing is being tried
    percent = setting.routed_percent
    treatment = PolicyVersion.objects.create(
        actor="migration",
        comment=f"treatment of experiment '{NAME}'",
        changes=[f"rollout.routed_percent: '{percent}' -> '100'"],
        snapshot=_rollout_snapshot(latest.snapshot, "100"),
        draft=True,
    )
    now = timezone.now()
    experiment = Experiment.objects.create(
        name=NAME,
        status="running",
        control_version=latest,
        treatment_version=treatment,
        treatment_percent=percent,
        salt="",
        is_rollout=True,
        started_at=now,
        started_by="migration",
        comment=f"the staged rollout at {percent}%, as an experiment",
        history=[
            {
                "at": now.isoformat(),
                "actor": "migration",
                "move": "start",
                "percent": str(percent),
                "comment": "from the rollout setting",
            }
        ],
    )
    setting.routed_percent = Decimal("0")
    setting.save(update_fields=["routed_percent"])
    control = _rollout_snapshot(latest.snapshot, "0.00")
    control["experiment"] = {
        "id": experiment.pk,
        "name": NAME,
        "treatment_version": treatment.pk,
        "treatment_percent": str(percent),
        "salt": "",
    }
    PolicyVersion.objects.create(
        actor="migration",
        comment=f"the staged rollout is experiment {experiment.pk}",
        changes=[
            f"rollout.routed_percent: '{percent}' -> '0.00'",
            f"experiment: none -> {experiment.pk} (treatment v{treatment.pk} on {percent:g}%)",
        ],
        snapshot=control,
    )


def experiment_to_rollout(apps, schema_editor):
    RolloutSetting = apps.get_model("routing", "RolloutSetting")
    PolicyVersion = apps.get_model("routing", "PolicyVersion")
    Experiment = apps.get_model("routing", "Experiment")
    running = Experiment.objects.filter(status="running", is_rollout=True).first()
    latest = PolicyVersion.objects.filter(draft=False).order_by("-id").first()
    if running is None or latest is None:
        return
    percent = running.treatment_percent
    RolloutSetting.objects.filter(pk=1).update(routed_percent=percent)
    running.status, running.ended_at, running.ended_by = "stopped", timezone.now(), "migration"
    running.save(update_fields=["status", "ended_at", "ended_by"])
    PolicyVersion.objects.create(
        actor="migration",
        comment=f"experiment {running.pk} back to the rollout setting",
        changes=[f"rollout.routed_percent: '0.00' -> '{percent}'"],
        snapshot=_rollout_snapshot(latest.snapshot, str(percent)),
    )


class Migration(migrations.Migration):
    dependencies = [("routing", "0017_experiments")]

    operations = [migrations.RunPython(rollout_to_experiment, experiment_to_rollout)]
