"""Each dialect on its own: the request it builds and the events its parser reads."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from httpx_sse import ServerSentEvent

from chat.providers import DIALECTS, accepts_images, muapi, openai_chat, openai_responses, text_delta
from chat.providers.base import Turn, flatten_history
from chat.providers.config import ModelSpec, Provider, parse_providers
from chat.providers.events import Finished, ReasoningDelta, TextDelta, UpstreamError, Usage

HISTORY = [
    Turn("user", "What is SSE?", "https://example.com/a.png"),
    Turn("assistant", "Server-sent events."),
    Turn("user", "How do I parse it?"),
]


def provider(dialect: str, base_url: str = "https://api.example.com/v1", **options: object) -> Provider:
    return Provider("p", dialect, base_url, "TEST_API_KEY", (ModelSpec("m"),), dict(options))


def feed(parser, data: object, event: str = "") -> list:
    text = data if isinstance(data, str) else json.dumps(data)
    return parser.feed(ServerSentEvent(event=event, data=text))


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_API_KEY", "sk-test")


# The flattened history


def test_a_lone_message_is_sent_as_it_is() -> None:
    assert flatten_history([Turn("user", "Hello")]) == "Hello"


def test_a_longer_chat_is_flattened_into_a_transcript_that_cues_the_answer() -> None:
    assert flatten_history(HISTORY, "Be brief.") == (
        "System: Be brief.\n\n"
        "User: What is SSE?\n[image: https://example.com/a.png]\n\n"
        "Assistant: Server-sent events.\n\n"
        "User: How do I parse it?\n\n"
        "Assistant:"
    )


def test_the_latest_messages_image_is_left_to_the_dialect() -> None:
    flat = flatten_history([Turn("user", "a"), Turn("assistant", "b"), Turn("user", "c", "https://x/i.png")])
    assert "i.png" not in flat


# Requests


def test_chat_completions_asks_for_usage_only_where_the_provider_allows_it() -> None:
    plain = openai_chat.build_request(provider("openai-chat"), "m", HISTORY)
    counted = openai_chat.build_request(provider("openai-chat", include_usage=True), "m", HISTORY)
    assert "stream_options" not in plain.json
    assert counted.json["stream_options"] == {"include_usage": True}
    assert plain.url == "https://api.example.com/v1/chat/completions"
    assert plain.headers == {"Authorization": "Bearer sk-test"}


def test_chat_completions_sends_the_system_prompt_and_images_as_content_parts() -> None:
    request = openai_chat.build_request(provider("openai-chat"), "m", HISTORY, "Be brief.")
    messages = request.json["messages"]
    assert messages[0] == {"role": "system", "content": "Be brief."}
    assert messages[1]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "https://example.com/a.png"},
    }
    assert messages[3] == {"role": "user", "content": "How do I parse it?"}


def test_responses_sends_instructions_and_input_items_with_images() -> None:
    request = openai_responses.build_request(provider("openai-responses"), "m", HISTORY, "Be brief.")
    assert request.url == "https://api.example.com/v1/responses"
    assert request.json["instructions"] == "Be brief."
    assert request.json["stream"] is True
    first, _, last = request.json["input"]
    assert first["content"][1] == {"type": "input_image", "image_url": "https://example.com/a.png"}
    assert last == {"type": "message", "role": "user", "content": "How do I parse it?"}


def test_muapi_posts_one_prompt_to_the_models_stream_with_an_api_key_header() -> None:
    turns = [*HISTORY[:2], Turn("user", "And this?", "https://example.com/b.png")]
    request = muapi.build_request(
        provider("muapi", "https://api.muapi.ai/api/v1"), "gemini-flash", turns, "Sys"
    )
    assert request.url == "https://api.muapi.ai/api/v1/gemini-flash/stream"
    assert request.headers == {"x-api-key": "sk-test"}
    assert request.json == {
        "prompt": flatten_history(turns),
        "system_prompt": "Sys",
        "image_url": "https://example.com/b.png",
    }


def test_text_delta_sends_prompt_max_tokens_and_temperature_with_bearer_auth() -> None:
    configured = replace(provider("text-delta"), defaults={"max_tokens": 500, "temperature": 0.8})
    request = text_delta.build_request(configured, "m", HISTORY, "Sys")
    assert request.url == "https://api.example.com/v1/generate/stream"
    assert request.headers == {"Authorization": "Bearer sk-test"}
    assert request.json == {"prompt": flatten_history(HISTORY, "Sys"), "maxTokens": 500, "temperature": 0.8}


@pytest.mark.parametrize(
    ("dialect", "fields"),
    [
        ("openai-chat", {"temperature": 0.2, "max_tokens": 300, "top_p": 0.9}),
        ("openai-responses", {"temperature": 0.2, "max_output_tokens": 300, "top_p": 0.9}),
        ("text-delta", {"temperature": 0.2, "maxTokens": 300}),
        ("muapi", {}),
    ],
)
def test_parameters_go_in_each_dialects_own_fields_over_the_providers_defaults(dialect, fields) -> None:
    configured = replace(provider(dialect), defaults={"temperature": 1.5, "max_tokens": 300})
    module = DIALECTS[dialect]
    asked = {"temperature": 0.2, "top_p": 0.9}
    request = module.build_request(configured, "m", [Turn("user", "Hi")], "", asked)
    every_field = {"temperature", "max_tokens", "max_output_tokens", "maxTokens", "top_p"}
    assert {name: value for name, value in request.json.items() if name in every_field} == fields


def test_a_model_the_providers_file_says_reads_no_images_takes_none() -> None:
    (chat,) = parse_providers(
        '[[providers]]\nname = "p"\ndialect = "openai-chat"\nbase_url = "https://p.example/v1"\n'
        'models = ["vision", { name = "text-only", images = false }]'
    ).values()
    assert accepts_images(chat, "vision")
    assert not accepts_images(chat, "text-only")


def test_text_delta_leaves_unset_options_to_the_vendor() -> None:
    request = text_delta.build_request(provider("text-delta"), "m", [Turn("user", "Hi")])
    assert request.json == {"prompt": "Hi"}


def test_only_text_delta_cannot_take_an_image() -> None:
    assert {d: accepts_images(provider(d), "m") for d in DIALECTS} == {
        "openai-chat": True,
        "openai-responses": True,
        "muapi": True,
        "text-delta": False,
    }
    with pytest.raises(UpstreamError, match="cannot take an image"):
        text_delta.build_request(provider("text-delta"), "m", [Turn("user", "hi", "https://x/i.png")])


def test_every_dialect_is_accepted_in_a_providers_file() -> None:
    text = "".join(
        f'[[providers]]\nname = "{d}"\ndialect = "{d}"\nbase_url = "http://127.0.0.1/v1"\nmodels = ["m"]\n'
        for d in DIALECTS
    )
    assert {p.dialect for p in parse_providers(text).values()} == set(DIALECTS)


# Parsers


def test_chat_completions_skips_role_only_empty_and_tool_call_chunks() -> None:
    parser = openai_chat.Parser()
    events = [
        *feed(parser, {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
        *feed(parser, {"choices": []}),
        *feed(parser, {"choices": [{"index": 0, "delta": {"tool_calls": [{"id": "t"}], "content": None}}]}),
        *feed(parser, {"choices": [{"index": 0, "delta": {"reasoning_content": "hmm"}}]}),
        *feed(parser, {"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]}),
        *feed(parser, {"choices": [{"index": 1, "delta": {"content": "other choice"}}]}),
        *feed(parser, {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}),
        *feed(parser, {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2}}),
        *feed(parser, "[DONE]"),
    ]
    assert events == [ReasoningDelta("hmm"), TextDelta("Hi"), Finished("length"), Usage(9, 2)]
    assert parser.close() == []


def test_chat_completions_reads_thinking_in_either_field_and_its_token_count() -> None:
    parser = openai_chat.Parser()
    usage = {
        "prompt_tokens": 9,
        "completion_tokens": 30,
        "completion_tokens_details": {"reasoning_tokens": 21},
    }
    events = [
        *feed(parser, {"choices": [{"index": 0, "delta": {"reasoning_content": "a < b", "content": None}}]}),
        *feed(parser, {"choices": [{"index": 0, "delta": {"reasoning": " so", "content": ""}}]}),
        *feed(parser, {"choices": [{"index": 0, "delta": {"reasoning": {"not": "text"}, "content": "B"}}]}),
        *feed(parser, {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": usage}),
    ]
    assert events == [
        ReasoningDelta("a < b"),
        ReasoningDelta(" so"),
        TextDelta("B"),
        Finished("stop"),
        Usage(9, 30, 21),
    ]


def test_chat_completions_reads_an_error_inside_a_200_stream() -> None:
    with pytest.raises(UpstreamError, match="Rate limit reached"):
        feed(openai_chat.Parser(), {"error": {"message": "Rate limit reached", "type": "rate_limit"}})


def test_a_stream_without_its_end_signal_ended_early() -> None:
    for dialect in DIALECTS.values():
        parser = dialect.Parser()
        with pytest.raises(UpstreamError, match="ended early"):
            parser.close()


def test_muapi_reads_string_errors() -> None:
    with pytest.raises(UpstreamError, match="upstream provider timeout"):
        feed(muapi.Parser(), {"error": "upstream provider timeout"})


def test_responses_reads_deltas_and_the_completed_usage() -> None:
    parser = openai_responses.Parser()
    events = [
        *feed(parser, {"type": "response.created", "response": {"status": "in_progress"}}),
        *feed(parser, {"type": "response.output_text.delta", "delta": "Hi"}),
        *feed(parser, {"type": "response.reasoning_summary_text.delta", "delta": "thinking"}),
        *feed(parser, {"delta": " there"}, event="response.output_text.delta"),
        *feed(
            parser,
            {"type": "response.completed", "response": {"usage": {"input_tokens": 5, "output_tokens": 2}}},
        ),
    ]
    assert events == [
        TextDelta("Hi"),
        ReasoningDelta("thinking"),
        TextDelta(" there"),
        Finished("stop"),
        Usage(5, 2),
    ]
    assert parser.close() == []


def test_responses_reads_reasoning_summaries_apart_by_a_blank_line_and_their_token_count() -> None:
    parser = openai_responses.Parser()
    usage = {"input_tokens": 5, "output_tokens": 40, "output_tokens_details": {"reasoning_tokens": 32}}
    events = [
        *feed(parser, {"type": "response.reasoning_summary_part.added", "summary_index": 0}),
        *feed(parser, {"type": "response.reasoning_summary_text.delta", "delta": "First"}),
        *feed(parser, {"type": "response.reasoning_summary_part.added", "summary_index": 1}),
        *feed(parser, {"type": "response.reasoning_summary_text.delta", "delta": "Second"}),
        *feed(parser, {"type": "response.reasoning_text.delta", "delta": " raw"}),
        *feed(parser, {"type": "response.output_text.delta", "delta": "Answer"}),
        *feed(parser, {"type": "response.completed", "response": {"usage": usage}}),
    ]
    thinking = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    assert thinking == "First\n\nSecond raw"
    assert events[-3:] == [TextDelta("Answer"), Finished("stop"), Usage(5, 40, 32)]


def test_responses_reports_the_token_limit_as_length() -> None:
    parser = openai_responses.Parser()
    incomplete = {"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}
    assert feed(parser, {"type": "response.incomplete", "response": incomplete}) == [Finished("length")]
    assert parser.close() == []


@pytest.mark.parametrize(
    "payload",
    [
        {
            "type": "response.failed",
            "response": {"status": "failed", "error": {"code": "x", "message": "Boom"}},
        },
        {"type": "error", "code": "server_error", "message": "Boom", "param": None},
    ],
    ids=["response.failed", "error"],
)
def test_responses_failures_are_errors(payload: dict) -> None:
    with pytest.raises(UpstreamError, match="Boom"):
        feed(openai_responses.Parser(), payload)


def test_responses_does_not_take_done_for_its_end_signal() -> None:
    parser = openai_responses.Parser()
    feed(parser, "[DONE]")
    with pytest.raises(UpstreamError, match="ended early"):
        parser.close()


def test_text_delta_reads_deltas_and_the_finish_reason() -> None:
    parser = text_delta.Parser()
    events = [
        *feed(parser, {"id": "g", "text": "Once", "delta": "Once"}),
        *feed(parser, {"id": "g", "text": "Once upon", "delta": " upon"}),
        *feed(parser, {"id": "g", "text": "Once upon", "delta": "", "finishReason": "length"}),
    ]
    assert events == [TextDelta("Once"), TextDelta(" upon"), Finished("length")]
    assert parser.close() == []


def test_text_delta_reads_its_error_shape() -> None:
    with pytest.raises(UpstreamError, match="Rate limit exceeded"):
        feed(text_delta.Parser(), {"error": {"type": "rate_limit_error", "message": "Rate limit exceeded"}})


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_a_chunk_that_is_not_json_is_an_error(dialect: str) -> None:
    with pytest.raises(UpstreamError, match="not valid JSON"):
        feed(DIALECTS[dialect].Parser(), '{"choices": [')


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_a_chunk_that_is_not_an_object_is_an_error(dialect: str) -> None:
    with pytest.raises(UpstreamError, match="unexpected chunk"):
        feed(DIALECTS[dialect].Parser(), "[1, 2]")


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_json_nested_too_deeply_to_read_is_an_upstream_error(dialect: str) -> None:
    with pytest.raises(UpstreamError, match="not valid JSON"):
        feed(DIALECTS[dialect].Parser(), "[" * 100_000 + "]" * 100_000)


def test_nonsense_token_counts_are_unknown_rather_than_stored() -> None:
    usage = {"prompt_tokens": "12", "completion_tokens": -3}
    assert feed(openai_chat.Parser(), {"choices": [], "usage": usage}) == [Usage(None, None)]
