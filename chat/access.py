"""Signed in, and then no longer: ending sessions, and the open pages that used them.

An HTTP request reads its session and its person every time, so it is refused the moment
either changes; a websocket was authenticated once, when it opened. So every change that
can end a session tells the person's pages, on every worker
(``broadcast.SESSIONS_CHANGED``): a person deactivated or deleted, a password changed, a
logout (here or in another tab), "Log out everywhere", staff ending someone's sessions.
Each page then checks its own session (``signed_in``); one that has ended stops the
replies it shows, says why, and closes with ``SIGNED_OUT``. The change is also recorded
(``Revocation``), and every worker looks for new ones once a second: a change made where
no channel layer reaches the workers (``manage.py shell`` beside one worker on the
in-memory layer), or a broadcast lost on the way, still reaches every page. A page also checks when its
session expires, and before any frame that would start a reply. The delta path checks
nothing: revocation arrives as one broadcast, not as a query per frame.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model, user_logged_out
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import Max
from django.db.models.signals import post_delete, post_save, pre_save
from django.utils import timezone

from chat import broadcast, replies, sql
from chat.auth import user_of
from chat.database import database_sync_to_async
from chat.models import Message, Revocation, SignOut, UserSession

# The close code of a page whose session ended: htmx's ws extension does not reconnect.
SIGNED_OUT = 4401

DEACTIVATED = "Your account was deactivated."
DELETED = "Your account was deleted."
PASSWORD_CHANGED = "Your password was changed."
LOGGED_OUT = "You signed out."
ENDED_ELSEWHERE = "You signed out everywhere else."
ENDED_BY_STAFF = "An administrator ended your sessions."
EXPIRED = "Your session expired."


class SignedOut(Exception):
    """The session a socket opened with has ended."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def signed_in(session_key: str | None, user_id: int) -> bool:
    """Whether ``session_key`` still signs in the person ``user_id``: it exists, has not
    expired, and Django's request authentication still finds that person with it."""
    user = user_of(session_key)
    return user.is_authenticated and user.pk == user_id


# Read with every socket that opens (``chat.sql``).
EXPIRY = f"SELECT session_key, expire_date FROM {UserSession._meta.db_table} WHERE session_key = %s"


def session_expiry(session_key: str | None) -> float | None:
    """Seconds until the session expires, as stored now."""
    session = sql.instance(UserSession, EXPIRY, [session_key])
    return None if session is None else (session.expire_date - timezone.now()).total_seconds()


def end_sessions(actor: AbstractBaseUser, user: AbstractBaseUser, *, keep: str | None = None) -> int:
    """End ``user``'s sessions (all, or all but ``keep``, the one making the request), stop
    their replies when all end, and record who did it. Their open pages close after commit."""
    with transaction.atomic():
        sessions = UserSession.objects.filter(user_id=user.pk)
        if keep:
            sessions = sessions.exclude(session_key=keep)
        ended, _ = sessions.delete()
        SignOut.objects.create(
            actor=actor,
            actor_username=actor.get_username(),
            user=user,
            username=user.get_username(),
            scope=SignOut.Scope.OTHERS if keep else SignOut.Scope.ALL,
            sessions=ended,
        )
    reason = ENDED_ELSEWHERE if keep else ENDED_BY_STAFF
    _after_commit(revoke if not keep else tell_pages, user.pk, reason)
    return ended


async def revoke(user_id: int, reason: str, session_key: str = "") -> None:
    """Every session of the person has ended: stop all their replies, close their pages."""
    running = await database_sync_to_async(_running_replies)(user_id)
    await replies.stop_all(running, reason)
    await tell_pages(user_id, reason, session_key)


async def tell_pages(user_id: int, reason: str, session_key: str = "") -> None:
    """A session of the person ended (``session_key``, when known): each of their pages
    checks its own."""
    await broadcast.sessions_changed(user_id, reason, session_key)


def _running_replies(user_id: int) -> list[Message]:
    return list(Message.objects.active().filter(conversation__owner_id=user_id))


def _after_commit(change: Callable[..., Any], user_id: int, reason: str, *, session_key: str = "") -> None:
    """Record the change for every worker's poll, and tell the pages at once after commit
    (before it, a page checking its session would still find it)."""
    Revocation.objects.create(user_id=user_id, reason=reason, session_key=session_key or "")
    transaction.on_commit(lambda: async_to_sync(change)(user_id, reason, session_key))


def recent_revocations(after: int | None) -> tuple[int, list[tuple[int, str, str]]]:
    """The revocations recorded after id ``after`` (None: from now on), and the newest id."""
    if after is None:
        return Revocation.objects.aggregate(newest=Max("pk"))["newest"] or 0, []
    rows = list(Revocation.objects.filter(pk__gt=after).values_list("pk", "user_id", "reason", "session_key"))
    return (rows[-1][0] if rows else after), [(user_id, reason, key) for _, user_id, reason, key in rows]


def do_forget_old_revocations() -> None:
    Revocation.objects.filter(at__lt=timezone.now() - timedelta(hours=1)).delete()


# What ends sessions without this module's help, seen through Django's signals.


def _remember(sender: type, instance: AbstractBaseUser, **kwargs: Any) -> None:
    if instance.pk:
        before = sender.objects.filter(pk=instance.pk).values("password", "is_active").first()
        instance._access_before = before


def _changed(sender: type, instance: AbstractBaseUser, created: bool, **kwargs: Any) -> None:
    before = getattr(instance, "_access_before", None)
    if created or before is None:
        return
    if before["is_active"] and not instance.is_active:
        _after_commit(revoke, instance.pk, DEACTIVATED)
    elif before["password"] != instance.password:
        # Sessions made before the change no longer match the person's password hash; the
        # one that changed it was updated to match (update_session_auth_hash) and stays.
        _after_commit(tell_pages, instance.pk, PASSWORD_CHANGED)


def _deleted(sender: type, instance: AbstractBaseUser, **kwargs: Any) -> None:
    # Their conversations went with them; the workers running their replies find no row
    # at their next save and stop, or stop at once here.
    _after_commit(revoke, instance.pk, DELETED)


def _logged_out(sender: type, request: Any, user: AbstractBaseUser | None, **kwargs: Any) -> None:
    # Sent before the session is flushed: the pages are told which one is ending.
    if user is not None:
        _after_commit(tell_pages, user.pk, LOGGED_OUT, session_key=request.session.session_key or "")


def connect_signals() -> None:
    user_model = get_user_model()
    pre_save.connect(_remember, sender=user_model, dispatch_uid="chat.access.remember")
    post_save.connect(_changed, sender=user_model, dispatch_uid="chat.access.changed")
    post_delete.connect(_deleted, sender=user_model, dispatch_uid="chat.access.deleted")
    user_logged_out.connect(_logged_out, dispatch_uid="chat.access.logged_out")
