"""A reply's state machine: only allowed moves happen, and a lost race changes nothing."""

from __future__ import annotations

import pytest

from chat.models import Conversation, Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def reply(django_user_model) -> Message:
    owner = django_user_model.objects.create_user("alice")
    conversation = Conversation.objects.create(owner=owner, provider="demo", model="demo-1")
    return Message.objects.create(conversation=conversation, role="assistant", status="pending")


def test_a_pending_reply_may_stream_then_complete(reply: Message) -> None:
    assert Message.objects.transition(reply.pk, Message.Status.STREAMING)
    assert Message.objects.transition(reply.pk, Message.Status.COMPLETE, content="done")
    reply.refresh_from_db()
    assert (reply.status, reply.content) == ("complete", "done")


def test_an_ended_reply_never_moves_again(reply: Message) -> None:
    assert Message.objects.transition(reply.pk, Message.Status.CANCELLED, content="kept")
    for status in [Message.Status.STREAMING, Message.Status.COMPLETE, Message.Status.INTERRUPTED]:
        assert not Message.objects.transition(reply.pk, status, content="overwritten")
    reply.refresh_from_db()
    assert (reply.status, reply.content) == ("cancelled", "kept")


def test_message_dom_ids_never_start_with_a_digit(reply: Message) -> None:
    assert reply.dom_id == f"message-{reply.pk}"
