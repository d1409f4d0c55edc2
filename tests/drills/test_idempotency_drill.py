"""Fault drill: a worker killed (SIGKILL) while it holds an Idempotency-Key's claim. Retries
with the key on another worker get 409 with Retry-After while the claim's lease holds, then
run once the lease has passed: no 24-hour lock-out, and one answered call."""

import os
import signal
import threading
import time
from collections import Counter

import httpx2
import pytest
from django.conf import settings as django_settings
from django.db import connection

from routing.models import IdempotencyRecord
from tests.drills.test_circuit_across_workers import _free_port, _wait, _worker, _worker_env
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

LEASE_S = 4


def _until(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


def test_drill_14_a_worker_killed_holding_an_idempotency_claim(
    policy, api_key, sandbox_state, http_upstream
):
    if connection.vendor != "postgresql":
        pytest.skip("needs a database that two processes share (PostgreSQL)")
    env = _worker_env(
        redis_url=django_settings.REDIS_URL or "",
        ROUTER_ATTEMPTS_PER_MODEL=1,
        IDEMPOTENCY_LEASE_S=LEASE_S,
    )
    # The worker that dies, and the one the retries reach (gunicorn's other worker, or the
    # one its master starts instead): started together so the drill does not wait twice.
    doomed_port, survivor_port = _free_port(), _free_port()
    doomed, survivor = _worker(doomed_port, env), _worker(survivor_port, env)
    body = {"messages": [{"role": "user", "content": "Is this spam?"}], "category": "moderation"}
    headers = {"Authorization": f"Bearer {api_key[1]}", "Idempotency-Key": "drill-order-1"}
    seen: list[tuple[float, int, str | None]] = []
    try:
        _wait(doomed_port)
        _wait(survivor_port)
        with httpx2.Client(timeout=10) as http:  # warm both up: the timeline is the lease's
            for port in (doomed_port, survivor_port):
                url = f"http://127.0.0.1:{port}/api/v1/completions"
                warm_up = {**body, "messages": [{"role": "user", "content": f"warm-up {port}"}]}
                auth = {"Authorization": headers["Authorization"]}
                assert http.post(url, json=warm_up, headers=auth).status_code == 200
        warm_rows = 2
        assert _until(lambda: UsageRecord.objects.count() == warm_rows, 5)
        # given an upstream that hangs, and a request with a key stuck in it on one worker
        calls_before = sandbox_state.calls
        sandbox_state.fail_randomly(1.0, ("timeout",))
        first_outcome: list[object] = []

        def first_request() -> None:
            try:
                with httpx2.Client(timeout=15) as http:
                    url = f"http://127.0.0.1:{doomed_port}/api/v1/completions"
                    first_outcome.append(http.post(url, json=body, headers=headers).status_code)
            except httpx2.HTTPError as exc:
                first_outcome.append(type(exc).__name__)

        client = threading.Thread(target=first_request, daemon=True)
        client.start()
        assert _until(lambda: sandbox_state.calls > calls_before, 10), "no upstream call"
        assert IdempotencyRecord.objects.get().state == IdempotencyRecord.IN_FLIGHT
        # when that worker is killed holding the claim, and the upstream heals
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(timeout=10)
        killed_at = time.monotonic()
        sandbox_state.fail_randomly(0.0, ())
        client.join(timeout=10)
        # then retries on the other worker: 409 with Retry-After, until 200 past the lease
        with httpx2.Client(timeout=10) as http:
            url = f"http://127.0.0.1:{survivor_port}/api/v1/completions"
            while time.monotonic() - killed_at < LEASE_S + 10:
                response = http.post(url, json=body, headers=headers)
                seen.append(
                    (
                        time.monotonic() - killed_at,
                        response.status_code,
                        response.headers.get("Retry-After"),
                    )
                )
                if response.status_code != 409:
                    break
                time.sleep(0.25)
            replay = http.post(url, json=body, headers=headers)
        _until(lambda: UsageRecord.objects.count() > warm_rows, 5)  # written after the answer
    finally:
        for worker in (doomed, survivor):
            if worker.poll() is None:
                worker.terminate()
        for worker in (doomed, survivor):
            worker.wait(timeout=10)
    codes = [status for _, status, _ in seen]
    retry_after = sorted({int(value) for _, status, value in seen if status == 409 and value})
    recovered_s = seen[-1][0]
    print(
        f"\ndrill 14: worker killed holding the claim (first client: "
        f"{first_outcome[0] if first_outcome else 'no answer'}); retries on another worker: "
        f"{dict(Counter(codes))}, Retry-After {retry_after} s, 200 at {recovered_s:.1f} s "
        f"after the kill (lease {LEASE_S} s); then replayed: "
        f"{replay.headers.get('Idempotent-Replayed') == 'true'}"
    )
    assert codes[0] == 409 and seen[0][2] is not None and 1 <= int(seen[0][2]) <= LEASE_S
    assert set(codes[:-1]) == {409} and codes[-1] == 200
    assert recovered_s <= LEASE_S + 2
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
    assert UsageRecord.objects.filter(status="ok").count() == warm_rows + 1
