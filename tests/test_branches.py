"""Branches: which messages a page shows, their versions, and what a reply is sent."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from chat import branches
from chat.branches import CONTINUE_PROMPT, Versions
from chat.models import Conversation, Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def conversation(django_user_model) -> Conversation:
    owner = django_user_model.objects.create_user("alice")
    return Conversation.objects.create(owner=owner, provider="demo", model="demo-1")


class Tree:
    """Messages made in order, each a moment after the last, so the newest is chosen."""

    def __init__(self, conversation: Conversation) -> None:
        self.conversation = conversation
        self.clock = timezone.now()

    def add(self, role: str, content: str, parent: Message | None = None, **fields) -> Message:
        self.clock += timedelta(seconds=1)
        return Message.objects.create(
            conversation=self.conversation, role=role, content=content, parent=parent,
            selected_at=self.clock, **fields,
        )  # fmt: skip

    def path(self) -> list[str]:
        return [m.content for m in branches.visible_path(self.conversation.pk)]


def test_the_newest_version_of_each_turn_is_shown_with_its_own_later_messages(conversation) -> None:
    tree = Tree(conversation)
    question = tree.add("user", "Q")
    first = tree.add("assistant", "A1", question)
    tree.add("user", "Q2", first)
    tree.add("assistant", "A2", question)

    assert tree.path() == ["Q", "A2"]
    shown = branches.visible_path(conversation.pk)[1]
    assert shown.versions == Versions(2, 2, first.pk, None)
    assert shown.is_last


def test_choosing_an_older_version_brings_back_what_followed_it(conversation) -> None:
    tree = Tree(conversation)
    question = tree.add("user", "Q")
    first = tree.add("assistant", "A1", question)
    later = tree.add("user", "Q2", first)
    tree.add("assistant", "A2", question)

    Message.objects.filter(pk=first.pk).update(selected_at=timezone.now() + timedelta(hours=1))

    assert tree.path() == ["Q", "A1", "Q2"]
    assert branches.visible_path(conversation.pk)[-1].pk == later.pk


def test_an_edited_first_message_is_a_version_of_it(conversation) -> None:
    tree = Tree(conversation)
    original = tree.add("user", "Q")
    tree.add("assistant", "A", original)
    edited = tree.add("user", "Q edited")
    tree.add("assistant", "A again", edited)

    assert tree.path() == ["Q edited", "A again"]
    assert branches.visible_path(conversation.pk)[0].versions == Versions(2, 2, original.pk, None)


def test_messages_stored_without_parents_read_as_one_line(conversation) -> None:
    for role, content in [("user", "one"), ("assistant", "two"), ("user", "three")]:
        Message.objects.create(conversation=conversation, role=role, content=content)

    assert [m.content for m in branches.visible_path(conversation.pk)] == ["one", "two", "three"]


def test_a_reply_is_sent_its_own_branch_only(conversation) -> None:
    tree = Tree(conversation)
    question = tree.add("user", "Q")
    old = tree.add("assistant", "old answer", question)
    tree.add("user", "follow-up on the old answer", old)
    regenerated = tree.add("assistant", "", question, status="pending")

    assert [(t.role, t.content) for t in branches.turns_for(regenerated)] == [("user", "Q")]


def test_failed_replies_are_left_out_of_the_history(conversation) -> None:
    tree = Tree(conversation)
    question = tree.add("user", "Q")
    failed = tree.add("assistant", "half", question, status="error")
    retry = tree.add("user", "again?", failed)
    reply = tree.add("assistant", "", retry, status="pending")

    assert [t.content for t in branches.turns_for(reply)] == ["Q", "again?"]


def test_a_continuation_is_sent_the_cut_off_reply_and_a_request_to_go_on(conversation) -> None:
    tree = Tree(conversation)
    question = tree.add("user", "Q", image_url="https://example.com/a.png")
    cut = tree.add("assistant", "The first half", question, finish_reason="length")
    continuation = tree.add("assistant", "", cut, status="pending")

    turns = branches.turns_for(continuation)

    assert [(t.role, t.content) for t in turns] == [
        ("user", "Q"),
        ("assistant", "The first half"),
        ("user", CONTINUE_PROMPT),
    ]
    assert turns[0].image_url == "https://example.com/a.png"


def test_a_reply_and_its_continuation_are_one_turn_later_on(conversation) -> None:
    tree = Tree(conversation)
    question = tree.add("user", "Q")
    cut = tree.add("assistant", "The first half", question, finish_reason="length")
    rest = tree.add("assistant", " and the rest.", cut)
    follow_up = tree.add("user", "Thanks", rest)
    reply = tree.add("assistant", "", follow_up, status="pending")

    assert [t.content for t in branches.turns_for(reply)] == ["Q", "The first half and the rest.", "Thanks"]
