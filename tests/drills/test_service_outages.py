"""Fault drill 8: Redis stopped mid-load, then PostgreSQL, through proxies the drill cuts:
routing goes on without Redis; without the database requests get fast JSON 503s and no row
is half-written; both recover with no restart."""

import os
import time
from collections import Counter
from urllib.parse import urlparse

import httpx2
import pytest
from django.conf import settings as django_settings
from django.db import connection

from tests.drills.tcp_proxy import CuttableProxy
from tests.drills.test_circuit_across_workers import _free_port, _wait, _worker
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)


def test_drill_8_redis_then_postgresql_outage(policy, api_key, http_upstream):
    if not django_settings.REDIS_URL or connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL and Redis (the .ci/run PostgreSQL + Redis run)")
    db = connection.settings_dict
    redis = urlparse(django_settings.REDIS_URL)
    pg_proxy = CuttableProxy(db["HOST"], int(db["PORT"]))
    redis_proxy = CuttableProxy(redis.hostname, redis.port or 6379)
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@127.0.0.1:{pg_proxy.port}/{db['NAME']}",
        "REDIS_URL": f"redis://127.0.0.1:{redis_proxy.port}{redis.path}",
        "UPSTREAM_MODE": "live",
        "OPENAI_BASE_URL": django_settings.OPENAI_BASE_URL,
        "OPENAI_API_KEY": "sk-test-not-real",
        "API_KEY_CACHE_S": "0",  # every request reads the database: the outage must show
        "DATABASE_CONNECT_TIMEOUT_S": "2",
    }
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
