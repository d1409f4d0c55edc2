"""What-if replay on a 1M-row ledger in PostgreSQL: how long a draft takes to re-decide.

Prints figures; asserts nothing. Run: `make bench-whatif` (or `.venv/bin/python
bench/whatif_bench.py --rows 1000000`). It creates its own database (bench_whatif) on the
server of BENCH_PG_URL, fills 30 days of ledger with one INSERT ... SELECT over
generate_series (the brief's traffic mix, complexity spread 0-10, a few critical and pinned
requests), then times the replay of a few drafts. Target: 1M rows within a minute.
The synthetic rows were all billed on the cheap tier, so even "no change" projects more: the
policy sends complex strategy and all compliance requests to the premium model.
"""

import argparse
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

# category by bucket of 1,000 (the brief's mix: 50/25/15/5/3/1.5/0.5 %)
CATEGORY_SQL = """CASE
  WHEN g % 1000 < 500 THEN 'chatbot' WHEN g % 1000 < 750 THEN 'moderation'
  WHEN g % 1000 < 900 THEN 'marketing' WHEN g % 1000 < 950 THEN 'analytics'
  WHEN g % 1000 < 980 THEN 'strategy' WHEN g % 1000 < 995 THEN 'analytics_plus'
  ELSE 'compliance' END"""


def _database(admin_url: str, name: str, *, create: bool) -> None:
    with psycopg.connect(f"{admin_url}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            conn.execute(f'CREATE DATABASE "{name}"')


def _literal(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "'{}'::jsonb"
    if isinstance(value, int | float):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def _fill(rows: int) -> float:
    from django.db import connection

    from routing.models import ApiKey, PolicyVersion
    from usage.models import UsageRecord

    key = ApiKey.objects.create(name="product", prefix="hz_bench", key_hash="0" * 64).id
    policy = PolicyVersion.objects.order_by("-id").values_list("id", flat=True).first()
    expressions = {
        "request_id": "'bench_' || lpad(g::text, 26, '0')",
        "created_at": f"timestamptz '{NOW.isoformat()}' - (g * interval '30 days' / {rows})",
        "api_key_id": str(key),
        "category": CATEGORY_SQL,
        "category_source": "'caller'",
        "complexity": "(abs(hashint4(g)) % 101) / 10.0",
        "complexity_source": "'estimator'",
        "critical": "false",
        "tier": "'mini'",
        "model": "'gpt-4o-mini'",
        "reason_code": "CASE WHEN g % 997 = 0 THEN 'critical:caller' "
        "WHEN g % 991 = 0 THEN 'pinned:model=gpt-4o' ELSE 'default:mini' END",
        "policy_version_id": str(policy),
        "input_tokens": "200 + abs(hashint4(g + 1)) % 2000",
        "cached_tokens": "CASE WHEN g % 4 = 0 THEN (200 + abs(hashint4(g + 1)) % 2000) / 2 "
        "ELSE 0 END",
        "output_tokens": "50 + abs(hashint4(g + 2)) % 700",
        "token_source": "'provider'",
        "latency_ms": "200 + abs(hashint4(g + 3)) % 1500",
        "cost_usd": "0.0004",
        "uncached_cost_usd": "0.0005",
        "avoided_cost_usd": "0",
        "estimated_cost_usd": "0.0004",
        "estimate_source": "'tiktoken'",
        "baseline_cost_usd": "0.008",
        "baseline_model": "'gpt-4o'",
        "price_input_per_mtok_usd": "0.15",
        "price_cached_input_per_mtok_usd": "0.075",
        "price_output_per_mtok_usd": "0.60",
        "status": "'ok'",
    }
    fields = [f for f in UsageRecord._meta.concrete_fields if f.attname != "id"]
    select = [
        expressions[f.attname] if f.attname in expressions else _literal(f.get_default())
        for f in fields
    ]
    columns = ", ".join(f'"{f.column}"' for f in fields)
    # Our own constants only: nothing here comes from outside the script.
    sql = (
        f"INSERT INTO usage_usagerecord ({columns}) SELECT {', '.join(select)} "  # noqa: S608
        f"FROM generate_series(1, {rows}) AS g"
    )
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(sql)
        # the ledger's cost must be what those tokens cost, for the comparison to mean anything
        cursor.execute(
            "UPDATE usage_usagerecord SET cost_usd = round(((input_tokens - cached_tokens) "
            "* 0.15 + cached_tokens * 0.075 + output_tokens * 0.60) / 1000000, 10)"
        )
        cursor.execute("ANALYZE usage_usagerecord")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--database", default="bench_whatif")
    args = parser.parse_args()
    admin_url = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
    _database(admin_url, args.database, create=True)
    os.environ["DATABASE_URL"] = f"{admin_url}/{args.database}"
    os.environ["DJANGO_SETTINGS_MODULE"] = "huntaze.settings"
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(ROOT.parent / "shared" / "tiktoken"))
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections

    from routing.policy_versions import policy_seed
    from routing.selectors import whatif_report

    drafts = {
        "no change": {},
        "strategy full from 5": {"categories": {"strategy": {"full_from_complexity": 5}}},
        "rollout 10%": {"rollout": {"routed_percent": "10"}},
        "gpt-4o at $2.00 input": {"models": {"gpt-4o": {"input_per_mtok_usd": "2.00"}}},
    }
    try:
        call_command("migrate", verbosity=0)
        policy_seed()
        print(f"ledger: {args.rows:,} rows over 30 days; fill {_fill(args.rows):.1f} s")
        print(f"{'draft':<26}{'median s':>10}{'actual $/month':>16}{'projected':>12}")
        for name, draft in drafts.items():
            times = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                report = whatif_report(draft=draft, days=30, now=NOW)
                times.append(time.perf_counter() - started)
            print(
                f"{name:<26}{statistics.median(times):>10.2f}{report.actual_monthly_usd:>16}"
                f"{report.projected_monthly_usd:>12}"
            )
    finally:
        connections.close_all()
        _database(admin_url, args.database, create=False)


if __name__ == "__main__":
    main()
