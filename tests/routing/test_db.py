"""db_call: sync work on the database threads, awaited from async code."""

import asyncio
import contextvars
import threading

import pytest

from routing.db import db_call, db_threads_stop

_request = contextvars.ContextVar("request", default=None)


@pytest.fixture
def db_threads(settings):
    settings.DATABASE_THREADS = 1
    yield
    db_threads_stop()


def test_the_work_runs_on_a_database_thread_and_its_result_comes_back(db_threads):
    def work(a, *, b):
        return a + b, threading.current_thread().name, _request.get()

    async def main():
        _request.set("req_1")  # the caller's context comes along
        return await db_call(work, 1, b=2)

    total, thread, request = asyncio.run(main())
    assert (total, request) == (3, "req_1")
    assert thread.startswith("db")


def test_its_exception_is_raised_to_the_caller(db_threads):
    def work():
        raise LookupError("no such row")

    with pytest.raises(LookupError, match="no such row"):
        asyncio.run(db_call(work))


def test_a_call_cancelled_before_its_thread_takes_it_is_not_run(db_threads):
    release, ran = threading.Event(), []

    async def main():
        blocker = asyncio.ensure_future(db_call(release.wait, 5))  # the one thread is busy
        waiting = asyncio.ensure_future(db_call(ran.append, "ran"))
        await asyncio.sleep(0.05)
        waiting.cancel()
        release.set()
        assert await blocker is True
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await db_call(lambda: None)  # the thread has passed the cancelled call by now

    asyncio.run(main())
    assert ran == []


def test_a_call_cancelled_while_it_runs_finishes_and_its_result_is_dropped(db_threads):
    started, release, done = threading.Event(), threading.Event(), []

    def work():
        started.set()
        release.wait(5)
        done.append(True)
        return "late"

    async def main():
        call = asyncio.ensure_future(db_call(work))
        while not started.is_set():
            await asyncio.sleep(0.005)
        call.cancel()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await call
        await db_call(lambda: None)

    asyncio.run(main())
    assert done == [True]
