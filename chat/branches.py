"""Branches of a conversation: which messages the page shows, and the versions of each.

Every message but a first one follows a ``parent``; siblings (one parent) are versions of
one turn: a regenerated reply, an edited message and what followed it. The page shows one
path from a first message down, taking at each step the sibling chosen last
(``selected_at``), so choosing a version anywhere brings back that version's own later
messages. A reply's history is its ancestors, so it never sees another branch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from chat import attachments, feedback, sql
from chat.models import Attachment, Message
from chat.providers.base import Image, Turn

# Sent after a reply cut off by the token limit, so every dialect gets a person's turn last.
CONTINUE_PROMPT = "Continue exactly where your last reply stopped, without repeating any of it."


@dataclass(frozen=True)
class Versions:
    index: int  # from 1
    count: int
    previous_id: int | None
    next_id: int | None


@dataclass(frozen=True)
class Shape:
    """The visible path (ids, first to last) and the versions of each message on it."""

    path: list[int]
    versions: dict[int, Versions]

    @property
    def last(self) -> int | None:
        return self.path[-1] if self.path else None


# Read with every message sent and every reply's end (``chat.sql``), in the model's order.
IN_ORDER = f"FROM {Message._meta.db_table} WHERE conversation_id = %s ORDER BY created_at, id"
MESSAGES = f"SELECT * {IN_ORDER}"
SHAPE = f"SELECT id, parent_id, selected_at {IN_ORDER}"


def shape_of(conversation_id: int) -> Shape:
    # ``selected_at`` as the database gives it: a datetime, or SQLite's text of one, whose
    # fixed form (``YYYY-MM-DD HH:MM:SS[.ffffff]``, in UTC) sorts as the datetimes do.
    return _shape(sql.rows(SHAPE, [conversation_id]))


def _shape(rows: list[tuple[int, int | None, object]]) -> Shape:
    # Rows come in message order (created_at, pk), so siblings stay in the order they were made.
    if not any(parent for _, parent, _ in rows):
        # Messages stored without parents (made outside chat.services) read as one line.
        ids = [pk for pk, _, _ in rows]
        return Shape(ids, {pk: Versions(1, 1, None, None) for pk in ids})
    children: dict[int | None, list[tuple[int, object]]] = defaultdict(list)
    for pk, parent, selected_at in rows:
        children[parent].append((pk, selected_at))
    path: list[int] = []
    versions: dict[int, Versions] = {}
    parent: int | None = None
    while siblings := children.get(parent):
        chosen = max(range(len(siblings)), key=lambda i: (siblings[i][1], siblings[i][0]))
        pk = siblings[chosen][0]
        versions[pk] = Versions(
            chosen + 1,
            len(siblings),
            siblings[chosen - 1][0] if chosen > 0 else None,
            siblings[chosen + 1][0] if chosen + 1 < len(siblings) else None,
        )
        path.append(pk)
        parent = pk
    return Shape(path, versions)


def annotate(messages: Iterable[Message], shape: Shape, *, rated: bool = True) -> list[Message]:
    """Give each message what its template shows: ``versions``, ``is_last`` and
    ``feedback_given`` (``chat.feedback``; ``rated=False``: none can have any yet)."""
    messages = list(messages)
    for message in messages:
        message.versions = shape.versions.get(message.pk)
        message.is_last = message.pk == shape.last
    if rated:
        feedback.attach(messages)
    else:
        for message in messages:
            message.feedback_given = None
    return messages


def visible_path(conversation_id: int) -> list[Message]:
    """The messages the page shows, first to last, read in one query."""
    messages = sql.instances(Message, MESSAGES, [conversation_id])
    shape = _shape([(m.pk, m.parent_id, m.selected_at) for m in messages])
    by_id = {m.pk: m for m in messages}
    return annotate((by_id[pk] for pk in shape.path), shape)


def with_versions(messages: list[Message]) -> list[Message]:
    """``annotate`` for messages read on their own, one query per conversation among them."""
    for conversation_id in {m.conversation_id for m in messages}:
        annotate([m for m in messages if m.conversation_id == conversation_id], shape_of(conversation_id))
    return messages


def history_of(reply: Message) -> list[Message]:
    """The messages a reply answers: its ancestors, first to last."""
    if reply.parent_id is None:
        # Stored without a parent: the whole conversation before it.
        return list(reply.conversation.messages.filter(created_at__lte=reply.created_at).exclude(pk=reply.pk))
    by_id = Message.objects.filter(conversation_id=reply.conversation_id).in_bulk()
    history: list[Message] = []
    parent = by_id.get(reply.parent_id)
    while parent is not None:
        history.append(parent)
        parent = by_id.get(parent.parent_id)
    return history[::-1]


def turns_for(
    reply: Message, history: list[Message] | None = None, *, images_as_data: bool = True
) -> list[Turn]:
    """What the model is sent for ``reply``, whose ancestors are ``history`` (read when None).

    Failed replies and empty messages are left out; a reply and its continuations are one
    turn; a continuation (its parent is a reply) ends with a request to go on. Attached
    documents join their message's text; attached images go as data, or as signed
    addresses where the dialect takes no data (``chat.attachments``).
    """
    history = history_of(reply) if history is None else history
    files = attachments.files_of([m for m in history if m.attachments])
    turns: list[Turn] = []
    for message in history:
        if not (message.content or message.attachments) or message.status == Message.Status.ERROR:
            continue
        if turns and message.role == turns[-1].role == "assistant":
            turns[-1] = Turn("assistant", turns[-1].content + message.content)
        elif found := files.get(message.pk):
            content = attachments.with_documents(message.content, found)
            images = tuple(
                Image(a.name, attachments.image_reference(a, images_as_data))
                for a in found
                if a.kind == Attachment.Kind.IMAGE
            )
            turns.append(Turn(str(message.role), content, message.image_url, images))
        else:
            turns.append(Turn(str(message.role), message.content, message.image_url))
    if turns and turns[-1].role == "assistant":
        turns.append(Turn("user", CONTINUE_PROMPT))
    return turns
