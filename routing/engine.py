"""The routing decision: pure functions of plain values (no Django, no I/O).

Decision tree (the brief's): critical -> full, always; complexity at or above the
category's threshold -> full; otherwise mini. Criticality comes from the caller's flag,
the category's always_full, or one of the category's trigger terms. The policy it decides
under is routing.policy's.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple

from routing.classifier import classify, find_trigger
from routing.complexity import ComplexitySignal, estimate_complexity
from routing.learned.model import RouterPrediction
from routing.policy import Arm, CategoryRule, ModelSpec, Policy, Tier
from routing.pricing import call_cost_usd


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


class _Category(NamedTuple):  # private: a tuple is built in half a frozen dataclass's time
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
    return _new_decision(
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


def _new_decision(**values: object) -> Decision:
    """Return the Decision with these values, every field given, built without its __init__.

    A frozen dataclass's __init__ sets each field through object.__setattr__: for 24 fields
    about 5 µs, a twentieth of a chat message's budget. Filled in directly, the object is the
    same (equal, same repr, still frozen); tests/routing/test_engine.py checks that route()
    gives every field and no other.
    """
    decision = object.__new__(Decision)
    decision.__dict__.update(values)
    return decision


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
