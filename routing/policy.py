"""The policy the engine decides under, as frozen values (no Django, no I/O).

A policy version's snapshot becomes one `Policy` (routing.policy_snapshot): its models with
their price books, each category's rule, the feature flags, the routed share of the rollout,
the router artifacts and a running experiment's split. The engine (routing.engine) reads it,
and so do the request path and the reports that need a model's tier or prices.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum

from routing.classifier import CategoryKeywords
from routing.learned.model import Router
from routing.pricing import PriceRow, price_on
from routing.rollout import ExperimentSplit, FlagRule, flag_on, in_share

# Features that are on when no flag row says otherwise (the others must be switched on).
FLAGS_ON_BY_DEFAULT = frozenset({"routing", "response_cache", "prompt_cache_key", "streaming"})


class Tier(StrEnum):
    MINI = "mini"
    FULL = "full"


class Arm(StrEnum):
    ROUTED = "routed"
    CONTROL = "control"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    tier: Tier
    prices: tuple[PriceRow, ...] = ()  # the model's price book rows, oldest first
    base_url: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    supports_prompt_cache_key: bool = True
    active: bool = True

    def price_on(self, day: date) -> PriceRow:
        """The price row a request of this UTC day bills at."""
        return price_on(self.prices, day)

    @property
    def list_price(self) -> PriceRow:
        """Today's prices (UTC): what estimates use."""
        return self.price_on(datetime.now(UTC).date())


@dataclass(frozen=True)
class CategoryRule:
    slug: str
    mini: ModelSpec
    full: ModelSpec
    full_from: int | None = None
    always_full: bool = False
    system_prompt: str = ""
    system_prompt_tokens: int = 0  # counted once per policy version, with its message overhead
    max_output_tokens: int = 1024
    expected_output_tokens: int = 256
    keywords: tuple[tuple[str, float], ...] = ()  # the keyword classifier's (fallback only)
    pins: tuple[str, ...] = ()  # terms that pin this category, whatever the models say
    triggers: tuple[str, ...] = ()
    enabled: bool = True
    prefix_fingerprint: str = ""  # hash of the stable prompt prefix, for cache health
    response_cache_enabled: bool = False
    response_cache_ttl_s: int = 3600
    response_cache_shared: bool = False
    deadline_s: float = 30.0  # total time for all attempts and fallbacks of one request
    fallback_names: tuple[str, ...] = ()
    shadow_sample_percent: Decimal = Decimal("0")
    quality_floor_percent: Decimal = Decimal("95")
    private: bool = False
    deferrable: bool = False


@dataclass(frozen=True)
class Qualification:
    """A successor answering a sampled share of its predecessor's live traffic, off-path."""

    migration_id: int
    successor: str
    sample_percent: Decimal
    categories: frozenset[str]


@dataclass(frozen=True)
class Policy:
    version: int
    categories: Mapping[str, CategoryRule]
    default_category: str
    min_confidence: float
    models: Mapping[str, ModelSpec] = field(default_factory=dict)
    routed_percent: Decimal = Decimal("100")
    flags: Mapping[str, FlagRule] = field(default_factory=dict)
    classifier_input: tuple[CategoryKeywords, ...] = field(default=(), compare=False)
    router: Router | None = field(default=None, compare=False)  # None: keyword fallback
    router_artifact: str = ""
    # Another artifact deciding for a sticky share of routed subjects (an A/B of two routers).
    trial_router: Router | None = field(default=None, compare=False)
    trial_router_percent: Decimal = Decimal("0")
    # A running experiment (on the published policy only), and the arm a policy plays in one.
    experiment: ExperimentSplit | None = field(default=None, compare=False)
    experiment_id: int | None = None
    experiment_arm: str = ""  # "control" | "treatment" | "" (no experiment)

    # Successors being qualified, by the name of the model they replace (migration assistant).
    qualifications: Mapping[str, Qualification] = field(default_factory=dict)

    def for_subject(self, subject: str) -> "Policy":
        """Return the policy that decides for this subject: an experiment arm's, else this."""
        if self.experiment is None:
            return self
        return self.experiment.arm_policy(subject)

    def feature_on(self, name: str, *, subject: str, api_key_id: int) -> bool:
        """Return whether a feature flag is on for this subject and key."""
        rule = self.flags.get(name)
        if rule is None:
            return name in FLAGS_ON_BY_DEFAULT
        return flag_on(rule, subject=subject, api_key_id=api_key_id)

    def router_for(self, *, subject: str) -> Router | None:
        """Return the router that decides for this subject: the trial's inside its share."""
        if self.trial_router is not None and in_share(
            subject=f"router-trial:{subject}", percent=self.trial_router_percent
        ):
            return self.trial_router
        return self.router

    def arm_for(self, *, subject: str, api_key_id: int) -> Arm:
        """Return the rollout arm: routed inside the routed share while routing is on."""
        if not self.feature_on("routing", subject=subject, api_key_id=api_key_id):
            return Arm.CONTROL
        # At 100% every bucket is inside the share: no need to hash the subject.
        if self.routed_percent >= 100 or in_share(subject=subject, percent=self.routed_percent):
            return Arm.ROUTED
        return Arm.CONTROL

    @classmethod
    def build(
        cls,
        *,
        version: int,
        categories: Mapping[str, CategoryRule],
        default_category: str,
        min_confidence: float,
        models: Mapping[str, ModelSpec] | None = None,
        routed_percent: Decimal = Decimal("100"),
        flags: Mapping[str, FlagRule] | None = None,
        router: Router | None = None,
        router_artifact: str = "",
        trial_router: Router | None = None,
        trial_router_percent: Decimal = Decimal("0"),
        qualifications: Mapping[str, Qualification] | None = None,
    ) -> "Policy":
        """Return a policy with the classifier's input precomputed from enabled categories."""
        classifier_input = tuple(
            CategoryKeywords(slug=rule.slug, keywords=dict(rule.keywords))
            for rule in categories.values()
            if rule.enabled and rule.keywords
        )
        return cls(
            version=version,
            categories=categories,
            default_category=default_category,
            min_confidence=min_confidence,
            models=models or {},
            routed_percent=routed_percent,
            flags=flags or {},
            classifier_input=classifier_input,
            router=router,
            router_artifact=router_artifact if router is not None else "",
            trial_router=trial_router if router is not None else None,
            trial_router_percent=trial_router_percent,
            qualifications=qualifications or {},
        )
