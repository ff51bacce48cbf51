"""The channel layers: Channels' in-memory one with its sweep made cheap, for one process;
channels_redis's with group messages to this worker's own pages delivered here, for several.

``InMemoryChannelLayer`` walks every channel and every group membership for expired
messages on each ``receive`` and ``group_send``. With N open sockets that is O(N) work
per frame and O(N²) a second (the top function of the relay's profile at 200 sockets);
here the walk runs at most once a second, which is far finer than the layer's expiry
(60 s). ``group_send`` puts each message straight onto the members' queues instead of
starting a task per member: ``send`` never waits, it raises ``ChannelFull`` or returns.
Delivery stays what Channels promises: at most once, dropped when a channel is full.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import channels_redis.core
from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer

SWEEP_INTERVAL = 1.0


class SweptInMemoryChannelLayer(InMemoryChannelLayer):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._swept_at = 0.0

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._swept_at >= SWEEP_INTERVAL:
            self._swept_at = now
            super()._clean_expired()

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        for channel in list(self.groups.get(group, ())):
            with contextlib.suppress(ChannelFull):
                await self.send(channel, message)


class RedisChannelLayer(channels_redis.core.RedisChannelLayer):
    """channels_redis's layer, with a group's members on this worker handed their message
    here: a reply's page is almost always on the worker that runs the reply, and each
    group message to it would otherwise cross Redis twice (sorted sets and a Lua script
    out, a blocking pop back in: some 64 Redis commands a reply, a quarter of a busy
    worker's samples, in docs/benchmark.md). Members on other workers get it through
    Redis as before.

    Local delivery keeps what the layer promises: at most once, each member its own copy
    of the message as Redis would have carried it, and a full channel drops (its buffer
    is the layer's own, bounded by ``capacity``)."""

    def _map_channel_keys_to_connection(self, channel_names, message):
        # The one step of ``group_send`` between reading a group's members and writing
        # to their channels' keys: the members of this process never reach the write.
        here = f"specific.{self.client_prefix}!"
        elsewhere = []
        for channel in channel_names:
            if channel.startswith(here):
                self.receive_buffer[channel].put_nowait(self.deserialize(self.serialize(message)))
            else:
                elsewhere.append(channel)
        return super()._map_channel_keys_to_connection(elsewhere, message)
