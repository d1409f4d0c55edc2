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
import functools
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
    """Run a sync function that uses the database, from async code."""
    executor = _database_executor()
    if executor is None:
        return await sync_to_async(function)(*args, **kwargs)
    context = contextvars.copy_context()
    call = functools.partial(context.run, _with_connection_check, function, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(executor, call)
