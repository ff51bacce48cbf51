"""Accountable access: every time staff read or export a transcript, a record says so."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from chat.models import Conversation, TranscriptAccess

TRANSCRIPT_PERMISSION = "chat.view_transcript"


def can_read_transcripts(user: AbstractBaseUser) -> bool:
    return bool(user.is_active and user.is_staff and user.has_perm(TRANSCRIPT_PERMISSION))


def record_access(
    viewer: AbstractBaseUser,
    conversations: Iterable[Conversation],
    action: str = TranscriptAccess.Action.READ,
) -> list[TranscriptAccess]:
    """Write one record per conversation; callers load ``owner`` with the conversations."""
    return TranscriptAccess.objects.bulk_create(
        TranscriptAccess(
            viewer=viewer,
            viewer_username=viewer.get_username(),
            conversation=conversation,
            conversation_label=f"#{conversation.pk} {conversation}"[:300],
            owner_username=conversation.owner.get_username(),
            action=action,
        )
        for conversation in conversations
    )


def accesses_of(conversation: Conversation, limit: int = 20) -> QuerySet[TranscriptAccess]:
    return TranscriptAccess.objects.filter(conversation=conversation)[:limit]
