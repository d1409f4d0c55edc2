"""The router's cache backend is one per process: requests make no backend or connection."""

import openai
import pytest
from django.core.cache import caches

from tests.waits import minute_with_room


def _redis_connections_received(settings) -> int | None:
    if not settings.REDIS_URL:
        return None
    from redis import Redis

    return Redis.from_url(settings.REDIS_URL).info("stats")["total_connections_received"]


@pytest.mark.django_db(transaction=True)
def test_requests_share_one_cache_backend_and_its_connections(
    asgi_server, policy, api_key, settings, monkeypatch
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
    minute_with_room(20)
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
