"""Pages: login required everywhere, and a person sees only their own conversations."""

from __future__ import annotations

import pytest
from django.urls import reverse

from chat.models import Conversation, Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", password="x" * 12)


@pytest.fixture
def bobs_conversation(django_user_model) -> Conversation:
    bob = django_user_model.objects.create_user("bob", password="x" * 12)
    return Conversation.objects.create(owner=bob, provider="demo", model="demo-1", title="Bob's secret")


def test_every_page_sends_an_anonymous_visitor_to_log_in(client, bobs_conversation) -> None:
    for url in [reverse("chat:home"), reverse("chat:conversation", args=[bobs_conversation.pk])]:
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


def test_home_opens_a_conversation_with_the_demo_model(client, alice, sim) -> None:
    client.force_login(alice)
    response = client.get(reverse("chat:home"), follow=True)
    conversation = Conversation.objects.get(owner=alice)
    assert response.redirect_chain[-1][0] == reverse("chat:conversation", args=[conversation.pk])
    assert (conversation.provider, conversation.model) == ("demo", "demo-1")
    assert b'aria-label="Conversations"' in response.content
    assert b'ws-connect="/ws/conversations/' in response.content


def test_another_users_conversation_is_not_found(client, alice, bobs_conversation) -> None:
    client.force_login(alice)
    assert client.get(reverse("chat:conversation", args=[bobs_conversation.pk])).status_code == 404
    response = client.post(reverse("chat:settings", args=[bobs_conversation.pk]), {"model": "demo/demo-1"})
    assert response.status_code == 404


def test_another_users_reply_cannot_be_stopped(client, alice, bobs_conversation) -> None:
    reply = Message.objects.create(
        conversation=bobs_conversation, role="assistant", status="streaming", worker_channel="x"
    )
    client.force_login(alice)
    assert client.post(reverse("chat:stop", args=[reply.pk])).status_code == 404
    reply.refresh_from_db()
    assert reply.stop_requested_at is None


def test_new_chat_reuses_an_empty_conversation(client, alice, sim) -> None:
    client.force_login(alice)
    first = client.post(reverse("chat:new"))
    second = client.post(reverse("chat:new"))
    assert first["Location"] == second["Location"]
    assert Conversation.objects.filter(owner=alice).count() == 1


def test_settings_change_the_model_and_system_prompt(client, alice, sim) -> None:
    client.force_login(alice)
    conversation = Conversation.objects.create(owner=alice, provider="demo", model="demo-1")
    client.post(
        reverse("chat:settings", args=[conversation.pk]),
        {"model": "demo/demo-1", "system_prompt": " Be brief. "},
    )
    conversation.refresh_from_db()
    assert conversation.system_prompt == "Be brief."
    response = client.post(reverse("chat:settings", args=[conversation.pk]), {"model": "nope/x"}, follow=True)
    assert b"Unknown model" in response.content


def test_stop_over_http_records_the_request_for_the_owning_worker(client, alice, sim) -> None:
    conversation = Conversation.objects.create(owner=alice, provider="demo", model="demo-1")
    reply = Message.objects.create(
        conversation=conversation, role="assistant", status="streaming", worker_channel="replies.x!y"
    )
    client.force_login(alice)
    assert client.post(reverse("chat:stop", args=[reply.pk])).status_code == 204
    reply.refresh_from_db()
    assert reply.stop_requested_at is not None


def test_a_page_load_ends_a_reply_whose_worker_stopped_beating(client, alice, sim) -> None:
    from datetime import timedelta

    from django.utils import timezone

    conversation = Conversation.objects.create(owner=alice, provider="demo", model="demo-1")
    reply = Message.objects.create(
        conversation=conversation, role="assistant", status="streaming", content="partial",
        heartbeat_at=timezone.now() - timedelta(minutes=5),
    )  # fmt: skip
    client.force_login(alice)
    response = client.get(reverse("chat:conversation", args=[conversation.pk]))
    reply.refresh_from_db()
    assert (reply.status, reply.content) == ("interrupted", "partial")
    assert b'data-status="interrupted"' in response.content


def test_a_messages_source_is_its_text_as_written_for_its_owner_only(
    client, alice, bobs_conversation
) -> None:
    mine = Conversation.objects.create(owner=alice, title="Mine", provider="demo", model="demo")
    reply = Message.objects.create(
        conversation=mine, role=Message.Role.ASSISTANT, content="## Hi\n\n<b>**bold**</b>", status="complete"
    )
    theirs = Message.objects.create(conversation=bobs_conversation, role=Message.Role.USER, content="secret")
    client.force_login(alice)

    response = client.get(reverse("chat:source", args=[reply.pk]))

    assert response.status_code == 200
    assert response.content.decode() == "## Hi\n\n<b>**bold**</b>"
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert client.get(reverse("chat:source", args=[theirs.pk])).status_code == 404
