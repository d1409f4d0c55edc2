"""Shadow evaluation in the worker: replay a sampled answer, judge the pair, record it all.

The job (routing.shadow_job) is replayed on another model, then the judge compares the two
answers in both orders (routing.quality: prompts, parsing, the combined verdict). Every
replay and judge call is a ledger row flagged qa, billed at its own prices, failures
included; the verdict row is written in the same transaction. A successor's qualification
(routing.qualification) goes through the same steps with its own verdict row.
"""

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from decimal import Decimal
from typing import TypeVar

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from routing.gateway.outcome import LedgerRow, billed_columns, failure_status
from routing.models import QualityEvaluation
from routing.policy import ModelSpec
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
)
from routing.quality_services import quality_evaluation_record
from routing.selectors import policy_get
from routing.shadow_job import ShadowJob, shadow_decrypt
from routing.tokens import count_message_tokens
from usage.models import Status, TokenSource
from usage.services import usage_record

logger = logging.getLogger(__name__)
VerdictRow = TypeVar("VerdictRow")  # what a judged replay keeps: an evaluation, a verdict

REASONING_MAX_CHARS = 500
JUDGE_REQUEST_MAX_CHARS = 8000


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

    def evaluation_record(
        verdict: Judgement, qa_cost_usd: Decimal, sandbox: bool
    ) -> QualityEvaluation:
        return quality_evaluation_record(
            request_id=job.request_id,
            created_at=timezone.now(),
            api_key_id=job.api_key_id,
            category=job.category,
            complexity=job.complexity,
            cheap_model=job.cheap_model,
            premium_model=premium.name,
            judge_model=judge.name,
            **asdict(verdict),
            extra_cost_usd=qa_cost_usd,
            sandbox=sandbox,
            features=policy.router.hashed_features(job.request_text) if policy.router else {},
        )

    return judged_replay_record(
        job, target=premium, judge=judge, premium=premium, verdict_record=evaluation_record
    )


def judged_replay_record(
    job: ShadowJob,
    *,
    target: ModelSpec,
    judge: ModelSpec,
    premium: ModelSpec,
    verdict_record: Callable[[Judgement, Decimal, bool], VerdictRow],
) -> VerdictRow | None:
    """Replay the job on `target`, have `judge` compare both orders, and write it all in one
    transaction: a QA ledger row per call (baseline: `premium`'s prices), then, when there is
    a verdict, the row `verdict_record(judgement, qa_cost_usd, sandbox)` writes. Return that
    row, or None without a verdict (a failed call or an unreadable reply invents none).

    Shadow evaluation and a successor's qualification differ only in the row they keep."""
    replay, judges = asyncio.run(closing_clients(replay_and_judge(job, target, judge)))
    with transaction.atomic():
        judged, qa_cost_usd = judgement_record(job, replay, judges, premium=premium)
        if judged is None:
            return None
        return verdict_record(judged, qa_cost_usd, replay.result.sandbox)


@dataclass(frozen=True)
class _QaCall:
    kind: str  # shadow | judge
    model: ModelSpec
    messages: list[dict]
    latency_ms: int
    result: ProviderResult | None = None
    error: ProviderError | None = None
    order: str = ""


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
        status = failure_status(call.error.code)
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
