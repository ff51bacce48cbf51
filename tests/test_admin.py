"""The conversation list and transcripts in the admin: columns, filters, search, permissions, audit."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from chat.models import Conversation, Message, TranscriptAccess
from tests.admin_data import FAST_HASHERS, make_conversation, make_exchange, make_user

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:chat_conversation_changelist")


@pytest.fixture(autouse=True)
def _fast_hashers(settings) -> None:
    settings.PASSWORD_HASHERS = FAST_HASHERS


def transcript_url(conversation: Conversation) -> str:
    return reverse("admin:chat_conversation_transcript", args=[conversation.pk])


@pytest.fixture
def alice() -> User:
    return make_user("alice")


@pytest.fixture
def tides(alice: User) -> Conversation:
    """Alice's conversation: two exchanges, the last one failed."""
    conversation = make_conversation(alice, "Tide tables")
    make_exchange(
        conversation, "When is high tide?", "At **noon**.", input_tokens=100, output_tokens=50, cost="0.002"
    )
    make_exchange(
        conversation, "And tomorrow?", "", status=Message.Status.ERROR, input_tokens=None, output_tokens=None,
        cost=None, error="The upstream refused the request.",
    )  # fmt: skip
    return conversation


def listed(response) -> list[Conversation]:
    return list(response.context["cl"].result_list)


def test_a_non_staff_user_gets_no_admin_page(client, alice: User, tides: Conversation) -> None:
    client.force_login(alice)
    for url in [
        reverse("admin:index"),
        CHANGELIST,
        transcript_url(tides),
        reverse("admin:chat_conversation_usage"),
    ]:
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))
    assert not TranscriptAccess.objects.exists()


def test_the_list_shows_owner_model_usage_and_last_reply_status(admin_client, tides: Conversation) -> None:
    response = admin_client.get(CHANGELIST)
    [row] = listed(response)
    assert (row.message_count, row.tokens, row.cost, row.last_status) == (4, 150, Decimal("0.002"), "error")
    html = response.content.decode()
    for text in ["Tide tables", "alice", "demo/demo-1", "150", "$0.0020", "error"]:
        assert text in html


def test_staff_without_the_transcript_permission_cannot_read_a_transcript(
    client, tides: Conversation
) -> None:
    client.force_login(make_user("clerk", staff=True, perms=("chat.view_conversation",)))
    assert client.get(CHANGELIST).status_code == 200
    assert b"Read transcript" not in client.get(CHANGELIST).content
    assert (
        b"Read transcript"
        not in client.get(reverse("admin:chat_conversation_change", args=[tides.pk])).content
    )
    assert client.get(transcript_url(tides)).status_code == 403
    assert not TranscriptAccess.objects.exists()


def test_the_change_page_shows_no_message_text(admin_client, tides: Conversation) -> None:
    response = admin_client.get(reverse("admin:chat_conversation_change", args=[tides.pk]))
    assert response.status_code == 200
    assert b"When is high tide?" not in response.content
    assert b"Read transcript" in response.content


def test_messages_cannot_be_added_or_edited_in_the_admin(admin_client, tides: Conversation) -> None:
    change_url = reverse("admin:chat_conversation_change", args=[tides.pk])
    assert b"<textarea" not in admin_client.get(change_url).content
    response = admin_client.post(change_url, {"title": "Renamed", "messages-TOTAL_FORMS": "1"})
    assert response.status_code == 403
    assert admin_client.get("/admin/chat/message/").status_code == 404
    assert admin_client.get(reverse("admin:chat_conversation_add")).status_code == 403
    tides.refresh_from_db()
    assert tides.title == "Tide tables"
    assert tides.messages.count() == 4


def test_filters_narrow_by_owner_model_status_and_date(
    admin_client, alice: User, tides: Conversation
) -> None:
    bob = make_user("bob")
    sonnets = make_conversation(bob, "Sonnets", provider="lab", model="bard-2")
    make_exchange(sonnets, "A sonnet?", "Shall I compare thee")
    Conversation.objects.filter(pk=sonnets.pk).update(updated_at=timezone.now() - timedelta(days=40))

    def titles(query: str) -> set[str]:
        return {c.title for c in listed(admin_client.get(f"{CHANGELIST}?{query}"))}

    assert titles(f"owner__id__exact={bob.pk}") == {"Sonnets"}
    assert titles("model_choice=lab/bard-2") == {"Sonnets"}
    assert titles("status=error") == {"Tide tables"}
    assert titles("status=complete") == {"Sonnets"}
    week_ago = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=7)
    assert titles(urlencode({"updated_at__gte": str(week_ago)})) == {"Tide tables"}


def test_search_covers_titles_usernames_and_message_text(
    admin_client, alice: User, tides: Conversation
) -> None:
    make_conversation(make_user("bob"), "Sonnets")

    def titles(term: str) -> list[str]:
        return [c.title for c in listed(admin_client.get(CHANGELIST, {"q": term}))]

    assert titles("sonn") == ["Sonnets"]
    assert titles("bob") == ["Sonnets"]
    assert titles("high tide") == ["Tide tables"]
    assert titles('"high tide" tomorrow') == ["Tide tables"]
    assert titles("nothing-like-this") == []


def test_a_text_search_does_not_inflate_the_usage_columns(admin_client, tides: Conversation) -> None:
    [row] = listed(admin_client.get(CHANGELIST, {"q": "tide"}))
    assert (row.message_count, row.tokens) == (4, 150)


def test_staff_without_the_transcript_permission_cannot_search_message_text(
    client, tides: Conversation
) -> None:
    client.force_login(make_user("clerk", staff=True, perms=("chat.view_conversation",)))
    assert listed(client.get(CHANGELIST, {"q": "noon"})) == []
    assert [c.title for c in listed(client.get(CHANGELIST, {"q": "tables"}))] == ["Tide tables"]


def test_the_transcript_reads_like_the_chat_with_each_replys_metadata(
    admin_client, tides: Conversation
) -> None:
    make_exchange(
        tides, "Format it", "## Times\n\n<script>alert(1)</script> [link](javascript:alert(1))",
        finish_reason="stop", time_to_first_token_ms=321, duration_ms=4567, retries=2, cost="0.000123",
    )  # fmt: skip
    html = admin_client.get(transcript_url(tides)).content.decode()
    assert (
        html.index("When is high tide?") < html.index("<strong>noon</strong>") < html.index("And tomorrow?")
    )
    assert "<h2>Times</h2>" in html
    assert "<script>alert(1)</script>" not in html
    assert 'href="javascript' not in html
    for text in [
        "stop",
        "10 in · 20 out",
        "$0.000123",
        "321 ms",
        "4567 ms",
        'Retries</dt><dd class="retries">2',
    ]:
        assert text in html
    assert "The upstream refused the request." in html


def test_opening_a_transcript_is_recorded_and_listed_in_the_admin(client, tides: Conversation) -> None:
    auditor = make_user(
        "auditor",
        staff=True,
        perms=("chat.view_conversation", "chat.view_transcript", "chat.view_transcriptaccess"),
    )
    client.force_login(auditor)
    before = timezone.now()
    assert client.get(transcript_url(tides)).status_code == 200

    [access] = TranscriptAccess.objects.all()
    assert (access.viewer, access.conversation, access.action) == (auditor, tides, "read")
    assert before <= access.accessed_at <= timezone.now()
    log = client.get(reverse("admin:chat_transcriptaccess_changelist")).content.decode()
    assert "auditor" in log
    assert f"#{tides.pk} Tide tables" in log


def test_the_access_log_cannot_be_edited_or_deleted(admin_client, tides: Conversation) -> None:
    admin_client.get(transcript_url(tides))
    access = TranscriptAccess.objects.get()
    assert admin_client.get(reverse("admin:chat_transcriptaccess_add")).status_code == 403
    assert (
        admin_client.post(reverse("admin:chat_transcriptaccess_delete", args=[access.pk])).status_code == 403
    )
    assert TranscriptAccess.objects.count() == 1


def test_the_list_costs_the_same_queries_for_one_row_or_twenty(admin_client, alice: User) -> None:
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(CHANGELIST).status_code == 200
        return len(captured)

    make_exchange(make_conversation(alice, "First"), "Hi", "Hello")
    one = queries()
    for n in range(19):
        make_exchange(make_conversation(make_user(f"user{n}"), f"Chat {n}"), "Hi", "Hello")
    assert queries() == one


def test_the_transcript_shows_every_version_and_which_branch_the_chat_shows(
    admin_client, alice: User
) -> None:
    conversation = make_conversation(alice, "Drafts")
    question = Message.objects.create(conversation=conversation, role=Message.Role.USER, content="A haiku?")
    for text in ["First draft", "Second draft"]:
        Message.objects.create(
            conversation=conversation, role=Message.Role.ASSISTANT, content=text, parent=question
        )

    html = admin_client.get(transcript_url(conversation)).content.decode()
    first, second = html.index("First draft"), html.index("Second draft")
    assert html.index("version 1 of 2") < first < html.index("version 2 of 2") < second
    assert html.count("another branch") == 1
    assert html.index("another branch") < first


def test_an_admin_can_still_delete_a_conversation(admin_client, tides: Conversation) -> None:
    response = admin_client.post(
        CHANGELIST, {"action": "delete_selected", "_selected_action": [tides.pk], "post": "yes"}
    )
    assert response.status_code == 302
    assert not Conversation.objects.exists()
    assert not Message.objects.exists()


def test_the_conversation_list_shows_each_conversations_last_activity(admin_client) -> None:
    conversation = make_conversation(make_user("alice"), "Otters")
    make_exchange(conversation, "Hi", "Hello")

    page = admin_client.get(reverse("admin:chat_conversation_changelist")).content.decode()

    assert "column-last_activity" in page and "Last activity" in page
    assert 'href="?o=' in page  # sortable: by updated_at
