"""Plans of conversations to import, read from a file (``chat.chatgpt_format``,
``chat.own_format``) and written by ``chat.imports``.

A file is refused whole, with words naming what is wrong and where: an import writes all
of it or nothing. The files are hostile until read: trees are walked without recursion,
so a cycle or a chain a million deep costs a loop, not the stack.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from chat.checks import ChatError
from chat.models import Message


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
        raise Refused(
            f"{where}: message {stuck} does not lead back to a first message; "
            "some of its messages follow each other in a circle."
        )
    return order


def text_of(value: Any) -> str:
    return value if isinstance(value, str) else ""


def cut_to_column(name: str, value: str) -> str:
    return value[: Message._meta.get_field(name).max_length]
