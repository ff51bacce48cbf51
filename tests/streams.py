"""Streams for the tests: replayed through the app's own reader with no network, or live.

``sim_providers()`` is a providers file with one provider per dialect, all served by the
simulator (``{sim}`` stays for the ``providers_file`` fixture), and one, ``nowhere``,
that nothing listens for.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import httpx
from httpx_sse import ServerSentEvent

from chat.providers import DIALECTS
from chat.providers.events import Event, TextDelta
from chat.upstream import read_stream, sse_events
from tests.servers import free_port

FIXTURES = Path(__file__).resolve().parent / "fixtures"
# Each provider is named after its dialect; its model:
SIM_MODELS = {
    "openai-chat": "demo-1",
    "openai-responses": "demo-1",
    "muapi": "gemini-flash",
    "text-delta": "generic-1",
}
_PROVIDERS = """
[[providers]]
name = "openai-chat"
dialect = "openai-chat"
base_url = "{sim}/v1"
api_key_env = "SIM_KEY"
include_usage = true
models = ["demo-1"]

[[providers]]
name = "openai-responses"
dialect = "openai-responses"
base_url = "{sim}/v1"
api_key_env = "SIM_KEY"
models = ["demo-1"]

[[providers]]
name = "muapi"
dialect = "muapi"
base_url = "{sim}/muapi"
api_key_env = "SIM_KEY"
models = [{ name = "gemini-flash", input_price = 0.30, output_price = 1.80 }]

[[providers]]
name = "text-delta"
dialect = "text-delta"
base_url = "{sim}/v1"
api_key_env = "SIM_KEY"
models = [{ name = "generic-1", input_price = 0.10, output_price = 0.40 }]

[[providers]]
name = "nowhere"
dialect = "openai-chat"
base_url = "http://127.0.0.1:{closed_port}/v1"
models = ["demo-1"]
"""


def sim_providers() -> str:
    return _PROVIDERS.replace("{closed_port}", str(free_port()))


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
