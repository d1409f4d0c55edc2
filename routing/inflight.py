"""In-flight requests without a budget reservation, remembered in Redis instead of a table.

Every admitted request is remembered until its ledger row is written, so that a worker lost
mid-request still leaves a row (`abandoned`, swept later). For a key without a budget nothing
else needs the row, and an INSERT plus a DELETE per request in PostgreSQL cost more than the
ledger row itself; two pipelined Redis commands do the same. Without Redis (or when it does
not answer, within its short timeout, or is being skipped after failing: see
routing/shared_cache.py) the caller keeps the table.
"""

import json
import logging
import os
import queue
import threading
from datetime import datetime

import redis

from routing.shared_cache import RedisUnavailable, outage_warning, redis_call, shared_redis

logger = logging.getLogger(__name__)

DATA_KEY = "huntaze:inflight:fields"  # request id -> the ledger row it becomes if lost
DEADLINES_KEY = "huntaze:inflight:deadlines"  # request id -> when it counts as lost
QUARANTINE_KEY = "huntaze:inflight:quarantine"  # request id -> a row the sweep cannot write


def inflight_remember(*, request_id: str, deadline_at: datetime, ledger_json: str) -> bool:
    """Remember an admitted request and the ledger row it becomes if lost (as JSON); False
    when Redis is not there to do it."""
    client = shared_redis()
    if client is None:
        return False
    try:
        pipe = client.pipeline(transaction=True)
        pipe.hset(DATA_KEY, request_id, ledger_json)
        pipe.zadd(DEADLINES_KEY, {request_id: deadline_at.timestamp()})
        redis_call(pipe.execute)
    except RedisUnavailable:
        return False  # skipped: the switch logs the outage once per period, not per request
    except redis.RedisError as exc:
        logger.warning("redis unavailable for in-flight requests (%s): using the table", exc)
        return False
    return True


def inflight_forget(*request_ids: str) -> None:
    """Forget recorded requests. If Redis fails here, the sweep finds their rows and drops them."""
    client = shared_redis()
    if client is None or not request_ids:
        return
    try:
        pipe = client.pipeline(transaction=False)
        pipe.hdel(DATA_KEY, *request_ids)
        pipe.zrem(DEADLINES_KEY, *request_ids)
        redis_call(pipe.execute)
    except redis.RedisError as exc:
        message = "redis unavailable: %d in-flight left for the sweep (%s)"
        outage_warning(logger, exc, message, len(request_ids), exc)


# How long the forgetting thread lets ids gather once one arrives: one wake-up and one Redis
# round trip for all of them, where each request woke the thread and paid a pipeline of its own
# (a forget that waits this long costs nothing: only the sweep, minutes later, looks).
FORGET_GATHER_S = 0.2
FORGET_BATCH = 500  # ids per pipeline


class _Forgetter:
    """Forgets recorded requests on a thread of its own, many per pipeline, so the request
    that wrote its ledger row does not wait for Redis a second time. A forget lost with the
    process is harmless: the sweep finds the row already written and drops the record."""

    def __init__(self) -> None:
        self.pending: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.owner_pid: int | None = None  # a forked child starts a thread of its own
        # Ids submitted and not yet forgotten (or given up on), for settled(); the gathering
        # wait ends early when someone waits for them.
        self.unsettled = 0
        self.changed = threading.Condition(threading.Lock())
        self.hurry = threading.Event()

    def submit(self, request_id: str) -> None:
        if self.owner_pid != os.getpid():
            with self.lock:
                if self.owner_pid != os.getpid():
                    self.pending = queue.SimpleQueue()
                    self.unsettled = 0  # a parent's ids are the parent's
                    threading.Thread(
                        target=self._run, args=(self.pending,), name="inflight-forget", daemon=True
                    ).start()
                    self.owner_pid = os.getpid()
        with self.changed:  # an uncontended lock: no system call
            self.unsettled += 1
        # No system call while the thread gathers: it is not waiting on the queue then.
        self.pending.put(request_id)

    def settled(self, timeout_s: float) -> bool:
        """Wait until every submitted id is forgotten (or given up on); False past timeout."""
        self.hurry.set()
        with self.changed:
            return self.changed.wait_for(lambda: self.unsettled <= 0, timeout_s)

    def _run(self, pending: queue.SimpleQueue) -> None:
        while True:
            request_ids = [pending.get()]  # idle: blocks, no wake-ups
            self.hurry.wait(FORGET_GATHER_S)
            self.hurry.clear()
            while True:
                try:
                    request_ids.append(pending.get_nowait())
                except queue.Empty:
                    break
            for start in range(0, len(request_ids), FORGET_BATCH):
                batch = request_ids[start : start + FORGET_BATCH]
                try:
                    inflight_forget(*batch)
                except Exception:  # the thread must outlive any one batch; the sweep has them
                    logger.exception("in-flight forget failed for %d requests", len(batch))
            with self.changed:
                self.unsettled -= len(request_ids)
                self.changed.notify_all()


_forgetter = _Forgetter()


def inflight_forget_soon(request_id: str) -> None:
    """Forget a recorded request off the caller's path (see _Forgetter)."""
    if shared_redis() is not None:
        _forgetter.submit(request_id)


def inflight_forgetting_settled(timeout_s: float = 10) -> bool:
    """Wait until the requests given to inflight_forget_soon are forgotten (tests, drills:
    a sweep right after traffic, or a test counting Redis calls); False past the timeout."""
    return _forgetter.settled(timeout_s)


def inflight_overdue(*, now: datetime, limit: int = 1000) -> list[tuple[str, str | None]]:
    """Return (request id, its ledger row as JSON) of remembered requests past their
    deadline; parsing is the sweep's, so one bad value cannot stop it."""
    client = shared_redis()
    if client is None:
        return []
    ids = redis_call(
        client.zrangebyscore, DEADLINES_KEY, "-inf", now.timestamp(), start=0, num=limit
    )
    if not ids:
        return []
    values = redis_call(client.hmget, DATA_KEY, ids)
    return [
        (request_id.decode(), value.decode() if value is not None else None)
        for request_id, value in zip(ids, values, strict=True)
    ]


def inflight_final_row(request_id: str) -> str | None:
    """The final ledger row (JSON) left in Redis for a request whose in-flight record is in
    the table: written after the answer while the database was down. None without one."""
    client = shared_redis()
    if client is None:
        return None
    try:
        value = redis_call(client.hget, DATA_KEY, request_id)
    except redis.RedisError:
        return None
    return value.decode() if value is not None else None


def inflight_quarantine(request_id: str, *, reason: str) -> None:
    """Set aside a remembered request whose row the sweep cannot write, so it stops being
    retried (and stops the sweep from reaching the others): kept in QUARANTINE_KEY."""
    client = shared_redis()
    if client is None:
        return
    value = redis_call(client.hget, DATA_KEY, request_id)
    pipe = client.pipeline(transaction=True)
    pipe.hset(
        QUARANTINE_KEY,
        request_id,
        json.dumps({"reason": reason, "row": (value or b"").decode(errors="replace")}),
    )
    pipe.hdel(DATA_KEY, request_id)
    pipe.zrem(DEADLINES_KEY, request_id)
    redis_call(pipe.execute)


def inflight_quarantined_count() -> int:
    """How many remembered requests the sweep set aside (0 without Redis or when it is down)."""
    client = shared_redis()
    if client is None:
        return 0
    try:
        return redis_call(client.hlen, QUARANTINE_KEY)
    except redis.RedisError:
        return 0
