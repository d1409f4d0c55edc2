"""Database work from async code: one thread hop, and the connection given back after it.

With PostgreSQL's pool (settings DATABASE_POOL), a request's connection goes back to the pool
at the end of each hop, so no connection is held while the request waits on the upstream:
a few pooled connections serve many concurrent requests. Without a pool, nothing changes.
"""

from collections.abc import Callable

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection


def _pooled() -> bool:
    return bool(settings.DATABASES["default"].get("OPTIONS", {}).get("pool"))


def _releasing(function: Callable) -> Callable:
    def run(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        finally:
            if _pooled() and not connection.in_atomic_block:
                connection.close()

    return run


async def db_call(function: Callable, /, *args, **kwargs):
    """Run a sync function that uses the database, from async code."""
    return await sync_to_async(_releasing(function))(*args, **kwargs)
