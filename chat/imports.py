"""Importing conversations: a file read into plans (``chat.chatgpt_format`` or
``chat.own_format``) and written as the importer's own conversations, all in one
transaction or none at all."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from chat import chatgpt_format, own_format
from chat.checks import ChatError, check_model_choice
from chat.conversations import default_model
from chat.import_formats import Plan, Refused
from chat.models import Conversation, Message
from chat.providers import parameters_of
from chat.providers.config import get_providers

BATCH = 500


@dataclass(frozen=True)
class Imported:
    conversations: list[Conversation]
    messages: int


def do_import(owner: AbstractBaseUser, data: bytes) -> Imported:
    """Raises ``ChatError`` (``Refused``) for a file it cannot read whole."""
    # One with no message to show is left out: "New chat" would reuse it as empty.
    plans = [plan for plan in read(data) if plan.messages]
    now = timezone.now()
    with transaction.atomic():
        conversations = [_write(owner, plan, now) for plan in plans]
    return Imported(conversations, sum(len(plan.messages) for plan in plans))


def read(data: bytes) -> list[Plan]:
    """The plans of a file in either format, told apart by its shape."""
    try:
        document = json.loads(data)
    except RecursionError:
        raise Refused("The file is nested too deeply to be an export.") from None
    except ValueError as exc:
        raise Refused(f"The file is not JSON ({exc}).") from None
    if isinstance(document, dict) and isinstance(document.get("conversations"), list):
        conversations, reader = document["conversations"], own_format.conversation
    elif isinstance(document, list) and all(isinstance(c, dict) and "mapping" in c for c in document):
        conversations, reader = document, chatgpt_format.conversation
    else:
        raise Refused(
            "The file is neither a ChatGPT export (conversations.json) nor one of this app's exports."
        )
    if not conversations:
        raise Refused("The file holds no conversations.")
    return [reader(item, f"Conversation {n}") for n, item in enumerate(conversations, 1)]


def _write(owner: AbstractBaseUser, plan: Plan, now: datetime) -> Conversation:
    try:
        provider, model = check_model_choice(f"{plan.provider}/{plan.model}")
    except ChatError:
        provider, model = default_model()
    # Only what this model's dialect takes, as the settings form keeps.
    offered = {p.name for p in parameters_of(get_providers().get(provider))}
    conversation = Conversation.objects.create(
        owner=owner,
        title=" ".join(plan.title.split())[:200],
        provider=provider,
        model=model,
        system_prompt=plan.system_prompt,
        parameters={name: v for name, v in plan.parameters.items() if name in offered},
    )
    started = plan.created_at or now
    messages = Message.objects.bulk_create(
        [Message(conversation=conversation, **entry.fields) for entry in plan.messages], batch_size=BATCH
    )
    # Parents and times after the rows exist: a parent needs its id, and the auto times
    # are only set aside by an update.
    by_key = {entry.key: message for entry, message in zip(plan.messages, messages, strict=True)}
    for entry, message in zip(plan.messages, messages, strict=True):
        message.parent = by_key[entry.parent] if entry.parent is not None else None
        message.created_at = message.updated_at = entry.created_at or started
        # Never after now: a later choice of another version must win.
        message.selected_at = min(entry.selected_at or message.created_at, now)
    Message.objects.bulk_update(
        messages, ["parent", "created_at", "updated_at", "selected_at"], batch_size=BATCH
    )
    conversation.created_at, conversation.updated_at = started, plan.updated_at or started
    Conversation.objects.filter(pk=conversation.pk).update(
        created_at=conversation.created_at, updated_at=conversation.updated_at
    )
    return conversation
