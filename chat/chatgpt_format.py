"""A ChatGPT data export's ``conversations.json``: a list of conversations, each a tree
of nodes in ``mapping``; several children of one node are versions of one turn (an edited
message, a regenerated reply) and ``current_node`` ends the branch that was on screen.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils import timezone

from chat.import_formats import Entry, Plan, Refused, cut_to_column, text_of, tree_order
from chat.models import Message

# Kinds of content read as text, and what a part that is not text becomes.
TEXT_TYPES = {"text", "multimodal_text"}
PART_NOTES = {"image_asset_pointer": "[image]", "audio_asset_pointer": "[audio]"}


def conversation(item: dict[str, Any], where: str) -> Plan:
    title = text_of(item.get("title"))
    where = f"{where} (“{title[:60]}”)" if title else where
    mapping = item.get("mapping")
    if not isinstance(mapping, dict) or not all(isinstance(node, dict) for node in mapping.values()):
        raise Refused(f"{where}: its mapping is not a set of message nodes.")
    parents: dict[str, str | None] = {}
    for key, node in mapping.items():
        parent = node.get("parent")
        if parent is not None and not isinstance(parent, str):
            raise Refused(f"{where}: message {key} has a parent that is not an id.")
        parents[key] = parent
    # A skipped node's children follow its nearest kept ancestor.
    kept_above: dict[str | None, str | None] = {None: None}
    entries: list[Entry] = []
    for key in tree_order(parents, where):
        above = kept_above[parents[key]]
        fields = message_fields(mapping[key].get("message"), f"{where}, message {key}")
        if fields is None:
            kept_above[key] = above
            continue
        kept_above[key] = key
        created = epoch(mapping[key]["message"].get("create_time"))
        entries.append(Entry(key, above, fields, created, created))
    current = item.get("current_node")
    shown: set[str] = set()
    node = kept_above.get(current) if isinstance(current, str) else None
    while node is not None:
        shown.add(node)
        node = kept_above[parents[node]]
    # The current branch was chosen last, now; the rest before now, whatever times the
    # file claims, so choosing another version later always wins.
    chosen_at = timezone.now()
    for entry in entries:
        if entry.key in shown:
            entry.selected_at = chosen_at
        elif entry.created_at is None or entry.created_at >= chosen_at:
            entry.selected_at = chosen_at - timedelta(seconds=1)
    return Plan(
        title=title,
        messages=entries,
        created_at=epoch(item.get("create_time")),
        updated_at=epoch(item.get("update_time")),
    )


def message_fields(message: Any, where: str) -> dict[str, Any] | None:
    """A kept message's fields; None for a node to skip: empty, hidden, a system or tool
    message, or a kind of content that is not said to the person (browsing, thoughts)."""
    if message is None:
        return None
    if not isinstance(message, dict):
        raise Refused(f"{where} is not a message.")
    author = message.get("author")
    role = author.get("role") if isinstance(author, dict) else None
    metadata = message.get("metadata") if isinstance(message.get("metadata"), dict) else {}
    if role not in (Message.Role.USER, Message.Role.ASSISTANT) or metadata.get(
        "is_visually_hidden_from_conversation"
    ):
        return None
    content = message.get("content")
    if not isinstance(content, dict):
        raise Refused(f"{where} has no content.")
    kind = content.get("content_type")
    if kind in TEXT_TYPES:
        parts = content.get("parts")
        if not isinstance(parts, list):
            raise Refused(f"{where}: its content has no parts.")
        text = "\n".join(part_text(part, kind, where) for part in parts)
    elif kind == "code" and isinstance(content.get("text"), str):
        text = f"```\n{content['text']}\n```"
    else:
        return None
    if not text.strip():
        return None
    if role == Message.Role.USER:
        return {"role": role, "content": text}
    model = metadata.get("model_slug") if isinstance(metadata.get("model_slug"), str) else ""
    return {
        "role": role,
        "content": text,
        "status": Message.Status.COMPLETE,
        "provider": "chatgpt",
        "model": cut_to_column("model", model or "imported"),
    }


def part_text(part: Any, kind: str, where: str) -> str:
    if isinstance(part, str):
        return part
    if kind == "multimodal_text" and isinstance(part, dict):
        return PART_NOTES.get(part.get("content_type"), "[file]")
    raise Refused(f"{where}: its content is not text.")


def epoch(value: Any) -> datetime | None:
    """A ChatGPT time (seconds since 1970); None where there is none that makes sense."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (ValueError, OverflowError, OSError):
        return None
