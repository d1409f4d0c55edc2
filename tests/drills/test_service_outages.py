"""Fault drill 8: Redis stopped mid-load, then PostgreSQL, through proxies the drill cuts:
routing goes on without Redis; without the database requests get fast JSON 503s and no row
is half-written; both recover with no restart."""

import threading
import time
from collections import Counter
from decimal import Decimal
from urllib.parse import urlparse

import httpx2
import pytest
from django.conf import settings as django_settings
from django.db import connection

from tests.drills.tcp_proxy import CuttableProxy
from tests.drills.test_circuit_across_workers import _free_port, _wait, _worker, _worker_env
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)


def test_drill_8_redis_then_postgresql_outage(policy, api_key, http_upstream):
    if not django_settings.REDIS_URL or connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL and Redis (the .ci/run PostgreSQL + Redis run)")
    db = connection.settings_dict
    redis = urlparse(django_settings.REDIS_URL)
    pg_proxy = CuttableProxy(db["HOST"], int(db["PORT"]))
    redis_proxy = CuttableProxy(redis.hostname, redis.port or 6379)
    env = _worker_env(
        database_port=pg_proxy.port,
        redis_url=f"redis://127.0.0.1:{redis_proxy.port}{redis.path}",
        API_KEY_CACHE_S=0,  # every request reads the database: the outage must show
        DATABASE_CONNECT_TIMEOUT_S=2,
    )
    port = _free_port()
    worker = _worker(port, env)
    url = f"http://127.0.0.1:{port}/api/v1/completions"
    body = {"messages": [{"role": "user", "content": "Is this spam?"}], "category": "moderation"}
    headers = {"Authorization": f"Bearer {api_key[1]}"}
    try:
        _wait(port)
        with httpx2.Client(timeout=10) as http:

            def burst(n: int) -> tuple[list[int], float]:
                started = time.monotonic()
                codes = [http.post(url, json=body, headers=headers).status_code for _ in range(n)]
                return codes, (time.monotonic() - started) / n

            before, _ = burst(20)
            redis_proxy.cut()
            without_redis, _ = burst(60)
            redis_proxy.restore()
            after_redis, _ = burst(20)
            pg_proxy.cut()
            without_pg, seconds_each = burst(10)
            pg_proxy.restore()
            recovered_at = time.monotonic()
            after_pg = []
            while time.monotonic() - recovered_at < 15 and after_pg[-5:] != [200] * 5:
                after_pg.append(http.post(url, json=body, headers=headers).status_code)
            recovery_s = time.monotonic() - recovered_at
    finally:
        worker.terminate()
        worker.wait(timeout=10)
        pg_proxy.close()
        redis_proxy.close()
    redis_ok = (without_redis + after_redis).count(200) / len(without_redis + after_redis)
    print(
        f"\ndrill 8: before {Counter(before)}; Redis down {Counter(without_redis)}, back "
        f"{Counter(after_redis)}: {redis_ok:.1%} success; PostgreSQL down {Counter(without_pg)} "
        f"at {seconds_each * 1000:.0f} ms each; recovered in {recovery_s:.1f} s"
    )
    assert before == [200] * 20
    assert redis_ok >= 0.99
    assert set(without_pg) == {503}
    assert seconds_each < 3
    assert after_pg[-5:] == [200] * 5 and recovery_s < 10
    # One row per answered request, none for the refused ones, none half-written: a row whose
    # INSERT (after its answer) met the outage is retried and lands once the database is back,
    # and the worker's graceful stop above waited for any still pending.
    answered = (before + without_redis + after_redis + without_pg + after_pg).count(200)
    assert UsageRecord.objects.count() == answered


def test_drill_13_postgresql_down_15_s_loses_no_answered_spend(
    policy, api_key, sandbox_state, http_upstream
):
    if not django_settings.REDIS_URL or connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL and Redis (the .ci/run PostgreSQL + Redis run)")
    from django.db.models import Sum

    from routing.models import ApiKey, BudgetPeriod, InFlightRequest

    # given a budgeted key, a model that takes a second, and a worker whose database the
    # drill can cut
    ApiKey.objects.filter(pk=api_key[0].pk).update(monthly_budget_usd=Decimal("5"))
    sandbox_state.latency_ms = 1000
    db = connection.settings_dict
    pg_proxy = CuttableProxy(db["HOST"], int(db["PORT"]))
    env = _worker_env(database_port=pg_proxy.port, DATABASE_CONNECT_TIMEOUT_S=2)
    port = _free_port()
    worker = _worker(port, env)
    url = f"http://127.0.0.1:{port}/api/v1/completions"
    body = {"messages": [{"role": "user", "content": "hey there"}], "category": "chatbot"}
    headers = {"Authorization": f"Bearer {api_key[1]}"}
    outage_s = 15
    try:
        _wait(port)
        with httpx2.Client(timeout=10) as http:
            assert http.post(url, json=body, headers=headers).status_code == 200  # warm
        statuses: list[int] = []

        def one() -> None:
            with httpx2.Client(timeout=30) as http:
                statuses.append(http.post(url, json=body, headers=headers).status_code)

        # when 20 requests are admitted, then the database stops while the model answers
        threads = [threading.Thread(target=one) for _ in range(20)]
        for thread in threads:
            thread.start()
        admitted_by = time.monotonic() + 10
        while InFlightRequest.objects.count() < 20 and time.monotonic() < admitted_by:
            time.sleep(0.01)
        pg_proxy.cut()
        for thread in threads:
            thread.join(timeout=30)
        time.sleep(outage_s - 0.5)
        pg_proxy.restore()
        # then, once it is back, every answered request is in the ledger at its price
        started = time.monotonic()
        answered = statuses.count(200) + 1
        rows = UsageRecord.objects.filter(api_key=api_key[0])
        while time.monotonic() - started < 90 and (
            rows.count() < answered or InFlightRequest.objects.exists()
        ):
            time.sleep(0.2)
        settled_s = time.monotonic() - started
    finally:
        worker.terminate()
        worker.wait(timeout=10)
        pg_proxy.close()
    period = BudgetPeriod.objects.get(api_key=api_key[0])
    spent = rows.aggregate(total=Sum("cost_usd"))["total"]
    by_status = Counter(rows.values_list("status", flat=True))
    print(
        f"\ndrill 13: PostgreSQL down {outage_s} s under 20 answered budgeted requests: "
        f"{Counter(statuses)}; {rows.count()} rows {dict(by_status)} {settled_s:.1f} s after "
        f"it came back; spend ${spent:f} = budget ${period.spent_usd:f}, reserved "
        f"${period.reserved_usd:f}"
    )
    assert statuses == [200] * 20
    assert by_status == {"ok": answered}
    assert rows.filter(cost_usd=0).count() == 0
    assert period.spent_usd == spent and period.reserved_usd == 0
