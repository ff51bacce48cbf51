"""Checks before a write: each raises ``ChatError`` with words for the person, or passes.

The sync ones read the database; call them from sync code or through
``database_sync_to_async``.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from chat import sql
from chat.models import Conversation, Message
from chat.providers import accepts_images
from chat.providers.config import get_providers

BUSY = "A reply is still being written here: wait for it, or press Stop, first."
# The image URL column's length.
MAX_IMAGE_URL = Message._meta.get_field("image_url").max_length

# Run with every message (``chat.sql``). A person's messages are found through their
# conversations, as ``Message.objects.filter(conversation__owner_id=...)`` finds them.
MESSAGES = Message._meta.db_table
CONVERSATIONS = Conversation._meta.db_table
ACTIVE = sql.literals(Message.ACTIVE)
RECENT_MESSAGES = f"""
    SELECT COUNT(*) FROM {MESSAGES} m JOIN {CONVERSATIONS} c ON c.id = m.conversation_id
    WHERE c.owner_id = %s AND m.role = '{Message.Role.USER}' AND m.created_at >= %s
"""
RUNNING_REPLIES = f"""
    SELECT m.id, m.conversation_id FROM {MESSAGES} m JOIN {CONVERSATIONS} c ON c.id = m.conversation_id
    WHERE c.owner_id = %s AND m.status IN ({ACTIVE})
"""
RUNNING_HERE = f"SELECT 1 FROM {MESSAGES} WHERE conversation_id = %s AND status IN ({ACTIVE}) LIMIT 1"


class ChatError(Exception):
    """Bad input from a person: shown to them, nothing is written."""


class NotFound(ChatError):
    """The conversation is not the person's, or no longer exists."""


def check_message(text: str, image_url: str = "", *, files: bool = False) -> tuple[str, str]:
    """``files``: the message carries attachments, so it may have no text."""
    text, image_url = text.strip(), image_url.strip()
    if not text and not files:
        raise ChatError("Type a message first.")
    if len(text) > settings.CHAT_MAX_MESSAGE_CHARS:
        raise ChatError(
            f"That message is {len(text):,} characters; the limit is {settings.CHAT_MAX_MESSAGE_CHARS:,}."
        )
    if image_url:
        check_image_url(image_url)
    return text, image_url


def check_image_url(url: str) -> None:
    if len(url) > MAX_IMAGE_URL:
        raise ChatError(f"The image URL is {len(url):,} characters; the limit is {MAX_IMAGE_URL:,}.")
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed IPv6 bracket, for one
        parts = None
    if parts is None or parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ChatError("The image URL must be an http:// or https:// address.")


def check_image(conversation: Conversation, image_url: str) -> None:
    provider = get_providers().get(conversation.provider)
    if image_url and provider and not accepts_images(provider, conversation.model):
        raise ChatError(
            f"{conversation.model} cannot take an image: remove the image URL or pick another model."
        )


def check_rate(user_id: int) -> None:
    """At most ``CHAT_MESSAGES_PER_MINUTE`` messages a minute per person, on every worker."""
    since = timezone.now() - timedelta(minutes=1)
    (recent,) = sql.row(RECENT_MESSAGES, [user_id, sql.timestamp(since)])
    if recent >= settings.CHAT_MESSAGES_PER_MINUTE:
        raise ChatError("You are sending messages faster than allowed; wait a minute and try again.")


def check_replies_running(conversation: Conversation, besides: int) -> None:
    """At most ``CHAT_MAX_CONCURRENT_REPLIES`` replies of one person at once, and one at a
    time in a conversation (the next turn needs the whole of this one).

    Call inside the transaction that has just added reply ``besides``, so it counts itself.
    """
    owner_id = conversation.owner_id
    if connection.features.has_select_for_update:
        # Two workers take turns here; SQLite's immediate transactions already do.
        sql.rows(f"SELECT id FROM {get_user_model()._meta.db_table} WHERE id = %s FOR UPDATE", [owner_id])
    running = sql.rows(RUNNING_REPLIES, [owner_id])
    limit = settings.CHAT_MAX_CONCURRENT_REPLIES
    if len(running) > limit:
        replies = "reply" if limit == 1 else "replies"
        raise ChatError(
            f"You already have {limit} {replies} being written, the most allowed at once. "
            "Wait for one to finish, or stop one, then try again."
        )
    conversation_id = conversation.pk
    if any(pk != besides and here == conversation_id for pk, here in running):
        raise ChatError(BUSY)


def check_branch(conversation: Conversation, message_id: int, role: str = "") -> Message:
    """The message a new version is made from or chosen; refused while a reply here runs."""
    message = Message.objects.filter(pk=message_id, conversation=conversation).first()
    if message is None or (role and message.role != role):
        raise ChatError("That message is not in this conversation.")
    check_no_reply_running(conversation)
    return message


def check_no_reply_running(conversation: Conversation) -> None:
    """One reply at a time in a conversation: the next turn needs the whole of this one."""
    if sql.row(RUNNING_HERE, [conversation.pk]):
        raise ChatError(BUSY)


def check_model_choice(choice: str) -> tuple[str, str]:
    provider_name, _, model = choice.partition("/")
    provider = get_providers().get(provider_name)
    if provider is None or provider.model(model) is None:
        raise ChatError(f"Unknown model {choice!r}.")
    return provider_name, model
