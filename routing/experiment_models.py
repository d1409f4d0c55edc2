"""Policy experiments: two policy versions side by side on sticky shares of subjects, and the
arms a request is decided under (imported by routing.models: one app, several modules)."""

from django.db import models
from django.db.models import Q

from routing.model_fields import PERCENT_FIELD


class ExperimentStatus(models.TextChoices):
    RUNNING = "running"
    FINISHED = "finished", "finished (treatment published)"
    STOPPED = "stopped", "stopped (control kept)"


class ExperimentArm(models.TextChoices):
    CONTROL = "control", "control (the published policy)"
    TREATMENT = "treatment"


class Experiment(models.Model):
    """Two policy versions side by side: a sticky share of subjects is decided and priced
    under the treatment version, the rest under the published policy (the control)."""

    name = models.CharField(max_length=120)
    status = models.CharField(
        max_length=10, choices=ExperimentStatus.choices, default=ExperimentStatus.RUNNING
    )
    control_version = models.ForeignKey(
        "routing.PolicyVersion",
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The published policy when it started (later edits to it are the control too).",
    )
    treatment_version = models.ForeignKey(
        "routing.PolicyVersion", on_delete=models.PROTECT, related_name="+"
    )
    treatment_changes = models.JSONField(
        null=True,
        blank=True,
        help_text="The treatment as changes to the published policy: it follows edits made "
        "during the experiment (each edit stores it again as a draft version). Blank: a fixed "
        "stored version.",
    )
    treatment_percent = models.DecimalField(
        **PERCENT_FIELD,
        help_text="Share of subjects (end users, else API keys) on the treatment arm.",
    )
    salt = models.CharField(
        max_length=40,
        blank=True,
        help_text="Mixed into the assignment hash, so each experiment picks its own subjects.",
    )
    is_rollout = models.BooleanField(
        default=False, help_text="The staged rollout of routing (the rollout page drives it)."
    )
    started_at = models.DateTimeField()
    started_by = models.CharField(max_length=150)
    ended_at = models.DateTimeField(null=True, blank=True)
    ended_by = models.CharField(max_length=150, blank=True)
    comment = models.CharField(max_length=500, blank=True)
    history = models.JSONField(
        default=list, help_text="Each move: when, who, from and to which share, and why."
    )

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["status"],
                condition=Q(status="running"),
                name="at_most_one_running_experiment",
            ),
            models.CheckConstraint(
                condition=Q(treatment_percent__gte=0) & Q(treatment_percent__lte=100),
                name="treatment_percent_within_0_100",
            ),
        ]

    def __str__(self) -> str:
        return f"experiment {self.pk}: {self.name}"

    @property
    def running(self) -> bool:
        return self.status == ExperimentStatus.RUNNING
