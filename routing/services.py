"""Routed completions, from admission to the ledger row: prepare, call the upstream (retries,
fallback), relay a stream, record; with the budgets, rate limits, idempotency claims and the
in-flight sweep they need. Policy versions and API keys: routing.policy_versions, .api_keys."""

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError, DataError, IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from routing.after_response import defer, outlive_the_client
from routing.circuit import OPEN as CIRCUIT_OPEN
from routing.circuit import circuit_allows, circuit_record
from routing.db import db_call
from routing.engine import Arm, Decision, ModelSpec, Policy, RouteRequest, RoutingError, route
from routing.inflight import (
    inflight_final_row,
    inflight_forget,
    inflight_forget_soon,
    inflight_overdue,
    inflight_quarantine,
    inflight_remember,
)
from routing.models import ApiKey, BudgetPeriod, IdempotencyRecord, InFlightRequest
from routing.pricing import baseline_cost_usd, call_cost_usd
from routing.prompts import build_messages, routable_text
from routing.provider import (
    ProviderError,
    ProviderResult,
    ProviderTimeout,
    ProviderUnreachable,
    achat_complete,
    achat_stream_open,
)
from routing.retry import backoff_s, fallback_chain
from routing.rollout import rollout_subject
from routing.selectors import policy_get
from routing.shadow import shadow_offer
from routing.shared_cache import outage_warning, shared_cache, window_count
from routing.tokens import count_message_tokens, count_text_tokens
from usage.models import Status, TokenSource, UsageRecord
from usage.services import ledger_storable, usage_record, usage_record_replace_swept

logger = logging.getLogger(__name__)

STREAM_DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True)
class CompletionRequest:
    """One completion as either API receives it, normalised."""

    messages: list[dict]
    category: str | None = None
    complexity: float | None = None
    critical: bool | None = None
    model: str | None = None
    user: str = ""
    max_tokens: int | None = None
    temperature: float | None = None
    sampling: dict = field(default_factory=dict)  # passed through: top_p, stop, seed, ...
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RoutePlan:
    decision: Decision
    messages: list[dict]
    prompt_tokens: int
    token_source: str
    text: str
    policy: Policy
    subject: str
    api_key_id: int

    def feature_on(self, name: str) -> bool:
        return self.policy.feature_on(name, subject=self.subject, api_key_id=self.api_key_id)


@dataclass(frozen=True)
class CompletionResult:
    id: str
    content: str
    decision: Decision
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    latency_ms: int
    cost_usd: Decimal
    baseline_cost_usd: Decimal
    sandbox: bool
    cache_hit: bool = False
    finish_reason: str = "stop"


@dataclass(frozen=True)
class StreamStart:
    """A stream whose model is decided and whose upstream answered: the events to relay."""

    id: str
    decision: Decision
    events: AsyncIterator[bytes]
    cache_hit: bool


class CompletionFailed(Exception):
    """An upstream failure after its ledger row was written."""

    def __init__(self, *, request_id: str, error: ProviderError) -> None:
        super().__init__(error.message)
        self.request_id = request_id
        self.error = error


def route_plan(
    *,
    messages: list[dict],
    category: str | None = None,
    complexity: float | None = None,
    critical: bool | None = None,
    max_tokens: int | None = None,
    model: str | None = None,
    user: str = "",
    api_key_id: int = 0,
) -> RoutePlan:
    """Return the decision and the prompt to send, without calling any model."""
    policy = policy_get()
    subject = rollout_subject(end_user=user, api_key_id=api_key_id)
    text = routable_text(messages)
    caller_tokens, token_source = count_message_tokens(messages)
    request = RouteRequest(
        text=text,
        prompt_tokens=caller_tokens,
        category=category,
        complexity=complexity,
        critical=critical,
        max_tokens=max_tokens,
        model=model,
        subject=subject,
        api_key_id=api_key_id,
    )
    decision = route(request=request, policy=policy)
    prompt = build_messages(system_prompt=decision.system_prompt, messages=messages)
    return RoutePlan(
        decision, prompt, decision.prompt_tokens, token_source, text, policy, subject, api_key_id
    )


@dataclass(frozen=True)
class _Call:
    """Everything decided before the upstream call."""

    request_id: str
    api_key: ApiKey
    request: CompletionRequest
    plan: RoutePlan
    cache_key: str | None
    started_at: datetime
    started: float
    remembered_in: str = "table"  # where its in-flight record is: "table" or "redis"
    cached: dict | None = None  # the response cache's answer, read while preparing

    @property
    def decision(self) -> Decision:
        return self.plan.decision

    def provider_kwargs(self) -> dict:
        return {
            "model": self.decision.model,
            "messages": self.plan.messages,
            "max_tokens": self.decision.max_output_tokens,
            "temperature": self.request.temperature,
            "user": self.request.user,
            "cache_key_category": (
                self.decision.category if self.plan.feature_on("prompt_cache_key") else None
            ),
            "sampling": self.request.sampling,
            "idempotency_key": self.request_id,
        }


def _call_prepare(*, api_key: ApiKey, request: CompletionRequest, stream: bool = False) -> _Call:
    plan = route_plan(
        messages=request.messages,
        category=request.category,
        complexity=request.complexity,
        critical=request.critical,
        max_tokens=request.max_tokens,
        model=request.model,
        user=request.user,
        api_key_id=api_key.pk,
    )
    if stream and not plan.feature_on("streaming"):  # before admission: nothing to record
        raise RoutingError("streaming_disabled", "Streaming is switched off.", "stream")
    cache_key = _response_cache_key(plan=plan, request=request, api_key=api_key)
    call = _Call(
        request_id="req_" + uuid.uuid4().hex,
        api_key=api_key,
        request=request,
        plan=plan,
        cache_key=cache_key,
        started_at=timezone.now(),
        started=time.perf_counter(),
        # Read here, on this thread: no second hop off the event loop for it.
        cached=response_cache_read(cache_key) if cache_key else None,
    )
    return replace(call, remembered_in=_admission_open(call))


def _response_cache_key(
    *, plan: RoutePlan, request: CompletionRequest, api_key: ApiKey
) -> str | None:
    """Return the exact-match key of this answer, or None when the category does not cache."""
    rule = plan.decision.rule
    if not rule.response_cache_enabled or not plan.feature_on("response_cache"):
        return None
    if plan.decision.arm is not Arm.ROUTED:
        return None  # the control arm is the legacy behaviour: no cache either
    normalised = json.dumps(
        {
            "category": plan.decision.category,
            "tier": plan.decision.tier.value,
            "model": plan.decision.model.name,
            "messages": plan.messages,
            "max_tokens": plan.decision.max_output_tokens,
            "temperature": request.temperature,
            "sampling": request.sampling,
        },
        sort_keys=True,
        ensure_ascii=False,
    )
    scope = "shared" if rule.response_cache_shared else f"key{api_key.pk}"
    return f"respcache:{scope}:{hashlib.sha256(normalised.encode()).hexdigest()}"


@dataclass(frozen=True)
class _Outcome:
    """What came back: billed tokens, or a cached answer, or a failure."""

    content: str = ""
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
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


def _outcome_from_result(
    result: ProviderResult, *, model: ModelSpec, attempts: int, streamed: bool = False
) -> _Outcome:
    return _Outcome(
        model=model,
        attempts=attempts,
        content=result.content,
        input_tokens=result.input_tokens,
        cached_tokens=result.cached_tokens,
        output_tokens=result.output_tokens,
        finish_reason=result.finish_reason,
        sandbox=result.sandbox,
        streamed=streamed,
    )


def _outcome_from_cache(hit: dict, *, streamed: bool = False) -> _Outcome:
    return _Outcome(
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


def _outcome_from_error(call: _Call, failure: "UpstreamFailed") -> _Outcome:
    error = failure.error
    return replace(
        _outcome_not_called(call, status=_FAILURE_STATUS.get(error.code, Status.UPSTREAM_ERROR)),
        model=failure.model,
        attempts=failure.attempts,
        error_code=error.code,
    )


def _outcome_not_called(call: _Call, *, status: str) -> _Outcome:
    # Nothing was billed: the row keeps the prompt estimate and costs nothing.
    return _Outcome(
        attempts=0,
        input_tokens=call.plan.prompt_tokens,
        token_source=call.plan.token_source,
        sandbox=settings.UPSTREAM_MODE == "sandbox",
        status=status,
        billed=False,
    )


def _call_record(call: _Call, fields: dict) -> None:
    """Write the call's one ledger row, release its admission and settle its budget, in one
    transaction: a row is written whole or not at all. A row whose text the database refuses
    is written cleaned; one the sweep already wrote as abandoned is replaced by this one."""
    try:
        _call_record_once(call, fields)
    except IntegrityError:
        _call_record_late(call, fields)
    except (DataError, ValueError) as exc:  # NUL, a lone surrogate: never a reason to lose it
        logger.error("ledger row of %s refused (%s); writing it cleaned", call.request_id, exc)
        _call_record_once(call, ledger_storable(fields))


def _call_record_once(call: _Call, fields: dict) -> None:
    if call.remembered_in == REMEMBERED_IN_REDIS:
        usage_record(**fields)  # one INSERT, its own transaction
        inflight_forget_soon(call.request_id)  # the row is written: no need to wait for this
        return
    with transaction.atomic():
        record = usage_record(**fields)
        _admission_close(
            call.request_id,
            cost_usd=record.cost_usd,
            reserved=call.api_key.monthly_budget_usd is not None,
        )


def _call_record_late(call: _Call, fields: dict) -> None:
    """The request's row is there already: our own write whose commit was not acknowledged
    (kept), or the sweep's `abandoned` estimate (replaced, its budget period corrected)."""
    with transaction.atomic():
        swept_cost = usage_record_replace_swept(**fields)
        if swept_cost is None:
            return
        if call.api_key.monthly_budget_usd is not None:
            period = budget_period_locked(call.api_key.pk, _month_start(call.started_at))
            period.spent_usd += fields["cost_usd"] - swept_cost
            period.save(update_fields=["spent_usd"])
    inflight_forget_soon(call.request_id)
    logger.warning(
        "request %s ended after it was swept: its real row replaced the estimate", call.request_id
    )


# Waits between the attempts of a ledger write made after the response: the client has its
# answer, so a database that went away is waited for, not reported. After the first
# LEDGER_LEAVE_AFTER_ATTEMPTS the final row is also left where the sweep finds it (the
# in-flight record, or Redis when the database is what is down), so a worker that stops
# while still waiting loses nothing either.
LEDGER_WRITE_RETRY_WAITS_S = (0.05, 0.25, 1.0, 5.0, 15.0, 30.0, 60.0)
LEDGER_LEAVE_AFTER_ATTEMPTS = 4


async def _record(
    call: _Call, outcome: _Outcome, *, then: Callable[[dict], Awaitable[None]] | None = None
) -> dict:
    """Price the call's ledger row and write it: after the response where the handler runs
    deferred work (routing.after_response), else now. Return the row's fields (the answer
    reports its cost and tokens from them). `then(fields)` runs once the row is written."""
    fields = _ledger_fields(call, outcome)

    async def write_later() -> None:
        if await _ledger_write_patiently(call, fields) and then is not None:
            await then(fields)

    if settings.LEDGER_WRITE_AFTER_RESPONSE and defer(write_later):
        return fields
    await db_call(_call_record, call, fields)
    if then is not None:
        await then(fields)
    return fields


async def _ledger_write_patiently(call: _Call, fields: dict) -> bool:
    """Write a deferred row, retrying database errors for about two minutes; past the first
    attempts, the final row is also left for the sweep. True when the row is written."""
    left = False
    for attempt, wait_s in enumerate((*LEDGER_WRITE_RETRY_WAITS_S, None), start=1):
        try:
            await db_call(_call_record, call, fields)
            if left:
                inflight_forget_soon(call.request_id)  # the copy left for the sweep
            return True
        except DatabaseError as exc:
            if attempt == 1:  # once a row: an outage would repeat it for every attempt
                logger.warning("ledger write of %s failed (%s); retrying", call.request_id, exc)
            if not left and (attempt >= LEDGER_LEAVE_AFTER_ATTEMPTS or wait_s is None):
                left = await db_call(_leave_for_sweep, call, fields)
                if left:
                    logger.warning(
                        "ledger row of %s left for the in-flight sweep meanwhile", call.request_id
                    )
            if wait_s is None:
                break
            await asyncio.sleep(wait_s)
    logger.error(
        "ledger row of %s not written; %s",
        call.request_id,
        "left for the in-flight sweep" if left else "its in-flight record will be swept",
    )
    return False


def _leave_for_sweep(call: _Call, fields: dict) -> bool:
    """Put the final row where the sweep looks for it, so that it writes what the call
    really cost: the in-flight record, else Redis (the sweep prefers a final row kept there;
    the table is likely down too). False when neither store takes it."""
    final = _storable_json(fields)
    if call.remembered_in == REMEMBERED_IN_TABLE:
        try:
            updated = InFlightRequest.objects.filter(request_id=call.request_id)
            if updated.update(ledger_fields=json.loads(final)):
                return True
        except DatabaseError:
            pass
    return inflight_remember(
        request_id=call.request_id, deadline_at=_inflight_deadline(call), ledger_json=final
    )


def _ledger_fields(call: _Call, outcome: _Outcome) -> dict:
    decision = call.decision
    model = outcome.model or decision.model
    if outcome.billed:
        prices = {
            "input_per_mtok_usd": model.input_per_mtok_usd,
            "output_per_mtok_usd": model.output_per_mtok_usd,
            "input_tokens": outcome.input_tokens,
            "output_tokens": outcome.output_tokens,
        }
        uncached = call_cost_usd(
            **prices, cached_input_per_mtok_usd=model.input_per_mtok_usd, cached_tokens=0
        )
        cost = (
            Decimal("0")
            if outcome.cache_hit
            else call_cost_usd(
                **prices,
                cached_input_per_mtok_usd=model.cached_input_per_mtok_usd,
                cached_tokens=outcome.cached_tokens,
            )
        )
        baseline = baseline_cost_usd(
            input_per_mtok_usd=decision.baseline_model.input_per_mtok_usd,
            output_per_mtok_usd=decision.baseline_model.output_per_mtok_usd,
            input_tokens=outcome.input_tokens,
            output_tokens=outcome.output_tokens,
        )
    else:
        cost = uncached = baseline = Decimal("0")
    store_text = settings.USAGE_STORE_TEXT
    limit = settings.USAGE_STORE_TEXT_MAX_CHARS
    return dict(
        request_id=call.request_id,
        created_at=call.started_at,
        api_key_id=call.api_key.pk,
        end_user=call.request.user,
        category=decision.category,
        category_source=decision.category_source,
        complexity=decision.complexity,
        complexity_source=decision.complexity_source,
        critical=decision.critical,
        tier=model.tier.value,
        model=model.name,
        reason_code=decision.reason_code,
        policy_version_id=decision.policy_version,
        input_tokens=outcome.input_tokens,
        cached_tokens=outcome.cached_tokens,
        output_tokens=outcome.output_tokens,
        token_source=outcome.token_source,
        latency_ms=round((time.perf_counter() - call.started) * 1000),
        cost_usd=cost,
        uncached_cost_usd=uncached,
        avoided_cost_usd=outcome.avoided_cost_usd,
        estimated_cost_usd=decision.estimated_cost_usd,
        estimate_source=call.plan.token_source,
        baseline_cost_usd=baseline,
        baseline_model=decision.baseline_model.name,
        price_input_per_mtok_usd=model.input_per_mtok_usd,
        price_cached_input_per_mtok_usd=model.cached_input_per_mtok_usd,
        price_output_per_mtok_usd=model.output_per_mtok_usd,
        status=outcome.status,
        error_code=outcome.error_code,
        sandbox=outcome.sandbox,
        cache_hit=outcome.cache_hit,
        streamed=outcome.streamed,
        arm=decision.arm.value,
        attempts=outcome.attempts,
        fallback_from=decision.model.name if model != decision.model else "",
        prefix_fingerprint=decision.rule.prefix_fingerprint,
        router_artifact=decision.router_artifact,
        explanation=decision.explanation,
        metadata=call.request.metadata,
        prompt_text=call.plan.text[:limit] if store_text else "",
        response_text=outcome.content[:limit] if store_text else "",
    )


def _cache_value(outcome: _Outcome, fields: dict) -> dict:
    return {
        "content": outcome.content,
        "input_tokens": outcome.input_tokens,
        "output_tokens": outcome.output_tokens,
        "finish_reason": outcome.finish_reason,
        "sandbox": outcome.sandbox,
        "cost_usd": str(fields["cost_usd"]),
    }


def _result(call: _Call, outcome: _Outcome, fields: dict) -> CompletionResult:
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
        input_tokens=fields["input_tokens"],
        output_tokens=fields["output_tokens"],
        cached_tokens=fields["cached_tokens"],
        latency_ms=fields["latency_ms"],
        cost_usd=fields["cost_usd"],
        baseline_cost_usd=fields["baseline_cost_usd"],
        sandbox=fields["sandbox"],
        cache_hit=outcome.cache_hit,
        finish_reason=outcome.finish_reason,
    )


# --- admission, budgets and lost requests ----------------------------------------------

# A request still in flight this long after its deadline belonged to a lost worker (streams
# may run well past the deadline, which bounds only the wait for the first byte).
INFLIGHT_GRACE_S = 600


class BudgetExceeded(Exception):
    """The key's monthly budget cannot cover this request's worst case."""

    def __init__(self, *, api_key: ApiKey, limit_usd: Decimal, used_usd: Decimal) -> None:
        self.code = "budget_exceeded"
        self.message = (
            f"The monthly budget of API key '{api_key.name}' (${limit_usd}) is used up: "
            f"${used_usd.quantize(Decimal('0.01'))} spent or reserved this month."
        )
        super().__init__(self.message)


def _month_start(moment: datetime) -> date:
    return moment.date().replace(day=1)


def _ledger_spend(api_key_id: int, month: date) -> Decimal:
    """What the key's ledger rows of the month cost (quality-assurance spend excluded, as
    it never counts against a budget)."""
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    end = datetime(month.year + month.month // 12, month.month % 12 + 1, 1, tzinfo=UTC)
    rows = UsageRecord.objects.filter(
        api_key_id=api_key_id, created_at__gte=start, created_at__lt=end, qa=False
    )
    return rows.aggregate(total=Sum("cost_usd"))["total"] or Decimal("0")


def budget_period_locked(api_key_id: int, month: date) -> BudgetPeriod:
    """The key's budget period for the month, locked until the transaction ends. A new one
    starts from the month's ledger spend: a budget set mid-month counts what was already
    spent (a key without a budget keeps no period, to spare every request the write)."""
    period, _ = BudgetPeriod.objects.select_for_update().get_or_create(
        api_key_id=api_key_id,
        month=month,
        defaults={"spent_usd": lambda: _ledger_spend(api_key_id, month)},
    )
    return period


@transaction.atomic
def budget_period_resync(*, api_key: ApiKey, now: datetime) -> BudgetPeriod:
    """Set this month's spend from the ledger: when a key's budget is set or changed, the
    spend made while it had none (and so no period to count it in) is counted too."""
    month = _month_start(now)
    period = budget_period_locked(api_key.pk, month)
    period.spent_usd = _ledger_spend(api_key.pk, month)
    period.save(update_fields=["spent_usd"])
    return period


def _worst_case_cost(call: _Call) -> Decimal:
    """The most this request can be billed: full output on the dearest model it may use."""
    decision = call.decision
    chain = fallback_chain(rule=decision.rule, chosen=decision.model, policy=call.plan.policy)
    return max(
        call_cost_usd(
            input_per_mtok_usd=m.input_per_mtok_usd,
            cached_input_per_mtok_usd=m.input_per_mtok_usd,
            output_per_mtok_usd=m.output_per_mtok_usd,
            input_tokens=call.plan.prompt_tokens,
            cached_tokens=0,
            output_tokens=decision.max_output_tokens,
        )
        for m in chain
    )


REMEMBERED_IN_TABLE, REMEMBERED_IN_REDIS = "table", "redis"


def _inflight_deadline(call: _Call) -> datetime:
    return call.started_at + timedelta(seconds=call.decision.rule.deadline_s + INFLIGHT_GRACE_S)


def _storable_json(fields: dict) -> str:
    """The row as JSON, cleaned of what no database stores (NUL, lone surrogates), which
    JSON escapes as \\u0000 and \\udxxx: a cheap look first, the walk only when needed."""
    dumped = json.dumps(fields, cls=DjangoJSONEncoder)
    if "\\u0000" in dumped or "\\ud" in dumped:
        dumped = json.dumps(ledger_storable(fields), cls=DjangoJSONEncoder)
    return dumped


def _admission_open(call: _Call) -> str:
    """Record the request as in flight and, for a key with a budget, reserve its worst case
    under a row lock, so concurrent requests cannot overshoot the budget together. Returns
    where the in-flight record went (Redis only for keys without a budget)."""
    limit = call.api_key.monthly_budget_usd
    lost = _Outcome(
        input_tokens=call.plan.prompt_tokens,
        token_source=call.plan.token_source,
        status=Status.ABANDONED,
        error_code="worker_lost",
        billed=False,
    )
    lost_json = _storable_json(_ledger_fields(call, lost))
    deadline_at = _inflight_deadline(call)
    if limit is None:
        if inflight_remember(
            request_id=call.request_id, deadline_at=deadline_at, ledger_json=lost_json
        ):
            return REMEMBERED_IN_REDIS
        InFlightRequest.objects.create(
            request_id=call.request_id,
            api_key=call.api_key,
            deadline_at=deadline_at,
            ledger_fields=json.loads(lost_json),
        )
        return REMEMBERED_IN_TABLE
    reserve = _worst_case_cost(call)
    with transaction.atomic():
        period = budget_period_locked(call.api_key.pk, _month_start(call.started_at))
        used = period.spent_usd + period.reserved_usd
        over_budget = used + reserve > limit
        if not over_budget:  # else committed as it is: a new period is not summed again
            period.reserved_usd += reserve
            period.save(update_fields=["reserved_usd"])
            InFlightRequest.objects.create(
                request_id=call.request_id,
                api_key=call.api_key,
                budget_period=period,
                reserved_usd=reserve,
                deadline_at=deadline_at,
                ledger_fields=json.loads(lost_json),
            )
    if over_budget:
        raise BudgetExceeded(api_key=call.api_key, limit_usd=limit, used_usd=used)
    return REMEMBERED_IN_TABLE


def _admission_close(request_id: str, *, cost_usd: Decimal, reserved: bool = True) -> None:
    """Inside the ledger transaction: drop the in-flight row, turn its reservation into spend.

    `reserved=False` (the key had no budget at admission) needs one DELETE and nothing else."""
    if not reserved:
        InFlightRequest.objects.filter(request_id=request_id).delete()
        return
    inflight = (
        InFlightRequest.objects.filter(request_id=request_id)
        .values_list("budget_period_id", "reserved_usd")
        .first()
    )
    if inflight is None:
        return
    InFlightRequest.objects.filter(request_id=request_id).delete()
    period_id, reserved = inflight
    if period_id is None:
        return
    period = BudgetPeriod.objects.select_for_update().select_related("api_key").get(pk=period_id)
    period.reserved_usd -= reserved
    period.spent_usd += cost_usd
    limit = period.api_key.monthly_budget_usd
    fields = ["reserved_usd", "spent_usd"]
    alert_at = limit * period.api_key.budget_alert_percent / 100 if limit is not None else None
    if alert_at is not None and period.alerted_at is None and period.spent_usd >= alert_at:
        period.alerted_at = timezone.now()
        fields.append("alerted_at")
        logger.warning(
            "budget alert: key %s spent $%s of $%s this month",
            period.api_key.name,
            period.spent_usd.quantize(Decimal("0.01")),
            limit,
        )
    period.save(update_fields=fields)


class RateLimited(Exception):
    """Over the key's requests per minute: a traffic control, not a money control."""

    def __init__(self, *, api_key: ApiKey, retry_after_s: int) -> None:
        self.code = "rate_limited"
        self.retry_after_s = retry_after_s
        self.message = (
            f"API key '{api_key.name}' is limited to {api_key.rate_limit_per_minute} requests "
            f"per minute; retry in {retry_after_s} s."
        )
        super().__init__(self.message)


async def rate_limit_check(*, api_key: ApiKey) -> None:
    """Count the request in the key's current minute (in Redis, shared by every worker); raise
    RateLimited over the limit. An unreachable Redis lets the request through (logged)."""
    limit = api_key.rate_limit_per_minute
    if limit is None:
        return
    now = time.time()
    window = int(now // 60)
    key = f"ratelimit:{api_key.pk}:{window}"
    try:
        count = await db_call(window_count, key, expires_s=120)
    except Exception as exc:  # noqa: BLE001 - fails open, as documented
        message = "redis unavailable: rate limit of key %s not enforced"
        outage_warning(logger, exc, message, api_key.name)
        return
    if count > limit:
        raise RateLimited(api_key=api_key, retry_after_s=max(1, int((window + 1) * 60 - now)))


# What a record the sweep cannot write raises: a row the database refuses even cleaned, or
# fields that are not a row at all.
_UNWRITABLE = (DatabaseError, ValidationError, ValueError, TypeError, KeyError)


def inflight_sweep(*, now: datetime) -> int:
    """Record requests whose worker was lost as `abandoned` (or with the final row their
    worker left for the sweep); return how many were swept. A record whose row cannot be
    written even cleaned is quarantined (kept, skipped from then on, counted in admin and
    metrics): one bad record never stops the sweep."""
    swept = 0
    stale = InFlightRequest.objects.filter(deadline_at__lt=now, quarantined_at=None)
    for pk in list(stale.values_list("pk", flat=True)[:1000]):
        try:
            swept += _inflight_sweep_table_one(pk)
        except _UNWRITABLE as exc:
            _inflight_quarantine_table(pk, exc, now=now)
    for request_id, row_json in inflight_overdue(now=now):
        try:
            swept += _inflight_sweep_redis_one(request_id, row_json)
        except _UNWRITABLE as exc:
            logger.error("in-flight %s cannot be recorded (%s): quarantined", request_id, exc)
            inflight_quarantine(request_id, reason=f"{type(exc).__name__}: {exc}")
    return swept


def _inflight_sweep_table_one(pk: int) -> int:
    with transaction.atomic():
        inflight = InFlightRequest.objects.select_for_update(skip_locked=True).filter(pk=pk).first()
        if inflight is None:
            return 0  # recorded (or swept) meanwhile
        final = inflight_final_row(inflight.request_id)  # left there while the database was down
        fields = json.loads(final) if final is not None else inflight.ledger_fields
        cost = _ledger_insert_for_sweep(fields)
        # A lost request costs nothing; a row left after the answer, its price.
        _admission_close(inflight.request_id, cost_usd=cost)
    if final is not None:
        inflight_forget(inflight.request_id)
    return 1


def _inflight_sweep_redis_one(request_id: str, row_json: str | None) -> int:
    swept = 0
    if row_json is not None:
        with transaction.atomic():
            _ledger_insert_for_sweep(json.loads(row_json))
        swept = 1
    inflight_forget(request_id)
    return swept


def _ledger_insert_for_sweep(fields: dict) -> Decimal:
    """Write a swept row, cleaned if the database refuses its text; return the cost of the
    request's row. A row already there (the answer was recorded after all, only its in-flight
    record was left behind) is kept."""
    try:
        with transaction.atomic():  # a savepoint: a refused row leaves the sweep's usable
            return Decimal(usage_record(**fields).cost_usd)
    except IntegrityError:
        rows = UsageRecord.objects.filter(request_id=fields.get("request_id"))
        cost = rows.values_list("cost_usd", flat=True).first()
        if cost is None:
            raise  # not a duplicate: a row that breaks a constraint
        return cost
    except (DataError, ValueError) as exc:
        logger.error("swept row of %s refused (%s); writing it cleaned", fields["request_id"], exc)
    with transaction.atomic():
        return Decimal(usage_record(**ledger_storable(fields)).cost_usd)


def _inflight_quarantine_table(pk: int, exc: Exception, *, now: datetime) -> None:
    reason = f"{type(exc).__name__}: {exc}"[:2000]
    logger.error("in-flight record %s cannot be recorded (%s): quarantined", pk, reason)
    InFlightRequest.objects.filter(pk=pk).update(
        quarantined_at=now, quarantine_reason=ledger_storable(reason)
    )


# --- idempotency -------------------------------------------------------------------------

IDEMPOTENCY_TTL = timedelta(hours=24)
# An in-flight claim outlives its request's whole deadline by this much (admission, the ledger
# write, a slow database), so only a claim whose worker died is ever taken over.
IDEMPOTENCY_LEASE_MARGIN = timedelta(seconds=30)
IDEMPOTENCY_CLAIM_TRIES = 5


class IdempotencyError(Exception):
    def __init__(
        self, status: int, code: str, message: str, *, retry_after_s: int | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class IdempotencyReplay:
    """A kept first answer: its status and the reply given to idempotency_store."""

    status_code: int
    reply: dict


def idempotency_lease() -> timedelta:
    """Return how long an in-flight claim holds: IDEMPOTENCY_LEASE_S when set, else the
    longest deadline of the enabled categories plus IDEMPOTENCY_LEASE_MARGIN."""
    if settings.IDEMPOTENCY_LEASE_S:
        return timedelta(seconds=settings.IDEMPOTENCY_LEASE_S)
    try:
        rules = policy_get().categories.values()
    except Exception:  # noqa: BLE001 - no policy: the request itself is refused next
        rules = ()
    deadline_s = max((rule.deadline_s for rule in rules if rule.enabled), default=30.0)
    return timedelta(seconds=deadline_s) + IDEMPOTENCY_LEASE_MARGIN


def _idempotency_key_sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _idempotency_cipher(key: str) -> Fernet:
    # Derived from the client's key too: a database reader (even one with SECRET_KEY) cannot
    # read a kept answer without the Idempotency-Key, which is stored only as its hash.
    secret = hmac.new(
        settings.SECRET_KEY.encode(), b"huntaze-idempotency-v1:" + key.encode(), hashlib.sha256
    )
    return Fernet(base64.urlsafe_b64encode(secret.digest()))


def _idempotency_replay(row: IdempotencyRecord, key: str) -> IdempotencyReplay | None:
    try:
        reply = _idempotency_cipher(key).decrypt(row.reply_encrypted.encode())
    except InvalidToken:
        return None  # SECRET_KEY changed since: the answer is lost, the request runs again
    return IdempotencyReplay(status_code=row.status_code, reply=json.loads(reply))


def idempotency_claim(
    *, api_key: ApiKey, key: str, request_digest: str, claim_id: str, now: datetime
) -> IdempotencyReplay | None:
    """Claim the key for this request as `claim_id` (None: go ahead), or return the kept
    first answer. A claim whose lease has passed (its worker died) is taken over.

    Raises IdempotencyError: 422 when the key was used with another request, 409 (with the
    seconds left of the lease) while the first request with it is still running."""
    key_sha256 = _idempotency_key_sha256(key)
    claim = {
        "request_digest": request_digest,
        "state": IdempotencyRecord.IN_FLIGHT,
        "claim_id": claim_id,
        "lease_until": now + idempotency_lease(),
        "expires_at": now + IDEMPOTENCY_TTL,
        "status_code": None,
        "reply_encrypted": "",
        "request_id": "",
    }
    # Between our failed INSERT and our read the row may be released, purged or taken over
    # by a racing duplicate: look again a few times rather than fail the request.
    for _ in range(IDEMPOTENCY_CLAIM_TRIES):
        try:
            with transaction.atomic():
                IdempotencyRecord.objects.create(api_key=api_key, key_sha256=key_sha256, **claim)
            return None
        except IntegrityError:
            pass
        row = IdempotencyRecord.objects.filter(api_key=api_key, key_sha256=key_sha256).first()
        if row is None:
            continue
        if row.expires_at > now:
            if row.request_digest != request_digest:
                raise IdempotencyError(
                    422,
                    "idempotency_key_reused",
                    "This Idempotency-Key was used with another request.",
                )
            if row.state == IdempotencyRecord.IN_FLIGHT and row.lease_until > now:
                raise IdempotencyError(
                    409,
                    "idempotency_in_flight",
                    "A request with this Idempotency-Key is still running.",
                    retry_after_s=max(1, math.ceil((row.lease_until - now).total_seconds())),
                )
            if row.state == IdempotencyRecord.DONE:
                replay = _idempotency_replay(row, key)
                if replay is not None:
                    return replay
        # Expired, its lease passed, or unreadable: take it over unless another did first.
        taken = IdempotencyRecord.objects.filter(
            pk=row.pk, claim_id=row.claim_id, state=row.state
        ).update(**claim)
        if taken:
            return None
    raise IdempotencyError(
        409,
        "idempotency_in_flight",
        "Requests with this Idempotency-Key are racing; retry shortly.",
        retry_after_s=1,
    )


def idempotency_store(
    *, api_key: ApiKey, key: str, claim_id: str, status_code: int, reply: dict, request_id: str
) -> None:
    """Keep the answer for replays, encrypted; a claim taken over meanwhile is left alone."""
    token = _idempotency_cipher(key).encrypt(json.dumps(reply, separators=(",", ":")).encode())
    IdempotencyRecord.objects.filter(
        api_key=api_key,
        key_sha256=_idempotency_key_sha256(key),
        claim_id=claim_id,
        state=IdempotencyRecord.IN_FLIGHT,
    ).update(
        state=IdempotencyRecord.DONE,
        status_code=status_code,
        reply_encrypted=token.decode(),
        request_id=request_id,
    )


def idempotency_release(*, api_key: ApiKey, key: str, claim_id: str) -> None:
    """Forget this request's claim (it failed transiently), so a retry may run it again."""
    IdempotencyRecord.objects.filter(
        api_key=api_key,
        key_sha256=_idempotency_key_sha256(key),
        claim_id=claim_id,
        state=IdempotencyRecord.IN_FLIGHT,
    ).delete()


def idempotency_purge(*, now: datetime) -> int:
    """Delete expired keys; return how many."""
    return IdempotencyRecord.objects.filter(expires_at__lte=now).delete()[0]


class UpstreamFailed(Exception):
    """Every model of the chain failed, or a failure that no retry can fix."""

    def __init__(self, error: ProviderError, *, attempts: int, model: ModelSpec) -> None:
        super().__init__(error.message)
        self.error, self.attempts, self.model = error, attempts, model


async def _upstream_attempt(call: _Call, send) -> tuple[object, ModelSpec, int]:
    """Call `send(model=..., timeout_s=...)` on the chosen model, then its fallbacks, with
    retries and backoff, all within the category's deadline; return (answer, model, attempts).

    Retries 429, 5xx, timeouts and resets (honouring Retry-After); other 4xx stop at once.
    A model whose circuit is open is skipped. A model's attempts end early enough to leave
    the models after it their reserve of the deadline (ROUTER_FALLBACK_RESERVE_S), so a hung
    model still falls back in time. Only failures that are the model's fault count against
    its circuit: a request it refused is the caller's 400.
    """
    rule = call.decision.rule
    deadline = call.started + rule.deadline_s
    chain = fallback_chain(rule=rule, chosen=call.decision.model, policy=call.plan.policy)
    attempts = 0
    last: tuple[ProviderError, ModelSpec] | None = None  # the last model actually called
    for index, model in enumerate(chain):
        state = await circuit_allows(model.name)
        if state == CIRCUIT_OPEN:
            continue
        model_deadline = _model_deadline(deadline, later_models=len(chain) - index - 1)
        for attempt in range(1, settings.ROUTER_ATTEMPTS_PER_MODEL + 1):
            remaining = model_deadline - time.perf_counter()
            if remaining <= 0:
                break  # this model's share is spent: the next model, if any
            attempts += 1
            try:
                answer = await send(
                    model=model, timeout_s=min(settings.UPSTREAM_TIMEOUT_S, remaining)
                )
            except ProviderError as error:
                if error.model_at_fault:
                    await circuit_record(model.name, ok=False)
                last = (error, model)
                if not error.retryable:
                    raise UpstreamFailed(error, attempts=attempts, model=model) from error
                wait = backoff_s(
                    attempt=attempt,
                    retry_after_s=error.retry_after_s,
                    base_s=settings.ROUTER_BACKOFF_BASE_S,
                    cap_s=settings.ROUTER_BACKOFF_MAX_S,
                )
                if attempt == settings.ROUTER_ATTEMPTS_PER_MODEL:
                    break
                if wait >= model_deadline - time.perf_counter():
                    break  # no time to wait here: the next model, if any
                await asyncio.sleep(wait)
                continue
            await circuit_record(model.name, ok=True, state=state)
            return answer, model, attempts
    error, model = last or (
        ProviderUnreachable("every model of the chain is out of rotation"),
        call.decision.model,
    )
    if time.perf_counter() >= deadline:
        error = ProviderTimeout(f"deadline of {rule.deadline_s:g} s reached")
    raise UpstreamFailed(error, attempts=attempts, model=model)


def _model_deadline(deadline: float, *, later_models: int) -> float:
    """When a model's attempts must stop: the request's deadline, less the reserve kept for
    the models after it (half of what remains, at most ROUTER_FALLBACK_RESERVE_S)."""
    if not later_models:
        return deadline
    remaining = deadline - time.perf_counter()
    return deadline - min(remaining / 2, settings.ROUTER_FALLBACK_RESERVE_S)


async def _record_failure(call: _Call, failure: UpstreamFailed) -> CompletionFailed:
    await _record(call, _outcome_from_error(call, failure))
    return CompletionFailed(request_id=call.request_id, error=failure.error)


async def completion_create(*, api_key: ApiKey, request: CompletionRequest) -> CompletionResult:
    """Route one completion, call the chosen model and record it; raise CompletionFailed."""
    return await outlive_the_client(
        lambda client_gone: _completion_run(api_key, request, client_gone)
    )


async def _completion_run(
    api_key: ApiKey, request: CompletionRequest, client_gone: asyncio.Event
) -> CompletionResult:
    call = await db_call(_call_prepare, api_key=api_key, request=request)
    hit = call.cached
    if hit is not None:
        outcome = _outcome_from_cache(hit)
        return _result(call, outcome, await _record(call, outcome))
    if client_gone.is_set():  # gone before any call: nothing billed, the row says so
        outcome = _outcome_not_called(call, status=Status.CLIENT_CANCELLED)
        return _result(call, outcome, await _record(call, outcome))
    kwargs = call.provider_kwargs()

    async def send(*, model: ModelSpec, timeout_s: float) -> ProviderResult:
        return await achat_complete(**{**kwargs, "model": model, "timeout_s": timeout_s})

    try:
        result, model, attempts = await _upstream_attempt(call, send)
    except UpstreamFailed as failure:
        raise await _record_failure(call, failure) from failure.error
    outcome = _outcome_from_result(result, model=model, attempts=attempts)
    if client_gone.is_set():  # answered and billed, but no one took the answer
        outcome = replace(outcome, status=Status.CLIENT_CANCELLED)
    fields = await _record(call, outcome, then=_shadow_offer_after(call, outcome))
    if call.cache_key and model == call.decision.model:
        await _cache_set(call, _cache_value(outcome, fields))  # before the answer: a repeat hits
    return _result(call, outcome, fields)


def _shadow_offer_after(call: _Call, outcome: _Outcome) -> Callable[[dict], Awaitable[None]]:
    async def offer(fields: dict) -> None:
        shadow_offer(call=call, outcome=outcome)  # a sampled cheap answer is judged off-path

    return offer


async def completion_stream(
    *, api_key: ApiKey, request: CompletionRequest, include_usage: bool = False
) -> StreamStart:
    """Open a streamed completion; raise CompletionFailed if it fails before the first byte.

    Retries and fallback happen while opening, before any byte reaches the client."""
    return await outlive_the_client(
        lambda client_gone: _stream_open(api_key, request, include_usage, client_gone)
    )


async def _stream_open(
    api_key: ApiKey, request: CompletionRequest, include_usage: bool, client_gone: asyncio.Event
) -> StreamStart:
    call = await db_call(_call_prepare, api_key=api_key, request=request, stream=True)
    hit = call.cached
    if hit is not None:
        outcome = _outcome_from_cache(hit, streamed=True)
        fields = await _record(call, outcome)  # now: the events may never be read
        events = _stream_replay(call, outcome, fields, include_usage=include_usage)
        return StreamStart(call.request_id, call.decision, events, cache_hit=True)
    kwargs = call.provider_kwargs()

    async def send(*, model: ModelSpec, timeout_s: float):
        return await achat_stream_open(**{**kwargs, "model": model, "timeout_s": timeout_s})

    try:
        upstream, model, attempts = await _upstream_attempt(call, send)
    except UpstreamFailed as failure:
        raise await _record_failure(call, failure) from failure.error
    if client_gone.is_set():  # opened for no one: the prompt is billed, nothing more is read
        outcome = _stream_outcome(
            call, upstream.sandbox, [], None, "", status=Status.CLIENT_CANCELLED
        )
        await _stream_finish(call, replace(outcome, model=model, attempts=attempts), upstream)
        raise asyncio.CancelledError
    events = _stream_relay(call, upstream, model, attempts, include_usage=include_usage)
    decision = (
        call.decision
        if model == call.decision.model
        else replace(call.decision, model=model, tier=model.tier)
    )
    return StreamStart(call.request_id, decision, events, cache_hit=False)


def response_cache_read(key: str) -> dict | None:
    """Read the response cache; an unreachable cache is a miss (logged), never an error."""
    try:
        return shared_cache().get(key)
    except Exception as exc:  # noqa: BLE001 - fails open, as documented
        outage_warning(logger, exc, "response cache unavailable (read); answering without it")
        return None


async def _cache_set(call: _Call, value: dict) -> None:
    try:
        ttl_s = call.decision.rule.response_cache_ttl_s
        await db_call(shared_cache().set, call.cache_key, value, ttl_s)
    except Exception as exc:  # noqa: BLE001 - fails open, as documented
        outage_warning(logger, exc, "response cache unavailable (write); answer not cached")


def _sse(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


async def _stream_relay(
    call: _Call, upstream, model: ModelSpec, attempts: int, *, include_usage: bool
) -> AsyncIterator[bytes]:
    """Forward upstream chunks as they arrive; write the ledger row however the stream ends.

    Ends: normally (usage from the final chunk), client gone (status client_cancelled), or
    upstream broken after the first byte (an OpenAI-shaped error event, then the stream
    closes without [DONE]). The last two bill estimated tokens so far, marked as estimates.
    """
    parts: list[str] = []
    usage = None
    finish_reason = ""
    finished = False
    try:
        async for chunk in upstream.chunks:
            data = chunk.data
            if data.get("usage"):
                usage = data["usage"]
            choices = data.get("choices")
            if choices:
                choice = choices[0]
                content = (choice.get("delta") or {}).get("content")
                if content:
                    parts.append(content)
                finish_reason = choice.get("finish_reason") or finish_reason
            elif not include_usage:
                continue  # the usage chunk we asked for on our own account
            if not include_usage and data.get("usage"):
                yield _sse({**data, "usage": None})
                continue
            yield b"data: " + chunk.raw + b"\n\n"
        # Priced before [DONE]; written after the response ends where the handler allows it.
        outcome = _stream_outcome(call, upstream.sandbox, parts, usage, finish_reason)
        outcome = replace(outcome, model=model, attempts=attempts)
        finished = True
        await asyncio.shield(_stream_finish(call, outcome, upstream))
        yield STREAM_DONE
    except ProviderError as error:
        outcome = _stream_outcome(
            call, upstream.sandbox, parts, None, "", error_code="upstream_stream_broken"
        )
        outcome = replace(outcome, model=model, attempts=attempts)
        finished = True
        await asyncio.shield(_stream_finish(call, outcome, upstream))
        body = {"message": error.message, "type": "server_error", "code": error.code}
        yield _sse({"error": {**body, "param": None}})
    finally:
        if not finished:  # the client went away (cancelled, or closed the generator)
            outcome = _stream_outcome(
                call, upstream.sandbox, parts, None, "", status=Status.CLIENT_CANCELLED
            )
            outcome = replace(outcome, model=model, attempts=attempts)
            await asyncio.shield(_stream_finish(call, outcome, upstream))


async def _stream_finish(call: _Call, outcome: _Outcome, upstream) -> None:
    fields = await _record(call, outcome, then=_shadow_offer_after(call, outcome))
    if outcome.status != Status.OK:
        await upstream.close()
    elif call.cache_key and outcome.model in (None, call.decision.model):
        await _cache_set(call, _cache_value(outcome, fields))


def _stream_outcome(
    call: _Call,
    sandbox: bool,
    parts: list[str],
    usage,
    finish_reason: str,
    *,
    status: str = Status.OK,
    error_code: str = "",
) -> _Outcome:
    content = "".join(parts)
    if usage is not None:
        details = usage.get("prompt_tokens_details") or {}
        return _Outcome(
            content=content,
            input_tokens=int(usage.get("prompt_tokens") or 0),
            cached_tokens=int(details.get("cached_tokens") or 0),
            output_tokens=int(usage.get("completion_tokens") or 0),
            finish_reason=finish_reason,
            sandbox=sandbox,
            streamed=True,
            status=status,
            error_code=error_code,
        )
    # No usage chunk (cut short): the prompt count and the text so far, marked as estimates.
    return _Outcome(
        content=content,
        input_tokens=call.plan.prompt_tokens,
        output_tokens=count_text_tokens(content)[0] if content else 0,
        token_source=TokenSource.ESTIMATE,
        finish_reason=finish_reason,
        sandbox=sandbox,
        streamed=True,
        status=Status.UPSTREAM_ERROR if error_code else status,
        error_code=error_code,
    )


async def _stream_replay(
    call: _Call, outcome: _Outcome, fields: dict, *, include_usage: bool
) -> AsyncIterator[bytes]:
    """Serve a cached answer (already recorded) as a stream: one content chunk, finish,
    usage, [DONE]."""
    base = {
        "id": "chatcmpl-" + call.request_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": call.decision.model.name,
    }
    delta = {"role": "assistant", "content": outcome.content}
    yield _sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    finish = {"index": 0, "delta": {}, "finish_reason": outcome.finish_reason}
    yield _sse({**base, "choices": [finish]})
    if include_usage:
        usage = {
            "prompt_tokens": fields["input_tokens"],
            "completion_tokens": fields["output_tokens"],
            "total_tokens": fields["input_tokens"] + fields["output_tokens"],
            "prompt_tokens_details": {"cached_tokens": 0},
        }
        yield _sse({**base, "choices": [], "usage": usage})
    yield STREAM_DONE
