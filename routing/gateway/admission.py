"""Admission: budgets (reserved under a row lock), rate limits, the in-flight record of
every admitted request, and the sweep that records those of lost workers."""

import json
import logging
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError, DataError, IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from routing.db import db_call
from routing.gateway.call import Call
from routing.gateway.outcome import Outcome, ledger_row
from routing.inflight import (
    inflight_final_row,
    inflight_forget,
    inflight_overdue,
    inflight_quarantine,
    inflight_remember,
)
from routing.models import ApiKey
from routing.pricing import TokenUsage, price_tokens, served_tier
from routing.request_state_models import BudgetPeriod, InFlightRequest
from routing.retry import fallback_chain
from routing.shared_cache import outage_warning, window_count
from usage.models import Status, UsageRecord
from usage.services import ledger_storable, usage_record

logger = logging.getLogger(__name__)


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


def month_start(moment: datetime) -> date:
    """Return the first day of the moment's month (budget periods are months)."""
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
    month = month_start(now)
    period = budget_period_locked(api_key.pk, month)
    period.spent_usd = _ledger_spend(api_key.pk, month)
    period.save(update_fields=["spent_usd"])
    return period


def _worst_case_cost(call: Call) -> Decimal:
    """The most this request can be billed: full output on the dearest model it may use."""
    decision = call.decision
    chain = fallback_chain(rule=decision.rule, chosen=decision.model, policy=call.plan.policy)
    tier = served_tier(call.request.sampling.get("service_tier"))
    prompt, output = call.plan.prompt_tokens, decision.max_output_tokens
    # Every price rule counts: all output may be reasoning, dearer on some models.
    usages = (TokenUsage(prompt, output), TokenUsage(prompt, output, reasoning_tokens=output))
    return max(
        price_tokens(m.list_price, usage, tier=tier).total_usd for m in chain for usage in usages
    )


REMEMBERED_IN_TABLE, REMEMBERED_IN_REDIS = "table", "redis"


def inflight_deadline(call: Call) -> datetime:
    """Return when the sweep may take the call for lost: its deadline plus the grace."""
    return call.started_at + timedelta(seconds=call.decision.rule.deadline_s + INFLIGHT_GRACE_S)


_DJANGO_JSON = DjangoJSONEncoder()


def _json_value(value: object) -> object:
    """What DjangoJSONEncoder writes for a value JSON has no type for, the row's many
    amounts first (its default() tries five other types before Decimal)."""
    if type(value) is Decimal:
        return str(value)
    return _DJANGO_JSON.default(value)


def storable_json(fields: dict) -> str:
    """The row as JSON, cleaned of what no database stores (NUL, lone surrogates), which
    JSON escapes as \\u0000 and \\udxxx: a cheap look first, the walk only when needed."""
    dumped = json.dumps(fields, default=_json_value)
    if "\\u0000" in dumped or "\\ud" in dumped:
        dumped = json.dumps(ledger_storable(fields), default=_json_value)
    return dumped


def admission_open(call: Call) -> str:
    """Record the request as in flight and, for a key with a budget, reserve its worst case
    under a row lock, so concurrent requests cannot overshoot the budget together. Returns
    where the in-flight record went (Redis only for keys without a budget)."""
    limit = call.api_key.monthly_budget_usd
    lost = Outcome(
        input_tokens=call.plan.prompt_tokens,
        token_source=call.plan.token_source,
        status=Status.ABANDONED,
        error_code="worker_lost",
        billed=False,
    )
    lost_json = storable_json(ledger_row(call, lost).fields())
    deadline_at = inflight_deadline(call)
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
        period = budget_period_locked(call.api_key.pk, month_start(call.started_at))
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


def admission_close(request_id: str, *, cost_usd: Decimal, reserved: bool = True) -> None:
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


async def rate_limit_check(*, api_key: ApiKey, now: float) -> None:
    """Count the request in the key's minute at `now` (epoch seconds; in Redis, shared by every
    worker); raise RateLimited over the limit. An unreachable Redis lets it through (logged)."""
    limit = api_key.rate_limit_per_minute
    if limit is None:
        return
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
        admission_close(inflight.request_id, cost_usd=cost)
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
