"""The router's cache backend is one per process: requests make no backend or connection; a
Redis that stops answering costs one short timeout, then is skipped until it answers again."""

import socket

import openai
import pytest
import redis
from django.core.cache import caches
from prometheus_client import REGISTRY

from routing import shared_cache
from routing.models import InFlightRequest
from routing.shared_cache import RedisUnavailable, redis_call
from usage.models import UsageRecord


def _redis_connections_received(settings) -> int | None:
    if not settings.REDIS_URL:
        return None
    from redis import Redis

    return Redis.from_url(settings.REDIS_URL).info("stats")["total_connections_received"]


@pytest.mark.django_db(transaction=True)
def test_requests_share_one_cache_backend_and_its_connections(
    asgi_server, policy, api_key, settings, monkeypatch, minute_start
):
    # given a key allowed 20 requests a minute (a counter per request), a category whose
    # answers are cached (a read and a write per request) and a count of backends made
    key = api_key[0]
    key.rate_limit_per_minute = 20
    key.save()
    made = []
    create = caches.create_connection
    monkeypatch.setattr(caches, "create_connection", lambda name: made.append(name) or create(name))
    connections_before = _redis_connections_received(settings)
    client = openai.OpenAI(api_key=api_key[1], base_url=f"{asgi_server}/v1", max_retries=0)
    # when it asks 20 different questions through the OpenAI-compatible endpoint, then one more
    for number in range(20):
        client.chat.completions.create(
            model="auto:moderation",
            messages=[{"role": "user", "content": f"Is message {number} spam?"}],
        )
    # then none made a cache backend of its own
    assert len(made) <= 1
    if connections_before is not None:
        # one pool: at most a connection per thread that used it, not one per request
        assert _redis_connections_received(settings) - connections_before <= 4
    # and every request was counted: the 21st in the same minute is refused
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "Hi"}])


@pytest.fixture
def frozen_redis(settings):
    """A Redis that accepts connections and never answers, as one paused with SIGSTOP does
    (a listening socket nobody reads), behind REDIS_URL and the cache, with the timeouts
    settings.py gives a Redis cache."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    url = f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    settings.REDIS_URL = url
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "OPTIONS": {
                "socket_connect_timeout": settings.REDIS_CONNECT_TIMEOUT_S,
                "socket_timeout": settings.REDIS_SOCKET_TIMEOUT_S,
            },
        }
    }
    yield url
    listener.close()


def _redis_metric(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


@pytest.mark.django_db
def test_a_frozen_redis_costs_one_timeout_then_is_skipped_and_logged_once(
    api_client, api_key, policy, frozen_redis, settings, caplog
):
    # given a frozen Redis behind the cache, the breaker, the rate limit and the in-flight
    # records, a key whose requests it counts, and a backoff longer than the test
    settings.REDIS_BACKOFF_S = 600
    key = api_key[0]
    key.rate_limit_per_minute = 1000
    key.save()
    failures_before = _redis_metric("huntaze_redis_failures_total")
    skipped_before = _redis_metric("huntaze_redis_skipped_total")
    # when five requests come to a category with a response cache
    statuses = [
        api_client.post(
            "/api/v1/completions",
            {"messages": [{"role": "user", "content": f"Is {n} spam?"}], "category": "moderation"},
            format="json",
        ).status_code
        for n in range(5)
    ]
    # then all are answered and recorded (their in-flight records in the table, dropped), one
    # Redis call waited for its timeout, every later one was skipped, and it is said once
    assert statuses == [200] * 5
    assert UsageRecord.objects.filter(status="ok").count() == 5
    assert InFlightRequest.objects.count() == 0
    assert _redis_metric("huntaze_redis_failures_total") - failures_before == 1
    assert _redis_metric("huntaze_redis_skipped_total") - skipped_before >= 5 * 4
    said = [r for r in caplog.records if r.getMessage().startswith("redis unavailable for")]
    assert len(said) == 1


@pytest.fixture
def switch_clock(monkeypatch):
    """The Redis switch's monotonic clock, stopped at 1000 s; a test moves it by number."""
    clock = {"now_s": 1000.0}
    monkeypatch.setattr(shared_cache, "monotonic", lambda: clock["now_s"])
    return clock


def test_after_the_backoff_one_call_tries_redis_again_while_the_others_still_skip(
    settings, switch_clock
):
    # given Redis timed out once, with a 5 s backoff
    settings.REDIS_BACKOFF_S = 5
    made = []

    def timeout() -> None:
        raise redis.TimeoutError("Timeout reading from socket")

    with pytest.raises(redis.TimeoutError):
        redis_call(timeout)
    # when calls come during the backoff, then one after it (which finds Redis back)
    with pytest.raises(RedisUnavailable):
        redis_call(made.append, "during the backoff")
    switch_clock["now_s"] += 5

    def trial() -> str:
        with pytest.raises(RedisUnavailable):  # the others skip while the trial is out
            redis_call(made.append, "during the trial")
        return "PONG"

    answer = redis_call(trial)
    redis_call(made.append, "after the trial")
    # then only the trial and the calls after it reached Redis
    assert answer == "PONG"
    assert made == ["after the trial"]


def test_a_failed_trial_skips_redis_for_another_backoff(settings, switch_clock):
    # given Redis refused a connection, with a 5 s backoff
    settings.REDIS_BACKOFF_S = 5

    def refused() -> None:
        raise redis.ConnectionError("Connection refused")

    with pytest.raises(redis.ConnectionError):
        redis_call(refused)
    switch_clock["now_s"] += 5
    # when the trial after the backoff fails too
    with pytest.raises(redis.ConnectionError) as trial:
        redis_call(refused)
    # then it was a real try, and the next call is skipped
    assert not isinstance(trial.value, RedisUnavailable)
    with pytest.raises(RedisUnavailable):
        redis_call(lambda: "PONG")
