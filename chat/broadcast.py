"""Everything that crosses the channel layer: group names, message types and every send.

A reply's text does not travel here when it can help it: the worker that owns a reply
hands each frame straight to the pages following it in the same process
(``chat.runner``). The layer carries what is rare or crosses processes: a page's group
events (messages added, the thread changed, a reply's final state and notes), a
person's sidebar, requests to the worker that owns a reply (Stop, follow, unfollow;
handed over directly when that worker is this process) and frames for followers on
other workers.

Delivery is at most once and a full channel drops silently (``group_send``) or raises
``ChannelFull`` (``send``); every reader repairs a loss (``chat.following``), so the
sends here report a drop and never raise it.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer

# To the pages of a conversation.
MESSAGES_ADDED = "chat.messages_added"
THREAD_CHANGED = "chat.thread_changed"
SETTINGS_CHANGED = "chat.settings_changed"
NOTE = "reply.note"
FINAL = "reply.final"
# Once a second while a reply runs: how far it is. A page that lost the frame adding
# the reply, or some of its frames, or the answer to its follow request, learns of it.
PROGRESS = "reply.progress"
# To one page on another worker, from the owner of a reply it follows.
DELTA = "reply.delta"
SNAPSHOT = "reply.snapshot"
# To every page of one person. A session of theirs ended: each page checks its own.
SIDEBAR_CHANGED = "sidebar.changed"
SESSIONS_CHANGED = "user.sessions_changed"
# To the worker that owns a reply. Following is answered with a snapshot, the text so
# far, and then every frame after it.
STOP = "reply.stop"
FOLLOW = "reply.follow"
UNFOLLOW = "reply.unfollow"


Answer = Callable[[dict[str, Any]], Awaitable[None]]
# The runner of each event loop (one per worker process) and its channel: a request to
# that channel from the same process is handed to it, not carried through the layer.
_answered_here: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[str, Answer]] = (
    weakref.WeakKeyDictionary()
)


def answer_here(channel: str, answer: Answer) -> None:
    """Requests to the worker ``channel`` sent from this process go to ``answer`` at once."""
    _answered_here[asyncio.get_running_loop()] = (channel, answer)


def conversation_group(conversation_id: int) -> str:
    return f"conversation-{conversation_id}"


def user_group(user_id: int) -> str:
    """Every page of one person, for the sidebar."""
    return f"user-{user_id}"


async def join(channel: str, conversation_id: int, user_id: int) -> None:
    layer = get_channel_layer()
    await layer.group_add(conversation_group(conversation_id), channel)
    await layer.group_add(user_group(user_id), channel)


async def leave(channel: str, conversation_id: int, user_id: int) -> None:
    layer = get_channel_layer()
    await layer.group_discard(conversation_group(conversation_id), channel)
    await layer.group_discard(user_group(user_id), channel)


async def _to_conversation(conversation_id: int, message: dict[str, Any]) -> None:
    await get_channel_layer().group_send(conversation_group(conversation_id), message)


async def _to_channel(channel: str, message: dict[str, Any]) -> bool:
    """False when the channel was full and the message dropped."""
    try:
        await get_channel_layer().send(channel, message)
    except ChannelFull:
        return False
    return True


async def messages_added(conversation_id: int, ids: list[int]) -> None:
    await _to_conversation(conversation_id, {"type": MESSAGES_ADDED, "ids": ids})


async def thread_changed(conversation_id: int) -> None:
    """Another version was made or chosen: every page redraws the messages it shows."""
    await _to_conversation(conversation_id, {"type": THREAD_CHANGED})


async def settings_changed(conversation_id: int) -> None:
    """The conversation's model or system prompt changed: every page shows the new ones."""
    await _to_conversation(conversation_id, {"type": SETTINGS_CHANGED})


async def note(conversation_id: int, reply_id: int, text: str) -> None:
    await _to_conversation(conversation_id, {"type": NOTE, "id": reply_id, "note": text})


async def final(conversation_id: int, reply_id: int) -> None:
    await _to_conversation(conversation_id, {"type": FINAL, "id": reply_id})


async def progress(conversation_id: int, reply_id: int, offset: int) -> None:
    await _to_conversation(conversation_id, {"type": PROGRESS, "id": reply_id, "offset": offset})


async def sidebar_changed(user_id: int, retitled: tuple[int, str] | None = None) -> None:
    """The person's sidebars are out of date. ``retitled``: only this conversation's
    title changed, to this, and nothing moved: the pages draw that one link again,
    without reading the sidebar."""
    event: dict[str, Any] = {"type": SIDEBAR_CHANGED}
    if retitled is not None:
        event["retitled"] = list(retitled)
    await get_channel_layer().group_send(user_group(user_id), event)


async def sessions_changed(user_id: int, reason: str, session_key: str = "") -> None:
    message = {"type": SESSIONS_CHANGED, "reason": reason, "session": session_key}
    await get_channel_layer().group_send(user_group(user_id), message)


async def delta(channel: str, reply_id: int, offset: int, end: int, html: str) -> bool:
    """A frame of a reply: the page that shows its first ``offset`` characters shows its
    first ``end`` after ``html``."""
    message = {"type": DELTA, "id": reply_id, "offset": offset, "end": end, "html": html}
    return await _to_channel(channel, message)


async def snapshot(channel: str, message: dict[str, Any]) -> bool:
    """All a page shows of a reply now (``Reply._snapshot``: its text and its thinking)."""
    return await _to_channel(channel, message)


async def to_owner(
    worker_channel: str, kind: str, reply_id: int, *, reply_to: str = "", reason: str = ""
) -> bool:
    """Ask the worker that owns a reply to stop it (``STOP``, for ``reason``), or to send
    a page its frames (``FOLLOW``, answered with a snapshot) or no more (``UNFOLLOW``).

    When that worker is this process, it is asked directly: a Stop takes effect before
    this returns, without waiting on the layer or on a busy event loop's next pass."""
    message: dict[str, Any] = {"type": kind, "id": reply_id}
    if reply_to:
        message["reply_to"] = reply_to
    if reason:
        message["reason"] = reason
    here = _answered_here.get(asyncio.get_running_loop())
    if here is not None and here[0] == worker_channel:
        await here[1](message)
        return True
    return await _to_channel(worker_channel, message)
