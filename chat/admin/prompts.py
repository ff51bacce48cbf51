"""Prompts: every person's saved prompts, and publishing them to everyone's slash menu.

A published prompt shows in every person's menu, marked as shared; outside the admin
only its owner edits it (``chat.prompts``).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from chat.models import Prompt


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ["title", "owner", "published", "updated_at"]
    list_filter = ["published", "updated_at"]
    search_fields = ["title", "owner__username"]
    ordering = ["title", "pk"]
    fields = ["title", "text", "published", "owner", "created_at", "updated_at"]
    readonly_fields = ["owner", "created_at", "updated_at"]
    actions = ["publish", "unpublish"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Prompt]:
        return super().get_queryset(request).select_related("owner")

    def save_model(self, request: HttpRequest, obj: Prompt, form: Any, change: bool) -> None:
        # A prompt staff add here is theirs.
        if not change:
            obj.owner = request.user
        super().save_model(request, obj, form, change)

    @admin.action(description="Publish the selected prompts to everyone", permissions=["change"])
    def publish(self, request: HttpRequest, queryset: QuerySet[Prompt]) -> None:
        count = queryset.update(published=True)
        self.message_user(request, f"Published {count} prompt{'' if count == 1 else 's'}.")

    @admin.action(description="Stop sharing the selected prompts", permissions=["change"])
    def unpublish(self, request: HttpRequest, queryset: QuerySet[Prompt]) -> None:
        count = queryset.update(published=False)
        self.message_user(request, f"Unpublished {count} prompt{'' if count == 1 else 's'}.")
