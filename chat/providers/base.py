"""What every dialect shares: the request shape, the turns it is built from, JSON helpers."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from httpx_sse import ServerSentEvent

from chat.providers.events import Event, Finished, UpstreamError

# Stands for the ``[DONE]`` sentinel among the parsed payloads of an event.
DONE: Final = object()
# Token counts above this would not fit the database's integer columns.
MAX_TOKENS = 2**31 - 1
# The longest finish reason the database keeps.
MAX_REASON = 50


@dataclass(frozen=True)
class Image:
    """An attached image as a dialect sends it: a data URL or a signed address."""

    name: str
    url: str


@dataclass(frozen=True)
class Turn:
    role: str  # "user" or "assistant"
    content: str
    image_url: str = ""
    images: tuple[Image, ...] = ()

    @property
    def image_urls(self) -> list[str]:
        """Every image the turn shows the model: the typed URL, then the attached ones."""
        return ([self.image_url] if self.image_url else []) + [image.url for image in self.images]


@dataclass(frozen=True)
class Request:
    url: str
    json: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class Parser:
    """A dialect's reader of one stream: raises ``UpstreamError`` and nothing else.

    ``feed`` sets ``ended`` when it reads the dialect's end signal; a stream that stops
    before it is an early end, never a complete reply.
    """

    def __init__(self) -> None:
        self.ended = False

    def feed(self, sse: ServerSentEvent) -> list[Event]:
        raise NotImplementedError

    def close(self) -> list[Event]:
        """The events the end of the stream implies; raises if it came before its end signal."""
        if not self.ended:
            raise UpstreamError("the stream ended early")
        return []


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def flatten_history(turns: Sequence[Turn], system_prompt: str = "") -> str:
    """One prompt for the dialects that take no list of messages (MuAPI, text-delta).

    A lone message without a system prompt is sent as it is. Anything longer becomes a
    transcript, so a multi-turn chat keeps its context::

        System: <system prompt, when the dialect has no field of its own for it>

        User: <first message>

        Assistant: <first reply>

        User: <latest message>

        Assistant:

    The trailing ``Assistant:`` cues the model to answer. An earlier message's image
    cannot be sent again, so it is named (``[image: URL]``, ``[image: photo.png]`` for an
    attached one) for the model to know it was there; the latest message's image is the
    dialect's to send or refuse.
    """
    if len(turns) == 1 and not system_prompt:
        return turns[0].content
    parts = [f"System: {system_prompt}"] if system_prompt else []
    for index, turn in enumerate(turns):
        named = [turn.image_url] if turn.image_url else []
        named += [image.name for image in turn.images]
        images = "".join(f"\n[image: {name}]" for name in named) if index < len(turns) - 1 else ""
        parts.append(f"{'User' if turn.role == 'user' else 'Assistant'}: {turn.content}{images}")
    return "\n\n".join([*parts, "Assistant:"])


def load_json(data: str) -> Any:
    # orjson: several times faster than json, and this runs once per upstream event.
    try:
        return orjson.loads(data)
    except (ValueError, RecursionError):
        preview = data[:80]
        raise UpstreamError(f"the upstream sent a chunk that is not valid JSON: {preview!r}") from None


def read_payloads(data: str) -> list[Any]:
    """The parsed JSON documents of one event's data, with ``DONE`` for ``[DONE]``.

    Usually one. Some vendors document their streams as bare ``data:`` lines without the
    blank line that ends an SSE event (the generic and MuAPI docs show them so); those
    lines arrive as one multi-line event, so when the whole is not one document, each line
    is read as its own. Raises ``UpstreamError`` for anything that is not JSON: a bad
    chunk is never skipped.
    """
    text = data.strip()
    if not text:
        return []
    try:
        return [_payload(text)]
    except UpstreamError:
        if "\n" not in text:
            raise
    return [_payload(line) for line in text.split("\n") if line.strip()]


def _payload(text: str) -> Any:
    return DONE if text.strip() == "[DONE]" else load_json(text)


def expect_object(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise UpstreamError(f"the upstream sent an unexpected chunk: {json.dumps(payload)[:80]!r}")
    return payload


def token_count(value: Any) -> int | None:
    """A token count the database can store, or None (unknown) for anything else."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKENS:
        return value
    return None


def finished(reason: Any) -> Finished:
    return Finished(str(reason)[:MAX_REASON])


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
    except (ValueError, RecursionError):
        return None
    if isinstance(data, dict):
        for key in ("error", "detail", "message"):
            if key in data:
                return error_text(data[key])
    return None
