"""A move of some categories of one tier from a model to its successor, and the verdicts of
its shadow qualification (imported by routing.models: one app, two modules)."""

from decimal import Decimal

from django.db import models
from django.db.models import Q

from huntaze.money import USD_FIELD
from routing.model_fields import PERCENT_FIELD


class MigrationState(models.TextChoices):
    DRAFT = "draft", "draft (successor chosen)"
    QUALIFYING = "qualifying", "qualifying (shadow traffic judged)"
    STAGED = "staged", "staged switch under way"
    SWITCHED = "switched", "switched"
    CANCELLED = "cancelled"


OPEN_STATES = (MigrationState.DRAFT, MigrationState.QUALIFYING, MigrationState.STAGED)


class ModelMigration(models.Model):
    """Categories of one tier moving from `old_model` to `successor`, in steps: qualify on a
    shadow sample, switch in stages, finish as one policy version."""

    old_model = models.ForeignKey(
        "routing.ModelProfile", on_delete=models.PROTECT, related_name="+"
    )
    successor = models.ForeignKey(
        "routing.ModelProfile", on_delete=models.PROTECT, related_name="+"
    )
    categories = models.JSONField(
        default=list, help_text="Slugs of the categories that move (on the old model's tier)."
    )
    state = models.CharField(
        max_length=12, choices=MigrationState.choices, default=MigrationState.DRAFT
    )
    sample_percent = models.DecimalField(
        **PERCENT_FIELD,
        default=Decimal("5.00"),
        help_text="Share of the old model's answers also sent to the successor and judged.",
    )
    stage_percent = models.DecimalField(
        **PERCENT_FIELD,
        default=Decimal("0"),
        help_text="Share of the moving traffic already on the successor.",
    )
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    switched_version = models.ForeignKey(
        "routing.PolicyVersion",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The policy version that finished the switch.",
    )
    experiment = models.ForeignKey(
        "routing.Experiment",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The policy experiment that stages the switch (treatment: on the successor).",
    )

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["old_model"],
                condition=Q(state__in=["draft", "qualifying", "staged"]),
                name="one_open_migration_per_model",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.old_model.name} -> {self.successor.name} ({self.state})"

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES


class SuccessorVerdict(models.Model):
    """One qualification verdict: a live answer of the old model replayed on the successor and
    judged pairwise in both orders; "successor_better" or "tie" means quality retained. Its
    replay and judge calls are ledger rows flagged qa (metadata "qualification")."""

    migration = models.ForeignKey(ModelMigration, on_delete=models.CASCADE, related_name="verdicts")
    request_id = models.CharField(max_length=40, help_text="The live request replayed.")
    created_at = models.DateTimeField(db_index=True)
    category = models.CharField(max_length=40)
    complexity = models.FloatField()
    judge_model = models.CharField(max_length=100)
    verdict = models.CharField(max_length=16, help_text="From the successor's point of view.")
    verdict_ab = models.CharField(max_length=16, help_text="Successor's answer shown first.")
    verdict_ba = models.CharField(max_length=16, help_text="Today's answer shown first.")
    reasoning = models.TextField(blank=True)
    qa_cost_usd = models.DecimalField(**USD_FIELD, help_text="Replay plus judge calls.")
    sandbox = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["migration", "request_id"], name="one_verdict_per_request_and_migration"
            )
        ]

    def __str__(self) -> str:
        return f"{self.request_id}: {self.verdict}"
