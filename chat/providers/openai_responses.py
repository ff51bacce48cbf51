"""The OpenAI Responses API (``POST {base_url}/responses`` with ``stream: true``).

Text arrives in ``response.output_text.delta`` events. ``response.completed`` ends the
stream with usage; ``response.incomplete`` ends it early for a stated reason (the token
limit is reported as ``length``, like Chat Completions); ``response.failed`` and ``error``
are errors. A reasoning model's thinking arrives as its reasoning summary
(``response.reasoning_summary_text.delta``, parts apart by a blank line) or, from open
models, as ``response.reasoning_text.delta``. The event's own ``type`` field decides, not
the SSE ``event:`` line, which is only a fallback: some compatible servers send one
without the other. Every other event (``response.created``, output items, ...) is ignored.
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
IMAGE_DATA = True
MAX_IMAGES = 20
PARAMETERS = {"temperature": "temperature", "max_tokens": "max_output_tokens", "top_p": "top_p"}
# incomplete_details.reason -> the finish reason the app records
REASONS = {"max_output_tokens": "length"}
THINKING = {"response.reasoning_summary_text.delta", "response.reasoning_text.delta"}


def _content(turn: Turn) -> str | list[dict[str, str]]:
    if not (urls := turn.image_urls):
        return turn.content
    return [
        {"type": "input_text", "text": turn.content},
        *({"type": "input_image", "image_url": url} for url in urls),
    ]


def build_request(
    provider: Provider,
    model: str,
    turns: Sequence[Turn],
    system_prompt: str = "",
    parameters: Mapping[str, Value] | None = None,
) -> Request:
    items = [{"type": "message", "role": t.role, "content": _content(t)} for t in turns]
    body: dict[str, Any] = {"model": model, "input": items, "stream": True}
    body |= request_fields(parameters or {}, provider.defaults, PARAMETERS)
    if system_prompt:
        body["instructions"] = system_prompt
    return Request(url=f"{provider.base_url}/responses", json=body, headers=bearer(provider.api_key()))


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class Parser(base.Parser):
    def feed(self, sse: ServerSentEvent) -> list[Event]:
        events: list[Event] = []
        for payload in read_payloads(sse.data):
            # Not this dialect's end signal: only a final response event ends the stream.
            if payload is not DONE:
                payload = expect_object(payload)
                events += self._event(str(payload.get("type") or sse.event), payload)
        return events

    def _event(self, kind: str, payload: dict[str, Any]) -> list[Event]:
        if kind == "response.output_text.delta":
            delta = payload.get("delta")
            return [TextDelta(delta)] if isinstance(delta, str) and delta else []
        if kind in THINKING:
            delta = payload.get("delta")
            return [ReasoningDelta(delta)] if isinstance(delta, str) and delta else []
        if kind == "response.reasoning_summary_part.added" and payload.get("summary_index", 0) != 0:
            return [ReasoningDelta("\n\n")]
        if kind == "error" or payload.get("error"):
            raise UpstreamError(error_text(payload.get("error") or payload))
        response = _object(payload.get("response"))
        if kind == "response.failed":
            raise UpstreamError(error_text(response.get("error") or "the response failed"))
        if kind not in ("response.completed", "response.incomplete"):
            return []
        self.ended = True
        reason = "stop"
        if kind == "response.incomplete":
            reason = str(_object(response.get("incomplete_details")).get("reason") or "incomplete")
        events: list[Event] = [finished(REASONS.get(reason, reason))]
        if usage := _object(response.get("usage")):
            details = _object(usage.get("output_tokens_details"))
            events.append(
                Usage(
                    token_count(usage.get("input_tokens")),
                    token_count(usage.get("output_tokens")),
                    token_count(details.get("reasoning_tokens")),
                )
            )
        return events
