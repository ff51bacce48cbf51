"""What every dialect shares: the request shape, the turns it is built from, JSON helpers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from chat.providers.events import UpstreamError


@dataclass(frozen=True)
class Turn:
    role: str  # "user" or "assistant"
    content: str
    image_url: str = ""


@dataclass(frozen=True)
class Request:
    url: str
    json: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def load_json(data: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        preview = data[:80]
        raise UpstreamError(f"the upstream sent a chunk that is not valid JSON: {preview!r}")


def error_text(error: Any) -> str:
    """The readable part of the error shapes vendors send: a string, or {message, type}."""
    if isinstance(error, dict):
        message = error.get("message") or error.get("detail") or error.get("type")
        return str(message) if message else json.dumps(error)[:300]
    return str(error)


def error_from_body(body: bytes) -> str | None:
    """The provider's own message from a JSON error body, if it sent one."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if isinstance(data, dict):
        for key in ("error", "detail", "message"):
            if key in data:
                return error_text(data[key])
    return None
