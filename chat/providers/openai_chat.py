"""OpenAI-compatible Chat Completions (``stream: true``).

Covers OpenAI, Ollama, vLLM, llama.cpp and the vendors in the seed docs (mume, vmira,
flowapi). Tolerates a role-only first chunk, chunks with empty ``choices``, deltas without
``content`` and fields it does not know (tool calls). Reasoning models' thinking comes in
``reasoning_content`` (DeepSeek and compatible servers) or ``reasoning`` (OpenRouter,
vLLM) deltas, their count in ``usage.completion_tokens_details.reasoning_tokens``.
``[DONE]`` or a ``finish_reason`` ends the stream; anything else ending it is an early end.

Per-provider option: ``include_usage = true`` asks for token counts in the final chunk
(``stream_options.include_usage``); off by default because some vendors reject fields
they do not know.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from httpx_sse import ServerSentEvent

from chat.providers import base
from chat.providers.base import (
    DONE,
    Request,
    Turn,
    bearer,
    error_text,
    expect_object,
    finished,
    read_payloads,
    token_count,
)
from chat.providers.config import Provider
from chat.providers.events import Event, ReasoningDelta, TextDelta, UpstreamError, Usage
from chat.providers.parameters import Value, request_fields

ACCEPTS_IMAGES = True
# Images may go as data URLs, several to a message.
IMAGE_DATA = True
MAX_IMAGES = 20
PARAMETERS = {"temperature": "temperature", "max_tokens": "max_tokens", "top_p": "top_p"}


def _content(turn: Turn) -> str | list[dict[str, Any]]:
    if not (urls := turn.image_urls):
        return turn.content
    return [
        {"type": "text", "text": turn.content},
        *({"type": "image_url", "image_url": {"url": url}} for url in urls),
    ]


def build_request(
    provider: Provider,
    model: str,
    turns: Sequence[Turn],
    system_prompt: str = "",
    parameters: Mapping[str, Value] | None = None,
) -> Request:
    messages: list[dict[str, Any]] = []
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    messages += [{"role": t.role, "content": _content(t)} for t in turns]
    body: dict[str, Any] = {"model": model, "messages": messages, "stream": True}
    body |= request_fields(parameters or {}, provider.defaults, PARAMETERS)
    if provider.options.get("include_usage"):
        body["stream_options"] = {"include_usage": True}
    url = f"{provider.base_url}/chat/completions"
    return Request(url=url, json=body, headers=bearer(provider.api_key()))


class Parser(base.Parser):
    """Chat Completions chunks as events. MuAPI streams the same chunks, so it uses this too."""

    def feed(self, sse: ServerSentEvent) -> list[Event]:
        events: list[Event] = []
        for payload in read_payloads(sse.data):
            if payload is DONE:
                self.ended = True
            else:
                events += self._chunk(expect_object(payload))
        return events

    def _chunk(self, chunk: dict[str, Any]) -> list[Event]:
        if chunk.get("error"):
            raise UpstreamError(error_text(chunk["error"]))
        events: list[Event] = []
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                thinking = delta.get("reasoning_content") or delta.get("reasoning")
                if isinstance(thinking, str) and thinking:
                    events.append(ReasoningDelta(thinking))
                content = delta.get("content")
                if isinstance(content, str) and content:
                    events.append(TextDelta(content))
            if reason := choice.get("finish_reason"):
                self.ended = True
                events.append(finished(reason))
        if isinstance(usage := chunk.get("usage"), dict):
            details = usage.get("completion_tokens_details")
            events.append(
                Usage(
                    token_count(usage.get("prompt_tokens")),
                    token_count(usage.get("completion_tokens")),
                    token_count(details.get("reasoning_tokens")) if isinstance(details, dict) else None,
                )
            )
        return events
