"""Retention: purge_conversations deletes what is older than the period, and the audit trail stays."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from chat.admin import audit
from chat.models import Conversation, Message, TranscriptAccess
from tests.admin_data import make_conversation, make_exchange, make_user

pytestmark = pytest.mark.django_db


def aged(title: str, days: int, status: str = Message.Status.COMPLETE) -> Conversation:
    conversation = make_conversation(make_user(title.lower()), title)
    make_exchange(conversation, "q", "r", status=status)
    Conversation.objects.filter(pk=conversation.pk).update(updated_at=timezone.now() - timedelta(days=days))
    return conversation


def purge(*args: str) -> str:
    out = io.StringIO()
    call_command("purge_conversations", *args, stdout=out)
    return out.getvalue()


def test_conversations_older_than_the_period_are_deleted_with_their_messages() -> None:
    old, recent = aged("Old", 100), aged("Recent", 10)
    assert purge("--days", "90") == "Deleted 1 conversations older than 90 days.\n"
    assert list(Conversation.objects.all()) == [recent]
    assert not Message.objects.filter(conversation_id=old.pk).exists()


def test_a_conversation_with_a_reply_still_generating_is_kept() -> None:
    aged("Busy", 100, status=Message.Status.STREAMING)
    purge("--days", "90")
    assert Conversation.objects.filter(title="Busy").exists()


def test_a_dry_run_counts_and_deletes_nothing() -> None:
    aged("Old", 100)
    assert purge("--days", "90", "--dry-run") == "Would delete 1 conversations older than 90 days.\n"
    assert Conversation.objects.count() == 1


def test_access_records_outlive_the_conversations_they_name() -> None:
    old = aged("Old", 100)
    audit.record_access(make_user("auditor", staff=True), [old])
    purge("--days", "90")
    access = TranscriptAccess.objects.get()
    assert access.conversation is None
    assert (access.conversation_label, access.owner_username) == (f"#{old.pk} Old", "old")


def test_a_retention_period_under_a_day_is_refused() -> None:
    aged("Old", 100)
    with pytest.raises(CommandError):
        purge("--days", "0")
    assert Conversation.objects.count() == 1
