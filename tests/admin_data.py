"""Data builders for the admin, export and budget tests: people, conversations, finished replies."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import Permission, User

from chat.models import Conversation, Message

# Password hashing is built to be slow; tests log in with force_login, or with this hasher.
FAST_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def make_user(username: str, *, staff: bool = False, perms: tuple[str, ...] = ()) -> User:
    """A person who logs in with ``force_login``; ``perms`` are strings like ``chat.view_transcript``."""
    user = User.objects.create_user(username, password=None, is_staff=staff)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


def make_conversation(owner: User, title: str = "A chat", **fields: Any) -> Conversation:
    return Conversation.objects.create(
        owner=owner,
        title=title,
        provider=fields.pop("provider", "demo"),
        model=fields.pop("model", "demo-1"),
        **fields,
    )


def make_exchange(
    conversation: Conversation,
    question: str,
    answer: str,
    *,
    status: str = Message.Status.COMPLETE,
    input_tokens: int | None = 10,
    output_tokens: int | None = 20,
    cost: str | None = "0.001",
    at: datetime | None = None,
    **reply_fields: Any,
) -> tuple[Message, Message]:
    """A person's message and a finished reply; ``at`` backdates both (``auto_now_add`` ignores it)."""
    question_message = Message.objects.create(
        conversation=conversation, role=Message.Role.USER, content=question
    )
    reply = Message.objects.create(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        content=answer,
        status=status,
        provider=conversation.provider,
        model=conversation.model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost=None if cost is None else Decimal(cost),
        **reply_fields,
    )
    if at is not None:
        Message.objects.filter(pk__in=[question_message.pk, reply.pk]).update(created_at=at)
        reply.refresh_from_db()
    return question_message, reply
