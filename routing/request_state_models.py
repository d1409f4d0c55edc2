"""What the request path keeps between the steps of a request: each key's monthly budget, the
requests admitted and not yet recorded, and the answers kept for Idempotency-Key retries
(imported by routing.models: one app, several modules)."""

from decimal import Decimal

from django.db import models

from huntaze.money import USD_FIELD


class BudgetPeriod(models.Model):
    """One key's spend for one month: settled cost plus what in-flight requests reserved."""

    api_key = models.ForeignKey(
        "routing.ApiKey", on_delete=models.CASCADE, related_name="budget_periods"
    )
    month = models.DateField(help_text="First day of the month (UTC).")
    spent_usd = models.DecimalField(**USD_FIELD, default=Decimal("0"))
    reserved_usd = models.DecimalField(**USD_FIELD, default=Decimal("0"))
    alerted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-month"]
        constraints = [
            models.UniqueConstraint(fields=["api_key", "month"], name="one_budget_period_per_month")
        ]

    def __str__(self) -> str:
        return f"{self.api_key} {self.month:%Y-%m}"


class InFlightRequest(models.Model):
    """A request admitted and not yet recorded. Deleted in the transaction that writes its
    ledger row; one still here past its deadline belonged to a lost worker and is swept."""

    request_id = models.CharField(max_length=40, unique=True)
    api_key = models.ForeignKey("routing.ApiKey", on_delete=models.CASCADE, related_name="+")
    budget_period = models.ForeignKey(
        BudgetPeriod, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    reserved_usd = models.DecimalField(**USD_FIELD, default=Decimal("0"))
    deadline_at = models.DateTimeField(db_index=True)
    ledger_fields = models.JSONField(help_text="What the ledger row says if it is swept.")
    quarantined_at = models.DateTimeField(
        null=True, blank=True, help_text="The sweep could not write its row: kept here, skipped."
    )
    quarantine_reason = models.TextField(blank=True)

    def __str__(self) -> str:
        return self.request_id


class IdempotencyRecord(models.Model):
    """The first answer to an Idempotency-Key, replayed to retries of the same request.

    Nothing here is readable without the client's key: the key is kept as its SHA-256 and the
    answer encrypted with a key derived from it and SECRET_KEY (routing.gateway.idempotency). An
    in-flight claim holds until `lease_until`; a retry after that takes it over."""

    IN_FLIGHT, DONE = "in_flight", "done"

    api_key = models.ForeignKey("routing.ApiKey", on_delete=models.CASCADE, related_name="+")
    key_sha256 = models.CharField(max_length=64)
    request_digest = models.CharField(max_length=64)  # HMAC of endpoint, hints and body
    state = models.CharField(max_length=10, choices=[(IN_FLIGHT, IN_FLIGHT), (DONE, DONE)])
    claim_id = models.CharField(max_length=32)  # the request running it: a takeover changes it
    lease_until = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    reply_encrypted = models.TextField(blank=True)  # a Fernet token of the answer
    request_id = models.CharField(max_length=40, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["api_key", "key_sha256"], name="one_idempotency_key_per_api_key"
            )
        ]

    def __str__(self) -> str:
        return self.key_sha256[:12]
