"""The sidebar stays bounded and costs the same queries with 10 conversations or 10,000."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from chat import rendering, sidebar
from chat.models import Conversation, Folder

pytestmark = pytest.mark.django_db

FOLDERS = 10


def fill(owner, count: int) -> None:
    """``count`` conversations: one in ten pinned (up to the limit), two archived, five
    filed in folders, the rest plain."""
    folders = Folder.objects.bulk_create(Folder(owner=owner, name=f"Folder {n}") for n in range(FOLDERS))
    now = timezone.now()
    conversations = []
    for n in range(count):
        conversation = Conversation(owner=owner, provider="demo", model="demo-1", title=f"Chat {n}")
        kind = n % 10
        if kind == 0 and n // 10 < sidebar.PINNED_LENGTH:
            conversation.pinned_at = now - timedelta(seconds=n)
        elif kind in (1, 2):
            conversation.archived_at = now - timedelta(seconds=n)
        elif kind in (3, 4, 5, 6, 7):
            conversation.folder = folders[(n // 10) % FOLDERS]
        conversations.append(conversation)
    Conversation.objects.bulk_create(conversations, batch_size=1000)


@pytest.mark.parametrize("count", [10, 10_000])
def test_the_sidebar_costs_five_queries_whatever_the_count(
    count: int, django_user_model, django_assert_num_queries
) -> None:
    owner = django_user_model.objects.create_user("alice", password="x" * 12)
    fill(owner, count)

    with django_assert_num_queries(5):
        shown = sidebar.load(owner.pk)
        html = rendering.sidebar_html(shown, sidebar.current(owner.pk, shown.recent[0].pk))

    assert len(shown.recent) <= sidebar.SIDEBAR_LENGTH
    assert len(shown.pinned) <= sidebar.PINNED_LENGTH
    assert all(len(f.items) <= sidebar.FOLDER_LENGTH for f in shown.folders)
    assert len(shown.folders) == FOLDERS
    assert (
        html.count("<li>") <= sidebar.SIDEBAR_LENGTH + sidebar.PINNED_LENGTH + FOLDERS * sidebar.FOLDER_LENGTH
    )


def test_at_10000_the_lists_are_full_and_hold_the_right_conversations(django_user_model) -> None:
    owner = django_user_model.objects.create_user("alice", password="x" * 12)
    fill(owner, 10_000)

    shown = sidebar.load(owner.pk)

    assert len(shown.recent) == sidebar.SIDEBAR_LENGTH
    assert len(shown.pinned) == sidebar.PINNED_LENGTH
    assert all(len(f.items) == sidebar.FOLDER_LENGTH and f.more for f in shown.folders)
    plain = Conversation.objects.filter(pinned_at=None, archived_at=None, folder=None)
    assert plain.filter(pk__in=[c.pk for c in shown.recent]).count() == len(shown.recent)
    assert all(c.folder_id == f.pk for f in shown.folders for c in f.items)
    unpinned = Conversation.objects.filter(pinned_at=None, archived_at=None)
    filed = [c.pk for f in shown.folders for c in f.items]
    assert unpinned.filter(pk__in=filed).count() == len(filed)


@pytest.mark.parametrize(
    ("section", "index"),
    [
        (lambda mine: mine.filter(pinned_at=None, archived_at=None, folder=None), "conversation_owner_plain"),
        (
            lambda mine: mine.filter(pinned_at__isnull=False).order_by("-pinned_at"),
            "conversation_owner_pinned",
        ),
        (
            lambda mine: mine.filter(archived_at__isnull=False).order_by("-archived_at"),
            "conversation_owner_archived",
        ),
    ],
)
def test_each_section_of_the_sidebar_reads_its_own_index(section, index: str, django_user_model) -> None:
    owner = django_user_model.objects.create_user("alice", password="x" * 12)
    fill(owner, 100)
    plan = section(Conversation.objects.filter(owner_id=owner.pk))[:10].explain()
    assert index in plan


def test_a_folders_contents_read_the_folder_index(django_user_model) -> None:
    owner = django_user_model.objects.create_user("alice", password="x" * 12)
    fill(owner, 100)
    ids = list(Folder.objects.filter(owner=owner).values_list("pk", flat=True))
    plan = Conversation.objects.filter(folder_id__in=ids).order_by("folder_id", "-updated_at").explain()
    assert "conversation_folder_recent" in plan
