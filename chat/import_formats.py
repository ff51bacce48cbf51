"""Files people import conversations from, read into plans of what to write (``chat.imports``).

Two formats, told apart by their shape: a ChatGPT data export's ``conversations.json``
(a list of conversations, each a tree of nodes in ``mapping``) and this app's own export
(``chat.exports.to_json``: ``{"conversations": [...]}``). Nothing here touches the
database. A file is refused whole, with words naming what is wrong and where: an import
writes all of it or nothing. The files are hostile until read: trees are walked without
recursion, so a cycle or a chain a million deep costs a loop, not the stack.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils import timezone

from chat.checks import ChatError
from chat.models import Message

# Kinds of ChatGPT content read as text, and what a part that is not text becomes.
TEXT_TYPES = {"text", "multimodal_text"}
PART_NOTES = {"image_asset_pointer": "[image]", "audio_asset_pointer": "[audio]"}


class Refused(ChatError):
    """The file cannot be imported; nothing was."""


@dataclass
class Entry:
    """One message to write. ``key``: its id in the file; ``parent``: the key of the
    message it follows, which comes earlier in the plan."""

    key: str
    parent: str | None
    fields: dict[str, Any]
    created_at: datetime | None = None
    selected_at: datetime | None = None


@dataclass
class Plan:
    """One conversation to write, its messages parents first."""

    title: str
    messages: list[Entry]
    system_prompt: str = ""
    provider: str = ""
    model: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


def read(data: bytes) -> list[Plan]:
    try:
        document = json.loads(data)
    except RecursionError:
        raise Refused("The file is nested too deeply to be an export.") from None
    except ValueError as exc:
        raise Refused(f"The file is not JSON ({exc}).") from None
    if isinstance(document, dict) and isinstance(document.get("conversations"), list):
        conversations, reader = document["conversations"], own_conversation
    elif isinstance(document, list) and all(isinstance(c, dict) and "mapping" in c for c in document):
        conversations, reader = document, chatgpt_conversation
    else:
        raise Refused(
            "The file is neither a ChatGPT export (conversations.json) nor one of this app's exports."
        )
    if not conversations:
        raise Refused("The file holds no conversations.")
    return [reader(item, f"Conversation {n}") for n, item in enumerate(conversations, 1)]


def tree_order(parents: dict[str, str | None], where: str) -> list[str]:
    """The keys, every parent before its children; refused if a parent is missing or
    the parents go round in a circle."""
    children: dict[str | None, list[str]] = defaultdict(list)
    for key, parent in parents.items():
        if parent is not None and parent not in parents:
            raise Refused(f"{where}: message {key} follows {parent}, which is not in the file.")
        children[parent].append(key)
    order: list[str] = []
    queue = deque(children[None])
    while queue:
        key = queue.popleft()
        order.append(key)
        queue.extend(children[key])
    if len(order) < len(parents):
        reached = set(order)
        stuck = next(key for key in parents if key not in reached)
        raise Refused(f"{where}: message {stuck} is in a circle of messages that follow each other.")
    return order


def chatgpt_conversation(item: dict[str, Any], where: str) -> Plan:
    title = _text(item.get("title"))
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
        fields = chatgpt_message(mapping[key].get("message"), f"{where}, message {key}")
        if fields is None:
            kept_above[key] = above
            continue
        kept_above[key] = key
        created = _epoch(mapping[key]["message"].get("create_time"))
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
        created_at=_epoch(item.get("create_time")),
        updated_at=_epoch(item.get("update_time")),
    )


def chatgpt_message(message: Any, where: str) -> dict[str, Any] | None:
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
        text = "\n".join(chatgpt_part(part, kind, where) for part in parts)
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
        "model": _cut("model", model or "imported"),
    }


def chatgpt_part(part: Any, kind: str, where: str) -> str:
    if isinstance(part, str):
        return part
    if kind == "multimodal_text" and isinstance(part, dict):
        return PART_NOTES.get(part.get("content_type"), "[file]")
    raise Refused(f"{where}: its content is not text.")


COUNTS = (
    "input_tokens", "output_tokens", "reasoning_tokens", "time_to_first_token_ms", "reasoning_ms",
    "duration_ms", "retries",
)  # fmt: skip
LABELS = ("provider", "model", "finish_reason", "image_url")
PLAIN = ("reasoning", "error")
# Stored numbers must fit their columns.
MAX_COUNT = 2**31 - 1
MAX_RETRIES = 32_767
MAX_COST = 10**6


def own_conversation(item: Any, where: str) -> Plan:
    if not isinstance(item, dict) or not isinstance(item.get("messages"), list):
        raise Refused(f"{where} has no list of messages.")
    title = _text(item.get("title"))
    where = f"{where} (“{title[:60]}”)" if title else where
    rows: dict[str, dict[str, Any]] = {}
    parents: dict[str, str | None] = {}
    for row in item["messages"]:
        if not isinstance(row, dict) or row.get("id") is None:
            raise Refused(f"{where}: a message has no id.")
        key = str(row["id"])
        if key in rows:
            raise Refused(f"{where}: two messages have the id {key}.")
        rows[key] = row
        parents[key] = None if row.get("parent_id") is None else str(row["parent_id"])
    entries = []
    for key in tree_order(parents, where):
        row = rows[key]
        fields = own_message(row, f"{where}, message {key}")
        entries.append(
            Entry(key, parents[key], fields, _iso(row.get("created_at")), _iso(row.get("selected_at")))
        )
    parameters = item.get("parameters")
    return Plan(
        title=title,
        messages=entries,
        system_prompt=_text(item.get("system_prompt")),
        provider=_text(item.get("provider")),
        model=_text(item.get("model")),
        parameters=parameters if isinstance(parameters, dict) else {},
        created_at=_iso(item.get("created_at")),
        updated_at=_iso(item.get("updated_at")),
    )


def own_message(row: dict[str, Any], where: str) -> dict[str, Any]:
    role, content = row.get("role"), row.get("content")
    if role not in Message.Role.values:
        raise Refused(f"{where}: its role is neither user nor assistant.")
    if not isinstance(content, str):
        raise Refused(f"{where}: its content is not text.")
    # Only references to the files travel in an export: their names stay, as a note.
    names = [f.get("name") for f in row.get("attachments") or [] if isinstance(f, dict)]
    if names := [str(name) for name in names if name]:
        content = f"{content}\n\n[attached: {', '.join(names)}]".lstrip()
    status = row.get("status")
    if status not in Message.Status.values:
        status = Message.Status.COMPLETE
    elif status in Message.ACTIVE:
        # Its worker is not here: it is over, as a restart leaves it.
        status = Message.Status.INTERRUPTED
    fields: dict[str, Any] = {"role": role, "content": content, "status": status}
    fields |= {name: _cut(name, _text(row.get(name))) for name in LABELS}
    fields |= {name: _text(row.get(name)) for name in PLAIN}
    for name in COUNTS:
        value = row.get(name)
        if value is not None and (type(value) is not int or not 0 <= value <= MAX_COUNT):
            raise Refused(f"{where}: {name} is not a count.")
        fields[name] = value
    fields["retries"] = min(fields["retries"] or 0, MAX_RETRIES)
    fields["tokens_estimated"] = row.get("tokens_estimated") is True
    parameters = row.get("parameters")
    fields["parameters"] = parameters if isinstance(parameters, dict) else {}
    fields["cost"] = _cost(row.get("cost"), where)
    return fields


def _cost(value: Any, where: str) -> str | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not (math.isfinite(number) and 0 <= number < MAX_COST):
        raise Refused(f"{where}: its cost is not an amount.")
    return f"{number:.6f}"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _cut(name: str, value: str) -> str:
    return value[: Message._meta.get_field(name).max_length]


def _epoch(value: Any) -> datetime | None:
    """A ChatGPT time (seconds since 1970); None where there is none that makes sense."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (ValueError, OverflowError, OSError):
        return None


def _iso(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if timezone.is_aware(moment) else moment.replace(tzinfo=UTC)
