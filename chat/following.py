"""What a page has of each reply it shows, and the repair of what the layer dropped.

Frames of a reply carry offsets. ``ReplyFollower``, mixed into the websocket consumer,
tracks how much of each streaming reply its page has, so a frame the channel layer
dropped (or a page loaded mid-reply) is repaired with a snapshot from the worker that
owns the reply, never with a gap or a repeat. A followed reply that goes quiet is looked
up in the database, in case its final frame was dropped, and a page that never got the
frame showing a reply it started is redrawn. The final frame is the persisted message,
so it has the last word.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from channels.db import database_sync_to_async
from channels.exceptions import ChannelFull

from chat import rendering, threads
from chat.models import Message

logger = logging.getLogger(__name__)

# A snapshot not back by then was dropped (at-most-once delivery): the next frame asks again.
SNAPSHOT_PATIENCE = 2.0
# A followed reply silent for this long is looked up: its final frame may have been dropped.
QUIET_AFTER = 5.0


def get_messages(ids: list[int]) -> list[Message]:
    return threads.with_versions(list(Message.objects.filter(pk__in=ids)))


class ReplyFollower:
    """The consumer's side of following replies; it needs ``send``, ``channel_layer``,
    ``channel_name`` and ``conversation_id`` from the consumer."""

    conversation_id: int

    def start_following(self) -> None:
        # How many characters of each streaming reply this page has; None while a
        # snapshot is on its way.
        self.offsets: dict[int, int | None] = {}
        self.workers: dict[int, str] = {}
        self.snapshot_asked: dict[int, float] = {}
        self.heard: dict[int, float] = {}
        self.redrawn: set[int] = set()
        # Replies this page asked for, until their "added" frame or a redraw shows them,
        # and the messages it shows: a frame from before a redraw must not add them twice.
        self.unseen: dict[int, float] = {}
        self.drawn: set[int] = set()
        self.watchdog = asyncio.create_task(self._look_up_quiet_replies())

    def stop_following(self) -> None:
        self.watchdog.cancel()

    def expect(self, reply: Message) -> None:
        """A reply this page started: it is shown by a frame through the channel layer,
        which may drop it, and then the page is redrawn (see ``_look_up_quiet_replies``)."""
        if reply.pk not in self.drawn:  # its frame may have come before this
            self.unseen[reply.pk] = time.monotonic()
        self.workers[reply.pk] = reply.worker_channel

    async def _resync(self, reply: Message) -> None:
        self._hold_deltas(reply)
        try:
            await self.channel_layer.send(
                reply.worker_channel,
                {"type": "reply.snapshot", "id": reply.pk, "reply_to": self.channel_name},
            )
        except ChannelFull:
            # Lost like a dropped frame: the first frame after SNAPSHOT_PATIENCE asks again.
            logger.warning("the channel of reply %s is full; its snapshot is asked for later", reply.pk)

    def _hold_deltas(self, reply: Message) -> None:
        """No delta of ``reply`` is applied until a snapshot of it, asked for now."""
        self.offsets[reply.pk] = None
        self.workers[reply.pk] = reply.worker_channel
        self.snapshot_asked[reply.pk] = time.monotonic()

    async def _look_up_quiet_replies(self) -> None:
        """End on the page each followed reply whose final frame the channel layer dropped,
        and redraw a page that never got the frame showing a reply it started."""
        while True:
            await asyncio.sleep(QUIET_AFTER)
            now = time.monotonic()
            try:
                if any(now - asked >= QUIET_AFTER for asked in self.unseen.values()):
                    await self.chat_thread_changed({})
                quiet = [i for i in self.offsets if now - self.heard.setdefault(i, now) >= QUIET_AFTER]
                for message in await database_sync_to_async(get_messages)(quiet) if quiet else []:
                    self.heard[message.pk] = now
                    if not message.is_active:
                        await self.reply_final({"id": message.pk})
            except Exception:
                logger.exception("looking up quiet replies failed")

    # Group events

    async def chat_messages_added(self, event: dict[str, Any]) -> None:
        if not (ids := [i for i in event["ids"] if i not in self.drawn]):
            return
        messages = await database_sync_to_async(get_messages)(ids)
        # Asked again: a redraw by the watchdog may have drawn them while this waited.
        if not (messages := [m for m in messages if m.pk not in self.drawn]):
            return
        for message in messages:
            self.drawn.add(message.pk)
            self.unseen.pop(message.pk, None)
        html = rendering.messages_appended(messages)
        for message in messages:
            if message.is_active:
                self.offsets[message.pk] = 0
                self.workers[message.pk] = message.worker_channel
                html += rendering.announce_html(rendering.announcement(message))
        await self.send(html)

    async def chat_thread_changed(self, event: dict[str, Any]) -> None:
        path = await database_sync_to_async(threads.visible_path)(self.conversation_id)
        self.unseen.clear()
        self.drawn.update(m.pk for m in path)
        active = [m for m in path if m.is_active]
        # The drawn text is the database's, which may lag or lead what this page was sent:
        # from here no delta is applied to it until a snapshot brings it level. Held
        # before anything is awaited, as this may run beside the frames (the watchdog).
        for message in active:
            self._hold_deltas(message)
        await self.send(rendering.thread_html(path))
        for message in active:
            await self.send(rendering.announce_html(rendering.announcement(message)))
            await self._resync(message)

    async def reply_delta(self, event: dict[str, Any]) -> None:
        reply_id, offset, text = event["id"], event["offset"], event["text"]
        self.heard[reply_id] = time.monotonic()
        have = self.offsets.get(reply_id, -1)
        if have is None:
            if time.monotonic() - self.snapshot_asked[reply_id] < SNAPSHOT_PATIENCE:
                return  # the snapshot on its way includes this text
            have = -1
        if have == -1 or offset > have:
            replies = await database_sync_to_async(get_messages)([reply_id])
            if replies and replies[0].is_active:
                if have == -1 and reply_id not in self.redrawn:
                    # A reply this page never heard of: its "added" frame was dropped.
                    self.redrawn.add(reply_id)
                    await self.chat_thread_changed({})
                else:
                    await self._resync(replies[0])
            return
        fresh = text[have - offset :]
        if fresh:
            self.offsets[reply_id] = offset + len(text)
            await self.send(rendering.delta_html(reply_id, fresh))

    async def reply_snapshot(self, event: dict[str, Any]) -> None:
        self.heard[event["id"]] = time.monotonic()
        have = self.offsets.get(event["id"], -1)
        # A late answer to an earlier request may hold less than the page has.
        if have is None or (have != -1 and len(event["text"]) >= have):
            self.offsets[event["id"]] = len(event["text"])
            await self.send(rendering.body_html(event["id"], event["text"]))

    async def reply_note(self, event: dict[str, Any]) -> None:
        if event["id"] not in self.offsets:
            return  # ended already: a late "Stopping…" must not outlast the final frame
        html = rendering.note_html(event["id"], event["note"])
        if event["note"].startswith("Stopping"):
            html += rendering.stop_button_html(stopping=True)
        await self.send(html)

    async def reply_final(self, event: dict[str, Any]) -> None:
        self.offsets.pop(event["id"], None)
        self.snapshot_asked.pop(event["id"], None)
        self.heard.pop(event["id"], None)
        messages = await database_sync_to_async(get_messages)([event["id"]])
        if messages:
            await self.send(
                rendering.message_html(messages[0], oob=True)
                + rendering.stop_button_html()
                + rendering.announce_html(rendering.announcement(messages[0]))
            )
