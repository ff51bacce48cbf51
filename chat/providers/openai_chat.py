"""OpenAI-compatible Chat Completions (``stream: true``).

Covers OpenAI, Ollama, vLLM, llama.cpp and the vendors in the seed docs. Tolerates a
role-only first chunk, chunks with empty ``choices``, deltas without ``content`` and
fields it does not know (tool calls, reasoning). ``[DONE]`` or a ``finish_reason`` ends
the stream; anything else ending it is an early end.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from httpx_sse import ServerSentEvent

from chat.providers.base import Request, Turn, error_text, load_json
from chat.providers.config import Provider
from chat.providers.events import Event, Finished, TextDelta, UpstreamError, Usage


def _content(turn: Turn) -> str | list[dict[str, Any]]:
    if not turn.image_url:
        return turn.content
    return [
        {"type": "text", "text": turn.content},
        {"type": "image_url", "image_url": {"url": turn.image_url}},
    ]


def build_request(
    provider: Provider, model: str, turns: Sequence[Turn], system_prompt: str = ""
) -> Request:
    messages: list[dict[str, Any]] = []
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    messages += [{"role": t.role, "content": _content(t)} for t in turns]
    body: dict[str, Any] = {"model": model, "messages": messages, "stream": True}
    if provider.options.get("include_usage"):
        body["stream_options"] = {"include_usage": True}
    headers = {"Authorization": f"Bearer {key}"} if (key := provider.api_key()) else {}
    return Request(url=f"{provider.base_url}/chat/completions", json=body, headers=headers)


class Parser:
    def __init__(self) -> None:
        self.ended = False

    def feed(self, sse: ServerSentEvent) -> list[Event]:
        if not sse.data:
            return []
        if sse.data.strip() == "[DONE]":
            self.ended = True
            return []
        chunk = load_json(sse.data)
        if not isinstance(chunk, dict):
            raise UpstreamError(f"the upstream sent an unexpected chunk: {sse.data[:80]!r}")
        if "error" in chunk:
            raise UpstreamError(error_text(chunk["error"]))
        events: list[Event] = []
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if isinstance(content := delta.get("content"), str) and content:
                events.append(TextDelta(content))
            if reason := choice.get("finish_reason"):
                self.ended = True
                events.append(Finished(str(reason)))
        if isinstance(usage := chunk.get("usage"), dict):
            events.append(Usage(usage.get("prompt_tokens"), usage.get("completion_tokens")))
        return events

    def close(self) -> list[Event]:
        if not self.ended:
            raise UpstreamError("the stream ended early")
        return []
