"""Dashboard and monthly-report timings on a 1M-row ledger in PostgreSQL.

Prints figures; asserts nothing. Run: `make bench-dashboard` (or `.venv/bin/python
bench/dashboard_bench.py --rows 1000000`). It creates its own database (bench_dashboard by
default) on the server of BENCH_PG_URL, fills it with COPY, rolls the month up, times every
dashboard window and the monthly report, then drops the database. Targets: each dashboard
query under 200 ms, the monthly report under 2 s.
"""

import argparse
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
MONTH_START = datetime(2026, 11, 1, tzinfo=UTC)
MIX = [  # category, share of traffic, share of the premium tier
    ("chatbot", 50, 2),
    ("moderation", 25, 0),
    ("marketing", 15, 0),
    ("analytics", 5, 0),
    ("strategy", 3, 30),
    ("analytics-deep", 1.5, 30),
    ("compliance", 0.5, 100),
]
PRICES = {  # model: input, cached input, output (USD per 1M tokens)
    "gpt-4o-mini": (Decimal("0.15"), Decimal("0.075"), Decimal("0.60")),
    "gpt-4o": (Decimal("2.50"), Decimal("1.25"), Decimal("10.00")),
}
MTOK = Decimal(1_000_000)
PLACES = Decimal("0.0000000001")


def _cost(model: str, input_tokens: int, cached: int, output: int, *, uncached: bool) -> Decimal:
    price_in, price_cached, price_out = PRICES[model]
    cached_price = price_in if uncached else price_cached
    total = (input_tokens - cached) * price_in + cached * cached_price + output * price_out
    return (total / MTOK).quantize(PLACES)


def _database(admin_url: str, name: str, *, create: bool) -> None:
    with psycopg.connect(f"{admin_url}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            conn.execute(f'CREATE DATABASE "{name}"')


def _fill(rows: int, seed: int) -> float:
    """COPY `rows` ledger rows spread over November up to NOW; return the seconds taken."""
    from django.db import connection

    from routing.models import ApiKey, PolicyVersion
    from usage.models import UsageRecord

    keys = [
        ApiKey.objects.create(name=name, prefix=name[:8], key_hash=f"{i:064x}").id
        for i, name in enumerate(["product", "backoffice", "partner"])
    ]
    policy = PolicyVersion.objects.create(actor="bench", snapshot={}).id
    rng = random.Random(seed)
    fields = [f for f in UsageRecord._meta.concrete_fields if f.attname != "id"]
    columns = ", ".join(f'"{f.column}"' for f in fields)
    defaults = {f.attname: f.get_default() for f in fields}
    defaults["metadata"] = "{}"
    categories = [c for c, _, _ in MIX]
    weights = [w for _, w, _ in MIX]
    premium = {c: p for c, _, p in MIX}
    span_s = (NOW - MONTH_START).total_seconds()
    costs: dict[tuple, tuple[Decimal, Decimal, Decimal]] = {}
    started = time.perf_counter()
    with connection.cursor() as cursor:
        raw = cursor.cursor
        with raw.copy(f"COPY usage_usagerecord ({columns}) FROM STDIN") as copy:
            for i in range(rows):
                category = rng.choices(categories, weights)[0]
                full = rng.random() * 100 < premium[category]
                model = "gpt-4o" if full else "gpt-4o-mini"
                input_tokens = rng.choice((200, 600, 1200, 2500))
                cached = rng.choice((0, 0, 0, 512, 1024)) if input_tokens >= 1200 else 0
                output = rng.choice((50, 150, 300, 800))
                key = (model, input_tokens, cached, output)
                if key not in costs:
                    costs[key] = (
                        _cost(model, input_tokens, cached, output, uncached=False),
                        _cost(model, input_tokens, cached, output, uncached=True),
                        _cost("gpt-4o", input_tokens, 0, output, uncached=True),
                    )
                cost, uncached, baseline = costs[key]
                cache_hit = rng.random() < 0.05
                error = rng.random() < 0.01
                created = MONTH_START + timedelta(seconds=span_s * i / rows + rng.random())
                values = {
                    **defaults,
                    "request_id": f"bench_{i:026d}",
                    "created_at": created,
                    "api_key_id": keys[i % 7 == 0 and 1 or i % 13 == 0 and 2 or 0],
                    "end_user": f"fan-{rng.randint(1, 20_000)}",
                    "category": category,
                    "category_source": "caller",
                    "complexity": 3.0,
                    "complexity_source": "estimator",
                    "critical": category == "compliance",
                    "tier": "full" if full else "mini",
                    "model": model,
                    "reason_code": "default:mini",
                    "policy_version_id": policy,
                    "input_tokens": input_tokens,
                    "cached_tokens": cached,
                    "output_tokens": output,
                    "token_source": "provider",
                    "latency_ms": int(rng.lognormvariate(6.2, 0.6)),
                    "cost_usd": Decimal(0) if cache_hit or error else cost,
                    "uncached_cost_usd": Decimal(0) if error else uncached,
                    "avoided_cost_usd": cost if cache_hit and not error else Decimal(0),
                    "estimated_cost_usd": cost,
                    "estimate_source": "tiktoken",
                    "baseline_cost_usd": Decimal(0) if error else baseline,
                    "baseline_model": "gpt-4o",
                    "price_input_per_mtok_usd": PRICES[model][0],
                    "price_cached_input_per_mtok_usd": PRICES[model][1],
                    "price_output_per_mtok_usd": PRICES[model][2],
                    "status": "upstream_error" if error else "ok",
                    "error_code": "upstream_error" if error else "",
                    "cache_hit": cache_hit and not error,
                    "qa": i % 500 == 0,
                }
                copy.write_row([values[f.attname] for f in fields])
        cursor.execute("ANALYZE usage_usagerecord")
    return time.perf_counter() - started


def _timed(function, repeat: int) -> tuple[float, float, object]:
    """Return (median ms of the call, slowest single SQL query in ms, result)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    times, slowest, result = [], 0.0, None
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            result = function()
            times.append((time.perf_counter() - started) * 1000)
        slowest = max([slowest, *(float(q["time"]) * 1000 for q in queries.captured_queries)])
    return statistics.median(times), slowest, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--database", default="bench_dashboard")
    parser.add_argument("--keep", action="store_true", help="Keep the database afterwards.")
    args = parser.parse_args()
    admin_url = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
    _database(admin_url, args.database, create=True)
    os.environ["DATABASE_URL"] = f"{admin_url}/{args.database}"
    os.environ["DJANGO_SETTINGS_MODULE"] = "huntaze.settings"
    os.environ["DEBUG"] = "false"
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections

    from usage.dashboard_selectors import dashboard_metrics
    from usage.exports import report_csv, report_xlsx
    from usage.selectors import monthly_cost_report, usage_summary
    from usage.services import usage_rollup_rebuild, usage_rollup_refresh

    try:
        call_command("migrate", verbosity=0)
        print(f"ledger: {args.rows:,} rows, 2026-11-01 .. {NOW:%Y-%m-%d %H:%M} UTC")
        print(f"  fill (COPY)                      {_fill(args.rows, seed=5):9.1f} s")
        started = time.perf_counter()
        written = usage_rollup_rebuild(start=MONTH_START, end=NOW + timedelta(minutes=1))
        print(
            f"  rollup rebuild, whole month      {time.perf_counter() - started:9.1f} s  {written}"
        )
        median, slowest, _ = _timed(lambda: usage_rollup_refresh(now=NOW), args.repeat)
        print(f"  rollup refresh (beat, each min)  {median:9.1f} ms")
        print("\nwhat                               median ms   slowest SQL ms   target")
        for window in ("hour", "today", "month"):
            median, slowest, metrics = _timed(
                lambda w=window: dashboard_metrics(window=w, now=NOW), args.repeat
            )
            print(
                f"  dashboard {window:<6} (whole call)   {median:9.1f}   {slowest:14.1f}   "
                f"< 200 per query  ({metrics['requests']:,} requests)"
            )
        median, slowest, report = _timed(
            lambda: monthly_cost_report(year=2026, month=11, now=NOW), args.repeat
        )
        print(f"  monthly report (selector)        {median:9.1f}   {slowest:14.1f}   < 2000")
        median, _, _ = _timed(lambda: report_csv(report), args.repeat)
        print(f"  monthly report CSV render        {median:9.1f}")
        median, _, _ = _timed(lambda: report_xlsx(report), args.repeat)
        print(f"  monthly report XLSX render       {median:9.1f}")
        median, slowest, _ = _timed(
            lambda: usage_summary(start=MONTH_START, end=NOW), max(1, args.repeat // 2)
        )
        print(f"  (for scale: raw-ledger month sum {median:9.1f}   {slowest:14.1f})")
        total = report.total
        print(f"\nmonth to date: {total.requests:,} requests, cost ${total.cost_usd:.2f}, ", end="")
        print(f"baseline ${total.baseline_cost_usd:.2f}, saved {total.savings_percent}%, ", end="")
        print(f"projected ${report.projected_cost_usd:.2f}")
    finally:
        connections.close_all()
        if not args.keep:
            _database(admin_url, args.database, create=False)


if __name__ == "__main__":
    main()
