"""In-flight requests without a budget reservation, remembered in Redis instead of a table.

Every admitted request is remembered until its ledger row is written, so that a worker lost
mid-request still leaves a row (`abandoned`, swept later). For a key without a budget nothing
else needs the row, and an INSERT plus a DELETE per request in PostgreSQL cost more than the
ledger row itself; two pipelined Redis commands do the same. Without Redis (or when it does
not answer) the caller keeps the table.
"""

import json
import logging
from datetime import datetime

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

DATA_KEY = "huntaze:inflight:fields"  # request id -> the ledger row it becomes if lost
DEADLINES_KEY = "huntaze:inflight:deadlines"  # request id -> when it counts as lost

_clients: dict[str, redis.Redis] = {}


def _client() -> redis.Redis | None:
    url = settings.REDIS_URL
    if not url:
        return None
    if url not in _clients:
        # Short timeouts: a Redis in trouble sends the request to the table, not to a wait.
        _clients[url] = redis.Redis.from_url(
            url, socket_timeout=0.5, socket_connect_timeout=0.5, health_check_interval=30
        )
    return _clients[url]


def inflight_remember(*, request_id: str, deadline_at: datetime, ledger_fields: dict) -> bool:
    """Remember an admitted request; False when Redis is not there to do it."""
    client = _client()
    if client is None:
        return False
    try:
        pipe = client.pipeline(transaction=True)
        pipe.hset(DATA_KEY, request_id, json.dumps(ledger_fields))
        pipe.zadd(DEADLINES_KEY, {request_id: deadline_at.timestamp()})
        pipe.execute()
    except redis.RedisError as exc:
        logger.warning("redis unavailable for in-flight requests (%s): using the table", exc)
        return False
    return True


def inflight_forget(request_id: str) -> None:
    """Forget a recorded request. If Redis fails here, the sweep finds its row and drops it."""
    client = _client()
    if client is None:
        return
    try:
        pipe = client.pipeline(transaction=False)
        pipe.hdel(DATA_KEY, request_id)
        pipe.zrem(DEADLINES_KEY, request_id)
        pipe.execute()
    except redis.RedisError as exc:
        logger.warning("redis unavailable: in-flight %s left for the sweep (%s)", request_id, exc)


def inflight_overdue(*, now: datetime, limit: int = 1000) -> list[tuple[str, dict | None]]:
    """Return (request id, ledger fields) of remembered requests past their deadline."""
    client = _client()
    if client is None:
        return []
    ids = client.zrangebyscore(DEADLINES_KEY, "-inf", now.timestamp(), start=0, num=limit)
    if not ids:
        return []
    values = client.hmget(DATA_KEY, ids)
    return [
        (request_id.decode(), json.loads(value) if value is not None else None)
        for request_id, value in zip(ids, values, strict=True)
    ]
