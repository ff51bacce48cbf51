"""Share links: a read-only snapshot of a conversation, opened by whoever holds its token.

The token (``secrets.token_urlsafe``, 256 bits) is shown to the owner once, when the link
is made; only its SHA-256 is stored, so a leaked database or backup opens no link. A
revoked link and a link whose conversation was deleted are found exactly as a token
that never existed: not at all.

The snapshot is the visible branch (``chat.branches``) copied at that moment, finished
messages only: a reply still being written is left out. Continuing a link copies the
snapshot into a new conversation of the viewer's own.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from chat import branches
from chat.checks import ChatError, check_model_choice
from chat.conversations import default_model
from chat.models import Conversation, Message, ShareLink

TOKEN_BYTES = 32
MESSAGE_FIELDS = ["role", "content", "image_url", "status", "finish_reason", "provider", "model"]


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def snapshot_of(conversation: Conversation, *, include_system_prompt: bool) -> dict[str, Any]:
    messages = [m for m in branches.visible_path(conversation.pk) if not m.is_active]
    return {
        "title": conversation.title,
        "provider": conversation.provider,
        "model": conversation.model,
        "system_prompt": conversation.system_prompt if include_system_prompt else "",
        "messages": [{name: getattr(m, name) for name in MESSAGE_FIELDS} for m in messages],
    }


def do_make_link(conversation: Conversation, *, include_system_prompt: bool) -> tuple[ShareLink, str]:
    """A new link and its token, which is never stored and cannot be shown again."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    link = ShareLink.objects.create(
        conversation=conversation,
        token_hash=token_hash(token),
        snapshot=snapshot_of(conversation, include_system_prompt=include_system_prompt),
        includes_system_prompt=include_system_prompt,
    )
    return link, token


def do_revoke(links: QuerySet[ShareLink]) -> int:
    """Revoke the links of a queryset that are not revoked yet; how many were."""
    return links.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())


def find(token: str) -> ShareLink | None:
    """The live link this token opens; None for a revoked, deleted or unknown one alike."""
    return ShareLink.objects.filter(token_hash=token_hash(token), revoked_at__isnull=True).first()


def do_continue(link: ShareLink, viewer: AbstractBaseUser) -> Conversation:
    """A new conversation of the viewer's holding the snapshot, one message after another.

    The snapshot's model if it is still configured, else the default one. Usage is not
    copied: the viewer paid for none of it.
    """
    snapshot = link.snapshot
    try:
        provider, model = check_model_choice(f"{snapshot['provider']}/{snapshot['model']}")
    except ChatError:
        provider, model = default_model()
    with transaction.atomic():
        conversation = Conversation.objects.create(
            owner=viewer,
            title=snapshot["title"],
            provider=provider,
            model=model,
            system_prompt=snapshot["system_prompt"],
        )
        parent: Message | None = None
        for fields in snapshot["messages"]:
            parent = Message.objects.create(conversation=conversation, parent=parent, **fields)
    return conversation
