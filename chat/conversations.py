"""Whole conversations: create, settings, rename, delete, and search.

Called from the views (sync); a change the sidebar shows is broadcast to every page of
its owner with ``broadcast.sidebar_changed``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q

from chat import broadcast, replies
from chat.checks import ChatError, check_model_choice
from chat.models import Conversation, Message
from chat.providers import DIALECTS
from chat.providers.config import get_providers
from chat.providers.parameters import check_values

SEARCH_RESULTS = 30
SNIPPET_CONTEXT = 40


def create_conversation(owner: AbstractBaseUser, model_choice: str = "") -> Conversation:
    """A new conversation, or the owner's newest one if it is still empty."""
    empty = Conversation.objects.filter(owner=owner, messages__isnull=True, archived_at=None).first()
    if empty:
        return empty
    provider, model = check_model_choice(model_choice) if model_choice else default_model()
    return Conversation.objects.create(owner=owner, provider=provider, model=model)


def default_model() -> tuple[str, str]:
    provider = next(iter(get_providers().values()))
    return provider.name, provider.models[0].name


def do_update_settings(
    conversation: Conversation, model_choice: str, system_prompt: str, parameters: Mapping[str, str]
) -> None:
    """``parameters``: the form's values; an empty one means the default. Those the
    chosen model's dialect has no field for are dropped."""
    provider, model = check_model_choice(model_choice)
    try:
        values = check_values(parameters, DIALECTS[get_providers()[provider].dialect].PARAMETERS)
    except ValueError as exc:
        raise ChatError(str(exc)) from None
    conversation.provider, conversation.model = provider, model
    conversation.system_prompt = system_prompt.strip()
    conversation.parameters = values
    conversation.save(update_fields=["provider", "model", "system_prompt", "parameters", "updated_at"])


def do_rename_conversation(conversation: Conversation, title: str) -> None:
    title = " ".join(title.split())[:200]
    if not title:
        raise ChatError("A title cannot be empty.")
    conversation.title = title
    # Not updated_at: a rename does not move the conversation up the list.
    conversation.save(update_fields=["title"])


def do_delete_conversation(conversation: Conversation) -> list[Message]:
    """Delete it with its messages; returns the replies it was generating, for their workers to stop."""
    running = list(Message.objects.active().filter(conversation=conversation))
    conversation.delete()
    return running


async def notify_deleted(user_id: int, running: list[Message]) -> None:
    # A lost Stop still takes effect: the owner's next save finds no row and stops.
    await replies.stop_all(running)
    await broadcast.sidebar_changed(user_id)


@dataclass(frozen=True)
class Hit:
    conversation: Conversation
    # The text around the first match in a message: before, match, after.
    snippet: tuple[str, str, str] | None


@dataclass(frozen=True)
class Found:
    """The first ``SEARCH_RESULTS`` conversations that match, and how many match in all."""

    hits: list[Hit]
    total: int


def search(owner_id: int, query: str) -> Found:
    """The owner's conversations whose title or any message (every version) holds ``query``."""
    query = query.strip()
    if not query:
        return Found([], 0)
    matching = (
        Conversation.objects.filter(owner_id=owner_id)
        .filter(Q(title__icontains=query) | Q(messages__content__icontains=query))
        .distinct()
    )
    conversations = list(matching[:SEARCH_RESULTS])
    total = len(conversations) if len(conversations) < SEARCH_RESULTS else matching.count()
    snippets: dict[int, tuple[str, str, str]] = {}
    matches = Message.objects.filter(conversation__in=conversations, content__icontains=query).values_list(
        "conversation_id", "content"
    )
    for conversation_id, content in matches.iterator():
        if conversation_id not in snippets:
            snippets[conversation_id] = snippet(content, query)
    return Found([Hit(c, snippets.get(c.pk)) for c in conversations], total)


def snippet(text: str, query: str) -> tuple[str, str, str]:
    start = text.casefold().find(query.casefold())
    if start < 0:
        # The database matched where Python's case folding does not line up: no highlight.
        return (one_line(text[: 2 * SNIPPET_CONTEXT]), "", "")
    end = start + len(query)
    return (
        ("…" if start > SNIPPET_CONTEXT else "") + one_line(text[max(0, start - SNIPPET_CONTEXT) : start]),
        text[start:end],
        one_line(text[end : end + SNIPPET_CONTEXT]) + ("…" if end + SNIPPET_CONTEXT < len(text) else ""),
    )


def one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text)
