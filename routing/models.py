from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q


class Tier(models.TextChoices):
    MINI = "mini", "mini (cheap tier)"
    FULL = "full", "full (premium tier)"


class TokenLimitParam(models.TextChoices):
    MAX_TOKENS = "max_tokens", "max_tokens (older chat models)"
    MAX_COMPLETION_TOKENS = "max_completion_tokens", "max_completion_tokens (newer models)"


class ReasoningEffort(models.TextChoices):
    MINIMAL = "minimal"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


def validate_param_names(value: object) -> None:
    """A list of request parameter names."""
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValidationError('A list of parameter names, e.g. ["logprobs", "presence_penalty"].')


class ModelProfile(models.Model):
    """A model as the provider knows it, with its tier and endpoint; its prices are rows of
    the price book (routing.price_models.ModelPrice, `profile.prices`)."""

    name = models.CharField(max_length=100, unique=True, help_text="Model name sent to the API.")
    tier = models.CharField(max_length=8, choices=Tier.choices)
    base_url = models.URLField(
        blank=True, help_text="OpenAI-compatible endpoint; blank = OPENAI_BASE_URL or OpenAI."
    )
    api_key_env = models.CharField(
        max_length=64, default="OPENAI_API_KEY", help_text="Environment variable holding the key."
    )
    context_window_tokens = models.PositiveIntegerField(default=128_000)
    supports_prompt_cache_key = models.BooleanField(
        default=True, help_text="Send a per-category prompt_cache_key (OpenAI supports it)."
    )
    shutdown_on = models.DateField(null=True, blank=True, help_text="Provider retirement date.")
    # Parameter compatibility: how a request is shaped for this model before it is sent.
    token_limit_param = models.CharField(
        max_length=24,
        choices=TokenLimitParam.choices,
        default=TokenLimitParam.MAX_TOKENS,
        help_text="The output limit's name this model takes; the router renames the other.",
    )
    fixed_temperature = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0), MaxValueValidator(2)],
        help_text="The only temperature the model takes (1 for reasoning models): another "
        "one is replaced and top_p dropped. Blank = any.",
    )
    unsupported_params = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_param_names],
        help_text='Parameters dropped before the call, e.g. ["logprobs", "presence_penalty"].',
    )
    reasoning_effort = models.CharField(
        max_length=8,
        choices=ReasoningEffort.choices,
        blank=True,
        help_text="Sent to a reasoning model when the caller sets none; blank = never sent.",
    )
    active = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tier", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.tier})"


class TaskCategory(models.Model):
    """A task category and its routing rule: when it goes to the premium tier, and on what."""

    slug = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=80)
    description = models.TextField(blank=True)
    full_from_complexity = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MaxValueValidator(10)],
        help_text="Complexity (0-10) from which requests go full; blank = never on complexity.",
    )
    always_full = models.BooleanField(default=False, help_text="Critical category: always full.")
    mini_model = models.ForeignKey(
        ModelProfile, on_delete=models.PROTECT, related_name="+", limit_choices_to={"tier": "mini"}
    )
    full_model = models.ForeignKey(
        ModelProfile, on_delete=models.PROTECT, related_name="+", limit_choices_to={"tier": "full"}
    )
    system_prompt = models.TextField(blank=True)
    max_output_tokens = models.PositiveIntegerField(default=1024)
    expected_output_tokens = models.PositiveIntegerField(
        default=256, help_text="Used for the cost estimate before the call."
    )
    classifier_keywords = models.JSONField(
        default=dict,
        blank=True,
        help_text='The keyword classifier\'s terms and weights, e.g. {"refund": 2.0}: used only '
        "when the learned router cannot load (ROUTER_KEYWORD_FALLBACK). To force a category, "
        "use pinned terms.",
    )
    critical_triggers = models.JSONField(
        default=list, blank=True, help_text='Terms that make a request critical, e.g. ["lawsuit"].'
    )
    pinned_terms = models.JSONField(
        default=list,
        blank=True,
        help_text="Terms that put a request in this category whatever the router models say, "
        'e.g. ["chargeback"] (whole words, anywhere in the text).',
    )
    response_cache_enabled = models.BooleanField(
        default=False,
        help_text="Serve identical requests from our cache (not for personal answers).",
    )
    response_cache_ttl_s = models.PositiveIntegerField(default=3600)
    response_cache_shared = models.BooleanField(
        default=False, help_text="Share cached answers across API keys."
    )
    deadline_s = models.PositiveSmallIntegerField(
        default=30,
        validators=[MinValueValidator(1), MaxValueValidator(300)],
        help_text="Total time for one request, retries and fallbacks included.",
    )
    fallback_models = models.JSONField(
        default=list,
        blank=True,
        help_text="Model names to try, in order, when the chosen one keeps failing; empty = "
        "a cheap-tier choice falls back to this category's premium model.",
    )
    is_default = models.BooleanField(
        default=False, help_text="Used when the category cannot be inferred confidently."
    )
    shadow_sample_percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal("2.00"),
        validators=[MinValueValidator(0), MaxValueValidator(100)],
        help_text="Share of cheap-tier answers replayed on the premium model and judged "
        "(when the quality_sampling flag is on).",
    )
    quality_floor_percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal("95.00"),
        validators=[MinValueValidator(0), MaxValueValidator(100)],
        help_text="Alert when the share of cheap answers judged at least as good falls below.",
    )
    private = models.BooleanField(
        default=False, help_text="Never shadow-evaluated: prompts stay with the one call."
    )
    deferrable = models.BooleanField(
        default=False, help_text="Accepts batch jobs, billed at the model's batch price."
    )
    enabled = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]
        verbose_name_plural = "task categories"
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=Q(is_default=True), name="one_default_category"
            ),
            models.CheckConstraint(
                condition=Q(full_from_complexity__isnull=True) | Q(full_from_complexity__lte=10),
                name="threshold_within_0_10",
            ),
        ]

    def __str__(self) -> str:
        return self.slug


class PolicyVersion(models.Model):
    """An immutable snapshot of the whole routing policy; ledger rows point at the one used."""

    created_at = models.DateTimeField(auto_now_add=True)
    actor = models.CharField(max_length=150)
    comment = models.CharField(max_length=500, blank=True)
    changes = models.JSONField(default=list, help_text="What changed against the previous one.")
    snapshot = models.JSONField()
    draft = models.BooleanField(
        default=False,
        help_text="A policy tried in an experiment, never published by itself: the latest "
        "version that is not a draft is the one that routes.",
    )

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"policy v{self.pk}" + (" (draft)" if self.draft else "")


class ApiKey(models.Model):
    """A client application's key; only its SHA-256 is stored."""

    name = models.CharField(max_length=100, unique=True)
    prefix = models.CharField(max_length=12, help_text="First characters, to recognise the key.")
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    monthly_budget_usd = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="Hard limit per calendar month (UTC); blank = no budget.",
    )
    budget_alert_percent = models.PositiveSmallIntegerField(
        default=80,
        validators=[MaxValueValidator(100)],
        help_text="Soft alert when the month's spend reaches this share of the budget.",
    )
    rate_limit_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Requests per minute; blank = no limit (traffic control)."
    )

    class Meta:
        ordering = ["name"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return self.name

    # DRF's IsAuthenticated asks the authenticated principal this.
    is_authenticated = True

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class ControlBehaviour(models.TextChoices):
    LEGACY_PREMIUM = "legacy_premium", "legacy: everything on the premium model, no routing"


class RolloutSetting(models.Model):
    """The staged launch: the share of users whose requests are routed (one row)."""

    routed_percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal("100"),
        validators=[MinValueValidator(0), MaxValueValidator(100)],
        help_text="Share of end users (or API keys, without a user) in the routed arm.",
    )
    control_behaviour = models.CharField(
        max_length=20, choices=ControlBehaviour.choices, default=ControlBehaviour.LEGACY_PREMIUM
    )
    router_artifact = models.CharField(
        max_length=80,
        blank=True,
        help_text="The learned router's artifact (in ROUTER_ARTIFACT_DIR); blank: the current.",
    )
    trial_router_artifact = models.CharField(
        max_length=80, blank=True, help_text="Another artifact tried on a share of routed users."
    )
    trial_router_percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal("0"),
        validators=[MinValueValidator(0), MaxValueValidator(100)],
        help_text="Share of routed users (sticky) whose requests the trial artifact decides.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(routed_percent__gte=0) & Q(routed_percent__lte=100),
                name="routed_percent_within_0_100",
            )
        ]

    def __str__(self) -> str:
        return f"routing on for {self.routed_percent:g}% of users"


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
        PolicyVersion,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The published policy when it started (later edits to it are the control too).",
    )
    treatment_version = models.ForeignKey(PolicyVersion, on_delete=models.PROTECT, related_name="+")
    treatment_changes = models.JSONField(
        null=True,
        blank=True,
        help_text="The treatment as changes to the published policy: it follows edits made "
        "during the experiment (each edit stores it again as a draft version). Blank: a fixed "
        "stored version.",
    )
    treatment_percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        validators=[MinValueValidator(0), MaxValueValidator(100)],
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


class Flag(models.TextChoices):
    ROUTING = "routing"
    RESPONSE_CACHE = "response_cache"
    PROMPT_CACHE_KEY = "prompt_cache_key"
    STREAMING = "streaming"
    BATCH = "batch"
    QUALITY_SAMPLING = "quality_sampling"


class FeatureFlag(models.Model):
    """A switch, optionally limited to a share of users or to listed API keys."""

    name = models.CharField(max_length=32, choices=Flag.choices, unique=True)
    enabled = models.BooleanField(default=True)
    percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(0), MaxValueValidator(100)],
        help_text="Blank = everyone; else the share of users it is on for.",
    )
    api_keys = models.ManyToManyField(
        ApiKey, blank=True, help_text="When any are listed, only these keys get the feature."
    )
    description = models.CharField(max_length=200, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class BudgetPeriod(models.Model):
    """One key's spend for one month: settled cost plus what in-flight requests reserved."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="budget_periods")
    month = models.DateField(help_text="First day of the month (UTC).")
    spent_usd = models.DecimalField(max_digits=20, decimal_places=10, default=Decimal("0"))
    reserved_usd = models.DecimalField(max_digits=20, decimal_places=10, default=Decimal("0"))
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
    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    budget_period = models.ForeignKey(
        BudgetPeriod, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    reserved_usd = models.DecimalField(max_digits=20, decimal_places=10, default=Decimal("0"))
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

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
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


class BatchStatus(models.TextChoices):
    QUEUED = "queued", "queued (not yet with the provider)"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


BATCH_FINAL = (
    BatchStatus.COMPLETED,
    BatchStatus.FAILED,
    BatchStatus.EXPIRED,
    BatchStatus.CANCELLED,
)


class BatchJob(models.Model):
    """A caller's batch of deferrable requests; its items are sent through the provider's
    Batch API, one provider batch per model, and billed at the batch price."""

    public_id = models.CharField(max_length=40, unique=True)
    api_key = models.ForeignKey(ApiKey, on_delete=models.PROTECT, related_name="batch_jobs")
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
    cost_usd = models.DecimalField(max_digits=20, decimal_places=10, default=Decimal("0"))
    error_code = models.CharField(max_length=40, blank=True)
    error_message = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["job", "index"]
        constraints = [
            models.UniqueConstraint(fields=["job", "custom_id"], name="one_custom_id_per_batch")
        ]

    def __str__(self) -> str:
        return f"{self.job} {self.custom_id}"


# The migration assistant's and the price book's rows live in their own modules; Django
# finds them through here.
from routing.model_migration_models import ModelMigration, SuccessorVerdict  # noqa: E402, F401
from routing.price_models import ModelPrice  # noqa: E402, F401
