from django.db import models

from routing.models import ApiKey, PolicyVersion, Tier

USD_FIELD = {"max_digits": 20, "decimal_places": 10}
PRICE_FIELD = {"max_digits": 12, "decimal_places": 4}


class Status(models.TextChoices):
    OK = "ok"
    UPSTREAM_ERROR = "upstream_error"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    UPSTREAM_RATE_LIMITED = "upstream_rate_limited"
    UPSTREAM_BAD_RESPONSE = "upstream_bad_response"
    CLIENT_CANCELLED = "client_cancelled"


class Arm(models.TextChoices):
    ROUTED = "routed"
    CONTROL = "control", "control (legacy: everything premium)"


class TokenSource(models.TextChoices):
    PROVIDER = "provider", "provider usage"
    TIKTOKEN = "tiktoken", "tiktoken count"
    ESTIMATE = "estimate", "estimate (no tokenizer)"


class UsageRecord(models.Model):
    """One row per request that reached routing, success or failure. Append-only."""

    request_id = models.CharField(max_length=40, unique=True)
    created_at = models.DateTimeField(db_index=True)
    api_key = models.ForeignKey(ApiKey, on_delete=models.PROTECT, related_name="usage_records")
    end_user = models.CharField(max_length=128, blank=True)
    category = models.CharField(max_length=40)
    category_source = models.CharField(max_length=16)  # caller | classifier | default
    complexity = models.FloatField()
    complexity_source = models.CharField(max_length=16)  # caller | estimator
    critical = models.BooleanField()
    tier = models.CharField(max_length=8, choices=Tier.choices)
    model = models.CharField(max_length=100)
    reason_code = models.CharField(max_length=80)
    policy_version = models.ForeignKey(PolicyVersion, on_delete=models.PROTECT, related_name="+")
    input_tokens = models.PositiveIntegerField()
    cached_tokens = models.PositiveIntegerField()
    output_tokens = models.PositiveIntegerField()
    token_source = models.CharField(max_length=12, choices=TokenSource.choices)
    latency_ms = models.PositiveIntegerField()
    cost_usd = models.DecimalField(**USD_FIELD)
    # The layers of savings, per row: baseline - uncached is routing; uncached - cost - avoided
    # is the provider prompt cache (or the batch discount on batch rows); avoided is our cache.
    uncached_cost_usd = models.DecimalField(
        **USD_FIELD, help_text="The chosen model's price for these tokens without any discount."
    )
    avoided_cost_usd = models.DecimalField(
        **USD_FIELD, default=0, help_text="Response-cache hit: what the original call was billed."
    )
    estimated_cost_usd = models.DecimalField(**USD_FIELD)
    estimate_source = models.CharField(max_length=12, choices=TokenSource.choices)
    baseline_cost_usd = models.DecimalField(**USD_FIELD)
    baseline_model = models.CharField(max_length=100)
    price_input_per_mtok_usd = models.DecimalField(**PRICE_FIELD)
    price_cached_input_per_mtok_usd = models.DecimalField(**PRICE_FIELD)
    price_output_per_mtok_usd = models.DecimalField(**PRICE_FIELD)
    status = models.CharField(max_length=24, choices=Status.choices)
    error_code = models.CharField(max_length=40, blank=True)
    sandbox = models.BooleanField(default=False)
    cache_hit = models.BooleanField(default=False, help_text="Answered from the response cache.")
    streamed = models.BooleanField(default=False)
    batch = models.BooleanField(default=False)
    qa = models.BooleanField(
        default=False, help_text="Quality-assurance spend (shadow, judge): kept out of KPIs."
    )
    arm = models.CharField(max_length=8, choices=Arm.choices, default=Arm.ROUTED)
    attempts = models.PositiveSmallIntegerField(default=1)
    prefix_fingerprint = models.CharField(
        max_length=16, blank=True, help_text="Hash of the stable prompt prefix (cache health)."
    )
    metadata = models.JSONField(default=dict, blank=True)
    prompt_text = models.TextField(blank=True)
    response_text = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["api_key", "created_at"]),
            models.Index(fields=["category", "created_at"]),
        ]

    def __str__(self) -> str:
        return self.request_id

    @property
    def savings_usd(self):
        return self.baseline_cost_usd - self.cost_usd
