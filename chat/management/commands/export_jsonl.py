"""Export every conversation, one JSON object a line, for backups and analysis."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from chat import exports
from chat.models import Conversation

# Conversations per round trip: the prefetch of their messages is one query per chunk.
CHUNK = 500


class Command(BaseCommand):
    help = "Write all conversations with their messages as JSON Lines (one conversation a line)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", "-o", help="a file to write; standard output if omitted")
        parser.add_argument("--owner", help="only this username's conversations")

    def handle(self, *args: Any, output: str | None = None, owner: str | None = None, **options: Any) -> None:
        conversations = Conversation.objects.order_by("pk")
        if owner:
            conversations = conversations.filter(owner__username=owner)
        lines = exports.iter_jsonl(exports.with_messages(conversations).iterator(chunk_size=CHUNK))
        if output is None:
            for line in lines:
                self.stdout.write(line, ending="")
            return
        count = 0
        with open(output, "w", encoding="utf-8") as out:
            for line in lines:
                out.write(line)
                count += 1
        self.stderr.write(f"Wrote {count} conversations to {output}.")
