"""Work that can wait until the client has its answer (a completion's ledger row), and work
that must go on when the client leaves before it (`outlive_the_client`).

A completion's row is computed before the answer leaves (cost, tokens, latency are in the
response), but its INSERT is not something the client should wait for: about a millisecond
of every request's added latency. The hot-path handler (huntaze.asgi) opens a job list for
each request, sends the response, then runs the jobs, whether the client stayed or not. The
request's in-flight record (Redis or table) stays until the row is written, so a worker lost
in between still leaves a row, as a worker lost during the upstream call always did; a
graceful stop waits for the jobs, as it waits for any running request.

Elsewhere (Django's own handler, the test client, commands) no list is open, `defer` says
so, and the caller does the work at once.
"""

import asyncio
import contextvars
import logging
import threading
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TypeVar

logger = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]
T = TypeVar("T")

_pending = 0  # jobs deferred and not finished, in this process (tests wait on it)
_pending_lock = threading.Lock()
_running: set[asyncio.Task] = set()  # strong references: the loop keeps only weak ones


def _count(delta: int) -> None:
    global _pending
    with _pending_lock:
        _pending += delta


class Jobs:
    """One request's deferred jobs. Closed once run: a job offered later (a stream generator
    finalised after its request ended) is refused, so its caller does the work itself."""

    __slots__ = ("items", "closed")

    def __init__(self) -> None:
        self.items: list[Job] = []
        self.closed = False


_jobs: ContextVar[Jobs | None] = ContextVar("after_response_jobs", default=None)


def open_jobs() -> Jobs:
    """Start collecting deferred jobs in the current context (one request's task)."""
    jobs = Jobs()
    _jobs.set(jobs)
    return jobs


def defer(job: Job) -> bool:
    """Run `job` after the response is sent; False when no handler will (do it now)."""
    jobs = _jobs.get()
    if jobs is None or jobs.closed:
        return False
    _count(1)
    jobs.items.append(job)
    return True


async def _run(jobs: Jobs) -> None:
    while jobs.items:
        job = jobs.items.pop(0)
        try:
            await job()
        except Exception:
            logger.exception("after-response job failed")
        finally:
            _count(-1)
    jobs.closed = True  # no await since the last check: nothing slipped in


async def run_jobs(jobs: Jobs) -> None:
    """Run the collected jobs in order, then close the list. A cancelled caller (a shutdown
    that will not wait) does not cancel them: they finish on their own task."""
    if not jobs.items:
        jobs.closed = True
        return
    task = asyncio.ensure_future(_run(jobs))
    _running.add(task)
    task.add_done_callback(_running.discard)
    await asyncio.shield(task)


def pending() -> int:
    """Deferred jobs not yet finished in this process."""
    return _pending


# The "client went away" flag of the outermost work that outlives its client, for nested ones.
_client_gone: ContextVar[asyncio.Event | None] = ContextVar("client_gone", default=None)


async def outlive_the_client(run: Callable[[asyncio.Event], Awaitable[T]]) -> T:
    """Run `run(client_gone)` in a task of its own that a client going away does not cancel.

    An upstream call, once started, is billed whether or not anyone reads its answer, and an
    admitted request holds a budget reservation (and an Idempotency-Key claim): cut short,
    it would leave neither a row nor a released reservation until the sweep, minutes later,
    at $0, and a retry would pay again. So the work goes on to its end (bounded by the
    category's deadline) with `client_gone` set for its row, and the cancellation is passed
    on only then. Nested calls share the outermost one's task and flag."""
    outer = _client_gone.get()
    if outer is not None:
        return await run(outer)
    client_gone = asyncio.Event()
    context = contextvars.copy_context()  # the request's deferred-job list comes along
    context.run(_client_gone.set, client_gone)
    task = asyncio.get_running_loop().create_task(run(client_gone), context=context)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        client_gone.set()
        while not task.done():
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                continue  # cancelled again: still not a reason to drop the row
            except Exception:  # noqa: BLE001,S112 - its failure was recorded; the client is gone
                break
        raise
