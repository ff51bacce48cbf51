"""The worker's database thread (``chat.database``): each trip's wait for it and its time
on it, per kind of trip, for ``/metrics``."""

from __future__ import annotations

import asyncio
import threading

import pytest
from prometheus_client import REGISTRY

from chat.database import database_sync_to_async

# Each trip opens and closes the thread's connection, as channels' does.
pytestmark = pytest.mark.django_db(transaction=True)


def seconds(metric: str, trip: str, suffix: str = "sum") -> float:
    return REGISTRY.get_sample_value(f"{metric}_{suffix}", {"trip": trip}) or 0.0


async def test_a_trip_behind_another_waits_for_the_thread_and_both_are_timed() -> None:
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        entered.set()
        release.wait(10)

    def quick() -> int:
        return 42

    held, waited = hold.__qualname__, quick.__qualname__
    before = {
        "waited": seconds("chat_database_wait_seconds", waited),
        "held": seconds("chat_database_trip_seconds", held),
        "trips": seconds("chat_database_trip_seconds", waited, "count"),
    }
    holding = asyncio.create_task(database_sync_to_async(hold)())
    assert await asyncio.to_thread(entered.wait, 10)
    queued = asyncio.create_task(database_sync_to_async(quick)())
    await asyncio.sleep(0.1)  # the thread stays held this long, with the second trip queued
    release.set()
    assert await queued == 42
    await holding

    # One thread: the second trip started only once the first let it go.
    assert seconds("chat_database_wait_seconds", waited) - before["waited"] >= 0.1
    assert seconds("chat_database_trip_seconds", held) - before["held"] >= 0.1
    assert seconds("chat_database_trip_seconds", waited, "count") == before["trips"] + 1


async def test_a_trip_keeps_its_functions_name_and_raises_what_it_raises() -> None:
    def fails() -> None:
        raise LookupError("gone")

    trip = database_sync_to_async(fails)
    assert trip.__name__ == "fails"
    count = seconds("chat_database_trip_seconds", fails.__qualname__, "count")
    with pytest.raises(LookupError, match=r"^gone$"):
        await trip()
    assert seconds("chat_database_trip_seconds", fails.__qualname__, "count") == count + 1
