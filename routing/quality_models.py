"""Shadow evaluation's verdicts (imported by routing.models: one app, several modules).

Routing owns quality evaluation end to end: it samples the answers (routing.shadow), replays
and judges them (routing.shadow_evaluation), stores the verdict (routing.quality_services),
and reads it back for the quality panel, calibration and training (routing.quality_selectors).
The table keeps its first name, usage_qualityevaluation, from when the model lived in usage.
"""

from django.db import models

from huntaze.money import USD_FIELD


class QualityVerdict(models.TextChoices):
    CHEAP_BETTER = "cheap_better", "cheap answer better"
    TIE = "tie"
    PREMIUM_BETTER = "premium_better", "premium answer better"


class QualityEvaluation(models.Model):
    """One shadow evaluation: a cheap-tier answer replayed on the premium model and judged
    pairwise in both orders. Its shadow and judge calls are ledger rows flagged qa."""

    request_id = models.CharField(max_length=40, unique=True, help_text="The judged request.")
    created_at = models.DateTimeField(db_index=True)
    api_key = models.ForeignKey("routing.ApiKey", on_delete=models.PROTECT, related_name="+")
    category = models.CharField(max_length=40)
    complexity = models.FloatField()
    cheap_model = models.CharField(max_length=100)
    premium_model = models.CharField(max_length=100)
    judge_model = models.CharField(max_length=100)
    verdict = models.CharField(max_length=16, choices=QualityVerdict.choices)
    verdict_ab = models.CharField(
        max_length=16, choices=QualityVerdict.choices, help_text="Cheap answer shown first."
    )
    verdict_ba = models.CharField(
        max_length=16, choices=QualityVerdict.choices, help_text="Premium answer shown first."
    )
    reasoning = models.TextField(blank=True, help_text="The judge's reasons, truncated.")
    extra_cost_usd = models.DecimalField(**USD_FIELD, help_text="Shadow plus judge calls.")
    sandbox = models.BooleanField(default=False)
    features = models.JSONField(
        default=dict,
        blank=True,
        help_text="The request as the router saw it, without its text: hashed n-grams with "
        "their weights and the complexity signals (for train_router --with-verdicts).",
    )

    class Meta:
        db_table = "usage_qualityevaluation"  # moved from usage without touching the table
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["category", "created_at"], name="usage_quali_categor_730e81_idx")
        ]

    def __str__(self) -> str:
        return f"{self.request_id}: {self.verdict}"

    @property
    def at_least_as_good(self) -> bool:
        return self.verdict in (QualityVerdict.CHEAP_BETTER, QualityVerdict.TIE)
