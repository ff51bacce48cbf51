"""The generic text-delta stream: ``POST {base_url}/generate/stream`` with Bearer auth.

The request is ``{prompt, maxTokens?, temperature?}``: one prompt, so the system prompt and
the history are flattened into it (see ``flatten_history``), and no image can be sent.
Events are ``{id, text, delta, finishReason}``: ``delta`` is the new text (``text`` repeats
everything so far and is not used). ``finishReason`` on the final event or ``[DONE]`` ends
the stream; ``{"error": {"type", "message"}}`` is an error.

Parameters: ``max_tokens`` and ``temperature`` are sent as ``maxTokens`` and
``temperature`` when the conversation or the provider's defaults set them; otherwise the
vendor's defaults apply.
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
    flatten_history,
    read_payloads,
)
from chat.providers.config import Provider
from chat.providers.events import Event, TextDelta, UpstreamError
from chat.providers.parameters import Value, request_fields

ACCEPTS_IMAGES = False
IMAGE_DATA = False
MAX_IMAGES = 0
PARAMETERS = {"temperature": "temperature", "max_tokens": "maxTokens"}


def build_request(
    provider: Provider,
    model: str,
    turns: Sequence[Turn],
    system_prompt: str = "",
    parameters: Mapping[str, Value] | None = None,
) -> Request:
    """The request; the model is only a label, as the API names none.

    Raises ``UpstreamError`` when the latest message has an image, a backstop for a
    caller that did not check ``accepts_images`` first.
    """
    if turns and turns[-1].image_urls:
        raise UpstreamError("this model's API (text-delta) cannot take an image")
    body: dict[str, Any] = {"prompt": flatten_history(turns, system_prompt)}
    body |= request_fields(parameters or {}, provider.defaults, PARAMETERS)
    url = f"{provider.base_url}/generate/stream"
    return Request(url=url, json=body, headers=bearer(provider.api_key()))


class Parser(base.Parser):
    def feed(self, sse: ServerSentEvent) -> list[Event]:
        events: list[Event] = []
        for payload in read_payloads(sse.data):
            if payload is DONE:
                self.ended = True
                continue
            payload = expect_object(payload)
            if payload.get("error"):
                raise UpstreamError(error_text(payload["error"]))
            if isinstance(delta := payload.get("delta"), str) and delta:
                events.append(TextDelta(delta))
            if reason := payload.get("finishReason"):
                self.ended = True
                events.append(finished(reason))
        return events
