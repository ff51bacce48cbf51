"""Delete conversations older than a retention period, with their messages and files.

Age is the last activity (``updated_at``). A conversation with a reply still generating is
kept. Access records stay, with the conversation's name, so the audit trail survives.
Uploads never sent with a message are deleted after a day (``UNSENT_FOR``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from chat.models import Attachment, Conversation, Message

# Small batches keep each transaction short, so a live site's writers are not blocked for long.
BATCH = 500
UNSENT_FOR = timedelta(days=1)


def expired(days: int) -> QuerySet[Conversation]:
    cutoff = timezone.now() - timedelta(days=days)
    generating = Message.objects.active().filter(conversation=OuterRef("pk"))
    return Conversation.objects.filter(updated_at__lt=cutoff).exclude(Exists(generating))


class Command(BaseCommand):
    help = "Delete conversations whose last activity is older than --days days."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, required=True, help="the retention period in days")
        parser.add_argument("--dry-run", action="store_true", help="count, but delete nothing")

    def handle(self, *args: Any, days: int, dry_run: bool = False, **options: Any) -> None:
        if days < 1:
            raise CommandError("--days must be at least 1.")
        if dry_run:
            self.stdout.write(f"Would delete {expired(days).count()} conversations older than {days} days.")
            return
        deleted = 0
        while batch := list(expired(days).order_by("pk").values_list("pk", flat=True)[:BATCH]):
            with transaction.atomic():
                # Asked again as it is deleted: one that came back to life meanwhile stays.
                _, by_model = expired(days).filter(pk__in=batch).delete()
            deleted += by_model.get(Conversation._meta.label, 0)
        self.stdout.write(f"Deleted {deleted} conversations older than {days} days.")
        # Each file goes with its row (chat.attachments): the delete signals every one.
        Attachment.objects.filter(message__isnull=True, created_at__lt=timezone.now() - UNSENT_FOR).delete()
