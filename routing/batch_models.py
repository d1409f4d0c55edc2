"""Batch jobs: a caller's deferrable requests, each model's share sent as one provider batch
whose state any worker resumes, and the items that each end as one ledger row (imported by
routing.models: one app, several modules)."""

from decimal import Decimal

from django.db import models

from huntaze.money import USD_FIELD


class BatchStatus(models.TextChoices):
    QUEUED = "queued", "queued (not yet with the provider)"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class BatchJob(models.Model):
    """A caller's batch of deferrable requests; its items are sent through the provider's
    Batch API, one provider batch per model, and billed at the batch price."""

    public_id = models.CharField(max_length=40, unique=True)
    api_key = models.ForeignKey(
        "routing.ApiKey", on_delete=models.PROTECT, related_name="batch_jobs"
    )
    status = models.CharField(
        max_length=12, choices=BatchStatus.choices, default=BatchStatus.QUEUED
    )
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["api_key", "created_at"])]

    def __str__(self) -> str:
        return self.public_id


class ProviderBatchState(models.TextChoices):
    PENDING = "pending", "pending (to upload and create)"
    SUBMITTING = "submitting", "submitting (upload or create under way)"
    SUBMITTED = "submitted", "submitted (polled until final)"
    COLLECTED = "collected", "collected (every item recorded)"


class ProviderBatch(models.Model):
    """One model's share of a job, as one provider batch (file upload + batch create).

    Its state lives here, not in a task: any worker resumes it from these columns."""

    job = models.ForeignKey(BatchJob, on_delete=models.CASCADE, related_name="provider_batches")
    model = models.CharField(max_length=100)
    state = models.CharField(
        max_length=12, choices=ProviderBatchState.choices, default=ProviderBatchState.PENDING
    )
    provider_status = models.CharField(max_length=20, blank=True, help_text="As the API says.")
    input_file_id = models.CharField(max_length=100, blank=True)
    provider_batch_id = models.CharField(max_length=100, blank=True)
    output_file_id = models.CharField(max_length=100, blank=True)
    error_file_id = models.CharField(max_length=100, blank=True)
    submit_attempts = models.PositiveSmallIntegerField(default=0)
    poll_count = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    next_action_at = models.DateTimeField(
        db_index=True, help_text="When a worker may next submit or poll it (a lease)."
    )
    submitted_at = models.DateTimeField(null=True, blank=True)
    collected_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.job} {self.model} ({self.state})"


class BatchItemStatus(models.TextChoices):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class BatchItem(models.Model):
    """One request of a batch; ends as exactly one ledger row (its request_id)."""

    job = models.ForeignKey(BatchJob, on_delete=models.CASCADE, related_name="items")
    provider_batch = models.ForeignKey(
        ProviderBatch,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="items",
        help_text="Blank: answered from the response cache when the job was created.",
    )
    index = models.PositiveIntegerField()
    custom_id = models.CharField(max_length=64)
    follows = models.CharField(
        max_length=64,
        blank=True,
        help_text="custom_id of an identical earlier item: not sent, answered from its result.",
    )
    request_id = models.CharField(max_length=40, unique=True)
    status = models.CharField(
        max_length=12, choices=BatchItemStatus.choices, default=BatchItemStatus.PENDING
    )
    body = models.JSONField(help_text="The chat-completions body sent in the batch file.")
    ledger_fields = models.JSONField(help_text="The decided ledger row, completed at collection.")
    content = models.TextField(blank=True)
    finish_reason = models.CharField(max_length=20, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(**USD_FIELD, default=Decimal("0"))
    error_code = models.CharField(max_length=40, blank=True)
    error_message = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["job", "index"]
        constraints = [
            models.UniqueConstraint(fields=["job", "custom_id"], name="one_custom_id_per_batch")
        ]

    def __str__(self) -> str:
        return f"{self.job} {self.custom_id}"
