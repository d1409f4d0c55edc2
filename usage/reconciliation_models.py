"""The provider's own figures and the daily check of the ledger against them: what a provider
says it billed per UTC day and model, and the reconciliation of each day and model (imported
by usage.models: one app, two modules)."""

from django.db import models

from huntaze.money import USD_FIELD


class ProviderUsageSource(models.TextChoices):
    OPENAI_EXPORT = "openai_export", "OpenAI usage and costs export"
    CSV_IMPORT = "csv_import", "CSV import"


class ProviderUsage(models.Model):
    """What a provider reports it billed for one UTC day and model (its usage export or a CSV
    of its bill). Rewritten whole by each fetch or import of that day; never edited by hand."""

    day = models.DateField()
    model = models.CharField(max_length=100)
    provider = models.CharField(max_length=40, default="openai")
    requests = models.PositiveIntegerField()
    input_tokens = models.BigIntegerField(help_text="Cached input tokens included.")
    cached_tokens = models.BigIntegerField()
    cache_write_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField()
    cost_usd = models.DecimalField(**USD_FIELD)
    source = models.CharField(max_length=16, choices=ProviderUsageSource.choices)
    imported_at = models.DateTimeField()

    class Meta:
        ordering = ["-day", "model"]
        constraints = [
            models.UniqueConstraint(
                fields=["day", "model"], name="one_provider_usage_per_day_model"
            )
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.model} ({self.source})"


class ReconciliationStatus(models.TextChoices):
    OK = "ok"
    MISMATCH = "mismatch", "mismatch (over the tolerance)"
    MISSING_PROVIDER = "missing_provider", "missing at the provider"
    MISSING_LEDGER = "missing_ledger", "missing in the ledger"


class Reconciliation(models.Model):
    """The ledger against the provider's figures for one UTC day and model. Differences are
    provider minus ledger; the status compares each against RECONCILE_TOLERANCE_PERCENT."""

    day = models.DateField()
    model = models.CharField(max_length=100)
    status = models.CharField(max_length=16, choices=ReconciliationStatus.choices)
    ledger_requests = models.BigIntegerField()
    provider_requests = models.BigIntegerField()
    requests_difference = models.BigIntegerField()
    ledger_input_tokens = models.BigIntegerField()
    provider_input_tokens = models.BigIntegerField()
    input_tokens_difference = models.BigIntegerField()
    ledger_cached_tokens = models.BigIntegerField()
    provider_cached_tokens = models.BigIntegerField()
    cached_tokens_difference = models.BigIntegerField()
    ledger_cache_write_tokens = models.BigIntegerField()
    provider_cache_write_tokens = models.BigIntegerField()
    cache_write_tokens_difference = models.BigIntegerField()
    ledger_output_tokens = models.BigIntegerField()
    provider_output_tokens = models.BigIntegerField()
    output_tokens_difference = models.BigIntegerField()
    ledger_cost_usd = models.DecimalField(**USD_FIELD)
    provider_cost_usd = models.DecimalField(**USD_FIELD)
    cost_difference_usd = models.DecimalField(**USD_FIELD)
    max_difference_percent = models.DecimalField(
        max_digits=12, decimal_places=4, help_text="The largest difference, in % of the ledger."
    )
    differing = models.CharField(
        max_length=200, blank=True, help_text="The figures over the tolerance."
    )
    reconciled_at = models.DateTimeField()

    class Meta:
        ordering = ["-day", "model"]
        constraints = [
            models.UniqueConstraint(
                fields=["day", "model"], name="one_reconciliation_per_day_model"
            )
        ]
        indexes = [models.Index(fields=["status", "day"])]

    def __str__(self) -> str:
        return f"{self.day} {self.model}: {self.status}"

    @property
    def alert(self) -> bool:
        return self.status != ReconciliationStatus.OK
