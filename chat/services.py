"""Verb-named changes to messages and replies; each writes, then broadcasts.

Writes are sync functions (transactions stay in sync code); the async functions the
consumer and the runner call wrap them with ``database_sync_to_async`` and then tell the
conversation's group, so every path of a reply changes state the same way. A new message
or reply starts one path (``_start``) whether it is sent, regenerated, edited or continued.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from channels.db import database_sync_to_async
from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from chat import threads
from chat.checks import (
    ChatError,
    check_branch,
    check_image,
    check_message,
    check_no_reply_running,
    check_rate,
    check_reply_cap,
)
from chat.models import Conversation, Message

if TYPE_CHECKING:
    from chat.generation import Job

logger = logging.getLogger(__name__)


def conversation_group(conversation_id: int) -> str:
    return f"conversation-{conversation_id}"


def user_group(user_id: int) -> str:
    """Every page of one person, for the sidebar."""
    return f"user-{user_id}"


def first_words(text: str, limit: int = 60) -> str:
    words = " ".join(text.split())
    if len(words) <= limit:
        return words
    return (words[: limit + 1].rsplit(" ", 1)[0] or words[:limit]).rstrip(",.;:") + "…"


# Writes


def do_start_reply(
    conversation: Conversation, text: str, *, client_id: str, worker_channel: str, image_url: str = ""
) -> tuple[Message, Message] | None:
    """The person's message after the last one shown, and a pending reply.

    None when ``client_id`` was seen before; ``ChatError`` past the concurrent reply cap or
    while a reply in this conversation is still being written.
    """
    with transaction.atomic():
        parent_id = threads.shape_of(conversation.pk).last
        created = do_add_turn(
            conversation, parent_id, text, image_url, client_id=client_id, worker_channel=worker_channel
        )
        if created:
            # After the write, so a repeated client_id stays a silent repeat, not an error.
            check_no_reply_running(conversation, besides=created[1].pk)
            # Conditional: a title the model or the person wrote meanwhile stays.
            Conversation.objects.filter(pk=conversation.pk, title="").update(title=first_words(text))
    return created


def do_add_turn(
    conversation: Conversation,
    parent_id: int | None,
    text: str,
    image_url: str = "",
    *,
    client_id: str,
    worker_channel: str,
) -> tuple[Message, Message] | None:
    try:
        with transaction.atomic():
            message = Message.objects.create(
                conversation=conversation,
                parent_id=parent_id,
                role=Message.Role.USER,
                content=text,
                image_url=image_url,
                client_id=client_id,
            )
            reply = _add_reply(conversation, message.pk, worker_channel)
    except IntegrityError:
        return None
    return message, reply


def do_add_reply(
    conversation: Conversation, parent_id: int, *, client_id: str, worker_channel: str
) -> Message | None:
    """A pending reply after ``parent_id``: a new version of its reply, or a continuation."""
    try:
        with transaction.atomic():
            return _add_reply(conversation, parent_id, worker_channel, client_id)
    except IntegrityError:
        return None


def _add_reply(
    conversation: Conversation, parent_id: int, worker_channel: str, client_id: str = ""
) -> Message:
    reply = Message.objects.create(
        conversation=conversation,
        parent_id=parent_id,
        role=Message.Role.ASSISTANT,
        status=Message.Status.PENDING,
        provider=conversation.provider,
        model=conversation.model,
        worker_channel=worker_channel,
        heartbeat_at=timezone.now(),
        client_id=client_id,
    )
    check_reply_cap(conversation.owner_id)
    Conversation.objects.filter(pk=conversation.pk).update(updated_at=timezone.now())
    return reply


def do_select_version(message: Message) -> None:
    Message.objects.filter(pk=message.pk).update(selected_at=timezone.now())


def do_mark_streaming(reply_id: int) -> bool:
    return Message.objects.transition(reply_id, Message.Status.STREAMING, heartbeat_at=timezone.now())


def do_save_progress(reply_id: int, content: str, retries: int) -> bool:
    """Persist the text so far; False when the reply should stop (Stop asked, or ended)."""
    return bool(
        Message.objects.active()
        .filter(pk=reply_id, stop_requested_at__isnull=True)
        .update(content=content, retries=retries, heartbeat_at=timezone.now())
    )


def do_save_progress_many(batch: list[tuple[int, str, int]]) -> list[int]:
    """Persist several replies' text in one transaction; the ids that should stop."""
    with transaction.atomic():
        return [
            reply_id
            for reply_id, content, retries in batch
            if not do_save_progress(reply_id, content, retries)
        ]


def do_finish_reply(reply_id: int, status: str, **fields: Any) -> bool:
    return Message.objects.transition(reply_id, status, heartbeat_at=None, **fields)


def do_request_stop(reply: Message) -> bool:
    return bool(
        Message.objects.active()
        .filter(pk=reply.pk, stop_requested_at__isnull=True)
        .update(stop_requested_at=timezone.now())
    )


def do_interrupt_stale_replies() -> list[Message]:
    """Replies whose worker stopped beating (a crash): ``interrupted``, text kept."""
    cutoff = timezone.now() - timedelta(seconds=settings.CHAT_STALE_AFTER)
    stale = list(Message.objects.active().filter(heartbeat_at__lt=cutoff))
    return [
        m
        for m in stale
        if do_finish_reply(
            m.pk, Message.Status.INTERRUPTED, error="The server stopped while writing this reply."
        )
    ]


# Broadcasts


async def _group_send(conversation_id: int, message: dict[str, Any]) -> None:
    await get_channel_layer().group_send(conversation_group(conversation_id), message)


async def notify_messages_added(conversation_id: int, *messages: Message) -> None:
    await _group_send(conversation_id, {"type": "chat.messages_added", "ids": [m.pk for m in messages]})


async def notify_delta(conversation_id: int, reply_id: int, offset: int, text: str) -> None:
    await _group_send(
        conversation_id, {"type": "reply.delta", "id": reply_id, "offset": offset, "text": text}
    )


async def notify_status(conversation_id: int, reply_id: int, note: str) -> None:
    await _group_send(conversation_id, {"type": "reply.note", "id": reply_id, "note": note})


async def notify_final(conversation_id: int, reply_id: int) -> None:
    await _group_send(conversation_id, {"type": "reply.final", "id": reply_id})


async def notify_thread_changed(conversation_id: int) -> None:
    """Another version was made or chosen: every page redraws the messages it shows."""
    await _group_send(conversation_id, {"type": "chat.thread_changed"})


async def notify_sidebar(user_id: int) -> None:
    await get_channel_layer().group_send(user_group(user_id), {"type": "sidebar.changed"})


# What the edges call


async def send_message(
    conversation: Conversation, text: str, *, client_id: str = "", image_url: str = ""
) -> Message | None:
    """Store the message and a pending reply, then start generating it in this process.

    Raises ``ChatError`` for bad input; returns None for a repeated ``client_id``.
    """
    text, image_url = check_message(text, image_url)
    check_image(conversation, image_url)
    write = partial(do_start_reply, conversation, text, client_id=client_id, image_url=image_url)
    return await _start(conversation, write, append=True)


async def regenerate_reply(
    conversation: Conversation, reply_id: int, *, client_id: str = ""
) -> Message | None:
    """A new version of a reply (Regenerate, and Retry after a failure); the others are kept."""
    reply = await database_sync_to_async(check_branch)(conversation, reply_id, Message.Role.ASSISTANT)
    if reply.parent_id is None:
        raise ChatError("That reply answers no message, so it cannot be written again.")
    return await _start(
        conversation, partial(do_add_reply, conversation, reply.parent_id, client_id=client_id)
    )


async def continue_reply(conversation: Conversation, reply_id: int, *, client_id: str = "") -> Message | None:
    """A reply that goes on from one the token limit cut off."""
    reply = await database_sync_to_async(check_branch)(conversation, reply_id, Message.Role.ASSISTANT)
    if reply.finish_reason != "length":
        raise ChatError("Only a reply cut off by the token limit can be continued.")
    return await _start(conversation, partial(do_add_reply, conversation, reply.pk, client_id=client_id))


async def edit_and_resend(
    conversation: Conversation, message_id: int, text: str, *, client_id: str = ""
) -> Message | None:
    """A new version of the person's message, answered afresh.

    What followed the old version stays on its branch, one click away.
    """
    text, _ = check_message(text)
    original = await database_sync_to_async(check_branch)(conversation, message_id, Message.Role.USER)
    write = partial(
        do_add_turn, conversation, original.parent_id, text, original.image_url, client_id=client_id
    )
    return await _start(conversation, write)


async def _start(
    conversation: Conversation, write: Callable[..., Any], *, append: bool = False
) -> Message | None:
    """Run ``write(worker_channel=...)``, start the reply it made here, and show it.

    A new turn at the end is appended to the pages; anything else redraws them.
    """
    from chat.generation import get_runner

    runner = get_runner()
    worker_channel = await runner.channel_name()
    started = await database_sync_to_async(_checked_write)(conversation.owner_id, write, worker_channel)
    if started is None:
        return None
    created, reply, job = started
    runner.launch(reply, job)
    if append:
        await notify_messages_added(conversation.pk, *created)
    else:
        await notify_thread_changed(conversation.pk)
    await notify_sidebar(conversation.owner_id)
    return reply


def _checked_write(
    owner_id: int, write: Callable[..., Any], worker_channel: str
) -> tuple[Message | tuple[Message, Message], Message, Job] | None:
    """The person's limits, the write, its reply and what that is generated from, in one
    trip to the database thread: every trip is time before the reply's first token."""
    from chat.budgets import check_budget
    from chat.generation import load_job

    check_budget(owner_id)
    check_rate(owner_id)
    created = write(worker_channel=worker_channel)
    if created is None:
        return None
    reply = created[-1] if isinstance(created, tuple) else created
    return created, reply, load_job(reply)


async def select_version(conversation: Conversation, message_id: int) -> None:
    message = await database_sync_to_async(check_branch)(conversation, message_id)
    await database_sync_to_async(do_select_version)(message)
    await notify_thread_changed(conversation.pk)


async def stop_reply(reply: Message) -> None:
    """Ask the worker that owns ``reply`` to stop it, wherever that worker runs."""
    if await database_sync_to_async(do_request_stop)(reply):
        await notify_stop_requested(reply)


async def notify_stop_requested(reply: Message) -> None:
    # The request is recorded first, so a dropped channel message still takes effect at
    # the owner's next heartbeat.
    await tell_owner_to_stop(reply.conversation_id, reply.pk, reply.worker_channel)


async def tell_owner_to_stop(conversation_id: int, reply_id: int, worker_channel: str) -> None:
    """Show "Stopping…" and ask the worker that owns the reply to stop it; repeats are harmless.

    The note is sent first, so it is queued for every page ahead of the final frame the
    stop leads to.
    """
    await notify_status(conversation_id, reply_id, "Stopping…")
    with contextlib.suppress(ChannelFull):
        await get_channel_layer().send(worker_channel, {"type": "reply.stop", "id": reply_id})


async def interrupt_stale_replies() -> None:
    await notify_interrupted(await database_sync_to_async(do_interrupt_stale_replies)())


async def notify_interrupted(replies: list[Message]) -> None:
    for reply in replies:
        logger.warning("reply %s interrupted: its worker stopped beating", reply.pk)
        await notify_final(reply.conversation_id, reply.pk)
