"""Circuit breaker per model, shared by all workers through Django's cache (Redis in prod).

After CIRCUIT_FAILURE_THRESHOLD failures within CIRCUIT_WINDOW_S a model is open (out of
rotation) for CIRCUIT_COOLDOWN_S; then one request at a time may probe it, and a success
closes it. Cache outages fail open: the breaker is an optimisation, never a reason to refuse.

Every function takes the wall clock as `now` (seconds since the epoch), so a test moves time
by passing a later number, and all workers compare the same kind of clock.
"""

import logging

from django.conf import settings

from routing.db import db_call
from routing.shared_cache import outage_warning, shared_cache

logger = logging.getLogger(__name__)


def _keys(model: str) -> tuple[str, str, str]:
    return f"circuit:{model}:failures", f"circuit:{model}:open-until", f"circuit:{model}:probe"


CLOSED, OPEN, PROBE = "closed", "open", "probe"
LOCAL_CHECK_S = 1.0  # how long a worker trusts its last look at a closed circuit

_last_closed: dict[str, float] = {}


async def circuit_allows(model: str, *, now: float) -> str:
    """Return CLOSED (go), PROBE (go: the one trial after a cooldown) or OPEN (skip)."""
    # A clock stepped back is no reason to trust an old look for longer.
    if 0 <= now - _last_closed.get(model, -LOCAL_CHECK_S) < LOCAL_CHECK_S:
        return CLOSED
    try:
        state = await db_call(_circuit_look, model, now=now)
    except Exception as exc:  # noqa: BLE001 - fails open, as documented
        outage_warning(
            logger, exc, "cache unavailable: circuit breaker for %s not consulted", model
        )
        return CLOSED
    if state == CLOSED:
        _last_closed[model] = now
    return state


def _circuit_look(model: str, *, now: float) -> str:
    _, open_key, probe_key = _keys(model)
    cache = shared_cache()
    open_until = cache.get(open_key)
    if open_until is None:
        return CLOSED
    if now < open_until:
        return OPEN
    # Cooled down: half-open, one probe per cooldown slot across all workers.
    got_probe = cache.add(probe_key, 1, timeout=settings.CIRCUIT_COOLDOWN_S)
    return PROBE if got_probe else OPEN


async def circuit_record(model: str, *, ok: bool, now: float, state: str = CLOSED) -> None:
    """Count a failure (opening the circuit at the threshold), or close it after a probe."""
    if ok and state != PROBE:
        return
    if not ok:
        _last_closed.pop(model, None)
    try:
        await db_call(_circuit_count, model, ok=ok, now=now)
    except Exception as exc:  # noqa: BLE001 - fails open, as documented
        outage_warning(logger, exc, "cache unavailable: circuit breaker for %s not updated", model)


def _circuit_count(model: str, *, ok: bool, now: float) -> None:
    failures_key, open_key, probe_key = _keys(model)
    cache = shared_cache()
    if ok:  # the probe succeeded
        cache.delete_many([failures_key, open_key, probe_key])
        return
    cache.add(failures_key, 0, timeout=settings.CIRCUIT_WINDOW_S)
    try:
        failures = cache.incr(failures_key)
    except ValueError:  # the window expired between add and incr: a new window
        cache.set(failures_key, 1, timeout=settings.CIRCUIT_WINDOW_S)
        failures = 1
    if failures >= settings.CIRCUIT_FAILURE_THRESHOLD:
        cooldown = settings.CIRCUIT_COOLDOWN_S
        cache.set(open_key, now + cooldown, timeout=cooldown * 10)
        cache.delete(probe_key)
        logger.warning("circuit open for %s after %s failures", model, failures)


def circuit_reset_local() -> None:
    """Forget this worker's view of the circuits (tests)."""
    _last_closed.clear()


def circuit_states(models: list[str], *, now: float) -> dict[str, str]:
    """Return "closed", "open" or "half-open" per model, for admin and metrics."""
    states = {}
    for model in models:
        try:
            open_until = shared_cache().get(_keys(model)[1])
        except Exception:
            states[model] = "unknown"
            continue
        if open_until is None:
            states[model] = "closed"
        else:
            states[model] = "open" if now < open_until else "half-open"
    return states
