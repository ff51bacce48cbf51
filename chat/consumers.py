"""The websocket edge: auth, parse a frame, call a service, send HTML.

Each page holds one socket per conversation and joins that conversation's group; how it
follows the replies it shows, and repairs what the channel layer drops, is
``chat.following``.
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
from channels.generic.websocket import AsyncWebsocketConsumer
from django.db.models import Q

from chat import conversations, rendering, services
from chat.following import ReplyFollower, get_messages
from chat.models import Conversation, Message

logger = logging.getLogger(__name__)

MAX_FRAME_BYTES = 256 * 1024
# Frames that make or choose a version of a message; each names the message by "id".
VERSION_ACTIONS = {"regenerate", "retry", "continue", "edit", "select"}

# This process's open sockets, for a restart to close (see chat.lifecycle).
_open_consumers: weakref.WeakSet[ChatConsumer] = weakref.WeakSet()


def get_conversation(user: Any, conversation_id: int) -> Conversation | None:
    return Conversation.objects.filter(pk=conversation_id, owner=user).first()


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


class ChatConsumer(ReplyFollower, AsyncWebsocketConsumer):
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
        self.start_following()
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
            self.stop_following()
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)
            await self.channel_layer.group_discard(self.user_group, self.channel_name)

    async def close_for_restart(self) -> None:
        """Send the final state of the replies this page follows, then close with 1012.

        Runs outside this consumer's own task, which daphne cancels on shutdown.
        """
        self.stop_following()
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
        """Follow a reply this page started; stop it at once if Stop was pressed while it
        was being started."""
        if reply is None:
            return
        self.expect(reply)
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

    # Group events

    async def sidebar_changed(self, event: dict[str, Any]) -> None:
        recent, current = await database_sync_to_async(get_sidebar)(self.scope["user"], self.conversation_id)
        await self.send(rendering.sidebar_html(recent, current))
