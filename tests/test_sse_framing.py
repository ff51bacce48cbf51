"""SSE framing through httpx-sse plus what it lacks, and each seed document's own stream."""

from __future__ import annotations

import pytest

from chat.providers import DIALECTS
from chat.providers.events import Finished, TextDelta, UpstreamError, Usage
from chat.upstream import read_stream
from tests.streams import FIXTURES, read_events, replay, response_of, split_at, text_of


async def data_of(*parts: bytes) -> list[str]:
    return [sse.data for sse in await read_events(parts)]


@pytest.mark.parametrize("newline", [b"\n", b"\r", b"\r\n"], ids=["LF", "CR", "CRLF"])
async def test_every_line_ending_frames_the_same_events(newline: bytes) -> None:
    stream = b"data: a" + newline * 2 + b"data: b" + newline * 2
    assert await data_of(stream) == ["a", "b"]


async def test_a_crlf_split_across_network_chunks_is_one_line_end() -> None:
    assert await data_of(b"data: a\r", b"\n\r", b"\ndata: b\r\n\r", b"\n") == ["a", "b"]


async def test_a_multibyte_character_split_across_chunks_arrives_whole() -> None:
    stream = "data: héllo 😀\n\n".encode()
    cut_in_e, cut_in_emoji = stream.index("é".encode()) + 1, stream.index("😀".encode()) + 2
    assert await data_of(*split_at(stream, [cut_in_e, cut_in_emoji])) == ["héllo 😀"]


async def test_multi_line_data_is_joined_with_newlines() -> None:
    assert await data_of(b'data: {\ndata:  "a": 1}\n\n') == ['{\n "a": 1}']


async def test_comments_and_keep_alives_are_not_events() -> None:
    assert await data_of(b": keep-alive\n\n:ping\ndata: a\n\n: bye\n\n") == ["a"]


async def test_an_event_line_names_the_event() -> None:
    events = await read_events([b"event: response.created\nid: 7\nretry: 100\ndata: x\n\n"])
    assert [(e.event, e.data) for e in events] == [("response.created", "x")]


async def test_an_unterminated_last_event_still_reaches_the_parser() -> None:
    assert await data_of(b"data: a\n\ndata: b") == ["a", "b"]
    assert await data_of(b"data: a\n\ndata: b\r") == ["a", "b"]


async def test_a_leading_byte_order_mark_is_dropped_even_when_split() -> None:
    assert await data_of(b"\xef\xbb", b"\xbfdata: a\n\n") == ["a"]


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
async def test_events_without_data_are_ignored_by_every_dialect(dialect: str) -> None:
    stream = b"event: ping\n\nid: 1\n\n: comment\n\n"
    with pytest.raises(UpstreamError, match="ended early"):
        await replay(dialect, [stream])


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
async def test_a_last_event_cut_inside_its_json_is_an_error_not_a_skip(dialect: str) -> None:
    with pytest.raises(UpstreamError, match="not valid JSON"):
        await replay(dialect, [b'data: {"delta": "a"}\n\ndata: {"del'])


# Each seed document's example stream, verbatim


def seed(name: str) -> bytes:
    return (FIXTURES / "seeds" / name).read_bytes()


async def test_the_vmira_example_streams_hello_there() -> None:
    events = await replay("openai-chat", [seed("vmira.sse")])
    assert text_of(events) == "Hello there!"
    assert Finished("stop") in events
    assert not any(isinstance(e, Usage) for e in events)


async def test_the_flowapi_example_chunk_is_read_but_is_no_whole_stream() -> None:
    parts = [seed("flowapi-chunk.sse")]
    events = await replay(
        "openai-chat",
        [
            *parts,
            b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}\n\n',
            b"data: [DONE]\n\n",
        ],
    )
    assert events == [TextDelta("Hello"), Usage(3, 1)]
    with pytest.raises(UpstreamError, match="ended early"):
        await replay("openai-chat", parts)


async def test_the_muapi_example_streams_text_with_usage_on_its_last_chunk() -> None:
    events = await replay("muapi", [seed("muapi.sse")])
    assert text_of(events) == "Quantum entanglement..."
    assert events[-2:] == [Finished("stop"), Usage(12, 80)]


async def test_the_muapi_error_example_is_an_error() -> None:
    with pytest.raises(UpstreamError, match="upstream provider timeout"):
        await replay("muapi", [seed("muapi-error.sse")])


async def test_the_generic_example_streams_once_upon_a_time_and_ends_at_done() -> None:
    assert text_of(await replay("text-delta", [seed("generic.sse")])) == "Once upon a time"


async def test_the_generic_error_example_is_an_error() -> None:
    with pytest.raises(UpstreamError, match="Rate limit exceeded"):
        await replay("text-delta", [seed("generic-error.sse")])


async def test_a_documented_responses_stream_yields_its_text_and_usage() -> None:
    events = await replay("openai-responses", [(FIXTURES / "openai-responses.sse").read_bytes()])
    assert text_of(events) == "Silver moon"
    assert events[-2:] == [Finished("stop"), Usage(14, 3, 0)]  # its reasoning_tokens: 0


@pytest.mark.parametrize("name", ["vmira.sse", "muapi.sse", "generic.sse"])
async def test_a_seed_stream_with_crlf_one_byte_at_a_time_reads_the_same(name: str) -> None:
    dialect = {"vmira.sse": "openai-chat", "muapi.sse": "muapi", "generic.sse": "text-delta"}[name]
    stream = seed(name)
    crlf = stream.replace(b"\n", b"\r\n")
    assert await replay(dialect, [crlf[i : i + 1] for i in range(len(crlf))]) == await replay(
        dialect, [stream]
    )


async def test_a_stream_ending_on_crlf_blank_lines_after_an_id_makes_no_extra_event() -> None:
    events = await read_events([b"id: 7\r\ndata: x\r\n\r\n"])
    assert [(e.id, e.data) for e in events] == [("7", "x")]


async def test_text_before_an_error_event_in_the_same_read_is_kept() -> None:
    """However the upstream's writes fell into reads: the events of one read before its
    error event still count (a reply keeps its partial text), then the error is raised."""
    stream = (
        b'data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n'
        b'data: {"choices":[{"index":0,"delta":{"content":"lo"}}]}\n\n'
        b'data: {"error":{"message":"The model failed."}}\n\n'
        b'data: {"choices":[{"index":0,"delta":{"content":" never"}}]}\n\n'
    )
    for parts in ([stream], split_at(stream, [len(stream) // 2])):
        seen = []
        with pytest.raises(UpstreamError, match="The model failed"):
            async for event in read_stream(response_of(parts), DIALECTS["openai-chat"].Parser()):
                seen.append(event)
        assert text_of(seen) == "Hello"


async def test_text_before_a_stream_cut_short_is_kept() -> None:
    stream = b'data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\ndata: {"choices":[{"inde'
    seen = []
    with pytest.raises(UpstreamError):
        async for event in read_stream(response_of([stream]), DIALECTS["openai-chat"].Parser()):
            seen.append(event)
    assert text_of(seen) == "Hel"
