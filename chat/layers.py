"""The one-process channel layer: Channels' in-memory layer, with its sweep made cheap.

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
