"""Streams replayed through the app's own SSE reader and a dialect's parser, with no network."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import httpx
from httpx_sse import ServerSentEvent

from chat.providers import DIALECTS
from chat.providers.events import Event, TextDelta
from chat.upstream import read_stream, sse_events

FIXTURES = Path(__file__).resolve().parent / "fixtures"


async def _body(parts: Iterable[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def response_of(parts: Iterable[bytes]) -> httpx.Response:
    """An event-stream response whose body arrives in exactly these network chunks."""
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=_body(parts))


async def read_events(parts: Iterable[bytes]) -> list[ServerSentEvent]:
    return [sse async for sse in sse_events(response_of(parts))]


async def replay(dialect: str, parts: Iterable[bytes]) -> list[Event]:
    """Everything a dialect makes of a stream; raises ``UpstreamError`` as a live one would."""
    return [event async for event in read_stream(response_of(parts), DIALECTS[dialect].Parser())]


def text_of(events: Iterable[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def split_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    edges = [0, *sorted(set(cuts)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges) if b > a]
