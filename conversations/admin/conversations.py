"""Conversations, read-only: an administrator may look, never change what was said."""

from django.contrib import admin

from conversations.models import Conversation, Message


class MessageInline(admin.TabularInline):
    model = Message
    fields = ["created", "role", "status", "content", "total_tokens", "usage_estimated", "cost"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["__str__", "owner", "model", "updated"]
    list_filter = ["model"]
    search_fields = ["title", "owner__username"]
    date_hierarchy = "updated"
    readonly_fields = ["owner", "title", "system_prompt", "model", "params", "created", "updated"]
    inlines = [MessageInline]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
