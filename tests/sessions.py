"""Sessions made without a login form, as ``django.contrib.auth.login`` makes them."""

from __future__ import annotations

from importlib import import_module

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.base_user import AbstractBaseUser

from chat import auth


def sign_in(user: AbstractBaseUser, *, expires_in: int | None = None) -> str:
    """A new session of ``user``'s; its key (the session cookie's value)."""
    session = import_module(settings.SESSION_ENGINE).SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = auth.BACKEND
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    if expires_in is not None:
        session.set_expiry(expires_in)
    session.create()
    return session.session_key
