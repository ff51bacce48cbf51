"""Live replies: every reply generating now on any worker, with Stop.

The list shows how long each reply's text is, never the text: only a transcript shows
that, to those allowed, with an access record.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from django.contrib import admin
from django.db.models import QuerySet
from django.db.models.functions import Length
from django.http import HttpRequest
from django.utils import timezone

from chat import replies
from chat.models import LiveReply


def _age(since: Any) -> str:
    seconds = int((timezone.now() - since).total_seconds())
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60} s"


@admin.register(LiveReply)
class LiveReplyAdmin(admin.ModelAdmin):
    """Replies pending or streaming on any worker: the database knows them all."""

    list_display = ["pk", "owner", "model_choice", "status", "age", "characters", "stop_requested_at"]
    list_display_links = None
    list_filter = ["status"]
    ordering = ["created_at"]
    actions = ["stop_replies"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[LiveReply]:
        # The text stays in the database: the page needs only its length (saved about once a second).
        return (
            super()
            .get_queryset(request)
            .active()
            .select_related("conversation__owner")
            .defer("content")
            .annotate(characters=Length("content"))
        )

    @admin.display(ordering="conversation__owner__username")
    def owner(self, reply: LiveReply) -> str:
        return reply.conversation.owner.get_username()

    @admin.display(description="model", ordering="model")
    def model_choice(self, reply: LiveReply) -> str:
        return f"{reply.provider}/{reply.model}"

    @admin.display(ordering="-created_at")
    def age(self, reply: LiveReply) -> str:
        return _age(reply.created_at)

    @admin.display(description="characters so far", ordering="characters")
    def characters(self, reply: LiveReply) -> int:
        return reply.characters

    @admin.action(description="Stop the selected replies", permissions=["stop"])
    def stop_replies(self, request: HttpRequest, queryset: QuerySet[LiveReply]) -> None:
        chosen = list(queryset)
        # The owning worker is told wherever it runs (chat.replies.stop).
        async_to_sync(replies.stop_all)([reply for reply in chosen if reply.is_active])
        self.message_user(
            request, f"Asked {len(chosen)} {'reply' if len(chosen) == 1 else 'replies'} to stop."
        )

    def has_stop_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("chat.stop_reply")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The list only: a reply's own page would show its text, which only a transcript
        # shows, to those allowed, with an access record.
        return obj is None and super().has_view_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
