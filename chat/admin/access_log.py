"""The audit log: who read or exported which transcript, and who ended whose sessions.

Append-only here, since a record nobody can trust is no record.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from chat.models import SignOut, TranscriptAccess


class ReadOnly(admin.ModelAdmin):
    list_display_links = None

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(TranscriptAccess)
class TranscriptAccessAdmin(ReadOnly):
    list_display = ["accessed_at", "viewer_username", "action", "conversation_link", "owner_username"]
    list_filter = ["action", "accessed_at"]
    search_fields = ["viewer_username", "owner_username", "conversation_label"]

    @admin.display(description="conversation", ordering="conversation_label")
    def conversation_link(self, access: TranscriptAccess) -> str:
        if access.conversation_id is None:
            return f"{access.conversation_label} (deleted)"
        url = reverse("admin:chat_conversation_change", args=[access.conversation_id])
        return format_html('<a href="{}">{}</a>', url, access.conversation_label)


@admin.register(SignOut)
class SignOutAdmin(ReadOnly):
    list_display = ["at", "actor_username", "scope", "username", "sessions"]
    list_filter = ["scope", "at"]
    search_fields = ["actor_username", "username"]
