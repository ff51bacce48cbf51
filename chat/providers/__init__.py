"""Upstream dialects: one module each, registered by the name the providers file uses.

A dialect is pure: ``build_request`` turns a conversation into an HTTP request, and its
``Parser`` turns server-sent events into typed events. Neither touches the network, the
database or a socket; ``chat.upstream`` does the I/O.
"""

from __future__ import annotations

from types import ModuleType

from chat.providers import openai_chat

DIALECTS: dict[str, ModuleType] = {
    "openai-chat": openai_chat,
}
