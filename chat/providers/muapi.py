"""MuAPI's LLM streams: ``POST {base_url}/{model}/stream`` (e.g. Gemini 3 Flash).

The request is a single prompt (``{prompt, system_prompt?, image_url?}``) with the key in
an ``x-api-key`` header, so a conversation's history is flattened into the prompt (see
``flatten_history``). Only the latest message's image can be sent. The response streams
Chat Completions chunks, usage on the last one, and ``{"error": "..."}`` events, which the
Chat Completions parser already reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from chat.providers import openai_chat
from chat.providers.base import Request, Turn, flatten_history
from chat.providers.config import Provider
from chat.providers.parameters import Value

ACCEPTS_IMAGES = True
# One image, by address only: an attached one goes as a signed URL (chat.attachments).
IMAGE_DATA = False
MAX_IMAGES = 1
# Its documented request has no sampling fields.
PARAMETERS: dict[str, str] = {}
Parser = openai_chat.Parser


def build_request(
    provider: Provider,
    model: str,
    turns: Sequence[Turn],
    system_prompt: str = "",
    parameters: Mapping[str, Value] | None = None,
) -> Request:
    body: dict[str, Any] = {"prompt": flatten_history(turns)}
    if system_prompt:
        body["system_prompt"] = system_prompt
    if turns and (urls := turns[-1].image_urls):
        body["image_url"] = urls[0]
    headers = {"x-api-key": key} if (key := provider.api_key()) else {}
    url = f"{provider.base_url}/{quote(model, safe='')}/stream"
    return Request(url=url, json=body, headers=headers)
