"""Fault drills of issue 18 on the live ASGI server (127.0.0.1, bounded, each prints its
figure): one tenant's bad requests are no one else's outage; clients that hang up leave
their rows and release their reservations; a hung cheap model falls back in time."""

import asyncio
import time
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import httpx2
import pytest
from django.db.models import Sum
from django.utils import timezone

from routing.api_keys import api_key_create
from routing.circuit import circuit_states
from routing.gateway.admission import inflight_sweep
from routing.models import ApiKey, BudgetPeriod, InFlightRequest, TaskCategory
from routing.policy_versions import policy_version_create
from tests.waits import after_response_settled
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = [{"role": "user", "content": "hey, loved the stream today!"}]


async def _send(http, url: str, key: str, *, json=None, content=None, timeout=None) -> int:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    try:
        response = await http.post(
            url, json=json, content=content, headers=headers, timeout=timeout or 30
        )
    except httpx2.TimeoutException:
        return 0  # the client gave up
    return response.status_code


def test_drill_10_one_tenants_bad_requests_are_no_one_elses_outage(
    asgi_server, policy, api_key, sandbox_state, settings
):
    # given the default breaker (5 failures in 30 s) and a validating model behind both tenants
    settings.CIRCUIT_FAILURE_THRESHOLD = 5
    attacker, victim = api_key[1], api_key_create(name="victim")[1]
    bad = [
        ("/v1/chat/completions", {"model": "auto:chatbot", "messages": CHAT, "top_p": 5}, None),
        (
            "/api/v1/completions",
            None,
            b'{"messages": [{"role": "user", "content": "hi \\udfff"}], "category": "chatbot"}',
        ),
        (
            "/api/v1/completions",
            None,
            b'{"messages": [{"role": "user", "content": "hi"}], '
            b'"user": "\\udfff", "category": "chatbot"}',
        ),
        ("/v1/chat/completions", {"model": "auto", "messages": CHAT, "user": "fan\x00"}, None),
        (
            "/v1/chat/completions",
            {"model": "auto", "messages": CHAT, "metadata": {"k\x00": "v"}},
            None,
        ),
    ]
    storm = [bad[n % len(bad)] for n in range(300)]
    good = {"model": "auto:chatbot", "messages": CHAT}

    async def run() -> tuple[list[int], list[int]]:
        limits = httpx2.Limits(max_connections=16)
        async with httpx2.AsyncClient(limits=limits) as http:
            gate = asyncio.Semaphore(8)

            async def attack(path, body, raw):
                async with gate:
                    return await _send(http, asgi_server + path, attacker, json=body, content=raw)

            async def use(n):
                await asyncio.sleep(n * 0.002)  # spread over the storm
                return await _send(http, f"{asgi_server}/v1/chat/completions", victim, json=good)

            attacks = asyncio.gather(*(attack(*request) for request in storm))
            uses = asyncio.gather(*(use(n) for n in range(300)))
            return await attacks, await uses

    # when the attacker's storm and the victim's traffic run together
    attacked, used = asyncio.run(run())
    after_response_settled()
    # then the attacker gets its 400s, and the victim loses nothing and pays cheap prices;
    # the in-flight sweep that follows finds nothing it cannot write
    swept = inflight_sweep(now=timezone.now() + timedelta(hours=1))
    quarantined = InFlightRequest.objects.exclude(quarantined_at=None).count()
    victim_rows = UsageRecord.objects.exclude(api_key__name="product")
    models = Counter(victim_rows.values_list("model", flat=True))
    circuits = circuit_states(["gpt-4o-mini", "gpt-4o"], now=time.time())
    success = used.count(200) / len(used)
    print(
        f"\ndrill 10: attacker {Counter(attacked)} ({len(storm)} bad requests); victim "
        f"{success:.1%} success of {len(used)}, models {dict(models)}; circuits {circuits}; "
        f"then the sweep: {swept} swept, {quarantined} quarantined, no crash"
    )
    assert set(attacked) == {400}
    assert success >= 0.995
    assert models == {"gpt-4o-mini": len(used)}
    assert set(circuits.values()) == {"closed"}
    assert victim_rows.count() == used.count(200)
    assert (swept, quarantined) == (0, 0)


def test_drill_11_clients_that_hang_up_leave_rows_and_release_their_budget(
    asgi_server, policy, api_key, sandbox_state, settings
):
    # given a $0.50 budget and a model that takes 2 s to answer
    settings.SANDBOX_LATENCY_MS = 2000
    ApiKey.objects.filter(pk=api_key[0].pk).update(monthly_budget_usd=Decimal("0.50"))
    url, key = f"{asgi_server}/api/v1/completions", api_key[1]
    body = {"messages": CHAT, "category": "chatbot"}
    hang_ups = 50

    async def run() -> list[int]:
        async with httpx2.AsyncClient(limits=httpx2.Limits(max_connections=hang_ups)) as http:
            await _send(http, f"{asgi_server}/api/v1/route", key, json=body)  # warm
            return await asyncio.gather(
                *(_send(http, url, key, json=body, timeout=0.8) for _ in range(hang_ups))
            )

    # when 50 clients hang up while the model is at work (a request still waiting for its
    # admission when its client leaves is never admitted: nothing to bill, nothing to record)
    statuses = asyncio.run(run())
    started = time.monotonic()
    while time.monotonic() - started < 15 and (
        InFlightRequest.objects.exists() or UsageRecord.objects.count() < sandbox_state.calls
    ):
        time.sleep(0.05)
    settled_s = time.monotonic() - started
    # then every call made has its row at its real cost, and no reservation outlives its request
    rows = UsageRecord.objects.all()
    row_statuses = Counter(rows.values_list("status", flat=True))
    billed = rows.filter(output_tokens__gt=0).count()
    calls = sandbox_state.calls
    left_in_flight = InFlightRequest.objects.count()
    period = BudgetPeriod.objects.get()
    spent = rows.aggregate(total=Sum("cost_usd"))["total"]
    with httpx2.Client(timeout=10) as http:  # and the budget is free for the next request
        after = http.post(url, json=body, headers={"Authorization": f"Bearer {key}"})
    print(
        f"\ndrill 11: {statuses.count(0)} of {hang_ups} clients hung up; "
        f"{calls} upstream calls, {sum(row_statuses.values())} rows "
        f"({dict(row_statuses)}, {billed} billed), spend ${spent:f}, reserved "
        f"${period.reserved_usd:f} {settled_s:.1f} s later; next request {after.status_code}"
    )
    assert statuses.count(0) == hang_ups
    assert set(row_statuses) == {"client_cancelled"}
    assert billed == calls > 0
    assert period.reserved_usd == 0 and left_in_flight == 0
    assert period.spent_usd == spent > 0
    assert after.status_code == 200


def test_drill_12_a_hung_cheap_model_falls_back_within_the_deadline(
    asgi_server, policy, api_key, sandbox_state, http_upstream, settings
):
    # given a 6 s deadline, the cheap model hanging on every call, the premium one healthy,
    # and fewer concurrent requests than the breaker's threshold
    settings.ROUTER_ATTEMPTS_PER_MODEL = 3
    TaskCategory.objects.filter(slug="chatbot").update(deadline_s=6)
    policy_version_create(actor="drill")
    sandbox_state.fail_model("gpt-4o-mini", "timeout")
    body = {"messages": CHAT, "category": "chatbot"}

    async def run() -> list[int]:
        async with httpx2.AsyncClient() as http:
            url = f"{asgi_server}/api/v1/completions"
            return await asyncio.gather(
                *(_send(http, url, api_key[1], json=body) for _ in range(6))
            )

    # when
    started = time.monotonic()
    statuses = asyncio.run(run())
    elapsed = time.monotonic() - started
    after_response_settled()
    # then every request is answered by the premium model inside the deadline, and each row
    # names the model that answered and the one it fell back from
    rows = Counter(UsageRecord.objects.values_list("status", "model", "fallback_from"))
    print(f"\ndrill 12: {Counter(statuses)} in {elapsed:.2f} s (deadline 6 s); rows {dict(rows)}")
    assert statuses == [200] * 6
    assert elapsed < 6.0
    assert rows == {("ok", "gpt-4o", "gpt-4o-mini"): 6}
