"""Fault drill 9: Redis frozen mid-load (as if paused with SIGSTOP: connections open, nothing
answered) for 15 s under steady load, through a proxy that holds every byte. A frozen Redis
costs a request at most one short timeout, the service keeps its pace, every answered request
has its ledger row, and Redis is used again as soon as it answers, with no restart."""

import os
import statistics
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlparse

import httpx2
import pytest
import redis
from django.conf import settings as django_settings
from django.db import connection

from tests.drills.tcp_proxy import CuttableProxy
from tests.drills.test_circuit_across_workers import _free_port, _wait, _worker, _worker_env
from usage.models import UsageRecord

SCALE = float(os.environ.get("DRILL_SCALE", "0.3"))
FREEZE_S = max(5.0, 15 * SCALE)  # the 15 s at full size (`make drill`)
BEFORE_S, AFTER_S = 4.0, 6.0
CLIENTS = 8
WORKER_REDIS_BACKOFF_S = 1.0  # the worker's REDIS_BACKOFF_S: the setting's default
pytestmark = pytest.mark.django_db(transaction=True)


@dataclass
class Sent:
    started: float
    ended: float
    status: int  # 0: no answer at all
    request_id: str | None


def _client_loop(url: str, headers: dict, number: int, stop: threading.Event, out: list) -> None:
    with httpx2.Client(timeout=10) as http:
        n = 0
        while not stop.is_set():
            n += 1
            body = {
                "messages": [{"role": "user", "content": f"Is message {number}-{n} spam?"}],
                "category": "moderation",
            }
            started = time.monotonic()
            try:
                response = http.post(url, json=body, headers=headers)
                status = response.status_code
                request_id = response.json().get("id") if status == 200 else None
            except httpx2.HTTPError:
                status, request_id = 0, None
            out.append(Sent(started, time.monotonic(), status, request_id))


def _counted_in_redis(client: redis.Redis, key_id: int) -> int:
    """Requests the key's rate-limit counters hold: what the worker counted in Redis."""
    keys = client.keys(f"huntaze:ratelimit:{key_id}:*")
    return sum(int(value) for value in client.mget(keys)) if keys else 0


def _worker_metric(http: httpx2.Client, base: str, name: str) -> float:
    for line in http.get(f"{base}/metrics").text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    return 0.0


def _per_s(sent: list[Sent], start: float, end: float) -> float:
    return sum(start <= s.ended < end for s in sent) / (end - start)


def _p99(latencies: list[float]) -> float:
    return latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]


def test_drill_9_frozen_redis_costs_a_request_at_most_one_short_timeout(
    policy, api_key, http_upstream
):
    if not django_settings.REDIS_URL or connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL and Redis (the .ci/run PostgreSQL + Redis run)")
    # given a worker whose Redis (cache, breaker, rate limit, in-flight records) is behind a
    # proxy, and a key whose every request is counted in Redis (a limit it never reaches)
    key, plaintext = api_key
    key.rate_limit_per_minute = 1_000_000
    key.save()
    real_redis = urlparse(django_settings.REDIS_URL)
    redis_proxy = CuttableProxy(real_redis.hostname, real_redis.port or 6379)
    env = _worker_env(redis_url=f"redis://127.0.0.1:{redis_proxy.port}{real_redis.path}")
    env.pop("CACHE_URL", None)
    counter = redis.Redis.from_url(django_settings.REDIS_URL)
    port = _free_port()
    worker = _worker(port, env)
    base = f"http://127.0.0.1:{port}"
    url = f"{base}/api/v1/completions"
    headers = {"Authorization": f"Bearer {plaintext}"}
    sent: list[Sent] = []
    stop = threading.Event()
    try:
        _wait(port)
        warm_up = {"messages": [{"role": "user", "content": "hi"}]}  # imports, policy, key
        with httpx2.Client(timeout=10) as http:
            for _ in range(3):
                http.post(url, json=warm_up, headers=headers)
        clients = [
            threading.Thread(target=_client_loop, args=(url, headers, n, stop, sent))
            for n in range(CLIENTS)
        ]
        # when Redis freezes for FREEZE_S under steady load from 8 clients, then thaws
        begun = time.monotonic()
        for thread in clients:
            thread.start()
        time.sleep(BEFORE_S)
        redis_proxy.freeze()
        frozen_at = time.monotonic()
        time.sleep(FREEZE_S)
        counted_at_thaw = _counted_in_redis(counter, key.pk)
        redis_proxy.thaw()
        thawed_at = time.monotonic()
        time.sleep(AFTER_S)
        stop.set()
        for thread in clients:
            thread.join(timeout=15)
        ended = time.monotonic()
        counted_after = _counted_in_redis(counter, key.pk) - counted_at_thaw
        with httpx2.Client(timeout=10) as http:
            timeouts = _worker_metric(http, base, "huntaze_redis_failures_total")
            skipped = _worker_metric(http, base, "huntaze_redis_skipped_total")
    finally:
        stop.set()
        worker.terminate()  # a graceful stop: it waits for ledger rows still being written
        worker.wait(timeout=15)
        redis_proxy.close()
    # then
    while_frozen = [s for s in sent if s.ended > frozen_at and s.started < thawed_at]
    latencies = sorted(s.ended - s.started for s in while_frozen)
    p50 = statistics.median(latencies)
    p99 = _p99(latencies)
    # The target is p99 <= 1 s; on a host so busy that requests took longer before the
    # freeze, what the freeze may add is judged against that: 1.5 x the p99 before it.
    p99_before = _p99(sorted(s.ended - s.started for s in sent if s.ended <= frozen_at))
    p99_bound = max(1.0, 1.5 * p99_before)
    ok = [s for s in sent if s.status == 200]
    success = len(ok) / len(sent)
    after = [s for s in sent if s.started >= thawed_at]
    rates = (
        _per_s(sent, begun, frozen_at),
        _per_s(sent, frozen_at, thawed_at),
        _per_s(sent, thawed_at, ended),
    )
    answered_ids = {s.request_id for s in ok}
    recorded = set(
        UsageRecord.objects.filter(request_id__in=answered_ids).values_list("request_id", flat=True)
    )
    print(
        f"\ndrill 9: {CLIENTS} clients, Redis frozen {FREEZE_S:.0f} s: "
        f"{rates[0]:.0f} -> {rates[1]:.0f} -> {rates[2]:.0f} requests/s (before, frozen, "
        f"after); while frozen p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms "
        f"(before {p99_before * 1000:.0f} ms), "
        f"max {latencies[-1] * 1000:.0f} ms; {success:.2%} of {len(sent)} succeeded; "
        f"{len(recorded)}/{len(ok)} answered requests have their row; Redis calls timed out "
        f"{timeouts:.0f}, skipped {skipped:.0f}; after the thaw {counted_after}/{len(after)} "
        "requests counted in Redis again"
    )
    assert timeouts >= 1 and skipped >= len(while_frozen)  # the worker did meet the freeze
    assert p99 <= p99_bound
    assert success >= 0.99
    assert recorded == answered_ids
    # recovery without a restart: the pace is back and requests are counted in Redis again
    assert rates[2] >= rates[0] * 0.5
    # Judged on the requests started once the worker's breaker could have tried Redis again
    # (it skips Redis for REDIS_BACKOFF_S after its last failed try, which may fall just
    # before the thaw).
    recovered_from = thawed_at + WORKER_REDIS_BACKOFF_S
    after_backoff = [s for s in sent if s.started >= recovered_from]
    assert after_backoff and counted_after >= len(after_backoff) * 0.9
