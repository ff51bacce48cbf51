"""The Redis layer (``chat.layers.RedisChannelLayer``) on real Redis: a group message to
a member on the same worker is handed over in the process, to one on another worker it
crosses Redis, and both keep channels_redis's promises."""

from __future__ import annotations

import asyncio
import secrets

import pytest
import redis.asyncio

from chat.layers import RedisChannelLayer
from tests.scaleout.conftest import Services

MESSAGE = {"type": "chat.messages_added", "ids": [1, 2]}


@pytest.fixture
async def workers(services: Services):
    """Two workers' layers on one Redis, under a key prefix of this test's own."""
    prefix = f"test-layer-{secrets.token_hex(4)}"
    layers = [RedisChannelLayer(hosts=[services.redis_url], prefix=prefix, capacity=2) for _ in range(2)]
    client = redis.asyncio.Redis.from_url(services.redis_url)
    try:
        yield layers, client, prefix
    finally:
        keys = [key async for key in client.scan_iter(f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
        for layer in layers:
            await layer.close_pools()


async def test_a_group_message_reaches_this_workers_members_without_crossing_redis(workers) -> None:
    (here, there), client, prefix = workers
    own = [await here.new_channel() for _ in range(2)]
    other = await there.new_channel()
    for channel in [*own, other]:
        await here.group_add("conversation-1", channel)

    await here.group_send("conversation-1", MESSAGE)

    # Nothing of it waits in Redis for this worker: only the other worker's copy does.
    assert not await client.exists(f"{prefix}{here.non_local_name(own[0])}")
    assert await client.exists(f"{prefix}{there.non_local_name(other)}")
    received = [await asyncio.wait_for(here.receive(channel), 5) for channel in own]
    assert received == [MESSAGE, MESSAGE] and received[0] is not received[1]
    assert await asyncio.wait_for(there.receive(other), 5) == MESSAGE


async def test_a_full_channel_on_this_worker_keeps_only_its_capacity(workers) -> None:
    (here, _), _, _ = workers
    channel = await here.new_channel()
    await here.group_add("user-1", channel)
    for n in range(4):
        await here.group_send("user-1", {"type": "sidebar.changed", "n": n})

    # At most ``capacity`` (2) are kept for a page that does not read: the newest, as
    # channels_redis's own receive buffer keeps them.
    assert [(await here.receive(channel))["n"] for _ in range(2)] == [2, 3]
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(here.receive(channel), 0.2)
