"""The one-process channel layer keeps Channels' promises with its cheaper sweep."""

from __future__ import annotations

import asyncio

import pytest

from chat.layers import SweptInMemoryChannelLayer


async def test_a_group_message_reaches_every_member_and_a_full_one_is_skipped() -> None:
    layer = SweptInMemoryChannelLayer(capacity=1)
    members = [await layer.new_channel() for _ in range(3)]
    for channel in members:
        await layer.group_add("conversation-1", channel)
    await layer.send(members[1], {"type": "first"})  # now full

    await layer.group_send("conversation-1", {"type": "reply.delta", "text": "hi"})

    assert await layer.receive(members[0]) == {"type": "reply.delta", "text": "hi"}
    assert await layer.receive(members[1]) == {"type": "first"}
    assert await layer.receive(members[2]) == {"type": "reply.delta", "text": "hi"}
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(layer.receive(members[1]), 0.05)


async def test_a_message_past_its_expiry_is_dropped_and_its_channel_leaves_its_groups() -> None:
    layer = SweptInMemoryChannelLayer(expiry=0.05)
    channel = await layer.new_channel()
    await layer.group_add("conversation-1", channel)
    await layer.send(channel, {"type": "old"})
    await asyncio.sleep(0.1)

    await layer.group_send("conversation-2", {"type": "sweeps"})

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(layer.receive(channel), 0.05)
    await layer.group_send("conversation-1", {"type": "new"})
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(layer.receive(channel), 0.05)
