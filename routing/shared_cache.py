"""The cache and Redis the router uses: one of each per process, shared by threads and requests.

Django's `cache` proxy keeps a backend per thread and per async context. Every request (and
every call on a database thread) got a Redis backend of its own, with a connection pool of
its own, so a new Redis connection per request: about 1 ms of CPU (redis-py reads its package
metadata for each connection) and one more connection accepted by Redis. Its async methods
also ran in a thread started for the request. Redis's and the local-memory backend are
thread-safe, and one redis-py pool serves every thread, so one backend per process does.
From async code, call its (blocking) methods through `db_call`: a hop to a thread that lives.
"""

import threading

import redis
from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS, BaseCache, caches
from django.core.signals import setting_changed
from django.dispatch import receiver

_backend: BaseCache | None = None
_backend_lock = threading.Lock()
_redis_clients: dict[str, redis.Redis] = {}


def shared_cache() -> BaseCache:
    """Return this process's cache backend (settings.CACHES["default"])."""
    global _backend
    if _backend is None:
        with _backend_lock:
            if _backend is None:
                _backend = caches.create_connection(DEFAULT_CACHE_ALIAS)
    return _backend


def shared_redis() -> redis.Redis | None:
    """Return this process's client of settings.REDIS_URL, or None without Redis."""
    url = settings.REDIS_URL
    if not url:
        return None
    if url not in _redis_clients:
        # Short timeouts: a Redis in trouble is skipped (or its table used), not waited for.
        _redis_clients[url] = redis.Redis.from_url(
            url, socket_timeout=0.5, socket_connect_timeout=0.5, health_check_interval=30
        )
    return _redis_clients[url]


def window_count(key: str, *, expires_s: int) -> int:
    """Add one to the counter `key`, which expires `expires_s` after its first count, and
    return the count. With Redis one round trip; otherwise the cache's add and incr."""
    client = shared_redis()
    if client is None:
        cache = shared_cache()
        cache.add(key, 0, timeout=expires_s)
        return cache.incr(key)
    pipe = client.pipeline(transaction=False)
    pipe.set(f"huntaze:{key}", 0, ex=expires_s, nx=True)
    pipe.incr(f"huntaze:{key}")
    return pipe.execute()[1]


@receiver(setting_changed)
def _forget_on_caches_change(*, setting: str, **kwargs) -> None:
    global _backend
    if setting == "CACHES":
        with _backend_lock:
            _backend = None
