"""Upstream dialects: one module each, registered by the name the providers file uses.

A dialect is pure: ``build_request`` turns a conversation into an HTTP request, and its
``Parser`` turns server-sent events into typed events. Neither touches the network, the
database or a socket; ``chat.upstream`` does the I/O. ``ACCEPTS_IMAGES`` says whether a
message's image URL can be sent.
"""

from __future__ import annotations

from types import ModuleType

from chat.providers import muapi, openai_chat, openai_responses, text_delta

DIALECTS: dict[str, ModuleType] = {
    "openai-chat": openai_chat,
    "openai-responses": openai_responses,
    "muapi": muapi,
    "text-delta": text_delta,
}


def accepts_images(dialect: str) -> bool:
    """Whether a message to a provider of this dialect may carry an image URL.

    For the services layer to refuse such a message before anything is stored.
    """
    return DIALECTS[dialect].ACCEPTS_IMAGES
