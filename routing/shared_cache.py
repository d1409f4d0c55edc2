"""The cache and Redis the router uses: one of each per process, shared by threads and requests.

Django's `cache` proxy keeps a backend per thread and per async context. Every request (and
every call on a database thread) got a Redis backend of its own, with a connection pool of
its own, so a new Redis connection per request: about 1 ms of CPU (redis-py reads its package
metadata for each connection) and one more connection accepted by Redis. Its async methods
also ran in a thread started for the request. Redis's and the local-memory backend are
thread-safe, and one redis-py pool serves every thread, so one backend per process does.
From async code, call its (blocking) methods through `db_call`: a hop to a thread that lives.

Every Redis call goes through one switch per process (`redis_call`). A Redis that is paused
or overloaded accepts connections and never answers: each call would wait its whole socket
timeout, on a database thread, and a request makes several (rate limit, response cache,
breaker, in-flight record). After one timeout or connection error the switch makes every
Redis call fail at once (RedisUnavailable, a redis ConnectionError, which the callers already
treat as Redis down: they fail open) for REDIS_BACKOFF_S; then one call tries Redis again
while the others still skip, and its answer turns the switch off. So an outage costs a
request at most one timeout, usually none, and Redis is used again within REDIS_BACKOFF_S
of coming back.
"""

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import redis
from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS, BaseCache, caches
from django.core.cache.backends.redis import RedisCache
from django.core.signals import setting_changed
from django.dispatch import receiver
from prometheus_client import Counter

logger = logging.getLogger(__name__)

REDIS_FAILURES = Counter(
    "huntaze_redis_failures",
    "Redis calls that timed out or could not connect; each makes the worker skip Redis for "
    "REDIS_BACKOFF_S.",
)
REDIS_SKIPPED = Counter(
    "huntaze_redis_skipped",
    "Redis calls not made because Redis failed within the last REDIS_BACKOFF_S: caches, "
    "breaker and rate limit went without it (failed open).",
)

_backend: BaseCache | None = None
_backend_lock = threading.Lock()
_redis_clients: dict[str, redis.Redis] = {}

T = TypeVar("T")

# The switch's clock, read at each call: a test replaces it to move time by a number instead
# of sleeping out REDIS_BACKOFF_S.
monotonic: Callable[[], float] = time.monotonic


class RedisUnavailable(redis.ConnectionError):
    """A Redis call not made: Redis failed within the last REDIS_BACKOFF_S."""


def outage_warning(log: logging.Logger, error: Exception, message: str, *args) -> None:
    """Log a cache or Redis failure a caller fails open on, unless the call was only skipped
    (the switch logs an outage once per period, not once per request)."""
    if not isinstance(error, RedisUnavailable):
        log.warning(message, *args)


class _RedisSwitch:
    """Process-local "Redis is unwell, skip it" switch (see the module's docstring)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.skip_until = 0.0  # monotonic; 0 while Redis answers
        self.down_since = 0.0
        self.skipped = 0
        self.warned_at = float("-inf")

    def allows(self) -> bool:
        """True when this call may use Redis; while skipping, True for one call per backoff
        period (the trial), whose failure or success decides what follows."""
        if not self.skip_until:
            return True
        now = monotonic()
        if now < self.skip_until:
            return False
        with self.lock:
            if not self.skip_until:
                return True  # a trial has just succeeded
            if now < self.skip_until:
                return False  # another call is the trial
            self.skip_until = now + settings.REDIS_BACKOFF_S
            return True

    def skip(self) -> None:
        self.skipped += 1
        REDIS_SKIPPED.inc()

    def failed(self, error: Exception) -> None:
        now = monotonic()
        backoff_s = settings.REDIS_BACKOFF_S
        with self.lock:
            self.skip_until = now + backoff_s
            self.down_since = self.down_since or now
            warn = now - self.warned_at >= backoff_s  # a line per period, not per request
            if warn:
                self.warned_at = now
        REDIS_FAILURES.inc()
        if warn:
            logger.warning(
                "redis unavailable for %.1f s (%s: %s): Redis calls skipped for %.1f s, then "
                "one tries again; %d skipped so far",
                now - self.down_since,
                type(error).__name__,
                error,
                backoff_s,
                self.skipped,
            )

    def succeeded(self) -> None:
        if not self.skip_until:
            return
        with self.lock:
            if not self.skip_until:
                return
            down_s, skipped = monotonic() - self.down_since, self.skipped
            self.skip_until = self.down_since = 0.0
            self.skipped = 0
            self.warned_at = float("-inf")
        logger.warning("redis answers again after %.1f s; %d calls skipped", down_s, skipped)

    def reset(self) -> None:
        with self.lock:
            self.skip_until = self.down_since = 0.0
            self.skipped = 0
            self.warned_at = float("-inf")


_switch = _RedisSwitch()


def redis_call(function: Callable[..., T], /, *args, **kwargs) -> T:
    """Return function(*args, **kwargs), one Redis round trip (a command, a pipeline's
    execute or a cache operation), unless Redis is being skipped: then RedisUnavailable at
    once. A timeout or connection error makes the process skip Redis for REDIS_BACKOFF_S."""
    if not _switch.allows():
        _switch.skip()
        raise RedisUnavailable("Redis skipped: it failed within the last REDIS_BACKOFF_S")
    failed = False
    try:
        return function(*args, **kwargs)
    except (redis.ConnectionError, redis.TimeoutError) as error:
        failed = True
        _switch.failed(error)
        raise
    finally:
        if not failed:
            _switch.succeeded()  # Redis answered, if only with an error reply


def redis_switch_reset() -> None:
    """Use Redis again at the next call, whatever failed before (tests)."""
    _switch.reset()


class _SwitchedCache:
    """A Redis cache backend whose operations each go through `redis_call`; anything else
    (key_func, make_key, default_timeout...) is the backend's own."""

    OPERATIONS = frozenset(
        {"add", "get", "set", "touch", "delete", "get_many", "has_key", "incr", "decr"}
        | {"set_many", "delete_many", "clear", "get_or_set"}
    )

    def __init__(self, backend: BaseCache) -> None:
        self._backend = backend

    def __getattr__(self, name: str):
        attribute = getattr(self._backend, name)
        if name in self.OPERATIONS:
            return functools.partial(redis_call, attribute)
        return attribute


def shared_cache() -> BaseCache:
    """Return this process's cache backend (settings.CACHES["default"]); a Redis one behind
    the process's Redis switch."""
    global _backend
    if _backend is None:
        with _backend_lock:
            if _backend is None:
                backend = caches.create_connection(DEFAULT_CACHE_ALIAS)
                if isinstance(backend, RedisCache):
                    backend = _SwitchedCache(backend)
                _backend = backend
    return _backend


def shared_redis() -> redis.Redis | None:
    """Return this process's client of settings.REDIS_URL, or None without Redis. Call it
    through `redis_call`."""
    url = settings.REDIS_URL
    if not url:
        return None
    if url not in _redis_clients:
        # Short timeouts: a Redis in trouble is skipped (or its table used), not waited for.
        _redis_clients[url] = redis.Redis.from_url(
            url,
            socket_timeout=settings.REDIS_SOCKET_TIMEOUT_S,
            socket_connect_timeout=settings.REDIS_CONNECT_TIMEOUT_S,
            health_check_interval=30,
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
    return redis_call(pipe.execute)[1]


@receiver(setting_changed)
def _forget_on_caches_change(*, setting: str, **kwargs) -> None:
    global _backend
    if setting == "CACHES":
        with _backend_lock:
            _backend = None
    if setting in ("REDIS_SOCKET_TIMEOUT_S", "REDIS_CONNECT_TIMEOUT_S"):
        _redis_clients.clear()
