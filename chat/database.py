"""The worker's database thread, and every trip to it timed.

Django's ORM is synchronous, so a worker runs its database work beside the event loop,
through channels' ``database_sync_to_async``: thread-sensitive, so on one thread with one
connection per worker, one trip at a time. A trip waits for that thread behind the trips
before it, then holds it for its statements and for the GIL between them (each
statement gives the GIL up while the database works, and a busy event loop gives it
back only at the interpreter's switch interval). ``database_sync_to_async`` here is
channels' with both times measured, per kind of trip (the function's name), for
``/metrics``: ``chat_database_wait_seconds`` and ``chat_database_trip_seconds``. The
rate of the second's sum is the share of each second the thread was busy; a worker
whose thread is busy most of each second is limited by it, not by its event loop.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from channels.db import DatabaseSyncToAsync

from chat import metrics

P = ParamSpec("P")
R = TypeVar("R")


def database_sync_to_async(func: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """``func`` run on the worker's database thread, as channels runs it, timed."""
    trip = getattr(func, "__qualname__", type(func).__name__)

    @functools.wraps(func)
    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        queued = time.perf_counter()

        def timed() -> R:
            started = time.perf_counter()
            metrics.DATABASE_WAIT.labels(trip).observe(started - queued)
            try:
                return func(*args, **kwargs)
            finally:
                metrics.DATABASE_TRIP.labels(trip).observe(time.perf_counter() - started)

        return await DatabaseSyncToAsync(timed)()

    return run
