"""Importing conversations: a ChatGPT export's tree, the round trip of this app's own
export, files refused whole, the size limit, the page and who may use it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from chat import branches, broadcast, exports, imports, services
from chat.import_formats import Refused
from chat.models import Conversation, Message
from tests.import_files import HOSTILE, as_file, forked, node, tree

pytestmark = pytest.mark.django_db

IMPORT = reverse("chat:import")
SHOWN = [
    "What is a tide?",
    "The rise and fall of the sea.",
    "Thanks! Draw one?",
    "```\ndraw()\n```",
    "[image]\nHere it is.",
]


@pytest.fixture
def alice(django_user_model) -> User:
    return django_user_model.objects.create_user("alice", password="x" * 12)


@pytest.fixture
def bob(django_user_model) -> User:
    return django_user_model.objects.create_user("bob", password="x" * 12)


@pytest.fixture
def as_alice(client: Client, alice: User) -> Client:
    client.force_login(alice)
    return client


@pytest.fixture
def sidebar_pings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    pinged: list[int] = []

    async def record(user_id: int) -> None:
        pinged.append(user_id)

    monkeypatch.setattr(broadcast, "sidebar_changed", record)
    return pinged


def imported_one(owner: User, document: object) -> Conversation:
    [conversation] = imports.do_import(owner, as_file(document)).conversations
    return conversation


def shown(conversation: Conversation) -> list[str]:
    return [m.content for m in branches.visible_path(conversation.pk)]


def upload(client: Client, data: bytes, **extra):
    return client.post(IMPORT, {"file": SimpleUploadedFile("conversations.json", data)}, **extra)


# A ChatGPT export


def test_the_branch_ending_at_current_node_is_the_one_shown(alice: User) -> None:
    assert shown(imported_one(alice, [forked()])) == SHOWN


def test_the_edited_question_is_a_second_version_of_the_first_turn(alice: User) -> None:
    conversation = imported_one(alice, [forked()])
    first = branches.visible_path(conversation.pk)[0]
    assert (first.versions.index, first.versions.count) == (1, 2)
    edited = Message.objects.get(pk=first.versions.next_id)
    assert (edited.content, edited.parent_id) == ("What is a tide, exactly?", None)
    assert [m.content for m in edited.children.all()] == ["An edited answer."]


def test_the_regenerated_answer_is_a_second_version_of_the_reply(alice: User) -> None:
    conversation = imported_one(alice, [forked()])
    reply = branches.visible_path(conversation.pk)[1]
    assert (reply.versions.index, reply.versions.count) == (1, 2)
    other = Message.objects.get(pk=reply.versions.next_id)
    assert (other.content, other.parent_id) == ("A regenerated answer.", reply.parent_id)


def test_choosing_the_other_version_at_once_shows_that_branch(alice: User) -> None:
    conversation = imported_one(alice, [forked()])
    services.do_select_version(conversation.messages.get(content="What is a tide, exactly?"))
    assert shown(conversation) == ["What is a tide, exactly?", "An edited answer."]


def test_choosing_another_version_wins_over_times_in_the_future(alice: User) -> None:
    document = forked()
    for item in document["mapping"].values():
        if item["message"] and item["message"]["create_time"]:
            item["message"]["create_time"] += 4_000_000_000  # the 22nd century
    conversation = imported_one(alice, [document])
    services.do_select_version(conversation.messages.get(content="A regenerated answer."))
    assert shown(conversation) == ["What is a tide?", "A regenerated answer."]


def test_system_and_tool_messages_are_left_out_and_what_followed_them_kept(alice: User) -> None:
    conversation = imported_one(alice, [forked()])
    contents = list(conversation.messages.values_list("content", flat=True))
    assert "You are ChatGPT." not in contents
    assert "tool output" not in contents
    picture = conversation.messages.get(content="[image]\nHere it is.")
    assert picture.parent.content == "```\ndraw()\n```"


def test_imported_replies_are_complete_with_the_model_slug_and_no_cost(alice: User) -> None:
    conversation = imported_one(alice, [forked()])
    replies = conversation.messages.filter(role=Message.Role.ASSISTANT)
    assert {(m.status, m.provider, m.model, m.cost) for m in replies} == {
        ("complete", "chatgpt", "gpt-4o", None),
        ("complete", "chatgpt", "imported", None),
    }


def test_a_chatgpt_import_keeps_the_original_times(alice: User) -> None:
    conversation = Conversation.objects.get(pk=imported_one(alice, [forked()]).pk)
    assert conversation.created_at == datetime.fromtimestamp(1_700_000_000.5, tz=UTC)
    assert conversation.updated_at == datetime.fromtimestamp(1_700_000_900, tz=UTC)
    question = conversation.messages.get(content="What is a tide?")
    assert question.created_at == datetime.fromtimestamp(1_700_000_010, tz=UTC)


def test_a_conversation_with_nothing_to_show_is_left_out(alice: User) -> None:
    empty = {"title": "Only a system prompt", "mapping": tree(node("s", None, "system", "Be brief."))}
    imported = imports.do_import(alice, as_file([empty, forked()]))
    assert [c.title for c in imported.conversations] == ["Tides"]


def test_a_chain_deeper_than_the_stack_imports(alice: User) -> None:
    chain = [node("n0", None, "user", "hello 0", 1)]
    chain += [
        node(f"n{i}", f"n{i - 1}", ("user", "assistant")[i % 2], f"hello {i}", 1 + i) for i in range(1, 3000)
    ]
    document = {"title": "Long", "current_node": "n2999", "mapping": tree(*chain)}
    assert len(shown(imported_one(alice, [document]))) == 3000


# This app's own export, imported again


@pytest.fixture
def tides(alice: User) -> Conversation:
    """Two versions of a reply, the older one chosen; thinking, parameters, usage, a file."""
    conversation = Conversation.objects.create(
        owner=alice, provider="demo", model="demo-1", title="Tide tables",
        system_prompt="Speak like a pirate.", parameters={"temperature": 0.3},
    )  # fmt: skip
    clock = timezone.now() - timedelta(days=3)

    def add(role: str, content: str, parent: Message | None = None, **fields) -> Message:
        nonlocal clock
        clock += timedelta(minutes=1)
        message = Message.objects.create(
            conversation=conversation, role=role, content=content, parent=parent, **fields
        )
        Message.objects.filter(pk=message.pk).update(created_at=clock, selected_at=clock)
        return message

    question = add("user", "When is high tide?", attachments=[{"name": "chart.png", "kind": "image"}])
    chosen = add(
        "assistant", "At **noon**.", question, reasoning="Moon math.", reasoning_ms=1200,
        parameters={"temperature": 0.3}, input_tokens=10, output_tokens=20, reasoning_tokens=5,
        cost=Decimal("0.002"), duration_ms=900, time_to_first_token_ms=100, finish_reason="stop",
    )  # fmt: skip
    add("assistant", "At dawn.", question, status=Message.Status.ERROR, error="Upstream said no.")
    add("user", "And tomorrow?", chosen)
    Message.objects.filter(pk=chosen.pk).update(selected_at=clock + timedelta(hours=1))
    return conversation


def export_of(conversation: Conversation) -> dict:
    [data] = json.loads(
        exports.to_json(exports.with_messages(Conversation.objects.filter(pk=conversation.pk)))
    )["conversations"]
    return data


def essentials(data: dict) -> dict:
    """An export without what an import renews: ids (parents become positions) and the owner."""
    positions = {m["id"]: n for n, m in enumerate(data["messages"])}
    messages = [
        {**m, "id": None, "parent_id": positions.get(m["parent_id"]), "attachments": None}
        for m in data["messages"]
    ]
    return {**data, "id": None, "owner": None, "messages": messages}


def test_an_own_export_imported_again_exports_the_same(alice: User, tides: Conversation) -> None:
    before = export_of(tides)
    again = export_of(imported_one(alice, {"conversations": [before]}))
    before["messages"][0]["content"] += "\n\n[attached: chart.png]"
    assert essentials(again) == essentials(before)


def test_an_own_export_imported_again_shows_the_version_that_was_shown(
    alice: User, tides: Conversation
) -> None:
    copy = imported_one(alice, {"conversations": [export_of(tides)]})
    assert shown(copy)[1:] == ["At **noon**.", "And tomorrow?"]


def test_attachments_in_an_own_export_become_a_note_of_their_names(alice: User, tides: Conversation) -> None:
    copy = imported_one(alice, {"conversations": [export_of(tides)]})
    first = branches.visible_path(copy.pk)[0]
    assert (first.content, first.attachments) == ("When is high tide?\n\n[attached: chart.png]", [])


def test_a_reply_still_being_written_in_an_export_is_imported_as_interrupted(alice: User) -> None:
    rows = [{"id": 1, "parent_id": None, "role": "assistant", "content": "Half", "status": "streaming"}]
    copy = imported_one(alice, {"conversations": [{"title": "Mid-reply", "messages": rows}]})
    assert copy.messages.get().status == Message.Status.INTERRUPTED


# Files refused whole


def conversation_with(*nodes: dict) -> dict:
    return {"title": "Broken", "current_node": None, "mapping": tree(*nodes)}


def own(*rows: dict, title: str = "") -> bytes:
    return as_file({"conversations": [{"title": title, "messages": list(rows)}]})


NOT_TEXT = {"content_type": "text", "parts": [{}]}


MALFORMED = {
    "not JSON": (b"{'conversations': ", "not JSON"),
    "nested too deeply": (b"[" * 200_000 + b"]" * 200_000, "nested too deeply"),
    "another shape": (as_file({"chats": []}), "neither a ChatGPT export"),
    "no conversations": (as_file({"conversations": []}), "no conversations"),
    "a dangling parent": (
        as_file([forked(), conversation_with(node("a", "gone", "user", "hi"))]),
        "Conversation 2 (“Broken”): message a follows gone, which is not in the file",
    ),
    "a cycle": (
        as_file([forked(), conversation_with(node("a", "b", "user"), node("b", "a", "assistant"))]),
        "Conversation 2 (“Broken”): message a does not lead back to a first message; some of its messages",
    ),
    "content that is not text": (
        as_file([forked(), conversation_with(node("a", None, "user", content=NOT_TEXT))]),
        "Conversation 2 (“Broken”), message a: its content is not text",
    ),
    "a mapping that is not nodes": (as_file([{"title": "Odd", "mapping": [1, 2]}]), "mapping is not a set"),
    "an own message without text": (
        own({"id": 1, "role": "user", "content": 5}, title="Mine"),
        "Conversation 1 (“Mine”), message 1: its content is not text",
    ),
    "own parameters out of range": (
        own({"id": 1, "role": "assistant", "content": "", "parameters": {"temperature": "hot"}}),
        "Conversation 1, message 1: Temperature must be a number from 0 to 2.",
    ),
    "an own image address that is not one": (
        own({"id": 1, "role": "user", "content": "", "image_url": "javascript:alert(1)"}),
        "Conversation 1, message 1: The image URL must be an http:// or https:// address.",
    ),
    "an own count that is not one": (
        own({"id": 1, "role": "user", "content": "", "input_tokens": -1}),
        "Conversation 1, message 1: input_tokens is not a count",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_file_is_refused_naming_what_is_wrong(alice: User, case: str) -> None:
    data, words = MALFORMED[case]
    with pytest.raises(Refused, match=words.replace("(", r"\(").replace(")", r"\)")):
        imports.do_import(alice, data)


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_file_imports_nothing(as_alice: Client, case: str) -> None:
    response = upload(as_alice, MALFORMED[case][0])
    assert response.status_code == 400
    assert "Nothing was imported." in response.content.decode()
    assert not Conversation.objects.exists()


def test_a_file_that_fails_while_being_written_imports_nothing(
    alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = imports._write

    def fail_on_the_second(owner, plan, now):
        if plan.title == "Second":
            raise RuntimeError("disk full")
        return writes(owner, plan, now)

    monkeypatch.setattr(imports, "_write", fail_on_the_second)
    with pytest.raises(RuntimeError):
        imports.do_import(alice, as_file([forked("First"), forked("Second")]))
    assert not Conversation.objects.exists()
    assert not Message.objects.exists()


# The size limit


def test_a_file_over_the_limit_is_refused(as_alice: Client, settings) -> None:
    settings.CHAT_MAX_IMPORT_BYTES = 1000
    response = upload(as_alice, as_file([forked()]))
    assert response.status_code == 413
    assert "That file is over 1000\xa0bytes, the limit for an import." in response.content.decode()
    assert not Conversation.objects.exists()


def test_a_body_announced_over_the_limit_is_refused_before_it_is_read(as_alice: Client, settings) -> None:
    settings.CHAT_MAX_IMPORT_BYTES = 1000
    response = upload(as_alice, b"[]", CONTENT_LENGTH=str(10**9))
    assert response.status_code == 413
    assert "the limit for an import" in response.content.decode()


def test_the_limit_is_fifty_megabytes_unless_set(settings) -> None:
    assert settings.CHAT_MAX_IMPORT_BYTES == 50 * 1024 * 1024


# The page


def test_the_sidebar_links_to_the_import_page(as_alice: Client, alice: User) -> None:
    conversation = Conversation.objects.create(owner=alice, provider="demo", model="demo-1")
    page = as_alice.get(reverse("chat:conversation", args=[conversation.pk])).content.decode()
    assert f'href="{IMPORT}"' in page


def test_the_import_page_has_a_file_input_and_its_script(as_alice: Client) -> None:
    page = as_alice.get(IMPORT).content.decode()
    assert 'type="file" name="file"' in page
    assert "chat/importing.js" in page


def test_the_result_page_counts_what_was_imported(as_alice: Client) -> None:
    response = upload(as_alice, as_file([forked("One"), forked("Two")]))
    assert response.status_code == 200
    assert "Imported 2 conversations and 16 messages." in response.content.decode()


def test_imported_conversations_belong_to_the_importer_and_the_sidebar_is_told(
    as_alice: Client, alice: User, bob: User, sidebar_pings: list[int]
) -> None:
    upload(as_alice, as_file([forked()]))
    assert list(Conversation.objects.values_list("owner", flat=True)) == [alice.pk]
    assert sidebar_pings == [alice.pk]


def test_hostile_text_is_escaped_on_the_result_page_and_the_conversation(
    as_alice: Client, alice: User
) -> None:
    page = upload(as_alice, as_file([forked(HOSTILE, HOSTILE)])).content.decode()
    conversation = Conversation.objects.get(owner=alice)
    page += as_alice.get(reverse("chat:conversation", args=[conversation.pk])).content.decode()
    assert "<img src=x" not in page
    assert "<script>window.pwned" not in page
    assert "&lt;img src=x onerror=&quot;window.pwned=1&quot;&gt;" in page


def test_logged_out_the_import_page_sends_to_log_in(client: Client) -> None:
    response = client.get(IMPORT)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_logged_out_an_upload_imports_nothing(client: Client) -> None:
    response = upload(client, as_file([forked()]))
    assert response.status_code == 302
    assert not Conversation.objects.exists()


def test_a_parent_naming_another_persons_message_is_refused(as_alice: Client, bob: User) -> None:
    bobs = Conversation.objects.create(owner=bob, provider="demo", model="demo-1")
    secret = Message.objects.create(conversation=bobs, role="user", content="Bob's")
    rows = [{"id": 1, "parent_id": secret.pk, "role": "user", "content": "Attached to Bob's?"}]
    response = upload(as_alice, as_file({"conversations": [{"messages": rows}]}))
    assert response.status_code == 400
    assert not secret.children.exists()
    assert Conversation.objects.count() == 1
