"""The call's one ledger row: written now or after the response, retried while the
database is away, and left for the in-flight sweep meanwhile."""

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

from django.conf import settings
from django.db import DatabaseError, DataError, IntegrityError, transaction

from routing.after_response import defer
from routing.db import db_call
from routing.gateway.admission import (
    REMEMBERED_IN_REDIS,
    REMEMBERED_IN_TABLE,
    admission_close,
    budget_period_locked,
    inflight_deadline,
    month_start,
    storable_json,
)
from routing.gateway.call import Call
from routing.gateway.outcome import LedgerRow, Outcome, ledger_row
from routing.inflight import inflight_forget_soon, inflight_remember
from routing.request_state_models import InFlightRequest
from usage.services import ledger_storable, usage_record, usage_record_replace_swept

logger = logging.getLogger(__name__)


def call_record(call: Call, row: LedgerRow) -> None:
    """Write the call's one ledger row, release its admission and settle its budget, in one
    transaction: a row is written whole or not at all. A row whose text the database refuses
    is written cleaned; one the sweep already wrote as abandoned is replaced by this one."""
    try:
        _call_record_once(call, row.fields())
    except IntegrityError:
        _call_record_late(call, row.fields())
    except (DataError, ValueError) as exc:  # NUL, a lone surrogate: never a reason to lose it
        logger.error("ledger row of %s refused (%s); writing it cleaned", call.request_id, exc)
        _call_record_once(call, ledger_storable(row.fields()))


def _call_record_once(call: Call, fields: dict) -> None:
    if call.remembered_in == REMEMBERED_IN_REDIS:
        usage_record(**fields)  # one INSERT, its own transaction
        inflight_forget_soon(call.request_id)  # the row is written: no need to wait for this
        return
    with transaction.atomic():
        record = usage_record(**fields)
        admission_close(
            call.request_id,
            cost_usd=record.cost_usd,
            reserved=call.api_key.monthly_budget_usd is not None,
        )


def _call_record_late(call: Call, fields: dict) -> None:
    """The request's row is there already: our own write whose commit was not acknowledged
    (kept), or the sweep's `abandoned` estimate (replaced, its budget period corrected)."""
    with transaction.atomic():
        swept_cost = usage_record_replace_swept(**fields)
        if swept_cost is None:
            return
        if call.api_key.monthly_budget_usd is not None:
            period = budget_period_locked(call.api_key.pk, month_start(call.started_at))
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


async def ledger_record(
    call: Call, outcome: Outcome, *, then: Callable[[LedgerRow], Awaitable[None]] | None = None
) -> LedgerRow:
    """Price the call's ledger row and write it: after the response where the handler runs
    deferred work (routing.after_response), else now. Return the row (the answer
    reports its cost and tokens from it). `then(row)` runs once the row is written."""
    row = ledger_row(call, outcome)

    async def write_later() -> None:
        if await _ledger_write_patiently(call, row) and then is not None:
            await then(row)

    if settings.LEDGER_WRITE_AFTER_RESPONSE and defer(write_later):
        return row
    await db_call(call_record, call, row)
    if then is not None:
        await then(row)
    return row


async def _ledger_write_patiently(call: Call, row: LedgerRow) -> bool:
    """Write a deferred row, retrying database errors for about two minutes; past the first
    attempts, the final row is also left for the sweep. True when the row is written."""
    left = False
    for attempt, wait_s in enumerate((*LEDGER_WRITE_RETRY_WAITS_S, None), start=1):
        try:
            await db_call(call_record, call, row)
            if left:
                inflight_forget_soon(call.request_id)  # the copy left for the sweep
            return True
        except DatabaseError as exc:
            if attempt == 1:  # once a row: an outage would repeat it for every attempt
                logger.warning("ledger write of %s failed (%s); retrying", call.request_id, exc)
            if not left and (attempt >= LEDGER_LEAVE_AFTER_ATTEMPTS or wait_s is None):
                left = await db_call(leave_for_sweep, call, row)
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


def leave_for_sweep(call: Call, row: LedgerRow) -> bool:
    """Put the final row where the sweep looks for it, so that it writes what the call
    really cost: the in-flight record, else Redis (the sweep prefers a final row kept there;
    the table is likely down too). False when neither store takes it."""
    final = storable_json(row.fields())
    if call.remembered_in == REMEMBERED_IN_TABLE:
        try:
            updated = InFlightRequest.objects.filter(request_id=call.request_id)
            if updated.update(ledger_fields=json.loads(final)):
                return True
        except DatabaseError:
            pass
    return inflight_remember(
        request_id=call.request_id, deadline_at=inflight_deadline(call), ledger_json=final
    )
