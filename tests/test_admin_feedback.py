"""Feedback in the admin: the list and its filters, audited exports, and approval per model."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from chat.admin.usage import build_dashboard
from chat.models import Conversation, Feedback, Message, TranscriptAccess
from tests.admin_data import FAST_HASHERS, make_conversation, make_exchange, make_user

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:chat_feedback_changelist")
HOSTILE = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'


@pytest.fixture(autouse=True)
def _fast_hashers(settings) -> None:
    settings.PASSWORD_HASHERS = FAST_HASHERS


def rate(reply: Message, rating: str, comment: str = "", days_ago: int = 0) -> Feedback:
    feedback = Feedback.objects.create(
        message=reply, user=reply.conversation.owner, rating=rating, comment=comment
    )
    if days_ago:
        Feedback.objects.filter(pk=feedback.pk).update(updated_at=timezone.now() - timedelta(days=days_ago))
    return feedback


@pytest.fixture
def rated() -> dict[str, Feedback]:
    """Alice liked a demo reply; Bob disliked a lab reply, forty days ago."""
    alice, bob = make_user("alice"), make_user("bob")
    tides = make_conversation(alice, "Tides")
    _, tide_reply = make_exchange(tides, "When is high tide?", "High tide is at noon.")
    sonnets = make_conversation(bob, "Sonnets", provider="lab", model="bard-2")
    _, sonnet_reply = make_exchange(sonnets, "A sonnet?", "Shall I compare thee")
    return {
        "up": rate(tide_reply, "up", "Spot on"),
        "down": rate(sonnet_reply, "down", "Not a sonnet", days_ago=40),
    }


def listed(response) -> list[Feedback]:
    return list(response.context["cl"].result_list)


def export(client, action: str, feedback: list[Feedback]):
    return client.post(CHANGELIST, {"action": action, "_selected_action": [f.pk for f in feedback]})


def auditor() -> User:
    return make_user(
        "auditor", staff=True, perms=("chat.view_feedback", "chat.view_transcript", "chat.view_conversation")
    )


def test_the_list_shows_rating_model_person_date_and_comment_but_no_message_text(admin_client, rated) -> None:
    html = admin_client.get(CHANGELIST).content.decode()
    for text in ["thumbs up", "thumbs down", "demo/demo-1", "lab/bard-2", "alice", "bob", "Spot on"]:
        assert text in html
    for text in ["When is high tide?", "High tide is at noon.", "Shall I compare thee", "Tides"]:
        assert text not in html


def test_filters_narrow_by_model_person_rating_and_date(admin_client, rated) -> None:
    def ratings(query: str) -> set[str]:
        return {f.rating for f in listed(admin_client.get(f"{CHANGELIST}?{query}"))}

    bob = User.objects.get(username="bob")
    assert ratings("model_choice=lab/bard-2") == {"down"}
    assert ratings("model_choice=demo/demo-1") == {"up"}
    assert ratings(f"user__id__exact={bob.pk}") == {"down"}
    assert ratings("rating__exact=up") == {"up"}
    week_ago = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=7)
    assert ratings(urlencode({"updated_at__gte": str(week_ago)})) == {"up"}


def test_a_hostile_comment_is_escaped_in_the_list(admin_client, rated) -> None:
    rated["up"].comment = HOSTILE
    rated["up"].save()
    html = admin_client.get(CHANGELIST).content.decode()
    assert "<img src=x" not in html
    assert "<script>window.pwned" not in html
    assert "&lt;img src=x onerror=&quot;window.pwned=1&quot;&gt;" in html


def test_feedback_cannot_be_added_or_edited_in_the_admin(admin_client, rated) -> None:
    assert admin_client.get(reverse("admin:chat_feedback_add")).status_code == 403
    change = reverse("admin:chat_feedback_change", args=[rated["up"].pk])
    assert admin_client.post(change, {"rating": "down", "comment": "forged"}).status_code == 403
    rated["up"].refresh_from_db()
    assert (rated["up"].rating, rated["up"].comment) == ("up", "Spot on")


def test_the_json_export_carries_each_rating_with_the_exchange_it_rates(client, rated) -> None:
    client.force_login(auditor())
    response = export(client, "export_json", [rated["up"], rated["down"]])

    assert response.status_code == 200
    assert response["Content-Disposition"].startswith('attachment; filename="feedback-')
    rows = {row["rating"]: row for row in json.loads(response.content)["feedback"]}
    assert rows["up"]["question"] == "When is high tide?"
    assert rows["up"]["reply"] == "High tide is at noon."
    assert (rows["up"]["comment"], rows["up"]["user"], rows["up"]["model"]) == ("Spot on", "alice", "demo-1")
    assert rows["down"]["question"] == "A sonnet?"


def test_the_csv_export_has_a_row_per_rating_with_formulas_defused(client, rated) -> None:
    rated["down"].comment = "=HYPERLINK(1)"
    rated["down"].save()
    client.force_login(auditor())

    response = export(client, "export_csv", [rated["down"]])

    [row] = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert (row["rating"], row["question"], row["reply"]) == ("down", "A sonnet?", "Shall I compare thee")
    assert row["comment"] == "'=HYPERLINK(1)"


def test_an_export_records_one_access_per_conversation(client, rated) -> None:
    person = auditor()
    client.force_login(person)
    second_reply = make_exchange(rated["up"].message.conversation, "And tomorrow?", "At one.")[1]
    another = rate(second_reply, "down")

    export(client, "export_json", [rated["up"], another, rated["down"]])

    accesses = TranscriptAccess.objects.order_by("conversation__title")
    assert [(a.conversation.title, a.action, a.viewer) for a in accesses] == [
        ("Sonnets", "export", person),
        ("Tides", "export", person),
    ]


def test_an_export_needs_the_transcript_permission(client, rated) -> None:
    client.force_login(make_user("clerk", staff=True, perms=("chat.view_feedback",)))
    page = client.get(CHANGELIST).content.decode()
    assert "export_json" not in page
    assert "Read transcript" not in page

    response = export(client, "export_json", [rated["up"]])

    assert b"High tide is at noon." not in response.content
    assert not TranscriptAccess.objects.exists()


def test_the_exchange_is_read_through_the_audited_transcript(client, rated) -> None:
    client.force_login(auditor())
    page = client.get(CHANGELIST).content.decode()
    transcript = reverse("admin:chat_conversation_transcript", args=[rated["up"].message.conversation_id])
    assert f'href="{transcript}#message-{rated["up"].message_id}"' in page

    assert b"High tide is at noon." in client.get(transcript).content
    assert TranscriptAccess.objects.get().action == "read"


def test_a_continuations_exchange_is_the_persons_message_it_follows(client) -> None:
    conversation = make_conversation(make_user("carol"), "Long")
    question = Message.objects.create(conversation=conversation, role="user", content="Tell me all")
    first = Message.objects.create(
        conversation=conversation, role="assistant", content="Part one", parent=question, status="complete"
    )
    second = Message.objects.create(
        conversation=conversation, role="assistant", content="Part two", parent=first, status="complete"
    )
    client.force_login(auditor())

    response = export(client, "export_json", [rate(second, "up")])

    [row] = json.loads(response.content)["feedback"]
    assert (row["question"], row["reply"]) == ("Tell me all", "Part two")


def test_staff_without_the_feedback_permission_see_no_list(client, rated) -> None:
    client.force_login(make_user("clerk", staff=True, perms=("chat.view_conversation",)))
    assert client.get(CHANGELIST).status_code == 403


def test_the_dashboard_shows_ups_downs_and_approval_per_model(admin_client) -> None:
    people = [make_user(name) for name in ("ann", "ben", "cat", "dan")]
    for person, rating in zip(people, ["up", "up", "up", "down"], strict=True):
        reply = make_exchange(make_conversation(person, "Chat"), "q", "a")[1]
        rate(reply, rating)
    lab = make_exchange(make_conversation(people[0], "Lab", provider="lab", model="bard-2"), "q", "a")[1]
    rate(lab, "down")
    make_exchange(make_conversation(people[1], "Unrated", provider="quiet", model="q-1"), "q", "a")

    today = timezone.localdate()
    models = {m["choice"]: m for m in build_dashboard(today, today).models}
    assert (models["demo/demo-1"]["ups"], models["demo/demo-1"]["downs"]) == (3, 1)
    assert models["demo/demo-1"]["approval"] == 0.75
    assert (models["lab/bard-2"]["ups"], models["lab/bard-2"]["approval"]) == (0, 0.0)
    assert models["quiet/q-1"]["approval"] is None

    html = admin_client.get(reverse("admin:chat_conversation_usage")).content.decode()
    row = html[html.index('<tr data-model="demo/demo-1">') :]
    row = row[: row.index("</tr>")]
    assert '<td class="num ups">3</td><td class="num downs">1</td><td class="num approval">75%</td>' in row


def test_deleting_a_conversation_in_the_admin_deletes_its_feedback(admin_client, rated) -> None:
    tides = rated["up"].message.conversation
    admin_client.post(
        reverse("admin:chat_conversation_changelist"),
        {"action": "delete_selected", "_selected_action": [tides.pk], "post": "yes"},
    )
    assert not Conversation.objects.filter(pk=tides.pk).exists()
    assert list(Feedback.objects.values_list("rating", flat=True)) == ["down"]


def test_the_transcript_shows_each_replys_rating_and_comment(client, rated) -> None:
    rated["up"].comment = HOSTILE
    rated["up"].save()
    client.force_login(auditor())

    url = reverse("admin:chat_conversation_transcript", args=[rated["up"].message.conversation_id])
    html = client.get(url).content.decode()

    assert '<dt>Feedback</dt><dd class="feedback">thumbs up: <span class="plain">&lt;img src=x' in html
    assert "<img src=x" not in html


def test_the_list_costs_the_same_queries_for_one_row_or_twenty(admin_client) -> None:
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(CHANGELIST).status_code == 200
        return len(captured)

    rate(make_exchange(make_conversation(make_user("first"), "First"), "Hi", "Hello")[1], "up")
    one = queries()
    for n in range(19):
        rate(make_exchange(make_conversation(make_user(f"user{n}"), f"Chat {n}"), "Hi", "Hello")[1], "down")
    assert queries() == one
