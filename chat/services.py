"""Verb-named changes to conversations and replies; each writes, then broadcasts.

Writes are sync functions (transactions stay in sync code); the async functions the
consumer and the runner call wrap them with ``database_sync_to_async`` and then tell the
conversation's group, so every path of a reply changes state the same way.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from chat.models import Conversation, Message
from chat.providers.config import get_providers

logger = logging.getLogger(__name__)


class ChatError(Exception):
    """Bad input from a person: shown to them, nothing is written."""


def conversation_group(conversation_id: int) -> str:
    return f"conversation-{conversation_id}"


# Checks


def check_message(text: str, image_url: str = "") -> tuple[str, str]:
    text, image_url = text.strip(), image_url.strip()
    if not text:
        raise ChatError("Type a message first.")
    if len(text) > settings.CHAT_MAX_MESSAGE_CHARS:
        raise ChatError(
            f"That message is {len(text):,} characters; the limit is {settings.CHAT_MAX_MESSAGE_CHARS:,}."
        )
    if image_url and (urlsplit(image_url).scheme not in {"http", "https"} or not urlsplit(image_url).netloc):
        raise ChatError("The image URL must be an http:// or https:// address.")
    return text, image_url


def check_rate(user_id: int) -> None:
    """At most ``CHAT_MESSAGES_PER_MINUTE`` messages a minute per person, on every worker."""
    since = timezone.now() - timedelta(minutes=1)
    recent = Message.objects.filter(
        conversation__owner_id=user_id, role=Message.Role.USER, created_at__gte=since
    ).count()
    if recent >= settings.CHAT_MESSAGES_PER_MINUTE:
        raise ChatError("You are sending messages faster than allowed; wait a minute and try again.")


def check_model_choice(choice: str) -> tuple[str, str]:
    provider_name, _, model = choice.partition("/")
    provider = get_providers().get(provider_name)
    if provider is None or provider.model(model) is None:
        raise ChatError(f"Unknown model {choice!r}.")
    return provider_name, model


# Writes


def create_conversation(owner: AbstractBaseUser, model_choice: str = "") -> Conversation:
    """A new conversation, or the owner's newest one if it is still empty."""
    empty = Conversation.objects.filter(owner=owner, messages__isnull=True).first()
    if empty:
        return empty
    provider, model = check_model_choice(model_choice) if model_choice else _default_model()
    return Conversation.objects.create(owner=owner, provider=provider, model=model)


def _default_model() -> tuple[str, str]:
    provider = next(iter(get_providers().values()))
    return provider.name, provider.models[0].name


def do_update_settings(conversation: Conversation, model_choice: str, system_prompt: str) -> None:
    conversation.provider, conversation.model = check_model_choice(model_choice)
    conversation.system_prompt = system_prompt.strip()
    conversation.save(update_fields=["provider", "model", "system_prompt", "updated_at"])


def do_start_reply(
    conversation: Conversation, text: str, *, client_id: str, worker_channel: str, image_url: str = ""
) -> tuple[Message, Message] | None:
    """The person's message and a pending reply; None when ``client_id`` was seen before."""
    try:
        with transaction.atomic():
            user_message = Message.objects.create(
                conversation=conversation,
                role=Message.Role.USER,
                content=text,
                image_url=image_url,
                client_id=client_id,
            )
            reply = Message.objects.create(
                conversation=conversation,
                role=Message.Role.ASSISTANT,
                status=Message.Status.PENDING,
                provider=conversation.provider,
                model=conversation.model,
                worker_channel=worker_channel,
                heartbeat_at=timezone.now(),
            )
            if not conversation.title:
                conversation.title = text[:60]
            conversation.save(update_fields=["title", "updated_at"])
    except IntegrityError:
        return None
    return user_message, reply


def do_mark_streaming(reply_id: int) -> bool:
    return Message.objects.transition(reply_id, Message.Status.STREAMING, heartbeat_at=timezone.now())


def do_save_progress(reply_id: int, content: str, retries: int) -> bool:
    """Persist the text so far; False when the reply should stop (Stop asked, or ended)."""
    return bool(
        Message.objects.active()
        .filter(pk=reply_id, stop_requested_at__isnull=True)
        .update(content=content, retries=retries, heartbeat_at=timezone.now())
    )


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


# What the edges call


async def send_message(
    conversation: Conversation, text: str, *, client_id: str = "", image_url: str = ""
) -> Message | None:
    """Store the message and a pending reply, then start generating it in this process.

    Raises ``ChatError`` for bad input; returns None for a repeated ``client_id``.
    """
    from chat.budgets import acheck_budget
    from chat.generation import get_runner

    text, image_url = check_message(text, image_url)
    await acheck_budget(conversation.owner_id)
    await database_sync_to_async(check_rate)(conversation.owner_id)
    runner = get_runner()
    created = await database_sync_to_async(do_start_reply)(
        conversation,
        text,
        client_id=client_id,
        worker_channel=await runner.channel_name(),
        image_url=image_url,
    )
    if created is None:
        return None
    user_message, reply = created
    runner.launch(reply)
    await notify_messages_added(conversation.pk, user_message, reply)
    return reply


async def stop_reply(reply: Message) -> None:
    """Ask the worker that owns ``reply`` to stop it, wherever that worker runs."""
    if await database_sync_to_async(do_request_stop)(reply):
        await notify_stop_requested(reply)


async def notify_stop_requested(reply: Message) -> None:
    # The request is recorded first, so a dropped channel message still takes effect at
    # the owner's next heartbeat.
    await notify_status(reply.conversation_id, reply.pk, "Stopping…")
    await get_channel_layer().send(reply.worker_channel, {"type": "reply.stop", "id": reply.pk})


async def interrupt_stale_replies() -> None:
    await notify_interrupted(await database_sync_to_async(do_interrupt_stale_replies)())


async def notify_interrupted(replies: list[Message]) -> None:
    for reply in replies:
        logger.warning("reply %s interrupted: its worker stopped beating", reply.pk)
        await notify_final(reply.conversation_id, reply.pk)
