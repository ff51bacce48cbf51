"""Upstream dialects: one module each, registered by the name the providers file uses.

A dialect is pure: ``build_request`` turns a conversation into an HTTP request, and its
``Parser`` turns server-sent events into typed events. Neither touches the network, the
database or a socket; ``chat.upstream`` does the I/O. ``ACCEPTS_IMAGES`` says whether a
message's image URL can be sent; a model in the providers file may say it reads none.
``IMAGE_DATA`` says whether an attached image may go as a data URL (else as a signed
address), ``MAX_IMAGES`` how many a message may carry. ``PARAMETERS`` maps the sampling
parameters it takes to its own field names.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType

from chat.providers import muapi, openai_chat, openai_responses, text_delta
from chat.providers.config import Provider
from chat.providers.parameters import Parameter, Value, offered

DIALECTS: dict[str, ModuleType] = {
    "openai-chat": openai_chat,
    "openai-responses": openai_responses,
    "muapi": muapi,
    "text-delta": text_delta,
}


def accepts_images(provider: Provider, model: str) -> bool:
    """Whether a message to this model may carry an image URL: its dialect can send one
    and the providers file does not say the model reads none.

    For the services layer to refuse such a message before anything is stored.
    """
    spec = provider.model(model)
    return DIALECTS[provider.dialect].ACCEPTS_IMAGES and (spec is None or spec.images)


def parameters_of(provider: Provider | None) -> list[Parameter]:
    """The sampling parameters a conversation on ``provider`` may set."""
    return offered(DIALECTS[provider.dialect].PARAMETERS) if provider else []


def reply_parameters(provider: Provider | None, values: Mapping[str, Value]) -> dict[str, Value]:
    """What a reply is asked with: a conversation's ``values`` over the provider's
    defaults, of the parameters its dialect takes."""
    merged = {**provider.defaults, **values} if provider else {}
    return {p.name: merged[p.name] for p in parameters_of(provider) if p.name in merged}
