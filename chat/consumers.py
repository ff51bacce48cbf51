"""The websocket edge: auth, parse a frame, call a service, send HTML.

Each page holds one socket per conversation and joins that conversation's group; how it
follows the replies it shows, and repairs what it missed, is its ``Follower``
(``chat.following``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from autobahn.exception import Disconnected
from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from chat import access, attachments, broadcast, metrics, rendering, replies, services, sidebar, sql
from chat.database import database_sync_to_async
from chat.following import Follower, get_messages, newest_message
from chat.logs import once_a_minute
from chat.models import Conversation, Message
from chat.runner import get_runner

logger = logging.getLogger(__name__)

MAX_FRAME_BYTES = 256 * 1024
# How long a page signed out waits to show its replies stopped before it closes.
SIGN_OUT_WAIT = 3.0

# This process's open sockets, for a restart to close (see chat.lifecycle).
_open_consumers: weakref.WeakSet[ChatConsumer] = weakref.WeakSet()
metrics.SOCKETS_OPEN.set_function(lambda: len(_open_consumers))


# Read with every socket that opens (``chat.sql``).
OWNS = f"SELECT 1 FROM {Conversation._meta.db_table} WHERE id = %s AND owner_id = %s"
ACTIVE_REPLIES = f"""
    SELECT * FROM {Message._meta.db_table}
    WHERE conversation_id = %s AND status IN ({sql.literals(Message.ACTIVE)}) ORDER BY created_at, id
"""


def owns(user_id: int, conversation_id: int) -> bool:
    return sql.row(OWNS, [conversation_id, user_id]) is not None


def get_own_conversation(user_id: int, conversation_id: int) -> Conversation | None:
    return Conversation.objects.filter(pk=conversation_id, owner_id=user_id).first()


def page_state(conversation_id: int, since: float | None) -> tuple[bool, list[Message], int]:
    """Whether a page drawn at ``since`` must be redrawn, else the replies still being
    written in it; and the newest message id in the conversation."""
    newest = newest_message(conversation_id)
    if changed_since(conversation_id, since):
        return True, [], newest
    return False, get_active_replies(conversation_id), newest


def get_sidebar(user: Any, conversation_id: int) -> tuple[sidebar.Sidebar, Conversation | None]:
    return sidebar.load(user.pk), sidebar.current(user.pk, conversation_id)


def get_active_replies(conversation_id: int) -> list[Message]:
    return sql.instances(Message, ACTIVE_REPLIES, [conversation_id])


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
    follower: Follower | None = None
    sidebar_task: asyncio.Task[None] | None = None
    sidebar_stale = False
    expiry: asyncio.Task[None] | None = None
    session_key: str | None = None
    signed_out = False

    async def connect(self) -> None:
        user = self.scope["user"]
        conversation_id = self.scope["url_route"]["kwargs"]["conversation_id"]
        self.conversation_id = conversation_id
        if not user.is_authenticated:
            # Accepted, to say so: a refused handshake reaches the page as a lost
            # connection, which htmx retries forever without a word.
            await self.accept()
            await self.sign_out(access.EXPIRED)
            return
        if not await database_sync_to_async(owns)(user.pk, conversation_id):
            await self.close(code=4404)
            return
        self.user_id = user.pk
        self.session_key = self.scope.get("session_key")
        # Sends and other actions that start a reply, running beside this socket's frames;
        # a Stop read meanwhile stops the reply they start as soon as it exists.
        self.starting: set[asyncio.Task[None]] = set()
        self.stop_on_start = False
        runner = get_runner()
        await runner.channel_name()
        self.follower = Follower(self.send, self.channel_name, conversation_id, runner)
        self.events: dict[str, Callable[[dict[str, Any]], Awaitable[None]]] = {
            broadcast.MESSAGES_ADDED: self.follower.messages_added,
            broadcast.THREAD_CHANGED: self.follower.thread_changed,
            broadcast.DELTA: self.follower.reply_delta,
            broadcast.SNAPSHOT: self.follower.reply_snapshot,
            broadcast.NOTE: self.follower.reply_note,
            broadcast.FINAL: self.follower.reply_final,
            broadcast.PROGRESS: self.follower.reply_progress,
            broadcast.SETTINGS_CHANGED: self.settings_changed,
            broadcast.SIDEBAR_CHANGED: self.sidebar_changed,
            broadcast.SESSIONS_CHANGED: self.sessions_changed,
        }
        # Join before reading the replies, so no frame falls between the two.
        try:
            await broadcast.join(self.channel_name, conversation_id, user.pk)
        except Exception as exc:
            await self.unavailable(exc)
            return
        await self.accept()
        _open_consumers.add(self)
        since = page_time(self.scope.get("query_string", b""))
        runner.watch_sessions(self.user_id, self.sessions_changed)
        redraw, active, newest = await database_sync_to_async(page_state)(conversation_id, since)
        await self.follower.start(redraw=redraw, active=active, newest=newest)
        if self.session_key is not None:
            self.expiry = asyncio.create_task(self._sign_out_at_expiry(self.scope.get("session_expires")))

    async def unavailable(self, exc: Exception) -> None:
        """The channel layer failed: tell the page live updates wait, and close with 1013
        (Try Again Later), on which htmx reconnects with a growing pause."""
        once_a_minute(logger, "layer", "the channel layer is unavailable (%r); pages are told to retry", exc)
        self.follower = None
        await self.accept()
        await self.send(rendering.connection_notice_html())
        await self.close(code=1013)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels' own dispatch closes stale database connections before every message,
        # in a trip to the one database thread, behind every query queued there: a Stop
        # read from the socket waited for the sends before it (a second at K=200). Every
        # query here goes through database_sync_to_async, which does that itself.
        handler = self.events.get(message["type"]) if self.follower else None
        if handler is None and (handler := getattr(self, get_handler_name(message), None)) is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def disconnect(self, code: int) -> None:
        _open_consumers.discard(self)
        for task in (self.sidebar_task, self.expiry):
            if task is not None:
                task.cancel()
        if self.follower is not None:
            self.follower.runner.unwatch_sessions(self.user_id, self.sessions_changed)
            await self.follower.stop()
            await broadcast.leave(self.channel_name, self.conversation_id, self.user_id)

    async def close_for_restart(self) -> None:
        """Send the final state of the replies this page follows, then close with 1012.

        Runs outside this consumer's own task, which daphne cancels on shutdown.
        """
        if self.follower is None:
            return
        followed = list(self.follower.offsets)
        await self.follower.stop()
        ended = [m for m in await database_sync_to_async(get_messages)(followed) if not m.is_active]
        if ended:
            await self.send(
                "".join(rendering.message_html(m, oob=True) for m in ended) + rendering.stop_button_html()
            )
        await broadcast.leave(self.channel_name, self.conversation_id, self.user_id)
        await self.close(code=1012)

    async def send(
        self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False
    ) -> None:
        # A socket that closed under a frame on its way: its disconnect follows.
        with contextlib.suppress(Disconnected):
            await super().send(text_data, bytes_data, close)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.signed_out:
            return
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
        if action == "stop":
            await self._stop()
        elif (start := STARTS.get(action)) is not None:
            self._start_beside(self._starting(start, data))
        elif action == "select":
            self._start_beside(self._select(data))
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

    async def _starting(self, start: Start, data: dict[str, Any]) -> None:
        """Start a reply as ``data`` asks; show it here, or say why not."""
        try:
            started = await start(self.user_id, self.conversation_id, data, self.session_key)
        except access.SignedOut as exc:
            await self.sign_out(exc.reason)
            return
        except services.NotFound:
            await self.close(code=4404)
            return
        except services.ChatError as exc:
            sending = data.get("action", "send") == "send"
            text = str(data.get("message", "")) if sending else ""
            # What was attached stays in the box with the text, to send again.
            kept = (
                await database_sync_to_async(attachments.unsent)(self.user_id, file_keys(data))
                if sending
                else []
            )
            await self.send(rendering.composer_html(error=str(exc), text=text, files=kept))
            return
        # Its pages here drew what it added (``services._start``). None: a repeated frame.
        if started is not None and self.stop_on_start:
            reply = started.reply
            await replies.stop(reply.pk, reply.conversation_id, reply.worker_channel)
        if data.get("action", "send") == "send":
            await self.send(rendering.composer_html())

    async def _select(self, data: dict[str, Any]) -> None:
        try:
            await services.select_version(
                self.user_id, self.conversation_id, message_id(data), session_key=self.session_key
            )
        except access.SignedOut as exc:
            await self.sign_out(exc.reason)
        except services.NotFound:
            await self.close(code=4404)
        except services.ChatError as exc:
            await self.send(rendering.composer_html(error=str(exc)))

    async def _stop(self) -> None:
        # The owners of the replies this page follows are told at once, and a reply still
        # being started is stopped as soon as it exists; the database is read after, for
        # a reply the page has not heard of.
        self.stop_on_start = bool(self.starting)
        followed = list(self.follower.offsets)
        for reply_id in followed:
            # Shown here at once; the other pages hear it from the owner's group.
            await self.follower.reply_note({"id": reply_id, "note": replies.STOPPING})
            await replies.stop(reply_id, self.conversation_id, self.follower.workers[reply_id])
        for reply in await database_sync_to_async(get_active_replies)(self.conversation_id):
            if reply.pk not in followed:
                await replies.stop(reply.pk, reply.conversation_id, reply.worker_channel)

    async def sign_out(self, reason: str) -> None:
        """The page's session ended: stop the replies it shows, keeping their text, say
        why, and close so that htmx does not reconnect (see ``chat.access``)."""
        if self.signed_out:
            return
        self.signed_out = True
        if self.follower is not None:
            followed = list(self.follower.offsets)
            for reply_id in followed:
                await replies.stop(reply_id, self.conversation_id, self.follower.workers[reply_id], reason)
            for reply in await database_sync_to_async(get_active_replies)(self.conversation_id):
                await replies.stop(reply.pk, reply.conversation_id, reply.worker_channel, reason)
            # The page shows them stopped, with why, before the notice: their final frames
            # come from their owner (here, or through the channel layer).
            await self.follower.until_ended(followed, SIGN_OUT_WAIT)
        page = reverse("chat:conversation", kwargs={"pk": self.conversation_id})
        await self.send(rendering.signed_out_html(reason, page))
        await self.close(code=access.SIGNED_OUT)

    async def _sign_out_at_expiry(self, expires: datetime | None) -> None:
        """Sign out when the session expires: first when it did as the socket opened
        (``expires``, read with its person; None: read it now), then as stored."""
        if expires is not None:
            left: float | None = (expires - timezone.now()).total_seconds()
        else:
            left = await database_sync_to_async(access.session_expiry)(self.session_key)
        while left is not None:
            await asyncio.sleep(max(left, 0) + 0.5)
            if not await database_sync_to_async(access.signed_in)(self.session_key, self.user_id):
                break
            left = await database_sync_to_async(access.session_expiry)(self.session_key)
        await self.sign_out(access.EXPIRED)

    # Group events

    async def settings_changed(self, event: dict[str, Any]) -> None:
        conversation = await database_sync_to_async(get_own_conversation)(self.user_id, self.conversation_id)
        if conversation is not None:
            await self.send(rendering.settings_html(conversation))

    async def sessions_changed(self, event: dict[str, Any]) -> None:
        """A session of this person ended: this page's own, or maybe another one."""
        if self.signed_out:
            return
        ours = bool(event.get("session")) and event["session"] == self.session_key
        if ours or not await database_sync_to_async(access.signed_in)(self.session_key, self.user_id):
            # Beside the socket's frames: the final frames of its replies come through them.
            self._start_beside(self.sign_out(str(event.get("reason") or access.LOGGED_OUT)))

    async def sidebar_changed(self, event: dict[str, Any]) -> None:
        """Redraw the sidebar beside the socket's frames, so a Stop read after this waits
        for no database trip; changes that come while one redraw waits share the next. A
        title that changed alone is drawn at once, unless a redraw is under way (it may
        have read the old one, so it reads again)."""
        if (retitled := event.get("retitled")) and (self.sidebar_task is None or self.sidebar_task.done()):
            conversation_id, title = retitled
            await self.send(rendering.retitled_html(conversation_id, title, self.conversation_id))
            return
        self.sidebar_stale = True
        if self.sidebar_task is None or self.sidebar_task.done():
            self.sidebar_task = asyncio.create_task(self._redraw_sidebar())

    async def _redraw_sidebar(self) -> None:
        while self.sidebar_stale:
            self.sidebar_stale = False
            try:
                shown, current = await database_sync_to_async(get_sidebar)(
                    self.scope["user"], self.conversation_id
                )
                await self.send(rendering.sidebar_html(shown, current))
            except Exception:
                logger.exception("redrawing the sidebar failed")


# Frame actions that start a reply, each from the frame's fields.

Start = Callable[[int, int, dict[str, Any], str | None], Awaitable["services.Started | None"]]


def client_id(data: dict[str, Any]) -> str:
    return str(data.get("client_id", ""))[:64]


def file_keys(data: dict[str, Any]) -> list[str]:
    """The uploads a frame names: htmx sends one field as a string, several as a list."""
    keys = data.get("attachment", [])
    keys = [keys] if isinstance(keys, str) else keys
    return [str(key)[:64] for key in keys if key][:100] if isinstance(keys, list) else []


def message_id(data: dict[str, Any]) -> int:
    if not isinstance(value := data.get("id"), int):
        raise services.ChatError("That message is not in this conversation.")
    return value


async def _send(
    owner_id: int, conversation_id: int, data: dict[str, Any], session_key: str | None
) -> services.Started | None:
    return await services.send_message(
        owner_id,
        conversation_id,
        str(data.get("message", "")),
        client_id=client_id(data),
        image_url=str(data.get("image_url", "")),
        files=file_keys(data),
        session_key=session_key,
    )


async def _regenerate(
    owner_id: int, conversation_id: int, data: dict[str, Any], session_key: str | None
) -> services.Started | None:
    return await services.regenerate_reply(
        owner_id, conversation_id, message_id(data), client_id=client_id(data), session_key=session_key
    )


async def _continue(
    owner_id: int, conversation_id: int, data: dict[str, Any], session_key: str | None
) -> services.Started | None:
    return await services.continue_reply(
        owner_id, conversation_id, message_id(data), client_id=client_id(data), session_key=session_key
    )


async def _edit(
    owner_id: int, conversation_id: int, data: dict[str, Any], session_key: str | None
) -> services.Started | None:
    return await services.edit_and_resend(
        owner_id,
        conversation_id,
        message_id(data),
        str(data.get("message", "")),
        client_id=client_id(data),
        session_key=session_key,
    )


STARTS: dict[str, Start] = {
    "send": _send,
    "regenerate": _regenerate,
    "retry": _regenerate,
    "continue": _continue,
    "edit": _edit,
}
