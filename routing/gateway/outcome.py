"""What came back from a call, and the ledger row and answer it makes: pure functions of the
call and its outcome."""

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal

from django.conf import settings

from routing.engine import Decision
from routing.gateway.call import Call, CompletionResult
from routing.gateway.upstream import UpstreamFailed
from routing.policy import Arm, ModelSpec
from routing.pricing import (
    NOT_BILLED,
    LedgerCosts,
    PriceRow,
    ServiceTier,
    TokenUsage,
    ledger_costs,
    tier_prices_per_mtok,
)
from routing.providers.chat import ProviderResult
from usage.models import Status, TokenSource


@dataclass(frozen=True)
class Outcome:
    """What came back: billed tokens, or a cached answer, or a failure."""

    content: str = ""
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0
    service_tier: ServiceTier = ServiceTier.DEFAULT
    token_source: str = TokenSource.PROVIDER
    finish_reason: str = "stop"
    sandbox: bool = False
    cache_hit: bool = False
    avoided_cost_usd: Decimal = Decimal("0")
    streamed: bool = False
    status: str = Status.OK
    error_code: str = ""
    billed: bool = True
    model: ModelSpec | None = None  # the model that answered, when not the one decided
    attempts: int = 1
    param_changes: tuple[str, ...] = ()  # how the request was shaped for the model

    @property
    def usage(self) -> TokenUsage:
        # By name, not TokenUsage.of(self): that walks the dataclass's fields at every read.
        return TokenUsage(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cached_tokens=self.cached_tokens,
            cache_write_5m_tokens=self.cache_write_5m_tokens,
            cache_write_1h_tokens=self.cache_write_1h_tokens,
            reasoning_tokens=self.reasoning_tokens,
        )


def outcome_from_result(
    result: ProviderResult, *, model: ModelSpec, attempts: int, streamed: bool = False
) -> Outcome:
    """Return the outcome of an upstream answer, billed as the provider counted it."""
    return Outcome(
        model=model,
        attempts=attempts,
        content=result.content,
        **result.usage_fields(),
        finish_reason=result.finish_reason,
        sandbox=result.sandbox,
        streamed=streamed,
        param_changes=result.param_changes,
    )


def outcome_from_cache(hit: dict, *, streamed: bool = False) -> Outcome:
    """Return the outcome of a response-cache answer: nothing billed, its bill avoided."""
    return Outcome(
        content=hit["content"],
        input_tokens=hit["input_tokens"],
        output_tokens=hit["output_tokens"],
        finish_reason=hit["finish_reason"],
        sandbox=hit["sandbox"],
        cache_hit=True,
        avoided_cost_usd=Decimal(hit["cost_usd"]),
        streamed=streamed,
    )


_FAILURE_STATUS = {
    "upstream_timeout": Status.UPSTREAM_TIMEOUT,
    "upstream_rate_limited": Status.UPSTREAM_RATE_LIMITED,
    "upstream_bad_response": Status.UPSTREAM_BAD_RESPONSE,
    "request_refused_by_model": Status.REQUEST_REFUSED,
}


def failure_status(error_code: str) -> Status:
    """Return the ledger status of a failed upstream call (one map for every caller)."""
    return _FAILURE_STATUS.get(error_code, Status.UPSTREAM_ERROR)


def outcome_from_error(call: Call, failure: UpstreamFailed) -> Outcome:
    """Return the outcome of a failed call: nothing billed, its status and error."""
    error = failure.error
    return replace(
        outcome_not_called(call, status=failure_status(error.code)),
        model=failure.model,
        attempts=failure.attempts,
        error_code=error.code,
    )


def outcome_not_called(call: Call, *, status: str) -> Outcome:
    """Return the outcome of a call never made: the prompt estimate at $0."""
    # Nothing was billed: the row keeps the prompt estimate and costs nothing.
    return Outcome(
        attempts=0,
        input_tokens=call.plan.prompt_tokens,
        token_source=call.plan.token_source,
        sandbox=settings.UPSTREAM_MODE == "sandbox",
        status=status,
        billed=False,
    )


@dataclass(frozen=True)
class LedgerRow:
    """One ledger row (usage.models.UsageRecord), as every writer hands it to usage_record:
    the request path, batch collection and shadow evaluation."""

    request_id: str
    created_at: datetime
    api_key_id: int
    end_user: str
    category: str
    category_source: str
    complexity: float
    complexity_source: str
    critical: bool
    tier: str
    model: str
    reason_code: str
    policy_version_id: int
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    token_source: str
    latency_ms: int
    cost_usd: Decimal
    uncached_cost_usd: Decimal
    estimated_cost_usd: Decimal
    estimate_source: str
    baseline_cost_usd: Decimal
    baseline_model: str
    price_input_per_mtok_usd: Decimal
    price_cached_input_per_mtok_usd: Decimal
    price_output_per_mtok_usd: Decimal
    status: str
    error_code: str = ""
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0
    service_tier: str = ServiceTier.DEFAULT.value
    price_id: int | None = None
    cost_input_usd: Decimal = Decimal("0")
    cost_cached_usd: Decimal = Decimal("0")
    cost_cache_write_usd: Decimal = Decimal("0")
    cost_output_usd: Decimal = Decimal("0")
    cost_reasoning_usd: Decimal = Decimal("0")
    cost_long_context_usd: Decimal = Decimal("0")
    cost_tier_usd: Decimal = Decimal("0")
    sandbox: bool = False
    avoided_cost_usd: Decimal = Decimal("0")
    cache_hit: bool = False
    streamed: bool = False
    batch: bool = False
    qa: bool = False
    arm: str = Arm.ROUTED.value
    experiment_id: int | None = None
    experiment_arm: str = ""
    attempts: int = 1
    fallback_from: str = ""
    prefix_fingerprint: str = ""
    router_artifact: str = ""
    explanation: Mapping = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    prompt_text: str = ""
    response_text: str = ""

    def fields(self) -> dict:
        """Return the row as usage_record's keyword arguments (values not copied)."""
        # A dataclass keeps its fields, in their order, in its __dict__ and nothing else
        # (LedgerRow has no slots, no cached property): a copy, not 59 getattr (6.6 -> 0.5 us).
        return self.__dict__.copy()


def billed_columns(
    *, price: PriceRow, usage: TokenUsage, tier: ServiceTier, costs: LedgerCosts
) -> dict:
    """Return a row's columns that billing sets (every writer's: live, batch, shadow): the
    tokens by kind, the tier served, the price row and its prices, the amounts and line items."""
    input_price, cached_price, output_price = tier_prices_per_mtok(price, tier)
    lines = costs.lines
    return dict(
        input_tokens=usage.input_tokens,
        cached_tokens=usage.cached_tokens,
        output_tokens=usage.output_tokens,
        cache_write_5m_tokens=usage.cache_write_5m_tokens,
        cache_write_1h_tokens=usage.cache_write_1h_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        service_tier=tier.value,
        price_id=price.id,
        price_input_per_mtok_usd=input_price,
        price_cached_input_per_mtok_usd=cached_price,
        price_output_per_mtok_usd=output_price,
        cost_usd=costs.cost_usd,
        uncached_cost_usd=costs.uncached_cost_usd,
        baseline_cost_usd=costs.baseline_cost_usd,
        cost_input_usd=lines.input_usd,
        cost_cached_usd=lines.cached_usd,
        cost_cache_write_usd=lines.cache_write_usd,
        cost_output_usd=lines.output_usd,
        cost_reasoning_usd=lines.reasoning_usd,
        cost_long_context_usd=lines.long_context_usd,
        cost_tier_usd=lines.tier_usd,
    )


def decided_columns(decision: Decision, *, model: ModelSpec) -> dict:
    """Return the row's columns that the routing decision sets, `model` being the one billed
    (live and batch rows alike)."""
    return dict(
        category=decision.category,
        category_source=decision.category_source,
        complexity=decision.complexity,
        complexity_source=decision.complexity_source,
        critical=decision.critical,
        tier=model.tier.value,
        model=model.name,
        reason_code=decision.reason_code,
        policy_version_id=decision.policy_version,
        baseline_model=decision.baseline_model.name,
        arm=decision.arm.value,
        experiment_id=decision.experiment_id,
        experiment_arm=decision.experiment_arm,
        prefix_fingerprint=decision.rule.prefix_fingerprint,
        router_artifact=decision.router_artifact,
        explanation=decision.explanation,
    )


def ledger_row(call: Call, outcome: Outcome) -> LedgerRow:
    """Return the call's one ledger row: the answering model billed, or $0 when not called."""
    decision = call.decision
    model = outcome.model or decision.model
    day = call.started_at.date()  # the request's UTC day picks the price row
    price = model.price_on(day)
    usage = outcome.usage  # a TokenUsage built and checked on each read
    costs = NOT_BILLED
    if outcome.billed:
        costs = ledger_costs(
            price=price,
            baseline=decision.baseline_model.price_on(day),
            usage=usage,
            tier=outcome.service_tier,
            free=outcome.cache_hit,
        )
    store_text = settings.USAGE_STORE_TEXT
    limit = settings.USAGE_STORE_TEXT_MAX_CHARS
    return LedgerRow(
        request_id=call.request_id,
        created_at=call.started_at,
        api_key_id=call.api_key.pk,
        end_user=call.request.user,
        **decided_columns(decision, model=model),
        **billed_columns(price=price, usage=usage, tier=outcome.service_tier, costs=costs),
        token_source=outcome.token_source,
        latency_ms=round((time.perf_counter() - call.started) * 1000),
        avoided_cost_usd=outcome.avoided_cost_usd,
        estimated_cost_usd=decision.estimated_cost_usd,
        estimate_source=call.plan.token_source,
        status=outcome.status,
        error_code=outcome.error_code,
        sandbox=outcome.sandbox,
        cache_hit=outcome.cache_hit,
        streamed=outcome.streamed,
        attempts=outcome.attempts,
        fallback_from=decision.model.name if model != decision.model else "",
        metadata=_metadata(call, outcome),
        prompt_text=call.plan.text[:limit] if store_text else "",
        response_text=outcome.content[:limit] if store_text else "",
    )


PARAM_CHANGES_KEY = "router_param_changes"


def _metadata(call: Call, outcome: Outcome) -> dict:
    """The caller's metadata, plus how the request was reshaped for the model, if it was (so
    a row shows why the model saw other parameters than the caller sent)."""
    if not outcome.param_changes:
        return call.request.metadata
    return {**call.request.metadata, PARAM_CHANGES_KEY: list(outcome.param_changes)}


def completion_result(call: Call, outcome: Outcome, row: LedgerRow) -> CompletionResult:
    """Return the answer as the APIs give it, naming the model that answered."""
    decision = call.decision
    if outcome.model is not None and outcome.model != decision.model:
        decision = replace(
            decision,
            model=outcome.model,
            tier=outcome.model.tier,
            reason_text=f"{decision.reason_text} Fell back to {outcome.model.name} after "
            f"{outcome.attempts} attempts.",
        )
    return CompletionResult(
        id=call.request_id,
        content=outcome.content,
        decision=decision,
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        cached_tokens=row.cached_tokens,
        latency_ms=row.latency_ms,
        cost_usd=row.cost_usd,
        baseline_cost_usd=row.baseline_cost_usd,
        sandbox=row.sandbox,
        cache_hit=outcome.cache_hit,
        finish_reason=outcome.finish_reason,
    )
