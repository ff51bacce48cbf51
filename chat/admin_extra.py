"""The admin beside the conversation list: live replies with Stop, the access log, budgets, filters.

None of these pages shows message text: live replies show only how long their text is.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from django.contrib import admin
from django.db.models import OuterRef, QuerySet, Subquery, Sum
from django.db.models.functions import Length
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from chat import replies
from chat.budgets import TOKENS, dollars, start_of_today
from chat.models import Conversation, LiveReply, Message, TranscriptAccess, UsageBudget


class ModelFilter(admin.SimpleListFilter):
    title = "provider / model"
    parameter_name = "model_choice"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        pairs = Conversation.objects.order_by("provider", "model").values_list("provider", "model").distinct()
        return [(f"{provider}/{model}", f"{provider} · {model}") for provider, model in pairs]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> QuerySet[Conversation]:
        if not self.value():
            return queryset
        provider, _, model = self.value().partition("/")
        return queryset.filter(provider=provider, model=model)


class StatusFilter(admin.SimpleListFilter):
    """The status of a conversation's latest reply (annotated as ``last_status``)."""

    title = "last reply status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return Message.Status.choices

    def queryset(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> QuerySet[Conversation]:
        return queryset.filter(last_status=self.value()) if self.value() else queryset


class LastActivityFilter(admin.DateFieldListFilter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.title = "last activity"


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


@admin.register(TranscriptAccess)
class TranscriptAccessAdmin(admin.ModelAdmin):
    """The audit log: append-only here, since a record nobody can trust is no record."""

    list_display = ["accessed_at", "viewer_username", "action", "conversation_link", "owner_username"]
    list_filter = ["action", "accessed_at"]
    search_fields = ["viewer_username", "owner_username", "conversation_label"]
    list_display_links = None

    @admin.display(description="conversation", ordering="conversation_label")
    def conversation_link(self, access: TranscriptAccess) -> str:
        if access.conversation_id is None:
            return f"{access.conversation_label} (deleted)"
        url = reverse("admin:chat_conversation_change", args=[access.conversation_id])
        return format_html('<a href="{}">{}</a>', url, access.conversation_label)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _today(aggregate: Any) -> Subquery:
    replies = Message.objects.filter(
        conversation__owner=OuterRef("user"), role=Message.Role.ASSISTANT, created_at__gte=start_of_today()
    ).order_by()
    return Subquery(replies.values("conversation__owner").annotate(value=aggregate).values("value"))


@admin.register(UsageBudget)
class UsageBudgetAdmin(admin.ModelAdmin):
    list_display = ["user", "daily_token_limit", "daily_cost_limit", "tokens_today", "cost_today"]
    list_select_related = ["user"]
    autocomplete_fields = ["user"]
    search_fields = ["user__username"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[UsageBudget]:
        return (
            super()
            .get_queryset(request)
            .annotate(used_tokens=_today(Sum(TOKENS)), used_cost=_today(Sum("cost")))
        )

    @admin.display(description="tokens today")
    def tokens_today(self, budget: UsageBudget) -> str:
        return f"{budget.used_tokens or 0:,}"

    @admin.display(description="cost today")
    def cost_today(self, budget: UsageBudget) -> str:
        return dollars(budget.used_cost or 0)
