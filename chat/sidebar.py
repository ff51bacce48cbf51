"""What a person's sidebar lists: pinned, folders, the plain list; and the longer lists.

Each section is one bounded query on an index of its own (``chat.models``), so the
sidebar costs the same four queries with ten conversations or ten thousand. A
conversation shows once: pinned before its folder, its folder before the plain list;
archived ones show only on the archived page and in search.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.core.paginator import Page, Paginator
from django.db.models import F, Window
from django.db.models.functions import RowNumber

from chat import sql
from chat.models import Conversation, Folder

SIDEBAR_LENGTH = 100
PINNED_LENGTH = 20
FOLDER_LENGTH = 20
PAGE_LENGTH = 50


@dataclass
class FolderItems:
    folder: Folder
    # Its newest ``FOLDER_LENGTH`` conversations; ``more`` when it holds others.
    items: list[Conversation] = field(default_factory=list)
    more: bool = False

    @property
    def pk(self) -> int:
        return self.folder.pk

    @property
    def name(self) -> str:
        return self.folder.name


@dataclass(frozen=True)
class Sidebar:
    pinned: list[Conversation]
    folders: list[FolderItems]
    recent: list[Conversation]

    def find(self, pk: int) -> Conversation | None:
        shown = [*self.pinned, *(c for f in self.folders for c in f.items), *self.recent]
        return next((c for c in shown if c.pk == pk), None)


# Read with a person's first message in a conversation, and its title (``chat.sql``);
# each as the ORM would write it, in the models' orders.
CONVERSATIONS = Conversation._meta.db_table
# What the sidebar shows of a conversation; the rest (its parameters, its system prompt)
# is left unread: a hundred rows read with every redraw.
LISTED = ("id", "owner_id", "title", "folder_id", "pinned_at", "archived_at")
PINNED = f"""
    SELECT {", ".join(LISTED)} FROM {CONVERSATIONS} WHERE owner_id = %s AND pinned_at IS NOT NULL
    ORDER BY pinned_at DESC LIMIT {PINNED_LENGTH}
"""
FOLDERS = f"SELECT * FROM {Folder._meta.db_table} WHERE owner_id = %s ORDER BY LOWER(name)"
RECENT = f"""
    SELECT {", ".join(LISTED)} FROM {CONVERSATIONS}
    WHERE owner_id = %s AND pinned_at IS NULL AND archived_at IS NULL AND folder_id IS NULL
    ORDER BY updated_at DESC LIMIT {SIDEBAR_LENGTH}
"""


def load(owner_id: int) -> Sidebar:
    pinned = sql.instances(Conversation, PINNED, [owner_id])
    folders = [FolderItems(f) for f in sql.instances(Folder, FOLDERS, [owner_id])]
    by_folder = {f.pk: f for f in folders}
    for conversation in _newest_per_folder(list(by_folder)):
        shown = by_folder[conversation.folder_id]
        if len(shown.items) < FOLDER_LENGTH:
            shown.items.append(conversation)
        else:
            shown.more = True
    recent = sql.instances(Conversation, RECENT, [owner_id])
    return Sidebar(pinned, folders, recent)


def _newest_per_folder(folder_ids: list[int]) -> list[Conversation]:
    """One more than a folder shows, so the sidebar knows there are more."""
    if not folder_ids:
        return []
    rank = Window(RowNumber(), partition_by=F("folder_id"), order_by=F("updated_at").desc())
    return list(
        Conversation.objects.filter(folder_id__in=folder_ids, pinned_at=None, archived_at=None)
        .only(*LISTED)
        .annotate(rank=rank)
        .filter(rank__lte=FOLDER_LENGTH + 1)
        .order_by("folder_id", "rank")
    )


def archived_page(owner_id: int, number: str | int | None) -> Page:
    archived = Conversation.objects.filter(owner_id=owner_id, archived_at__isnull=False)
    return Paginator(archived.order_by("-archived_at"), PAGE_LENGTH).get_page(number)


def folder_page(folder: Folder, number: str | int | None) -> Page:
    """Everything filed in ``folder`` but archived, pinned ones too."""
    filed = Conversation.objects.filter(folder=folder, archived_at=None).order_by("-updated_at")
    return Paginator(filed, PAGE_LENGTH).get_page(number)
