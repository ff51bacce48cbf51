"""Properties of the whole reading path (bytes -> SSE -> a dialect's events), by hypothesis."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
from httpx_sse import ServerSentEvent
from hypothesis import given, settings
from hypothesis import strategies as st

from chat.providers import DIALECTS
from chat.providers.events import Event, Finished, TextDelta, UpstreamError, Usage
from chat.simulator.dialects import MUAPI, ROUTES, Request
from tests.streams import replay, split_at, text_of

WRITERS = {writer.name: writer for writer in [*ROUTES.values(), MUAPI]}
NEWLINES = {"lf": "\n", "cr": "\r", "crlf": "\r\n"}
# Characters that break naive readers: line separators, multibyte, what JSON escapes.
TRICKY = st.sampled_from(["\u2028", "\u2029", "\x85", "é", "😀", "\r", "\n", '"', "\\", " "])
# A token may even look like SSE framing: it must still arrive as text.
TOKENS = st.lists(
    st.text(st.characters(codec="utf-8") | TRICKY, max_size=8) | st.just("data: [DONE]\n\n"), max_size=12
)
EVENT_TYPES = [
    "response.output_text.delta",
    "response.completed",
    "response.incomplete",
    "response.failed",
    "error",
]
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
ANY = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10,
)


def shaped(required: dict, optional: dict | None = None) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries(required, optional=optional or {})


# Chunks shaped like each dialect's, with anything at all where its parser looks.
CHOICE = shaped(
    {"delta": shaped({}, {"content": ANY}) | ANY}, {"index": st.just(0) | ANY, "finish_reason": ANY}
)
TOKEN_COUNTS = shaped(
    {}, {"prompt_tokens": ANY, "completion_tokens": ANY, "input_tokens": ANY, "output_tokens": ANY}
)
CHAT = shaped(
    {"choices": st.lists(CHOICE | ANY, max_size=2) | ANY}, {"usage": TOKEN_COUNTS | ANY, "error": ANY}
)
RESPONSE = shaped(
    {}, {"usage": TOKEN_COUNTS | ANY, "incomplete_details": shaped({}, {"reason": ANY}) | ANY, "error": ANY}
)
RESPONSES = shaped(
    {"type": st.sampled_from([*EVENT_TYPES, "response.created"]), "response": RESPONSE | ANY},
    {"delta": ANY, "error": ANY, "message": ANY},
)
TEXT_DELTA = shaped({"delta": ANY}, {"finishReason": ANY, "error": ANY, "text": ANY})
SHAPES = {"openai-chat": CHAT, "muapi": CHAT, "openai-responses": RESPONSES, "text-delta": TEXT_DELTA}


def well_typed(event: Event) -> bool:
    """What the runner and the database rely on."""
    if isinstance(event, TextDelta):
        return isinstance(event.text, str) and event.text != ""
    if isinstance(event, Usage):
        return all(
            n is None or (type(n) is int and n >= 0) for n in (event.input_tokens, event.output_tokens)
        )
    return isinstance(event, Finished) and isinstance(event.reason, str) and 0 < len(event.reason) <= 50


def written(dialect: str, tokens: list[str], newline: str, bom: bool, keepalive: bool) -> bytes:
    """A valid stream of ``tokens`` as the simulator writes this dialect."""
    writer = WRITERS[dialect]
    request = Request("m", "", 0, include_usage=True)
    events, text = [*writer.head(request)], ""
    for token in tokens:
        events += [writer.token(token, text), *([": keep-alive\n\n"] if keepalive else [])]
        text += token
    events += writer.tail(request, "stop", text)
    return ("\ufeff" * bom + "".join(events).replace("\n", NEWLINES[newline])).encode()


@settings(max_examples=150, deadline=None)
@given(
    dialect=st.sampled_from(sorted(DIALECTS)),
    tokens=TOKENS,
    newline=st.sampled_from(sorted(NEWLINES)),
    bom=st.booleans(),
    keepalive=st.booleans(),
    data=st.data(),
)
def test_any_split_of_a_valid_stream_yields_the_same_text(
    dialect: str, tokens: list[str], newline: str, bom: bool, keepalive: bool, data: st.DataObject
) -> None:
    stream = written(dialect, tokens, newline, bom, keepalive)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=30))
    whole = asyncio.run(replay(dialect, [stream]))
    split = asyncio.run(replay(dialect, split_at(stream, cuts)))
    assert text_of(split) == "".join(tokens)
    assert split == whole


@settings(max_examples=200, deadline=None)
@given(dialect=st.sampled_from(sorted(DIALECTS)), body=st.binary(max_size=300), data=st.data())
def test_no_bytes_make_the_reading_path_raise_anything_but_upstream_error(
    dialect: str, body: bytes, data: st.DataObject
) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(body)), max_size=10))
    with contextlib.suppress(UpstreamError):
        asyncio.run(replay(dialect, split_at(body, cuts)))


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
@settings(max_examples=200, deadline=None)
@given(data=st.data(), event=st.sampled_from(["", *EVENT_TYPES]))
def test_any_json_yields_well_typed_events_or_an_upstream_error(
    dialect: str, data: st.DataObject, event: str
) -> None:
    payload = data.draw(SHAPES[dialect] | ANY)
    parser = DIALECTS[dialect].Parser()
    with contextlib.suppress(UpstreamError):
        events = parser.feed(ServerSentEvent(event=event, data=json.dumps(payload)))
        assert all(well_typed(e) for e in events), events
        parser.close()


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
@settings(max_examples=100, deadline=None)
@given(data=st.text(max_size=200))
def test_no_text_makes_a_parser_raise_anything_but_upstream_error(dialect: str, data: str) -> None:
    with contextlib.suppress(UpstreamError):
        DIALECTS[dialect].Parser().feed(ServerSentEvent(data=data))
