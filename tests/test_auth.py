"""Who a session signs in (chat.auth.Backend): Django's model backend, the person read in
one written-out statement, and sessions made before it still signed in."""

from __future__ import annotations

from importlib import import_module

import pytest
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from chat import access, auth
from chat.models import Conversation
from tests.sessions import sign_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice() -> User:
    return User.objects.create_user("alice", password="a-password-1")


def made_with(user: User, backend: str) -> str:
    """A session of ``user`` recorded as logged in by ``backend``, as ``login`` makes it."""
    session = import_module(settings.SESSION_ENGINE).SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = backend
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key


def test_the_login_form_signs_in_through_the_backend(client: Client, alice: User) -> None:
    response = client.post(reverse("login"), {"username": "alice", "password": "a-password-1"})

    assert response.status_code == 302
    assert client.session[BACKEND_SESSION_KEY] == "chat.auth.Backend"
    assert client.get(reverse("chat:home")).status_code in (200, 302)
    assert auth.user_of(client.session.session_key) == alice


def test_a_wrong_password_signs_in_no_one(client: Client, alice: User) -> None:
    response = client.post(reverse("login"), {"username": "alice", "password": "wrong-password"})

    assert response.status_code == 200
    assert SESSION_KEY not in client.session


def test_a_session_made_with_djangos_own_backend_stays_signed_in(client: Client, alice: User) -> None:
    """Every session made before ``chat.auth.Backend`` names Django's ``ModelBackend``,
    which is no longer configured: Django alone would sign them all out."""
    key = made_with(alice, "django.contrib.auth.backends.ModelBackend")
    conversation = Conversation.objects.create(owner=alice, provider="demo", model="demo-1")
    client.cookies[settings.SESSION_COOKIE_NAME] = key

    page = client.get(reverse("chat:conversation", kwargs={"pk": conversation.pk}))

    assert page.status_code == 200
    assert page.context["user"] == alice
    assert auth.user_of(key) == alice
    assert access.signed_in(key, alice.pk)


def test_a_session_made_with_an_unknown_backend_signs_in_no_one(alice: User) -> None:
    key = made_with(alice, "somewhere.else.Backend")

    assert not auth.user_of(key).is_authenticated
    assert not access.signed_in(key, alice.pk)


def test_the_session_check_reads_the_person_in_one_written_out_statement(alice: User) -> None:
    key = sign_in(alice)

    with CaptureQueriesContext(connection) as queries:
        assert access.signed_in(key, alice.pk)

    statements = [query["sql"] for query in queries.captured_queries]
    assert len(statements) == 2  # the session, then its person
    assert statements[1].startswith(f"SELECT * FROM {User._meta.db_table} WHERE id = ")


def test_an_inactive_or_changed_person_is_not_signed_in(alice: User) -> None:
    key = sign_in(alice)
    alice.is_active = False
    alice.save()
    assert not access.signed_in(key, alice.pk)

    alice.is_active = True
    alice.save()
    assert access.signed_in(key, alice.pk)

    alice.set_password("another-password-2")
    alice.save()
    assert not access.signed_in(key, alice.pk)


def test_a_deleted_person_is_not_signed_in(alice: User) -> None:
    key = made_with(alice, auth.BACKEND)
    pk = alice.pk
    User.objects.filter(pk=pk).delete()

    assert not auth.user_of(key).is_authenticated
    assert auth.Backend().get_user(pk) is None
