"""The ledger (UsageRecord, one append-only row per call) and what is derived from it: the
rollups the dashboard reads, per-end-user days, stored monthly reports, and the shadow
quality evaluations. The provider's figures and their reconciliation live in
usage.reconciliation_models."""

from django.db import models

from huntaze.money import PRICE_FIELD, USD_FIELD
from routing.experiment_models import Experiment, ExperimentArm
from routing.models import ApiKey, PolicyVersion, Tier
from routing.price_models import ModelPrice
from routing.pricing import LINE_ITEMS, ServiceTier


class Status(models.TextChoices):
    OK = "ok"
    UPSTREAM_ERROR = "upstream_error"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    UPSTREAM_RATE_LIMITED = "upstream_rate_limited"
    UPSTREAM_BAD_RESPONSE = "upstream_bad_response"
    REQUEST_REFUSED = "request_refused", "request refused (by the model: the caller's 400)"
    CLIENT_CANCELLED = "client_cancelled"
    ABANDONED = "abandoned", "abandoned (worker lost mid-request)"


class Arm(models.TextChoices):
    ROUTED = "routed"
    CONTROL = "control", "control (legacy: everything premium)"


class TokenSource(models.TextChoices):
    PROVIDER = "provider", "provider usage"
    TIKTOKEN = "tiktoken", "tiktoken count"
    ESTIMATE = "estimate", "estimate (no tokenizer)"


SERVICE_TIERS = [(t.value, t.value) for t in ServiceTier]
# The ledger's and the rollups' line-item columns, in pricing.LINE_ITEMS order.
LINE_ITEM_COLUMNS = tuple(f"cost_{item}_usd" for item in LINE_ITEMS)


class CostLineItems(models.Model):
    """cost_usd line by line (pricing.LINE_ITEMS; they sum to it exactly): on each ledger row,
    and summed in the rollups. Rows from before the price book have them all 0."""

    cost_input_usd = models.DecimalField(**USD_FIELD, default=0)
    cost_cached_usd = models.DecimalField(**USD_FIELD, default=0)
    cost_cache_write_usd = models.DecimalField(**USD_FIELD, default=0)
    cost_output_usd = models.DecimalField(**USD_FIELD, default=0)
    cost_reasoning_usd = models.DecimalField(**USD_FIELD, default=0)
    cost_long_context_usd = models.DecimalField(**USD_FIELD, default=0)
    cost_tier_usd = models.DecimalField(**USD_FIELD, default=0)

    class Meta:
        abstract = True


class UsageRecord(CostLineItems):
    """One row per request that reached routing, success or failure. Append-only."""

    request_id = models.CharField(max_length=40, unique=True)
    created_at = models.DateTimeField(db_index=True)
    api_key = models.ForeignKey(ApiKey, on_delete=models.PROTECT, related_name="usage_records")
    end_user = models.CharField(max_length=128, blank=True)
    category = models.CharField(max_length=40)
    # caller | pinned | safety | model | uncertain (router); classifier | default (keywords)
    category_source = models.CharField(max_length=16)
    complexity = models.FloatField()
    complexity_source = models.CharField(max_length=16)  # caller | router | estimator
    critical = models.BooleanField()
    tier = models.CharField(max_length=8, choices=Tier.choices)
    model = models.CharField(max_length=100)
    reason_code = models.CharField(max_length=80)
    policy_version = models.ForeignKey(PolicyVersion, on_delete=models.PROTECT, related_name="+")
    input_tokens = models.PositiveIntegerField()
    cached_tokens = models.PositiveIntegerField()
    output_tokens = models.PositiveIntegerField()
    # Parts of input_tokens written to the prompt cache, per cache lifetime, and the part of
    # output_tokens the model spent reasoning: each has its own price in the price book.
    cache_write_5m_tokens = models.PositiveIntegerField(default=0)
    cache_write_1h_tokens = models.PositiveIntegerField(default=0)
    reasoning_tokens = models.PositiveIntegerField(default=0)
    service_tier = models.CharField(
        max_length=10, choices=SERVICE_TIERS, default=ServiceTier.DEFAULT.value
    )
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
    price = models.ForeignKey(
        ModelPrice,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="usage_records",
        help_text="The price book row that billed this row.",
    )
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
    experiment = models.ForeignKey(
        Experiment, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    experiment_arm = models.CharField(
        max_length=10,
        choices=ExperimentArm.choices,
        blank=True,
        help_text="Which policy version decided and priced it ('' outside an experiment).",
    )
    attempts = models.PositiveSmallIntegerField(default=1)
    fallback_from = models.CharField(
        max_length=100, blank=True, help_text="The model first chosen, when another answered."
    )
    prefix_fingerprint = models.CharField(
        max_length=16, blank=True, help_text="Hash of the stable prompt prefix (cache health)."
    )
    router_artifact = models.CharField(
        max_length=80, blank=True, help_text="The learned router that decided ('' for keywords)."
    )
    explanation = models.JSONField(
        default=dict, blank=True, help_text="The router models' outputs and top features."
    )
    metadata = models.JSONField(default=dict, blank=True)
    prompt_text = models.TextField(blank=True)
    response_text = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["api_key", "created_at"]),
            models.Index(fields=["category", "created_at"]),
            models.Index(fields=["experiment", "experiment_arm"]),
        ]

    def __str__(self) -> str:
        return self.request_id

    @property
    def savings_usd(self):
        return self.baseline_cost_usd - self.cost_usd


class Granularity(models.TextChoices):
    MINUTE = "minute"
    DAY = "day"


# Upper bounds (ms) of the latency histogram kept in rollups; p95 is read from it. The first
# eleven came later (a 2 ms p95 read as 25 ms): rollups written before them have the other 20
# only, which the dashboard reads as the tail of this list.
LATENCY_BOUNDS_MS = (
    1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20,
    25, 50, 75, 100, 150, 200, 300, 400, 500, 750,
    1000, 1500, 2000, 3000, 5000, 7500, 10000, 20000, 30000, 60000,
)  # fmt: skip


ROLLUP_DIMENSIONS = ["granularity", "bucket_start", "api_key", "category", "tier", "model", "qa"]


class UsageRollup(CostLineItems):
    """Ledger totals per minute or per day and per key, category, tier, model and QA flag.

    Derived data, rebuilt from the ledger for any window by usage_rollup_rebuild(); the
    dashboard and the monthly report read these rows, never the raw ledger.
    """

    granularity = models.CharField(max_length=8, choices=Granularity.choices)
    bucket_start = models.DateTimeField()
    api_key = models.ForeignKey(ApiKey, on_delete=models.PROTECT, related_name="+")
    category = models.CharField(max_length=40)
    tier = models.CharField(max_length=8, choices=Tier.choices)
    model = models.CharField(max_length=100)
    qa = models.BooleanField(default=False)
    requests = models.PositiveIntegerField()
    errors = models.PositiveIntegerField()
    response_cache_hits = models.PositiveIntegerField()
    prompt_cache_hits = models.PositiveIntegerField(help_text="Calls with cached input tokens.")
    input_tokens = models.BigIntegerField()
    cached_tokens = models.BigIntegerField()
    output_tokens = models.BigIntegerField()
    cache_write_tokens = models.BigIntegerField(default=0)
    reasoning_tokens = models.BigIntegerField(default=0)
    latency_ms_sum = models.BigIntegerField()
    latency_cumulative = models.JSONField(
        default=list, help_text="Calls with latency <= each of LATENCY_BOUNDS_MS."
    )
    cost_usd = models.DecimalField(**USD_FIELD)
    uncached_cost_usd = models.DecimalField(**USD_FIELD)
    avoided_cost_usd = models.DecimalField(**USD_FIELD)
    baseline_cost_usd = models.DecimalField(**USD_FIELD)
    prompt_cache_savings_usd = models.DecimalField(**USD_FIELD)
    batch_savings_usd = models.DecimalField(**USD_FIELD)

    class Meta:
        ordering = ["granularity", "bucket_start"]
        constraints = [
            models.UniqueConstraint(
                fields=ROLLUP_DIMENSIONS,
                name="one_rollup_row_per_bucket_and_dimensions",
            )
        ]
        indexes = [models.Index(fields=["granularity", "bucket_start"])]

    def __str__(self) -> str:
        return f"{self.granularity} {self.bucket_start:%Y-%m-%d %H:%M} {self.category}/{self.model}"


class UsageEndUserDay(models.Model):
    """Per end user and day: feeds the report's top end users without a ledger scan."""

    day = models.DateField()
    api_key = models.ForeignKey(ApiKey, on_delete=models.PROTECT, related_name="+")
    end_user = models.CharField(max_length=128)
    requests = models.PositiveIntegerField()
    mini_requests = models.PositiveIntegerField()
    errors = models.PositiveIntegerField()
    input_tokens = models.BigIntegerField()
    cached_tokens = models.BigIntegerField()
    output_tokens = models.BigIntegerField()
    cost_usd = models.DecimalField(**USD_FIELD)
    baseline_cost_usd = models.DecimalField(**USD_FIELD)

    class Meta:
        ordering = ["day", "end_user"]
        constraints = [
            models.UniqueConstraint(
                fields=["day", "api_key", "end_user"], name="one_end_user_row_per_day_and_key"
            )
        ]
        indexes = [models.Index(fields=["day"])]

    def __str__(self) -> str:
        return f"{self.day} {self.end_user}"


class ReportFormat(models.TextChoices):
    CSV = "csv", "CSV"
    XLSX = "xlsx", "XLSX"


class MonthlyReport(models.Model):
    """A stored monthly cost report file (all keys), with its SHA-256, made once per month."""

    year = models.PositiveSmallIntegerField()
    month = models.PositiveSmallIntegerField()
    format = models.CharField(max_length=4, choices=ReportFormat.choices)
    content = models.BinaryField()
    sha256 = models.CharField(max_length=64)
    size_bytes = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-year", "-month", "format"]
        constraints = [
            models.UniqueConstraint(
                fields=["year", "month", "format"], name="one_report_per_month_and_format"
            )
        ]

    def __str__(self) -> str:
        return self.filename

    @property
    def filename(self) -> str:
        return f"huntaze-cost-report-{self.year:04d}-{self.month:02d}.{self.format}"


# The provider's figures and their reconciliation live in their own module; Django finds them
# through here, and `from usage.models import X` keeps working for each of them.
from usage.reconciliation_models import (  # noqa: E402, F401
    ProviderUsage,
    ProviderUsageSource,
    Reconciliation,
    ReconciliationStatus,
)
