"""Shadow qualification of a successor model (the migration assistant).

A sampled share of the live answers of a model being replaced is also sent to its successor,
off the request path, and the two answers are judged pairwise in both orders, exactly as
shadow evaluation judges cheap against premium (routing.shadow, routing.shadow_evaluation:
the same encrypted job, the same background hand-off, the same replay, judge calls and QA
ledger rows). Here the successor's answer takes the place of the one whose quality is
measured and today's answer is the reference, so "cheap_better" or "tie" means the successor
keeps today's quality. Private categories are never sampled, like in shadow evaluation.
"""

import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from decimal import Decimal

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from routing.model_migration_models import ModelMigration, SuccessorVerdict
from routing.quality import Judgement
from routing.rollout import in_share
from routing.selectors import policy_get
from routing.shadow import routed_answer_sampleable, shadow_dispatch, shadow_offer_after
from routing.shadow_evaluation import judged_replay_record
from routing.shadow_job import ShadowJob, shadow_decrypt, shadow_encrypt, shadow_job

logger = logging.getLogger(__name__)


def qualification_sampled(*, request_id: str, percent: Decimal) -> bool:
    """Return whether this request is in a qualification's sample (stable per request, and
    drawn apart from the shadow-evaluation sample)."""
    return percent > 0 and in_share(subject=f"qualify:{request_id}", percent=percent)


def qualification_offer(*, call, outcome) -> None:
    """Hand a live answer of a model being replaced to its successor when it is sampled.

    Pure checks on the policy the request was decided with (no database read): an answer of
    the routed arm (`Arm.CONTROL` is the rollout's arm with routing off, whose model is the
    legacy choice, not the router's; an experiment's control arm is routed, so while a
    migration's switch is staged, its control users' answers on the old model are still
    sampled, and its treatment users' are not: they are on the successor already), not pinned,
    not a cache hit, from the model under qualification, in one of the moving categories, the
    category not private, the request id in the sample."""
    decision = call.decision
    qualification = call.plan.policy.qualifications.get(decision.model.name)
    if qualification is None or not routed_answer_sampleable(call=call, outcome=outcome):
        return
    if decision.category not in qualification.categories:
        return
    if not qualification_sampled(request_id=call.request_id, percent=qualification.sample_percent):
        return
    job = shadow_job(
        call=call,
        outcome=outcome,
        premium_model=decision.rule.full.name,
        qualifying=qualification.migration_id,
        successor_model=qualification.successor,
    )
    shadow_dispatch(shadow_encrypt(job), task=successor_qualify)


def qa_offer_after(call, outcome) -> Callable[[object], Awaitable[None]]:
    """Return the step that offers an answer, once its ledger row is written, to shadow
    evaluation and to a successor's qualification (each decides with pure checks)."""
    shadow_offer_step = shadow_offer_after(call, outcome)

    async def offer(row: object) -> None:
        await shadow_offer_step(row)
        qualification_offer(call=call, outcome=outcome)  # a successor is tried off-path

    return offer


# Beside the service that queues it; routing.tasks lists it with the rest.
@shared_task(name="routing.tasks.successor_qualify")
def successor_qualify(token: str) -> int | None:
    """Replay one sampled answer on the successor and judge it (the job is encrypted)."""
    job = shadow_decrypt(token)
    if job is None or not job.qualifying:
        logger.warning("qualification job expired, unreadable or not one: dropped")
        return None
    verdict = qualification_evaluate(job=job)
    return verdict.pk if verdict else None


def qualification_evaluate(*, job: ShadowJob) -> SuccessorVerdict | None:
    """Replay one sampled answer on the successor, judge both orders, record it all.

    Every call is a QA ledger row (failures included) tagged with the migration; no verdict
    is invented when a call fails or the judge cannot be read."""
    migration = ModelMigration.objects.filter(pk=job.qualifying).first()
    if migration is None:
        return None
    existing = migration.verdicts.filter(request_id=job.request_id).first()
    if existing is not None:
        return existing  # a redelivered task
    policy = policy_get()
    successor = policy.models.get(job.successor_model)
    baseline = policy.models.get(job.premium_model)
    judge = policy.models.get(settings.QUALITY_JUDGE_MODEL or job.premium_model)
    if successor is None or judge is None or baseline is None:
        logger.error("qualification of %s: successor or judge model unknown", job.request_id)
        return None

    def verdict_record(verdict: Judgement, qa_cost_usd: Decimal, sandbox: bool) -> SuccessorVerdict:
        return SuccessorVerdict.objects.create(
            migration=migration,
            request_id=job.request_id,
            created_at=timezone.now(),
            category=job.category,
            complexity=job.complexity,
            judge_model=judge.name,
            **asdict(verdict),
            qa_cost_usd=qa_cost_usd,
            sandbox=sandbox,
        )

    return judged_replay_record(
        job, target=successor, judge=judge, premium=baseline, verdict_record=verdict_record
    )
