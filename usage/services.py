"""The only writers of usage tables."""

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import (
    BooleanField,
    CharField,
    Count,
    DecimalField,
    F,
    Field,
    ForeignKey,
    IntegerField,
    PositiveIntegerField,
    PositiveSmallIntegerField,
    Q,
    QuerySet,
    Sum,
    TextField,
)
from django.db.models.base import ModelState
from django.db.models.functions import Coalesce, TruncDay, TruncMinute
from django.utils import timezone

from huntaze.money import ZERO
from usage.exports import report_csv, report_xlsx
from usage.metrics import call_observe
from usage.models import (
    LATENCY_BOUNDS_MS,
    LINE_ITEM_COLUMNS,
    Granularity,
    MonthlyReport,
    ReportFormat,
    Status,
    UsageEndUserDay,
    UsageRecord,
    UsageRollup,
)
from usage.selectors import month_range, monthly_cost_report

# Rows reach the ledger when a call ends, so the minute refresh looks back this far: as far
# as the rows the in-flight sweep writes (dated at their start: deadline + 10 min of grace,
# + up to a minute between sweeps). A row later still (a stream longer than that, which
# replaces its swept estimate) reaches the rollups at the month's closing rebuild.
REFRESH_LOOKBACK = timedelta(minutes=15)
ROLLUP_LOCK_KEY = 0x687A5F726F6C6C  # any constant bigint: the rollup writers' advisory lock


def usage_record(**fields) -> UsageRecord:
    """Append one ledger row; rows are never updated afterwards (but for a swept estimate
    replaced by the real row: usage_record_replace_swept)."""
    record = _ledger_record_new(fields)
    _ledger_insert(record)
    if record.qa:
        return record  # quality-assurance spend is not traffic: kept out of the metrics
    transaction.on_commit(partial(_call_observe_record, record))
    return record


def _call_observe_record(record: UsageRecord) -> None:
    call_observe(
        tier=record.tier,
        category=record.category,
        model=record.model,
        status=record.status,
        input_tokens=record.input_tokens,
        cached_tokens=record.cached_tokens,
        output_tokens=record.output_tokens,
        latency_ms=record.latency_ms,
        cost_usd=record.cost_usd,
        baseline_cost_usd=record.baseline_cost_usd,
        cache_hit=record.cache_hit,
        cache_write_tokens=record.cache_write_5m_tokens + record.cache_write_1h_tokens,
        reasoning_tokens=record.reasoning_tokens,
    )


def _ledger_record_new(fields: dict) -> UsageRecord:
    """The unsaved record of these fields, as UsageRecord(**fields) makes it. Fields named
    as every writer names them (attnames: api_key_id, not api_key) skip Model.__init__,
    which checks each of the 59 fields for a keyword (21 -> 5 us a row, timeit): the
    attributes are set as unpickling sets them, a missing one to its field's default, as
    __init__ would. Other names (a related object, a typo) take __init__, and its errors."""
    if not fields.keys() <= _LEDGER_ATTNAMES:
        return UsageRecord(**fields)
    record = UsageRecord.__new__(UsageRecord)
    values = {"_state": ModelState(), _PK_ATTNAME: None, **fields}
    if len(fields) < len(_LEDGER_FIELDS):
        for field in _LEDGER_FIELDS:
            if field.attname not in values:
                values[field.attname] = field.get_default()
    record.__dict__.update(values)
    return record


# In a Python string a surrogate is always a lone one (a valid pair is one code point).
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def ledger_storable(value):
    """`value` (a ledger row's fields, or any part of them) with the text no database can
    store made storable: NUL characters dropped, lone UTF-16 surrogates replaced (U+FFFD).
    For a row refused as it was: the request is recorded, not lost."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value.replace("\x00", ""))
    if isinstance(value, dict):
        return {ledger_storable(k): ledger_storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [ledger_storable(v) for v in value]
    return value


@transaction.atomic
def usage_record_replace_swept(**fields) -> Decimal | None:
    """Replace the `abandoned` row the in-flight sweep wrote for a request that was not lost
    after all (a stream longer than the sweep's grace, a write that outlived an outage) by
    its real row. Return the swept row's cost (what a budget already counted), or None when
    the row there is not a swept one (then it stays)."""
    existing = UsageRecord.objects.select_for_update().get(request_id=fields["request_id"])
    if existing.status != Status.ABANDONED:
        return None
    UsageRecord.objects.filter(pk=existing.pk).update(
        **{name: value for name, value in fields.items() if name != "request_id"}
    )
    return existing.cost_usd


_LEDGER_FIELDS = [f for f in UsageRecord._meta.concrete_fields if not f.primary_key]
_LEDGER_ATTNAMES = frozenset(f.attname for f in _LEDGER_FIELDS)
_PK_ATTNAME = UsageRecord._meta.pk.attname
# On PostgreSQL the numbers travel as one array parameter per column type, unpacked in the
# SQL: psycopg caches the parsing of a statement of at most 50 parameters only (its
# MAX_CACHED_STATEMENT_PARAMS), and parses the ledger's 58 again for every row otherwise.
# Per type, not one bigint[] for all: psycopg dumps a list of one Python type only (Django
# hands smallint values as Int2, integer ones as Int4). The arrays' types have no modifier
# (numeric[], not numeric(20, 10)[]): the columns round and check each value as they do a
# parameter in VALUES, and the server does not map the whole array through a cast first.
# Text keeps a parameter per column.
_LEDGER_ARRAY_FIELDS = (DecimalField, IntegerField)


@dataclass(frozen=True)
class _LedgerInsert:
    """The INSERT of one ledger row and where each field's value goes (positions in the field
    list): a parameter of its own (`scalars`) or an element of an array parameter (`arrays`)."""

    sql: str
    scalars: tuple[int, ...]
    arrays: tuple[tuple[int, ...], ...]
    preparers: tuple[Callable, ...] = ()  # per field: (value, connection) -> its parameter

    def params(self, values: list) -> list:
        """The statement's parameters, from the fields' values in the fields' order."""
        return [values[i] for i in self.scalars] + [[values[i] for i in a] for a in self.arrays]


# Fields whose get_db_prep_save returns a value of these exact types as it is (after checks
# that such a value always passes): their own class, not a subclass that may prepare more.
_SAVED_AS_IS = {CharField: str, TextField: str, BooleanField: bool}
# Integers go through the backend's adapter alone (psycopg's Int2 / Int4 on PostgreSQL).
_INTEGER_FIELDS = (IntegerField, PositiveIntegerField, PositiveSmallIntegerField)


def _save_preparer(field: Field) -> Callable:
    """`field.get_db_prep_save(value, connection)`, with its cheap cases taken directly: a
    str for a text column, a bool, a finite Decimal (returned as they are, as the field would
    return them), an int (the backend's integer adapter, which the field ends with), a
    foreign key's None or int. Any other value takes the field's own method, and its errors.
    The ledger's 58 fields: about 57 -> 15 us a row (timeit)."""
    slow = field.get_db_prep_save
    kind = type(field)
    if kind in _SAVED_AS_IS:
        as_is = _SAVED_AS_IS[kind]
        return lambda value, db: value if type(value) is as_is else slow(value, db)
    if kind is DecimalField:
        return lambda value, db: (
            value if type(value) is Decimal and value.is_finite() else slow(value, db)
        )
    if kind in _INTEGER_FIELDS:
        internal_type = field.get_internal_type()
        return lambda value, db: (
            db.ops.adapt_integerfield_value(value, internal_type)
            if type(value) is int
            else slow(value, db)
        )
    if kind is ForeignKey and type(field.target_field) in _INTEGER_FIELDS:
        target = _save_preparer(field.target_field)
        return lambda value, db: (
            None if value is None else target(value, db) if type(value) is int else slow(value, db)
        )
    return slow


def _ledger_insert_build(*, fields: list[Field], connection: BaseDatabaseWrapper) -> _LedgerInsert:
    """Return the INSERT of one row of these fields: a parameter per field, but on PostgreSQL
    one array per column type for the _LEDGER_ARRAY_FIELDS."""
    quote = connection.ops.quote_name
    meta = fields[0].model._meta
    table, pk = quote(meta.db_table), quote(meta.pk.column)
    columns = ", ".join(quote(f.column) for f in fields)
    preparers = tuple(_save_preparer(f) for f in fields)
    if connection.vendor != "postgresql":
        values = ", ".join(["%s"] * len(fields))
        # Names from the model, quoted; values are parameters.
        sql = f"INSERT INTO {table} ({columns}) VALUES ({values}) RETURNING {pk}"  # noqa: S608
        return _LedgerInsert(
            sql=sql, scalars=tuple(range(len(fields))), arrays=(), preparers=preparers
        )
    arrays: dict[str, list[int]] = {}  # array type -> positions of its fields
    expressions = []
    for position, field in enumerate(fields):
        if not isinstance(field, _LEDGER_ARRAY_FIELDS):
            expressions.append("%s")
            continue
        array_type = field.db_type(connection).split("(")[0]  # numeric(20, 10) -> numeric
        members = arrays.setdefault(array_type, [])
        members.append(position)
        expressions.append(f"v.array_{list(arrays).index(array_type)}[{len(members)}]")
    unpacked = ", ".join(f"%s::{t}[] AS array_{i}" for i, t in enumerate(arrays))
    # INSERT ... SELECT gives the select list's untyped parameters (text) their columns'
    # types, as VALUES does.
    # Names from the model, quoted; values are parameters.
    sql = (
        f"INSERT INTO {table} ({columns}) SELECT {', '.join(expressions)} "  # noqa: S608
        f"FROM (SELECT {unpacked}) AS v RETURNING {pk}"
    )
    return _LedgerInsert(
        sql=sql,
        scalars=tuple(i for i, expression in enumerate(expressions) if expression == "%s"),
        arrays=tuple(tuple(members) for members in arrays.values()),
        preparers=preparers,
    )


_ledger_inserts: dict[str, _LedgerInsert] = {}  # per database vendor


def _ledger_insert(record: UsageRecord) -> None:
    """INSERT one ledger row with the SQL built once. The ORM's save() compiles the statement
    of its 58 columns for every row: a third of the ledger's CPU per request (240 -> 146 us
    measured on PostgreSQL, with 42 columns then). On PostgreSQL its numbers travel in arrays,
    so that psycopg caches the statement's parsing too (388 -> 319 us of CPU a row,
    bench/ledger_insert_bench.py). Each value is prepared as its field's get_db_prep_save
    prepares it in save() (`_save_preparer`), so the row is the one the ORM would have
    written (tests compare both)."""
    # The connection itself, not its proxy: each of the proxy's attributes is a look-up in
    # asgiref's Local, and the fields' preparation reads dozens (100 -> 55 us a row, timeit).
    db = connections[DEFAULT_DB_ALIAS]
    if not db.features.can_return_columns_from_insert:
        record.save(force_insert=True)
        return
    statement = _ledger_inserts.get(db.vendor)
    if statement is None:
        statement = _ledger_insert_build(fields=_LEDGER_FIELDS, connection=db)
        _ledger_inserts[db.vendor] = statement
    values = [
        prepare(getattr(record, f.attname), db)
        for f, prepare in zip(_LEDGER_FIELDS, statement.preparers, strict=True)
    ]
    with db.cursor() as cursor:
        cursor.execute(statement.sql, statement.params(values))
        record.pk = cursor.fetchone()[0]
    record._state.adding = False
    record._state.db = db.alias


def _sum(expression, **kwargs) -> Coalesce:
    return Coalesce(Sum(expression, **kwargs), ZERO)


def _rollup_measures() -> dict:
    remainder = F("uncached_cost_usd") - F("cost_usd") - F("avoided_cost_usd")
    measures = {
        "requests": Count("id"),
        "errors": Count("id", filter=~Q(status=Status.OK)),
        "response_cache_hits": Count("id", filter=Q(cache_hit=True)),
        "prompt_cache_hits": Count("id", filter=Q(cached_tokens__gt=0)),
        "input_tokens": Sum("input_tokens"),
        "cached_tokens": Sum("cached_tokens"),
        "output_tokens": Sum("output_tokens"),
        "latency_ms_sum": Sum("latency_ms"),
        "cost_usd": _sum("cost_usd"),
        "uncached_cost_usd": _sum("uncached_cost_usd"),
        "avoided_cost_usd": _sum("avoided_cost_usd"),
        "baseline_cost_usd": _sum("baseline_cost_usd"),
        "prompt_cache_savings_usd": _sum(remainder, filter=Q(batch=False)),
        "batch_savings_usd": _sum(remainder, filter=Q(batch=True)),
        "cache_write_tokens": Sum(F("cache_write_5m_tokens") + F("cache_write_1h_tokens")),
        "reasoning_tokens": Sum("reasoning_tokens"),
        **{column: _sum(column) for column in LINE_ITEM_COLUMNS},
    }
    for i, bound in enumerate(LATENCY_BOUNDS_MS):
        measures[f"le_{i}"] = Count("id", filter=Q(latency_ms__lte=bound))
    # Annotations named like ledger fields would shadow them inside the other expressions.
    return {f"m_{name}": measure for name, measure in measures.items()}


def _floor(moment: datetime, granularity: str) -> datetime:
    moment = moment.astimezone(UTC).replace(second=0, microsecond=0)
    return moment.replace(hour=0, minute=0) if granularity == Granularity.DAY else moment


def _ceil(moment: datetime, granularity: str) -> datetime:
    floor = _floor(moment, granularity)
    if floor == moment:
        return floor
    return floor + (timedelta(days=1) if granularity == Granularity.DAY else timedelta(minutes=1))


def _rollup_rebuild_granularity(*, granularity: str, start: datetime, end: datetime) -> int:
    start, end = _floor(start, granularity), _ceil(end, granularity)
    trunc = TruncDay if granularity == Granularity.DAY else TruncMinute
    groups = (
        UsageRecord.objects.filter(created_at__gte=start, created_at__lt=end)
        .annotate(bucket=trunc("created_at", tzinfo=UTC))
        .values("bucket", "api_key_id", "category", "tier", "model", "qa")
        .annotate(**_rollup_measures())
        .order_by()
    )
    rows = []
    for group in groups:
        measures = {k.removeprefix("m_"): group.pop(k) for k in list(group) if k.startswith("m_")}
        cumulative = [measures.pop(f"le_{i}") for i in range(len(LATENCY_BOUNDS_MS))]
        rows.append(
            UsageRollup(
                granularity=granularity,
                bucket_start=group.pop("bucket"),
                latency_cumulative=cumulative,
                **group,
                **measures,
            )
        )
    UsageRollup.objects.filter(
        granularity=granularity, bucket_start__gte=start, bucket_start__lt=end
    ).delete()
    UsageRollup.objects.bulk_create(rows, batch_size=2000)
    return len(rows)


def _end_user_days_rebuild(
    *, start: datetime, end: datetime, end_users: QuerySet | None = None
) -> int:
    start, end = _floor(start, Granularity.DAY), _ceil(end, Granularity.DAY)
    ledger = UsageRecord.objects.filter(created_at__gte=start, created_at__lt=end, qa=False)
    existing = UsageEndUserDay.objects.filter(day__gte=start.date(), day__lt=end.date())
    if end_users is not None:
        ledger, existing = (
            ledger.filter(end_user__in=end_users),
            existing.filter(end_user__in=end_users),
        )
    groups = (
        ledger.exclude(end_user="")
        .annotate(bucket=TruncDay("created_at", tzinfo=UTC))
        .values("bucket", "api_key_id", "end_user")
        .annotate(
            m_requests=Count("id"),
            m_mini_requests=Count("id", filter=Q(tier="mini")),
            m_errors=Count("id", filter=~Q(status=Status.OK)),
            m_input_tokens=Sum("input_tokens"),
            m_cached_tokens=Sum("cached_tokens"),
            m_output_tokens=Sum("output_tokens"),
            m_cost_usd=_sum("cost_usd"),
            m_baseline_cost_usd=_sum("baseline_cost_usd"),
        )
        .order_by()
    )
    rows = [
        UsageEndUserDay(
            day=group.pop("bucket").date(),
            **{k.removeprefix("m_"): v for k, v in group.items()},
        )
        for group in groups
    ]
    existing.delete()
    UsageEndUserDay.objects.bulk_create(rows, batch_size=2000)
    return len(rows)


def _rollup_lock() -> None:
    if connection.vendor == "postgresql":
        # Two overlapping runs (a slow beat tick, a manual rebuild) take turns, not collide.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ROLLUP_LOCK_KEY])


@transaction.atomic
def usage_rollup_rebuild(*, start: datetime, end: datetime) -> dict[str, int]:
    """Recompute every rollup touching [start, end) from the ledger; return rows written.

    Minutes are rebuilt over the window widened to whole minutes and days over whole days,
    so re-running any past window gives the same rows (the ledger is append-only).
    """
    _rollup_lock()
    return {
        "minute": _rollup_rebuild_granularity(granularity=Granularity.MINUTE, start=start, end=end),
        "day": _rollup_rebuild_granularity(granularity=Granularity.DAY, start=start, end=end),
        "end_user_day": _end_user_days_rebuild(start=start, end=end),
    }


@transaction.atomic
def usage_rollup_refresh(*, now: datetime | None = None) -> dict[str, int]:
    """Rebuild the rollups of the last few minutes (and so of today); the beat runs it.

    Like usage_rollup_rebuild over the look-back, except that only the end users seen in it
    get their day rows recomputed: the others' rows cannot have changed.
    """
    now = now or timezone.now()
    start, end = now - REFRESH_LOOKBACK, now + timedelta(minutes=1)
    _rollup_lock()
    recent = UsageRecord.objects.filter(created_at__gte=start, created_at__lt=end)
    end_users = recent.exclude(end_user="").values("end_user")  # a subquery, not a long list
    return {
        "minute": _rollup_rebuild_granularity(granularity=Granularity.MINUTE, start=start, end=end),
        "day": _rollup_rebuild_granularity(granularity=Granularity.DAY, start=start, end=end),
        "end_user_day": _end_user_days_rebuild(start=start, end=end, end_users=end_users),
    }


def _previous_month(now: datetime) -> tuple[int, int]:
    first = now.astimezone(UTC).date().replace(day=1)
    last_month = first - timedelta(days=1)
    return last_month.year, last_month.month


def monthly_report_create(*, year: int, month: int) -> list[MonthlyReport]:
    """Store the month's report as CSV and XLSX files (reused when already stored)."""
    existing = {r.format: r for r in MonthlyReport.objects.filter(year=year, month=month)}
    if len(existing) == len(ReportFormat):
        return [existing[f] for f in ReportFormat.values]
    start, end = month_range(year=year, month=month)
    if end > timezone.now():
        raise ValueError(f"{year:04d}-{month:02d} is not over yet; only closed months are stored.")
    # A closed month is final: bring its rollups up to date once, then freeze the files.
    usage_rollup_rebuild(start=start, end=end)
    report = monthly_cost_report(year=year, month=month, now=end)
    renderers = {ReportFormat.CSV: report_csv, ReportFormat.XLSX: report_xlsx}
    stored = []
    with transaction.atomic():
        for fmt in ReportFormat.values:
            content = renderers[fmt](report)
            row, _ = MonthlyReport.objects.get_or_create(
                year=year,
                month=month,
                format=fmt,
                defaults={
                    "content": content,
                    "sha256": hashlib.sha256(content).hexdigest(),
                    "size_bytes": len(content),
                },
            )
            stored.append(row)
    return stored


def monthly_report_create_previous(*, now: datetime | None = None) -> list[MonthlyReport]:
    """Store last month's report; what the beat runs on the 1st."""
    year, month = _previous_month(now or timezone.now())
    return monthly_report_create(year=year, month=month)


def usage_text_purge(*, now: datetime) -> int:
    """Blank stored prompt and answer text older than the retention; return rows purged.

    The only change ever made to a ledger row: privacy outranks append-only, and no figure
    (tokens, cost, status) is touched."""
    cutoff = now - timedelta(days=settings.USAGE_TEXT_RETENTION_DAYS)
    old = UsageRecord.objects.filter(created_at__lt=cutoff).exclude(
        prompt_text="", response_text=""
    )
    return old.update(prompt_text="", response_text="")
