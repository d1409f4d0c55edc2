"""Batch jobs: deferrable requests sent through the provider's Batch API at the batch price.

A job is routed item by item like live requests, then split into one provider batch per
model (a batch file holds one model). Each provider batch moves pending -> submitting ->
submitted -> collected; the state and a lease (`next_action_at`) live in its row, so any
worker, after any restart, resumes it, and a conditional update lets only one worker act on
it at a time. Polling and collection, which writes every item's one ledger row once, are in
routing.batch_results.
"""

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN

from celery import shared_task
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from huntaze.money import LEDGER_PLACES
from routing.batch_models import BatchItem, BatchJob, BatchStatus, ProviderBatch, ProviderBatchState
from routing.batch_results import (
    item_from_cache,
    job_refresh,
    provider_batch_collect,
    provider_endpoint,
)
from routing.engine import RoutingError
from routing.gateway.call import CompletionRequest, RoutePlan, request_route_plan
from routing.gateway.outcome import decided_columns
from routing.gateway.response_cache import response_cache_key, response_cache_read
from routing.models import ApiKey
from routing.pricing import price_row_json
from routing.providers.batch import (
    BatchInfo,
    BatchProviderError,
    batch_create,
    batch_file_upload,
    batch_find,
)
from routing.providers.compat import param_rules_for, request_for_model
from routing.rollout import rollout_subject
from routing.selectors import policy_get

logger = logging.getLogger(__name__)

METADATA_KEY = "huntaze_part"  # finds a batch whose create answer was lost


class BatchRefused(Exception):
    """A job the service will not take (feature off); the API answers `status`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class BatchRequest:
    custom_id: str
    request: CompletionRequest


# --- create ----------------------------------------------------------------------------


def _plan_item(*, index: int, item: BatchRequest, api_key: ApiKey) -> RoutePlan:
    try:
        plan = request_route_plan(request=item.request, api_key_id=api_key.pk)
    except RoutingError as error:
        field = f"requests[{index}].{error.field}" if error.field else f"requests[{index}]"
        raise RoutingError(error.code, f"requests[{index}]: {error.message}", field) from error
    if not plan.decision.rule.deferrable:
        raise RoutingError(
            "category_not_deferrable",
            f"requests[{index}]: category '{plan.decision.category}' does not accept batch "
            "jobs; send it to /api/v1/completions.",
            f"requests[{index}].category",
        )
    return plan


def _item_body(plan: RoutePlan, request: CompletionRequest) -> dict:
    body: dict = {
        "model": plan.decision.model.name,
        "messages": plan.messages,
        "max_tokens": plan.decision.max_output_tokens,
    }
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.user:
        body["user"] = request.user
    # Shaped now, for the model the item is batched on: the body is sent as stored.
    body, changes = request_for_model(body, param_rules_for(plan.decision.model.name))
    if changes:
        logger.debug("batch item shaped for %s: %s", body["model"], ", ".join(changes))
    return body


def _item_ledger(
    *, plan: RoutePlan, request: CompletionRequest, api_key: ApiKey, cache_key: str | None
) -> dict:
    """The ledger row as decided now, and the price rows that bill it when the result comes
    (the rows in force today: a batch bills at the prices of the day it was submitted)."""
    decision = plan.decision
    model, baseline = decision.model, decision.baseline_model
    price = model.list_price
    factor = price.batch_multiplier
    estimate = (decision.estimated_cost_usd * factor).quantize(LEDGER_PLACES, ROUND_HALF_EVEN)
    store_text = settings.USAGE_STORE_TEXT
    row = dict(
        **decided_columns(decision, model=model),
        api_key_id=api_key.pk,
        end_user=request.user,
        estimated_cost_usd=estimate,
        estimate_source=plan.token_source,
        metadata=request.metadata,
        prompt_text=plan.text[: settings.USAGE_STORE_TEXT_MAX_CHARS] if store_text else "",
    )
    prices = {
        "price": price_row_json(price),
        "baseline": price_row_json(baseline.list_price),
        "prompt_tokens": plan.prompt_tokens,
        "token_source": plan.token_source,
    }
    answer_cache = {"key": cache_key, "ttl_s": decision.rule.response_cache_ttl_s}
    fields = {"row": row, "prices": prices, "cache": answer_cache if cache_key else None}
    # Stored as JSON (Decimals as strings), read back with Decimal() at collection.
    return json.loads(json.dumps(fields, cls=DjangoJSONEncoder))


def batch_job_create(
    *, api_key: ApiKey, requests: list[BatchRequest], metadata: dict | None = None
) -> BatchJob:
    """Route every request, store the job and its items, and queue its submission.

    The whole job is refused (RoutingError, naming the item) when any item cannot be routed
    or its category is not deferrable: a caller never gets half a job."""
    policy = policy_get()
    subject = rollout_subject(end_user="", api_key_id=api_key.pk)
    if not policy.feature_on("batch", subject=subject, api_key_id=api_key.pk):
        raise BatchRefused(403, "batch_disabled", "Batch jobs are switched off for this key.")
    plans = [_plan_item(index=i, item=item, api_key=api_key) for i, item in enumerate(requests)]
    now = timezone.now()
    hits: dict[str, dict | None] = {}
    with transaction.atomic():
        job = BatchJob.objects.create(
            public_id="batch_" + uuid.uuid4().hex,
            api_key=api_key,
            metadata=metadata or {},
            created_at=now,
        )
        parts: dict[str, ProviderBatch] = {}
        sent: dict[str, str] = {}  # response-cache key -> custom_id of the item that is sent
        items, answered = [], []
        for index, (item, plan) in enumerate(zip(requests, plans, strict=True)):
            # The category's response cache serves batches as it serves live calls.
            key = response_cache_key(plan=plan, request=item.request, api_key=api_key)
            if key and key not in hits:
                hits[key] = response_cache_read(key)
            name = plan.decision.model.name
            batch_item = BatchItem(
                job=job,
                index=index,
                custom_id=item.custom_id,
                request_id="req_" + uuid.uuid4().hex,
                body=_item_body(plan, item.request),
                ledger_fields=_item_ledger(
                    plan=plan,
                    request=item.request,
                    api_key=api_key,
                    cache_key=key,
                ),
            )
            items.append(batch_item)
            if key and hits[key] is not None:
                answered.append((batch_item, hits[key]))
                continue
            if key in sent:
                batch_item.follows = sent[key]  # sent once; answered from the first's result
            elif key:
                sent[key] = item.custom_id
            if name not in parts:
                parts[name] = ProviderBatch.objects.create(job=job, model=name, next_action_at=now)
            batch_item.provider_batch = parts[name]
        BatchItem.objects.bulk_create(items)
        for batch_item, hit in answered:
            item_from_cache(batch_item, hit, now=now)
        if not parts:
            job_refresh(job.pk, now=now)
        part_ids = [part.pk for part in parts.values()]
        transaction.on_commit(lambda: _submit_enqueue(part_ids))
    return job


def _submit_enqueue(part_ids: list[int]) -> None:
    try:
        for part_id in part_ids:
            provider_batch_submit_run.delay(part_id)
    except Exception:  # a broker outage: the job is stored, and the beat's sweep submits it
        logger.warning("batch submission not queued (broker unavailable); the sweep will")


# Defined beside the service that queues it (under the name it always had), so this module
# and routing.tasks, which lists every task, do not import each other.
@shared_task(name="routing.tasks.provider_batch_submit_run")
def provider_batch_submit_run(provider_batch_id: int) -> str:
    """Upload and create one provider batch, if due."""
    return provider_batch_submit(provider_batch_id=provider_batch_id, now=timezone.now())


# --- submit ----------------------------------------------------------------------------


def _marker(part: ProviderBatch) -> str:
    return f"{part.job.public_id}:{part.pk}"


def _jsonl(part: ProviderBatch) -> bytes:
    lines = (
        json.dumps(
            {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}
        )
        + "\n"
        for custom_id, body in part.items.filter(follows="")
        .order_by("index")
        .values_list("custom_id", "body")
    )
    return "".join(lines).encode()


def provider_batch_submit(*, provider_batch_id: int, now: datetime) -> str:
    """Upload and create one provider batch if it is due; return its state afterwards.

    Retryable provider errors put it back to pending with a growing delay; after
    BATCH_SUBMIT_MAX_ATTEMPTS (or a non-retryable error) its items are recorded as failed.
    A retry first looks for a batch made by an earlier attempt whose answer was lost, so a
    worker dying between create and save never bills a batch twice."""
    claimed = ProviderBatch.objects.filter(
        pk=provider_batch_id,
        state__in=[ProviderBatchState.PENDING, ProviderBatchState.SUBMITTING],
        next_action_at__lte=now,
    ).update(
        state=ProviderBatchState.SUBMITTING,
        next_action_at=now + timedelta(seconds=settings.BATCH_SUBMIT_LEASE_S),
        submit_attempts=F("submit_attempts") + 1,
    )
    part = ProviderBatch.objects.select_related("job").get(pk=provider_batch_id)
    if not claimed:
        return part.state
    endpoint = provider_endpoint(part.model)
    try:
        info = None
        if part.submit_attempts > 1:
            info = batch_find(endpoint=endpoint, key=METADATA_KEY, value=_marker(part))
        if info is None:
            if not part.input_file_id:
                part.input_file_id = batch_file_upload(endpoint=endpoint, jsonl=_jsonl(part))
                part.save(update_fields=["input_file_id"])
            info = batch_create(
                endpoint=endpoint,
                input_file_id=part.input_file_id,
                metadata={METADATA_KEY: _marker(part), "huntaze_job": part.job.public_id},
            )
    except BatchProviderError as error:
        return _submit_failed(part, error, now=now)
    ProviderBatch.objects.filter(pk=part.pk).update(
        state=ProviderBatchState.SUBMITTED,
        provider_batch_id=info.id,
        provider_status=info.status,
        submitted_at=now,
        last_error="",
        next_action_at=now + timedelta(seconds=settings.BATCH_POLL_INTERVAL_S),
    )
    BatchJob.objects.filter(pk=part.job_id, status=BatchStatus.QUEUED).update(
        status=BatchStatus.IN_PROGRESS
    )
    return ProviderBatchState.SUBMITTED


def _submit_failed(part: ProviderBatch, error: BatchProviderError, *, now: datetime) -> str:
    logger.warning("batch %s (%s): %s", part.job.public_id, part.model, error.message)
    if error.retryable and part.submit_attempts < settings.BATCH_SUBMIT_MAX_ATTEMPTS:
        delay_s = settings.BATCH_SUBMIT_RETRY_S * 2 ** (part.submit_attempts - 1)
        ProviderBatch.objects.filter(pk=part.pk).update(
            state=ProviderBatchState.PENDING,
            last_error=error.message[:500],
            next_action_at=now + timedelta(seconds=delay_s),
        )
        return ProviderBatchState.PENDING
    part.last_error = error.message[:500]
    part.save(update_fields=["last_error"])
    info = BatchInfo(
        id="", status="failed", output_file_id="", error_file_id="", errors="", metadata={}
    )
    provider_batch_collect(
        provider_batch_id=part.pk,
        info=info,
        output_text="",
        error_text="",
        now=now,
        failure_code="batch_submit_failed",
    )
    return ProviderBatchState.COLLECTED


# --- reads ----------------------------------------------------------------------------


def batch_job_get(*, public_id: str, api_key: ApiKey) -> BatchJob | None:
    """Return the key's own job with its parts and items, or None (another key's: None)."""
    return (
        BatchJob.objects.filter(public_id=public_id, api_key=api_key)
        .prefetch_related("items", "provider_batches")
        .first()
    )


# --- the beat's sweep ------------------------------------------------------------------


def provider_batches_due(*, now: datetime, limit: int = 200) -> dict[str, list[int]]:
    """Return the ids of provider batches due for submission and for polling."""
    due = ProviderBatch.objects.filter(next_action_at__lte=now).order_by("next_action_at")
    submit = due.filter(state__in=[ProviderBatchState.PENDING, ProviderBatchState.SUBMITTING])
    poll = due.filter(state=ProviderBatchState.SUBMITTED)
    return {
        "submit": list(submit.values_list("pk", flat=True)[:limit]),
        "poll": list(poll.values_list("pk", flat=True)[:limit]),
    }
