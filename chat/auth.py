"""Who a socket belongs to: its session and user, resolved when it opens.

Channels' ``AuthMiddlewareStack`` resolves them the same way, through Django's session
store, and also wraps every frame the consumer sends to save a changed session; a chat
socket never changes its session, and that check ran on every frame of every reply. The
user is found as Django finds it for a request (``django.contrib.auth.get_user``): an
inactive person, or a session whose password hash no longer matches, is anonymous.

``Backend`` is Django's ``ModelBackend`` with the person read as one written-out statement
(``chat.sql``): it runs with every request, every socket that opens and every message a
socket sends, where the ORM's ``get`` spent about 0.4 ms of Python on the one database
thread a worker has, five times the read's own cost (docs/benchmark.md).
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from importlib import import_module
from types import SimpleNamespace
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user, get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.http.cookie import parse_cookie

from chat import sql
from chat.database import database_sync_to_async

# The path sessions signed in before ``Backend`` record, read as ``Backend`` (chat.sessions).
DJANGO_BACKEND = "django.contrib.auth.backends.ModelBackend"
BACKEND = "chat.auth.Backend"


@cache
def _person() -> str:
    model = get_user_model()
    return f"SELECT * FROM {model._meta.db_table} WHERE {model._meta.pk.column} = %s"


class Backend(ModelBackend):
    """Logs in, and finds the person a session names, as ``ModelBackend`` does."""

    def get_user(self, user_id: Any) -> AbstractBaseUser | None:
        user = sql.instance(get_user_model(), _person(), [user_id])
        return user if user is not None and self.user_can_authenticate(user) else None

    async def aget_user(self, user_id: Any) -> AbstractBaseUser | None:
        return await sync_to_async(self.get_user)(user_id)


def session_key_of(scope: dict[str, Any]) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            return parse_cookie(value.decode("latin-1")).get(settings.SESSION_COOKIE_NAME)
    return None


def user_of(session_key: str | None) -> AbstractBaseUser | AnonymousUser:
    """The user a session belongs to, as Django's own request authentication finds it."""
    return visitor(session_key)[0]


def visitor(session_key: str | None) -> tuple[AbstractBaseUser | AnonymousUser, datetime | None]:
    """``user_of``, and when the session expires, as stored (None: there is no session),
    from the same read."""
    if not session_key:
        return AnonymousUser(), None
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    return get_user(SimpleNamespace(session=store)), store.stored_expiry


class SessionAuthMiddleware:
    """Puts ``user``, ``session_key`` and ``session_expires`` into a websocket's scope."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        session_key = session_key_of(scope)
        user, expires = await database_sync_to_async(visitor)(session_key)
        scope = dict(scope, user=user, session_key=session_key, session_expires=expires)
        return await self.inner(scope, receive, send)
