import hashlib
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Count, F, Sum
from django.utils.translation import gettext_lazy
from prometheus_client import REGISTRY

from tests.factories import ApiKeyFactory, PolicyVersionFactory, UsageRecordFactory
from tests.usage.conftest import OCTOBER
from usage.models import (
    LATENCY_BOUNDS_MS,
    Granularity,
    MonthlyReport,
    UsageEndUserDay,
    UsageRecord,
    UsageRollup,
)
from usage.services import (
    monthly_report_create,
    monthly_report_create_previous,
    usage_record,
    usage_rollup_rebuild,
    usage_rollup_refresh,
)

pytestmark = pytest.mark.django_db


def _snapshot() -> list[tuple]:
    rollups = UsageRollup.objects.order_by(
        "granularity", "bucket_start", "api_key", "category", "tier", "model", "qa"
    )
    fields = [
        "granularity",
        "bucket_start",
        "api_key_id",
        "category",
        "tier",
        "model",
        "qa",
        "requests",
        "errors",
        "cost_usd",
        "baseline_cost_usd",
        "latency_cumulative",
    ]
    return [tuple(getattr(r, f) for f in fields) for r in rollups]


def test_rollups_hold_the_ledger_totals_per_minute_and_per_day(october_ledger):
    # when
    usage_rollup_rebuild(start=OCTOBER[0], end=OCTOBER[1])
    # then
    ledger = UsageRecord.objects.filter(created_at__gte=OCTOBER[0], created_at__lt=OCTOBER[1])
    raw = ledger.aggregate(n=Count("id"), cost=Sum("cost_usd"), tokens=Sum("input_tokens"))
    for granularity in Granularity.values:
        rolled = UsageRollup.objects.filter(granularity=granularity).aggregate(
            n=Sum("requests"), cost=Sum("cost_usd"), tokens=Sum("input_tokens")
        )
        assert rolled == raw
    users = UsageEndUserDay.objects.aggregate(n=Sum("requests"))["n"]
    assert users == ledger.filter(qa=False).exclude(end_user="").count()


def test_rebuilding_a_past_window_again_gives_the_same_rows(october_ledger):
    # given rollups built once
    usage_rollup_rebuild(start=OCTOBER[0], end=OCTOBER[1])
    before = _snapshot()
    # when a window inside the month is rebuilt, twice, and the whole month once more
    inner = (datetime(2026, 10, 10, 13, 7, 30, tzinfo=UTC), datetime(2026, 10, 12, tzinfo=UTC))
    usage_rollup_rebuild(start=inner[0], end=inner[1])
    usage_rollup_rebuild(start=inner[0], end=inner[1])
    usage_rollup_rebuild(start=OCTOBER[0], end=OCTOBER[1])
    # then
    assert _snapshot() == before


def test_refresh_picks_up_new_rows_of_the_last_minutes():
    # given
    now = datetime(2026, 11, 24, 12, 0, 30, tzinfo=UTC)
    row = UsageRecordFactory(created_at=now - timedelta(minutes=3))
    usage_rollup_refresh(now=now)
    # when a row lands late in an already rolled-up minute
    UsageRecordFactory(created_at=now - timedelta(minutes=3), api_key=row.api_key)
    usage_rollup_refresh(now=now)
    # then
    minute = UsageRollup.objects.get(granularity=Granularity.MINUTE)
    day = UsageRollup.objects.get(granularity=Granularity.DAY)
    assert (minute.requests, day.requests) == (2, 2)
    assert day.cost_usd == Decimal("0.00054")


def test_latency_histogram_is_cumulative():
    key = ApiKeyFactory()
    for latency_ms in (20, 120, 90_000):
        UsageRecordFactory(latency_ms=latency_ms, api_key=key)
    usage_rollup_refresh()
    row = UsageRollup.objects.get(granularity=Granularity.DAY)
    counts = dict(zip(LATENCY_BOUNDS_MS, row.latency_cumulative, strict=True))
    assert (counts[15], counts[20], counts[100], counts[150], counts[60000]) == (0, 1, 1, 2, 2)
    assert row.latency_ms_sum == 90_140


def test_monthly_report_is_stored_once_with_its_checksum(october_ledger):
    # when
    first = monthly_report_create(year=2026, month=10)
    second = monthly_report_create(year=2026, month=10)
    # then
    assert [r.format for r in first] == ["csv", "xlsx"]
    assert [r.pk for r in first] == [r.pk for r in second]
    assert MonthlyReport.objects.count() == 2
    for report in first:
        content = bytes(report.content)
        assert report.sha256 == hashlib.sha256(content).hexdigest()
        assert report.size_bytes == len(content)
    assert bytes(first[0].content).startswith(b"section,key,requests")


def test_monthly_report_builds_its_own_rollups_first(october_ledger):
    # given no rollups at all
    assert not UsageRollup.objects.exists()
    # when
    csv_report = monthly_report_create(year=2026, month=10)[0]
    # then the stored total is the ledger's
    total_line = bytes(csv_report.content).decode().splitlines()[1].split(",")
    raw = UsageRecord.objects.filter(
        created_at__gte=OCTOBER[0], created_at__lt=OCTOBER[1], qa=False
    ).aggregate(cost=Sum("cost_usd"))
    assert Decimal(total_line[6]) == raw["cost"]


def test_previous_month_report_runs_for_last_month(october_ledger):
    reports = monthly_report_create_previous(now=datetime(2026, 11, 1, 0, 30, tzinfo=UTC))
    assert {(r.year, r.month) for r in reports} == {(2026, 10)}


def test_an_open_month_is_not_stored():
    with pytest.raises(ValueError, match="not over"):
        monthly_report_create(year=2999, month=1)


def test_usage_record_counts_the_call_in_the_metrics(django_capture_on_commit_callbacks):
    # given
    labels = {"tier": "full", "category": "legal", "model": "gpt-4o", "status": "upstream_error"}
    before = REGISTRY.get_sample_value("huntaze_llm_requests_total", labels) or 0
    errors_before = REGISTRY.get_sample_value("huntaze_llm_errors_total", labels) or 0
    # when
    with django_capture_on_commit_callbacks(execute=True):
        from usage.services import usage_record

        row = UsageRecordFactory.build(
            category="legal",
            tier="full",
            model="gpt-4o",
            status="upstream_error",
            api_key=ApiKeyFactory(),
            policy_version=PolicyVersionFactory(),
        )
        fields = {
            f.attname: getattr(row, f.attname)
            for f in UsageRecord._meta.concrete_fields
            if f.attname != "id"
        }
        usage_record(**fields)
    # then
    assert REGISTRY.get_sample_value("huntaze_llm_requests_total", labels) == before + 1
    assert REGISTRY.get_sample_value("huntaze_llm_errors_total", labels) == errors_before + 1


def test_refresh_recomputes_the_day_of_end_users_seen_recently_only():
    # given an end user with calls earlier today, rolled up, and another one
    now = datetime(2026, 11, 24, 12, 0, 30, tzinfo=UTC)
    key = ApiKeyFactory()
    UsageRecordFactory(created_at=now - timedelta(hours=3), end_user="fan-1", api_key=key)
    UsageRecordFactory(created_at=now - timedelta(hours=2), end_user="fan-2", api_key=key)
    usage_rollup_rebuild(start=now - timedelta(hours=4), end=now)
    # when fan-1 calls again and the minute refresh runs
    UsageRecordFactory(created_at=now - timedelta(minutes=1), end_user="fan-1", api_key=key)
    usage_rollup_refresh(now=now)
    # then fan-1's day holds both calls, and fan-2's day is untouched
    days = dict(UsageEndUserDay.objects.values_list("end_user", "requests"))
    assert days == {"fan-1": 2, "fan-2": 1}
    assert UsageRollup.objects.get(granularity=Granularity.DAY).requests == 3


def test_text_past_its_retention_is_blanked_and_figures_kept(settings):
    from datetime import timedelta

    from django.utils import timezone

    from usage.services import usage_text_purge

    settings.USAGE_TEXT_RETENTION_DAYS = 30
    now = timezone.now()
    old = UsageRecordFactory(
        created_at=now - timedelta(days=31), prompt_text="hi babe", response_text="hello!"
    )
    recent = UsageRecordFactory(created_at=now - timedelta(days=29), prompt_text="still here")
    figures_before = UsageRecord.objects.values("pk", "cost_usd", "input_tokens", "status")
    figures_before = list(figures_before.order_by("pk"))
    assert usage_text_purge(now=now) == 1
    old.refresh_from_db()
    recent.refresh_from_db()
    assert (old.prompt_text, old.response_text) == ("", "")
    assert recent.prompt_text == "still here"
    figures_after = UsageRecord.objects.values("pk", "cost_usd", "input_tokens", "status")
    assert list(figures_after.order_by("pk")) == figures_before


@pytest.mark.parametrize("as_json", [False, True], ids=["values", "json-values"])
def test_usage_record_writes_the_row_the_orm_would(as_json):
    # given the fields of a call, as Python values or as the in-flight store keeps them (JSON)
    row = UsageRecordFactory.build(
        cost_usd=Decimal("0.0000123456"),
        metadata={"campaign": "black-friday", "note": "ünïcode"},
        prompt_text="a 'quoted' prompt; --",
        complexity=6.25,
        critical=True,
        api_key=ApiKeyFactory(),
        policy_version=PolicyVersionFactory(),
    )
    fields = {f.attname: getattr(row, f.attname) for f in UsageRecord._meta.concrete_fields}
    del fields["id"]
    if as_json:
        fields = json.loads(json.dumps(fields, cls=DjangoJSONEncoder))
    # when one copy goes through usage_record and another through the ORM's create
    written = usage_record(**fields)
    by_orm = UsageRecord.objects.create(**{**fields, "request_id": "req_orm"})

    # then both read back the same, and the returned record knows its primary key
    def read(pk: int) -> dict:
        values = UsageRecord.objects.filter(pk=pk).values().get()
        return {k: v for k, v in values.items() if k not in {"id", "request_id"}}

    assert written.pk is not None and not written._state.adding
    assert read(written.pk) == read(by_orm.pk)
    assert read(written.pk)["cost_usd"] == Decimal("0.0000123456")


def _sql_only(engine: str):
    """A connection of another vendor that builds SQL without ever connecting."""
    from django.db import connection
    from django.utils.module_loading import import_string

    wrapper = import_string(f"{engine}.base.DatabaseWrapper")
    return wrapper({**connection.settings_dict, "ENGINE": engine}, alias=f"sql-only-{engine}")


def test_ledger_insert_stays_within_what_psycopg_caches_on_postgresql():
    # given the ledger's fields and a PostgreSQL connection
    from usage.services import _LEDGER_FIELDS, _ledger_insert_build

    # when its INSERT is built
    statement = _ledger_insert_build(
        fields=_LEDGER_FIELDS, connection=_sql_only("django.db.backends.postgresql")
    )
    # then psycopg caches its parsing: at most 50 parameters, 4096 bytes
    # (psycopg._queries.MAX_CACHED_STATEMENT_PARAMS and MAX_CACHED_STATEMENT_LENGTH)
    assert statement.sql.count("%s") == len(statement.scalars) + len(statement.arrays) <= 50
    assert len(statement.sql.encode()) <= 4096


def test_ledger_numbers_travel_in_one_array_per_column_type_on_postgresql():
    # given
    from django.db.models import DecimalField, IntegerField

    from usage.services import _LEDGER_FIELDS, _ledger_insert_build

    pg = _sql_only("django.db.backends.postgresql")
    # when
    statement = _ledger_insert_build(fields=_LEDGER_FIELDS, connection=pg)
    # then every decimal and integer column is in the array of its column type, once, and
    # every other column has a parameter of its own
    numbers = {
        i for i, f in enumerate(_LEDGER_FIELDS) if isinstance(f, DecimalField | IntegerField)
    }
    in_arrays = [i for members in statement.arrays for i in members]
    assert sorted(in_arrays) == sorted(numbers)
    assert set(statement.scalars) == set(range(len(_LEDGER_FIELDS))) - numbers

    def column_type(i: int) -> str:
        return _LEDGER_FIELDS[i].db_type(pg).split("(")[0]  # numeric(20, 10) -> numeric

    array_types = [{column_type(i) for i in members} for members in statement.arrays]
    assert all(len(types) == 1 for types in array_types)
    assert len({types.pop() for types in array_types}) == len(statement.arrays)
    assert "%s::numeric[] AS" in statement.sql and "numeric(" not in statement.sql


def test_a_new_number_column_joins_the_array_of_its_type_with_no_edit():
    # given the ledger's fields and two new columns, an amount and a count
    from django.db.models import DecimalField, PositiveIntegerField

    from huntaze.money import USD_FIELD
    from usage.services import _LEDGER_FIELDS, _ledger_insert_build

    new_amount, new_count = DecimalField(**USD_FIELD), PositiveIntegerField()
    for field, name in ((new_amount, "cost_new_usd"), (new_count, "new_tokens")):
        field.set_attributes_from_name(name)
        field.model = UsageRecord
    fields = [*_LEDGER_FIELDS, new_amount, new_count]
    pg = _sql_only("django.db.backends.postgresql")
    # when
    before = _ledger_insert_build(fields=_LEDGER_FIELDS, connection=pg)
    after = _ledger_insert_build(fields=fields, connection=pg)

    # then each travels with the columns of its type, and the parameters are as many
    def array_of(statement, name: str) -> int:
        position = next(i for i, f in enumerate(fields) if f.name == name)
        return next(n for n, members in enumerate(statement.arrays) if position in members)

    assert array_of(after, "cost_new_usd") == array_of(after, "cost_usd")
    assert array_of(after, "new_tokens") == array_of(after, "input_tokens")
    assert after.sql.count("%s") == before.sql.count("%s")
    assert '"cost_new_usd", "new_tokens") SELECT' in after.sql


# Values of every kind a ledger field may be given: the usual ones, and the ones each
# short cut must leave to the field (None, a look-alike type, a non-finite amount, nonsense).
_PREPARED_VALUES = [
    None,
    "",
    "gpt-4o-mini",
    "ünïcode \x00 text",
    gettext_lazy("lazy text"),
    True,
    False,
    0,
    1,
    7,
    2**31 - 1,
    -3,
    2**70,
    6.25,
    float("nan"),
    Decimal("0"),
    Decimal("0.0000123456"),
    Decimal("-1.50"),
    Decimal("1E+3"),
    Decimal("NaN"),
    Decimal("Infinity"),
    "0.25",
    {"campaign": "x"},
    [1, 2],
    datetime(2026, 12, 7, 18, 0, tzinfo=UTC),
    F("cost_usd"),
]


def _prepared(function, value, db):
    try:
        result = function(value, db)
    except Exception as exc:  # noqa: BLE001 - the same failure is the expected outcome too
        return ("raised", type(exc))
    if hasattr(result, "as_sql"):
        return ("expression", str(result))
    if type(result).__name__ == "Jsonb":
        return ("json", type(result), result.obj)
    if isinstance(result, float) and result != result:
        return ("nan", type(result))
    return ("value", type(result), result, str(result))


@pytest.mark.parametrize("engine", ["django.db.backends.postgresql", "django.db.backends.sqlite3"])
def test_ledger_values_are_prepared_as_the_fields_prepare_them(engine):
    # given every ledger field, on each vendor, and values of every kind
    from usage.services import _LEDGER_FIELDS, _save_preparer

    db = _sql_only(engine)
    for field in _LEDGER_FIELDS:
        prepare = _save_preparer(field)
        for value in _PREPARED_VALUES:
            # when a value is prepared with the short cuts, then it is what the field makes
            # of it: the same type and value, or the same failure
            expected = _prepared(field.get_db_prep_save, value, db)
            assert _prepared(prepare, value, db) == expected, (field.name, value)


def test_other_databases_keep_a_parameter_per_column():
    # given
    from usage.services import _LEDGER_FIELDS, _ledger_insert_build

    # when
    statement = _ledger_insert_build(
        fields=_LEDGER_FIELDS, connection=_sql_only("django.db.backends.sqlite3")
    )
    # then
    assert statement.arrays == ()
    assert statement.sql.count("%s") == len(_LEDGER_FIELDS)
    assert " VALUES (%s, " in statement.sql


def _ledger_fields(**overrides) -> dict:
    row = UsageRecordFactory.build(
        api_key=ApiKeyFactory(), policy_version=PolicyVersionFactory(), **overrides
    )
    return {f.attname: getattr(row, f.attname) for f in UsageRecord._meta.concrete_fields[1:]}


def _columns_as_text(pk: int) -> dict:
    """Every column but the keys as the database itself writes it out."""
    from django.db import connection

    columns = [
        f.column for f in UsageRecord._meta.concrete_fields if f.column not in {"id", "request_id"}
    ]
    quote = connection.ops.quote_name
    selected = ", ".join(f"CAST({quote(c)} AS TEXT)" for c in columns)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {selected} FROM usage_usagerecord WHERE id = %s", [pk])  # noqa: S608
        return dict(zip(columns, cursor.fetchone(), strict=True))


def test_usage_record_writes_each_column_as_the_orm_would_at_the_edges():
    # given amounts past their columns' places, counts at their columns' limits, empty keys
    fields = _ledger_fields(
        cost_usd=Decimal("0.00000000005"),  # past the column's 10 places
        cost_output_usd=Decimal("-0.00000000004999"),
        price_output_per_mtok_usd=Decimal("99999999.99994"),  # rounds to its column's largest
        input_tokens=2**31 - 1,
        attempts=32767,
        complexity=0.1 + 0.2,
        price=None,
        experiment=None,
        explanation={"top": [["word", 0.125]], "nested": {"é": None}},
        created_at=datetime(2026, 11, 24, 12, 0, 30, 123456, tzinfo=UTC),
    )
    # when
    written = usage_record(**fields)
    by_orm = UsageRecord.objects.create(**{**fields, "request_id": "req_orm"})
    # then
    assert _columns_as_text(written.pk) == _columns_as_text(by_orm.pk)


@pytest.mark.parametrize(
    "bad",
    [
        {"output_tokens": -1},
        {"cost_usd": Decimal("1e10")},
        {"latency_ms": "12.5"},
        {"model": "m" * 101},
    ],
    ids=lambda bad: next(iter(bad)),
)
def test_usage_record_refuses_what_the_orm_refuses_the_same_way(bad):
    # given a row with one value its column cannot hold
    fields = _ledger_fields(**bad)
    # when it goes through usage_record and through the ORM
    by_service = _refusal(lambda: usage_record(**fields))
    by_orm = _refusal(lambda: UsageRecord.objects.create(**{**fields, "request_id": "req_orm"}))
    # then both refuse it with the same error (or, where the database stores it, both keep it)
    assert by_service is by_orm


@pytest.mark.parametrize("count", [2**31, 2**32 + 5, 2**63], ids=["2^31", "2^32+5", "2^63"])
def test_usage_record_stores_a_count_as_given_or_refuses_it(count):
    # given a count past its column's integer (the ORM's save() sends an int4 in binary on
    # PostgreSQL with server-side binding, which psycopg's C dumper wraps: 2**32 + 5 -> 5)
    fields = _ledger_fields(input_tokens=count, request_id="req_big")
    # when
    refused = _refusal(lambda: usage_record(**fields))
    # then it is refused (DataError from PostgreSQL), or kept exactly (SQLite's 64 bits)
    stored = UsageRecord.objects.filter(request_id="req_big").values_list("input_tokens").first()
    assert (stored is None) if refused else (stored == (count,))


def _refusal(write) -> type[Exception] | None:
    """The class of the error `write` raised, None if it wrote (in a savepoint either way)."""
    try:
        with transaction.atomic():
            write()
    except Exception as exc:  # noqa: BLE001
        return type(exc)
    return None


@pytest.mark.parametrize("omitted", [(), ("attempts", "arm", "metadata", "sandbox")])
def test_usage_record_returns_the_record_the_model_would_build(omitted):
    # given a row's fields by attname, some with a default left out, as writers hand them
    fields = _ledger_fields()
    for name in omitted:
        del fields[name]
    # when
    written = usage_record(**fields)
    # then the record holds what UsageRecord(**fields) holds, its key set and its state saved
    built = UsageRecord(**fields)
    for field in UsageRecord._meta.concrete_fields[1:]:
        assert getattr(written, field.attname) == getattr(built, field.attname), field.attname
    assert written.pk is not None and not written._state.adding
    assert written == UsageRecord.objects.get(pk=written.pk)


def test_usage_record_refuses_an_unknown_field_as_the_model_does():
    # given the fields of a row and one no ledger column has
    fields = {**_ledger_fields(), "colour": "blue"}
    # when / then: the model's own error (the sweep quarantines a record that raises it)
    with pytest.raises(TypeError, match="unexpected keyword"):
        usage_record(**fields)
