"""The conversation list with 100,000 conversations: a fixed number of queries, whatever the page size."""

from __future__ import annotations

import time

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from chat.models import Conversation, Message
from tests.admin_data import FAST_HASHERS

pytestmark = pytest.mark.django_db

CONVERSATIONS = 100_000
OWNERS = 200
BATCH = 10_000
CHANGELIST = reverse("admin:chat_conversation_changelist")


@pytest.fixture(autouse=True)
def _fast_hashers(settings) -> None:
    settings.PASSWORD_HASHERS = FAST_HASHERS


@pytest.fixture
def many_conversations() -> None:
    """100,000 conversations of 200 people; the newest 10,000 hold a question and a finished reply.

    Messages for every conversation would triple the setup time without changing what the
    list does: it reads the same subqueries for a page of rows either way.
    """
    owners = User.objects.bulk_create(User(username=f"person{n}", password="!") for n in range(OWNERS))
    for start in range(0, CONVERSATIONS, BATCH):
        conversations = Conversation.objects.bulk_create(
            Conversation(owner=owners[n % OWNERS], title=f"Conversation {n}", provider="demo", model="demo-1")
            for n in range(start, start + BATCH)
        )
    Message.objects.bulk_create(
        (
            message
            for conversation in conversations
            for message in (
                Message(conversation=conversation, role=Message.Role.USER, content="A question"),
                Message(
                    conversation=conversation,
                    role=Message.Role.ASSISTANT,
                    content="An answer",
                    model="demo-1",
                    input_tokens=12,
                    output_tokens=34,
                ),
            )
        ),
        batch_size=BATCH,
    )


def page_with(client, monkeypatch: pytest.MonkeyPatch, per_page: int, query: str = "") -> tuple[int, float]:
    """(queries, seconds) for one changelist page of ``per_page`` rows."""
    monkeypatch.setattr(admin.site.get_model_admin(Conversation), "list_per_page", per_page)
    started = time.perf_counter()
    with CaptureQueriesContext(connection) as captured:
        response = client.get(f"{CHANGELIST}?{query}")
    elapsed = time.perf_counter() - started
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == per_page
    return len(captured), elapsed


def test_the_list_of_100000_conversations_costs_the_same_queries_for_any_page_size(
    admin_client, many_conversations: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    for query in ["", "status=complete&model_choice=demo/demo-1", "p=200&o=5"]:
        measured = {size: page_with(admin_client, monkeypatch, size, query) for size in (10, 100, 400)}
        report = ", ".join(
            f"{size} rows: {n} queries in {s * 1000:.0f} ms" for size, (n, s) in measured.items()
        )
        print(f"\nchangelist {query or 'plain'}: {report}")
        assert len({queries for queries, _ in measured.values()}) == 1
