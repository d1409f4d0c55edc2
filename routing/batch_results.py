"""Batch results: poll a submitted provider batch and collect it once final, writing every
item's one ledger row (batch price billed) in one transaction, under a row lock, only once."""

import json
import logging
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import F

from routing.batch_models import (
    BatchItem,
    BatchItemStatus,
    BatchJob,
    BatchStatus,
    ProviderBatch,
    ProviderBatchState,
)
from routing.gateway.admission import budget_period_locked
from routing.gateway.outcome import LedgerRow, billed_columns
from routing.gateway.response_cache import response_cache_value, response_cache_write
from routing.models import ApiKey, ModelProfile
from routing.pricing import (
    NOT_BILLED,
    PriceRow,
    ServiceTier,
    TokenUsage,
    ledger_costs,
    price_row_from_json,
)
from routing.providers.batch import (
    BatchInfo,
    BatchProviderError,
    Endpoint,
    batch_file_content,
    batch_retrieve,
)
from routing.providers.usage_block import usage_parse
from routing.request_state_models import BudgetPeriod
from usage.models import Status, TokenSource
from usage.services import usage_record

logger = logging.getLogger(__name__)

PROVIDER_FINAL = {"completed", "failed", "expired", "cancelled"}


def provider_endpoint(model_name: str) -> Endpoint:
    """Return where the model's Batch API is: its profile's base URL and key variable."""
    profile = ModelProfile.objects.filter(name=model_name).values("base_url", "api_key_env")
    row = profile.first() or {}
    return Endpoint(
        base_url=row.get("base_url", ""), api_key_env=row.get("api_key_env", "OPENAI_API_KEY")
    )


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
    endpoint = provider_endpoint(part.model)
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
        job_refresh(part.job_id, now=now)
    return written


def _item_settle(
    item: BatchItem, line: dict | None, info: BatchInfo, failure_code: str, *, now: datetime
) -> None:
    response = (line or {}).get("response") or {}
    body = response.get("body") or {}
    if line is not None and response.get("status_code") == 200 and body.get("usage"):
        usage = body["usage"]
        choice = (body.get("choices") or [{}])[0]
        item.status = BatchItemStatus.SUCCEEDED
        item.content = (choice.get("message") or {}).get("content") or ""
        item.finish_reason = choice.get("finish_reason") or ""
        tokens = TokenUsage.of(usage_parse(usage))
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


def item_from_cache(item: BatchItem, hit: dict, *, now: datetime) -> None:
    """Answer an item from the response cache: nothing billed, the first answer's bill avoided."""
    item.status = BatchItemStatus.SUCCEEDED
    item.content, item.finish_reason = hit["content"], hit.get("finish_reason", "stop")
    tokens = TokenUsage(hit["input_tokens"], hit["output_tokens"])
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
        item_from_cache(item, hit, now=now)
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
    tokens: TokenUsage | None,
    billed: bool,
    now: datetime,
    avoided: Decimal | None = None,
) -> LedgerRow:
    """The item's one ledger row: billed at the batch tier of the price row in force when it
    was submitted, list price as `uncached`, so on batch rows uncached - cost is the batch
    layer and baseline - uncached the routing layer.

    `avoided` (a response-cache answer): nothing billed, the first answer's bill avoided."""
    row = dict(item.ledger_fields["row"])
    prices = item.ledger_fields["prices"]
    row["estimated_cost_usd"] = Decimal(row["estimated_cost_usd"])
    # Items stored before the price book kept their batch prices in the row.
    legacy = {k: row.pop(f"price_{k}_per_mtok_usd", None) for k in ("input", "cached_input")}
    row.pop("price_output_per_mtok_usd", None)
    price, baseline = _item_prices(prices, legacy_batch_input=legacy["input"])
    if billed:
        costs = ledger_costs(
            price=price,
            baseline=baseline,
            usage=tokens,
            tier=ServiceTier.BATCH,
            free=avoided is not None,
        )
        token_source, status, error_code = TokenSource.PROVIDER, Status.OK, ""
    else:
        # Nothing billed: the row keeps the prompt estimate and costs nothing.
        tokens, costs = TokenUsage(prices["prompt_tokens"]), NOT_BILLED
        token_source, status, error_code = (
            prices["token_source"],
            Status.UPSTREAM_ERROR,
            item.error_code,
        )
    store_text = settings.USAGE_STORE_TEXT
    return LedgerRow(
        **row,
        **billed_columns(price=price, usage=tokens, tier=ServiceTier.BATCH, costs=costs),
        request_id=item.request_id,
        created_at=now,  # billed when collected: the rollup refresh sees it at once
        token_source=token_source,
        latency_ms=0,  # a batch turnaround is hours: kept on the job, out of live latency
        avoided_cost_usd=avoided or Decimal("0"),
        cache_hit=avoided is not None,
        status=status,
        error_code=error_code,
        sandbox=settings.UPSTREAM_MODE == "sandbox",
        batch=True,
        response_text=item.content[: settings.USAGE_STORE_TEXT_MAX_CHARS] if store_text else "",
    )


def _item_prices(prices: dict, *, legacy_batch_input: str | None) -> tuple[PriceRow, PriceRow]:
    """The item's price rows; an item stored before the price book has the list and batch
    prices instead (the batch multiplier is their ratio)."""
    if "price" in prices:
        return price_row_from_json(prices["price"]), price_row_from_json(prices["baseline"])
    listed = [Decimal(prices[k]) for k in ("list_input", "list_output")]
    batch_input = Decimal(legacy_batch_input or listed[0])
    batch = batch_input / listed[0] if listed[0] else Decimal(1)
    return (
        PriceRow(listed[0], listed[0], listed[1], batch_multiplier=batch),
        PriceRow(Decimal(prices["baseline_input"]), Decimal(0), Decimal(prices["baseline_output"])),
    )


def _budget_spend(api_key_id: int, cost_usd: Decimal, *, now: datetime) -> None:
    """Count batch spend in the key's month, for keys with a budget (no reservation: the job
    was accepted up front, and it bills only what the provider answered)."""
    if not ApiKey.objects.filter(pk=api_key_id, monthly_budget_usd__isnull=False).exists():
        return
    with transaction.atomic():
        period = budget_period_locked(api_key_id, now.date().replace(day=1))
        BudgetPeriod.objects.filter(pk=period.pk).update(spent_usd=F("spent_usd") + cost_usd)


def job_refresh(job_id: int, *, now: datetime) -> None:
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
