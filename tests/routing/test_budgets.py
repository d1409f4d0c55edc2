"""Budgets (reserved under a row lock), rate limits, lost requests, cache outages."""

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from routing.api_key_selectors import api_key_cache_clear
from routing.gateway.admission import BudgetExceeded, RateLimited, inflight_sweep, rate_limit_check
from routing.gateway.call import CompletionRequest
from routing.gateway.completion import call_prepare, completion_create
from routing.models import BudgetPeriod, InFlightRequest
from usage.models import UsageRecord

HELLO = [{"role": "user", "content": "hey there"}]


def _post(client, body):
    return client.post("/api/v1/completions", json.dumps(body), content_type="application/json")


@pytest.mark.django_db
def test_over_budget_is_a_429_naming_the_budget(api_client, api_key, policy):
    key = api_key[0]
    key.monthly_budget_usd = Decimal("0.001")  # less than one worst case on the premium model
    key.save()
    response = _post(api_client, {"messages": HELLO, "category": "chatbot"})
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == "budget_exceeded"
    assert "monthly budget of API key 'product'" in error["message"]
    assert UsageRecord.objects.count() == 0
    assert InFlightRequest.objects.count() == 0


@pytest.mark.django_db
def test_a_call_turns_its_reservation_into_spend_and_alerts(api_client, api_key, policy):
    key = api_key[0]
    key.monthly_budget_usd = Decimal("10")
    key.budget_alert_percent = 0  # alert at the first cent
    key.save()
    assert _post(api_client, {"messages": HELLO, "category": "chatbot"}).status_code == 200
    period = BudgetPeriod.objects.get()
    row = UsageRecord.objects.get()
    assert period.reserved_usd == 0
    assert period.spent_usd == row.cost_usd
    assert period.alerted_at is not None
    assert InFlightRequest.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_cannot_overshoot_the_budget(api_key, policy, settings):
    # given $0.05 and 50 requests, 16 at a time, each able to cost about half a cent at worst
    # and each in flight for 200 ms, so their reservations overlap
    settings.SANDBOX_LATENCY_MS = 200
    key = api_key[0]
    key.monthly_budget_usd = Decimal("0.05")
    key.save()

    def one(n: int) -> str:
        request = CompletionRequest(messages=HELLO, category="chatbot", user=f"fan-{n}")
        try:
            async_to_sync(completion_create)(api_key=key, request=request)
            return "ok"
        except BudgetExceeded:
            return "refused"
        finally:
            connection.close()

    # when
    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(one, range(50)))
    # then some were refused, and what was spent stays within the budget, to the cent
    assert outcomes.count("ok") + outcomes.count("refused") == 50
    assert 0 < outcomes.count("ok") < 50
    period = BudgetPeriod.objects.get()
    spent = UsageRecord.objects.aggregate(total=Sum("cost_usd"))["total"]
    print(f"budget race: {outcomes.count('ok')} admitted, spend ${spent} of $0.05")
    assert period.spent_usd == spent <= Decimal("0.05")
    assert period.reserved_usd == 0
    assert UsageRecord.objects.count() == outcomes.count("ok")


@pytest.mark.django_db
def test_rate_limit_is_a_429_with_retry_after(api_client, api_key, policy, minute_start):
    key = api_key[0]
    key.rate_limit_per_minute = 2
    key.save()
    statuses = [_post(api_client, {"messages": HELLO}).status_code for _ in range(3)]
    assert statuses[:2] == [200, 200]
    limited = _post(api_client, {"messages": HELLO})
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(limited["Retry-After"]) <= 60


@pytest.mark.django_db
def test_rate_limit_counts_per_minute_and_names_the_next_one(api_key):
    # given a key allowed one request a minute, and a minute of its own (the counter is shared)
    key = api_key[0]
    key.rate_limit_per_minute = 1
    minute_s = (10**9 + uuid.uuid4().int % 10**9) * 60
    check = async_to_sync(rate_limit_check)
    check(api_key=key, now=minute_s + 15)
    # when a second request comes in the same minute
    with pytest.raises(RateLimited) as limited:
        check(api_key=key, now=minute_s + 20)
    # then it waits for the next minute, which has room again
    assert limited.value.retry_after_s == 40
    check(api_key=key, now=minute_s + 60)


@pytest.mark.django_db
def test_a_lost_worker_leaves_an_abandoned_row_and_no_reservation(api_key, policy):
    # given a request admitted (reserved) whose worker dies before recording it
    key = api_key[0]
    key.monthly_budget_usd = Decimal("5")
    key.save()
    call = call_prepare(api_key=key, request=CompletionRequest(messages=HELLO))
    assert BudgetPeriod.objects.get().reserved_usd > 0
    # when the sweeper runs before and after the deadline
    assert inflight_sweep(now=timezone.now()) == 0
    swept = inflight_sweep(now=timezone.now() + timedelta(hours=1))
    # then
    assert swept == 1
    row = UsageRecord.objects.get()
    assert (row.request_id, row.status, row.cost_usd) == (call.request_id, "abandoned", 0)
    assert row.api_key_id == key.pk
    assert BudgetPeriod.objects.get().reserved_usd == 0
    assert InFlightRequest.objects.count() == 0


@pytest.mark.django_db
def test_cache_outage_fails_open(api_client, api_key, policy, monkeypatch):
    from redis import Redis

    from routing.shared_cache import shared_cache

    def broken(*args, **kwargs):
        raise ConnectionError("redis down")

    key = api_key[0]
    key.rate_limit_per_minute = 100
    key.save()
    for name in ("get", "set", "add", "incr"):
        monkeypatch.setattr(shared_cache(), name, broken)
    nobody_listens = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    monkeypatch.setattr("routing.shared_cache.shared_redis", lambda: nobody_listens)
    body = {"messages": [{"role": "user", "content": "Is this spam?"}], "category": "moderation"}
    assert _post(api_client, body).status_code == 200  # response cache and limits skipped
    assert UsageRecord.objects.get().status == "ok"


@pytest.mark.django_db
def test_with_redis_a_lost_call_without_budget_is_swept_from_redis(api_key, policy, settings):
    from redis import Redis

    if not settings.REDIS_URL:
        pytest.skip("needs REDIS_URL (the PostgreSQL + Redis pass of .ci/run)")
    # given a request admitted for a key without a budget, whose worker dies
    call = call_prepare(api_key=api_key[0], request=CompletionRequest(messages=HELLO))
    assert call.remembered_in == "redis"
    assert InFlightRequest.objects.count() == 0
    # when the sweeper runs before and after the deadline
    assert inflight_sweep(now=timezone.now()) == 0
    assert inflight_sweep(now=timezone.now() + timedelta(hours=1)) == 1
    # then one abandoned row, and nothing left to sweep
    row = UsageRecord.objects.get()
    assert (row.request_id, row.status, row.cost_usd) == (call.request_id, "abandoned", 0)
    assert inflight_sweep(now=timezone.now() + timedelta(hours=2)) == 0
    assert not Redis.from_url(settings.REDIS_URL).exists("huntaze:inflight:fields")


@pytest.mark.django_db
def test_without_redis_in_flight_records_use_the_table(api_key, policy, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens: Redis is "down"
    call = call_prepare(api_key=api_key[0], request=CompletionRequest(messages=HELLO))
    assert call.remembered_in == "table"
    assert InFlightRequest.objects.filter(request_id=call.request_id).exists()


@pytest.mark.django_db
def test_with_redis_a_recorded_call_is_forgotten_after_its_row_is_written(
    api_client, api_key, policy, settings
):
    from redis import Redis

    from routing.inflight import DATA_KEY, DEADLINES_KEY

    if not settings.REDIS_URL:
        pytest.skip("needs REDIS_URL (the PostgreSQL + Redis pass of .ci/run)")
    redis = Redis.from_url(settings.REDIS_URL)
    # when three calls of a key without a budget are answered
    for _ in range(3):
        assert _post(api_client, {"messages": HELLO, "category": "chatbot"}).status_code == 200
    request_ids = list(UsageRecord.objects.values_list("request_id", flat=True))
    assert len(request_ids) == 3
    # then their in-flight records go soon after (off the request's path), and none is swept
    deadline = time.monotonic() + 5
    while redis.hmget(DATA_KEY, request_ids) != [None] * 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert redis.hmget(DATA_KEY, request_ids) == [None] * 3
    assert all(redis.zscore(DEADLINES_KEY, request_id) is None for request_id in request_ids)
    assert inflight_sweep(now=timezone.now() + timedelta(hours=1)) == 0
    assert UsageRecord.objects.count() == 3


@pytest.mark.django_db
def test_a_budget_set_mid_month_counts_the_months_earlier_spend(api_client, api_key, policy):
    # given a key that spent without a budget this month
    key = api_key[0]
    for _ in range(3):
        assert _post(api_client, {"messages": HELLO, "category": "chatbot"}).status_code == 200
    spent = UsageRecord.objects.aggregate(total=Sum("cost_usd"))["total"]
    assert spent > 0
    # when a budget below that spend is set
    key.monthly_budget_usd = spent / 2
    key.save()
    api_key_cache_clear()  # at once, not API_KEY_CACHE_S later
    # then the next request is refused: the month's spend counts
    response = _post(api_client, {"messages": HELLO, "category": "chatbot"})
    assert response.status_code == 429
    assert BudgetPeriod.objects.get().spent_usd == spent


@pytest.mark.django_db
def test_a_budget_set_again_in_admin_counts_the_spend_made_without_one(
    client, api_client, api_key, policy
):
    from django.contrib.auth.models import User

    # given a key whose budget was lifted after its period began, and that spent meanwhile
    key = api_key[0]
    key.monthly_budget_usd = Decimal("5")
    key.save()
    assert _post(api_client, {"messages": HELLO, "category": "chatbot"}).status_code == 200
    key.monthly_budget_usd = None
    key.save()
    api_key_cache_clear()
    for _ in range(2):
        assert _post(api_client, {"messages": HELLO, "category": "chatbot"}).status_code == 200
    spent = UsageRecord.objects.aggregate(total=Sum("cost_usd"))["total"]
    assert BudgetPeriod.objects.get().spent_usd < spent
    # when a staff user sets a budget again in admin
    client.force_login(User.objects.create_superuser("ops", "ops@example.com", "pw"))
    form = {"monthly_budget_usd": "5", "budget_alert_percent": "80"}
    response = client.post(f"/admin/routing/apikey/{key.pk}/change/", form)
    assert response.status_code == 302
    # then the period counts all of the month's spend
    assert BudgetPeriod.objects.get().spent_usd == spent
