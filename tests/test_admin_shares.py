"""Share links in the admin: every person's links, revoking any, never a token or a snapshot's text."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from chat import shares
from chat.models import ShareLink
from tests.admin_data import FAST_HASHERS, make_conversation, make_exchange, make_user

pytestmark = pytest.mark.django_db

LINKS = reverse("admin:chat_sharelink_changelist")
SECRET_TEXT = "snapshot-text-marker-5522"


@pytest.fixture(autouse=True)
def _fast_hashers(settings) -> None:
    settings.PASSWORD_HASHERS = FAST_HASHERS


@pytest.fixture
def alice() -> User:
    return make_user("alice")


@pytest.fixture
def made(alice: User) -> tuple[ShareLink, str]:
    conversation = make_conversation(alice, "Tide tables")
    make_exchange(conversation, SECRET_TEXT, SECRET_TEXT)
    return shares.do_make_link(conversation, include_system_prompt=False)


def test_staff_see_every_link_with_owner_conversation_made_and_revoked(admin_client, made) -> None:
    link, _ = made
    bobs_chat = make_conversation(make_user("bob"), "Bob chat")
    bobs, _ = shares.do_make_link(bobs_chat, include_system_prompt=False)
    shares.do_revoke(ShareLink.objects.filter(pk=bobs.pk))
    response = admin_client.get(LINKS)
    assert {row.pk for row in response.context["cl"].result_list} == {link.pk, bobs.pk}
    content = response.content.decode()
    for text in ["alice", "bob", "Tide tables", "Bob chat", "column-created_at", "column-revoked_at"]:
        assert text in content


def test_staff_never_see_the_token_the_hash_or_the_snapshots_text(admin_client, made) -> None:
    link, token = made
    content = admin_client.get(LINKS).content.decode()
    assert token not in content
    assert link.token_hash not in content
    assert SECRET_TEXT not in content


def test_a_link_has_no_admin_page_of_its_own(admin_client, made) -> None:
    link, _ = made
    assert admin_client.get(reverse("admin:chat_sharelink_change", args=[link.pk])).status_code in {302, 403}
    assert admin_client.get(reverse("admin:chat_sharelink_add")).status_code == 403


def test_the_revoke_action_revokes_the_chosen_links(admin_client, client, made) -> None:
    link, token = made
    response = admin_client.post(
        LINKS, {"action": "revoke_links", "_selected_action": [link.pk]}, follow=True
    )
    assert b"Revoked 1 share link." in response.content
    link.refresh_from_db()
    assert link.revoked_at is not None
    assert client.get(reverse("chat:shared", args=[token])).status_code == 404


def test_staff_without_the_revoke_permission_get_no_revoke_action(client, made) -> None:
    link, _ = made
    client.force_login(make_user("watcher", staff=True, perms=("chat.view_sharelink",)))
    assert b"revoke_links" not in client.get(LINKS).content
    client.post(LINKS, {"action": "revoke_links", "_selected_action": [link.pk]})
    link.refresh_from_db()
    assert link.revoked_at is None


def test_a_non_staff_user_gets_no_link_list(client, alice, made) -> None:
    client.force_login(alice)
    assert client.get(LINKS).status_code == 302
