"""A reply's state after it starts: each change writes the database and tells the pages, in one call.

The writes are sync functions (transactions stay in sync code) called through
``database_sync_to_async``; the async functions here pair each with its broadcast, so
every path of a reply (done, stopped, failed, interrupted, deleted) changes state the
same way. ``stop`` is the only way to stop a reply, whoever asks: a page, a view, the
admin or a deleted conversation.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from chat import branches, broadcast, sql
from chat.database import database_sync_to_async
from chat.models import Message

logger = logging.getLogger(__name__)

STOPPING = "Stopping…"


# Writes


# One statement for every reply of the batch, run by the driver in a loop of its own: the
# ORM's per-row update cost more than the rest of a busy worker's database work together.
SAVE_PROGRESS = f"""
    UPDATE {Message._meta.db_table}
    SET content = %s, reasoning = %s, retries = %s, heartbeat_at = %s,
        status = CASE WHEN %s THEN '{Message.Status.STREAMING}' ELSE status END
    WHERE id = %s
"""


def do_save_progress_many(batch: list[tuple[int, str, str, int]]) -> dict[int, str]:
    """Persist several replies' text and thinking so far (a reply with text is
    streaming) and their heartbeat; the replies that should stop instead (Stop was asked, or they ended or
    were deleted), each with the reason it was stopped for, if one was given."""
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with transaction.atomic():
        going = set(
            Message.objects.active()
            .filter(pk__in=[reply_id for reply_id, *_ in batch], stop_requested_at__isnull=True)
            .select_for_update()
            .values_list("pk", flat=True)
        )
        rows = [
            (content, reasoning, retries, now, bool(content), reply_id)
            for reply_id, content, reasoning, retries in batch
            if reply_id in going
        ]
        if rows:
            with connection.cursor() as cursor:
                cursor.executemany(SAVE_PROGRESS, rows)
    refused = [reply_id for reply_id, *_ in batch if reply_id not in going]
    reasons = dict(Message.objects.filter(pk__in=refused).values_list("pk", "stop_reason")) if refused else {}
    return {reply_id: reasons.get(reply_id, "") for reply_id in refused}


def do_finish_reply(reply_id: int, status: str, **fields: Any) -> Message | None:
    """The final state, and the message as its final frame shows it; None when the reply
    had ended already (or was deleted).

    ``Message.objects.transition`` written out, with the row it leaves read back in the
    same statement (``chat.sql``): it runs with every reply's end."""
    ended = f"id = %s AND status IN ({sql.literals(Message.statuses_before(status))})"
    values = {"status": status, "updated_at": timezone.now(), "heartbeat_at": None, **fields}
    message = sql.update(Message, values, ended, [reply_id])
    if message is None:
        return None
    # Feedback is given on a reply that has ended: this one, only now.
    return branches.annotate([message], branches.shape_of(message.conversation_id), rated=False)[0]


# Written with every Stop (``chat.sql``).
REQUEST_STOP = f"""
    UPDATE {Message._meta.db_table} SET stop_requested_at = %s, stop_reason = %s
    WHERE id = %s AND status IN ({sql.literals(Message.ACTIVE)}) AND stop_requested_at IS NULL
"""


def do_request_stop(reply_id: int, reason: str = "") -> bool:
    return bool(sql.execute(REQUEST_STOP, [sql.timestamp(timezone.now()), reason[:200], reply_id]))


def do_interrupt_stale_replies() -> list[Message]:
    """Replies whose worker stopped beating (a crash): ``interrupted``, text kept."""
    cutoff = timezone.now() - timedelta(seconds=settings.CHAT_STALE_AFTER)
    stale = list(Message.objects.active().filter(heartbeat_at__lt=cutoff))
    return [
        m
        for m in stale
        if Message.objects.transition(
            m.pk,
            Message.Status.INTERRUPTED,
            heartbeat_at=None,
            error="The server stopped while writing this reply.",
        )
    ]


# Changes, each written and told


async def finish(reply_id: int, conversation_id: int, status: str, **fields: Any) -> Message | None:
    message = await database_sync_to_async(do_finish_reply)(reply_id, status, **fields)
    await broadcast.final(conversation_id, reply_id)
    return message


async def stop(reply_id: int, conversation_id: int, worker_channel: str, reason: str = "") -> None:
    """Stop a reply wherever it runs; repeats are harmless. ``reason``: why, when it was
    not the person's own Stop; the reply keeps it as its note.

    The owner is told first, and at once, so the upstream is closed without waiting on
    the database; the request is recorded after, so a lost message still takes effect at
    the owner's next save (within ``CHAT_PERSIST_INTERVAL``). "Stopping…" is sent before
    either, so it reaches every page ahead of the final frame the stop leads to.
    """
    await broadcast.note(conversation_id, reply_id, STOPPING)
    await broadcast.to_owner(worker_channel, broadcast.STOP, reply_id, reason=reason)
    # Not database_sync_to_async: from a view (through async_to_sync) this runs in the
    # view's own thread, whose connection must stay open for the rest of the request.
    await sync_to_async(do_request_stop)(reply_id, reason)


async def stop_all(replies: list[Message], reason: str = "") -> None:
    for reply in replies:
        await stop(reply.pk, reply.conversation_id, reply.worker_channel, reason)


async def interrupt_stale() -> None:
    await interrupted(await database_sync_to_async(do_interrupt_stale_replies)())


async def interrupted(replies: list[Message]) -> None:
    for reply in replies:
        logger.warning(
            "reply %s interrupted: its worker stopped beating",
            reply.pk,
            extra={"reply": reply.pk, "conversation": reply.conversation_id},
        )
        await broadcast.final(reply.conversation_id, reply.pk)
