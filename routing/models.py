"""The routing policy's rows: models and their parameter shapes, task categories and their
rules, policy versions, API keys, the rollout setting and feature flags. Rows of other
concerns (batches, experiments, request state, prices, model migrations) live in modules of
their own, imported at the end so Django finds them."""

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from routing.model_fields import PERCENT_FIELD


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
        **PERCENT_FIELD,
        default=Decimal("2.00"),
        help_text="Share of cheap-tier answers replayed on the premium model and judged "
        "(when the quality_sampling flag is on).",
    )
    quality_floor_percent = models.DecimalField(
        **PERCENT_FIELD,
        default=Decimal("95.00"),
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
        **PERCENT_FIELD,
        default=Decimal("100"),
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
        **PERCENT_FIELD,
        default=Decimal("0"),
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
        **PERCENT_FIELD,
        null=True,
        blank=True,
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


# Rows of other concerns live in modules of their own; Django finds them through here, and
# `from routing.models import X` keeps working for each of them.
from routing.batch_models import (  # noqa: E402, F401
    BatchItem,
    BatchItemStatus,
    BatchJob,
    BatchStatus,
    ProviderBatch,
    ProviderBatchState,
)
from routing.experiment_models import Experiment, ExperimentArm, ExperimentStatus  # noqa: E402, F401
from routing.model_migration_models import ModelMigration, SuccessorVerdict  # noqa: E402, F401
from routing.price_models import ModelPrice  # noqa: E402, F401
from routing.quality_models import QualityEvaluation, QualityVerdict  # noqa: E402, F401
from routing.request_state_models import (  # noqa: E402, F401
    BudgetPeriod,
    IdempotencyRecord,
    InFlightRequest,
)
