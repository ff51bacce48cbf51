"""Conversations as JSON, JSON Lines, Markdown and CSV: for admins, the command line and their owners.

Every format is built from ``conversation_data``, so they all carry the same facts.
Callers pass querysets from ``with_messages`` so an export costs a fixed number of queries.
``download_mine`` is the one view here: a person's own conversations, and nobody else's.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from chat.models import Conversation, Message

MESSAGE_FIELDS = [
    "id", "parent_id", "role", "content", "reasoning", "attachments", "image_url", "status", "provider",
    "model", "parameters", "finish_reason", "error", "input_tokens", "output_tokens", "reasoning_tokens",
    "tokens_estimated", "cost", "time_to_first_token_ms", "reasoning_ms", "duration_ms", "retries",
    "created_at",
]  # fmt: skip
CSV_CONVERSATION_FIELDS = ["conversation_id", "conversation_title", "owner"]
# Spreadsheets run a cell that starts with one of these as a formula.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def with_messages(conversations: QuerySet[Conversation]) -> QuerySet[Conversation]:
    return conversations.select_related("owner").prefetch_related(
        Prefetch("messages", queryset=Message.objects.order_by("created_at", "pk"))
    )


def message_data(message: Message) -> dict[str, Any]:
    """A message's fields. Attachments are listed by reference (name, kind, size, tokens and
    the key of the file), not carried as data: an export stays text."""
    return {name: getattr(message, name) for name in MESSAGE_FIELDS}


def conversation_data(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": conversation.pk,
        "title": conversation.title,
        "owner": conversation.owner.get_username(),
        "provider": conversation.provider,
        "model": conversation.model,
        "system_prompt": conversation.system_prompt,
        "parameters": conversation.parameters,
        "created_at": conversation.created_at,
        "updated_at": conversation.updated_at,
        # Which version of a turn the page shows, so an import shows the same one (chat.imports).
        "messages": [message_data(m) | {"selected_at": m.selected_at} for m in conversation.messages.all()],
    }


def to_json(conversations: Iterable[Conversation]) -> str:
    data = {"conversations": [conversation_data(c) for c in conversations]}
    return json.dumps(data, cls=DjangoJSONEncoder, indent=2, ensure_ascii=False)


def iter_jsonl(conversations: Iterable[Conversation]) -> Iterator[str]:
    for conversation in conversations:
        yield json.dumps(conversation_data(conversation), cls=DjangoJSONEncoder, ensure_ascii=False) + "\n"


def to_markdown(conversations: Iterable[Conversation]) -> str:
    parts: list[str] = []
    for conversation in conversations:
        parts.append(
            f"# {conversation}\n\n"
            f"- Owner: {conversation.owner.get_username()}\n"
            f"- Model: {conversation.model_choice}\n"
            f"- Started: {conversation.created_at.isoformat()}\n"
        )
        if conversation.system_prompt:
            parts.append(f"- System prompt: {conversation.system_prompt}\n")
        for message in conversation.messages.all():
            parts.append(f"\n## {_heading(message)}\n\n")
            if message.reasoning:
                parts.append(f"<details><summary>Thinking</summary>\n\n{message.reasoning}\n\n</details>\n\n")
            parts.append(f"{message.content}\n")
            for file in message.attachments:
                parts.append(f"\n- Attached: {file['name']} ({file['kind']})\n")
            if message.error:
                parts.append(f"\n> Error: {message.error}\n")
        parts.append("\n---\n\n")
    return "".join(parts)


def _heading(message: Message) -> str:
    when = message.created_at.isoformat(timespec="seconds")
    if message.role == Message.Role.USER:
        return f"User · {when}"
    return f"Assistant ({message.model}, {message.status}) · {when}"


def to_csv(conversations: Iterable[Conversation]) -> str:
    """One row per message, with cells defused so a spreadsheet shows text, never runs it."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_CONVERSATION_FIELDS + [f"message_{name}" for name in MESSAGE_FIELDS])
    for conversation in conversations:
        head = [conversation.pk, conversation.title, conversation.owner.get_username()]
        for message in conversation.messages.all():
            row = head + [cell(value) for value in message_data(message).values()]
            writer.writerow(defuse(value) for value in row)
    return out.getvalue()


def cell(value: Any) -> Any:
    if isinstance(value, list):  # attachments: their names
        return "; ".join(file["name"] for file in value)
    if isinstance(value, dict):
        return json.dumps(value) if value else ""
    return value.isoformat() if hasattr(value, "isoformat") else value


def defuse(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return f"'{value}"
    return value


def download_mine(request: HttpRequest) -> HttpResponse:
    conversations = with_messages(
        Conversation.objects.filter(owner=request.user).order_by("created_at", "pk")
    )
    response = HttpResponse(to_json(conversations), content_type="application/json")
    stamp = timezone.localdate().isoformat()
    response["Content-Disposition"] = f'attachment; filename="my-conversations-{stamp}.json"'
    return response
