"""The admin's feedback list: ratings and comments, and exports of what they rate.

The list shows rating, model, person, date and comment, never message text. The
exchange a rating is about (the person's message and the reply) leaves the admin only
through the transcript and the exports here, which need ``chat.view_transcript`` and
record an access per conversation, as a transcript does.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable
from typing import Any

from django.contrib import admin
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from chat.admin import audit
from chat.exports import cell, defuse
from chat.models import Conversation, Feedback, Message, TranscriptAccess

EXPORT_FIELDS = [
    "id", "rating", "comment", "user", "rated_at", "provider", "model", "conversation_id",
    "conversation_title", "reply_id", "reply_status", "question", "reply",
]  # fmt: skip


class ModelFilter(admin.SimpleListFilter):
    """The model of the rated reply."""

    title = "model"
    parameter_name = "model_choice"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        pairs = (
            Message.objects.filter(feedback__isnull=False)
            .order_by("provider", "model")
            .values_list("provider", "model")
            .distinct()
        )
        return [(f"{provider}/{model}", f"{provider} · {model}") for provider, model in pairs]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Feedback]) -> QuerySet[Feedback]:
        if not self.value():
            return queryset
        provider, _, model = self.value().partition("/")
        return queryset.filter(message__provider=provider, message__model=model)


class RatedAtFilter(admin.DateFieldListFilter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.title = "date"


def question_of(reply: Message, by_id: dict[int, Message]) -> Message | None:
    """The person's message a reply answers: its nearest ancestor written by a person
    (a continuation's parent is a reply). ``by_id`` holds the conversation's messages."""
    if reply.parent_id is None:
        # Stored without parents: the person's last message before it.
        earlier = [
            m
            for m in by_id.values()
            if m.conversation_id == reply.conversation_id
            and m.role == Message.Role.USER
            and (m.created_at, m.pk) < (reply.created_at, reply.pk)
        ]
        return max(earlier, key=lambda m: (m.created_at, m.pk), default=None)
    parent = by_id.get(reply.parent_id)
    while parent is not None and parent.role != Message.Role.USER:
        parent = by_id.get(parent.parent_id) if parent.parent_id else None
    return parent


def export_rows(feedback: list[Feedback]) -> list[dict[str, Any]]:
    """Each feedback with the exchange it rates, read in a fixed number of queries."""
    conversation_ids = {f.message.conversation_id for f in feedback}
    by_id = Message.objects.filter(conversation_id__in=conversation_ids).in_bulk()
    rows = []
    for f in feedback:
        reply = f.message
        question = question_of(reply, by_id)
        rows.append(
            {
                "id": f.pk,
                "rating": f.rating,
                "comment": f.comment,
                "user": f.user.get_username(),
                "rated_at": f.updated_at,
                "provider": reply.provider,
                "model": reply.model,
                "conversation_id": reply.conversation_id,
                "conversation_title": str(reply.conversation),
                "reply_id": reply.pk,
                "reply_status": reply.status,
                "question": question.content if question else "",
                "reply": reply.content,
            }
        )
    return rows


def to_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps({"feedback": rows}, cls=DjangoJSONEncoder, indent=2, ensure_ascii=False)


def to_csv(rows: list[dict[str, Any]]) -> str:
    """One row per feedback, cells defused so a spreadsheet shows text, never runs it."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(EXPORT_FIELDS)
    for row in rows:
        writer.writerow(defuse(cell(row[name])) for name in EXPORT_FIELDS)
    return out.getvalue()


Exporter = Callable[[list[dict[str, Any]]], str]


@admin.register(Feedback)
class FeedbackAdmin(admin.ModelAdmin):
    list_display = ["rated_at", "rating", "model_choice", "user", "comment", "conversation_link"]
    list_display_links = None
    list_select_related = ["user", "message"]
    list_filter = [
        ModelFilter,
        ("user", admin.RelatedOnlyFieldListFilter),
        "rating",
        ("updated_at", RatedAtFilter),
    ]
    search_fields = ["comment", "user__username"]
    search_help_text = "Comments and usernames."
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 50
    actions = ["export_json", "export_csv"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Feedback]:
        # The reply's text stays in the database: the list shows none of it.
        return super().get_queryset(request).defer("message__content", "message__error")

    def get_list_display(self, request: HttpRequest) -> list[str]:
        if audit.can_read_transcripts(request.user):
            return [*self.list_display, "transcript"]
        return self.list_display

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The list only: everything a feedback's own page could show is in its row.
        return obj is None and super().has_view_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_transcript_permission(self, request: HttpRequest) -> bool:
        return audit.can_read_transcripts(request.user)

    # Columns

    @admin.display(description="date", ordering="updated_at")
    def rated_at(self, feedback: Feedback) -> Any:
        return feedback.updated_at

    @admin.display(description="model", ordering="message__model")
    def model_choice(self, feedback: Feedback) -> str:
        return f"{feedback.message.provider}/{feedback.message.model}"

    @admin.display(description="conversation", ordering="message__conversation")
    def conversation_link(self, feedback: Feedback) -> str:
        # Its number only: a title is the model's summary of the exchange.
        conversation_id = feedback.message.conversation_id
        url = reverse("admin:chat_conversation_change", args=[conversation_id])
        return format_html('<a href="{}">#{}</a>', url, conversation_id)

    @admin.display(description="exchange")
    def transcript(self, feedback: Feedback) -> str:
        url = reverse("admin:chat_conversation_transcript", args=[feedback.message.conversation_id])
        return format_html('<a href="{}#message-{}">Read transcript</a>', url, feedback.message_id)

    # Exports: message text leaves the admin, so they need the transcript permission and are audited.

    @admin.action(description="Export selected feedback and exchanges as JSON", permissions=["transcript"])
    def export_json(self, request: HttpRequest, queryset: QuerySet[Feedback]) -> HttpResponse:
        return self._export(request, queryset, to_json, "application/json", "json")

    @admin.action(description="Export selected feedback and exchanges as CSV", permissions=["transcript"])
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Feedback]) -> HttpResponse:
        return self._export(request, queryset, to_csv, "text/csv; charset=utf-8", "csv")

    def _export(
        self,
        request: HttpRequest,
        queryset: QuerySet[Feedback],
        render: Exporter,
        content_type: str,
        ext: str,
    ) -> HttpResponse:
        selected = list(
            Feedback.objects.filter(pk__in=queryset.values("pk"))
            .select_related("user", "message__conversation__owner")
            .order_by("pk")
        )
        audit.record_access(request.user, _conversations(selected), TranscriptAccess.Action.EXPORT)
        response = HttpResponse(render(export_rows(selected)), content_type=content_type)
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response["Content-Disposition"] = f'attachment; filename="feedback-{stamp}.{ext}"'
        return response


def _conversations(feedback: Iterable[Feedback]) -> list[Conversation]:
    """Each conversation once, in the order first rated."""
    unique: dict[int, Conversation] = {}
    for f in feedback:
        unique.setdefault(f.message.conversation_id, f.message.conversation)
    return list(unique.values())
