"""Every member's API keys, for administrators: who has which, when each was last used,
and a way to revoke any of them. A key itself is never shown: it is not kept."""

from django.contrib import admin
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from conversations.models import ApiKey


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "prefix", "created", "expires", "last_used", "revoked"]
    list_filter = [("revoked", admin.EmptyFieldListFilter), "user"]
    search_fields = ["name", "user__username", "prefix"]
    readonly_fields = ["user", "prefix", "created", "last_used"]
    fields = ["user", "name", "prefix", "created", "expires", "last_used", "revoked",
              "allowed_models", "requests_per_minute", "max_concurrent"]  # fmt: skip
    filter_horizontal = ["allowed_models"]
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False  # a key is made by its user, or with `manage.py create_api_key`

    @admin.action(description=_("Revoke the selected keys"))
    def revoke(self, request, queryset):
        count = queryset.filter(revoked__isnull=True).update(revoked=timezone.now())
        self.message_user(
            request,
            ngettext("%(count)d key revoked.", "%(count)d keys revoked.", count) % {"count": count},
        )
