"""What one page has of each reply it shows, and the repair of what it missed.

A ``Follower`` belongs to a page's socket (``chat.consumers``). Replies owned by this
worker hand it their frames directly (``chat.runner``); replies owned by another worker
send them over the channel layer once asked (``broadcast.FOLLOW``), which may drop some.
Frames carry offsets, so a frame missed (or a page drawn mid-reply) is repaired with a
snapshot from the worker that owns the reply, never shown as a gap or a repeat. A
followed reply that goes quiet is looked up in the database, in case its final frame was
dropped, and a page that never got the frame showing a reply it expected is redrawn. The
final frame is the persisted message, so it has the last word.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from channels.layers import InMemoryChannelLayer, get_channel_layer

from chat import branches, broadcast, metrics, rendering, sql
from chat.database import database_sync_to_async
from chat.models import Message
from chat.runner import Runner

logger = logging.getLogger(__name__)

# A snapshot not back by then was dropped (at-most-once delivery): it is asked for again.
SNAPSHOT_PATIENCE = 2.0
# A followed reply silent for this long is looked up: its final frame may have been dropped.
QUIET_AFTER = 5.0


# A page on a layer shared by several workers looks for messages it never heard of this
# often at first, then ever less often (doubling) while it finds none, up to this.
POLL_CEILING = 60.0


def get_messages(ids: list[int]) -> list[Message]:
    return branches.with_versions(list(Message.objects.filter(pk__in=ids)))


def get_thread(conversation_id: int) -> tuple[list[Message], int]:
    """The visible path, and the newest message id in the conversation."""
    return branches.visible_path(conversation_id), newest_message(conversation_id)


# Read with every socket that opens (``chat.sql``).
NEWEST = f"SELECT MAX(id) FROM {Message._meta.db_table} WHERE conversation_id = %s"


def newest_message(conversation_id: int) -> int:
    (newest,) = sql.row(NEWEST, [conversation_id])
    return newest or 0


class Follower:
    """The replies one page shows and how much of each it has.

    ``send`` puts HTML on the page's socket; ``channel`` is where frames from other
    workers reach it.
    """

    def __init__(
        self, send: Callable[[str], Awaitable[None]], channel: str, conversation_id: int, runner: Runner
    ) -> None:
        self.send = send
        self.channel = channel
        self.conversation_id = conversation_id
        self.runner = runner
        # Characters of each followed reply the page has; None while a snapshot or a
        # drawing of it is on its way, and its frames are held.
        self.offsets: dict[int, int | None] = {}
        self.workers: dict[int, str] = {}
        self.asked: dict[int, float] = {}
        self.heard: dict[int, float] = {}
        self.redrawn: set[int] = set()
        self.repairing: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.ended: set[int] = set()
        # Replies this page expects to draw, until a frame or a redraw shows them, and the
        # messages it shows: a frame from before a redraw must not add them twice.
        self.unseen: dict[int, float] = {}
        self.drawn: set[int] = set()
        # The newest message the page accounts for. Where other workers add messages, a
        # page whose frame adding one was lost finds it by looking (``_look_for_news``).
        self.newest = 0
        self.looks_for_news = not isinstance(get_channel_layer(), InMemoryChannelLayer)
        self.watchdog: asyncio.Task[None] | None = None
        self._an_end = asyncio.Event()

    async def start(self, *, redraw: bool, active: list[Message], newest: int) -> None:
        """Follow the page's replies, after its socket joined the conversation's group.

        ``redraw`` when the page may lack a message or show one that has ended since it
        was drawn; otherwise the replies still active are brought level by snapshots.
        """
        self.newest = newest
        self.runner.pages.setdefault(self.conversation_id, set()).add(self)
        self.watchdog = asyncio.create_task(self._look_up_quiet_replies())
        if redraw:
            await self.thread_changed({})
        else:
            for reply in active:
                self.drawn.add(reply.pk)
                await self._resync(reply.pk, reply.worker_channel)

    async def stop(self) -> None:
        """The page is gone: no more frames for it, here or from other workers."""
        if self.watchdog is not None:
            self.watchdog.cancel()
        for task in list(self._tasks):
            task.cancel()
        pages = self.runner.pages.get(self.conversation_id, set())
        pages.discard(self)
        if not pages:
            self.runner.pages.pop(self.conversation_id, None)
        for reply_id, worker in list(self.workers.items()):
            if reply := self.runner.replies.get(reply_id):
                reply.followers.discard(self)
            elif reply_id in self.offsets and worker != self.runner.channel:
                await broadcast.to_owner(worker, broadcast.UNFOLLOW, reply_id, reply_to=self.channel)
        self.offsets.clear()

    async def until_ended(self, reply_ids: list[int], within: float) -> None:
        """Until the page has shown each of ``reply_ids`` ended, for ``within`` seconds at most."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while any(reply_id in self.offsets for reply_id in reply_ids):
                    self._an_end.clear()
                    await self._an_end.wait()

    def expect(self, reply: Message) -> None:
        """A reply starting now in this conversation on this worker, with no text yet.

        Its frames come straight to this page: held until the page draws it (then a
        snapshot brings the page level), or applied at once if the page shows it already.
        """
        self.workers[reply.pk] = reply.worker_channel
        if reply.pk in self.drawn:
            self.offsets[reply.pk] = 0
        else:
            self.unseen[reply.pk] = time.monotonic()
            self.offsets[reply.pk] = None

    async def show_started(self, added: list[Message]) -> None:
        """Draw messages just added to the conversation by this worker, as its write
        returned them, without asking the database again (``Runner.show_added``)."""
        await self._append([m for m in added if m.pk not in self.drawn])

    async def _resync(self, reply_id: int, worker: str) -> None:
        """Bring the page level with a reply it shows: a snapshot, then every frame after it."""
        self.workers[reply_id] = worker
        self.offsets[reply_id] = None
        if worker == self.runner.channel:
            if (reply := self.runner.replies.get(reply_id)) is not None:
                await reply.follow_here(self)
            else:  # ended meanwhile (or never ran here): its final state is in the database
                await self._look_up([reply_id])
            return
        self.asked[reply_id] = time.monotonic()
        if not await broadcast.to_owner(worker, broadcast.FOLLOW, reply_id, reply_to=self.channel):
            # Lost like a dropped frame: asked again after SNAPSHOT_PATIENCE.
            logger.warning("the channel of reply %s is full; its snapshot is asked for later", reply_id)

    async def _look_up_quiet_replies(self) -> None:
        """End on the page each followed reply whose final frame was dropped, ask again for
        snapshots that never came, and redraw a page that never got the frame showing a
        reply it expected."""
        patience, waited = QUIET_AFTER, 0.0
        while True:
            await asyncio.sleep(QUIET_AFTER)
            waited += QUIET_AFTER
            try:
                now = time.monotonic()
                if any(now - since >= QUIET_AFTER for since in self.unseen.values()):
                    metrics.FRAMES_REPAIRED.labels("redraw").inc()
                    await self.thread_changed({})
                quiet = [i for i in self.offsets if now - self.heard.setdefault(i, now) >= QUIET_AFTER]
                if quiet:
                    await self._look_up(quiet)
                if self.looks_for_news and (self.offsets or waited >= patience):
                    found = await self._look_for_news()
                    patience, waited = QUIET_AFTER if found else min(2 * patience, POLL_CEILING), 0.0
            except Exception:
                logger.exception("looking up quiet replies failed")

    async def _look_for_news(self) -> bool:
        """Redraw if the conversation has a message newer than any the page heard of."""
        if await database_sync_to_async(newest_message)(self.conversation_id) <= self.newest:
            return False
        metrics.FRAMES_REPAIRED.labels("news").inc()
        await self.thread_changed({})
        return True

    async def _look_up(self, ids: list[int]) -> None:
        """End the replies among ``ids`` that ended; follow again those still running
        whose frames stopped coming."""
        now = time.monotonic()
        for message in await database_sync_to_async(get_messages)(ids):
            self.heard[message.pk] = now
            if not message.is_active:
                if message.pk not in self.ended:
                    metrics.FRAMES_REPAIRED.labels("lookup").inc()
                await self.end_reply(message.pk, message)
            elif message.worker_channel == self.runner.channel:
                if self.offsets.get(message.pk) is None and message.pk in self.runner.replies:
                    await self.runner.replies[message.pk].follow_here(self)
            elif now - self.asked.get(message.pk, 0.0) >= SNAPSHOT_PATIENCE:
                await self._resync(message.pk, message.worker_channel)

    # What the page is sent

    async def messages_added(self, event: dict[str, Any]) -> None:
        if not (ids := [i for i in event["ids"] if i not in self.drawn]):
            return
        messages = await database_sync_to_async(get_messages)(ids)
        # Asked again: a redraw may have drawn them while this waited.
        await self._append([m for m in messages if m.pk not in self.drawn])

    async def _append(self, messages: list[Message]) -> None:
        if not messages:
            return
        self.newest = max(self.newest, *(m.pk for m in messages))
        for message in messages:
            self.drawn.add(message.pk)
            self.unseen.pop(message.pk, None)
            if message.is_active:
                self.offsets[message.pk] = None  # held until the snapshot below
        html = rendering.messages_appended(messages)
        for message in messages:
            if message.is_active:
                html += rendering.announce_html(rendering.announcement(message))
        await self.send(html)
        for message in messages:
            if message.is_active:
                await self._resync(message.pk, message.worker_channel)

    async def thread_changed(self, event: dict[str, Any]) -> None:
        path, newest = await database_sync_to_async(get_thread)(self.conversation_id)
        self.newest = max(self.newest, newest)
        self.unseen.clear()
        self.drawn.update(m.pk for m in path)
        active = [m for m in path if m.is_active]
        # The drawn text is the database's, which may lag what this page was sent: no
        # frame is applied to it until a snapshot brings it level. Held before anything
        # is awaited, as this may run beside the frames (the watchdog's redraw).
        for message in active:
            self.offsets[message.pk] = None
        await self.send(rendering.thread_html(path))
        for message in active:
            await self.send(rendering.announce_html(rendering.announcement(message)))
            await self._resync(message.pk, message.worker_channel)

    async def reply_delta(self, event: dict[str, Any]) -> None:
        reply_id, offset, end = event["id"], event["offset"], event["end"]
        now = self.heard[reply_id] = time.monotonic()
        have = self.offsets.get(reply_id, -1)
        if have is None:
            if reply_id in self.asked and now - self.asked[reply_id] >= SNAPSHOT_PATIENCE:
                await self._resync(reply_id, self.workers[reply_id])
            return  # the snapshot (or the drawing) on its way includes this text
        if end <= have:
            return  # shown already (a snapshot on its way held it)
        if have == -1 or offset != have:
            # A frame lost before this one (or, rarely, one that overlaps a snapshot):
            # a frame moves a page on only from the state it was made for.
            if reply_id not in self.ended:
                self._repair_beside(reply_id, unknown=have == -1)
            return
        self.offsets[reply_id] = end
        await self.send(event["html"])

    def _repair_beside(self, reply_id: int, *, unknown: bool) -> None:
        """Repair as a task of its own: the worker relaying a reply waits for no page's
        trip to the database."""
        if reply_id in self.repairing:
            return
        metrics.FRAMES_REPAIRED.labels("redraw" if unknown else "snapshot").inc()
        self.repairing.add(reply_id)
        task = asyncio.create_task(self._repair(reply_id, unknown=unknown))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _: self.repairing.discard(reply_id))

    async def _repair(self, reply_id: int, *, unknown: bool) -> None:
        """A frame of a reply this page never heard of (the frame adding it was dropped:
        redraw), or one after a gap (a frame was dropped: resync)."""
        try:
            replies = await database_sync_to_async(get_messages)([reply_id])
            if replies and replies[0].is_active:
                if unknown and reply_id not in self.redrawn:
                    self.redrawn.add(reply_id)
                    await self.thread_changed({})
                else:
                    await self._resync(reply_id, replies[0].worker_channel)
        except Exception:
            logger.exception("repairing reply %s on a page failed", reply_id)

    async def reply_progress(self, event: dict[str, Any]) -> None:
        """How far a reply is, from its owner once a second: behind it, the page repairs."""
        reply_id, offset = event["id"], event["offset"]
        have = self.offsets.get(reply_id, -1)
        if reply_id in self.ended or reply_id in self.repairing:
            return
        if have is None:
            if reply_id in self.asked and time.monotonic() - self.asked[reply_id] >= SNAPSHOT_PATIENCE:
                await self._resync(reply_id, self.workers[reply_id])
        elif have == -1 or offset > have:
            self._repair_beside(reply_id, unknown=reply_id not in self.drawn)
        else:
            self.heard[reply_id] = time.monotonic()

    async def reply_snapshot(self, event: dict[str, Any]) -> None:
        reply_id, text, reasoning = event["id"], event["text"], event.get("reasoning", "")
        self.heard[reply_id] = time.monotonic()
        have = self.offsets.get(reply_id, -1)
        # A late answer to an earlier request may hold less than the page has.
        if have is None or (have != -1 and len(reasoning) + len(text) >= have):
            self.offsets[reply_id] = len(reasoning) + len(text)
            self.asked.pop(reply_id, None)
            html = rendering.body_html(reply_id, text)
            if reasoning:  # before the body, as in every frame
                html = rendering.reasoning_html(reply_id, reasoning, event.get("thought_ms")) + html
            await self.send(html)

    async def reply_note(self, event: dict[str, Any]) -> None:
        if event["id"] not in self.offsets:
            return  # ended already: a late "Stopping…" must not outlast the final frame
        html = rendering.note_html(event["id"], event["note"])
        if event["note"].startswith("Stopping"):
            html += rendering.stop_button_html(stopping=True)
        await self.send(html)

    async def reply_final(self, event: dict[str, Any]) -> None:
        await self.end_reply(event["id"], None)

    async def end_reply(self, reply_id: int, message: Message | None) -> None:
        """Show a reply's final state: ``message`` as persisted, or read now when None."""
        if reply_id in self.ended:
            return  # from this worker directly, and again through the channel layer
        if message is None:
            found = await database_sync_to_async(get_messages)([reply_id])
            if not found or found[0].is_active or reply_id in self.ended:
                return
            message = found[0]
        self.ended.add(reply_id)
        for state in (self.offsets, self.asked, self.heard, self.unseen):
            state.pop(reply_id, None)
        self._an_end.set()
        if reply_id not in self.drawn:
            # The frame adding it never came: the page lacks the message to swap.
            await self.thread_changed({})
            return
        await self.send(
            rendering.message_html(message, oob=True)
            + rendering.stop_button_html()
            + rendering.announce_html(rendering.announcement(message))
        )
