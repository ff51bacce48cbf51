"""Who a socket belongs to: its session and user, resolved when it opens.

Channels' ``AuthMiddlewareStack`` resolves them the same way, through Django's session
store, and also wraps every frame the consumer sends to save a changed session; a chat
socket never changes its session, and that check ran on every frame of every reply. The
user is found as Django finds it for a request (``django.contrib.auth.get_user``): an
inactive person, or a session whose password hash no longer matches, is anonymous.
"""

from __future__ import annotations

from importlib import import_module
from types import SimpleNamespace
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.http.cookie import parse_cookie


def session_key_of(scope: dict[str, Any]) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            return parse_cookie(value.decode("latin-1")).get(settings.SESSION_COOKIE_NAME)
    return None


def user_of(session_key: str | None) -> AbstractBaseUser | AnonymousUser:
    """The user a session belongs to, as Django's own request authentication finds it."""
    if not session_key:
        return AnonymousUser()
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    return get_user(SimpleNamespace(session=store))


class SessionAuthMiddleware:
    """Puts ``user`` and ``session_key`` into a websocket's scope."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        session_key = session_key_of(scope)
        user = await database_sync_to_async(user_of)(session_key)
        return await self.inner(dict(scope, user=user, session_key=session_key), receive, send)
