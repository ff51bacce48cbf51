"""The admin: conversations with usage at a glance, audited transcripts, exports and the dashboard.

Conversations are read-only here. Message text is shown only to staff holding
``chat.view_transcript`` (transcripts, exports, text search), and every read is recorded.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import smart_split, unescape_string_literal

from chat import attachment_views, branches, exports, feedback
from chat.admin import audit
from chat.admin.usage import UsageRangeForm, build_dashboard
from chat.budgets import TOKENS, dollars
from chat.models import Attachment, Conversation, Message, TranscriptAccess


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


def _per_conversation(aggregate: Any, **filters: Any) -> Subquery:
    """An aggregate over one conversation's messages, as a correlated subquery.

    Subqueries rather than a join with GROUP BY: they stay correct when a filter or a
    search joins the messages again, and when an index serves the list's ordering the
    database computes them for the rows of one page only.
    """
    messages = Message.objects.filter(conversation=OuterRef("pk"), **filters).order_by()
    return Subquery(messages.values("conversation").annotate(value=aggregate).values("value"))


def with_stats(conversations: QuerySet[Conversation]) -> QuerySet[Conversation]:
    last_reply = Message.objects.filter(conversation=OuterRef("pk"), role=Message.Role.ASSISTANT)
    return conversations.annotate(
        message_count=Coalesce(_per_conversation(Count("pk")), 0),
        tokens=_per_conversation(Sum(TOKENS), role=Message.Role.ASSISTANT),
        cost=_per_conversation(Sum("cost"), role=Message.Role.ASSISTANT),
        last_status=Subquery(last_reply.order_by("-created_at", "-pk").values("status")[:1]),
    )


def transcript_messages(conversation: Conversation) -> list[Message]:
    """Every message, branches included, in the order written, each marked with its version.

    Siblings (one parent) are versions of a turn: regenerated replies, edited messages.
    ``shown`` marks the path the chat page shows now; the rest are other branches.
    Each reply carries its owner's rating as ``feedback_given``.
    """
    messages = list(conversation.messages.all())
    branched = any(m.parent_id for m in messages)
    siblings: dict[int | None, list[int]] = defaultdict(list)
    for message in messages:
        siblings[message.parent_id if branched else message.pk].append(message.pk)
    shown = set(branches.shape_of(conversation.pk).path)
    for message in messages:
        versions = siblings[message.parent_id if branched else message.pk]
        message.version, message.version_count = versions.index(message.pk) + 1, len(versions)
        message.shown = message.pk in shown
    feedback.attach(messages)
    return messages


Exporter = Callable[[Iterable[Conversation]], str]


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "owner",
        "model_choice",
        "messages",
        "tokens",
        "cost",
        "last_reply",
        "last_activity",
    ]
    list_select_related = ["owner"]
    list_filter = [
        ("owner", admin.RelatedOnlyFieldListFilter),
        ModelFilter,
        StatusFilter,
        ("updated_at", LastActivityFilter),
    ]
    search_fields = ["title", "owner__username"]
    search_help_text = "Titles and usernames; message text too with the transcript permission."
    # Counting every conversation again for "(N total)" is a second full count per page.
    show_full_result_count = False
    # Counts beside every filter choice would cost a full pass over the table per choice.
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 50
    fields = [
        "owner", "title", "provider", "model", "created_at", "updated_at", "messages", "tokens", "cost",
        "title_usage",
    ]  # fmt: skip
    actions = ["export_json", "export_markdown", "export_csv"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Conversation]:
        return with_stats(super().get_queryset(request))

    def get_list_display(self, request: HttpRequest) -> list[str]:
        if audit.can_read_transcripts(request.user):
            return [*self.list_display, "transcript"]
        return self.list_display

    def get_readonly_fields(self, request: HttpRequest, obj: Conversation | None = None) -> list[str]:
        if audit.can_read_transcripts(request.user):
            return [*self.fields, "transcript"]
        return self.fields

    def get_fields(self, request: HttpRequest, obj: Conversation | None = None) -> list[str]:
        return self.get_readonly_fields(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Conversation | None = None) -> bool:
        return False

    def has_transcript_permission(self, request: HttpRequest) -> bool:
        return audit.can_read_transcripts(request.user)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Conversation], search_term: str
    ) -> tuple[QuerySet[Conversation], bool]:
        """Every term must match a title, a username or (if allowed) a message, as in the admin.

        Message text is matched with EXISTS, so no join duplicates rows or inflates the stats;
        without the transcript permission it is not searched, since a hit would reveal text.
        """
        text_allowed = audit.can_read_transcripts(request.user)
        for bit in smart_split(search_term):
            term = unescape_string_literal(bit) if bit[0] in {'"', "'"} and bit[-1] == bit[0] else bit
            match = Q(title__icontains=term) | Q(owner__username__icontains=term)
            if text_allowed:
                match |= Exists(Message.objects.filter(conversation=OuterRef("pk"), content__icontains=term))
            queryset = queryset.filter(match)
        return queryset, False

    # Columns

    @admin.display(description="messages", ordering="message_count")
    def messages(self, conversation: Conversation) -> int:
        return conversation.message_count

    @admin.display(description="model", ordering="model")
    def model_choice(self, conversation: Conversation) -> str:
        return conversation.model_choice

    @admin.display(ordering="tokens")
    def tokens(self, conversation: Conversation) -> str:
        return "-" if conversation.tokens is None else f"{conversation.tokens:,}"

    @admin.display(ordering="cost")
    def cost(self, conversation: Conversation) -> str:
        return "-" if conversation.cost is None else dollars(conversation.cost)

    @admin.display(description="naming it")
    def title_usage(self, conversation: Conversation) -> str:
        """The title request's tokens and cost: not in the replies' totals beside it."""
        if conversation.title_input_tokens is None:
            return "-"
        tokens = conversation.title_input_tokens + (conversation.title_output_tokens or 0)
        cost = "" if conversation.title_cost is None else f", {dollars(conversation.title_cost)}"
        return f"{tokens:,} tokens (estimated){cost}"

    @admin.display(description="last reply", ordering="last_status")
    def last_reply(self, conversation: Conversation) -> str:
        return conversation.last_status or "-"

    @admin.display(description="last activity", ordering="updated_at")
    def last_activity(self, conversation: Conversation) -> datetime:
        return conversation.updated_at

    @admin.display(description="transcript")
    def transcript(self, conversation: Conversation) -> str:
        url = reverse("admin:chat_conversation_transcript", args=[conversation.pk])
        return format_html('<a href="{}">Read transcript</a>', url)

    # Pages

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("<int:pk>/transcript/", view(self.transcript_view), name="chat_conversation_transcript"),
            path(
                "<int:pk>/attachments/<str:key>/",
                view(self.attachment_view),
                name="chat_conversation_attachment",
            ),
            path("usage/", view(self.usage_view), name="chat_conversation_usage"),
            *super().get_urls(),
        ]

    def transcript_view(self, request: HttpRequest, pk: int) -> TemplateResponse:
        if not audit.can_read_transcripts(request.user):
            raise PermissionDenied
        conversation = get_object_or_404(Conversation.objects.select_related("owner"), pk=pk)
        audit.record_access(request.user, [conversation])
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Transcript: {conversation}",
            "conversation": conversation,
            "chat_messages": transcript_messages(conversation),
            "accesses": audit.accesses_of(conversation),
        }
        return TemplateResponse(request, "admin/chat/conversation/transcript.html", context)

    def attachment_view(self, request: HttpRequest, pk: int, key: str) -> FileResponse:
        """A file of a conversation, read as its transcript is: with the permission, logged."""
        if not audit.can_read_transcripts(request.user):
            raise PermissionDenied
        attachment = get_object_or_404(
            Attachment.objects.select_related("message__conversation__owner"),
            key=key,
            message__conversation=pk,
        )
        audit.record_access(request.user, [attachment.message.conversation])
        return attachment_views.serve(attachment)

    def usage_view(self, request: HttpRequest) -> TemplateResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = UsageRangeForm(request.GET)
        dashboard = build_dashboard(*form.chosen_range())
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Usage",
            "form": form,
            "dashboard": dashboard,
            "charts": dashboard.charts(),
        }
        return TemplateResponse(request, "admin/chat/conversation/usage.html", context)

    # Exports: message text leaves the admin, so they need the transcript permission and are audited.

    @admin.action(description="Export selected conversations as JSON", permissions=["transcript"])
    def export_json(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> HttpResponse:
        return self._export(request, queryset, exports.to_json, "application/json", "json")

    @admin.action(description="Export selected conversations as Markdown", permissions=["transcript"])
    def export_markdown(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> HttpResponse:
        return self._export(request, queryset, exports.to_markdown, "text/markdown; charset=utf-8", "md")

    @admin.action(description="Export selected conversations as CSV", permissions=["transcript"])
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> HttpResponse:
        return self._export(request, queryset, exports.to_csv, "text/csv; charset=utf-8", "csv")

    def _export(
        self,
        request: HttpRequest,
        queryset: QuerySet[Conversation],
        render: Exporter,
        content_type: str,
        ext: str,
    ) -> HttpResponse:
        selected = Conversation.objects.filter(pk__in=queryset.values("pk")).order_by("pk")
        conversations = list(exports.with_messages(selected))
        audit.record_access(request.user, conversations, TranscriptAccess.Action.EXPORT)
        response = HttpResponse(render(conversations), content_type=content_type)
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response["Content-Disposition"] = f'attachment; filename="conversations-{stamp}.{ext}"'
        return response
