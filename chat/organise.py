"""Pins, the archive and folders: how a person keeps their sidebar.

Called from the views (sync), which broadcast ``sidebar_changed`` after each. None of
these touch ``updated_at``: keeping a conversation somewhere does not make it newer.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from chat.checks import ChatError
from chat.models import Conversation, Folder
from chat.sidebar import PINNED_LENGTH

FOLDER_NAME_LENGTH = 60
FOLDER_LIMIT = 50


def do_pin(conversation: Conversation, pinned: bool) -> None:
    """Pinning an archived conversation brings it back from the archive."""
    if pinned == (conversation.pinned_at is not None):
        return
    if pinned:
        others = Conversation.objects.filter(owner_id=conversation.owner_id, pinned_at__isnull=False)
        if others.count() >= PINNED_LENGTH:
            raise ChatError(f"At most {PINNED_LENGTH} conversations can be pinned: unpin one first.")
    conversation.pinned_at = timezone.now() if pinned else None
    conversation.archived_at = None
    conversation.save(update_fields=["pinned_at", "archived_at"])


def do_archive(conversation: Conversation, archived: bool) -> None:
    """An archived conversation leaves Pinned; it keeps its folder for when it returns."""
    if archived == (conversation.archived_at is not None):
        return
    conversation.archived_at = timezone.now() if archived else None
    conversation.pinned_at = None
    conversation.save(update_fields=["archived_at", "pinned_at"])


def do_move(conversation: Conversation, folder: Folder | None) -> None:
    """Into ``folder`` (the owner's: the caller checks), or back to the plain list."""
    conversation.folder = folder
    conversation.save(update_fields=["folder"])


def do_create_folder(owner_id: int, name: str) -> Folder:
    name = check_folder_name(owner_id, name)
    if Folder.objects.filter(owner_id=owner_id).count() >= FOLDER_LIMIT:
        raise ChatError(f"You have {FOLDER_LIMIT} folders, the most there can be: delete one first.")
    return _saved(Folder(owner_id=owner_id, name=name))


def do_rename_folder(folder: Folder, name: str) -> None:
    folder.name = check_folder_name(folder.owner_id, name, folder)
    _saved(folder)


def do_delete_folder(folder: Folder) -> None:
    """Its conversations stay, back in the plain list (``on_delete=SET_NULL``)."""
    folder.delete()


def check_folder_name(owner_id: int, name: str, folder: Folder | None = None) -> str:
    """The name as it will be kept (spaces collapsed), or a ChatError saying what is wrong."""
    name = " ".join(name.split())
    if not name:
        raise ChatError("A folder needs a name.")
    if len(name) > FOLDER_NAME_LENGTH:
        raise ChatError(f"A folder name can be at most {FOLDER_NAME_LENGTH} characters.")
    same = Folder.objects.filter(owner_id=owner_id, name__iexact=name)
    if folder is not None:
        same = same.exclude(pk=folder.pk)
    if same.exists():
        raise ChatError(f"You already have a folder named “{name}”.")
    return name


def _saved(folder: Folder) -> Folder:
    # Two tabs making the same name at once: the unique constraint decides, with the same words.
    try:
        with transaction.atomic():
            folder.save()
    except IntegrityError:
        raise ChatError(f"You already have a folder named “{folder.name}”.") from None
    return folder
