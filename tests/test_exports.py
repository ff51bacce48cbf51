"""Exports: admin actions (JSON, Markdown, CSV), the JSONL command, and a person's own download."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.urls import reverse

from chat.models import Conversation, TranscriptAccess
from tests.admin_data import FAST_HASHERS, make_conversation, make_exchange, make_user

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:chat_conversation_changelist")


@pytest.fixture(autouse=True)
def _fast_hashers(settings) -> None:
    settings.PASSWORD_HASHERS = FAST_HASHERS


@pytest.fixture
def alice() -> User:
    return make_user("alice")


@pytest.fixture
def tides(alice: User) -> Conversation:
    conversation = make_conversation(alice, "Tide tables")
    make_exchange(conversation, "When is high tide?", "At **noon**.", cost="0.002")
    return conversation


@pytest.fixture
def sonnets() -> Conversation:
    conversation = make_conversation(make_user("bob"), "Sonnets")
    make_exchange(conversation, '=HYPERLINK("http://x")', "Shall I compare thee")
    return conversation


def export(client, action: str, *conversations: Conversation):
    return client.post(CHANGELIST, {"action": action, "_selected_action": [c.pk for c in conversations]})


def test_the_json_export_holds_the_selected_conversations_with_every_message(
    admin_client, tides, sonnets
) -> None:
    response = export(admin_client, "export_json", tides)
    assert response["Content-Disposition"].startswith('attachment; filename="conversations-')
    [conversation] = json.loads(response.content)["conversations"]
    assert (conversation["title"], conversation["owner"]) == ("Tide tables", "alice")
    assert [m["content"] for m in conversation["messages"]] == ["When is high tide?", "At **noon**."]
    assert conversation["messages"][1]["cost"] == "0.002000"


def test_the_markdown_export_reads_as_a_document(admin_client, tides) -> None:
    text = export(admin_client, "export_markdown", tides).content.decode()
    assert text.startswith("# Tide tables\n")
    assert "- Owner: alice" in text
    assert "## User · " in text
    assert "## Assistant (demo-1, complete) · " in text
    assert "At **noon**." in text


def test_the_csv_export_has_a_row_per_message_and_defuses_formulas(admin_client, tides, sonnets) -> None:
    rows = list(
        csv.DictReader(io.StringIO(export(admin_client, "export_csv", tides, sonnets).content.decode()))
    )
    assert [(r["conversation_title"], r["message_role"]) for r in rows] == [
        ("Tide tables", "user"), ("Tide tables", "assistant"), ("Sonnets", "user"), ("Sonnets", "assistant"),
    ]  # fmt: skip
    assert rows[2]["message_content"] == '\'=HYPERLINK("http://x")'


def test_every_export_is_recorded_as_an_access(admin_client, tides, sonnets) -> None:
    export(admin_client, "export_csv", tides, sonnets)
    assert sorted(TranscriptAccess.objects.values_list("conversation__title", "action")) == [
        ("Sonnets", "export"), ("Tide tables", "export"),
    ]  # fmt: skip


def test_staff_without_the_transcript_permission_cannot_export(client, tides) -> None:
    client.force_login(make_user("clerk", staff=True, perms=("chat.view_conversation",)))
    assert b"Export selected" not in client.get(CHANGELIST).content
    response = export(client, "export_json", tides)
    assert b"When is high tide?" not in response.content
    assert not TranscriptAccess.objects.exists()


def test_the_jsonl_command_writes_one_conversation_a_line(tides, sonnets, tmp_path) -> None:
    out = io.StringIO()
    call_command("export_jsonl", stdout=out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(c["title"], len(c["messages"])) for c in lines] == [("Tide tables", 2), ("Sonnets", 2)]

    path = tmp_path / "alice.jsonl"
    call_command("export_jsonl", output=str(path), owner="alice", stderr=io.StringIO())
    assert [json.loads(line)["title"] for line in path.read_text().splitlines()] == ["Tide tables"]


def test_a_person_downloads_their_own_conversations_and_nobody_elses(client, alice, tides, sonnets) -> None:
    client.force_login(alice)
    response = client.get(reverse("chat:export"))
    assert response["Content-Disposition"].startswith('attachment; filename="my-conversations-')
    data = json.loads(response.content)
    assert [c["title"] for c in data["conversations"]] == ["Tide tables"]
    assert b"Shall I compare thee" not in response.content


def test_the_download_asks_an_anonymous_visitor_to_log_in(client, tides) -> None:
    response = client.get(reverse("chat:export"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_the_chat_page_links_to_the_download(client, alice, tides) -> None:
    client.force_login(alice)
    page = client.get(reverse("chat:conversation", args=[tides.pk])).content.decode()
    assert f'href="{reverse("chat:export")}"' in page
    assert "Download my conversations" in page


def test_exports_and_the_transcript_keep_a_replys_thinking_and_parameters_apart_from_its_text(
    admin_client, tides
) -> None:
    reply = tides.messages.get(role="assistant")
    reply.reasoning, reply.reasoning_ms, reply.reasoning_tokens = "Noon <b>is</b> likely.", 1500, 6
    reply.parameters = {"temperature": 0.2}
    reply.save()

    [conversation] = json.loads(export(admin_client, "export_json", tides).content)["conversations"]
    saved = conversation["messages"][1]
    assert (saved["content"], saved["reasoning"]) == ("At **noon**.", "Noon <b>is</b> likely.")
    assert (saved["reasoning_ms"], saved["reasoning_tokens"], saved["parameters"]) == (
        1500,
        6,
        {"temperature": 0.2},
    )
    markdown = export(admin_client, "export_markdown", tides).content.decode()
    assert (
        "<details><summary>Thinking</summary>\n\nNoon <b>is</b> likely.\n\n</details>\n\nAt **noon**."
        in markdown
    )
    rows = list(csv.DictReader(io.StringIO(export(admin_client, "export_csv", tides).content.decode())))
    assert rows[1]["message_parameters"] == '{"temperature": 0.2}'

    page = admin_client.get(reverse("admin:chat_conversation_transcript", args=[tides.pk])).content.decode()
    assert "Thought for 1.50 s" in page and "Noon &lt;b&gt;is&lt;/b&gt; likely." in page
    assert "(6 thinking)" in page and "temperature 0.2" in page
