"""The websocket edge: auth, parse a frame, call a service, send HTML.

Each page holds one socket per conversation and joins that conversation's group. Frames
of a reply carry offsets; this consumer tracks how much of each reply its page has, so a
frame dropped by the channel layer (or a page loaded mid-reply) is repaired with a
snapshot from the worker that owns the reply, never with a gap or a repeat.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.exceptions import ChannelFull
from channels.generic.websocket import AsyncWebsocketConsumer
from django.db.models import Q

from chat import conversations, rendering, services, threads
from chat.models import Conversation, Message

logger = logging.getLogger(__name__)

MAX_FRAME_BYTES = 256 * 1024
# A snapshot not back by then was dropped (at-most-once delivery): the next frame asks again.
SNAPSHOT_PATIENCE = 2.0
# A followed reply silent for this long is looked up: its final frame may have been dropped.
QUIET_AFTER = 5.0
# Frames that make or choose a version of a message; each names the message by "id".
VERSION_ACTIONS = {"regenerate", "retry", "continue", "edit", "select"}

# This process's open sockets, for a restart to close (see chat.lifecycle).
_open_consumers: weakref.WeakSet[ChatConsumer] = weakref.WeakSet()


def get_conversation(user: Any, conversation_id: int) -> Conversation | None:
    return Conversation.objects.filter(pk=conversation_id, owner=user).first()


def get_messages(ids: list[int]) -> list[Message]:
    return threads.with_versions(list(Message.objects.filter(pk__in=ids)))


def get_sidebar(user: Any, conversation_id: int) -> tuple[list[Conversation], Conversation | None]:
    return conversations.recent(user.pk), get_conversation(user, conversation_id)


def get_active_replies(conversation_id: int) -> list[Message]:
    return list(Message.objects.active().filter(conversation_id=conversation_id))


def changed_since(conversation_id: int, since: float | None) -> bool:
    """Whether the page, drawn at ``since``, may lack a message or show one that has ended.

    A reply still being written is brought level by a snapshot instead.
    """
    if since is None:
        return False
    after = datetime.fromtimestamp(since, tz=UTC)
    ended = Q(updated_at__gt=after) & ~Q(status__in=Message.ACTIVE)
    return (
        Message.objects.filter(conversation_id=conversation_id)
        .filter(Q(created_at__gt=after) | ended)
        .exists()
    )


def page_time(query_string: bytes) -> float | None:
    """When the page was drawn, from its socket's ``since``; None unless a past moment.

    An hour's grace: the page may come from a worker whose clock runs a little ahead.
    """
    try:
        since = float(parse_qs(query_string.decode())["since"][0])
    except (KeyError, ValueError, UnicodeDecodeError, OverflowError):
        return None
    return since if 0 <= since <= time.time() + 3600 else None


async def close_all_for_restart() -> None:
    """Close every socket of this process with 1012, after the final state of its replies."""
    consumers = list(_open_consumers)
    _open_consumers.clear()
    results = await asyncio.gather(*(c.close_for_restart() for c in consumers), return_exceptions=True)
    for result in results:
        if isinstance(result, Exception):
            logger.warning("closing a socket for the restart failed: %r", result)


class ChatConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope["user"]
        conversation_id = self.scope["url_route"]["kwargs"]["conversation_id"]
        if not user.is_authenticated:
            await self.close(code=4401)
            return
        conversation = await database_sync_to_async(get_conversation)(user, conversation_id)
        if conversation is None:
            await self.close(code=4404)
            return
        self.conversation_id = conversation.pk
        self.group = services.conversation_group(conversation.pk)
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
        # Sends and other actions that start a reply, running beside this socket's frames;
        # a Stop read meanwhile stops the reply they start as soon as it exists.
        self.starting: set[asyncio.Task[None]] = set()
        self.stop_on_start = False
        self.user_group = services.user_group(user.pk)
        # Join before reading the replies, so no frame falls between the two.
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.channel_layer.group_add(self.user_group, self.channel_name)
        await self.accept()
        _open_consumers.add(self)
        self.watchdog = asyncio.create_task(self._look_up_quiet_replies())
        since = page_time(self.scope.get("query_string", b""))
        if await database_sync_to_async(changed_since)(conversation.pk, since):
            # The page missed frames (it was offline, or is older than its socket): redraw.
            await self.chat_thread_changed({})
        else:
            for reply in await database_sync_to_async(get_active_replies)(conversation.pk):
                await self._resync(reply)

    async def disconnect(self, code: int) -> None:
        _open_consumers.discard(self)
        if hasattr(self, "watchdog"):
            self.watchdog.cancel()
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)
            await self.channel_layer.group_discard(self.user_group, self.channel_name)

    async def close_for_restart(self) -> None:
        """Send the final state of the replies this page follows, then close with 1012.

        Runs outside this consumer's own task, which daphne cancels on shutdown.
        """
        self.watchdog.cancel()
        ended = [m for m in await database_sync_to_async(get_messages)(list(self.offsets)) if not m.is_active]
        if ended:
            await self.send(
                "".join(rendering.message_html(m, oob=True) for m in ended) + rendering.stop_button_html()
            )
        await self.channel_layer.group_discard(self.group, self.channel_name)
        await self.channel_layer.group_discard(self.user_group, self.channel_name)
        await self.close(code=1012)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None or len(text_data) > MAX_FRAME_BYTES:
            await self.send(rendering.composer_html(error="That message is too large to send."))
            return
        try:
            data = json.loads(text_data)
        except (ValueError, RecursionError):
            data = None
        if not isinstance(data, dict):
            await self.send(rendering.composer_html(error="The page sent a frame the server cannot read."))
            return
        action = data.get("action", "send")
        if not isinstance(action, str):
            action = repr(action)
        if action == "send":
            self._start_beside(self._send_message(data))
        elif action == "stop":
            await self._stop()
        elif action in VERSION_ACTIONS:
            self._start_beside(self._change_version(action, data))
        else:
            await self.send(rendering.composer_html(error=f"Unknown action {str(action)[:40]!r}."))

    def _start_beside(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` as a task of its own, so a Stop pressed right after it is read at
        once rather than after the database writes ``work`` waits on."""
        task = asyncio.create_task(work)
        self.starting.add(task)
        task.add_done_callback(self._done_starting)

    def _done_starting(self, task: asyncio.Task[None]) -> None:
        self.starting.discard(task)
        if not self.starting:
            self.stop_on_start = False
        if not task.cancelled() and (error := task.exception()) is not None:
            logger.error("a websocket action failed", exc_info=error)

    async def _send_message(self, data: dict[str, Any]) -> None:
        conversation = await database_sync_to_async(get_conversation)(
            self.scope["user"], self.conversation_id
        )
        if conversation is None:
            await self.close(code=4404)
            return
        text = str(data.get("message", ""))
        try:
            reply = await services.send_message(
                conversation,
                text,
                client_id=str(data.get("client_id", ""))[:64],
                image_url=str(data.get("image_url", "")),
            )
        except services.ChatError as exc:
            await self.send(rendering.composer_html(error=str(exc), text=text))
            return
        await self._expect(reply)
        await self.send(rendering.composer_html())

    async def _change_version(self, action: str, data: dict[str, Any]) -> None:
        conversation = await database_sync_to_async(get_conversation)(
            self.scope["user"], self.conversation_id
        )
        if conversation is None:
            await self.close(code=4404)
            return
        client_id = str(data.get("client_id", ""))[:64]
        message_id = data.get("id")
        try:
            if not isinstance(message_id, int):
                raise services.ChatError("That message is not in this conversation.")
            if action in {"regenerate", "retry"}:
                await self._expect(
                    await services.regenerate_reply(conversation, message_id, client_id=client_id)
                )
            elif action == "continue":
                await self._expect(
                    await services.continue_reply(conversation, message_id, client_id=client_id)
                )
            elif action == "edit":
                text = str(data.get("message", ""))
                await self._expect(
                    await services.edit_and_resend(conversation, message_id, text, client_id=client_id)
                )
            else:
                await services.select_version(conversation, message_id)
        except services.ChatError as exc:
            await self.send(rendering.composer_html(error=str(exc)))

    async def _expect(self, reply: Message | None) -> None:
        """A reply this page started: it is shown by a frame through the channel layer,
        which may drop it, and then the page is redrawn (see ``_look_up_quiet_replies``).
        Stopped at once if Stop was pressed while it was being started."""
        if reply is None:
            return
        if reply.pk not in self.drawn:  # its frame may have come before this
            self.unseen[reply.pk] = time.monotonic()
        self.workers[reply.pk] = reply.worker_channel
        if self.stop_on_start:
            await services.tell_owner_to_stop(self.conversation_id, reply.pk, reply.worker_channel)

    async def _stop(self) -> None:
        # The owners of the replies this page follows or started are told at once, and a
        # reply still being started is stopped as soon as it exists; recording the request
        # takes two database round trips, and covers a reply the page has not heard of.
        self.stop_on_start = bool(self.starting)
        for reply_id in {*self.offsets, *self.unseen}:
            await services.tell_owner_to_stop(self.conversation_id, reply_id, self.workers[reply_id])
        for reply in await database_sync_to_async(get_active_replies)(self.conversation_id):
            await services.stop_reply(reply)

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

    async def sidebar_changed(self, event: dict[str, Any]) -> None:
        recent, current = await database_sync_to_async(get_sidebar)(self.scope["user"], self.conversation_id)
        await self.send(rendering.sidebar_html(recent, current))

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
