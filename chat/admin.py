from django.contrib import admin

from chat.models import Conversation, Message


class MessageInline(admin.TabularInline):
    model = Message
    fields = ["role", "status", "content", "model", "input_tokens", "output_tokens", "cost", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["__str__", "owner", "provider", "model", "updated_at"]
    list_select_related = ["owner"]
    search_fields = ["title", "owner__username"]
    inlines = [MessageInline]
