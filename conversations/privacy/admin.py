"""Conversations in admin: metadata by default, the text only where the site allows it and
only on a conversation's own page, each opening recorded; and those records, for
superusers alone."""

from django.contrib import admin
from django.db.models import Count, Sum
from django.utils.translation import gettext_lazy as _

from conversations.admin.readonly import ReadOnly
from conversations.models import Conversation, ConversationReading, Message, SiteSettings

# What admin may show of any conversation: who, which model, how big, when, what it cost.
METADATA = ["reference", "owner", "model", "message_count", "total_tokens", "total_cost",
            "created", "updated"]  # fmt: skip
# Its text: shown, and recorded, only when Site settings allow administrators to read.
TEXT = ["title", "system_prompt", "params"]


def reading_allowed():
    return SiteSettings.load().admins_may_read_conversations


class MessageInline(admin.TabularInline):
    model = Message
    fields = ["created", "role", "status", "content", "total_tokens", "usage_estimated", "cost"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False


class ConversationAdmin(ReadOnly, admin.ModelAdmin):
    # Read only: deleting one would list its messages on the confirmation page;
    # `manage.py delete_user_data` deletes.
    list_display = METADATA
    list_filter = ["model"]
    # The owner's name only: a search through titles would read them.
    search_fields = ["owner__username"]
    date_hierarchy = "updated"
    list_select_related = ["owner", "model"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                messages_n=Count("messages"),
                tokens=Sum("messages__total_tokens"),
                spent=Sum("messages__cost"),
            )
        )

    @admin.display(description=_("conversation"), ordering="id")
    def reference(self, conversation):
        return str(conversation.id)[:8]

    @admin.display(description=_("messages"), ordering="messages_n")
    def message_count(self, conversation):
        return conversation.messages_n

    @admin.display(description=_("tokens"), ordering="tokens")
    def total_tokens(self, conversation):
        return conversation.tokens or 0

    @admin.display(description=_("cost"), ordering="spent")
    def total_cost(self, conversation):
        return conversation.spent or 0

    def get_fields(self, request, obj=None):
        return METADATA + (TEXT if reading_allowed() else [])

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj)

    def get_inlines(self, request, obj):
        return [MessageInline] if reading_allowed() else []

    def change_view(self, request, object_id, form_url="", extra_context=None):
        conversation = self.get_object(request, object_id)
        if conversation is not None and reading_allowed() and request.method == "GET":
            ConversationReading.record(request.user, conversation)
        # The page is named by the conversation's id, not its title.
        reference = str(conversation.id)[:8] if conversation else ""
        extra_context = {**(extra_context or {}), "subtitle": reference}
        return super().change_view(request, object_id, form_url, extra_context)


class ConversationReadingAdmin(ReadOnly, admin.ModelAdmin):
    """Who read whose conversation, when: superusers only, and nobody changes it."""

    list_display = ["created", "reader_name", "owner_name", "conversation_ref"]
    list_filter = ["reader_name"]
    search_fields = ["reader_name", "owner_name"]
    date_hierarchy = "created"

    def has_module_permission(self, request):
        return request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_superuser


admin.site.register(Conversation, ConversationAdmin)
admin.site.register(ConversationReading, ConversationReadingAdmin)
