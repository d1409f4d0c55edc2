"""Shadow evaluation: replay a sample of cheap-tier answers on the premium model, judge them
pairwise in both orders, store the verdict.

The product's response never waits for any of it. The hot path only decides (a hash, no
database read) and hands an encrypted job to a background thread, which publishes it to the
Celery broker (or, with eager Celery in development and tests, runs it right there, after
the response). The job carries the prompt and the cheap answer Fernet-encrypted with a key
derived from SECRET_KEY and readable for QUALITY_SHADOW_TTL_S only: nothing sits in the
broker in clear text, and the stored ledger text (USAGE_STORE_TEXT) is never read.
"""

import asyncio
import base64
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, replace
from decimal import Decimal
from functools import lru_cache

from celery import shared_task
from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.db import close_old_connections, transaction
from django.utils import timezone

from routing.gateway.outcome import LedgerRow, billed_columns
from routing.policy import Arm, ModelSpec, Tier
from routing.pricing import NOT_BILLED, ServiceTier, TokenUsage, ledger_costs
from routing.providers.chat import ProviderError, ProviderResult, achat_complete, clients_close
from routing.quality import (
    JUDGE_MAX_OUTPUT_TOKENS,
    JUDGE_ORDERS,
    Judgement,
    judge_messages,
    judge_pair,
    judge_parse,
    judgement,
    shadow_sampled,
)
from routing.selectors import policy_get
from routing.tokens import count_message_tokens
from usage.models import QualityEvaluation, Status, TokenSource
from usage.services import quality_evaluation_record, usage_record

logger = logging.getLogger(__name__)

REASONING_MAX_CHARS = 500
JUDGE_REQUEST_MAX_CHARS = 8000
_FAILURE_STATUS = {
    "upstream_timeout": Status.UPSTREAM_TIMEOUT,
    "upstream_rate_limited": Status.UPSTREAM_RATE_LIMITED,
    "upstream_bad_response": Status.UPSTREAM_BAD_RESPONSE,
}


@dataclass(frozen=True)
class ShadowJob:
    """What the evaluation needs from the original request; travels encrypted."""

    request_id: str
    api_key_id: int
    policy_version: int
    category: str
    complexity: float
    complexity_source: str
    cheap_model: str
    premium_model: str
    messages: list[dict]  # as sent to the cheap model (system prefix included)
    request_text: str  # the user turns, for the judge
    cheap_answer: str
    max_tokens: int
    temperature: float | None
    qualifying: int = 0  # a migration's id: replay on successor_model (routing.qualification)
    successor_model: str = ""


# --- hot path ---------------------------------------------------------------------------


def shadow_offer(*, call, outcome) -> None:
    """Hand a successful cheap-tier answer to shadow evaluation when it is sampled.

    Called once the request's ledger row is written. Pure checks only (no database read):
    cheap tier on the routed arm, not pinned, not a fallback or a cache hit, category not
    private, the quality_sampling flag on (off: one dict lookup), and the request id in the
    category's sample."""
    decision = call.decision
    rule = decision.rule
    if decision.tier is not Tier.MINI or decision.arm is not Arm.ROUTED or rule.private:
        return
    if outcome.status != Status.OK or outcome.cache_hit:
        return
    if outcome.model not in (None, decision.model) or decision.reason_code.startswith("pinned:"):
        return
    if not call.plan.feature_on("quality_sampling"):
        return
    if not shadow_sampled(request_id=call.request_id, percent=rule.shadow_sample_percent):
        return
    job = shadow_job(call=call, outcome=outcome, premium_model=rule.full.name)
    shadow_dispatch(shadow_encrypt(job))


def shadow_job(*, call, outcome, premium_model: str, **qualification) -> ShadowJob:
    """Return the job of one answered request: what its evaluation needs, nothing more."""
    decision = call.decision
    return ShadowJob(
        request_id=call.request_id,
        api_key_id=call.api_key.pk,
        policy_version=decision.policy_version,
        category=decision.category,
        complexity=decision.complexity,
        complexity_source=decision.complexity_source,
        cheap_model=decision.model.name,
        premium_model=premium_model,
        messages=call.plan.messages,
        request_text=call.plan.text,
        cheap_answer=outcome.content,
        max_tokens=decision.max_output_tokens,
        temperature=call.request.temperature,
        **qualification,
    )


def shadow_offer_after(call, outcome) -> Callable[[object], Awaitable[None]]:
    """Return the step that offers the answer once its ledger row is written."""

    async def offer(row: object) -> None:
        shadow_offer(call=call, outcome=outcome)  # a sampled cheap answer is judged off-path

    return offer


# Background hand-off: the request only pays for a submit. Small on purpose: shadowing is a
# sample, and a backlog here only delays evaluations, never responses.
_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="shadow")
_pending: set[Future] = set()
_pending_lock = threading.Lock()


def shadow_dispatch(token: str, *, task=None) -> Future:
    """Enqueue the evaluation of one encrypted job off the request path (by `task`: shadow
    evaluation's unless another is given, e.g. a successor's qualification)."""
    future = (
        _executor.submit(_dispatch_run, token)
        if task is None
        else _executor.submit(_dispatch_run, token, task)
    )
    with _pending_lock:
        _pending.add(future)
    future.add_done_callback(_forget)
    return future


def _forget(future: Future) -> None:
    with _pending_lock:
        _pending.discard(future)


def _dispatch_run(token: str, task=None) -> None:
    try:
        # A broker publish; with eager Celery the evaluation itself, in this thread.
        (task or quality_shadow_evaluate).delay(token)
    except Exception:
        logger.exception("shadow evaluation could not be enqueued or failed")
    finally:
        close_old_connections()


# Defined beside the service that queues it (under the name it always had), so this module
# and routing.tasks, which lists every task, do not import each other.
@shared_task(name="routing.tasks.quality_shadow_evaluate")
def quality_shadow_evaluate(token: str) -> int | None:
    """Replay and judge one sampled cheap-tier answer (the job is encrypted)."""
    evaluation = shadow_evaluate(token=token)
    return evaluation.pk if evaluation else None


def shadow_drain(*, timeout_s: float = 60.0) -> int:
    """Wait for the jobs handed off by this process (simulate, tests); return how many."""
    with _pending_lock:
        pending = list(_pending)
    wait(pending, timeout=timeout_s)
    return len(pending)


@lru_cache(maxsize=4)
def _fernet(secret_key: str) -> Fernet:
    digest = hashlib.sha256(b"huntaze-shadow-v1:" + secret_key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def shadow_encrypt(job: ShadowJob) -> str:
    """Return the job as a Fernet token (encrypted and authenticated, timestamped)."""
    payload = json.dumps(asdict(job), separators=(",", ":")).encode()
    return _fernet(settings.SECRET_KEY).encrypt(payload).decode()


def shadow_decrypt(token: str) -> ShadowJob | None:
    """Return the job, or None when the token is expired (QUALITY_SHADOW_TTL_S) or forged."""
    try:
        payload = _fernet(settings.SECRET_KEY).decrypt(
            token.encode(), ttl=settings.QUALITY_SHADOW_TTL_S
        )
    except InvalidToken:
        return None
    return ShadowJob(**json.loads(payload))


# --- the evaluation (Celery worker) ------------------------------------------------------


@dataclass(frozen=True)
class _QaCall:
    kind: str  # shadow | judge
    model: ModelSpec
    messages: list[dict]
    latency_ms: int
    result: ProviderResult | None = None
    error: ProviderError | None = None
    order: str = ""


async def qa_call(
    kind: str, model: ModelSpec, messages: list[dict], max_tokens: int, **options
) -> _QaCall:
    started = time.perf_counter()
    try:
        result = await achat_complete(
            model=model,
            messages=messages,
            max_tokens=max_tokens,
            timeout_s=settings.UPSTREAM_TIMEOUT_S,
            **options,
        )
        error = None
    except ProviderError as exc:
        result, error = None, exc
    latency_ms = round((time.perf_counter() - started) * 1000)
    return _QaCall(kind, model, messages, latency_ms, result, error)


async def replay_and_judge(
    job: ShadowJob, target: ModelSpec, judge: ModelSpec
) -> tuple[_QaCall, list[_QaCall]]:
    """Replay the job on `target`, then ask the judge in both orders.

    Shadow evaluation measures the cheap answer against the premium replay; a successor's
    qualification (job.qualifying) measures the successor's replay against today's answer,
    so its verdicts read from the successor's point of view."""
    kind = "qualify" if job.qualifying else "shadow"
    replay = await qa_call(kind, target, job.messages, job.max_tokens, temperature=job.temperature)
    if replay.result is None:
        return replay, []
    measured, reference = job.cheap_answer, replay.result.content
    if job.qualifying:
        measured, reference = reference, measured
    request_text = job.request_text[:JUDGE_REQUEST_MAX_CHARS]
    calls = []
    for order in JUDGE_ORDERS:
        answer_a, answer_b = judge_pair(order=order, cheap=measured, premium=reference)
        messages = judge_messages(
            request_text=request_text, answer_a=answer_a, answer_b=answer_b, category=job.category
        )
        calls.append(judge_call(judge, messages, order))
    return replay, list(await asyncio.gather(*calls))


async def closing_clients(coroutine):
    # The loop ends with the task: its HTTP clients must be closed before it does.
    try:
        return await coroutine
    finally:
        await clients_close()


async def judge_call(judge: ModelSpec, messages: list[dict], order: str) -> _QaCall:
    call = await qa_call("judge", judge, messages, JUDGE_MAX_OUTPUT_TOKENS, temperature=0)
    return replace(call, order=order)


def shadow_evaluate(*, token: str) -> QualityEvaluation | None:
    """Replay one sampled request on the premium model, judge both orders, record it all.

    Every shadow and judge call is a ledger row flagged qa (failures included). No verdict
    is invented: a failed or unreadable call leaves the request without an evaluation."""
    job = shadow_decrypt(token)
    if job is None:
        logger.warning("shadow job expired or unreadable: dropped")
        return None
    if job.qualifying:
        logger.error("a qualification job reached shadow evaluation: dropped")
        return None
    existing = QualityEvaluation.objects.filter(request_id=job.request_id).first()
    if existing is not None:
        return existing  # a redelivered task: evaluated already
    policy = policy_get()
    premium = policy.models.get(job.premium_model)
    judge = policy.models.get(settings.QUALITY_JUDGE_MODEL or job.premium_model)
    if premium is None or judge is None:
        logger.error("shadow evaluation of %s: premium or judge model unknown", job.request_id)
        return None
    shadow, judges = asyncio.run(closing_clients(replay_and_judge(job, premium, judge)))
    with transaction.atomic():
        verdict, qa_cost_usd = judgement_record(job, shadow, judges, premium=premium)
        if verdict is None:
            return None
        return quality_evaluation_record(
            request_id=job.request_id,
            created_at=timezone.now(),
            api_key_id=job.api_key_id,
            category=job.category,
            complexity=job.complexity,
            cheap_model=job.cheap_model,
            premium_model=premium.name,
            judge_model=judge.name,
            verdict=verdict.verdict,
            verdict_ab=verdict.verdict_ab,
            verdict_ba=verdict.verdict_ba,
            reasoning=verdict.reasoning,
            extra_cost_usd=qa_cost_usd,
            sandbox=shadow.result.sandbox,
            features=policy.router.hashed_features(job.request_text) if policy.router else {},
        )


def judgement_record(
    job: ShadowJob, replay: _QaCall, judges: list[_QaCall], *, premium: ModelSpec
) -> tuple[Judgement | None, Decimal]:
    """Write the QA ledger rows of a replay and its judge calls (inside the caller's
    transaction); return the verdict (None: a call failed or a reply is unreadable) and
    what the calls cost."""
    replies = {
        call.order: judge_parse(call.result.content) if call.result else None for call in judges
    }
    rows = [qa_record(job, replay, premium=premium)]
    rows += [
        qa_record(job, call, premium=premium, unreadable=replies[call.order] is None)
        for call in judges
    ]
    cost_usd = sum((row.cost_usd for row in rows), Decimal("0"))
    return judgement(replies, max_chars=REASONING_MAX_CHARS), cost_usd


def qa_record(job: ShadowJob, call: _QaCall, *, premium: ModelSpec, unreadable: bool = False):
    """Write the ledger row of one shadow or judge call, flagged qa, billed at its prices."""
    model = call.model
    now = timezone.now()
    price = model.price_on(now.date())
    if call.result is not None:
        result = call.result
        usage = TokenUsage.of(result)
        tier = result.service_tier
        token_source = TokenSource.PROVIDER
        costs = ledger_costs(
            price=price, baseline=premium.price_on(now.date()), usage=usage, tier=tier
        )
        status = Status.OK
        error_code = "judge_unreadable" if unreadable else ""
        sandbox = result.sandbox
    else:
        # Nothing billed: the prompt estimate, at no cost, with the error.
        input_tokens, token_source = count_message_tokens(call.messages)
        usage, tier = TokenUsage(input_tokens), ServiceTier.DEFAULT
        costs = NOT_BILLED
        status = _FAILURE_STATUS.get(call.error.code, Status.UPSTREAM_ERROR)
        error_code = call.error.code
        sandbox = settings.UPSTREAM_MODE == "sandbox"
    metadata = {"qa": call.kind, "qa_of": job.request_id}
    if call.order:
        metadata["judge_order"] = call.order
    if job.qualifying:
        metadata["qualification"] = job.qualifying
    row = LedgerRow(
        request_id=f"qa{call.kind[0]}_{uuid.uuid4().hex}",
        created_at=now,
        api_key_id=job.api_key_id,
        end_user="",
        category=job.category,
        category_source="qa",
        complexity=job.complexity,
        complexity_source=job.complexity_source,
        critical=False,
        tier=model.tier.value,
        model=model.name,
        reason_code=f"qa:{call.kind}",
        policy_version_id=job.policy_version,
        **billed_columns(price=price, usage=usage, tier=tier, costs=costs),
        token_source=token_source,
        latency_ms=call.latency_ms,
        estimated_cost_usd=costs.cost_usd,
        estimate_source=token_source,
        baseline_model=premium.name,
        status=status,
        error_code=error_code,
        sandbox=sandbox,
        qa=True,
        metadata=metadata,
    )
    return usage_record(**row.fields())
