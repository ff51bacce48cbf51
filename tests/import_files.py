"""Files to import, written for the tests: a ChatGPT export with a fork on two turns."""

from __future__ import annotations

import json
from typing import Any

HOSTILE = '<img src=x onerror="window.pwned=1"><script>window.pwned=1</script>'
GPT = {"model_slug": "gpt-4o"}
HIDDEN = {"is_visually_hidden_from_conversation": True}
CODE = {"content_type": "code", "text": "draw()"}
PICTURE = {
    "content_type": "multimodal_text",
    "parts": [{"content_type": "image_asset_pointer"}, "Here it is."],
}


def node(key: str, parent: str | None, role: str | None, text: str = "", at: float = 0, **extra: Any) -> dict:
    """A mapping node; ``role`` None for an empty one (the root)."""
    message = None
    if role is not None:
        message = {
            "id": key,
            "author": {"role": role},
            "create_time": at or None,
            "content": extra.pop("content", {"content_type": "text", "parts": [text]}),
            "metadata": extra.pop("metadata", {}),
        }
    return {"id": key, "parent": parent, "children": [], "message": message}


def tree(*nodes: dict) -> dict[str, dict]:
    mapping = {n["id"]: n for n in nodes}
    for n in nodes:
        if n["parent"] in mapping:
            mapping[n["parent"]]["children"].append(n["id"])
    return mapping


def forked(title: str = "Tides", question: str = "What is a tide?") -> dict:
    """A question edited once and its first answer regenerated once; the current branch
    is the first question, the first (older) answer, a thank-you and its answer, which
    came after a tool call. The later versions (the edit, the regenerated answer) would
    be shown if ``current_node`` were ignored."""
    return {
        "title": title,
        "create_time": 1_700_000_000.5,
        "update_time": 1_700_000_900.0,
        "current_node": "a2",
        "mapping": tree(
            node("root", None, None),
            node("sys", "root", "system", "You are ChatGPT.", metadata=HIDDEN),
            node("u1", "sys", "user", question, 1_700_000_010),
            node("a1", "u1", "assistant", "The rise and fall of the sea.", 1_700_000_020, metadata=GPT),
            node("a1b", "u1", "assistant", "A regenerated answer.", 1_700_000_030, metadata=GPT),
            node("u2", "a1", "user", "Thanks! Draw one?", 1_700_000_040),
            node("call", "u2", "assistant", "", 1_700_000_050, content=CODE, metadata=GPT),
            node("tool", "call", "tool", "tool output", 1_700_000_060),
            node("a2", "tool", "assistant", "", 1_700_000_070, content=PICTURE),
            node("u1e", "sys", "user", "What is a tide, exactly?", 1_700_000_100),
            node("a1e", "u1e", "assistant", "An edited answer.", 1_700_000_110),
        ),
    }  # fmt: skip


def as_file(document: Any) -> bytes:
    return json.dumps(document).encode()
