"""What starts a reply: a message sent, a reply regenerated or continued, a message edited.

Each is one path (``_start``): the person's limits, the write and what the reply is
generated from are read in one trip to the database thread, the reply starts in this
process's runner, and the pages are told. Choosing another version is here too: like the
others, it changes which messages the pages show.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from chat import attachments, branches, broadcast, sql
from chat.access import EXPIRED, SignedOut, signed_in
from chat.budgets import check_budget
from chat.checks import (
    ChatError,
    NotFound,
    check_branch,
    check_image,
    check_message,
    check_rate,
    check_replies_running,
)
from chat.database import database_sync_to_async
from chat.generation import Job, load_job
from chat.models import Conversation, Message, UsageBudget
from chat.providers import reply_parameters
from chat.providers.config import get_providers
from chat.runner import get_runner
from chat.titles import first_words

__all__ = ["ChatError", "NotFound", "Started"]


@dataclass(frozen=True)
class Started:
    """A reply started: the messages it added (the person's, when one was sent, and the
    reply)."""

    messages: list[Message]

    @property
    def reply(self) -> Message:
        return self.messages[-1]


# Run with every message (``chat.sql``).
CONVERSATIONS = Conversation._meta.db_table
# The person's conversation, and whether they have a budget (``check_budget`` reads it then).
CONVERSATION = f"""
    SELECT c.*, b.id AS budget_id FROM {CONVERSATIONS} c
    LEFT JOIN {UsageBudget._meta.db_table} b ON b.user_id = c.owner_id
    WHERE c.id = %s AND c.owner_id = %s
"""
# Another of the person's conversations at or above this one in the sidebar.
BELOW_ANOTHER = f"SELECT 1 FROM {CONVERSATIONS} WHERE owner_id = %s AND updated_at >= %s AND id <> %s LIMIT 1"
# Conditional: a title the model or the person wrote meanwhile stays.
TOUCH = f"""
    UPDATE {CONVERSATIONS} SET updated_at = %s, title = CASE WHEN title = '' THEN %s ELSE title END
    WHERE id = %s RETURNING title
"""


# Writes


def do_start_reply(
    conversation: Conversation, text: str, *, client_id: str, worker_channel: str, image_url: str = ""
) -> tuple[Message, Message] | None:
    """The person's message after the last one shown, and a pending reply.

    None when ``client_id`` was seen before; ``ChatError`` past the concurrent reply cap or
    while a reply in this conversation is still being written. The reply carries its
    ``history`` (read here anyway), so what it is generated from needs no second read.
    """
    try:
        # No savepoint of its own (two statements more, two round trips on PostgreSQL): a
        # repeat rolls back whatever transaction holds this one, in which nothing is
        # written before it (``send_message``).
        with transaction.atomic(savepoint=False):
            path = branches.visible_path(conversation.pk)
            # A conversation's first message is its title until the model writes one.
            message, reply = _add_turn(
                conversation,
                path[-1].pk if path else None,
                text,
                image_url,
                client_id=client_id,
                worker_channel=worker_channel,
                title=first_words(text),
            )
    except IntegrityError:  # the unique client_id: a repeat, silent before any limit
        return None
    reply.history = [*path, message]
    return message, reply


def do_add_turn(
    conversation: Conversation,
    parent_id: int | None,
    text: str,
    image_url: str = "",
    *,
    client_id: str,
    worker_channel: str,
) -> tuple[Message, Message] | None:
    """The person's message after ``parent_id``, and a pending reply; None when
    ``client_id`` was seen before."""
    try:
        with transaction.atomic():
            return _add_turn(
                conversation, parent_id, text, image_url, client_id=client_id, worker_channel=worker_channel
            )
    except IntegrityError:
        return None


def _add_turn(
    conversation: Conversation,
    parent_id: int | None,
    text: str,
    image_url: str,
    *,
    client_id: str,
    worker_channel: str,
    title: str = "",
) -> tuple[Message, Message]:
    message = sql.insert(
        Message(
            conversation=conversation,
            parent_id=parent_id,
            role=Message.Role.USER,
            content=text,
            image_url=image_url,
            client_id=client_id,
        )
    )
    return message, _add_reply(conversation, message.pk, worker_channel, title=title)


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
    conversation: Conversation, parent_id: int, worker_channel: str, client_id: str = "", title: str = ""
) -> Message:
    """A pending reply; ``title`` names a conversation that has none yet."""
    reply = sql.insert(
        Message(
            conversation=conversation,
            parent_id=parent_id,
            role=Message.Role.ASSISTANT,
            status=Message.Status.PENDING,
            provider=conversation.provider,
            model=conversation.model,
            parameters=reply_parameters(get_providers().get(conversation.provider), conversation.parameters),
            worker_channel=worker_channel,
            heartbeat_at=timezone.now(),
            client_id=client_id,
        )
    )
    check_replies_running(conversation, besides=reply.pk)
    # Whether the person's sidebar changes: one below another moves to the top of the
    # list, and a conversation without a title takes one from its first message (alone,
    # its link is drawn again, not the sidebar). (Inside the transaction that holds the
    # person's row, so two sends cannot both miss a move.)
    since = sql.timestamp(conversation.updated_at)
    reply.moves_sidebar = bool(sql.row(BELOW_ANOTHER, [conversation.owner_id, since, conversation.pk]))
    touched = sql.row(TOUCH, [sql.timestamp(timezone.now()), title, conversation.pk])
    reply.retitled = touched[0] if touched is not None and touched[0] != conversation.title else None
    return reply


def do_select_version(message: Message) -> None:
    Message.objects.filter(pk=message.pk).update(selected_at=timezone.now())


# What the edges call


async def send_message(
    owner_id: int,
    conversation_id: int,
    text: str,
    *,
    client_id: str = "",
    image_url: str = "",
    files: list[str] | None = None,
    session_key: str | None = None,
) -> Started | None:
    """Store the message and a pending reply, then start generating it in this process.
    ``files``: the keys of uploads the message carries (``chat.attachments``).

    Raises ``ChatError`` for bad input (``NotFound`` for a conversation that is not the
    person's, or gone); returns None for a repeated ``client_id``.
    """
    text, image_url = check_message(text, image_url, files=bool(files))

    def write(conversation: Conversation, worker_channel: str) -> tuple[Message, Message] | None:
        check_image(conversation, image_url)
        uploads = attachments.check_attachments(conversation, files or [])
        with transaction.atomic():
            started = do_start_reply(
                conversation, text, client_id=client_id, worker_channel=worker_channel, image_url=image_url
            )
            if started is not None:
                attachments.do_attach(started[0], uploads)
        return started

    return await _start(owner_id, conversation_id, write, append=True, session_key=session_key)


async def regenerate_reply(
    owner_id: int, conversation_id: int, reply_id: int, *, client_id: str = "", session_key: str | None = None
) -> Started | None:
    """A new version of a reply (Regenerate, and Retry after a failure); the others are kept."""

    def write(conversation: Conversation, worker_channel: str) -> Message | None:
        reply = check_branch(conversation, reply_id, Message.Role.ASSISTANT)
        if reply.parent_id is None:
            raise ChatError("That reply answers no message, so it cannot be written again.")
        return do_add_reply(conversation, reply.parent_id, client_id=client_id, worker_channel=worker_channel)

    return await _start(owner_id, conversation_id, write, session_key=session_key)


async def continue_reply(
    owner_id: int, conversation_id: int, reply_id: int, *, client_id: str = "", session_key: str | None = None
) -> Started | None:
    """A reply that goes on from one the token limit cut off."""

    def write(conversation: Conversation, worker_channel: str) -> Message | None:
        reply = check_branch(conversation, reply_id, Message.Role.ASSISTANT)
        if reply.finish_reason != "length":
            raise ChatError("Only a reply cut off by the token limit can be continued.")
        return do_add_reply(conversation, reply.pk, client_id=client_id, worker_channel=worker_channel)

    return await _start(owner_id, conversation_id, write, session_key=session_key)


async def edit_and_resend(
    owner_id: int,
    conversation_id: int,
    message_id: int,
    text: str,
    *,
    client_id: str = "",
    session_key: str | None = None,
) -> Started | None:
    """A new version of the person's message, answered afresh.

    What followed the old version stays on its branch, one click away.
    """

    def write(conversation: Conversation, worker_channel: str) -> tuple[Message, Message] | None:
        original = check_branch(conversation, message_id, Message.Role.USER)
        # Its files go with the new version; with them, the text may be left empty.
        checked, _ = check_message(text, files=bool(original.attachments))
        started = do_add_turn(
            conversation,
            original.parent_id,
            checked,
            original.image_url,
            client_id=client_id,
            worker_channel=worker_channel,
        )
        if started is not None and original.attachments:
            attachments.do_copy(original.attachments, conversation.owner_id, started[0])
        return started

    return await _start(owner_id, conversation_id, write, session_key=session_key)


Write = Callable[[Conversation, str], "Message | tuple[Message, Message] | None"]


async def _start(
    owner_id: int, conversation_id: int, write: Write, *, append: bool = False, session_key: str | None
) -> Started | None:
    """Run ``write(conversation, worker_channel)``, start the reply it made here, show it.

    A new turn at the end is appended to the pages; anything else redraws them. The
    sidebars are redrawn only when the reply changed them (``_add_reply``).
    """
    runner = get_runner()
    worker_channel = await runner.channel_name()
    checked = await database_sync_to_async(_checked_write)(
        owner_id, conversation_id, write, worker_channel, session_key
    )
    if checked is None:
        return None
    messages, job = checked
    started = Started(messages)
    runner.launch(started.reply, job)
    if append:
        # Drawn on the pages here from what the write returned, then told to the others
        # (the pages here skip what they drew): through Redis, a page here could hear of
        # them first, while the send waits on Redis, and read them back.
        await runner.show_added(conversation_id, messages)
        await broadcast.messages_added(conversation_id, [m.pk for m in messages])
    else:
        await broadcast.thread_changed(conversation_id)
    if started.reply.moves_sidebar:
        await broadcast.sidebar_changed(owner_id)
    elif started.reply.retitled is not None:
        await broadcast.sidebar_changed(owner_id, retitled=(conversation_id, started.reply.retitled))
    return started


def _checked_write(
    owner_id: int, conversation_id: int, write: Write, worker_channel: str, session_key: str | None
) -> tuple[list[Message], Job] | None:
    """The person's session, the conversation as it is now (its model and system prompt),
    the person's limits, the write, and what its reply is generated from, in one trip to
    the database thread: every trip is time before the reply's first token.

    ``session_key``: the session a socket opened with, checked again (``chat.access``).
    """
    check_signed_in(session_key, owner_id)
    conversation = get_conversation(owner_id, conversation_id)
    if conversation.budget_id is not None:
        check_budget(owner_id)
    check_rate(owner_id)
    created = write(conversation, worker_channel)
    if created is None:
        return None
    messages = list(created) if isinstance(created, tuple) else [created]
    # As the newest turn shows them, one version each, when they are appended.
    for message in messages:
        message.versions = branches.Versions(1, 1, None, None)
        message.is_last = message is messages[-1]
    return messages, load_job(messages[-1], getattr(messages[-1], "history", None))


def check_signed_in(session_key: str | None, owner_id: int) -> None:
    """Raise ``SignedOut`` when the session has ended; None (a socket opened without a
    cookie, as in the consumer tests) is not checked."""
    if session_key is not None and not signed_in(session_key, owner_id):
        raise SignedOut(EXPIRED)


def get_conversation(owner_id: int, conversation_id: int) -> Conversation:
    """The person's conversation; its ``budget_id`` says whether they have a budget."""
    conversation = sql.instance(Conversation, CONVERSATION, [conversation_id, owner_id])
    if conversation is None:
        raise NotFound("That conversation is gone.")
    return conversation


async def select_version(
    owner_id: int, conversation_id: int, message_id: int, *, session_key: str | None = None
) -> None:
    def select() -> None:
        check_signed_in(session_key, owner_id)
        do_select_version(check_branch(get_conversation(owner_id, conversation_id), message_id))

    await database_sync_to_async(select)()
    await broadcast.thread_changed(conversation_id)
