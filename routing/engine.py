"""The routing decision: pure functions of plain values (no Django, no I/O).

Decision tree (the brief's): critical -> full, always; complexity at or above the
category's threshold -> full; otherwise mini. Criticality comes from the caller's flag,
the category's always_full, or one of the category's trigger terms.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum

from routing.classifier import CategoryKeywords, classify, find_trigger
from routing.complexity import ComplexitySignal, estimate_complexity
from routing.learned.model import Router, RouterPrediction
from routing.pricing import PriceRow, call_cost_usd, price_on
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

    def for_subject(self, subject: str) -> "Policy":
        """Return the policy that decides for this subject: an experiment arm's, else this."""
        if self.experiment is None:
            return self
        return self.experiment.arm_policy(subject)

    # Successors being qualified, by the name of the model they replace (migration assistant).
    qualifications: Mapping[str, Qualification] = field(default_factory=dict)

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


@dataclass(frozen=True)
class RouteRequest:
    text: str
    prompt_tokens: int  # the caller's messages; the category's system prompt is added to it
    category: str | None = None
    complexity: float | None = None
    critical: bool | None = None
    max_tokens: int | None = None
    model: str | None = None  # a concrete model the caller pinned: no routing, still recorded
    subject: str = ""  # who the rollout assignment sticks to (see routing.rollout)
    api_key_id: int = 0


@dataclass(frozen=True)
class Decision:
    model: ModelSpec
    tier: Tier
    category: str
    category_confidence: float
    category_source: str
    complexity: float
    complexity_source: str
    complexity_signals: tuple[ComplexitySignal, ...]
    critical: bool
    reason_code: str
    reason_text: str
    max_output_tokens: int
    expected_output_tokens: int
    estimated_cost_usd: Decimal
    baseline_model: ModelSpec
    system_prompt: str
    prompt_tokens: int
    policy_version: int
    rule: CategoryRule
    arm: Arm = Arm.ROUTED
    router_artifact: str = ""  # "" when the keyword classifier decided (fallback)
    explanation: Mapping = field(default_factory=dict)  # top features of each model
    experiment_id: int | None = None
    experiment_arm: str = ""  # the experiment arm whose policy version decided and priced it


class RoutingError(Exception):
    """A request the policy cannot route (unknown or disabled category)."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


@dataclass(frozen=True)
class TierChoice:
    tier: Tier
    reason_code: str
    reason_text: str


def decide(
    *, rule: CategoryRule, complexity: float, critical_by: str | None, trigger: str | None = None
) -> TierChoice:
    """Return the tier for one request: critical -> full, complex -> full, else mini."""
    if rule.always_full:
        return TierChoice(
            Tier.FULL,
            f"critical:category={rule.slug}",
            f"'{rule.slug}' is a critical category: always the premium tier.",
        )
    if critical_by == "caller":
        return TierChoice(
            Tier.FULL, "critical:caller", "The caller marked the request critical: premium tier."
        )
    if critical_by == "trigger":
        return TierChoice(
            Tier.FULL,
            f"critical:trigger:category={rule.slug}",
            f"The text mentions '{trigger}', a critical term for '{rule.slug}': premium tier.",
        )
    if rule.full_from is not None and complexity >= rule.full_from:
        return TierChoice(
            Tier.FULL,
            f"complexity>={rule.full_from}:category={rule.slug}",
            f"Complexity {complexity:g} reaches '{rule.slug}' threshold {rule.full_from}: "
            "premium tier.",
        )
    if rule.full_from is None:
        text = f"'{rule.slug}' stays on the cheap tier at any complexity."
    else:
        text = f"Complexity {complexity:g} is below '{rule.slug}' threshold {rule.full_from}."
    return TierChoice(Tier.MINI, "default:mini", text + " Cheap tier.")


@dataclass(frozen=True)
class _Category:
    rule: CategoryRule
    confidence: float
    source: str  # caller | pinned | safety | model | uncertain | classifier | default


def _resolve_category(
    request: RouteRequest, policy: Policy, prediction: RouterPrediction | None
) -> _Category:
    if request.category is not None:
        rule = policy.categories.get(request.category)
        if rule is None:
            raise RoutingError(
                "unknown_category", f"Unknown category '{request.category}'.", "category"
            )
        if not rule.enabled:
            raise RoutingError(
                "category_disabled", f"Category '{request.category}' is disabled.", "category"
            )
        return _Category(rule, 1.0, "caller")
    for rule in policy.categories.values():
        # An operator's pinned term wins over every model.
        if rule.enabled and rule.pins and find_trigger(request.text, rule.pins):
            return _Category(rule, 1.0, "pinned")
    if prediction is None:
        found = classify(
            request.text,
            categories=policy.classifier_input,
            default_category=policy.default_category,
            min_confidence=policy.min_confidence,
        )
        slug, confidence = found.category, found.confidence
        source = "default" if found.fell_back else "classifier"
    elif prediction.unsafe and _enabled(policy, "moderation"):
        slug, confidence, source = "moderation", prediction.unsafe_probability, "safety"
    elif prediction.category_probability >= policy.min_confidence and _enabled(
        policy, prediction.category
    ):
        slug, confidence, source = prediction.category, prediction.category_probability, "model"
    else:
        slug, confidence, source = (
            policy.default_category,
            prediction.category_probability,
            "uncertain",
        )
    rule = policy.categories.get(slug)
    if rule is None or not rule.enabled:
        raise RoutingError("no_default_category", "No enabled default category is configured.")
    return _Category(rule, confidence, source)


def _enabled(policy: Policy, slug: str) -> bool:
    rule = policy.categories.get(slug)
    return rule is not None and rule.enabled


def _complexity_from(prediction: RouterPrediction) -> tuple[float, tuple[ComplexitySignal, ...]]:
    """Return the needs-premium probability on the 0-10 scale, with the hand-made signals it
    reads (their points and details say in words what the text looks like)."""
    return round(10 * prediction.needs_premium, 1), prediction.estimate.signals


def _pinned_model(name: str, policy: Policy) -> ModelSpec:
    model = policy.models.get(name)
    if model is None or not model.active:
        raise RoutingError("model_not_found", f"The model '{name}' does not exist.", "model")
    return model


def route(*, request: RouteRequest, policy: Policy) -> Decision:
    """Return the full routing decision for one request under one policy snapshot (the
    subject's experiment arm's, while an experiment runs)."""
    policy = policy.for_subject(request.subject)
    needs_models = request.category is None or request.complexity is None
    router = policy.router_for(subject=request.subject) if needs_models else None
    category_known = request.category is not None
    prediction = (
        router.predict(request.text, category_known=category_known) if router is not None else None
    )
    resolved = _resolve_category(request, policy, prediction)
    rule = resolved.rule
    if request.complexity is not None:
        complexity, complexity_source, signals = request.complexity, "caller", ()
    elif prediction is not None:
        complexity, signals = _complexity_from(prediction)
        complexity_source = "router"
    else:
        estimate = estimate_complexity(request.text, token_count=request.prompt_tokens)
        complexity, complexity_source, signals = estimate.score, "estimator", estimate.signals

    trigger = None
    if request.critical:
        critical_by = "caller"
    else:
        trigger = find_trigger(request.text, rule.triggers) if rule.triggers else None
        critical_by = "trigger" if trigger else None
    arm = policy.arm_for(subject=request.subject, api_key_id=request.api_key_id)
    if request.model is not None:
        model = _pinned_model(request.model, policy)
        choice = TierChoice(
            model.tier,
            f"pinned:model={model.name}",
            f"The caller asked for {model.name}: no routing.",
        )
    elif arm is Arm.CONTROL:
        model = rule.full
        share = (
            f"experiment {policy.experiment_id}"
            if policy.experiment_id is not None
            else f"routing on for {policy.routed_percent:g}% of users"
        )
        choice = TierChoice(
            Tier.FULL,
            "control:legacy",
            f"Control arm ({share}): the legacy behaviour, premium model, no routing.",
        )
    else:
        choice = decide(rule=rule, complexity=complexity, critical_by=critical_by, trigger=trigger)
        model = rule.full if choice.tier is Tier.FULL else rule.mini

    max_output = min(request.max_tokens or rule.max_output_tokens, rule.max_output_tokens)
    expected_output = min(rule.expected_output_tokens, max_output)
    price = model.list_price
    estimated = call_cost_usd(
        input_per_mtok_usd=price.input_per_mtok_usd,
        cached_input_per_mtok_usd=price.cached_input_per_mtok_usd,
        output_per_mtok_usd=price.output_per_mtok_usd,
        input_tokens=request.prompt_tokens + rule.system_prompt_tokens,
        cached_tokens=0,
        output_tokens=expected_output,
    )
    return Decision(
        model=model,
        tier=choice.tier,
        category=rule.slug,
        category_confidence=resolved.confidence,
        category_source=resolved.source,
        complexity=complexity,
        complexity_source=complexity_source,
        complexity_signals=signals,
        critical=choice.reason_code.startswith("critical"),
        reason_code=choice.reason_code,
        reason_text=f"{choice.reason_text} Model {model.name}.",
        max_output_tokens=max_output,
        expected_output_tokens=expected_output,
        estimated_cost_usd=estimated,
        baseline_model=rule.full,
        system_prompt=rule.system_prompt,
        prompt_tokens=request.prompt_tokens + rule.system_prompt_tokens,
        policy_version=policy.version,
        rule=rule,
        arm=arm,
        router_artifact=router.artifact_id if router is not None else "",
        explanation=_explanation(
            prediction,
            fallback=needs_models and policy.router is None,
            category_known=category_known,
        ),
        experiment_id=policy.experiment_id,
        experiment_arm=policy.experiment_arm,
    )


def _explanation(
    prediction: RouterPrediction | None, *, fallback: bool, category_known: bool
) -> dict:
    if prediction is None:
        # The keyword classifier or the estimator stood in for the router models.
        return {"classifier": "fallback"} if fallback else {}
    features = prediction.explanation()
    if category_known:  # the caller's category: only needs premium was asked of the router
        return {
            "needs_premium": round(prediction.needs_premium, 3),
            "features": {"needs_premium": features["needs_premium"]},
        }
    return {
        "category": prediction.category,
        "category_probability": round(prediction.category_probability, 3),
        "unsafe_probability": round(prediction.unsafe_probability, 3),
        "needs_premium": round(prediction.needs_premium, 3),
        "features": features,
    }
