"""Share links: every person's links, and revoking any of them.

The list shows whose link it is, of which conversation, when it was made and revoked;
never the token (only its hash is stored) and never the snapshot's text, which only a
transcript shows, to those allowed, with an access record.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from chat import shares
from chat.models import ShareLink


@admin.register(ShareLink)
class ShareLinkAdmin(admin.ModelAdmin):
    list_display = ["pk", "owner", "conversation_link", "created_at", "revoked_at", "includes_system_prompt"]
    list_display_links = None
    list_filter = [("revoked_at", admin.EmptyFieldListFilter), "created_at"]
    search_fields = ["conversation__owner__username", "conversation__title"]
    ordering = ["-created_at", "-pk"]
    actions = ["revoke_links"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ShareLink]:
        # The snapshot (message text) stays in the database: the list shows none of it.
        return super().get_queryset(request).select_related("conversation__owner").defer("snapshot")

    @admin.display(ordering="conversation__owner__username")
    def owner(self, link: ShareLink) -> str:
        return link.conversation.owner.get_username()

    @admin.display(description="conversation", ordering="conversation__title")
    def conversation_link(self, link: ShareLink) -> str:
        url = reverse("admin:chat_conversation_change", args=[link.conversation_id])
        return format_html('<a href="{}">{}</a>', url, link.conversation)

    @admin.action(description="Revoke the selected share links", permissions=["revoke"])
    def revoke_links(self, request: HttpRequest, queryset: QuerySet[ShareLink]) -> None:
        revoked = shares.do_revoke(queryset)
        self.message_user(request, f"Revoked {revoked} share link{'' if revoked == 1 else 's'}.")

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("chat.revoke_sharelink")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The list only: a link's own page would show its snapshot.
        return obj is None and super().has_view_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
