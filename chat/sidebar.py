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
from chat.models import Conversation, Folder, shown_title

SIDEBAR_LENGTH = 100
PINNED_LENGTH = 20
FOLDER_LENGTH = 20
PAGE_LENGTH = 50


@dataclass(frozen=True)
class Listed:
    """A conversation as the sidebar lists it: a link with its title. Read as rows, not
    as model instances: a hundred of them with every redraw, and making a model instance
    of a row cost about seven times reading it."""

    pk: int
    title: str
    folder_id: int | None

    def __str__(self) -> str:
        return shown_title(self.pk, self.title)


@dataclass
class FolderItems:
    folder: Folder
    # Its newest ``FOLDER_LENGTH`` conversations; ``more`` when it holds others.
    items: list[Listed] = field(default_factory=list)
    more: bool = False

    @property
    def pk(self) -> int:
        return self.folder.pk

    @property
    def name(self) -> str:
        return self.folder.name


@dataclass(frozen=True)
class Sidebar:
    pinned: list[Listed]
    folders: list[FolderItems]
    recent: list[Listed]


# Read with a person's first message in a conversation, and its title (``chat.sql``);
# each as the ORM would write it, in the models' orders.
CONVERSATIONS = Conversation._meta.db_table
# What the sidebar shows of a conversation (``Listed``), and of the page's own one, which
# its menu shows pinned, archived or filed; the rest (its parameters, its system prompt)
# is left unread.
LISTED = ("id", "title", "folder_id")
CURRENT = f"""
    SELECT id, owner_id, title, folder_id, pinned_at, archived_at FROM {CONVERSATIONS}
    WHERE id = %s AND owner_id = %s
"""
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
    pinned = _listed(PINNED, owner_id)
    folders = [FolderItems(f) for f in sql.instances(Folder, FOLDERS, [owner_id])]
    by_folder = {f.pk: f for f in folders}
    for conversation in _newest_per_folder(list(by_folder)):
        shown = by_folder[conversation.folder_id]
        if len(shown.items) < FOLDER_LENGTH:
            shown.items.append(conversation)
        else:
            shown.more = True
    return Sidebar(pinned, folders, _listed(RECENT, owner_id))


def current(owner_id: int, pk: int) -> Conversation | None:
    """The page's own conversation, as the sidebar marks it and its menu shows it."""
    return sql.instance(Conversation, CURRENT, [pk, owner_id])


def _listed(statement: str, owner_id: int) -> list[Listed]:
    return [Listed(*row) for row in sql.rows(statement, [owner_id])]


def _newest_per_folder(folder_ids: list[int]) -> list[Listed]:
    """One more than a folder shows, so the sidebar knows there are more."""
    if not folder_ids:
        return []
    rank = Window(RowNumber(), partition_by=F("folder_id"), order_by=F("updated_at").desc())
    rows = (
        Conversation.objects.filter(folder_id__in=folder_ids, pinned_at=None, archived_at=None)
        .annotate(rank=rank)
        .filter(rank__lte=FOLDER_LENGTH + 1)
        .order_by("folder_id", "rank")
        .values_list(*LISTED)
    )
    return [Listed(*row) for row in rows]


def archived_page(owner_id: int, number: str | int | None) -> Page:
    archived = Conversation.objects.filter(owner_id=owner_id, archived_at__isnull=False)
    return Paginator(archived.order_by("-archived_at"), PAGE_LENGTH).get_page(number)


def folder_page(folder: Folder, number: str | int | None) -> Page:
    """Everything filed in ``folder`` but archived, pinned ones too."""
    filed = Conversation.objects.filter(folder=folder, archived_at=None).order_by("-updated_at")
    return Paginator(filed, PAGE_LENGTH).get_page(number)
