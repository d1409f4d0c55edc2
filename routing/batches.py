"""Batch jobs: deferrable requests sent through the provider's Batch API at the batch price.

A job is routed item by item like live requests, then split into one provider batch per
model (a batch file holds one model). Each provider batch moves pending -> submitting ->
submitted -> collected; the state and a lease (`next_action_at`) live in its row, so any
worker, after any restart, resumes it, and a conditional update lets only one worker act on
it at a time. Collection writes every item's one ledger row in one transaction, under a row
lock, and only once (a second poll finds the batch collected).
"""

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from routing.engine import RoutingError
from routing.gateway.admission import budget_period_locked
from routing.gateway.call import CompletionRequest, RoutePlan, request_route_plan
from routing.gateway.outcome import LedgerRow, decided_columns
from routing.gateway.response_cache import (
    response_cache_key,
    response_cache_read,
    response_cache_value,
    response_cache_write,
)
from routing.models import (
    ApiKey,
    BatchItem,
    BatchItemStatus,
    BatchJob,
    BatchStatus,
    BudgetPeriod,
    ModelProfile,
    PolicyVersion,
    ProviderBatch,
    ProviderBatchState,
)
from routing.pricing import (
    LEDGER_PLACES,
    NOT_BILLED,
    Prices,
    batch_prices_per_mtok,
    ledger_costs,
)
from routing.providers.batch import (
    BatchInfo,
    BatchProviderError,
    Endpoint,
    batch_create,
    batch_file_content,
    batch_file_upload,
    batch_find,
    batch_retrieve,
)
from routing.rollout import rollout_subject
from routing.selectors import policy_get
from usage.models import Status, TokenSource
from usage.services import usage_record

logger = logging.getLogger(__name__)

PROVIDER_FINAL = {"completed", "failed", "expired", "cancelled"}
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
    return body


def _item_ledger(
    *, plan: RoutePlan, request: CompletionRequest, api_key: ApiKey, discount, cache_key: str | None
) -> dict:
    """The ledger row as decided now, and the prices that bill it when the result comes."""
    decision = plan.decision
    model, baseline = decision.model, decision.baseline_model
    input_price, output_price = batch_prices_per_mtok(
        input_per_mtok_usd=model.input_per_mtok_usd,
        output_per_mtok_usd=model.output_per_mtok_usd,
        discount_percent=discount,
    )
    factor = (Decimal(100) - discount) / Decimal(100)
    estimate = (decision.estimated_cost_usd * factor).quantize(LEDGER_PLACES, ROUND_HALF_EVEN)
    store_text = settings.USAGE_STORE_TEXT
    row = dict(
        **decided_columns(decision, model=model),
        api_key_id=api_key.pk,
        end_user=request.user,
        estimated_cost_usd=estimate,
        estimate_source=plan.token_source,
        price_input_per_mtok_usd=input_price,
        price_cached_input_per_mtok_usd=input_price,  # no cache discount inside a batch
        price_output_per_mtok_usd=output_price,
        metadata=request.metadata,
        prompt_text=plan.text[: settings.USAGE_STORE_TEXT_MAX_CHARS] if store_text else "",
    )
    prices = {
        "list_input": model.input_per_mtok_usd,
        "list_output": model.output_per_mtok_usd,
        "baseline_input": baseline.input_per_mtok_usd,
        "baseline_output": baseline.output_per_mtok_usd,
        "prompt_tokens": plan.prompt_tokens,
        "token_source": plan.token_source,
    }
    answer_cache = {"key": cache_key, "ttl_s": decision.rule.response_cache_ttl_s}
    fields = {"row": row, "prices": prices, "cache": answer_cache if cache_key else None}
    # Stored as JSON (Decimals as strings), read back with Decimal() at collection.
    return json.loads(json.dumps(fields, cls=DjangoJSONEncoder))


def _batch_discounts(policy_version: int) -> dict[str, Decimal]:
    snapshot = PolicyVersion.objects.get(pk=policy_version).snapshot
    return {
        name: Decimal(data.get("batch_discount_percent", "0"))
        for name, data in snapshot["models"].items()
    }


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
    discounts = _batch_discounts(plans[0].decision.policy_version)
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
                    discount=discounts.get(name, Decimal("0")),
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
            _item_from_cache(batch_item, hit, now=now)
        if not parts:
            _job_refresh(job.pk, now=now)
        part_ids = [part.pk for part in parts.values()]
        transaction.on_commit(lambda: _submit_enqueue(part_ids))
    return job


def _submit_enqueue(part_ids: list[int]) -> None:
    from routing.tasks import provider_batch_submit_run  # the tasks module imports this one

    try:
        for part_id in part_ids:
            provider_batch_submit_run.delay(part_id)
    except Exception:  # a broker outage: the job is stored, and the beat's sweep submits it
        logger.warning("batch submission not queued (broker unavailable); the sweep will")


# --- submit ----------------------------------------------------------------------------


def _endpoint(model_name: str) -> Endpoint:
    profile = ModelProfile.objects.filter(name=model_name).values("base_url", "api_key_env")
    row = profile.first() or {}
    return Endpoint(
        base_url=row.get("base_url", ""), api_key_env=row.get("api_key_env", "OPENAI_API_KEY")
    )


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
    endpoint = _endpoint(part.model)
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


# --- poll and collect ------------------------------------------------------------------


def provider_batch_poll(*, provider_batch_id: int, now: datetime) -> str:
    """Ask the provider about one submitted batch if it is due; collect it once final.

    Returns the provider's status. Idempotent: a collected batch is never polled again, and
    a failed poll or download is simply retried at the next due time."""
    claimed = ProviderBatch.objects.filter(
        pk=provider_batch_id, state=ProviderBatchState.SUBMITTED, next_action_at__lte=now
    ).update(
        next_action_at=now + timedelta(seconds=settings.BATCH_POLL_INTERVAL_S),
        poll_count=F("poll_count") + 1,
    )
    part = ProviderBatch.objects.get(pk=provider_batch_id)
    if not claimed:
        return part.provider_status
    endpoint = _endpoint(part.model)
    try:
        info = batch_retrieve(endpoint=endpoint, batch_id=part.provider_batch_id)
        output = error = ""
        if info.status in PROVIDER_FINAL:
            if info.output_file_id:
                output = batch_file_content(endpoint=endpoint, file_id=info.output_file_id)
            if info.error_file_id:
                error = batch_file_content(endpoint=endpoint, file_id=info.error_file_id)
    except BatchProviderError as failure:
        ProviderBatch.objects.filter(pk=part.pk).update(last_error=failure.message[:500])
        return part.provider_status
    if info.status not in PROVIDER_FINAL:
        ProviderBatch.objects.filter(pk=part.pk).update(provider_status=info.status, last_error="")
        return info.status
    provider_batch_collect(
        provider_batch_id=part.pk, info=info, output_text=output, error_text=error, now=now
    )
    return info.status


def _lines_by_custom_id(text: str) -> dict[str, dict]:
    lines = {}
    for raw in text.splitlines():
        if raw.strip():
            line = json.loads(raw)
            lines[line.get("custom_id", "")] = line
    return lines


# What an item without an answer line became, by the provider batch's final status.
_UNANSWERED = {
    "expired": (BatchItemStatus.EXPIRED, "batch_expired"),
    "cancelled": (BatchItemStatus.CANCELLED, "batch_cancelled"),
    "failed": (BatchItemStatus.FAILED, "batch_failed"),
    "completed": (BatchItemStatus.FAILED, "batch_result_missing"),
}


def provider_batch_collect(
    *,
    provider_batch_id: int,
    info: BatchInfo,
    output_text: str,
    error_text: str,
    now: datetime,
    failure_code: str = "",
) -> int:
    """Record every pending item of a final provider batch, once; return rows written."""
    answers = _lines_by_custom_id(output_text)
    answers.update(_lines_by_custom_id(error_text))
    written = 0
    with transaction.atomic():
        part = ProviderBatch.objects.select_for_update().get(pk=provider_batch_id)
        if part.state == ProviderBatchState.COLLECTED:
            return 0  # another poller got here first
        pending = part.items.select_for_update().filter(status=BatchItemStatus.PENDING)
        settled: dict[str, BatchItem] = {}
        for item in sorted(pending, key=lambda i: (i.follows != "", i.index)):
            if item.follows:
                first = settled.get(item.follows) or part.items.get(custom_id=item.follows)
                _item_follow(item, first, now=now)
            else:
                _item_settle(item, answers.get(item.custom_id), info, failure_code, now=now)
                settled[item.custom_id] = item
            written += 1
        part.state = ProviderBatchState.COLLECTED
        part.provider_status = info.status
        part.output_file_id, part.error_file_id = info.output_file_id, info.error_file_id
        part.last_error = (info.errors or part.last_error)[:500]
        part.collected_at = now
        part.save()
        _job_refresh(part.job_id, now=now)
    return written


def _item_settle(
    item: BatchItem, line: dict | None, info: BatchInfo, failure_code: str, *, now: datetime
) -> None:
    response = (line or {}).get("response") or {}
    body = response.get("body") or {}
    if line is not None and response.get("status_code") == 200 and body.get("usage"):
        usage = body["usage"]
        details = usage.get("prompt_tokens_details") or {}
        choice = (body.get("choices") or [{}])[0]
        item.status = BatchItemStatus.SUCCEEDED
        item.content = (choice.get("message") or {}).get("content") or ""
        item.finish_reason = choice.get("finish_reason") or ""
        tokens = (usage["prompt_tokens"], details.get("cached_tokens") or 0)
        tokens += (usage["completion_tokens"],)
        row = _ledger_row(item, tokens=tokens, billed=True, now=now)
        answer_cache = item.ledger_fields.get("cache")
        if answer_cache:
            value = response_cache_value(
                row, content=item.content, finish_reason=item.finish_reason
            )
            key, ttl_s = answer_cache["key"], answer_cache["ttl_s"]
            transaction.on_commit(lambda: response_cache_write(key, value, ttl_s))
    else:
        if line is not None:
            error = line.get("error") or body.get("error") or {}
            item.status = BatchItemStatus.FAILED
            item.error_code = "batch_item_failed"
            item.error_message = str(error.get("message") or "")[:500]
        else:
            item.status, item.error_code = _UNANSWERED.get(
                info.status, (BatchItemStatus.FAILED, "batch_failed")
            )
            item.error_code = failure_code or item.error_code
            item.error_message = info.errors[:500]
        row = _ledger_row(item, tokens=None, billed=False, now=now)
    _item_record(item, row, now=now)


def _item_from_cache(item: BatchItem, hit: dict, *, now: datetime) -> None:
    """Answer an item from the response cache: nothing billed, the first answer's bill avoided."""
    item.status = BatchItemStatus.SUCCEEDED
    item.content, item.finish_reason = hit["content"], hit.get("finish_reason", "stop")
    tokens = (hit["input_tokens"], 0, hit["output_tokens"])
    avoided = Decimal(hit["cost_usd"])
    _item_record(
        item, _ledger_row(item, tokens=tokens, billed=True, now=now, avoided=avoided), now=now
    )


def _item_follow(item: BatchItem, first: BatchItem, *, now: datetime) -> None:
    """An identical item sent once: it shares the first one's answer, or its failure."""
    if first.status == BatchItemStatus.SUCCEEDED:
        hit = {
            "content": first.content,
            "finish_reason": first.finish_reason,
            "input_tokens": first.input_tokens,
            "output_tokens": first.output_tokens,
            "cost_usd": first.cost_usd,
        }
        _item_from_cache(item, hit, now=now)
        return
    item.status, item.error_code = first.status, first.error_code
    item.error_message = first.error_message
    _item_record(item, _ledger_row(item, tokens=None, billed=False, now=now), now=now)


def _item_record(item: BatchItem, row: LedgerRow, *, now: datetime) -> None:
    """Save the item's outcome and write its one ledger row."""
    item.input_tokens, item.output_tokens = row.input_tokens, row.output_tokens
    item.cost_usd = row.cost_usd
    item.save()
    if row.cost_usd:  # first: a new budget period counts the ledger as it was before this row
        _budget_spend(row.api_key_id, row.cost_usd, now=now)
    usage_record(**row.fields())


def _ledger_row(
    item: BatchItem,
    *,
    tokens: tuple | None,
    billed: bool,
    now: datetime,
    avoided: Decimal | None = None,
) -> LedgerRow:
    """The item's one ledger row: batch price billed, list price as `uncached`, so on batch
    rows uncached - cost is the batch layer and baseline - uncached the routing layer.

    `avoided` (a response-cache answer): nothing billed, the first answer's bill avoided."""
    row = dict(item.ledger_fields["row"])
    prices = item.ledger_fields["prices"]
    for key in (
        "price_input_per_mtok_usd",
        "price_cached_input_per_mtok_usd",
        "price_output_per_mtok_usd",
        "estimated_cost_usd",
    ):
        row[key] = Decimal(row[key])
    if billed:
        input_tokens, cached_tokens, output_tokens = tokens
        costs = ledger_costs(
            billed=Prices(
                row["price_input_per_mtok_usd"],
                row["price_cached_input_per_mtok_usd"],
                row["price_output_per_mtok_usd"],
            ),
            listed=_stored_prices(prices["list_input"], prices["list_output"]),
            baseline=_stored_prices(prices["baseline_input"], prices["baseline_output"]),
            input_tokens=input_tokens,
            cached_tokens=cached_tokens,
            output_tokens=output_tokens,
            free=avoided is not None,
        )
        token_source, status, error_code = TokenSource.PROVIDER, Status.OK, ""
    else:
        # Nothing billed: the row keeps the prompt estimate and costs nothing.
        input_tokens, cached_tokens, output_tokens = prices["prompt_tokens"], 0, 0
        costs = NOT_BILLED
        token_source, status, error_code = (
            prices["token_source"],
            Status.UPSTREAM_ERROR,
            item.error_code,
        )
    store_text = settings.USAGE_STORE_TEXT
    return LedgerRow(
        **row,
        request_id=item.request_id,
        created_at=now,  # billed when collected: the rollup refresh sees it at once
        input_tokens=input_tokens,
        cached_tokens=cached_tokens,
        output_tokens=output_tokens,
        token_source=token_source,
        latency_ms=0,  # a batch turnaround is hours: kept on the job, out of live latency
        cost_usd=costs.cost_usd,
        uncached_cost_usd=costs.uncached_cost_usd,
        avoided_cost_usd=avoided or Decimal("0"),
        cache_hit=avoided is not None,
        baseline_cost_usd=costs.baseline_cost_usd,
        status=status,
        error_code=error_code,
        sandbox=settings.UPSTREAM_MODE == "sandbox",
        batch=True,
        response_text=item.content[: settings.USAGE_STORE_TEXT_MAX_CHARS] if store_text else "",
    )


def _stored_prices(input_per_mtok_usd: str, output_per_mtok_usd: str) -> Prices:
    # Kept as strings in the item; undiscounted amounts read only the input and output prices.
    return Prices(
        Decimal(input_per_mtok_usd), Decimal(input_per_mtok_usd), Decimal(output_per_mtok_usd)
    )


def _budget_spend(api_key_id: int, cost_usd: Decimal, *, now: datetime) -> None:
    """Count batch spend in the key's month, for keys with a budget (no reservation: the job
    was accepted up front, and it bills only what the provider answered)."""
    if not ApiKey.objects.filter(pk=api_key_id, monthly_budget_usd__isnull=False).exists():
        return
    with transaction.atomic():
        period = budget_period_locked(api_key_id, now.date().replace(day=1))
        BudgetPeriod.objects.filter(pk=period.pk).update(spent_usd=F("spent_usd") + cost_usd)


def _job_refresh(job_id: int, *, now: datetime) -> None:
    """Close the job once every provider batch is collected, with a status from its items."""
    job = BatchJob.objects.select_for_update().get(pk=job_id)
    if job.provider_batches.exclude(state=ProviderBatchState.COLLECTED).exists():
        return
    statuses = set(job.items.values_list("status", flat=True))
    if BatchItemStatus.EXPIRED in statuses:
        job.status = BatchStatus.EXPIRED
    elif BatchItemStatus.CANCELLED in statuses:
        job.status = BatchStatus.CANCELLED
    elif BatchItemStatus.SUCCEEDED not in statuses:
        job.status = BatchStatus.FAILED
    else:
        job.status = BatchStatus.COMPLETED
    job.completed_at = now
    job.save(update_fields=["status", "completed_at"])


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
