"""Shadow evaluation on the request path: sample a cheap-tier answer and hand it off.

The product's response never waits for any of it. The hot path only decides (a hash, no
database read) and hands an encrypted job (routing.shadow_job) to a background thread, which
publishes it to the Celery broker (or, with eager Celery in development and tests, runs it
right there, after the response). The worker replays and judges it in
routing.shadow_evaluation.
"""

import logging
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait

from celery import shared_task
from django.db import close_old_connections

from routing.policy import Arm, Tier
from routing.quality import shadow_sampled
from routing.shadow_evaluation import shadow_evaluate
from routing.shadow_job import shadow_encrypt, shadow_job
from usage.models import Status

logger = logging.getLogger(__name__)


def shadow_offer(*, call, outcome) -> None:
    """Hand a successful cheap-tier answer to shadow evaluation when it is sampled.

    Called once the request's ledger row is written. Pure checks only (no database read):
    cheap tier on the routed arm, not pinned, not a fallback or a cache hit, category not
    private, the quality_sampling flag on (off: one dict lookup), and the request id in the
    category's sample."""
    decision = call.decision
    rule = decision.rule
    if decision.tier is not Tier.MINI or not routed_answer_sampleable(call=call, outcome=outcome):
        return
    if not call.plan.feature_on("quality_sampling"):
        return
    if not shadow_sampled(request_id=call.request_id, percent=rule.shadow_sample_percent):
        return
    job = shadow_job(call=call, outcome=outcome, premium_model=rule.full.name)
    shadow_dispatch(shadow_encrypt(job))


def routed_answer_sampleable(*, call, outcome) -> bool:
    """Return whether an answer may be sampled for evaluation off-path (shadow evaluation, a
    successor's qualification): answered OK on the routed arm by the model decided (no
    fallback, no cache hit), not a model the caller pinned, in a category that is not private."""
    decision = call.decision
    if decision.arm is not Arm.ROUTED or decision.rule.private:
        return False
    if outcome.status != Status.OK or outcome.cache_hit:
        return False
    if outcome.model not in (None, decision.model):  # a fallback answered
        return False
    return not decision.reason_code.startswith("pinned:")


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
