"""Time of one ledger INSERT (usage.services._ledger_insert) on PostgreSQL: the statement of
58 parameters (one per column, as before) against the one with the numbers in arrays.

Prints figures; asserts nothing. Run against a migrated database, e.g. the one pytest keeps
with --reuse-db:
  DATABASE_URL=postgres://postgres@127.0.0.1:5432/test_ledger \\
    .venv/bin/python bench/ledger_insert_bench.py --rows 2000 --rounds 7
Each round inserts `rows` rows per variant inside a transaction rolled back, the variants
alternating (A B, then B A), and the medians over rounds are printed. A profiled pass then
counts psycopg's query conversions that bypass its cache (_query2pg_nocache, or
_query2pg_client_nocache with DATABASE_SERVER_SIDE_BINDING=false).
"""

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "huntaze.settings")

import django  # noqa: E402

django.setup()

from django.db import connection, transaction  # noqa: E402

from tests.factories import ApiKeyFactory, PolicyVersionFactory, UsageRecordFactory  # noqa: E402
from usage import services  # noqa: E402
from usage.models import UsageRecord  # noqa: E402

_one_param_per_column_sql: list[str] = []


def _insert_one_param_per_column(record: UsageRecord) -> None:
    """The INSERT as it was: VALUES with a parameter per column, the SQL built once."""
    fields = services._LEDGER_FIELDS
    if not _one_param_per_column_sql:
        quote = connection.ops.quote_name
        columns = ", ".join(quote(f.column) for f in fields)
        values = ", ".join(["%s"] * len(fields))
        sql = f'INSERT INTO "usage_usagerecord" ({columns}) VALUES ({values}) RETURNING "id"'  # noqa: S608
        _one_param_per_column_sql.append(sql)
    params = [f.get_db_prep_save(getattr(record, f.attname), connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(_one_param_per_column_sql[0], params)
        record.pk = cursor.fetchone()[0]


VARIANTS = {"one-per-column": _insert_one_param_per_column, "arrays": services._ledger_insert}


def _records(rows: int, prefix: str) -> list[UsageRecord]:
    template = UsageRecordFactory.build(
        api_key=ApiKeyFactory(), policy_version=PolicyVersionFactory(), metadata={"k": "v"}
    )
    fields = {f.attname: getattr(template, f.attname) for f in services._LEDGER_FIELDS}
    return [UsageRecord(**{**fields, "request_id": f"{prefix}-{i}"}) for i in range(rows)]


def _time_us(insert, rows: int, prefix: str) -> tuple[float, float]:
    """Microseconds per insert over `rows` inserts, rolled back: wall clock, and this
    process's CPU (the gateway's share; the server's work is in the wall clock only)."""
    with transaction.atomic():
        records = _records(rows, prefix)
        for record in records[:20]:  # warm: statement built, prepared by the server
            insert(record)
        start, start_cpu = time.perf_counter(), time.process_time()
        for record in records[20:]:
            insert(record)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - start_cpu
        transaction.set_rollback(True)
    return elapsed / (rows - 20) * 1e6, cpu / (rows - 20) * 1e6


def _nocache_calls(insert, rows: int) -> int:
    profile = cProfile.Profile()
    with transaction.atomic():
        records = _records(rows, "profiled")
        profile.enable()
        for record in records:
            insert(record)
        profile.disable()
        transaction.set_rollback(True)
    stats = pstats.Stats(profile).stats
    uncached = {"_query2pg_nocache", "_query2pg_client_nocache"}  # server- and client-side
    return sum(s[1] for (_, _, name), s in stats.items() if name in uncached)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    binding = connection.settings_dict["OPTIONS"].get("server_side_binding", False)
    print(f"{connection.vendor}, server-side binding: {binding}, {args.rows} rows a round")
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in VARIANTS}
    for round_ in range(args.rounds):
        order = list(VARIANTS) if round_ % 2 == 0 else list(reversed(VARIANTS))
        for name in order:
            times[name].append(_time_us(VARIANTS[name], args.rows, f"{name}-{round_}"))
        last = ", ".join(f"{n} {times[n][-1][0]:.1f} us (cpu {times[n][-1][1]:.1f})" for n in order)
        print(f"round {round_}: {last}")
    for name, insert in VARIANTS.items():
        wall = statistics.median(t[0] for t in times[name])
        cpu = statistics.median(t[1] for t in times[name])
        calls = _nocache_calls(insert, 200)
        print(
            f"{name}: median {wall:.1f} us per insert, {cpu:.1f} us of this process's CPU; "
            f"uncached parses (_query2pg[_client]_nocache) in 200 inserts: {calls}"
        )


if __name__ == "__main__":
    main()
