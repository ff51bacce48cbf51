"""The session engine: Django's database sessions, each row knowing whose it is.

Django's own table has no column for the person, so "end all of this person's sessions"
would mean decoding every session there is. This is Django's documented way to extend the
database engine (``AbstractBaseSession``); ``SESSION_ENGINE = "chat.sessions"``.

A session records the dotted path of the backend that logged its person in, and Django
signs out a session whose backend is no longer configured: sessions made while Django's
own ``ModelBackend`` was configured read as made by ``chat.auth.Backend``, its subclass.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import BACKEND_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.utils import timezone

from chat import auth, sql
from chat.models import UserSession

# Read with every request, and with every message a socket sends (``chat.sql``).
SESSION = f"SELECT * FROM {UserSession._meta.db_table} WHERE session_key = %s AND expire_date > %s"


class SessionStore(DatabaseSessionStore):
    # When the session read last expires, as stored (None: no session was read).
    stored_expiry = None

    @classmethod
    def get_model_class(cls) -> type:
        return UserSession

    def _get_session_from_db(self) -> UserSession | None:
        # Django's own read (``objects.get``) as one written-out statement.
        now = sql.timestamp(timezone.now())
        session = sql.instance(UserSession, SESSION, [self.session_key, now])
        if session is None:
            self._session_key = None
        self.stored_expiry = None if session is None else session.expire_date
        return session

    def decode(self, session_data: str) -> dict[str, Any]:
        data = super().decode(session_data)
        if data.get(BACKEND_SESSION_KEY) == auth.DJANGO_BACKEND:
            data[BACKEND_SESSION_KEY] = auth.BACKEND
        return data

    def create_model_instance(self, data: dict[str, Any]) -> Any:
        session = super().create_model_instance(data)
        try:
            session.user_id = int(data[SESSION_KEY])
        except (KeyError, TypeError, ValueError):
            session.user_id = None
        return session
