"""Database work from async code, on a few threads of our own that keep their connections.

Django's default (`sync_to_async`, thread-sensitive) runs a request's sync code in a thread
made for that request, so each request opened a database session of its own: a fork of a
PostgreSQL backend per call, the largest CPU cost of the hot path. Here the work runs on
`DATABASE_THREADS` long-lived threads per process, each with one persistent connection, so a
worker holds that many connections whatever its concurrency. A connection that saw an error
is checked and, if the database went away, closed, so the next call reconnects.

`DATABASE_THREADS=0` keeps Django's default (tests that share the test's own connection).
"""

import asyncio
import contextvars
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection

_executor: ThreadPoolExecutor | None = None
_executor_threads = 0


def _database_executor() -> ThreadPoolExecutor | None:
    global _executor, _executor_threads
    threads = settings.DATABASE_THREADS
    if threads != _executor_threads:
        if _executor is not None:
            _executor.shutdown(wait=False)
        _executor = ThreadPoolExecutor(threads, thread_name_prefix="db") if threads else None
        _executor_threads = threads
    return _executor


def _with_connection_check(function: Callable, /, *args, **kwargs):
    try:
        return function(*args, **kwargs)
    finally:
        # Only after an error: a ping per call would cost a round trip each time.
        if connection.errors_occurred and not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


def db_threads_stop() -> None:
    """Close every database thread's connection and stop the threads (tests, shutdown)."""
    global _executor, _executor_threads
    executor, threads = _executor, _executor_threads
    _executor, _executor_threads = None, 0
    if executor is None:
        return
    # One task per thread: each waits at the barrier, so no thread takes two of them.
    barrier = threading.Barrier(threads)

    def close() -> None:
        connection.close()
        barrier.wait(timeout=10)

    wait([executor.submit(close) for _ in range(threads)], timeout=15)
    executor.shutdown()


async def db_call(function: Callable, /, *args, **kwargs):
    """Run a sync function that uses the database, from async code.

    As run_in_executor runs it, less its chaining of a concurrent future to an asyncio one
    (wrap_future, a callback and a condition per hop, twice a request): the thread sets the
    asyncio future itself. A call cancelled before its thread takes it is not run, as with
    run_in_executor; one already running finishes, its result dropped."""
    executor = _database_executor()
    if executor is None:
        return await sync_to_async(function)(*args, **kwargs)
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    context = contextvars.copy_context()
    executor.submit(_run_for, loop, future, context, function, args, kwargs)
    return await future


def _run_for(loop, future: asyncio.Future, context, function: Callable, args, kwargs) -> None:
    if future.cancelled():  # a read across threads: at worst a call that was just cancelled runs
        return
    try:
        result = context.run(_with_connection_check, function, *args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task, as run_in_executor does
        _settle(loop, future, _future_fail, exc)
    else:
        _settle(loop, future, _future_done, result)


def _settle(loop, future: asyncio.Future, settle: Callable, value) -> None:
    if loop.is_closed():  # the loop ended while the call ran: no one is waiting
        return
    try:
        loop.call_soon_threadsafe(settle, future, value)
    except RuntimeError:  # closed meanwhile
        pass


def _future_done(future: asyncio.Future, result) -> None:
    if not future.done():  # cancelled while the call ran
        future.set_result(result)


def _future_fail(future: asyncio.Future, exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
