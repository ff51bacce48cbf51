"""Rename, delete and search: each works on the person's own conversations only."""

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
    conversation = Conversation.objects.create(
        owner=bob, provider="demo", model="demo-1", title="Bob's plans"
    )
    Message.objects.create(conversation=conversation, role="user", content="The secret otter plan")
    return conversation


def test_rename_sets_the_title_and_refuses_an_empty_one(client, alice) -> None:
    conversation = Conversation.objects.create(owner=alice, provider="demo", model="demo-1", title="Old")
    client.force_login(alice)

    client.post(reverse("chat:rename", args=[conversation.pk]), {"title": "  New   name "})
    conversation.refresh_from_db()
    assert conversation.title == "New name"

    response = client.post(reverse("chat:rename", args=[conversation.pk]), {"title": "  "}, follow=True)
    assert b"A title cannot be empty." in response.content
    conversation.refresh_from_db()
    assert conversation.title == "New name"


def test_delete_removes_the_conversation_and_its_messages(client, alice) -> None:
    conversation = Conversation.objects.create(owner=alice, provider="demo", model="demo-1")
    Message.objects.create(conversation=conversation, role="user", content="hello")
    client.force_login(alice)

    response = client.post(reverse("chat:delete", args=[conversation.pk]))

    assert response["Location"] == reverse("chat:home")
    assert not Conversation.objects.filter(pk=conversation.pk).exists()
    assert not Message.objects.filter(content="hello").exists()


def test_another_persons_conversation_cannot_be_renamed_or_deleted(client, alice, bobs_conversation) -> None:
    client.force_login(alice)
    rename = client.post(reverse("chat:rename", args=[bobs_conversation.pk]), {"title": "Mine now"})
    delete = client.post(reverse("chat:delete", args=[bobs_conversation.pk]))

    assert (rename.status_code, delete.status_code) == (404, 404)
    bobs_conversation.refresh_from_db()
    assert bobs_conversation.title == "Bob's plans"


def test_search_finds_titles_and_message_text_of_ones_own_conversations(
    client, alice, bobs_conversation
) -> None:
    titled = Conversation.objects.create(owner=alice, provider="demo", model="demo-1", title="Otter facts")
    talked = Conversation.objects.create(owner=alice, provider="demo", model="demo-1", title="Rivers")
    Message.objects.create(
        conversation=talked, role="assistant", content="Sea otters hold hands while asleep."
    )
    client.force_login(alice)

    html = client.get(reverse("chat:search"), {"q": "OTTER"}).content.decode()

    assert "2 conversations match" in html
    assert f'href="/conversations/{titled.pk}/"' in html
    assert "Sea <mark>otter</mark>s hold hands while asleep." in html
    assert "Bob" not in html and "secret" not in html


def test_an_empty_search_returns_nothing_and_a_miss_says_so(client, alice) -> None:
    client.force_login(alice)
    assert client.get(reverse("chat:search"), {"q": "  "}).content.strip() == b""
    assert "No conversations match" in client.get(reverse("chat:search"), {"q": "zebra"}).content.decode()


def test_search_results_show_markup_as_text(client, alice) -> None:
    Conversation.objects.create(
        owner=alice, provider="demo", model="demo-1", title="<img src=x onerror=alert(1)>"
    )
    client.force_login(alice)

    html = client.get(reverse("chat:search"), {"q": "<img"}).content.decode()

    assert "<img" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_a_search_with_more_matches_than_it_lists_says_how_many_match_in_all(client, alice) -> None:
    from chat.conversations import SEARCH_RESULTS

    for number in range(SEARCH_RESULTS + 5):
        Conversation.objects.create(owner=alice, title=f"Otters {number}", provider="demo", model="demo-1")
    client.force_login(alice)

    html = client.get(reverse("chat:search"), {"q": "otters"}).content.decode()

    assert f"The first {SEARCH_RESULTS} of {SEARCH_RESULTS + 5} conversations that match" in html
    assert html.count("<li>") == SEARCH_RESULTS
